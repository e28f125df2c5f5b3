// Tests of the CFG recovered from traced TBs: overlap splitting into BBs, count
// preservation, edge attribution, conflicting sizes, entries, bounds and hostile records.
#include "services/pattern_miner/cfg.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <utility>
#include <vector>

namespace glassbox::pattern_miner {
namespace {

TbRecord tb(uint64_t pc, uint32_t size_bytes, uint32_t n_insns = 0, uint32_t tb_id = 0) {
  TbRecord r;
  r.tb_id = tb_id;
  r.pc = pc;
  r.size_bytes = size_bytes;
  r.n_insns = n_insns;
  return r;
}

// The count of the edge from block `from` to block `to`, or -1 when there is none.
int64_t edge_count(const BlockGraph& g, uint32_t from, uint32_t to) {
  for (const BlockEdge& e : g.blocks.at(from).succs) {
    if (e.block == to) return static_cast<int64_t>(e.count);
  }
  return -1;
}

// Structural invariants every built graph must keep.
void expect_well_formed(const BlockGraph& g) {
  for (std::size_t i = 0; i < g.blocks.size(); ++i) {
    const BasicBlock& b = g.blocks[i];
    ASSERT_LT(b.start_pc, b.end_pc) << i;
    if (i > 0) {
      ASSERT_LE(g.blocks[i - 1].end_pc, b.start_pc) << i;
    }
    ASSERT_LE(b.n_insns, b.end_pc - b.start_pc) << i;
    for (std::size_t k = 0; k < b.succs.size(); ++k) {
      const BlockEdge& e = b.succs[k];
      ASSERT_LT(e.block, g.blocks.size());
      if (k > 0) {
        ASSERT_LT(b.succs[k - 1].block, e.block);
      }
      bool mirrored = false;
      for (const BlockEdge& p : g.blocks[e.block].preds) {
        if (p.block == i && p.count == e.count) mirrored = true;
      }
      ASSERT_TRUE(mirrored) << i << " -> " << e.block;
    }
    for (const BlockEdge& p : b.preds) {
      ASSERT_LT(p.block, g.blocks.size());
      bool mirrored = false;
      for (const BlockEdge& e : g.blocks[p.block].succs) {
        if (e.block == i && e.count == p.count) mirrored = true;
      }
      ASSERT_TRUE(mirrored) << p.block << " -> " << i;
    }
  }
  for (uint32_t e : g.entries) {
    ASSERT_LT(e, g.blocks.size());
    ASSERT_TRUE(g.blocks[e].entry);
  }
}

TEST(CfgTest, SplitsTbWhereAnotherTbStartsInsideIt) {
  Cfg cfg;
  EXPECT_EQ(cfg.add_tb(tb(0x1000, 0x20, 8)), Cfg::TbAdd::kAdded);  // A [0x1000, 0x1020)
  EXPECT_EQ(cfg.add_tb(tb(0x1010, 0x10, 4)), Cfg::TbAdd::kAdded);  // B [0x1010, 0x1020)
  cfg.add_exec(0x1000, 5);
  cfg.add_exec(0x1010, 7);
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  ASSERT_EQ(g.blocks.size(), 2u);
  EXPECT_EQ(g.blocks[0].start_pc, 0x1000u);
  EXPECT_EQ(g.blocks[0].end_pc, 0x1010u);
  EXPECT_EQ(g.blocks[1].start_pc, 0x1010u);
  EXPECT_EQ(g.blocks[1].end_pc, 0x1020u);
  EXPECT_EQ(g.blocks[0].exec_count, 5u);   // only A runs [0x1000, 0x1010)
  EXPECT_EQ(g.blocks[1].exec_count, 12u);  // A and B both run [0x1010, 0x1020)
  EXPECT_EQ(g.blocks[0].n_insns, 4u);      // 8 of A minus 4 of B
  EXPECT_EQ(g.blocks[1].n_insns, 4u);
  EXPECT_EQ(edge_count(g, 0, 1), 5);  // the fall-through, with A's count
  ASSERT_EQ(g.blocks[1].preds.size(), 1u);
  EXPECT_EQ(g.blocks[1].preds[0].block, 0u);
  EXPECT_TRUE(g.blocks[0].tb_start);
  EXPECT_TRUE(g.blocks[1].tb_start);
  EXPECT_EQ(g.entries, std::vector<uint32_t>{0});  // B has a predecessor: not an entry
}

TEST(CfgTest, SplittingIsIndependentOfRecordOrder) {
  Cfg a, b;
  a.add_tb(tb(0x1000, 0x20, 8));
  a.add_tb(tb(0x1010, 0x10, 4));
  b.add_tb(tb(0x1010, 0x10, 4));
  b.add_tb(tb(0x1000, 0x20, 8));
  const BlockGraph ga = a.build(), gb = b.build();
  ASSERT_EQ(ga.blocks.size(), gb.blocks.size());
  for (std::size_t i = 0; i < ga.blocks.size(); ++i) {
    EXPECT_EQ(ga.blocks[i].start_pc, gb.blocks[i].start_pc);
    EXPECT_EQ(ga.blocks[i].end_pc, gb.blocks[i].end_pc);
    EXPECT_EQ(ga.blocks[i].n_insns, gb.blocks[i].n_insns);
  }
}

TEST(CfgTest, PreservesExecutedBytesAndInsnsAcrossSplits) {
  // A chain of TBs with one end, each starting inside the previous one (a loop whose
  // header moved, and jumps into its middle), plus an unrelated TB.
  Cfg cfg;
  const std::vector<std::pair<TbRecord, uint64_t>> tbs = {
      {tb(0x4000, 0x30, 12), 3}, {tb(0x4008, 0x28, 10), 11}, {tb(0x4020, 0x10, 3), 1000},
      {tb(0x4028, 0x08, 2), 9},  {tb(0x9000, 0x05, 1), 77},
  };
  uint64_t bytes = 0, insns = 0;
  for (const auto& [rec, exec] : tbs) {
    ASSERT_EQ(cfg.add_tb(rec), Cfg::TbAdd::kAdded);
    cfg.add_exec(rec.pc, exec);
    bytes += exec * rec.size_bytes;
    insns += exec * rec.n_insns;
  }
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  ASSERT_EQ(g.blocks.size(), 5u);
  uint64_t bb_bytes = 0, bb_insns = 0;
  for (const BasicBlock& b : g.blocks) {
    ASSERT_NE(b.n_insns, 0u) << std::hex << b.start_pc;
    bb_bytes += b.exec_count * (b.end_pc - b.start_pc);
    bb_insns += b.exec_count * b.n_insns;
  }
  EXPECT_EQ(bb_bytes, bytes);
  EXPECT_EQ(bb_insns, insns);
  // Fall-through counts: the TBs spanning each cut.
  EXPECT_EQ(edge_count(g, 0, 1), 3);
  EXPECT_EQ(edge_count(g, 1, 2), 3 + 11);
  EXPECT_EQ(edge_count(g, 2, 3), 3 + 11 + 1000);
  EXPECT_EQ(edge_count(g, 3, 4), -1);  // 0x4030 -> 0x9000 is not a fall-through
  EXPECT_EQ(g.blocks[3].exec_count, 3u + 11 + 1000 + 9);
}

TEST(CfgTest, CutsAtTheEndOfATbThatStoppedEarly) {
  // A stopped at 0x1020 (insn limit) while B, entered at 0x1010, ran on to 0x1030.
  Cfg cfg;
  cfg.add_tb(tb(0x1000, 0x20));
  cfg.add_tb(tb(0x1010, 0x20));
  cfg.add_exec(0x1000, 2);
  cfg.add_exec(0x1010, 5);
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  ASSERT_EQ(g.blocks.size(), 3u);
  EXPECT_EQ(g.blocks[2].start_pc, 0x1020u);
  EXPECT_FALSE(g.blocks[2].tb_start);
  EXPECT_EQ(g.blocks[0].exec_count, 2u);
  EXPECT_EQ(g.blocks[1].exec_count, 7u);
  EXPECT_EQ(g.blocks[2].exec_count, 5u);
  EXPECT_EQ(edge_count(g, 0, 1), 2);
  EXPECT_EQ(edge_count(g, 1, 2), 5);  // only B spans 0x1020
}

TEST(CfgTest, AttributesBranchEdgesToTheBlockThatEndsTheTb) {
  Cfg cfg;
  cfg.add_tb(tb(0x1000, 0x20));  // A, split by B
  cfg.add_tb(tb(0x1010, 0x10));  // B
  cfg.add_tb(tb(0x2000, 0x08));  // C
  cfg.add_edge(0x1000, 0x2000, 3);
  cfg.add_edge(0x1010, 0x2000, 4);
  cfg.add_edge(0x2000, 0x1010, 6);
  cfg.add_edge(0x2000, 0x1010, 1);  // summed
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  const uint32_t a = g.find(0x1000), b = g.find(0x1010), c = g.find(0x2000);
  ASSERT_NE(a, kNoBlock);
  ASSERT_NE(b, kNoBlock);
  ASSERT_NE(c, kNoBlock);
  EXPECT_EQ(edge_count(g, b, c), 7);
  EXPECT_EQ(edge_count(g, a, c), -1);
  EXPECT_EQ(edge_count(g, c, b), 7);
  EXPECT_EQ(g.edges_unresolved, 0u);
  EXPECT_EQ(g.containing(0x1017), b);
  EXPECT_EQ(g.containing(0x2008), kNoBlock);
  EXPECT_EQ(g.find(0x1001), kNoBlock);
}

TEST(CfgTest, KeepsConflictingSizesAndAttributesCountsBySize) {
  Cfg cfg;
  EXPECT_EQ(cfg.add_tb(tb(0x1000, 0x20, 5, 1)), Cfg::TbAdd::kAdded);
  EXPECT_EQ(cfg.add_tb(tb(0x1000, 0x10, 2, 2)), Cfg::TbAdd::kAdded);  // early end, new tb_id
  EXPECT_EQ(cfg.stats().pcs_with_conflicts, 1u);
  EXPECT_EQ(cfg.n_shapes(), 2u);
  cfg.add_exec(0x1000, 3, 0x10);  // the short one, by size
  cfg.add_exec(0x1000, 10);       // no size: the longest
  // The short TB fell through to 0x1010; its edge must not leave from the long TB's end.
  cfg.add_edge(0x1000, 0x1010, 3);
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  ASSERT_EQ(g.blocks.size(), 2u);
  EXPECT_EQ(g.blocks[0].exec_count, 13u);
  EXPECT_EQ(g.blocks[1].exec_count, 10u);
  EXPECT_EQ(g.blocks[0].n_insns, 2u);
  EXPECT_EQ(g.blocks[1].n_insns, 0u);  // no TB starts at 0x1010: unknown
  EXPECT_EQ(edge_count(g, 0, 1), 13);  // fall-through of the long one + the short one's edge
  EXPECT_EQ(edge_count(g, 1, 1), -1);  // no false self loop
}

TEST(CfgTest, IsIdempotentPerPcAndSize) {
  Cfg cfg;
  EXPECT_EQ(cfg.add_tb(tb(0x1000, 0x10, 0, 1)), Cfg::TbAdd::kAdded);
  EXPECT_EQ(cfg.add_tb(tb(0x1000, 0x10, 3, 2)), Cfg::TbAdd::kDuplicate);  // fills n_insns
  EXPECT_EQ(cfg.add_tb(tb(0x1000, 0x10, 4, 3)), Cfg::TbAdd::kDuplicate);  // conflicting n
  EXPECT_EQ(cfg.stats().tbs_duplicate, 2u);
  EXPECT_EQ(cfg.stats().n_insns_conflicts, 1u);
  EXPECT_EQ(cfg.stats().pcs_with_conflicts, 0u);
  const BlockGraph g = cfg.build();
  ASSERT_EQ(g.blocks.size(), 1u);
  EXPECT_EQ(g.blocks[0].n_insns, 3u);
}

TEST(CfgTest, CountsEdgesAndExecsOfUnknownPcsAsUnresolved) {
  Cfg cfg;
  cfg.add_tb(tb(0x1000, 0x10));
  cfg.add_edge(0x1000, 0xdead0000, 5);  // to an unknown pc
  cfg.add_edge(0xbeef0000, 0x1000, 5);  // from an unknown pc
  cfg.add_edge(0x1000, 0x1008, 5);      // into the middle of a TB: no block starts there
  cfg.add_exec(0x5000, 9);
  cfg.add_exec(0x1000, 9, 0x20);    // a size never recorded
  cfg.add_edge(0x1000, 0x1000, 0);  // zero counts are ignored
  cfg.add_exec(0x1000, 0);
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  ASSERT_EQ(g.blocks.size(), 1u);
  EXPECT_TRUE(g.blocks[0].succs.empty());
  EXPECT_EQ(g.blocks[0].exec_count, 0u);
  EXPECT_EQ(g.edges_unresolved, 3u);
  EXPECT_EQ(g.execs_unresolved, 2u);
  EXPECT_EQ(cfg.n_edges(), 3u);
  // A record arriving later resolves what was pending.
  cfg.add_tb(tb(0xdead0000, 0x4));
  EXPECT_EQ(cfg.build().edges_unresolved, 2u);
}

TEST(CfgTest, RejectsMalformedRecordsAndAcceptsHighPcs) {
  Cfg cfg;
  constexpr uint64_t kTop = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(cfg.add_tb(tb(0x1000, 0)), Cfg::TbAdd::kRejected);
  EXPECT_EQ(cfg.add_tb(tb(0x1000, kMaxTbSizeBytes + 1)), Cfg::TbAdd::kRejected);
  EXPECT_EQ(cfg.add_tb(tb(kTop - 3, 4)), Cfg::TbAdd::kRejected);  // would end past 2^64
  EXPECT_EQ(cfg.add_tb(tb(kTop, 1)), Cfg::TbAdd::kRejected);
  EXPECT_EQ(cfg.stats().tbs_rejected, 4u);
  EXPECT_EQ(cfg.add_tb(tb(kTop - 0x10, 0x10, 0x11)), Cfg::TbAdd::kAdded);  // n_insns > size
  EXPECT_EQ(cfg.stats().n_insns_invalid, 1u);
  EXPECT_EQ(cfg.add_tb(tb(0xffffffff81000000ull, 0x10, 4)), Cfg::TbAdd::kAdded);
  cfg.add_exec(kTop - 0x10, kTop);
  cfg.add_exec(kTop - 0x10, kTop);  // saturates
  cfg.add_edge(kTop - 0x10, 0xffffffff81000000ull, kTop);
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  ASSERT_EQ(g.blocks.size(), 2u);
  EXPECT_EQ(g.blocks[1].start_pc, kTop - 0x10);
  EXPECT_EQ(g.blocks[1].end_pc, kTop);
  EXPECT_EQ(g.blocks[1].n_insns, 0u);
  EXPECT_EQ(g.blocks[1].exec_count, kTop);
  ASSERT_EQ(g.blocks[1].succs.size(), 1u);
  EXPECT_EQ(g.blocks[1].succs[0].block, 0u);
  EXPECT_EQ(g.blocks[1].succs[0].count, kTop);
}

TEST(CfgTest, SaturatesBlockCountsThatSumPast64Bits) {
  Cfg cfg;
  constexpr uint64_t kTop = std::numeric_limits<uint64_t>::max();
  cfg.add_tb(tb(0x1000, 0x20));
  cfg.add_tb(tb(0x1010, 0x10));
  cfg.add_tb(tb(0x2000, 0x10));
  cfg.add_exec(0x1000, kTop - 1);
  cfg.add_exec(0x1010, 5);
  cfg.add_exec(0x2000, 1);
  const BlockGraph g = cfg.build();
  ASSERT_EQ(g.blocks.size(), 3u);
  EXPECT_EQ(g.blocks[0].exec_count, kTop - 1);
  EXPECT_EQ(g.blocks[1].exec_count, kTop);  // saturated, not wrapped to 3
  EXPECT_EQ(g.blocks[2].exec_count, 1u);    // the sweep is exact again after the overflow
}

TEST(CfgTest, MarkedEntryIsAnEntryDespitePredecessors) {
  Cfg cfg;
  cfg.add_tb(tb(0x1000, 0x10));
  cfg.add_tb(tb(0x2000, 0x10));
  cfg.add_edge(0x1000, 0x2000, 1);
  cfg.add_edge(0x2000, 0x1000, 1);
  EXPECT_TRUE(cfg.build().entries.empty());  // a cycle nobody enters
  cfg.mark_entry(0x2000);
  cfg.mark_entry(0x7777);  // unknown: ignored
  const BlockGraph g = cfg.build();
  EXPECT_EQ(g.entries, std::vector<uint32_t>{1});
  EXPECT_TRUE(g.blocks[1].entry);
  EXPECT_FALSE(g.blocks[0].entry);
}

TEST(CfgTest, DropsInputBeyondTheLimitsAndCountsIt) {
  Cfg cfg(CfgLimits{.max_blocks = 8, .max_edges = 4});
  int added = 0;
  for (uint64_t i = 0; i < 100; ++i) {
    if (cfg.add_tb(tb(0x1000 + i * 0x10, 0x10)) == Cfg::TbAdd::kAdded) ++added;
  }
  // Adjacent TBs share cuts: 8 TBs need 9 cut addresses.
  EXPECT_EQ(added, 8);
  EXPECT_EQ(cfg.stats().tbs_dropped, 92u);
  for (uint64_t i = 0; i < 10; ++i) cfg.add_edge(0x1000, 0x1000 + i * 0x10, 1);
  EXPECT_EQ(cfg.n_edges(), 4u);
  EXPECT_EQ(cfg.stats().edges_dropped, 6u);
  cfg.add_edge(0x1000, 0x1000, 1);  // known edges still count up
  for (uint64_t i = 0; i < 20; ++i) cfg.add_exec(0x1000 + i * 0x10, 1);
  EXPECT_EQ(cfg.stats().execs_dropped, 12u);
  for (uint64_t i = 0; i < 20; ++i) cfg.mark_entry(0x1000 + i * 0x10);
  EXPECT_EQ(cfg.stats().entries_dropped, 12u);
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  EXPECT_LE(g.blocks.size(), 8u);
  EXPECT_EQ(edge_count(g, 0, 0), 2);

  // Shapes per pc are bounded too.
  Cfg shapes;
  for (uint32_t s = 1; s <= kMaxShapesPerPc + 3; ++s) shapes.add_tb(tb(0x1000, s));
  EXPECT_EQ(shapes.n_shapes(), kMaxShapesPerPc);
  EXPECT_EQ(shapes.stats().tbs_dropped, 3u);
}

TEST(CfgTest, ClearForgetsEverything) {
  Cfg cfg;
  cfg.add_tb(tb(0x1000, 0x10));
  cfg.add_edge(0x1000, 0x1000, 1);
  cfg.add_exec(0x1000, 1);
  cfg.clear();
  EXPECT_EQ(cfg.n_shapes(), 0u);
  EXPECT_EQ(cfg.n_edges(), 0u);
  EXPECT_TRUE(cfg.build().blocks.empty());
}

TEST(CfgTest, HostileOverlappingRecordsKeepInvariantsAndCounts) {
  // Random TBs packed into 1 KiB (every kind of overlap, shared starts, shared ends,
  // conflicting sizes), random edges between random pcs, then the invariants and the
  // conservation of executed bytes.
  std::mt19937_64 rng(0x9b1d5eedull);
  Cfg cfg(CfgLimits{.max_blocks = 4000, .max_edges = 3000});
  std::map<std::pair<uint64_t, uint32_t>, uint64_t> exec_of;  // accepted shapes
  std::vector<uint64_t> pcs;
  for (int i = 0; i < 3000; ++i) {
    const uint64_t pc = 0x10000 + rng() % 1024;
    uint32_t size = static_cast<uint32_t>(rng() % 200);
    if (i % 97 == 0) size = kMaxTbSizeBytes + static_cast<uint32_t>(rng() % 5);
    const auto r = cfg.add_tb(tb(pc, size, static_cast<uint32_t>(rng() % 64)));
    if (r == Cfg::TbAdd::kAdded) {
      exec_of[{pc, size}] = 0;
      pcs.push_back(pc);
    }
    if (r == Cfg::TbAdd::kRejected) {
      EXPECT_TRUE(size == 0 || size > kMaxTbSizeBytes);
    }
  }
  ASSERT_FALSE(pcs.empty());
  for (auto& [key, exec] : exec_of) {
    exec = rng() % 1000;
    cfg.add_exec(key.first, exec, key.second);
  }
  for (int i = 0; i < 5000; ++i) {
    const uint64_t from = pcs[rng() % pcs.size()];
    const uint64_t to = i % 10 == 0 ? rng() : pcs[rng() % pcs.size()];
    cfg.add_edge(from, to, rng() % 50 + 1);
  }
  const BlockGraph g = cfg.build();
  expect_well_formed(g);
  EXPECT_LE(g.blocks.size(), 4000u);
  EXPECT_GT(cfg.stats().edges_dropped, 0u);
  EXPECT_EQ(g.execs_unresolved, 0u);
  uint64_t bytes = 0, bb_bytes = 0;
  for (const auto& [key, exec] : exec_of) bytes += exec * key.second;
  for (const BasicBlock& b : g.blocks) bb_bytes += b.exec_count * (b.end_pc - b.start_pc);
  EXPECT_EQ(bb_bytes, bytes);
  const auto& s = cfg.stats();
  EXPECT_EQ(s.tbs_added + s.tbs_duplicate + s.tbs_rejected + s.tbs_dropped, 3000u);
}

}  // namespace
}  // namespace glassbox::pattern_miner
