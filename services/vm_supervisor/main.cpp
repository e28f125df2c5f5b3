// glassbox-vm-supervisor: flags, config, run(). See README.md beside this file.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>

#include "services/vm_supervisor/kvm_probe.hpp"
#include "services/vm_supervisor/qemu_command.hpp"
#include "services/vm_supervisor/supervisor.hpp"
#include "shared/config.hpp"
#include "shared/paths.hpp"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  using namespace glassbox;
  CLI::App app{"glassbox-vm-supervisor: runs one QEMU VM, its QMP, VNC and serial console"};
  std::string config_path, state_dir = shared::default_state_dir();
  bool print_cmdline = false;
  app.add_option("--config", config_path, "glassbox.toml (default: built-in defaults)");
  app.add_option("--state-dir", state_dir, "instance state dir")->capture_default_str();
  app.add_flag("--print-qemu-cmdline", print_cmdline, "print the QEMU command line (TCG) and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto config = shared::load_config(config_path);
  if (!config) {
    std::cerr << "glassbox-vm-supervisor: " << config.error().message << "\n";
    return 2;
  }
  shared::StatePaths paths(state_dir);
  if (print_cmdline) {
    for (const auto& a : vm_supervisor::build_qemu_argv(
             *config, shared::Accel::kTcg, vm_supervisor::qemu_paths_for(*config, paths))) {
      std::cout << a << "\n";
    }
    return 0;
  }
  // Started by `glassbox up`: stop (and stop QEMU) when `up` dies, even by SIGKILL, so no
  // orphan keeps a VM running that a new `up` would fight over.
  if (const char* up_pid = std::getenv("GLASSBOX_UP_PID")) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (std::to_string(::getppid()) != up_pid) return 0;  // `up` died before we got here
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  vm_supervisor::Supervisor supervisor(std::move(*config), paths);
  if (auto r = supervisor.run(g_stop); !r) {
    std::cerr << "glassbox-vm-supervisor: " << r.error().message << "\n";
    return 1;
  }
  return 0;
}
