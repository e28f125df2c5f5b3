#include "shared/service_main.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

namespace glassbox::shared {
namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }
}  // namespace

int service_main(int argc, char** argv, const ServiceMainOptions& options, const ServiceRun& run) {
  CLI::App app{options.binary + ": " + options.description};
  std::string config_path, state_dir = default_state_dir();
  app.add_option("--config", config_path, "glassbox.toml (default: built-in defaults)");
  app.add_option("--state-dir", state_dir, "instance state dir")->capture_default_str();
  if (options.add_flags) options.add_flags(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto config = load_config(config_path);
  if (!config) {
    std::cerr << options.binary << ": " << config.error().message << "\n";
    return 2;
  }
  StatePaths paths(state_dir);
  if (options.before_run) {
    if (auto code = options.before_run(*config, paths)) return *code;
  }
  // Started by `glassbox up`: stop when `up` dies, even by SIGKILL, so no orphan keeps
  // running (and, for vm-supervisor, keeps a VM) that a new `up` would fight over.
  if (const char* up_pid = std::getenv("GLASSBOX_UP_PID")) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (std::to_string(::getppid()) != up_pid) return 0;  // `up` died before we got here
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  if (auto r = run(std::move(*config), std::move(paths), g_stop); !r) {
    std::cerr << options.binary << ": " << r.error().message << "\n";
    return r.error().code == Errc::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace glassbox::shared
