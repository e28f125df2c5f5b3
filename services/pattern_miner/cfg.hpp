// The control-flow graph of the guest code that ran, recovered from traced QEMU TBs.
//
// Input, as the trace-consumer delivers it (schemas/trace.fbs):
//  - TB records: QEMU translated the guest insns [pc, pc + size_bytes) as one TB. A TB ends
//    at a branch, but may also end early (page boundary, insn limit, icount, single-step),
//    a TB may start in the middle of another one (a jump target inside code already
//    translated), and the same pc may be translated again under a new tb_id (the caller maps
//    tb_ids to pcs: the pc is the TB's identity here).
//  - Executions: counts per TB (counts mode), and in stream mode also edges: consecutive
//    TBs of one vCPU's sequence, pc(prev) -> pc(next). Without edges (counts mode) the only
//    edges are the fall-throughs inside TBs, so find_loops() finds no loop that crosses a
//    branch: loops need stream mode. Edges also record interrupt, exception and syscall
//    transitions (the stream does not tell them apart from branches).
//
// Basic blocks (BBs). The address ranges of all TBs are cut at every TB start and every TB
// end; each covered piece between two neighbouring cuts is one BB. So
//  - every BB is a straight-line run of insns with a single entry, its start: an entry into
//    its middle would have made QEMU start a TB there, i.e. a cut;
//  - every TB is exactly a run of consecutive BBs, so execution counts map exactly: a BB's
//    exec count is the sum of the exec counts of the TBs covering it, and a BB falls
//    through into the next with the count of the TBs that span the cut between them;
//  - BBs are maximal in the sense that two neighbouring BBs are covered by different TB sets
//    (so may have different exec counts). A cut at the end of a TB that stopped early (page
//    boundary, insn limit) inside another TB's range is kept for that reason; the BB after
//    such a cut, when no TB starts there, is entered only by falling through.
// Cuts are insn boundaries without decoding: QEMU started (or ended) translating there. The
// insn bytes are not looked at (no disassembler dependency) and not kept.
//
// Conflicting sizes at one pc (several "shapes"): both are kept (stats().pcs_with_conflicts
// counts such pcs) and both contribute cuts. A count given without a size is attributed to
// the longest shape at its pc (the ordinary translation; shorter ones come from early
// ends), except that an edge from_pc -> to_pc where a shorter shape ends exactly at to_pc is
// attributed to that shape (an early end falling through). Give the size (from the TB
// record of the tb_id) whenever known: then the attribution is exact. Different code at one
// pc (user processes share virtual addresses; self-modifying code) looks the same and is
// merged by pc: the gpa is not used to tell such TBs apart, and their cuts may then split
// an insn of the other code.
//
// Hostile input (records from another process): a TB with size 0, size above
// kMaxTbSizeBytes, or a range past the top of the address space is rejected and counted; an
// n_insns above size_bytes is taken as unknown; counts saturate at UINT64_MAX; edges and
// counts whose pcs have no TB record stay pending (a record may come later) and are counted
// as unresolved when build() runs. Memory is bounded by CfgLimits; input beyond the bounds is
// dropped and counted, never an error.
//
// Thread-safety: Cfg is not synchronised (one writer); build() and the other const methods
// may run concurrently with each other. BlockGraph is a plain value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace glassbox::pattern_miner {

inline constexpr uint64_t kNoGpa = ~uint64_t{0};
// Largest TB accepted. QEMU x86-64 TBs hold at most TCG_MAX_INSNS (512) insns of at most
// 15 bytes and span at most two guest pages; 64 KiB leaves ample room.
inline constexpr uint32_t kMaxTbSizeBytes = 1u << 16;
// Most shapes (distinct sizes) kept for one pc; more are dropped and counted.
inline constexpr std::size_t kMaxShapesPerPc = 8;
// "Size not known" in Cfg::add_exec() and Cfg::add_edge(): attribute to the default shape.
inline constexpr uint32_t kAnySize = 0;
// "No block" in block indices.
inline constexpr uint32_t kNoBlock = ~uint32_t{0};

// One TB as traced. The record of the trace plugin (shared/trace_ring.hpp), decoded.
struct TbRecord {
  uint32_t tb_id = 0;          // the plugin's id; several ids may share one pc
  uint64_t pc = 0;             // guest virtual address of the first insn
  uint32_t size_bytes = 0;     // bytes of guest code translated; the TB is [pc, pc+size_bytes)
  uint32_t n_insns = 0;        // insns in the TB; 0 = unknown
  std::vector<uint8_t> bytes;  // raw x86-64 insn bytes (may be empty); not used by Cfg
  uint64_t gpa = kNoGpa;       // guest-physical address of the first byte, kNoGpa if unknown
};

// Largest CfgLimits::max_blocks honoured.
inline constexpr std::size_t kMaxBlocksLimit = std::size_t{1} << 28;

// Bounds on what a Cfg holds. At the defaults, with every bound reached, a Cfg holds about
// 220 MiB (edges 72, TB shapes 60, cuts 34, exec counts 29, entries 21) and build() needs
// about 130 MiB more while it runs, most of it the BlockGraph it returns.
struct CfgLimits {
  // Most BBs: a TB whose new cuts would raise the number of distinct cut addresses above
  // max_blocks + 1 is dropped. Also bounds the pending exec counts (distinct (pc, size)
  // keys) and the marked entries; TB shapes are at most kMaxShapesPerPc * (max_blocks + 1).
  // Values above kMaxBlocksLimit are taken as kMaxBlocksLimit (block indices are 32-bit).
  std::size_t max_blocks = 1u << 19;
  // Most distinct edges (from_pc, from size, to_pc) kept; more are dropped.
  std::size_t max_edges = 1u << 20;
};

// What happened to the input so far. Counters of calls (not of weights) unless named so.
struct CfgStats {
  uint64_t tbs_added = 0;           // new shapes
  uint64_t tbs_duplicate = 0;       // same pc and size again (e.g. retranslation)
  uint64_t tbs_rejected = 0;        // malformed: size 0, too large, range wraps
  uint64_t tbs_dropped = 0;         // over max_blocks or kMaxShapesPerPc
  uint64_t pcs_with_conflicts = 0;  // pcs holding more than one shape
  uint64_t n_insns_conflicts = 0;   // same shape again with a different known n_insns
  uint64_t n_insns_invalid = 0;     // n_insns > size_bytes: taken as unknown
  uint64_t edges_dropped = 0;       // add_edge() calls over max_edges
  uint64_t execs_dropped = 0;       // add_exec() calls over max_blocks keys
  uint64_t entries_dropped = 0;     // mark_entry() calls over max_blocks
};

// An edge between BBs, as stored in a BasicBlock: the other block's index in
// BlockGraph::blocks and how often the edge was taken (fall-through and branch counts
// summed).
struct BlockEdge {
  uint32_t block = kNoBlock;
  uint64_t count = 0;
};

// One BB: [start_pc, end_pc), guest virtual addresses.
struct BasicBlock {
  uint64_t start_pc = 0;
  uint64_t end_pc = 0;           // exclusive; > start_pc
  uint32_t n_insns = 0;          // 0 when unknown; known when a TB is exactly this range,
                                 // or two TBs with one end start at its two bounds
  uint64_t exec_count = 0;       // executions (sum over the TBs covering it; saturating)
  bool tb_start = false;         // a TB starts here (else only reached by falling through)
  bool entry = false;            // in BlockGraph::entries
  std::vector<BlockEdge> succs;  // sorted by block index, no duplicates
  std::vector<BlockEdge> preds;  // mirror of succs
};

// A CFG built by Cfg::build(). Invariants: blocks sorted by start_pc and disjoint; every
// edge index < blocks.size(); preds mirror succs with the same counts. Code that accepts a
// BlockGraph from elsewhere (find_loops()) tolerates violations without crashing.
struct BlockGraph {
  std::vector<BasicBlock> blocks;
  // Entry points: TB starts without predecessors, and the blocks marked with
  // Cfg::mark_entry() (e.g. the first TB of a vCPU's stream, an interrupt vector). Sorted.
  std::vector<uint32_t> entries;
  uint64_t edges_unresolved = 0;  // distinct edges whose from_pc or to_pc has no TB/BB
  uint64_t execs_unresolved = 0;  // distinct exec keys whose (pc, size) has no TB record

  // Index of the block starting at `start_pc`, or kNoBlock. O(log n).
  uint32_t find(uint64_t start_pc) const;
  // Index of the block holding the byte at `pc`, or kNoBlock. O(log n).
  uint32_t containing(uint64_t pc) const;
};

class Cfg {
 public:
  explicit Cfg(CfgLimits limits = {});

  enum class TbAdd {
    kAdded,      // a new pc, or a new size at a known pc (then a conflict is noted)
    kDuplicate,  // this pc and size were known (n_insns filled in when it was unknown)
    kRejected,   // malformed (see the file comment)
    kDropped,    // over the bounds
  };
  // Adds the TB [tb.pc, tb.pc + tb.size_bytes). Idempotent per (pc, size_bytes).
  // Cost: O(log n). tb.bytes, tb.gpa and tb.tb_id are not used.
  TbAdd add_tb(const TbRecord& tb);

  // Adds `count` traversals of the edge from the TB at `from_pc` (its shape of
  // `from_size_bytes` bytes, or kAnySize) to the TB at `to_pc`. A count of 0 is ignored.
  // The pcs need no TB record yet. Cost: one hash update.
  void add_edge(uint64_t from_pc, uint64_t to_pc, uint64_t count,
                uint32_t from_size_bytes = kAnySize);

  // Adds `count` executions of the TB at `pc` (its shape of `size_bytes` bytes, or kAnySize).
  // A count of 0 is ignored. Cost: one hash update.
  void add_exec(uint64_t pc, uint64_t count, uint32_t size_bytes = kAnySize);

  // Marks the TB at `pc` as entered from outside the traced code (the first TB of a vCPU's
  // stream or after a gap, an exception or interrupt vector): its BB becomes a root of
  // the dominator analysis even when it has predecessors.
  void mark_entry(uint64_t pc);

  // Builds the BBs and their edges from everything added so far. Cost: O(T log T + E log E)
  // for T shapes and E edges; memory O(T + E). *this is unchanged.
  BlockGraph build() const;

  const CfgStats& stats() const noexcept { return stats_; }
  std::size_t n_shapes() const noexcept { return n_shapes_; }
  std::size_t n_edges() const noexcept { return edges_.size(); }
  const CfgLimits& limits() const noexcept { return limits_; }

  // Forgets everything (a new QEMU generation); the limits stay.
  void clear();

 private:
  struct Shape {
    uint32_t size_bytes = 0;
    uint32_t n_insns = 0;  // 0 = unknown
  };
  struct EdgeKey {
    uint64_t from_pc = 0;
    uint64_t to_pc = 0;
    uint32_t from_size_bytes = kAnySize;
    bool operator==(const EdgeKey&) const = default;
  };
  struct ExecKey {
    uint64_t pc = 0;
    uint32_t size_bytes = kAnySize;
    bool operator==(const ExecKey&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const EdgeKey& k) const noexcept;
    std::size_t operator()(const ExecKey& k) const noexcept;
  };

  CfgLimits limits_;
  CfgStats stats_;
  std::size_t n_shapes_ = 0;
  std::map<uint64_t, std::vector<Shape>> tbs_;  // pc -> shapes, sorted by size_bytes
  std::map<uint64_t, uint32_t> cuts_;           // cut address -> shapes starting/ending there
  std::unordered_map<EdgeKey, uint64_t, KeyHash> edges_;
  std::unordered_map<ExecKey, uint64_t, KeyHash> execs_;
  std::unordered_set<uint64_t> entries_;
};

}  // namespace glassbox::pattern_miner
