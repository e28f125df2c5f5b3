// Hilbert curves in 2 and 3 dimensions: the CPU reference for the compositor's RAM map (the
// compute shaders implement the same transforms; tests read them back and compare).
//
// Source: J. Skilling, "Programming the Hilbert curve", AIP Conference Proceedings 707, 381
// (2004): the "transpose" form of the index, converted to and from axes with Gray-code
// inversion and the per-bit exchange/inversion of axes. One algorithm for any dimension, no
// tables, loops bounded by the number of bits: it runs as written in GLSL.
//
// Shapes: `bits` per axis (1..16 in 2D, 1..10 in 3D), so the 2D curve covers a square of side
// 2^bits (4^bits cells) and the 3D curve a cube of side 2^bits (8^bits cells). The index d
// runs 0 .. cells - 1; consecutive d are adjacent cells (differ by 1 in exactly one axis).
//
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstdint>

namespace glassbox::compositor {

inline constexpr unsigned kMaxBits2d = 16;  // 65536 x 65536: 2^32 cells
inline constexpr unsigned kMaxBits3d = 10;  // 1024^3: 2^30 cells

struct Cell2d {
  uint32_t x = 0, y = 0;
  bool operator==(const Cell2d&) const = default;
};
struct Cell3d {
  uint32_t x = 0, y = 0, z = 0;
  bool operator==(const Cell3d&) const = default;
};

// d in [0, 4^bits) -> cell; cell coordinates < 2^bits -> d. Out-of-range input is reduced
// modulo the curve's size (callers check ranges; see RamMap for the checked API).
Cell2d hilbert_d_to_xy(uint64_t d, unsigned bits) noexcept;
uint64_t hilbert_xy_to_d(Cell2d cell, unsigned bits) noexcept;

// d in [0, 8^bits) -> cell and back.
Cell3d hilbert_d_to_xyz(uint64_t d, unsigned bits) noexcept;
uint64_t hilbert_xyz_to_d(Cell3d cell, unsigned bits) noexcept;

}  // namespace glassbox::compositor
