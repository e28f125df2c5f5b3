// The compositor's renderer: every pane drawn with Vulkan compute shaders into offscreen
// images, read back for screenshots, blitted to a window when there is one.
//
// Panes (each an image; `read_pane` returns it as 8-bit RGBA):
//   kScreen  the guest's latest frame at its own resolution (screen_fx.comp: optional CRT
//            look, brightness pulse); with crt off and brightness 1 it equals the frame.
//   kRam     the RAM map at its native size (2^bits square, ram_map.hpp's geometry, so
//            `glassbox map locate` pixels index it): cell colours (ram_cells.comp), dirty
//            glow, the highlighted process's outline and labels (ram_overlay.comp).
//   kRam3d   the same bytes on a 3D Hilbert curve (volume_cells.comp), ray-marched from an
//            orbit camera (raymarch.comp).
//   kAll     the canvas: HUD strip, screen pane left, RAM pane (2D or 3D) right.
//
// Incremental by design: update_ram() copies only the pages the caller says changed (counted
// in FrameStats::upload_bytes) and only the cells those pages cover are recomputed; a full
// upload happens on the first call and on `full` (a keyframe / resync). Per frame the GPU
// does O(changed bytes + pane pixels) work, not O(RAM).
//
// Frames are synchronous: render() records, submits and waits for its own fence (bounded,
// 10 s), so host-visible buffers may be written between frames without further fencing.
//
// Thread-safety: one thread owns a Renderer (and its VkContext).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "compositor/ram_map.hpp"
#include "compositor/vk_context.hpp"
#include "shared/result.hpp"

namespace glassbox::compositor {

enum class Pane { kScreen, kRam, kRam3d, kAll };
// "screen" | "ram" | "ram3d" | "all"; parse_pane errors: kInvalidArgument naming the value.
const char* pane_name(Pane p) noexcept;
Result<Pane> parse_pane(std::string_view name);

struct RendererOptions {
  uint32_t canvas_width = 1600;  // 320..8192
  uint32_t canvas_height = 900;  // 240..8192
  uint32_t hud_height = 22;      // pixels of the HUD strip
  uint64_t bytes_per_pixel = 0;  // RAM map density (power of two, 4..65536); 0: the smallest
                                 // that keeps the map within 1024 x 1024
  uint32_t volume_bits = 7;      // 3D view: 2^bits voxels per axis (4..9)
  uint32_t ram3d_width = 0, ram3d_height = 0;  // 3D view pixels, 64..4096; 0: 768 x 768 on a
                                               // GPU, 512 x 512 on a CPU device (lavapipe)
  uint32_t glow_ms = 1500;                     // dirty pages glow this long; 0: off
  bool crt = true;                             // CRT look on the screen pane
  bool show_3d = false;                        // canvas shows the 3D view instead of the 2D map
  // RAM upload path: CPU devices (lavapipe) get page writes straight into the buffer the
  // shaders read; GPUs get changed pages packed into a staging buffer, one copy, and a scatter
  // shader (scatter.comp). true: the GPU path on any device (tests it on lavapipe).
  bool force_staging = false;
};

// Orbit camera of the 3D view.
struct Camera {
  float yaw_rad = 0.7f;
  float pitch_rad = 0.45f;
  float distance = 2.2f;  // cube sides from its centre, 1.0..20
  float density = 0.06f;  // opacity per voxel at alpha 1
  float fov_deg = 45.0f;
};

// A highlighted process: its gpa runs (any order, may overlap; clipped to RAM) and a label.
struct Highlight {
  std::string label;  // "pid 103 acpid"; drawn at the largest run
  struct Run {
    Gpa gpa{0};
    uint64_t size_bytes = 0;
  };
  std::vector<Run> runs;
};

struct FrameStats {
  double cpu_ms = 0;            // wall time of render(): upload, record, submit, wait
  double gpu_ms = 0;            // GPU time between the frame's first and last timestamp; 0
                                // when the device has no timestamps
  uint64_t upload_bytes = 0;    // bytes copied host -> device for this frame (RAM, screen,
                                // masks)
  uint64_t cells_updated = 0;   // RAM-map cells recomputed (2D) this frame
  uint64_t voxels_updated = 0;  // 3D volume cells recomputed this frame
};

struct RgbaImage {
  uint32_t width = 0, height = 0;
  std::vector<uint8_t> rgba;  // width * height * 4, rows packed
};

class Renderer {
 public:
  // Errors: kInvalidArgument naming the bad option; the VkContext errors when memory or
  // pipelines cannot be made; RamMap::create's errors for the layout.
  static Result<std::unique_ptr<Renderer>> create(VkContext& ctx, const RendererOptions& options,
                                                  const shared::RamLayout& layout);
  ~Renderer();
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  const RamMap& ram_map() const;
  const RendererOptions& options() const;

  // Takes guest RAM (`ram`: the RAM file's bytes, size == layout().file_size_bytes()). Copies
  // the 4 KiB pages listed in `changed_pages` (page indices into the file, any order; out of
  // range ones are ignored and counted in the returned value), or every page when `full` or on
  // the first call. Pages in `changed_pages` glow from `now_ms` unless `full`.
  // Returns the number of ignored page indices. Errors: kInvalidArgument when ram.size()
  // differs from the layout's file size.
  Result<uint64_t> update_ram(std::span<const uint8_t> ram, std::span<const uint32_t> changed_pages,
                              bool full, uint32_t now_ms);

  // Takes a guest frame (BGRX, VNC/QEMU byte order). A new size recreates the screen pane.
  // Errors: kInvalidArgument for 0 or > 8192 dimensions or stride < width * 4 or a short buffer.
  Result<void> update_screen(const uint8_t* bgrx, size_t size_bytes, uint32_t width,
                             uint32_t height, uint32_t stride_bytes);

  // The process to outline on the RAM map (empty runs: none). Labels are drawn with `font`
  // (TrueType path) when set_font() succeeded, else the outline only.
  Result<void> set_highlight(const Highlight& h);
  // The HUD text (one line, drawn left to right; clipped).
  void set_hud_text(std::string text);
  // Loads the font for HUD and labels. Errors: text.hpp's TextRasterizer::create errors.
  Result<void> set_font(const std::string& path, uint32_t pixel_height);
  void set_camera(const Camera& c);
  const Camera& camera() const;
  void set_show_3d(bool on);
  void set_stale(bool screen_stale, bool ram_stale);
  // Brightness factor of the screen pane (1 = as is), e.g. from vCPU activity.
  void set_brightness(float factor);

  // Draws one frame of every pane and the canvas. Errors: kTimeout (GPU hung),
  // kInternal (device lost).
  Result<FrameStats> render(uint32_t now_ms);

  // The pane's pixels after the last render(). kScreen before any frame: kUnavailable.
  Result<RgbaImage> read_pane(Pane pane);

  // The canvas image (VK_IMAGE_LAYOUT_GENERAL) for the window's blit, and its size.
  VkImage canvas_image() const;
  uint32_t canvas_width() const;
  uint32_t canvas_height() const;
  // Where the screen pane sits in the canvas (for mapping the window's mouse to the guest):
  // returns guest pixel for canvas pixel (x, y), or false outside the screen pane.
  bool canvas_to_guest(double x, double y, int32_t* gx, int32_t* gy) const;
  uint32_t screen_width() const;
  uint32_t screen_height() const;

  struct Impl;

 private:
  explicit Renderer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The default RAM map density for `file_size_bytes`: the smallest power of two >= 4 that keeps
// the map within 1024 x 1024 pixels.
uint64_t default_bytes_per_pixel(uint64_t file_size_bytes);

}  // namespace glassbox::compositor
