// Foundation integration tests: the real reference guest under TCG, driven through the real
// `glassbox` CLI, vm-supervisor, QEMU, RouDi, ZeroMQ bus and metrics endpoint.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstring>
#include <fstream>
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
    ASSERT_TRUE(instance_->start({"--report", report_path()}));
    ASSERT_TRUE(instance_->wait_ready(180s))
        << "guest never became ready; up log:\n"
        << read_file(instance_->up_log()) << "\nsupervisor log:\n"
        << read_file(instance_->state_dir() + "/logs/vm-supervisor.log");
  }
  static void TearDownTestSuite() {
    delete instance_;
    instance_ = nullptr;
  }
  static std::string report_path() { return instance_->state_dir() + "/report.json"; }
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
  ASSERT_EQ(s["services"].size(), 3u);  // [up] services in order
  EXPECT_EQ(s["services"][0]["name"], "vm-supervisor");
  EXPECT_EQ(s["services"][1]["name"], "ram-snapshotter");
  EXPECT_EQ(s["services"][2]["name"], "semantic-db");
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

TEST_F(FoundationTest, MouseMovesAndClicksInsideTheScreen) {
  auto r = instance_->cli({"vm", "mouse", "100", "80", "--click", "left"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // Coordinates beyond the screen are clamped to its edge, not an error.
  r = instance_->cli({"vm", "mouse", "100000", "100000"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
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
  auto r = run_glassbox(
      {"up", "--state-dir", instance_->state_dir(), "--config", instance_->config_path()}, 30s);
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

TEST_F(FoundationTest, SupervisorKilledIsRestartedByUpAndReattachesToQemu) {
  auto before = instance_->status();
  const int supervisor = before["services"][0]["pid"].get<int>();
  const int qemu = before["vm"]["qemu_pid"].get<int>();
  ASSERT_GT(qemu, 0);
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
  // The VM outlived its supervisor: the new one took the same QEMU over (QMP, VNC, serial).
  EXPECT_EQ(after["vm"]["qemu_pid"], qemu) << after.dump(1);
  EXPECT_EQ(after["vm"]["boots"], before["vm"]["boots"]);
  EXPECT_EQ(after["vm"]["state"], "running");
  // Input and the screen work through the re-attached sockets.
  const std::string token = random_token();
  ASSERT_EQ(instance_->cli({"vm", "type", "echo " + token}).exit_code, 0);
  ASSERT_EQ(instance_->cli({"vm", "key", "ret"}).exit_code, 0);
  EXPECT_TRUE(wait_until(
      [&] {
        return read_file(instance_->serial_log()).find("GLASSBOX-TTY1: echo " + token) !=
               std::string::npos;
      },
      30s));
  EXPECT_TRUE(wait_until(
      [&] {
        auto s = instance_->status();
        return s.is_object() && s["vm"]["screen"]["connected"] == true;
      },
      30s));
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
  // The report written on shutdown describes the run.
  auto report = nlohmann::json::parse(read_file(report_path()), nullptr, false);
  ASSERT_TRUE(report.is_object()) << read_file(report_path());
  EXPECT_EQ(report["vm"]["accel"], "tcg");
  EXPECT_GT(report["vm"]["boot_to_ready_s"].get<double>(), 0.0);
  // VM counters are the current supervisor's (it was restarted by the test above).
  EXPECT_GE(report["vm"]["boots"].get<int>(), 2);  // its boot and the `vm start` after powerdown
  ASSERT_EQ(report["services"].size(), 3u);
  EXPECT_EQ(report["services"][0]["name"], "vm-supervisor");
  EXPECT_EQ(report["services"][0]["restarts"], 1);  // the supervisor SIGKILL test
  EXPECT_TRUE(report["services"][0]["summary"].contains("vm"));
}

TEST(FoundationLifecycleTest, UpForSecondsStopsByItselfAndWritesReport) {
  Instance inst;
  const std::string report = inst.state_dir() + "/for-report.json";
  ASSERT_TRUE(inst.start({"--for", "3", "--report", report}));
  auto st = shared::reap_for(inst.up_pid(), 60s);
  ASSERT_TRUE(st) << "`up --for 3` did not stop by itself";
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  auto j = nlohmann::json::parse(read_file(report), nullptr, false);
  ASSERT_TRUE(j.is_object()) << read_file(report);
  EXPECT_EQ(j["instance"], inst.name());
  ASSERT_EQ(j["services"].size(), 3u);
  EXPECT_EQ(j["services"][0]["name"], "vm-supervisor");
  EXPECT_EQ(j["vm"]["accel"], "tcg");
  EXPECT_NE(::access(shared::guest_ram_path(inst.name()).c_str(), F_OK), 0);
}

TEST(FoundationLifecycleTest, UpKilledTakesItsServicesAndVmWithIt) {
  Instance inst;
  ASSERT_TRUE(inst.start());
  int supervisor = 0, qemu = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = inst.status();
        if (!s.is_object() || s["vm"]["qemu_pid"].get<int>() <= 0) return false;
        supervisor = s["services"][0]["pid"].get<int>();
        qemu = s["vm"]["qemu_pid"].get<int>();
        return true;
      },
      60s));
  ASSERT_EQ(::kill(inst.up_pid(), SIGKILL), 0);
  (void)shared::reap_for(inst.up_pid(), 5s);
  EXPECT_TRUE(wait_until(
      [&] { return !shared::process_alive(supervisor) && !shared::process_alive(qemu); }, 30s))
      << "an orphaned supervisor or QEMU outlived `glassbox up`";
  // The RouDi that `up` started is a host-wide daemon and outlives it; stop it here.
  const std::string log = read_file(inst.up_log());
  const auto at = log.find("starting iox-roudi (pid ");
  if (at != std::string::npos) {
    const int roudi = std::atoi(log.c_str() + at + std::strlen("starting iox-roudi (pid "));
    if (roudi > 0) shared::terminate_group(roudi, 5s);
  }
}

// A 512-byte real-mode boot sector that prints GLASSBOX-DISK-READY on COM1 and halts: a
// user's own disk image, booted by SeaBIOS from virtio-blk through [vm] disk.
std::string serial_hello_boot_sector() {
  const unsigned char code[] = {
      0x31, 0xC0,        // xor ax, ax
      0x8E, 0xD8,        // mov ds, ax
      0xBE, 0x15, 0x7C,  // mov si, 0x7c15 (msg)
      0xBA, 0xF8, 0x03,  // mov dx, 0x3f8 (COM1)
      0xAC,              // loop: lodsb
      0x84, 0xC0,        // test al, al
      0x74, 0x03,        // jz done
      0xEE,              // out dx, al
      0xEB, 0xF8,        // jmp loop
      0xF4,              // done: hlt
      0xEB, 0xFD,        // jmp done
  };
  std::string s(reinterpret_cast<const char*>(code), sizeof code);
  s += "GLASSBOX-DISK-READY\r\n";
  s += '\0';
  s.resize(510, '\0');
  s += "\x55\xAA";
  return s;
}

TEST(FoundationLifecycleTest, UserDiskImageBootsThroughConfig) {
  char tmpl[] = "/tmp/gb-disk-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string disk = dir + "/hello.img";
  {
    std::ofstream f(disk, std::ios::binary);
    f << serial_hello_boot_sector();
    f << std::string(1024 * 1024 - 512, '\0');
  }
  Instance inst("disk = \"" + disk + "\"\nready_marker = \"GLASSBOX-DISK-READY\"\n");
  ASSERT_TRUE(inst.start());
  ASSERT_TRUE(inst.wait_ready(60s)) << read_file(inst.serial_log());
  EXPECT_NE(inst.status()["vm"]["boot_to_ready_s"].get<double>(), 0.0);
  EXPECT_TRUE(inst.down());
  ::unlink(disk.c_str());
  ::rmdir(dir.c_str());
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

// docker-compose and systemd run each service alone with `glassbox bus` for the event proxy;
// `glassbox status` then asks the services themselves.
TEST(FoundationErrorsTest, ServicesWithoutUpAnswerStatusThroughTheirOwnEndpoints) {
  Instance inst("", "", "[compositor]\nwindow = \"off\"\n");
  const std::string log = inst.state_dir() + "/alone.log";
  auto bus = shared::spawn({bin_dir() + "/glassbox", "bus", "--state-dir", inst.state_dir()},
                           {.new_session = true, .output_path = log});
  ASSERT_TRUE(bus);
  auto comp = shared::spawn({bin_dir() + "/glassbox-compositor", "--state-dir", inst.state_dir(),
                             "--config", inst.config_path()},
                            {.new_session = true, .output_path = log});
  ASSERT_TRUE(comp);
  nlohmann::json s;
  const bool answered = wait_until(
      [&] {
        auto r = inst.cli({"status", "--json"});
        if (r.exit_code != 0) return false;
        const auto first = r.output.find('{');
        s = nlohmann::json::parse(r.output.substr(first == std::string::npos ? 0 : first), nullptr,
                                  false);
        return s.is_object() && s["services"].size() == 1;
      },
      30s);
  // A second bus for the same state dir is refused.
  auto second = run_glassbox({"bus", "--state-dir", inst.state_dir()}, 10s);
  shared::terminate_group(*comp, 5000ms);
  shared::terminate_group(*bus, 5000ms);
  (void)shared::reap_for(*comp, 2000ms);
  (void)shared::reap_for(*bus, 2000ms);
  ASSERT_TRUE(answered) << s.dump(1) << read_file(log);
  EXPECT_EQ(s["services"][0]["name"], "compositor");
  EXPECT_EQ(s["services"][0]["state"], "up");
  EXPECT_EQ(s["up"]["running"], false);
  EXPECT_TRUE(s["compositor"].is_object());
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.output.find("another event bus"), std::string::npos) << second.output;
}

}  // namespace
}  // namespace glassbox::itest
