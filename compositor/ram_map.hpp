// The RAM pane's geometry: guest RAM laid out on a 2D Hilbert curve (hilbert.hpp), each
// pixel covering `bytes_per_pixel` consecutive bytes of the RAM file (QEMU's RAM block, in
// file-offset order: holes in the gpa space such as the PCI hole take no pixels). Nearby
// addresses land on nearby pixels, so structures show as compact blobs instead of stripes.
//
// Shapes: the pane is a square of side 2^bits pixels, the smallest that holds
// ceil(file_size / bytes_per_pixel) cells; pixels past the end of RAM are empty.
// locate() and gpa_at() are inverses on every gpa that starts a pixel.
//
// Byte classes (the pane's five colours, chosen to be told apart also by colour-blind users;
// a pixel mixes the colours of its bytes in proportion):
//   zero            0x00              black      (0, 0, 0)
//   low control     0x01..0x1f, 0x7f  blue       (38, 95, 255)
//   printable ASCII 0x20..0x7e        green-yellow (190, 230, 60)
//   high            0x80..0xfe        orange     (255, 140, 30)
//   0xff            0xff              white      (255, 255, 255)
//
// Thread-safety: value type; const methods reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "compositor/hilbert.hpp"
#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::compositor {

enum class ByteClass : uint8_t { kZero, kControl, kPrintable, kHigh, kFF };
inline constexpr unsigned kNumByteClasses = 5;

struct Rgb8 {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb8&) const = default;
};

ByteClass byte_class(uint8_t byte) noexcept;
Rgb8 class_colour(ByteClass c) noexcept;

// The colour of a pixel covering `bytes`: the mean of its bytes' class colours (rounded
// down), the same arithmetic the compute shader does. Empty input: black.
Rgb8 pixel_colour(std::span<const uint8_t> bytes) noexcept;

class RamMap {
 public:
  // `bytes_per_pixel`: a power of two, 1 .. 2^20. Errors: kInvalidArgument naming the value;
  // kOutOfRange when the RAM needs a pane wider than 65536 pixels at that density.
  static Result<RamMap> create(const shared::RamLayout& layout, uint64_t bytes_per_pixel);

  // The pixel holding `gpa`. Errors: kOutOfRange "gpa 0x... is outside guest RAM (regions:
  // ...)".
  Result<Cell2d> locate(Gpa gpa) const;
  // The first gpa of pixel (x, y). Errors: kOutOfRange when (x, y) is outside the pane, past
  // the end of RAM, or shows file bytes no gpa maps.
  Result<Gpa> gpa_at(uint32_t x, uint32_t y) const;

  uint32_t pane_width() const noexcept { return 1u << bits_; }
  uint32_t pane_height() const noexcept { return 1u << bits_; }
  unsigned bits() const noexcept { return bits_; }
  uint64_t bytes_per_pixel() const noexcept { return bytes_per_pixel_; }
  uint64_t pixels_used() const noexcept { return cells_; }  // pixels that show RAM
  const shared::RamLayout& layout() const noexcept { return layout_; }

 private:
  RamMap(shared::RamLayout layout, uint64_t bpp, unsigned bits, uint64_t cells)
      : layout_(std::move(layout)), bytes_per_pixel_(bpp), bits_(bits), cells_(cells) {}
  shared::RamLayout layout_;
  uint64_t bytes_per_pixel_;
  unsigned bits_;
  uint64_t cells_;
};

}  // namespace glassbox::compositor
