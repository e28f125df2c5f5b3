// iceoryx helpers: RouDi detection, the per-process runtime, and chunk publishers and
// subscribers for glassbox's large zero-copy payloads (layout: shared/chunk.hpp).
//
// Service descriptions are ("glassbox", INSTANCE, TOPIC); runtime names are
// "glassbox-INSTANCE-SERVICE", so two instances never collide. iceoryx aborts the process
// when asked for a chunk larger than RouDi's largest mempool: publish() checks
// max_payload_bytes() first and returns an error instead.
// Thread-safety: a publisher or subscriber belongs to one thread. init_runtime() once per
// process, before any publisher/subscriber.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "shared/chunk.hpp"
#include "shared/result.hpp"

namespace glassbox::shared {

// True when a RouDi daemon answers on its unix socket (/tmp/roudi), i.e. iceoryx can be used.
bool roudi_available();

// Registers this process with RouDi as "glassbox-INSTANCE-SERVICE" (truncated to 100 chars).
// Errors: kUnavailable when no RouDi runs (checked first, so this never blocks forever).
[[nodiscard]] Result<void> init_runtime(const std::string& instance, const std::string& service);

// Largest chunk a publisher may loan, from orchestration/roudi.toml's biggest mempool.
inline constexpr uint64_t kMaxChunkBytes = 16ull << 20;

class ChunkPublisher {
 public:
  // `history` chunks are kept for late subscribers (0..16).
  static Result<std::unique_ptr<ChunkPublisher>> create(const std::string& instance,
                                                        const std::string& topic, uint64_t history);
  ~ChunkPublisher();
  // Loans one chunk of chunk_size(header.size(), payload_size_bytes), writes the prefix and
  // header, lets `fill` write the payload in place, publishes. Errors: kOutOfRange when the
  // chunk exceeds kMaxChunkBytes, kUnavailable when no chunk can be loaned (pool exhausted).
  Result<void> publish(std::span<const uint8_t> header, uint64_t payload_size_bytes,
                       const std::function<void(uint8_t* payload)>& fill);
  bool has_subscribers() const;

 private:
  struct Impl;
  explicit ChunkPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A chunk taken from a subscriber; released (returned to iceoryx) on destruction.
class TakenChunk {
 public:
  TakenChunk(TakenChunk&&) noexcept;
  ~TakenChunk();
  const ChunkView& view() const { return view_; }

 private:
  friend class ChunkSubscriber;
  TakenChunk(void* subscriber, const void* chunk, ChunkView view)
      : subscriber_(subscriber), chunk_(chunk), view_(view) {}
  void* subscriber_;
  const void* chunk_;
  ChunkView view_;
};

class ChunkSubscriber {
 public:
  // `history_request`: how many past chunks to receive on connect (0..16); `queue_capacity`:
  // chunks queued before iceoryx drops the oldest (1..256).
  static Result<std::unique_ptr<ChunkSubscriber>> create(const std::string& instance,
                                                         const std::string& topic,
                                                         uint64_t history_request,
                                                         uint64_t queue_capacity = 16);
  ~ChunkSubscriber();
  // Takes the next chunk if one is queued (non-blocking). A chunk whose prefix does not
  // parse is released and reported as kProtocol.
  Result<std::optional<TakenChunk>> take();
  // Waits up to timeout_ms for a chunk (polls every millisecond).
  Result<std::optional<TakenChunk>> take_for(uint32_t timeout_ms);

 private:
  struct Impl;
  explicit ChunkSubscriber(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::shared
