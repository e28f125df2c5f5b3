#include "services/pattern_miner/loops.hpp"

#include <algorithm>
#include <limits>
#include <utility>

namespace glassbox::pattern_miner {
namespace {

constexpr uint32_t kUndef = ~uint32_t{0};

uint64_t saturating_add(uint64_t a, uint64_t b) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  return a > kMax - b ? kMax : a + b;
}

// Depth-first search numbering of the graph plus the virtual root (index n).
struct Dfs {
  std::vector<uint32_t> po;   // postorder number per node; the virtual root's is the highest
  std::vector<uint32_t> rpo;  // nodes in reverse postorder, the virtual root first
  std::vector<uint32_t> pre;  // preorder number per node (spanning-forest ancestor test)
  std::vector<bool> is_root;
};

// Counts work and says when the budget is spent.
struct Budget {
  uint64_t used = 0;
  uint64_t max = 0;
  bool spend(uint64_t n = 1) {
    used += n;
    return used <= max;
  }
};

// Iterative DFS over successors from every root; unreached blocks become roots in pc order.
Dfs number_dfs(const BlockGraph& g, std::vector<uint32_t>& roots, Budget& budget) {
  const auto n = static_cast<uint32_t>(g.blocks.size());
  Dfs d;
  d.po.assign(n + 1, kUndef);
  d.pre.assign(n + 1, kUndef);
  d.is_root.assign(n, false);
  d.rpo.reserve(n + 1);
  uint32_t next_pre = 0, next_post = 0;
  d.pre[n] = next_pre++;
  std::vector<std::pair<uint32_t, uint32_t>> stack;  // (block, next successor slot)
  auto visit = [&](uint32_t root) {
    d.is_root[root] = true;
    if (d.pre[root] != kUndef) return;
    d.pre[root] = next_pre++;
    stack.push_back({root, 0});
    while (!stack.empty()) {
      auto& [b, slot] = stack.back();
      const std::vector<BlockEdge>& succs = g.blocks[b].succs;
      if (slot < succs.size()) {
        const uint32_t s = succs[slot++].block;
        budget.spend();
        if (s < n && d.pre[s] == kUndef) {
          d.pre[s] = next_pre++;
          stack.push_back({s, 0});
        }
        continue;
      }
      d.po[b] = next_post++;
      d.rpo.push_back(b);
      stack.pop_back();
    }
  };
  for (uint32_t r : g.entries) {
    if (r < n && !d.is_root[r]) {
      roots.push_back(r);
      visit(r);
    }
  }
  for (uint32_t b = 0; b < n; ++b) {
    if (d.pre[b] == kUndef) {
      roots.push_back(b);
      visit(b);
    }
  }
  d.po[n] = next_post++;
  d.rpo.push_back(n);
  std::reverse(d.rpo.begin(), d.rpo.end());
  return d;
}

// Cooper-Harvey-Kennedy over the graph plus the virtual root; fills dt (idom, pre, post).
// Returns the DFS numbering for the retreating-edge test.
Dfs dominators(const BlockGraph& g, const LoopOptions& options, DominatorTree& dt) {
  const auto n = static_cast<uint32_t>(g.blocks.size());
  const uint32_t vroot = n;
  Budget budget{0, options.max_work};
  Dfs d = number_dfs(g, dt.roots, budget);

  std::vector<uint32_t> idom(n + 1, kUndef);
  idom[vroot] = vroot;
  // The paper's intersect(): walk the finger with the lower postorder number up the tree.
  auto intersect = [&](uint32_t a, uint32_t b) {
    // The budget checks also end the walk on a hand-made graph whose preds do not mirror its
    // succs, where the tree under construction can hold a cycle.
    while (a != b) {
      while (d.po[a] < d.po[b]) {
        a = idom[a];
        if (!budget.spend()) return vroot;
      }
      while (d.po[b] < d.po[a]) {
        b = idom[b];
        if (!budget.spend()) return vroot;
      }
    }
    return a;
  };
  bool changed = true;
  while (changed && budget.used <= budget.max) {
    changed = false;
    for (std::size_t i = 1; i < d.rpo.size() && budget.used <= budget.max; ++i) {
      const uint32_t b = d.rpo[i];
      uint32_t new_idom = d.is_root[b] ? vroot : kUndef;
      for (const BlockEdge& e : g.blocks[b].preds) {
        budget.spend();
        const uint32_t p = e.block;
        if (p >= n || idom[p] == kUndef) continue;
        new_idom = new_idom == kUndef ? p : intersect(p, new_idom);
      }
      // Only an inconsistent graph (preds not mirroring succs) leaves b without a processed
      // predecessor: treat it as entered from outside.
      if (new_idom == kUndef) new_idom = vroot;
      if (idom[b] != new_idom) {
        idom[b] = new_idom;
        changed = true;
      }
    }
  }
  dt.work = budget.used;
  if (budget.used > budget.max) {
    dt.truncated = true;
    dt.idom.assign(n, kNoBlock);
    return d;
  }

  dt.idom.resize(n);
  for (uint32_t b = 0; b < n; ++b) dt.idom[b] = idom[b] == vroot ? kNoBlock : idom[b];

  // Interval numbering of the dominator tree (children in block order).
  std::vector<uint32_t> child_first(n + 2, 0), children(n);
  for (uint32_t b = 0; b < n; ++b) ++child_first[idom[b] + 1];
  for (uint32_t i = 0; i <= n; ++i) child_first[i + 1] += child_first[i];
  {
    std::vector<uint32_t> fill(child_first.begin(), child_first.end() - 1);
    for (uint32_t b = 0; b < n; ++b) children[fill[idom[b]]++] = b;
  }
  dt.pre.assign(n + 1, 0);
  dt.post.assign(n + 1, 0);
  uint32_t clock = 0;
  std::vector<std::pair<uint32_t, uint32_t>> stack{{vroot, child_first[vroot]}};
  dt.pre[vroot] = clock++;
  while (!stack.empty()) {
    auto& [b, slot] = stack.back();
    if (slot < child_first[b + 1]) {
      const uint32_t c = children[slot++];
      dt.pre[c] = clock++;
      stack.push_back({c, child_first[c]});
      continue;
    }
    dt.post[b] = clock++;
    stack.pop_back();
  }
  return d;
}

}  // namespace

bool DominatorTree::dominates(uint32_t a, uint32_t b) const noexcept {
  if (truncated || a >= idom.size() || b >= idom.size()) return false;
  return pre[a] <= pre[b] && post[b] <= post[a];
}

DominatorTree compute_dominators(const BlockGraph& graph, const LoopOptions& options) {
  DominatorTree dt;
  dominators(graph, options, dt);
  return dt;
}

LoopForest find_loops(const BlockGraph& graph, const LoopOptions& options) {
  LoopForest forest;
  const auto n = static_cast<uint32_t>(graph.blocks.size());
  DominatorTree dt;
  const Dfs dfs = dominators(graph, options, dt);
  Budget budget{dt.work, options.max_work};
  if (dt.truncated) {
    forest.truncated = true;
    forest.work = dt.work;
    return forest;
  }

  // Back edges, grouped by header.
  struct Head {
    std::vector<uint32_t> tails;
    uint64_t iterations = 0;
  };
  std::vector<uint32_t> head_slot(n, kUndef);
  std::vector<std::pair<uint32_t, Head>> heads;  // (header block, its back edges)
  for (uint32_t u = 0; u < n; ++u) {
    for (const BlockEdge& e : graph.blocks[u].succs) {
      budget.spend();
      const uint32_t v = e.block;
      if (v >= n) {
        ++forest.edges_invalid;
        continue;
      }
      if (dt.dominates(v, u)) {
        ++forest.n_back_edges;
        if (head_slot[v] == kUndef) {
          head_slot[v] = static_cast<uint32_t>(heads.size());
          heads.push_back({v, {}});
        }
        Head& h = heads[head_slot[v]].second;
        h.tails.push_back(u);
        h.iterations = saturating_add(h.iterations, e.count);
      } else if (dfs.pre[v] <= dfs.pre[u] && dfs.po[u] <= dfs.po[v]) {
        ++forest.n_irreducible_edges;  // v is a DFS ancestor of u but does not dominate it
      }
    }
  }

  // Natural loop bodies: reverse DFS from the tails, stopping at the header.
  std::vector<uint32_t> mark(n, kUndef);
  std::vector<uint32_t> stack;
  for (uint32_t li = 0; li < heads.size(); ++li) {
    const uint32_t h = heads[li].first;
    const Head& head = heads[li].second;
    Loop loop;
    loop.head = h;
    loop.head_pc = graph.blocks[h].start_pc;
    loop.head_exec_count = graph.blocks[h].exec_count;
    loop.iterations = head.iterations;
    loop.n_back_edges = static_cast<uint32_t>(head.tails.size());
    mark[h] = li;
    loop.blocks.push_back(h);
    for (uint32_t t : head.tails) {
      if (mark[t] != li) {
        mark[t] = li;
        stack.push_back(t);
      }
    }
    while (!stack.empty()) {
      const uint32_t x = stack.back();
      stack.pop_back();
      loop.blocks.push_back(x);
      for (const BlockEdge& e : graph.blocks[x].preds) {
        budget.spend();
        if (e.block < n && mark[e.block] != li) {
          mark[e.block] = li;
          stack.push_back(e.block);
        }
      }
    }
    if (!budget.spend(loop.blocks.size())) {
      forest.truncated = true;
      forest.work = budget.used;
      return forest;
    }
    std::sort(loop.blocks.begin(), loop.blocks.end());
    loop.block_pcs.reserve(loop.blocks.size());
    for (uint32_t b : loop.blocks) {
      loop.block_pcs.push_back(graph.blocks[b].start_pc);
      loop.exec_count = saturating_add(loop.exec_count, graph.blocks[b].exec_count);
    }
    forest.loops.push_back(std::move(loop));
  }

  // Nesting: outer loops first; a loop's parent is the innermost loop already holding its
  // header (natural loops with different headers are disjoint or nested).
  std::vector<uint32_t> by_size(forest.loops.size());
  for (uint32_t i = 0; i < by_size.size(); ++i) by_size[i] = i;
  std::sort(by_size.begin(), by_size.end(), [&](uint32_t a, uint32_t b) {
    const Loop& x = forest.loops[a];
    const Loop& y = forest.loops[b];
    if (x.blocks.size() != y.blocks.size()) return x.blocks.size() > y.blocks.size();
    return x.head < y.head;
  });
  std::vector<uint32_t> innermost(n, kUndef);
  for (uint32_t li : by_size) {
    Loop& loop = forest.loops[li];
    const uint32_t p = innermost[loop.head];
    loop.parent = p == kUndef ? -1 : static_cast<int32_t>(p);
    loop.depth = p == kUndef ? 1 : forest.loops[p].depth + 1;
    for (uint32_t b : loop.blocks) innermost[b] = li;
  }

  // Hottest first; parent indices follow the permutation.
  std::vector<uint32_t> order(forest.loops.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const Loop& x = forest.loops[a];
    const Loop& y = forest.loops[b];
    if (x.exec_count != y.exec_count) return x.exec_count > y.exec_count;
    if (x.iterations != y.iterations) return x.iterations > y.iterations;
    return x.head_pc < y.head_pc;
  });
  std::vector<int32_t> new_index(order.size());
  for (uint32_t i = 0; i < order.size(); ++i) new_index[order[i]] = static_cast<int32_t>(i);
  std::vector<Loop> sorted;
  sorted.reserve(order.size());
  for (uint32_t i : order) {
    Loop& l = forest.loops[i];
    if (l.parent >= 0) l.parent = new_index[static_cast<uint32_t>(l.parent)];
    sorted.push_back(std::move(l));
  }
  forest.loops = std::move(sorted);
  forest.work = budget.used;
  return forest;
}

}  // namespace glassbox::pattern_miner
