// glassbox-bench-compositor: the compositor's frame time on a Vulkan device (Mesa lavapipe, or
// a GPU), for guests of several RAM sizes, with everything a live frame does: the changed
// pages uploaded and their cells recomputed, the dirty glow, a highlighted process, the
// screen pane (CRT look) from a 720x400 guest frame every third frame, the HUD, the canvas.
//
// Baselines measured in the same run, on the same device:
//   naive  every frame uploads all of RAM and recomputes every cell (what a renderer without
//          dirty tracking does); the ratio incremental/naive is the point of the design;
//   cpu    one RAM map computed on the CPU (compositor/ram_map.cpp's pixel_colour, one
//          thread), the reference the shader is tested against.
// RAM is synthetic (zero pages, text, code-like bytes, 0xff runs; --seed) or a RAM file
// (--ram FILE, e.g. /dev/shm/glassbox-NAME.ram or a raw dump), repeated to the size asked.
//
// Output: one line per size and a JSON document (--json FILE).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "compositor/hilbert.hpp"
#include "compositor/ram_map.hpp"
#include "compositor/renderer.hpp"

using namespace glassbox;
using namespace glassbox::compositor;
using Clock = std::chrono::steady_clock;

namespace {

struct Figures {
  double mean = 0, p50 = 0, p95 = 0, max = 0;
};

Figures figures(std::vector<double> v) {
  Figures f;
  if (v.empty()) return f;
  std::sort(v.begin(), v.end());
  for (double x : v) f.mean += x;
  f.mean /= static_cast<double>(v.size());
  f.p50 = v[v.size() / 2];
  f.p95 = v[std::min(v.size() - 1, v.size() * 95 / 100)];
  f.max = v.back();
  return f;
}

nlohmann::json to_json(const Figures& f) {
  return {{"mean", f.mean}, {"p50", f.p50}, {"p95", f.p95}, {"max", f.max}};
}

void fill_page(uint8_t* p, std::mt19937& rng) {
  const unsigned kind = rng() % 10;
  for (int i = 0; i < 4096; ++i) {
    switch (kind) {
      case 0:
      case 1:
      case 2:
      case 3:
      case 4:
        p[i] = 0;
        break;  // half of RAM is zero
      case 5:
        p[i] = static_cast<uint8_t>(0x20 + rng() % 95);
        break;  // text
      case 6:
        p[i] = 0xff;
        break;
      case 7:
        p[i] = static_cast<uint8_t>(rng() % 32);
        break;  // tables, small ints
      default:
        p[i] = static_cast<uint8_t>(rng());
        break;  // code, compressed
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"glassbox-bench-compositor: frame time of the Vulkan compositor"};
  std::vector<uint32_t> sizes_mib = {64, 256};
  uint32_t frames = 120, dirty_pages = 64, naive_frames = 8, seed = 1;
  std::string device, ram_file, json_path;
  std::string font = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
  bool with_3d = true;
  app.add_option("--ram-mib", sizes_mib, "guest RAM sizes (MiB)")->delimiter(',');
  app.add_option("--frames", frames, "timed frames per size")->check(CLI::Range(1, 100000));
  app.add_option("--dirty-pages", dirty_pages,
                 "pages changed per frame (64 at 30 fps ~ the reference guest's 1,900 pages/s)");
  app.add_option("--naive-frames", naive_frames, "frames of the full-upload baseline");
  app.add_option("--device", device, "Vulkan device name substring");
  app.add_option("--ram", ram_file, "RAM file to draw (repeated or cut to each size)");
  app.add_option("--seed", seed, "synthetic RAM and dirty-page seed");
  app.add_option("--json", json_path, "write the figures as JSON here");
  app.add_option("--font", font, "TrueType font of the HUD");
  app.add_flag("!--no-3d", with_3d, "skip the 3D view's frames");
  CLI11_PARSE(app, argc, argv);

  VkContextOptions vo;
  vo.device_filter = device;
  auto ctx = VkContext::create(vo);
  if (!ctx) {
    std::cerr << "glassbox-bench-compositor: " << ctx.error().to_string() << "\n";
    return 1;
  }
  std::cout << "device: " << (*ctx)->device_description() << "\n";
  nlohmann::json out = {{"device", (*ctx)->device_description()},
                        {"dirty_pages_per_frame", dirty_pages},
                        {"frames", frames},
                        {"sizes", nlohmann::json::array()}};

  std::vector<uint8_t> source;
  if (!ram_file.empty()) {
    std::ifstream in(ram_file, std::ios::binary);
    source.assign(std::istreambuf_iterator<char>(in), {});
    if (source.empty()) {
      std::cerr << "glassbox-bench-compositor: cannot read " << ram_file << "\n";
      return 1;
    }
  }

  for (uint32_t mib : sizes_mib) {
    const uint64_t bytes = uint64_t{mib} << 20;
    std::mt19937 rng(seed);
    std::vector<uint8_t> ram(bytes);
    if (source.empty()) {
      for (uint64_t off = 0; off < bytes; off += 4096) fill_page(&ram[off], rng);
    } else {
      for (uint64_t off = 0; off < bytes; off += source.size()) {
        std::memcpy(&ram[off], source.data(), std::min<uint64_t>(source.size(), bytes - off));
      }
    }
    RendererOptions o;  // the service's defaults: 1600x900, auto density, glow, CRT
    auto r = Renderer::create(**ctx, o, shared::RamLayout::identity(bytes));
    if (!r) {
      std::cerr << "glassbox-bench-compositor: " << r.error().to_string() << "\n";
      return 1;
    }
    Renderer& rd = **r;
    if (auto f = rd.set_font(font, 14); !f)
      std::cerr << "no HUD text: " << f.error().message << "\n";
    Highlight h;
    h.label = "pid 42 bench";
    for (int i = 0; i < 200; ++i) {
      h.runs.push_back({Gpa((rng() % (bytes / 4096)) * 4096), 4096u * (1 + rng() % 16)});
    }
    (void)rd.set_highlight(h);
    const uint32_t sw = 720, sh = 400;
    std::vector<uint8_t> screen(uint64_t{sw} * sh * 4);
    for (auto& b : screen) b = static_cast<uint8_t>(rng());

    uint32_t now = 1;
    auto frame = [&](bool full, bool screen_too) -> Result<FrameStats> {
      std::vector<uint32_t> pages;
      if (!full) {
        for (uint32_t i = 0; i < dirty_pages; ++i) {
          const uint32_t p = rng() % static_cast<uint32_t>(bytes / 4096);
          fill_page(&ram[uint64_t{p} * 4096], rng);
          pages.push_back(p);
        }
      }
      if (screen_too) {
        for (int i = 0; i < 64; ++i) screen[rng() % screen.size()] ^= 0xff;
        GB_TRY(rd.update_screen(screen.data(), screen.size(), sw, sh, sw * 4));
      }
      GB_TRY(rd.update_ram(ram, pages, full, now));
      rd.set_hud_text("bench " + std::to_string(now));
      auto st = rd.render(now);
      now += 33;
      return st;
    };
    // Warm-up (the first frame uploads everything).
    for (int i = 0; i < 5; ++i) {
      if (auto st = frame(i == 0, true); !st) {
        std::cerr << "glassbox-bench-compositor: " << st.error().to_string() << "\n";
        return 1;
      }
    }
    auto run = [&](uint32_t n, bool full, std::vector<double>& cpu, std::vector<double>& gpu,
                   uint64_t& upload) -> bool {
      for (uint32_t i = 0; i < n; ++i) {
        auto st = frame(full, i % 3 == 0);
        if (!st) {
          std::cerr << "glassbox-bench-compositor: " << st.error().to_string() << "\n";
          return false;
        }
        cpu.push_back(st->cpu_ms);
        gpu.push_back(st->gpu_ms);
        upload += st->upload_bytes;
      }
      return true;
    };
    std::vector<double> cpu2d, gpu2d, cpu_naive, gpu_naive, cpu3d, gpu3d;
    uint64_t up2d = 0, up_naive = 0, up3d = 0;
    if (!run(frames, false, cpu2d, gpu2d, up2d)) return 1;
    if (!run(naive_frames, true, cpu_naive, gpu_naive, up_naive)) return 1;
    if (with_3d) {
      rd.set_show_3d(true);
      if (!run(std::max(1u, frames / 2), false, cpu3d, gpu3d, up3d)) return 1;
      rd.set_show_3d(false);
    }
    // CPU reference: one whole map, one thread.
    const RamMap& map = rd.ram_map();
    const auto t0 = Clock::now();
    uint64_t checksum = 0;
    const uint64_t bpp = map.bytes_per_pixel();
    for (uint64_t d = 0; d * bpp < bytes; ++d) {
      const Cell2d c = hilbert_d_to_xy(d, map.bits());
      const Rgb8 col = pixel_colour({ram.data() + d * bpp, std::min(bpp, bytes - d * bpp)});
      checksum += col.r + c.x;
    }
    const double cpu_ref_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();

    const Figures f2 = figures(cpu2d), g2 = figures(gpu2d), fn = figures(cpu_naive),
                  f3 = figures(cpu3d), g3 = figures(gpu3d);
    const double upload_per_frame = static_cast<double>(up2d) / frames;
    std::printf(
        "%4u MiB (%llu B/px, %ux%u map): frame mean %.2f ms p50 %.2f p95 %.2f (GPU %.2f ms) = "
        "%.1f fps; upload %.0f KiB/frame | naive full upload %.2f ms (ratio %.3f) | CPU map "
        "%.1f ms (ratio %.3f) | 3D frame mean %.2f ms (GPU %.2f)\n",
        mib, static_cast<unsigned long long>(bpp), map.pane_width(), map.pane_height(), f2.mean,
        f2.p50, f2.p95, g2.mean, 1000.0 / f2.mean, upload_per_frame / 1024.0, fn.mean,
        f2.mean / fn.mean, cpu_ref_ms, f2.mean / cpu_ref_ms, f3.mean, g3.mean);
    out["sizes"].push_back({{"ram_mib", mib},
                            {"bytes_per_pixel", bpp},
                            {"pane_width", map.pane_width()},
                            {"frame_ms", to_json(f2)},
                            {"gpu_ms", to_json(g2)},
                            {"fps", 1000.0 / f2.mean},
                            {"upload_bytes_per_frame", upload_per_frame},
                            {"naive_frame_ms", to_json(fn)},
                            {"naive_upload_bytes_per_frame",
                             static_cast<double>(up_naive) / std::max(1u, naive_frames)},
                            {"ratio_to_naive", f2.mean / fn.mean},
                            {"cpu_reference_map_ms", cpu_ref_ms},
                            {"ratio_to_cpu_reference", f2.mean / cpu_ref_ms},
                            {"frame_3d_ms", to_json(f3)},
                            {"gpu_3d_ms", to_json(g3)},
                            {"checksum", checksum}});
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << out.dump(2) << "\n";
  }
  return 0;
}
