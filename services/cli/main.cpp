// glassbox: the command-line interface. Parses the invocation and dispatches; see
// cli_app.hpp for the grammar and README.md for the commands.
#include <iostream>

#include "services/cli/cli_app.hpp"
#include "services/cli/commands.hpp"
#include "services/cli/up.hpp"

int main(int argc, char** argv) {
  using namespace glassbox::cli;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string help;
  auto inv = parse_cli(args, help);
  if (!inv) {
    std::cerr << "glassbox: " << inv.error().message << "\n(run `glassbox --help`)\n";
    return 2;
  }
  try {
    if (inv->command == "help") {
      std::cout << help;
      return 0;
    }
    if (inv->command == "up") {
      auto r = run_up({inv->state_dir, inv->config_path, inv->for_s, inv->report_path});
      if (!r) {
        std::cerr << "glassbox up: " << r.error().message << "\n";
        return r.error().code == glassbox::Errc::kInvalidArgument ? 2 : 1;
      }
      return 0;
    }
    if (inv->command == "bus") {
      auto r = run_bus(inv->state_dir);
      if (!r) {
        std::cerr << "glassbox bus: " << r.error().message << "\n";
        return 1;
      }
      return 0;
    }
    if (inv->command == "down") return cmd_down(*inv);
    if (inv->command == "status") return cmd_status(*inv);
    if (inv->command == "console") return cmd_console(*inv);
    if (inv->command == "vm") return cmd_vm(*inv);
    if (inv->command == "ram") return cmd_ram(*inv);
    if (inv->command == "ps" || inv->command == "modules" || inv->command == "kernel" ||
        inv->command == "dmesg" || inv->command == "maps" || inv->command == "regions") {
      return cmd_introspect(*inv);
    }
    if (inv->command == "hot" || inv->command == "loops" || inv->command == "trace") {
      return cmd_trace(*inv);
    }
    if (inv->command == "synth") return cmd_synth(*inv);
    if (inv->command == "screenshot" || inv->command == "map") return cmd_compositor(*inv);
  } catch (const std::exception& e) {
    std::cerr << "glassbox: internal error: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "glassbox: unknown command\n";
  return 2;
}
