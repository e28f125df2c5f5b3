// glassbox-bench-trace: what tracing costs and how fast its rings drain, in one run.
//
// Boot: the reference guest to its ready marker under plain TCG, with the trace plugin in
// counts mode, and in stream mode, runs interleaved (plain, counts, stream, plain, ...), each
// the exact QEMU command line vm-supervisor builds for that [trace] mode
// (`glassbox-vm-supervisor --print-qemu-cmdline`). In stream mode a drainer thread of this
// process empties the vCPU rings as trace-consumer does, so full rings do not make stream
// mode look cheap; it reports the events drained and the plugin's drops over the boot.
// Ratios: median(mode) / median(plain). Budgets: counts <= 1.15, stream <= 2.0.
//
// Drain: one producer thread pushes tb_ids into a ring (shared/trace_ring.hpp EventProducer,
// in a /dev/shm file like the plugin's) as fast as it can while this thread drains it in
// batches of 65536 (drain_events, as trace-consumer does into a chunk). Reported: drained
// events/s on the consumer's core against a baseline memcpy of the same bytes (same run),
// and the producer's drops. Budget: >= 50 M events/s.
//
// Usage: glassbox-bench-trace [--runs N] [--drain-seconds S] [--no-boot] [--json FILE]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shared/paths.hpp"
#include "shared/process.hpp"
#include "shared/trace_ring.hpp"
#include "tests/bench/bench_util.hpp"

namespace {

using namespace glassbox;
using bench::Clock;
namespace tr = glassbox::trace;

// A trace file mapped read-write, as trace-consumer maps it.
struct Mapped {
  void* base = nullptr;
  uint64_t bytes = 0;
  tr::TraceView view;
  ~Mapped() {
    if (base) ::munmap(base, bytes);
  }
  bool open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR);
    if (fd < 0) return false;
    const off_t size = ::lseek(fd, 0, SEEK_END);
    if (size < static_cast<off_t>(tr::kTraceHeaderBytes)) {
      ::close(fd);
      return false;
    }
    bytes = static_cast<uint64_t>(size);
    base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) {
      base = nullptr;
      return false;
    }
    return tr::make_view(base, bytes, &view) == tr::TraceError::kOk;
  }
};

std::vector<std::string> qemu_argv_for(const std::string& dir, const std::string& instance,
                                       const std::string& mode) {
  const std::string config = dir + "/" + mode + ".toml";
  std::ofstream(config) << "[instance]\nname = \"" << instance << "\"\n[vm]\naccel = \"tcg\"\n"
                        << "[trace]\nmode = \"" << mode << "\"\n";
  const std::string cmdfile = dir + "/" + mode + ".cmdline";
  auto p = shared::spawn({shared::exe_dir() + "/glassbox-vm-supervisor", "--config", config,
                          "--state-dir", dir + "/state", "--print-qemu-cmdline"},
                         {.new_session = false, .output_path = cmdfile});
  if (!p || !shared::reap_for(*p, std::chrono::seconds(10))) return {};
  std::vector<std::string> argv;
  std::istringstream in(bench::read_file(cmdfile));
  for (std::string line; std::getline(in, line);) argv.push_back(line);
  return argv;
}

struct BootRun {
  double seconds = -1;
  uint64_t drained = 0, drops = 0, tbs = 0;
};

BootRun boot_once(const std::vector<std::string>& argv, const std::string& dir,
                  const std::string& instance, bool drain) {
  shared::StatePaths paths(dir + "/state");
  (void)paths.create();
  ::unlink(paths.serial_log().c_str());
  const std::string shm = shared::trace_shm_path(instance);
  ::unlink(shm.c_str());
  BootRun r;
  std::atomic<bool> stop{false};
  std::thread drainer;
  if (drain) {
    drainer = std::thread([&] {
      Mapped m;
      while (!stop && !m.open(shm)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::vector<uint32_t> buf(65536);
      while (!stop) {
        size_t got = 0;
        for (uint32_t v = 0; v < m.view.n_vcpus; ++v) {
          got += tr::drain_events(*m.view.event_ring(v), m.view.events(v), m.view.ring_events, buf);
        }
        r.drained += got;
        if (got == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (m.base) {
        for (uint32_t v = 0; v < m.view.n_vcpus; ++v) r.drops += m.view.event_ring(v)->drops.load();
        r.tbs = m.view.header->tbs_translated.load();
      }
    });
  }
  const auto t0 = Clock::now();
  auto q = shared::spawn(argv, {.new_session = true, .output_path = dir + "/qemu.log"});
  if (q) {
    r.seconds = bench::wait_marker(paths.serial_log(), "GLASSBOX-GUEST-READY", t0,
                                   std::chrono::seconds(300));
    shared::terminate_group(*q, std::chrono::seconds(2));
    (void)shared::reap_for(*q, std::chrono::seconds(2));
  }
  stop = true;
  if (drainer.joinable()) drainer.join();
  if (!drain) {
    Mapped m;
    if (m.open(shm)) r.tbs = m.view.header->tbs_translated.load();
  }
  ::unlink(shared::guest_ram_path(instance).c_str());
  ::unlink(shm.c_str());
  return r;
}

// Producer thread vs draining thread on one ring in /dev/shm.
nlohmann::json drain_rate(double seconds) {
  const std::string path = "/dev/shm/glassbox-bench-drain-" + std::to_string(::getpid());
  tr::TraceGeometry g;
  g.n_vcpus = 1;
  g.ring_events = 1u << 20;
  g.max_tbs = 1u << 12;
  g.tb_ring_bytes = 1u << 16;
  const auto layout = tr::plan_layout(g);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || !layout || ::ftruncate(fd, static_cast<off_t>(layout->file_bytes)) != 0) return {};
  void* base = ::mmap(nullptr, layout->file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  const tr::TraceView view = tr::init_trace_file(base, g, *layout, tr::TraceMode::kStream, 1, 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> pushed{0};
  std::thread producer([&] {
    tr::EventProducer p(view.event_ring(0), view.events(0), view.ring_events);
    uint64_t n = 0;
    uint32_t id = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      for (int k = 0; k < 4096; ++k) n += p.push(id++ & 0xfffff);
    }
    pushed = n;
  });
  std::vector<uint32_t> out(65536);
  uint64_t drained = 0;
  const auto t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    drained += tr::drain_events(*view.event_ring(0), view.events(0), view.ring_events, out);
  }
  const double drain_s = std::chrono::duration<double>(Clock::now() - t0).count();
  stop = true;
  producer.join();
  const uint64_t drops = view.event_ring(0)->drops.load();
  // Baseline: memcpy of the same bytes in 256 KiB blocks from a ring-sized buffer.
  std::vector<uint32_t> src(view.ring_events, 7);
  uint64_t copied = 0;
  const auto t1 = Clock::now();
  while (copied < drained) {
    std::memcpy(out.data(), src.data() + (copied % (src.size() - out.size())), out.size() * 4);
    copied += out.size();
  }
  const double copy_s = std::chrono::duration<double>(Clock::now() - t1).count();
  ::munmap(base, layout->file_bytes);
  ::unlink(path.c_str());
  const double rate = static_cast<double>(drained) / drain_s;
  const double base_rate = static_cast<double>(copied) / copy_s;
  std::printf(
      "drain: %.1f M events/s drained (producer on another thread: %.1f M pushed/s, "
      "%llu drops); memcpy of the same bytes %.1f M events/s; ratio %.2f (budget >= 50 "
      "M/s)\n",
      rate / 1e6, static_cast<double>(pushed.load()) / drain_s / 1e6,
      static_cast<unsigned long long>(drops), base_rate / 1e6, rate / base_rate);
  return {{"drained_events_per_s", rate},
          {"pushed_events_per_s", static_cast<double>(pushed.load()) / drain_s},
          {"producer_drops", drops},
          {"memcpy_events_per_s", base_rate},
          {"ratio_to_memcpy", rate / base_rate}};
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 3;
  double drain_seconds = 2;
  bool boot = true;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--drain-seconds" && i + 1 < argc) {
      drain_seconds = std::max(0.1, std::atof(argv[++i]));
    } else if (a == "--no-boot") {
      boot = false;
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--runs N] [--drain-seconds S] [--no-boot] [--json FILE]\n",
                   argv[0]);
      return 2;
    }
  }
  nlohmann::json out;
  out["drain"] = drain_rate(drain_seconds);
  if (boot) {
    char tmpl[] = "/tmp/gb-bench-trace-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    const std::string instance = "benchtrace" + std::to_string(::getpid());
    std::map<std::string, std::vector<std::string>> argvs;
    for (const char* mode : {"off", "counts", "stream"}) {
      argvs[mode] = qemu_argv_for(dir, instance, mode);
      if (argvs[mode].empty()) {
        std::fprintf(stderr, "cannot get QEMU's command line for [trace] mode = %s\n", mode);
        return 1;
      }
    }
    std::map<std::string, std::vector<double>> secs;
    std::map<std::string, BootRun> last;
    for (int i = 0; i < runs; ++i) {
      for (const char* mode : {"off", "counts", "stream"}) {
        BootRun r = boot_once(argvs[mode], dir, instance, std::string(mode) == "stream");
        if (r.seconds < 0) {
          std::fprintf(stderr, "[trace] mode %s: the guest never got ready (see %s)\n", mode,
                       dir.c_str());
          return 1;
        }
        secs[mode].push_back(r.seconds);
        last[mode] = r;
        std::printf("run %d %-6s %.3f s  TBs %llu  drained %llu  drops %llu\n", i + 1, mode,
                    r.seconds, static_cast<unsigned long long>(r.tbs),
                    static_cast<unsigned long long>(r.drained),
                    static_cast<unsigned long long>(r.drops));
        std::fflush(stdout);
      }
    }
    const double plain = bench::median(secs["off"]);
    for (const char* mode : {"off", "counts", "stream"}) {
      out["boot"][mode] = {{"median_s", bench::median(secs[mode])},
                           {"ratio", bench::median(secs[mode]) / plain},
                           {"runs_s", secs[mode]},
                           {"last_run_tbs_translated", last[mode].tbs},
                           {"last_run_events_drained", last[mode].drained},
                           {"last_run_drops", last[mode].drops}};
    }
    std::printf(
        "boot-to-ready (median of %d): plain TCG %.3f s, counts %.3f s (ratio %.3f, "
        "budget <= 1.15), stream %.3f s (ratio %.3f, budget <= 2.0)\n",
        runs, plain, bench::median(secs["counts"]), bench::median(secs["counts"]) / plain,
        bench::median(secs["stream"]), bench::median(secs["stream"]) / plain);
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
