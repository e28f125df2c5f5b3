// Text for the compositor's HUD and labels: a CPU rasterizer on FreeType that draws one line
// of text into an 8-bit coverage mask, which the Vulkan side uploads and tints.
//
// Glyphs: only printable ASCII (0x20..0x7e) is drawn; every other byte, including each byte
// of a multi-byte UTF-8 sequence, is drawn as '?'. No kerning, no shaping, no line breaks
// ('\n' is a '?' too). All 95 glyphs are rendered once at create(); after that no FreeType
// state is kept, so measure() and draw() are table lookups and copies.
//
// Shapes and units: pixels. A line of text occupies the box [x, x + measure(text)) x
// [y, y + line_height()): its top-left is the (x, y) given to draw(), the baseline is
// ascent() rows below the top. Ink is clipped to that box and to the mask, so a glyph that
// overhangs its advance at either end of the line loses that overhang.
//
// Thread-safety: TextMask is a value type. A TextRasterizer is immutable after create(); its
// const methods are reentrant, draw() writes only the mask it is given (use one thread per
// mask; the spec'd contract is one thread per rasterizer).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::compositor {

// An 8-bit coverage mask: width x height bytes, row y at data[y * width]. 0 = transparent,
// 255 = opaque. draw() trusts none of it: a mask whose data is shorter than width * height
// is drawn only in the whole rows it holds.
struct TextMask {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> data;
};

inline constexpr uint32_t kMinTextPixelHeight = 6;
inline constexpr uint32_t kMaxTextPixelHeight = 128;

class TextRasterizer {
 public:
  // Loads the TrueType/OpenType font at `font_path` (e.g.
  // /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf) at `pixel_height` pixels per em
  // (6..128) and renders the printable ASCII glyphs. Errors: kNotFound "font FILE: cannot
  // open (install fonts-dejavu-core or set [compositor] font)"; kInvalidArgument naming a
  // size outside 6..128; kInternal with FreeType's error for a file FreeType cannot use (not
  // a font, a fixed-size bitmap font without that size) or a glyph with an absurd bitmap.
  static Result<std::unique_ptr<TextRasterizer>> create(const std::string& font_path,
                                                        uint32_t pixel_height);
  ~TextRasterizer();
  TextRasterizer(const TextRasterizer&) = delete;
  TextRasterizer& operator=(const TextRasterizer&) = delete;

  // Width in pixels of `text`: the sum of its glyphs' advances (bytes outside 0x20..0x7e
  // count as '?'). measure("") == 0; saturates at UINT32_MAX. O(text.size()).
  uint32_t measure(std::string_view text) const;
  // Height in pixels of a line: ascent() + descent, at least 1. Covers the ink of every
  // cached glyph, so nothing is clipped vertically.
  uint32_t line_height() const { return ascent_ + descent_; }
  // Rows from the top of a line to its baseline.
  uint32_t ascent() const { return ascent_; }

  // Draws `text` with its top-left at (x, y) into `mask`, taking the max of the existing and
  // the glyph coverage per pixel. Clipped to the mask and to the text box (see above); never
  // writes outside mask.data, never resizes it; any x, y (negative, huge) is fine. Returns
  // x + measure(text), clamped to the int32_t range: the pen position for the next text.
  // Thread-safety: one thread per rasterizer (and per mask).
  int32_t draw(TextMask& mask, int32_t x, int32_t y, std::string_view text);

 private:
  // One pre-rendered glyph: a width x rows coverage bitmap whose top-left sits `left` pixels
  // right of the pen and `top` pixels above the baseline.
  struct Glyph {
    int32_t left = 0, top = 0;
    uint32_t width = 0, rows = 0;
    uint32_t advance = 0;
    std::vector<uint8_t> bitmap;  // width * rows bytes, row-major
  };
  static constexpr unsigned kFirst = 0x20, kLast = 0x7e, kCount = kLast - kFirst + 1;

  TextRasterizer() = default;
  const Glyph& glyph_for(unsigned char byte) const;

  std::array<Glyph, kCount> glyphs_;
  uint32_t ascent_ = 0, descent_ = 0;
};

}  // namespace glassbox::compositor
