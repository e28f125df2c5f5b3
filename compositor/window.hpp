// The compositor's optional window: shows the renderer's canvas (a GLFW window with a Vulkan
// swapchain on the compositor's own VkContext) and turns keyboard and mouse into guest input.
//
// Presenting: present() blits the canvas (vkCmdBlitImage, linear filter when the format allows
// it) stretched over the whole swapchain image, so window pixel (x, y) shows canvas pixel
// (x * cw / window_width, y * ch / window_height); the mouse is reported in the same canvas
// pixels. The swapchain (FIFO, B8G8R8A8/R8G8B8A8_UNORM preferred) is recreated on resize,
// VK_ERROR_OUT_OF_DATE_KHR and VK_SUBOPTIMAL_KHR; a minimized (0 x 0) window skips frames.
// Frames are synchronous like Renderer::render(): present() submits and waits for its own
// fence (bounded, 10 s), so the renderer may overwrite the canvas as soon as it returns.
//
// Input: keys go to WindowCallbacks::on_key as QEMU qcodes (press, auto-repeat as further
// presses, release); keys pressed while Ctrl+Alt are held are compositor hotkeys
// (on_hotkey) and never reach the guest. Losing focus releases every key the guest holds.
//
// Setup: ask display_available(), then create the VkContext with
// required_instance_extensions() and want_swapchain = true, then Window::create().
//
// Thread-safety: GLFW allows windows and events on the main thread only, so every function
// here (display_available() and required_instance_extensions() included) must be called from
// the main thread, which must also own the VkContext while a Window exists. Callbacks run on
// that thread, inside poll_events().
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "compositor/renderer.hpp"
#include "compositor/vk_context.hpp"
#include "shared/result.hpp"

struct GLFWwindow;

namespace glassbox::compositor {

// What the window reports. Unset callbacks are skipped. All run on the main thread from
// poll_events().
struct WindowCallbacks {
  // QEMU QKeyCode name ("a", "ret", "shift", "kp_1", ...) and press (true) / release (false).
  // Auto-repeat arrives as further presses. Keys QEMU has no code for are dropped.
  std::function<void(const std::string& qcode, bool down)> on_key;
  // The pointer in canvas pixels (0..cw, 0..ch; fractional), from the canvas size of the last
  // present(); before the first present, in framebuffer pixels.
  std::function<void(double x, double y)> on_mouse_move;
  // "left" | "right" | "middle" (other buttons are dropped), press / release.
  std::function<void(const std::string& button, bool down)> on_mouse_button;
  // Wheel / touchpad offsets as GLFW reports them: dy > 0 is wheel up, dx > 0 is right.
  std::function<void(double dx, double dy)> on_scroll;
  // A key pressed while Ctrl+Alt are held (GLFW_KEY_* and GLFW_MOD_* bits), for compositor
  // shortcuts; neither its press nor its release is sent to on_key. Not called for repeats.
  std::function<void(int glfw_key, int mods)> on_hotkey;
};

// GLFW key code (GLFW_KEY_*) -> QEMU qcode (QAPI QKeyCode), nullopt for keys QEMU has no code
// for (and GLFW_KEY_UNKNOWN, F13-F25, the "world" keys). Covers letters, digits, F1-F12,
// punctuation, editing and navigation keys, modifiers (left and right), locks, print, pause,
// menu and the keypad. Pure; any thread.
std::optional<std::string> glfw_key_to_qcode(int glfw_key);

// The window's input logic without GLFW: turns GLFW-style key / button / cursor events into
// WindowCallbacks calls (hotkey filtering, held-key bookkeeping, canvas scaling). Window
// feeds its GLFW callbacks through one; exposed so the logic can be tested without a display.
// Thread-safety: one thread at a time.
class InputRouter {
 public:
  explicit InputRouter(WindowCallbacks cb) : cb_(std::move(cb)) {}

  // `action`: GLFW_PRESS / GLFW_RELEASE / GLFW_REPEAT; `mods`: GLFW_MOD_* bits.
  void key(int glfw_key, int action, int mods);
  // `button`: GLFW_MOUSE_BUTTON_*; `action`: GLFW_PRESS / GLFW_RELEASE.
  void mouse_button(int button, int action);
  // Cursor at (x, y) in window coordinates of a window_w x window_h window (screen units, as
  // glfwGetWindowSize); reported scaled to the canvas (see set_canvas_size). Dropped while the
  // window has no area.
  void cursor(double x, double y, int window_w, int window_h);
  void scroll(double dx, double dy);
  // Focus lost: releases (on_key up) every key the guest holds, and any held buttons.
  void focus_lost();
  // The canvas size the cursor is scaled to; 0 x 0 (the default): the window's own size.
  void set_canvas_size(uint32_t cw, uint32_t ch) {
    canvas_w_ = cw;
    canvas_h_ = ch;
  }
  // GLFW keys currently held by the guest (pressed and sent, not yet released).
  const std::set<int>& held_keys() const { return held_; }

 private:
  WindowCallbacks cb_;
  std::set<int> held_;     // keys whose press reached on_key
  std::set<int> hotkeys_;  // keys whose press was a hotkey: their release is swallowed too
  std::set<int> buttons_;  // GLFW buttons held
  uint32_t canvas_w_ = 0, canvas_h_ = 0;
};

class Window {
 public:
  // True when a display exists (DISPLAY or WAYLAND_DISPLAY set), glfwInit() succeeds and GLFW
  // finds a Vulkan loader (glfwVulkanSupported()). Leaves GLFW initialized when true.
  static bool display_available();

  // The instance extensions GLFW needs for a surface (e.g. VK_KHR_surface,
  // VK_KHR_xcb_surface): pass them as VkContextOptions::instance_extensions, with
  // want_swapchain = true. Errors: kUnavailable when display_available() is false (the message
  // says why: no DISPLAY, glfwInit's error, no Vulkan loader).
  static Result<std::vector<std::string>> required_instance_extensions();

  // Opens a resizable width x height window (screen units) titled `title`, with a swapchain
  // on `ctx` (which must outlive the Window). Errors: kUnavailable when there is no display,
  // the window or surface cannot be made (e.g. ctx lacks the surface instance extensions or
  // VK_KHR_swapchain), or ctx's queue family cannot present to it; kInvalidArgument for a 0
  // size; kInternal / kUnsupported from swapchain creation (no TRANSFER_DST usage, no
  // blittable format).
  static Result<std::unique_ptr<Window>> create(VkContext& ctx, uint32_t width, uint32_t height,
                                                const std::string& title, WindowCallbacks cb);
  ~Window();
  Window(const Window&) = delete;
  Window& operator=(const Window&) = delete;

  // Blits `canvas` (VK_IMAGE_LAYOUT_GENERAL, VK_FORMAT_R8G8B8A8_UNORM, cw x ch, usage
  // TRANSFER_SRC, e.g. Renderer::canvas_image()) scaled to the window and presents it; the
  // canvas stays in GENERAL. Recreates the swapchain on resize / OUT_OF_DATE / SUBOPTIMAL;
  // skips the frame (success) while the window is minimized. Waits for its fence (10 s max).
  // Errors: kInvalidArgument for a null canvas or 0 size; kTimeout (acquire or GPU past 10 s);
  // kUnavailable (surface lost); kInternal naming the failed Vulkan call.
  Result<void> present(VkImage canvas, uint32_t cw, uint32_t ch);

  // Processes pending window events (glfwPollEvents), running the callbacks.
  void poll_events();
  // True once the user asked to close the window (or request_close() was called).
  bool should_close() const;
  void request_close();

  // The swapchain's current size in pixels (0 x 0 while there is none, e.g. opened
  // minimized), how many times it was (re)created, and frames presented so far.
  VkExtent2D swapchain_extent() const;
  uint64_t swapchain_generation() const;
  uint64_t frames_presented() const;
  // The GLFW window, for callers that need more (size, position, tests resizing it).
  GLFWwindow* glfw_window() const;

  // Test / screenshot aid: while on, each present() also copies the presented swapchain image
  // (before handing it to the presentation engine) into host memory; read_last_presented()
  // returns it as RGBA (swizzled from BGRA when needed). Off by default (it costs a copy per
  // frame). Errors: kUnsupported when the surface does not allow TRANSFER_SRC swapchain
  // images; kUnavailable when nothing was captured yet.
  void set_capture(bool on);
  Result<RgbaImage> read_last_presented() const;

  struct Impl;

 private:
  explicit Window(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::compositor
