// Tests of Next-Executing-Tail trace selection on synthetic executions: a nested loop, a
// loop with a rarely taken branch, long loops, several vCPUs, and hostile streams.
#include "services/pattern_miner/hot_traces.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

namespace glassbox::pattern_miner {
namespace {

// A nested loop as a compiler lays it out:
//   O: outer header   I: inner header   IB: inner body + latch (jcc I)
//   L: outer latch (jcc O)   X: after the loop
constexpr uint64_t kO = 0x1000, kI = 0x1100, kIB = 0x1140, kL = 0x1200, kX = 0x1300;

// One outer iteration: O, then `inner` times (I, IB), then L.
void run_outer_iteration(HotTraceSelector& net, uint32_t vcpu, int inner) {
  net.on_block(vcpu, kO);
  for (int j = 0; j < inner; ++j) {
    net.on_block(vcpu, kI);
    net.on_block(vcpu, kIB);
  }
  net.on_block(vcpu, kL);
}

const HotTrace* trace_at(const HotTraceSelector& net, uint64_t head) {
  for (const HotTrace& t : net.traces_by_selection()) {
    if (t.head_pc == head) return &t;
  }
  return nullptr;
}

TEST(HotTracesTest, SelectsTheInnerLoopOfANestedLoopFirst) {
  HotTraceSelector net(NetOptions{.hot_threshold = 50});
  // IB -> I is taken 9 times per outer iteration: I passes 50 arrivals in iteration 6.
  for (int i = 0; i < 5; ++i) run_outer_iteration(net, 0, 10);
  EXPECT_TRUE(net.traces_by_selection().empty());  // 45 arrivals at I, 4 at O
  run_outer_iteration(net, 0, 10);
  ASSERT_EQ(net.traces_by_selection().size(), 1u);
  const HotTrace& inner = net.traces_by_selection()[0];
  EXPECT_EQ(inner.head_pc, kI);
  EXPECT_EQ(inner.block_pcs, (std::vector<uint64_t>{kI, kIB}));
  EXPECT_EQ(inner.end, TraceEnd::kBackwardBranch);
  EXPECT_EQ(inner.selection_order, 0u);

  for (int i = 0; i < 94; ++i) run_outer_iteration(net, 0, 10);
  net.on_block(0, kX);

  // Heads are back-edge targets (I, O) or trace exits (L, reached by leaving I's trace).
  std::set<uint64_t> heads;
  for (const HotTrace& t : net.traces_by_selection()) heads.insert(t.head_pc);
  EXPECT_EQ(heads, (std::set<uint64_t>{kI, kO, kL}));
  const HotTrace* outer = trace_at(net, kO);
  ASSERT_NE(outer, nullptr);
  EXPECT_GT(outer->selection_order, 0u);
  EXPECT_EQ(outer->block_pcs, std::vector<uint64_t>{kO});  // I is already a trace head
  EXPECT_EQ(outer->end, TraceEnd::kTraceHead);
  const HotTrace* latch = trace_at(net, kL);
  ASSERT_NE(latch, nullptr);
  EXPECT_EQ(latch->block_pcs, std::vector<uint64_t>{kL});

  const auto hottest = net.traces();
  ASSERT_FALSE(hottest.empty());
  EXPECT_EQ(hottest[0].head_pc, kI);
  // From iteration 6 on, the inner trace runs on every inner iteration.
  EXPECT_GE(hottest[0].times_executed, 94u * 10);
  EXPECT_GE(hottest[0].times_completed, 94u * 10);
  const NetStats& s = net.stats();
  EXPECT_EQ(s.events, 100u * 22 + 1);
  EXPECT_GT(s.events_in_traces, s.events * 8 / 10);
}

TEST(HotTracesTest, MakesATraceExitTargetAHead) {
  // H: header; A: usual path; B: taken every 4th iteration; T: latch (jcc H).
  constexpr uint64_t kH = 0x2000, kA = 0x2100, kB = 0x2200, kT = 0x2300;
  HotTraceSelector net(NetOptions{.hot_threshold = 10});
  for (int i = 0; i < 200; ++i) {
    net.on_block(0, kH);
    net.on_block(0, i % 4 == 1 ? kB : kA);
    net.on_block(0, kT);
  }
  // H passes 10 arrivals (one per iteration from the second) in iteration 11: an A one.
  const HotTrace* main = trace_at(net, kH);
  ASSERT_NE(main, nullptr);
  EXPECT_EQ(main->selection_order, 0u);
  EXPECT_EQ(main->block_pcs, (std::vector<uint64_t>{kH, kA, kT}));
  // B is reached only by leaving H's trace after its first block: an exit, so a head.
  const HotTrace* side = trace_at(net, kB);
  ASSERT_NE(side, nullptr);
  EXPECT_EQ(side->block_pcs, (std::vector<uint64_t>{kB, kT}));
  EXPECT_EQ(side->end, TraceEnd::kBackwardBranch);
  EXPECT_EQ(net.traces_by_selection().size(), 2u);
  EXPECT_GT(main->times_executed, main->times_completed);  // B iterations leave it early
}

TEST(HotTracesTest, EndsARecordingAtTheMaximumLength) {
  HotTraceSelector net(NetOptions{.hot_threshold = 5, .max_trace_blocks = 16});
  for (int i = 0; i < 100; ++i) {
    for (uint64_t k = 0; k < 100; ++k) net.on_block(3, 0x10000 + k * 0x40);
  }
  ASSERT_FALSE(net.traces_by_selection().empty());
  const HotTrace& first = net.traces_by_selection()[0];
  EXPECT_EQ(first.head_pc, 0x10000u);
  EXPECT_EQ(first.block_pcs.size(), 16u);
  EXPECT_EQ(first.end, TraceEnd::kMaxLength);
  EXPECT_EQ(first.selected_vcpu, 3u);
  // The fall-off of each trace is an exit: traces chain along the whole loop body.
  const HotTrace* second = trace_at(net, 0x10000 + 16 * 0x40);
  ASSERT_NE(second, nullptr);
  for (const HotTrace& t : net.traces_by_selection()) {
    EXPECT_LE(t.block_pcs.size(), 16u);
    EXPECT_TRUE(std::is_sorted(t.block_pcs.begin(), t.block_pcs.end()));
  }
  EXPECT_GT(net.stats().events_in_traces, net.stats().events / 2);
}

TEST(HotTracesTest, KeepsTheVcpusPathsApart) {
  // Interleaved: vCPU 0 runs A0 -> A1 -> A0..., vCPU 1 runs B0 -> B1 -> B0... Mixing them
  // would invent edges A1 -> B0 and B1 -> A0.
  constexpr uint64_t kA0 = 0x1000, kA1 = 0x1010, kB0 = 0x5000, kB1 = 0x5010;
  HotTraceSelector net(NetOptions{.hot_threshold = 20});
  for (int i = 0; i < 100; ++i) {
    net.on_block(0, kA0);
    net.on_block(1, kB0);
    net.on_block(0, kA1);
    net.on_block(1, kB1);
  }
  ASSERT_EQ(net.traces_by_selection().size(), 2u);
  const HotTrace* a = trace_at(net, kA0);
  const HotTrace* b = trace_at(net, kB0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->block_pcs, (std::vector<uint64_t>{kA0, kA1}));
  EXPECT_EQ(b->block_pcs, (std::vector<uint64_t>{kB0, kB1}));
  EXPECT_EQ(a->selected_vcpu, 0u);
  EXPECT_EQ(b->selected_vcpu, 1u);
}

TEST(HotTracesTest, SharesTracesAcrossVcpus) {
  HotTraceSelector net(NetOptions{.hot_threshold = 10});
  const std::vector<uint64_t> loop = {0x3000, 0x3010, 0x3020};
  for (int i = 0; i < 20; ++i) net.on_blocks(0, loop);
  ASSERT_EQ(net.traces_by_selection().size(), 1u);
  for (int i = 0; i < 20; ++i) net.on_blocks(1, loop);
  ASSERT_EQ(net.traces_by_selection().size(), 1u);  // vCPU 1 runs vCPU 0's trace
  EXPECT_GE(net.traces()[0].times_executed, 20u + 8);
}

TEST(HotTracesTest, ResetAbandonsARecording) {
  HotTraceSelector net(NetOptions{.hot_threshold = 2});
  for (int i = 0; i < 4; ++i) {
    net.on_block(0, 0x100);
    net.on_block(0, 0x200);
  }
  // The 3rd arrival at 0x100 (a backward jump in rounds 1, 2, 3) started a recording.
  net.reset_vcpu(0);
  EXPECT_EQ(net.stats().recordings_abandoned, 1u);
  net.on_block(0, 0x100);  // no previous pc: not an arrival
  net.on_block(0, 0x050);
  EXPECT_TRUE(net.traces_by_selection().empty());
  net.reset_vcpu(42);  // unknown vCPU: nothing happens
}

TEST(HotTracesTest, DecaysCountersWhenTheTableIsFull) {
  HotTraceSelector net(NetOptions{.hot_threshold = 10, .max_counters = 16});
  // Many cold heads (each reached once by a backward jump) between arrivals at a hot one;
  // the table fills every 15 rounds, and the hot head passes 10 before the first decay.
  uint64_t cold = 0x900000;
  for (int i = 0; i < 60; ++i) {
    net.on_block(0, 0x8000);  // backward from the cold head before: an arrival
    net.on_block(0, cold);
    net.on_block(0, cold - 0x800000);  // backward: the cold head's only arrival
    cold += 0x10;
  }
  EXPECT_GT(net.stats().counter_decays, 0u);
  EXPECT_NE(trace_at(net, 0x8000), nullptr);
}

TEST(HotTracesTest, HostileStreamStaysWithinBounds) {
  const NetOptions opt{.hot_threshold = 2,
                       .max_trace_blocks = 8,
                       .max_traces = 8,
                       .max_counters = 64,
                       .max_vcpus = 4};
  HotTraceSelector net(opt);
  std::mt19937_64 rng(99);
  for (int i = 0; i < 200000; ++i) {
    const auto vcpu = static_cast<uint32_t>(rng() % 6);  // vCPUs 4 and 5 are over the bound
    const uint64_t pc = i % 3 == 0 ? rng() : 0xffffffff81000000ull + (rng() % 64) * 0x10;
    net.on_block(vcpu == 5 ? 0xffffffffu : vcpu, pc);
    if (i % 5000 == 0) net.reset_vcpu(vcpu);
  }
  const NetStats& s = net.stats();
  EXPECT_LE(net.traces_by_selection().size(), opt.max_traces);
  EXPECT_GT(s.vcpu_events_dropped, 0u);
  EXPECT_GT(s.traces_dropped, 0u);
  EXPECT_EQ(s.events + s.vcpu_events_dropped, 200000u);
  for (const HotTrace& t : net.traces_by_selection()) {
    ASSERT_FALSE(t.block_pcs.empty());
    ASSERT_LE(t.block_pcs.size(), opt.max_trace_blocks);
    ASSERT_EQ(t.block_pcs[0], t.head_pc);
    ASSERT_TRUE(std::adjacent_find(t.block_pcs.begin(), t.block_pcs.end(),
                                   [](uint64_t a, uint64_t b) { return a >= b; }) ==
                t.block_pcs.end());
  }
}

}  // namespace
}  // namespace glassbox::pattern_miner
