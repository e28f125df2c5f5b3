// glassbox-smt-synthesizer: "trace.hot" events -> worker pool (synthesize_block) -> the
// microcode library (SQLite), "synth.result" events, metrics, and `glassbox synth`. See
// service.hpp for the contract.
#include "services/smt_synthesizer/service.hpp"

#include <flatbuffers/flatbuffers.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "events_generated.h"
#include "miner_generated.h"
#include "services/smt_synthesizer/library.hpp"
#include "services/smt_synthesizer/synthesize.hpp"
#include "shared/bus.hpp"
#include "shared/health.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/process.hpp"
#include "synth_generated.h"

namespace glassbox::smt {
namespace {

namespace fb = glassbox::schema;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxBlockBytes = 4096;  // a TB is at most a page of code
constexpr uint32_t kMaxList = 4096;

int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Job {
  uint64_t hash = 0;
  uint64_t pc = 0;
  std::vector<uint8_t> bytes;
};

struct Done {
  Job job;
  SynthOutcome outcome;
};

}  // namespace

struct Service::Impl {
  shared::Config config;
  shared::StatePaths paths;
  std::shared_ptr<spdlog::logger> log;
  Clock::time_point started_at = Clock::now();

  std::unique_ptr<shared::MetricsExposer> metrics;
  prometheus::Family<prometheus::Counter>* m_blocks = nullptr;
  prometheus::Counter* m_cache_hits = nullptr;
  prometheus::Counter* m_dropped = nullptr;
  prometheus::Counter* m_bad_events = nullptr;
  prometheus::Counter* m_malformed = nullptr;
  prometheus::Counter* m_synth_seconds = nullptr;
  prometheus::Counter* m_verify_seconds = nullptr;
  prometheus::Gauge* m_queue = nullptr;
  prometheus::Gauge* m_library = nullptr;

  std::unique_ptr<shared::CommandServer> commands;
  std::unique_ptr<shared::EventPublisher> events;
  std::unique_ptr<shared::EventSubscriber> hot_events;
  std::unique_ptr<Library> library;
  std::string db_path;

  // Worker pool.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job> jobs;   // guarded by mu
  std::deque<Done> done;  // guarded by mu
  bool stopping = false;  // guarded by mu
  std::vector<std::thread> workers;
  std::unordered_map<uint64_t, std::vector<uint64_t>> pending;  // hash -> pcs seen meanwhile

  uint64_t hot_seen = 0, cache_hits = 0, dropped = 0, bad_events = 0, malformed_requests = 0;
  uint64_t cegis_improved = 0;  // blocks whose program CEGIS made shorter
  uint64_t catch_up_known = 0;  // miner's top blocks already in the library (not redone)
  std::map<std::string, uint64_t> by_status;
  uint32_t busy = 0;  // guarded by mu

  Impl(shared::Config c, shared::StatePaths p) : config(std::move(c)), paths(std::move(p)) {}

  ~Impl() { stop_workers(); }

  Result<void> setup_metrics() {
    const uint32_t port = config.metrics.base_port == 0 ? 0 : config.metrics.base_port + 6;
    auto m = shared::MetricsExposer::start(config.metrics.host, port);
    if (!m) return tl::unexpected(m.error());
    metrics = std::move(*m);
    auto& reg = metrics->registry();
    const std::map<std::string, std::string> labels = {{"instance", config.instance.name}};
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(reg).Add(labels);
    };
    m_blocks = &prometheus::BuildCounter()
                    .Name("glassbox_synth_blocks_total")
                    .Help("Blocks synthesized, by outcome (verified, unsupported, timeout, failed)")
                    .Register(reg);
    for (const char* s : {"verified", "unsupported", "timeout", "failed"}) {
      m_blocks->Add({{"instance", config.instance.name}, {"status", s}});
    }
    m_cache_hits = counter("glassbox_synth_cache_hits_total",
                           "Hot blocks answered from the microcode library");
    m_dropped =
        counter("glassbox_synth_dropped_total", "Hot blocks dropped because the queue was full");
    m_bad_events = counter("glassbox_synth_bad_events_total",
                           "trace.hot events without usable bytes (empty or too large)");
    m_malformed = counter("glassbox_synth_malformed_requests_total",
                          "Command requests that failed FlatBuffers verification");
    m_synth_seconds = counter("glassbox_synth_synthesis_seconds_total",
                              "Time spent translating and searching (CEGIS)");
    m_verify_seconds =
        counter("glassbox_synth_verify_seconds_total", "Time Z3 spent proving the winners");
    m_queue = &prometheus::BuildGauge()
                   .Name("glassbox_synth_queue_blocks")
                   .Help("Blocks waiting for or in a worker")
                   .Register(reg)
                   .Add(labels);
    m_library = &prometheus::BuildGauge()
                     .Name("glassbox_synth_library_blocks")
                     .Help("Blocks in the microcode library")
                     .Register(reg)
                     .Add(labels);
    return {};
  }

  // ---- workers ----
  void start_workers() {
    SynthOptions o;
    o.verify_timeout_ms = config.synth.verify_timeout_ms;
    o.cegis_timeout_ms = config.synth.cegis_timeout_ms;
    o.cegis_max_insns = config.synth.cegis_max_insns;
    for (uint32_t i = 0; i < config.synth.workers; ++i) {
      workers.emplace_back([this, o] {
        for (;;) {
          Job job;
          {
            std::unique_lock lk(mu);
            cv.wait(lk, [&] { return stopping || !jobs.empty(); });
            if (stopping) return;
            job = std::move(jobs.front());
            jobs.pop_front();
            ++busy;
          }
          // Phase 1 (the proved direct translation) is stored and published at once; phase 2
          // (CEGIS) replaces it only when it found a shorter proved program.
          BlockSynthesis synthesis(job.bytes, job.pc, o);
          SynthOutcome out = synthesis.direct();
          const bool verified = out.status == "verified";
          {
            std::lock_guard lk(mu);
            if (!verified) --busy;
            done.push_back(Done{job, out});
          }
          if (!verified) continue;
          const bool shorter = synthesis.improve(out);
          std::lock_guard lk(mu);
          --busy;
          if (shorter) done.push_back(Done{std::move(job), std::move(out)});
        }
      });
    }
  }
  void stop_workers() {
    {
      std::lock_guard lk(mu);
      stopping = true;
    }
    cv.notify_all();
    for (auto& t : workers) {
      if (t.joinable()) t.join();
    }
    workers.clear();
  }

  // ---- events ----
  void publish_result(uint64_t pc, uint64_t hash, const LibraryEntry& e, bool cached) {
    if (!events) return;
    flatbuffers::FlatBufferBuilder fbb(512 + e.program_json.size());
    auto body = fb::events::CreateSynthResult(
        fbb, pc, hash, fbb.CreateString(e.status), fbb.CreateString(e.reason),
        fbb.CreateString(e.method), e.n_x86_insns, e.n_pixel_insns,
        fbb.CreateString(e.program_json), cached);
    auto ev = fb::events::CreateEvent(
        fbb, fbb.CreateString(config.instance.name), fbb.CreateString("smt-synthesizer"),
        static_cast<uint64_t>(unix_ns()), fb::events::Body::SynthResult, body.Union());
    fb::events::FinishEventBuffer(fbb, ev);
    (void)events->publish("synth.result", {fbb.GetBufferPointer(), fbb.GetSize()});
  }

  // `catch_up`: from pattern-miner's GetHot rather than an event; blocks already in the
  // library are then only recorded, not announced again.
  void on_hot(uint64_t pc, const flatbuffers::Vector<uint8_t>* bytes, bool catch_up = false) {
    if (!catch_up) ++hot_seen;
    if (!bytes || bytes->size() == 0 || bytes->size() > kMaxBlockBytes) {
      ++bad_events;
      m_bad_events->Increment();
      return;
    }
    const uint64_t hash = XXH3_64bits(bytes->data(), bytes->size());
    if (auto it = pending.find(hash); it != pending.end()) {
      it->second.push_back(pc);
      return;
    }
    auto known = library->get(hash);
    if (!known) {
      log->warn("{}", known.error().message);
      return;
    }
    if (*known) {
      ++cache_hits;
      m_cache_hits->Increment();
      if (catch_up) {
        ++catch_up_known;
        return;
      }
      if (auto r = library->seen(pc, hash, unix_ns()); !r) log->warn("{}", r.error().message);
      publish_result(pc, hash, **known, true);
      return;
    }
    std::lock_guard lk(mu);
    if (jobs.size() >= config.synth.queue_max) {
      ++dropped;
      m_dropped->Increment();
      return;
    }
    pending[hash] = {};
    jobs.push_back(Job{hash, pc, std::vector<uint8_t>(bytes->begin(), bytes->end())});
    cv.notify_one();
  }

  void drain_hot_events() {
    if (!hot_events) return;
    for (int i = 0; i < 256; ++i) {
      auto e = hot_events->receive(milliseconds(0));
      if (!e || !*e) return;
      const auto* ev = fb::events::GetEvent((*e)->event.data());
      if (const auto* h = ev->body_as_HotBlockFound()) on_hot(h->pc(), h->bytes());
    }
  }

  // Events published while this service was down (or before its subscription took: ZeroMQ
  // PUB/SUB drops them) are not replayed; pattern-miner's current top blocks are, so every
  // 10 s the service asks for them and queues the ones it lacks.
  void catch_up_with_miner() {
    flatbuffers::FlatBufferBuilder fbb(64);
    auto q = fb::miner::CreateGetHot(fbb, config.miner.publish_top);
    fb::miner::FinishMinerRequestBuffer(
        fbb, fb::miner::CreateMinerRequest(fbb, fb::miner::MinerCommand::GetHot, q.Union()));
    auto bytes = shared::request(paths.service_endpoint("pattern-miner"),
                                 {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(2000));
    if (!bytes) return;  // no miner (yet): events will come, or the next try
    flatbuffers::Verifier v(bytes->data(), bytes->size());
    if (bytes->size() < 8 || !v.VerifyBuffer<fb::miner::MinerReply>(nullptr)) return;
    const auto* r = flatbuffers::GetRoot<fb::miner::MinerReply>(bytes->data());
    if (r->error() || !r->blocks()) return;
    for (const auto* b : *r->blocks()) {
      if (b) on_hot(b->pc(), b->bytes(), true);
    }
  }

  void drain_results() {
    std::deque<Done> finished;
    {
      std::lock_guard lk(mu);
      finished.swap(done);
      m_queue->Set(static_cast<double>(jobs.size() + busy));
    }
    for (auto& d : finished) {
      LibraryEntry e;
      e.bytes_hash = d.job.hash;
      e.bytes = d.job.bytes;
      e.first_pc = d.job.pc;
      e.status = d.outcome.status;
      e.reason = d.outcome.reason;
      e.method = d.outcome.method;
      e.program_json = d.outcome.status == "verified" ? pixel::to_json(d.outcome.program) : "";
      e.cegis = d.outcome.cegis_note;
      static const char* kFlags[] = {"CF", "PF", "ZF", "SF", "OF"};
      for (unsigned i = 0; i < 5; ++i) {
        if (d.outcome.undefined_flags & (1u << i)) e.undefined_flags.emplace_back(kFlags[i]);
      }
      e.n_x86_insns = d.outcome.n_x86_insns;
      e.n_pixel_insns = d.outcome.n_pixel_insns;
      e.n_direct_insns = d.outcome.n_direct_insns;
      e.synth_ms = d.outcome.synth_ms;
      e.verify_ms = d.outcome.verify_ms;
      e.created_unix_ns = unix_ns();
      if (auto r = library->put(e); !r) log->warn("{}", r.error().message);
      std::vector<uint64_t> pcs = {d.job.pc};
      if (auto it = pending.find(d.job.hash); it != pending.end()) {
        pcs.insert(pcs.end(), it->second.begin(), it->second.end());
        pending.erase(it);
      }
      for (uint64_t pc : pcs) {
        if (auto r = library->seen(pc, d.job.hash, unix_ns()); !r) {
          log->warn("{}", r.error().message);
        }
      }
      const bool update = e.method == "cegis";  // phase 2 of a block counted in phase 1
      if (update) {
        ++cegis_improved;
      } else {
        ++by_status[e.status];
        m_blocks->Add({{"instance", config.instance.name}, {"status", e.status}}).Increment();
      }
      m_synth_seconds->Increment(e.synth_ms / 1000.0);
      m_verify_seconds->Increment(e.verify_ms / 1000.0);
      if (e.status == "failed") {
        log->error("block {:#x}: {}", d.job.pc, e.reason);  // a lifter/translator bug
      } else {
        log->info("block {:#x}: {} {} ({} x86 -> {} pixel insns, {:.1f} + {:.1f} ms){}", d.job.pc,
                  e.status, e.method, e.n_x86_insns, e.n_pixel_insns, e.synth_ms, e.verify_ms,
                  e.reason.empty() ? "" : ": " + e.reason);
      }
      publish_result(d.job.pc, d.job.hash, e, false);
    }
    if (!finished.empty()) {
      if (auto n = library->count()) m_library->Set(static_cast<double>(*n));
    }
  }

  // ---- commands ----
  using Fbb = flatbuffers::FlatBufferBuilder;
  shared::Bytes finish(Fbb& fbb, flatbuffers::Offset<fb::synth::SynthReply> r) {
    fbb.Finish(r);
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }
  shared::Bytes error_reply(const Error& e) {
    Fbb fbb(256);
    auto err = fb::common::CreateError(fbb, static_cast<int>(e.code), fbb.CreateString(e.message));
    fb::synth::SynthReplyBuilder b(fbb);
    b.add_error(err);
    return finish(fbb, b.Finish());
  }

  flatbuffers::Offset<fb::synth::SynthBlock> block_of(Fbb& fbb, const LibraryEntry& e) {
    std::vector<flatbuffers::Offset<flatbuffers::String>> flags;
    for (const auto& f : e.undefined_flags) flags.push_back(fbb.CreateString(f));
    return fb::synth::CreateSynthBlock(
        fbb, e.first_pc, e.bytes_hash, fbb.CreateVector(e.bytes), fbb.CreateString(e.status),
        fbb.CreateString(e.reason), fbb.CreateString(e.method), e.n_x86_insns, e.n_pixel_insns,
        e.n_direct_insns, fbb.CreateVector(flags), fbb.CreateString(e.program_json), e.synth_ms,
        e.verify_ms, fbb.CreateString(e.cegis));
  }

  nlohmann::json summary() {
    size_t queued = 0;
    uint32_t in_work = 0;
    {
      std::lock_guard lk(mu);
      queued = jobs.size();
      in_work = busy;
    }
    nlohmann::json m = {{"hot_blocks_seen", hot_seen},
                        {"cache_hits", cache_hits},
                        {"queued", queued},
                        {"in_work", in_work},
                        {"workers", config.synth.workers},
                        {"dropped", dropped},
                        {"bad_events", bad_events},
                        {"by_status", by_status},
                        {"cegis_improved", cegis_improved},
                        {"catch_up_known", catch_up_known},
                        {"db", db_path},
                        {"malformed_requests", malformed_requests}};
    if (auto n = library->count()) m["library_blocks"] = *n;
    if (!hot_events) m["waiting"] = "event bus not reachable";
    return {{"synth", m}};
  }

  shared::Bytes status_reply() {
    Fbb fbb(2048);
    auto svc = shared::build_service_status(
        fbb, shared::own_status(config.instance.name, "smt-synthesizer", started_at,
                                metrics ? metrics->url() : "", summary().dump()));
    fb::synth::SynthReplyBuilder b(fbb);
    b.add_service(svc);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_list(uint32_t limit) {
    auto rows = library->list(limit == 0 ? kMaxList : std::min(limit, kMaxList));
    if (!rows) return error_reply(rows.error());
    Fbb fbb(16384);
    std::vector<flatbuffers::Offset<fb::synth::SynthBlock>> v;
    for (const auto& e : *rows) v.push_back(block_of(fbb, e));
    auto vec = fbb.CreateVector(v);
    fb::synth::SynthReplyBuilder b(fbb);
    b.add_blocks(vec);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_show(uint64_t pc) {
    auto row = library->at_pc(pc);
    if (!row) return error_reply(row.error());
    if (!*row) {
      return error_reply(
          Error{Errc::kNotFound, fmt::format("no synthesized block at pc {:#x} (see `glassbox "
                                             "synth list`)",
                                             pc)});
    }
    Fbb fbb(4096);
    std::vector<flatbuffers::Offset<fb::synth::SynthBlock>> v = {block_of(fbb, **row)};
    auto vec = fbb.CreateVector(v);
    fb::synth::SynthReplyBuilder b(fbb);
    b.add_blocks(vec);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_request(shared::ByteSpan bytes) {
    if (!shared::request_is_valid(bytes, fb::synth::SynthRequestIdentifier(),
                                  fb::synth::VerifySynthRequestBuffer)) {
      ++malformed_requests;
      m_malformed->Increment();
      return error_reply(Error{Errc::kProtocol, "request is not a valid SynthRequest (GBSY)"});
    }
    const auto* req = fb::synth::GetSynthRequest(bytes.data());
    switch (req->command_type()) {
      case fb::synth::SynthCommand::common_GetStatus:
        return status_reply();
      case fb::synth::SynthCommand::ListBlocks:
        return on_list(req->command_as_ListBlocks()->limit());
      case fb::synth::SynthCommand::ShowBlock:
        return on_show(req->command_as_ShowBlock()->pc());
      default:
        ++malformed_requests;
        m_malformed->Increment();
        return error_reply(Error{Errc::kInvalidArgument, "request carries no command"});
    }
  }
};

Service::Service(shared::Config config, shared::StatePaths paths)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(paths))) {}
Service::~Service() = default;

Result<void> Service::run(const std::atomic<bool>& stop) {
  Impl& s = *impl_;
  s.log = shared::make_logger("smt-synthesizer");
  GB_TRY(s.paths.create());
  auto lock = shared::FileLock::acquire(
      s.paths.dir() + "/smt-synthesizer.lock",
      "another smt-synthesizer runs for " + s.paths.dir() + " (one per state dir)");
  if (!lock) return tl::unexpected(lock.error());
  GB_TRY(s.setup_metrics());
  s.db_path =
      s.config.synth.db.empty() ? s.paths.dir() + "/smt-synthesizer.sqlite" : s.config.synth.db;
  auto lib = Library::open(s.db_path);
  if (!lib) return tl::unexpected(lib.error());
  s.library = std::move(*lib);
  if (auto n = s.library->count()) s.m_library->Set(static_cast<double>(*n));
  auto cmd = shared::CommandServer::bind(s.paths.service_endpoint("smt-synthesizer"));
  if (!cmd) return tl::unexpected(cmd.error());
  s.commands = std::move(*cmd);
  if (auto p = shared::EventPublisher::connect(s.paths.bus_in_endpoint())) {
    s.events = std::move(*p);
  }
  if (auto sub = shared::EventSubscriber::connect(s.paths.bus_out_endpoint(), {"trace.hot"})) {
    s.hot_events = std::move(*sub);
  }
  s.start_workers();
  s.log->info("command endpoint {}, metrics {}, library {}, {} worker(s)",
              s.paths.service_endpoint("smt-synthesizer"), s.metrics->url(), s.db_path,
              s.config.synth.workers);
  const auto handler = [&s](shared::ByteSpan b) { return s.on_request(b); };
  const auto reject = [&s](const std::string& why) {
    ++s.malformed_requests;
    s.m_malformed->Increment();
    return s.error_reply(Error{Errc::kProtocol, why});
  };
  auto last_catch_up = Clock::now() - std::chrono::seconds(60);
  while (!stop.load()) {
    s.drain_hot_events();
    if (Clock::now() - last_catch_up > std::chrono::seconds(10)) {
      last_catch_up = Clock::now();
      s.catch_up_with_miner();
    }
    if (auto r = s.commands->serve_once(milliseconds(5), handler, reject); !r) {
      s.log->warn("{}", r.error().message);
    }
    s.drain_results();
  }
  s.stop_workers();
  s.drain_results();
  return {};
}

}  // namespace glassbox::smt
