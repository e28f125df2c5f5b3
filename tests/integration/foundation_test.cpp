// Foundation integration tests: the real reference guest under TCG, driven through the real
// `glassbox` CLI, vm-supervisor, QEMU, RouDi, ZeroMQ bus and metrics endpoint.
#include <gtest/gtest.h>
#include <signal.h>

#include <random>

#include "events_generated.h"
#include "shared/bus.hpp"
#include "shared/paths.hpp"
#include "shared/png.hpp"
#include "shared/process.hpp"
#include "tests/integration/harness.hpp"
#include "vm_generated.h"

namespace glassbox::itest {
namespace {

using namespace std::chrono_literals;

// One booted instance shared by the tests of this suite (boots take seconds under TCG).
class FoundationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    instance_ = new Instance();
    ASSERT_TRUE(instance_->start());
    ASSERT_TRUE(instance_->wait_ready(180s))
        << "guest never became ready; up log:\n" << read_file(instance_->up_log())
        << "\nsupervisor log:\n"
        << read_file(instance_->state_dir() + "/logs/vm-supervisor.log");
  }
  static void TearDownTestSuite() {
    delete instance_;
    instance_ = nullptr;
  }
  static Instance* instance_;
};
Instance* FoundationTest::instance_ = nullptr;

std::string random_token() {
  std::random_device rd;
  return "tok" + std::to_string(rd() % 1000000);
}

TEST_F(FoundationTest, BootsToReadyAndReportsStatus) {
  auto s = instance_->status();
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["vm"]["state"], "running");
  EXPECT_EQ(s["vm"]["ready"], true);
  EXPECT_EQ(s["vm"]["accel"], "tcg");
  EXPECT_GT(s["vm"]["qemu_pid"].get<int>(), 0);
  EXPECT_GT(s["vm"]["boot_to_ready_s"].get<double>(), 0.0);
  ASSERT_EQ(s["services"].size(), 1u);
  EXPECT_EQ(s["services"][0]["name"], "vm-supervisor");
  EXPECT_EQ(s["services"][0]["state"], "up");
  EXPECT_EQ(s["services"][0]["restarts"], 0);
  // The guest's serial console has its banner and the marker.
  const std::string serial = read_file(instance_->serial_log());
  EXPECT_NE(serial.find("GLASSBOX-GUEST-READY"), std::string::npos);
  EXPECT_NE(serial.find("gb-cpuburn="), std::string::npos);
  // The metrics endpoint is real Prometheus text with our gauges.
  const std::string metrics = http_get(s["services"][0]["metrics_url"].get<std::string>());
  EXPECT_NE(metrics.find("glassbox_vm_ready{instance=\"" + instance_->name() + "\"} 1"),
            std::string::npos)
      << metrics;
}

TEST_F(FoundationTest, TypedTextReachesTheGuestAndSerialLinesReachTheBus) {
  shared::StatePaths paths(instance_->state_dir());
  auto sub = shared::EventSubscriber::connect(paths.bus_out_endpoint(), {"vm.serial"});
  ASSERT_TRUE(sub);
  std::this_thread::sleep_for(300ms);  // let the SUB join the proxy
  const std::string token = random_token();
  auto r = instance_->cli({"vm", "type", "echo " + token});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = instance_->cli({"vm", "key", "ret"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The guest echoes every tty1 line to its serial console.
  const std::string expected = "GLASSBOX-TTY1: echo " + token;
  ASSERT_TRUE(wait_until(
      [&] { return read_file(instance_->serial_log()).find(expected) != std::string::npos; }, 30s))
      << read_file(instance_->serial_log());
  bool on_bus = false;
  for (int i = 0; i < 100 && !on_bus; ++i) {
    auto ev = (*sub)->receive(100ms);
    ASSERT_TRUE(ev) << ev.error().message;
    if (!*ev) continue;
    const auto* e = schema::events::GetEvent((*ev)->event.data());
    ASSERT_EQ(e->body_type(), schema::events::Body::SerialLine);
    on_bus = e->body_as_SerialLine()->line()->str().find(expected) != std::string::npos;
  }
  EXPECT_TRUE(on_bus);
  auto console = instance_->cli({"console"});
  EXPECT_NE(console.output.find(expected), std::string::npos);
}

TEST_F(FoundationTest, ScreendumpIsNotBlank) {
  const std::string png = instance_->state_dir() + "/screen.png";
  auto r = instance_->cli({"vm", "screendump", png});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto img = shared::read_png(png);
  ASSERT_TRUE(img) << img.error().message;
  EXPECT_GE(img->width, 640u);
  EXPECT_GE(img->height, 350u);
  size_t lit = 0;
  for (size_t i = 0; i + 3 < img->rgba.size(); i += 4) {
    if (img->rgba[i] > 64 || img->rgba[i + 1] > 64 || img->rgba[i + 2] > 64) ++lit;
  }
  EXPECT_GT(lit, 500u) << "screen is blank";
}

TEST_F(FoundationTest, ScreenFramesArriveOverIceoryx) {
  std::vector<std::string> argv = {bin_dir() + "/glassbox-itest-frame-probe", instance_->name(),
                                   "10000"};
  const std::string out = instance_->state_dir() + "/frame-probe.out";
  auto pid = shared::spawn(argv, {.new_session = false, .output_path = out});
  ASSERT_TRUE(pid);
  auto st = shared::reap_for(*pid, 30s);
  ASSERT_TRUE(st);
  const std::string text = read_file(out);
  ASSERT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << text;
  auto j = nlohmann::json::parse(text.substr(text.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << text;
  EXPECT_GE(j["width"].get<int>(), 640);
  EXPECT_GE(j["distinct_colours"].get<int>(), 2);
}

TEST_F(FoundationTest, PauseAndResume) {
  ASSERT_EQ(instance_->cli({"vm", "pause"}).exit_code, 0);
  auto s = instance_->status();
  EXPECT_EQ(s["vm"]["state"], "paused");
  // QEMU takes no input while the VM is stopped: the command is refused, clearly.
  const std::string dropped = random_token();
  auto refused = instance_->cli({"vm", "type", "echo " + dropped + "\n"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("paused"), std::string::npos) << refused.output;
  ASSERT_EQ(instance_->cli({"vm", "resume"}).exit_code, 0);
  EXPECT_EQ(instance_->status()["vm"]["state"], "running");
  const std::string token = random_token();
  ASSERT_EQ(instance_->cli({"vm", "type", "echo " + token + "\n"}).exit_code, 0);
  EXPECT_TRUE(wait_until(
      [&] { return read_file(instance_->serial_log()).find(token) != std::string::npos; }, 30s));
  EXPECT_EQ(read_file(instance_->serial_log()).find(dropped), std::string::npos);
}

TEST_F(FoundationTest, GarbageOnCommandEndpointGetsErrorReplyAndServiceSurvives) {
  shared::StatePaths paths(instance_->state_dir());
  std::mt19937 rng(1234);
  for (int i = 0; i < 50; ++i) {
    shared::Bytes junk(1 + rng() % 512);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    auto reply = shared::request(paths.service_endpoint("vm-supervisor"), junk, 5s);
    ASSERT_TRUE(reply) << reply.error().message;
    flatbuffers::Verifier v(reply->data(), reply->size());
    ASSERT_TRUE(v.VerifyBuffer<schema::vm::VmReply>(nullptr));
    const auto* rep = flatbuffers::GetRoot<schema::vm::VmReply>(reply->data());
    ASSERT_NE(rep->error(), nullptr);
    EXPECT_EQ(rep->error()->code(), static_cast<int>(Errc::kProtocol));
  }
  auto s = instance_->status();
  EXPECT_EQ(s["vm"]["ready"], true);
  EXPECT_GE(s["vm"]["malformed_requests"].get<int>(), 50);
  const std::string metrics = http_get(s["services"][0]["metrics_url"].get<std::string>());
  EXPECT_EQ(metrics.find("glassbox_vm_supervisor_malformed_requests_total{instance=\"" +
                         instance_->name() + "\"} 0"),
            std::string::npos);
}

TEST_F(FoundationTest, BadCommandsGetClearErrors) {
  auto r = instance_->cli({"vm", "key", "ctrl-notakey"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("notakey"), std::string::npos) << r.output;
  r = instance_->cli({"vm", "type", "caf\xc3\xa9"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("0xc3"), std::string::npos) << r.output;
}

TEST_F(FoundationTest, SecondUpOnTheSameStateDirIsRefused) {
  auto r = run_glassbox({"up", "--state-dir", instance_->state_dir(), "--config",
                         instance_->config_path()},
                        30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("another glassbox instance"), std::string::npos) << r.output;
  EXPECT_EQ(instance_->status()["vm"]["ready"], true);
}

TEST_F(FoundationTest, QemuKilledWithSigkillIsRebooted) {
  auto before = instance_->status();
  const int old_qemu = before["vm"]["qemu_pid"].get<int>();
  const int supervisor = before["services"][0]["pid"].get<int>();
  ASSERT_GT(old_qemu, 0);
  ASSERT_EQ(::kill(old_qemu, SIGKILL), 0);
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = instance_->status();
        return s.is_object() && s["vm"]["ready"] == true && s["vm"]["qemu_pid"] != old_qemu;
      },
      180s));
  auto after = instance_->status();
  EXPECT_EQ(after["vm"]["restarts"], before["vm"]["restarts"].get<int>() + 1);
  EXPECT_EQ(after["services"][0]["pid"], supervisor) << "supervisor must keep serving";
  EXPECT_EQ(after["services"][0]["restarts"], 0);
}

TEST_F(FoundationTest, SupervisorKilledIsRestartedByUp) {
  auto before = instance_->status();
  const int supervisor = before["services"][0]["pid"].get<int>();
  ASSERT_EQ(::kill(supervisor, SIGKILL), 0);
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = instance_->status();
        return s.is_object() && s["services"][0]["restarts"] == 1 &&
               s["services"][0]["state"] == "up" && s["vm"]["ready"] == true;
      },
      180s))
      << instance_->status().dump(2);
  auto after = instance_->status();
  EXPECT_NE(after["services"][0]["pid"], supervisor);
}

TEST_F(FoundationTest, PowerdownStopsAndStartBootsAgain) {
  ASSERT_EQ(instance_->cli({"vm", "powerdown"}).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return instance_->status()["vm"]["state"] == "stopped"; }, 60s));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(instance_->status()["vm"]["state"], "stopped") << "a guest powerdown is not a crash";
  ASSERT_EQ(instance_->cli({"vm", "start"}).exit_code, 0);
  EXPECT_TRUE(instance_->wait_ready(180s));
}

TEST_F(FoundationTest, DownLeavesNothingBehind) {
  auto s = instance_->status();
  const int qemu = s["vm"]["qemu_pid"].get<int>();
  const int supervisor = s["services"][0]["pid"].get<int>();
  const pid_t up = instance_->up_pid();
  ASSERT_TRUE(instance_->down());
  EXPECT_FALSE(shared::process_alive(up));
  EXPECT_FALSE(shared::process_alive(qemu));
  EXPECT_FALSE(shared::process_alive(supervisor));
  EXPECT_NE(::access(shared::guest_ram_path(instance_->name()).c_str(), F_OK), 0);
  auto r = instance_->cli({"status"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("no glassbox instance is running"), std::string::npos) << r.output;
}

// Errors before anything starts: nothing may be left running.
TEST(FoundationErrorsTest, UnknownConfigKeyIsNamedAndNothingStarts) {
  Instance inst("memroy_mib = 64\n");
  auto r = run_glassbox({"up", "--state-dir", inst.state_dir(), "--config", inst.config_path()});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown key [vm] memroy_mib"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(inst.config_path()), std::string::npos);
  EXPECT_NE(::access((inst.state_dir() + "/up.pid").c_str(), F_OK), 0);
}

TEST(FoundationErrorsTest, UnreadableKernelIsNamedAndNothingStarts) {
  Instance inst("kernel = \"/nonexistent/vmlinuz\"\n");
  auto r = run_glassbox({"up", "--state-dir", inst.state_dir(), "--config", inst.config_path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("/nonexistent/vmlinuz"), std::string::npos) << r.output;
  EXPECT_NE(::access((inst.state_dir() + "/up.pid").c_str(), F_OK), 0);
}

TEST(FoundationErrorsTest, MissingQemuNamesThePackage) {
  Instance inst("qemu = \"qemu-system-nonexistent\"\n");
  auto r = run_glassbox({"up", "--state-dir", inst.state_dir(), "--config", inst.config_path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("install the Debian package qemu-system-x86"), std::string::npos)
      << r.output;
}

TEST(FoundationErrorsTest, CommandsWithoutInstanceSayNothingRuns) {
  Instance inst;
  auto r = inst.cli({"vm", "pause"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("not running"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace glassbox::itest
