#include "compositor/text.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <limits>

namespace glassbox::compositor {
namespace {

constexpr const char* kFont = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";

std::unique_ptr<TextRasterizer> make(uint32_t px = 16) {
  auto r = TextRasterizer::create(kFont, px);
  EXPECT_TRUE(r) << r.error().to_string();
  return r ? std::move(*r) : nullptr;
}

TextMask blank(uint32_t w, uint32_t h) { return TextMask{w, h, std::vector<uint8_t>(w * h, 0)}; }

size_t set_pixels(const TextMask& m) {
  size_t n = 0;
  for (uint8_t v : m.data) n += v != 0;
  return n;
}

TEST(TextTest, CreatesWithDejaVuAtEverySize) {
  for (uint32_t px : {6u, 12u, 16u, 32u, 128u}) {
    auto r = TextRasterizer::create(kFont, px);
    ASSERT_TRUE(r) << px << ": " << r.error().to_string();
    EXPECT_GE((*r)->line_height(), px) << px;
    EXPECT_LE((*r)->line_height(), 2 * px) << px;
    EXPECT_GT((*r)->ascent(), 0u);
    EXPECT_LE((*r)->ascent(), (*r)->line_height());
  }
}

TEST(TextTest, MissingFontIsNotFoundNamingThePath) {
  const std::string path = "/nonexistent/dir/NoSuchFont.ttf";
  auto r = TextRasterizer::create(path, 16);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  EXPECT_EQ(r.error().message,
            "font " + path + ": cannot open (install fonts-dejavu-core or set [compositor] font)");
}

TEST(TextTest, BadSizeIsInvalidArgument) {
  for (uint32_t px : {0u, 5u, 129u, 100000u, std::numeric_limits<uint32_t>::max()}) {
    auto r = TextRasterizer::create(kFont, px);
    ASSERT_FALSE(r) << px;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << px;
    EXPECT_NE(r.error().message.find(std::to_string(px)), std::string::npos) << r.error().message;
  }
}

TEST(TextTest, NotAFontIsInternalWithFreeTypesError) {
  char path[] = "/tmp/glassbox_text_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const char junk[] = "this is not a TrueType font, just some bytes";
  ASSERT_EQ(write(fd, junk, sizeof junk), static_cast<ssize_t>(sizeof junk));
  close(fd);
  auto r = TextRasterizer::create(path, 16);
  std::remove(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInternal);
  EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("FreeType error"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("unknown file format"), std::string::npos) << r.error().message;
  // A directory opens but is no font either.
  auto dir = TextRasterizer::create("/tmp", 16);
  ASSERT_FALSE(dir);
  EXPECT_NE(dir.error().code, Errc::kOk);
}

TEST(TextTest, MeasureIsAdvanceBasedAndMonotonic) {
  auto r = make();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->measure(""), 0u);
  const std::string s = "glassbox: 0x7f00 RAM @ 4 KiB/px ~|_";
  uint32_t prev = 0;
  for (size_t n = 1; n <= s.size(); ++n) {
    const uint32_t w = r->measure(std::string_view(s).substr(0, n));
    EXPECT_GT(w, prev) << n;  // every printable glyph, space included, advances
    prev = w;
  }
  // Monospace: every glyph has the same advance.
  const uint32_t a = r->measure("a");
  EXPECT_GT(a, 0u);
  EXPECT_EQ(r->measure("glassbox"), 8 * a);
  EXPECT_EQ(r->measure(" "), a);
  // Bigger size, wider text.
  auto big = make(32);
  ASSERT_TRUE(big);
  EXPECT_GT(big->measure("glassbox"), r->measure("glassbox"));
}

TEST(TextTest, DrawStaysInsideTheTextBox) {
  auto r = make();
  ASSERT_TRUE(r);
  TextMask m = blank(200, 60);
  const int32_t x = 13, y = 7;
  const int32_t end = r->draw(m, x, y, "glassbox");
  EXPECT_EQ(end, x + static_cast<int32_t>(r->measure("glassbox")));
  EXPECT_EQ(m.width, 200u);
  EXPECT_EQ(m.height, 60u);
  ASSERT_EQ(m.data.size(), 200u * 60u);
  EXPECT_GT(set_pixels(m), 50u);
  size_t opaque = 0;
  for (uint32_t py = 0; py < m.height; ++py) {
    for (uint32_t px = 0; px < m.width; ++px) {
      const uint8_t v = m.data[py * m.width + px];
      if (v == 0) continue;
      opaque += v == 255;
      EXPECT_GE(px, uint32_t(x));
      EXPECT_LT(px, uint32_t(end));
      EXPECT_GE(py, uint32_t(y));
      EXPECT_LT(py, uint32_t(y) + r->line_height());
    }
  }
  EXPECT_GT(opaque, 0u);  // stems are fully covered, not just anti-aliased fringes
  // 'g' has a descender: some ink lies below the baseline.
  bool below = false;
  for (uint32_t py = y + r->ascent(); py < y + r->line_height(); ++py) {
    for (uint32_t px = x; px < uint32_t(x) + r->measure("g"); ++px) below |= m.data[py * 200 + px];
  }
  EXPECT_TRUE(below);
}

TEST(TextTest, DrawIsAMaxBlend) {
  auto r = make();
  ASSERT_TRUE(r);
  TextMask once = blank(120, 30);
  r->draw(once, 2, 3, "glassbox");
  TextMask twice = once;
  r->draw(twice, 2, 3, "glassbox");
  EXPECT_EQ(twice.data, once.data);
  TextMask full{120, 30, std::vector<uint8_t>(120 * 30, 255)};
  r->draw(full, 2, 3, "glassbox");
  EXPECT_EQ(set_pixels(full), full.data.size());
  for (uint8_t v : full.data) ASSERT_EQ(v, 255);
}

TEST(TextTest, PartlyOffMaskDrawIsTheSameInkClipped) {
  auto r = make();
  ASSERT_TRUE(r);
  const uint32_t w = r->measure("glassbox"), h = r->line_height();
  TextMask ref = blank(w, h);
  r->draw(ref, 0, 0, "glassbox");
  for (auto [dx, dy] : {std::pair{-5, -3}, {-20, 4}, {7, -6}, {int32_t(w) - 3, int32_t(h) - 2}}) {
    TextMask m = blank(w, h);
    r->draw(m, dx, dy, "glassbox");
    for (int32_t py = 0; py < int32_t(h); ++py) {
      for (int32_t px = 0; px < int32_t(w); ++px) {
        const int32_t sx = px - dx, sy = py - dy;
        const uint8_t want =
            (sx >= 0 && sx < int32_t(w) && sy >= 0 && sy < int32_t(h)) ? ref.data[sy * w + sx] : 0;
        ASSERT_EQ(m.data[py * w + px], want) << dx << "," << dy << " at " << px << "," << py;
      }
    }
  }
}

TEST(TextTest, HostileOffsetsAndMasksWriteNothingOutOfBounds) {
  auto r = make(32);
  ASSERT_TRUE(r);
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  constexpr int32_t kMax = std::numeric_limits<int32_t>::max();
  const std::string long_text(100000, 'W');
  for (auto [x, y] : {std::pair{kMin, kMin},
                      {kMax, kMax},
                      {kMin, 0},
                      {0, kMin},
                      {kMax, 0},
                      {0, kMax},
                      {-1000000, -1000000},
                      {1000000, 5},
                      {-30, -30},
                      {39, 19}}) {
    TextMask m = blank(40, 20);
    r->draw(m, x, y, "glassbox");
    r->draw(m, x, y, long_text);
    r->draw(m, x, y, std::string("\xff\0\n\t\x80", 5));
    EXPECT_EQ(m.width, 40u);
    EXPECT_EQ(m.height, 20u);
    EXPECT_EQ(m.data.size(), 40u * 20u);
  }
  // The pen position saturates instead of overflowing.
  TextMask m = blank(40, 20);
  EXPECT_EQ(r->draw(m, kMax - 5, 0, "glassbox"), kMax);
  EXPECT_EQ(r->draw(m, kMin, 0, ""), kMin);
  EXPECT_EQ(r->draw(m, kMin, 0, long_text), kMin + int32_t(r->measure(long_text)));
  // A long line across the mask fills only the mask.
  r->draw(m, -5, 0, long_text);
  EXPECT_GT(set_pixels(m), 0u);
  // Masks that lie about their size: empty, zero width, data shorter than width * height.
  TextMask empty;
  EXPECT_EQ(r->draw(empty, 0, 0, "glassbox"), int32_t(r->measure("glassbox")));
  EXPECT_TRUE(empty.data.empty());
  TextMask zero_w{0, 100, {}};
  r->draw(zero_w, 0, 0, "glassbox");
  EXPECT_TRUE(zero_w.data.empty());
  TextMask short_data{100, 100, std::vector<uint8_t>(100 * 3 + 7, 0)};
  r->draw(short_data, 0, 0, "glassbox");
  EXPECT_EQ(short_data.data.size(), 100u * 3 + 7);
  for (size_t i = 300; i < short_data.data.size(); ++i) EXPECT_EQ(short_data.data[i], 0) << i;
  TextMask no_data{100, 100, {}};
  r->draw(no_data, 0, 0, "glassbox");
  EXPECT_TRUE(no_data.data.empty());
}

TEST(TextTest, NonAsciiBytesDrawLikeQuestionMarks) {
  auto r = make();
  ASSERT_TRUE(r);
  // "é" is two UTF-8 bytes, so two '?'; control bytes, DEL, NUL and 0xff are one each.
  const std::string hostile = std::string("a\xc3\xa9z\x01\x7f") + '\0' + "\xff\n";
  const std::string plain = "a??z?????";
  ASSERT_EQ(hostile.size(), plain.size());
  EXPECT_EQ(r->measure(hostile), r->measure(plain));
  TextMask a = blank(200, 30), b = blank(200, 30);
  EXPECT_EQ(r->draw(a, 3, 2, hostile), r->draw(b, 3, 2, plain));
  EXPECT_EQ(a.data, b.data);
  EXPECT_GT(set_pixels(a), 0u);
}

}  // namespace
}  // namespace glassbox::compositor
