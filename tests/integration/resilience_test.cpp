// Resilience on real parts: the whole pipeline (all seven services, tracing in counts mode) on
// the reference guest under TCG, scraped by a real Prometheus server (Debian `prometheus`, on
// loopback), then every service SIGKILLed in turn (vm-supervisor twice). Each comes back
// (`glassbox up` restarts it), the VM keeps its QEMU pid across supervisor restarts, what is
// stored (processes seen, hot blocks, synthesized blocks) never decreases, and the RAM
// mirrors resync.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "shared/bus.hpp"
#include "shared/process.hpp"
#include "tests/integration/harness.hpp"

namespace glassbox::itest {
namespace {

using namespace std::chrono_literals;

// A metrics port range unlikely to collide between parallel runs on one host.
uint32_t base_port() {
  static const uint32_t base = 20000 + static_cast<uint32_t>(::getpid() % 2000) * 10;
  return base;
}

nlohmann::json json_of(const std::string& s) {
  const auto first = s.find_first_of("{["), last = s.find_last_of("}]");
  if (first == std::string::npos || last == std::string::npos) return nullptr;
  return nlohmann::json::parse(s.substr(first, last - first + 1), nullptr, false);
}

class ResilienceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    instance_ = new Instance(
        "",
        "services = [\"vm-supervisor\", \"ram-snapshotter\", \"semantic-db\", "
        "\"trace-consumer\", \"pattern-miner\", \"smt-synthesizer\", \"compositor\"]\n",
        "[trace]\nmode = \"counts\"\n[compositor]\nwindow = \"off\"\nfps = 10\n"
        "[metrics]\nbase_port = " +
            std::to_string(base_port()) + "\n");
    ASSERT_TRUE(instance_->start());
    // Prometheus from the start, so even stages whose counters move only early (synthesis of
    // the boot's hot blocks) show an increase.
    start_prometheus();
    ASSERT_TRUE(instance_->wait_ready(300s)) << read_file(instance_->up_log());
  }
  static void TearDownTestSuite() {
    stop_prometheus();
    delete instance_;
    instance_ = nullptr;
  }

  // ---- Prometheus (Debian's server) ----
  static uint32_t prometheus_port() { return base_port() + 9; }
  static void start_prometheus() {
    if (prometheus_pid_ > 0) return;
    const std::string dir = instance_->state_dir() + "/prometheus";
    ::mkdir(dir.c_str(), 0755);
    std::ofstream cfg(dir + "/prometheus.yml");
    cfg << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n  - job_name: glassbox\n    static_configs:\n      - targets: [";
    for (uint32_t i = 0; i <= 7; ++i) {
      cfg << (i ? ", " : "") << "'127.0.0.1:" << base_port() + i << "'";
    }
    cfg << "]\n";
    cfg.close();
    auto pid =
        shared::spawn({"prometheus", "--config.file=" + dir + "/prometheus.yml",
                       "--storage.tsdb.path=" + dir + "/data",
                       "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port())},
                      {.new_session = true, .output_path = dir + "/prometheus.log"});
    ASSERT_TRUE(pid) << pid.error().message << " (install the Debian package prometheus)";
    prometheus_pid_ = *pid;
  }
  static void stop_prometheus() {
    if (prometheus_pid_ <= 0) return;
    shared::terminate_group(prometheus_pid_, 5000ms);
    (void)shared::reap_for(prometheus_pid_, 2000ms);
    prometheus_pid_ = 0;
  }
  // Instant query; the first sample's value, or nullopt.
  // Waits up to 60 s for `promql` to give a value above 0; explains the last value otherwise.
  static ::testing::AssertionResult becomes_positive(const std::string& promql) {
    std::optional<double> v;
    if (wait_until(
            [&] {
              v = query(promql);
              return v && *v > 0;
            },
            60s)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << promql << " = " << (v ? std::to_string(*v) : "no data") << "\n"
           << read_file(instance_->state_dir() + "/prometheus/prometheus.log").substr(0, 4000);
  }

  static std::optional<double> query(const std::string& promql) {
    std::string q;
    for (unsigned char c : promql) {
      if (std::isalnum(c) || c == '_' || c == '.') {
        q += static_cast<char>(c);
      } else {
        char b[4];
        std::snprintf(b, sizeof b, "%%%02X", c);
        q += b;
      }
    }
    const std::string body = http_get("http://127.0.0.1:" + std::to_string(prometheus_port()) +
                                      "/api/v1/query?query=" + q);
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object() || j["status"] != "success") return std::nullopt;
    const auto& r = j["data"]["result"];
    if (!r.is_array() || r.empty()) return std::nullopt;
    return std::stod(r[0]["value"][1].get<std::string>());
  }

  // ---- what is stored ----
  struct Stored {
    size_t processes_seen = 0;  // semantic-db's history (every process, all boots)
    size_t hot_blocks = 0;      // pattern-miner's blocks
    size_t synthesized = 0;     // smt-synthesizer's library
  };
  static Stored stored() {
    Stored s;
    auto ps = instance_->cli({"ps", "--history", "--json"});
    if (auto j = json_of(ps.output); j.is_object() && j["processes"].is_array()) {
      s.processes_seen = j["processes"].size();
    }
    auto hot = instance_->cli({"hot", "--top", "4096", "--json"});
    if (auto j = json_of(hot.output); j.is_object() && j["blocks"].is_array()) {
      s.hot_blocks = j["blocks"].size();
    }
    auto syn = instance_->cli({"synth", "list", "--json"});
    if (auto j = json_of(syn.output); j.is_object() && j["blocks"].is_array()) {
      s.synthesized = j["blocks"].size();
    }
    return s;
  }

  static int pid_of(const nlohmann::json& status, const std::string& name) {
    for (const auto& svc : status["services"]) {
      if (svc["name"] == name) return svc["pid"].get<int>();
    }
    return 0;
  }
  static int restarts_of(const nlohmann::json& status, const std::string& name) {
    for (const auto& svc : status["services"]) {
      if (svc["name"] == name) return svc["restarts"].get<int>();
    }
    return -1;
  }

  static Instance* instance_;
  static pid_t prometheus_pid_;
};
Instance* ResilienceTest::instance_ = nullptr;
pid_t ResilienceTest::prometheus_pid_ = 0;

TEST_F(ResilienceTest, PrometheusScrapesANonZeroRateFromEveryStage) {
  start_prometheus();
  // Wait for data in every stage first (hot blocks and synthesis take a while under TCG).
  ASSERT_TRUE(wait_until([&] { return stored().synthesized > 0; }, 240s))
      << instance_->status().dump(1);
  const std::vector<std::pair<std::string, std::string>> stages = {
      {"vm-supervisor", "rate(glassbox_vm_supervisor_requests_total[20s])"},
      {"ram-snapshotter", "rate(glassbox_ram_cycles_total[20s])"},
      {"semantic-db", "rate(glassbox_semantic_walks_total[20s])"},
      {"trace-consumer", "rate(glassbox_trace_events_total[20s])"},
      {"pattern-miner", "rate(glassbox_miner_batches_total[20s])"},
      {"smt-synthesizer", "sum(increase(glassbox_synth_blocks_total[10m]))"},
      {"compositor", "rate(glassbox_compositor_frames_total[20s])"},
      {"up", "sum(glassbox_up_service_up)"},
  };
  for (const auto& [stage, promql] : stages) {
    EXPECT_TRUE(becomes_positive(promql)) << stage;
  }
  EXPECT_EQ(query("sum(glassbox_up_service_up)").value_or(0), 7.0);
  EXPECT_EQ(query("count(up{job=\"glassbox\"} == 1)").value_or(0), 8.0) << "all 8 targets up";
}

// Every command endpoint gets garbage: too short, random bytes, another service's request
// (a valid FlatBuffer with the wrong file identifier), a right identifier over a corrupt
// root. Each service answers every one (an error reply, never silence), keeps running (no
// restart) and answers its status afterwards.
TEST_F(ResilienceTest, EveryServiceRefusesGarbageAndKeepsServing) {
  const std::vector<std::string> services = {"vm-supervisor",  "ram-snapshotter", "semantic-db",
                                             "trace-consumer", "pattern-miner",   "smt-synthesizer",
                                             "compositor"};
  auto restarts = [&] {
    std::map<std::string, int> out;
    auto st = instance_->status();
    for (const auto& svc : st["services"]) out[svc["name"]] = svc["restarts"].get<int>();
    return out;
  };
  const auto before = restarts();
  std::mt19937 rng(7);
  std::vector<uint8_t> random_bytes(512);
  for (auto& b : random_bytes) b = static_cast<uint8_t>(rng());
  // Each service's own request identifier (schemas/*.fbs file_identifier), under a corrupt
  // root offset: only the FlatBuffers verifier stands between it and the service.
  const std::map<std::string, std::string> identifier = {
      {"vm-supervisor", "GBVM"},  {"ram-snapshotter", "GBRM"}, {"semantic-db", "GBSM"},
      {"trace-consumer", "GBTR"}, {"pattern-miner", "GBPM"},   {"smt-synthesizer", "GBSY"},
      {"compositor", "GBCO"}};
  for (const auto& svc : services) {
    const std::string endpoint = "ipc://" + instance_->state_dir() + "/" + svc + ".sock";
    std::vector<std::vector<uint8_t>> garbage = {{1, 2, 3}, random_bytes};
    std::vector<uint8_t> foreign = {8, 0, 0, 0, 'G', 'B', 'X', 'X', 0, 0, 0, 0};
    garbage.push_back(foreign);
    std::vector<uint8_t> corrupt = {0xf0, 0xff, 0xff, 0x7f};
    const std::string id = identifier.at(svc);
    corrupt.insert(corrupt.end(), id.begin(), id.end());
    corrupt.resize(64, 0xee);
    garbage.push_back(corrupt);
    for (const auto& g : garbage) {
      auto reply = shared::request(endpoint, g, 5s);
      ASSERT_TRUE(reply) << svc << ": " << reply.error().message;
      EXPECT_GT(reply->size(), 8u) << svc << " answered garbage with nothing";
    }
  }
  const auto after = restarts();
  for (const auto& svc : services) {
    EXPECT_EQ(after.count(svc) ? after.at(svc) : -1, before.count(svc) ? before.at(svc) : -2)
        << svc << " restarted after garbage";
  }
  auto st = instance_->status();
  for (const auto& svc : st["services"]) EXPECT_EQ(svc["state"], "up") << svc.dump();
}

TEST_F(ResilienceTest, EveryServiceKilledComesBackAndNothingStoredIsLost) {
  ASSERT_TRUE(wait_until([&] { return stored().synthesized > 0; }, 240s));
  auto first = instance_->status();
  const int qemu = first["vm"]["qemu_pid"].get<int>();
  const int boots = first["vm"]["boots"].get<int>();
  ASSERT_GT(qemu, 0);
  const std::vector<std::string> order = {"ram-snapshotter", "semantic-db",     "trace-consumer",
                                          "pattern-miner",   "smt-synthesizer", "compositor",
                                          "vm-supervisor",   "vm-supervisor"};
  int total_restarts = 0;
  // Figures: SIGKILL -> the new process up and answering status, per service, against the
  // guest's own boot to ready in the same run (what a supervisor restart costs without
  // re-attachment).
  nlohmann::json figures = {{"boot_to_ready_s", first["vm"]["boot_to_ready_s"]},
                            {"restarts", nlohmann::json::array()}};
  for (const auto& name : order) {
    SCOPED_TRACE(name);
    const Stored before = stored();
    auto st = instance_->status();
    const int pid = pid_of(st, name);
    const int restarts = restarts_of(st, name);
    ASSERT_GT(pid, 0) << st.dump(1);
    const auto killed_at = std::chrono::steady_clock::now();
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ++total_restarts;
    nlohmann::json now;
    ASSERT_TRUE(wait_until(
        [&] {
          now = instance_->status();
          return now.is_object() && restarts_of(now, name) == restarts + 1 &&
                 pid_of(now, name) != pid && pid_of(now, name) > 0 && now["vm"]["ready"] == true;
        },
        120s))
        << now.dump(1);
    const double back_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
    figures["restarts"].push_back({{"service", name}, {"back_s", back_s}});
    std::printf("resilience: %s back in %.2f s\n", name.c_str(), back_s);
    // The VM outlives its supervisor.
    EXPECT_EQ(now["vm"]["qemu_pid"], qemu);
    EXPECT_EQ(now["vm"]["boots"], boots);
    // The restarted service answers and nothing stored went missing.
    Stored after;
    EXPECT_TRUE(wait_until(
        [&] {
          after = stored();
          return after.processes_seen >= before.processes_seen &&
                 after.hot_blocks >= before.hot_blocks && after.synthesized >= before.synthesized;
        },
        90s))
        << "processes " << before.processes_seen << " -> " << after.processes_seen << ", hot "
        << before.hot_blocks << " -> " << after.hot_blocks << ", synthesized " << before.synthesized
        << " -> " << after.synthesized;
  }
  if (const char* out = std::getenv("GLASSBOX_RESILIENCE_JSON")) {
    std::ofstream(out) << figures.dump(1) << "\n";
  }
  // The RAM mirrors resynced: the compositor's map is live again and semantic-db walks.
  EXPECT_TRUE(wait_until(
      [&] {
        auto s = instance_->status();
        return s.is_object() && s["compositor"]["ram"].value("stale", true) == false &&
               s["compositor"]["screen"].value("stale", true) == false;
      },
      60s))
      << instance_->status().dump(1);
  auto peek = instance_->cli({"ram", "peek", "0x7000000", "24"});
  EXPECT_EQ(peek.exit_code, 0) << peek.output;
  EXPECT_NE(peek.output.find("|GLASSBOX-PHYS-PA|"), std::string::npos) << peek.output;
  auto ps = instance_->cli({"ps", "--json"});
  EXPECT_NE(ps.output.find("gb-cpuburn"), std::string::npos) << ps.output;
  // Every stage flows again after the chaos (the trace rings survived their consumer's
  // restart, the miner and the compositor take data again).
  if (prometheus_pid_ > 0) {
    for (const auto& [stage, promql] : std::vector<std::pair<std::string, std::string>>{
             {"trace-consumer", "rate(glassbox_trace_events_total[5s])"},
             {"pattern-miner", "rate(glassbox_miner_batches_total[5s])"},
             {"ram-snapshotter", "rate(glassbox_ram_cycles_total[5s])"},
             {"semantic-db", "rate(glassbox_semantic_walks_total[5s])"},
             {"compositor", "rate(glassbox_compositor_frames_total[5s])"}}) {
      EXPECT_TRUE(becomes_positive(promql)) << "after the chaos, " << stage;
    }
  }
  // Prometheus saw every restart (glassbox up's own metrics).
  if (prometheus_pid_ > 0) {
    std::optional<double> v;
    EXPECT_TRUE(wait_until(
        [&] {
          v = query("sum(glassbox_up_service_restarts_total)");
          return v && *v == total_restarts;
        },
        30s))
        << (v ? *v : -1);
  }
}

}  // namespace
}  // namespace glassbox::itest
