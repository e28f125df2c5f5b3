// Tests of dominators (Cooper-Harvey-Kennedy) and natural loops on textbook flow graphs built
// through Cfg, on irreducible graphs, and on hostile or oversized graphs.
#include "services/pattern_miner/loops.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include "services/pattern_miner/cfg.hpp"

namespace glassbox::pattern_miner {
namespace {

// Node k of a test graph is the 16-byte TB at pc(k); nodes never touch, so every node is
// one BB and block index == node number when nodes are numbered from 0 in pc order.
constexpr uint64_t pc(uint32_t node) { return 0x400000 + uint64_t{node} * 0x100; }

struct Edge {
  uint32_t from, to;
  uint64_t count = 1;
};

BlockGraph make_graph(uint32_t n_nodes, const std::vector<Edge>& edges,
                      const std::vector<uint32_t>& entries = {},
                      const std::vector<uint64_t>& execs = {}) {
  Cfg cfg;
  for (uint32_t k = 0; k < n_nodes; ++k) {
    TbRecord r;
    r.pc = pc(k);
    r.size_bytes = 0x10;
    EXPECT_EQ(cfg.add_tb(r), Cfg::TbAdd::kAdded);
    if (k < execs.size()) cfg.add_exec(pc(k), execs[k]);
  }
  for (const Edge& e : edges) cfg.add_edge(pc(e.from), pc(e.to), e.count);
  for (uint32_t k : entries) cfg.mark_entry(pc(k));
  BlockGraph g = cfg.build();
  EXPECT_EQ(g.blocks.size(), n_nodes);
  EXPECT_EQ(g.edges_unresolved, 0u);
  return g;
}

std::vector<uint64_t> pcs(std::vector<uint32_t> nodes) {
  std::sort(nodes.begin(), nodes.end());
  std::vector<uint64_t> out;
  for (uint32_t k : nodes) out.push_back(pc(k));
  return out;
}

const Loop* loop_at(const LoopForest& f, uint32_t head) {
  for (const Loop& l : f.loops) {
    if (l.head_pc == pc(head)) return &l;
  }
  return nullptr;
}

// Aho, Lam, Sethi, Ullman, "Compilers" 2nd ed., figure 9.38 (section 9.6), numbered from 0:
// node k here is node k+1 of the book.
std::vector<Edge> dragon_book_edges() {
  return {{0, 1}, {0, 2}, {1, 2}, {2, 3}, {3, 2}, {3, 4}, {3, 5}, {4, 6},
          {5, 6}, {6, 3}, {6, 7}, {7, 2}, {7, 8}, {7, 9}, {8, 0}, {9, 6}};
}

TEST(LoopsTest, DominatorsOfTheDragonBookFlowGraph) {
  const BlockGraph g = make_graph(10, dragon_book_edges(), /*entries=*/{0});
  const DominatorTree dt = compute_dominators(g);
  ASSERT_FALSE(dt.truncated);
  // Figure 9.39 (the dominator tree), 0-based.
  const std::vector<uint32_t> want = {kNoBlock, 0, 0, 2, 3, 3, 3, 6, 7, 7};
  EXPECT_EQ(dt.idom, want);
  EXPECT_EQ(dt.roots, std::vector<uint32_t>{0});
  EXPECT_TRUE(dt.dominates(3, 9));
  EXPECT_TRUE(dt.dominates(5, 5));
  EXPECT_FALSE(dt.dominates(4, 6));  // 6 is reached through 5 as well
  EXPECT_FALSE(dt.dominates(1, 2));
  EXPECT_FALSE(dt.dominates(0, 99));
}

TEST(LoopsTest, NaturalLoopsOfTheDragonBookFlowGraph) {
  const BlockGraph g = make_graph(10, dragon_book_edges(), {0});
  const LoopForest f = find_loops(g);
  ASSERT_FALSE(f.truncated);
  EXPECT_EQ(f.n_back_edges, 5u);  // 4->3, 7->4, 8->3, 9->1, 10->7 in the book's numbers
  EXPECT_EQ(f.n_irreducible_edges, 0u);
  ASSERT_EQ(f.loops.size(), 4u);
  const Loop* all = loop_at(f, 0);
  const Loop* l3 = loop_at(f, 2);
  const Loop* l4 = loop_at(f, 3);
  const Loop* l7 = loop_at(f, 6);
  ASSERT_TRUE(all && l3 && l4 && l7);
  EXPECT_EQ(all->block_pcs, pcs({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(l3->block_pcs, pcs({2, 3, 4, 5, 6, 7, 9}));  // 4->3 and 8->3 merged
  EXPECT_EQ(l3->n_back_edges, 2u);
  EXPECT_EQ(l4->block_pcs, pcs({3, 4, 5, 6, 7, 9}));
  EXPECT_EQ(l7->block_pcs, pcs({6, 7, 9}));
  // Nesting: 7 in 4 in 3 in the whole graph.
  EXPECT_EQ(all->parent, -1);
  EXPECT_EQ(&f.loops[static_cast<std::size_t>(l3->parent)], all);
  EXPECT_EQ(&f.loops[static_cast<std::size_t>(l4->parent)], l3);
  EXPECT_EQ(&f.loops[static_cast<std::size_t>(l7->parent)], l4);
  EXPECT_EQ(l7->depth, 4u);
}

TEST(LoopsTest, FindsAWhileLoop) {
  // 0: entry; 1: header (test); 2: body; 3: exit. 10 iterations.
  const BlockGraph g =
      make_graph(4, {{0, 1, 1}, {1, 2, 10}, {2, 1, 10}, {1, 3, 1}}, {}, {1, 11, 10, 1});
  EXPECT_EQ(g.entries, std::vector<uint32_t>{0});
  const LoopForest f = find_loops(g);
  ASSERT_EQ(f.loops.size(), 1u);
  const Loop& l = f.loops[0];
  EXPECT_EQ(l.head_pc, pc(1));
  EXPECT_EQ(l.block_pcs, pcs({1, 2}));
  EXPECT_EQ(l.iterations, 10u);
  EXPECT_EQ(l.head_exec_count, 11u);
  EXPECT_EQ(l.exec_count, 21u);
  EXPECT_EQ(l.n_back_edges, 1u);
  EXPECT_EQ(l.depth, 1u);
}

TEST(LoopsTest, FindsNestedLoopsInnerInsideOuter) {
  // 0 entry; 1 outer header; 2 inner header; 3 inner latch; 4 outer latch; 5 exit.
  const BlockGraph g = make_graph(
      6, {{0, 1, 1}, {1, 2, 10}, {2, 3, 100}, {3, 2, 90}, {3, 4, 10}, {4, 1, 9}, {4, 5, 1}}, {},
      {1, 10, 100, 100, 10, 1});
  const LoopForest f = find_loops(g);
  ASSERT_EQ(f.loops.size(), 2u);
  const Loop& outer = f.loops[0];  // the outer loop holds the inner one: hotter
  const Loop& inner = f.loops[1];
  EXPECT_EQ(outer.head_pc, pc(1));
  EXPECT_EQ(outer.block_pcs, pcs({1, 2, 3, 4}));
  EXPECT_EQ(outer.iterations, 9u);
  EXPECT_EQ(inner.head_pc, pc(2));
  EXPECT_EQ(inner.block_pcs, pcs({2, 3}));
  EXPECT_EQ(inner.iterations, 90u);
  EXPECT_EQ(inner.exec_count, 200u);
  EXPECT_EQ(inner.parent, 0);
  EXPECT_EQ(inner.depth, 2u);
  EXPECT_EQ(outer.parent, -1);
}

TEST(LoopsTest, MergesTwoBackEdgesToOneHeader) {
  // 1 branches to 2 or 3, both jump back to 1 (a loop with a continue).
  const BlockGraph g = make_graph(5, {{0, 1}, {1, 2, 6}, {1, 3, 4}, {2, 1, 6}, {3, 1, 3}, {1, 4}});
  const LoopForest f = find_loops(g);
  EXPECT_EQ(f.n_back_edges, 2u);
  ASSERT_EQ(f.loops.size(), 1u);
  EXPECT_EQ(f.loops[0].head_pc, pc(1));
  EXPECT_EQ(f.loops[0].block_pcs, pcs({1, 2, 3}));
  EXPECT_EQ(f.loops[0].n_back_edges, 2u);
  EXPECT_EQ(f.loops[0].iterations, 9u);
}

TEST(LoopsTest, FindsALoopWhoseBodyLiesBelowItsHeader) {
  // A while loop compiled with its test at the bottom and entered by a jump to the test:
  // 0: jmp 2; 1: body; 2: test, jcc 1; 3: exit. The header is the test, above the body.
  const BlockGraph g = make_graph(4, {{0, 2, 1}, {2, 1, 30}, {1, 2, 30}, {2, 3, 1}});
  const LoopForest f = find_loops(g);
  ASSERT_EQ(f.loops.size(), 1u);
  EXPECT_EQ(f.loops[0].head_pc, pc(2));
  EXPECT_EQ(f.loops[0].block_pcs, pcs({1, 2}));
  EXPECT_EQ(f.loops[0].iterations, 30u);
}

TEST(LoopsTest, FindsASelfLoop) {
  const BlockGraph g = make_graph(3, {{0, 1}, {1, 1, 41}, {1, 2}});
  const LoopForest f = find_loops(g);
  ASSERT_EQ(f.loops.size(), 1u);
  EXPECT_EQ(f.loops[0].head_pc, pc(1));
  EXPECT_EQ(f.loops[0].block_pcs, pcs({1}));
  EXPECT_EQ(f.loops[0].iterations, 41u);
}

TEST(LoopsTest, ReportsNoLoopForAnIrreducibleCycleWithTwoEntries) {
  // 0 jumps to 1 or 2; 1 and 2 jump to each other: neither dominates the other.
  const BlockGraph g = make_graph(3, {{0, 1}, {0, 2}, {1, 2, 50}, {2, 1, 50}});
  const DominatorTree dt = compute_dominators(g);
  EXPECT_EQ(dt.idom, (std::vector<uint32_t>{kNoBlock, 0, 0}));
  const LoopForest f = find_loops(g);
  EXPECT_TRUE(f.loops.empty());
  EXPECT_EQ(f.n_back_edges, 0u);
  EXPECT_EQ(f.n_irreducible_edges, 1u);
}

TEST(LoopsTest, DominatorsOfTheIrreducibleGraphOfCooperHarveyKennedy) {
  // The paper's irreducible example (nodes named 6..1 by postorder number there, 6 the
  // entry; here paper node 6 -> 0, 5 -> 1, 4 -> 2, 3 -> 3, 2 -> 4, 1 -> 5): it needs more
  // than one pass, and every node's idom is the entry.
  const BlockGraph g =
      make_graph(6, {{0, 1}, {0, 2}, {1, 5}, {2, 4}, {2, 3}, {5, 4}, {4, 5}, {4, 3}, {3, 4}});
  const DominatorTree dt = compute_dominators(g);
  EXPECT_EQ(dt.idom, (std::vector<uint32_t>{kNoBlock, 0, 0, 0, 0, 0}));
  const LoopForest f = find_loops(g);
  EXPECT_TRUE(f.loops.empty());
  EXPECT_GE(f.n_irreducible_edges, 1u);
}

TEST(LoopsTest, RootsAnUnenteredCycleAtItsLowestPc) {
  // A trace that started inside a loop: no block lacks predecessors.
  const BlockGraph g = make_graph(3, {{0, 1, 5}, {1, 2, 5}, {2, 0, 5}});
  EXPECT_TRUE(g.entries.empty());
  const DominatorTree dt = compute_dominators(g);
  EXPECT_EQ(dt.roots, std::vector<uint32_t>{0});
  const LoopForest f = find_loops(g);
  ASSERT_EQ(f.loops.size(), 1u);
  EXPECT_EQ(f.loops[0].head_pc, pc(0));
  EXPECT_EQ(f.loops[0].block_pcs, pcs({0, 1, 2}));
}

TEST(LoopsTest, SeveralRootsThroughTheVirtualRoot) {
  // Two separate entries, each with its own loop, and a cycle 6 <-> 7 that only the marked
  // entry 7 enters: 7 becomes its header.
  const BlockGraph g = make_graph(
      8, {{0, 1}, {1, 2}, {2, 1, 7}, {3, 4}, {4, 5}, {5, 4, 3}, {6, 7}, {7, 6}, {7, 7, 2}},
      /*entries=*/{7});
  EXPECT_EQ(g.entries, (std::vector<uint32_t>{0, 3, 7}));
  const DominatorTree dt = compute_dominators(g);
  EXPECT_EQ(dt.idom[1], 0u);
  EXPECT_EQ(dt.idom[4], 3u);
  EXPECT_EQ(dt.idom[3], kNoBlock);
  EXPECT_EQ(dt.idom[6], 7u);
  EXPECT_EQ(dt.idom[7], kNoBlock);  // entered from outside: only the virtual root dominates
  const LoopForest f = find_loops(g);
  std::vector<uint64_t> heads;
  for (const Loop& l : f.loops) heads.push_back(l.head_pc);
  std::sort(heads.begin(), heads.end());
  EXPECT_EQ(heads, pcs({1, 4, 7}));  // 6<->7: 7 dominates 6, so 6->7 is a back edge
}

TEST(LoopsTest, SortsLoopsHottestFirst) {
  const BlockGraph g = make_graph(6, {{0, 1}, {1, 1, 5}, {1, 2}, {2, 3}, {3, 3, 500}, {3, 4}}, {},
                                  {1, 6, 1, 501, 1, 0});
  const LoopForest f = find_loops(g);
  ASSERT_EQ(f.loops.size(), 2u);
  EXPECT_EQ(f.loops[0].head_pc, pc(3));
  EXPECT_EQ(f.loops[1].head_pc, pc(1));
}

TEST(LoopsTest, LoopHeadersDominateTheirBodiesOnRandomGraphs) {
  std::mt19937_64 rng(1234);
  for (int round = 0; round < 20; ++round) {
    const uint32_t n = 50 + static_cast<uint32_t>(rng() % 150);
    std::vector<Edge> edges;
    for (uint32_t k = 0; k + 1 < n; ++k) {
      if (rng() % 4 != 0) edges.push_back({k, k + 1});
      edges.push_back({k, static_cast<uint32_t>(rng() % n), rng() % 9 + 1});
    }
    const BlockGraph g = make_graph(n, edges);
    const DominatorTree dt = compute_dominators(g);
    const LoopForest f = find_loops(g);
    ASSERT_FALSE(f.truncated);
    for (std::size_t i = 0; i < f.loops.size(); ++i) {
      const Loop& l = f.loops[i];
      ASSERT_TRUE(std::is_sorted(l.blocks.begin(), l.blocks.end()));
      ASSERT_TRUE(std::binary_search(l.blocks.begin(), l.blocks.end(), l.head));
      for (uint32_t b : l.blocks) ASSERT_TRUE(dt.dominates(l.head, b)) << round;
      if (l.parent >= 0) {
        const Loop& p = f.loops[static_cast<std::size_t>(l.parent)];
        ASSERT_TRUE(
            std::includes(p.blocks.begin(), p.blocks.end(), l.blocks.begin(), l.blocks.end()));
        ASSERT_EQ(l.depth, p.depth + 1);
      }
      if (i > 0) {
        ASSERT_GE(f.loops[i - 1].exec_count, l.exec_count);
      }
      // The body is exactly the header plus what reaches a back-edge tail avoiding it.
      std::vector<bool> reaches(n, false);
      std::vector<uint32_t> stack;
      for (const BlockEdge& p : g.blocks[l.head].preds) {
        if (dt.dominates(l.head, p.block) && p.block != l.head && !reaches[p.block]) {
          reaches[p.block] = true;
          stack.push_back(p.block);
        }
      }
      while (!stack.empty()) {
        const uint32_t x = stack.back();
        stack.pop_back();
        for (const BlockEdge& p : g.blocks[x].preds) {
          if (p.block != l.head && !reaches[p.block]) {
            reaches[p.block] = true;
            stack.push_back(p.block);
          }
        }
      }
      reaches[l.head] = true;
      for (uint32_t b = 0; b < n; ++b) {
        ASSERT_EQ(reaches[b], std::binary_search(l.blocks.begin(), l.blocks.end(), b))
            << round << " loop " << l.head << " block " << b;
      }
    }
    // Brute-force check of idom on this graph: a dominates b iff b is unreachable from the
    // roots once a is removed.
    for (uint32_t b = 0; b < n; b += 7) {
      for (uint32_t a = 0; a < n; a += 5) {
        std::vector<bool> seen(n, false);
        std::vector<uint32_t> stack;
        for (uint32_t r : dt.roots) {
          if (r != a) {
            seen[r] = true;
            stack.push_back(r);
          }
        }
        while (!stack.empty()) {
          const uint32_t x = stack.back();
          stack.pop_back();
          for (const BlockEdge& e : g.blocks[x].succs) {
            if (e.block != a && !seen[e.block]) {
              seen[e.block] = true;
              stack.push_back(e.block);
            }
          }
        }
        ASSERT_EQ(dt.dominates(a, b), a == b || !seen[b]) << round << " " << a << " " << b;
      }
    }
  }
}

TEST(LoopsTest, GivesUpPastTheWorkBudget) {
  std::vector<Edge> edges;
  for (uint32_t k = 0; k + 1 < 2000; ++k) edges.push_back({k, k + 1});
  edges.push_back({1999, 0});
  const BlockGraph g = make_graph(2000, edges);
  const LoopForest f = find_loops(g, LoopOptions{.max_work = 500});
  EXPECT_TRUE(f.truncated);
  EXPECT_TRUE(f.loops.empty());
  EXPECT_TRUE(compute_dominators(g, LoopOptions{.max_work = 500}).truncated);
  const LoopForest full = find_loops(g);
  EXPECT_FALSE(full.truncated);
  ASSERT_EQ(full.loops.size(), 1u);
  EXPECT_EQ(full.loops[0].blocks.size(), 2000u);
}

TEST(LoopsTest, ToleratesAHandMadeGraphWithBadIndices) {
  BlockGraph g;
  g.blocks.resize(3);
  for (uint32_t k = 0; k < 3; ++k) {
    g.blocks[k].start_pc = pc(k);
    g.blocks[k].end_pc = pc(k) + 1;
  }
  g.blocks[0].succs = {{1, 1}, {77, 1}};
  g.blocks[1].succs = {{0, 1}, {kNoBlock, 1}};
  g.blocks[1].preds = {{0, 1}, {99, 1}};  // preds do not mirror succs
  g.blocks[2].preds = {{2, 1}};
  g.entries = {5, 0};
  const LoopForest f = find_loops(g);
  EXPECT_EQ(f.edges_invalid, 2u);
  EXPECT_FALSE(f.truncated);
  EXPECT_TRUE(find_loops(BlockGraph{}).loops.empty());
}

TEST(LoopsTest, TerminatesOnHandMadeGraphsWhosePredsDoNotMirrorSuccs) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 200; ++round) {
    BlockGraph g;
    const auto n = static_cast<uint32_t>(2 + rng() % 40);
    g.blocks.resize(n);
    for (uint32_t k = 0; k < n; ++k) {
      g.blocks[k].start_pc = pc(k);
      g.blocks[k].end_pc = pc(k) + 1;
      for (int j = 0; j < 3; ++j) {
        g.blocks[k].succs.push_back({static_cast<uint32_t>(rng() % (n + 1)), 1});
        g.blocks[k].preds.push_back({static_cast<uint32_t>(rng() % (n + 1)), 1});
      }
    }
    if (round % 2 == 0) g.entries = {static_cast<uint32_t>(rng() % n)};
    const LoopForest f = find_loops(g, LoopOptions{.max_work = 100000});
    EXPECT_LE(f.work, 100000u + 64u * n);
  }
}

}  // namespace
}  // namespace glassbox::pattern_miner
