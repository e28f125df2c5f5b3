// The Vulkan renderer on a real device (Mesa lavapipe here and in CI): every pane read back and
// compared with the CPU reference (compositor/ram_map.cpp, hilbert.cpp), pixel for pixel.
#include "compositor/renderer.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "compositor/hilbert.hpp"
#include "compositor/ram_map.hpp"

namespace glassbox::compositor {
namespace {

VkContext& context() {
  static std::unique_ptr<VkContext> ctx = [] {
    auto c = VkContext::create({});
    if (!c) {
      ADD_FAILURE() << c.error().to_string();
      return std::unique_ptr<VkContext>();
    }
    return std::move(*c);
  }();
  if (!ctx) throw std::runtime_error("no Vulkan device");
  return *ctx;
}

// RAM with every byte class in runs of random length, plus all-zero, all-0xff and text pages.
std::vector<uint8_t> make_ram(uint64_t bytes, uint32_t seed) {
  std::vector<uint8_t> ram(bytes);
  std::mt19937 rng(seed);
  for (uint64_t i = 0; i < bytes;) {
    const uint64_t run = std::min<uint64_t>(bytes - i, 1 + rng() % 700);
    const unsigned kind = rng() % 6;
    for (uint64_t k = 0; k < run; ++k, ++i) {
      switch (kind) {
        case 0:
          ram[i] = 0;
          break;
        case 1:
          ram[i] = 0xff;
          break;
        case 2:
          ram[i] = static_cast<uint8_t>(0x20 + rng() % 95);
          break;
        case 3:
          ram[i] = static_cast<uint8_t>(1 + rng() % 31);
          break;
        default:
          ram[i] = static_cast<uint8_t>(rng());
          break;
      }
    }
  }
  return ram;
}

RendererOptions options(uint64_t bpp) {
  RendererOptions o;
  o.canvas_width = 640;
  o.canvas_height = 400;
  o.bytes_per_pixel = bpp;
  o.volume_bits = 5;
  o.ram3d_width = o.ram3d_height = 128;
  o.glow_ms = 0;
  o.crt = false;
  return o;
}

Rgb8 at(const RgbaImage& img, uint32_t x, uint32_t y) {
  const uint8_t* p = &img.rgba[(uint64_t{y} * img.width + x) * 4];
  return {p[0], p[1], p[2]};
}

// Compares the RAM pane with the CPU reference; returns the number of differing pixels.
uint64_t compare_ram_pane(const RgbaImage& img, const RamMap& map,
                          const std::vector<uint8_t>& ram) {
  uint64_t bad = 0;
  const uint64_t bpp = map.bytes_per_pixel();
  for (uint32_t y = 0; y < img.height; ++y) {
    for (uint32_t x = 0; x < img.width; ++x) {
      const uint64_t d = hilbert_xy_to_d({x, y}, map.bits());
      Rgb8 want{20, 20, 26};  // past the end of RAM
      if (d * bpp < ram.size()) {
        const uint64_t n = std::min<uint64_t>(bpp, ram.size() - d * bpp);
        want = pixel_colour(std::span<const uint8_t>(ram.data() + d * bpp, n));
      }
      if (!(at(img, x, y) == want) && bad++ < 5) {
        ADD_FAILURE() << "pixel (" << x << "," << y << ") d " << d << ": got "
                      << int(at(img, x, y).r) << "," << int(at(img, x, y).g) << ","
                      << int(at(img, x, y).b) << " want " << int(want.r) << "," << int(want.g)
                      << "," << int(want.b);
      }
    }
  }
  return bad;
}

TEST(Renderer, RamPaneMatchesCpuReferenceAtSeveralDensities) {
  for (uint64_t bpp : {4u, 16u, 256u, 8192u}) {
    SCOPED_TRACE("bytes_per_pixel " + std::to_string(bpp));
    const uint64_t bytes = (3u << 20) + 4096 * 5;  // not a power of two: a partly empty pane
    auto ram = make_ram(bytes, static_cast<uint32_t>(bpp));
    auto o = options(bpp);
    o.force_staging = bpp == 16;  // the GPU upload path, on this device too
    auto r = Renderer::create(context(), o, shared::RamLayout::identity(bytes));
    ASSERT_TRUE(r) << r.error().to_string();
    ASSERT_TRUE((*r)->update_ram(ram, {}, true, 1));
    auto st = (*r)->render(1);
    ASSERT_TRUE(st) << st.error().to_string();
    EXPECT_GE(st->upload_bytes, bytes) << "the first frame uploads all of RAM";
    auto img = (*r)->read_pane(Pane::kRam);
    ASSERT_TRUE(img);
    EXPECT_EQ(img->width, (*r)->ram_map().pane_width());
    EXPECT_EQ(compare_ram_pane(*img, (*r)->ram_map(), ram), 0u);
  }
}

TEST(Renderer, PcLayoutWithAHoleMatchesLocate) {
  // RAM below 640 KiB, a hole, then the rest: the file is contiguous, the gpas are not.
  const uint64_t file = 8u << 20;
  auto layout = shared::RamLayout::from_regions(
      {{Gpa(0), 0xa0000, 0}, {Gpa(0x100000), file - 0x100000, 0x100000}}, file);
  ASSERT_TRUE(layout) << layout.error().to_string();
  std::vector<uint8_t> ram(file, 0);
  std::memset(ram.data() + 0x200000, 0xff, 0x10000);                        // 0xff block
  for (uint64_t i = 0; i < 0x10000; ++i) ram[0x300000 + i] = 'A' + i % 26;  // text
  auto r = Renderer::create(context(), options(64), *layout);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE((*r)->update_ram(ram, {}, true, 1));
  ASSERT_TRUE((*r)->render(1));
  auto img = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(img);
  const RamMap& map = (*r)->ram_map();
  for (uint64_t off = 0; off < 0x10000; off += 64) {
    auto ff = map.locate(Gpa(0x200000 + off));
    auto text = map.locate(Gpa(0x300000 + off));
    auto zero = map.locate(Gpa(0x400000 + off));
    ASSERT_TRUE(ff && text && zero);
    EXPECT_EQ(at(*img, ff->x, ff->y), class_colour(ByteClass::kFF));
    EXPECT_EQ(at(*img, text->x, text->y), class_colour(ByteClass::kPrintable));
    EXPECT_EQ(at(*img, zero->x, zero->y), class_colour(ByteClass::kZero));
    auto back = map.gpa_at(ff->x, ff->y);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->value, 0x200000 + off);
  }
}

class RendererUpload : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(DirectAndStaged, RendererUpload, ::testing::Bool());

TEST_P(RendererUpload, OnlyChangedPagesAreUploadedAndRedrawn) {
  const uint64_t bytes = (4u << 20) + 4096 * 3 + 1000;  // a partial last page
  auto ram = make_ram(bytes, 7);
  auto o = options(16);
  o.force_staging = GetParam();
  auto r = Renderer::create(context(), o, shared::RamLayout::identity(bytes));
  ASSERT_TRUE(r);
  ASSERT_TRUE((*r)->update_ram(ram, {}, true, 1));
  ASSERT_TRUE((*r)->render(1));
  std::mt19937 rng(3);
  std::vector<uint32_t> changed;
  for (int i = 0; i < 37; ++i) {
    const uint32_t page = rng() % (bytes / 4096);
    changed.push_back(page);
    for (int k = 0; k < 4096; ++k) ram[uint64_t{page} * 4096 + k] = static_cast<uint8_t>(rng());
  }
  changed.push_back(changed[0]);  // a duplicate
  changed.push_back(1u << 30);    // out of range: ignored and counted
  auto ignored = (*r)->update_ram(ram, changed, false, 2);
  ASSERT_TRUE(ignored);
  EXPECT_EQ(*ignored, 1u);
  auto st = (*r)->render(2);
  ASSERT_TRUE(st);
  std::sort(changed.begin(), changed.end());
  const auto unique_pages =
      static_cast<uint64_t>(std::unique(changed.begin(), changed.end() - 1) - changed.begin());
  EXPECT_EQ(st->upload_bytes, unique_pages * 4096);
  EXPECT_EQ(st->cells_updated, unique_pages * 4096 / 16);
  auto img = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(img);
  EXPECT_EQ(compare_ram_pane(*img, (*r)->ram_map(), ram), 0u);
  // A frame with nothing new uploads nothing.
  auto idle = (*r)->render(3);
  ASSERT_TRUE(idle);
  EXPECT_EQ(idle->upload_bytes, 0u);
  EXPECT_EQ(idle->cells_updated, 0u);
  // The partial last page, two updates of one page before one frame (the later bytes win),
  // then more pages in a frame than the staged path packs (it copies all of RAM instead).
  const uint32_t last = static_cast<uint32_t>(bytes / 4096);
  for (uint64_t i = uint64_t{last} * 4096; i < bytes; ++i) ram[i] = 0xff;
  ram[4096 * 9] = 1;
  const uint32_t first_update[] = {last, 9};
  ASSERT_TRUE((*r)->update_ram(ram, first_update, false, 4));
  ram[4096 * 9] = 0x41;
  const uint32_t second_update[] = {9};
  ASSERT_TRUE((*r)->update_ram(ram, second_update, false, 4));
  ASSERT_TRUE((*r)->render(4));
  auto img2 = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(img2);
  EXPECT_EQ(compare_ram_pane(*img2, (*r)->ram_map(), ram), 0u);
  std::vector<uint32_t> many;
  for (uint32_t p = 0; p < bytes / 4096; p += 1) {
    ram[uint64_t{p} * 4096 + 7] ^= 0x5a;
    many.push_back(p);
  }
  ASSERT_GT(many.size(), 1000u);
  ASSERT_TRUE((*r)->update_ram(ram, many, false, 5));
  ASSERT_TRUE((*r)->render(5));
  auto img3 = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(img3);
  EXPECT_EQ(compare_ram_pane(*img3, (*r)->ram_map(), ram), 0u);
}

TEST(Renderer, StagedUploadPastItsSlotsCopiesAllOfRam) {
  const uint64_t bytes = 32u << 20;  // 8192 pages: more than one frame's 4096 slots
  auto ram = make_ram(bytes, 9);
  auto o = options(64);
  o.force_staging = true;
  auto r = Renderer::create(context(), o, shared::RamLayout::identity(bytes));
  ASSERT_TRUE(r);
  ASSERT_TRUE((*r)->update_ram(ram, {}, true, 1));
  ASSERT_TRUE((*r)->render(1));
  std::vector<uint32_t> all;
  for (uint32_t p = 0; p < bytes / 4096; ++p) {
    ram[uint64_t{p} * 4096 + 100] = static_cast<uint8_t>(p);
    all.push_back(p);
  }
  ASSERT_TRUE((*r)->update_ram(ram, all, false, 2));
  auto st = (*r)->render(2);
  ASSERT_TRUE(st);
  EXPECT_GE(st->upload_bytes, bytes);
  auto img = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(img);
  EXPECT_EQ(compare_ram_pane(*img, (*r)->ram_map(), ram), 0u);
}

TEST(Renderer, DirtyPagesGlowAndFade) {
  const uint64_t bytes = 1u << 20;
  std::vector<uint8_t> ram(bytes, 0);
  auto o = options(16);
  o.glow_ms = 1000;
  auto r = Renderer::create(context(), o, shared::RamLayout::identity(bytes));
  ASSERT_TRUE(r);
  ASSERT_TRUE((*r)->update_ram(ram, {}, true, 10));
  ASSERT_TRUE((*r)->render(10));
  const uint32_t page = 100;
  ram[page * 4096] = 1;
  const uint32_t pages[] = {page};
  ASSERT_TRUE((*r)->update_ram(ram, pages, false, 100));
  auto cell = (*r)->ram_map().locate(Gpa(uint64_t{page} * 4096 + 1024));
  auto other = (*r)->ram_map().locate(Gpa(uint64_t{page + 1} * 4096 + 1024));
  ASSERT_TRUE(cell && other);
  ASSERT_TRUE((*r)->render(100));
  auto hot = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(hot);
  EXPECT_GT(at(*hot, cell->x, cell->y).r, 150) << "a just-written page glows";
  EXPECT_EQ(at(*hot, other->x, other->y), class_colour(ByteClass::kZero));
  ASSERT_TRUE((*r)->render(600));
  auto warm = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(warm);
  EXPECT_LT(at(*warm, cell->x, cell->y).r, at(*hot, cell->x, cell->y).r) << "fading";
  ASSERT_TRUE((*r)->render(1200));
  auto cold = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(cold);
  EXPECT_EQ(at(*cold, cell->x, cell->y), class_colour(ByteClass::kZero)) << "glow over";
}

TEST(Renderer, ScreenPaneEqualsTheFrameAndFollowsResolutionChanges) {
  auto r = Renderer::create(context(), options(64), shared::RamLayout::identity(1u << 20));
  ASSERT_TRUE(r);
  EXPECT_FALSE((*r)->read_pane(Pane::kScreen)) << "no frame yet";
  std::mt19937 rng(11);
  for (auto [w, h] : {std::pair{720u, 400u}, std::pair{1024u, 768u}, std::pair{33u, 17u}}) {
    const uint32_t stride = w * 4 + 64;  // padded rows
    std::vector<uint8_t> frame(uint64_t{stride} * h);
    for (auto& b : frame) b = static_cast<uint8_t>(rng());
    ASSERT_TRUE((*r)->update_screen(frame.data(), frame.size(), w, h, stride));
    ASSERT_TRUE((*r)->render(1));
    auto img = (*r)->read_pane(Pane::kScreen);
    ASSERT_TRUE(img);
    ASSERT_EQ(img->width, w);
    ASSERT_EQ(img->height, h);
    uint64_t bad = 0;
    for (uint32_t y = 0; y < h; ++y) {
      for (uint32_t x = 0; x < w; ++x) {
        const uint8_t* src = &frame[uint64_t{y} * stride + x * 4];  // B G R X
        Rgb8 want{src[2], src[1], src[0]};
        bad += !(at(*img, x, y) == want);
      }
    }
    EXPECT_EQ(bad, 0u) << w << "x" << h;
  }
  // The canvas shows the screen on the left: its centre maps back to the guest's centre.
  int32_t gx = -1, gy = -1;
  EXPECT_FALSE((*r)->canvas_to_guest(630, 200, &gx, &gy)) << "the RAM half";
  const std::vector<uint8_t> bad_frame(16);
  EXPECT_FALSE((*r)->update_screen(bad_frame.data(), bad_frame.size(), 100, 100, 400));
  EXPECT_FALSE((*r)->update_screen(bad_frame.data(), bad_frame.size(), 2, 2, 4));
  EXPECT_FALSE((*r)->update_screen(nullptr, 0, 0, 0, 0));
}

TEST(Renderer, CanvasComposesScreenAndRam) {
  auto r = Renderer::create(context(), options(64), shared::RamLayout::identity(1u << 20));
  ASSERT_TRUE(r);
  std::vector<uint8_t> ram(1u << 20, 0xff);
  ASSERT_TRUE((*r)->update_ram(ram, {}, true, 1));
  std::vector<uint8_t> frame(200 * 100 * 4);
  for (size_t i = 0; i < frame.size(); i += 4) {
    frame[i] = 0x10;      // B
    frame[i + 1] = 0x80;  // G
    frame[i + 2] = 0xf0;  // R
  }
  ASSERT_TRUE((*r)->update_screen(frame.data(), frame.size(), 200, 100, 800));
  ASSERT_TRUE((*r)->render(1));
  auto canvas = (*r)->read_pane(Pane::kAll);
  ASSERT_TRUE(canvas);
  EXPECT_EQ(canvas->width, 640u);
  // Find the guest's pixel (100, 50) in the canvas through canvas_to_guest.
  bool found = false;
  for (uint32_t y = 30; y < 400 && !found; ++y) {
    for (uint32_t x = 0; x < 320 && !found; ++x) {
      int32_t gx, gy;
      if ((*r)->canvas_to_guest(x + 0.5, y + 0.5, &gx, &gy) && gx == 100 && gy == 50) {
        EXPECT_EQ(at(*canvas, x, y), (Rgb8{0xf0, 0x80, 0x10}));
        found = true;
      }
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(at(*canvas, 480, 200), class_colour(ByteClass::kFF)) << "RAM half, all 0xff";
}

TEST(Renderer, HighlightOutlinesTheProcessRuns) {
  const uint64_t bytes = 2u << 20;
  std::vector<uint8_t> ram(bytes, 0);
  auto r = Renderer::create(context(), options(16), shared::RamLayout::identity(bytes));
  ASSERT_TRUE(r);
  ASSERT_TRUE((*r)->update_ram(ram, {}, true, 1));
  Highlight h;
  h.label = "pid 1 init";
  h.runs.push_back({Gpa(0x40000), 0x8000});
  ASSERT_TRUE((*r)->set_highlight(h));
  ASSERT_TRUE((*r)->render(1));
  auto img = (*r)->read_pane(Pane::kRam);
  ASSERT_TRUE(img);
  const RamMap& map = (*r)->ram_map();
  uint64_t marked = 0, unmarked_outside = 0;
  for (uint64_t off = 0; off < bytes; off += 16) {
    auto c = map.locate(Gpa(off));
    ASSERT_TRUE(c);
    const bool in = off >= 0x40000 && off < 0x48000;
    const bool black = at(*img, c->x, c->y) == Rgb8{0, 0, 0};
    if (in) marked += !black;
    if (!in) unmarked_outside += black;
  }
  EXPECT_EQ(marked, 0x8000u / 16) << "every pixel of the run is tinted or outlined";
  EXPECT_EQ(unmarked_outside, (bytes - 0x8000) / 16) << "nothing else";
  // Hostile runs: a huge one is bounded, a hole is skipped.
  h.runs = {{Gpa(~0ull - 5), ~0ull}, {Gpa(bytes * 4), 1u << 30}};
  EXPECT_TRUE((*r)->set_highlight(h));
}

TEST(Renderer, VolumeView) {
  const uint64_t bytes = 1u << 20;
  auto o = options(64);
  o.show_3d = true;
  auto r = Renderer::create(context(), o, shared::RamLayout::identity(bytes));
  ASSERT_TRUE(r);
  std::vector<uint8_t> zero(bytes, 0);
  ASSERT_TRUE((*r)->update_ram(zero, {}, true, 1));
  ASSERT_TRUE((*r)->render(1));
  auto empty = (*r)->read_pane(Pane::kRam3d);
  ASSERT_TRUE(empty);
  auto full = make_ram(bytes, 5);
  ASSERT_TRUE((*r)->update_ram(full, {}, true, 2));
  ASSERT_TRUE((*r)->render(2));
  auto dense = (*r)->read_pane(Pane::kRam3d);
  ASSERT_TRUE(dense);
  // Zero RAM is empty space (the background); non-zero RAM draws something in the middle.
  const uint32_t cx = dense->width / 2, cy = dense->height / 2;
  EXPECT_NE(at(*dense, cx, cy), at(*empty, cx, cy));
  EXPECT_EQ(at(*dense, 0, 0), at(*empty, 0, 0)) << "a corner ray misses the cube";
  Camera c = (*r)->camera();
  c.yaw_rad += 1.0f;
  (*r)->set_camera(c);
  ASSERT_TRUE((*r)->render(3));
  auto turned = (*r)->read_pane(Pane::kRam3d);
  ASSERT_TRUE(turned);
  EXPECT_NE(turned->rgba, dense->rgba) << "the camera turned";
}

TEST(Renderer, BadOptionsAreClearErrors) {
  auto layout = shared::RamLayout::identity(1u << 20);
  auto o = options(3);
  auto r = Renderer::create(context(), o, layout);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("bytes_per_pixel 3"), std::string::npos);
  o = options(64);
  o.canvas_width = 10;
  EXPECT_FALSE(Renderer::create(context(), o, layout));
  auto ok = Renderer::create(context(), options(64), layout);
  ASSERT_TRUE(ok);
  std::vector<uint8_t> small(100);
  auto e = (*ok)->update_ram(small, {}, true, 1);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("100 bytes"), std::string::npos);
  EXPECT_FALSE(parse_pane("left"));
  EXPECT_EQ(default_bytes_per_pixel(256u << 20), 256u);
  EXPECT_EQ(default_bytes_per_pixel(64u << 20), 64u);
}

TEST(VkContext, UnknownDeviceIsAClearError) {
  VkContextOptions o;
  o.device_filter = "no-such-gpu";
  auto c = VkContext::create(o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kNotFound);
  EXPECT_NE(c.error().message.find("no-such-gpu"), std::string::npos);
  EXPECT_NE(c.error().message.find("seen:"), std::string::npos);
}

}  // namespace
}  // namespace glassbox::compositor
