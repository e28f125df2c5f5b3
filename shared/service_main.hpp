// The main() every glassbox service shares: flags (--config, --state-dir, plus the
// service's own), config loading, the tie to `glassbox up` (PR_SET_PDEATHSIG when started by
// it, so no orphan outlives `up`), SIGINT/SIGTERM as a clean stop, and exit codes
// (0 clean stop, 1 runtime error, 2 usage or config error, each with one line on stderr).
// Thread-safety: call once, from main().
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "shared/config.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"

namespace CLI {
class App;
}

namespace glassbox::shared {

struct ServiceMainOptions {
  std::string binary;       // "glassbox-vm-supervisor": names the service in messages
  std::string description;  // one line for --help
  // Adds the service's own flags (optional).
  std::function<void(CLI::App&)> add_flags;
  // Runs after the config is loaded, before signals are set up; returning an exit code ends
  // the program there (e.g. a --print-... flag). Optional.
  std::function<std::optional<int>(const Config&, const StatePaths&)> before_run;
};

// The service's body: runs until `stop` becomes true.
using ServiceRun = std::function<Result<void>(Config, StatePaths, const std::atomic<bool>& stop)>;

int service_main(int argc, char** argv, const ServiceMainOptions& options, const ServiceRun& run);

}  // namespace glassbox::shared
