// glassbox-semantic-db: what the guest kernel knows, live, from raw RAM.
//
// Keeps a RamMirror of the guest (iceoryx ("glassbox", INSTANCE, "ram"), see
// shared/ram_mirror.hpp), builds the kernel profile from it (VMCOREINFO, BTF, kallsyms; cached
// per kernel build id, profile_cache.hpp), and every [semantic] interval_ms walks the task and
// module lists and the printk ring buffer:
//  - history into SQLite (WAL, [semantic] db): first/last seen per process and module, births
//    and exits over boots (store.hpp); a walk that was cut short (warnings) is not recorded,
//    so a torn list never shows as a wave of exits;
//  - events on the bus as they happen: "semantic.process" (ProcessEvent Born/Exited),
//    "semantic.module", "semantic.kernel" (GuestKernelFound: a new boot or kernel), and
//    "guest.log" (GuestLogLine per new kernel log record, [semantic] log_events).
// A guest reset (QMP RESET, vm.state events from vm-supervisor), a new RAM epoch, or a
// changed VMCOREINFO drops the profile: the next walk finds the new kernel and KASLR slide.
//
// Commands (STATE/semantic-db.sock, schemas/semantic.fbs): processes (live, or the history
// with exits), modules, kernel log, one process's memory map, kernel info, and region
// annotations (each process's user pages as gpa ranges, for the compositor). Live answers
// walk the mirror's newest complete cycle at the time of the request (a few ms).
//
// Thread-safety: run() owns everything on the calling thread.
#pragma once

#include <atomic>
#include <memory>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace glassbox::semantic_db {

class Service {
 public:
  Service(shared::Config config, shared::StatePaths paths);
  ~Service();
  // Runs until `stop`. Errors: kIo when the command endpoint, the database or the metrics
  // port cannot be opened; another semantic-db already running for the state dir.
  Result<void> run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::semantic_db
