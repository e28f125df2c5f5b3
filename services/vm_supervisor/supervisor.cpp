#include "services/vm_supervisor/supervisor.hpp"

#include <fcntl.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "events_generated.h"
#include "frame_generated.h"
#include "services/vm_supervisor/cpu_state.hpp"
#include "services/vm_supervisor/input_encoding.hpp"
#include "services/vm_supervisor/kvm_probe.hpp"
#include "services/vm_supervisor/qemu_command.hpp"
#include "services/vm_supervisor/qmp_client.hpp"
#include "services/vm_supervisor/vm_messages.hpp"
#include "services/vm_supervisor/vnc_screen.hpp"
#include "shared/bus.hpp"
#include "shared/iox.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/png.hpp"
#include "shared/process.hpp"
#include "shared/ram_layout.hpp"

namespace glassbox::vm_supervisor {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace fb = glassbox::schema;

constexpr size_t kMaxSerialLineBytes = 4096;
constexpr size_t kMaxTypeTextBytes = 4096;
constexpr milliseconds kKeyInterval{12};
constexpr milliseconds kQmpConnectTimeout{15000};
constexpr milliseconds kLoopTick{20};
constexpr auto kStableBoot =
    std::chrono::seconds(30);  // a boot that lived this long resets backoff

uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

struct Supervisor::Impl {
  shared::Config config;
  shared::StatePaths paths;
  QemuPaths qpaths;
  std::shared_ptr<spdlog::logger> log;
  Clock::time_point started_at = Clock::now();

  // Metrics.
  std::unique_ptr<shared::MetricsExposer> metrics;
  prometheus::Counter* m_boots = nullptr;
  prometheus::Counter* m_restarts = nullptr;
  prometheus::Counter* m_serial_lines = nullptr;
  prometheus::Counter* m_frames = nullptr;
  prometheus::Counter* m_malformed = nullptr;
  prometheus::Counter* m_requests = nullptr;
  prometheus::Family<prometheus::Counter>* m_qmp_events = nullptr;
  prometheus::Gauge* m_ready = nullptr;
  prometheus::Gauge* m_boot_to_ready = nullptr;
  prometheus::Gauge* m_running = nullptr;

  // Bus.
  std::unique_ptr<shared::EventPublisher> events;
  std::unique_ptr<shared::CommandServer> commands;
  uint64_t malformed_requests = 0;
  Clock::time_point last_health{};

  // Screen (the VNC thread publishes; the rest only reads the atomics).
  std::unique_ptr<VncScreen> screen;
  std::atomic<bool> iox_ready{false};
  std::atomic<uint64_t> frames_published{0};
  std::atomic<uint64_t> frames_failed{0};
  std::unique_ptr<shared::ChunkPublisher> frame_publisher;  // VNC thread only
  Clock::time_point last_iox_try{};
  bool iox_warned = false;

  // The VM.
  AccelChoice accel;
  pid_t qemu_pid = 0;
  std::optional<QmpClient> qmp;
  fb::vm::VmState state = fb::vm::VmState::Stopped;
  bool ready = false;
  Clock::time_point boot_started{};
  double boot_to_ready_s = -1;
  uint32_t boots = 0;
  uint32_t vm_restarts = 0;
  bool expect_exit = false;  // a user command (kill, powerdown) or the guest ended QEMU
  std::string exit_reason;   // why QEMU is expected to exit
  bool restart_pending = false;
  Clock::time_point restart_at{};
  uint32_t backoff_ms = 0;

  // gpa <-> RAM-file map of the current boot, from `info mtree -f`.
  std::vector<VmStatusFields::Range> ram_layout;
  std::vector<VcpuRegisters> vcpus_reply;  // set by GetVcpus for its own reply only

  // Serial console tail. serial_offset: bytes of the log consumed (the next read's offset).
  int serial_fd = -1;
  std::string serial_partial;
  uint64_t serial_lines = 0;
  uint64_t serial_offset = 0;

  // Re-attachment (as libvirtd does): a restarted supervisor finds the QEMU its predecessor
  // started (own session, so it outlived it) and takes it over through QMP and VNC instead of
  // booting a new one. `attached`: qemu_pid is not our child (death seen by polling, no wait
  // status). The supervisor's own state is kept in STATE/vm/supervisor.json.
  bool attached = false;
  uint32_t attaches = 0;
  uint64_t boot_started_unix_ns = 0;
  Clock::time_point last_state_save{};
  std::string last_saved_state;

  Impl(shared::Config c, shared::StatePaths p)
      : config(std::move(c)), paths(std::move(p)), qpaths(qemu_paths_for(config, paths)) {
    backoff_ms = config.vm.restart_backoff_ms;
  }

  // ---- setup ----
  Result<void> setup_metrics() {
    uint32_t port = config.metrics.base_port == 0 ? 0 : config.metrics.base_port + 1;
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
    m_boots = counter("glassbox_vm_boots_total", "QEMU processes started by vm-supervisor");
    m_restarts =
        counter("glassbox_vm_restarts_total", "Unexpected QEMU deaths followed by a reboot");
    m_serial_lines = counter("glassbox_vm_serial_lines_total", "Serial console lines published");
    m_frames =
        counter("glassbox_vm_frames_published_total", "Screen frames published over iceoryx");
    m_malformed = counter("glassbox_vm_supervisor_malformed_requests_total",
                          "Command requests that failed FlatBuffers verification");
    m_requests = counter("glassbox_vm_supervisor_requests_total", "Command requests served");
    m_qmp_events = &prometheus::BuildCounter()
                        .Name("glassbox_vm_qmp_events_total")
                        .Help("QMP events received, by event name")
                        .Register(reg);
    m_ready = gauge("glassbox_vm_ready", "1 when the guest printed its ready marker");
    m_boot_to_ready =
        gauge("glassbox_vm_boot_to_ready_seconds", "QEMU start to ready marker, current boot");
    m_running = gauge("glassbox_vm_qemu_running", "1 while a QEMU process runs");
    return {};
  }

  void try_init_iox() {
    // RouDi may still be starting (`glassbox up` starts it beside us): retry every 250 ms,
    // and say so once.
    if (iox_ready.load() || Clock::now() - last_iox_try < milliseconds(250)) return;
    last_iox_try = Clock::now();
    if (auto r = shared::init_runtime(config.instance.name, "vm-supervisor"); !r) {
      if (!iox_warned) {
        log->warn("screen frames not published over iceoryx yet: {}", r.error().message);
        iox_warned = true;
      }
      return;
    }
    iox_ready.store(true);
    log->info("iceoryx runtime up; publishing frames on (glassbox, {}, vm-screen)",
              config.instance.name);
  }

  // VNC thread: publish one frame over iceoryx.
  void publish_frame(const Frame& f) {
    if (!iox_ready.load()) return;
    if (!frame_publisher) {
      auto p = shared::ChunkPublisher::create(config.instance.name, "vm-screen", 1);
      if (!p) return;
      frame_publisher = std::move(*p);
    }
    flatbuffers::FlatBufferBuilder fbb(256);
    auto inst = fbb.CreateString(config.instance.name);
    const auto captured_ns = unix_ns();
    auto hdr = fb::frame::CreateFrameHeader(fbb, inst, f.seq, f.width, f.height, f.stride_bytes,
                                            fb::frame::PixelFormat::Bgrx8888, captured_ns);
    fb::frame::FinishFrameHeaderBuffer(fbb, hdr);
    const uint64_t payload = uint64_t{f.height} * f.stride_bytes;
    if (payload > f.pixels.size()) return;
    auto r =
        frame_publisher->publish({fbb.GetBufferPointer(), fbb.GetSize()}, payload,
                                 [&](uint8_t* dst) { std::memcpy(dst, f.pixels.data(), payload); });
    if (r) {
      frames_published.fetch_add(1);
      m_frames->Increment();
    } else {
      frames_failed.fetch_add(1);
    }
  }

  // ---- events ----
  void publish_event(std::string_view topic, flatbuffers::FlatBufferBuilder& fbb) {
    if (events) (void)events->publish(topic, {fbb.GetBufferPointer(), fbb.GetSize()});
  }

  void publish_state(const std::string& reason) {
    log->info("vm {}: {}", fb::vm::EnumNameVmState(state), reason);
    flatbuffers::FlatBufferBuilder fbb(256);
    auto body = fb::events::CreateVmStateChanged(fbb, state, ready, qemu_pid, boots,
                                                 fbb.CreateString(reason));
    auto ev = fb::events::CreateEvent(fbb, fbb.CreateString(config.instance.name),
                                      fbb.CreateString("vm-supervisor"), unix_ns(),
                                      fb::events::Body::VmStateChanged, body.Union());
    fb::events::FinishEventBuffer(fbb, ev);
    publish_event("vm.state", fbb);
  }

  void publish_serial_line(const std::string& line) {
    ++serial_lines;
    m_serial_lines->Increment();
    flatbuffers::FlatBufferBuilder fbb(line.size() + 128);
    auto body = fb::events::CreateSerialLine(fbb, serial_lines, fbb.CreateString(line));
    auto ev = fb::events::CreateEvent(fbb, fbb.CreateString(config.instance.name),
                                      fbb.CreateString("vm-supervisor"), unix_ns(),
                                      fb::events::Body::SerialLine, body.Union());
    fb::events::FinishEventBuffer(fbb, ev);
    publish_event("vm.serial", fbb);
  }

  void publish_qmp_event(const QmpEvent& e) {
    m_qmp_events->Add({{"instance", config.instance.name}, {"event", e.name}}).Increment();
    flatbuffers::FlatBufferBuilder fbb(256);
    const std::string data = e.data ? e.data->dump() : "{}";
    auto body = fb::events::CreateQmpEvent(fbb, fbb.CreateString(e.name), fbb.CreateString(data));
    auto ev = fb::events::CreateEvent(fbb, fbb.CreateString(config.instance.name),
                                      fbb.CreateString("vm-supervisor"), unix_ns(),
                                      fb::events::Body::QmpEvent, body.Union());
    fb::events::FinishEventBuffer(fbb, ev);
    publish_event("vm.qmp", fbb);
  }

  // The status sections this service contributes: {"vm": {...}}.
  nlohmann::json summary() const {
    auto st = screen ? screen->stats() : VncScreen::Stats{};
    nlohmann::json vm = {
        {"state", fb::vm::EnumNameVmState(state)},
        {"ready", ready},
        {"accel", config_accel_name()},
        {"accel_reason", accel.reason},
        {"qemu_pid", qemu_pid},
        {"boot_to_ready_s", boot_to_ready_s},
        {"boots", boots},
        {"vm_restarts", vm_restarts},
        {"serial_lines", serial_lines},
        {"screen",
         {{"width", st.width},
          {"height", st.height},
          {"connected", st.connected},
          {"frames_published", frames_published.load()},
          {"iceoryx", iox_ready.load()}}},
        {"malformed_requests", malformed_requests},
        {"ram_path", qpaths.ram_file},
        {"ram_size_bytes", uint64_t{config.vm.memory_mib} << 20},
    };
    return {{"vm", vm}};
  }
  const char* config_accel_name() const {
    return accel.accel == shared::Accel::kKvm ? "kvm" : "tcg";
  }

  VmStatusFields status_fields() const {
    auto st = screen ? screen->stats() : VncScreen::Stats{};
    VmStatusFields s;
    s.state = state;
    s.ready = ready;
    s.accel = accel.accel == shared::Accel::kKvm ? fb::vm::Accel::Kvm : fb::vm::Accel::Tcg;
    s.accel_reason = accel.reason;
    s.qemu_pid = qemu_pid;
    s.boot_to_ready_s = boot_to_ready_s;
    s.boots = boots;
    s.vm_restarts = vm_restarts;
    s.screen_width = st.width;
    s.screen_height = st.height;
    s.frames_published = frames_published.load();
    s.serial_lines = serial_lines;
    s.ram_path = qpaths.ram_file;
    s.ram_size_bytes = uint64_t{config.vm.memory_mib} << 20;
    s.qmp_socket = qpaths.qmp_socket;
    s.vnc_socket = qpaths.vnc_socket;
    s.serial_log = qpaths.serial_log;
    s.ram_layout = ram_layout;
    s.service.instance = config.instance.name;
    s.service.service = "vm-supervisor";
    s.service.pid = ::getpid();
    s.service.uptime_s = std::chrono::duration<double>(Clock::now() - started_at).count();
    s.service.metrics_url = metrics ? metrics->url() : "";
    s.service.summary_json = summary().dump();
    return s;
  }

  void publish_health() {
    if (Clock::now() - last_health < std::chrono::seconds(5)) return;
    last_health = Clock::now();
    auto s = status_fields();
    flatbuffers::FlatBufferBuilder fbb(512);
    auto svc = build_service_status(fbb, s.service);
    auto ev = fb::events::CreateEvent(fbb, fbb.CreateString(config.instance.name),
                                      fbb.CreateString("vm-supervisor"), unix_ns(),
                                      fb::events::Body::health_ServiceStatus, svc.Union());
    fb::events::FinishEventBuffer(fbb, ev);
    publish_event("health", fbb);
  }

  // Reads the guest-physical RAM map from QEMU (`info mtree -f`): which gpa ranges are
  // backed by our RAM file, and at which file offsets.
  Result<void> refresh_ram_layout() {
    GB_TRY(need_qmp());
    auto text = qmp->human_monitor_command("info mtree -f");
    if (!text) return tl::unexpected(text.error());
    auto layout =
        shared::RamLayout::parse_mtree(*text, "glassbox-ram", uint64_t{config.vm.memory_mib} << 20);
    if (!layout) return tl::unexpected(layout.error());
    ram_layout.clear();
    for (const auto& r : layout->regions()) {
      ram_layout.push_back({r.gpa.value, r.size_bytes, r.file_offset});
    }
    return {};
  }

  // ---- the supervisor's own state, for a successor ----
  std::string state_file() const { return paths.vm_dir() + "/supervisor.json"; }

  // Writes STATE/vm/supervisor.json (tmp + rename) when it changed, at most once a second
  // unless `now`. Holds what a successor cannot ask QEMU: boots, restarts, readiness, the boot
  // time and how much of the serial log was already published.
  void save_state(bool now = false) {
    if (!now && Clock::now() - last_state_save < milliseconds(1000)) return;
    last_state_save = Clock::now();
    const nlohmann::json j = {{"qemu_pid", qemu_pid},
                              {"ram_file", qpaths.ram_file},
                              {"accel", config_accel_name()},
                              {"accel_reason", accel.reason},
                              {"boots", boots},
                              {"vm_restarts", vm_restarts},
                              {"boot_started_unix_ns", boot_started_unix_ns},
                              {"ready", ready},
                              {"boot_to_ready_s", boot_to_ready_s},
                              {"serial_offset", serial_offset - serial_partial.size()},
                              {"serial_lines", serial_lines},
                              {"attaches", attaches}};
    const std::string text = j.dump();
    if (text == last_saved_state) return;
    const std::string tmp = state_file() + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return;
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) == 0 && ok && std::rename(tmp.c_str(), state_file().c_str()) == 0) {
      last_saved_state = text;
    }
  }

  // Takes over the QEMU a previous supervisor left running: its pid file names a live process
  // whose command line holds our RAM file, its QMP socket answers, and supervisor.json is
  // ours. Returns false (nothing changed) otherwise; the caller then boots a fresh VM.
  bool try_attach() {
    auto pid = shared::read_pid_file(paths.qemu_pid_file());
    if (!pid || !shared::process_alive(*pid) ||
        shared::process_cmdline(*pid).find(qpaths.ram_file) == std::string::npos) {
      return false;
    }
    std::string text;
    if (FILE* f = std::fopen(state_file().c_str(), "r")) {
      char buf[4096];
      const size_t n = std::fread(buf, 1, sizeof buf, f);  // the file is ~400 bytes
      text.assign(buf, n);
      std::fclose(f);
    }
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object() || j.value("qemu_pid", 0) != *pid ||
        j.value("ram_file", "") != qpaths.ram_file) {
      log->warn("QEMU pid {} runs, but {} does not describe it: not re-attaching", *pid,
                state_file());
      return false;
    }
    auto q = QmpClient::connect(qpaths.qmp_socket, milliseconds(3000));
    if (!q) {
      log->warn("QEMU pid {} runs but its QMP does not answer ({}): not re-attaching", *pid,
                q.error().message);
      return false;
    }
    qmp.emplace(std::move(*q));
    qemu_pid = *pid;
    attached = true;
    attaches = j.value("attaches", 0u) + 1;
    boots = j.value("boots", 1u);
    vm_restarts = j.value("vm_restarts", 0u);
    ready = j.value("ready", false);
    boot_to_ready_s = j.value("boot_to_ready_s", -1.0);
    boot_started_unix_ns = j.value("boot_started_unix_ns", uint64_t{0});
    const double age_s = boot_started_unix_ns > 0 && unix_ns() > boot_started_unix_ns
                             ? static_cast<double>(unix_ns() - boot_started_unix_ns) / 1e9
                             : 0.0;
    boot_started = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(age_s));
    const std::string acc = j.value("accel", "tcg");
    accel = {acc == "kvm" ? shared::Accel::kKvm : shared::Accel::kTcg,
             "re-attached: " + j.value("accel_reason", acc)};
    // Serial lines written while no supervisor ran are published now: resume where the
    // predecessor stopped.
    serial_offset = j.value("serial_offset", uint64_t{0});
    serial_lines = j.value("serial_lines", uint64_t{0});
    serial_fd = ::open(qpaths.serial_log.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (serial_fd >= 0 && ::fstat(serial_fd, &st) == 0 &&
        serial_offset <= static_cast<uint64_t>(st.st_size)) {
      ::lseek(serial_fd, static_cast<off_t>(serial_offset), SEEK_SET);
    } else {
      serial_offset = 0;
    }
    state = ready ? fb::vm::VmState::Running : fb::vm::VmState::Booting;
    if (auto status = qmp->execute("query-status"); status && status->contains("status")) {
      if ((*status)["status"] == "paused") state = fb::vm::VmState::Paused;
    }
    if (auto r = refresh_ram_layout(); !r) log->warn("RAM layout: {}", r.error().message);
    m_running->Set(1);
    m_ready->Set(ready ? 1 : 0);
    if (boot_to_ready_s >= 0) m_boot_to_ready->Set(boot_to_ready_s);
    log->info("re-attached to QEMU pid {} (booted {:.1f} s ago, {}), serial log from byte {}",
              qemu_pid, age_s, ready ? "ready" : "not ready yet", serial_offset);
    publish_state("re-attached to running qemu (pid " + std::to_string(qemu_pid) + ")");
    save_state(true);
    return true;
  }

  // ---- QEMU lifecycle ----
  void kill_stale_qemu() {
    auto pid = shared::read_pid_file(paths.qemu_pid_file());
    if (!pid) return;
    if (shared::process_alive(*pid) &&
        shared::process_cmdline(*pid).find(qpaths.ram_file) != std::string::npos) {
      log->warn("stopping QEMU pid {} left by a previous vm-supervisor", *pid);
      shared::terminate_group(*pid, milliseconds(2000));
    }
    ::unlink(paths.qemu_pid_file().c_str());
  }

  Result<void> boot() {
    restart_pending = false;
    kill_stale_qemu();
    ::unlink(qpaths.qmp_socket.c_str());
    ::unlink(qpaths.vnc_socket.c_str());
    // A fresh RAM file per boot: readers that mapped the old one see a new inode (a new
    // epoch) instead of a file QEMU silently reuses.
    ::unlink(qpaths.ram_file.c_str());
    ::unlink(qpaths.trace_shm.c_str());  // likewise for the trace plugin's rings
    ::rename(qpaths.serial_log.c_str(), (paths.vm_dir() + "/serial.prev.log").c_str());
    close_serial();
    serial_offset = 0;
    attached = false;
    const auto argv = build_qemu_argv(config, accel.accel, qpaths);
    auto pid = shared::spawn(argv, {.new_session = true, .output_path = paths.qemu_log()});
    if (!pid) {
      if (pid.error().code == Errc::kNotFound) {
        return fail(Errc::kNotFound,
                    config.vm.qemu + " not found: install the Debian package qemu-system-x86");
      }
      return tl::unexpected(pid.error());
    }
    qemu_pid = *pid;
    (void)shared::write_pid_file(paths.qemu_pid_file(), qemu_pid);
    ++boots;
    m_boots->Increment();
    m_running->Set(1);
    boot_started = Clock::now();
    boot_started_unix_ns = unix_ns();
    ready = false;
    m_ready->Set(0);
    boot_to_ready_s = -1;
    expect_exit = false;
    exit_reason.clear();
    state = fb::vm::VmState::Booting;
    publish_state("qemu started (pid " + std::to_string(qemu_pid) + ", " + config_accel_name() +
                  ")");
    auto q = QmpClient::connect(qpaths.qmp_socket, kQmpConnectTimeout);
    if (!q) {
      log->error("QMP connect failed: {} (see {})", q.error().message, paths.qemu_log());
      return {};  // the exit (if any) is handled by the loop
    }
    qmp.emplace(std::move(*q));
    if (auto st = qmp->execute("query-status"); st && st->contains("status")) {
      if ((*st)["status"] == "paused") state = fb::vm::VmState::Paused;
    }
    if (auto r = refresh_ram_layout(); !r) log->warn("RAM layout: {}", r.error().message);
    return {};
  }

  // `status`: the wait status, or nullopt for a QEMU we re-attached to (not our child).
  void on_qemu_exit(std::optional<int> status) {
    const std::string how = status ? shared::describe_wait_status(*status)
                                   : std::string("exited (re-attached: no wait status)");
    attached = false;
    drain_serial();
    close_serial();
    qmp.reset();
    const bool lived_long = Clock::now() - boot_started > kStableBoot;
    qemu_pid = 0;
    ram_layout.clear();
    m_running->Set(0);
    ::unlink(paths.qemu_pid_file().c_str());
    state = fb::vm::VmState::Stopped;
    ready = false;
    m_ready->Set(0);
    if (expect_exit) {
      publish_state("qemu " + how + " (" + exit_reason + ")");
      return;
    }
    if (!config.vm.restart) {
      publish_state("qemu " + how + " unexpectedly; [vm] restart is off");
      return;
    }
    if (lived_long) backoff_ms = config.vm.restart_backoff_ms;
    ++vm_restarts;
    m_restarts->Increment();
    restart_pending = true;
    restart_at = Clock::now() + milliseconds(backoff_ms);
    publish_state("qemu " + how + " unexpectedly; rebooting in " + std::to_string(backoff_ms) +
                  " ms");
    backoff_ms = std::min(std::max(backoff_ms * 2, 1u), config.vm.restart_backoff_max_ms);
  }

  void stop_qemu() {
    if (qemu_pid <= 0) return;
    expect_exit = true;
    exit_reason = "supervisor stopping";
    if (qmp) (void)qmp->execute("quit", milliseconds(2000));
    if (attached) {
      for (int i = 0; i < 150 && shared::process_alive(qemu_pid); ++i) {
        std::this_thread::sleep_for(milliseconds(20));
      }
      if (shared::process_alive(qemu_pid)) shared::terminate_group(qemu_pid, milliseconds(2000));
    } else if (!shared::reap_for(qemu_pid, milliseconds(3000))) {
      shared::terminate_group(qemu_pid, milliseconds(2000));
      (void)shared::reap_for(qemu_pid, milliseconds(1000));
    }
    attached = false;
    qmp.reset();
    qemu_pid = 0;
    m_running->Set(0);
    ::unlink(paths.qemu_pid_file().c_str());
    state = fb::vm::VmState::Stopped;
    publish_state("qemu stopped: supervisor shutting down");
  }

  // ---- serial console ----
  void close_serial() {
    if (serial_fd >= 0) ::close(serial_fd);
    serial_fd = -1;
    serial_partial.clear();
  }

  void drain_serial() {
    if (serial_fd < 0) {
      if (qemu_pid <= 0) return;
      serial_fd = ::open(qpaths.serial_log.c_str(), O_RDONLY | O_CLOEXEC);
      if (serial_fd < 0) return;
    }
    char buf[65536];
    for (int rounds = 0; rounds < 64; ++rounds) {  // bounded: at most 4 MiB per tick
      ssize_t n = ::read(serial_fd, buf, sizeof buf);
      if (n <= 0) break;
      serial_offset += static_cast<uint64_t>(n);
      for (ssize_t i = 0; i < n; ++i) {
        const char ch = buf[i];
        if (ch == '\n') {
          on_serial_line(serial_partial);
          serial_partial.clear();
        } else if (ch != '\r') {
          if (serial_partial.size() < kMaxSerialLineBytes) {
            serial_partial.push_back(ch);
          } else {
            on_serial_line(serial_partial);  // an over-long line is split, never unbounded
            serial_partial.assign(1, ch);
          }
        }
      }
    }
  }

  void on_serial_line(const std::string& line) {
    publish_serial_line(line);
    if (!ready && line.find(config.vm.ready_marker) != std::string::npos) {
      ready = true;
      m_ready->Set(1);
      boot_to_ready_s = std::chrono::duration<double>(Clock::now() - boot_started).count();
      m_boot_to_ready->Set(boot_to_ready_s);
      save_state(true);
      if (state == fb::vm::VmState::Booting) state = fb::vm::VmState::Running;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3f", boot_to_ready_s);
      publish_state(std::string("guest ready: '") + config.vm.ready_marker + "' after " + buf +
                    " s");
    }
  }

  // ---- QMP events ----
  void pump_qmp() {
    if (!qmp) return;
    auto r = qmp->read_available();
    for (const auto& e : qmp->take_events()) on_qmp_event(e);
    if (!r) {
      if (r.error().code == Errc::kUnavailable) {
        log->info("QMP closed: {}", r.error().message);
      } else {
        log->warn("QMP stream broken: {}", r.error().message);
      }
      qmp.reset();
    }
  }

  void on_qmp_event(const QmpEvent& e) {
    publish_qmp_event(e);
    if (e.name == "STOP") {
      state = fb::vm::VmState::Paused;
      publish_state("paused");
    } else if (e.name == "RESUME") {
      state = ready ? fb::vm::VmState::Running : fb::vm::VmState::Booting;
      publish_state("resumed");
    } else if (e.name == "RESET") {
      ready = false;
      m_ready->Set(0);
      boot_started = Clock::now();
      boot_to_ready_s = -1;
      state = fb::vm::VmState::Booting;
      publish_state("guest reset");
    } else if (e.name == "SHUTDOWN") {
      const std::string reason =
          e.data && e.data->contains("reason") ? (*e.data)["reason"].get<std::string>() : "";
      // The guest powered itself off or a QMP quit: QEMU exits on purpose. A host signal
      // (someone killed QEMU) is not on purpose: the restart policy applies.
      if (reason != "host-signal") {
        expect_exit = true;
        if (exit_reason.empty()) exit_reason = "shutdown: " + reason;
      }
    }
  }

  // ---- commands ----
  Result<void> need_qmp() const {
    if (!qmp) {
      return fail(Errc::kUnavailable, std::string("the VM is not running (state ") +
                                          fb::vm::EnumNameVmState(state) + ")");
    }
    return {};
  }

  Result<void> send_input(const nlohmann::json& events) {
    GB_TRY(need_qmp());
    if (state == fb::vm::VmState::Paused) {
      return fail(Errc::kUnavailable,
                  "the VM is paused and QEMU accepts no input then: `glassbox vm resume` first");
    }
    auto r = qmp->execute("input-send-event", nlohmann::json{{"events", events}});
    if (!r) return tl::unexpected(r.error());
    return {};
  }

  Result<void> screen_size(int& w, int& h) const {
    auto st = screen ? screen->stats() : VncScreen::Stats{};
    if (st.width == 0 || st.height == 0) {
      return fail(Errc::kUnavailable, "no screen frame received yet: screen size unknown");
    }
    w = static_cast<int>(st.width);
    h = static_cast<int>(st.height);
    return {};
  }

  Result<void> handle(const fb::vm::VmRequest& req) {
    using C = fb::vm::Command;
    switch (req.command_type()) {
      case C::common_GetStatus:
        return {};
      case C::Pause: {
        GB_TRY(need_qmp());
        auto r = qmp->execute("stop");
        if (!r) return tl::unexpected(r.error());
        state = fb::vm::VmState::Paused;
        return {};
      }
      case C::Resume: {
        GB_TRY(need_qmp());
        auto r = qmp->execute("cont");
        if (!r) return tl::unexpected(r.error());
        state = ready ? fb::vm::VmState::Running : fb::vm::VmState::Booting;
        return {};
      }
      case C::Reset: {
        GB_TRY(need_qmp());
        auto r = qmp->execute("system_reset");
        if (!r) return tl::unexpected(r.error());
        return {};
      }
      case C::Powerdown: {
        GB_TRY(need_qmp());
        auto r = qmp->execute("system_powerdown");
        if (!r) return tl::unexpected(r.error());
        return {};
      }
      case C::Kill: {
        if (qemu_pid <= 0) return fail(Errc::kUnavailable, "the VM is not running");
        expect_exit = true;
        exit_reason = "killed by `glassbox vm kill`";
        ::kill(-qemu_pid, SIGKILL);
        return {};
      }
      case C::Start: {
        if (qemu_pid > 0) return fail(Errc::kInvalidArgument, "the VM is already running");
        return boot();
      }
      case C::KeyCombo: {
        const auto* kc = req.command_as_KeyCombo();
        std::string combo;
        if (kc->qcodes() != nullptr) {
          for (const auto* q : *kc->qcodes()) {
            if (!combo.empty()) combo += '-';
            combo += q->str();
          }
        }
        auto codes = parse_key_combo(combo);
        if (!codes) return tl::unexpected(codes.error());
        return send_input(key_combo_events(*codes));
      }
      case C::TypeText: {
        const auto* t = req.command_as_TypeText();
        const std::string text = t->text() ? t->text()->str() : "";
        if (text.size() > kMaxTypeTextBytes) {
          return fail(Errc::kInvalidArgument,
                      "text longer than " + std::to_string(kMaxTypeTextBytes) + " bytes");
        }
        auto combos = text_to_combos(text);
        if (!combos) return tl::unexpected(combos.error());
        for (const auto& c : *combos) {
          GB_TRY(send_input(key_combo_events(c)));
          // QEMU's PS/2 queue holds 16 bytes and drops keys beyond it: pace the keys so a
          // busy guest under TCG drains it (a make/break pair is 2-4 bytes).
          std::this_thread::sleep_for(kKeyInterval);
        }
        return {};
      }
      case C::Mouse: {
        const auto* m = req.command_as_Mouse();
        int w = 0, h = 0;
        GB_TRY(screen_size(w, h));
        auto move = mouse_abs_events(m->x(), m->y(), w, h);
        if (!move) return tl::unexpected(move.error());
        GB_TRY(send_input(*move));
        const std::string click = m->click() ? m->click()->str() : "";
        if (!click.empty()) {
          auto down = mouse_button_events(click, true);
          if (!down) return tl::unexpected(down.error());
          GB_TRY(send_input(*down));
          GB_TRY(send_input(*mouse_button_events(click, false)));
        }
        return {};
      }
      case C::Screendump: {
        const auto* s = req.command_as_Screendump();
        const std::string path = s->path() ? s->path()->str() : "";
        if (path.empty() || path[0] != '/') {
          return fail(Errc::kInvalidArgument,
                      "screendump path must be absolute, got '" + path + "'");
        }
        if (auto f = screen ? screen->latest() : nullptr) {
          return shared::write_png(path, f->pixels.data(), f->width, f->height, f->stride_bytes,
                                   shared::PixelFormat::kBgrx8888);
        }
        GB_TRY(need_qmp());  // no VNC frame yet: let QEMU write it
        auto r = qmp->execute("screendump", nlohmann::json{{"filename", path}, {"format", "png"}});
        if (!r) return tl::unexpected(r.error());
        return {};
      }
      case C::GetRamLayout:
        return refresh_ram_layout();
      case C::GetVcpus: {
        GB_TRY(need_qmp());
        auto text = qmp->human_monitor_command("info registers -a");
        if (!text) return tl::unexpected(text.error());
        auto regs = parse_info_registers(*text);
        if (!regs) return tl::unexpected(regs.error());
        vcpus_reply = std::move(*regs);
        return {};
      }
      case C::input_InputBatch: {
        const auto* b = req.command_as_input_InputBatch();
        auto events = input_batch_to_qmp(*b, [this](int& w, int& h) { return screen_size(w, h); });
        if (!events) return tl::unexpected(events.error());
        // A window's typing arrives as many key events in one batch; QEMU's 16-byte PS/2 queue
        // would drop most of them. Send at most one press and one release at a time, paced as
        // TypeText does; pointer events ride along.
        nlohmann::json chunk = nlohmann::json::array();
        int keys = 0;
        for (const auto& e : *events) {
          chunk.push_back(e);
          if (e.value("type", "") == "key" && ++keys == 2) {
            GB_TRY(send_input(chunk));
            chunk = nlohmann::json::array();
            keys = 0;
            std::this_thread::sleep_for(kKeyInterval);
          }
        }
        if (!chunk.empty()) GB_TRY(send_input(chunk));
        return {};
      }
      case C::NONE:
        break;
    }
    return fail(Errc::kInvalidArgument, "request carries no command");
  }

  shared::Bytes on_request(shared::ByteSpan bytes) {
    m_requests->Increment();
    auto req = verify_vm_request(bytes);
    if (!req) {
      ++malformed_requests;
      m_malformed->Increment();
      log->warn("malformed request: {}", req.error().message);
      return build_vm_reply(req.error(), status_fields(), false);
    }
    auto r = handle(**req);
    const bool with_service = (*req)->command_type() == fb::vm::Command::common_GetStatus;
    if (!r) return build_vm_reply(r.error(), status_fields(), with_service);
    auto fields = status_fields();
    fields.vcpus = std::move(vcpus_reply);
    vcpus_reply.clear();
    return build_vm_reply(std::nullopt, fields, with_service);
  }
};

Supervisor::Supervisor(shared::Config config, shared::StatePaths paths)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(paths))) {}
Supervisor::~Supervisor() = default;

Result<void> Supervisor::run(const std::atomic<bool>& stop) {
  Impl& s = *impl_;
  s.log = shared::make_logger("vm-supervisor");
  GB_TRY(s.paths.create());
  auto lock = shared::FileLock::acquire(
      s.paths.dir() + "/vm-supervisor.lock",
      "another vm-supervisor runs for " + s.paths.dir() + " (one per state dir)");
  if (!lock) return tl::unexpected(lock.error());
  GB_TRY(shared::check_config_files(s.config));
  if (shared::find_executable(s.config.vm.qemu).empty()) {
    return fail(Errc::kNotFound,
                s.config.vm.qemu + " not found: install the Debian package qemu-system-x86");
  }
  GB_TRY(s.setup_metrics());
  auto cmd = shared::CommandServer::bind(s.paths.service_endpoint("vm-supervisor"));
  if (!cmd) return tl::unexpected(cmd.error());
  s.commands = std::move(*cmd);
  auto ev = shared::EventPublisher::connect(s.paths.bus_in_endpoint());
  if (!ev) return tl::unexpected(ev.error());
  s.events = std::move(*ev);
  s.log->info("command endpoint {}, metrics {}", s.paths.service_endpoint("vm-supervisor"),
              s.metrics->url());

  // QEMU first: everything else (VNC, iceoryx) attaches to a booting VM. A QEMU left by a
  // previous supervisor (SIGKILLed, restarted by `up` or systemd) is taken over, not rebooted
  // (and not probed for KVM again).
  if (!s.try_attach()) {
    const std::string probe_kernel = !s.config.vm.kernel.empty()
                                         ? s.config.vm.kernel
                                         : shared::reference_guest_dir() + "/vmlinuz";
    if (s.config.trace.mode != "off") {
      // The trace plugin is a TCG plugin: no probe, no KVM.
      s.accel = {shared::Accel::kTcg,
                 "tracing ([trace] mode = " + s.config.trace.mode + ") needs TCG; using TCG"};
    } else {
      s.accel =
          choose_accel(s.config.vm, ::access(probe_kernel.c_str(), R_OK) == 0 ? probe_kernel : "",
                       s.paths.vm_dir());
    }
    s.log->info("accelerator: {}", s.accel.reason);
    GB_TRY(s.boot());
    s.save_state(true);
  }

  VncScreen::Options vo;
  vo.max_fps = static_cast<int>(s.config.screen.max_fps);
  vo.logger = s.log;
  vo.on_frame = [&s](const Frame& f) { s.publish_frame(f); };
  s.screen = VncScreen::start(s.qpaths.vnc_socket, vo);
  s.try_init_iox();

  const auto handler = [&s](shared::ByteSpan b) { return s.on_request(b); };
  const auto reject = [&s](const std::string& why) {
    ++s.malformed_requests;
    s.m_malformed->Increment();
    return build_vm_reply(Error{Errc::kProtocol, why}, s.status_fields(), false);
  };
  while (!stop.load()) {
    if (auto r = s.commands->serve_once(kLoopTick, handler, reject); !r) {
      s.log->warn("{}", r.error().message);
    }
    s.pump_qmp();
    s.drain_serial();
    if (s.qemu_pid > 0) {
      if (s.attached) {
        if (!shared::process_alive(s.qemu_pid)) s.on_qemu_exit(std::nullopt);
      } else if (auto status = shared::try_reap(s.qemu_pid)) {
        s.on_qemu_exit(*status);
      }
    }
    s.save_state();
    if (s.restart_pending && Clock::now() >= s.restart_at) {
      if (auto r = s.boot(); !r) {
        s.log->error("reboot failed: {}", r.error().message);
        s.restart_pending = true;
        s.restart_at = Clock::now() + milliseconds(s.backoff_ms);
      }
    }
    s.try_init_iox();
    s.publish_health();
  }
  s.stop_qemu();
  if (s.screen) s.screen->stop();
  s.frame_publisher.reset();
  return {};
}

}  // namespace glassbox::vm_supervisor
