// `glassbox ps|modules|kernel|dmesg`: what the guest kernel knows, from raw RAM: a dump file
// (`--ram DUMP`, raw or LiME, like Volatility) or the live VM through a RamMirror.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "services/cli/client.hpp"
#include "services/cli/commands.hpp"
#include "services/semantic_db/introspect.hpp"
#include "shared/iox.hpp"
#include "shared/ram_dump.hpp"
#include "shared/ram_mirror.hpp"

namespace glassbox::cli {
namespace {

using Clock = std::chrono::steady_clock;

int report_error(const Error& e) {
  std::cerr << "glassbox: " << e.message << "\n";
  return 1;
}

std::string hex(uint64_t v) { return fmt::format("0x{:x}", v); }

int run(const Invocation& inv, const shared::RamView& ram) {
  const auto t0 = Clock::now();
  auto profile = semantic_db::build_profile(ram, inv.kernel_image);
  if (!profile) return report_error(profile.error());
  const double profile_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (inv.command == "kernel") {
    nlohmann::json j = {{"release", profile->release},
                        {"kaslr_slide", hex(profile->base.kaslr_slide)},
                        {"phys_base", hex(profile->base.phys_base)},
                        {"sources", profile->sources},
                        {"symbols", profile->symbols->size()},
                        {"profile_ms", profile_ms}};
    if (inv.json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << fmt::format("release {}\nkaslr_slide {}\nphys_base {}\nsources {}\n",
                               profile->release, hex(profile->base.kaslr_slide),
                               hex(profile->base.phys_base), j["sources"].dump());
    }
    return 0;
  }
  if (inv.command == "dmesg") {
    auto log = semantic_db::read_kernel_log(ram, *profile);
    if (!log) return report_error(log.error());
    for (const auto& w : log->warnings) std::cerr << "glassbox: warning: " << w << "\n";
    if (inv.json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& r : log->records) {
        arr.push_back({{"seq", r.seq}, {"ts_nsec", r.ts_nsec}, {"text", r.text}});
      }
      std::cout << nlohmann::json{{"records", arr}}.dump(2) << "\n";
    } else {
      for (const auto& r : log->records) {
        std::cout << fmt::format("[{:5}.{:06}] {}\n", r.ts_nsec / 1000000000,
                                 (r.ts_nsec % 1000000000) / 1000, r.text);
      }
    }
    return 0;
  }
  if (inv.command == "modules") {
    auto mods = semantic_db::list_modules(ram, *profile);
    if (!mods) return report_error(mods.error());
    for (const auto& w : mods->warnings) std::cerr << "glassbox: warning: " << w << "\n";
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& m : mods->modules) {
      arr.push_back({{"name", m.name}, {"base", hex(m.base)}, {"size", m.size_bytes}});
    }
    if (inv.json) {
      std::cout << nlohmann::json{{"modules", arr}}.dump(2) << "\n";
    } else {
      std::cout << fmt::format("{:<24} {:>18} {:>8}\n", "NAME", "BASE", "SIZE");
      for (const auto& m : mods->modules) {
        std::cout << fmt::format("{:<24} {:>18} {:>8}\n", m.name, hex(m.base), m.size_bytes);
      }
    }
    return 0;
  }
  auto procs = semantic_db::list_processes(ram, *profile);
  if (!procs) return report_error(procs.error());
  for (const auto& w : procs->warnings) std::cerr << "glassbox: warning: " << w << "\n";
  if (inv.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& p : procs->processes) {
      arr.push_back({{"pid", p.pid},
                     {"tgid", p.tgid},
                     {"ppid", p.ppid},
                     {"comm", p.comm},
                     {"state", p.state},
                     {"uid", p.uid},
                     {"start_time_ns", p.start_time_ns}});
    }
    std::cout << nlohmann::json{{"processes", arr}}.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{:>7} {:>7} {:>5} {:>6}  {}\n", "PID", "PPID", "STATE", "UID",
                             "COMM");
    for (const auto& p : procs->processes) {
      std::cout << fmt::format("{:>7} {:>7} {:>5} {:>6}  {}\n", p.pid, p.ppid, p.state, p.uid,
                               p.comm);
    }
  }
  return 0;
}

}  // namespace

int cmd_introspect(const Invocation& inv) {
  if (!inv.offline_ram.empty()) {
    auto dump = shared::open_dump(inv.offline_ram);
    if (!dump) return report_error(dump.error());
    return run(inv, dump->view());
  }
  // Live: a RamMirror of the running VM, like any other consumer of RAM.
  shared::StatePaths paths(inv.state_dir);
  auto st = query_service_status(paths, "ram-snapshotter", std::chrono::milliseconds(3000));
  if (!st) {
    return report_error(Error{st.error().code, "no live RAM (" + st.error().message +
                                                   "); start the instance or pass --ram DUMP"});
  }
  if (auto r = shared::init_runtime(st->service.instance, "cli-" + std::to_string(::getpid()));
      !r) {
    return report_error(r.error());
  }
  auto mirror =
      shared::RamMirror::create(st->service.instance, paths.service_endpoint("ram-snapshotter"),
                                "glassbox-cli-" + std::to_string(::getpid()));
  if (!mirror) return report_error(mirror.error());
  if (auto r = (*mirror)->wait_synced(std::chrono::milliseconds(20000)); !r) {
    return report_error(r.error());
  }
  auto view = (*mirror)->view();
  if (!view) return report_error(view.error());
  return run(inv, *view);
}

}  // namespace glassbox::cli
