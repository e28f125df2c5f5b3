#include "shared/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace glassbox::shared {

Result<pid_t> spawn(const std::vector<std::string>& argv, const SpawnOptions& o) {
  if (argv.empty()) return fail(Errc::kInvalidArgument, "spawn: empty argv");
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  // The child's environment is built before fork (no allocation after it).
  std::vector<std::string> env_storage;
  std::vector<char*> cenv;
  if (!o.env.empty()) {
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    env_storage.insert(env_storage.end(), o.env.begin(), o.env.end());
    for (auto& e : env_storage) cenv.push_back(e.data());
    cenv.push_back(nullptr);
  }

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return fail_errno("pipe2");
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return fail_errno("fork");
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    if (o.new_session) ::setsid();
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int in = ::open(o.stdin_path.c_str(), O_RDONLY);
    if (in >= 0) {
      ::dup2(in, 0);
    }
    if (!o.output_path.empty()) {
      int out = ::open(o.output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
    }
    const int max_fd = static_cast<int>(::sysconf(_SC_OPEN_MAX));
    for (int fd = 3; fd < max_fd && fd < 65536; ++fd) {
      if (fd != pipefd[1]) ::close(fd);
    }
    if (!cenv.empty()) {
      ::execvpe(cargv[0], cargv.data(), cenv.data());
    } else {
      ::execvp(cargv[0], cargv.data());
    }
    int e = errno;
    (void)!::write(pipefd[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(pipefd[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(pipefd[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    ::waitpid(pid, nullptr, 0);
    if (child_errno == ENOENT) {
      return fail(Errc::kNotFound, argv[0] + ": not found in PATH");
    }
    return fail(Errc::kIo, "exec " + argv[0] + ": " + std::strerror(child_errno));
  }
  return pid;
}

std::optional<int> try_reap(pid_t pid) {
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) return status;
  if (r < 0 && errno == ECHILD) return 0;  // not our child any more / already reaped
  return std::nullopt;
}

std::optional<int> reap_for(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto s = try_reap(pid)) return s;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

static char proc_state(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return 0;
  auto rp = line.rfind(')');
  if (rp == std::string::npos || rp + 2 >= line.size()) return 0;
  return line[rp + 2];
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  const char st = proc_state(pid);
  return st != 0 && st != 'Z' && st != 'X';
}

static bool group_alive(pid_t pgid) {
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return ::kill(-pgid, 0) == 0;
  bool alive = false;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    if (::getpgid(static_cast<pid_t>(pid)) == pgid && process_alive(static_cast<pid_t>(pid))) {
      alive = true;
      break;
    }
  }
  ::closedir(d);
  return alive;
}

bool terminate_group(pid_t pgid, std::chrono::milliseconds grace) {
  if (pgid <= 1) return false;
  ::kill(-pgid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    (void)try_reap(pgid);
    if (!group_alive(pgid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pgid, SIGKILL);
  for (int i = 0; i < 100; ++i) {
    (void)try_reap(pgid);
    if (!group_alive(pgid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

Result<void> write_pid_file(const std::string& path, pid_t pid) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!f) return fail_errno("write " + tmp);
    f << pid << "\n";
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail_errno("rename " + tmp);
  return {};
}

Result<pid_t> read_pid_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return fail(Errc::kNotFound, "no pid file " + path);
  long v = 0;
  if (!(f >> v) || v <= 0 || v > 4194304) {
    return fail(Errc::kProtocol, "pid file " + path + " does not hold a pid");
  }
  return static_cast<pid_t>(v);
}

std::string process_cmdline(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (char& c : s) {
    if (c == '\0') c = ' ';
  }
  if (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

pid_t find_process_by_comm(const std::string& comm) {
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return 0;
  pid_t found = 0;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/comm");
    std::string c;
    if (std::getline(f, c) && c == comm && process_alive(static_cast<pid_t>(pid))) {
      found = static_cast<pid_t>(pid);
      break;
    }
  }
  ::closedir(d);
  return found;
}

Result<FileLock> FileLock::acquire(const std::string& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail_errno("open " + path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return fail(Errc::kAlreadyExists, what);
  }
  return FileLock(fd);
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return ::access(name.c_str(), X_OK) == 0 ? name : "";
  }
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

}  // namespace glassbox::shared
