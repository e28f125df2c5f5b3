// Child processes, pid files and the instance lock: what `glassbox up` and vm-supervisor
// use to start, watch and stop the processes they own.
//
// Thread-safety: functions are reentrant; FileLock is move-only and owned by one thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::shared {

struct SpawnOptions {
  bool new_session = true;  // setsid(): own session and process group (pgid == pid)
  std::string output_path;  // stdout+stderr appended here; empty: inherit
  std::string stdin_path = "/dev/null";
  std::vector<std::string> env;  // extra "NAME=value" entries added to the environment
};

// fork + execvp of argv[0] with argv. Every fd but 0..2 is closed in the child.
// Errors: kNotFound "qemu-system-x86_64: not found in PATH (install ...)" when exec fails
// with ENOENT (reported through a close-on-exec pipe, so the caller learns it at once);
// kIo for other failures.
[[nodiscard]] Result<pid_t> spawn(const std::vector<std::string>& argv,
                                  const SpawnOptions& options);

// Non-blocking reap of a child. nullopt while it runs; else the wait status.
std::optional<int> try_reap(pid_t pid);

// Waits up to `timeout` for child `pid` to exit (polling every 10 ms); its wait status.
std::optional<int> reap_for(pid_t pid, std::chrono::milliseconds timeout);

// "exited with status 1" / "killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

// True when a process with this pid exists (kill(pid, 0)) and is not a zombie.
bool process_alive(pid_t pid);

// SIGTERM to the process group `pgid`, wait up to `grace`, then SIGKILL. Returns true when
// no process of the group is left. Works for non-children (polls /proc).
bool terminate_group(pid_t pgid, std::chrono::milliseconds grace);

// Writes "PID\n" to path atomically (tmp + rename). Errors: kIo.
[[nodiscard]] Result<void> write_pid_file(const std::string& path, pid_t pid);
// Reads a pid file. Errors: kNotFound, kProtocol when it does not hold a positive integer.
[[nodiscard]] Result<pid_t> read_pid_file(const std::string& path);

// The first NUL-separated word of /proc/PID/cmdline and the whole line joined by spaces.
std::string process_cmdline(pid_t pid);

// Finds a process whose /proc/PID/comm equals `comm` (e.g. "iox-roudi"); 0 if none.
pid_t find_process_by_comm(const std::string& comm);

// An exclusive flock on a file, held until destruction.
class FileLock {
 public:
  // Errors: kAlreadyExists "another glassbox instance (pid N) owns STATE_DIR" when held.
  static Result<FileLock> acquire(const std::string& path, const std::string& what);
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock& operator=(FileLock&&) = delete;
  FileLock(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Looks up `name` in PATH (or checks it when it contains '/'); empty when not executable.
std::string find_executable(const std::string& name);

}  // namespace glassbox::shared
