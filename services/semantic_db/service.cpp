#include "services/semantic_db/service.hpp"

#include <flatbuffers/flatbuffers.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "events_generated.h"
#include "semantic_generated.h"
#include "services/semantic_db/address_space.hpp"
#include "services/semantic_db/introspect.hpp"
#include "services/semantic_db/memory_map.hpp"
#include "services/semantic_db/profile_cache.hpp"
#include "services/semantic_db/store.hpp"
#include "shared/bus.hpp"
#include "shared/health.hpp"
#include "shared/iox.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/process.hpp"
#include "shared/ram_mirror.hpp"
#include "vm_generated.h"

namespace glassbox::semantic_db {
namespace {

namespace fb = glassbox::schema;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxLogEventsPerWalk = 512;
constexpr uint32_t kDefaultRegionRanges = 4096;
constexpr uint32_t kMaxRegionRanges = 65536;

uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

struct Service::Impl {
  shared::Config config;
  shared::StatePaths paths;
  std::shared_ptr<spdlog::logger> log;
  Clock::time_point started_at = Clock::now();

  std::unique_ptr<shared::MetricsExposer> metrics;
  prometheus::Counter* m_walks = nullptr;
  prometheus::Counter* m_walks_partial = nullptr;
  prometheus::Counter* m_births = nullptr;
  prometheus::Counter* m_exits = nullptr;
  prometheus::Counter* m_module_changes = nullptr;
  prometheus::Counter* m_log_records = nullptr;
  prometheus::Counter* m_profile_builds = nullptr;
  prometheus::Counter* m_profile_cache_hits = nullptr;
  prometheus::Counter* m_malformed = nullptr;
  prometheus::Gauge* m_processes = nullptr;
  prometheus::Gauge* m_modules = nullptr;
  prometheus::Histogram* m_walk_seconds = nullptr;
  prometheus::Histogram* m_query_seconds = nullptr;

  std::unique_ptr<shared::CommandServer> commands;
  std::unique_ptr<shared::EventPublisher> events;
  std::unique_ptr<shared::EventSubscriber> vm_events;
  std::unique_ptr<Store> store;
  std::unique_ptr<ProfileCache> cache;
  std::string cache_note;  // why there is no cache, if there is none
  std::string db_path;

  bool iox_ready = false;
  Clock::time_point last_mirror_try{};
  std::unique_ptr<shared::RamMirror> mirror;
  std::string mirror_note = "not connected yet";

  std::optional<KernelProfile> profile;
  uint64_t profile_epoch = 0;
  std::vector<uint8_t> vmcoreinfo_fingerprint;  // the VMCOREINFO text the profile came from
  Clock::time_point last_vmcoreinfo_try{};
  int64_t boot_id = 0;
  std::string profile_error = "no RAM yet";
  double profile_ms = 0;
  uint64_t next_log_seq = 0;
  bool log_primed = false;

  // Figures for status.
  uint64_t walks = 0, walks_partial = 0, births = 0, exits = 0, module_changes = 0;
  uint64_t log_published = 0, profile_builds = 0, cache_hits = 0, resets_seen = 0;
  uint64_t malformed_requests = 0, queries = 0;
  size_t n_processes = 0, n_modules = 0;
  double last_walk_ms = 0;
  std::vector<std::string> last_warnings;

  Impl(shared::Config c, shared::StatePaths p) : config(std::move(c)), paths(std::move(p)) {}

  // ---- setup ----
  Result<void> setup_metrics() {
    const uint32_t port = config.metrics.base_port == 0 ? 0 : config.metrics.base_port + 3;
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
    auto histogram = [&](const char* name, const char* help) {
      return &prometheus::BuildHistogram().Name(name).Help(help).Register(reg).Add(
          labels, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                          0.05, 0.1, 0.2, 0.5, 1});
    };
    m_walks = counter("glassbox_semantic_walks_total", "Live walks of tasks, modules and log");
    m_walks_partial = counter("glassbox_semantic_walks_partial_total",
                              "Walks cut short by unreadable or torn guest structures");
    m_births = counter("glassbox_semantic_process_births_total", "Processes seen born");
    m_exits = counter("glassbox_semantic_process_exits_total", "Processes seen exiting");
    m_module_changes =
        counter("glassbox_semantic_module_changes_total", "Modules loaded or unloaded");
    m_log_records = counter("glassbox_semantic_log_records_total",
                            "Guest kernel log records published on the bus");
    m_profile_builds = counter("glassbox_semantic_profile_builds_total",
                               "Kernel profiles built or loaded (new boot or kernel)");
    m_profile_cache_hits =
        counter("glassbox_semantic_profile_cache_hits_total", "Profiles loaded from the cache");
    m_malformed = counter("glassbox_semantic_malformed_requests_total",
                          "Command requests that failed FlatBuffers verification");
    m_processes = gauge("glassbox_semantic_processes", "Processes in the last walk");
    m_modules = gauge("glassbox_semantic_modules", "Modules in the last walk");
    m_walk_seconds = histogram("glassbox_semantic_walk_seconds",
                               "One live walk (tasks + modules + log + store)");
    m_query_seconds =
        histogram("glassbox_semantic_query_seconds", "One command request, walk included");
    return {};
  }

  Result<void> open_storage() {
    db_path = config.semantic.db.empty() ? paths.dir() + "/semantic.sqlite" : config.semantic.db;
    auto s = Store::open(db_path);
    if (!s) return tl::unexpected(s.error());
    store = std::move(*s);
    const std::string cache_path = config.semantic.profile_cache.empty()
                                       ? default_profile_cache_path()
                                       : config.semantic.profile_cache;
    if (cache_path == "none") {
      cache_note = "disabled ([semantic] profile_cache = \"none\")";
    } else if (auto c = ProfileCache::open(cache_path)) {
      cache = std::move(*c);
    } else {
      cache_note = c.error().message;  // a missing cache costs time, not answers
      log->warn("profile cache off: {}", cache_note);
    }
    return {};
  }

  // ---- RAM ----
  void try_connect_mirror() {
    if (mirror || Clock::now() - last_mirror_try < milliseconds(1000)) return;
    last_mirror_try = Clock::now();
    if (!iox_ready) {
      if (!shared::roudi_available()) {
        mirror_note = "RouDi (iceoryx) is not running";
        return;
      }
      if (auto r = shared::init_runtime(config.instance.name, "semantic-db"); !r) {
        mirror_note = r.error().message;
        return;
      }
      iox_ready = true;
    }
    auto m = shared::RamMirror::create(config.instance.name,
                                       paths.service_endpoint("ram-snapshotter"), "semantic-db");
    if (!m) {
      mirror_note = m.error().message;
      return;
    }
    mirror = std::move(*m);
    mirror_note.clear();
    log->info("mirroring guest RAM from (glassbox, {}, ram)", config.instance.name);
  }

  void drop_profile(const std::string& why) {
    if (profile) log->info("kernel profile dropped: {}", why);
    profile.reset();
    profile_error = why;
    log_primed = false;
  }

  // What the hypervisor says the vCPUs run. kNoSupervisor: vm-supervisor did not answer
  // (introspect RAM without that hint); kNotInKernel: no vCPU is in long mode yet (firmware,
  // early boot: nothing in RAM is trustworthy yet).
  enum class LiveCpu { kCr3, kNoSupervisor, kNotInKernel };
  struct LiveCpuState {
    LiveCpu what = LiveCpu::kNoSupervisor;
    uint64_t cr3 = 0;
  };
  LiveCpuState live_cpu() {
    flatbuffers::FlatBufferBuilder fbb(64);
    auto get = fb::vm::CreateGetVcpus(fbb);
    fb::vm::FinishVmRequestBuffer(
        fbb, fb::vm::CreateVmRequest(fbb, fb::vm::Command::GetVcpus, get.Union()));
    auto bytes = shared::request(paths.service_endpoint("vm-supervisor"),
                                 {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(1000));
    if (!bytes) return {};
    flatbuffers::Verifier v(bytes->data(), bytes->size());
    if (!v.VerifyBuffer<fb::vm::VmReply>(nullptr)) return {};
    const auto* reply = flatbuffers::GetRoot<fb::vm::VmReply>(bytes->data());
    if (reply->error() || !reply->status() || !reply->status()->vcpus()) {
      return {LiveCpu::kNotInKernel, 0};  // QEMU not up (or rebooting)
    }
    for (const auto* c : *reply->status()->vcpus()) {
      if (c->long_mode() && c->cr3() != 0) return {LiveCpu::kCr3, c->cr3()};
    }
    return {LiveCpu::kNotInKernel, 0};
  }

  // The VMCOREINFO text the profile was built from; a change means another kernel.
  std::vector<uint8_t> fingerprint(const shared::RamView& ram, const KernelProfile& p) {
    if (!p.vmcoreinfo) return {};
    const uint64_t n = std::min<uint64_t>(p.vmcoreinfo->text_bytes, 4096);
    auto b = ram.at(p.vmcoreinfo->gpa, n);
    if (!b) return {};
    return std::vector<uint8_t>(*b, *b + n);
  }

  // Ensures a profile for the kernel in `ram`. Returns false (profile_error says why) when
  // there is none yet (the guest is still booting, or RAM holds no Linux).
  // `validate`: also ask the hypervisor which kernel runs (a QMP round trip) and drop a
  // profile of another boot.
  bool ensure_profile(const shared::RamView& ram, bool validate) {
    if (profile && mirror->core().epoch() != profile_epoch) drop_profile("new RAM epoch");
    if (profile && fingerprint(ram, *profile) != vmcoreinfo_fingerprint) {
      drop_profile("VMCOREINFO changed (another kernel)");
    }
    if (profile && !validate) return true;
    // A profile made before the kernel wrote VMCOREINFO (early boot: the vCPU was already in
    // long mode) has no build id, so no cache entry: rebuild once VMCOREINFO is there.
    if (profile && !profile->vmcoreinfo &&
        Clock::now() - last_vmcoreinfo_try > milliseconds(5000)) {
      last_vmcoreinfo_try = Clock::now();
      if (find_vmcoreinfo(ram, profile->base.kaslr_slide)) {
        drop_profile("VMCOREINFO of the running kernel appeared");
      }
    }
    const LiveCpuState cpu = live_cpu();
    if (profile) {
      if (cpu.what == LiveCpu::kNotInKernel) {
        drop_profile("no vCPU in long mode (the guest is rebooting)");
      } else if (cpu.what == LiveCpu::kCr3) {
        auto live = kernel_pgd_from_cr3(ram, cpu.cr3);
        if (!live || live->text_gva != profile->base.text_gva) {
          drop_profile("the running kernel (CR3 " + fmt_hex(cpu.cr3) + ") is not the profiled one");
        }
      }
      if (profile) return true;
    }
    if (cpu.what == LiveCpu::kNotInKernel) {
      profile_error = "waiting for the guest kernel: no vCPU in long mode";
      return false;
    }
    const auto t0 = Clock::now();
    auto p =
        build_profile(ram, config.semantic.kernel, cache.get(),
                      cpu.what == LiveCpu::kCr3 ? std::optional<uint64_t>(cpu.cr3) : std::nullopt);
    if (!p) {
      profile_error = p.error().message;
      return false;
    }
    profile_ms = ms_since(t0);
    profile_epoch = mirror->core().epoch();
    vmcoreinfo_fingerprint = fingerprint(ram, *p);
    ++profile_builds;
    m_profile_builds->Increment();
    if (p->from_cache) {
      ++cache_hits;
      m_profile_cache_hits->Increment();
    }
    auto boot = store->boot_for(p->release, p->base.kaslr_slide, unix_ns());
    if (!boot) {
      profile_error = boot.error().message;
      return false;
    }
    boot_id = *boot;
    profile = std::move(*p);
    profile_error.clear();
    log->info("kernel {} (boot {}): {} in {:.1f} ms", profile->release, boot_id,
              profile->base.describe(), profile_ms);
    publish_kernel_found();
    return true;
  }

  // ---- events ----
  void publish(std::string_view topic, flatbuffers::FlatBufferBuilder& fbb, fb::events::Body type,
               flatbuffers::Offset<void> body) {
    auto ev = fb::events::CreateEvent(fbb, fbb.CreateString(config.instance.name),
                                      fbb.CreateString("semantic-db"), unix_ns(), type, body);
    fb::events::FinishEventBuffer(fbb, ev);
    if (events) (void)events->publish(topic, {fbb.GetBufferPointer(), fbb.GetSize()});
  }

  void publish_kernel_found() {
    flatbuffers::FlatBufferBuilder fbb(512);
    std::vector<flatbuffers::Offset<flatbuffers::String>> sources;
    for (const auto& s : profile->sources) sources.push_back(fbb.CreateString(s));
    auto body = fb::events::CreateGuestKernelFound(
        fbb, boot_id, fbb.CreateString(profile->release), fbb.CreateString(profile->build_id),
        profile->base.kaslr_slide, profile->base.phys_base, fbb.CreateVector(sources));
    publish("semantic.kernel", fbb, fb::events::Body::GuestKernelFound, body.Union());
  }

  void publish_process(const ProcessRecord& p, fb::events::ProcessChange change) {
    flatbuffers::FlatBufferBuilder fbb(256);
    auto body = fb::events::CreateProcessEvent(fbb, change, boot_id, p.pid, p.tgid, p.ppid,
                                               fbb.CreateString(p.comm), p.uid, p.start_time_ns);
    publish("semantic.process", fbb, fb::events::Body::ProcessEvent, body.Union());
  }

  void publish_module(const ModuleRecord& m, fb::events::ModuleChange change) {
    flatbuffers::FlatBufferBuilder fbb(256);
    auto body = fb::events::CreateModuleEvent(fbb, change, boot_id, fbb.CreateString(m.name),
                                              m.base, m.size_bytes);
    publish("semantic.module", fbb, fb::events::Body::ModuleEvent, body.Union());
  }

  void publish_log(const LogRecord& r) {
    flatbuffers::FlatBufferBuilder fbb(r.text.size() + 128);
    auto body = fb::events::CreateGuestLogLine(fbb, r.seq, r.ts_nsec, fbb.CreateString(r.text));
    publish("guest.log", fbb, fb::events::Body::GuestLogLine, body.Union());
  }

  // vm-supervisor's events: a reset or a new QEMU means a new kernel (maybe at a new slide).
  void drain_vm_events() {
    if (!vm_events) return;
    for (int i = 0; i < 64; ++i) {
      auto e = vm_events->receive(milliseconds(0));
      if (!e || !*e) return;
      const auto* ev = fb::events::GetEvent((*e)->event.data());
      if (const auto* q = ev->body_as_QmpEvent();
          q && q->name() && (q->name()->str() == "RESET" || q->name()->str() == "SHUTDOWN")) {
        ++resets_seen;
        drop_profile("guest " + q->name()->str() + " (QMP event)");
      } else if (const auto* s = ev->body_as_VmStateChanged(); s && !s->ready()) {
        drop_profile("VM not ready (vm.state)");
      }
    }
  }

  // ---- the live walk ----
  void walk() {
    if (!mirror) return;
    auto view = mirror->view();
    if (!view) {
      profile_error = "waiting for RAM: " + view.error().message;
      return;
    }
    if (!ensure_profile(*view, true)) return;
    const auto t0 = Clock::now();
    const uint64_t now = unix_ns();
    std::vector<std::string> warnings;
    auto procs = list_processes(*view, *profile);
    if (!procs) {
      // init_task unreadable: the profile no longer fits this RAM (a reboot not announced).
      drop_profile("task walk failed: " + procs.error().message);
      return;
    }
    auto mods = list_modules(*view, *profile);
    warnings.insert(warnings.end(), procs->warnings.begin(), procs->warnings.end());
    if (mods) warnings.insert(warnings.end(), mods->warnings.begin(), mods->warnings.end());
    const bool complete = procs->warnings.empty() && mods && mods->warnings.empty();
    if (complete) {
      if (auto d = store->observe_processes(boot_id, procs->processes, now)) {
        for (const auto& p : d->born) publish_process(p, fb::events::ProcessChange::Born);
        for (const auto& p : d->exited) publish_process(p, fb::events::ProcessChange::Exited);
        births += d->born.size();
        exits += d->exited.size();
        m_births->Increment(static_cast<double>(d->born.size()));
        m_exits->Increment(static_cast<double>(d->exited.size()));
      } else {
        warnings.push_back(d.error().message);
      }
      if (auto d = store->observe_modules(boot_id, mods->modules, now)) {
        for (const auto& m : d->loaded) publish_module(m, fb::events::ModuleChange::Loaded);
        for (const auto& m : d->unloaded) publish_module(m, fb::events::ModuleChange::Unloaded);
        module_changes += d->loaded.size() + d->unloaded.size();
        m_module_changes->Increment(static_cast<double>(d->loaded.size() + d->unloaded.size()));
      } else {
        warnings.push_back(d.error().message);
      }
    } else {
      ++walks_partial;
      m_walks_partial->Increment();
      if (!mods) warnings.push_back("modules: " + mods.error().message);
    }
    n_processes = procs->processes.size();
    n_modules = mods ? mods->modules.size() : 0;
    m_processes->Set(static_cast<double>(n_processes));
    m_modules->Set(static_cast<double>(n_modules));
    if (config.semantic.log_events) publish_new_log(*view, warnings);
    ++walks;
    m_walks->Increment();
    last_walk_ms = ms_since(t0);
    m_walk_seconds->Observe(last_walk_ms / 1000.0);
    last_warnings = std::move(warnings);
  }

  void publish_new_log(const shared::RamView& ram, std::vector<std::string>& warnings) {
    auto klog = read_kernel_log(ram, *profile);
    if (!klog) {
      warnings.push_back("kernel log: " + klog.error().message);
      return;
    }
    size_t sent = 0;
    for (const auto& r : klog->records) {
      if (r.seq < next_log_seq) continue;
      // The first walk of a boot publishes the records written before we looked, too:
      // subscribers see the whole log once.
      if (sent++ >= kMaxLogEventsPerWalk) break;  // the rest next walk
      publish_log(r);
      next_log_seq = r.seq + 1;
      ++log_published;
      m_log_records->Increment();
    }
    log_primed = true;
  }

  // ---- status ----
  nlohmann::json summary() {
    nlohmann::json s = {
        {"processes", n_processes},
        {"modules", n_modules},
        {"walks", walks},
        {"walks_partial", walks_partial},
        {"last_walk_ms", last_walk_ms},
        {"interval_ms", config.semantic.interval_ms},
        {"births", births},
        {"exits", exits},
        {"module_changes", module_changes},
        {"log_records_published", log_published},
        {"profile_builds", profile_builds},
        {"profile_cache_hits", cache_hits},
        {"profile_cache", cache ? cache->path() : cache_note},
        {"resets_seen", resets_seen},
        {"db", db_path},
        {"queries", queries},
        {"malformed_requests", malformed_requests},
        {"warnings", last_warnings},
    };
    if (profile) {
      s["kernel"] = {{"release", profile->release},
                     {"build_id", profile->build_id},
                     {"kaslr_slide", fmt_hex(profile->base.kaslr_slide)},
                     {"phys_base", fmt_hex(profile->base.phys_base)},
                     {"sources", profile->sources},
                     {"profile_ms", profile_ms},
                     {"boot_id", boot_id}};
    } else {
      s["waiting"] = profile_error;
    }
    if (!mirror_note.empty()) s["mirror"] = mirror_note;
    if (mirror) {
      s["mirror_synced"] = mirror->core().synced();
      s["mirror_cycles"] = mirror->core().stats().cycles_applied;
    }
    return {{"semantic", s}};
  }

  static std::string fmt_hex(uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
  }

  // ---- commands ----
  using Fbb = flatbuffers::FlatBufferBuilder;

  shared::Bytes error_reply(const Error& e) {
    Fbb fbb(256);
    auto err = fb::common::CreateError(fbb, static_cast<int>(e.code), fbb.CreateString(e.message));
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_error(err);
    fbb.Finish(b.Finish());
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }

  shared::Bytes finish(Fbb& fbb, flatbuffers::Offset<fb::semantic::SemanticReply> r) {
    fbb.Finish(r);
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }

  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>> strings(
      Fbb& fbb, const std::vector<std::string>& v) {
    std::vector<flatbuffers::Offset<flatbuffers::String>> o;
    o.reserve(v.size());
    for (const auto& s : v) o.push_back(fbb.CreateString(s));
    return fbb.CreateVector(o);
  }

  // The RAM and profile a live query walks. Errors: kUnavailable saying what is missing.
  Result<shared::RamView> live_view() {
    if (!mirror) return fail(Errc::kUnavailable, "no guest RAM: " + mirror_note);
    auto view = mirror->view();
    if (!view) return fail(Errc::kUnavailable, "no guest RAM yet: " + view.error().message);
    if (!ensure_profile(*view, false)) {
      return fail(Errc::kUnavailable, "no guest kernel profile yet: " + profile_error);
    }
    return *view;
  }

  flatbuffers::Offset<fb::semantic::Snapshot> snapshot(Fbb& fbb, Clock::time_point t0) {
    return fb::semantic::CreateSnapshot(fbb, mirror ? mirror->core().last_cycle() : 0,
                                        mirror ? mirror->core().last_captured_unix_ns() : 0,
                                        ms_since(t0));
  }

  flatbuffers::Offset<fb::semantic::Process> process_table(Fbb& fbb, const ProcessRecord& p,
                                                           const ProcessRow* row) {
    auto comm = fbb.CreateString(p.comm);
    auto state = fbb.CreateString(p.state);
    fb::semantic::ProcessBuilder b(fbb);
    b.add_pid(p.pid);
    b.add_tgid(p.tgid);
    b.add_ppid(p.ppid);
    b.add_comm(comm);
    b.add_state(state);
    b.add_uid(p.uid);
    b.add_start_time_ns(p.start_time_ns);
    b.add_threads(p.threads);
    if (row) {
      b.add_first_seen_unix_ns(row->first_seen_ns);
      b.add_last_seen_unix_ns(row->last_seen_ns);
      b.add_exited_unix_ns(row->exited_ns.value_or(0));
      b.add_boot_id(row->boot_id);
    }
    return b.Finish();
  }

  shared::Bytes on_processes(const fb::semantic::ListProcesses* q) {
    const auto t0 = Clock::now();
    Fbb fbb(16384);
    if (q && q->include_exited()) {
      auto rows = store->processes(std::nullopt, true);
      if (!rows) return error_reply(rows.error());
      std::vector<flatbuffers::Offset<fb::semantic::Process>> v;
      for (const auto& r : *rows) v.push_back(process_table(fbb, r, &r));
      auto vec = fbb.CreateVector(v);
      fb::semantic::SemanticReplyBuilder b(fbb);
      b.add_processes(vec);
      return finish(fbb, b.Finish());
    }
    auto view = live_view();
    if (!view) return error_reply(view.error());
    auto procs = list_processes(*view, *profile);
    if (!procs) return error_reply(procs.error());
    std::vector<flatbuffers::Offset<fb::semantic::Process>> v;
    for (const auto& p : procs->processes) v.push_back(process_table(fbb, p, nullptr));
    auto vec = fbb.CreateVector(v);
    auto warn = strings(fbb, procs->warnings);
    auto snap = snapshot(fbb, t0);
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_processes(vec);
    b.add_warnings(warn);
    b.add_snapshot(snap);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_modules() {
    const auto t0 = Clock::now();
    auto view = live_view();
    if (!view) return error_reply(view.error());
    auto mods = list_modules(*view, *profile);
    if (!mods) return error_reply(mods.error());
    Fbb fbb(8192);
    std::vector<flatbuffers::Offset<fb::semantic::Module>> v;
    for (const auto& m : mods->modules) {
      v.push_back(fb::semantic::CreateModule(fbb, fbb.CreateString(m.name), m.base, m.size_bytes));
    }
    auto vec = fbb.CreateVector(v);
    auto warn = strings(fbb, mods->warnings);
    auto snap = snapshot(fbb, t0);
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_modules(vec);
    b.add_warnings(warn);
    b.add_snapshot(snap);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_log(const fb::semantic::GetKernelLog* q) {
    const auto t0 = Clock::now();
    auto view = live_view();
    if (!view) return error_reply(view.error());
    auto klog = read_kernel_log(*view, *profile);
    if (!klog) return error_reply(klog.error());
    const uint64_t since = q ? q->since_seq() : 0;
    Fbb fbb(65536);
    std::vector<flatbuffers::Offset<fb::semantic::LogRecord>> v;
    for (const auto& r : klog->records) {
      if (r.seq < since) continue;
      v.push_back(fb::semantic::CreateLogRecord(fbb, r.seq, r.ts_nsec, fbb.CreateString(r.text)));
    }
    auto vec = fbb.CreateVector(v);
    auto warn = strings(fbb, klog->warnings);
    auto snap = snapshot(fbb, t0);
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_log(vec);
    b.add_warnings(warn);
    b.add_snapshot(snap);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_maps(const fb::semantic::GetMaps* q) {
    const auto t0 = Clock::now();
    auto view = live_view();
    if (!view) return error_reply(view.error());
    auto maps = list_vmas(*view, *profile, q ? q->pid() : 0);
    if (!maps) return error_reply(maps.error());
    Fbb fbb(16384);
    std::vector<flatbuffers::Offset<fb::semantic::Vma>> v;
    for (const auto& m : maps->vmas) {
      v.push_back(fb::semantic::CreateVma(fbb, m.start, m.end, fbb.CreateString(m.perms),
                                          m.offset_bytes, m.inode, fbb.CreateString(m.path),
                                          m.dev_major, m.dev_minor));
    }
    auto vec = fbb.CreateVector(v);
    auto warn = strings(fbb, maps->warnings);
    auto snap = snapshot(fbb, t0);
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_vmas(vec);
    b.add_warnings(warn);
    b.add_snapshot(snap);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_kernel() {
    const auto t0 = Clock::now();
    auto view = live_view();
    if (!view) return error_reply(view.error());
    const KernelInfo info = read_kernel_info(*view, *profile);
    Fbb fbb(4096);
    auto k = fb::semantic::CreateKernelInfo(
        fbb, fbb.CreateString(profile->release), fbb.CreateString(info.version),
        fbb.CreateString(profile->build_id), fbb.CreateString(info.cmdline),
        profile->base.kaslr_slide, profile->base.phys_base, profile->base.text_gva.value,
        profile->base.text_gpa.value, strings(fbb, profile->sources),
        static_cast<uint32_t>(profile->symbols->size()), profile_ms, boot_id);
    auto warn = strings(fbb, info.warnings);
    auto snap = snapshot(fbb, t0);
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_kernel(k);
    b.add_warnings(warn);
    b.add_snapshot(snap);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_regions(const fb::semantic::GetRegions* q) {
    const auto t0 = Clock::now();
    auto view = live_view();
    if (!view) return error_reply(view.error());
    uint32_t max_ranges =
        q && q->max_ranges_per_process() ? q->max_ranges_per_process() : kDefaultRegionRanges;
    max_ranges = std::min(max_ranges, kMaxRegionRanges);
    auto regions = user_regions(*view, *profile, max_ranges);
    if (!regions) return error_reply(regions.error());
    Fbb fbb(65536);
    std::vector<flatbuffers::Offset<fb::semantic::ProcessRegions>> v;
    for (const auto& p : regions->processes) {
      std::vector<flatbuffers::Offset<fb::semantic::GpaRange>> rv;
      for (const auto& r : p.ranges) {
        rv.push_back(
            fb::semantic::CreateGpaRange(fbb, r.va.value, r.gpa.value, r.size_bytes, r.writable));
      }
      v.push_back(fb::semantic::CreateProcessRegions(fbb, p.pid, fbb.CreateString(p.comm),
                                                     fbb.CreateVector(rv), p.truncated));
    }
    auto vec = fbb.CreateVector(v);
    auto warn = strings(fbb, regions->warnings);
    auto snap = snapshot(fbb, t0);
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_regions(vec);
    b.add_warnings(warn);
    b.add_snapshot(snap);
    return finish(fbb, b.Finish());
  }

  // Kernel pcs -> "symbol+0xoff" from the profile's kallsyms (no RAM walk).
  shared::Bytes on_symbolize(const fb::semantic::Symbolize* q) {
    constexpr size_t kMaxPcs = 65536;
    if (!profile) {
      return error_reply(
          Error{Errc::kUnavailable, "no guest kernel profile yet: " + profile_error});
    }
    if (q && q->pcs() && q->pcs()->size() > kMaxPcs) {
      return error_reply(Error{Errc::kInvalidArgument, "Symbolize: more than 65536 pcs"});
    }
    Fbb fbb(65536);
    std::vector<flatbuffers::Offset<flatbuffers::String>> names;
    if (q && q->pcs()) {
      for (uint64_t pc : *q->pcs()) {
        std::string name;
        if (pc >= 0xffff800000000000ULL) {
          if (auto n = profile->symbols->nearest(pc); n && n->offset_bytes < (1u << 20)) {
            name = n->symbol->name;
            if (n->offset_bytes) name += "+" + fmt_hex(n->offset_bytes);
          }
        }
        names.push_back(fbb.CreateString(name));
      }
    }
    auto vec = fbb.CreateVector(names);
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_symbols(vec);
    return finish(fbb, b.Finish());
  }

  shared::Bytes status_reply() {
    Fbb fbb(4096);
    auto svc = shared::build_service_status(
        fbb, shared::own_status(config.instance.name, "semantic-db", started_at,
                                metrics ? metrics->url() : "", summary().dump()));
    fb::semantic::SemanticReplyBuilder b(fbb);
    b.add_service(svc);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_request(shared::ByteSpan bytes) {
    const auto t0 = Clock::now();
    if (!shared::request_is_valid(bytes, fb::semantic::SemanticRequestIdentifier(),
                                  fb::semantic::VerifySemanticRequestBuffer)) {
      ++malformed_requests;
      m_malformed->Increment();
      return error_reply(Error{Errc::kProtocol, "request is not a valid SemanticRequest (GBSM)"});
    }
    ++queries;
    const auto* req = fb::semantic::GetSemanticRequest(bytes.data());
    shared::Bytes out;
    switch (req->command_type()) {
      case fb::semantic::Command::common_GetStatus:
        out = status_reply();
        break;
      case fb::semantic::Command::ListProcesses:
        out = on_processes(req->command_as_ListProcesses());
        break;
      case fb::semantic::Command::ListModules:
        out = on_modules();
        break;
      case fb::semantic::Command::GetKernelLog:
        out = on_log(req->command_as_GetKernelLog());
        break;
      case fb::semantic::Command::GetMaps:
        out = on_maps(req->command_as_GetMaps());
        break;
      case fb::semantic::Command::GetKernel:
        out = on_kernel();
        break;
      case fb::semantic::Command::GetRegions:
        out = on_regions(req->command_as_GetRegions());
        break;
      case fb::semantic::Command::Symbolize:
        out = on_symbolize(req->command_as_Symbolize());
        break;
      default:
        ++malformed_requests;
        m_malformed->Increment();
        out = error_reply(Error{Errc::kInvalidArgument, "request carries no command"});
    }
    m_query_seconds->Observe(ms_since(t0) / 1000.0);
    return out;
  }
};

Service::Service(shared::Config config, shared::StatePaths paths)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(paths))) {}
Service::~Service() = default;

Result<void> Service::run(const std::atomic<bool>& stop) {
  Impl& s = *impl_;
  s.log = shared::make_logger("semantic-db");
  GB_TRY(s.paths.create());
  auto lock = shared::FileLock::acquire(
      s.paths.dir() + "/semantic-db.lock",
      "another semantic-db runs for " + s.paths.dir() + " (one per state dir)");
  if (!lock) return tl::unexpected(lock.error());
  if (s.config.semantic.kernel.empty()) s.config.semantic.kernel = s.config.vm.kernel;
  GB_TRY(s.setup_metrics());
  GB_TRY(s.open_storage());
  auto cmd = shared::CommandServer::bind(s.paths.service_endpoint("semantic-db"));
  if (!cmd) return tl::unexpected(cmd.error());
  s.commands = std::move(*cmd);
  if (auto p = shared::EventPublisher::connect(s.paths.bus_in_endpoint())) {
    s.events = std::move(*p);
  }
  if (auto sub = shared::EventSubscriber::connect(s.paths.bus_out_endpoint(), {"vm."})) {
    s.vm_events = std::move(*sub);
  }
  s.log->info("command endpoint {}, metrics {}, db {}, profile cache {}",
              s.paths.service_endpoint("semantic-db"), s.metrics->url(), s.db_path,
              s.cache ? s.cache->path() : s.cache_note);

  const auto period = milliseconds(s.config.semantic.interval_ms);
  auto next_walk = Clock::now();
  const auto handler = [&s](shared::ByteSpan b) { return s.on_request(b); };
  const auto reject = [&s](const std::string& why) {
    ++s.malformed_requests;
    s.m_malformed->Increment();
    return s.error_reply(Error{Errc::kProtocol, why});
  };
  while (!stop.load()) {
    if (auto r = s.commands->serve_once(milliseconds(5), handler, reject); !r) {
      s.log->warn("{}", r.error().message);
    }
    s.drain_vm_events();
    s.try_connect_mirror();
    if (s.mirror) {
      if (auto r = s.mirror->poll(milliseconds(0)); !r) s.mirror_note = r.error().message;
    }
    if (Clock::now() >= next_walk) {
      next_walk += period;
      if (Clock::now() > next_walk) next_walk = Clock::now() + period;  // overran: no burst
      s.walk();
    }
  }
  return {};
}

}  // namespace glassbox::semantic_db
