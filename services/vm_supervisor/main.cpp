// glassbox-vm-supervisor: flags, config, run(). See README.md beside this file.
#include <CLI/CLI.hpp>
#include <iostream>

#include "services/vm_supervisor/qemu_command.hpp"
#include "services/vm_supervisor/supervisor.hpp"
#include "shared/service_main.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  bool print_cmdline = false;
  shared::ServiceMainOptions o;
  o.binary = "glassbox-vm-supervisor";
  o.description = "runs one QEMU VM, its QMP, VNC and serial console";
  o.add_flags = [&](CLI::App& app) {
    app.add_flag("--print-qemu-cmdline", print_cmdline,
                 "print the QEMU command line (TCG) and exit");
  };
  o.before_run = [&](const shared::Config& c, const shared::StatePaths& p) -> std::optional<int> {
    if (!print_cmdline) return std::nullopt;
    for (const auto& a : vm_supervisor::build_qemu_argv(c, shared::Accel::kTcg,
                                                        vm_supervisor::qemu_paths_for(c, p))) {
      std::cout << a << "\n";
    }
    return 0;
  };
  return shared::service_main(
      argc, argv, o, [](shared::Config c, shared::StatePaths p, const auto& stop) {
        return vm_supervisor::Supervisor(std::move(c), std::move(p)).run(stop);
      });
}
