// Changed RAM pages into the device's copy of guest RAM: slot i of `incoming` (4 KiB, copied
// to the device as one contiguous range) goes to page list[i] of `ram`. One workgroup per
// page, so a frame's scattered pages cost one dispatch instead of one copy region each.
#version 450
layout(local_size_x = 256) in;

layout(push_constant) uniform Params {
  uint n_slots;
  uint ram_words;
} p;

layout(std430, binding = 0) readonly buffer Incoming { uint words[]; } incoming;
layout(std430, binding = 1) readonly buffer List { uint page[]; } list;
layout(std430, binding = 2) writeonly buffer Ram { uint words[]; } ram;

void main() {
  uint slot = gl_WorkGroupID.y * 65535u + gl_WorkGroupID.x;
  if (slot >= p.n_slots) return;
  uint dst = list.page[slot] * 1024u;
  uint src = slot * 1024u;
  for (uint w = gl_LocalInvocationID.x; w < 1024u; w += 256u) {
    if (dst + w < p.ram_words) ram.words[dst + w] = incoming.words[src + w];
  }
}
