#include "compositor/ram_map.hpp"

#include <gtest/gtest.h>

#include <set>

namespace glassbox::compositor {
namespace {

// pc machine with 3 GiB + 1 GiB: RAM below the PCI hole and above 4 GiB, one file.
shared::RamLayout pc_layout() {
  std::vector<shared::RamRegion> r = {
      {Gpa{0}, 0xc0000000, 0},
      {Gpa{0x100000000}, 0x40000000, 0xc0000000},
  };
  return *shared::RamLayout::from_regions(r, 0x100000000);
}

TEST(RamMapTest, LocateAndGpaAreInversesAcrossTheHole) {
  auto map = RamMap::create(pc_layout(), 4096);
  ASSERT_TRUE(map) << map.error().to_string();
  EXPECT_EQ(map->pane_width(), 1024u);  // 4 GiB / 4 KiB = 2^20 cells
  EXPECT_EQ(map->pixels_used(), 1u << 20);
  for (uint64_t g : {uint64_t{0}, uint64_t{0x1000}, uint64_t{0x7010000}, uint64_t{0xbffff000},
                     uint64_t{0x100000000}, uint64_t{0x13ffff000}}) {
    auto c = map->locate(Gpa{g});
    ASSERT_TRUE(c) << std::hex << g;
    auto back = map->gpa_at(c->x, c->y);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->value, g) << std::hex << g;
  }
  // A gpa inside a pixel maps to the pixel's first byte.
  auto c = map->locate(Gpa{0x7010123});
  EXPECT_EQ(map->gpa_at(c->x, c->y)->value, 0x7010000u);
  // The first byte above the hole follows the last byte below it on the curve.
  auto below = map->locate(Gpa{0xbffff000}), above = map->locate(Gpa{0x100000000});
  EXPECT_EQ(std::abs(int(below->x) - int(above->x)) + std::abs(int(below->y) - int(above->y)), 1);
}

TEST(RamMapTest, BadInputIsAClearError) {
  auto map = RamMap::create(pc_layout(), 4096);
  ASSERT_TRUE(map);
  auto hole = map->locate(Gpa{0xd0000000});
  ASSERT_FALSE(hole);
  EXPECT_EQ(hole.error().code, Errc::kOutOfRange);
  EXPECT_NE(hole.error().message.find("outside guest RAM"), std::string::npos);
  EXPECT_FALSE(map->locate(Gpa{0x200000000}));
  EXPECT_FALSE(map->gpa_at(1024, 0));
  EXPECT_EQ(RamMap::create(pc_layout(), 3).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(RamMap::create(pc_layout(), 0).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(RamMap::create(shared::RamLayout::identity(uint64_t{1} << 42), 1).error().code,
            Errc::kOutOfRange);
  // A pane with unused pixels past the end of RAM: 256 MiB + 4 KiB at 4 KiB per pixel.
  auto odd = RamMap::create(shared::RamLayout::identity(0x10001000), 4096);
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->pixels_used(), 65537u);
  EXPECT_EQ(odd->pane_width(), 512u);
  size_t past = 0;
  for (uint32_t y = 0; y < 512; ++y) {
    for (uint32_t x = 0; x < 512; ++x) past += !odd->gpa_at(x, y);
  }
  EXPECT_EQ(past, 512u * 512u - 65537u);
}

TEST(RamMapTest, ByteClassesHaveFiveDistinctColoursAndPixelsMixThem) {
  EXPECT_EQ(byte_class(0x00), ByteClass::kZero);
  EXPECT_EQ(byte_class(0x01), ByteClass::kControl);
  EXPECT_EQ(byte_class(0x1f), ByteClass::kControl);
  EXPECT_EQ(byte_class(0x7f), ByteClass::kControl);
  EXPECT_EQ(byte_class(' '), ByteClass::kPrintable);
  EXPECT_EQ(byte_class('~'), ByteClass::kPrintable);
  EXPECT_EQ(byte_class(0x80), ByteClass::kHigh);
  EXPECT_EQ(byte_class(0xfe), ByteClass::kHigh);
  EXPECT_EQ(byte_class(0xff), ByteClass::kFF);
  std::set<std::tuple<int, int, int>> colours;
  for (unsigned c = 0; c < kNumByteClasses; ++c) {
    const Rgb8 k = class_colour(static_cast<ByteClass>(c));
    colours.emplace(k.r, k.g, k.b);
  }
  EXPECT_EQ(colours.size(), kNumByteClasses);
  const uint8_t ff[4] = {0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(pixel_colour(ff), (Rgb8{255, 255, 255}));
  const uint8_t half[2] = {0x00, 0xff};
  EXPECT_EQ(pixel_colour(half), (Rgb8{127, 127, 127}));
  const uint8_t text[3] = {'a', 'b', 'c'};
  EXPECT_EQ(pixel_colour(text), class_colour(ByteClass::kPrintable));
}

}  // namespace
}  // namespace glassbox::compositor
