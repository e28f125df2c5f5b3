// The pattern-miner's state: what the guest executed, aggregated, bounded, and persisted.
//
// Input (from trace-consumer's batches, schemas/trace.fbs): TB records (tb_id -> pc, size,
// n_insns, gpa, insn bytes), per-vCPU streams of executed tb_ids (stream mode) or per-tb_id
// execution deltas (counts mode). tb_ids are the plugin's and only mean something within one
// QEMU generation; pcs are the identity of code.
//
// Per event the work is an array increment (tb_id -> pending count), a hash update for the
// edge (previous tb_id -> tb_id on that vCPU), and the NET hot-trace selector (Dynamo).
// fold() moves pending counts to pc level: a Space-Saving summary of block executions
// (Metwally et al., ICDT 2005; bounded by [miner] top_k), exact for the heavy hitters, and the
// CFG (cfg.hpp) that loops are found on (loops.hpp, dominators + natural loops).
// Memory is bounded: tb_id tables by kMaxTbIds, edges by kMaxPendingEdges, the CFG by
// CfgLimits, the summary by top_k.
//
// Persistence (SQLite, WAL): per generation the TB table (so a restarted miner can still
// name the tb_ids of events it receives later), block counts and edge counts; a restarted
// miner resumes the generation's counts from it. Older generations stay queryable history.
//
// Thread-safety: one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "services/pattern_miner/cfg.hpp"
#include "services/pattern_miner/hot_traces.hpp"
#include "services/pattern_miner/loops.hpp"
#include "services/pattern_miner/top_k.hpp"
#include "shared/result.hpp"

struct sqlite3;

namespace glassbox::pattern_miner {

inline constexpr uint32_t kMaxTbIds = 1u << 24;       // tb_ids tracked per generation
inline constexpr size_t kMaxPendingEdges = 1u << 20;  // distinct tb edges between folds
inline constexpr uint32_t kNoTbEvent = 0xffffffffu;   // trace-consumer's filler

struct MinerOptions {
  size_t top_k = 65536;           // Space-Saving capacity (blocks)
  uint32_t trace_threshold = 50;  // NET hot threshold
  CfgLimits cfg;
};

// One piece of code at a pc: user code of different processes can share a pc (static
// binaries all start at 0x401000) while being different code at different gpas. Counts are
// merged per pc (the Space-Saving key); each variant keeps its own share so the hot block is
// reported with the gpa and bytes of the code that actually ran most.
struct CodeVariant {
  uint64_t gpa = kNoGpa;
  uint32_t size_bytes = 0;
  uint32_t n_insns = 0;
  std::vector<uint8_t> bytes;
  uint64_t executions = 0;  // executions of TBs translated from this gpa (since this miner began
                            // the generation; not persisted)
};

inline constexpr size_t kMaxVariantsPerPc = 8;

// What is reported for one pc: the hottest variant's gpa, size, n_insns and bytes (the latest
// translation when none has run yet), and every variant's gpa, hottest first.
struct BlockInfo {
  uint64_t pc = 0;
  uint64_t gpa = kNoGpa;
  uint32_t size_bytes = 0;
  uint32_t n_insns = 0;
  std::vector<uint8_t> bytes;
  std::vector<uint64_t> gpas;  // at most kMaxVariantsPerPc, hottest first
};

struct HotEntry {
  BlockInfo info;      // info.size_bytes == 0 when no TB record was seen for the pc
  uint64_t count = 0;  // Space-Saving count (an over-estimate by at most `error`)
  uint64_t error = 0;
};

struct MinerStats {
  uint64_t tb_records = 0;
  uint64_t events = 0;             // stream events taken (filler excluded)
  uint64_t counted = 0;            // executions from counts batches
  uint64_t events_unknown_tb = 0;  // tb_ids >= kMaxTbIds, or never given a record by fold time
  uint64_t edges_dropped = 0;      // over kMaxPendingEdges
  uint64_t folds = 0;
  uint64_t generations = 0;
};

class MinerCore {
 public:
  explicit MinerCore(MinerOptions options);

  // Starts `generation` (a new QEMU): per-tb_id tables, CFG and traces start over; the
  // Space-Saving summary is per generation too. Does nothing for the current generation.
  void begin_generation(uint64_t generation);
  uint64_t generation() const { return generation_; }

  // One TB record. gpa may be kNoGpa. Bytes are copied.
  void add_tb(uint32_t tb_id, uint64_t pc, uint64_t gpa, uint32_t size_bytes, uint32_t n_insns,
              std::span<const uint8_t> bytes);
  // Executed tb_ids of one vCPU, in order (kNoTbEvent entries are skipped).
  void add_events(uint32_t vcpu_index, std::span<const uint32_t> tb_ids);
  // Counts mode: `delta` more executions of `tb_id`.
  void add_count(uint32_t tb_id, uint64_t delta);

  // Moves pending per-tb_id counts and edges to pc level. Cheap when nothing is pending.
  void fold();

  // The `n` hottest blocks (after fold()).
  std::vector<HotEntry> top(size_t n) const;
  // Natural loops of the CFG of everything traced, hottest first, at most `n`.
  std::vector<Loop> loops(size_t n) const;
  // NET traces, hottest first, at most `n`.
  std::vector<HotTrace> traces(size_t n) const;

  uint64_t total_executions() const { return blocks_.total(); }
  const MinerStats& stats() const { return stats_; }
  size_t n_blocks_known() const { return info_by_pc_.size(); }
  // The block at `pc` as reported (hottest variant), nullopt when no TB record was seen.
  std::optional<BlockInfo> info(uint64_t pc) const;

  // For persistence: TB records of this generation added since the last call.
  std::vector<std::pair<uint32_t, BlockInfo>> take_new_tbs();
  // Edge counts folded since the last call: (from_pc, to_pc) -> count.
  std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> take_new_edges();
  // Restores a generation's state (after begin_generation(g)).
  void restore_tb(uint32_t tb_id, const BlockInfo& info);
  void restore_block_count(uint64_t pc, uint64_t count);
  void restore_edge(uint64_t from_pc, uint64_t to_pc, uint64_t count);

 private:
  void grow_tb_tables(uint32_t tb_id);  // makes tb_id a valid index (tb_id < kMaxTbIds)

  MinerOptions options_;
  uint64_t generation_ = 0;
  std::vector<uint64_t> tb_pc_;                           // tb_id -> pc (0: unknown)
  std::vector<uint32_t> tb_size_;                         // tb_id -> size
  std::vector<uint64_t> tb_pending_;                      // tb_id -> executions not folded yet
  std::vector<uint32_t> dirty_tbs_;                       // tb_ids with pending > 0
  std::unordered_map<uint64_t, uint64_t> pending_edges_;  // (from tb << 32 | to tb) -> count
  std::vector<uint32_t> last_tb_;  // per vCPU: previous tb_id (kNoTbEvent: none)
  // Per pc: its variants (bounded; when full, a new gpa replaces the coldest) and which one
  // was translated last.
  struct PcCode {
    std::vector<CodeVariant> variants;
    size_t latest = 0;
  };
  std::unordered_map<uint64_t, PcCode> info_by_pc_;
  std::vector<uint64_t> tb_gpa_;  // tb_id -> gpa (kNoGpa: unknown)
  std::vector<std::pair<uint32_t, BlockInfo>> new_tbs_;
  std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> new_edges_;
  SpaceSaving<uint64_t> blocks_;
  std::unique_ptr<Cfg> cfg_;
  std::unique_ptr<HotTraceSelector> net_;
  MinerStats stats_;
};

// The miner's SQLite file.
class MinerStore {
 public:
  // Errors: kIo naming the path and SQLite's message.
  static Result<std::unique_ptr<MinerStore>> open(const std::string& path);
  ~MinerStore();
  MinerStore(const MinerStore&) = delete;
  MinerStore& operator=(const MinerStore&) = delete;

  // Writes the new TBs and edges (take_new_*) and the current top `n` block counts of the
  // core's generation, in one transaction. Errors: kIo.
  Result<void> save(MinerCore& core, size_t n);
  // Loads generation `g` into `core` (which must be at generation g, freshly begun).
  // Returns whether anything was stored for it. Errors: kIo.
  Result<bool> load(uint64_t g, MinerCore& core);

 private:
  explicit MinerStore(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace glassbox::pattern_miner
