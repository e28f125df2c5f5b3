// glassbox-compositor: the VM's screen and its RAM, live, drawn with Vulkan (renderer.hpp).
//
// Inputs: screen frames from vm-supervisor over iceoryx ("glassbox", INSTANCE, "vm-screen",
// schemas/frame.fbs; every header verified, sizes checked against the chunk), guest RAM
// through a RamMirror of ram-snapshotter's stream (only the pages a cycle changed are
// uploaded), the highlighted process's gpa runs from semantic-db (GetRegions, every 2 s), and
// vm-supervisor's status (VM state; its absence marks the screen stale, every 1 s).
// Outputs: frames at up to [compositor] fps, into a window when one is open ([compositor]
// window = auto|on|off; keys and mouse in the window go to the guest through vm-supervisor's
// InputBatch), screenshots and RAM-map geometry on its command endpoint (STATE/compositor.sock,
// schemas/compositor.fbs: GetStatus, Screenshot, Locate, GpaAt, SetView), metrics at
// [metrics] base_port + 7.
// Faults: a publisher gone leaves its last image with the HUD saying "stale"; a guest
// resolution change recreates the screen pane; a RAM layout change recreates the renderer.
// Thread-safety: run() owns everything on the calling thread (GLFW needs the main thread).
#pragma once

#include <atomic>
#include <memory>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace glassbox::compositor {

class Service {
 public:
  Service(shared::Config config, shared::StatePaths paths);
  ~Service();
  // Runs until `stop`. Errors: no Vulkan device (kUnavailable naming the package to install),
  // [compositor] window = on without a display, the command endpoint or metrics port not
  // bindable, another compositor running for the state dir.
  Result<void> run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::compositor
