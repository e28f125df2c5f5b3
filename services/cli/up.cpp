#include "services/cli/up.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "events_generated.h"
#include "orchestrator_generated.h"
#include "services/cli/client.hpp"
#include "shared/bus.hpp"
#include "shared/config.hpp"
#include "shared/health.hpp"
#include "shared/iox.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/paths.hpp"
#include "shared/process.hpp"

namespace glassbox::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace fb = glassbox::schema;

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

struct Child {
  std::string name;
  pid_t pid = 0;
  fb::health::ServiceState state = fb::health::ServiceState::Down;
  uint32_t restarts = 0;
  Clock::time_point started_at{};
  Clock::time_point restart_at{};
  uint32_t backoff_ms = 0;
  std::string metrics_url;
  std::string last_exit;
  prometheus::Counter* m_restarts = nullptr;  // glassbox_up_service_restarts_total{service}
  prometheus::Gauge* m_up = nullptr;          // glassbox_up_service_up{service}
};

class Orchestrator {
 public:
  Orchestrator(shared::Config config, shared::StatePaths paths, UpOptions options)
      : config_(std::move(config)), paths_(std::move(paths)), options_(std::move(options)) {
    log_ = shared::make_logger("up");
  }

  Result<void> run() {
    auto lock = shared::FileLock::acquire(paths_.lock_file(), owner_message());
    if (!lock) return tl::unexpected(lock.error());
    lock_.emplace(std::move(*lock));
    GB_TRY(shared::write_pid_file(paths_.up_pid_file(), ::getpid()));
    started_unix_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    auto r = run_locked();
    shutdown();
    ::unlink(paths_.up_pid_file().c_str());
    return r;
  }

 private:
  std::string owner_message() const {
    auto pid = shared::read_pid_file(paths_.up_pid_file());
    return "another glassbox instance" +
           (pid ? " (pid " + std::to_string(*pid) + ")" : std::string()) + " owns " + paths_.dir() +
           "; stop it with `glassbox --state-dir " + paths_.dir() + " down`";
  }

  Result<void> start_roudi() {
    if (shared::roudi_available()) {
      log_->info("reusing the iceoryx RouDi already running on this host");
      return {};
    }
    if (shared::find_executable(config_.iceoryx.roudi).empty()) {
      return fail(Errc::kNotFound,
                  config_.iceoryx.roudi + " not found: install the Debian package iceoryx");
    }
    if (::access(config_.iceoryx.roudi_config.c_str(), R_OK) != 0) {
      return fail(Errc::kNotFound, config_.source + ": [iceoryx] roudi_config: cannot read " +
                                       config_.iceoryx.roudi_config);
    }
    auto pid = shared::spawn({config_.iceoryx.roudi, "-c", config_.iceoryx.roudi_config},
                             {.new_session = true, .output_path = paths_.service_log("roudi")});
    if (!pid) return tl::unexpected(pid.error());
    roudi_pid_ = *pid;
    roudi_spawned_at_ = Clock::now();
    // RouDi takes ~0.5 s to set up its shared memory. Nothing on the VM's boot path needs it
    // (vm-supervisor publishes frames once it appears), so the services start meanwhile and
    // watch_roudi() reports when it is up.
    log_->info("starting iox-roudi (pid {})", roudi_pid_);
    return {};
  }

  void watch_roudi() {
    if (roudi_pid_ <= 0 || roudi_up_) return;
    if (shared::roudi_available()) {
      roudi_up_ = true;
      log_->info("iox-roudi up after {:.3f} s",
                 std::chrono::duration<double>(Clock::now() - roudi_spawned_at_).count());
    } else if (auto st = shared::try_reap(roudi_pid_)) {
      log_->error("iox-roudi {} (see {}); iceoryx streams are unavailable",
                  shared::describe_wait_status(*st), paths_.service_log("roudi"));
      roudi_pid_ = 0;
    }
  }

  Result<void> spawn_child(Child& c) {
    std::vector<std::string> argv = {shared::exe_dir() + "/glassbox-" + c.name, "--state-dir",
                                     paths_.dir()};
    if (!options_.config_path.empty()) argv.insert(argv.end(), {"--config", options_.config_path});
    auto pid = shared::spawn(argv, {.new_session = true,
                                    .output_path = paths_.service_log(c.name),
                                    .env = {"GLASSBOX_UP_PID=" + std::to_string(::getpid())}});
    if (!pid) return tl::unexpected(pid.error());
    c.pid = *pid;
    c.state = fb::health::ServiceState::Up;
    c.started_at = Clock::now();
    if (c.m_up) c.m_up->Set(1);
    log_->info("started {} (pid {}), log {}", c.name, c.pid, paths_.service_log(c.name));
    return {};
  }

  void watch_children() {
    for (auto& c : children_) {
      if (c.state == fb::health::ServiceState::Up) {
        auto st = shared::try_reap(c.pid);
        if (!st) continue;
        c.last_exit = shared::describe_wait_status(*st);
        if (Clock::now() - c.started_at > std::chrono::seconds(30)) {
          c.backoff_ms = config_.up.restart_backoff_ms;
        }
        c.state = fb::health::ServiceState::Restarting;
        if (c.m_up) c.m_up->Set(0);
        c.restart_at = Clock::now() + milliseconds(c.backoff_ms);
        log_->warn("{} (pid {}) {}; restarting in {} ms (see {})", c.name, c.pid, c.last_exit,
                   c.backoff_ms, paths_.service_log(c.name));
        c.pid = 0;
        c.backoff_ms = std::min(std::max(c.backoff_ms * 2, 1u), config_.up.restart_backoff_max_ms);
      } else if (c.state == fb::health::ServiceState::Restarting && Clock::now() >= c.restart_at) {
        ++c.restarts;
        if (c.m_restarts) c.m_restarts->Increment();
        if (auto r = spawn_child(c); !r) {
          log_->error("restart of {} failed: {}", c.name, r.error().message);
          c.restart_at = Clock::now() + milliseconds(c.backoff_ms);
        }
      }
    }
  }

  void pump_health() {
    if (!health_) return;
    for (int i = 0; i < 64; ++i) {
      auto ev = health_->receive(milliseconds(0));
      if (!ev || !*ev) return;
      const auto* e = schema::events::GetEvent((*ev)->event.data());
      if (e->body_type() != schema::events::Body::health_ServiceStatus) continue;
      auto s = shared::read_service_status(*e->body_as_health_ServiceStatus());
      for (auto& c : children_) {
        if (c.name == s.service) c.metrics_url = s.metrics_url;
      }
    }
  }

  shared::Bytes status_reply(const std::optional<Error>& error) {
    flatbuffers::FlatBufferBuilder fbb(1024);
    flatbuffers::Offset<fb::common::Error> err;
    if (error) {
      err = fb::common::CreateError(fbb, static_cast<int>(error->code),
                                    fbb.CreateString(error->message));
    }
    std::vector<flatbuffers::Offset<fb::health::ServiceStatus>> svcs;
    for (const auto& c : children_) {
      shared::ServiceStatusFields f;
      f.instance = config_.instance.name;
      f.service = c.name;
      f.pid = c.pid;
      f.state = c.state;
      f.uptime_s =
          c.pid > 0 ? std::chrono::duration<double>(Clock::now() - c.started_at).count() : 0;
      f.metrics_url = c.metrics_url;
      f.restarts = c.restarts;
      f.summary_json = nlohmann::json{{"last_exit", c.last_exit}}.dump();
      svcs.push_back(shared::build_service_status(fbb, f));
    }
    auto reply = fb::orchestrator::CreateOrchestratorReply(
        fbb, err, fbb.CreateVector(svcs), roudi_pid_, started_unix_ns_,
        fbb.CreateString(metrics_ ? metrics_->url() : ""));
    fbb.Finish(reply);
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }

  shared::Bytes on_request(shared::ByteSpan b) {
    if (b.size() < 8 || !fb::orchestrator::OrchestratorRequestBufferHasIdentifier(b.data())) {
      ++malformed_;
      return status_reply(Error{Errc::kProtocol, "request is not an OrchestratorRequest (GBOR)"});
    }
    flatbuffers::Verifier v(b.data(), b.size());
    if (!fb::orchestrator::VerifyOrchestratorRequestBuffer(v)) {
      ++malformed_;
      return status_reply(Error{Errc::kProtocol, "OrchestratorRequest failed verification"});
    }
    const auto* req = fb::orchestrator::GetOrchestratorRequest(b.data());
    switch (req->command_type()) {
      case fb::orchestrator::Command::common_GetStatus:
        return status_reply(std::nullopt);
      case fb::orchestrator::Command::common_Shutdown:
        log_->info("shutdown requested (glassbox down)");
        g_stop.store(true);
        return status_reply(std::nullopt);
      default:
        ++malformed_;
        return status_reply(Error{Errc::kInvalidArgument, "request carries no command"});
    }
  }

  Result<void> run_locked() {
    GB_TRY(start_roudi());
    auto proxy = shared::EventProxy::start(paths_.bus_in_endpoint(), paths_.bus_out_endpoint());
    if (!proxy) return tl::unexpected(proxy.error());
    proxy_ = std::move(*proxy);
    auto server = shared::CommandServer::bind(paths_.up_endpoint());
    if (!server) return tl::unexpected(server.error());
    server_ = std::move(*server);
    if (auto h = shared::EventSubscriber::connect(paths_.bus_out_endpoint(), {"health"})) {
      health_ = std::move(*h);
    }
    // The orchestrator's own metrics (base_port + 0): restarts and liveness per service.
    const uint32_t port = config_.metrics.base_port == 0 ? 0 : config_.metrics.base_port;
    if (auto m = shared::MetricsExposer::start(config_.metrics.host, port)) {
      metrics_ = std::move(*m);
    } else {
      log_->warn("no orchestrator metrics: {}", m.error().message);
    }
    prometheus::Family<prometheus::Counter>* restarts = nullptr;
    prometheus::Family<prometheus::Gauge>* up = nullptr;
    if (metrics_) {
      restarts = &prometheus::BuildCounter()
                      .Name("glassbox_up_service_restarts_total")
                      .Help("Service restarts by `glassbox up` after a crash")
                      .Register(metrics_->registry());
      up = &prometheus::BuildGauge()
                .Name("glassbox_up_service_up")
                .Help("1 while the service's process runs")
                .Register(metrics_->registry());
    }
    for (const auto& name : config_.up.services) {
      Child c;
      c.name = name;
      c.backoff_ms = config_.up.restart_backoff_ms;
      if (restarts) {
        const std::map<std::string, std::string> labels = {{"instance", config_.instance.name},
                                                           {"service", name}};
        c.m_restarts = &restarts->Add(labels);
        c.m_up = &up->Add(labels);
      }
      children_.push_back(c);
    }
    for (auto& c : children_) GB_TRY(spawn_child(c));
    log_->info("instance '{}' up; state dir {}", config_.instance.name, paths_.dir());

    const auto started = Clock::now();
    const auto handler = [this](shared::ByteSpan b) { return on_request(b); };
    const auto reject = [this](const std::string& why) {
      ++malformed_;
      return status_reply(Error{Errc::kProtocol, why});
    };
    while (!g_stop.load()) {
      if (auto r = server_->serve_once(milliseconds(20), handler, reject); !r) {
        log_->warn("{}", r.error().message);
      }
      watch_children();
      watch_roudi();
      pump_health();
      if (options_.for_s &&
          std::chrono::duration<double>(Clock::now() - started).count() >= *options_.for_s) {
        log_->info("--for {} s elapsed; shutting down", *options_.for_s);
        break;
      }
    }
    return {};
  }

  nlohmann::json collect_report() {
    nlohmann::json report;
    report["instance"] = config_.instance.name;
    report["state_dir"] = paths_.dir();
    nlohmann::json services = nlohmann::json::array();
    for (const auto& c : children_) {
      nlohmann::json s = {{"name", c.name},
                          {"pid", c.pid},
                          {"restarts", c.restarts},
                          {"state", fb::health::EnumNameServiceState(c.state)}};
      if (c.pid > 0) {
        if (auto st = query_service_status(paths_, c.name, milliseconds(3000))) {
          s["summary"] = st->summary;
          if (c.name == "vm-supervisor" && st->summary.contains("vm")) {
            const auto& vm = st->summary["vm"];
            report["vm"] = {{"accel", vm.value("accel", "")},
                            {"boot_to_ready_s", vm.value("boot_to_ready_s", -1.0)},
                            {"restarts", vm.value("vm_restarts", 0)},
                            {"boots", vm.value("boots", 0)},
                            {"ready", vm.value("ready", false)},
                            {"qemu_pid", vm.value("qemu_pid", 0)}};
          }
        } else {
          s["summary_error"] = st.error().message;
        }
      }
      services.push_back(s);
    }
    report["services"] = services;
    report["malformed_requests"] = malformed_;
    return report;
  }

  void shutdown() {
    if (!options_.report_path.empty() && !children_.empty()) {
      auto report = collect_report();
      std::ofstream out(options_.report_path, std::ios::trunc);
      out << report.dump(2) << "\n";
      if (!out) log_->error("cannot write report {}", options_.report_path);
    }
    for (auto& c : children_) {
      if (c.pid <= 0) continue;
      c.state = fb::health::ServiceState::Stopping;
      ::kill(c.pid, SIGTERM);
    }
    for (auto& c : children_) {
      if (c.pid <= 0) continue;
      if (!shared::reap_for(c.pid, milliseconds(10000))) {
        log_->warn("{} (pid {}) ignored SIGTERM for 10 s; killing", c.name, c.pid);
        shared::terminate_group(c.pid, milliseconds(100));
        (void)shared::reap_for(c.pid, milliseconds(2000));
      }
      c.pid = 0;
      c.state = fb::health::ServiceState::Down;
    }
    // A QEMU whose supervisor died without stopping it (SIGKILL) must not outlive `up`.
    if (auto qpid = shared::read_pid_file(paths_.qemu_pid_file())) {
      if (shared::process_alive(*qpid) &&
          shared::process_cmdline(*qpid).find(shared::guest_ram_path(config_.instance.name)) !=
              std::string::npos) {
        log_->warn("stopping QEMU pid {} left behind", *qpid);
        shared::terminate_group(*qpid, milliseconds(2000));
      }
      ::unlink(paths_.qemu_pid_file().c_str());
    }
    ::unlink(shared::guest_ram_path(config_.instance.name).c_str());
    server_.reset();
    health_.reset();
    if (proxy_) proxy_->stop();
    proxy_.reset();
    if (roudi_pid_ > 0) {
      ::kill(roudi_pid_, SIGTERM);
      if (!shared::reap_for(roudi_pid_, milliseconds(5000))) {
        shared::terminate_group(roudi_pid_, milliseconds(100));
        (void)shared::reap_for(roudi_pid_, milliseconds(1000));
      }
      log_->info("stopped iox-roudi (pid {})", roudi_pid_);
      roudi_pid_ = 0;
    }
    for (const auto& ep :
         {paths_.up_endpoint(), paths_.bus_in_endpoint(), paths_.bus_out_endpoint()}) {
      ::unlink(shared::ipc_path(ep).c_str());
    }
    log_->info("instance '{}' down", config_.instance.name);
  }

  shared::Config config_;
  shared::StatePaths paths_;
  UpOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::optional<shared::FileLock> lock_;
  pid_t roudi_pid_ = 0;
  bool roudi_up_ = false;
  Clock::time_point roudi_spawned_at_{};
  uint64_t started_unix_ns_ = 0;
  uint64_t malformed_ = 0;
  std::unique_ptr<shared::EventProxy> proxy_;
  std::unique_ptr<shared::MetricsExposer> metrics_;
  std::unique_ptr<shared::CommandServer> server_;
  std::unique_ptr<shared::EventSubscriber> health_;
  std::vector<Child> children_;
};

}  // namespace

Result<void> run_bus(const std::string& state_dir) {
  shared::StatePaths paths(state_dir);
  GB_TRY(paths.create());
  auto lock = shared::FileLock::acquire(paths.dir() + "/bus.lock",
                                        "another event bus runs for " + paths.dir());
  if (!lock) return tl::unexpected(lock.error());
  auto proxy = shared::EventProxy::start(paths.bus_in_endpoint(), paths.bus_out_endpoint());
  if (!proxy) return tl::unexpected(proxy.error());
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  auto log = shared::make_logger("bus");
  log->info("event bus: publishers {} -> subscribers {}", paths.bus_in_endpoint(),
            paths.bus_out_endpoint());
  while (!g_stop.load()) std::this_thread::sleep_for(milliseconds(100));
  (*proxy)->stop();
  for (const auto& ep : {paths.bus_in_endpoint(), paths.bus_out_endpoint()}) {
    ::unlink(shared::ipc_path(ep).c_str());
  }
  return {};
}

Result<void> run_up(const UpOptions& options) {
  auto config = shared::load_config(options.config_path);
  if (!config) return tl::unexpected(config.error());
  GB_TRY(shared::check_config_files(*config));
  if (shared::find_executable(config->vm.qemu).empty()) {
    return fail(Errc::kNotFound,
                config->vm.qemu + " not found: install the Debian package qemu-system-x86");
  }
  for (const auto& s : config->up.services) {
    const std::string bin = shared::exe_dir() + "/glassbox-" + s;
    if (::access(bin.c_str(), X_OK) != 0) {
      return fail(Errc::kNotFound, bin + " is missing: build glassbox (orchestration/setup)");
    }
  }
  shared::StatePaths paths(options.state_dir);
  GB_TRY(paths.create());
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  Orchestrator o(std::move(*config), paths, options);
  return o.run();
}

}  // namespace glassbox::cli
