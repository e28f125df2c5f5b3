// Layout of a large zero-copy chunk (iceoryx payload): a FlatBuffers header that describes
// it, then the raw payload (pixels, page bytes, block records), 64-byte aligned.
//
//   offset 0   u32 magic 'GBCK' (0x4B434247), u32 header_size_bytes, u64 payload_size_bytes
//   offset 16  header (a finished FlatBuffer, header_size_bytes long)
//   offset P   payload, P = align_up(16 + header_size_bytes, 64)
//
// Chunks come from other processes: parse_chunk() checks every size against the chunk's
// real size before anything is read. The header still has to pass its own Verifier.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

#include "shared/result.hpp"

namespace glassbox::shared {

inline constexpr uint32_t kChunkMagic = 0x4B434247;  // "GBCK" little-endian
inline constexpr uint64_t kChunkPrefixBytes = 16;
inline constexpr uint64_t kChunkPayloadAlign = 64;

constexpr uint64_t chunk_payload_offset(uint64_t header_size_bytes) {
  return (kChunkPrefixBytes + header_size_bytes + kChunkPayloadAlign - 1) &
         ~(kChunkPayloadAlign - 1);
}
constexpr uint64_t chunk_size(uint64_t header_size_bytes, uint64_t payload_size_bytes) {
  return chunk_payload_offset(header_size_bytes) + payload_size_bytes;
}

// Writes the prefix and header into `chunk` (at least chunk_size(...) bytes); returns the
// payload pointer for the caller to fill.
inline uint8_t* write_chunk_prefix(uint8_t* chunk, std::span<const uint8_t> header,
                                   uint64_t payload_size_bytes) {
  const uint32_t magic = kChunkMagic;
  const uint32_t hsize = static_cast<uint32_t>(header.size());
  std::memcpy(chunk, &magic, 4);
  std::memcpy(chunk + 4, &hsize, 4);
  std::memcpy(chunk + 8, &payload_size_bytes, 8);
  std::memcpy(chunk + kChunkPrefixBytes, header.data(), header.size());
  return chunk + chunk_payload_offset(header.size());
}

struct ChunkView {
  std::span<const uint8_t> header;  // unverified FlatBuffer bytes
  std::span<const uint8_t> payload;
};

// Errors: kProtocol naming the field (magic, header size, payload size) that does not fit.
inline Result<ChunkView> parse_chunk(const uint8_t* chunk, uint64_t chunk_size_bytes) {
  if (chunk == nullptr || chunk_size_bytes < kChunkPrefixBytes) {
    return fail(Errc::kProtocol, "chunk smaller than its 16-byte prefix");
  }
  uint32_t magic, hsize;
  uint64_t psize;
  std::memcpy(&magic, chunk, 4);
  std::memcpy(&hsize, chunk + 4, 4);
  std::memcpy(&psize, chunk + 8, 8);
  if (magic != kChunkMagic) return fail(Errc::kProtocol, "chunk magic is not GBCK");
  if (hsize > chunk_size_bytes - kChunkPrefixBytes) {
    return fail(Errc::kProtocol, "chunk header_size " + std::to_string(hsize) +
                                     " exceeds chunk size " + std::to_string(chunk_size_bytes));
  }
  const uint64_t off = chunk_payload_offset(hsize);
  if (off > chunk_size_bytes || psize > chunk_size_bytes - off) {
    return fail(Errc::kProtocol, "chunk payload_size " + std::to_string(psize) +
                                     " exceeds chunk size " + std::to_string(chunk_size_bytes));
  }
  return ChunkView{{chunk + kChunkPrefixBytes, hsize}, {chunk + off, psize}};
}

}  // namespace glassbox::shared
