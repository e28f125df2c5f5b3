// trace_ring.hpp: the shared-memory trace file written by the QEMU TCG plugin
// (build/lib/libglassbox-trace.so) and read by the trace-consumer.
//
// Header-only and dependent on the C++ standard library only: the plugin links nothing.
//
// One file per QEMU process (e.g. /dev/shm/glassbox-INSTANCE.trace), native byte order
// (x86-64: little-endian), every region 4096-byte aligned:
//
//   offset 0                     TraceHeader, padded to kTraceHeaderBytes (4096)
//   counters_offset              uint64_t counters[max_tbs]: executions per tb_id, written by
//                                QEMU's inline ADD_U64 op (not atomic: inexact when several
//                                vCPUs run the same TB at once under MTTCG). Written in both
//                                modes (stream mode = counts + the per-vCPU event stream).
//                                Readers load them with std::atomic_ref<uint64_t>(c).load(
//                                std::memory_order_relaxed) (aligned: never torn on x86-64).
//   tb_ring_offset               TbRing (head/tail/drops, one cache line each), then
//                                tb_ring_bytes of data: variable-length TbRecordHeader records
//   event_rings_offset           n_vcpus x event_ring_stride_bytes: vCPU i's EventRing, then
//   + i * stride                 uint32_t events[ring_events] (tb_id per executed TB)
//   file_bytes                   end of file
//
// Publication: the producer creates a fresh file (zeroes), fills the header and the rings,
// then stores `version` with release order (init_trace_file). A reader that sees
// version == 0 must retry later (TraceError::kNotReady). Geometry never changes afterwards.
// A new QEMU process means a new file (the plugin unlinks and re-creates the path, so an
// old mapping stays valid) with a new random `generation`.
//
// Rings are single-producer/single-consumer, lock-free, never blocking:
//   - head: written by the producer only (count of events / bytes ever written),
//   - tail: written by the consumer only (count of events / bytes ever consumed),
//   - drops: written by the producer only (events / records dropped because the ring was full).
// head and tail are free-running uint64_t counters; the slot is counter % capacity.
// The producer publishes with a release store of head and reads tail with acquire; the consumer
// reads head with acquire and publishes tail with release.
//
// Trust: the file is shared between processes, so each side treats it as hostile input.
// Producers index only with their private head (masked), so a corrupt tail can only cause
// drops, never an out-of-bounds write. Readers snapshot the geometry once (make_view),
// validate every record, clamp every count and bound every loop; a corrupt ring is resynced
// (everything up to head discarded) and counted, never read out of bounds.
//
// Source of the algorithm: the classic Lamport SPSC ring with free-running indices, cached
// remote index on the producer side (as in Linux's kfifo and DPDK's rte_ring SP/SC mode).
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <span>
#include <type_traits>

namespace glassbox::trace {

static_assert(std::endian::native == std::endian::little, "the trace file is little-endian");
static_assert(std::atomic<uint64_t>::is_always_lock_free && sizeof(std::atomic<uint64_t>) == 8,
              "shm atomics must be lock-free and plain-sized");
static_assert(std::atomic<uint32_t>::is_always_lock_free && sizeof(std::atomic<uint32_t>) == 4);

inline constexpr char kTraceMagic[8] = {'G', 'B', 'T', 'R', 'A', 'C', 'E', '1'};
inline constexpr uint32_t kTraceVersion = 1;
// The header region's size; every region of the file starts on a kTracePageBytes boundary.
inline constexpr uint64_t kTraceHeaderBytes = 4096;
inline constexpr uint64_t kTracePageBytes = 4096;

// Geometry limits, enforced by plan_layout (producer) and make_view (reader).
inline constexpr uint32_t kMaxVcpus = 1024;
inline constexpr uint32_t kMinRingEvents = 16;
inline constexpr uint32_t kMaxRingEvents = 1u << 28;
inline constexpr uint64_t kMaxTbs = 1ull << 28;
inline constexpr uint64_t kMinTbRingBytes = 1ull << 16;
inline constexpr uint64_t kMaxTbRingBytes = 1ull << 32;
inline constexpr uint64_t kMaxTraceFileBytes = 1ull << 40;

// Defaults of the plugin arguments ring_events, max_tbs, tb_ring_bytes.
inline constexpr uint32_t kDefaultRingEvents = 1u << 20;
inline constexpr uint64_t kDefaultMaxTbs = 1ull << 22;
inline constexpr uint64_t kDefaultTbRingBytes = 64ull << 20;

// kCounts: only counters[] (inline, about +7 % on a TCG boot). kStream: counters[] plus one
// event per TB execution in the executing vCPU's EventRing (a C callback per execution).
enum class TraceMode : uint32_t { kCounts = 1, kStream = 2 };

// TraceHeader::producer_state. kExited is stored by the plugin's atexit callback: after it,
// counters and rings no longer change, so the consumer may drain to the end and stop.
enum class ProducerState : uint32_t { kInitializing = 0, kRunning = 1, kExited = 2 };

// At file offset 0. Plain fields are written once, before `version` is published (release);
// the atomics are live counters written by the plugin (relaxed).
struct alignas(64) TraceHeader {
  char magic[8];        // kTraceMagic
  uint32_t version;     // kTraceVersion once initialized; 0 while the plugin fills the file
  uint32_t mode;        // TraceMode
  uint64_t generation;  // random 64-bit, non-zero, per plugin install (a new QEMU = a new one)
  uint64_t qemu_pid;
  uint32_t n_vcpus;      // event rings allocated (= max_vcpus of the machine)
  uint32_t ring_events;  // events per EventRing, a power of two
  uint64_t counters_offset;
  uint64_t max_tbs;  // counters[] entries; a tb_id >= max_tbs is not counted
  uint64_t tb_ring_offset;
  uint64_t tb_ring_bytes;  // data bytes of the TB ring, a power of two
  uint64_t event_rings_offset;
  uint64_t event_ring_stride_bytes;
  uint64_t file_bytes;
  std::atomic<uint64_t> tbs_translated;     // translation callbacks seen (= tb_ids issued)
  std::atomic<uint64_t> tb_ids_overflowed;  // TBs with tb_id >= max_tbs (not counted)
  std::atomic<uint64_t> events_bad_vcpu;    // executions with vcpu_index >= n_vcpus (dropped)
  std::atomic<uint64_t> tbs_outside_ram;    // TBs whose ram_offset is kNoRamOffset
  std::atomic<uint32_t> producer_state;     // ProducerState
};
static_assert(std::is_standard_layout_v<TraceHeader>);
static_assert(sizeof(TraceHeader) <= kTraceHeaderBytes);
// Fixed offsets: the file format for readers in other languages (tests/trace/plugin_smoke.sh).
static_assert(offsetof(TraceHeader, version) == 8 && offsetof(TraceHeader, mode) == 12);
static_assert(offsetof(TraceHeader, generation) == 16 && offsetof(TraceHeader, n_vcpus) == 32);
static_assert(offsetof(TraceHeader, counters_offset) == 40 && offsetof(TraceHeader, max_tbs) == 48);
static_assert(offsetof(TraceHeader, tb_ring_offset) == 56);
static_assert(offsetof(TraceHeader, event_rings_offset) == 72);
static_assert(offsetof(TraceHeader, file_bytes) == 88);
static_assert(offsetof(TraceHeader, tbs_translated) == 96);
static_assert(offsetof(TraceHeader, tb_ids_overflowed) == 104);
static_assert(offsetof(TraceHeader, events_bad_vcpu) == 112);
static_assert(offsetof(TraceHeader, tbs_outside_ram) == 120);
static_assert(offsetof(TraceHeader, producer_state) == 128);

// Control block of vCPU i's event ring, at event_rings_offset + i * event_ring_stride_bytes,
// followed immediately (offset sizeof(EventRing) = 192) by uint32_t events[ring_events].
// head/tail count events; each field has its own cache line (no false sharing between the
// producer's and the consumer's stores).
struct EventRing {
  alignas(64) std::atomic<uint64_t> head;   // producer: events written
  alignas(64) std::atomic<uint64_t> tail;   // consumer: events read
  alignas(64) std::atomic<uint64_t> drops;  // producer: events dropped because the ring was full
};
static_assert(sizeof(EventRing) == 192 && std::is_standard_layout_v<EventRing>);

// Control block of the TB record ring, at tb_ring_offset, followed immediately (offset 192) by
// tb_ring_bytes of data. head/tail count bytes (always multiples of 8); drops counts records.
struct TbRing {
  alignas(64) std::atomic<uint64_t> head;   // producer: bytes written (records + padding)
  alignas(64) std::atomic<uint64_t> tail;   // consumer: bytes consumed
  alignas(64) std::atomic<uint64_t> drops;  // producer: records dropped because the ring was full
};
static_assert(sizeof(TbRing) == 192 && std::is_standard_layout_v<TbRing>);

inline constexpr uint32_t kTbRecordMagic = 0x54425231;   // "TBR1"
inline constexpr uint32_t kTbPaddingMagic = 0x50414444;  // "PADD"
inline constexpr uint64_t kNoRamOffset = UINT64_MAX;

// TbRecordHeader::flags.
// kTbFlagBytesTruncated: the TB had more insn bytes than the plugin copies (kMaxTbBytes);
//   size_bytes is the copied prefix.
// kTbFlagCrossesPage: [pc, pc + size_bytes) spans two guest pages.
// kTbFlagRamVerified: at translation, the RAM file held exactly these bytes at ram_offset.
inline constexpr uint32_t kTbFlagBytesTruncated = 1u << 0;
inline constexpr uint32_t kTbFlagCrossesPage = 1u << 1;
inline constexpr uint32_t kTbFlagRamVerified = 1u << 2;
// The most insn bytes one record carries (an x86 TB is at most 512 insns within two pages).
inline constexpr uint32_t kMaxTbBytes = 16384;

// One translated TB, 8-byte aligned in the TB ring, followed by size_bytes raw insn bytes and
// zero padding up to total_bytes. A record never wraps: a padding record (magic
// kTbPaddingMagic; only magic and total_bytes meaningful, total_bytes >= 8) fills the ring to
// its end and the record starts at offset 0.
struct TbRecordHeader {
  uint32_t magic;        // kTbRecordMagic or kTbPaddingMagic
  uint32_t total_bytes;  // header + insn bytes, rounded up to 8
  uint32_t tb_id;        // index into counters[] and the value of stream events
  uint32_t n_insns;
  uint64_t pc;          // guest virtual address of the first insn
  uint64_t ram_offset;  // offset of the first insn byte in the guest RAM file, or kNoRamOffset
  uint32_t size_bytes;  // insn bytes that follow
  uint32_t flags;       // kTbFlag*
};
static_assert(sizeof(TbRecordHeader) == 40 && std::is_trivially_copyable_v<TbRecordHeader>);

// Rounds `n` up to a multiple of the power of two `align`.
[[nodiscard]] constexpr uint64_t round_up(uint64_t n, uint64_t align) noexcept {
  return (n + align - 1) & ~(align - 1);
}

// TB record size for `size_bytes` insn bytes: header + bytes, rounded up to 8.
[[nodiscard]] constexpr uint64_t tb_record_total_bytes(uint64_t size_bytes) noexcept {
  return round_up(sizeof(TbRecordHeader) + size_bytes, 8);
}

// The sizes that define a trace file; the plugin takes them from its arguments.
struct TraceGeometry {
  uint32_t n_vcpus = 1;
  uint32_t ring_events = kDefaultRingEvents;
  uint64_t max_tbs = kDefaultMaxTbs;
  uint64_t tb_ring_bytes = kDefaultTbRingBytes;
};

// Where each region lies; a pure function of TraceGeometry (plan_layout).
struct TraceLayout {
  uint64_t counters_offset = 0;
  uint64_t tb_ring_offset = 0;
  uint64_t event_rings_offset = 0;
  uint64_t event_ring_stride_bytes = 0;
  uint64_t file_bytes = 0;
};

// Plans the file for `g`. Returns nullopt when a size is outside its limit (n_vcpus in
// [1, kMaxVcpus]; ring_events a power of two in [kMinRingEvents, kMaxRingEvents]; max_tbs in
// [1, kMaxTbs]; tb_ring_bytes a power of two in [kMinTbRingBytes, kMaxTbRingBytes]) or the file
// would exceed kMaxTraceFileBytes. Thread-safety: pure.
[[nodiscard]] constexpr std::optional<TraceLayout> plan_layout(const TraceGeometry& g) noexcept {
  if (g.n_vcpus < 1 || g.n_vcpus > kMaxVcpus) return std::nullopt;
  if (!std::has_single_bit(g.ring_events) || g.ring_events < kMinRingEvents ||
      g.ring_events > kMaxRingEvents) {
    return std::nullopt;
  }
  if (g.max_tbs < 1 || g.max_tbs > kMaxTbs) return std::nullopt;
  if (!std::has_single_bit(g.tb_ring_bytes) || g.tb_ring_bytes < kMinTbRingBytes ||
      g.tb_ring_bytes > kMaxTbRingBytes) {
    return std::nullopt;
  }
  // With the limits above every sum below fits in 64 bits by a wide margin.
  TraceLayout l;
  l.counters_offset = kTraceHeaderBytes;
  l.tb_ring_offset = l.counters_offset + round_up(g.max_tbs * 8, kTracePageBytes);
  l.event_rings_offset =
      l.tb_ring_offset + round_up(sizeof(TbRing) + g.tb_ring_bytes, kTracePageBytes);
  l.event_ring_stride_bytes =
      round_up(sizeof(EventRing) + uint64_t{g.ring_events} * 4, kTracePageBytes);
  l.file_bytes = l.event_rings_offset + uint64_t{g.n_vcpus} * l.event_ring_stride_bytes;
  if (l.file_bytes > kMaxTraceFileBytes) return std::nullopt;
  return l;
}

// Why make_view refused a mapping.
enum class TraceError : uint32_t {
  kOk = 0,
  kTooSmall,        // mapping shorter than the header
  kNotReady,        // version not yet published (the plugin is still initializing): retry
  kBadMagic,        // not a glassbox trace file
  kBadVersion,      // another format version
  kBadMode,         // mode is not a TraceMode
  kBadGeometry,     // a size outside the limits of plan_layout
  kLayoutMismatch,  // offsets/stride/file_bytes differ from plan_layout(geometry)
  kTruncated,       // file_bytes larger than the mapping
};

// A short English name for `e`, for logs. Thread-safety: pure.
[[nodiscard]] constexpr const char* to_string(TraceError e) noexcept {
  switch (e) {
    case TraceError::kOk:
      return "ok";
    case TraceError::kTooSmall:
      return "mapping smaller than the trace header";
    case TraceError::kNotReady:
      return "trace header not yet published";
    case TraceError::kBadMagic:
      return "bad trace magic";
    case TraceError::kBadVersion:
      return "unsupported trace version";
    case TraceError::kBadMode:
      return "bad trace mode";
    case TraceError::kBadGeometry:
      return "trace geometry outside limits";
    case TraceError::kLayoutMismatch:
      return "trace offsets do not match the geometry";
    case TraceError::kTruncated:
      return "trace file larger than the mapping";
  }
  return "unknown trace error";
}

// Validated pointers into one mapped trace file. The geometry is copied out of the header
// once (make_view), so a later change of the header by another process cannot move any bound.
// Pointers are valid while the mapping lives. Thread-safety: immutable after make_view; the
// rings it points to follow the SPSC rules above (one consumer per ring).
struct TraceView {
  TraceHeader* header = nullptr;
  TraceMode mode = TraceMode::kCounts;
  uint64_t generation = 0;
  uint32_t n_vcpus = 0;
  uint32_t ring_events = 0;
  uint64_t max_tbs = 0;
  uint64_t tb_ring_bytes = 0;
  uint64_t event_ring_stride_bytes = 0;
  uint64_t* counters = nullptr;  // [max_tbs]
  TbRing* tb_ring = nullptr;
  uint8_t* tb_data = nullptr;  // [tb_ring_bytes]
  std::byte* event_rings = nullptr;

  // vCPU `vcpu_index`'s ring control block; vcpu_index must be < n_vcpus.
  [[nodiscard]] EventRing* event_ring(uint32_t vcpu_index) const noexcept {
    return std::launder(
        reinterpret_cast<EventRing*>(event_rings + uint64_t{vcpu_index} * event_ring_stride_bytes));
  }
  // vCPU `vcpu_index`'s events[ring_events]; vcpu_index must be < n_vcpus.
  [[nodiscard]] uint32_t* events(uint32_t vcpu_index) const noexcept {
    return reinterpret_cast<uint32_t*>(
        event_rings + uint64_t{vcpu_index} * event_ring_stride_bytes + sizeof(EventRing));
  }
};

namespace detail {
inline TraceView view_of(std::byte* base, TraceHeader* h, TraceMode mode, uint64_t generation,
                         const TraceGeometry& g, const TraceLayout& l) noexcept {
  TraceView v;
  v.header = h;
  v.mode = mode;
  v.generation = generation;
  v.n_vcpus = g.n_vcpus;
  v.ring_events = g.ring_events;
  v.max_tbs = g.max_tbs;
  v.tb_ring_bytes = g.tb_ring_bytes;
  v.event_ring_stride_bytes = l.event_ring_stride_bytes;
  v.counters = reinterpret_cast<uint64_t*>(base + l.counters_offset);
  v.tb_ring = std::launder(reinterpret_cast<TbRing*>(base + l.tb_ring_offset));
  v.tb_data = reinterpret_cast<uint8_t*>(base + l.tb_ring_offset + sizeof(TbRing));
  v.event_rings = base + l.event_rings_offset;
  return v;
}
}  // namespace detail

// Producer: lays out a trace file in `base`, which must be a zero-filled, 64-byte aligned
// mapping of at least layout.file_bytes (a fresh ftruncate'd file), with `layout` =
// plan_layout(geometry). Writes the header and ring control blocks, then publishes `version`
// (release) and sets producer_state to kRunning. Thread-safety: call once, before any producer
// runs. Returns the view the plugin's producers use.
inline TraceView init_trace_file(void* base, const TraceGeometry& g, const TraceLayout& l,
                                 TraceMode mode, uint64_t generation, uint64_t qemu_pid) noexcept {
  auto* bytes = static_cast<std::byte*>(base);
  auto* h = new (base) TraceHeader{};
  h->mode = static_cast<uint32_t>(mode);
  h->generation = generation;
  h->qemu_pid = qemu_pid;
  h->n_vcpus = g.n_vcpus;
  h->ring_events = g.ring_events;
  h->counters_offset = l.counters_offset;
  h->max_tbs = g.max_tbs;
  h->tb_ring_offset = l.tb_ring_offset;
  h->tb_ring_bytes = g.tb_ring_bytes;
  h->event_rings_offset = l.event_rings_offset;
  h->event_ring_stride_bytes = l.event_ring_stride_bytes;
  h->file_bytes = l.file_bytes;
  new (bytes + l.tb_ring_offset) TbRing{};
  for (uint32_t i = 0; i < g.n_vcpus; ++i) {
    new (bytes + l.event_rings_offset + uint64_t{i} * l.event_ring_stride_bytes) EventRing{};
  }
  std::memcpy(h->magic, kTraceMagic, sizeof(kTraceMagic));
  h->producer_state.store(static_cast<uint32_t>(ProducerState::kRunning),
                          std::memory_order_relaxed);
  std::atomic_ref<uint32_t>(h->version).store(kTraceVersion, std::memory_order_release);
  return detail::view_of(bytes, h, mode, generation, g, l);
}

// Reader: validates the trace file mapped at `base` (`mapped_bytes` long, 64-byte aligned, e.g.
// from mmap) and fills `*out`. Reads `version` with acquire first, then checks magic, mode,
// geometry limits, and that every offset equals plan_layout(geometry) and fits the mapping.
// Errors: see TraceError; *out is untouched unless kOk. Thread-safety: reentrant.
[[nodiscard]] inline TraceError make_view(void* base, uint64_t mapped_bytes,
                                          TraceView* out) noexcept {
  if (base == nullptr || mapped_bytes < kTraceHeaderBytes) return TraceError::kTooSmall;
  auto* bytes = static_cast<std::byte*>(base);
  auto* h = std::launder(reinterpret_cast<TraceHeader*>(base));
  const uint32_t version = std::atomic_ref<uint32_t>(h->version).load(std::memory_order_acquire);
  if (version == 0) return TraceError::kNotReady;
  if (std::memcmp(h->magic, kTraceMagic, sizeof(kTraceMagic)) != 0) return TraceError::kBadMagic;
  if (version != kTraceVersion) return TraceError::kBadVersion;
  // Copy every field once: the checks and the view use the same values.
  const uint32_t mode = h->mode;
  const uint64_t generation = h->generation;
  TraceGeometry g{h->n_vcpus, h->ring_events, h->max_tbs, h->tb_ring_bytes};
  const TraceLayout claimed{h->counters_offset, h->tb_ring_offset, h->event_rings_offset,
                            h->event_ring_stride_bytes, h->file_bytes};
  if (mode != static_cast<uint32_t>(TraceMode::kCounts) &&
      mode != static_cast<uint32_t>(TraceMode::kStream)) {
    return TraceError::kBadMode;
  }
  const std::optional<TraceLayout> l = plan_layout(g);
  if (!l) return TraceError::kBadGeometry;
  if (claimed.counters_offset != l->counters_offset ||
      claimed.tb_ring_offset != l->tb_ring_offset ||
      claimed.event_rings_offset != l->event_rings_offset ||
      claimed.event_ring_stride_bytes != l->event_ring_stride_bytes ||
      claimed.file_bytes != l->file_bytes) {
    return TraceError::kLayoutMismatch;
  }
  if (l->file_bytes > mapped_bytes) return TraceError::kTruncated;
  *out = detail::view_of(bytes, h, static_cast<TraceMode>(mode), generation, g, *l);
  return TraceError::kOk;
}

// ---- Producer side ---------------------------------------------------------------------------

// Writes tb_ids into one vCPU's EventRing. Keeps its own head (the shm head is only stored) and
// a cached tail (the shm tail is loaded only when the cache says full), so push touches the
// consumer's cache line rarely. A hostile tail can only make push drop, never write outside
// events[ring_events].
// Thread-safety: one thread at a time per ring (QEMU runs a vCPU on one thread); objects are
// 64-byte aligned so an array of them, one per vCPU, does not false-share.
class alignas(64) EventProducer {
 public:
  EventProducer() = default;
  // `ring` and `events` (ring_events entries, a power of two) from TraceView, fresh or owned
  // by this producer alone.
  EventProducer(EventRing* ring, uint32_t* events, uint32_t ring_events) noexcept
      : ring_(ring),
        events_(events),
        capacity_(ring_events),
        mask_(uint64_t{ring_events} - 1),
        head_(ring->head.load(std::memory_order_relaxed)),
        cached_tail_(ring->tail.load(std::memory_order_acquire)) {}

  // Appends `tb_id`. Returns false (and counts one drop) when the ring is full.
  bool push(uint32_t tb_id) noexcept {
    if (head_ - cached_tail_ >= capacity_) [[unlikely]] {
      cached_tail_ = ring_->tail.load(std::memory_order_acquire);
      if (head_ - cached_tail_ >= capacity_) {
        ring_->drops.store(ring_->drops.load(std::memory_order_relaxed) + 1,
                           std::memory_order_relaxed);
        return false;
      }
    }
    events_[head_ & mask_] = tb_id;
    ++head_;
    ring_->head.store(head_, std::memory_order_release);
    return true;
  }

 private:
  EventRing* ring_ = nullptr;
  uint32_t* events_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t mask_ = 0;
  uint64_t head_ = 0;
  uint64_t cached_tail_ = 0;
};

// Appends TB records to the TB ring (never blocking: a record that does not fit is dropped and
// counted in TbRing::drops). Keeps its own head; a hostile tail can only cause drops.
// Thread-safety: not thread-safe; the plugin serializes translation callbacks with a mutex.
class TbRecordProducer {
 public:
  TbRecordProducer() = default;
  // `ring` and `data` (ring_bytes, a power of two >= kMinTbRingBytes) from TraceView.
  TbRecordProducer(TbRing* ring, uint8_t* data, uint64_t ring_bytes) noexcept
      : ring_(ring),
        data_(data),
        ring_bytes_(ring_bytes),
        head_(ring->head.load(std::memory_order_relaxed)) {}

  // Appends one record: `fields` (magic and total_bytes are set here; size_bytes is taken
  // from insn_bytes.size()) followed by `insn_bytes`. Returns false (one drop counted) when
  // the ring lacks room. Record layout: see TbRecordHeader.
  bool append(const TbRecordHeader& fields, std::span<const uint8_t> insn_bytes) noexcept {
    const uint64_t total = tb_record_total_bytes(insn_bytes.size());
    const uint64_t pos = head_ & (ring_bytes_ - 1);
    const uint64_t contig = ring_bytes_ - pos;
    const uint64_t pad = total > contig ? contig : 0;
    const uint64_t need = pad + total;
    uint64_t used = head_ - ring_->tail.load(std::memory_order_acquire);
    if (insn_bytes.size() > UINT32_MAX || total > ring_bytes_ / 2 || used > ring_bytes_ ||
        need > ring_bytes_ - used) {
      ring_->drops.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (pad != 0) {
      const uint32_t padding[2] = {kTbPaddingMagic, static_cast<uint32_t>(pad)};
      std::memcpy(data_ + pos, padding, sizeof(padding));
      head_ += pad;
    }
    uint8_t* rec = data_ + (head_ & (ring_bytes_ - 1));
    TbRecordHeader h = fields;
    h.magic = kTbRecordMagic;
    h.total_bytes = static_cast<uint32_t>(total);
    h.size_bytes = static_cast<uint32_t>(insn_bytes.size());
    std::memcpy(rec, &h, sizeof(h));
    if (!insn_bytes.empty()) std::memcpy(rec + sizeof(h), insn_bytes.data(), insn_bytes.size());
    std::memset(rec + sizeof(h) + insn_bytes.size(), 0, total - sizeof(h) - insn_bytes.size());
    head_ += total;
    ring_->head.store(head_, std::memory_order_release);
    return true;
  }

 private:
  TbRing* ring_ = nullptr;
  uint8_t* data_ = nullptr;
  uint64_t ring_bytes_ = 0;
  uint64_t head_ = 0;
};

// ---- Reader core -----------------------------------------------------------------------------

// What drain_events found wrong with a ring (accumulated over calls).
struct EventDrainStats {
  uint64_t resyncs = 0;  // calls that found head - tail > ring_events (or head < tail) and
                         // discarded everything up to head
};

// Consumer: copies up to out.size() tb_ids from `ring` (events = its ring_events entries, a
// power of two) into `out`, oldest first, and releases them to the producer. Returns the count
// copied. A head more than ring_events ahead of tail (or behind it) is impossible from a
// correct producer: the ring is resynced (tail := head, nothing copied, stats->resyncs++).
// Returns 0 when ring_events is not a power of two. tb_ids themselves are unvalidated input.
// Thread-safety: one consumer per ring; concurrent with its producer.
inline size_t drain_events(EventRing& ring, const uint32_t* events, uint32_t ring_events,
                           std::span<uint32_t> out, EventDrainStats* stats = nullptr) noexcept {
  if (!std::has_single_bit(ring_events)) return 0;
  const uint64_t head = ring.head.load(std::memory_order_acquire);
  const uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  const uint64_t avail = head - tail;
  if (avail > ring_events) {
    ring.tail.store(head, std::memory_order_release);
    if (stats != nullptr) ++stats->resyncs;
    return 0;
  }
  const uint64_t n = avail < out.size() ? avail : out.size();
  if (n == 0) return 0;
  const uint64_t mask = uint64_t{ring_events} - 1;
  const uint64_t first = tail & mask;
  const uint64_t n1 = n < ring_events - first ? n : ring_events - first;
  std::memcpy(out.data(), events + first, n1 * sizeof(uint32_t));
  std::memcpy(out.data() + n1, events, (n - n1) * sizeof(uint32_t));
  ring.tail.store(tail + n, std::memory_order_release);
  return static_cast<size_t>(n);
}

// What drain_tb_records saw (accumulated over calls).
struct TbDrainStats {
  uint64_t records = 0;          // valid records passed to the visitor
  uint64_t padding_records = 0;  // PADD records skipped
  uint64_t resyncs = 0;          // corrupt records or indices: rest of the ring up to head dropped
  uint64_t bytes_discarded = 0;  // bytes dropped by resyncs (each clamped to the ring size)
};

// Consumer: reads up to `max_records` TB records from `ring` (`data` = its ring_bytes bytes, a
// power of two >= 8), calling visit(const TbRecordHeader& header, std::span<const uint8_t>
// insn_bytes) for each valid one, skipping padding, then releases what it read. `header` is a
// validated copy; `insn_bytes` (header.size_bytes long) points into the ring and is valid only
// during the call: copy it. A record is valid when magic == kTbRecordMagic, total_bytes is
// >= sizeof(TbRecordHeader), a multiple of 8, within both the bytes before the ring's end and
// the bytes published (head - tail), and size_bytes <= total_bytes - sizeof(TbRecordHeader).
// A padding record must end exactly at the ring's end. Anything else (bad magic, bad lengths,
// unaligned or out-of-range head/tail) resyncs: tail := head, counted in stats. Returns the
// records visited. Bounded: at most ring_bytes / 8 steps.
// Thread-safety: one consumer per ring; concurrent with its producer. `visit` must not call
// back into this ring.
template <typename Visit>
size_t drain_tb_records(TbRing& ring, const uint8_t* data, uint64_t ring_bytes, size_t max_records,
                        Visit&& visit, TbDrainStats* stats = nullptr) {
  if (!std::has_single_bit(ring_bytes) || ring_bytes < 8) return 0;
  TbDrainStats local;
  TbDrainStats& s = stats != nullptr ? *stats : local;
  const uint64_t head = ring.head.load(std::memory_order_acquire);
  uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  const auto resync = [&](uint64_t at) {
    const uint64_t left = head - at;
    s.bytes_discarded += left < ring_bytes ? left : ring_bytes;
    ++s.resyncs;
    ring.tail.store(head, std::memory_order_release);
  };
  if (head - tail > ring_bytes || (head | tail) % 8 != 0) {
    resync(tail);
    return 0;
  }
  size_t visited = 0;
  while (tail != head && visited < max_records) {
    const uint64_t avail = head - tail;  // > 0, a multiple of 8, <= ring_bytes
    const uint64_t pos = tail & (ring_bytes - 1);
    const uint64_t contig = ring_bytes - pos;  // >= 8
    uint32_t prefix[2];                        // magic, total_bytes
    std::memcpy(prefix, data + pos, sizeof(prefix));
    const uint64_t total = prefix[1];
    if (prefix[0] == kTbPaddingMagic) {
      if (total != contig || total > avail) {
        resync(tail);
        return visited;
      }
      ++s.padding_records;
      tail += total;
      continue;
    }
    if (prefix[0] != kTbRecordMagic || total < sizeof(TbRecordHeader) || total % 8 != 0 ||
        total > contig || total > avail) {
      resync(tail);
      return visited;
    }
    TbRecordHeader h;
    std::memcpy(&h, data + pos, sizeof(h));
    if (h.magic != kTbRecordMagic || h.total_bytes != total ||
        h.size_bytes > total - sizeof(TbRecordHeader)) {
      resync(tail);
      return visited;
    }
    visit(static_cast<const TbRecordHeader&>(h),
          std::span<const uint8_t>(data + pos + sizeof(TbRecordHeader), h.size_bytes));
    ++s.records;
    ++visited;
    tail += total;
  }
  ring.tail.store(tail, std::memory_order_release);
  return visited;
}

}  // namespace glassbox::trace
