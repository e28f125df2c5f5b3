#include "services/pattern_miner/miner.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <set>

namespace glassbox::pattern_miner {
namespace {

// The boot-sector loop of tests/integration/trace_test.cpp as TBs: [0x7c00,0x7c0a) once,
// then 100 x { [0x7c07,0x7c0a) 999 times, [0x7c0a,0x7c0c) }, with [0x7c04,0x7c0a) re-entering.
void feed_nested_loop(MinerCore& m, uint32_t vcpu) {
  std::vector<uint32_t> ids = {0};
  for (int outer = 0; outer < 100; ++outer) {
    if (outer > 0) ids.push_back(3);  // [0x7c04, 0x7c0a)
    for (int i = 0; i < 999; ++i) ids.push_back(1);
    ids.push_back(2);
  }
  m.add_events(vcpu, ids);
}

void add_loop_tbs(MinerCore& m) {
  const uint8_t b[] = {0x90};
  m.add_tb(0, 0x7c00, 0x7c00, 10, 5, b);
  m.add_tb(1, 0x7c07, 0x7c07, 3, 2, b);
  m.add_tb(2, 0x7c0a, 0x7c0a, 2, 1, b);
  m.add_tb(3, 0x7c04, 0x7c04, 6, 3, b);
}

TEST(MinerCoreTest, CountsBlocksAndFindsBothLoopsOfANestedLoop) {
  MinerCore m(MinerOptions{});
  m.begin_generation(7);
  add_loop_tbs(m);
  feed_nested_loop(m, 0);
  m.fold();
  auto top = m.top(4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].info.pc, 0x7c07u);
  EXPECT_EQ(top[0].count, 99900u);
  EXPECT_EQ(top[0].error, 0u);
  EXPECT_EQ(top[0].info.n_insns, 2u);
  EXPECT_EQ(m.total_executions(), 1u + 99900u + 100u + 99u);
  auto loops = m.loops(10);
  ASSERT_GE(loops.size(), 2u);
  std::set<uint64_t> heads;
  for (const auto& l : loops) heads.insert(l.head_pc);
  EXPECT_TRUE(heads.count(0x7c07)) << "inner loop (dec dx; jnz)";
  EXPECT_TRUE(heads.count(0x7c04)) << "outer loop (mov dx; ...; loop)";
}

TEST(MinerCoreTest, EventsBeforeTheirTbRecordWaitForIt) {
  MinerCore m(MinerOptions{});
  m.begin_generation(1);
  const uint32_t ids[] = {5, 5, 5};
  m.add_events(0, ids);
  m.fold();
  EXPECT_TRUE(m.top(10).empty());
  const uint8_t b[] = {0xc3};
  m.add_tb(5, 0xffffffff81000000ULL, 0x1000000, 1, 1, b);
  m.fold();
  auto top = m.top(1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].count, 3u);
}

// Static binaries share user pcs (0x401000 on): the pc's count is one, but the block is
// reported with the gpa and bytes of the code that ran most, however many other programs
// translated code at that pc before and after it (the CI run that named nobody: the hot
// gpa was never among the first eight kept).
TEST(MinerCoreTest, ASharedUserPcReportsTheHottestCodeAtItWhateverTheOrder) {
  MinerCore m(MinerOptions{});
  m.begin_generation(3);
  const uint8_t cold[] = {0xc3};
  const uint8_t hot[] = {0x48, 0xff, 0xc0, 0xeb, 0xfb};
  uint32_t id = 0;
  for (; id < 2 * kMaxVariantsPerPc; ++id) {  // more cold programs than slots, run once each
    m.add_tb(id, 0x401760, 0x7000000 + id * 0x1000, 1, 1, cold);
    m.add_count(id, 1);
    m.fold();
  }
  const uint32_t hot_id = id++;
  m.add_tb(hot_id, 0x401760, 0xbd40760, 5, 2, hot);
  m.add_count(hot_id, 1000000);
  m.fold();
  for (int i = 0; i < 3 * static_cast<int>(kMaxVariantsPerPc); ++i, ++id) {  // and more after it
    m.add_tb(id, 0x401760, 0x9000000 + i * 0x1000, 1, 1, cold);
    m.add_count(id, 2);
    m.fold();
  }
  auto top = m.top(1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].count, 1000000u + 2 * kMaxVariantsPerPc + 2 * 3 * kMaxVariantsPerPc);
  EXPECT_EQ(top[0].info.gpa, 0xbd40760u);
  EXPECT_EQ(top[0].info.size_bytes, 5u);
  EXPECT_EQ(top[0].info.bytes, std::vector<uint8_t>(std::begin(hot), std::end(hot)));
  ASSERT_LE(top[0].info.gpas.size(), kMaxVariantsPerPc);
  ASSERT_FALSE(top[0].info.gpas.empty());
  EXPECT_EQ(top[0].info.gpas.front(), 0xbd40760u);
}

TEST(MinerCoreTest, HostileIdsAndFillersAreBoundedAndCounted) {
  MinerCore m(MinerOptions{});
  m.begin_generation(1);
  const uint32_t ids[] = {kMaxTbIds, 0xfffffffeu, kNoTbEvent, 1};
  m.add_events(0, ids);
  m.add_events(5000, ids);  // a vCPU index beyond any machine: ignored
  m.add_count(kMaxTbIds + 1, 10);
  EXPECT_EQ(m.stats().events_unknown_tb, 3u);
  m.fold();
  EXPECT_TRUE(m.top(10).empty());
}

TEST(MinerCoreTest, StoreResumesAGenerationAfterARestart) {
  char tmpl[] = "/tmp/gb-miner-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string db = dir + "/miner.sqlite";
  {
    auto store = MinerStore::open(db);
    ASSERT_TRUE(store) << store.error().message;
    MinerCore m(MinerOptions{});
    m.begin_generation(42);
    add_loop_tbs(m);
    feed_nested_loop(m, 0);
    m.fold();
    ASSERT_TRUE((*store)->save(m, 100));
  }
  auto store = MinerStore::open(db);
  ASSERT_TRUE(store);
  MinerCore m(MinerOptions{});
  m.begin_generation(42);
  auto loaded = (*store)->load(42, m);
  ASSERT_TRUE(loaded && *loaded);
  auto top = m.top(1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].info.pc, 0x7c07u);
  EXPECT_EQ(top[0].count, 99900u);
  EXPECT_EQ(top[0].info.size_bytes, 3u);
  // Events after the restart still name their tb_ids (the TB table came back too).
  const uint32_t more[] = {1, 1};
  m.add_events(0, more);
  m.fold();
  EXPECT_EQ(m.top(1)[0].count, 99902u);
  EXPECT_GE(m.loops(10).size(), 2u) << "edges came back";
  // Another generation starts empty.
  MinerCore other(MinerOptions{});
  other.begin_generation(43);
  auto none = (*store)->load(43, other);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace glassbox::pattern_miner
