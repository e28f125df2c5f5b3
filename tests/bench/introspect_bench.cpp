// glassbox-bench-introspect: how fast glassbox answers `ps` from raw guest RAM.
//
// Offline (--ram DUMP, a raw or LiME dump of the reference guest, 256 MiB): the whole
// `glassbox ps --ram DUMP` command, as a user runs it, a process per run:
//   cold:  --profile-cache none (VMCOREINFO, kernel base, BTF scan + parse, kallsyms decode)
//   warm:  a profile cache that holds this kernel build (VMCOREINFO and base only)
// and, inside this process, build_profile (cache hit) + list_processes alone.
// The reference figure is Volatility 3's linux.pslist on a 256 MiB image: 5.6 s
// (measured by the author; Volatility is not installable on this machine).
// Live (--state-dir DIR of a running instance with semantic-db): REQ/REP round trips
//   baseline: GetStatus (no walk), then ListProcesses (a fresh walk of the newest RAM cycle).
// Every figure is the median (and p95) of --runs runs; ratios are against the baseline of
// the same run.
//
// Usage: glassbox-bench-introspect [--ram DUMP] [--state-dir DIR] [--runs N] [--json FILE]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "semantic_generated.h"
#include "services/semantic_db/introspect.hpp"
#include "services/semantic_db/profile_cache.hpp"
#include "shared/bus.hpp"
#include "shared/paths.hpp"
#include "shared/ram_dump.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace sdb = glassbox::semantic_db;
namespace fb = glassbox::schema;

constexpr double kVolatilityPslistS = 5.6;  // the figure, 256 MiB image

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Stats {
  double median_ms = 0, p95_ms = 0, min_ms = 0;
  nlohmann::json json() const {
    return {{"median_ms", median_ms}, {"p95_ms", p95_ms}, {"min_ms", min_ms}};
  }
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median_ms = v[v.size() / 2];
  s.p95_ms = v[std::min(v.size() - 1, v.size() * 95 / 100)];
  s.min_ms = v.front();
  return s;
}

// Runs `argv` with stdout/stderr to /dev/null; the wall time in ms, or -1 when it failed.
double run_timed(const std::vector<std::string>& argv) {
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execv(a[0], a.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  const double ms = ms_since(t0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ms : -1;
}

glassbox::Result<glassbox::shared::Bytes> semantic_request(const glassbox::shared::StatePaths& p,
                                                           bool walk) {
  flatbuffers::FlatBufferBuilder fbb(128);
  if (walk) {
    auto c = fb::semantic::CreateListProcesses(fbb, false);
    fb::semantic::FinishSemanticRequestBuffer(
        fbb,
        fb::semantic::CreateSemanticRequest(fbb, fb::semantic::Command::ListProcesses, c.Union()));
  } else {
    auto c = fb::common::CreateGetStatus(fbb);
    fb::semantic::FinishSemanticRequestBuffer(
        fbb, fb::semantic::CreateSemanticRequest(fbb, fb::semantic::Command::common_GetStatus,
                                                 c.Union()));
  }
  return glassbox::shared::request(p.service_endpoint("semantic-db"),
                                   {fbb.GetBufferPointer(), fbb.GetSize()},
                                   std::chrono::milliseconds(10000));
}

}  // namespace

int main(int argc, char** argv) {
  std::string ram, state_dir, json_path;
  int runs = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--ram")
      ram = next();
    else if (a == "--state-dir")
      state_dir = next();
    else if (a == "--runs")
      runs = std::max(1, std::atoi(next().c_str()));
    else if (a == "--json")
      json_path = next();
    else {
      std::fprintf(stderr,
                   "usage: glassbox-bench-introspect [--ram DUMP] [--state-dir DIR] [--runs N] "
                   "[--json FILE]\n");
      return 2;
    }
  }
  if (ram.empty() && state_dir.empty()) {
    std::fprintf(stderr, "glassbox-bench-introspect: give --ram DUMP and/or --state-dir DIR\n");
    return 2;
  }
  nlohmann::json out = {{"runs", runs}};
  const std::string glassbox_bin = glassbox::shared::exe_dir() + "/glassbox";

  if (!ram.empty()) {
    char tmpl[] = "/tmp/glassbox-bench-cache-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl) ? tmpl : "/tmp";
    const std::string cache = dir + "/profiles.sqlite";
    std::vector<double> cold, warm;
    // Prime the page cache and the profile cache once, then interleave cold and warm runs.
    if (run_timed({glassbox_bin, "ps", "--ram", ram, "--profile-cache", cache}) < 0) {
      std::fprintf(stderr, "glassbox-bench-introspect: `glassbox ps --ram %s` failed\n",
                   ram.c_str());
      return 1;
    }
    for (int r = 0; r < runs; ++r) {
      cold.push_back(run_timed({glassbox_bin, "ps", "--ram", ram, "--profile-cache", "none"}));
      warm.push_back(run_timed({glassbox_bin, "ps", "--ram", ram, "--profile-cache", cache}));
    }
    if (std::count(cold.begin(), cold.end(), -1.0) || std::count(warm.begin(), warm.end(), -1.0)) {
      std::fprintf(stderr, "glassbox-bench-introspect: a `glassbox ps` run failed\n");
      return 1;
    }
    // In-process: open, profile from the cache, walk.
    std::vector<double> inproc, walk_only;
    auto dump = glassbox::shared::open_dump(ram);
    auto pc = sdb::ProfileCache::open(cache);
    if (!dump || !pc) {
      std::fprintf(stderr, "glassbox-bench-introspect: cannot open %s or the cache\n", ram.c_str());
      return 1;
    }
    size_t n_processes = 0;
    for (int r = 0; r < runs; ++r) {
      const auto t0 = Clock::now();
      auto profile = sdb::build_profile(dump->view(), "", pc->get());
      const auto t1 = Clock::now();
      auto procs = profile ? sdb::list_processes(dump->view(), *profile)
                           : glassbox::Result<sdb::ProcessList>(tl::unexpected(profile.error()));
      if (!procs) {
        std::fprintf(stderr, "glassbox-bench-introspect: %s\n", procs.error().message.c_str());
        return 1;
      }
      n_processes = procs->processes.size();
      inproc.push_back(ms_since(t0));
      walk_only.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
    }
    const Stats c = stats_of(cold), w = stats_of(warm), ip = stats_of(inproc),
                wo = stats_of(walk_only);
    out["offline"] = {{"dump", ram},
                      {"processes", n_processes},
                      {"ps_cold_profile", c.json()},
                      {"ps_profile_cache", w.json()},
                      {"in_process_cached_profile_and_walk", ip.json()},
                      {"in_process_task_walk", wo.json()},
                      {"ratio_cached_to_cold", w.median_ms / c.median_ms},
                      {"volatility3_pslist_s_reference", kVolatilityPslistS},
                      {"speedup_vs_volatility_reference", kVolatilityPslistS * 1000 / w.median_ms}};
    std::printf("offline ps on %s (%zu processes), %d runs, median (p95):\n", ram.c_str(),
                n_processes, runs);
    std::printf("  glassbox ps, cold profile      %8.1f ms (%.1f)\n", c.median_ms, c.p95_ms);
    std::printf("  glassbox ps, profile cache     %8.1f ms (%.1f)   ratio to cold %.2f\n",
                w.median_ms, w.p95_ms, w.median_ms / c.median_ms);
    std::printf("  in-process: cache + walk       %8.1f ms (%.1f)\n", ip.median_ms, ip.p95_ms);
    std::printf("  in-process: task walk only     %8.2f ms (%.2f)\n", wo.median_ms, wo.p95_ms);
    std::printf("  Volatility 3 linux.pslist (issue's figure) %.1f s: %.0fx slower than cached\n",
                kVolatilityPslistS, kVolatilityPslistS * 1000 / w.median_ms);
    std::remove(cache.c_str());
    std::remove((cache + "-wal").c_str());
    std::remove((cache + "-shm").c_str());
    ::rmdir(dir.c_str());
  }

  if (!state_dir.empty()) {
    glassbox::shared::StatePaths paths(state_dir);
    std::vector<double> ping, query;
    for (int r = 0; r < std::max(runs, 30); ++r) {
      auto t0 = Clock::now();
      auto a = semantic_request(paths, false);
      ping.push_back(ms_since(t0));
      t0 = Clock::now();
      auto b = semantic_request(paths, true);
      query.push_back(ms_since(t0));
      if (!a || !b) {
        std::fprintf(stderr, "glassbox-bench-introspect: semantic-db at %s: %s\n",
                     state_dir.c_str(), (!a ? a.error() : b.error()).message.c_str());
        return 1;
      }
      flatbuffers::Verifier v(b->data(), b->size());
      if (!v.VerifyBuffer<fb::semantic::SemanticReply>(nullptr) ||
          flatbuffers::GetRoot<fb::semantic::SemanticReply>(b->data())->error()) {
        std::fprintf(stderr, "glassbox-bench-introspect: ListProcesses failed\n");
        return 1;
      }
    }
    const Stats p = stats_of(ping), q = stats_of(query);
    out["live"] = {{"status_round_trip", p.json()},
                   {"ps_query", q.json()},
                   {"ps_query_minus_round_trip_ms", q.median_ms - p.median_ms}};
    std::printf("live semantic-db, %zu requests, median (p95):\n", ping.size());
    std::printf("  GetStatus round trip (baseline) %7.2f ms (%.2f)\n", p.median_ms, p.p95_ms);
    std::printf("  ListProcesses (fresh walk)      %7.2f ms (%.2f)   walk adds %.2f ms\n",
                q.median_ms, q.p95_ms, q.median_ms - p.median_ms);
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
