// The 3D view: the RAM volume (volume_cells.comp: bytes on a 3D Hilbert curve, alpha = share of
// non-zero bytes) ray-marched from an orbit camera. Each pixel's ray is clipped to the unit cube
// (slab test), then walks the voxel grid cell by cell (J. Amanatides and A. Woo, "A Fast Voxel
// Traversal Algorithm for Ray Tracing", Eurographics 1987), compositing front to back with
// per-voxel opacity alpha * density, stopping at 0.98 opacity or after 3 * side steps.
#version 450
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params {
  uint width;
  uint height;
  uint bits;        // volume side = 1 << bits
  float yaw;        // radians, around the vertical axis
  float pitch;      // radians, -1.5..1.5
  float distance;   // camera distance from the cube's centre, in cube sides
  float density;    // opacity per voxel at alpha 1
  float fov_tan;    // tan(vertical fov / 2)
} p;

layout(rgba8, binding = 0) readonly uniform image3D volume;
layout(rgba8, binding = 1) writeonly uniform image2D pane;

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  if (xy.x >= p.width || xy.y >= p.height) return;
  float side = float(1u << p.bits);
  vec3 centre = vec3(0.5);
  vec3 eye = centre + p.distance * vec3(cos(p.pitch) * sin(p.yaw), sin(p.pitch),
                                        cos(p.pitch) * cos(p.yaw));
  vec3 fwd = normalize(centre - eye);
  vec3 right = normalize(cross(fwd, vec3(0.0, 1.0, 0.0)));
  vec3 up = cross(right, fwd);
  vec2 ndc = ((vec2(xy) + 0.5) / vec2(p.width, p.height)) * 2.0 - 1.0;
  float aspect = float(p.width) / float(p.height);
  vec3 dir = normalize(fwd + ndc.x * aspect * p.fov_tan * right - ndc.y * p.fov_tan * up);

  vec3 bg = mix(vec3(0.02, 0.02, 0.04), vec3(0.07, 0.07, 0.1), float(xy.y) / float(p.height));
  vec3 inv = 1.0 / max(abs(dir), vec3(1e-8)) * sign(dir + 1e-12);
  vec3 t0 = (vec3(0.0) - eye) * inv, t1 = (vec3(1.0) - eye) * inv;
  vec3 tmin = min(t0, t1), tmax = max(t0, t1);
  float enter = max(max(tmin.x, tmin.y), max(tmin.z, 0.0));
  float exit = min(min(tmax.x, tmax.y), tmax.z);
  if (enter >= exit) {
    imageStore(pane, ivec2(xy), vec4(bg, 1.0));
    return;
  }
  vec3 pos = (eye + dir * (enter + 1e-5)) * side;  // in voxels
  ivec3 cell = clamp(ivec3(floor(pos)), ivec3(0), ivec3(int(side) - 1));
  ivec3 step = ivec3(sign(dir));
  vec3 delta = abs(1.0 / max(abs(dir), vec3(1e-8)));
  vec3 next = (vec3(cell) + max(vec3(step), vec3(0.0)) - pos) / dir;
  next = mix(next, vec3(1e30), equal(step, ivec3(0)));
  vec3 acc = vec3(0.0);
  float alpha = 0.0;
  uint max_steps = 3u << p.bits;
  for (uint i = 0u; i < max_steps && alpha < 0.98; ++i) {
    vec4 v = imageLoad(volume, cell);
    float a = clamp(v.a * p.density, 0.0, 1.0);
    acc += (1.0 - alpha) * a * v.rgb;
    alpha += (1.0 - alpha) * a;
    if (next.x < next.y && next.x < next.z) {
      cell.x += step.x; next.x += delta.x;
    } else if (next.y < next.z) {
      cell.y += step.y; next.y += delta.y;
    } else {
      cell.z += step.z; next.z += delta.z;
    }
    if (any(lessThan(cell, ivec3(0))) || any(greaterThanEqual(cell, ivec3(int(side))))) break;
  }
  imageStore(pane, ivec2(xy), vec4(acc + (1.0 - alpha) * bg, 1.0));
}
