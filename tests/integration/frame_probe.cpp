// glassbox-itest-frame-probe INSTANCE TIMEOUT_MS: subscribes to ("glassbox", INSTANCE,
// "vm-screen") over the real RouDi like any consumer, takes one frame, verifies its
// FlatBuffers header and size, and prints {"width","height","seq","distinct_colours"} as
// JSON. Exit 0 on success, 1 with a message otherwise. Used by the integration tests.
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "frame_generated.h"
#include "shared/iox.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s INSTANCE TIMEOUT_MS\n", argv[0]);
    return 2;
  }
  const std::string instance = argv[1];
  const uint32_t timeout_ms = static_cast<uint32_t>(std::atoi(argv[2]));
  if (auto r = shared::init_runtime(instance, "frame-probe"); !r) {
    std::fprintf(stderr, "%s\n", r.error().message.c_str());
    return 1;
  }
  auto sub = shared::ChunkSubscriber::create(instance, "vm-screen", 1);
  if (!sub) return 1;
  auto chunk = (*sub)->take_for(timeout_ms);
  if (!chunk) {
    std::fprintf(stderr, "bad chunk: %s\n", chunk.error().message.c_str());
    return 1;
  }
  if (!chunk->has_value()) {
    std::fprintf(stderr, "no frame within %u ms\n", timeout_ms);
    return 1;
  }
  const auto& view = (*chunk)->view();
  flatbuffers::Verifier v(view.header.data(), view.header.size());
  if (!schema::frame::VerifyFrameHeaderBuffer(v)) {
    std::fprintf(stderr, "frame header failed verification\n");
    return 1;
  }
  const auto* h = schema::frame::GetFrameHeader(view.header.data());
  if (uint64_t{h->height()} * h->stride_bytes() != view.payload.size() ||
      h->stride_bytes() < h->width() * 4) {
    std::fprintf(stderr, "frame size mismatch\n");
    return 1;
  }
  std::set<uint32_t> colours;
  for (uint64_t i = 0; i + 4 <= view.payload.size() && colours.size() < 64; i += 4) {
    colours.insert(view.payload[i] | view.payload[i + 1] << 8 | view.payload[i + 2] << 16);
  }
  std::printf("{\"width\": %u, \"height\": %u, \"seq\": %llu, \"distinct_colours\": %zu}\n",
              h->width(), h->height(), static_cast<unsigned long long>(h->seq()), colours.size());
  return 0;
}
