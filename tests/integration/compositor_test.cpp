// glassbox-compositor on real parts: the reference guest under TCG, vm-supervisor's frames over
// iceoryx, ram-snapshotter's stream into the compositor's RamMirror, semantic-db's regions,
// the Vulkan renderer on Mesa lavapipe, and the CLI (`screenshot`, `map locate|gpa|view`,
// `status`). The guest writes 128 KiB of 0xff at 0x7100000 and 128 KiB of text at 0x7140000
// at boot (orchestration/guest/init); 0x7180000.. stays zero.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <nlohmann/json.hpp>
#include <thread>

#include "compositor/ram_map.hpp"
#include "shared/png.hpp"
#include "shared/process.hpp"
#include "tests/integration/harness.hpp"

namespace glassbox::itest {
namespace {

using namespace std::chrono_literals;
using compositor::ByteClass;
using compositor::class_colour;
using compositor::Rgb8;

constexpr uint64_t kFfGpa = 0x7100000, kTextGpa = 0x7140000, kZeroGpa = 0x7180000;
constexpr uint64_t kRegionBytes = 0x20000;

nlohmann::json json_of(const std::string& s) {
  const auto first = s.find('{'), last = s.rfind('}');
  if (first == std::string::npos || last == std::string::npos) return nullptr;
  return nlohmann::json::parse(s.substr(first, last - first + 1), nullptr, false);
}

Rgb8 pixel(const shared::DecodedImage& img, uint32_t x, uint32_t y) {
  const uint8_t* p = &img.rgba[(uint64_t{y} * img.width + x) * 4];
  return {p[0], p[1], p[2]};
}

class CompositorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    instance_ = new Instance(
        "", "services = [\"vm-supervisor\", \"ram-snapshotter\", \"semantic-db\", \"compositor\"]",
        "[compositor]\nwindow = \"off\"\ncrt = false\npulse = false\nglow_ms = 500\n"
        "width = 1280\nheight = 720\nfps = 20\n");
    ASSERT_TRUE(instance_->start());
    ASSERT_TRUE(instance_->wait_ready(240s)) << read_file(instance_->up_log());
  }
  static void TearDownTestSuite() {
    delete instance_;
    instance_ = nullptr;
  }
  static std::string tmp(const std::string& name) { return instance_->state_dir() + "/" + name; }
  static nlohmann::json locate(uint64_t gpa) {
    auto r = instance_->cli({"map", "locate", fmt_hex(gpa), "--json"});
    if (r.exit_code != 0) return nullptr;
    return json_of(r.output);
  }
  static std::string fmt_hex(uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
  }
  static Instance* instance_;
};
Instance* CompositorTest::instance_ = nullptr;

TEST_F(CompositorTest, StatusHasACompositorSectionAndMetrics) {
  nlohmann::json s;
  ASSERT_TRUE(wait_until(
      [&] {
        s = instance_->status();
        return s.is_object() && s["compositor"].is_object() &&
               s["compositor"].value("frames", 0) > 5 &&
               s["compositor"]["ram"].value("known", false);
      },
      60s))
      << s.dump(1) << read_file(instance_->up_log());
  const auto& c = s["compositor"];
  EXPECT_GT(c["frame_ms"].get<double>(), 0.0) << c.dump(1);
  EXPECT_GT(c["fps"].get<double>(), 0.0);
  EXPECT_NE(c["device"].get<std::string>().find("Vulkan"), std::string::npos) << c.dump(1);
  EXPECT_EQ(c["window"], false);
  EXPECT_EQ(c["ram"]["bytes_per_pixel"], 256) << "256 MiB guest: the 1024x1024 default";
  std::string url;
  for (const auto& svc : s["services"]) {
    if (svc["name"] == "compositor") url = svc["metrics_url"].get<std::string>();
  }
  ASSERT_FALSE(url.empty()) << s.dump(1);
  const std::string metrics = http_get(url);
  EXPECT_NE(metrics.find("glassbox_compositor_frames_total{instance=\"" + instance_->name()),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("glassbox_compositor_frame_seconds"), std::string::npos);
}

TEST_F(CompositorTest, FilledTextAndZeroRegionsShowTheirClassColoursAtLocatedPixels) {
  nlohmann::json geo;
  ASSERT_TRUE(wait_until([&] { return (geo = locate(kFfGpa)).is_object(); }, 60s))
      << instance_->cli({"map", "locate", fmt_hex(kFfGpa), "--json"}).output;
  for (const char* key : {"x", "y", "bytes_per_pixel", "pane_width", "pane_height"}) {
    EXPECT_TRUE(geo.contains(key)) << geo.dump();
  }
  const uint64_t bpp = geo["bytes_per_pixel"].get<uint64_t>();
  ASSERT_GE(bpp, 4u);
  // The pixels of every region, from `map locate` (one per pixel the region covers).
  struct Probe {
    uint64_t gpa;
    uint32_t x, y;
    Rgb8 want;
  };
  std::vector<Probe> probes;
  for (auto [base, cls] :
       {std::pair{kFfGpa, ByteClass::kFF}, std::pair{kTextGpa, ByteClass::kPrintable},
        std::pair{kZeroGpa, ByteClass::kZero}}) {
    const uint64_t step = std::max<uint64_t>(bpp, kRegionBytes / 16);  // 16 probes per region
    for (uint64_t off = 0; off < kRegionBytes; off += step) {
      auto j = locate(base + off);
      ASSERT_TRUE(j.is_object()) << std::hex << base + off;
      probes.push_back(
          {base + off, j["x"].get<uint32_t>(), j["y"].get<uint32_t>(), class_colour(cls)});
      // `map gpa` is the inverse.
      auto g = instance_->cli({"map", "gpa", std::to_string(probes.back().x),
                               std::to_string(probes.back().y), "--json"});
      ASSERT_EQ(g.exit_code, 0) << g.output;
      EXPECT_EQ(json_of(g.output)["gpa"], fmt_hex(base + off)) << g.output;
    }
  }
  // The RAM pane as PNG: every probe in its class's colour (retried: the mirror must have the
  // boot-time writes and their glow must have faded).
  std::string last_bad;
  const bool ok = wait_until(
      [&] {
        const std::string png = tmp("ram.png");
        auto r = instance_->cli({"screenshot", png, "--pane", "ram"});
        if (r.exit_code != 0) {
          last_bad = r.output;
          return false;
        }
        auto img = shared::read_png(png);
        if (!img || img->width != geo["pane_width"].get<uint32_t>() ||
            img->height != geo["pane_height"].get<uint32_t>()) {
          last_bad = "bad png size";
          return false;
        }
        for (const auto& p : probes) {
          const Rgb8 got = pixel(*img, p.x, p.y);
          if (!(got == p.want)) {
            last_bad = "gpa " + fmt_hex(p.gpa) + " pixel (" + std::to_string(p.x) + "," +
                       std::to_string(p.y) + ") is " + std::to_string(got.r) + "," +
                       std::to_string(got.g) + "," + std::to_string(got.b) + ", want " +
                       std::to_string(p.want.r) + "," + std::to_string(p.want.g) + "," +
                       std::to_string(p.want.b);
            return false;
          }
        }
        return true;
      },
      90s);
  EXPECT_TRUE(ok) << last_bad;
}

TEST_F(CompositorTest, LocateOutsideRamIsAClearError) {
  auto r = instance_->cli({"map", "locate", "0xd0000000", "--json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("outside guest RAM"), std::string::npos) << r.output;
  auto g = instance_->cli({"map", "gpa", "100000", "5"});
  EXPECT_NE(g.exit_code, 0);
  EXPECT_NE(g.output.find("outside"), std::string::npos) << g.output;
  auto bad = instance_->cli({"screenshot", tmp("x.png"), "--pane", "left"});
  EXPECT_NE(bad.exit_code, 0);
}

TEST_F(CompositorTest, ScreenPaneMatchesTheLatestVncFrame) {
  // The guest's console may change between two captures (cursor blink): the compositor's
  // pane must equal the supervisor's screendump taken just before or just after it.
  std::string why;
  const bool ok = wait_until(
      [&] {
        const std::string a = tmp("a.png"), s = tmp("s.png"), b = tmp("b.png");
        if (instance_->cli({"vm", "screendump", a}).exit_code != 0) return false;
        std::this_thread::sleep_for(200ms);  // > one compositor frame at 20 fps
        auto r = instance_->cli({"screenshot", s, "--pane", "screen"});
        if (r.exit_code != 0) {
          why = r.output;
          return false;
        }
        if (instance_->cli({"vm", "screendump", b}).exit_code != 0) return false;
        auto ia = shared::read_png(a), is = shared::read_png(s), ib = shared::read_png(b);
        if (!ia || !is || !ib) return false;
        for (const auto* ref : {&*ia, &*ib}) {
          if (ref->width != is->width || ref->height != is->height) {
            why = "sizes differ: " + std::to_string(ref->width) + "x" +
                  std::to_string(ref->height) + " vs " + std::to_string(is->width) + "x" +
                  std::to_string(is->height);
            continue;
          }
          uint64_t diff = 0;
          for (size_t i = 0; i < is->rgba.size(); i += 4) {
            diff += std::memcmp(&ref->rgba[i], &is->rgba[i], 3) != 0;
          }
          if (diff == 0) return true;
          why = std::to_string(diff) + " pixels differ";
        }
        return false;
      },
      60s);
  EXPECT_TRUE(ok) << why;
}

TEST_F(CompositorTest, HighlightOutlinesAProcess) {
  auto r = instance_->cli({"map", "view", "--highlight", "gb-memwriter"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json s;
  ASSERT_TRUE(wait_until(
      [&] {
        s = instance_->status();
        return s.is_object() &&
               s["compositor"]["highlight"].get<std::string>().find("gb-memwriter") !=
                   std::string::npos &&
               s["compositor"]["highlight"].get<std::string>().find("pid") != std::string::npos;
      },
      // semantic-db's regions come from its RamMirror and a walk; generous on a loaded host.
      90s))
      << s.dump(1);
  // The outline colour (0, 255, 255) appears on the RAM pane.
  const bool outlined = wait_until(
      [&] {
        const std::string png = tmp("hl.png");
        if (instance_->cli({"screenshot", png, "--pane", "ram"}).exit_code != 0) return false;
        auto img = shared::read_png(png);
        if (!img) return false;
        uint64_t cyan = 0;
        for (uint32_t y = 0; y < img->height; ++y) {
          for (uint32_t x = 0; x < img->width; ++x) cyan += pixel(*img, x, y) == Rgb8{0, 255, 255};
        }
        return cyan > 50;
      },
      30s);
  EXPECT_TRUE(outlined);
  EXPECT_EQ(instance_->cli({"map", "view", "--highlight", "-"}).exit_code, 0);
  EXPECT_EQ(instance_->cli({"map", "view", "--mode", "3d"}).exit_code, 0);
  // The 3D view turns with the camera.
  ASSERT_EQ(instance_->cli({"screenshot", tmp("v1.png"), "--pane", "ram3d"}).exit_code, 0);
  ASSERT_EQ(instance_->cli({"map", "view", "--yaw", "60", "--zoom", "1.5"}).exit_code, 0);
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(instance_->cli({"screenshot", tmp("v2.png"), "--pane", "ram3d"}).exit_code, 0);
  auto v1 = shared::read_png(tmp("v1.png")), v2 = shared::read_png(tmp("v2.png"));
  ASSERT_TRUE(v1 && v2);
  EXPECT_NE(v1->rgba, v2->rgba);
  auto shot = instance_->cli({"screenshot", tmp("all.png")});
  EXPECT_EQ(shot.exit_code, 0) << shot.output;
  auto all = shared::read_png(tmp("all.png"));
  ASSERT_TRUE(all);
  EXPECT_EQ(all->width, 1280u);
  EXPECT_EQ(all->height, 720u);
  EXPECT_EQ(instance_->cli({"map", "view", "--mode", "2d"}).exit_code, 0);
}

TEST_F(CompositorTest, RamPublisherGoneKeepsTheLastImageAndSaysStale) {
  int pid = 0;
  auto s = instance_->status();
  for (const auto& svc : s["services"]) {
    if (svc["name"] == "ram-snapshotter") pid = svc["pid"].get<int>();
  }
  ASSERT_GT(pid, 0) << s.dump(1);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  const bool stale = wait_until(
      [&] {
        auto st = instance_->status();
        return st.is_object() && st["compositor"]["ram"].value("stale", false);
      },
      20s);
  auto r = instance_->cli({"screenshot", tmp("stale.png"), "--pane", "ram"});
  ::kill(pid, SIGCONT);
  EXPECT_TRUE(stale);
  EXPECT_EQ(r.exit_code, 0) << "the last image stays: " << r.output;
  EXPECT_TRUE(wait_until(
      [&] {
        auto st = instance_->status();
        return st.is_object() && !st["compositor"]["ram"].value("stale", true);
      },
      30s));
}

TEST(CompositorNoDevice, NamesThePackageToInstall) {
  const std::string out = "/tmp/gb-itest-novk-" + std::to_string(::getpid());
  const std::string state = out + ".state";
  auto pid = shared::spawn(
      {"/usr/bin/env", "VK_DRIVER_FILES=/nonexistent.json", "VK_ICD_FILENAMES=/nonexistent.json",
       bin_dir() + "/glassbox-compositor", "--state-dir", state},
      {.new_session = false, .output_path = out});
  ASSERT_TRUE(pid);
  auto st = shared::reap_for(*pid, 30s);
  ASSERT_TRUE(st);
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 1);
  const std::string text = read_file(out);
  EXPECT_NE(text.find("mesa-vulkan-drivers"), std::string::npos) << text;
  ::unlink(out.c_str());
}

}  // namespace
}  // namespace glassbox::itest
