#include "services/trace_consumer/consumer.hpp"

#include <fcntl.h>
#include <flatbuffers/flatbuffers.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
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
#include <thread>

#include "shared/bus.hpp"
#include "shared/health.hpp"
#include "shared/iox.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/process.hpp"
#include "shared/ram_layout.hpp"
#include "shared/trace_ring.hpp"
#include "trace_generated.h"
#include "vm_generated.h"

namespace glassbox::trace_consumer {
namespace {

namespace fb = glassbox::schema;
namespace tr = glassbox::trace;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kMaxTbBatchBytes = 1u << 20;  // TbRecords chunk payload
constexpr size_t kMaxTbRecordsPerDrain = 8192;
constexpr uint64_t kMaxCountsPerBatch = kMaxTbBatchBytes / 16;
constexpr uint32_t kNoEvent = 0xffffffffu;  // payload filler after a ring resync

uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// One attached trace file.
struct Attached {
  int fd = -1;
  void* base = nullptr;
  uint64_t mapped_bytes = 0;
  ino_t inode = 0;
  tr::TraceView view;
  std::vector<uint64_t> prev_counts;  // counts mode: counters at the last delta
  Clock::time_point attached_at = Clock::now();

  ~Attached() {
    if (base) ::munmap(base, mapped_bytes);
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

struct Consumer::Impl {
  shared::Config config;
  shared::StatePaths paths;
  std::shared_ptr<spdlog::logger> log;
  Clock::time_point started_at = Clock::now();
  std::string shm_path;

  std::unique_ptr<shared::MetricsExposer> metrics;
  prometheus::Counter* m_events = nullptr;
  prometheus::Counter* m_tb_records = nullptr;
  prometheus::Counter* m_batches = nullptr;
  prometheus::Counter* m_resyncs = nullptr;
  prometheus::Counter* m_malformed = nullptr;
  prometheus::Gauge* m_drops = nullptr;
  prometheus::Gauge* m_events_per_s = nullptr;
  prometheus::Gauge* m_tbs_translated = nullptr;

  std::unique_ptr<shared::CommandServer> commands;
  bool iox_ready = false;
  Clock::time_point last_iox_try{};
  std::unique_ptr<shared::ChunkPublisher> publisher;     // "trace": events, counts
  std::unique_ptr<shared::ChunkPublisher> tb_publisher;  // "trace-tbs": TB records

  std::unique_ptr<Attached> at;
  std::string why_detached = "no trace file yet";
  Clock::time_point last_attach_try{};
  Clock::time_point last_inode_check{};
  std::optional<shared::RamLayout> layout;  // gpa <-> RAM-file offset, from vm-supervisor
  Clock::time_point last_layout_try{};
  Clock::time_point last_counts{};

  uint64_t seq = 0;     // "trace" batches
  uint64_t tb_seq = 0;  // "trace-tbs" batches
  uint64_t events_total = 0, tb_records_total = 0, batches = 0, publish_failures = 0;
  uint64_t counted_total = 0;  // counts mode: executions seen through counter deltas
  uint64_t malformed_requests = 0, attaches = 0;
  tr::EventDrainStats event_stats;
  tr::TbDrainStats tb_stats;
  std::deque<std::pair<Clock::time_point, uint64_t>> rate_window;  // (when, events_total)

  Impl(shared::Config c, shared::StatePaths p)
      : config(std::move(c)),
        paths(std::move(p)),
        shm_path(shared::trace_shm_path(config.instance.name)) {}

  // ---- setup ----
  Result<void> setup_metrics() {
    const uint32_t port = config.metrics.base_port == 0 ? 0 : config.metrics.base_port + 4;
    auto m = shared::MetricsExposer::start(config.metrics.host, port);
    if (!m) return tl::unexpected(m.error());
    metrics = std::move(*m);
    auto& reg = metrics->registry();
    const std::map<std::string, std::string> labels = {{"instance", config.instance.name}};
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(reg).Add(labels);
    };
    auto gauge = [&](const char* name, const char* help) {
      return &prometheus::BuildGauge().Name(name).Help(help).Register(reg).Add(labels);
    };
    m_events = counter("glassbox_trace_events_total",
                       "Block executions republished (stream events and counter deltas)");
    m_tb_records = counter("glassbox_trace_tb_records_total", "TB records republished");
    m_batches = counter("glassbox_trace_batches_total", "iceoryx batches published");
    m_resyncs = counter("glassbox_trace_resyncs_total",
                        "Corrupt ring indices or records skipped (rings resynced)");
    m_malformed = counter("glassbox_trace_malformed_requests_total",
                          "Command requests that failed FlatBuffers verification");
    m_drops = gauge("glassbox_trace_drops", "Events the plugin dropped (rings full), this QEMU");
    m_events_per_s = gauge("glassbox_trace_events_per_second", "Block executions per second");
    m_tbs_translated = gauge("glassbox_trace_tbs_translated", "TBs translated, this QEMU");
    return {};
  }

  void try_init_iox() {
    if (iox_ready || Clock::now() - last_iox_try < milliseconds(500)) return;
    last_iox_try = Clock::now();
    if (!shared::roudi_available()) return;
    if (auto r = shared::init_runtime(config.instance.name, "trace-consumer"); !r) return;
    auto p = shared::ChunkPublisher::create(config.instance.name, "trace", 0);
    auto t = shared::ChunkPublisher::create(config.instance.name, "trace-tbs", 0);
    if (!p || !t) {
      log->warn("iceoryx publisher: {}", (!p ? p.error() : t.error()).message);
      return;
    }
    publisher = std::move(*p);
    tb_publisher = std::move(*t);
    iox_ready = true;
    log->info("publishing trace batches on (glassbox, {}, trace)", config.instance.name);
  }

  // ---- the trace file ----
  void try_attach() {
    if (at || Clock::now() - last_attach_try < milliseconds(250)) return;
    last_attach_try = Clock::now();
    const int fd = ::open(shm_path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      why_detached = "no trace file " + shm_path + " (is [trace] mode on and QEMU running?)";
      return;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(tr::kTraceHeaderBytes) ||
        static_cast<uint64_t>(st.st_size) > tr::kMaxTraceFileBytes) {
      ::close(fd);
      why_detached = shm_path + ": not a trace file yet (size " + std::to_string(st.st_size) + ")";
      return;
    }
    auto a = std::make_unique<Attached>();
    a->fd = fd;
    a->inode = st.st_ino;
    a->mapped_bytes = static_cast<uint64_t>(st.st_size);
    a->base = ::mmap(nullptr, a->mapped_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (a->base == MAP_FAILED) {
      a->base = nullptr;
      why_detached = shm_path + ": mmap failed";
      return;
    }
    const tr::TraceError e = tr::make_view(a->base, a->mapped_bytes, &a->view);
    if (e != tr::TraceError::kOk) {
      why_detached = shm_path + ": " + tr::to_string(e);
      return;
    }
    if (a->view.mode == tr::TraceMode::kCounts) a->prev_counts.assign(a->view.max_tbs, 0);
    at = std::move(a);
    ++attaches;
    why_detached.clear();
    layout.reset();
    last_layout_try = {};
    log->info("attached to {}: generation {:x}, {} mode, {} vCPU rings of {} events", shm_path,
              at->view.generation, at->view.mode == tr::TraceMode::kStream ? "stream" : "counts",
              at->view.n_vcpus, at->view.ring_events);
  }

  // A new QEMU replaces the file (vm-supervisor unlinks it before each boot): drain what is
  // left of the old one, then let try_attach() take the new one.
  void check_replaced() {
    if (!at || Clock::now() - last_inode_check < milliseconds(500)) return;
    last_inode_check = Clock::now();
    struct stat st {};
    const bool gone = ::stat(shm_path.c_str(), &st) != 0 || st.st_ino != at->inode;
    if (!gone) return;
    drain_all();
    log->info("trace file of generation {:x} replaced or removed; detaching", at->view.generation);
    at.reset();
    why_detached = "trace file replaced; waiting for the new one";
  }

  void refresh_layout() {
    if (layout || Clock::now() - last_layout_try < milliseconds(1000)) return;
    last_layout_try = Clock::now();
    flatbuffers::FlatBufferBuilder fbb(64);
    auto body = fb::vm::CreateGetRamLayout(fbb);
    fb::vm::FinishVmRequestBuffer(
        fbb, fb::vm::CreateVmRequest(fbb, fb::vm::Command::GetRamLayout, body.Union()));
    auto bytes = shared::request(paths.service_endpoint("vm-supervisor"),
                                 {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(1000));
    if (!bytes) return;
    flatbuffers::Verifier v(bytes->data(), bytes->size());
    if (!v.VerifyBuffer<fb::vm::VmReply>(nullptr)) return;
    const auto* reply = flatbuffers::GetRoot<fb::vm::VmReply>(bytes->data());
    if (reply->error() || !reply->status() || !reply->status()->ram_layout()) return;
    std::vector<shared::RamRegion> regions;
    uint64_t file_end = 0;
    for (const auto* r : *reply->status()->ram_layout()) {
      regions.push_back(shared::RamRegion{Gpa(r->gpa()), r->size_bytes(), r->file_offset()});
      file_end = std::max(file_end, r->file_offset() + r->size_bytes());
    }
    if (auto l = shared::RamLayout::from_regions(std::move(regions), file_end)) {
      layout.emplace(std::move(*l));
    }
  }

  std::optional<uint64_t> gpa_of(uint64_t ram_offset) const {
    if (!layout || ram_offset == tr::kNoRamOffset) return std::nullopt;
    for (const auto& r : layout->regions()) {
      if (ram_offset >= r.file_offset && ram_offset - r.file_offset < r.size_bytes) {
        return r.gpa.value + (ram_offset - r.file_offset);
      }
    }
    return std::nullopt;
  }

  uint64_t drops_total() const {
    if (!at) return 0;
    uint64_t d = at->view.header->events_bad_vcpu.load(std::memory_order_relaxed);
    for (uint32_t i = 0; i < at->view.n_vcpus; ++i) {
      d += at->view.event_ring(i)->drops.load(std::memory_order_relaxed);
    }
    return d;
  }

  // ---- publishing ----
  shared::Bytes batch_header(fb::trace::BatchKind kind, uint32_t vcpu, uint32_t n_items,
                             uint32_t payload_bytes, bool gpa_valid) {
    flatbuffers::FlatBufferBuilder fbb(256);
    const uint64_t batch_seq = kind == fb::trace::BatchKind::TbRecords ? tb_seq : seq;
    auto h = fb::trace::CreateTraceBatchHeader(fbb, fbb.CreateString(config.instance.name),
                                               batch_seq, at->view.generation, kind, vcpu, n_items,
                                               payload_bytes, gpa_valid, unix_ns(), drops_total());
    fbb.Finish(h);
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }

  bool publish(const shared::Bytes& header, uint64_t payload_bytes,
               const std::function<void(uint8_t*)>& fill, bool tb_records = false) {
    shared::ChunkPublisher* pub = tb_records ? tb_publisher.get() : publisher.get();
    if (!pub) return false;
    if (auto r = pub->publish(header, payload_bytes, fill); !r) {
      ++publish_failures;
      return false;
    }
    ++(tb_records ? tb_seq : seq);
    ++batches;
    m_batches->Increment();
    return true;
  }

  // TB records, translated to gpas. Waits (up to 3 s after attaching) for the RAM layout so
  // that records carry gpas; after that they go out with gpa_valid = false.
  size_t drain_tb_records() {
    const bool have_layout = layout.has_value();
    if (!have_layout && Clock::now() - at->attached_at < std::chrono::seconds(3)) return 0;
    std::vector<uint8_t> staging;
    staging.reserve(64 * 1024);
    uint32_t n = 0;
    const uint64_t resyncs_before = tb_stats.resyncs;
    tr::drain_tb_records(
        *at->view.tb_ring, at->view.tb_data, at->view.tb_ring_bytes, kMaxTbRecordsPerDrain,
        [&](const tr::TbRecordHeader& h, std::span<const uint8_t> bytes) {
          tr::TbRecordHeader out = h;
          if (have_layout) out.ram_offset = gpa_of(h.ram_offset).value_or(tr::kNoRamOffset);
          const size_t at_pos = staging.size();
          staging.resize(at_pos + h.total_bytes, 0);
          std::memcpy(staging.data() + at_pos, &out, sizeof out);
          std::memcpy(staging.data() + at_pos + sizeof out, bytes.data(), bytes.size());
          ++n;
        },
        &tb_stats);
    if (tb_stats.resyncs != resyncs_before) {
      m_resyncs->Increment(static_cast<double>(tb_stats.resyncs - resyncs_before));
    }
    if (n == 0) return 0;
    // Split into chunks of at most kMaxTbBatchBytes at record boundaries.
    size_t pos = 0;
    while (pos < staging.size()) {
      size_t end = pos;
      uint32_t k = 0;
      while (end < staging.size()) {
        uint32_t total;
        std::memcpy(&total, staging.data() + end + 4, 4);
        if (end + total - pos > kMaxTbBatchBytes && k > 0) break;
        end += total;
        ++k;
      }
      const auto header = batch_header(fb::trace::BatchKind::TbRecords, 0, k,
                                       static_cast<uint32_t>(end - pos), have_layout);
      const uint8_t* src = staging.data() + pos;
      const size_t len = end - pos;
      // A record lost here would leave tb_ids without a pc; retry briefly on a full pool.
      bool ok = false;
      for (int attempt = 0; attempt < 50 && !ok; ++attempt) {
        ok = publish(
            header, len, [&](uint8_t* p) { std::memcpy(p, src, len); }, true);
        if (!ok) std::this_thread::sleep_for(milliseconds(2));
      }
      if (ok) {
        tb_records_total += k;
        m_tb_records->Increment(k);
      }
      pos = end;
    }
    return n;
  }

  // Stream mode: each vCPU ring's events straight into loaned chunks.
  size_t drain_events() {
    size_t total = 0;
    const uint64_t batch = config.trace.batch_events;
    for (uint32_t i = 0; i < at->view.n_vcpus; ++i) {
      tr::EventRing* ring = at->view.event_ring(i);
      const uint32_t* events = at->view.events(i);
      const uint32_t cap = at->view.ring_events;
      for (int round = 0; round < 64; ++round) {
        const uint64_t head = ring->head.load(std::memory_order_acquire);
        const uint64_t tail = ring->tail.load(std::memory_order_relaxed);
        const uint64_t avail = head - tail;
        if (avail == 0) break;
        if (avail > cap) {  // impossible from a correct producer: resync, count
          const uint64_t before = event_stats.resyncs;
          tr::drain_events(*ring, events, cap, {}, &event_stats);
          m_resyncs->Increment(static_cast<double>(event_stats.resyncs - before));
          break;
        }
        const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(avail, batch));
        const auto header = batch_header(fb::trace::BatchKind::Events, i, n, n * 4, false);
        size_t got = 0;
        const bool ok = publish(header, uint64_t{n} * 4, [&](uint8_t* p) {
          auto* out = reinterpret_cast<uint32_t*>(p);
          got = tr::drain_events(*ring, events, cap, std::span<uint32_t>(out, n), &event_stats);
          for (size_t k = got; k < n; ++k) out[k] = kNoEvent;
        });
        if (!ok) break;  // pool exhausted: the events stay in the ring for the next pass
        total += got;
        if (got < n) break;
      }
    }
    events_total += total;
    m_events->Increment(static_cast<double>(total));
    return total;
  }

  // Counts mode: counter deltas since the last pass, every 100 ms.
  size_t drain_counts(bool force) {
    if (!force && Clock::now() - last_counts < milliseconds(100)) return 0;
    last_counts = Clock::now();
    const uint64_t n = std::min<uint64_t>(
        at->view.header->tbs_translated.load(std::memory_order_relaxed), at->view.max_tbs);
    std::vector<std::pair<uint32_t, uint64_t>> deltas;
    for (uint64_t id = 0; id < n; ++id) {
      const uint64_t now =
          std::atomic_ref<uint64_t>(at->view.counters[id]).load(std::memory_order_relaxed);
      if (now > at->prev_counts[id]) {
        deltas.emplace_back(static_cast<uint32_t>(id), now - at->prev_counts[id]);
      }
    }
    size_t sent = 0;
    for (size_t pos = 0; pos < deltas.size();) {
      const size_t k = std::min<size_t>(deltas.size() - pos, kMaxCountsPerBatch);
      const auto header = batch_header(fb::trace::BatchKind::Counts, 0, static_cast<uint32_t>(k),
                                       static_cast<uint32_t>(k * 16), false);
      const bool ok = publish(header, k * 16, [&](uint8_t* p) {
        for (size_t j = 0; j < k; ++j) {
          const uint32_t id = deltas[pos + j].first, zero = 0;
          const uint64_t d = deltas[pos + j].second;
          std::memcpy(p + j * 16, &id, 4);
          std::memcpy(p + j * 16 + 4, &zero, 4);
          std::memcpy(p + j * 16 + 8, &d, 8);
        }
      });
      if (!ok) break;  // not advanced: these deltas go out with the next pass
      for (size_t j = 0; j < k; ++j) {
        at->prev_counts[deltas[pos + j].first] += deltas[pos + j].second;
        counted_total += deltas[pos + j].second;
        events_total += deltas[pos + j].second;
        m_events->Increment(static_cast<double>(deltas[pos + j].second));
      }
      sent += k;
      pos += k;
    }
    return sent;
  }

  // Everything available now (before detaching, and each loop pass).
  size_t drain_all() {
    if (!at || !publisher) return 0;
    size_t n = drain_tb_records();
    if (at->view.mode == tr::TraceMode::kStream) {
      n += drain_events();
    } else {
      n += drain_counts(false);
    }
    return n;
  }

  void update_rate() {
    const auto now = Clock::now();
    rate_window.emplace_back(now, events_total);
    while (rate_window.size() > 2 && now - rate_window.front().first > std::chrono::seconds(2)) {
      rate_window.pop_front();
    }
    m_drops->Set(static_cast<double>(drops_total()));
    m_events_per_s->Set(events_per_s());
    if (at) {
      m_tbs_translated->Set(
          static_cast<double>(at->view.header->tbs_translated.load(std::memory_order_relaxed)));
    }
  }
  double events_per_s() const {
    if (rate_window.size() < 2) return 0;
    const double span =
        std::chrono::duration<double>(rate_window.back().first - rate_window.front().first).count();
    return span > 0
               ? static_cast<double>(rate_window.back().second - rate_window.front().second) / span
               : 0;
  }

  // ---- status and commands ----
  nlohmann::json summary() {
    nlohmann::json t = {{"mode", config.trace.mode},
                        {"shm", shm_path},
                        {"attached", at != nullptr},
                        {"events_per_s", events_per_s()},
                        {"events_total", events_total},
                        {"drops", drops_total()},
                        {"tb_records", tb_records_total},
                        {"batches", batches},
                        {"publish_failures", publish_failures},
                        {"event_ring_resyncs", event_stats.resyncs},
                        {"tb_ring_resyncs", tb_stats.resyncs},
                        {"tb_records_dropped_by_plugin", 0},
                        {"attaches", attaches},
                        {"malformed_requests", malformed_requests}};
    if (at) {
      char gen[24];
      std::snprintf(gen, sizeof gen, "%016llx",
                    static_cast<unsigned long long>(at->view.generation));
      t["generation"] = gen;
      t["mode"] = at->view.mode == tr::TraceMode::kStream ? "stream" : "counts";
      t["n_vcpus"] = at->view.n_vcpus;
      t["tbs_translated"] = at->view.header->tbs_translated.load(std::memory_order_relaxed);
      t["tbs_outside_ram"] = at->view.header->tbs_outside_ram.load(std::memory_order_relaxed);
      t["tb_records_dropped_by_plugin"] = at->view.tb_ring->drops.load(std::memory_order_relaxed);
      t["gpa_layout"] = layout.has_value();
    } else {
      t["waiting"] = why_detached;
    }
    return {{"trace", t}};
  }

  shared::Bytes reply(const std::optional<Error>& error, bool with_service) {
    flatbuffers::FlatBufferBuilder fbb(1024);
    flatbuffers::Offset<fb::common::Error> err;
    if (error) {
      err = fb::common::CreateError(fbb, static_cast<int>(error->code),
                                    fbb.CreateString(error->message));
    }
    flatbuffers::Offset<fb::health::ServiceStatus> svc;
    if (with_service) {
      svc = shared::build_service_status(
          fbb, shared::own_status(config.instance.name, "trace-consumer", started_at,
                                  metrics ? metrics->url() : "", summary().dump()));
    }
    fbb.Finish(fb::trace::CreateTraceReply(fbb, err, svc));
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }

  shared::Bytes on_request(shared::ByteSpan b) {
    if (!shared::request_is_valid(b, fb::trace::TraceRequestIdentifier(),
                                  fb::trace::VerifyTraceRequestBuffer)) {
      ++malformed_requests;
      m_malformed->Increment();
      return reply(Error{Errc::kProtocol, "request is not a valid TraceRequest (GBTR)"}, false);
    }
    const auto* req = fb::trace::GetTraceRequest(b.data());
    if (req->command_type() == fb::trace::TraceCommand::common_GetStatus) {
      return reply(std::nullopt, true);
    }
    ++malformed_requests;
    m_malformed->Increment();
    return reply(Error{Errc::kInvalidArgument, "request carries no command"}, false);
  }
};

Consumer::Consumer(shared::Config config, shared::StatePaths paths)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(paths))) {}
Consumer::~Consumer() = default;

Result<void> Consumer::run(const std::atomic<bool>& stop) {
  Impl& s = *impl_;
  s.log = shared::make_logger("trace-consumer");
  GB_TRY(s.paths.create());
  auto lock = shared::FileLock::acquire(
      s.paths.dir() + "/trace-consumer.lock",
      "another trace-consumer runs for " + s.paths.dir() + " (one per state dir)");
  if (!lock) return tl::unexpected(lock.error());
  GB_TRY(s.setup_metrics());
  auto cmd = shared::CommandServer::bind(s.paths.service_endpoint("trace-consumer"));
  if (!cmd) return tl::unexpected(cmd.error());
  s.commands = std::move(*cmd);
  s.log->info("command endpoint {}, metrics {}, trace file {}",
              s.paths.service_endpoint("trace-consumer"), s.metrics->url(), s.shm_path);
  const auto handler = [&s](shared::ByteSpan b) { return s.on_request(b); };
  const auto reject = [&s](const std::string& why) {
    ++s.malformed_requests;
    s.m_malformed->Increment();
    return s.reply(Error{Errc::kProtocol, why}, false);
  };
  auto last_serve = Clock::now();
  auto last_rate = Clock::now();
  while (!stop.load()) {
    s.try_init_iox();
    s.try_attach();
    s.check_replaced();
    if (s.at) s.refresh_layout();
    const size_t n = s.drain_all();
    const auto now = Clock::now();
    if (now - last_rate > milliseconds(250)) {
      last_rate = now;
      s.update_rate();
    }
    // Commands every 10 ms while busy; idle, wait on the socket instead of spinning.
    if (n == 0 || now - last_serve > milliseconds(10)) {
      last_serve = now;
      if (auto r = s.commands->serve_once(milliseconds(n == 0 ? 1 : 0), handler, reject); !r) {
        s.log->warn("{}", r.error().message);
      }
    }
  }
  s.drain_all();
  s.publisher.reset();
  s.tb_publisher.reset();
  return {};
}

}  // namespace glassbox::trace_consumer
