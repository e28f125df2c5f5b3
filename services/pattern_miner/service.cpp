// glassbox-pattern-miner: trace batches (iceoryx "trace") -> MinerCore -> SQLite, bus events,
// and the answers to `glassbox hot|loops`. See miner.hpp for the model and service.hpp for
// the contract.
#include "services/pattern_miner/service.hpp"

#include <flatbuffers/flatbuffers.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "events_generated.h"
#include "miner_generated.h"
#include "semantic_generated.h"
#include "services/pattern_miner/miner.hpp"
#include "shared/bus.hpp"
#include "shared/health.hpp"
#include "shared/iox.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/process.hpp"
#include "shared/trace_ring.hpp"
#include "trace_generated.h"

namespace glassbox::pattern_miner {
namespace {

namespace fb = glassbox::schema;
namespace tr = glassbox::trace;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kKernelHalf = 0xffff800000000000ULL;
constexpr uint32_t kMaxTopN = 4096;

uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

struct Service::Impl {
  shared::Config config;
  shared::StatePaths paths;
  std::shared_ptr<spdlog::logger> log;
  Clock::time_point started_at = Clock::now();

  std::unique_ptr<shared::MetricsExposer> metrics;
  prometheus::Counter* m_batches = nullptr;
  prometheus::Counter* m_batches_lost = nullptr;
  prometheus::Counter* m_bad_batches = nullptr;
  prometheus::Counter* m_executions = nullptr;
  prometheus::Counter* m_malformed = nullptr;
  prometheus::Gauge* m_blocks = nullptr;

  std::unique_ptr<shared::CommandServer> commands;
  std::unique_ptr<shared::EventPublisher> events;
  bool iox_ready = false;
  Clock::time_point last_iox_try{};
  std::unique_ptr<shared::ChunkSubscriber> subscriber;     // "trace": events, counts
  std::unique_ptr<shared::ChunkSubscriber> tb_subscriber;  // "trace-tbs": TB records
  bool have_tb_seq = false;
  uint64_t last_tb_seq = 0;

  MinerCore core;
  std::unique_ptr<MinerStore> store;
  std::string db_path;
  bool have_generation = false;
  bool have_seq = false;
  uint64_t last_seq = 0;
  uint64_t batches = 0, batches_lost = 0, bad_batches = 0, malformed_requests = 0;
  uint64_t executions_seen = 0;
  std::string last_bad;
  std::unordered_set<uint64_t> announced;        // hot pcs already published this generation
  std::map<uint64_t, std::string> symbol_cache;  // kernel pc -> name (this generation)
  // semantic-db's region map (process -> gva -> gpa runs), refreshed at most every 2 s.
  struct Run {
    uint64_t gva, gpa, size;
    std::string who;
  };
  std::vector<Run> regions;
  Clock::time_point regions_at{};

  Impl(shared::Config c, shared::StatePaths p)
      : config(std::move(c)),
        paths(std::move(p)),
        core(MinerOptions{config.miner.top_k, config.miner.trace_threshold, {}}) {}

  Result<void> setup_metrics() {
    const uint32_t port = config.metrics.base_port == 0 ? 0 : config.metrics.base_port + 5;
    auto m = shared::MetricsExposer::start(config.metrics.host, port);
    if (!m) return tl::unexpected(m.error());
    metrics = std::move(*m);
    auto& reg = metrics->registry();
    const std::map<std::string, std::string> labels = {{"instance", config.instance.name}};
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(reg).Add(labels);
    };
    m_batches = counter("glassbox_miner_batches_total", "Trace batches taken");
    m_batches_lost = counter("glassbox_miner_batches_lost_total",
                             "Trace batches missed (sequence gaps: the miner fell behind)");
    m_bad_batches = counter("glassbox_miner_bad_batches_total", "Batches that failed checks");
    m_executions = counter("glassbox_miner_executions_total", "Block executions aggregated");
    m_malformed = counter("glassbox_miner_malformed_requests_total",
                          "Command requests that failed FlatBuffers verification");
    m_blocks = &prometheus::BuildGauge()
                    .Name("glassbox_miner_blocks")
                    .Help("Distinct block pcs with a TB record, this generation")
                    .Register(reg)
                    .Add(labels);
    return {};
  }

  void try_init_iox() {
    if (iox_ready || Clock::now() - last_iox_try < milliseconds(500)) return;
    last_iox_try = Clock::now();
    if (!shared::roudi_available()) return;
    if (auto r = shared::init_runtime(config.instance.name, "pattern-miner"); !r) return;
    // Events on a short queue: a miner that falls behind loses event batches (counted, it
    // samples) and returns their chunks to the pool, so trace-consumer keeps draining the
    // plugin's rings. TB records on a deep queue of their own: they are small and rare, and
    // a lost one would leave its tb_ids unnamed for good.
    auto s = shared::ChunkSubscriber::create(config.instance.name, "trace", 0, 8);
    auto t = shared::ChunkSubscriber::create(config.instance.name, "trace-tbs", 0, 256);
    if (s && !t) s = tl::unexpected(t.error());
    if (!s) {
      log->warn("iceoryx subscriber: {}", s.error().message);
      return;
    }
    subscriber = std::move(*s);
    tb_subscriber = std::move(*t);
    iox_ready = true;
    log->info("subscribed to (glassbox, {}, trace)", config.instance.name);
  }

  void bad(const std::string& why) {
    ++bad_batches;
    m_bad_batches->Increment();
    last_bad = why;
  }

  // ---- batches ----
  void on_generation(uint64_t g) {
    if (have_generation && g == core.generation()) return;
    if (have_generation) persist();
    core.begin_generation(g);
    have_generation = true;
    announced.clear();
    symbol_cache.clear();
    if (store) {
      if (auto r = store->load(g, core); !r) {
        log->warn("{}", r.error().message);
      } else if (*r) {
        log->info("generation {:x}: resumed from {} ({} blocks known)", g, db_path,
                  core.n_blocks_known());
      }
    }
    log->info("trace generation {:x}", g);
  }

  void on_chunk(const shared::ChunkView& c) {
    flatbuffers::Verifier v(c.header.data(), c.header.size());
    if (!v.VerifyBuffer<fb::trace::TraceBatchHeader>(nullptr)) {
      return bad("batch header failed FlatBuffers verification");
    }
    const auto* h = flatbuffers::GetRoot<fb::trace::TraceBatchHeader>(c.header.data());
    if (h->kind() == fb::trace::BatchKind::TbRecords) {  // their own topic and sequence
      if (have_tb_seq && h->seq() > last_tb_seq + 1) {
        batches_lost += h->seq() - last_tb_seq - 1;
        m_batches_lost->Increment(static_cast<double>(h->seq() - last_tb_seq - 1));
      }
      have_tb_seq = true;
      last_tb_seq = h->seq();
    } else if (have_seq && h->seq() != last_seq + 1 && h->seq() > last_seq) {
      batches_lost += h->seq() - last_seq - 1;
      m_batches_lost->Increment(static_cast<double>(h->seq() - last_seq - 1));
      // Edges across the gap would be invented: restart every vCPU's stream.
      for (uint32_t i = 0; i < 64; ++i) {
        const uint32_t filler = kNoTbEvent;
        core.add_events(i, std::span<const uint32_t>(&filler, 1));
      }
    }
    if (h->kind() != fb::trace::BatchKind::TbRecords) {
      have_seq = true;
      last_seq = h->seq();
    }
    on_generation(h->generation());
    ++batches;
    m_batches->Increment();
    const uint64_t n = h->n_items();
    const auto payload = c.payload;
    switch (h->kind()) {
      case fb::trace::BatchKind::Events: {
        if (payload.size() < n * 4) return bad("events batch shorter than n_items * 4");
        std::vector<uint32_t> ids(n);
        std::memcpy(ids.data(), payload.data(), n * 4);
        core.add_events(h->vcpu(), ids);
        executions_seen += n;
        m_executions->Increment(static_cast<double>(n));
        break;
      }
      case fb::trace::BatchKind::Counts: {
        if (payload.size() < n * 16) return bad("counts batch shorter than n_items * 16");
        for (uint64_t i = 0; i < n; ++i) {
          uint32_t id;
          uint64_t delta;
          std::memcpy(&id, payload.data() + i * 16, 4);
          std::memcpy(&delta, payload.data() + i * 16 + 8, 8);
          core.add_count(id, delta);
          executions_seen += delta;
          m_executions->Increment(static_cast<double>(delta));
        }
        break;
      }
      case fb::trace::BatchKind::TbRecords: {
        uint64_t pos = 0;
        for (uint64_t i = 0; i < n; ++i) {
          if (payload.size() - pos < sizeof(tr::TbRecordHeader)) {
            return bad("TB records batch ends inside a record header");
          }
          tr::TbRecordHeader r;
          std::memcpy(&r, payload.data() + pos, sizeof r);
          if (r.magic != tr::kTbRecordMagic || r.total_bytes < sizeof r || r.total_bytes % 8 != 0 ||
              r.total_bytes > payload.size() - pos || r.size_bytes > r.total_bytes - sizeof r) {
            return bad("TB record " + std::to_string(i) + " is malformed");
          }
          const uint64_t gpa =
              h->gpa_valid() && r.ram_offset != tr::kNoRamOffset ? r.ram_offset : kNoGpa;
          core.add_tb(r.tb_id, r.pc, gpa, r.size_bytes, r.n_insns,
                      payload.subspan(pos + sizeof r, r.size_bytes));
          pos += r.total_bytes;
        }
        break;
      }
      default:
        return bad("unknown batch kind");
    }
  }

  void poll_batches() {
    if (!subscriber) return;
    // TB records first: events name their tb_ids.
    for (int i = 0; i < 256; ++i) {
      auto c = tb_subscriber->take();
      if (!c) {
        bad(c.error().message);
        continue;
      }
      if (!*c) break;
      on_chunk((*c)->view());
    }
    for (int i = 0; i < 256; ++i) {
      auto c = subscriber->take();
      if (!c) {
        bad(c.error().message);
        continue;
      }
      if (!*c) return;
      on_chunk((*c)->view());
    }
  }

  // ---- hot blocks out ----
  void announce_hot() {
    if (!events || config.miner.publish_top == 0) return;
    uint32_t rank = 0;
    for (const auto& e : core.top(config.miner.publish_top)) {
      ++rank;
      if (e.info.size_bytes == 0 || announced.count(e.info.pc)) continue;
      announced.insert(e.info.pc);
      flatbuffers::FlatBufferBuilder fbb(512 + e.info.bytes.size());
      auto body = fb::events::CreateHotBlockFound(
          fbb, e.info.pc, e.info.gpa == kNoGpa ? 0 : e.info.gpa, e.info.n_insns, e.info.size_bytes,
          e.count, rank, fbb.CreateString(symbol_of(e.info.pc)), fbb.CreateVector(e.info.bytes));
      auto ev = fb::events::CreateEvent(fbb, fbb.CreateString(config.instance.name),
                                        fbb.CreateString("pattern-miner"), unix_ns(),
                                        fb::events::Body::HotBlockFound, body.Union());
      fb::events::FinishEventBuffer(fbb, ev);
      (void)events->publish("trace.hot", {fbb.GetBufferPointer(), fbb.GetSize()});
    }
  }

  // Kernel pcs named by semantic-db (cached per generation; "" when it cannot say).
  void symbolize(const std::vector<uint64_t>& pcs) {
    std::vector<uint64_t> want;
    for (uint64_t pc : pcs) {
      if (pc >= kKernelHalf && !symbol_cache.count(pc)) want.push_back(pc);
    }
    if (want.empty()) return;
    flatbuffers::FlatBufferBuilder fbb(64 + want.size() * 8);
    auto q = fb::semantic::CreateSymbolize(fbb, fbb.CreateVector(want));
    fb::semantic::FinishSemanticRequestBuffer(
        fbb, fb::semantic::CreateSemanticRequest(fbb, fb::semantic::Command::Symbolize, q.Union()));
    auto bytes = shared::request(paths.service_endpoint("semantic-db"),
                                 {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(2000));
    if (!bytes) return;
    flatbuffers::Verifier v(bytes->data(), bytes->size());
    if (!v.VerifyBuffer<fb::semantic::SemanticReply>(nullptr)) return;
    const auto* r = flatbuffers::GetRoot<fb::semantic::SemanticReply>(bytes->data());
    if (r->error() || !r->symbols() || r->symbols()->size() != want.size()) return;
    for (size_t i = 0; i < want.size(); ++i) {
      const auto* s = r->symbols()->Get(static_cast<flatbuffers::uoffset_t>(i));
      if (s && s->size()) symbol_cache[want[i]] = s->str();
    }
  }
  // Which processes map user `pc` to `gpa` (the TB's code page): shared code names several.
  void refresh_regions() {
    if (Clock::now() - regions_at < std::chrono::seconds(2)) return;
    regions_at = Clock::now();
    flatbuffers::FlatBufferBuilder fbb(64);
    auto q = fb::semantic::CreateGetRegions(fbb, 0);
    fb::semantic::FinishSemanticRequestBuffer(
        fbb,
        fb::semantic::CreateSemanticRequest(fbb, fb::semantic::Command::GetRegions, q.Union()));
    auto bytes = shared::request(paths.service_endpoint("semantic-db"),
                                 {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(2000));
    if (!bytes) return;
    flatbuffers::Verifier v(bytes->data(), bytes->size());
    if (!v.VerifyBuffer<fb::semantic::SemanticReply>(nullptr)) return;
    const auto* r = flatbuffers::GetRoot<fb::semantic::SemanticReply>(bytes->data());
    if (r->error() || !r->regions()) return;
    regions.clear();
    for (const auto* p : *r->regions()) {
      if (!p->ranges()) continue;
      const std::string who =
          (p->comm() ? p->comm()->str() : std::string("?")) + "[" + std::to_string(p->pid()) + "]";
      for (const auto* g : *p->ranges())
        regions.push_back({g->gva(), g->gpa(), g->size_bytes(), who});
    }
  }
  std::vector<std::string> processes_of(uint64_t pc, const std::vector<uint64_t>& gpas) const {
    std::vector<std::string> out;
    if (pc >= kKernelHalf || gpas.empty()) return out;
    for (const auto& r : regions) {
      if (pc >= r.gva && pc - r.gva < r.size &&
          std::find(gpas.begin(), gpas.end(), r.gpa + (pc - r.gva)) != gpas.end()) {
        if (std::find(out.begin(), out.end(), r.who) == out.end()) out.push_back(r.who);
        if (out.size() >= 16) break;
      }
    }
    return out;
  }

  std::string symbol_of(uint64_t pc) {
    auto it = symbol_cache.find(pc);
    return it == symbol_cache.end() ? std::string() : it->second;
  }

  void persist() {
    if (!store || !have_generation) return;
    core.fold();
    if (auto r = store->save(core, config.miner.top_k); !r) log->warn("{}", r.error().message);
  }

  // ---- status and commands ----
  nlohmann::json summary() {
    const auto& st = core.stats();
    char gen[24];
    std::snprintf(gen, sizeof gen, "%016llx", static_cast<unsigned long long>(core.generation()));
    nlohmann::json m = {{"generation", have_generation ? nlohmann::json(gen) : nlohmann::json()},
                        {"blocks", core.n_blocks_known()},
                        {"total_executions", core.total_executions()},
                        {"executions_seen", executions_seen},
                        {"batches", batches},
                        {"batches_lost", batches_lost},
                        {"bad_batches", bad_batches},
                        {"tb_records", st.tb_records},
                        {"events_unknown_tb", st.events_unknown_tb},
                        {"edges_dropped", st.edges_dropped},
                        {"db", db_path},
                        {"malformed_requests", malformed_requests}};
    if (!last_bad.empty()) m["last_bad_batch"] = last_bad;
    if (!subscriber) m["waiting"] = "iceoryx (RouDi) not reachable yet";
    return {{"miner", m}};
  }

  using Fbb = flatbuffers::FlatBufferBuilder;
  shared::Bytes finish(Fbb& fbb, flatbuffers::Offset<fb::miner::MinerReply> r) {
    fbb.Finish(r);
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }
  shared::Bytes error_reply(const Error& e) {
    Fbb fbb(256);
    auto err = fb::common::CreateError(fbb, static_cast<int>(e.code), fbb.CreateString(e.message));
    fb::miner::MinerReplyBuilder b(fbb);
    b.add_error(err);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_hot(uint32_t top_n) {
    core.fold();
    const auto top = core.top(std::min(top_n ? top_n : 20u, kMaxTopN));
    std::vector<uint64_t> pcs;
    for (const auto& e : top) pcs.push_back(e.info.pc);
    symbolize(pcs);
    refresh_regions();
    Fbb fbb(16384);
    std::vector<flatbuffers::Offset<fb::miner::HotBlock>> v;
    for (const auto& e : top) {
      std::vector<flatbuffers::Offset<flatbuffers::String>> procs;
      for (const auto& p : processes_of(e.info.pc, e.info.gpas))
        procs.push_back(fbb.CreateString(p));
      v.push_back(fb::miner::CreateHotBlock(
          fbb, e.info.pc, e.info.gpa == kNoGpa ? 0 : e.info.gpa, e.count, e.error, e.info.n_insns,
          e.info.size_bytes, fbb.CreateString(symbol_of(e.info.pc)), e.info.pc >= kKernelHalf,
          fbb.CreateVector(e.info.bytes), fbb.CreateVector(procs)));
    }
    auto vec = fbb.CreateVector(v);
    fb::miner::MinerReplyBuilder b(fbb);
    b.add_blocks(vec);
    b.add_total_executions(core.total_executions());
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_loops(uint32_t top_n) {
    core.fold();
    const auto loops = core.loops(std::min(top_n ? top_n : 20u, kMaxTopN));
    std::vector<uint64_t> heads;
    for (const auto& l : loops) heads.push_back(l.head_pc);
    symbolize(heads);
    Fbb fbb(16384);
    std::vector<flatbuffers::Offset<fb::miner::Loop>> v;
    for (const auto& l : loops) {
      v.push_back(fb::miner::CreateLoop(fbb, l.head_pc, fbb.CreateVector(l.block_pcs),
                                        l.head_exec_count, l.iterations,
                                        fbb.CreateString(symbol_of(l.head_pc))));
    }
    auto vec = fbb.CreateVector(v);
    fb::miner::MinerReplyBuilder b(fbb);
    b.add_loops(vec);
    b.add_total_executions(core.total_executions());
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_traces(uint32_t top_n) {
    core.fold();
    Fbb fbb(16384);
    std::vector<flatbuffers::Offset<fb::miner::HotTrace>> v;
    for (const auto& t : core.traces(std::min(top_n ? top_n : 20u, kMaxTopN))) {
      v.push_back(fb::miner::CreateHotTrace(fbb, t.head_pc, fbb.CreateVector(t.block_pcs),
                                            t.times_executed));
    }
    auto vec = fbb.CreateVector(v);
    fb::miner::MinerReplyBuilder b(fbb);
    b.add_traces(vec);
    b.add_total_executions(core.total_executions());
    return finish(fbb, b.Finish());
  }

  shared::Bytes status_reply() {
    Fbb fbb(2048);
    auto svc = shared::build_service_status(
        fbb, shared::own_status(config.instance.name, "pattern-miner", started_at,
                                metrics ? metrics->url() : "", summary().dump()));
    fb::miner::MinerReplyBuilder b(fbb);
    b.add_service(svc);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_request(shared::ByteSpan bytes) {
    if (!shared::request_is_valid(bytes, fb::miner::MinerRequestIdentifier(),
                                  fb::miner::VerifyMinerRequestBuffer)) {
      ++malformed_requests;
      m_malformed->Increment();
      return error_reply(Error{Errc::kProtocol, "request is not a valid MinerRequest (GBPM)"});
    }
    const auto* req = fb::miner::GetMinerRequest(bytes.data());
    switch (req->command_type()) {
      case fb::miner::MinerCommand::common_GetStatus:
        return status_reply();
      case fb::miner::MinerCommand::GetHot:
        return on_hot(req->command_as_GetHot()->top_n());
      case fb::miner::MinerCommand::GetLoops:
        return on_loops(req->command_as_GetLoops()->top_n());
      case fb::miner::MinerCommand::GetTraces:
        return on_traces(req->command_as_GetTraces()->top_n());
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
  s.log = shared::make_logger("pattern-miner");
  GB_TRY(s.paths.create());
  auto lock = shared::FileLock::acquire(
      s.paths.dir() + "/pattern-miner.lock",
      "another pattern-miner runs for " + s.paths.dir() + " (one per state dir)");
  if (!lock) return tl::unexpected(lock.error());
  GB_TRY(s.setup_metrics());
  s.db_path =
      s.config.miner.db.empty() ? s.paths.dir() + "/pattern-miner.sqlite" : s.config.miner.db;
  auto st = MinerStore::open(s.db_path);
  if (!st) return tl::unexpected(st.error());
  s.store = std::move(*st);
  auto cmd = shared::CommandServer::bind(s.paths.service_endpoint("pattern-miner"));
  if (!cmd) return tl::unexpected(cmd.error());
  s.commands = std::move(*cmd);
  if (auto p = shared::EventPublisher::connect(s.paths.bus_in_endpoint())) {
    s.events = std::move(*p);
  }
  s.log->info("command endpoint {}, metrics {}, db {}", s.paths.service_endpoint("pattern-miner"),
              s.metrics->url(), s.db_path);
  const auto handler = [&s](shared::ByteSpan b) { return s.on_request(b); };
  const auto reject = [&s](const std::string& why) {
    ++s.malformed_requests;
    s.m_malformed->Increment();
    return s.error_reply(Error{Errc::kProtocol, why});
  };
  auto last_fold = Clock::now(), last_persist = Clock::now();
  while (!stop.load()) {
    s.try_init_iox();
    s.poll_batches();
    if (auto r = s.commands->serve_once(milliseconds(1), handler, reject); !r) {
      s.log->warn("{}", r.error().message);
    }
    const auto now = Clock::now();
    if (now - last_fold > milliseconds(500)) {
      last_fold = now;
      s.core.fold();
      s.m_blocks->Set(static_cast<double>(s.core.n_blocks_known()));
      s.announce_hot();
    }
    if (now - last_persist > milliseconds(s.config.miner.persist_interval_ms)) {
      last_persist = now;
      s.persist();
    }
  }
  s.poll_batches();
  s.persist();
  return {};
}

}  // namespace glassbox::pattern_miner
