// glassbox-pattern-miner: where the guest spends its time.
//
// Subscribes to trace-consumer's batches (iceoryx ("glassbox", INSTANCE, "trace"),
// schemas/trace.fbs; every header verified, every payload bounds-checked; sequence gaps
// counted as lost batches and treated as a break in each vCPU's stream) and keeps a
// MinerCore (miner.hpp): exact-for-the-heavy-hitters block counts (Space-Saving), edges, the
// CFG of traced TBs split into real basic blocks, natural loops, NET hot traces. Every
// [miner] persist_interval_ms it writes the generation's TBs, edges and top counts to SQLite
// ([miner] db, WAL) and resumes from them after a restart. Every 500 ms it announces blocks
// that entered the top [miner] publish_top on the bus ("trace.hot", HotBlockFound with the
// insn bytes, for the synthesizer). Kernel pcs are named by semantic-db (Symbolize).
//
// Commands (STATE/pattern-miner.sock, schemas/miner.fbs): GetStatus, GetHot, GetLoops,
// GetTraces.
// Thread-safety: run() owns everything on the calling thread.
#pragma once

#include <atomic>
#include <memory>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace glassbox::pattern_miner {

class Service {
 public:
  Service(shared::Config config, shared::StatePaths paths);
  ~Service();
  // Runs until `stop`. Errors: kIo when the database, the command endpoint or the metrics
  // port cannot be opened; another pattern-miner running for the state dir.
  Result<void> run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::pattern_miner
