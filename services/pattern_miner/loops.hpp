// Dominators and natural loops of a recovered CFG (a BlockGraph from Cfg::build()).
//
// Sources:
//  - Dominators: Cooper, Harvey, Kennedy, "A Simple, Fast Dominance Algorithm" (Rice
//    University, 2001; cited as Software Practice & Experience 4:1-10), the engineered
//    algorithm with its intersect(): iterate over the blocks in reverse postorder,
//    setting idom(b) to the intersection (walking up the current dominator tree by postorder
//    number) of b's already-processed predecessors, until nothing changes.
//  - Back edges and natural loops: Aho, Lam, Sethi, Ullman, "Compilers: Principles,
//    Techniques, and Tools", 2nd ed., section 9.6.6: an edge tail -> head is a back edge when
//    head dominates tail; its natural loop is head plus every block that reaches tail without
//    passing through head (a reverse depth-first search from tail over predecessors that
//    stops at head). Natural loops with the same head are merged into one loop.
//
// Roots. The dominator analysis runs from a virtual root with an edge to every root: the
// graph's entries (TB starts without predecessors and marked entries) and, for every part of
// the graph they do not reach (a trace that started inside a loop has no entry into it),
// the lowest-pc block not yet reached, repeated until every block is reached. The lowest pc
// is chosen because loop headers are usually the lowest pc of their loop (the back edge
// jumps backward); a different choice can only hide or show loops in such unentered cycles.
//
// Irreducible regions (a cycle with two or more entries, e.g. jumps into the middle of a
// loop) have no natural loop: no block of the cycle dominates the others. They are reported
// as no loop at all; their retreating edges (depth-first-search edges to an ancestor that
// are not back edges) are counted in LoopForest::n_irreducible_edges. Recovering them
// (Havlak's or Ramalingam's loop nesting forests) is not done.
//
// Interrupts and exceptions appear in traced edges as jumps between unrelated blocks, and
// their return as a jump back to the interrupted pc; such edges can hide a loop (its header
// no longer dominates the tail) but, since a handler is entered from many places, rarely make
// one up.
//
// Hostile graphs: edges naming a block index out of range are skipped; the work (edge visits
// plus dominator-tree steps) is bounded by LoopOptions::max_work, and past it the answer is
// empty with `truncated` set: a partially converged dominator tree would report false loops.
//
// Thread-safety: free functions, reentrant; `graph` is only read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "services/pattern_miner/cfg.hpp"

namespace glassbox::pattern_miner {

struct LoopOptions {
  // Most work units (edge visits, dominator-tree walk steps, loop-body visits) before
  // giving up. The default allows CFGs of millions of blocks with ordinary loop nests.
  uint64_t max_work = uint64_t{1} << 28;
};

// The dominator tree, over block indices of the graph it was computed from.
struct DominatorTree {
  // Per block: its immediate dominator, or kNoBlock for a root (dominated only by the
  // virtual root) and for every block when truncated.
  std::vector<uint32_t> idom;
  // The blocks the virtual root enters, in the order chosen (entries first, then the
  // lowest-pc unreached ones).
  std::vector<uint32_t> roots;
  uint64_t work = 0;       // work units spent
  bool truncated = false;  // max_work ran out: idom and dominates() carry no information

  // Whether `a` dominates `b` (every path from the roots to b passes a; a dominates itself).
  // O(1) (dominator-tree interval numbers). False for indices out of range or when truncated.
  bool dominates(uint32_t a, uint32_t b) const noexcept;

  // Internal: preorder interval [pre, post] of each block in the dominator tree.
  std::vector<uint32_t> pre;
  std::vector<uint32_t> post;
};

// Computes the dominator tree of `graph` from its roots (see the file comment).
// Cost: O(E * passes) dominator-tree steps, passes usually <= 3 + loop nesting depth;
// memory O(N). Never throws except std::bad_alloc.
DominatorTree compute_dominators(const BlockGraph& graph, const LoopOptions& options = {});

// A natural loop (all natural loops of one header merged).
struct Loop {
  uint64_t head_pc = 0;
  uint32_t head = kNoBlock;         // header's index in the graph
  std::vector<uint64_t> block_pcs;  // start pcs of the loop's blocks, ascending, head included
  std::vector<uint32_t> blocks;     // their indices in the graph, ascending
  uint64_t head_exec_count = 0;     // executions of the header block
  uint64_t iterations = 0;          // back-edge traversals: sum of the back edges' counts
  uint64_t exec_count = 0;          // sum of the exec counts of the loop's blocks (saturating)
  uint32_t n_back_edges = 0;
  int32_t parent = -1;  // index in LoopForest::loops of the innermost enclosing
                        // loop, -1 for an outermost loop
  uint32_t depth = 1;   // 1 for an outermost loop, parent's depth + 1 inside
};

struct LoopForest {
  // Hottest first: by exec_count, then iterations, then lower head_pc.
  std::vector<Loop> loops;
  uint64_t n_back_edges = 0;
  uint64_t n_irreducible_edges = 0;  // retreating edges that are not back edges
  uint64_t edges_invalid = 0;        // edges naming a block out of range (skipped)
  uint64_t work = 0;
  bool truncated = false;  // max_work ran out: `loops` is empty
};

// Finds the natural loops of `graph`. Cost: the dominators', plus O(sum of loop body sizes
// and their in-edges); memory O(N + sum of loop body sizes).
LoopForest find_loops(const BlockGraph& graph, const LoopOptions& options = {});

}  // namespace glassbox::pattern_miner
