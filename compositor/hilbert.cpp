#include "compositor/hilbert.hpp"

namespace glassbox::compositor {
namespace {

// Skilling's TransposetoAxes: X holds the transposed index on entry, the axes on return.
template <unsigned N>
void transpose_to_axes(std::array<uint32_t, N>& x, unsigned bits) {
  const uint32_t top = 2u << (bits - 1);
  // Gray decode by H ^ (H / 2).
  uint32_t t = x[N - 1] >> 1;
  for (unsigned i = N - 1; i > 0; --i) x[i] ^= x[i - 1];
  x[0] ^= t;
  // Undo excess work.
  for (uint32_t q = 2; q != top; q <<= 1) {
    const uint32_t p = q - 1;
    for (unsigned i = N; i-- > 0;) {
      if (x[i] & q) {
        x[0] ^= p;  // invert
      } else {
        t = (x[0] ^ x[i]) & p;  // exchange
        x[0] ^= t;
        x[i] ^= t;
      }
    }
  }
}

// Skilling's AxestoTranspose: X holds the axes on entry, the transposed index on return.
template <unsigned N>
void axes_to_transpose(std::array<uint32_t, N>& x, unsigned bits) {
  const uint32_t m = 1u << (bits - 1);
  // Inverse undo.
  for (uint32_t q = m; q > 1; q >>= 1) {
    const uint32_t p = q - 1;
    for (unsigned i = 0; i < N; ++i) {
      if (x[i] & q) {
        x[0] ^= p;
      } else {
        const uint32_t t = (x[0] ^ x[i]) & p;
        x[0] ^= t;
        x[i] ^= t;
      }
    }
  }
  // Gray encode.
  for (unsigned i = 1; i < N; ++i) x[i] ^= x[i - 1];
  uint32_t t = 0;
  for (uint32_t q = m; q > 1; q >>= 1) {
    if (x[N - 1] & q) t ^= q - 1;
  }
  for (unsigned i = 0; i < N; ++i) x[i] ^= t;
}

// The transposed form interleaves the index's bits across the N words, most significant
// first: bit (bits-1-b) of word i is index bit N*(bits-1-b) + (N-1-i).
template <unsigned N>
std::array<uint32_t, N> index_to_transpose(uint64_t d, unsigned bits) {
  std::array<uint32_t, N> x{};
  for (unsigned b = 0; b < bits; ++b) {
    for (unsigned i = 0; i < N; ++i) {
      const unsigned bit = N * b + (N - 1 - i);
      x[i] |= static_cast<uint32_t>((d >> bit) & 1u) << b;
    }
  }
  return x;
}

template <unsigned N>
uint64_t transpose_to_index(const std::array<uint32_t, N>& x, unsigned bits) {
  uint64_t d = 0;
  for (unsigned b = 0; b < bits; ++b) {
    for (unsigned i = 0; i < N; ++i) {
      const unsigned bit = N * b + (N - 1 - i);
      d |= static_cast<uint64_t>((x[i] >> b) & 1u) << bit;
    }
  }
  return d;
}

unsigned clamp_bits(unsigned bits, unsigned max) {
  return bits < 1 ? 1 : (bits > max ? max : bits);
}

}  // namespace

Cell2d hilbert_d_to_xy(uint64_t d, unsigned bits) noexcept {
  bits = clamp_bits(bits, kMaxBits2d);
  auto x = index_to_transpose<2>(d, bits);
  transpose_to_axes<2>(x, bits);
  return {x[0], x[1]};
}

uint64_t hilbert_xy_to_d(Cell2d cell, unsigned bits) noexcept {
  bits = clamp_bits(bits, kMaxBits2d);
  const uint32_t mask = bits >= 32 ? ~0u : (1u << bits) - 1;
  std::array<uint32_t, 2> x{cell.x & mask, cell.y & mask};
  axes_to_transpose<2>(x, bits);
  return transpose_to_index<2>(x, bits);
}

Cell3d hilbert_d_to_xyz(uint64_t d, unsigned bits) noexcept {
  bits = clamp_bits(bits, kMaxBits3d);
  auto x = index_to_transpose<3>(d, bits);
  transpose_to_axes<3>(x, bits);
  return {x[0], x[1], x[2]};
}

uint64_t hilbert_xyz_to_d(Cell3d cell, unsigned bits) noexcept {
  bits = clamp_bits(bits, kMaxBits3d);
  const uint32_t mask = (1u << bits) - 1;
  std::array<uint32_t, 3> x{cell.x & mask, cell.y & mask, cell.z & mask};
  axes_to_transpose<3>(x, bits);
  return transpose_to_index<3>(x, bits);
}

}  // namespace glassbox::compositor
