// The compositor's window on a real X display (Xvfb; ctest runs this binary under xvfb-run):
// the guest's tty1 typed into through the window (xdotool -> X11 -> GLFW -> qcodes ->
// vm-supervisor's InputBatch -> QEMU -> the guest's shell, which echoes the line to the serial
// console), and a Ctrl+Alt hotkey kept by the compositor (2D -> 3D) instead of reaching the
// guest. Lavapipe presents through X11.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "shared/paths.hpp"
#include "tests/integration/harness.hpp"

namespace glassbox::itest {
namespace {

using namespace std::chrono_literals;

// Runs a shell command; its exit code.
int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

std::string window_id() {
  FILE* p = ::popen("xdotool search --name '^glassbox - ' 2>/dev/null | head -1", "r");
  if (p == nullptr) return "";
  char buf[64] = {};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, p);
  ::pclose(p);
  std::string id(buf, n);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

TEST(CompositorWindowTest, KeysTypedIntoTheWindowReachTheGuestAndHotkeysStayLocal) {
  if (std::getenv("DISPLAY") == nullptr)
    GTEST_SKIP() << "no DISPLAY (ctest runs this under xvfb-run)";
  ASSERT_EQ(sh("command -v xdotool > /dev/null"), 0) << "install the Debian package xdotool";
  Instance inst("",
                "services = [\"vm-supervisor\", \"ram-snapshotter\", \"semantic-db\", "
                "\"compositor\"]",
                "[compositor]\nwindow = \"on\"\nwidth = 1024\nheight = 600\nfps = 15\n");
  ASSERT_TRUE(inst.start());
  ASSERT_TRUE(inst.wait_ready(240s)) << read_file(inst.up_log());
  std::string id;
  ASSERT_TRUE(wait_until([&] { return !(id = window_id()).empty(); }, 60s))
      << read_file(shared::StatePaths(inst.state_dir()).service_log("compositor"));
  nlohmann::json s;
  ASSERT_TRUE(wait_until(
      [&] {
        s = inst.status();
        return s.is_object() && s["compositor"].is_object() &&
               s["compositor"].value("window", false) && s["compositor"].value("frames", 0) > 10;
      },
      60s))
      << s.dump(1) << read_file(shared::StatePaths(inst.state_dir()).service_log("compositor"));
  // Focus the window (no window manager on Xvfb: xdotool sets the input focus itself), then
  // type through XTEST as a user would.
  ASSERT_EQ(sh("xdotool windowfocus --sync " + id), 0);
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  const std::string token = "win" + std::to_string(rng() % 1000000);
  ASSERT_EQ(sh("xdotool type --delay 40 'echo " + token + "' && xdotool key Return"), 0);
  EXPECT_TRUE(wait_until(
      [&] {
        return read_file(inst.serial_log()).find("GLASSBOX-TTY1: echo " + token) !=
               std::string::npos;
      },
      30s))
      << "serial log tail: " << read_file(inst.serial_log()).substr(0, 2000) << "\n"
      << inst.status().dump(1);
  // Ctrl+Alt+M: the compositor switches to the 3D view; the guest sees no 'm'.
  ASSERT_EQ(sh("xdotool key ctrl+alt+m"), 0);
  EXPECT_TRUE(wait_until(
      [&] {
        auto st = inst.status();
        return st.is_object() && st["compositor"].is_object() &&
               st["compositor"].value("mode", "") == "3d";
      },
      15s));
  auto st = inst.status();
  EXPECT_GT(st["compositor"].value("input_batches", 0), 0);
  EXPECT_EQ(st["compositor"].value("input_failures", -1), 0);
}

}  // namespace
}  // namespace glassbox::itest
