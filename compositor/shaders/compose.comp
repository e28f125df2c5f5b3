// The canvas (what the window and `glassbox screenshot --pane all` show): a HUD strip on top
// (`hud`: 8-bit text coverage drawn on the CPU), below it the screen pane on the left and the
// RAM pane (2D map or 3D view) on the right, each scaled to fit its half with its aspect kept
// (nearest texel). A stale source (publisher gone) gets a red frame; the last image stays.
#version 450
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params {
  uint width;
  uint height;
  uint hud_height;
  uint screen_w, screen_h;  // 0: no frame yet
  uint ram_w, ram_h;
  uint flags;               // 1: screen stale, 2: ram stale
} p;

layout(rgba8, binding = 0) readonly uniform image2D screen;
layout(rgba8, binding = 1) readonly uniform image2D ram;
layout(r8, binding = 2) readonly uniform image2D hud;
layout(rgba8, binding = 3) writeonly uniform image2D canvas;

// Fits a w x h image into the box at `origin` of `box` pixels: returns the source texel of
// canvas pixel `q`, or -1 outside the image; sets `border` on its 2-pixel frame.
ivec2 fit(ivec2 q, ivec2 origin, ivec2 box, uint w, uint h, out bool border) {
  border = false;
  if (w == 0u || h == 0u) return ivec2(-1);
  float s = min(float(box.x) / float(w), float(box.y) / float(h));
  vec2 size = vec2(w, h) * s;
  vec2 o = vec2(origin) + (vec2(box) - size) * 0.5;
  vec2 rel = vec2(q) + 0.5 - o;
  if (any(lessThan(rel, vec2(-2.0))) || any(greaterThanEqual(rel, size + 2.0))) return ivec2(-1);
  if (any(lessThan(rel, vec2(0.0))) || any(greaterThanEqual(rel, size))) {
    border = true;
    return ivec2(-1);
  }
  return clamp(ivec2(rel / s), ivec2(0), ivec2(int(w) - 1, int(h) - 1));
}

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  if (xy.x >= p.width || xy.y >= p.height) return;
  vec3 rgb = vec3(0.05, 0.05, 0.07);
  if (xy.y < p.hud_height) {
    float cov = imageLoad(hud, ivec2(xy)).r;
    rgb = mix(vec3(0.1, 0.1, 0.13), vec3(0.92, 0.95, 1.0), cov);
  } else {
    uint half_w = p.width / 2u;
    ivec2 q = ivec2(xy);
    ivec2 box = ivec2(int(half_w) - 8, int(p.height - p.hud_height) - 8);
    bool border = false;
    if (xy.x < half_w) {
      ivec2 s = fit(q, ivec2(4, int(p.hud_height) + 4), box, p.screen_w, p.screen_h, border);
      if (s.x >= 0) rgb = imageLoad(screen, s).rgb;
      if (border) rgb = (p.flags & 1u) != 0u ? vec3(0.9, 0.1, 0.1) : vec3(0.2, 0.2, 0.25);
    } else {
      ivec2 s = fit(q, ivec2(int(half_w) + 4, int(p.hud_height) + 4), box, p.ram_w, p.ram_h,
                    border);
      if (s.x >= 0) rgb = imageLoad(ram, s).rgb;
      if (border) rgb = (p.flags & 2u) != 0u ? vec3(0.9, 0.1, 0.1) : vec3(0.2, 0.2, 0.25);
    }
  }
  imageStore(canvas, ivec2(xy), vec4(rgb, 1.0));
}
