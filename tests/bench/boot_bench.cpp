// glassbox-bench-boot: boot-to-ready of `glassbox up` against bare qemu-system-x86_64 with
// the same arguments, on the reference guest, in one run.
//
// Both sides are timed the same way: from spawning the process to the moment the guest's
// ready marker appears in the serial log file (polled every 2 ms). The bare side runs the
// exact QEMU command line vm-supervisor builds (`glassbox-vm-supervisor
// --print-qemu-cmdline`), so the difference is what glassbox adds: RouDi, the event proxy,
// the supervisor, QMP and VNC clients. Runs are interleaved (bare, glassbox, bare, ...)
// so machine noise hits both; the ratio is median(glassbox) / median(bare). Budget <= 1.05.
//
// Usage: glassbox-bench-boot [--runs N] [--json FILE]
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "shared/paths.hpp"
#include "shared/process.hpp"
#include "tests/bench/bench_util.hpp"

namespace {
using namespace glassbox;
using bench::Clock;
using bench::median;
using bench::read_file;
using bench::wait_marker;
}  // namespace

int main(int argc, char** argv) {
  int runs = 3;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs") && i + 1 < argc)
      runs = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--runs N] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  const std::string bin = shared::exe_dir();
  char tmpl[] = "/tmp/gb-bench-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string instance = "bench" + std::to_string(::getpid());
  const std::string config = dir + "/glassbox.toml";
  std::ofstream(config) << "[instance]\nname = \"" << instance << "\"\n[vm]\naccel = \"tcg\"\n";
  const std::string marker = "GLASSBOX-GUEST-READY";

  // The exact QEMU command line the supervisor runs, for a separate state dir.
  const std::string bare_state = dir + "/bare";
  shared::StatePaths bare_paths(bare_state);
  if (auto r = bare_paths.create(); !r) return 1;
  const std::string cmdfile = dir + "/cmdline";
  auto p = shared::spawn({bin + "/glassbox-vm-supervisor", "--config", config, "--state-dir",
                          bare_state, "--print-qemu-cmdline"},
                         {.new_session = false, .output_path = cmdfile});
  if (!p || !shared::reap_for(*p, std::chrono::seconds(10))) return 1;
  std::vector<std::string> qemu_argv;
  {
    std::istringstream in(read_file(cmdfile));
    for (std::string line; std::getline(in, line);) qemu_argv.push_back(line);
  }

  std::vector<double> bare_s, glassbox_s;
  for (int i = 0; i < runs; ++i) {
    // Bare QEMU.
    ::unlink(bare_paths.serial_log().c_str());
    auto t0 = Clock::now();
    auto q = shared::spawn(qemu_argv, {.new_session = true, .output_path = dir + "/bare-qemu.log"});
    if (!q) {
      std::fprintf(stderr, "bare qemu: %s\n", q.error().message.c_str());
      return 1;
    }
    const double b = wait_marker(bare_paths.serial_log(), marker, t0, std::chrono::seconds(180));
    shared::terminate_group(*q, std::chrono::seconds(2));
    (void)shared::reap_for(*q, std::chrono::seconds(2));
    ::unlink(shared::guest_ram_path(instance).c_str());
    if (b < 0) {
      std::fprintf(stderr, "bare qemu never printed the marker\n");
      return 1;
    }
    bare_s.push_back(b);

    // glassbox up (RouDi, proxy, supervisor, QMP, VNC, serial tail).
    const std::string state = dir + "/gb" + std::to_string(i);
    t0 = Clock::now();
    auto up = shared::spawn({bin + "/glassbox", "up", "--state-dir", state, "--config", config},
                            {.new_session = true, .output_path = dir + "/up.log"});
    if (!up) return 1;
    const double g = wait_marker(state + "/vm/serial.log", marker, t0, std::chrono::seconds(180));
    auto down = shared::spawn({bin + "/glassbox", "down", "--state-dir", state},
                              {.new_session = false, .output_path = dir + "/down.log"});
    if (down) (void)shared::reap_for(*down, std::chrono::seconds(60));
    if (!shared::reap_for(*up, std::chrono::seconds(30)))
      shared::terminate_group(*up, std::chrono::seconds(2));
    if (g < 0) {
      std::fprintf(stderr, "glassbox up never reached the marker (see %s/up.log)\n", dir.c_str());
      return 1;
    }
    glassbox_s.push_back(g);
    std::printf("run %d: bare %.3f s, glassbox %.3f s\n", i + 1, b, g);
    std::fflush(stdout);
  }
  const double mb = median(bare_s), mg = median(glassbox_s);
  const double ratio = mg / mb;
  std::printf(
      "boot-to-ready (median of %d): bare qemu %.3f s, glassbox up %.3f s, ratio %.3f "
      "(budget <= 1.05: %s)\n",
      runs, mb, mg, ratio, ratio <= 1.05 ? "met" : "MISSED");
  if (!json_path.empty()) {
    nlohmann::json j = {{"runs", runs},
                        {"bare_qemu_s", bare_s},
                        {"glassbox_up_s", glassbox_s},
                        {"median_bare_qemu_s", mb},
                        {"median_glassbox_up_s", mg},
                        {"ratio", ratio},
                        {"budget", 1.05}};
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
}
