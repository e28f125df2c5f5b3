#include "services/ram_snapshotter/ram_chunks.hpp"

#include <algorithm>

#include "ram_generated.h"

namespace glassbox::ram_snapshotter {

namespace fb = glassbox::schema::ram;

uint32_t parts_for(uint64_t n_pages) {
  return static_cast<uint32_t>(
      std::max<uint64_t>(1, (n_pages + kPagesPerChunk - 1) / kPagesPerChunk));
}

std::vector<uint8_t> build_chunk_header(const CycleInfo& c, uint64_t seq, uint32_t part,
                                        uint32_t parts, std::span<const uint64_t> pages) {
  flatbuffers::FlatBufferBuilder fbb(1024 + pages.size() * 8);
  auto indices = fbb.CreateVector(pages.data(), pages.size());
  std::vector<flatbuffers::Offset<fb::RamRegion>> regions;
  for (const auto& r : c.layout->regions()) {
    regions.push_back(fb::CreateRamRegion(fbb, r.gpa.value, r.size_bytes, r.file_offset));
  }
  auto layout = fbb.CreateVector(regions);
  auto inst = fbb.CreateString(c.instance);
  fbb.Finish(fb::CreateRamChunkHeader(fbb, inst, seq, c.epoch, c.cycle, part, parts, c.keyframe,
                                      c.keyframe ? c.keyframe_id : 0, c.consistent, kPageBytes,
                                      c.ram_size_bytes, layout, indices, c.captured_unix_ns));
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

}  // namespace glassbox::ram_snapshotter
