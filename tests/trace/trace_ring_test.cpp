// Tests of shared/trace_ring.hpp (the trace file layout, the producers, the reader core) and of
// the trace plugin's header-only parts (plugin_args.hpp, host_ram_map.hpp). Hermetic: the
// "file" is anonymous memory; threads stand in for the QEMU vCPU thread and the consumer.
#include "shared/trace_ring.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "services/trace_plugin/host_ram_map.hpp"
#include "services/trace_plugin/plugin_args.hpp"

namespace glassbox::trace {
namespace {

// An anonymous, zero-filled, page-aligned mapping standing in for the trace file.
class Mapping {
 public:
  explicit Mapping(uint64_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : p;
  }
  ~Mapping() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  void* base() const { return base_; }
  uint64_t bytes() const { return bytes_; }

 private:
  void* base_ = nullptr;
  uint64_t bytes_ = 0;
};

// A small trace file: 2 vCPUs, 64-event rings, 1024 counters, a 64 KiB TB ring.
constexpr TraceGeometry kSmall{2, 64, 1024, kMinTbRingBytes};

struct SmallTrace {
  SmallTrace() : layout(*plan_layout(kSmall)), file(layout.file_bytes) {
    view = init_trace_file(file.base(), kSmall, layout, TraceMode::kStream, 0x1234, 42);
  }
  TraceLayout layout;
  Mapping file;
  TraceView view;
};

// ---- Layout and header ------------------------------------------------------------------------

TEST(TraceRingLayoutTest, PlansPageAlignedRegionsForDefaults) {
  const TraceGeometry g{4, kDefaultRingEvents, kDefaultMaxTbs, kDefaultTbRingBytes};
  const std::optional<TraceLayout> l = plan_layout(g);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->counters_offset, kTraceHeaderBytes);
  EXPECT_EQ(l->tb_ring_offset, kTraceHeaderBytes + kDefaultMaxTbs * 8);
  EXPECT_EQ(l->event_rings_offset,
            l->tb_ring_offset + round_up(sizeof(TbRing) + kDefaultTbRingBytes, 4096));
  EXPECT_EQ(l->event_ring_stride_bytes, round_up(192 + 4ull * kDefaultRingEvents, 4096));
  EXPECT_EQ(l->file_bytes, l->event_rings_offset + 4 * l->event_ring_stride_bytes);
  for (uint64_t off : {l->counters_offset, l->tb_ring_offset, l->event_rings_offset,
                       l->event_ring_stride_bytes, l->file_bytes}) {
    EXPECT_EQ(off % kTracePageBytes, 0u);
  }
}

TEST(TraceRingLayoutTest, RejectsGeometryOutsideLimits) {
  const TraceGeometry ok = kSmall;
  EXPECT_TRUE(plan_layout(ok).has_value());
  TraceGeometry g = ok;
  g.n_vcpus = 0;
  EXPECT_FALSE(plan_layout(g).has_value());
  g = ok;
  g.n_vcpus = kMaxVcpus + 1;
  EXPECT_FALSE(plan_layout(g).has_value());
  g = ok;
  g.ring_events = 100;  // not a power of two
  EXPECT_FALSE(plan_layout(g).has_value());
  g = ok;
  g.ring_events = 8;  // below kMinRingEvents
  EXPECT_FALSE(plan_layout(g).has_value());
  g = ok;
  g.max_tbs = 0;
  EXPECT_FALSE(plan_layout(g).has_value());
  g = ok;
  g.max_tbs = kMaxTbs + 1;
  EXPECT_FALSE(plan_layout(g).has_value());
  g = ok;
  g.tb_ring_bytes = kMinTbRingBytes + 8;
  EXPECT_FALSE(plan_layout(g).has_value());
  g = ok;
  g.tb_ring_bytes = kMaxTbRingBytes * 2;
  EXPECT_FALSE(plan_layout(g).has_value());
}

TEST(TraceRingLayoutTest, MakeViewAcceptsInitializedFile) {
  SmallTrace t;
  TraceView v;
  ASSERT_EQ(make_view(t.file.base(), t.file.bytes(), &v), TraceError::kOk);
  EXPECT_EQ(v.mode, TraceMode::kStream);
  EXPECT_EQ(v.generation, 0x1234u);
  EXPECT_EQ(v.n_vcpus, 2u);
  EXPECT_EQ(v.ring_events, 64u);
  EXPECT_EQ(v.max_tbs, 1024u);
  EXPECT_EQ(v.tb_ring_bytes, kMinTbRingBytes);
  EXPECT_EQ(v.header->qemu_pid, 42u);
  EXPECT_EQ(v.header->producer_state.load(), static_cast<uint32_t>(ProducerState::kRunning));
  EXPECT_EQ(std::memcmp(v.header->magic, kTraceMagic, 8), 0);
  auto* base = static_cast<std::byte*>(t.file.base());
  EXPECT_EQ(reinterpret_cast<std::byte*>(v.counters), base + t.layout.counters_offset);
  EXPECT_EQ(reinterpret_cast<std::byte*>(v.tb_ring), base + t.layout.tb_ring_offset);
  EXPECT_EQ(reinterpret_cast<std::byte*>(v.tb_data), base + t.layout.tb_ring_offset + 192);
  EXPECT_EQ(reinterpret_cast<std::byte*>(v.event_ring(1)),
            base + t.layout.event_rings_offset + t.layout.event_ring_stride_bytes);
  EXPECT_EQ(reinterpret_cast<std::byte*>(v.events(1)),
            base + t.layout.event_rings_offset + t.layout.event_ring_stride_bytes + 192);
}

TEST(TraceRingLayoutTest, MakeViewReportsNotReadyBeforePublication) {
  Mapping zeros(8192);
  TraceView v;
  EXPECT_EQ(make_view(zeros.base(), zeros.bytes(), &v), TraceError::kNotReady);
  EXPECT_EQ(make_view(zeros.base(), 100, &v), TraceError::kTooSmall);
  EXPECT_EQ(make_view(nullptr, 8192, &v), TraceError::kTooSmall);
}

TEST(TraceRingLayoutTest, MakeViewRejectsCorruptHeaders) {
  SmallTrace t;
  TraceHeader& h = *t.view.header;
  TraceView v;
  const auto expect_error = [&](TraceError e, auto&& corrupt, auto&& restore) {
    corrupt();
    EXPECT_EQ(make_view(t.file.base(), t.file.bytes(), &v), e) << to_string(e);
    restore();
    EXPECT_EQ(make_view(t.file.base(), t.file.bytes(), &v), TraceError::kOk);
  };
  expect_error(
      TraceError::kBadMagic, [&] { h.magic[0] = 'X'; }, [&] { h.magic[0] = 'G'; });
  expect_error(
      TraceError::kBadVersion, [&] { h.version = 2; }, [&] { h.version = 1; });
  expect_error(
      TraceError::kBadMode, [&] { h.mode = 7; }, [&] { h.mode = 2; });
  expect_error(
      TraceError::kBadGeometry, [&] { h.ring_events = 65; }, [&] { h.ring_events = 64; });
  expect_error(
      TraceError::kBadGeometry, [&] { h.n_vcpus = 0; }, [&] { h.n_vcpus = 2; });
  // A larger (valid) geometry whose offsets are not updated.
  expect_error(
      TraceError::kLayoutMismatch, [&] { h.n_vcpus = 3; }, [&] { h.n_vcpus = 2; });
  expect_error(
      TraceError::kLayoutMismatch, [&] { h.counters_offset = 0; },
      [&] { h.counters_offset = 4096; });
  expect_error(
      TraceError::kLayoutMismatch, [&] { h.event_ring_stride_bytes += 4096; },
      [&] { h.event_ring_stride_bytes -= 4096; });
  expect_error(
      TraceError::kLayoutMismatch, [&] { h.file_bytes = UINT64_MAX; },
      [&] { h.file_bytes = t.layout.file_bytes; });
  EXPECT_EQ(make_view(t.file.base(), t.layout.file_bytes - 1, &v), TraceError::kTruncated);
}

// ---- Event rings ------------------------------------------------------------------------------

TEST(TraceRingEventTest, PushAndDrainRoundTripAcrossWrap) {
  SmallTrace t;
  EventRing& ring = *t.view.event_ring(1);
  EventProducer producer(&ring, t.view.events(1), t.view.ring_events);
  std::vector<uint32_t> out(64);
  uint32_t next = 0, expected = 0;
  for (int round = 0; round < 50; ++round) {  // 50 x 40 events through a 64-event ring
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(producer.push(next++));
    const size_t n = drain_events(ring, t.view.events(1), t.view.ring_events, out);
    ASSERT_EQ(n, 40u);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], expected++);
  }
  EXPECT_EQ(ring.head.load(), 2000u);
  EXPECT_EQ(ring.tail.load(), 2000u);
  EXPECT_EQ(ring.drops.load(), 0u);
  EXPECT_EQ(t.view.event_ring(0)->head.load(), 0u);  // the other vCPU's ring is untouched
}

TEST(TraceRingEventTest, DropsCountedWhenFullAndNothingOverwritten) {
  SmallTrace t;
  EventRing& ring = *t.view.event_ring(0);
  EventProducer producer(&ring, t.view.events(0), 64);
  for (uint32_t i = 0; i < 64; ++i) ASSERT_TRUE(producer.push(i));
  for (uint32_t i = 0; i < 10; ++i) EXPECT_FALSE(producer.push(1000 + i));
  EXPECT_EQ(ring.drops.load(), 10u);
  EXPECT_EQ(ring.head.load(), 64u);
  std::vector<uint32_t> out(100);
  ASSERT_EQ(drain_events(ring, t.view.events(0), 64, out), 64u);
  for (uint32_t i = 0; i < 64; ++i) EXPECT_EQ(out[i], i);
  EXPECT_TRUE(producer.push(7));  // room again once drained
  ASSERT_EQ(drain_events(ring, t.view.events(0), 64, out), 1u);
  EXPECT_EQ(out[0], 7u);
}

TEST(TraceRingEventTest, DrainStopsAtOutputSpanSize) {
  SmallTrace t;
  EventRing& ring = *t.view.event_ring(0);
  EventProducer producer(&ring, t.view.events(0), 64);
  for (uint32_t i = 0; i < 30; ++i) ASSERT_TRUE(producer.push(i));
  std::vector<uint32_t> out(7);
  uint32_t expected = 0;
  for (int call = 0; call < 5; ++call) {
    const size_t n = drain_events(ring, t.view.events(0), 64, out);
    ASSERT_EQ(n, call < 4 ? 7u : 2u);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], expected++);
  }
  EXPECT_EQ(drain_events(ring, t.view.events(0), 64, out), 0u);
  EXPECT_EQ(drain_events(ring, t.view.events(0), 64, std::span<uint32_t>()), 0u);
}

TEST(TraceRingEventTest, ProducerAndConsumerThreadsReceiveExactSequenceOverManyWraps) {
  SmallTrace t;  // 64-event ring: 1 M events wrap it ~16 k times
  constexpr uint32_t kEvents = 1u << 20;
  EventRing& ring = *t.view.event_ring(0);
  uint32_t* events = t.view.events(0);
  std::atomic<uint64_t> failed_pushes{0};
  std::atomic<bool> overfull{false};
  std::thread producer_thread([&] {
    EventProducer producer(&ring, events, 64);
    uint64_t failures = 0;
    for (uint32_t i = 0; i < kEvents;) {
      if (producer.push(i)) {
        ++i;
      } else {
        ++failures;  // full: the same value is retried, so the sequence stays exact
        std::this_thread::yield();
      }
    }
    failed_pushes.store(failures);
  });
  std::vector<uint32_t> out(48);
  std::mt19937 rng(7);
  uint32_t expected = 0;
  bool in_order = true;
  while (expected < kEvents && in_order) {
    const uint64_t in_flight = ring.head.load() - ring.tail.load();
    if (in_flight > 64) overfull = true;
    const size_t want = 1 + rng() % out.size();
    const size_t n = drain_events(ring, events, 64, std::span<uint32_t>(out.data(), want));
    for (size_t i = 0; i < n; ++i) in_order = in_order && out[i] == expected++;
    if (n == 0) std::this_thread::yield();
  }
  producer_thread.join();
  EXPECT_TRUE(in_order);
  EXPECT_FALSE(overfull.load());
  EXPECT_EQ(expected, kEvents);
  EXPECT_EQ(ring.drops.load(), failed_pushes.load());
  EXPECT_EQ(ring.head.load(), kEvents);
  EXPECT_EQ(ring.tail.load(), kEvents);
}

// ---- TB record ring ---------------------------------------------------------------------------

// Deterministic insn bytes of record `i` (size 0..299).
std::vector<uint8_t> insn_bytes_of(uint32_t i) {
  std::vector<uint8_t> bytes((i * 37u) % 300u);
  for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = static_cast<uint8_t>(i * 13u + k);
  return bytes;
}

TbRecordHeader record_of(uint32_t i) {
  TbRecordHeader h{};
  h.tb_id = i;
  h.n_insns = i % 17 + 1;
  h.pc = 0xffffffff81000000ull + i * 16ull;
  h.ram_offset = i % 5 == 0 ? kNoRamOffset : 0x1000000ull + i;
  h.flags = i % 8;
  return h;
}

TEST(TraceRingTbTest, RecordsRoundTripWithFields) {
  SmallTrace t;
  TbRecordProducer producer(t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes);
  for (uint32_t i = 0; i < 20; ++i) ASSERT_TRUE(producer.append(record_of(i), insn_bytes_of(i)));
  uint32_t next = 0;
  TbDrainStats stats;
  const size_t n = drain_tb_records(
      *t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes, SIZE_MAX,
      [&](const TbRecordHeader& h, std::span<const uint8_t> bytes) {
        const TbRecordHeader want = record_of(next);
        const std::vector<uint8_t> want_bytes = insn_bytes_of(next);
        EXPECT_EQ(h.magic, kTbRecordMagic);
        EXPECT_EQ(h.total_bytes, tb_record_total_bytes(want_bytes.size()));
        EXPECT_EQ(h.total_bytes % 8, 0u);
        EXPECT_EQ(h.tb_id, want.tb_id);
        EXPECT_EQ(h.n_insns, want.n_insns);
        EXPECT_EQ(h.pc, want.pc);
        EXPECT_EQ(h.ram_offset, want.ram_offset);
        EXPECT_EQ(h.flags, want.flags);
        EXPECT_EQ(h.size_bytes, want_bytes.size());
        EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), want_bytes.begin(), want_bytes.end()));
        ++next;
      },
      &stats);
  EXPECT_EQ(n, 20u);
  EXPECT_EQ(stats.records, 20u);
  EXPECT_EQ(stats.resyncs, 0u);
  EXPECT_EQ(t.view.tb_ring->tail.load(), t.view.tb_ring->head.load());
}

TEST(TraceRingTbTest, WrapInsertsPaddingRecordsAndKeepsOrder) {
  SmallTrace t;
  TbRecordProducer producer(t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes);
  TbDrainStats stats;
  uint32_t produced = 0, consumed = 0;
  bool ok = true;
  const auto visit = [&](const TbRecordHeader& h, std::span<const uint8_t> bytes) {
    const std::vector<uint8_t> want = insn_bytes_of(consumed);
    ok = ok && h.tb_id == consumed && h.pc == record_of(consumed).pc &&
         std::equal(bytes.begin(), bytes.end(), want.begin(), want.end());
    ++consumed;
  };
  // ~200 bytes a record, 64 KiB ring: 20 k records wrap it ~60 times.
  while (produced < 20000) {
    for (int k = 0; k < 150 && produced < 20000; ++k) {
      ASSERT_TRUE(producer.append(record_of(produced), insn_bytes_of(produced)));
      ++produced;
    }
    for (int k = 0; k < 2; ++k) {  // partial drains: at most 2 x 97 of the 150 appended
      drain_tb_records(*t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes, 97, visit, &stats);
    }
  }
  for (int i = 0; i < 1000 && consumed < produced; ++i) {
    drain_tb_records(*t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes, 97, visit, &stats);
  }
  EXPECT_TRUE(ok);
  EXPECT_EQ(consumed, produced);
  EXPECT_GT(stats.padding_records, 10u);
  EXPECT_EQ(stats.resyncs, 0u);
  EXPECT_EQ(t.view.tb_ring->drops.load(), 0u);
}

TEST(TraceRingTbTest, DropsRecordWhenFullAndOversizedRecords) {
  SmallTrace t;
  TbRecordProducer producer(t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes);
  const std::vector<uint8_t> bytes(1000, 0x90);  // 1040-byte records: 63 fit in 64 KiB
  uint32_t appended = 0;
  for (uint32_t i = 0; i < 100; ++i) appended += producer.append(record_of(i), bytes) ? 1 : 0;
  EXPECT_EQ(appended, 63u);
  EXPECT_EQ(t.view.tb_ring->drops.load(), 37u);
  const std::vector<uint8_t> huge(t.view.tb_ring_bytes / 2, 0);  // never fits (> ring / 2)
  size_t drained = drain_tb_records(*t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes, SIZE_MAX,
                                    [](const TbRecordHeader&, auto) {});
  EXPECT_EQ(drained, 63u);
  EXPECT_FALSE(producer.append(record_of(0), huge));
  EXPECT_EQ(t.view.tb_ring->drops.load(), 38u);
  EXPECT_TRUE(producer.append(record_of(1), bytes));
}

TEST(TraceRingTbTest, ProducerAndConsumerThreadsReceiveEveryRecordInOrder) {
  SmallTrace t;
  constexpr uint32_t kRecords = 200000;  // ~40 MB through a 64 KiB ring
  TbRing& ring = *t.view.tb_ring;
  std::atomic<uint64_t> failed_appends{0};
  std::thread producer_thread([&] {
    TbRecordProducer producer(&ring, t.view.tb_data, t.view.tb_ring_bytes);
    uint64_t failures = 0;
    for (uint32_t i = 0; i < kRecords;) {
      if (producer.append(record_of(i), insn_bytes_of(i))) {
        ++i;
      } else {
        ++failures;
        std::this_thread::yield();
      }
    }
    failed_appends.store(failures);
  });
  uint32_t consumed = 0;
  bool ok = true;
  TbDrainStats stats;
  while (consumed < kRecords && ok) {
    const size_t n = drain_tb_records(
        ring, t.view.tb_data, t.view.tb_ring_bytes, 64,
        [&](const TbRecordHeader& h, std::span<const uint8_t> bytes) {
          const std::vector<uint8_t> want = insn_bytes_of(consumed);
          ok = ok && h.tb_id == consumed && h.n_insns == record_of(consumed).n_insns &&
               std::equal(bytes.begin(), bytes.end(), want.begin(), want.end());
          ++consumed;
        },
        &stats);
    if (ring.head.load() - ring.tail.load() > t.view.tb_ring_bytes) ok = false;
    if (n == 0) std::this_thread::yield();
  }
  producer_thread.join();
  EXPECT_TRUE(ok);
  EXPECT_EQ(consumed, kRecords);
  EXPECT_EQ(stats.resyncs, 0u);
  EXPECT_GT(stats.padding_records, 0u);
  EXPECT_EQ(ring.drops.load(), failed_appends.load());
}

// ---- Hostile rings: a corrupt or malicious peer must not crash, hang or mislead ---------------

TEST(TraceRingHostileTest, EventHeadFarAheadOfTailResyncsWithoutReading) {
  SmallTrace t;
  EventRing& ring = *t.view.event_ring(0);
  ring.head.store(1ull << 62);
  std::vector<uint32_t> out(64, 0xdead);
  EventDrainStats stats;
  EXPECT_EQ(drain_events(ring, t.view.events(0), 64, out, &stats), 0u);
  EXPECT_EQ(stats.resyncs, 1u);
  EXPECT_EQ(ring.tail.load(), 1ull << 62);
  EXPECT_EQ(out[0], 0xdeadu);
  // Head just one past capacity: also impossible from a correct producer.
  ring.head.store((1ull << 62) + 65);
  EXPECT_EQ(drain_events(ring, t.view.events(0), 64, out, &stats), 0u);
  EXPECT_EQ(stats.resyncs, 2u);
  // Exactly full is legal.
  ring.head.store((1ull << 62) + 65 + 64);
  EXPECT_EQ(drain_events(ring, t.view.events(0), 64, out, &stats), 64u);
  EXPECT_EQ(stats.resyncs, 2u);
}

TEST(TraceRingHostileTest, EventHeadBehindTailResyncs) {
  SmallTrace t;
  EventRing& ring = *t.view.event_ring(0);
  ring.head.store(5);
  ring.tail.store(10);
  std::vector<uint32_t> out(64);
  EventDrainStats stats;
  EXPECT_EQ(drain_events(ring, t.view.events(0), 64, out, &stats), 0u);
  EXPECT_EQ(stats.resyncs, 1u);
  EXPECT_EQ(ring.tail.load(), 5u);
}

TEST(TraceRingHostileTest, EventRingSizeNotPowerOfTwoReadsNothing) {
  SmallTrace t;
  EventRing& ring = *t.view.event_ring(0);
  ring.head.store(10);
  std::vector<uint32_t> out(64);
  EXPECT_EQ(drain_events(ring, t.view.events(0), 63, out), 0u);
  EXPECT_EQ(drain_events(ring, t.view.events(0), 0, out), 0u);
  EXPECT_EQ(ring.tail.load(), 0u);
}

TEST(TraceRingHostileTest, CorruptTailMakesProducersDropNeverWriteOutside) {
  SmallTrace t;
  // Event ring 0: canary in the slot after events[63] (start of the next page/ring padding).
  EventRing& ring = *t.view.event_ring(0);
  uint32_t* events = t.view.events(0);
  events[64] = 0xc0ffee;
  EventProducer producer(&ring, events, 64);
  for (uint32_t i = 0; i < 64; ++i) ASSERT_TRUE(producer.push(i));  // full: the tail is reloaded
  ring.tail.store(UINT64_MAX - 3);                                  // "ahead" of head
  for (int i = 0; i < 200; ++i) EXPECT_FALSE(producer.push(1));
  ring.tail.store(1ull << 40);
  for (int i = 0; i < 200; ++i) EXPECT_FALSE(producer.push(1));
  EXPECT_EQ(ring.drops.load(), 400u);
  EXPECT_EQ(events[64], 0xc0ffeeu);
  // A hostile head does not move the producer (it keeps its own head).
  ring.tail.store(64);
  ring.head.store(1ull << 50);
  for (uint32_t i = 0; i < 64; ++i) EXPECT_TRUE(producer.push(i));
  EXPECT_EQ(ring.head.load(), 128u);
  EXPECT_EQ(events[64], 0xc0ffeeu);

  // TB ring: a tail ahead of head or far behind only drops.
  TbRing& tb_ring = *t.view.tb_ring;
  TbRecordProducer tb_producer(&tb_ring, t.view.tb_data, t.view.tb_ring_bytes);
  tb_ring.tail.store(12345678);
  EXPECT_FALSE(tb_producer.append(record_of(1), insn_bytes_of(1)));
  tb_ring.tail.store(1ull << 63);
  EXPECT_FALSE(tb_producer.append(record_of(1), insn_bytes_of(1)));
  EXPECT_EQ(tb_ring.drops.load(), 2u);
  EXPECT_EQ(tb_ring.head.load(), 0u);
}

// Writes a raw TB record header at ring offset `pos` and publishes head = `head`.
void plant(const TraceView& v, uint64_t pos, const TbRecordHeader& h, uint64_t head) {
  std::memcpy(v.tb_data + pos, &h, sizeof(h));
  v.tb_ring->head.store(head);
}

// Drains the TB ring and expects exactly `records` valid records then one resync that leaves
// tail == head.
void expect_resync(const TraceView& v, size_t records) {
  TbDrainStats stats;
  size_t visited = drain_tb_records(
      *v.tb_ring, v.tb_data, v.tb_ring_bytes, SIZE_MAX,
      [](const TbRecordHeader&, std::span<const uint8_t>) {}, &stats);
  EXPECT_EQ(visited, records);
  EXPECT_EQ(stats.resyncs, 1u);
  EXPECT_GT(stats.bytes_discarded, 0u);
  EXPECT_LE(stats.bytes_discarded, v.tb_ring_bytes);
  EXPECT_EQ(v.tb_ring->tail.load(), v.tb_ring->head.load());
  // A second drain finds nothing to do and does not resync again.
  TbDrainStats again;
  EXPECT_EQ(drain_tb_records(
                *v.tb_ring, v.tb_data, v.tb_ring_bytes, SIZE_MAX,
                [](const TbRecordHeader&, std::span<const uint8_t>) {}, &again),
            0u);
  EXPECT_EQ(again.resyncs, 0u);
}

TbRecordHeader valid_record(uint32_t size_bytes) {
  TbRecordHeader h = record_of(3);
  h.magic = kTbRecordMagic;
  h.size_bytes = size_bytes;
  h.total_bytes = static_cast<uint32_t>(tb_record_total_bytes(size_bytes));
  return h;
}

TEST(TraceRingHostileTest, TbBadMagicResyncsAfterValidRecords) {
  SmallTrace t;
  TbRecordProducer producer(t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes);
  ASSERT_TRUE(producer.append(record_of(0), insn_bytes_of(0)));
  ASSERT_TRUE(producer.append(record_of(1), insn_bytes_of(1)));
  const uint64_t at = t.view.tb_ring->head.load();
  TbRecordHeader h = valid_record(8);
  h.magic = 0x41414141;
  plant(t.view, at, h, at + h.total_bytes + 4096);
  expect_resync(t.view, 2);
}

TEST(TraceRingHostileTest, TbTotalBytesBeyondRingEndResyncs) {
  SmallTrace t;
  TbRecordHeader h = valid_record(8);
  h.total_bytes = static_cast<uint32_t>(t.view.tb_ring_bytes) + 64;
  plant(t.view, 0, h, t.view.tb_ring_bytes);
  expect_resync(t.view, 0);
  // Fits the published bytes but not before the ring's end (records never wrap).
  SmallTrace t2;
  const uint64_t pos = t2.view.tb_ring_bytes - 64;
  t2.view.tb_ring->tail.store(pos);
  TbRecordHeader h2 = valid_record(64);  // 104 bytes > 64 left before the end
  plant(t2.view, pos, h2, pos + 512);
  expect_resync(t2.view, 0);
}

TEST(TraceRingHostileTest, TbTotalBytesBeyondPublishedHeadResyncs) {
  SmallTrace t;
  TbRecordHeader h = valid_record(200);
  plant(t.view, 0, h, 48);  // the record claims 240 bytes, only 48 published
  expect_resync(t.view, 0);
}

TEST(TraceRingHostileTest, TbTotalBytesTooSmallOrUnalignedResyncs) {
  for (uint32_t total : {0u, 8u, 32u, 44u, 41u}) {
    SmallTrace t;
    TbRecordHeader h = valid_record(0);
    h.total_bytes = total;
    plant(t.view, 0, h, 4096);
    SCOPED_TRACE(total);
    expect_resync(t.view, 0);
  }
}

TEST(TraceRingHostileTest, TbSizeBytesLargerThanRecordResyncs) {
  SmallTrace t;
  TbRecordHeader h = valid_record(16);
  h.size_bytes = 17;  // total 56 = 40 + 16
  plant(t.view, 0, h, 4096);
  expect_resync(t.view, 0);
  SmallTrace t2;
  TbRecordHeader h2 = valid_record(16);
  h2.size_bytes = UINT32_MAX;
  plant(t2.view, 0, h2, 4096);
  expect_resync(t2.view, 0);
}

TEST(TraceRingHostileTest, TbPaddingNotReachingRingEndResyncs) {
  SmallTrace t;
  const uint32_t padding[2] = {kTbPaddingMagic, 64};
  std::memcpy(t.view.tb_data, padding, sizeof(padding));
  t.view.tb_ring->head.store(4096);
  expect_resync(t.view, 0);
}

TEST(TraceRingHostileTest, TbHeadFarAheadOrUnalignedResyncs) {
  for (const uint64_t head :
       std::array<uint64_t, 4>{1ull << 62, kMinTbRingBytes + 8, 12, UINT64_MAX}) {
    SmallTrace t;
    TbRecordProducer producer(t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes);
    ASSERT_TRUE(producer.append(record_of(0), insn_bytes_of(0)));
    t.view.tb_ring->head.store(head);
    SCOPED_TRACE(head);
    TbDrainStats stats;
    EXPECT_EQ(drain_tb_records(
                  *t.view.tb_ring, t.view.tb_data, t.view.tb_ring_bytes, SIZE_MAX,
                  [](const TbRecordHeader&, std::span<const uint8_t>) {}, &stats),
              0u);
    EXPECT_EQ(stats.resyncs, 1u);
    EXPECT_LE(stats.bytes_discarded, t.view.tb_ring_bytes);
    EXPECT_EQ(t.view.tb_ring->tail.load(), head);
  }
}

TEST(TraceRingHostileTest, RandomlyCorruptedRingsNeverReadOutsideOrHang) {
  SmallTrace t;
  std::mt19937_64 rng(99);
  const uint64_t ring_bytes = t.view.tb_ring_bytes;
  const uint8_t* begin = t.view.tb_data;
  const uint8_t* end = begin + ring_bytes;
  uint64_t resyncs = 0, records = 0;
  for (int iteration = 0; iteration < 3000; ++iteration) {
    // Genuine records from a random aligned position, then random damage.
    const uint64_t start = (rng() % (1 << 20)) * 8;
    t.view.tb_ring->tail.store(start);
    t.view.tb_ring->head.store(start);
    TbRecordProducer producer(t.view.tb_ring, t.view.tb_data, ring_bytes);
    const uint32_t n_records = static_cast<uint32_t>(rng() % 400);
    for (uint32_t i = 0; i < n_records; ++i) producer.append(record_of(i), insn_bytes_of(i));
    const uint64_t damage = rng() % 8;
    for (uint64_t k = 0; k < damage; ++k) {
      t.view.tb_data[rng() % ring_bytes] = static_cast<uint8_t>(rng());
    }
    if (rng() % 8 == 0) {
      const uint64_t word = rng();
      std::memcpy(t.view.tb_data + (rng() % (ring_bytes / 8)) * 8, &word, 8);
    }
    if (rng() % 4 == 0) t.view.tb_ring->head.store(rng() % 2 ? rng() : start + rng() % 200000);
    if (rng() % 8 == 0) t.view.tb_ring->tail.store(rng());
    TbDrainStats stats;
    drain_tb_records(
        *t.view.tb_ring, t.view.tb_data, ring_bytes, SIZE_MAX,
        [&](const TbRecordHeader& h, std::span<const uint8_t> bytes) {
          ASSERT_EQ(h.magic, kTbRecordMagic);
          ASSERT_GE(bytes.data(), begin);
          ASSERT_LE(bytes.data() + bytes.size(), end);
          ASSERT_LE(h.size_bytes + sizeof(TbRecordHeader), h.total_bytes);
        },
        &stats);
    resyncs += stats.resyncs;
    records += stats.records;
    ASSERT_LE(stats.bytes_discarded, ring_bytes);
    // Unbounded max_records: the reader always ends at head, by reading or by resyncing.
    ASSERT_EQ(t.view.tb_ring->tail.load(), t.view.tb_ring->head.load());
  }
  EXPECT_GT(resyncs, 300u);
  EXPECT_GT(records, 10000u);
}

// ---- Plugin arguments -------------------------------------------------------------------------

std::string parse(std::vector<const char*> argv, PluginArgs* out) {
  return parse_plugin_args(std::span<const char* const>(argv.data(), argv.size()), out);
}

TEST(TraceRingPluginArgsTest, ParsesEveryKey) {
  PluginArgs a;
  ASSERT_EQ(parse({"shm=/dev/shm/glassbox-x.trace", "mode=stream", "ring_events=4096",
                   "max_tbs=0x100000", "tb_ring_bytes=16M", "ram=/dev/shm/glassbox-x.ram"},
                  &a),
            "");
  EXPECT_EQ(a.shm_path, "/dev/shm/glassbox-x.trace");
  EXPECT_EQ(a.ram_path, "/dev/shm/glassbox-x.ram");
  EXPECT_EQ(a.mode, TraceMode::kStream);
  EXPECT_EQ(a.ring_events, 4096u);
  EXPECT_EQ(a.max_tbs, 0x100000u);
  EXPECT_EQ(a.tb_ring_bytes, 16ull << 20);
}

TEST(TraceRingPluginArgsTest, DefaultsWithOnlyShm) {
  PluginArgs a;
  ASSERT_EQ(parse({"shm=/tmp/t"}, &a), "");
  EXPECT_EQ(a.mode, TraceMode::kCounts);
  EXPECT_EQ(a.ring_events, kDefaultRingEvents);
  EXPECT_EQ(a.max_tbs, kDefaultMaxTbs);
  EXPECT_EQ(a.tb_ring_bytes, kDefaultTbRingBytes);
  EXPECT_TRUE(a.ram_path.empty());
}

TEST(TraceRingPluginArgsTest, RejectsBadArgumentsWithALineNamingThem) {
  const std::vector<std::vector<const char*>> bad = {
      {},
      {"mode=stream"},
      {"shm=relative/path"},
      {"shm=/a", "shm=/b"},
      {"shm=/a", "mode=fast"},
      {"shm=/a", "ring_events=1000"},
      {"shm=/a", "ring_events=8"},
      {"shm=/a", "ring_events=1G"},
      {"shm=/a", "max_tbs=0"},
      {"shm=/a", "max_tbs=12abc"},
      {"shm=/a", "max_tbs=99999999999999999999999"},
      {"shm=/a", "tb_ring_bytes=1000"},
      {"shm=/a", "tb_ring_bytes=4K"},
      {"shm=/a", "ram=x.ram"},
      {"shm=/a", "colour=blue"},
      {"shm=/a", "noequals"},
      {"shm=/a", "=x"},
  };
  for (const auto& argv : bad) {
    PluginArgs a;
    a.shm_path = "untouched";
    const std::string error = parse(argv, &a);
    EXPECT_FALSE(error.empty()) << (argv.empty() ? "(none)" : argv.back());
    EXPECT_EQ(error.find('\n'), std::string::npos);
    EXPECT_EQ(a.shm_path, "untouched");
  }
  PluginArgs a;
  EXPECT_NE(parse({"shm=/a", "colour=blue"}, &a).find("colour=blue"), std::string::npos);
}

// ---- Host RAM map -----------------------------------------------------------------------------

constexpr std::string_view kMaps =
    "55d0c0000000-55d0c0100000 r-xp 00000000 08:01 1234                       "
    "/usr/bin/qemu-system-x86_64\n"
    "7f0000000000-7f0008000000 rw-s 00000000 00:1a 77                         "
    "/dev/shm/glassbox-a.ram\n"
    "7f0008000000-7f0010000000 rw-s 08000000 00:1a 77                         "
    "/dev/shm/glassbox-a.ram\n"
    "7f1000000000-7f1000001000 rw-s 00000000 00:1a 78                         "
    "/dev/shm/glassbox-a.ram.old\n"
    "garbage line\n"
    "7f2000000000-7f1000000000 rw-s 00000000 00:1a 77 /dev/shm/glassbox-a.ram\n"
    "7f3000000000-7f3000100000 rw-s zz 00:1a 77 /dev/shm/glassbox-a.ram\n"
    "7f4000000000-7f4000100000 rw-s 00000000 00:00 0 \n"
    "7f5000000000-7f5000100000 rw-s 00200000 00:1a 77 /dev/shm/glassbox-a.ram (deleted)\n"
    "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]";

TEST(TraceRingHostRamMapTest, FindsEveryMappingOfTheRamFileOnly) {
  std::array<RamMapping, 8> out{};
  const size_t n = parse_ram_mappings(kMaps, "/dev/shm/glassbox-a.ram", out);
  ASSERT_EQ(n, 3u);
  EXPECT_EQ(out[0].host_start, 0x7f0000000000u);
  EXPECT_EQ(out[0].host_end, 0x7f0008000000u);
  EXPECT_EQ(out[0].file_offset, 0u);
  EXPECT_EQ(out[1].file_offset, 0x08000000u);
  EXPECT_EQ(out[2].host_start, 0x7f5000000000u);
  EXPECT_EQ(out[2].file_offset, 0x200000u);
  EXPECT_EQ(parse_ram_mappings(kMaps, "/dev/shm/none.ram", out), 0u);
  EXPECT_EQ(parse_ram_mappings(kMaps, "", out), 0u);
  EXPECT_EQ(parse_ram_mappings(kMaps, "/dev/shm/glassbox-a.ram", std::span(out.data(), 1)), 1u);
}

TEST(TraceRingHostRamMapTest, TranslatesHostAddressToRamOffset) {
  std::array<RamMapping, 8> out{};
  const size_t n = parse_ram_mappings(kMaps, "/dev/shm/glassbox-a.ram", out);
  const std::span<const RamMapping> maps(out.data(), n);
  EXPECT_EQ(host_to_ram_offset(maps, 0x7f0000001234u), 0x1234u);
  EXPECT_EQ(host_to_ram_offset(maps, 0x7f0008000010u), 0x08000010u);
  EXPECT_EQ(host_to_ram_offset(maps, 0x7f0010000000u), std::nullopt);  // end is exclusive
  EXPECT_EQ(host_to_ram_offset(maps, 0x55d0c0000100u), std::nullopt);
  EXPECT_EQ(host_to_ram_offset(maps, 0), std::nullopt);
}

}  // namespace
}  // namespace glassbox::trace
