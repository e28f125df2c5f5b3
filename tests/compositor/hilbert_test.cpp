#include "compositor/hilbert.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <set>

namespace glassbox::compositor {
namespace {

TEST(HilbertTest, TwoDimensionalCurveIsABijectionOfAdjacentCells) {
  for (unsigned bits = 1; bits <= 7; ++bits) {
    const uint64_t cells = uint64_t{1} << (2 * bits);
    std::set<std::pair<uint32_t, uint32_t>> seen;
    Cell2d prev{};
    for (uint64_t d = 0; d < cells; ++d) {
      const Cell2d c = hilbert_d_to_xy(d, bits);
      ASSERT_LT(c.x, 1u << bits);
      ASSERT_LT(c.y, 1u << bits);
      ASSERT_TRUE(seen.emplace(c.x, c.y).second) << "bits " << bits << " d " << d;
      ASSERT_EQ(hilbert_xy_to_d(c, bits), d) << "bits " << bits;
      if (d > 0) {
        const int dx = std::abs(int(c.x) - int(prev.x)), dy = std::abs(int(c.y) - int(prev.y));
        ASSERT_EQ(dx + dy, 1) << "cells " << d - 1 << " and " << d << " are not 4-adjacent";
      }
      prev = c;
    }
    EXPECT_EQ(hilbert_d_to_xy(0, bits), (Cell2d{0, 0}));
  }
}

TEST(HilbertTest, ThreeDimensionalCurveIsABijectionOfAdjacentCells) {
  for (unsigned bits = 1; bits <= 5; ++bits) {
    const uint64_t cells = uint64_t{1} << (3 * bits);
    std::vector<bool> seen(cells);
    Cell3d prev{};
    for (uint64_t d = 0; d < cells; ++d) {
      const Cell3d c = hilbert_d_to_xyz(d, bits);
      const uint64_t flat = (uint64_t{c.z} << (2 * bits)) | (uint64_t{c.y} << bits) | c.x;
      ASSERT_LT(flat, cells);
      ASSERT_FALSE(seen[flat]);
      seen[flat] = true;
      ASSERT_EQ(hilbert_xyz_to_d(c, bits), d);
      if (d > 0) {
        const int s = std::abs(int(c.x) - int(prev.x)) + std::abs(int(c.y) - int(prev.y)) +
                      std::abs(int(c.z) - int(prev.z));
        ASSERT_EQ(s, 1) << "3D cells " << d - 1 << " and " << d << " are not 6-adjacent";
      }
      prev = c;
    }
  }
}

TEST(HilbertTest, LargeCurvesRoundTripAtRandomPoints) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t d = rng() & ((uint64_t{1} << 32) - 1);
    const Cell2d c = hilbert_d_to_xy(d, 16);
    ASSERT_EQ(hilbert_xy_to_d(c, 16), d);
    const Cell2d n = hilbert_d_to_xy((d + 1) & 0xffffffffu, 16);
    if (d + 1 < (uint64_t{1} << 32)) {
      ASSERT_EQ(std::abs(int64_t(c.x) - int64_t(n.x)) + std::abs(int64_t(c.y) - int64_t(n.y)), 1);
    }
    const uint64_t d3 = rng() & ((uint64_t{1} << 30) - 1);
    ASSERT_EQ(hilbert_xyz_to_d(hilbert_d_to_xyz(d3, 10), 10), d3);
  }
}

}  // namespace
}  // namespace glassbox::compositor
