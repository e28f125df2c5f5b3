// Hilbert curves in GLSL: Skilling's transpose form (J. Skilling, "Programming the Hilbert
// curve", AIP Conf. Proc. 707, 2004), line for line the algorithm of compositor/hilbert.cpp
// (hilbert_d_to_xy, hilbert_xy_to_d, hilbert_d_to_xyz). Indices are 32-bit here: 2D curves up
// to 2^16 x 2^16 cells, 3D up to 2^10 per axis. Loops are bounded by `bits`.

uvec2 hilbert_d_to_xy(uint d, uint bits) {
  uint X[2] = uint[2](0u, 0u);
  for (uint b = 0u; b < bits; ++b) {
    X[0] |= ((d >> (2u * b + 1u)) & 1u) << b;
    X[1] |= ((d >> (2u * b)) & 1u) << b;
  }
  uint top = 2u << (bits - 1u);
  uint t = X[1] >> 1u;
  X[1] ^= X[0];
  X[0] ^= t;
  for (uint q = 2u; q != top; q <<= 1u) {
    uint p = q - 1u;
    for (int i = 1; i >= 0; --i) {
      if ((X[i] & q) != 0u) {
        X[0] ^= p;
      } else {
        t = (X[0] ^ X[i]) & p;
        X[0] ^= t;
        X[i] ^= t;
      }
    }
  }
  return uvec2(X[0], X[1]);
}

uint hilbert_xy_to_d(uvec2 xy, uint bits) {
  uint X[2] = uint[2](xy.x, xy.y);
  uint m = 1u << (bits - 1u);
  for (uint q = m; q > 1u; q >>= 1u) {
    uint p = q - 1u;
    for (uint i = 0u; i < 2u; ++i) {
      if ((X[i] & q) != 0u) {
        X[0] ^= p;
      } else {
        uint t = (X[0] ^ X[i]) & p;
        X[0] ^= t;
        X[i] ^= t;
      }
    }
  }
  X[1] ^= X[0];
  uint t = 0u;
  for (uint q = m; q > 1u; q >>= 1u) {
    if ((X[1] & q) != 0u) t ^= q - 1u;
  }
  X[0] ^= t;
  X[1] ^= t;
  uint d = 0u;
  for (uint b = 0u; b < bits; ++b) {
    d |= ((X[0] >> b) & 1u) << (2u * b + 1u);
    d |= ((X[1] >> b) & 1u) << (2u * b);
  }
  return d;
}

uvec3 hilbert_d_to_xyz(uint d, uint bits) {
  uint X[3] = uint[3](0u, 0u, 0u);
  for (uint b = 0u; b < bits; ++b) {
    X[0] |= ((d >> (3u * b + 2u)) & 1u) << b;
    X[1] |= ((d >> (3u * b + 1u)) & 1u) << b;
    X[2] |= ((d >> (3u * b)) & 1u) << b;
  }
  uint top = 2u << (bits - 1u);
  uint t = X[2] >> 1u;
  X[2] ^= X[1];
  X[1] ^= X[0];
  X[0] ^= t;
  for (uint q = 2u; q != top; q <<= 1u) {
    uint p = q - 1u;
    for (int i = 2; i >= 0; --i) {
      if ((X[i] & q) != 0u) {
        X[0] ^= p;
      } else {
        t = (X[0] ^ X[i]) & p;
        X[0] ^= t;
        X[i] ^= t;
      }
    }
  }
  return uvec3(X[0], X[1], X[2]);
}

// The byte classes and colours of compositor/ram_map.hpp (zero, low control, printable ASCII,
// high, 0xff).
const uvec3 kClassColour[5] = uvec3[5](uvec3(0u, 0u, 0u), uvec3(38u, 95u, 255u),
                                       uvec3(190u, 230u, 60u), uvec3(255u, 140u, 30u),
                                       uvec3(255u, 255u, 255u));

uint byte_class(uint b) {
  if (b == 0u) return 0u;
  if (b == 255u) return 4u;
  if (b < 32u || b == 127u) return 1u;
  if (b < 127u) return 2u;
  return 3u;
}
