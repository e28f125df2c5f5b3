// The RAM pane: one invocation per pixel. The pixel's Hilbert index d (Skilling 2004, the same
// transform as compositor/hilbert.cpp's hilbert_xy_to_d) selects bytes
// [d * bytes_per_pixel, (d + 1) * bytes_per_pixel) of the RAM file; their byte classes are
// counted and the class colours mixed in proportion (compositor/ram_map.cpp's pixel_colour,
// integer arithmetic, rounded down). Dirty pages glow: `dirty_age` holds per page the frames
// since it last changed, and the glow fades over `glow_frames`.
#version 450
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params {
  uint bits;             // pane side = 1 << bits
  uint bytes_per_pixel;  // power of two, >= 4 (bytes are read as 32-bit words)
  uint ram_words;        // RAM file size / 4
  uint glow_frames;      // frames a changed page keeps glowing
} p;

layout(std430, binding = 0) readonly buffer Ram { uint words[]; } ram;
layout(std430, binding = 1) readonly buffer DirtyAge { uint age[]; } dirty;  // per 4 KiB page
layout(rgba8, binding = 2) writeonly uniform image2D pane;

const vec3 kColour[5] = vec3[5](vec3(0, 0, 0), vec3(38, 95, 255), vec3(190, 230, 60),
                                vec3(255, 140, 30), vec3(255, 255, 255));

uint byte_class(uint b) {
  if (b == 0u) return 0u;
  if (b == 255u) return 4u;
  if (b < 32u || b == 127u) return 1u;
  if (b < 127u) return 2u;
  return 3u;
}

// Skilling's AxestoTranspose for 2 axes, then the transposed bits interleaved into d.
uint xy_to_d(uint x, uint y, uint bits) {
  uint X[2] = uint[2](x, y);
  uint m = 1u << (bits - 1u);
  for (uint q = m; q > 1u; q >>= 1u) {
    uint pm = q - 1u;
    for (uint i = 0u; i < 2u; ++i) {
      if ((X[i] & q) != 0u) {
        X[0] ^= pm;
      } else {
        uint t = (X[0] ^ X[i]) & pm;
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

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  uint side = 1u << p.bits;
  if (xy.x >= side || xy.y >= side) return;
  uint d = xy_to_d(xy.x, xy.y, p.bits);
  uint words_per_pixel = p.bytes_per_pixel / 4u;
  uint first = d * words_per_pixel;
  if (first >= p.ram_words) {
    imageStore(pane, ivec2(xy), vec4(0.08, 0.08, 0.1, 1.0));  // past the end of RAM
    return;
  }
  uint counts[5] = uint[5](0u, 0u, 0u, 0u, 0u);
  uint last = min(first + words_per_pixel, p.ram_words);
  for (uint w = first; w < last; ++w) {
    uint v = ram.words[w];
    counts[byte_class(v & 255u)]++;
    counts[byte_class((v >> 8u) & 255u)]++;
    counts[byte_class((v >> 16u) & 255u)]++;
    counts[byte_class(v >> 24u)]++;
  }
  uint n = (last - first) * 4u;
  uvec3 sum = uvec3(0u);
  for (uint c = 0u; c < 5u; ++c) sum += counts[c] * uvec3(kColour[c]);
  vec3 rgb = vec3(sum / n) / 255.0;
  uint page = (first * 4u) / 4096u;
  uint age = dirty.age[page];
  if (age < p.glow_frames) {
    float glow = 1.0 - float(age) / float(p.glow_frames);
    rgb = mix(rgb, vec3(1.0, 0.25, 0.6), 0.6 * glow);
  }
  imageStore(pane, ivec2(xy), vec4(rgb, 1.0));
}
