#include "services/cli/commands.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "services/cli/client.hpp"
#include "shared/process.hpp"

namespace glassbox::cli {
namespace {

namespace fb = glassbox::schema;
using std::chrono::milliseconds;

int report_error(const Error& e) {
  std::cerr << "glassbox: " << e.message << "\n";
  return 1;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

int cmd_status(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  auto orch = orchestrator_status(paths);
  bool without_up = false;
  if (!orch && orch.error().code == Errc::kUnavailable) {
    // No `glassbox up` (services run by docker-compose or systemd, or alone): ask every
    // service's own endpoint; the ones that answer are the instance.
    OrchestratorStatus direct;
    for (const char* name : {"vm-supervisor", "ram-snapshotter", "semantic-db", "trace-consumer",
                             "pattern-miner", "smt-synthesizer", "compositor"}) {
      if (auto q = query_service_status(paths, name, milliseconds(1000))) {
        q->service.state = fb::health::ServiceState::Up;
        direct.services.push_back(q->service);
      }
    }
    if (!direct.services.empty()) {
      orch = std::move(direct);
      without_up = true;
    }
  }
  if (!orch) return report_error(orch.error());
  nlohmann::json out;
  out["vm"] = {{"state", "stopped"},
               {"ready", false},
               {"accel", nullptr},
               {"qemu_pid", 0},
               {"boot_to_ready_s", nullptr}};
  nlohmann::json services = nlohmann::json::array();
  for (const auto& s : orch->services) {
    nlohmann::json svc = {{"name", s.service},
                          {"pid", s.pid},
                          {"state", lower(fb::health::EnumNameServiceState(s.state))},
                          {"restarts", s.restarts},
                          {"metrics_url", s.metrics_url}};
    if (s.pid > 0) {
      auto q = query_service_status(paths, s.service, milliseconds(3000));
      if (q) {
        if (!q->service.metrics_url.empty()) svc["metrics_url"] = q->service.metrics_url;
        for (auto& [section, value] : q->summary.items()) out[section] = value;
      } else {
        svc["error"] = q.error().message;
      }
    }
    services.push_back(svc);
  }
  out["services"] = services;
  out["up"] = without_up ? nlohmann::json{{"running", false}}
                         : nlohmann::json{{"running", true}, {"metrics_url", orch->metrics_url}};
  if (out["vm"]["boot_to_ready_s"].is_number() && out["vm"]["boot_to_ready_s"].get<double>() < 0) {
    out["vm"]["boot_to_ready_s"] = nullptr;
  }
  if (inv.json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  const auto& vm = out["vm"];
  std::cout << fmt::format("instance state dir {}\n", paths.dir());
  std::cout << fmt::format(
      "vm: {}{}  accel {}  qemu pid {}  boot-to-ready {}  boots {}  restarts {}\n",
      vm.value("state", "?"), vm.value("ready", false) ? " (ready)" : "",
      vm["accel"].is_string() ? vm["accel"].get<std::string>() : "-", vm.value("qemu_pid", 0),
      vm["boot_to_ready_s"].is_number()
          ? fmt::format("{:.2f} s", vm["boot_to_ready_s"].get<double>())
          : "-",
      vm.value("boots", 0), vm.value("restarts", 0));
  if (vm.contains("accel_reason"))
    std::cout << "    " << vm["accel_reason"].get<std::string>() << "\n";
  if (out.contains("ram") && out["ram"].is_object()) {
    const auto& ram = out["ram"];
    std::cout << fmt::format("ram: {}  cycle {:.2f} ms  dirty {:.0f} pages/s  subscribers {}{}\n",
                             ram.value("method", "?"), ram.value("cycle_ms", 0.0),
                             ram.value("dirty_pages_per_s", 0.0), ram.value("subscribers", 0),
                             ram.contains("unavailable")
                                 ? "  (" + ram["unavailable"].get<std::string>() + ")"
                                 : std::string());
  }
  if (out.contains("semantic") && out["semantic"].is_object()) {
    const auto& sem = out["semantic"];
    if (sem.contains("kernel") && sem["kernel"].is_object()) {
      const auto& k = sem["kernel"];
      std::cout << fmt::format(
          "guest: Linux {}  slide {}  {} processes  {} modules  walk {:.1f} ms  births {} exits "
          "{}\n",
          k.value("release", "?"), k.value("kaslr_slide", "?"), sem.value("processes", 0),
          sem.value("modules", 0), sem.value("last_walk_ms", 0.0), sem.value("births", 0),
          sem.value("exits", 0));
    } else {
      std::cout << fmt::format("guest: no kernel profile yet ({})\n", sem.value("waiting", "?"));
    }
  }
  if (out.contains("compositor") && out["compositor"].is_object()) {
    const auto& c = out["compositor"];
    std::cout << fmt::format("compositor: {:.1f} fps  frame {:.2f} ms  {} view  {}{}  on {}\n",
                             c.value("fps", 0.0), c.value("frame_ms", 0.0), c.value("mode", "?"),
                             c.value("window", false) ? "window" : "headless",
                             c.value("highlight", "").empty()
                                 ? std::string()
                                 : "  highlight " + c["highlight"].get<std::string>(),
                             c.value("device", "?"));
  }
  std::cout << fmt::format("{:<18} {:>8} {:<11} {:>8}  {}\n", "SERVICE", "PID", "STATE", "RESTARTS",
                           "METRICS");
  for (const auto& s : out["services"]) {
    std::cout << fmt::format("{:<18} {:>8} {:<11} {:>8}  {}\n", s["name"].get<std::string>(),
                             s["pid"].get<int>(), s["state"].get<std::string>(),
                             s["restarts"].get<uint32_t>(), s["metrics_url"].get<std::string>());
  }
  return 0;
}

int cmd_down(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  auto pid = shared::read_pid_file(paths.up_pid_file());
  if (auto r = orchestrator_shutdown(paths); !r) return report_error(r.error());
  // Wait for `up` to finish stopping everything (it removes its pid file last).
  for (int i = 0; i < 600; ++i) {
    if (!pid || !shared::process_alive(*pid)) {
      std::cout << "glassbox: instance at " << paths.dir() << " stopped\n";
      return 0;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  std::cerr << "glassbox: `glassbox up` (pid " << *pid << ") did not stop within 30 s\n";
  return 1;
}

int cmd_console(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  const std::string log = paths.serial_log();
  int fd = -1;
  ino_t inode = 0;
  auto open_log = [&]() {
    fd = ::open(log.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd >= 0 && ::fstat(fd, &st) == 0) inode = st.st_ino;
  };
  open_log();
  if (fd < 0 && !inv.follow) {
    std::cerr << "glassbox: no serial log at " << log << " (is the instance up?)\n";
    return 1;
  }
  char buf[65536];
  for (;;) {
    bool got = false;
    if (fd >= 0) {
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        std::fwrite(buf, 1, static_cast<size_t>(n), stdout);
        got = true;
      }
      std::fflush(stdout);
    }
    if (!inv.follow) break;
    if (!got) {
      // Reopen when the VM rebooted (the supervisor starts a fresh serial.log per boot).
      struct stat st {};
      if (::stat(log.c_str(), &st) == 0 && st.st_ino != inode) {
        if (fd >= 0) ::close(fd);
        open_log();
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  if (fd >= 0) ::close(fd);
  return 0;
}

int cmd_vm(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  const std::string& a = inv.vm_action;
  std::function<void(flatbuffers::FlatBufferBuilder&)> build;
  auto simple = [&](fb::vm::Command type, auto make) {
    build = [type, make](flatbuffers::FlatBufferBuilder& fbb) {
      auto body = make(fbb);
      fb::vm::FinishVmRequestBuffer(fbb, fb::vm::CreateVmRequest(fbb, type, body.Union()));
    };
  };
  milliseconds timeout(10000);
  if (a == "pause")
    simple(fb::vm::Command::Pause, [](auto& f) { return fb::vm::CreatePause(f); });
  else if (a == "resume")
    simple(fb::vm::Command::Resume, [](auto& f) { return fb::vm::CreateResume(f); });
  else if (a == "reset")
    simple(fb::vm::Command::Reset, [](auto& f) { return fb::vm::CreateReset(f); });
  else if (a == "powerdown")
    simple(fb::vm::Command::Powerdown, [](auto& f) { return fb::vm::CreatePowerdown(f); });
  else if (a == "kill")
    simple(fb::vm::Command::Kill, [](auto& f) { return fb::vm::CreateKill(f); });
  else if (a == "start") {
    simple(fb::vm::Command::Start, [](auto& f) { return fb::vm::CreateStart(f); });
    timeout = milliseconds(30000);
  } else if (a == "key") {
    std::vector<std::string> qcodes;
    size_t start = 0;
    for (;;) {
      size_t dash = inv.key_combo.find('-', start);
      qcodes.push_back(inv.key_combo.substr(
          start, dash == std::string::npos ? std::string::npos : dash - start));
      if (dash == std::string::npos) break;
      start = dash + 1;
    }
    simple(fb::vm::Command::KeyCombo, [qcodes](auto& f) {
      return fb::vm::CreateKeyCombo(f, f.CreateVectorOfStrings(qcodes));
    });
  } else if (a == "type") {
    const std::string text = inv.text;
    simple(fb::vm::Command::TypeText,
           [text](auto& f) { return fb::vm::CreateTypeText(f, f.CreateString(text)); });
    timeout = milliseconds(60000);
  } else if (a == "mouse") {
    const int x = inv.mouse_x, y = inv.mouse_y;
    const std::string click = inv.click;
    simple(fb::vm::Command::Mouse,
           [x, y, click](auto& f) { return fb::vm::CreateMouse(f, x, y, f.CreateString(click)); });
  } else if (a == "screendump") {
    std::string path = inv.png_path;
    if (path.empty() || path[0] != '/') {
      char cwd[PATH_MAX];
      if (::getcwd(cwd, sizeof cwd) == nullptr)
        return report_error(Error{Errc::kIo, "getcwd failed"});
      path = std::string(cwd) + "/" + path;
    }
    simple(fb::vm::Command::Screendump,
           [path](auto& f) { return fb::vm::CreateScreendump(f, f.CreateString(path)); });
  } else {
    return report_error(Error{Errc::kInvalidArgument, "unknown vm action '" + a + "'"});
  }
  auto r = vm_request(paths, build, timeout);
  if (!r) return report_error(r.error());
  std::cout << "vm: " << r->value("state", "?") << (r->value("ready", false) ? " (ready)" : "")
            << "\n";
  return 0;
}

}  // namespace glassbox::cli
