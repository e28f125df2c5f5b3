// PNG encoding and decoding of 8-bit-per-channel images, on top of libspng.
//
// Encoding takes a 32-bit-per-pixel image in one of the PixelFormat layouts below (what VNC,
// QEMU's framebuffers and the compositor hold) and writes an 8-bit truecolour PNG: RGB for the
// formats whose fourth byte is padding (X), RGBA for those with alpha (A). Rows are converted
// one at a time; no full-size intermediate copy is made.
//
// Decoding accepts any PNG libspng reads (any colour type, bit depth 1..16, interlaced or not)
// and returns it as 8-bit RGBA (16-bit channels are reduced to 8 bits; tRNS applied).
//
// Bounds: width and height are 1..kMaxPngDimension; stride_bytes >= width * 4. Files are
// untrusted on decode: dimensions are bounded before allocating, the file size by
// kMaxPngFileBytes, chunk sizes by libspng limits.
//
// Thread-safety: every function is reentrant (no shared state); concurrent calls on different
// paths are safe. Two writers on the same `path` at once race on `<path>.tmp`: one per path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::shared {

// Largest width or height accepted by every function here, in pixels.
inline constexpr uint32_t kMaxPngDimension = 16384;
// Largest PNG file read_png() reads, in bytes.
inline constexpr std::size_t kMaxPngFileBytes = std::size_t{1} << 30;

// Byte order of one 4-byte pixel in memory (byte 0 first).
enum class PixelFormat {
  kBgrx8888,  // B, G, R, unused: little-endian 32-bit 0x00RRGGBB (VNC / QEMU / pixman x8r8g8b8)
  kBgra8888,  // B, G, R, A: little-endian 0xAARRGGBB (pixman a8r8g8b8)
  kRgbx8888,  // R, G, B, unused
  kRgba8888,  // R, G, B, A
};

struct PngOptions {
  // zlib level 0..9. Default 1: on a 1920x1080 screen-like image here, level 1 with the Sub
  // filter took ~23 ms and 300 KB; level 6 took ~60 ms for 160 KB.
  int compression_level = 1;
  // false: every row uses the Sub filter (fast, good on screens: long horizontal runs).
  // true: libspng tries all five filters per row and keeps the best (~3x the encode time on
  // the image above, and larger output there; may win on photos).
  bool adaptive_filters = false;
};

// An image as 8-bit RGBA, rows packed: pixels.size() == width * height * 4, row y starts at
// byte y * width * 4.
struct DecodedImage {
  uint32_t width = 0;
  uint32_t height = 0;
  std::vector<uint8_t> rgba;
};

// Encodes the `width` x `height` image at `pixels` (row y at pixels + y * stride_bytes, 4 bytes
// per pixel laid out as `format`) as a PNG in memory.
// Errors: kInvalidArgument (naming the field) when pixels is null, width or height is 0 or
// above kMaxPngDimension, stride_bytes < width * 4, or compression_level is outside 0..9;
// kInternal when libspng fails.
// Thread-safety: reentrant; `pixels` must stay valid and unmodified during the call.
[[nodiscard]] Result<std::vector<uint8_t>> encode_png(const uint8_t* pixels, uint32_t width,
                                                      uint32_t height, uint32_t stride_bytes,
                                                      PixelFormat format,
                                                      const PngOptions& options = {});

// As encode_png(), then writes the PNG to `<path>.tmp` and renames it onto `path`, so a reader
// sees either the old file or the complete new one (no fsync: atomic, not durable).
// Errors: those of encode_png(); kIo (with errno text and the path) when writing or renaming
// fails; the temporary file is removed on failure.
// Thread-safety: reentrant; one writer per `path` at a time.
[[nodiscard]] Result<void> write_png(const std::string& path, const uint8_t* pixels, uint32_t width,
                                     uint32_t height, uint32_t stride_bytes, PixelFormat format,
                                     const PngOptions& options = {});

// Decodes PNG bytes to 8-bit RGBA.
// Errors: kProtocol when the bytes are not a valid PNG (libspng's message included);
// kOutOfRange when width or height exceeds kMaxPngDimension.
// Thread-safety: reentrant.
[[nodiscard]] Result<DecodedImage> decode_png(const uint8_t* data, std::size_t size_bytes);

// Reads and decodes the PNG file at `path` to 8-bit RGBA.
// Errors: kNotFound when the file does not exist; kIo when it cannot be read; kOutOfRange when
// it is larger than kMaxPngFileBytes; those of decode_png().
// Thread-safety: reentrant.
[[nodiscard]] Result<DecodedImage> read_png(const std::string& path);

}  // namespace glassbox::shared
