// glassbox-ram-snapshotter: flags, config, run(). See README.md beside this file.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <iostream>

#include "services/ram_snapshotter/snapshotter.hpp"
#include "shared/config.hpp"
#include "shared/paths.hpp"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  using namespace glassbox;
  CLI::App app{"glassbox-ram-snapshotter: guest RAM as a live stream of keyframes and deltas"};
  std::string config_path, state_dir = shared::default_state_dir();
  app.add_option("--config", config_path, "glassbox.toml (default: built-in defaults)");
  app.add_option("--state-dir", state_dir, "instance state dir")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto config = shared::load_config(config_path);
  if (!config) {
    std::cerr << "glassbox-ram-snapshotter: " << config.error().message << "\n";
    return 2;
  }
  if (const char* up_pid = std::getenv("GLASSBOX_UP_PID")) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (std::to_string(::getppid()) != up_pid) return 0;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  ram_snapshotter::Snapshotter snapshotter(std::move(*config), shared::StatePaths(state_dir));
  if (auto r = snapshotter.run(g_stop); !r) {
    std::cerr << "glassbox-ram-snapshotter: " << r.error().message << "\n";
    return 1;
  }
  return 0;
}
