// The 3D view's volume, incrementally: recomputes the voxels listed in `runs` (runs of up to
// 256 consecutive 3D Hilbert indices) into `volume`: rgb = the cell colour of its bytes
// (ram_colour.glsl), alpha = the share of non-zero bytes (zero RAM is empty space).
#version 450
#extension GL_GOOGLE_include_directive : require
layout(local_size_x = 256) in;

layout(push_constant) uniform Params {
  uint bits;             // volume side = 1 << bits
  uint words_per_voxel;  // bytes_per_voxel / 4
  uint ram_words;
  uint n_runs;
} p;

layout(std430, binding = 0) readonly buffer Ram { uint words[]; } ram;
layout(std430, binding = 1) readonly buffer Runs { uvec2 run[]; } runs;
layout(rgba8, binding = 2) writeonly uniform image3D volume;

#include "hilbert.glsl"
#include "ram_colour.glsl"

void main() {
  uint entry = gl_WorkGroupID.y * 65535u + gl_WorkGroupID.x;
  if (entry >= p.n_runs) return;
  uvec2 r = runs.run[entry];
  if (gl_LocalInvocationID.x >= r.y) return;
  uint d = r.x + gl_LocalInvocationID.x;
  uint side = 1u << p.bits;
  if (d >= side * side * side) return;
  uvec3 xyz = hilbert_d_to_xyz(d, p.bits);
  uint first = d * p.words_per_voxel;
  if (first >= p.ram_words) {
    imageStore(volume, ivec3(xyz), vec4(0.0));
    return;
  }
  uint n = min(p.words_per_voxel, p.ram_words - first);
  uvec4 c = cell_colour(first, n);
  imageStore(volume, ivec3(xyz), vec4(vec3(c.rgb) / 255.0, float(c.w) / float(n * 4u)));
}
