// `glassbox ps|modules|kernel|dmesg|maps`: what the guest kernel knows, from raw RAM.
// Live: asked of glassbox-semantic-db (its profile is built once per kernel; a query is one
// walk of its mirror), or, when the instance runs without semantic-db, walked here through a
// RamMirror of our own. Offline: `--ram DUMP` (raw or LiME, like Volatility), with the
// profile cache. The three paths fill the same plain structs and print them the same way.
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "semantic_generated.h"
#include "services/cli/client.hpp"
#include "services/cli/commands.hpp"
#include "services/semantic_db/introspect.hpp"
#include "services/semantic_db/memory_map.hpp"
#include "services/semantic_db/profile_cache.hpp"
#include "shared/bus.hpp"
#include "shared/iox.hpp"
#include "shared/ram_dump.hpp"
#include "shared/ram_mirror.hpp"

namespace glassbox::cli {
namespace {

namespace sdb = glassbox::semantic_db;
namespace fb = glassbox::schema;
using Clock = std::chrono::steady_clock;

int report_error(const Error& e) {
  std::cerr << "glassbox: " << e.message << "\n";
  return 1;
}

std::string hex(uint64_t v) { return fmt::format("0x{:x}", v); }

// Everything `glassbox kernel` prints.
struct KernelSummary {
  std::string release, version, build_id, cmdline;
  uint64_t kaslr_slide = 0, phys_base = 0, text_gva = 0, text_gpa = 0;
  std::vector<std::string> sources;
  uint64_t symbols = 0;
  double profile_ms = 0;
  nlohmann::json stages_ms = nlohmann::json::object();
  std::vector<std::string> warnings;
};

// One answer, whichever path produced it.
struct Answer {
  sdb::ProcessList processes;
  std::vector<sdb::ProcessRow> history;
  sdb::ModuleList modules;
  sdb::KernelLog log;
  sdb::VmaList vmas;
  sdb::RegionMap regions;
  KernelSummary kernel;
  std::vector<std::string> warnings;
};

void warn_all(const std::vector<std::string>& w) {
  for (const auto& s : w) std::cerr << "glassbox: warning: " << s << "\n";
}

// ---- printing ----
int print(const Invocation& inv, const Answer& a) {
  warn_all(a.warnings);
  if (inv.command == "kernel") {
    const auto& k = a.kernel;
    nlohmann::json j = {{"release", k.release},
                        {"version", k.version},
                        {"build_id", k.build_id},
                        {"cmdline", k.cmdline},
                        {"kaslr_slide", hex(k.kaslr_slide)},
                        {"phys_base", hex(k.phys_base)},
                        {"text_gva", hex(k.text_gva)},
                        {"text_gpa", hex(k.text_gpa)},
                        {"sources", k.sources},
                        {"symbols", k.symbols},
                        {"profile_ms", k.profile_ms}};
    if (!k.stages_ms.empty()) j["profile_stages_ms"] = k.stages_ms;
    if (inv.json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << fmt::format(
          "release     {}\nversion     {}\nbuild_id    {}\ncmdline     {}\nkaslr_slide {}\n"
          "phys_base   {}\n_text       {} (gpa {})\nsymbols     {}\nsources     {}\n",
          k.release, k.version, k.build_id, k.cmdline, hex(k.kaslr_slide), hex(k.phys_base),
          hex(k.text_gva), hex(k.text_gpa), k.symbols, j["sources"].dump());
    }
    return 0;
  }
  if (inv.command == "dmesg") {
    if (inv.json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& r : a.log.records) {
        arr.push_back({{"seq", r.seq}, {"ts_nsec", r.ts_nsec}, {"text", r.text}});
      }
      std::cout << nlohmann::json{{"records", arr}}.dump(2) << "\n";
    } else {
      for (const auto& r : a.log.records) {
        std::cout << fmt::format("[{:5}.{:06}] {}\n", r.ts_nsec / 1000000000,
                                 (r.ts_nsec % 1000000000) / 1000, r.text);
      }
    }
    return 0;
  }
  if (inv.command == "modules") {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& m : a.modules.modules) {
      arr.push_back({{"name", m.name}, {"base", hex(m.base)}, {"size", m.size_bytes}});
    }
    if (inv.json) {
      std::cout << nlohmann::json{{"modules", arr}}.dump(2) << "\n";
    } else {
      std::cout << fmt::format("{:<24} {:>18} {:>8}\n", "NAME", "BASE", "SIZE");
      for (const auto& m : a.modules.modules) {
        std::cout << fmt::format("{:<24} {:>18} {:>8}\n", m.name, hex(m.base), m.size_bytes);
      }
    }
    return 0;
  }
  if (inv.command == "maps") {
    if (inv.json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& v : a.vmas.vmas) {
        arr.push_back({{"start", hex(v.start)},
                       {"end", hex(v.end)},
                       {"perms", v.perms},
                       {"offset", v.offset_bytes},
                       {"dev", fmt::format("{:02x}:{:02x}", v.dev_major, v.dev_minor)},
                       {"inode", v.inode},
                       {"path", v.path}});
      }
      std::cout << nlohmann::json{{"pid", inv.pid}, {"vmas", arr}}.dump(2) << "\n";
    } else {
      for (const auto& v : a.vmas.vmas) {
        std::cout << sdb::format_maps_line(v) << "\n";  // as /proc/PID/maps
      }
    }
    return 0;
  }
  if (inv.command == "regions") {
    if (inv.json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& p : a.regions.processes) {
        nlohmann::json ranges = nlohmann::json::array();
        for (const auto& r : p.ranges) {
          ranges.push_back({{"gva", hex(r.va.value)},
                            {"gpa", hex(r.gpa.value)},
                            {"size", r.size_bytes},
                            {"writable", r.writable}});
        }
        arr.push_back(
            {{"pid", p.pid}, {"comm", p.comm}, {"truncated", p.truncated}, {"ranges", ranges}});
      }
      std::cout << nlohmann::json{{"processes", arr}}.dump(2) << "\n";
    } else {
      std::cout << fmt::format("{:>7} {:<16} {:>7} {:>10}\n", "PID", "COMM", "RANGES", "KIB");
      for (const auto& p : a.regions.processes) {
        uint64_t bytes = 0;
        for (const auto& r : p.ranges) bytes += r.size_bytes;
        std::cout << fmt::format("{:>7} {:<16} {:>7} {:>10}{}\n", p.pid, p.comm, p.ranges.size(),
                                 bytes / 1024, p.truncated ? " (truncated)" : "");
      }
    }
    return 0;
  }
  if (inv.history) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& p : a.history) {
      arr.push_back({{"boot_id", p.boot_id},
                     {"pid", p.pid},
                     {"tgid", p.tgid},
                     {"ppid", p.ppid},
                     {"comm", p.comm},
                     {"uid", p.uid},
                     {"start_time_ns", p.start_time_ns},
                     {"first_seen_unix_ns", p.first_seen_ns},
                     {"last_seen_unix_ns", p.last_seen_ns},
                     {"exited_unix_ns", p.exited_ns ? nlohmann::json(*p.exited_ns) : nullptr}});
    }
    if (inv.json) {
      std::cout << nlohmann::json{{"processes", arr}}.dump(2) << "\n";
    } else {
      std::cout << fmt::format("{:>5} {:>7} {:>7} {:<16} {:>14} {:>14}\n", "BOOT", "PID", "PPID",
                               "COMM", "SEEN_FOR_S", "EXITED");
      for (const auto& p : a.history) {
        const double seen_s = static_cast<double>(p.last_seen_ns - p.first_seen_ns) / 1e9;
        std::cout << fmt::format("{:>5} {:>7} {:>7} {:<16} {:>14.1f} {:>14}\n", p.boot_id, p.pid,
                                 p.ppid, p.comm, seen_s, p.exited_ns ? "yes" : "-");
      }
    }
    return 0;
  }
  if (inv.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& p : a.processes.processes) {
      arr.push_back({{"pid", p.pid},
                     {"tgid", p.tgid},
                     {"ppid", p.ppid},
                     {"comm", p.comm},
                     {"state", p.state},
                     {"uid", p.uid},
                     {"threads", p.threads},
                     {"start_time_ns", p.start_time_ns}});
    }
    std::cout << nlohmann::json{{"processes", arr}}.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{:>7} {:>7} {:>5} {:>6} {:>4}  {}\n", "PID", "PPID", "STATE", "UID",
                             "THR", "COMM");
    for (const auto& p : a.processes.processes) {
      std::cout << fmt::format("{:>7} {:>7} {:>5} {:>6} {:>4}  {}\n", p.pid, p.ppid, p.state, p.uid,
                               p.threads, p.comm);
    }
  }
  return 0;
}

// ---- walking RAM here (offline dump, or a mirror of our own) ----
Result<Answer> walk_here(const Invocation& inv, const shared::RamView& ram) {
  std::unique_ptr<sdb::ProfileCache> cache;
  if (inv.profile_cache != "none") {
    const std::string path =
        inv.profile_cache.empty() ? sdb::default_profile_cache_path() : inv.profile_cache;
    if (auto c = sdb::ProfileCache::open(path)) {
      cache = std::move(*c);
    } else {
      std::cerr << "glassbox: warning: profile cache off: " << c.error().message << "\n";
    }
  }
  const auto t0 = Clock::now();
  auto profile = sdb::build_profile(ram, inv.kernel_image, cache.get());
  if (!profile) return tl::unexpected(profile.error());
  Answer a;
  if (inv.command == "kernel") {
    auto& k = a.kernel;
    k.profile_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    for (const auto& [stage, ms] : profile->stage_ms) k.stages_ms[stage] = ms;
    auto info = sdb::read_kernel_info(ram, *profile);
    k.release = profile->release;
    k.version = info.version;
    k.cmdline = info.cmdline;
    k.build_id = profile->build_id;
    k.kaslr_slide = profile->base.kaslr_slide;
    k.phys_base = profile->base.phys_base;
    k.text_gva = profile->base.text_gva.value;
    k.text_gpa = profile->base.text_gpa.value;
    k.sources = profile->sources;
    k.symbols = profile->symbols->size();
    a.warnings = info.warnings;
  } else if (inv.command == "dmesg") {
    auto log = sdb::read_kernel_log(ram, *profile);
    if (!log) return tl::unexpected(log.error());
    a.log = std::move(*log);
    a.warnings = a.log.warnings;
  } else if (inv.command == "modules") {
    auto mods = sdb::list_modules(ram, *profile);
    if (!mods) return tl::unexpected(mods.error());
    a.modules = std::move(*mods);
    a.warnings = a.modules.warnings;
  } else if (inv.command == "regions") {
    auto regions = sdb::user_regions(ram, *profile);
    if (!regions) return tl::unexpected(regions.error());
    a.regions = std::move(*regions);
    a.warnings = a.regions.warnings;
  } else if (inv.command == "maps") {
    auto vmas = sdb::list_vmas(ram, *profile, inv.pid);
    if (!vmas) return tl::unexpected(vmas.error());
    a.vmas = std::move(*vmas);
    a.warnings = a.vmas.warnings;
  } else {
    auto procs = sdb::list_processes(ram, *profile);
    if (!procs) return tl::unexpected(procs.error());
    a.processes = std::move(*procs);
    a.warnings = a.processes.warnings;
  }
  return a;
}

// ---- asking semantic-db ----
std::vector<std::string> strings_of(
    const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>* v) {
  std::vector<std::string> out;
  if (v) {
    for (const auto* s : *v) out.push_back(s ? s->str() : "");
  }
  return out;
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// nullopt when semantic-db is not running (no socket). Errors: its own (e.g. kUnavailable "no
// guest kernel profile yet"), kTimeout, kProtocol for a reply that fails verification.
Result<std::optional<Answer>> ask_semantic_db(const Invocation& inv,
                                              const shared::StatePaths& paths) {
  flatbuffers::FlatBufferBuilder fbb(128);
  fb::semantic::Command type;
  flatbuffers::Offset<void> cmd;
  if (inv.command == "kernel") {
    type = fb::semantic::Command::GetKernel;
    cmd = fb::semantic::CreateGetKernel(fbb).Union();
  } else if (inv.command == "dmesg") {
    type = fb::semantic::Command::GetKernelLog;
    cmd = fb::semantic::CreateGetKernelLog(fbb, 0).Union();
  } else if (inv.command == "modules") {
    type = fb::semantic::Command::ListModules;
    cmd = fb::semantic::CreateListModules(fbb).Union();
  } else if (inv.command == "regions") {
    type = fb::semantic::Command::GetRegions;
    cmd = fb::semantic::CreateGetRegions(fbb, 0).Union();
  } else if (inv.command == "maps") {
    type = fb::semantic::Command::GetMaps;
    cmd = fb::semantic::CreateGetMaps(fbb, inv.pid).Union();
  } else {
    type = fb::semantic::Command::ListProcesses;
    cmd = fb::semantic::CreateListProcesses(fbb, inv.history).Union();
  }
  fb::semantic::FinishSemanticRequestBuffer(fbb,
                                            fb::semantic::CreateSemanticRequest(fbb, type, cmd));
  auto bytes =
      shared::request(paths.service_endpoint("semantic-db"),
                      {fbb.GetBufferPointer(), fbb.GetSize()}, std::chrono::milliseconds(30000));
  if (!bytes && bytes.error().code == Errc::kUnavailable) return std::optional<Answer>();
  if (!bytes) return tl::unexpected(bytes.error());
  flatbuffers::Verifier v(bytes->data(), bytes->size());
  if (bytes->size() < 8 || !v.VerifyBuffer<fb::semantic::SemanticReply>(nullptr)) {
    return fail(Errc::kProtocol, "semantic-db reply failed FlatBuffers verification");
  }
  const auto* r = flatbuffers::GetRoot<fb::semantic::SemanticReply>(bytes->data());
  if (const auto* e = r->error()) {
    return fail(static_cast<Errc>(e->code()), "semantic-db: " + str(e->message()));
  }
  Answer a;
  a.warnings = strings_of(r->warnings());
  if (r->processes()) {
    for (const auto* p : *r->processes()) {
      sdb::ProcessRow row;
      row.pid = p->pid();
      row.tgid = p->tgid();
      row.ppid = p->ppid();
      row.comm = str(p->comm());
      row.state = str(p->state());
      row.uid = p->uid();
      row.start_time_ns = p->start_time_ns();
      row.threads = p->threads();
      row.boot_id = p->boot_id();
      row.first_seen_ns = p->first_seen_unix_ns();
      row.last_seen_ns = p->last_seen_unix_ns();
      if (p->exited_unix_ns()) row.exited_ns = p->exited_unix_ns();
      if (inv.history) {
        a.history.push_back(row);
      } else {
        a.processes.processes.push_back(static_cast<const sdb::ProcessRecord&>(row));
      }
    }
  }
  if (r->modules()) {
    for (const auto* m : *r->modules()) {
      a.modules.modules.push_back({str(m->name()), m->base(), m->size_bytes()});
    }
  }
  if (r->log()) {
    for (const auto* l : *r->log())
      a.log.records.push_back({l->seq(), l->ts_nsec(), str(l->text())});
  }
  if (r->vmas()) {
    for (const auto* m : *r->vmas()) {
      sdb::Vma vma;
      vma.start = m->start();
      vma.end = m->end();
      vma.perms = str(m->perms());
      vma.offset_bytes = m->offset_bytes();
      vma.inode = m->inode();
      vma.dev_major = m->dev_major();
      vma.dev_minor = m->dev_minor();
      vma.path = str(m->path());
      a.vmas.vmas.push_back(std::move(vma));
    }
  }
  if (r->regions()) {
    for (const auto* p : *r->regions()) {
      sdb::ProcessRegions pr;
      pr.pid = p->pid();
      pr.comm = str(p->comm());
      pr.truncated = p->truncated();
      if (p->ranges()) {
        for (const auto* g : *p->ranges()) {
          sdb::MappedRange m;
          m.va = Gva(g->gva());
          m.gpa = Gpa(g->gpa());
          m.size_bytes = g->size_bytes();
          m.writable = g->writable();
          m.user = true;
          pr.ranges.push_back(m);
        }
      }
      a.regions.processes.push_back(std::move(pr));
    }
  }
  if (const auto* k = r->kernel()) {
    a.kernel.release = str(k->release());
    a.kernel.version = str(k->version());
    a.kernel.build_id = str(k->build_id());
    a.kernel.cmdline = str(k->cmdline());
    a.kernel.kaslr_slide = k->kaslr_slide();
    a.kernel.phys_base = k->phys_base();
    a.kernel.text_gva = k->text_gva();
    a.kernel.text_gpa = k->text_gpa();
    a.kernel.sources = strings_of(k->sources());
    a.kernel.symbols = k->symbols();
    a.kernel.profile_ms = k->profile_ms();
  }
  return std::optional<Answer>(std::move(a));
}

}  // namespace

int cmd_introspect(const Invocation& inv) {
  if (!inv.offline_ram.empty()) {
    if (inv.history) {
      return report_error(
          Error{Errc::kInvalidArgument, "--history is semantic-db's record; not with --ram"});
    }
    auto dump = shared::open_dump(inv.offline_ram);
    if (!dump) return report_error(dump.error());
    auto a = walk_here(inv, dump->view());
    return a ? print(inv, *a) : report_error(a.error());
  }
  shared::StatePaths paths(inv.state_dir);
  // Live, through semantic-db when it runs.
  auto asked = ask_semantic_db(inv, paths);
  if (!asked) return report_error(asked.error());
  if (*asked) return print(inv, **asked);
  if (inv.history) {
    return report_error(
        Error{Errc::kUnavailable, "--history needs glassbox-semantic-db running ([up] services)"});
  }
  // Live without semantic-db: a RamMirror of our own, like any other consumer of RAM.
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
  auto a = walk_here(inv, *view);
  return a ? print(inv, *a) : report_error(a.error());
}

}  // namespace glassbox::cli
