// The screen pane: the guest's latest frame (`frame`: BGRX words, rows of stride_words) to
// RGBA, with the optional CRT look (barrel curvature, scanlines, vignette) and a brightness
// factor that pulses with vCPU activity. With crt = 0 and brightness = 1 the output equals the
// input pixel for pixel (tested).
#version 450
layout(local_size_x = 16, local_size_y = 16) in;

layout(push_constant) uniform Params {
  uint width;
  uint height;
  uint stride_words;
  uint crt;          // 0 | 1
  float brightness;  // 1 = unchanged
} p;

layout(std430, binding = 0) readonly buffer Frame { uint px[]; } frame;
layout(rgba8, binding = 1) writeonly uniform image2D pane;

vec3 fetch(ivec2 q) {
  q = clamp(q, ivec2(0), ivec2(p.width - 1u, p.height - 1u));
  uint v = frame.px[uint(q.y) * p.stride_words + uint(q.x)];
  return vec3(float((v >> 16u) & 255u), float((v >> 8u) & 255u), float(v & 255u)) / 255.0;
}

void main() {
  uvec2 xy = gl_GlobalInvocationID.xy;
  if (xy.x >= p.width || xy.y >= p.height) return;
  vec3 rgb;
  if (p.crt == 0u) {
    rgb = fetch(ivec2(xy));
  } else {
    vec2 size = vec2(p.width, p.height);
    vec2 uv = (vec2(xy) + 0.5) / size * 2.0 - 1.0;  // -1..1
    uv *= 1.0 + 0.04 * dot(uv.yx, uv.yx);            // barrel curvature
    if (abs(uv.x) > 1.0 || abs(uv.y) > 1.0) {
      imageStore(pane, ivec2(xy), vec4(0.0, 0.0, 0.0, 1.0));
      return;
    }
    vec2 src = (uv * 0.5 + 0.5) * size;
    rgb = fetch(ivec2(src));
    float scan = 0.78 + 0.22 * sin(3.14159265 * (src.y + 0.5));  // a dark line between rows
    float vignette = clamp(1.0 - 0.35 * dot(uv * 0.8, uv * 0.8), 0.0, 1.0);
    rgb *= scan * vignette;
  }
  rgb = clamp(rgb * p.brightness, 0.0, 1.0);
  imageStore(pane, ivec2(xy), vec4(rgb, 1.0));
}
