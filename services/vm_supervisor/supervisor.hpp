// vm-supervisor: owns one QEMU process and everything that talks to it.
//
// Starts qemu-system-x86_64 (own session and process group) with guest RAM in a shared
// memory-backend-file, QMP and VNC on unix sockets and the serial console in a file, all in
// the state dir; connects QMP (commands, async events) and VNC (screen frames, published over
// iceoryx as ("glassbox", INSTANCE, "vm-screen") when the screen changed, at most
// [screen] max_fps per second); tails the serial log and publishes each line as a
// "vm.serial" event; marks the VM ready when [vm] ready_marker appears; serves its command
// endpoint (glassbox.schema.vm.VmRequest, verified) at STATE/vm-supervisor.sock; and, when
// QEMU dies unexpectedly and [vm] restart is on, boots it again with exponential backoff.
//
// Thread-safety: run() owns everything on the calling thread, except the VNC thread (inside
// VncScreen), which only touches the frame publisher.
#pragma once

#include <atomic>
#include <memory>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace glassbox::vm_supervisor {

class Supervisor {
 public:
  Supervisor(shared::Config config, shared::StatePaths paths);
  ~Supervisor();

  // Runs until `stop` becomes true (signal handler) or a fatal error: QEMU missing, the
  // command endpoint cannot be bound. On return QEMU has been stopped (QMP quit, then
  // SIGTERM/SIGKILL to its process group).
  // Errors: kNotFound naming the package to install when QEMU is missing; kIo on bind errors.
  Result<void> run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::vm_supervisor
