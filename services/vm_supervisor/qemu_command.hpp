// Builds QEMU's command line for an instance: guest RAM from a shared memory-backend-file
// under /dev/shm, QMP and VNC on unix sockets in the state dir, the serial console to a file,
// an absolute pointer (virtio-tablet) for mouse injection, and the guest from [vm]
// (kernel+initrd+append, a disk image, or an ISO).
//
// Thread-safety: pure function.
#pragma once

#include <string>
#include <vector>

#include "shared/config.hpp"
#include "shared/paths.hpp"

namespace glassbox::vm_supervisor {

struct QemuPaths {
  std::string ram_file;  // /dev/shm/glassbox-INSTANCE.ram
  std::string qmp_socket;
  std::string vnc_socket;
  std::string serial_log;
  std::string trace_shm;     // /dev/shm/glassbox-INSTANCE.trace (the plugin's rings)
  std::string trace_plugin;  // <exe dir>/../lib/libglassbox-trace.so
};

QemuPaths qemu_paths_for(const shared::Config& config, const shared::StatePaths& paths);

// argv[0] is config.vm.qemu. `accel` must be kKvm or kTcg (auto already resolved). With
// [trace] mode not "off", QEMU loads the trace plugin: `-plugin file=PLUGIN,shm=...,mode=...,
// ram=RAMFILE,ring_events=...,max_tbs=...,tb_ring_bytes=...` (commas in paths doubled, as
// QEMU's option syntax wants).
std::vector<std::string> build_qemu_argv(const shared::Config& config, shared::Accel accel,
                                         const QemuPaths& paths);

}  // namespace glassbox::vm_supervisor
