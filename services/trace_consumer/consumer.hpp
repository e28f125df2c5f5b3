// glassbox-trace-consumer: drains the TCG trace plugin's shared memory and republishes it.
//
// The plugin (services/trace_plugin, loaded by QEMU when [trace] mode is not "off") writes
// /dev/shm/glassbox-INSTANCE.trace (layout: shared/trace_ring.hpp): a TB record ring (one
// record per translation: pc, RAM-file offset, size, n_insns, insn bytes), per-vCPU event
// rings of executed tb_ids (stream mode) and inline execution counters per tb_id (counts
// mode). This service attaches to that file (and re-attaches to a new one when QEMU
// restarts: new inode, new generation), drains it and publishes batches over iceoryx as
// schemas/trace.fbs describes: on ("glassbox", INSTANCE, "trace-tbs")
//   TbRecords (RAM-file offsets turned into gpas with vm-supervisor's RAM layout), first; on
//   ("glassbox", INSTANCE, "trace")
//   Events per vCPU (the ring's u32 tb_ids, copied straight from the ring into the loaned
//   chunk) or Counts (counter deltas every 100 ms).
// The rings live in the file, not in this process: a restarted consumer resumes from the
// rings' tails and loses nothing that was not dropped by the plugin while no one drained.
// A corrupt ring (indices or records that a correct producer cannot write) is resynced and
// counted, never trusted.
//
// Thread-safety: run() owns everything on the calling thread.
#pragma once

#include <atomic>
#include <memory>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace glassbox::trace_consumer {

class Consumer {
 public:
  Consumer(shared::Config config, shared::StatePaths paths);
  ~Consumer();
  // Runs until `stop`. Errors: kIo when the command endpoint or metrics port cannot be
  // opened; another trace-consumer already running for the state dir.
  Result<void> run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::trace_consumer
