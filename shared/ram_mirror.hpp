// RamMirror: a subscriber's private, complete copy of guest RAM, rebuilt from the
// ram-snapshotter's stream (schemas/ram.fbs, iceoryx ("glassbox", INSTANCE, "ram")): a
// keyframe (every page) plus deltas (the pages that changed).
//
// Guarantees:
//  - Cycle-atomic: the parts of one snapshot cycle are applied together, when the last
//    part has arrived, so a reader never sees half a cycle.
//  - Gap-safe: every chunk carries a sequence number; a missing one (the subscriber fell
//    behind and iceoryx dropped its oldest chunks, or the publisher restarted) makes the
//    mirror unsynced, discards everything until a new keyframe is complete, and asks the
//    snapshotter for one. It never presents a mix of before and after a gap.
//  - Epoch-aware: a new epoch (VM rebooted, RAM file replaced) also needs a keyframe.
//  - Hostile input: every header is verified (FlatBuffers Verifier, sizes, page indices
//    in range and ascending, layout valid); a bad chunk is counted and treated as a gap.
//
// RamMirrorCore is the logic on already-taken chunks (unit-tested without iceoryx);
// RamMirror adds the iceoryx subscriber and the ZeroMQ keyframe requests.
// Thread-safety: one owner thread. view() stays valid until the next poll()/apply().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::shared {

inline constexpr uint64_t kMaxMirroredRamBytes = 64ull << 30;  // refuse larger claims

// What changed in the mirror since the last RamMirrorCore::take_changes(): the page indices
// (4 KiB pages of the RAM file, in arrival order, possibly repeated) of applied deltas, or
// `all` when a keyframe was applied (every page may have changed; `keyframe` says so) or when
// more than kMaxTrackedChanges indices piled up.
struct RamChanges {
  bool all = false;
  bool keyframe = false;
  std::vector<uint32_t> pages;
};
inline constexpr size_t kMaxTrackedChanges = size_t{1} << 20;

struct RamMirrorStats {
  uint64_t chunks = 0;          // chunks taken
  uint64_t cycles_applied = 0;  // complete cycles applied (keyframes included)
  uint64_t keyframes_applied = 0;
  uint64_t pages_applied = 0;
  uint64_t gaps = 0;        // sequence gaps seen
  uint64_t bad_chunks = 0;  // chunks that failed verification
  uint64_t keyframe_requests = 0;
};

class RamMirrorCore {
 public:
  RamMirrorCore() = default;
  RamMirrorCore(const RamMirrorCore&) = delete;
  RamMirrorCore& operator=(const RamMirrorCore&) = delete;
  ~RamMirrorCore();
  // What the core wants from its owner after a chunk.
  enum class Action { kNone, kRequestKeyframe };

  struct ApplyResult {
    Action action = Action::kNone;
    bool hold = false;          // keep this chunk's bytes alive: its cycle is incomplete
    bool release_held = false;  // every chunk held so far may be released now
  };
  // Applies one chunk (header = unverified FlatBuffer bytes, payload = page bytes). The
  // parts of a cycle are only copied into the mirror when the last part arrives, so the
  // owner keeps each chunk with `hold` alive until a later result says `release_held`
  // (release_held is evaluated before hold: a chunk can be both released-before and held).
  ApplyResult apply(std::span<const uint8_t> header, std::span<const uint8_t> payload);

  bool synced() const { return synced_; }
  uint64_t epoch() const { return epoch_; }
  uint64_t last_seq() const { return last_seq_; }
  uint64_t last_cycle() const { return last_cycle_; }
  uint64_t last_keyframe_id() const { return last_keyframe_id_; }
  bool last_keyframe_consistent() const { return last_keyframe_consistent_; }
  const std::string& why_unsynced() const { return why_unsynced_; }
  const RamMirrorStats& stats() const { return stats_; }
  void note_keyframe_request() { ++stats_.keyframe_requests; }
  // The mirrored RAM. Errors: kUnavailable while not synced (the reason says why).
  Result<RamView> view() const;
  // Time the newest applied cycle was captured (publisher clock, unix ns).
  uint64_t last_captured_unix_ns() const { return last_captured_ns_; }
  // Returns and clears what changed since the previous call (the first call: everything).
  // Tracking costs one vector append per applied page and is bounded by kMaxTrackedChanges.
  RamChanges take_changes();

 private:
  struct Pending {
    std::vector<uint8_t> header;  // copy of the verified header
    std::span<const uint8_t> payload;
  };
  ApplyResult lose_sync(std::string why);
  void apply_cycle();
  Result<void> ensure_buffer(uint64_t ram_size_bytes);

  uint8_t* buffer_ = nullptr;  // anonymous mapping of buffer_size_ bytes
  uint64_t buffer_size_ = 0;
  std::optional<RamLayout> layout_;
  bool synced_ = false;
  bool have_seq_ = false;
  uint64_t last_seq_ = 0;
  uint64_t epoch_ = 0;
  uint64_t last_cycle_ = 0;
  uint64_t last_keyframe_id_ = 0;
  bool last_keyframe_consistent_ = false;
  uint64_t last_captured_ns_ = 0;
  std::string why_unsynced_ = "no keyframe yet";
  std::vector<Pending> pending_;  // parts of the cycle being assembled
  RamMirrorStats stats_;
  RamChanges changes_{true, false, {}};
};

class RamMirror {
 public:
  // Subscribes to ("glassbox", instance, "ram") (iceoryx runtime must be initialised:
  // shared::init_runtime) and asks the snapshotter at `snapshotter_endpoint` for a keyframe.
  // `subscriber` names this mirror in the snapshotter's status. Errors: kUnavailable when the
  // snapshotter does not answer the keyframe request.
  static Result<std::unique_ptr<RamMirror>> create(const std::string& instance,
                                                   const std::string& snapshotter_endpoint,
                                                   const std::string& subscriber);
  ~RamMirror();

  // Takes and applies every queued chunk, waiting up to `timeout` for the first one. Asks
  // for a keyframe when a gap requires it (at most once per 500 ms) and sends a heartbeat
  // every 3 s. Returns the number of chunks taken.
  Result<size_t> poll(std::chrono::milliseconds timeout);
  // Polls until synced (or `timeout`). Errors: kTimeout naming why it is not synced.
  Result<void> wait_synced(std::chrono::milliseconds timeout);
  // Asks for a keyframe (consistent: with the vCPUs stopped) and polls until that very
  // keyframe is applied. Errors: kTimeout, kUnavailable.
  Result<void> fresh_keyframe(bool consistent, std::chrono::milliseconds timeout);

  const RamMirrorCore& core() const { return core_; }
  Result<RamView> view() const { return core_.view(); }
  // RamMirrorCore::take_changes() of this mirror.
  RamChanges take_changes() { return core_.take_changes(); }

 private:
  struct Impl;
  explicit RamMirror(std::unique_ptr<Impl> impl);
  Result<uint64_t> request_keyframe(bool consistent, const std::string& reason);
  std::unique_ptr<Impl> impl_;
  RamMirrorCore core_;
};

}  // namespace glassbox::shared
