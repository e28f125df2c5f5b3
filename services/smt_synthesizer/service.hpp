// glassbox-smt-synthesizer: hot x86 blocks -> Z3-verified Pixel v1 programs, live.
//
// Subscribes to pattern-miner's "trace.hot" events on the bus (HotBlockFound with the block's
// bytes; every event verified by the bus). Each block is keyed by xxh3-64 of its bytes: a
// block already in the microcode library (SQLite, [synth] db, WAL) is answered from it and
// never synthesized again (the programs are position independent: rip is r21); a new one goes
// to a bounded queue ([synth] queue_max; beyond it blocks are dropped and counted) served by
// [synth] workers threads, each running synthesize_block() with its own Z3 context. Results
// are stored, published on the bus ("synth.result", SynthResult) and counted in metrics.
// Every 10 s it also asks pattern-miner for its current top [miner] publish_top blocks
// (GetHot) and queues those it lacks: events sent while it was down are not replayed.
//
// Commands (STATE/smt-synthesizer.sock, schemas/synth.fbs): GetStatus, ListBlocks, ShowBlock.
// Thread-safety: run() owns the bus, SQLite and the command endpoint on the calling thread;
// workers share only the job and result queues (mutex + condition variable).
#pragma once

#include <atomic>
#include <memory>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace glassbox::smt {

class Service {
 public:
  Service(shared::Config config, shared::StatePaths paths);
  ~Service();
  // Runs until `stop`. Errors: kIo when the library, the command endpoint or the metrics port
  // cannot be opened; another smt-synthesizer running for the state dir.
  Result<void> run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::smt
