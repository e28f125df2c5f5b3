#include "compositor/vk_context.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace glassbox::compositor {
namespace {

constexpr uint64_t kWaitNs = 10'000'000'000ull;  // bounded waits: 10 s

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int type_rank(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return 3;
    default:
      return 4;
  }
}

const char* type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return "cpu";
    default:
      return "other";
  }
}

constexpr const char* kInstallHint =
    "install mesa-vulkan-drivers (Mesa lavapipe, runs anywhere) or your GPU's Vulkan driver";

VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                             VkDebugUtilsMessageTypeFlagsEXT,
                                             const VkDebugUtilsMessengerCallbackDataEXT* data,
                                             void*) {
  if (severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT && data && data->pMessage) {
    spdlog::warn("vulkan validation: {}", data->pMessage);
  }
  return VK_FALSE;
}

}  // namespace

const char* vk_result_name(VkResult r) noexcept {
  switch (r) {
#define GB_VK_CASE(x) \
  case x:             \
    return #x;
    GB_VK_CASE(VK_SUCCESS)
    GB_VK_CASE(VK_NOT_READY)
    GB_VK_CASE(VK_TIMEOUT)
    GB_VK_CASE(VK_INCOMPLETE)
    GB_VK_CASE(VK_SUBOPTIMAL_KHR)
    GB_VK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    GB_VK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    GB_VK_CASE(VK_ERROR_INITIALIZATION_FAILED)
    GB_VK_CASE(VK_ERROR_DEVICE_LOST)
    GB_VK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    GB_VK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    GB_VK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    GB_VK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    GB_VK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    GB_VK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    GB_VK_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    GB_VK_CASE(VK_ERROR_SURFACE_LOST_KHR)
    GB_VK_CASE(VK_ERROR_NATIVE_WINDOW_IN_USE_KHR)
    GB_VK_CASE(VK_ERROR_OUT_OF_DATE_KHR)
#undef GB_VK_CASE
    default:
      return "VK_ERROR_(other)";
  }
}

void image_barrier(VkCommandBuffer cb, VkImage image, VkImageLayout from, VkImageLayout to,
                   VkAccessFlags src_access, VkAccessFlags dst_access,
                   VkPipelineStageFlags src_stage, VkPipelineStageFlags dst_stage) {
  VkImageMemoryBarrier b{VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER};
  b.srcAccessMask = src_access;
  b.dstAccessMask = dst_access;
  b.oldLayout = from;
  b.newLayout = to;
  b.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  b.image = image;
  b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  vkCmdPipelineBarrier(cb, src_stage, dst_stage, 0, 0, nullptr, 0, nullptr, 1, &b);
}

Result<std::unique_ptr<VkContext>> VkContext::create(const VkContextOptions& options) {
  std::unique_ptr<VkContext> ctx(new VkContext());

  uint32_t loader_version = 0;
  if (vkEnumerateInstanceVersion(&loader_version) != VK_SUCCESS ||
      loader_version < VK_API_VERSION_1_2) {
    return fail(
        Errc::kUnsupported,
        fmt::format("no Vulkan 1.2 loader (found {}.{}): {}", VK_API_VERSION_MAJOR(loader_version),
                    VK_API_VERSION_MINOR(loader_version), kInstallHint));
  }

  std::vector<const char*> exts;
  for (const auto& e : options.instance_extensions) exts.push_back(e.c_str());
  std::vector<const char*> layers;
  if (options.validation) {
    uint32_t n = 0;
    vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> props(n);
    vkEnumerateInstanceLayerProperties(&n, props.data());
    for (const auto& p : props) {
      if (std::strcmp(p.layerName, "VK_LAYER_KHRONOS_validation") == 0) {
        layers.push_back("VK_LAYER_KHRONOS_validation");
        exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
      }
    }
    if (layers.empty())
      spdlog::warn("compositor: validation asked for; no validation layer installed");
  }

  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "glassbox-compositor";
  app.apiVersion = VK_API_VERSION_1_2;
  VkInstanceCreateInfo ici{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ici.pApplicationInfo = &app;
  ici.enabledExtensionCount = static_cast<uint32_t>(exts.size());
  ici.ppEnabledExtensionNames = exts.data();
  ici.enabledLayerCount = static_cast<uint32_t>(layers.size());
  ici.ppEnabledLayerNames = layers.data();
  if (VkResult r = vkCreateInstance(&ici, nullptr, &ctx->instance_); r != VK_SUCCESS) {
    return fail(Errc::kUnavailable, fmt::format("no Vulkan device: vkCreateInstance: {}; {}",
                                                vk_result_name(r), kInstallHint));
  }
  if (!layers.empty()) {
    auto create_messenger = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(ctx->instance_, "vkCreateDebugUtilsMessengerEXT"));
    if (create_messenger) {
      VkDebugUtilsMessengerCreateInfoEXT mci{
          VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT};
      mci.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                            VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
      mci.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                        VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT;
      mci.pfnUserCallback = on_validation;
      create_messenger(ctx->instance_, &mci, nullptr, &ctx->messenger_);
    }
  }

  uint32_t n_devices = 0;
  vkEnumeratePhysicalDevices(ctx->instance_, &n_devices, nullptr);
  if (n_devices == 0) {
    return fail(Errc::kUnavailable, fmt::format("no Vulkan device: the loader found no driver "
                                                "(ICD); {}",
                                                kInstallHint));
  }
  std::vector<VkPhysicalDevice> devices(n_devices);
  vkEnumeratePhysicalDevices(ctx->instance_, &n_devices, devices.data());

  const std::string filter = lower(options.device_filter);
  std::string seen;
  int best_rank = 1000;
  for (VkPhysicalDevice pd : devices) {
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    seen += fmt::format("{}'{}' ({})", seen.empty() ? "" : ", ", props.deviceName,
                        type_name(props.deviceType));
    if (!filter.empty() && lower(props.deviceName).find(filter) == std::string::npos) continue;
    if (props.apiVersion < VK_API_VERSION_1_2) continue;
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> qf(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf.data());
    int family = -1;
    for (uint32_t i = 0; i < nq; ++i) {
      const VkQueueFlags want = VK_QUEUE_COMPUTE_BIT | VK_QUEUE_GRAPHICS_BIT;
      if ((qf[i].queueFlags & want) == want) {
        family = static_cast<int>(i);
        break;
      }
    }
    if (family < 0) continue;
    int rank = type_rank(props.deviceType);
    if (rank < best_rank) {
      best_rank = rank;
      ctx->physical_ = pd;
      ctx->queue_family_ = static_cast<uint32_t>(family);
      ctx->name_ = props.deviceName;
      ctx->cpu_device_ = props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
      ctx->description_ = fmt::format(
          "{} ({}, Vulkan {}.{}.{})", props.deviceName, type_name(props.deviceType),
          VK_API_VERSION_MAJOR(props.apiVersion), VK_API_VERSION_MINOR(props.apiVersion),
          VK_API_VERSION_PATCH(props.apiVersion));
      ctx->timestamp_period_ns_ =
          qf[family].timestampValidBits > 0 ? props.limits.timestampPeriod : 0.0;
    }
  }
  if (ctx->physical_ == VK_NULL_HANDLE) {
    if (!filter.empty()) {
      return fail(Errc::kNotFound, fmt::format("[compositor] device '{}' matches no Vulkan 1.2 "
                                               "device with a compute+graphics queue (seen: {})",
                                               options.device_filter, seen));
    }
    return fail(Errc::kUnsupported,
                fmt::format("no Vulkan 1.2 device with a compute+graphics queue (seen: {}); {}",
                            seen, kInstallHint));
  }
  vkGetPhysicalDeviceMemoryProperties(ctx->physical_, &ctx->memory_);

  float priority = 1.0f;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = ctx->queue_family_;
  qci.queueCount = 1;
  qci.pQueuePriorities = &priority;
  std::vector<const char*> dev_exts;
  if (options.want_swapchain) dev_exts.push_back(VK_KHR_SWAPCHAIN_EXTENSION_NAME);
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  dci.enabledExtensionCount = static_cast<uint32_t>(dev_exts.size());
  dci.ppEnabledExtensionNames = dev_exts.data();
  if (VkResult r = vkCreateDevice(ctx->physical_, &dci, nullptr, &ctx->device_); r != VK_SUCCESS) {
    return fail(Errc::kUnavailable,
                fmt::format("vkCreateDevice on {}: {}", ctx->description_, vk_result_name(r)));
  }
  vkGetDeviceQueue(ctx->device_, ctx->queue_family_, 0, &ctx->queue_);

  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = ctx->queue_family_;
  if (VkResult r = vkCreateCommandPool(ctx->device_, &pci, nullptr, &ctx->pool_); r != VK_SUCCESS) {
    return fail(Errc::kInternal, fmt::format("vkCreateCommandPool: {}", vk_result_name(r)));
  }
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  if (VkResult r = vkCreateFence(ctx->device_, &fci, nullptr, &ctx->one_shot_fence_);
      r != VK_SUCCESS) {
    return fail(Errc::kInternal, fmt::format("vkCreateFence: {}", vk_result_name(r)));
  }
  return ctx;
}

VkContext::~VkContext() {
  if (device_) {
    vkDeviceWaitIdle(device_);
    if (one_shot_fence_) vkDestroyFence(device_, one_shot_fence_, nullptr);
    if (pool_) vkDestroyCommandPool(device_, pool_, nullptr);
    vkDestroyDevice(device_, nullptr);
  }
  if (messenger_) {
    auto destroy_messenger = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy_messenger) destroy_messenger(instance_, messenger_, nullptr);
  }
  if (instance_) vkDestroyInstance(instance_, nullptr);
}

Result<uint32_t> VkContext::find_memory_type(uint32_t type_bits, VkMemoryPropertyFlags want,
                                             VkMemoryPropertyFlags avoid) const {
  for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i) {
    const VkMemoryPropertyFlags f = memory_.memoryTypes[i].propertyFlags;
    if ((type_bits & (1u << i)) && (f & want) == want && (f & avoid) == 0) return i;
  }
  return fail(Errc::kUnavailable, fmt::format("no Vulkan memory type with flags 0x{:x}", want));
}

Result<VkBufferBox> VkContext::create_buffer(VkDeviceSize size_bytes, VkBufferUsageFlags usage,
                                             bool host_visible) {
  VkBufferBox box;
  box.size_bytes = size_bytes;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = std::max<VkDeviceSize>(size_bytes, 4);
  bci.usage = usage;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  if (VkResult r = vkCreateBuffer(device_, &bci, nullptr, &box.buffer); r != VK_SUCCESS) {
    return fail(Errc::kUnavailable,
                fmt::format("vkCreateBuffer({} bytes): {}", size_bytes, vk_result_name(r)));
  }
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device_, box.buffer, &req);
  Result<uint32_t> type = fail(Errc::kUnavailable, "");
  const VkMemoryPropertyFlags host =
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  if (host_visible) {
    type = find_memory_type(req.memoryTypeBits, host | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
    if (!type) type = find_memory_type(req.memoryTypeBits, host, 0);
  } else {
    type = find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
  }
  if (!type) {
    vkDestroyBuffer(device_, box.buffer, nullptr);
    return tl::unexpected(type.error());
  }
  VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = *type;
  if (VkResult r = vkAllocateMemory(device_, &mai, nullptr, &box.memory); r != VK_SUCCESS) {
    vkDestroyBuffer(device_, box.buffer, nullptr);
    return fail(Errc::kUnavailable,
                fmt::format("vkAllocateMemory({} bytes): {}", req.size, vk_result_name(r)));
  }
  vkBindBufferMemory(device_, box.buffer, box.memory, 0);
  box.device_local =
      (memory_.memoryTypes[*type].propertyFlags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) != 0;
  if (host_visible) {
    if (VkResult r = vkMapMemory(device_, box.memory, 0, VK_WHOLE_SIZE, 0, &box.mapped);
        r != VK_SUCCESS) {
      destroy(box);
      return fail(Errc::kUnavailable, fmt::format("vkMapMemory: {}", vk_result_name(r)));
    }
  }
  return box;
}

Result<VkImageBox> VkContext::create_image(VkFormat format, uint32_t width, uint32_t height,
                                           uint32_t depth, VkImageUsageFlags usage) {
  VkImageBox box;
  box.format = format;
  box.width = width;
  box.height = height;
  box.depth = depth;
  VkImageCreateInfo ici{VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO};
  ici.imageType = depth > 1 ? VK_IMAGE_TYPE_3D : VK_IMAGE_TYPE_2D;
  ici.format = format;
  ici.extent = {width, height, depth};
  ici.mipLevels = 1;
  ici.arrayLayers = 1;
  ici.samples = VK_SAMPLE_COUNT_1_BIT;
  ici.tiling = VK_IMAGE_TILING_OPTIMAL;
  ici.usage = usage;
  ici.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  ici.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
  if (VkResult r = vkCreateImage(device_, &ici, nullptr, &box.image); r != VK_SUCCESS) {
    return fail(Errc::kUnavailable, fmt::format("vkCreateImage({}x{}x{}): {}", width, height, depth,
                                                vk_result_name(r)));
  }
  VkMemoryRequirements req;
  vkGetImageMemoryRequirements(device_, box.image, &req);
  auto type = find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
  if (!type) type = find_memory_type(req.memoryTypeBits, 0, 0);
  if (!type) {
    vkDestroyImage(device_, box.image, nullptr);
    return tl::unexpected(type.error());
  }
  VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = *type;
  if (VkResult r = vkAllocateMemory(device_, &mai, nullptr, &box.memory); r != VK_SUCCESS) {
    vkDestroyImage(device_, box.image, nullptr);
    return fail(Errc::kUnavailable,
                fmt::format("vkAllocateMemory(image, {} bytes): {}", req.size, vk_result_name(r)));
  }
  vkBindImageMemory(device_, box.image, box.memory, 0);
  VkImageViewCreateInfo vci{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
  vci.image = box.image;
  vci.viewType = depth > 1 ? VK_IMAGE_VIEW_TYPE_3D : VK_IMAGE_VIEW_TYPE_2D;
  vci.format = format;
  vci.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  if (VkResult r = vkCreateImageView(device_, &vci, nullptr, &box.view); r != VK_SUCCESS) {
    destroy(box);
    return fail(Errc::kUnavailable, fmt::format("vkCreateImageView: {}", vk_result_name(r)));
  }
  return box;
}

void VkContext::destroy(VkBufferBox& b) {
  if (b.mapped) vkUnmapMemory(device_, b.memory);
  if (b.buffer) vkDestroyBuffer(device_, b.buffer, nullptr);
  if (b.memory) vkFreeMemory(device_, b.memory, nullptr);
  b = VkBufferBox{};
}

void VkContext::destroy(VkImageBox& i) {
  if (i.view) vkDestroyImageView(device_, i.view, nullptr);
  if (i.image) vkDestroyImage(device_, i.image, nullptr);
  if (i.memory) vkFreeMemory(device_, i.memory, nullptr);
  i = VkImageBox{};
}

Result<VkContext::ComputePipeline> VkContext::create_compute_pipeline(
    const char* name, std::span<const uint32_t> spirv, std::span<const VkDescriptorType> bindings,
    uint32_t push_bytes) {
  ComputePipeline p;
  std::vector<VkDescriptorSetLayoutBinding> b(bindings.size());
  for (size_t i = 0; i < bindings.size(); ++i) {
    b[i].binding = static_cast<uint32_t>(i);
    b[i].descriptorType = bindings[i];
    b[i].descriptorCount = 1;
    b[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo dci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  dci.bindingCount = static_cast<uint32_t>(b.size());
  dci.pBindings = b.data();
  if (VkResult r = vkCreateDescriptorSetLayout(device_, &dci, nullptr, &p.set_layout);
      r != VK_SUCCESS) {
    return fail(Errc::kInternal,
                fmt::format("{}: descriptor set layout: {}", name, vk_result_name(r)));
  }
  VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
  VkPipelineLayoutCreateInfo lci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  lci.setLayoutCount = 1;
  lci.pSetLayouts = &p.set_layout;
  lci.pushConstantRangeCount = push_bytes ? 1 : 0;
  lci.pPushConstantRanges = &range;
  if (VkResult r = vkCreatePipelineLayout(device_, &lci, nullptr, &p.layout); r != VK_SUCCESS) {
    destroy(p);
    return fail(Errc::kInternal, fmt::format("{}: pipeline layout: {}", name, vk_result_name(r)));
  }
  VkShaderModuleCreateInfo sci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  sci.codeSize = spirv.size_bytes();
  sci.pCode = spirv.data();
  VkShaderModule module = VK_NULL_HANDLE;
  if (VkResult r = vkCreateShaderModule(device_, &sci, nullptr, &module); r != VK_SUCCESS) {
    destroy(p);
    return fail(Errc::kInternal, fmt::format("{}: shader module: {}", name, vk_result_name(r)));
  }
  VkComputePipelineCreateInfo cci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  cci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  cci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  cci.stage.module = module;
  cci.stage.pName = "main";
  cci.layout = p.layout;
  VkResult r = vkCreateComputePipelines(device_, VK_NULL_HANDLE, 1, &cci, nullptr, &p.pipeline);
  vkDestroyShaderModule(device_, module, nullptr);
  if (r != VK_SUCCESS) {
    destroy(p);
    return fail(Errc::kInternal, fmt::format("{}: compute pipeline: {}", name, vk_result_name(r)));
  }
  return p;
}

void VkContext::destroy(ComputePipeline& p) {
  if (p.pipeline) vkDestroyPipeline(device_, p.pipeline, nullptr);
  if (p.layout) vkDestroyPipelineLayout(device_, p.layout, nullptr);
  if (p.set_layout) vkDestroyDescriptorSetLayout(device_, p.set_layout, nullptr);
  p = ComputePipeline{};
}

Result<void> VkContext::begin_one_shot(VkCommandBuffer* out) {
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  if (VkResult r = vkAllocateCommandBuffers(device_, &ai, out); r != VK_SUCCESS) {
    return fail(Errc::kInternal, fmt::format("vkAllocateCommandBuffers: {}", vk_result_name(r)));
  }
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  vkBeginCommandBuffer(*out, &bi);
  return {};
}

Result<void> VkContext::end_one_shot(VkCommandBuffer cb) {
  vkEndCommandBuffer(cb);
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  vkResetFences(device_, 1, &one_shot_fence_);
  VkResult r = vkQueueSubmit(queue_, 1, &si, one_shot_fence_);
  if (r == VK_SUCCESS) r = vkWaitForFences(device_, 1, &one_shot_fence_, VK_TRUE, kWaitNs);
  if (r == VK_TIMEOUT) {
    // The buffer may still be in use: leave it allocated (freed with the pool).
    return fail(Errc::kTimeout, "the GPU did not finish a command buffer within 10 s");
  }
  vkFreeCommandBuffers(device_, pool_, 1, &cb);
  if (r != VK_SUCCESS) {
    return fail(Errc::kInternal,
                fmt::format("vkQueueSubmit/vkWaitForFences: {}", vk_result_name(r)));
  }
  return {};
}

}  // namespace glassbox::compositor
