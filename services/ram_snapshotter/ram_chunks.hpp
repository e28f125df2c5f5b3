// The ram-snapshotter's wire encoding: one snapshot cycle as RamChunkHeader chunks
// (schemas/ram.fbs). A cycle's pages are split into parts of at most kPagesPerChunk pages, so
// that header (8 bytes per page index) + payload fit the 16 MiB iceoryx mempool.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "shared/ram_layout.hpp"

namespace glassbox::ram_snapshotter {

inline constexpr uint64_t kPageBytes = 4096;
inline constexpr uint64_t kPagesPerChunk = 4064;

struct CycleInfo {
  std::string instance;
  uint64_t epoch = 0;
  uint64_t cycle = 0;
  bool keyframe = false;
  uint64_t keyframe_id = 0;  // the id promised to a RequestKeyframe (0: periodic)
  bool consistent = false;
  uint64_t ram_size_bytes = 0;
  const shared::RamLayout* layout = nullptr;  // must be set
  uint64_t captured_unix_ns = 0;
};

// Number of chunks a cycle of `n_pages` pages takes (at least 1).
uint32_t parts_for(uint64_t n_pages);

// The finished FlatBuffer header of part `part` of `parts`, carrying `pages` (ascending
// page indices, at most kPagesPerChunk).
std::vector<uint8_t> build_chunk_header(const CycleInfo& cycle, uint64_t seq, uint32_t part,
                                        uint32_t parts, std::span<const uint64_t> pages);

}  // namespace glassbox::ram_snapshotter
