// Integration-test harness: runs the real `glassbox` binaries against a fresh state dir and
// the real reference guest under TCG, with real RouDi, ZeroMQ and metrics endpoints.
// Thread-safety: single-threaded test code.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace glassbox::itest {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Directory of the test binary's sibling glassbox binaries (build/bin).
std::string bin_dir();

// Runs build/bin/glassbox with `args`, waits up to `timeout`, returns exit code and output.
CommandResult run_glassbox(const std::vector<std::string>& args,
                           std::chrono::seconds timeout = std::chrono::seconds(60));

// Polls `predicate` every 100 ms until it is true or `timeout` passes.
bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout);

// Reads a whole file ("" when missing).
std::string read_file(const std::string& path);

// HTTP GET of a http://127.0.0.1:PORT/path URL (the metrics endpoint). "" on failure.
std::string http_get(const std::string& url);

// One running instance: `glassbox up` on a fresh state dir, with a unique instance name.
class Instance {
 public:
  // `extra_vm_toml` is appended to the generated [vm] table (accel = "tcg" is set),
  // `extra_up_keys` to its [up] table (e.g. services = [...]), and `extra_tables` after
  // everything (e.g. "[trace]\nmode = \"stream\"").
  explicit Instance(const std::string& extra_vm_toml = "", const std::string& extra_up_keys = "",
                    const std::string& extra_tables = "");
  ~Instance();  // `glassbox down`, then SIGKILL of anything left (so tests never leak)

  // Spawns `glassbox up` (plus `extra_up_args`, e.g. {"--for", "2", "--report", FILE}).
  bool start(const std::vector<std::string>& extra_up_args = {});
  bool wait_ready(std::chrono::seconds timeout);  // status says vm.ready
  nlohmann::json status();                        // `glassbox status --json` (null on error)
  CommandResult cli(std::vector<std::string> args,
                    std::chrono::seconds timeout = std::chrono::seconds(60));
  bool down();  // `glassbox down`; true when `up` exited

  const std::string& state_dir() const { return state_dir_; }
  const std::string& name() const { return name_; }
  const std::string& config_path() const { return config_path_; }
  pid_t up_pid() const { return up_pid_; }
  std::string serial_log() const { return state_dir_ + "/vm/serial.log"; }
  std::string up_log() const { return state_dir_ + "/up.out"; }

 private:
  std::string state_dir_;
  std::string name_;
  std::string config_path_;
  pid_t up_pid_ = 0;
};

}  // namespace glassbox::itest
