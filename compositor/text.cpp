#include "compositor/text.hpp"

#include <ft2build.h>
#include FT_FREETYPE_H

#include <algorithm>
#include <cstdio>
#include <limits>

namespace glassbox::compositor {
namespace {

// A glyph bitmap or advance larger than this many ems is a hostile or broken font; DejaVu's
// widest ASCII glyph is under one em.
constexpr int64_t kMaxGlyphEms = 4;

// Owns an FT_Library and an FT_Face; only alive inside create().
struct FtHandles {
  FT_Library library = nullptr;
  FT_Face face = nullptr;
  ~FtHandles() {
    if (face) FT_Done_Face(face);
    if (library) FT_Done_FreeType(library);
  }
};

// FreeType's own text for its error codes. FT_Error_String() is null unless FreeType was
// built with FT_CONFIG_OPTION_ERROR_STRINGS (Debian's is not), so build the table the way
// fterrors.h documents.
struct FtErrorText {
  int code;
  const char* text;
};
// clang-format off
#undef FTERRORS_H_
#define FT_ERRORDEF(e, v, s) {v, s},
#define FT_ERROR_START_LIST constexpr FtErrorText kFtErrors[] = {
#define FT_ERROR_END_LIST {-1, nullptr}};
#include FT_ERRORS_H
// clang-format on

std::string ft_error(FT_Error err) {
  const char* s = FT_Error_String(err);
  for (const FtErrorText* e = kFtErrors; !s && e->text; ++e) {
    if (e->code == err) s = e->text;
  }
  std::string out = "FreeType error " + std::to_string(err);
  if (s) out += std::string(" (") + s + ")";
  return out;
}

int64_t ceil_26_6(FT_Pos v) { return (static_cast<int64_t>(v) + 63) >> 6; }

}  // namespace

TextRasterizer::~TextRasterizer() = default;

Result<std::unique_ptr<TextRasterizer>> TextRasterizer::create(const std::string& font_path,
                                                               uint32_t pixel_height) {
  if (pixel_height < kMinTextPixelHeight || pixel_height > kMaxTextPixelHeight) {
    return fail(Errc::kInvalidArgument, "font size " + std::to_string(pixel_height) +
                                            " px: must be " + std::to_string(kMinTextPixelHeight) +
                                            ".." + std::to_string(kMaxTextPixelHeight));
  }
  if (std::FILE* f = std::fopen(font_path.c_str(), "rb")) {
    std::fclose(f);
  } else {
    return fail(Errc::kNotFound, "font " + font_path +
                                     ": cannot open (install fonts-dejavu-core or set "
                                     "[compositor] font)");
  }

  FtHandles ft;
  if (FT_Error err = FT_Init_FreeType(&ft.library)) {
    return fail(Errc::kInternal, "FreeType init: " + ft_error(err));
  }
  if (FT_Error err = FT_New_Face(ft.library, font_path.c_str(), 0, &ft.face)) {
    return fail(Errc::kInternal, "font " + font_path + ": " + ft_error(err));
  }
  if (FT_Error err = FT_Set_Pixel_Sizes(ft.face, 0, pixel_height)) {
    return fail(Errc::kInternal, "font " + font_path + " at " + std::to_string(pixel_height) +
                                     " px: " + ft_error(err));
  }

  const int64_t max_extent = kMaxGlyphEms * pixel_height;
  std::unique_ptr<TextRasterizer> r(new TextRasterizer());
  // The font's own line box, widened below to cover every glyph's ink.
  int64_t ascent = std::clamp<int64_t>(ceil_26_6(ft.face->size->metrics.ascender), 0, max_extent);
  int64_t descent =
      std::clamp<int64_t>(ceil_26_6(-ft.face->size->metrics.descender), 0, max_extent);

  for (unsigned c = kFirst; c <= kLast; ++c) {
    if (FT_Error err = FT_Load_Char(ft.face, c, FT_LOAD_DEFAULT | FT_LOAD_RENDER)) {
      return fail(Errc::kInternal, "font " + font_path + ": glyph '" +
                                       std::string(1, static_cast<char>(c)) +
                                       "': " + ft_error(err));
    }
    const FT_GlyphSlot slot = ft.face->glyph;
    const FT_Bitmap& bm = slot->bitmap;
    Glyph& g = r->glyphs_[c - kFirst];
    g.advance = static_cast<uint32_t>(
        std::clamp<int64_t>((static_cast<int64_t>(slot->advance.x) + 32) >> 6, 0, max_extent));
    if (bm.width == 0 || bm.rows == 0) continue;  // space, or a glyph with no ink
    if (bm.width > max_extent || bm.rows > max_extent || slot->bitmap_left < -max_extent ||
        slot->bitmap_left > max_extent || slot->bitmap_top < -max_extent ||
        slot->bitmap_top > max_extent || bm.buffer == nullptr) {
      return fail(Errc::kInternal,
                  "font " + font_path + ": glyph '" + std::string(1, static_cast<char>(c)) +
                      "' is " + std::to_string(bm.width) + "x" + std::to_string(bm.rows) +
                      " px at " + std::to_string(pixel_height) + " px: not a usable font");
    }
    if (bm.pixel_mode != FT_PIXEL_MODE_GRAY && bm.pixel_mode != FT_PIXEL_MODE_MONO) {
      return fail(Errc::kInternal,
                  "font " + font_path + ": glyph '" + std::string(1, static_cast<char>(c)) +
                      "' rendered in unsupported pixel mode " + std::to_string(bm.pixel_mode));
    }
    g.left = slot->bitmap_left;
    g.top = slot->bitmap_top;
    g.width = bm.width;
    g.rows = bm.rows;
    g.bitmap.assign(size_t{g.width} * g.rows, 0);
    const size_t stride = static_cast<size_t>(bm.pitch < 0 ? -int64_t{bm.pitch} : bm.pitch);
    const unsigned max_gray = bm.num_grays > 1 ? bm.num_grays - 1 : 255;
    for (uint32_t row = 0; row < g.rows; ++row) {
      // A negative pitch stores rows bottom-up from the start of the buffer.
      const unsigned char* src = bm.buffer + (bm.pitch < 0 ? (g.rows - 1 - row) : row) * stride;
      uint8_t* dst = g.bitmap.data() + size_t{row} * g.width;
      for (uint32_t col = 0; col < g.width; ++col) {
        if (bm.pixel_mode == FT_PIXEL_MODE_MONO) {
          dst[col] = (src[col >> 3] & (0x80u >> (col & 7))) ? 255 : 0;
        } else {
          dst[col] = static_cast<uint8_t>(std::min<unsigned>(src[col], max_gray) * 255 / max_gray);
        }
      }
    }
    ascent = std::max<int64_t>(ascent, g.top);
    descent = std::max<int64_t>(descent, int64_t{g.rows} - g.top);
  }
  r->ascent_ = static_cast<uint32_t>(ascent);
  r->descent_ = static_cast<uint32_t>(std::max<int64_t>(descent, ascent == 0 ? 1 : 0));
  return r;
}

const TextRasterizer::Glyph& TextRasterizer::glyph_for(unsigned char byte) const {
  if (byte < kFirst || byte > kLast) byte = '?';
  return glyphs_[byte - kFirst];
}

uint32_t TextRasterizer::measure(std::string_view text) const {
  uint64_t w = 0;
  for (char ch : text) {
    w += glyph_for(static_cast<unsigned char>(ch)).advance;
    if (w >= std::numeric_limits<uint32_t>::max()) return std::numeric_limits<uint32_t>::max();
  }
  return static_cast<uint32_t>(w);
}

int32_t TextRasterizer::draw(TextMask& mask, int32_t x, int32_t y, std::string_view text) {
  // All coordinates in int64: x + width and y + rows cannot overflow (|x|, |y| < 2^31,
  // widths < 2^32, glyph offsets < 2^10).
  const int64_t total = measure(text);
  const int64_t end_x = int64_t{x} + total;
  const int32_t ret = static_cast<int32_t>(std::clamp<int64_t>(
      end_x, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()));

  const int64_t mask_w = mask.width;
  const int64_t mask_h =
      mask.width == 0 ? 0 : std::min<int64_t>(mask.height, mask.data.size() / mask.width);
  // Clip rectangle: the text box intersected with the mask, [cx0, cx1) x [cy0, cy1).
  const int64_t cx0 = std::max<int64_t>(x, 0), cx1 = std::min<int64_t>(end_x, mask_w);
  const int64_t cy0 = std::max<int64_t>(y, 0);
  const int64_t cy1 = std::min<int64_t>(int64_t{y} + line_height(), mask_h);
  if (cx0 >= cx1 || cy0 >= cy1) return ret;

  const int64_t baseline = int64_t{y} + ascent_;
  int64_t pen = x;
  for (char ch : text) {
    if (pen >= cx1) break;  // everything further right is clipped
    const Glyph& g = glyph_for(static_cast<unsigned char>(ch));
    const int64_t gx = pen + g.left, gy = baseline - g.top;
    pen += g.advance;
    const int64_t x0 = std::max(gx, cx0), x1 = std::min<int64_t>(gx + g.width, cx1);
    const int64_t y0 = std::max(gy, cy0), y1 = std::min<int64_t>(gy + g.rows, cy1);
    if (x0 >= x1 || y0 >= y1) continue;
    for (int64_t my = y0; my < y1; ++my) {
      const uint8_t* src = g.bitmap.data() + (my - gy) * g.width + (x0 - gx);
      uint8_t* dst = mask.data.data() + my * mask_w + x0;
      for (int64_t i = 0; i < x1 - x0; ++i) dst[i] = std::max(dst[i], src[i]);
    }
  }
  return ret;
}

}  // namespace glassbox::compositor
