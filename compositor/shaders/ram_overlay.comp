// The RAM pane as shown: the cell colours of `base` plus, per pixel,
//  - the dirty glow: a page written `age` ms ago (page_time[page] = its last change, in the
//    renderer's ms clock; 0 = not since start) mixes in magenta, fading linearly over glow_ms;
//  - the highlighted process: pixels whose page lies in one of its gpa runs (`ranges`, sorted
//    [first_page, end_page) in RAM-file pages) are tinted, and those with a 4-neighbour outside
//    the runs are drawn as the outline;
//  - labels: `labels` (8-bit coverage, pane-sized, drawn on the CPU) blended as white text.
#version 450
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params {
  uint bits;
  uint bpp_log2;   // log2(bytes_per_pixel)
  uint now_ms;     // renderer clock
  uint glow_ms;    // 0: no glow
  uint n_ranges;
  uint n_pages;    // RAM file pages (page_time's length)
} p;

layout(rgba8, binding = 0) readonly uniform image2D base;
layout(std430, binding = 1) readonly buffer PageTime { uint t[]; } page_time;
layout(std430, binding = 2) readonly buffer Ranges { uvec2 r[]; } ranges;
layout(r8, binding = 3) readonly uniform image2D labels;
layout(rgba8, binding = 4) writeonly uniform image2D pane;

#include "hilbert.glsl"

uint page_of(uint d) {
  return p.bpp_log2 >= 12u ? (d << (p.bpp_log2 - 12u)) : (d >> (12u - p.bpp_log2));
}

bool highlighted(uvec2 xy) {
  uint side = 1u << p.bits;
  if (xy.x >= side || xy.y >= side || p.n_ranges == 0u) return false;
  uint page = page_of(hilbert_xy_to_d(xy, p.bits));
  uint lo = 0u, hi = p.n_ranges;  // first range with end_page > page
  for (uint i = 0u; i < 32u && lo < hi; ++i) {
    uint mid = (lo + hi) / 2u;
    if (ranges.r[mid].y <= page) lo = mid + 1u; else hi = mid;
  }
  return lo < p.n_ranges && ranges.r[lo].x <= page;
}

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  uint side = 1u << p.bits;
  if (xy.x >= side || xy.y >= side) return;
  vec3 rgb = imageLoad(base, ivec2(xy)).rgb;
  uint d = hilbert_xy_to_d(xy, p.bits);
  uint page = page_of(d);
  if (p.glow_ms > 0u && page < p.n_pages) {
    uint t = page_time.t[page];
    uint age = p.now_ms - t;
    if (t != 0u && age < p.glow_ms) {
      float glow = 1.0 - float(age) / float(p.glow_ms);
      rgb = mix(rgb, vec3(1.0, 0.2, 0.75), 0.7 * glow);
    }
  }
  if (p.n_ranges > 0u && highlighted(xy)) {
    bool edge = !highlighted(uvec2(xy.x + 1u, xy.y)) || !highlighted(uvec2(xy.x, xy.y + 1u)) ||
                xy.x == 0u || xy.y == 0u || !highlighted(uvec2(xy.x - 1u, xy.y)) ||
                !highlighted(uvec2(xy.x, xy.y - 1u));
    rgb = edge ? vec3(0.0, 1.0, 1.0) : mix(rgb, vec3(0.0, 0.8, 0.9), 0.25);
  }
  float cov = imageLoad(labels, ivec2(xy)).r;
  if (cov > 0.0) rgb = mix(rgb * 0.35, vec3(1.0), cov);
  imageStore(pane, ivec2(xy), vec4(rgb, 1.0));
}
