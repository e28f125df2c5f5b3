#include "compositor/window.hpp"

#define GLFW_INCLUDE_VULKAN
#include <GLFW/glfw3.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace glassbox::compositor {
namespace {

constexpr uint64_t kWaitNs = 10'000'000'000ull;  // bounded waits: 10 s

// ---- GLFW lifetime: initialized on first use, terminated when the last Window closes. ----

struct GlfwState {
  bool initialized = false;
  int windows = 0;
  std::string last_error;
};

GlfwState& glfw_state() {
  static GlfwState s;
  return s;
}

void on_glfw_error(int code, const char* description) {
  glfw_state().last_error =
      fmt::format("{} (GLFW error 0x{:x})", description ? description : "?", code);
  spdlog::debug("compositor window: glfw: {}", glfw_state().last_error);
}

Result<void> ensure_glfw() {
  GlfwState& s = glfw_state();
  if (!s.initialized) {
    const char* x11 = std::getenv("DISPLAY");
    const char* wl = std::getenv("WAYLAND_DISPLAY");
    if ((!x11 || !*x11) && (!wl || !*wl)) {
      return fail(Errc::kUnavailable,
                  "no display: neither DISPLAY nor WAYLAND_DISPLAY is set (run headless, or "
                  "under xvfb-run for a virtual one)");
    }
    glfwSetErrorCallback(on_glfw_error);
    s.last_error.clear();
    if (glfwInit() != GLFW_TRUE) {
      return fail(Errc::kUnavailable, "no display: glfwInit failed: " + s.last_error);
    }
    s.initialized = true;
  }
  if (glfwVulkanSupported() != GLFW_TRUE) {
    return fail(Errc::kUnavailable,
                "GLFW found no Vulkan loader (libvulkan.so.1) or surface support: " + s.last_error);
  }
  return {};
}

void release_glfw() {
  GlfwState& s = glfw_state();
  if (s.initialized && s.windows == 0) {
    glfwTerminate();
    s.initialized = false;
  }
}

std::string vk_fail(const char* what, VkResult r) {
  return fmt::format("{}: {}", what, vk_result_name(r));
}

bool is_bgra(VkFormat f) { return f == VK_FORMAT_B8G8R8A8_UNORM || f == VK_FORMAT_B8G8R8A8_SRGB; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Key map

std::optional<std::string> glfw_key_to_qcode(int k) {
  if (k >= GLFW_KEY_A && k <= GLFW_KEY_Z)
    return std::string(1, static_cast<char>('a' + k - GLFW_KEY_A));
  if (k >= GLFW_KEY_0 && k <= GLFW_KEY_9)
    return std::string(1, static_cast<char>('0' + k - GLFW_KEY_0));
  if (k >= GLFW_KEY_F1 && k <= GLFW_KEY_F12) return fmt::format("f{}", k - GLFW_KEY_F1 + 1);
  if (k >= GLFW_KEY_KP_0 && k <= GLFW_KEY_KP_9) return fmt::format("kp_{}", k - GLFW_KEY_KP_0);
  switch (k) {
    case GLFW_KEY_SPACE:
      return "spc";
    case GLFW_KEY_APOSTROPHE:
      return "apostrophe";
    case GLFW_KEY_COMMA:
      return "comma";
    case GLFW_KEY_MINUS:
      return "minus";
    case GLFW_KEY_PERIOD:
      return "dot";
    case GLFW_KEY_SLASH:
      return "slash";
    case GLFW_KEY_SEMICOLON:
      return "semicolon";
    case GLFW_KEY_EQUAL:
      return "equal";
    case GLFW_KEY_LEFT_BRACKET:
      return "bracket_left";
    case GLFW_KEY_BACKSLASH:
      return "backslash";
    case GLFW_KEY_RIGHT_BRACKET:
      return "bracket_right";
    case GLFW_KEY_GRAVE_ACCENT:
      return "grave_accent";
    case GLFW_KEY_ESCAPE:
      return "esc";
    case GLFW_KEY_ENTER:
      return "ret";
    case GLFW_KEY_TAB:
      return "tab";
    case GLFW_KEY_BACKSPACE:
      return "backspace";
    case GLFW_KEY_INSERT:
      return "insert";
    case GLFW_KEY_DELETE:
      return "delete";
    case GLFW_KEY_RIGHT:
      return "right";
    case GLFW_KEY_LEFT:
      return "left";
    case GLFW_KEY_DOWN:
      return "down";
    case GLFW_KEY_UP:
      return "up";
    case GLFW_KEY_PAGE_UP:
      return "pgup";
    case GLFW_KEY_PAGE_DOWN:
      return "pgdn";
    case GLFW_KEY_HOME:
      return "home";
    case GLFW_KEY_END:
      return "end";
    case GLFW_KEY_CAPS_LOCK:
      return "caps_lock";
    case GLFW_KEY_SCROLL_LOCK:
      return "scroll_lock";
    case GLFW_KEY_NUM_LOCK:
      return "num_lock";
    case GLFW_KEY_PRINT_SCREEN:
      return "print";
    case GLFW_KEY_PAUSE:
      return "pause";
    case GLFW_KEY_KP_DECIMAL:
      return "kp_decimal";
    case GLFW_KEY_KP_DIVIDE:
      return "kp_divide";
    case GLFW_KEY_KP_MULTIPLY:
      return "kp_multiply";
    case GLFW_KEY_KP_SUBTRACT:
      return "kp_subtract";
    case GLFW_KEY_KP_ADD:
      return "kp_add";
    case GLFW_KEY_KP_ENTER:
      return "kp_enter";
    case GLFW_KEY_KP_EQUAL:
      return "kp_equals";
    case GLFW_KEY_LEFT_SHIFT:
      return "shift";
    case GLFW_KEY_LEFT_CONTROL:
      return "ctrl";
    case GLFW_KEY_LEFT_ALT:
      return "alt";
    case GLFW_KEY_LEFT_SUPER:
      return "meta_l";
    case GLFW_KEY_RIGHT_SHIFT:
      return "shift_r";
    case GLFW_KEY_RIGHT_CONTROL:
      return "ctrl_r";
    case GLFW_KEY_RIGHT_ALT:
      return "alt_r";
    case GLFW_KEY_RIGHT_SUPER:
      return "meta_r";
    case GLFW_KEY_MENU:
      return "menu";
    default:
      return std::nullopt;
  }
}

// ---------------------------------------------------------------------------------------------
// Input routing

namespace {
bool is_modifier(int k) {
  switch (k) {
    case GLFW_KEY_LEFT_SHIFT:
    case GLFW_KEY_RIGHT_SHIFT:
    case GLFW_KEY_LEFT_CONTROL:
    case GLFW_KEY_RIGHT_CONTROL:
    case GLFW_KEY_LEFT_ALT:
    case GLFW_KEY_RIGHT_ALT:
    case GLFW_KEY_LEFT_SUPER:
    case GLFW_KEY_RIGHT_SUPER:
      return true;
    default:
      return false;
  }
}

const char* button_name(int button) {
  switch (button) {
    case GLFW_MOUSE_BUTTON_LEFT:
      return "left";
    case GLFW_MOUSE_BUTTON_RIGHT:
      return "right";
    case GLFW_MOUSE_BUTTON_MIDDLE:
      return "middle";
    default:
      return nullptr;
  }
}
}  // namespace

void InputRouter::key(int glfw_key, int action, int mods) {
  if (action == GLFW_RELEASE) {
    if (hotkeys_.erase(glfw_key)) return;  // the release of a hotkey: swallowed
    if (held_.erase(glfw_key)) {
      if (auto q = glfw_key_to_qcode(glfw_key); q && cb_.on_key) cb_.on_key(*q, false);
    }
    return;
  }
  const int chord = GLFW_MOD_CONTROL | GLFW_MOD_ALT;
  if ((mods & chord) == chord && !is_modifier(glfw_key)) {
    if (held_.count(glfw_key)) {
      // Pressed before the chord was complete: the guest owns it; keep it there.
    } else {
      if (action == GLFW_PRESS) {
        hotkeys_.insert(glfw_key);
        if (cb_.on_hotkey) cb_.on_hotkey(glfw_key, mods);
      }
      return;
    }
  }
  if (hotkeys_.count(glfw_key)) return;  // a held hotkey repeating after Ctrl/Alt let go
  auto q = glfw_key_to_qcode(glfw_key);
  if (!q) return;
  held_.insert(glfw_key);
  if (cb_.on_key) cb_.on_key(*q, true);
}

void InputRouter::mouse_button(int button, int action) {
  const char* name = button_name(button);
  if (!name) return;
  const bool down = action != GLFW_RELEASE;
  if (down) {
    buttons_.insert(button);
  } else if (!buttons_.erase(button)) {
    return;  // a release we never saw pressed (e.g. press outside the window)
  }
  if (cb_.on_mouse_button) cb_.on_mouse_button(name, down);
}

void InputRouter::cursor(double x, double y, int window_w, int window_h) {
  if (window_w <= 0 || window_h <= 0 || !cb_.on_mouse_move) return;
  if (canvas_w_ == 0 || canvas_h_ == 0) {
    cb_.on_mouse_move(x, y);
    return;
  }
  cb_.on_mouse_move(x * canvas_w_ / window_w, y * canvas_h_ / window_h);
}

void InputRouter::scroll(double dx, double dy) {
  if (cb_.on_scroll) cb_.on_scroll(dx, dy);
}

void InputRouter::focus_lost() {
  const std::set<int> keys = std::move(held_);
  held_.clear();
  hotkeys_.clear();
  for (int k : keys) {
    if (auto q = glfw_key_to_qcode(k); q && cb_.on_key) cb_.on_key(*q, false);
  }
  const std::set<int> buttons = std::move(buttons_);
  buttons_.clear();
  for (int b : buttons) {
    if (cb_.on_mouse_button) cb_.on_mouse_button(button_name(b), false);
  }
}

// ---------------------------------------------------------------------------------------------
// Window

struct Window::Impl {
  VkContext& ctx;
  GLFWwindow* win = nullptr;
  InputRouter router;
  VkSurfaceKHR surface = VK_NULL_HANDLE;
  VkSurfaceFormatKHR surface_format{};
  VkCompositeAlphaFlagBitsKHR composite_alpha = VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR;
  VkImageUsageFlags usage = VK_IMAGE_USAGE_TRANSFER_DST_BIT;
  bool can_capture = false;
  bool linear_filter = false;

  VkSwapchainKHR swapchain = VK_NULL_HANDLE;
  VkExtent2D extent{0, 0};
  int fb_w = 0, fb_h = 0;  // framebuffer size the swapchain was made for
  std::vector<VkImage> images;
  std::vector<VkSemaphore> render_done;  // one per swapchain image
  VkSemaphore acquired = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
  bool fence_pending = false;  // submitted, not yet seen signalled
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  bool need_recreate = true;
  uint64_t generation = 0, frames = 0;

  bool capture = false;
  VkBufferBox capture_buf;
  RgbaImage last;
  bool close_requested = false;

  Impl(VkContext& c, WindowCallbacks cb) : ctx(c), router(std::move(cb)) {}

  ~Impl() {
    VkDevice dev = ctx.device();
    if (fence_pending) vkWaitForFences(dev, 1, &fence, VK_TRUE, kWaitNs);
    // Presentation may still read the last image / wait on its semaphore.
    vkQueueWaitIdle(ctx.queue());
    destroy_swapchain_objects();
    if (swapchain) vkDestroySwapchainKHR(dev, swapchain, nullptr);
    if (acquired) vkDestroySemaphore(dev, acquired, nullptr);
    if (fence) vkDestroyFence(dev, fence, nullptr);
    if (cmd) vkFreeCommandBuffers(dev, ctx.command_pool(), 1, &cmd);
    ctx.destroy(capture_buf);
    if (surface) vkDestroySurfaceKHR(ctx.instance(), surface, nullptr);
    if (win) {
      glfwDestroyWindow(win);
      --glfw_state().windows;
    }
    release_glfw();
  }

  void destroy_swapchain_objects() {
    for (VkSemaphore s : render_done) vkDestroySemaphore(ctx.device(), s, nullptr);
    render_done.clear();
    images.clear();
  }

  Result<VkSemaphore> make_semaphore() {
    VkSemaphoreCreateInfo sci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    VkSemaphore s = VK_NULL_HANDLE;
    if (VkResult r = vkCreateSemaphore(ctx.device(), &sci, nullptr, &s); r != VK_SUCCESS) {
      return fail(Errc::kInternal, vk_fail("vkCreateSemaphore", r));
    }
    return s;
  }

  // After a failure between acquire and submit the acquire semaphore may be left signalled;
  // a fresh one keeps the next acquire valid.
  void reset_acquire_semaphore() {
    vkQueueWaitIdle(ctx.queue());
    vkDestroySemaphore(ctx.device(), acquired, nullptr);
    acquired = VK_NULL_HANDLE;
    if (auto s = make_semaphore()) acquired = *s;
  }

  // Chooses format, alpha and usage once per surface.
  Result<void> choose_surface_setup() {
    VkPhysicalDevice pd = ctx.physical_device();
    uint32_t n = 0;
    vkGetPhysicalDeviceSurfaceFormatsKHR(pd, surface, &n, nullptr);
    std::vector<VkSurfaceFormatKHR> formats(n);
    vkGetPhysicalDeviceSurfaceFormatsKHR(pd, surface, &n, formats.data());
    if (formats.empty()) return fail(Errc::kUnsupported, "the window surface offers no formats");
    auto blittable = [&](VkFormat f) {
      VkFormatProperties fp;
      vkGetPhysicalDeviceFormatProperties(pd, f, &fp);
      return (fp.optimalTilingFeatures & VK_FORMAT_FEATURE_BLIT_DST_BIT) != 0;
    };
    bool found = false;
    if (formats.size() == 1 && formats[0].format == VK_FORMAT_UNDEFINED) {
      surface_format = {VK_FORMAT_B8G8R8A8_UNORM, formats[0].colorSpace};
      found = true;
    }
    for (VkFormat want : {VK_FORMAT_B8G8R8A8_UNORM, VK_FORMAT_R8G8B8A8_UNORM}) {
      for (const auto& f : formats) {
        if (!found && f.format == want && blittable(f.format)) {
          surface_format = f;
          found = true;
        }
      }
    }
    for (const auto& f : formats) {
      if (!found && blittable(f.format)) {
        surface_format = f;
        found = true;
        spdlog::warn(
            "compositor window: no UNORM BGRA/RGBA surface format; using format {} "
            "(colours may be converted)",
            static_cast<int>(f.format));
      }
    }
    if (!found) {
      return fail(Errc::kUnsupported, "no window surface format supports vkCmdBlitImage");
    }

    VkSurfaceCapabilitiesKHR caps;
    if (VkResult r = vkGetPhysicalDeviceSurfaceCapabilitiesKHR(pd, surface, &caps);
        r != VK_SUCCESS) {
      return fail(Errc::kUnavailable, vk_fail("vkGetPhysicalDeviceSurfaceCapabilitiesKHR", r));
    }
    if (!(caps.supportedUsageFlags & VK_IMAGE_USAGE_TRANSFER_DST_BIT)) {
      return fail(Errc::kUnsupported,
                  "the window surface does not allow TRANSFER_DST images "
                  "(needed to blit the canvas)");
    }
    can_capture = (caps.supportedUsageFlags & VK_IMAGE_USAGE_TRANSFER_SRC_BIT) != 0;
    usage = VK_IMAGE_USAGE_TRANSFER_DST_BIT | (can_capture ? VK_IMAGE_USAGE_TRANSFER_SRC_BIT : 0);
    composite_alpha = VK_COMPOSITE_ALPHA_OPAQUE_BIT_KHR;
    if (!(caps.supportedCompositeAlpha & composite_alpha)) {
      for (auto a : {VK_COMPOSITE_ALPHA_INHERIT_BIT_KHR, VK_COMPOSITE_ALPHA_PRE_MULTIPLIED_BIT_KHR,
                     VK_COMPOSITE_ALPHA_POST_MULTIPLIED_BIT_KHR}) {
        if (caps.supportedCompositeAlpha & a) {
          composite_alpha = a;
          break;
        }
      }
    }
    VkFormatProperties canvas_props;
    vkGetPhysicalDeviceFormatProperties(pd, VK_FORMAT_R8G8B8A8_UNORM, &canvas_props);
    linear_filter = (canvas_props.optimalTilingFeatures &
                     VK_FORMAT_FEATURE_SAMPLED_IMAGE_FILTER_LINEAR_BIT) != 0;
    return {};
  }

  // (Re)creates the swapchain for the current framebuffer size. Returns false (nothing made)
  // while the window has no area.
  Result<bool> recreate() {
    int w = 0, h = 0;
    glfwGetFramebufferSize(win, &w, &h);
    if (w <= 0 || h <= 0) return false;
    VkSurfaceCapabilitiesKHR caps;
    if (VkResult r =
            vkGetPhysicalDeviceSurfaceCapabilitiesKHR(ctx.physical_device(), surface, &caps);
        r != VK_SUCCESS) {
      return fail(r == VK_ERROR_SURFACE_LOST_KHR ? Errc::kUnavailable : Errc::kInternal,
                  vk_fail("vkGetPhysicalDeviceSurfaceCapabilitiesKHR", r));
    }
    VkExtent2D ext = caps.currentExtent;
    if (ext.width == std::numeric_limits<uint32_t>::max()) {
      ext.width = std::clamp(static_cast<uint32_t>(w), caps.minImageExtent.width,
                             caps.maxImageExtent.width);
      ext.height = std::clamp(static_cast<uint32_t>(h), caps.minImageExtent.height,
                              caps.maxImageExtent.height);
    }
    if (ext.width == 0 || ext.height == 0) return false;

    // Our submissions are fenced; this also lets pending presents drain before their
    // semaphores and the old swapchain go away.
    vkQueueWaitIdle(ctx.queue());

    uint32_t count = caps.minImageCount + 1;
    if (caps.maxImageCount > 0) count = std::min(count, caps.maxImageCount);
    VkSwapchainCreateInfoKHR sci{VK_STRUCTURE_TYPE_SWAPCHAIN_CREATE_INFO_KHR};
    sci.surface = surface;
    sci.minImageCount = count;
    sci.imageFormat = surface_format.format;
    sci.imageColorSpace = surface_format.colorSpace;
    sci.imageExtent = ext;
    sci.imageArrayLayers = 1;
    sci.imageUsage = usage;
    sci.imageSharingMode = VK_SHARING_MODE_EXCLUSIVE;
    sci.preTransform = (caps.supportedTransforms & VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR)
                           ? VK_SURFACE_TRANSFORM_IDENTITY_BIT_KHR
                           : caps.currentTransform;
    sci.compositeAlpha = composite_alpha;
    sci.presentMode = VK_PRESENT_MODE_FIFO_KHR;  // always supported; vsync
    sci.clipped = VK_TRUE;
    sci.oldSwapchain = swapchain;
    VkSwapchainKHR fresh = VK_NULL_HANDLE;
    VkResult r = vkCreateSwapchainKHR(ctx.device(), &sci, nullptr, &fresh);
    if (r != VK_SUCCESS) {
      return fail(
          r == VK_ERROR_SURFACE_LOST_KHR || r == VK_ERROR_NATIVE_WINDOW_IN_USE_KHR
              ? Errc::kUnavailable
              : Errc::kInternal,
          fmt::format("vkCreateSwapchainKHR {}x{}: {}", ext.width, ext.height, vk_result_name(r)));
    }
    destroy_swapchain_objects();
    if (swapchain) vkDestroySwapchainKHR(ctx.device(), swapchain, nullptr);
    swapchain = fresh;
    extent = ext;
    fb_w = w;
    fb_h = h;
    uint32_t n = 0;
    vkGetSwapchainImagesKHR(ctx.device(), swapchain, &n, nullptr);
    images.resize(n);
    vkGetSwapchainImagesKHR(ctx.device(), swapchain, &n, images.data());
    for (uint32_t i = 0; i < n; ++i) {
      auto s = make_semaphore();
      if (!s) return tl::unexpected(s.error());
      render_done.push_back(*s);
    }
    need_recreate = false;
    ++generation;
    spdlog::debug("compositor window: swapchain {}x{}, {} images, format {}", ext.width, ext.height,
                  n, static_cast<int>(surface_format.format));
    return true;
  }

  Result<void> wait_fence() {
    if (!fence_pending) return {};
    VkResult r = vkWaitForFences(ctx.device(), 1, &fence, VK_TRUE, kWaitNs);
    if (r == VK_TIMEOUT) {
      return fail(Errc::kTimeout, "the window's blit did not finish within 10 s (GPU hung?)");
    }
    if (r != VK_SUCCESS) return fail(Errc::kInternal, vk_fail("vkWaitForFences", r));
    fence_pending = false;
    return {};
  }

  void record(VkImage canvas, uint32_t cw, uint32_t ch, VkImage target, bool do_capture) {
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    vkResetCommandBuffer(cmd, 0);
    vkBeginCommandBuffer(cmd, &bi);
    // The renderer's compute / transfer writes to the canvas become visible to the blit.
    image_barrier(cmd, canvas, VK_IMAGE_LAYOUT_GENERAL, VK_IMAGE_LAYOUT_GENERAL,
                  VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                  VK_ACCESS_TRANSFER_READ_BIT,
                  VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                  VK_PIPELINE_STAGE_TRANSFER_BIT);
    // Chained to the acquire semaphore's wait at the transfer stage.
    image_barrier(cmd, target, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 0,
                  VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                  VK_PIPELINE_STAGE_TRANSFER_BIT);
    VkImageBlit blit{};
    blit.srcSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    blit.srcOffsets[1] = {static_cast<int32_t>(cw), static_cast<int32_t>(ch), 1};
    blit.dstSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    blit.dstOffsets[1] = {static_cast<int32_t>(extent.width), static_cast<int32_t>(extent.height),
                          1};
    const bool same_size = cw == extent.width && ch == extent.height;
    const VkFilter filter = linear_filter && !same_size ? VK_FILTER_LINEAR : VK_FILTER_NEAREST;
    vkCmdBlitImage(cmd, canvas, VK_IMAGE_LAYOUT_GENERAL, target,
                   VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &blit, filter);
    // The renderer's next writes wait for this read.
    image_barrier(cmd, canvas, VK_IMAGE_LAYOUT_GENERAL, VK_IMAGE_LAYOUT_GENERAL,
                  VK_ACCESS_TRANSFER_READ_BIT, 0, VK_PIPELINE_STAGE_TRANSFER_BIT,
                  VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT);
    if (do_capture) {
      image_barrier(cmd, target, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL,
                    VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_ACCESS_TRANSFER_READ_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_PIPELINE_STAGE_TRANSFER_BIT);
      VkBufferImageCopy bic{};
      bic.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
      bic.imageExtent = {extent.width, extent.height, 1};
      vkCmdCopyImageToBuffer(cmd, target, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, capture_buf.buffer,
                             1, &bic);
      VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
      mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
      mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
      vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1,
                           &mb, 0, nullptr, 0, nullptr);
      image_barrier(cmd, target, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL,
                    VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, 0, 0, VK_PIPELINE_STAGE_TRANSFER_BIT,
                    VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT);
    } else {
      image_barrier(cmd, target, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL,
                    VK_IMAGE_LAYOUT_PRESENT_SRC_KHR, VK_ACCESS_TRANSFER_WRITE_BIT, 0,
                    VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT);
    }
    vkEndCommandBuffer(cmd);
  }

  Result<void> present(VkImage canvas, uint32_t cw, uint32_t ch) {
    if (canvas == VK_NULL_HANDLE || cw == 0 || ch == 0) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("present: canvas {} of {}x{}", canvas ? "set" : "null", cw, ch));
    }
    router.set_canvas_size(cw, ch);
    GB_TRY(wait_fence());
    int w = 0, h = 0;
    glfwGetFramebufferSize(win, &w, &h);
    if (w <= 0 || h <= 0) return {};  // minimized: nothing to show
    if (!swapchain || need_recreate || w != fb_w || h != fb_h) {
      auto made = recreate();
      if (!made) return tl::unexpected(made.error());
      if (!*made) return {};
    }

    uint32_t index = 0;
    VkResult ar = VK_ERROR_OUT_OF_DATE_KHR;
    for (int attempt = 0; attempt < 2 && ar == VK_ERROR_OUT_OF_DATE_KHR; ++attempt) {
      if (attempt > 0) {
        auto made = recreate();
        if (!made) return tl::unexpected(made.error());
        if (!*made) return {};
      }
      ar =
          vkAcquireNextImageKHR(ctx.device(), swapchain, kWaitNs, acquired, VK_NULL_HANDLE, &index);
    }
    if (ar == VK_ERROR_OUT_OF_DATE_KHR) {
      need_recreate = true;
      return {};  // the window keeps changing: try again next frame
    }
    if (ar == VK_TIMEOUT || ar == VK_NOT_READY) {
      return fail(Errc::kTimeout, "vkAcquireNextImageKHR: no swapchain image within 10 s");
    }
    if (ar == VK_ERROR_SURFACE_LOST_KHR) {
      return fail(Errc::kUnavailable, vk_fail("vkAcquireNextImageKHR", ar));
    }
    if (ar != VK_SUCCESS && ar != VK_SUBOPTIMAL_KHR) {
      return fail(Errc::kInternal, vk_fail("vkAcquireNextImageKHR", ar));
    }
    if (ar == VK_SUBOPTIMAL_KHR) need_recreate = true;  // still usable for this frame

    bool do_capture = capture && can_capture;
    if (do_capture) {
      const VkDeviceSize bytes = VkDeviceSize{extent.width} * extent.height * 4;
      if (capture_buf.size_bytes < bytes) {
        ctx.destroy(capture_buf);
        auto b = ctx.create_buffer(bytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT, true);
        if (b) {
          capture_buf = *b;
        } else {
          spdlog::warn("compositor window: capture buffer: {}", b.error().to_string());
          do_capture = false;
        }
      }
    }

    record(canvas, cw, ch, images[index], do_capture);
    vkResetFences(ctx.device(), 1, &fence);
    const VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.waitSemaphoreCount = 1;
    si.pWaitSemaphores = &acquired;
    si.pWaitDstStageMask = &wait_stage;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cmd;
    si.signalSemaphoreCount = 1;
    si.pSignalSemaphores = &render_done[index];
    if (VkResult r = vkQueueSubmit(ctx.queue(), 1, &si, fence); r != VK_SUCCESS) {
      reset_acquire_semaphore();
      return fail(Errc::kInternal, vk_fail("vkQueueSubmit (window blit)", r));
    }
    fence_pending = true;

    VkPresentInfoKHR pi{VK_STRUCTURE_TYPE_PRESENT_INFO_KHR};
    pi.waitSemaphoreCount = 1;
    pi.pWaitSemaphores = &render_done[index];
    pi.swapchainCount = 1;
    pi.pSwapchains = &swapchain;
    pi.pImageIndices = &index;
    const VkResult pr = vkQueuePresentKHR(ctx.queue(), &pi);
    GB_TRY(wait_fence());
    if (do_capture) {
      last.width = extent.width;
      last.height = extent.height;
      last.rgba.resize(uint64_t{extent.width} * extent.height * 4);
      std::memcpy(last.rgba.data(), capture_buf.mapped, last.rgba.size());
      if (is_bgra(surface_format.format)) {
        for (size_t i = 0; i < last.rgba.size(); i += 4) std::swap(last.rgba[i], last.rgba[i + 2]);
      }
    }
    if (pr == VK_ERROR_OUT_OF_DATE_KHR || pr == VK_SUBOPTIMAL_KHR) {
      need_recreate = true;
    } else if (pr == VK_ERROR_SURFACE_LOST_KHR) {
      return fail(Errc::kUnavailable, vk_fail("vkQueuePresentKHR", pr));
    } else if (pr != VK_SUCCESS) {
      return fail(Errc::kInternal, vk_fail("vkQueuePresentKHR", pr));
    }
    ++frames;
    return {};
  }
};

namespace {
Window::Impl* impl_of(GLFWwindow* w) {
  return static_cast<Window::Impl*>(glfwGetWindowUserPointer(w));
}
}  // namespace

bool Window::display_available() { return ensure_glfw().has_value(); }

Result<std::vector<std::string>> Window::required_instance_extensions() {
  GB_TRY(ensure_glfw());
  uint32_t n = 0;
  const char** names = glfwGetRequiredInstanceExtensions(&n);
  if (!names || n == 0) {
    return fail(Errc::kUnavailable, "GLFW knows no Vulkan surface extensions for this display: " +
                                        glfw_state().last_error);
  }
  return std::vector<std::string>(names, names + n);
}

Window::Window(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Window::~Window() = default;

Result<std::unique_ptr<Window>> Window::create(VkContext& ctx, uint32_t width, uint32_t height,
                                               const std::string& title, WindowCallbacks cb) {
  if (width == 0 || height == 0 || width > 16384 || height > 16384) {
    return fail(Errc::kInvalidArgument,
                fmt::format("window size {}x{}: expected 1..16384 each", width, height));
  }
  GB_TRY(ensure_glfw());
  // Without VK_KHR_swapchain on the device the swapchain entry points are absent.
  if (!vkGetDeviceProcAddr(ctx.device(), "vkCreateSwapchainKHR")) {
    return fail(Errc::kUnavailable,
                "the Vulkan device was made without VK_KHR_swapchain "
                "(create the VkContext with want_swapchain = true)");
  }
  auto impl = std::make_unique<Impl>(ctx, std::move(cb));
  glfwWindowHint(GLFW_CLIENT_API, GLFW_NO_API);
  glfwWindowHint(GLFW_RESIZABLE, GLFW_TRUE);
  glfw_state().last_error.clear();
  impl->win = glfwCreateWindow(static_cast<int>(width), static_cast<int>(height), title.c_str(),
                               nullptr, nullptr);
  glfwDefaultWindowHints();
  if (!impl->win) {
    return fail(Errc::kUnavailable, "glfwCreateWindow: " + glfw_state().last_error);
  }
  ++glfw_state().windows;
  if (VkResult r = glfwCreateWindowSurface(ctx.instance(), impl->win, nullptr, &impl->surface);
      r != VK_SUCCESS) {
    impl->surface = VK_NULL_HANDLE;
    return fail(Errc::kUnavailable,
                fmt::format("glfwCreateWindowSurface: {} (was the VkContext created with "
                            "Window::required_instance_extensions()?) {}",
                            vk_result_name(r), glfw_state().last_error));
  }
  VkBool32 can_present = VK_FALSE;
  if (VkResult r = vkGetPhysicalDeviceSurfaceSupportKHR(ctx.physical_device(), ctx.queue_family(),
                                                        impl->surface, &can_present);
      r != VK_SUCCESS || !can_present) {
    return fail(Errc::kUnavailable,
                fmt::format("{} cannot present to this window from queue family {}{}",
                            ctx.device_description(), ctx.queue_family(),
                            r != VK_SUCCESS ? std::string(" (") + vk_result_name(r) + ")" : ""));
  }
  GB_TRY(impl->choose_surface_setup());

  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  if (VkResult r = vkCreateFence(ctx.device(), &fci, nullptr, &impl->fence); r != VK_SUCCESS) {
    return fail(Errc::kInternal, vk_fail("vkCreateFence", r));
  }
  auto sem = impl->make_semaphore();
  if (!sem) return tl::unexpected(sem.error());
  impl->acquired = *sem;
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = ctx.command_pool();
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  if (VkResult r = vkAllocateCommandBuffers(ctx.device(), &ai, &impl->cmd); r != VK_SUCCESS) {
    return fail(Errc::kInternal, vk_fail("vkAllocateCommandBuffers", r));
  }

  GLFWwindow* w = impl->win;
  glfwSetWindowUserPointer(w, impl.get());
  glfwSetKeyCallback(w, [](GLFWwindow* win, int key, int, int action, int mods) {
    impl_of(win)->router.key(key, action, mods);
  });
  glfwSetMouseButtonCallback(w, [](GLFWwindow* win, int button, int action, int) {
    impl_of(win)->router.mouse_button(button, action);
  });
  glfwSetCursorPosCallback(w, [](GLFWwindow* win, double x, double y) {
    int ww = 0, wh = 0;
    glfwGetWindowSize(win, &ww, &wh);
    impl_of(win)->router.cursor(x, y, ww, wh);
  });
  glfwSetScrollCallback(
      w, [](GLFWwindow* win, double dx, double dy) { impl_of(win)->router.scroll(dx, dy); });
  glfwSetWindowFocusCallback(w, [](GLFWwindow* win, int focused) {
    if (!focused) impl_of(win)->router.focus_lost();
  });
  glfwSetFramebufferSizeCallback(
      w, [](GLFWwindow* win, int, int) { impl_of(win)->need_recreate = true; });

  auto made = impl->recreate();
  if (!made) return tl::unexpected(made.error());
  return std::unique_ptr<Window>(new Window(std::move(impl)));
}

Result<void> Window::present(VkImage canvas, uint32_t cw, uint32_t ch) {
  return impl_->present(canvas, cw, ch);
}

void Window::poll_events() { glfwPollEvents(); }

bool Window::should_close() const {
  return impl_->close_requested || glfwWindowShouldClose(impl_->win);
}

void Window::request_close() {
  impl_->close_requested = true;
  glfwSetWindowShouldClose(impl_->win, GLFW_TRUE);
}

VkExtent2D Window::swapchain_extent() const {
  return impl_->swapchain ? impl_->extent : VkExtent2D{0, 0};
}
uint64_t Window::swapchain_generation() const { return impl_->generation; }
uint64_t Window::frames_presented() const { return impl_->frames; }
GLFWwindow* Window::glfw_window() const { return impl_->win; }

void Window::set_capture(bool on) { impl_->capture = on; }

Result<RgbaImage> Window::read_last_presented() const {
  if (!impl_->can_capture) {
    return fail(Errc::kUnsupported,
                "the window surface does not allow TRANSFER_SRC swapchain images");
  }
  if (impl_->last.rgba.empty()) {
    return fail(Errc::kUnavailable, "no frame captured yet (set_capture(true), then present())");
  }
  return impl_->last;
}

}  // namespace glassbox::compositor
