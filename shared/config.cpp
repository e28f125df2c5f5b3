#include "shared/config.hpp"

#include <toml++/toml.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "shared/paths.hpp"

namespace glassbox::shared {
namespace {

// Reads typed values out of one TOML table, remembering which keys were consumed so that
// the rest can be reported as unknown. Every error names the file, section and key.
class Section {
 public:
  Section(const toml::table* table, std::string name, std::string_view source)
      : table_(table), name_(std::move(name)), source_(source) {}

  Result<void> get(const char* key, std::string& out) {
    used_.insert(key);
    const toml::node* n = node(key);
    if (n == nullptr) return {};
    auto v = n->value<std::string>();
    if (!v) return bad(key, "expected a string");
    out = *v;
    return {};
  }
  Result<void> get(const char* key, bool& out) {
    used_.insert(key);
    const toml::node* n = node(key);
    if (n == nullptr) return {};
    if (!n->is_boolean()) return bad(key, "expected true or false");
    out = *n->value<bool>();
    return {};
  }
  Result<void> get(const char* key, uint32_t& out, int64_t lo, int64_t hi) {
    used_.insert(key);
    const toml::node* n = node(key);
    if (n == nullptr) return {};
    if (!n->is_integer()) return bad(key, range_text(lo, hi));
    int64_t v = *n->value<int64_t>();
    if (v < lo || v > hi) return bad(key, range_text(lo, hi) + ", got " + std::to_string(v));
    out = static_cast<uint32_t>(v);
    return {};
  }
  Result<void> get(const char* key, std::vector<std::string>& out) {
    used_.insert(key);
    const toml::node* n = node(key);
    if (n == nullptr) return {};
    const toml::array* arr = n->as_array();
    if (arr == nullptr) return bad(key, "expected an array of strings");
    std::vector<std::string> values;
    for (const toml::node& e : *arr) {
      auto s = e.value<std::string>();
      if (!s) return bad(key, "expected an array of strings");
      values.push_back(*s);
    }
    out = std::move(values);
    return {};
  }
  // Every key of the table must have been asked for.
  Result<void> reject_unknown() const {
    if (table_ == nullptr) return {};
    for (const auto& [k, v] : *table_) {
      (void)v;
      if (!used_.contains(std::string(k.str()))) {
        return fail(Errc::kInvalidArgument,
                    std::string(source_) + ": unknown key [" + name_ + "] " + std::string(k.str()));
      }
    }
    return {};
  }
  tl::unexpected<Error> bad(const char* key, const std::string& what) const {
    return fail(Errc::kInvalidArgument,
                std::string(source_) + ": [" + name_ + "] " + key + ": " + what);
  }

 private:
  const toml::node* node(const char* key) const {
    return table_ == nullptr ? nullptr : table_->get(key);
  }
  static std::string range_text(int64_t lo, int64_t hi) {
    return "expected an integer in " + std::to_string(lo) + ".." + std::to_string(hi);
  }
  const toml::table* table_;
  std::string name_;
  std::string_view source_;
  std::set<std::string> used_;
};

Result<void> read_sections(const toml::table& root, std::string_view src, Config& c) {
  static const std::set<std::string> kSections = {"instance",   "vm",      "screen", "snapshot",
                                                  "semantic",   "trace",   "miner",  "synth",
                                                  "compositor", "metrics", "up",     "iceoryx"};
  for (const auto& [k, v] : root) {
    if (!kSections.contains(std::string(k.str()))) {
      return fail(Errc::kInvalidArgument,
                  std::string(src) + ": unknown section [" + std::string(k.str()) + "]");
    }
    if (!v.is_table()) {
      return fail(Errc::kInvalidArgument,
                  std::string(src) + ": [" + std::string(k.str()) + "] must be a table");
    }
  }
  auto table = [&](const char* name) { return root[name].as_table(); };

  Section inst(table("instance"), "instance", src);
  GB_TRY(inst.get("name", c.instance.name));
  GB_TRY(inst.reject_unknown());
  static const std::regex kName("[A-Za-z0-9_-]{1,32}");
  if (!std::regex_match(c.instance.name, kName)) {
    return inst.bad("name",
                    "expected 1..32 characters of [A-Za-z0-9_-], got '" + c.instance.name + "'");
  }

  Section vm(table("vm"), "vm", src);
  GB_TRY(vm.get("kernel", c.vm.kernel));
  GB_TRY(vm.get("initrd", c.vm.initrd));
  GB_TRY(vm.get("append", c.vm.append));
  GB_TRY(vm.get("disk", c.vm.disk));
  GB_TRY(vm.get("cdrom", c.vm.cdrom));
  GB_TRY(vm.get("memory_mib", c.vm.memory_mib, 16, 65536));
  GB_TRY(vm.get("cpus", c.vm.cpus, 1, 64));
  std::string accel = accel_name(c.vm.accel);
  GB_TRY(vm.get("accel", accel));
  if (accel == "auto")
    c.vm.accel = Accel::kAuto;
  else if (accel == "kvm")
    c.vm.accel = Accel::kKvm;
  else if (accel == "tcg")
    c.vm.accel = Accel::kTcg;
  else
    return vm.bad("accel", "expected auto, kvm or tcg, got '" + accel + "'");
  GB_TRY(vm.get("machine", c.vm.machine));
  GB_TRY(vm.get("ready_marker", c.vm.ready_marker));
  GB_TRY(vm.get("restart", c.vm.restart));
  GB_TRY(vm.get("restart_backoff_ms", c.vm.restart_backoff_ms, 0, 600000));
  GB_TRY(vm.get("restart_backoff_max_ms", c.vm.restart_backoff_max_ms, 0, 3600000));
  GB_TRY(vm.get("kvm_probe_timeout_ms", c.vm.kvm_probe_timeout_ms, 100, 120000));
  GB_TRY(vm.get("qemu", c.vm.qemu));
  GB_TRY(vm.get("extra_args", c.vm.extra_args));
  GB_TRY(vm.reject_unknown());
  if (c.vm.ready_marker.empty()) return vm.bad("ready_marker", "must not be empty");
  if (c.vm.machine.empty()) return vm.bad("machine", "must not be empty");
  if (!c.vm.initrd.empty() && c.vm.kernel.empty()) {
    return vm.bad("initrd", "set without [vm] kernel");
  }

  Section screen(table("screen"), "screen", src);
  GB_TRY(screen.get("max_fps", c.screen.max_fps, 1, 240));
  GB_TRY(screen.reject_unknown());

  Section snap(table("snapshot"), "snapshot", src);
  GB_TRY(snap.get("hz", c.snapshot.hz, 1, 240));
  GB_TRY(snap.get("keyframe_every", c.snapshot.keyframe_every, 1, 1000000));
  GB_TRY(snap.get("method", c.snapshot.method));
  GB_TRY(snap.get("hash_threads", c.snapshot.hash_threads, 1, 16));
  GB_TRY(snap.reject_unknown());
  if (c.snapshot.method != "auto" && c.snapshot.method != "xxh3" &&
      c.snapshot.method != "soft-dirty") {
    return snap.bad("method", "expected auto, xxh3 or soft-dirty, got '" + c.snapshot.method + "'");
  }

  Section sem(table("semantic"), "semantic", src);
  GB_TRY(sem.get("interval_ms", c.semantic.interval_ms, 50, 600000));
  GB_TRY(sem.get("db", c.semantic.db));
  GB_TRY(sem.get("profile_cache", c.semantic.profile_cache));
  GB_TRY(sem.get("kernel", c.semantic.kernel));
  GB_TRY(sem.get("log_events", c.semantic.log_events));
  GB_TRY(sem.reject_unknown());

  Section trace(table("trace"), "trace", src);
  GB_TRY(trace.get("mode", c.trace.mode));
  GB_TRY(trace.get("ring_events", c.trace.ring_events, 1u << 12, 1u << 26));
  GB_TRY(trace.get("max_tbs", c.trace.max_tbs, 1u << 12, 1u << 26));
  GB_TRY(trace.get("tb_ring_mib", c.trace.tb_ring_mib, 1, 1024));
  GB_TRY(trace.get("batch_events", c.trace.batch_events, 1024, 1u << 20));
  GB_TRY(trace.reject_unknown());
  if (c.trace.mode != "off" && c.trace.mode != "counts" && c.trace.mode != "stream") {
    return trace.bad("mode", "expected off, counts or stream, got '" + c.trace.mode + "'");
  }
  if ((c.trace.ring_events & (c.trace.ring_events - 1)) != 0) {
    return trace.bad("ring_events",
                     "expected a power of two, got " + std::to_string(c.trace.ring_events));
  }

  Section miner(table("miner"), "miner", src);
  GB_TRY(miner.get("db", c.miner.db));
  GB_TRY(miner.get("top_k", c.miner.top_k, 1024, 1u << 22));
  GB_TRY(miner.get("publish_top", c.miner.publish_top, 0, 4096));
  GB_TRY(miner.get("trace_threshold", c.miner.trace_threshold, 2, 1000000));
  GB_TRY(miner.get("persist_interval_ms", c.miner.persist_interval_ms, 100, 600000));
  GB_TRY(miner.reject_unknown());

  Section synth(table("synth"), "synth", src);
  GB_TRY(synth.get("db", c.synth.db));
  GB_TRY(synth.get("workers", c.synth.workers, 1, 64));
  GB_TRY(synth.get("queue_max", c.synth.queue_max, 1, 1u << 20));
  GB_TRY(synth.get("verify_timeout_ms", c.synth.verify_timeout_ms, 10, 600000));
  GB_TRY(synth.get("cegis_timeout_ms", c.synth.cegis_timeout_ms, 0, 600000));
  GB_TRY(synth.get("cegis_max_insns", c.synth.cegis_max_insns, 1, 16));
  GB_TRY(synth.reject_unknown());

  Section comp(table("compositor"), "compositor", src);
  GB_TRY(comp.get("window", c.compositor.window));
  if (c.compositor.window != "auto" && c.compositor.window != "on" &&
      c.compositor.window != "off") {
    return comp.bad("window", "expected auto, on or off, got '" + c.compositor.window + "'");
  }
  GB_TRY(comp.get("width", c.compositor.width, 320, 8192));
  GB_TRY(comp.get("height", c.compositor.height, 240, 8192));
  GB_TRY(comp.get("fps", c.compositor.fps, 1, 240));
  GB_TRY(comp.get("bytes_per_pixel", c.compositor.bytes_per_pixel, 0, 65536));
  if (c.compositor.bytes_per_pixel != 0 &&
      (c.compositor.bytes_per_pixel < 4 || !std::has_single_bit(c.compositor.bytes_per_pixel))) {
    return comp.bad("bytes_per_pixel", "expected 0 (auto) or a power of two from 4 to 65536, got " +
                                           std::to_string(c.compositor.bytes_per_pixel));
  }
  GB_TRY(comp.get("glow_ms", c.compositor.glow_ms, 0, 600000));
  GB_TRY(comp.get("crt", c.compositor.crt));
  GB_TRY(comp.get("pulse", c.compositor.pulse));
  GB_TRY(comp.get("mode", c.compositor.mode));
  if (c.compositor.mode != "2d" && c.compositor.mode != "3d") {
    return comp.bad("mode", "expected 2d or 3d, got '" + c.compositor.mode + "'");
  }
  GB_TRY(comp.get("highlight", c.compositor.highlight));
  GB_TRY(comp.get("device", c.compositor.device));
  GB_TRY(comp.get("font", c.compositor.font));
  GB_TRY(comp.get("volume_bits", c.compositor.volume_bits, 4, 9));
  GB_TRY(comp.reject_unknown());

  Section metrics(table("metrics"), "metrics", src);
  GB_TRY(metrics.get("host", c.metrics.host));
  GB_TRY(metrics.get("base_port", c.metrics.base_port, 0, 65000));
  GB_TRY(metrics.reject_unknown());

  Section up(table("up"), "up", src);
  GB_TRY(up.get("services", c.up.services));
  GB_TRY(up.get("restart_backoff_ms", c.up.restart_backoff_ms, 0, 600000));
  GB_TRY(up.get("restart_backoff_max_ms", c.up.restart_backoff_max_ms, 0, 3600000));
  GB_TRY(up.reject_unknown());
  static const std::set<std::string> kServices = {
      "vm-supervisor", "ram-snapshotter", "semantic-db", "trace-consumer",
      "pattern-miner", "smt-synthesizer", "compositor"};
  for (const auto& s : c.up.services) {
    if (!kServices.contains(s)) return up.bad("services", "unknown service '" + s + "'");
  }

  Section iox(table("iceoryx"), "iceoryx", src);
  GB_TRY(iox.get("roudi", c.iceoryx.roudi));
  GB_TRY(iox.get("roudi_config", c.iceoryx.roudi_config));
  GB_TRY(iox.reject_unknown());
  return {};
}

}  // namespace

const char* accel_name(Accel a) noexcept {
  switch (a) {
    case Accel::kAuto:
      return "auto";
    case Accel::kKvm:
      return "kvm";
    case Accel::kTcg:
      return "tcg";
  }
  return "auto";
}

std::string reference_guest_dir() {
  if (const char* env = std::getenv("GLASSBOX_GUEST_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  return exe_dir() + "/../guest";
}

Result<Config> parse_config(std::string_view toml_text, std::string_view source_name) {
  Config c;
  c.source = std::string(source_name);
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source_name << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
        << e.description();
    return fail(Errc::kInvalidArgument, msg.str());
  }
  GB_TRY(read_sections(root, source_name, c));
  if (c.vm.kernel.empty() && c.vm.disk.empty() && c.vm.cdrom.empty()) {
    const std::string dir = reference_guest_dir();
    c.vm.kernel = dir + "/vmlinuz";
    c.vm.initrd = dir + "/initrd.img";
    if (c.vm.append.empty()) c.vm.append = std::string(kReferenceAppend);
  }
  if (c.iceoryx.roudi_config.empty()) c.iceoryx.roudi_config = share_dir() + "/roudi.toml";
  return c;
}

Result<Config> load_config(const std::string& path) {
  if (path.empty()) return parse_config("", "<built-in defaults>");
  std::ifstream in(path);
  if (!in) {
    return fail(errno == ENOENT ? Errc::kNotFound : Errc::kIo,
                "config " + path + ": " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

Result<void> check_config_files(const Config& c) {
  auto check = [&](const char* key, const std::string& p) -> Result<void> {
    if (p.empty()) return {};
    if (::access(p.c_str(), R_OK) != 0) {
      const bool builtin =
          c.source == "<built-in defaults>" || p.find("/guest/") != std::string::npos;
      return fail(Errc::kNotFound,
                  c.source + ": [vm] " + key + ": cannot read " + p + ": " + std::strerror(errno) +
                      (builtin ? " (build the reference guest: orchestration/setup)" : ""));
    }
    return {};
  };
  GB_TRY(check("kernel", c.vm.kernel));
  GB_TRY(check("initrd", c.vm.initrd));
  GB_TRY(check("disk", c.vm.disk));
  GB_TRY(check("cdrom", c.vm.cdrom));
  return {};
}

}  // namespace glassbox::shared
