// The compositor window: the GLFW -> QEMU key map and input routing (no display needed), and,
// under a display (xvfb-run gives one; lavapipe presents to X11), a real window presenting the
// renderer's canvas through a swapchain that survives resizes, with the presented pixels read
// back and compared with the canvas.
#include "compositor/window.hpp"

#include <GLFW/glfw3.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <utility>

namespace glassbox::compositor {
namespace {

// ---- key map --------------------------------------------------------------------------------

TEST(WindowKeyMap, LettersAndDigits) {
  for (int k = GLFW_KEY_A; k <= GLFW_KEY_Z; ++k) {
    EXPECT_EQ(glfw_key_to_qcode(k), std::string(1, static_cast<char>('a' + (k - GLFW_KEY_A))));
  }
  for (int k = GLFW_KEY_0; k <= GLFW_KEY_9; ++k) {
    EXPECT_EQ(glfw_key_to_qcode(k), std::string(1, static_cast<char>('0' + (k - GLFW_KEY_0))));
  }
}

TEST(WindowKeyMap, FunctionKeys) {
  for (int i = 1; i <= 12; ++i) {
    EXPECT_EQ(glfw_key_to_qcode(GLFW_KEY_F1 + i - 1), "f" + std::to_string(i));
  }
  EXPECT_EQ(glfw_key_to_qcode(GLFW_KEY_F13), std::nullopt) << "QKeyCode stops at f12";
  EXPECT_EQ(glfw_key_to_qcode(GLFW_KEY_F25), std::nullopt);
}

TEST(WindowKeyMap, ModifiersLocksAndSystemKeys) {
  const std::pair<int, const char*> want[] = {
      {GLFW_KEY_LEFT_SHIFT, "shift"},
      {GLFW_KEY_RIGHT_SHIFT, "shift_r"},
      {GLFW_KEY_LEFT_CONTROL, "ctrl"},
      {GLFW_KEY_RIGHT_CONTROL, "ctrl_r"},
      {GLFW_KEY_LEFT_ALT, "alt"},
      {GLFW_KEY_RIGHT_ALT, "alt_r"},
      {GLFW_KEY_LEFT_SUPER, "meta_l"},
      {GLFW_KEY_RIGHT_SUPER, "meta_r"},
      {GLFW_KEY_CAPS_LOCK, "caps_lock"},
      {GLFW_KEY_NUM_LOCK, "num_lock"},
      {GLFW_KEY_SCROLL_LOCK, "scroll_lock"},
      {GLFW_KEY_PRINT_SCREEN, "print"},
      {GLFW_KEY_PAUSE, "pause"},
      {GLFW_KEY_MENU, "menu"},
      {GLFW_KEY_ENTER, "ret"},
      {GLFW_KEY_ESCAPE, "esc"},
      {GLFW_KEY_BACKSPACE, "backspace"},
      {GLFW_KEY_TAB, "tab"},
      {GLFW_KEY_SPACE, "spc"},
      {GLFW_KEY_UP, "up"},
      {GLFW_KEY_DOWN, "down"},
      {GLFW_KEY_LEFT, "left"},
      {GLFW_KEY_RIGHT, "right"},
      {GLFW_KEY_INSERT, "insert"},
      {GLFW_KEY_DELETE, "delete"},
      {GLFW_KEY_HOME, "home"},
      {GLFW_KEY_END, "end"},
      {GLFW_KEY_PAGE_UP, "pgup"},
      {GLFW_KEY_PAGE_DOWN, "pgdn"},
  };
  for (auto [key, q] : want) EXPECT_EQ(glfw_key_to_qcode(key), std::string(q)) << key;
}

TEST(WindowKeyMap, Punctuation) {
  const std::pair<int, const char*> want[] = {
      {GLFW_KEY_MINUS, "minus"},
      {GLFW_KEY_EQUAL, "equal"},
      {GLFW_KEY_LEFT_BRACKET, "bracket_left"},
      {GLFW_KEY_RIGHT_BRACKET, "bracket_right"},
      {GLFW_KEY_BACKSLASH, "backslash"},
      {GLFW_KEY_SEMICOLON, "semicolon"},
      {GLFW_KEY_APOSTROPHE, "apostrophe"},
      {GLFW_KEY_GRAVE_ACCENT, "grave_accent"},
      {GLFW_KEY_COMMA, "comma"},
      {GLFW_KEY_PERIOD, "dot"},
      {GLFW_KEY_SLASH, "slash"},
  };
  for (auto [key, q] : want) EXPECT_EQ(glfw_key_to_qcode(key), std::string(q)) << key;
}

TEST(WindowKeyMap, Keypad) {
  for (int i = 0; i <= 9; ++i) {
    EXPECT_EQ(glfw_key_to_qcode(GLFW_KEY_KP_0 + i), "kp_" + std::to_string(i));
  }
  const std::pair<int, const char*> want[] = {
      {GLFW_KEY_KP_DECIMAL, "kp_decimal"},   {GLFW_KEY_KP_DIVIDE, "kp_divide"},
      {GLFW_KEY_KP_MULTIPLY, "kp_multiply"}, {GLFW_KEY_KP_SUBTRACT, "kp_subtract"},
      {GLFW_KEY_KP_ADD, "kp_add"},           {GLFW_KEY_KP_ENTER, "kp_enter"},
      {GLFW_KEY_KP_EQUAL, "kp_equals"},
  };
  for (auto [key, q] : want) EXPECT_EQ(glfw_key_to_qcode(key), std::string(q)) << key;
}

TEST(WindowKeyMap, UnknownKeysHaveNoCode) {
  for (int k : {GLFW_KEY_UNKNOWN, GLFW_KEY_WORLD_1, GLFW_KEY_WORLD_2, 0, 1, 5000}) {
    EXPECT_EQ(glfw_key_to_qcode(k), std::nullopt) << k;
  }
}

// ---- input routing --------------------------------------------------------------------------

struct Recorded {
  std::vector<std::pair<std::string, bool>> keys;
  std::vector<std::pair<int, int>> hotkeys;
  std::vector<std::pair<std::string, bool>> buttons;
  std::vector<std::pair<double, double>> moves;
  std::vector<std::pair<double, double>> scrolls;

  WindowCallbacks callbacks() {
    WindowCallbacks cb;
    cb.on_key = [this](const std::string& q, bool down) { keys.emplace_back(q, down); };
    cb.on_hotkey = [this](int k, int mods) { hotkeys.emplace_back(k, mods); };
    cb.on_mouse_button = [this](const std::string& b, bool d) { buttons.emplace_back(b, d); };
    cb.on_mouse_move = [this](double x, double y) { moves.emplace_back(x, y); };
    cb.on_scroll = [this](double dx, double dy) { scrolls.emplace_back(dx, dy); };
    return cb;
  }
};

using KeyEvents = std::vector<std::pair<std::string, bool>>;

TEST(WindowInput, KeysReachTheGuestWithRepeatsAndReleases) {
  Recorded rec;
  InputRouter r(rec.callbacks());
  r.key(GLFW_KEY_LEFT_SHIFT, GLFW_PRESS, 0);
  r.key(GLFW_KEY_A, GLFW_PRESS, GLFW_MOD_SHIFT);
  r.key(GLFW_KEY_A, GLFW_REPEAT, GLFW_MOD_SHIFT);
  r.key(GLFW_KEY_A, GLFW_RELEASE, GLFW_MOD_SHIFT);
  r.key(GLFW_KEY_LEFT_SHIFT, GLFW_RELEASE, GLFW_MOD_SHIFT);
  r.key(GLFW_KEY_F25, GLFW_PRESS, 0);  // no qcode: dropped
  r.key(GLFW_KEY_F25, GLFW_RELEASE, 0);
  EXPECT_EQ(rec.keys,
            (KeyEvents{{"shift", true}, {"a", true}, {"a", true}, {"a", false}, {"shift", false}}));
  EXPECT_TRUE(r.held_keys().empty());
  EXPECT_TRUE(rec.hotkeys.empty());
}

TEST(WindowInput, CtrlAltChordsAreHotkeysNotGuestKeys) {
  Recorded rec;
  InputRouter r(rec.callbacks());
  const int chord = GLFW_MOD_CONTROL | GLFW_MOD_ALT;
  r.key(GLFW_KEY_LEFT_CONTROL, GLFW_PRESS, 0);
  r.key(GLFW_KEY_LEFT_ALT, GLFW_PRESS, GLFW_MOD_CONTROL);
  r.key(GLFW_KEY_3, GLFW_PRESS, chord);
  r.key(GLFW_KEY_3, GLFW_REPEAT, chord);
  r.key(GLFW_KEY_LEFT_ALT, GLFW_RELEASE, chord);
  r.key(GLFW_KEY_3, GLFW_REPEAT, GLFW_MOD_CONTROL);  // still held after Alt went up
  r.key(GLFW_KEY_3, GLFW_RELEASE, GLFW_MOD_CONTROL);
  r.key(GLFW_KEY_LEFT_CONTROL, GLFW_RELEASE, GLFW_MOD_CONTROL);
  ASSERT_EQ(rec.hotkeys.size(), 1u) << "one hotkey, no repeats";
  EXPECT_EQ(rec.hotkeys[0], (std::pair{GLFW_KEY_3, chord}));
  // The modifiers themselves reach the guest (it sees Ctrl+Alt pressed and released); the
  // hotkey's own press, repeats and release do not.
  EXPECT_EQ(rec.keys, (KeyEvents{{"ctrl", true}, {"alt", true}, {"alt", false}, {"ctrl", false}}));
  EXPECT_TRUE(r.held_keys().empty());

  // A key already held by the guest when the chord completes stays the guest's.
  rec.keys.clear();
  r.key(GLFW_KEY_W, GLFW_PRESS, 0);
  r.key(GLFW_KEY_W, GLFW_REPEAT, chord);
  r.key(GLFW_KEY_W, GLFW_RELEASE, chord);
  EXPECT_EQ(rec.keys, (KeyEvents{{"w", true}, {"w", true}, {"w", false}}));
  EXPECT_EQ(rec.hotkeys.size(), 1u);
}

TEST(WindowInput, FocusLossReleasesHeldKeysAndButtons) {
  Recorded rec;
  InputRouter r(rec.callbacks());
  r.key(GLFW_KEY_LEFT_CONTROL, GLFW_PRESS, 0);
  r.key(GLFW_KEY_C, GLFW_PRESS, GLFW_MOD_CONTROL);
  r.mouse_button(GLFW_MOUSE_BUTTON_RIGHT, GLFW_PRESS);
  rec.keys.clear();
  rec.buttons.clear();
  r.focus_lost();
  std::sort(rec.keys.begin(), rec.keys.end());
  EXPECT_EQ(rec.keys, (KeyEvents{{"c", false}, {"ctrl", false}}));
  EXPECT_EQ(rec.buttons, (KeyEvents{{"right", false}}));
  EXPECT_TRUE(r.held_keys().empty());
  // Releases arriving after the focus loss are not sent twice.
  r.key(GLFW_KEY_C, GLFW_RELEASE, 0);
  r.mouse_button(GLFW_MOUSE_BUTTON_RIGHT, GLFW_RELEASE);
  EXPECT_EQ(rec.keys.size(), 2u);
  EXPECT_EQ(rec.buttons.size(), 1u);
}

TEST(WindowInput, MouseIsReportedInCanvasPixels) {
  Recorded rec;
  InputRouter r(rec.callbacks());
  r.cursor(10, 20, 800, 500);  // no canvas yet: window units
  r.set_canvas_size(1600, 900);
  r.cursor(400, 250, 800, 500);  // centre of the window -> centre of the canvas
  r.cursor(0, 0, 800, 500);
  r.cursor(5, 5, 0, 0);  // minimized: dropped
  EXPECT_EQ(rec.moves, (std::vector<std::pair<double, double>>{{10, 20}, {800, 450}, {0, 0}}));

  r.mouse_button(GLFW_MOUSE_BUTTON_LEFT, GLFW_PRESS);
  r.mouse_button(GLFW_MOUSE_BUTTON_MIDDLE, GLFW_PRESS);
  r.mouse_button(GLFW_MOUSE_BUTTON_MIDDLE, GLFW_RELEASE);
  r.mouse_button(GLFW_MOUSE_BUTTON_LEFT, GLFW_RELEASE);
  r.mouse_button(GLFW_MOUSE_BUTTON_5, GLFW_PRESS);  // not a QEMU button we send: dropped
  EXPECT_EQ(rec.buttons,
            (KeyEvents{{"left", true}, {"middle", true}, {"middle", false}, {"left", false}}));
  r.scroll(0, -1);
  EXPECT_EQ(rec.scrolls, (std::vector<std::pair<double, double>>{{0, -1}}));
}

// ---- a real window --------------------------------------------------------------------------

// A context that can present, made once; null (with the reason) when there is no display.
struct Presentable {
  std::unique_ptr<VkContext> ctx;
  std::string why_not;
};

Presentable& presentable() {
  static Presentable p = [] {
    Presentable out;
    auto exts = Window::required_instance_extensions();  // says why when there is no display
    if (!Window::display_available() || !exts) {
      out.why_not = exts ? "no display" : exts.error().to_string();
      return out;
    }
    VkContextOptions o;
    o.instance_extensions = *exts;
    o.want_swapchain = true;
    auto c = VkContext::create(o);
    if (!c) {
      out.why_not = c.error().to_string();
      return out;
    }
    out.ctx = std::move(*c);
    return out;
  }();
  return p;
}

#define REQUIRE_DISPLAY()                                                        \
  do {                                                                           \
    if (!presentable().ctx) GTEST_SKIP() << "window: " << presentable().why_not; \
  } while (0)

RendererOptions canvas_options() {
  RendererOptions o;
  o.canvas_width = 640;
  o.canvas_height = 400;
  o.bytes_per_pixel = 64;
  o.volume_bits = 5;
  o.ram3d_width = o.ram3d_height = 128;
  o.glow_ms = 0;
  o.crt = false;
  return o;
}

// Pumps events until the framebuffer is w x h (X11 applies a resize asynchronously).
bool wait_for_framebuffer(Window& win, int w, int h) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    win.poll_events();
    int fw = 0, fh = 0;
    glfwGetFramebufferSize(win.glfw_window(), &fw, &fh);
    if (fw == w && fh == h) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

const uint8_t* px(const RgbaImage& img, uint32_t x, uint32_t y) {
  return &img.rgba[(uint64_t{y} * img.width + x) * 4];
}

// Pixels (RGB) that differ between two images of the same size.
uint64_t count_rgb_differences(const RgbaImage& a, const RgbaImage& b) {
  uint64_t bad = 0;
  for (uint32_t y = 0; y < a.height; ++y) {
    for (uint32_t x = 0; x < a.width; ++x) {
      const uint8_t *p = px(a, x, y), *q = px(b, x, y);
      if (p[0] != q[0] || p[1] != q[1] || p[2] != q[2]) {
        if (bad++ < 5) {
          ADD_FAILURE() << "(" << x << "," << y << "): presented " << int(p[0]) << "," << int(p[1])
                        << "," << int(p[2]) << " canvas " << int(q[0]) << "," << int(q[1]) << ","
                        << int(q[2]);
        }
      }
    }
  }
  return bad;
}

// A scaled frame against the canvas: where the canvas is flat around the source pixel, the
// presented pixel must have that colour (±1 for filtering). Returns mismatches; `checked`
// counts the pixels compared.
uint64_t count_scaled_differences(const RgbaImage& shown, const RgbaImage& canvas,
                                  uint64_t* checked) {
  uint64_t bad = 0;
  *checked = 0;
  for (uint32_t y = 0; y < shown.height; ++y) {
    for (uint32_t x = 0; x < shown.width; ++x) {
      const double sx = (x + 0.5) * canvas.width / shown.width;
      const double sy = (y + 0.5) * canvas.height / shown.height;
      const auto ix = static_cast<uint32_t>(sx), iy = static_cast<uint32_t>(sy);
      if (ix < 2 || iy < 2 || ix + 2 >= canvas.width || iy + 2 >= canvas.height) continue;
      const uint8_t* c = px(canvas, ix, iy);
      bool flat = true;
      for (int dy = -2; dy <= 2 && flat; ++dy) {
        for (int dx = -2; dx <= 2 && flat; ++dx) {
          const uint8_t* n = px(canvas, ix + dx, iy + dy);
          flat = n[0] == c[0] && n[1] == c[1] && n[2] == c[2];
        }
      }
      if (!flat) continue;
      ++*checked;
      const uint8_t* s = px(shown, x, y);
      for (int k = 0; k < 3; ++k) {
        if (std::abs(int(s[k]) - int(c[k])) > 1) {
          if (bad++ < 5) {
            ADD_FAILURE() << "scaled (" << x << "," << y << ") channel " << k << ": " << int(s[k])
                          << " vs canvas (" << ix << "," << iy << ") " << int(c[k]);
          }
          break;
        }
      }
    }
  }
  return bad;
}

TEST(Window, PresentsTheCanvasAndSurvivesResizes) {
  REQUIRE_DISPLAY();
  VkContext& ctx = *presentable().ctx;
  const uint64_t ram_bytes = 1u << 20;
  auto r = Renderer::create(ctx, canvas_options(), shared::RamLayout::identity(ram_bytes));
  ASSERT_TRUE(r) << r.error().to_string();
  Renderer& ren = **r;
  std::mt19937 rng(5);
  std::vector<uint8_t> ram(ram_bytes);
  for (size_t i = 0; i < ram.size(); i += 4096) {
    const uint8_t v = static_cast<uint8_t>(rng() % 3 == 0 ? 0 : rng());
    std::fill(ram.begin() + i, ram.begin() + i + 4096, v);
  }
  ASSERT_TRUE(ren.update_ram(ram, {}, true, 1));
  std::vector<uint8_t> frame(320 * 200 * 4);
  for (size_t i = 0; i < frame.size(); i += 4) {
    const size_t p = i / 4;
    frame[i] = static_cast<uint8_t>(p % 320);      // B
    frame[i + 1] = static_cast<uint8_t>(p / 320);  // G
    frame[i + 2] = 0xc0;                           // R
  }
  ASSERT_TRUE(ren.update_screen(frame.data(), frame.size(), 320, 200, 320 * 4));

  int keys = 0;
  WindowCallbacks cb;
  cb.on_key = [&](const std::string&, bool) { ++keys; };
  auto w = Window::create(ctx, 640, 400, "glassbox window_test", std::move(cb));
  ASSERT_TRUE(w) << w.error().to_string();
  Window& win = **w;
  win.set_capture(true);
  EXPECT_FALSE(win.should_close());
  ASSERT_TRUE(wait_for_framebuffer(win, 640, 400));
  const uint64_t gen0 = win.swapchain_generation();
  EXPECT_GE(gen0, 1u);

  bool captured_scaled = false;
  for (uint32_t i = 0; i < 30; ++i) {
    SCOPED_TRACE("frame " + std::to_string(i));
    if (i == 10) {
      glfwSetWindowSize(win.glfw_window(), 800, 500);
      ASSERT_TRUE(wait_for_framebuffer(win, 800, 500));
    }
    if (i == 20) {
      glfwSetWindowSize(win.glfw_window(), 640, 400);
      ASSERT_TRUE(wait_for_framebuffer(win, 640, 400));
    }
    ren.set_hud_text("frame " + std::to_string(i));
    ram[(i * 7919u) % ram.size()] ^= 0x5a;
    const uint32_t page = static_cast<uint32_t>(((i * 7919u) % ram.size()) / 4096);
    ASSERT_TRUE(ren.update_ram(ram, std::span<const uint32_t>(&page, 1), false, 2 + i));
    auto st = ren.render(2 + i);
    ASSERT_TRUE(st) << st.error().to_string();
    auto p = win.present(ren.canvas_image(), ren.canvas_width(), ren.canvas_height());
    ASSERT_TRUE(p) << p.error().to_string();
    win.poll_events();

    if (i == 15) {  // resized: the swapchain followed and the frame is the scaled canvas
      EXPECT_EQ(win.swapchain_extent().width, 800u);
      EXPECT_EQ(win.swapchain_extent().height, 500u);
      EXPECT_GT(win.swapchain_generation(), gen0);
      auto shown = win.read_last_presented();
      if (!shown && shown.error().code == Errc::kUnsupported) continue;
      ASSERT_TRUE(shown) << shown.error().to_string();
      EXPECT_EQ(shown->width, 800u);
      EXPECT_EQ(shown->height, 500u);
      auto canvas = ren.read_pane(Pane::kAll);
      ASSERT_TRUE(canvas);
      uint64_t checked = 0;
      EXPECT_EQ(count_scaled_differences(*shown, *canvas, &checked), 0u);
      EXPECT_GT(checked, 800u * 500u / 4) << "the canvas should be mostly flat regions";
      captured_scaled = true;
    }
  }
  EXPECT_EQ(win.frames_presented(), 30u);
  EXPECT_EQ(win.swapchain_extent().width, 640u);
  EXPECT_EQ(win.swapchain_extent().height, 400u);
  EXPECT_GE(win.swapchain_generation(), gen0 + 2) << "recreated for each resize";

  // Window size == canvas size: the presented pixels are the canvas's, after the swizzle.
  auto shown = win.read_last_presented();
  if (!shown && shown.error().code == Errc::kUnsupported) {
    GTEST_SKIP() << "the surface cannot be read back: " << shown.error().to_string();
  }
  ASSERT_TRUE(shown) << shown.error().to_string();
  auto canvas = ren.read_pane(Pane::kAll);
  ASSERT_TRUE(canvas) << canvas.error().to_string();
  ASSERT_EQ(shown->width, canvas->width);
  ASSERT_EQ(shown->height, canvas->height);
  EXPECT_EQ(count_rgb_differences(*shown, *canvas), 0u);
  EXPECT_TRUE(captured_scaled);
  EXPECT_EQ(keys, 0) << "nobody typed";

  // The canvas is still usable by the renderer after presenting (left in GENERAL).
  ASSERT_TRUE(ren.render(100));
  ASSERT_TRUE(ren.read_pane(Pane::kAll));

  win.request_close();
  EXPECT_TRUE(win.should_close());
}

TEST(Window, MinimizedWindowSkipsFrames) {
  REQUIRE_DISPLAY();
  VkContext& ctx = *presentable().ctx;
  auto r = Renderer::create(ctx, canvas_options(), shared::RamLayout::identity(1u << 20));
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE((*r)->render(1));
  auto w = Window::create(ctx, 320, 240, "glassbox window_test (minimize)", {});
  ASSERT_TRUE(w) << w.error().to_string();
  Window& win = **w;
  ASSERT_TRUE(win.present((*r)->canvas_image(), 640, 400));
  glfwIconifyWindow(win.glfw_window());
  for (int i = 0; i < 20; ++i) win.poll_events();
  // Whether or not the X server reports a 0 x 0 framebuffer for an iconified window (Xvfb
  // without a window manager keeps its size), presenting must keep working.
  for (int i = 0; i < 3; ++i) {
    auto p = win.present((*r)->canvas_image(), 640, 400);
    ASSERT_TRUE(p) << p.error().to_string();
  }
  glfwRestoreWindow(win.glfw_window());
  win.poll_events();
  ASSERT_TRUE(win.present((*r)->canvas_image(), 640, 400));
  EXPECT_FALSE(win.present(VK_NULL_HANDLE, 640, 400)) << "null canvas";
  EXPECT_FALSE(win.present((*r)->canvas_image(), 0, 400)) << "empty canvas";
}

TEST(Window, ContextWithoutSurfaceSupportIsRefusedCleanly) {
  REQUIRE_DISPLAY();
  auto headless = VkContext::create({});  // no surface extensions, no swapchain
  ASSERT_TRUE(headless) << headless.error().to_string();
  auto w = Window::create(**headless, 320, 240, "glassbox window_test (refused)", {});
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kUnavailable) << w.error().to_string();
  EXPECT_NE(w.error().message.find("want_swapchain"), std::string::npos) << w.error().to_string();

  VkContextOptions o;  // a swapchain, but an instance without the surface extensions
  o.want_swapchain = true;
  auto no_surface = VkContext::create(o);
  ASSERT_TRUE(no_surface) << no_surface.error().to_string();
  auto w2 = Window::create(**no_surface, 320, 240, "glassbox window_test (refused)", {});
  ASSERT_FALSE(w2);
  EXPECT_EQ(w2.error().code, Errc::kUnavailable) << w2.error().to_string();
  EXPECT_NE(w2.error().message.find("required_instance_extensions"), std::string::npos)
      << w2.error().to_string();

  auto zero = Window::create(*presentable().ctx, 0, 240, "zero", {});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, Errc::kInvalidArgument);
  // Refusals leave GLFW usable.
  EXPECT_TRUE(Window::display_available());
}

}  // namespace
}  // namespace glassbox::compositor
