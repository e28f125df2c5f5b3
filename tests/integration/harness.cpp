#include "tests/integration/harness.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "shared/paths.hpp"
#include "shared/process.hpp"

namespace glassbox::itest {

std::string bin_dir() { return shared::exe_dir(); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

CommandResult run_glassbox(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  static std::atomic<int> seq{0};
  const std::string out =
      "/tmp/gb-itest-cli-" + std::to_string(::getpid()) + "-" + std::to_string(seq++) + ".out";
  std::vector<std::string> argv = {bin_dir() + "/glassbox"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r;
  auto pid = shared::spawn(argv, {.new_session = false, .output_path = out});
  if (!pid) {
    r.output = pid.error().message;
    return r;
  }
  auto st = shared::reap_for(*pid, timeout);
  if (!st) {
    ::kill(*pid, SIGKILL);
    (void)shared::reap_for(*pid, std::chrono::seconds(2));
    r.output = "timed out";
  } else {
    r.exit_code = WIFEXITED(*st) ? WEXITSTATUS(*st) : 128 + WTERMSIG(*st);
    r.output = read_file(out);
  }
  ::unlink(out.c_str());
  return r;
}

bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (predicate()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return predicate();
}

std::string http_get(const std::string& url) {
  // http://HOST:PORT/PATH
  const std::string prefix = "http://";
  if (url.rfind(prefix, 0) != 0) return "";
  const auto host_end = url.find(':', prefix.size());
  const auto port_end = url.find('/', host_end);
  if (host_end == std::string::npos || port_end == std::string::npos) return "";
  const std::string host = url.substr(prefix.size(), host_end - prefix.size());
  const int port = std::atoi(url.substr(host_end + 1, port_end - host_end - 1).c_str());
  const std::string path = url.substr(port_end);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + host + "\r\n\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

Instance::Instance(const std::string& extra_vm_toml, const std::string& extra_up_keys,
                   const std::string& extra_tables) {
  char tmpl[] = "/tmp/gb-it-XXXXXX";
  state_dir_ = ::mkdtemp(tmpl);
  static std::atomic<int> seq{0};
  name_ = "it" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
  config_path_ = state_dir_ + "/glassbox.toml";
  std::ofstream cfg(config_path_);
  cfg << "[instance]\nname = \"" << name_ << "\"\n[vm]\naccel = \"tcg\"\n"
      << "restart_backoff_ms = 200\n"
      << extra_vm_toml << "\n"
      << "[up]\nrestart_backoff_ms = 200\n"
      << extra_up_keys << "\n"
      << extra_tables << "\n";
}

Instance::~Instance() {
  if (up_pid_ > 0 && shared::process_alive(up_pid_)) {
    down();
    if (shared::process_alive(up_pid_)) shared::terminate_group(up_pid_, std::chrono::seconds(5));
  }
  // Nothing of this instance may survive the test, whatever happened.
  if (auto q = shared::read_pid_file(state_dir_ + "/vm/qemu.pid")) {
    if (shared::process_cmdline(*q).find(shared::guest_ram_path(name_)) != std::string::npos) {
      shared::terminate_group(*q, std::chrono::seconds(2));
    }
  }
  ::unlink(shared::guest_ram_path(name_).c_str());
  ::unlink(shared::trace_shm_path(name_).c_str());
}

bool Instance::start(const std::vector<std::string>& extra_up_args) {
  std::vector<std::string> argv = {
      bin_dir() + "/glassbox", "up", "--state-dir", state_dir_, "--config", config_path_};
  argv.insert(argv.end(), extra_up_args.begin(), extra_up_args.end());
  auto pid = shared::spawn(argv, {.new_session = true, .output_path = up_log()});
  if (!pid) return false;
  up_pid_ = *pid;
  return true;
}

nlohmann::json Instance::status() {
  auto r = cli({"status", "--json"}, std::chrono::seconds(15));
  if (r.exit_code != 0) return nullptr;
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  return j.is_discarded() ? nlohmann::json(nullptr) : j;
}

bool Instance::wait_ready(std::chrono::seconds timeout) {
  bool up_gone = false;
  const bool ready = wait_until(
      [&] {
        if (up_pid_ > 0 && !shared::process_alive(up_pid_)) {
          up_gone = true;  // `glassbox up` exited (a config error, say): stop waiting
          return true;
        }
        auto s = status();
        return s.is_object() && s["vm"].value("ready", false);
      },
      timeout);
  return ready && !up_gone;
}

CommandResult Instance::cli(std::vector<std::string> args, std::chrono::seconds timeout) {
  args.insert(args.end(), {"--state-dir", state_dir_});
  return run_glassbox(args, timeout);
}

bool Instance::down() {
  auto r = cli({"down"}, std::chrono::seconds(60));
  (void)r;
  auto st = shared::reap_for(up_pid_, std::chrono::seconds(30));
  return st.has_value();
}

}  // namespace glassbox::itest
