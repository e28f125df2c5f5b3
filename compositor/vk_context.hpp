// The compositor's Vulkan device: instance, one physical device, one queue that does compute
// (and graphics, for the window's blit), a command pool, and the buffer/image helpers the
// renderer builds on. Headless by default: no surface extension is asked for unless the
// caller wants a window (instance extensions from GLFW).
//
// Device choice (Vulkan 1.2+ required): `[compositor] device` as a case-insensitive substring
// of the device name when set, else discrete GPU > integrated GPU > virtual GPU > CPU
// (Mesa lavapipe/llvmpipe). Errors are one line naming what to install: no Vulkan loader or
// no ICD -> "install mesa-vulkan-drivers (lavapipe) or a GPU driver".
//
// Thread-safety: a VkContext is used from one thread (the render loop); its handles may be
// read from others.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::compositor {

struct VkContextOptions {
  std::string device_filter;                     // substring of the device name, or ""
  std::vector<std::string> instance_extensions;  // e.g. GLFW's surface extensions
  bool want_swapchain = false;                   // enable VK_KHR_swapchain on the device
  bool validation = false;                       // VK_LAYER_KHRONOS_validation if present
};

// A buffer with its memory; `mapped` is non-null for host-visible memory (persistently mapped,
// coherent). Move-only; destroyed with its context's device.
struct VkBufferBox {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkDeviceSize size_bytes = 0;
  void* mapped = nullptr;
  bool device_local = false;
};

// A 2D or 3D image with its memory and a full view.
struct VkImageBox {
  VkImage image = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  VkImageView view = VK_NULL_HANDLE;
  VkFormat format = VK_FORMAT_UNDEFINED;
  uint32_t width = 0, height = 0, depth = 1;
};

class VkContext {
 public:
  // Errors: kUnavailable "no Vulkan device: ..." (with the package to install), kUnsupported
  // when the chosen device is below Vulkan 1.2 or has no compute queue, kNotFound when
  // `device_filter` matches no device (the message lists the devices seen).
  static Result<std::unique_ptr<VkContext>> create(const VkContextOptions& options);
  ~VkContext();
  VkContext(const VkContext&) = delete;
  VkContext& operator=(const VkContext&) = delete;

  VkInstance instance() const { return instance_; }
  VkPhysicalDevice physical_device() const { return physical_; }
  VkDevice device() const { return device_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }
  VkCommandPool command_pool() const { return pool_; }
  // "NVIDIA H100 80GB HBM3 (discrete, Vulkan 1.3.289)" / "llvmpipe (LLVM 15.0.6, 256 bits) (cpu,
  // ...)"
  const std::string& device_description() const { return description_; }
  const std::string& device_name() const { return name_; }
  bool is_cpu_device() const { return cpu_device_; }
  // Nanoseconds per timestamp tick; 0 when the queue has no timestamps.
  double timestamp_period_ns() const { return timestamp_period_ns_; }

  // A buffer of `size_bytes` for `usage`. `host_visible`: mapped and coherent (preferring
  // device-local memory that is also host-visible, as on lavapipe and ReBAR GPUs); otherwise
  // device-local. Errors: kUnavailable when no memory type fits or allocation fails.
  Result<VkBufferBox> create_buffer(VkDeviceSize size_bytes, VkBufferUsageFlags usage,
                                    bool host_visible);
  // An optimal-tiling image (depth 1: 2D) with a view. Errors as create_buffer.
  Result<VkImageBox> create_image(VkFormat format, uint32_t width, uint32_t height, uint32_t depth,
                                  VkImageUsageFlags usage);
  void destroy(VkBufferBox& b);
  void destroy(VkImageBox& i);

  // A compute pipeline from SPIR-V words with a descriptor-set layout of `bindings` and a push
  // constant block of `push_bytes`. Errors: kInternal naming the shader.
  struct ComputePipeline {
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    VkPipeline pipeline = VK_NULL_HANDLE;
  };
  Result<ComputePipeline> create_compute_pipeline(const char* name, std::span<const uint32_t> spirv,
                                                  std::span<const VkDescriptorType> bindings,
                                                  uint32_t push_bytes);
  void destroy(ComputePipeline& p);

  // Records into a fresh primary command buffer, submits it and waits (bounded: 10 s).
  // Errors: kInternal / kTimeout with the VkResult name.
  template <typename F>
  Result<void> submit_and_wait(F&& record) {
    VkCommandBuffer cb = VK_NULL_HANDLE;
    GB_TRY(begin_one_shot(&cb));
    record(cb);
    return end_one_shot(cb);
  }

 private:
  VkContext() = default;
  Result<void> begin_one_shot(VkCommandBuffer* out);
  Result<void> end_one_shot(VkCommandBuffer cb);
  Result<uint32_t> find_memory_type(uint32_t type_bits, VkMemoryPropertyFlags want,
                                    VkMemoryPropertyFlags avoid) const;

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkFence one_shot_fence_ = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties memory_{};
  std::string name_, description_;
  bool cpu_device_ = false;
  double timestamp_period_ns_ = 0;
};

// "VK_ERROR_OUT_OF_DEVICE_MEMORY" etc. Never null.
const char* vk_result_name(VkResult r) noexcept;

// An image layout transition barrier on all subresources (compute/transfer stages).
void image_barrier(VkCommandBuffer cb, VkImage image, VkImageLayout from, VkImageLayout to,
                   VkAccessFlags src_access, VkAccessFlags dst_access,
                   VkPipelineStageFlags src_stage, VkPipelineStageFlags dst_stage);

}  // namespace glassbox::compositor
