// ram-snapshotter: guest RAM as a live stream of keyframes and deltas.
//
// Maps the guest RAM file (/dev/shm/glassbox-INSTANCE.ram) read-only (PROT_READ: the host
// never writes guest RAM), gets the gpa <-> file-offset layout from vm-supervisor (which
// reads it from QEMU's `info mtree -f`), and at [snapshot] hz finds the changed pages
// (xxh3 page hashes, or the kernel's soft-dirty bits of QEMU where they work) and publishes
// them over iceoryx ("glassbox", INSTANCE, "ram"): each chunk a RamChunkHeader
// (schemas/ram.fbs) plus the page bytes, loaned once and written once. A keyframe (every
// page) at start, every [snapshot] keyframe_every deltas, after the RAM changed under it
// (VM restarted: new file, new size) and when a subscriber asks (RequestKeyframe on its
// command endpoint STATE/ram-snapshotter.sock). A consistent keyframe stops the vCPUs
// (QMP stop/cont through vm-supervisor) for the copy and reports the pause. Pages that could
// not be published (iceoryx pool exhausted) are carried over to the next cycle, never lost.
//
// Thread-safety: run() owns everything on the calling thread (the hash tracker may use its
// own worker threads).
#pragma once

#include <atomic>
#include <memory>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace glassbox::ram_snapshotter {

class Snapshotter {
 public:
  Snapshotter(shared::Config config, shared::StatePaths paths);
  ~Snapshotter();
  // Runs until `stop`. Errors: kIo when the command endpoint cannot be bound, kUnavailable
  // when iceoryx never comes up.
  Result<void> run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::ram_snapshotter
