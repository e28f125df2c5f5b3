// The RAM pane, incrementally: recomputes only the cells listed in `runs` (each entry a run of
// up to 256 consecutive Hilbert indices d: the cells the changed pages cover) into `base`.
// Cell d covers bytes [d * bytes_per_pixel, (d + 1) * bytes_per_pixel) of the RAM file and sits
// at hilbert_d_to_xy(d). Cells past the end of RAM are drawn in the "no RAM" grey.
#version 450
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 256) in;

layout(push_constant) uniform Params {
  uint bits;            // pane side = 1 << bits
  uint words_per_cell;  // bytes_per_pixel / 4
  uint ram_words;       // RAM file bytes / 4
  uint n_runs;
} p;

layout(std430, binding = 0) readonly buffer Ram { uint words[]; } ram;
layout(std430, binding = 1) readonly buffer Runs { uvec2 run[]; } runs;  // (first d, count)
layout(rgba8, binding = 2) writeonly uniform image2D base;

#include "hilbert.glsl"
#include "ram_colour.glsl"

void main() {
  uint entry = gl_WorkGroupID.y * 65535u + gl_WorkGroupID.x;
  if (entry >= p.n_runs) return;
  uvec2 r = runs.run[entry];
  if (gl_LocalInvocationID.x >= r.y) return;
  uint d = r.x + gl_LocalInvocationID.x;
  uint side = 1u << p.bits;
  if (d >= side * side && p.bits < 16u) return;
  uvec2 xy = hilbert_d_to_xy(d, p.bits);
  uint first = d * p.words_per_cell;
  if (first >= p.ram_words) {
    imageStore(base, ivec2(xy), vec4(20.0, 20.0, 26.0, 255.0) / 255.0);
    return;
  }
  uint n = min(p.words_per_cell, p.ram_words - first);
  uvec4 c = cell_colour(first, n);
  imageStore(base, ivec2(xy), vec4(vec3(c.rgb) / 255.0, 1.0));
}
