#include "shared/paths.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace glassbox::shared {

std::string default_state_dir() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x != nullptr && *x == '/') {
    return std::string(x) + "/glassbox";
  }
  if (const char* h = std::getenv("HOME"); h != nullptr && *h == '/') {
    return std::string(h) + "/.local/state/glassbox";
  }
  return "/tmp/glassbox-" + std::to_string(::getuid());
}

std::string exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

std::string share_dir() { return exe_dir() + "/../share/glassbox"; }

static Result<void> mkdir_p(const std::string& path) {
  std::string cur;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty() && ::mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) {
      return fail_errno("mkdir " + cur);
    }
    i = j + 1;
  }
  return {};
}

Result<void> StatePaths::create() const {
  if (dir_.empty() || dir_[0] != '/') {
    return fail(Errc::kInvalidArgument, "state dir must be an absolute path, got '" + dir_ + "'");
  }
  constexpr size_t kSunPathMax = 107;
  const std::string longest = dir_ + "/vm-supervisor.sock";
  if (longest.size() > kSunPathMax || vnc_socket().size() > kSunPathMax) {
    return fail(Errc::kInvalidArgument,
                "state dir " + dir_ + " is too long for unix sockets (limit " +
                    std::to_string(kSunPathMax) + " bytes with the socket name)");
  }
  GB_TRY(mkdir_p(dir_));
  GB_TRY(mkdir_p(vm_dir()));
  GB_TRY(mkdir_p(log_dir()));
  return {};
}

std::string ipc_path(const std::string& endpoint) {
  constexpr std::string_view kPrefix = "ipc://";
  return endpoint.starts_with(kPrefix) ? endpoint.substr(kPrefix.size()) : endpoint;
}

std::string guest_ram_path(const std::string& instance) {
  return "/dev/shm/glassbox-" + instance + ".ram";
}

std::string trace_shm_path(const std::string& instance) {
  return "/dev/shm/glassbox-" + instance + ".trace";
}

}  // namespace glassbox::shared
