// Each RAM-pane pixel's Hilbert index d (hilbert.glsl), computed once per renderer so the
// per-frame passes read it instead of recomputing the curve.
#version 450
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params { uint bits; } p;
layout(r32ui, binding = 0) writeonly uniform uimage2D index;

#include "hilbert.glsl"

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  uint side = 1u << p.bits;
  if (xy.x >= side || xy.y >= side) return;
  imageStore(index, ivec2(xy), uvec4(hilbert_xy_to_d(xy, p.bits), 0u, 0u, 0u));
}
