#include "services/pattern_miner/cfg.hpp"

#include <algorithm>
#include <limits>

namespace glassbox::pattern_miner {
namespace {

constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

uint64_t saturating_add(uint64_t a, uint64_t b) { return a > kMaxU64 - b ? kMaxU64 : a + b; }

// splitmix64's finaliser (Steele, Lea, Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014): spreads pcs, whose low bits are alike, over the hash buckets.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A 128-bit unsigned accumulator for the coverage sweep: it adds the exec counts of the TBs
// that start at a cut and subtracts those that end there, so each partial sum is exact even
// when hostile counts near UINT64_MAX add up past 64 bits; sat() then saturates.
struct Acc {
  uint64_t lo = 0;
  uint64_t hi = 0;
  void add(const Acc& v) {
    const uint64_t old = lo;
    lo += v.lo;
    hi += v.hi + (lo < old ? 1 : 0);
  }
  void sub(const Acc& v) {
    const uint64_t old = lo;
    lo -= v.lo;
    hi -= v.hi + (lo > old ? 1 : 0);
  }
  void add(uint64_t v) { add(Acc{v, 0}); }
  uint64_t sat() const { return hi != 0 ? kMaxU64 : lo; }
};

// One shape (pc, size) flattened for build(), with its resolved exec count.
struct FlatShape {
  uint64_t pc = 0;
  uint64_t end = 0;
  uint32_t n_insns = 0;
  Acc exec;
};

struct RawEdge {
  uint32_t from = 0;
  uint32_t to = 0;
  uint64_t count = 0;
};

}  // namespace

std::size_t Cfg::KeyHash::operator()(const EdgeKey& k) const noexcept {
  return static_cast<std::size_t>(
      mix(k.from_pc ^ mix(k.to_pc ^ (uint64_t{k.from_size_bytes} << 1))));
}

std::size_t Cfg::KeyHash::operator()(const ExecKey& k) const noexcept {
  return static_cast<std::size_t>(mix(k.pc ^ (uint64_t{k.size_bytes} << 48)));
}

uint32_t BlockGraph::find(uint64_t start_pc) const {
  auto it = std::lower_bound(blocks.begin(), blocks.end(), start_pc,
                             [](const BasicBlock& b, uint64_t pc) { return b.start_pc < pc; });
  if (it == blocks.end() || it->start_pc != start_pc) return kNoBlock;
  return static_cast<uint32_t>(it - blocks.begin());
}

uint32_t BlockGraph::containing(uint64_t pc) const {
  auto it = std::upper_bound(blocks.begin(), blocks.end(), pc,
                             [](uint64_t p, const BasicBlock& b) { return p < b.start_pc; });
  if (it == blocks.begin()) return kNoBlock;
  --it;
  if (pc >= it->end_pc) return kNoBlock;
  return static_cast<uint32_t>(it - blocks.begin());
}

Cfg::Cfg(CfgLimits limits) : limits_(limits) {
  limits_.max_blocks = std::min(limits_.max_blocks, kMaxBlocksLimit);
}

void Cfg::clear() {
  stats_ = {};
  n_shapes_ = 0;
  tbs_.clear();
  cuts_.clear();
  edges_.clear();
  execs_.clear();
  entries_.clear();
}

Cfg::TbAdd Cfg::add_tb(const TbRecord& tb) {
  const uint64_t size = tb.size_bytes;
  if (size == 0 || size > kMaxTbSizeBytes || tb.pc > kMaxU64 - size) {
    ++stats_.tbs_rejected;
    return TbAdd::kRejected;
  }
  uint32_t n_insns = tb.n_insns;
  if (n_insns > tb.size_bytes) {  // every x86 insn is at least one byte
    ++stats_.n_insns_invalid;
    n_insns = 0;
  }
  const uint64_t end = tb.pc + size;

  auto it = tbs_.find(tb.pc);
  if (it != tbs_.end()) {
    for (Shape& s : it->second) {
      if (s.size_bytes != tb.size_bytes) continue;
      if (s.n_insns == 0) {
        s.n_insns = n_insns;
      } else if (n_insns != 0 && n_insns != s.n_insns) {
        ++stats_.n_insns_conflicts;  // keep the first: the insns at one pc do not change size
      }
      ++stats_.tbs_duplicate;
      return TbAdd::kDuplicate;
    }
    if (it->second.size() >= kMaxShapesPerPc) {
      ++stats_.tbs_dropped;
      return TbAdd::kDropped;
    }
  }
  const std::size_t new_cuts = (cuts_.count(tb.pc) == 0 ? 1 : 0) + (cuts_.count(end) == 0 ? 1 : 0);
  if (cuts_.size() + new_cuts > limits_.max_blocks + 1) {
    ++stats_.tbs_dropped;
    return TbAdd::kDropped;
  }
  ++cuts_[tb.pc];
  ++cuts_[end];
  std::vector<Shape>& shapes = tbs_[tb.pc];
  const Shape shape{tb.size_bytes, n_insns};
  shapes.insert(
      std::upper_bound(shapes.begin(), shapes.end(), shape,
                       [](const Shape& a, const Shape& b) { return a.size_bytes < b.size_bytes; }),
      shape);
  if (shapes.size() == 2) ++stats_.pcs_with_conflicts;
  ++n_shapes_;
  ++stats_.tbs_added;
  return TbAdd::kAdded;
}

void Cfg::add_edge(uint64_t from_pc, uint64_t to_pc, uint64_t count, uint32_t from_size_bytes) {
  if (count == 0) return;
  const EdgeKey key{from_pc, to_pc, from_size_bytes};
  auto it = edges_.find(key);
  if (it == edges_.end()) {
    if (edges_.size() >= limits_.max_edges) {
      ++stats_.edges_dropped;
      return;
    }
    edges_.emplace(key, count);
    return;
  }
  it->second = saturating_add(it->second, count);
}

void Cfg::add_exec(uint64_t pc, uint64_t count, uint32_t size_bytes) {
  if (count == 0) return;
  const ExecKey key{pc, size_bytes};
  auto it = execs_.find(key);
  if (it == execs_.end()) {
    if (execs_.size() >= limits_.max_blocks) {
      ++stats_.execs_dropped;
      return;
    }
    execs_.emplace(key, count);
    return;
  }
  it->second = saturating_add(it->second, count);
}

void Cfg::mark_entry(uint64_t pc) {
  if (entries_.count(pc) != 0) return;
  if (entries_.size() >= limits_.max_blocks) {
    ++stats_.entries_dropped;
    return;
  }
  entries_.insert(pc);
}

BlockGraph Cfg::build() const {
  BlockGraph g;

  // Shapes, flattened in (pc, size) order; pc_first[i] is the first shape of pcs[i].
  std::vector<FlatShape> shapes;
  std::vector<uint64_t> pcs;
  std::vector<uint32_t> pc_first;
  shapes.reserve(n_shapes_);
  pcs.reserve(tbs_.size());
  pc_first.reserve(tbs_.size() + 1);
  for (const auto& [pc, list] : tbs_) {
    pcs.push_back(pc);
    pc_first.push_back(static_cast<uint32_t>(shapes.size()));
    for (const Shape& s : list) shapes.push_back(FlatShape{pc, pc + s.size_bytes, s.n_insns, {}});
  }
  pc_first.push_back(static_cast<uint32_t>(shapes.size()));
  // The shapes of `pc` as [first, last) indices into `shapes`; empty when unknown.
  auto shapes_of = [&](uint64_t pc) -> std::pair<uint32_t, uint32_t> {
    auto it = std::lower_bound(pcs.begin(), pcs.end(), pc);
    if (it == pcs.end() || *it != pc) return {0, 0};
    const std::size_t i = static_cast<std::size_t>(it - pcs.begin());
    return {pc_first[i], pc_first[i + 1]};
  };
  // The shape of `pc` that is `size_bytes` long, the longest for kAnySize; or kNoBlock.
  auto shape_of = [&](uint64_t pc, uint32_t size_bytes) -> uint32_t {
    const auto [first, last] = shapes_of(pc);
    if (first == last) return kNoBlock;
    if (size_bytes == kAnySize) return last - 1;  // sorted by size
    for (uint32_t s = first; s < last; ++s) {
      if (shapes[s].end - shapes[s].pc == size_bytes) return s;
    }
    return kNoBlock;
  };

  for (const auto& [key, count] : execs_) {
    const uint32_t s = shape_of(key.pc, key.size_bytes);
    if (s == kNoBlock) {
      ++g.execs_unresolved;
      continue;
    }
    shapes[s].exec.add(count);
  }

  // Per cut: the shapes starting and ending there (count and exec sum).
  std::vector<uint64_t> cuts;
  cuts.reserve(cuts_.size());
  for (const auto& [addr, refs] : cuts_) cuts.push_back(addr);
  struct CutSums {
    uint32_t n_start = 0;
    uint32_t n_end = 0;
    Acc exec_start;
    Acc exec_end;
  };
  std::vector<CutSums> sums(cuts.size());
  auto cut_index = [&](uint64_t addr) {
    return static_cast<std::size_t>(std::lower_bound(cuts.begin(), cuts.end(), addr) -
                                    cuts.begin());
  };
  for (const FlatShape& s : shapes) {
    CutSums& a = sums[cut_index(s.pc)];
    ++a.n_start;
    a.exec_start.add(s.exec);
    CutSums& b = sums[cut_index(s.end)];
    ++b.n_end;
    b.exec_end.add(s.exec);
  }

  // The sweep: one BB per covered interval between neighbouring cuts.
  std::vector<RawEdge> raw;
  raw.reserve(edges_.size() + cuts.size());
  uint64_t active_n = 0;
  Acc active_exec;
  for (std::size_t i = 0; i < cuts.size(); ++i) {
    const CutSums& c = sums[i];
    const uint64_t through_n = active_n - c.n_end;  // shapes spanning this cut
    Acc through_exec = active_exec;
    through_exec.sub(c.exec_end);
    if (through_n > 0 && !g.blocks.empty() && g.blocks.back().end_pc == cuts[i]) {
      const auto from = static_cast<uint32_t>(g.blocks.size() - 1);
      raw.push_back(RawEdge{from, from + 1, through_exec.sat()});
    }
    active_n = through_n + c.n_start;
    active_exec = through_exec;
    active_exec.add(c.exec_start);
    if (active_n > 0 && i + 1 < cuts.size()) {
      BasicBlock bb;
      bb.start_pc = cuts[i];
      bb.end_pc = cuts[i + 1];
      bb.exec_count = active_exec.sat();
      bb.tb_start = c.n_start > 0;
      g.blocks.push_back(std::move(bb));
    }
  }

  // n_insns: a shape covering exactly the BB, or two shapes with one end whose starts are
  // the BB's bounds.
  for (BasicBlock& bb : g.blocks) {
    if (!bb.tb_start) continue;
    const auto [first, last] = shapes_of(bb.start_pc);
    for (uint32_t s = first; s < last && bb.n_insns == 0; ++s) {
      const FlatShape& t1 = shapes[s];
      if (t1.n_insns == 0) continue;
      if (t1.end == bb.end_pc) {
        bb.n_insns = t1.n_insns;
        break;
      }
      const auto [f2, l2] = shapes_of(bb.end_pc);
      for (uint32_t u = f2; u < l2; ++u) {
        const FlatShape& t2 = shapes[u];
        if (t2.end == t1.end && t2.n_insns != 0 && t2.n_insns < t1.n_insns &&
            t1.n_insns - t2.n_insns <= bb.end_pc - bb.start_pc) {
          bb.n_insns = t1.n_insns - t2.n_insns;
          break;
        }
      }
    }
  }

  // Branch edges: from the BB that ends the source TB to the BB at to_pc.
  for (const auto& [key, count] : edges_) {
    const uint32_t to = g.find(key.to_pc);
    uint32_t s = kNoBlock;
    if (key.from_size_bytes != kAnySize) {
      s = shape_of(key.from_pc, key.from_size_bytes);
    } else {
      const auto [first, last] = shapes_of(key.from_pc);
      for (uint32_t u = first; u < last && s == kNoBlock; ++u) {
        if (shapes[u].end == key.to_pc) s = u;  // an early end falling through
      }
      if (s == kNoBlock && first != last) s = last - 1;
    }
    const uint32_t from = s == kNoBlock ? kNoBlock : g.containing(shapes[s].end - 1);
    if (to == kNoBlock || from == kNoBlock) {
      ++g.edges_unresolved;
      continue;
    }
    raw.push_back(RawEdge{from, to, count});
  }

  std::sort(raw.begin(), raw.end(), [](const RawEdge& a, const RawEdge& b) {
    return a.from != b.from ? a.from < b.from : a.to < b.to;
  });
  for (std::size_t i = 0; i < raw.size();) {
    RawEdge e = raw[i];
    for (++i; i < raw.size() && raw[i].from == e.from && raw[i].to == e.to; ++i) {
      e.count = saturating_add(e.count, raw[i].count);
    }
    g.blocks[e.from].succs.push_back(BlockEdge{e.to, e.count});
  }
  // preds in ascending source order: from the successor lists walked in block order.
  for (uint32_t b = 0; b < g.blocks.size(); ++b) {
    for (const BlockEdge& e : g.blocks[b].succs) g.blocks[e.block].preds.push_back({b, e.count});
  }

  for (uint32_t b = 0; b < g.blocks.size(); ++b) {
    if (g.blocks[b].tb_start && g.blocks[b].preds.empty()) g.entries.push_back(b);
  }
  for (uint64_t pc : entries_) {
    const uint32_t b = g.find(pc);
    if (b != kNoBlock) g.entries.push_back(b);
  }
  std::sort(g.entries.begin(), g.entries.end());
  g.entries.erase(std::unique(g.entries.begin(), g.entries.end()), g.entries.end());
  for (uint32_t b : g.entries) g.blocks[b].entry = true;
  return g;
}

}  // namespace glassbox::pattern_miner
