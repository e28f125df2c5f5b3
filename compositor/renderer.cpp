#include "compositor/renderer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>

#include "compositor/text.hpp"

namespace glassbox::compositor {
namespace {

// SPIR-V compiled at build time by glslc (compositor/CMakeLists.txt), as C initializer lists.
const uint32_t kRamCellsSpv[] =
#include "ram_cells.comp.inc"
    ;
const uint32_t kVolumeCellsSpv[] =
#include "volume_cells.comp.inc"
    ;
const uint32_t kScatterSpv[] =
#include "scatter.comp.inc"
    ;
const uint32_t kRamIndexSpv[] =
#include "ram_index.comp.inc"
    ;
const uint32_t kRamMaskSpv[] =
#include "ram_mask.comp.inc"
    ;
const uint32_t kRamOverlaySpv[] =
#include "ram_overlay.comp.inc"
    ;
const uint32_t kScreenFxSpv[] =
#include "screen_fx.comp.inc"
    ;
const uint32_t kRaymarchSpv[] =
#include "raymarch.comp.inc"
    ;
const uint32_t kComposeSpv[] =
#include "compose.comp.inc"
    ;

constexpr uint64_t kPageBytes = 4096;
constexpr uint32_t kRunCells = 256;  // cells per run entry (the shaders' local size)
constexpr uint32_t kMaxHighlightRanges = 65536;
constexpr uint32_t kMaxScreenDim = 8192;

struct CellsPush {
  uint32_t bits, words_per_cell, ram_words, n_runs;
};
struct OverlayPush {
  uint32_t bits, bpp_log2, now_ms, glow_ms, highlight, n_pages;
};
struct ScatterPush {
  uint32_t n_slots, ram_words;
};
constexpr uint32_t kMaxScatterPages = 4096;  // 16 MiB a frame; more: one whole-RAM copy
struct IndexPush {
  uint32_t bits;
};
struct MaskPush {
  uint32_t bits, bpp_log2, n_ranges;
};
struct ScreenPush {
  uint32_t width, height, stride_words, crt;
  float brightness;
};
struct RaymarchPush {
  uint32_t width, height, bits;
  float yaw, pitch, distance, density, fov_tan;
};
struct ComposePush {
  uint32_t width, height, hud_height, screen_w, screen_h, ram_w, ram_h, flags;
};

// [first, end) cell runs -> entries of at most kRunCells, appended to `out`.
void split_runs(uint64_t first, uint64_t end, std::vector<uint32_t>& out) {
  for (uint64_t c = first; c < end; c += kRunCells) {
    out.push_back(static_cast<uint32_t>(c));
    out.push_back(static_cast<uint32_t>(std::min<uint64_t>(kRunCells, end - c)));
  }
}

// Cells covered by the sorted unique `pages` at 2^cell_log2 bytes per cell, as run entries.
void pages_to_runs(std::span<const uint32_t> pages, unsigned cell_log2, uint64_t total_cells,
                   std::vector<uint32_t>& out) {
  uint64_t run_first = 0, run_end = 0;
  bool open = false;
  for (uint32_t p : pages) {
    const uint64_t lo = (uint64_t{p} * kPageBytes) >> cell_log2;
    const uint64_t hi =
        std::min(total_cells,
                 ((uint64_t{p} + 1) * kPageBytes + (uint64_t{1} << cell_log2) - 1) >> cell_log2);
    if (lo >= hi) continue;
    if (open && lo <= run_end) {
      run_end = std::max(run_end, hi);
    } else {
      if (open) split_runs(run_first, run_end, out);
      run_first = lo;
      run_end = hi;
      open = true;
    }
  }
  if (open) split_runs(run_first, run_end, out);
}

VkMemoryBarrier all_memory() {
  VkMemoryBarrier b{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  b.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                    VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  return b;
}

void barrier(VkCommandBuffer cb) {
  VkMemoryBarrier b = all_memory();
  const VkPipelineStageFlags st =
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  vkCmdPipelineBarrier(cb, st, st, 0, 1, &b, 0, nullptr, 0, nullptr);
}

void dispatch_runs(VkCommandBuffer cb, uint32_t n_runs) {
  const uint32_t x = std::min<uint32_t>(n_runs, 65535);
  const uint32_t y = (n_runs + 65534) / 65535;
  vkCmdDispatch(cb, x, y, 1);
}

uint32_t groups(uint32_t n, uint32_t local) { return (n + local - 1) / local; }

}  // namespace

const char* pane_name(Pane p) noexcept {
  switch (p) {
    case Pane::kScreen:
      return "screen";
    case Pane::kRam:
      return "ram";
    case Pane::kRam3d:
      return "ram3d";
    case Pane::kAll:
      return "all";
  }
  return "?";
}

Result<Pane> parse_pane(std::string_view name) {
  if (name == "screen") return Pane::kScreen;
  if (name == "ram") return Pane::kRam;
  if (name == "ram3d") return Pane::kRam3d;
  if (name == "all") return Pane::kAll;
  return fail(Errc::kInvalidArgument,
              fmt::format("pane '{}': expected screen, ram, ram3d or all", name));
}

uint64_t default_bytes_per_pixel(uint64_t file_size_bytes) {
  uint64_t bpp = 4;
  while (bpp < 65536 && (file_size_bytes + bpp - 1) / bpp > (uint64_t{1} << 20)) bpp <<= 1;
  return bpp;
}

struct Renderer::Impl {
  VkContext& ctx;
  RendererOptions opt;
  RamMap map;
  Camera cam;
  unsigned bpp_log2 = 0;
  uint32_t volume_bits = 7;
  unsigned bpv_log2 = 0;  // bytes per voxel
  uint64_t file_bytes = 0;
  uint64_t n_pages = 0;

  VkContext::ComputePipeline p_scatter;
  VkDescriptorSet s_scatter = VK_NULL_HANDLE;
  VkBufferBox incoming_stage, incoming_dev, scatter_list;
  std::vector<uint32_t> slot_of_page;  // page -> slot this frame (UINT32_MAX: none)
  std::vector<uint32_t> slot_pages;    // slot -> page
  bool full_copy = false;              // this frame copies all of RAM (keyframe, overflow)
  VkContext::ComputePipeline p_cells, p_volume, p_index, p_mask, p_overlay, p_screen, p_raymarch,
      p_compose;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  VkDescriptorSet s_index = VK_NULL_HANDLE, s_mask = VK_NULL_HANDLE;
  VkDescriptorSet s_cells = VK_NULL_HANDLE, s_volume = VK_NULL_HANDLE, s_overlay = VK_NULL_HANDLE,
                  s_screen = VK_NULL_HANDLE, s_raymarch = VK_NULL_HANDLE,
                  s_compose = VK_NULL_HANDLE;

  bool ram_direct = false;  // ram_dev is host-visible: pages are written into it directly
  VkBufferBox ram_dev, ram_stage, runs2d, runs3d, page_time, ranges, frame, label_stage, hud_stage,
      readback;
  VkImageBox base, ram_pane, labels, screen_pane, volume, ram3d, hud, canvas, index, mask;
  bool mask_dirty = false;

  VkCommandBuffer cb = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
  VkQueryPool queries = VK_NULL_HANDLE;

  // Pending work for the next render().
  // Staged (discrete GPU) incremental upload: page `p` into its slot of incoming_stage. Past
  // kMaxScatterPages a frame, the frame copies all of RAM instead (one large copy is cheaper
  // than that many pages).
  void stage_page(std::span<const uint8_t> ram, uint32_t p) {
    uint32_t slot = slot_of_page[p];
    if (slot == UINT32_MAX) {
      if (slot_pages.size() == kMaxScatterPages) {
        std::memcpy(ram_stage.mapped, ram.data(), ram.size());
        full_copy = true;
        clear_slots();
        pending_upload_bytes += ram.size();
        return;
      }
      slot = static_cast<uint32_t>(slot_pages.size());
      slot_pages.push_back(p);
      slot_of_page[p] = slot;
      static_cast<uint32_t*>(scatter_list.mapped)[slot] = p;
    }
    const uint64_t off = uint64_t{p} * kPageBytes;
    const uint64_t len = std::min<uint64_t>(kPageBytes, ram.size() - off);
    std::memcpy(static_cast<uint8_t*>(incoming_stage.mapped) + uint64_t{slot} * kPageBytes,
                ram.data() + off, len);
  }
  void clear_slots() {
    for (uint32_t p : slot_pages) slot_of_page[p] = UINT32_MAX;
    slot_pages.clear();
  }
  uint32_t n_runs2d = 0, n_runs3d = 0;
  uint64_t pending_upload_bytes = 0, pending_cells = 0, pending_voxels = 0;
  bool first_ram = true;
  bool labels_dirty = true, hud_dirty = true;
  bool screen_dirty = false;
  uint32_t screen_w = 0, screen_h = 0, screen_stride_words = 0;
  uint32_t n_ranges = 0;
  float brightness = 1.0f;
  bool screen_stale = false, ram_stale = false;
  std::string hud_text;
  std::unique_ptr<TextRasterizer> font;
  Highlight highlight;
  uint64_t frames = 0;

  Impl(VkContext& c, RendererOptions o, RamMap m) : ctx(c), opt(std::move(o)), map(std::move(m)) {}
  ~Impl() {
    VkDevice dev = ctx.device();
    vkDeviceWaitIdle(dev);
    for (auto* b : {&incoming_stage, &incoming_dev, &scatter_list}) ctx.destroy(*b);
    ctx.destroy(p_scatter);
    for (auto* b : {&ram_dev, &ram_stage, &runs2d, &runs3d, &page_time, &ranges, &frame,
                    &label_stage, &hud_stage, &readback}) {
      ctx.destroy(*b);
    }
    for (auto* i :
         {&base, &ram_pane, &labels, &screen_pane, &volume, &ram3d, &hud, &canvas, &index, &mask}) {
      ctx.destroy(*i);
    }
    for (auto* p :
         {&p_cells, &p_volume, &p_index, &p_mask, &p_overlay, &p_screen, &p_raymarch, &p_compose}) {
      ctx.destroy(*p);
    }
    if (pool) vkDestroyDescriptorPool(dev, pool, nullptr);
    if (queries) vkDestroyQueryPool(dev, queries, nullptr);
    if (fence) vkDestroyFence(dev, fence, nullptr);
    if (cb) vkFreeCommandBuffers(dev, ctx.command_pool(), 1, &cb);
  }

  Result<VkDescriptorSet> alloc_set(const VkContext::ComputePipeline& p) {
    VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = pool;
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &p.set_layout;
    VkDescriptorSet s = VK_NULL_HANDLE;
    if (VkResult r = vkAllocateDescriptorSets(ctx.device(), &ai, &s); r != VK_SUCCESS) {
      return fail(Errc::kInternal, fmt::format("vkAllocateDescriptorSets: {}", vk_result_name(r)));
    }
    return s;
  }

  // One binding: a storage buffer or a storage image, in binding order.
  struct Bind {
    const VkBufferBox* buffer = nullptr;
    const VkImageBox* image = nullptr;
  };
  void write_set(VkDescriptorSet set, std::initializer_list<Bind> binds) {
    std::vector<VkWriteDescriptorSet> writes;
    std::vector<VkDescriptorBufferInfo> bufs(binds.size());
    std::vector<VkDescriptorImageInfo> imgs(binds.size());
    uint32_t i = 0;
    for (const Bind& b : binds) {
      VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
      w.dstSet = set;
      w.dstBinding = i;
      w.descriptorCount = 1;
      if (b.buffer) {
        bufs[i] = {b.buffer->buffer, 0, VK_WHOLE_SIZE};
        w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        w.pBufferInfo = &bufs[i];
      } else {
        imgs[i] = {VK_NULL_HANDLE, b.image->view, VK_IMAGE_LAYOUT_GENERAL};
        w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_IMAGE;
        w.pImageInfo = &imgs[i];
      }
      writes.push_back(w);
      ++i;
    }
    vkUpdateDescriptorSets(ctx.device(), static_cast<uint32_t>(writes.size()), writes.data(), 0,
                           nullptr);
  }

  Result<VkImageBox> make_image(VkFormat f, uint32_t w, uint32_t h, uint32_t d = 1) {
    auto img = ctx.create_image(f, w, h, d,
                                VK_IMAGE_USAGE_STORAGE_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT |
                                    VK_IMAGE_USAGE_TRANSFER_DST_BIT);
    if (!img) return img;
    VkImage image = img->image;
    GB_TRY(ctx.submit_and_wait([&](VkCommandBuffer c) {
      image_barrier(c, image, VK_IMAGE_LAYOUT_UNDEFINED, VK_IMAGE_LAYOUT_GENERAL, 0,
                    VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                    VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT,
                    VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT);
      VkClearColorValue black{};
      VkImageSubresourceRange range{VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
      vkCmdClearColorImage(c, image, VK_IMAGE_LAYOUT_GENERAL, &black, 1, &range);
    }));
    return img;
  }

  Result<void> init() {
    VkDevice dev = ctx.device();
    VkFormatProperties fp;
    vkGetPhysicalDeviceFormatProperties(ctx.physical_device(), VK_FORMAT_R8_UNORM, &fp);
    if (!(fp.optimalTilingFeatures & VK_FORMAT_FEATURE_STORAGE_IMAGE_BIT)) {
      return fail(Errc::kUnsupported,
                  fmt::format("{}: R8 storage images are not supported", ctx.device_description()));
    }
    const VkDescriptorType B = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    const VkDescriptorType I = VK_DESCRIPTOR_TYPE_STORAGE_IMAGE;
    auto mk = [&](const char* name, std::span<const uint32_t> spv,
                  std::initializer_list<VkDescriptorType> b, uint32_t push,
                  VkContext::ComputePipeline& out) -> Result<void> {
      std::vector<VkDescriptorType> v(b);
      auto p = ctx.create_compute_pipeline(name, spv, v, push);
      if (!p) return tl::unexpected(p.error());
      out = *p;
      return {};
    };
    GB_TRY(mk("ram_cells.comp", kRamCellsSpv, {B, B, I}, sizeof(CellsPush), p_cells));
    GB_TRY(mk("volume_cells.comp", kVolumeCellsSpv, {B, B, I}, sizeof(CellsPush), p_volume));
    GB_TRY(mk("scatter.comp", kScatterSpv, {B, B, B}, sizeof(ScatterPush), p_scatter));
    GB_TRY(mk("ram_index.comp", kRamIndexSpv, {I}, sizeof(IndexPush), p_index));
    GB_TRY(mk("ram_mask.comp", kRamMaskSpv, {I, B, I}, sizeof(MaskPush), p_mask));
    GB_TRY(
        mk("ram_overlay.comp", kRamOverlaySpv, {I, B, I, I, I, I}, sizeof(OverlayPush), p_overlay));
    GB_TRY(mk("screen_fx.comp", kScreenFxSpv, {B, I}, sizeof(ScreenPush), p_screen));
    GB_TRY(mk("raymarch.comp", kRaymarchSpv, {I, I}, sizeof(RaymarchPush), p_raymarch));
    GB_TRY(mk("compose.comp", kComposeSpv, {I, I, I, I}, sizeof(ComposePush), p_compose));

    VkDescriptorPoolSize sizes[] = {{B, 32}, {I, 32}};
    VkDescriptorPoolCreateInfo dpi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    dpi.maxSets = 16;
    dpi.poolSizeCount = 2;
    dpi.pPoolSizes = sizes;
    if (VkResult r = vkCreateDescriptorPool(dev, &dpi, nullptr, &pool); r != VK_SUCCESS) {
      return fail(Errc::kInternal, fmt::format("vkCreateDescriptorPool: {}", vk_result_name(r)));
    }
    for (auto [set, p] : {std::pair{&s_cells, &p_cells}, std::pair{&s_volume, &p_volume},
                          std::pair{&s_overlay, &p_overlay}, std::pair{&s_screen, &p_screen},
                          std::pair{&s_raymarch, &p_raymarch}, std::pair{&s_compose, &p_compose},
                          std::pair{&s_index, &p_index}, std::pair{&s_mask, &p_mask},
                          std::pair{&s_scatter, &p_scatter}}) {
      auto s = alloc_set(*p);
      if (!s) return tl::unexpected(s.error());
      *set = *s;
    }

    // RAM: direct host-visible writes on CPU devices (lavapipe: all memory is host memory),
    // staging + copy elsewhere.
    file_bytes = map.layout().file_size_bytes();
    n_pages = (file_bytes + kPageBytes - 1) / kPageBytes;
    const VkDeviceSize ram_size = (file_bytes + 3) & ~VkDeviceSize{3};
    const VkBufferUsageFlags sb = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
    ram_direct = ctx.is_cpu_device() && !opt.force_staging;
    if (ram_direct) {
      auto b = ctx.create_buffer(ram_size, sb, true);
      if (!b) return tl::unexpected(b.error());
      ram_dev = *b;
    } else {
      auto d = ctx.create_buffer(ram_size, sb | VK_BUFFER_USAGE_TRANSFER_DST_BIT, false);
      if (!d) return tl::unexpected(d.error());
      ram_dev = *d;
      auto s = ctx.create_buffer(ram_size, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, true);
      if (!s) return tl::unexpected(s.error());
      ram_stage = *s;
      const uint64_t slots_bytes = uint64_t{kMaxScatterPages} * kPageBytes;
      auto is = ctx.create_buffer(slots_bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, true);
      if (!is) return tl::unexpected(is.error());
      incoming_stage = *is;
      auto id = ctx.create_buffer(slots_bytes, sb | VK_BUFFER_USAGE_TRANSFER_DST_BIT, false);
      if (!id) return tl::unexpected(id.error());
      incoming_dev = *id;
      auto sl = ctx.create_buffer(uint64_t{kMaxScatterPages} * 4, sb, true);
      if (!sl) return tl::unexpected(sl.error());
      scatter_list = *sl;
      slot_of_page.assign(n_pages, UINT32_MAX);
    }
    const uint64_t side = map.pane_width();
    const uint64_t cells = side * side;
    const uint64_t voxels = uint64_t{1} << (3 * volume_bits);
    // Worst case: every cell in runs of kRunCells plus one partial run per page.
    const uint64_t max_runs2d = cells / kRunCells + n_pages + 2;
    const uint64_t max_runs3d = voxels / kRunCells + n_pages + 2;
    for (auto [box, bytes] :
         {std::pair{&runs2d, max_runs2d * 8}, std::pair{&runs3d, max_runs3d * 8},
          std::pair{&page_time, n_pages * 4 + 4},
          std::pair{&ranges, uint64_t{kMaxHighlightRanges} * 8}}) {
      auto b = ctx.create_buffer(bytes, sb, true);
      if (!b) return tl::unexpected(b.error());
      *box = *b;
    }
    std::memset(page_time.mapped, 0, page_time.size_bytes);
    auto fb = ctx.create_buffer(4, sb, true);  // placeholder until the first frame
    if (!fb) return tl::unexpected(fb.error());
    frame = *fb;

    const auto sidew = static_cast<uint32_t>(side);
    const uint32_t vside = 1u << volume_bits;
    for (auto [img, f, w, h, d] :
         {std::tuple{&base, VK_FORMAT_R8G8B8A8_UNORM, sidew, sidew, 1u},
          std::tuple{&ram_pane, VK_FORMAT_R8G8B8A8_UNORM, sidew, sidew, 1u},
          std::tuple{&labels, VK_FORMAT_R8_UNORM, sidew, sidew, 1u},
          std::tuple{&screen_pane, VK_FORMAT_R8G8B8A8_UNORM, 1u, 1u, 1u},
          std::tuple{&volume, VK_FORMAT_R8G8B8A8_UNORM, vside, vside, vside},
          std::tuple{&ram3d, VK_FORMAT_R8G8B8A8_UNORM, opt.ram3d_width, opt.ram3d_height, 1u},
          std::tuple{&hud, VK_FORMAT_R8_UNORM, opt.canvas_width, opt.hud_height, 1u},
          std::tuple{&canvas, VK_FORMAT_R8G8B8A8_UNORM, opt.canvas_width, opt.canvas_height, 1u},
          std::tuple{&index, VK_FORMAT_R32_UINT, sidew, sidew, 1u},
          std::tuple{&mask, VK_FORMAT_R8_UNORM, sidew, sidew, 1u}}) {
      auto i = make_image(f, w, h, d);
      if (!i) return tl::unexpected(i.error());
      *img = *i;
    }
    for (auto [box, bytes] : {std::pair{&label_stage, uint64_t{side} * side},
                              std::pair{&hud_stage, uint64_t{opt.canvas_width} * opt.hud_height}}) {
      auto b = ctx.create_buffer(bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, true);
      if (!b) return tl::unexpected(b.error());
      *box = *b;
      std::memset(box->mapped, 0, bytes);
    }
    write_sets();
    // Each pixel's Hilbert index, once.
    GB_TRY(ctx.submit_and_wait([&](VkCommandBuffer c) {
      IndexPush ip{map.bits()};
      vkCmdBindPipeline(c, VK_PIPELINE_BIND_POINT_COMPUTE, p_index.pipeline);
      vkCmdBindDescriptorSets(c, VK_PIPELINE_BIND_POINT_COMPUTE, p_index.layout, 0, 1, &s_index, 0,
                              nullptr);
      vkCmdPushConstants(c, p_index.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof ip, &ip);
      vkCmdDispatch(c, groups(map.pane_width(), 16), groups(map.pane_height(), 16), 1);
    }));

    VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = ctx.command_pool();
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    if (VkResult r = vkAllocateCommandBuffers(dev, &ai, &cb); r != VK_SUCCESS) {
      return fail(Errc::kInternal, fmt::format("vkAllocateCommandBuffers: {}", vk_result_name(r)));
    }
    VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (VkResult r = vkCreateFence(dev, &fci, nullptr, &fence); r != VK_SUCCESS) {
      return fail(Errc::kInternal, fmt::format("vkCreateFence: {}", vk_result_name(r)));
    }
    if (ctx.timestamp_period_ns() > 0) {
      VkQueryPoolCreateInfo qci{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
      qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
      qci.queryCount = 2;
      if (vkCreateQueryPool(dev, &qci, nullptr, &queries) != VK_SUCCESS) queries = VK_NULL_HANDLE;
    }
    return {};
  }

  void write_sets() {
    if (!ram_direct) write_set(s_scatter, {{&incoming_dev}, {&scatter_list}, {&ram_dev}});
    write_set(s_cells, {{&ram_dev}, {&runs2d}, {nullptr, &base}});
    write_set(s_volume, {{&ram_dev}, {&runs3d}, {nullptr, &volume}});
    write_set(s_overlay, {{nullptr, &base},
                          {&page_time},
                          {nullptr, &index},
                          {nullptr, &mask},
                          {nullptr, &labels},
                          {nullptr, &ram_pane}});
    write_set(s_index, {{nullptr, &index}});
    write_set(s_mask, {{nullptr, &index}, {&ranges}, {nullptr, &mask}});
    write_set(s_screen, {{&frame}, {nullptr, &screen_pane}});
    write_set(s_raymarch, {{nullptr, &volume}, {nullptr, &ram3d}});
    write_set(s_compose, {{nullptr, &screen_pane},
                          {nullptr, opt.show_3d ? &ram3d : &ram_pane},
                          {nullptr, &hud},
                          {nullptr, &canvas}});
  }

  void draw_labels() {
    std::memset(label_stage.mapped, 0, label_stage.size_bytes);
    labels_dirty = true;
    if (!font || highlight.label.empty() || highlight.runs.empty()) return;
    const Highlight::Run* largest = &highlight.runs[0];
    for (const auto& r : highlight.runs) {
      if (r.size_bytes > largest->size_bytes) largest = &r;
    }
    auto cell = map.locate(Gpa(largest->gpa.value + largest->size_bytes / 2));
    if (!cell) return;
    TextMask mask;
    mask.width = map.pane_width();
    mask.height = map.pane_height();
    mask.data.assign(uint64_t{mask.width} * mask.height, 0);
    const int32_t w = static_cast<int32_t>(font->measure(highlight.label));
    const int32_t x =
        std::clamp<int32_t>(static_cast<int32_t>(cell->x) - w / 2, 0,
                            std::max<int32_t>(0, static_cast<int32_t>(mask.width) - w));
    const int32_t y =
        std::clamp<int32_t>(static_cast<int32_t>(cell->y) + 4, 0,
                            std::max<int32_t>(0, static_cast<int32_t>(mask.height) -
                                                     static_cast<int32_t>(font->line_height())));
    font->draw(mask, x, y, highlight.label);
    std::memcpy(label_stage.mapped, mask.data.data(), mask.data.size());
  }

  void draw_hud() {
    std::memset(hud_stage.mapped, 0, hud_stage.size_bytes);
    hud_dirty = true;
    if (!font) return;
    TextMask mask;
    mask.width = opt.canvas_width;
    mask.height = opt.hud_height;
    mask.data.assign(uint64_t{mask.width} * mask.height, 0);
    const int32_t y = std::max<int32_t>(
        0, (static_cast<int32_t>(opt.hud_height) - static_cast<int32_t>(font->line_height())) / 2);
    font->draw(mask, 6, y, hud_text);
    std::memcpy(hud_stage.mapped, mask.data.data(), mask.data.size());
  }

  void record(uint32_t now_ms) {
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    vkResetCommandBuffer(cb, 0);
    vkBeginCommandBuffer(cb, &bi);
    if (queries) {
      vkCmdResetQueryPool(cb, queries, 0, 2);
      vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries, 0);
    }
    if (full_copy) {
      VkBufferCopy all{0, 0, ram_dev.size_bytes};
      vkCmdCopyBuffer(cb, ram_stage.buffer, ram_dev.buffer, 1, &all);
    } else if (!slot_pages.empty()) {
      VkBufferCopy packed{0, 0, slot_pages.size() * kPageBytes};
      vkCmdCopyBuffer(cb, incoming_stage.buffer, incoming_dev.buffer, 1, &packed);
      barrier(cb);
      ScatterPush sp{static_cast<uint32_t>(slot_pages.size()),
                     static_cast<uint32_t>(std::min<uint64_t>(ram_dev.size_bytes / 4, UINT32_MAX))};
      vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_scatter.pipeline);
      vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_scatter.layout, 0, 1,
                              &s_scatter, 0, nullptr);
      vkCmdPushConstants(cb, p_scatter.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof sp, &sp);
      dispatch_runs(cb, static_cast<uint32_t>(slot_pages.size()));
    }
    VkBufferImageCopy bic{};
    bic.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    if (labels_dirty) {
      bic.imageExtent = {labels.width, labels.height, 1};
      vkCmdCopyBufferToImage(cb, label_stage.buffer, labels.image, VK_IMAGE_LAYOUT_GENERAL, 1,
                             &bic);
    }
    if (hud_dirty) {
      bic.imageExtent = {hud.width, hud.height, 1};
      vkCmdCopyBufferToImage(cb, hud_stage.buffer, hud.image, VK_IMAGE_LAYOUT_GENERAL, 1, &bic);
    }
    barrier(cb);
    const auto ram_words =
        static_cast<uint32_t>(std::min<uint64_t>(ram_dev.size_bytes / 4, UINT32_MAX));
    if (n_runs2d) {
      CellsPush pc{map.bits(), static_cast<uint32_t>(map.bytes_per_pixel() / 4), ram_words,
                   n_runs2d};
      vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_cells.pipeline);
      vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_cells.layout, 0, 1, &s_cells, 0,
                              nullptr);
      vkCmdPushConstants(cb, p_cells.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof pc, &pc);
      dispatch_runs(cb, n_runs2d);
    }
    if (n_runs3d) {
      CellsPush pc{volume_bits, static_cast<uint32_t>((uint64_t{1} << bpv_log2) / 4), ram_words,
                   n_runs3d};
      vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_volume.pipeline);
      vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_volume.layout, 0, 1, &s_volume,
                              0, nullptr);
      vkCmdPushConstants(cb, p_volume.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof pc, &pc);
      dispatch_runs(cb, n_runs3d);
    }
    if (screen_dirty && screen_w > 0) {
      ScreenPush sp{screen_w, screen_h, screen_stride_words, opt.crt ? 1u : 0u, brightness};
      vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_screen.pipeline);
      vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_screen.layout, 0, 1, &s_screen,
                              0, nullptr);
      vkCmdPushConstants(cb, p_screen.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof sp, &sp);
      vkCmdDispatch(cb, groups(screen_w, 16), groups(screen_h, 16), 1);
    }
    if (mask_dirty) {
      MaskPush mp{map.bits(), bpp_log2, n_ranges};
      vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_mask.pipeline);
      vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_mask.layout, 0, 1, &s_mask, 0,
                              nullptr);
      vkCmdPushConstants(cb, p_mask.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof mp, &mp);
      vkCmdDispatch(cb, groups(map.pane_width(), 16), groups(map.pane_height(), 16), 1);
    }
    barrier(cb);
    {
      OverlayPush op{map.bits(),
                     bpp_log2,
                     now_ms,
                     opt.glow_ms,
                     n_ranges > 0 ? 1u : 0u,
                     static_cast<uint32_t>(n_pages)};
      vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_overlay.pipeline);
      vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_overlay.layout, 0, 1,
                              &s_overlay, 0, nullptr);
      vkCmdPushConstants(cb, p_overlay.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof op, &op);
      vkCmdDispatch(cb, groups(map.pane_width(), 16), groups(map.pane_height(), 16), 1);
    }
    if (opt.show_3d) record_raymarch();
    barrier(cb);
    {
      ComposePush cp{opt.canvas_width,
                     opt.canvas_height,
                     opt.hud_height,
                     screen_w,
                     screen_h,
                     opt.show_3d ? ram3d.width : ram_pane.width,
                     opt.show_3d ? ram3d.height : ram_pane.height,
                     (screen_stale ? 1u : 0u) | (ram_stale ? 2u : 0u)};
      vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_compose.pipeline);
      vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_compose.layout, 0, 1,
                              &s_compose, 0, nullptr);
      vkCmdPushConstants(cb, p_compose.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof cp, &cp);
      vkCmdDispatch(cb, groups(opt.canvas_width, 16), groups(opt.canvas_height, 16), 1);
    }
    barrier(cb);
    if (queries) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries, 1);
    vkEndCommandBuffer(cb);
  }

  void record_raymarch() {
    RaymarchPush rp{
        ram3d.width,   ram3d.height,
        volume_bits,   cam.yaw_rad,
        cam.pitch_rad, cam.distance,
        cam.density,   static_cast<float>(std::tan(cam.fov_deg * 3.14159265358979 / 360.0))};
    vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_raymarch.pipeline);
    vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p_raymarch.layout, 0, 1,
                            &s_raymarch, 0, nullptr);
    vkCmdPushConstants(cb, p_raymarch.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof rp, &rp);
    vkCmdDispatch(cb, groups(ram3d.width, 16), groups(ram3d.height, 16), 1);
  }

  Result<void> submit() {
    VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cb;
    vkResetFences(ctx.device(), 1, &fence);
    VkResult r = vkQueueSubmit(ctx.queue(), 1, &si, fence);
    if (r == VK_SUCCESS) r = vkWaitForFences(ctx.device(), 1, &fence, VK_TRUE, 10'000'000'000ull);
    if (r == VK_TIMEOUT) return fail(Errc::kTimeout, "the GPU did not finish a frame within 10 s");
    if (r != VK_SUCCESS)
      return fail(Errc::kInternal, fmt::format("frame submit: {}", vk_result_name(r)));
    return {};
  }

  double gpu_ms() {
    if (!queries) return 0;
    uint64_t ts[2] = {0, 0};
    if (vkGetQueryPoolResults(ctx.device(), queries, 0, 2, sizeof ts, ts, sizeof(uint64_t),
                              VK_QUERY_RESULT_64_BIT) != VK_SUCCESS) {
      return 0;
    }
    return static_cast<double>(ts[1] - ts[0]) * ctx.timestamp_period_ns() / 1e6;
  }
};

Renderer::Renderer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Renderer::~Renderer() = default;

Result<std::unique_ptr<Renderer>> Renderer::create(VkContext& ctx, const RendererOptions& options,
                                                   const shared::RamLayout& layout) {
  RendererOptions o = options;
  auto bad = [](std::string what) { return fail(Errc::kInvalidArgument, std::move(what)); };
  if (o.canvas_width < 320 || o.canvas_width > 8192 || o.canvas_height < 240 ||
      o.canvas_height > 8192) {
    return bad(fmt::format("canvas {}x{}: expected 320..8192 x 240..8192", o.canvas_width,
                           o.canvas_height));
  }
  if (o.hud_height < 8 || o.hud_height > o.canvas_height / 4) {
    return bad(fmt::format("hud_height {}: expected 8..canvas_height/4", o.hud_height));
  }
  if (o.volume_bits < 4 || o.volume_bits > 9) {
    return bad(fmt::format("volume_bits {}: expected 4..9", o.volume_bits));
  }
  if (o.ram3d_width == 0 || o.ram3d_height == 0) {
    o.ram3d_width = o.ram3d_height = ctx.is_cpu_device() ? 512 : 768;
  }
  if (o.ram3d_width < 64 || o.ram3d_width > 4096 || o.ram3d_height < 64 || o.ram3d_height > 4096) {
    return bad(
        fmt::format("3D view {}x{}: expected 64..4096 per side", o.ram3d_width, o.ram3d_height));
  }
  if (layout.file_size_bytes() == 0 || layout.file_size_bytes() > (uint64_t{16} << 30)) {
    return bad(
        fmt::format("RAM file of {} bytes: expected 1 byte .. 16 GiB", layout.file_size_bytes()));
  }
  if (o.bytes_per_pixel == 0) o.bytes_per_pixel = default_bytes_per_pixel(layout.file_size_bytes());
  if (o.bytes_per_pixel < 4 || o.bytes_per_pixel > 65536 ||
      !std::has_single_bit(o.bytes_per_pixel)) {
    return bad(fmt::format("bytes_per_pixel {}: expected a power of two from 4 to 65536",
                           o.bytes_per_pixel));
  }
  auto map = RamMap::create(layout, o.bytes_per_pixel);
  if (!map) return tl::unexpected(map.error());
  if (map->bits() > 13) {
    return bad(
        fmt::format("bytes_per_pixel {}: the RAM map would be {} pixels wide (at most "
                    "8192); use a larger bytes_per_pixel",
                    o.bytes_per_pixel, map->pane_width()));
  }
  auto impl = std::make_unique<Impl>(ctx, o, std::move(*map));
  impl->bpp_log2 = static_cast<unsigned>(std::countr_zero(o.bytes_per_pixel));
  impl->volume_bits = o.volume_bits;
  {
    const uint64_t voxels = uint64_t{1} << (3 * o.volume_bits);
    uint64_t bpv = 4;
    while (bpv * voxels < layout.file_size_bytes()) bpv <<= 1;
    impl->bpv_log2 = static_cast<unsigned>(std::countr_zero(bpv));
  }
  GB_TRY(impl->init());
  return std::unique_ptr<Renderer>(new Renderer(std::move(impl)));
}

const RamMap& Renderer::ram_map() const { return impl_->map; }
const RendererOptions& Renderer::options() const { return impl_->opt; }
VkImage Renderer::canvas_image() const { return impl_->canvas.image; }
uint32_t Renderer::canvas_width() const { return impl_->opt.canvas_width; }
uint32_t Renderer::canvas_height() const { return impl_->opt.canvas_height; }
uint32_t Renderer::screen_width() const { return impl_->screen_w; }
uint32_t Renderer::screen_height() const { return impl_->screen_h; }
const Camera& Renderer::camera() const { return impl_->cam; }

void Renderer::set_camera(const Camera& c) {
  Camera k = c;
  k.pitch_rad = std::clamp(k.pitch_rad, -1.5f, 1.5f);
  k.distance = std::clamp(k.distance, 1.0f, 20.0f);
  k.density = std::clamp(k.density, 0.001f, 1.0f);
  k.fov_deg = std::clamp(k.fov_deg, 10.0f, 120.0f);
  impl_->cam = k;
}

void Renderer::set_show_3d(bool on) {
  if (impl_->opt.show_3d == on) return;
  impl_->opt.show_3d = on;
  impl_->write_sets();
}

void Renderer::set_stale(bool screen_stale, bool ram_stale) {
  impl_->screen_stale = screen_stale;
  impl_->ram_stale = ram_stale;
}

void Renderer::set_brightness(float factor) {
  factor = std::clamp(factor, 0.0f, 4.0f);
  if (factor != impl_->brightness) impl_->screen_dirty = true;
  impl_->brightness = factor;
}

void Renderer::set_hud_text(std::string text) {
  if (text == impl_->hud_text) return;
  impl_->hud_text = std::move(text);
  impl_->draw_hud();
}

Result<void> Renderer::set_font(const std::string& path, uint32_t pixel_height) {
  auto f = TextRasterizer::create(path, pixel_height);
  if (!f) return tl::unexpected(f.error());
  impl_->font = std::move(*f);
  impl_->draw_hud();
  impl_->draw_labels();
  return {};
}

Result<uint64_t> Renderer::update_ram(std::span<const uint8_t> ram,
                                      std::span<const uint32_t> changed_pages, bool full,
                                      uint32_t now_ms) {
  Impl& m = *impl_;
  if (ram.size() != m.file_bytes) {
    return fail(Errc::kInvalidArgument,
                fmt::format("RAM of {} bytes; the layout's file has {}", ram.size(), m.file_bytes));
  }
  full = full || m.first_ram;
  m.first_ram = false;
  uint8_t* dst = static_cast<uint8_t*>(m.ram_direct ? m.ram_dev.mapped : m.ram_stage.mapped);
  std::vector<uint32_t> runs2d, runs3d;
  uint64_t ignored = 0;
  const uint64_t side = m.map.pane_width();
  const uint64_t total_cells = side * side;
  const uint64_t total_voxels = uint64_t{1} << (3 * m.volume_bits);
  if (full) {
    std::memcpy(dst, ram.data(), ram.size());
    m.full_copy = !m.ram_direct;
    m.clear_slots();
    m.pending_upload_bytes += ram.size();
    split_runs(0, total_cells, runs2d);
    split_runs(0, total_voxels, runs3d);
    m.pending_cells += total_cells;
    m.pending_voxels += total_voxels;
  } else {
    std::vector<uint32_t> pages;
    pages.reserve(changed_pages.size());
    for (uint32_t p : changed_pages) {
      if (p < m.n_pages) {
        pages.push_back(p);
      } else {
        ++ignored;
      }
    }
    std::sort(pages.begin(), pages.end());
    pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
    auto* page_time = static_cast<uint32_t*>(m.page_time.mapped);
    const uint32_t stamp = now_ms == 0 ? 1 : now_ms;
    for (size_t i = 0; i < pages.size();) {
      size_t j = i + 1;
      while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
      const uint64_t off = uint64_t{pages[i]} * kPageBytes;
      const uint64_t len = std::min<uint64_t>((j - i) * kPageBytes, ram.size() - off);
      if (m.ram_direct || m.full_copy) {
        std::memcpy(dst + off, ram.data() + off, len);  // direct, or into this frame's full copy
      } else {
        for (size_t k = i; k < j && !m.full_copy; ++k) m.stage_page(ram, pages[k]);
      }
      m.pending_upload_bytes += len;
      for (size_t k = i; k < j; ++k) page_time[pages[k]] = stamp;
      i = j;
    }
    const size_t before2d = runs2d.size(), before3d = runs3d.size();
    pages_to_runs(pages, m.bpp_log2, total_cells, runs2d);
    pages_to_runs(pages, m.bpv_log2, total_voxels, runs3d);
    for (size_t k = before2d + 1; k < runs2d.size(); k += 2) m.pending_cells += runs2d[k];
    for (size_t k = before3d + 1; k < runs3d.size(); k += 2) m.pending_voxels += runs3d[k];
  }
  // Append to what is pending since the last render (several updates per frame).
  auto append = [](VkBufferBox& box, uint32_t& n, const std::vector<uint32_t>& v) {
    const uint64_t cap = box.size_bytes / 8;
    const uint64_t add = std::min<uint64_t>(v.size() / 2, cap - n);
    std::memcpy(static_cast<uint32_t*>(box.mapped) + uint64_t{n} * 2, v.data(), add * 8);
    n += static_cast<uint32_t>(add);
  };
  if (full) {
    m.n_runs2d = 0;
    m.n_runs3d = 0;
  }
  append(m.runs2d, m.n_runs2d, runs2d);
  append(m.runs3d, m.n_runs3d, runs3d);
  return ignored;
}

Result<void> Renderer::update_screen(const uint8_t* bgrx, size_t size_bytes, uint32_t width,
                                     uint32_t height, uint32_t stride_bytes) {
  Impl& m = *impl_;
  if (!bgrx || width == 0 || height == 0 || width > kMaxScreenDim || height > kMaxScreenDim ||
      stride_bytes < uint64_t{width} * 4 || stride_bytes % 4 != 0 ||
      size_bytes < uint64_t{stride_bytes} * (height - 1) + uint64_t{width} * 4) {
    return fail(Errc::kInvalidArgument,
                fmt::format("screen frame {}x{} stride {} in {} bytes: bad geometry", width, height,
                            stride_bytes, size_bytes));
  }
  const uint64_t need = uint64_t{stride_bytes} * height;
  if (width != m.screen_w || height != m.screen_h || need > m.frame.size_bytes) {
    vkDeviceWaitIdle(m.ctx.device());
    auto img = m.make_image(VK_FORMAT_R8G8B8A8_UNORM, width, height);
    if (!img) return tl::unexpected(img.error());
    if (need > m.frame.size_bytes) {
      auto b = m.ctx.create_buffer(need, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, true);
      if (!b) return tl::unexpected(b.error());
      m.ctx.destroy(m.frame);
      m.frame = *b;
    }
    m.ctx.destroy(m.screen_pane);
    m.screen_pane = *img;
    m.screen_w = width;
    m.screen_h = height;
    m.write_sets();
  }
  std::memcpy(m.frame.mapped, bgrx, std::min<uint64_t>(need, size_bytes));
  m.screen_stride_words = stride_bytes / 4;
  m.pending_upload_bytes += std::min<uint64_t>(need, size_bytes);
  m.screen_dirty = true;
  return {};
}

Result<void> Renderer::set_highlight(const Highlight& h) {
  Impl& m = *impl_;
  const auto& layout = m.map.layout();
  std::vector<std::pair<uint64_t, uint64_t>> pages;  // [first, end) file pages
  uint64_t budget = m.n_pages * 2 + 1024;            // bounds the walk on hostile runs
  for (const auto& r : h.runs) {
    if (r.size_bytes == 0) continue;
    const uint64_t first = r.gpa.value & ~(kPageBytes - 1);
    const uint64_t end = r.gpa.value + std::min<uint64_t>(r.size_bytes, UINT64_MAX - r.gpa.value);
    for (uint64_t g = first; g < end && budget > 0; g += kPageBytes, --budget) {
      auto off = layout.file_offset(Gpa(g), 0);
      if (!off) continue;
      const uint64_t p = *off / kPageBytes;
      if (!pages.empty() && pages.back().second == p) {
        ++pages.back().second;
      } else {
        pages.push_back({p, p + 1});
      }
    }
  }
  std::sort(pages.begin(), pages.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (const auto& r : pages) {
    if (!merged.empty() && r.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  if (merged.size() > kMaxHighlightRanges) merged.resize(kMaxHighlightRanges);
  auto* out = static_cast<uint32_t*>(m.ranges.mapped);
  for (size_t i = 0; i < merged.size(); ++i) {
    out[2 * i] = static_cast<uint32_t>(merged[i].first);
    out[2 * i + 1] = static_cast<uint32_t>(merged[i].second);
  }
  m.n_ranges = static_cast<uint32_t>(merged.size());
  m.mask_dirty = true;
  m.highlight = h;
  m.draw_labels();
  return {};
}

Result<FrameStats> Renderer::render(uint32_t now_ms) {
  Impl& m = *impl_;
  const auto t0 = std::chrono::steady_clock::now();
  FrameStats st;
  if (m.labels_dirty) m.pending_upload_bytes += m.label_stage.size_bytes;
  if (m.hud_dirty) m.pending_upload_bytes += m.hud_stage.size_bytes;
  m.record(now_ms);
  auto ok = m.submit();
  st.upload_bytes = m.pending_upload_bytes;
  st.cells_updated = m.pending_cells;
  st.voxels_updated = m.pending_voxels;
  m.clear_slots();
  m.full_copy = false;
  m.n_runs2d = m.n_runs3d = 0;
  m.pending_upload_bytes = m.pending_cells = m.pending_voxels = 0;
  m.labels_dirty = m.hud_dirty = m.screen_dirty = m.mask_dirty = false;
  if (!ok) return tl::unexpected(ok.error());
  ++m.frames;
  st.gpu_ms = m.gpu_ms();
  st.cpu_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

Result<RgbaImage> Renderer::read_pane(Pane pane) {
  Impl& m = *impl_;
  const VkImageBox* img = nullptr;
  switch (pane) {
    case Pane::kScreen:
      if (m.screen_w == 0) {
        return fail(Errc::kUnavailable,
                    "no screen frame has arrived yet (is vm-supervisor running?)");
      }
      img = &m.screen_pane;
      break;
    case Pane::kRam:
      img = &m.ram_pane;
      break;
    case Pane::kRam3d:
      img = &m.ram3d;
      break;
    case Pane::kAll:
      img = &m.canvas;
      break;
  }
  if (pane == Pane::kRam3d && !m.opt.show_3d) {
    // Not drawn in 2D mode: draw it now (the volume is kept current either way).
    GB_TRY(m.ctx.submit_and_wait([&](VkCommandBuffer c) {
      std::swap(m.cb, c);
      m.record_raymarch();
      std::swap(m.cb, c);
    }));
  }
  const uint64_t bytes = uint64_t{img->width} * img->height * 4;
  if (m.readback.size_bytes < bytes) {
    m.ctx.destroy(m.readback);
    auto b = m.ctx.create_buffer(bytes, VK_BUFFER_USAGE_TRANSFER_DST_BIT, true);
    if (!b) return tl::unexpected(b.error());
    m.readback = *b;
  }
  VkBufferImageCopy bic{};
  bic.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  bic.imageExtent = {img->width, img->height, 1};
  GB_TRY(m.ctx.submit_and_wait([&](VkCommandBuffer c) {
    barrier(c);
    vkCmdCopyImageToBuffer(c, img->image, VK_IMAGE_LAYOUT_GENERAL, m.readback.buffer, 1, &bic);
    VkMemoryBarrier b{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    b.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    b.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    vkCmdPipelineBarrier(c, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &b, 0,
                         nullptr, 0, nullptr);
  }));
  RgbaImage out;
  out.width = img->width;
  out.height = img->height;
  out.rgba.resize(bytes);
  std::memcpy(out.rgba.data(), m.readback.mapped, bytes);
  return out;
}

bool Renderer::canvas_to_guest(double x, double y, int32_t* gx, int32_t* gy) const {
  const Impl& m = *impl_;
  if (m.screen_w == 0 || y < m.opt.hud_height) return false;
  const double half_w = m.opt.canvas_width / 2;
  if (x >= half_w) return false;
  const double box_w = half_w - 8, box_h = double(m.opt.canvas_height - m.opt.hud_height) - 8;
  const double s = std::min(box_w / m.screen_w, box_h / m.screen_h);
  const double ox = 4 + (box_w - m.screen_w * s) * 0.5;
  const double oy = m.opt.hud_height + 4 + (box_h - m.screen_h * s) * 0.5;
  const double rx = (x - ox) / s, ry = (y - oy) / s;
  if (rx < 0 || ry < 0 || rx >= m.screen_w || ry >= m.screen_h) return false;
  *gx = static_cast<int32_t>(rx);
  *gy = static_cast<int32_t>(ry);
  return true;
}

}  // namespace glassbox::compositor
