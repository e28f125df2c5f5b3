#include "services/ram_snapshotter/snapshotter.hpp"

#include <fcntl.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <setjmp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "ram_generated.h"
#include "services/ram_snapshotter/dirty_tracker.hpp"
#include "services/ram_snapshotter/ram_chunks.hpp"
#include "shared/bus.hpp"
#include "shared/health.hpp"
#include "shared/iox.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/process.hpp"
#include "shared/ram_layout.hpp"
#include "vm_generated.h"

namespace glassbox::ram_snapshotter {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace fb = glassbox::schema;

// SIGBUS guard: reading a MAP_SHARED page past the end of a file that shrank under us raises
// SIGBUS. The cycle runs armed; the handler jumps back and the cycle reports the shrink
// instead of crashing. Only the thread that armed it is covered (the cycle thread).
thread_local sigjmp_buf* t_sigbus_jump = nullptr;

void on_sigbus(int sig, siginfo_t*, void*) {
  if (t_sigbus_jump != nullptr) siglongjmp(*t_sigbus_jump, 1);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_sigbus_guard() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  ::sigaction(SIGBUS, &sa, nullptr);
}

uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// The guest RAM file, mapped PROT_READ.
struct Mapping {
  int fd = -1;
  const uint8_t* base = nullptr;
  uint64_t size_bytes = 0;
  ino_t inode = 0;
  dev_t dev = 0;
  ~Mapping() { reset(); }
  void reset() {
    if (base != nullptr) ::munmap(const_cast<uint8_t*>(base), size_bytes);
    if (fd >= 0) ::close(fd);
    fd = -1;
    base = nullptr;
    size_bytes = 0;
  }
};

}  // namespace

struct Snapshotter::Impl {
  shared::Config config;
  shared::StatePaths paths;
  std::string ram_path;
  std::shared_ptr<spdlog::logger> log;
  Clock::time_point started_at = Clock::now();

  // Metrics.
  std::unique_ptr<shared::MetricsExposer> metrics;
  prometheus::Counter* m_cycles = nullptr;
  prometheus::Histogram* m_cycle_seconds = nullptr;
  prometheus::Counter* m_dirty_pages = nullptr;
  prometheus::Counter* m_bytes = nullptr;
  prometheus::Counter* m_keyframes = nullptr;
  prometheus::Counter* m_gaps = nullptr;
  prometheus::Counter* m_publish_failures = nullptr;
  prometheus::Counter* m_malformed = nullptr;
  prometheus::Gauge* m_pause_seconds = nullptr;
  prometheus::Gauge* m_subscribers = nullptr;

  std::unique_ptr<shared::CommandServer> commands;
  std::unique_ptr<shared::ChunkPublisher> publisher;
  bool iox_ready = false;
  Clock::time_point last_iox_try{};

  Mapping map;
  std::optional<shared::RamLayout> layout;
  std::vector<shared::RamRegion> layout_regions;
  Clock::time_point last_layout{};
  std::unique_ptr<DirtyTracker> tracker;
  std::string method_reason;

  uint64_t epoch = 0;
  uint64_t seq = 0;
  uint64_t cycle = 0;
  uint64_t deltas_since_keyframe = 0;
  bool keyframe_due = true;
  bool consistent_due = false;
  uint64_t next_keyframe_id = 1;
  uint64_t promised_keyframe_id = 0;  // the id the next keyframe carries (0: periodic)
  std::set<uint64_t> carry_over;      // dirty pages not yet published

  // Figures for status.
  double last_cycle_ms = 0;
  double last_pause_ms = -1;
  uint64_t keyframes = 0;
  uint64_t gaps_reported = 0;
  uint64_t publish_failures = 0;
  uint64_t malformed_requests = 0;
  std::deque<std::pair<Clock::time_point, uint64_t>> dirty_window;  // (cycle time, pages)
  std::map<std::string, Clock::time_point> subscribers;
  std::string unavailable_reason = "starting";

  Impl(shared::Config c, shared::StatePaths p)
      : config(std::move(c)),
        paths(std::move(p)),
        ram_path(shared::guest_ram_path(config.instance.name)) {}

  Result<void> setup_metrics() {
    const uint32_t port = config.metrics.base_port == 0 ? 0 : config.metrics.base_port + 2;
    auto m = shared::MetricsExposer::start(config.metrics.host, port);
    if (!m) return tl::unexpected(m.error());
    metrics = std::move(*m);
    auto& reg = metrics->registry();
    const std::map<std::string, std::string> labels = {{"instance", config.instance.name}};
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(reg).Add(labels);
    };
    m_cycles = counter("glassbox_ram_cycles_total", "Snapshot cycles run");
    m_dirty_pages = counter("glassbox_ram_dirty_pages_total", "Changed pages found and published");
    m_bytes = counter("glassbox_ram_published_bytes_total", "Page bytes published over iceoryx");
    m_keyframes = counter("glassbox_ram_keyframes_total", "Keyframes published");
    m_gaps = counter("glassbox_ram_gaps_total", "Sequence gaps reported by subscribers");
    m_publish_failures =
        counter("glassbox_ram_publish_failures_total", "Chunks that could not be loaned");
    m_malformed = counter("glassbox_ram_malformed_requests_total",
                          "Command requests that failed FlatBuffers verification");
    m_cycle_seconds =
        &prometheus::BuildHistogram()
             .Name("glassbox_ram_cycle_seconds")
             .Help("Time of one snapshot cycle (scan + publish)")
             .Register(reg)
             .Add(labels, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.02,
                                                                  0.033, 0.05, 0.1, 0.2, 0.5, 1});
    m_pause_seconds = &prometheus::BuildGauge()
                           .Name("glassbox_ram_consistent_pause_seconds")
                           .Help("vCPU pause of the last consistent keyframe")
                           .Register(reg)
                           .Add(labels);
    m_subscribers = &prometheus::BuildGauge()
                         .Name("glassbox_ram_subscribers")
                         .Help("Mirrors heard from in the last 10 s")
                         .Register(reg)
                         .Add(labels);
    return {};
  }

  void try_init_iox() {
    if (iox_ready || Clock::now() - last_iox_try < milliseconds(250)) return;
    last_iox_try = Clock::now();
    if (auto r = shared::init_runtime(config.instance.name, "ram-snapshotter"); !r) {
      unavailable_reason = r.error().message;
      return;
    }
    auto p = shared::ChunkPublisher::create(config.instance.name, "ram", 0);
    if (!p) {
      unavailable_reason = p.error().message;
      return;
    }
    publisher = std::move(*p);
    iox_ready = true;
    log->info("publishing guest RAM on (glassbox, {}, ram)", config.instance.name);
  }

  // ---- vm-supervisor ----
  Result<const fb::vm::VmStatus*> vm_request(
      fb::vm::Command type, flatbuffers::Offset<void> (*make)(flatbuffers::FlatBufferBuilder&),
      shared::Bytes& storage, milliseconds timeout) {
    flatbuffers::FlatBufferBuilder fbb(128);
    auto body = make(fbb);
    fb::vm::FinishVmRequestBuffer(fbb, fb::vm::CreateVmRequest(fbb, type, body));
    auto bytes = shared::request(paths.service_endpoint("vm-supervisor"),
                                 {fbb.GetBufferPointer(), fbb.GetSize()}, timeout);
    if (!bytes) return tl::unexpected(bytes.error());
    storage = std::move(*bytes);
    flatbuffers::Verifier v(storage.data(), storage.size());
    if (storage.size() < 8 || !v.VerifyBuffer<fb::vm::VmReply>(nullptr)) {
      return fail(Errc::kProtocol, "vm-supervisor reply failed verification");
    }
    const auto* reply = flatbuffers::GetRoot<fb::vm::VmReply>(storage.data());
    if (reply->error() != nullptr) {
      return fail(static_cast<Errc>(reply->error()->code()),
                  "vm-supervisor: " + (reply->error()->message() ? reply->error()->message()->str()
                                                                 : std::string("error")));
    }
    if (reply->status() == nullptr) return fail(Errc::kProtocol, "vm-supervisor sent no status");
    return reply->status();
  }

  // Refreshes the layout from vm-supervisor (every 2 s: SeaBIOS and the guest reprogram PAM
  // during boot). Errors leave the previous layout in place.
  void refresh_layout(bool force) {
    if (!force && layout && Clock::now() - last_layout < std::chrono::seconds(2)) return;
    last_layout = Clock::now();
    shared::Bytes storage;
    auto st = vm_request(
        fb::vm::Command::GetRamLayout,
        [](flatbuffers::FlatBufferBuilder& f) { return fb::vm::CreateGetRamLayout(f).Union(); },
        storage, milliseconds(2000));
    if (!st) {
      unavailable_reason = "no RAM layout: " + st.error().message;
      return;
    }
    const auto* ranges = (*st)->ram_layout();
    if (ranges == nullptr || ranges->size() == 0) {
      unavailable_reason = "vm-supervisor has no RAM layout yet (QEMU starting)";
      return;
    }
    std::vector<shared::RamRegion> regions;
    for (const auto* r : *ranges) {
      regions.push_back(shared::RamRegion{Gpa(r->gpa()), r->size_bytes(), r->file_offset()});
    }
    auto l = shared::RamLayout::from_regions(regions, map.size_bytes);
    if (!l) {
      unavailable_reason = "bad RAM layout from vm-supervisor: " + l.error().message;
      return;
    }
    if (!layout || l->describe() != layout->describe()) {
      log->info("RAM layout: {}", l->describe());
    }
    layout.emplace(std::move(*l));
    layout_regions = std::move(regions);
  }

  // ---- the RAM file ----
  // (Re)maps the RAM file when it appeared, was replaced (VM restarted) or changed size.
  // Returns true when a usable mapping exists.
  bool ensure_mapped() {
    struct stat st {};
    if (::stat(ram_path.c_str(), &st) != 0) {
      if (map.base != nullptr) log->warn("guest RAM file {} is gone; waiting", ram_path);
      map.reset();
      layout.reset();
      unavailable_reason = "no guest RAM file " + ram_path;
      return false;
    }
    if (map.base != nullptr && st.st_ino == map.inode && st.st_dev == map.dev &&
        static_cast<uint64_t>(st.st_size) == map.size_bytes) {
      return true;
    }
    map.reset();
    layout.reset();
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size == 0 || size % kPageBytes != 0) {
      unavailable_reason = "guest RAM file has size " + std::to_string(size);
      return false;
    }
    int fd = ::open(ram_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      unavailable_reason = "open " + ram_path + ": " + std::strerror(errno);
      return false;
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      unavailable_reason = "mmap " + ram_path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    map.fd = fd;
    map.base = static_cast<const uint8_t*>(p);
    map.size_bytes = size;
    map.inode = st.st_ino;
    map.dev = st.st_dev;
    ++epoch;
    keyframe_due = true;
    carry_over.clear();
    if (tracker) tracker->reset();
    choose_method();
    log->info("mapped {} ({} MiB), epoch {}", ram_path, size >> 20, epoch);
    refresh_layout(true);
    return true;
  }

  void choose_method() {
    const std::string& m = config.snapshot.method;
    if (m == "soft-dirty" || m == "auto") {
      shared::Bytes storage;
      auto st = vm_request(
          fb::vm::Command::common_GetStatus,
          [](flatbuffers::FlatBufferBuilder& f) { return fb::common::CreateGetStatus(f).Union(); },
          storage, milliseconds(2000));
      Result<std::unique_ptr<SoftDirtyTracker>> sd =
          fail(Errc::kUnavailable, "QEMU's pid is unknown (vm-supervisor not answering)");
      if (st && (*st)->qemu_pid() > 0) {
        sd = SoftDirtyTracker::probe((*st)->qemu_pid(), ram_path, milliseconds(300));
      }
      if (sd) {
        tracker = std::move(*sd);
        method_reason = "soft-dirty bits of QEMU (pid " + std::to_string((*st)->qemu_pid()) + ")";
        log->info("dirty tracking: {}", method_reason);
        return;
      }
      method_reason = "xxh3 page hashes (soft-dirty unavailable: " + sd.error().message + ")";
      if (m == "soft-dirty")
        log->warn("[snapshot] method = soft-dirty unavailable: {}", sd.error().message);
    } else {
      method_reason = "xxh3 page hashes ([snapshot] method)";
    }
    if (!tracker || std::string(tracker->method()) != "xxh3") {
      tracker = std::make_unique<HashDirtyTracker>(config.snapshot.hash_threads);
    }
    tracker->reset();
    log->info("dirty tracking: {}", method_reason);
  }

  // ---- publishing ----
  // Publishes `pages` (ascending page indices) as one cycle. On a loan failure the whole
  // cycle's pages are carried over (mirrors drop an incomplete cycle) and false is returned.
  bool publish_cycle(const std::vector<uint64_t>& pages, bool keyframe, bool consistent,
                     uint64_t captured_ns) {
    const uint64_t n = pages.size();
    const uint32_t parts = parts_for(n);
    ++cycle;
    const CycleInfo info{config.instance.name, epoch,      cycle,          keyframe,
                         promised_keyframe_id, consistent, map.size_bytes, &*layout,
                         captured_ns};
    for (uint32_t part = 0; part < parts; ++part) {
      const uint64_t begin = uint64_t{part} * kPagesPerChunk;
      const uint64_t count = std::min<uint64_t>(kPagesPerChunk, n - std::min(n, begin));
      const auto header = build_chunk_header(info, seq, part, parts, {pages.data() + begin, count});
      const uint8_t* base = map.base;
      auto r = publisher->publish(header, count * kPageBytes, [&](uint8_t* dst) {
        for (uint64_t i = 0; i < count; ++i) {
          uint8_t* page = dst + i * kPageBytes;
          std::memcpy(page, base + pages[begin + i] * kPageBytes, kPageBytes);
          // The baseline is what subscribers get (see HashDirtyTracker: a page can change
          // between the scan and this copy and change back afterwards).
          tracker->note_published(pages[begin + i], page);
        }
      });
      if (!r) {
        ++publish_failures;
        m_publish_failures->Increment();
        log->warn("cycle {} part {}/{} not published: {}; carrying {} pages over", cycle, part,
                  parts, r.error().message, n);
        if (keyframe) {
          keyframe_due = true;
        } else {
          carry_over.insert(pages.begin(), pages.end());
        }
        return false;
      }
      ++seq;
      m_bytes->Increment(static_cast<double>(count * kPageBytes));
    }
    return true;
  }

  // Asks vm-supervisor to stop or continue the vCPUs. Returns whether the VM was running.
  Result<bool> pause_vm() {
    shared::Bytes storage;
    auto st = vm_request(
        fb::vm::Command::common_GetStatus,
        [](flatbuffers::FlatBufferBuilder& f) { return fb::common::CreateGetStatus(f).Union(); },
        storage, milliseconds(2000));
    if (!st) return tl::unexpected(st.error());
    if ((*st)->state() == fb::vm::VmState::Paused) return false;  // the user paused it
    auto p = vm_request(
        fb::vm::Command::Pause,
        [](flatbuffers::FlatBufferBuilder& f) { return fb::vm::CreatePause(f).Union(); }, storage,
        milliseconds(2000));
    if (!p) return tl::unexpected(p.error());
    return true;
  }
  void resume_vm() {
    shared::Bytes storage;
    auto r = vm_request(
        fb::vm::Command::Resume,
        [](flatbuffers::FlatBufferBuilder& f) { return fb::vm::CreateResume(f).Union(); }, storage,
        milliseconds(2000));
    if (!r) log->error("could not resume the VM after a consistent copy: {}", r.error().message);
  }

  // One cycle under the SIGBUS guard: a RAM file truncated under us unmaps it and the next
  // cycle maps whatever is there (a new epoch, a keyframe).
  void guarded_cycle() {
    sigjmp_buf jump;
    if (sigsetjmp(jump, 1) != 0) {
      t_sigbus_jump = nullptr;
      log->warn("guest RAM file {} shrank under us (SIGBUS); remapping", ram_path);
      map.reset();
      layout.reset();
      keyframe_due = true;
      return;
    }
    t_sigbus_jump = &jump;
    run_cycle();
    t_sigbus_jump = nullptr;
  }

  void run_cycle() {
    if (!ensure_mapped()) return;
    refresh_layout(false);
    if (!layout || !iox_ready) return;
    unavailable_reason.clear();
    const auto t0 = Clock::now();
    const uint64_t captured_ns = unix_ns();
    const bool keyframe = keyframe_due || deltas_since_keyframe >= config.snapshot.keyframe_every;
    std::vector<uint64_t> dirty;
    if (keyframe) {
      const bool consistent = consistent_due;
      bool paused = false;
      Clock::time_point pause_start{};
      if (consistent) {
        auto p = pause_vm();
        if (!p) {
          log->warn("consistent keyframe without a pause: {}", p.error().message);
        } else {
          paused = *p;
          pause_start = Clock::now();
        }
      }
      // Scan first (soft-dirty clears its bits here; the hash tracker sizes its history), then
      // the copy: publish_cycle makes each copied page the tracker's baseline, so a page that
      // changes after the copy, even back to what the scan saw, is sent again next cycle.
      (void)tracker->scan(map.base, map.size_bytes, dirty);
      std::vector<uint64_t> all(map.size_bytes / kPageBytes);
      for (uint64_t i = 0; i < all.size(); ++i) all[i] = i;
      const bool ok = publish_cycle(all, true, consistent, captured_ns);
      if (paused) {
        resume_vm();
        last_pause_ms =
            std::chrono::duration<double, std::milli>(Clock::now() - pause_start).count();
        m_pause_seconds->Set(last_pause_ms / 1000.0);
      }
      if (ok) {
        keyframe_due = false;
        consistent_due = false;
        promised_keyframe_id = 0;
        deltas_since_keyframe = 0;
        carry_over.clear();
        ++keyframes;
        m_keyframes->Increment();
        m_dirty_pages->Increment(static_cast<double>(dirty.size()));
        note_dirty(t0, dirty.size());
      }
    } else {
      auto r = tracker->scan(map.base, map.size_bytes, dirty);
      if (!r) {
        log->error("dirty scan failed: {}; next cycle is a keyframe", r.error().message);
        keyframe_due = true;
        return;
      }
      if (!carry_over.empty()) {
        carry_over.insert(dirty.begin(), dirty.end());
        dirty.assign(carry_over.begin(), carry_over.end());
        carry_over.clear();
      }
      if (!dirty.empty() && publish_cycle(dirty, false, false, captured_ns)) {
        ++deltas_since_keyframe;
      }
      m_dirty_pages->Increment(static_cast<double>(dirty.size()));
      note_dirty(t0, dirty.size());
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    last_cycle_ms = secs * 1000;
    m_cycle_seconds->Observe(secs);
    m_cycles->Increment();
  }

  void note_dirty(Clock::time_point t, uint64_t pages) {
    dirty_window.emplace_back(t, pages);
    while (!dirty_window.empty() && t - dirty_window.front().first > std::chrono::seconds(5)) {
      dirty_window.pop_front();
    }
  }
  double dirty_pages_per_s() const {
    if (dirty_window.size() < 2) return 0;
    uint64_t total = 0;
    for (size_t i = 1; i < dirty_window.size(); ++i) total += dirty_window[i].second;
    const double span =
        std::chrono::duration<double>(dirty_window.back().first - dirty_window.front().first)
            .count();
    return span > 0 ? static_cast<double>(total) / span : 0;
  }
  size_t live_subscribers() {
    const auto now = Clock::now();
    for (auto it = subscribers.begin(); it != subscribers.end();) {
      it = now - it->second > std::chrono::seconds(10) ? subscribers.erase(it) : std::next(it);
    }
    m_subscribers->Set(static_cast<double>(subscribers.size()));
    return subscribers.size();
  }

  nlohmann::json summary() {
    nlohmann::json ram = {
        {"cycle_ms", last_cycle_ms},
        {"dirty_pages_per_s", dirty_pages_per_s()},
        {"method", tracker ? tracker->method() : "none"},
        {"method_reason", method_reason},
        {"subscribers", live_subscribers()},
        {"hz", config.snapshot.hz},
        {"epoch", epoch},
        {"seq", seq},
        {"cycles", cycle},
        {"keyframes", keyframes},
        {"gaps_reported", gaps_reported},
        {"publish_failures", publish_failures},
        {"last_consistent_pause_ms", last_pause_ms},
        {"ram_path", ram_path},
        {"ram_size_bytes", map.size_bytes},
        {"layout", layout ? layout->describe() : ""},
        {"malformed_requests", malformed_requests},
    };
    if (!unavailable_reason.empty()) ram["unavailable"] = unavailable_reason;
    return {{"ram", ram}};
  }

  // ---- commands ----
  shared::Bytes reply(const std::optional<Error>& error, uint64_t keyframe_id, bool with_service) {
    flatbuffers::FlatBufferBuilder fbb(512);
    flatbuffers::Offset<fb::common::Error> err;
    if (error) {
      err = fb::common::CreateError(fbb, static_cast<int>(error->code),
                                    fbb.CreateString(error->message));
    }
    flatbuffers::Offset<fb::health::ServiceStatus> svc;
    if (with_service) {
      svc = shared::build_service_status(
          fbb, shared::own_status(config.instance.name, "ram-snapshotter", started_at,
                                  metrics ? metrics->url() : "", summary().dump()));
    }
    fbb.Finish(fb::ram::CreateRamReply(fbb, err, keyframe_id, svc));
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }

  shared::Bytes on_request(shared::ByteSpan b) {
    if (!shared::request_is_valid(b, fb::ram::RamRequestIdentifier(),
                                  fb::ram::VerifyRamRequestBuffer)) {
      ++malformed_requests;
      m_malformed->Increment();
      return reply(Error{Errc::kProtocol, "request is not a valid RamRequest (GBRM)"}, 0, false);
    }
    const auto* req = fb::ram::GetRamRequest(b.data());
    auto name_of = [](const flatbuffers::String* s) {
      std::string n = s ? s->str() : "";
      return n.empty() ? std::string("anonymous") : n.substr(0, 128);
    };
    switch (req->command_type()) {
      case fb::ram::Command::common_GetStatus:
        return reply(std::nullopt, 0, true);
      case fb::ram::Command::Heartbeat:
        subscribers[name_of(req->command_as_Heartbeat()->subscriber())] = Clock::now();
        return reply(std::nullopt, 0, false);
      case fb::ram::Command::RequestKeyframe: {
        const auto* k = req->command_as_RequestKeyframe();
        subscribers[name_of(k->subscriber())] = Clock::now();
        const std::string reason = k->reason() ? k->reason()->str() : "";
        if (reason.rfind("gap", 0) == 0) {
          ++gaps_reported;
          m_gaps->Increment();
        }
        keyframe_due = true;
        consistent_due = consistent_due || k->consistent();
        if (promised_keyframe_id == 0) promised_keyframe_id = next_keyframe_id++;
        return reply(std::nullopt, promised_keyframe_id, false);
      }
      default:
        ++malformed_requests;
        m_malformed->Increment();
        return reply(Error{Errc::kInvalidArgument, "request carries no command"}, 0, false);
    }
  }
};

Snapshotter::Snapshotter(shared::Config config, shared::StatePaths paths)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(paths))) {}
Snapshotter::~Snapshotter() = default;

Result<void> Snapshotter::run(const std::atomic<bool>& stop) {
  Impl& s = *impl_;
  s.log = shared::make_logger("ram-snapshotter");
  GB_TRY(s.paths.create());
  auto lock = shared::FileLock::acquire(
      s.paths.dir() + "/ram-snapshotter.lock",
      "another ram-snapshotter runs for " + s.paths.dir() + " (one per state dir)");
  if (!lock) return tl::unexpected(lock.error());
  GB_TRY(s.setup_metrics());
  install_sigbus_guard();
  auto cmd = shared::CommandServer::bind(s.paths.service_endpoint("ram-snapshotter"));
  if (!cmd) return tl::unexpected(cmd.error());
  s.commands = std::move(*cmd);
  s.log->info("command endpoint {}, metrics {}, {} Hz", s.paths.service_endpoint("ram-snapshotter"),
              s.metrics->url(), s.config.snapshot.hz);

  const auto period = std::chrono::nanoseconds(1'000'000'000LL / s.config.snapshot.hz);
  auto next = Clock::now();
  const auto handler = [&s](shared::ByteSpan b) { return s.on_request(b); };
  const auto reject = [&s](const std::string& why) {
    ++s.malformed_requests;
    s.m_malformed->Increment();
    return s.reply(Error{Errc::kProtocol, why}, 0, false);
  };
  while (!stop.load()) {
    // Serve commands until the next cycle is due.
    for (;;) {
      const auto now = Clock::now();
      if (now >= next || stop.load()) break;
      const auto wait = std::chrono::duration_cast<milliseconds>(next - now);
      if (auto r = s.commands->serve_once(std::max(wait, milliseconds(1)), handler, reject); !r) {
        s.log->warn("{}", r.error().message);
      }
    }
    next += period;
    if (Clock::now() > next + period) next = Clock::now() + period;  // overran: don't burst
    s.try_init_iox();
    s.guarded_cycle();
  }
  s.publisher.reset();
  return {};
}

}  // namespace glassbox::ram_snapshotter
