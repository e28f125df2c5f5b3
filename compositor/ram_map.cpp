#include "compositor/ram_map.hpp"

#include <fmt/format.h>

#include <bit>

namespace glassbox::compositor {

ByteClass byte_class(uint8_t b) noexcept {
  if (b == 0x00) return ByteClass::kZero;
  if (b == 0xff) return ByteClass::kFF;
  if (b < 0x20 || b == 0x7f) return ByteClass::kControl;
  if (b < 0x7f) return ByteClass::kPrintable;
  return ByteClass::kHigh;
}

Rgb8 class_colour(ByteClass c) noexcept {
  switch (c) {
    case ByteClass::kZero:
      return {0, 0, 0};
    case ByteClass::kControl:
      return {38, 95, 255};
    case ByteClass::kPrintable:
      return {190, 230, 60};
    case ByteClass::kHigh:
      return {255, 140, 30};
    case ByteClass::kFF:
      return {255, 255, 255};
  }
  return {};
}

Rgb8 pixel_colour(std::span<const uint8_t> bytes) noexcept {
  if (bytes.empty()) return {};
  uint64_t counts[kNumByteClasses] = {};
  for (uint8_t b : bytes) ++counts[static_cast<unsigned>(byte_class(b))];
  uint64_t r = 0, g = 0, bl = 0;
  for (unsigned c = 0; c < kNumByteClasses; ++c) {
    const Rgb8 col = class_colour(static_cast<ByteClass>(c));
    r += counts[c] * col.r;
    g += counts[c] * col.g;
    bl += counts[c] * col.b;
  }
  const uint64_t n = bytes.size();
  return {static_cast<uint8_t>(r / n), static_cast<uint8_t>(g / n), static_cast<uint8_t>(bl / n)};
}

Result<RamMap> RamMap::create(const shared::RamLayout& layout, uint64_t bytes_per_pixel) {
  if (bytes_per_pixel == 0 || !std::has_single_bit(bytes_per_pixel) ||
      bytes_per_pixel > (uint64_t{1} << 20)) {
    return fail(Errc::kInvalidArgument,
                fmt::format("bytes_per_pixel {}: expected a power of two from 1 to 1048576",
                            bytes_per_pixel));
  }
  const uint64_t size = layout.file_size_bytes();
  const uint64_t cells = (size + bytes_per_pixel - 1) / bytes_per_pixel;
  unsigned bits = 1;
  while (bits <= kMaxBits2d && (uint64_t{1} << (2 * bits)) < cells) ++bits;
  if (bits > kMaxBits2d) {
    return fail(Errc::kOutOfRange,
                fmt::format("{} bytes of RAM at {} bytes per pixel need a pane wider than "
                            "65536 pixels; raise bytes_per_pixel",
                            size, bytes_per_pixel));
  }
  return RamMap(layout, bytes_per_pixel, bits, cells);
}

Result<Cell2d> RamMap::locate(Gpa gpa) const {
  auto off = layout_.file_offset(gpa, 0);
  if (!off) return tl::unexpected(off.error());
  return hilbert_d_to_xy(*off / bytes_per_pixel_, bits_);
}

Result<Gpa> RamMap::gpa_at(uint32_t x, uint32_t y) const {
  if (x >= pane_width() || y >= pane_height()) {
    return fail(Errc::kOutOfRange, fmt::format("pixel ({}, {}) is outside the {}x{} RAM pane", x, y,
                                               pane_width(), pane_height()));
  }
  const uint64_t d = hilbert_xy_to_d({x, y}, bits_);
  if (d >= cells_) {
    return fail(Errc::kOutOfRange,
                fmt::format("pixel ({}, {}) is past the end of guest RAM (cell {} of {})", x, y, d,
                            cells_));
  }
  return layout_.gpa_of(d * bytes_per_pixel_);
}

}  // namespace glassbox::compositor
