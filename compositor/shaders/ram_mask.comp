// The highlighted process's mask: 1 where the pixel's page (from `index`, its Hilbert index d)
// lies in one of `ranges` (sorted, disjoint [first_page, end_page) runs of RAM-file pages),
// found by binary search (at most 32 steps). Run only when the highlight changes.
#version 450
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params {
  uint bits;
  uint bpp_log2;
  uint n_ranges;
} p;

layout(r32ui, binding = 0) readonly uniform uimage2D index;
layout(std430, binding = 1) readonly buffer Ranges { uvec2 r[]; } ranges;
layout(r8, binding = 2) writeonly uniform image2D mask;

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  uint side = 1u << p.bits;
  if (xy.x >= side || xy.y >= side) return;
  uint d = imageLoad(index, ivec2(xy)).r;
  uint page = p.bpp_log2 >= 12u ? (d << (p.bpp_log2 - 12u)) : (d >> (12u - p.bpp_log2));
  uint lo = 0u, hi = p.n_ranges;  // first range with end_page > page
  for (uint i = 0u; i < 32u && lo < hi; ++i) {
    uint mid = (lo + hi) / 2u;
    if (ranges.r[mid].y <= page) lo = mid + 1u; else hi = mid;
  }
  bool in_range = lo < p.n_ranges && ranges.r[lo].x <= page;
  imageStore(mask, ivec2(xy), vec4(in_range ? 1.0 : 0.0));
}
