// The RAM stream end to end without iceoryx: the snapshotter's chunk encoding
// (ram_chunks.hpp) fed into the subscriber's RamMirrorCore: keyframes, deltas, gaps, epochs,
// incomplete cycles and hostile headers.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "services/ram_snapshotter/ram_chunks.hpp"
#include "shared/ram_mirror.hpp"

namespace glassbox::ram_snapshotter {
namespace {

using shared::RamMirrorCore;

struct Chunk {
  std::vector<uint8_t> header;
  std::vector<uint8_t> payload;
};

class RamStreamTest : public ::testing::Test {
 protected:
  // 20 MiB: a keyframe takes two parts (4064 pages per chunk). A hole at 640 KiB..1 MiB, and
  // the last 4 MiB mapped at 4 GiB, as on a pc machine above the PCI hole.
  static constexpr uint64_t kRamBytes = 20ull << 20;
  void SetUp() override {
    ram_.resize(kRamBytes);
    std::mt19937_64 rng(99);
    for (auto& b : ram_) b = static_cast<uint8_t>(rng());
    auto layout = shared::RamLayout::from_regions(
        {{Gpa(0), 0xa0000, 0},
         {Gpa(0x100000), kRamBytes - (4ull << 20) - 0x100000, 0x100000},
         {Gpa(0x100000000ull), 4ull << 20, kRamBytes - (4ull << 20)}},
        kRamBytes);
    ASSERT_TRUE(layout) << layout.error().message;
    layout_.emplace(std::move(*layout));
  }

  std::vector<Chunk> cycle(const std::vector<uint64_t>& pages, bool keyframe, uint64_t epoch = 1,
                           uint64_t keyframe_id = 0) {
    CycleInfo info{"t", epoch, ++cycle_, keyframe, keyframe_id, false, kRamBytes, &*layout_, 1};
    const uint32_t parts = parts_for(pages.size());
    std::vector<Chunk> out;
    for (uint32_t p = 0; p < parts; ++p) {
      const uint64_t begin = uint64_t{p} * kPagesPerChunk;
      const uint64_t n = std::min<uint64_t>(kPagesPerChunk, pages.size() - begin);
      Chunk c;
      c.header = build_chunk_header(info, seq_++, p, parts, {pages.data() + begin, n});
      for (uint64_t i = 0; i < n; ++i) {
        const uint8_t* src = ram_.data() + pages[begin + i] * kPageBytes;
        c.payload.insert(c.payload.end(), src, src + kPageBytes);
      }
      out.push_back(std::move(c));
    }
    return out;
  }
  std::vector<Chunk> keyframe(uint64_t epoch = 1, uint64_t id = 0) {
    std::vector<uint64_t> all(kRamBytes / kPageBytes);
    for (uint64_t i = 0; i < all.size(); ++i) all[i] = i;
    return cycle(all, true, epoch, id);
  }
  RamMirrorCore::ApplyResult feed(RamMirrorCore& m, const std::vector<Chunk>& chunks) {
    RamMirrorCore::ApplyResult last;
    for (const auto& c : chunks) last = m.apply(c.header, c.payload);
    return last;
  }
  void touch(uint64_t page, uint8_t value) {
    std::memset(ram_.data() + page * kPageBytes, value, 64);
  }
  bool mirror_equals(const RamMirrorCore& m) {
    auto v = m.view();
    if (!v) return false;
    return std::memcmp(v->base(), ram_.data(), kRamBytes) == 0;
  }

  std::vector<uint8_t> ram_;
  std::optional<shared::RamLayout> layout_;
  uint64_t seq_ = 100;
  uint64_t cycle_ = 0;
};

TEST_F(RamStreamTest, KeyframeInTwoPartsRebuildsTheWholeRam) {
  RamMirrorCore m;
  auto kf = keyframe(1, 7);
  ASSERT_EQ(kf.size(), 2u);
  auto r = m.apply(kf[0].header, kf[0].payload);
  EXPECT_TRUE(r.hold);
  EXPECT_FALSE(m.synced()) << "half a keyframe must not be visible";
  r = m.apply(kf[1].header, kf[1].payload);
  EXPECT_TRUE(r.release_held);
  ASSERT_TRUE(m.synced());
  EXPECT_TRUE(mirror_equals(m));
  EXPECT_EQ(m.last_keyframe_id(), 7u);
  // gpa -> mirror bytes through the layout: 4 GiB maps to the file's last 4 MiB.
  auto v = m.view();
  auto p = v->at(Gpa(0x100000000ull), 16);
  ASSERT_TRUE(p);
  EXPECT_EQ(std::memcmp(*p, ram_.data() + kRamBytes - (4ull << 20), 16), 0);
  EXPECT_FALSE(v->at(Gpa(0xb0000), 1)) << "the VGA hole is not RAM";
}

TEST_F(RamStreamTest, DeltasCarryOnlyChangedPages) {
  RamMirrorCore m;
  feed(m, keyframe());
  touch(0, 0x11);
  touch(300, 0x22);
  touch(kRamBytes / kPageBytes - 1, 0x33);
  auto d = cycle({0, 300, kRamBytes / kPageBytes - 1}, false);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].payload.size(), 3 * kPageBytes);
  feed(m, d);
  EXPECT_TRUE(m.synced());
  EXPECT_TRUE(mirror_equals(m));
}

TEST_F(RamStreamTest, TakeChangesListsDeltaPagesAndFlagsKeyframes) {
  RamMirrorCore m;
  EXPECT_TRUE(m.take_changes().all) << "the first call: everything";
  feed(m, keyframe());
  auto k = m.take_changes();
  EXPECT_TRUE(k.all);
  EXPECT_TRUE(k.keyframe);
  EXPECT_TRUE(m.take_changes().pages.empty()) << "taken: nothing new";
  touch(5, 1);
  touch(9, 2);
  feed(m, cycle({5, 9}, false));
  touch(5, 3);
  feed(m, cycle({5}, false));
  auto d = m.take_changes();
  EXPECT_FALSE(d.all);
  EXPECT_FALSE(d.keyframe);
  EXPECT_EQ(d.pages, (std::vector<uint32_t>{5, 9, 5}));
  // An incomplete cycle is not a change.
  auto big = keyframe();
  m.apply(big[0].header, big[0].payload);
  EXPECT_TRUE(m.take_changes().pages.empty());
  EXPECT_FALSE(m.take_changes().all);
}

TEST_F(RamStreamTest, GapUnsyncsUntilTheNextKeyframe) {
  RamMirrorCore m;
  feed(m, keyframe());
  touch(5, 1);
  (void)cycle({5}, false);  // lost: the subscriber never sees it
  touch(6, 2);
  auto after_gap = cycle({6}, false);
  auto r = feed(m, after_gap);
  EXPECT_EQ(r.action, RamMirrorCore::Action::kRequestKeyframe);
  EXPECT_FALSE(m.synced());
  EXPECT_FALSE(m.view()) << "no torn view after a gap";
  EXPECT_EQ(m.stats().gaps, 1u);
  touch(7, 3);
  feed(m, cycle({7}, false));  // deltas before the keyframe are ignored
  EXPECT_FALSE(m.synced());
  feed(m, keyframe(1, 9));
  ASSERT_TRUE(m.synced());
  EXPECT_TRUE(mirror_equals(m));
}

TEST_F(RamStreamTest, IncompleteCycleIsNeverApplied) {
  RamMirrorCore m;
  feed(m, keyframe());
  std::vector<uint64_t> many(5000);
  for (uint64_t i = 0; i < many.size(); ++i) many[i] = i;
  const auto before = ram_;
  for (uint64_t i = 0; i < 5000; ++i) touch(i, 0x5a);
  auto two_parts = cycle(many, false);
  ASSERT_EQ(two_parts.size(), 2u);
  m.apply(two_parts[0].header, two_parts[0].payload);  // the second part never comes...
  auto v = m.view();
  ASSERT_TRUE(v);
  EXPECT_EQ(std::memcmp(v->base(), before.data(), kRamBytes), 0) << "half a cycle leaked";
  auto r = feed(m, keyframe());  // ...and its seq gap is noticed
  EXPECT_TRUE(m.synced());
  EXPECT_TRUE(mirror_equals(m));
  (void)r;
}

TEST_F(RamStreamTest, NewEpochNeedsAKeyframe) {
  RamMirrorCore m;
  feed(m, keyframe(1));
  touch(1, 9);
  auto r = feed(m, cycle({1}, false, 2));
  EXPECT_EQ(r.action, RamMirrorCore::Action::kRequestKeyframe);
  EXPECT_FALSE(m.synced());
  feed(m, keyframe(2));
  EXPECT_TRUE(m.synced());
  EXPECT_EQ(m.epoch(), 2u);
  EXPECT_TRUE(mirror_equals(m));
}

TEST_F(RamStreamTest, HostileHeadersAreCountedAndUnsync) {
  RamMirrorCore m;
  feed(m, keyframe());
  std::mt19937 rng(5);
  for (int i = 0; i < 500; ++i) {
    std::vector<uint8_t> junk(rng() % 512);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> payload((rng() % 3) * kPageBytes);
    auto r = m.apply(junk, payload);
    EXPECT_EQ(r.action, RamMirrorCore::Action::kRequestKeyframe);
  }
  EXPECT_EQ(m.stats().bad_chunks, 500u);
  EXPECT_FALSE(m.synced());
  // A well-formed header whose payload is short of its page list.
  auto d = cycle({1, 2}, false);
  d[0].payload.resize(kPageBytes);
  m.apply(d[0].header, d[0].payload);
  EXPECT_EQ(m.stats().bad_chunks, 501u);
  // A page index beyond the RAM.
  CycleInfo info{"t", 1, 999, false, 0, false, kRamBytes, &*layout_, 1};
  std::vector<uint64_t> bad = {kRamBytes / kPageBytes};
  auto h = build_chunk_header(info, seq_++, 0, 1, bad);
  std::vector<uint8_t> page(kPageBytes);
  m.apply(h, page);
  EXPECT_EQ(m.stats().bad_chunks, 502u);
  feed(m, keyframe());
  EXPECT_TRUE(mirror_equals(m));
}

}  // namespace
}  // namespace glassbox::ram_snapshotter
