// The RAM pane as shown: the cell colours of `base` plus, per pixel,
//  - the dirty glow: a page written `age` ms ago (page_time[page] = its last change, in the
//    renderer's ms clock; 0 = not since start) mixes in magenta, fading linearly over glow_ms;
//  - the highlighted process (`mask`, ram_mask.comp: 1 where the pixel's page is one of its
//    pages): tinted, and drawn as the outline where a 4-neighbour is outside;
//  - labels: `labels` (8-bit coverage, pane-sized, drawn on the CPU) blended as white text.
// `index` holds each pixel's Hilbert index d (ram_index.comp, computed once), so no pass
// recomputes the curve per frame.
#version 450
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params {
  uint bits;
  uint bpp_log2;   // log2(bytes_per_pixel)
  uint now_ms;     // renderer clock
  uint glow_ms;    // 0: no glow
  uint highlight;  // 0: no highlighted process
  uint n_pages;    // RAM file pages (page_time's length)
} p;

layout(rgba8, binding = 0) readonly uniform image2D base;
layout(std430, binding = 1) readonly buffer PageTime { uint t[]; } page_time;
layout(r32ui, binding = 2) readonly uniform uimage2D index;
layout(r8, binding = 3) readonly uniform image2D mask;
layout(r8, binding = 4) readonly uniform image2D labels;
layout(rgba8, binding = 5) writeonly uniform image2D pane;

bool marked(ivec2 q) {
  int side = 1 << p.bits;
  if (q.x < 0 || q.y < 0 || q.x >= side || q.y >= side) return false;
  return imageLoad(mask, q).r > 0.5;
}

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  uint side = 1u << p.bits;
  if (xy.x >= side || xy.y >= side) return;
  ivec2 q = ivec2(xy);
  vec3 rgb = imageLoad(base, q).rgb;
  uint d = imageLoad(index, q).r;
  uint page = p.bpp_log2 >= 12u ? (d << (p.bpp_log2 - 12u)) : (d >> (12u - p.bpp_log2));
  if (p.glow_ms > 0u && page < p.n_pages) {
    uint t = page_time.t[page];
    uint age = p.now_ms - t;
    if (t != 0u && age < p.glow_ms) {
      float glow = 1.0 - float(age) / float(p.glow_ms);
      rgb = mix(rgb, vec3(1.0, 0.2, 0.75), 0.7 * glow);
    }
  }
  if (p.highlight != 0u && marked(q)) {
    bool edge = !marked(q + ivec2(1, 0)) || !marked(q + ivec2(-1, 0)) ||
                !marked(q + ivec2(0, 1)) || !marked(q + ivec2(0, -1));
    rgb = edge ? vec3(0.0, 1.0, 1.0) : mix(rgb, vec3(0.0, 0.8, 0.9), 0.25);
  }
  float cov = imageLoad(labels, q).r;
  if (cov > 0.0) rgb = mix(rgb * 0.35, vec3(1.0), cov);
  imageStore(pane, q, vec4(rgb, 1.0));
}
