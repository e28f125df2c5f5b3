// Where an instance keeps its files and sockets, and where glassbox finds its own data.
//
// One running instance per state dir. Layout under the state dir (all created 0700):
//   up.lock, up.pid          held by `glassbox up` (flock) while it runs
//   up.sock                  `glassbox up`'s command endpoint (ZeroMQ REP, ipc://)
//   bus-in.sock, bus-out.sock event proxy: publishers connect to bus-in (XSUB),
//                            subscribers to bus-out (XPUB)
//   <service>.sock           each service's command endpoint, e.g. vm-supervisor.sock
//   vm/qmp.sock vm/vnc.sock vm/serial.log vm/qemu.pid vm/qemu.log
//   logs/<service>.log       each service's stdout/stderr
// Thread-safety: value types; functions are reentrant.
#pragma once

#include <string>

#include "shared/result.hpp"

namespace glassbox::shared {

// $XDG_STATE_HOME/glassbox, else $HOME/.local/state/glassbox, else /tmp/glassbox-UID.
std::string default_state_dir();

// Directory of the running executable (from /proc/self/exe), e.g. /src/build/bin.
std::string exe_dir();

// Data files installed beside the binaries: <exe dir>/../share/glassbox.
std::string share_dir();

class StatePaths {
 public:
  explicit StatePaths(std::string state_dir) : dir_(std::move(state_dir)) {}

  // Creates the state dir and its vm/ and logs/ subdirectories (mode 0700). Checks that the
  // longest socket path fits sun_path (107 bytes). Errors: kIo, kInvalidArgument.
  [[nodiscard]] Result<void> create() const;

  const std::string& dir() const { return dir_; }
  std::string lock_file() const { return dir_ + "/up.lock"; }
  std::string up_pid_file() const { return dir_ + "/up.pid"; }
  std::string up_endpoint() const { return "ipc://" + dir_ + "/up.sock"; }
  std::string bus_in_endpoint() const { return "ipc://" + dir_ + "/bus-in.sock"; }
  std::string bus_out_endpoint() const { return "ipc://" + dir_ + "/bus-out.sock"; }
  std::string service_endpoint(const std::string& service) const {
    return "ipc://" + dir_ + "/" + service + ".sock";
  }
  std::string vm_dir() const { return dir_ + "/vm"; }
  std::string qmp_socket() const { return vm_dir() + "/qmp.sock"; }
  std::string vnc_socket() const { return vm_dir() + "/vnc.sock"; }
  std::string serial_log() const { return vm_dir() + "/serial.log"; }
  std::string qemu_pid_file() const { return vm_dir() + "/qemu.pid"; }
  std::string qemu_log() const { return vm_dir() + "/qemu.log"; }
  std::string log_dir() const { return dir_ + "/logs"; }
  std::string service_log(const std::string& service) const {
    return log_dir() + "/" + service + ".log";
  }

 private:
  std::string dir_;
};

// Filesystem path of an "ipc://PATH" endpoint.
std::string ipc_path(const std::string& endpoint);

// The guest RAM file of an instance: /dev/shm/glassbox-<instance>.ram
std::string guest_ram_path(const std::string& instance);

// The TCG trace plugin's shared memory of an instance: /dev/shm/glassbox-<instance>.trace
// (layout: shared/trace_ring.hpp).
std::string trace_shm_path(const std::string& instance);

}  // namespace glassbox::shared
