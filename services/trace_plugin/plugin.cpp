// libglassbox-trace.so: glassbox's QEMU 7.2 TCG plugin. It runs inside qemu-system-x86_64
// (-accel tcg) and writes the shared-memory trace file described in shared/trace_ring.hpp:
//   - at every TB translation: a new tb_id and a TB record (pc, n_insns, insn bytes, the
//     RAM-file offset of the first insn) in the TB ring, plus the execution instrumentation:
//   - counts mode: an inline ADD_U64 on counters[tb_id] (no call per execution);
//   - stream mode: the same counter plus a C callback per execution that pushes tb_id into the
//     executing vCPU's EventRing.
// Arguments: see plugin_args.hpp. Bad arguments or a file that cannot be created: one line on
// stderr and a non-zero return from qemu_plugin_install (QEMU then refuses to start).
//
// Threading: translation callbacks may run on several vCPU threads at once (MTTCG): they are
// serialized by Plugin::trans_mutex. An execution callback runs on the executing vCPU's thread
// and touches only that vCPU's EventProducer (lock-free SPSC ring). Nothing blocks on the
// consumer: full rings drop and count.
//
// Lifetime: the Plugin object and the mapping live until the process exits (QEMU may call
// callbacks until then); the file is left in place for the consumer to finish draining (the
// supervisor deletes it).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "services/trace_plugin/host_ram_map.hpp"
#include "services/trace_plugin/plugin_args.hpp"
#include "services/trace_plugin/qemu_plugin_api.h"
#include "shared/trace_ring.hpp"

extern "C" {
QEMU_PLUGIN_EXPORT int qemu_plugin_version = GLASSBOX_QEMU_PLUGIN_VERSION;
}

namespace glassbox::trace {
namespace {

// After a host address misses every known RAM mapping, /proc/self/maps is re-read at most once
// per this many translations (BIOS/option ROM code legitimately misses forever).
constexpr uint64_t kMapsRescanEveryTranslations = 4096;
// RAM-file mappings remembered (QEMU maps the file once; the kernel may split the VMA).
constexpr size_t kMaxRamMappings = 64;
// /proc/self/maps read at most this many bytes (QEMU has a few hundred lines).
constexpr size_t kMaxMapsBytes = 1 << 20;

struct Plugin {
  PluginArgs args;
  TraceView view;
  // Execution side (read-only after install, except each producer by its own vCPU thread).
  std::unique_ptr<EventProducer[]> producers;  // [view.n_vcpus]

  // Translation side, guarded by trans_mutex.
  std::mutex trans_mutex;
  TbRecordProducer tb_producer;
  uint64_t next_tb_id = 0;
  std::array<RamMapping, kMaxRamMappings> ram_mappings{};
  size_t n_ram_mappings = 0;
  uint64_t translations_at_last_scan = 0;
  bool scanned = false;
  std::array<uint8_t, kMaxTbBytes> insn_bytes{};
  // Buffer for /proc/self/maps, allocated at install so callbacks never allocate.
  std::unique_ptr<char[]> maps_text = std::make_unique<char[]>(kMaxMapsBytes);
};

// Set once by qemu_plugin_install, before any callback is registered; never freed.
Plugin* g_plugin = nullptr;
// Copies for the execution callback's hot path (one load each instead of a chain).
EventProducer* g_producers = nullptr;
uint32_t g_n_vcpus = 0;
std::atomic<uint64_t>* g_events_bad_vcpu = nullptr;

void log_error(const std::string& what) {
  std::fprintf(stderr, "glassbox-trace: %s\n", what.c_str());
  std::fflush(stderr);
}

// A random non-zero 64-bit generation: getrandom, else /dev/urandom, else time ^ pid.
uint64_t random_generation() {
  uint64_t g = 0;
  if (getrandom(&g, sizeof(g), 0) != static_cast<ssize_t>(sizeof(g))) {
    const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &g, sizeof(g)) != static_cast<ssize_t>(sizeof(g))) {
      timespec ts{};
      clock_gettime(CLOCK_REALTIME, &ts);
      g = (static_cast<uint64_t>(ts.tv_sec) << 32) ^ static_cast<uint64_t>(ts.tv_nsec) ^
          (static_cast<uint64_t>(getpid()) << 16);
    }
    if (fd >= 0) close(fd);
  }
  return g != 0 ? g : 1;
}

// Re-reads /proc/self/maps into plugin.ram_mappings. Caller holds trans_mutex.
void scan_ram_mappings(Plugin& plugin) {
  plugin.scanned = true;
  plugin.translations_at_last_scan = plugin.next_tb_id;
  const int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char* text = plugin.maps_text.get();
  size_t size = 0;
  for (int reads = 0; size < kMaxMapsBytes && reads < 4096; ++reads) {
    const ssize_t n = read(fd, text + size, kMaxMapsBytes - size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size += static_cast<size_t>(n);
  }
  close(fd);
  const size_t before = plugin.n_ram_mappings;
  plugin.n_ram_mappings =
      parse_ram_mappings(std::string_view(text, size), plugin.args.ram_path, plugin.ram_mappings);
  if (before == 0 && plugin.n_ram_mappings != 0) {  // shown with -d plugin
    char line[512];
    std::snprintf(line, sizeof(line),
                  "glassbox-trace: RAM file %s found in %zu mapping(s) after %llu translations\n",
                  plugin.args.ram_path.c_str(), plugin.n_ram_mappings,
                  static_cast<unsigned long long>(plugin.next_tb_id));
    qemu_plugin_outs(line);
  }
}

// The RAM mapping holding hva `haddr`, re-reading the maps on a miss (rate-limited).
// Caller holds trans_mutex.
const RamMapping* lookup_ram(Plugin& plugin, uint64_t haddr) {
  const std::span<const RamMapping> known(plugin.ram_mappings.data(), plugin.n_ram_mappings);
  if (const RamMapping* m = find_ram_mapping(known, haddr)) return m;
  if (plugin.scanned &&
      plugin.next_tb_id - plugin.translations_at_last_scan < kMapsRescanEveryTranslations) {
    return nullptr;
  }
  scan_ram_mappings(plugin);
  return find_ram_mapping(
      std::span<const RamMapping>(plugin.ram_mappings.data(), plugin.n_ram_mappings), haddr);
}

// Execution callback (stream mode): keep minimal, it runs once per executed TB.
void on_tb_exec(unsigned int vcpu_index, void* userdata) {
  if (vcpu_index < g_n_vcpus) [[likely]] {
    g_producers[vcpu_index].push(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(userdata)));
  } else {
    g_events_bad_vcpu->fetch_add(1, std::memory_order_relaxed);
  }
}

// Translation callback: tb_id, TB record, instrumentation. `tb` is valid during the call only.
void on_tb_trans(qemu_plugin_id_t /*id*/, qemu_plugin_tb* tb) {
  Plugin& plugin = *g_plugin;
  TraceHeader& header = *plugin.view.header;
  const size_t n_insns = qemu_plugin_tb_n_insns(tb);
  TbRecordHeader record{};
  record.pc = qemu_plugin_tb_vaddr(tb);
  record.n_insns = static_cast<uint32_t>(n_insns);
  record.ram_offset = kNoRamOffset;
  uint64_t tb_id;
  {
    std::lock_guard<std::mutex> lock(plugin.trans_mutex);
    tb_id = plugin.next_tb_id++;
    header.tbs_translated.store(plugin.next_tb_id, std::memory_order_relaxed);
    if (tb_id >= UINT32_MAX) {  // 4 G translations: ids no longer fit a record/event
      header.tb_ids_overflowed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    record.tb_id = static_cast<uint32_t>(tb_id);

    // Copy the insn bytes (valid only now) and check they are contiguous in host memory.
    size_t size_bytes = 0;
    uint64_t first_haddr = 0, first_vaddr = 0, total_insn_bytes = 0;
    bool haddr_contiguous = true;
    for (size_t i = 0; i < n_insns; ++i) {
      const qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
      const size_t insn_size = qemu_plugin_insn_size(insn);
      const auto haddr = reinterpret_cast<uint64_t>(qemu_plugin_insn_haddr(insn));
      const uint64_t vaddr = qemu_plugin_insn_vaddr(insn);
      if (i == 0) {
        first_haddr = haddr;
        first_vaddr = vaddr;
      } else if (haddr == 0 || haddr - first_haddr != vaddr - first_vaddr) {
        haddr_contiguous = false;
      }
      total_insn_bytes += insn_size;
      const size_t room = plugin.insn_bytes.size() - size_bytes;
      const size_t n_copy = insn_size < room ? insn_size : room;
      if (n_copy != insn_size) record.flags |= kTbFlagBytesTruncated;
      if (n_copy != 0) {
        std::memcpy(plugin.insn_bytes.data() + size_bytes, qemu_plugin_insn_data(insn), n_copy);
        size_bytes += n_copy;
      }
    }
    if (total_insn_bytes != 0 && (record.pc >> 12) != ((record.pc + total_insn_bytes - 1) >> 12)) {
      record.flags |= kTbFlagCrossesPage;
    }

    // RAM-file offset of the first insn byte; verified when the whole TB lies in the mapping.
    if (first_haddr != 0 && !plugin.args.ram_path.empty()) {
      if (const RamMapping* m = lookup_ram(plugin, first_haddr)) {
        record.ram_offset = m->file_offset + (first_haddr - m->host_start);
        if (haddr_contiguous && (record.flags & kTbFlagBytesTruncated) == 0 &&
            size_bytes <= m->host_end - first_haddr &&
            std::memcmp(reinterpret_cast<const void*>(first_haddr), plugin.insn_bytes.data(),
                        size_bytes) == 0) {
          record.flags |= kTbFlagRamVerified;
        }
      }
    }
    if (record.ram_offset == kNoRamOffset) {
      header.tbs_outside_ram.fetch_add(1, std::memory_order_relaxed);
    }
    plugin.tb_producer.append(record,
                              std::span<const uint8_t>(plugin.insn_bytes.data(), size_bytes));
  }

  // Instrumentation (per-TB state only: no lock needed).
  if (tb_id < plugin.view.max_tbs) {
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                             &plugin.view.counters[tb_id], 1);
  } else {
    header.tb_ids_overflowed.fetch_add(1, std::memory_order_relaxed);
  }
  if (plugin.view.mode == TraceMode::kStream) {
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS,
                                         reinterpret_cast<void*>(static_cast<uintptr_t>(tb_id)));
  }
}

void on_exit(qemu_plugin_id_t /*id*/, void* /*userdata*/) {
  if (g_plugin == nullptr) return;
  g_plugin->view.header->producer_state.store(static_cast<uint32_t>(ProducerState::kExited),
                                              std::memory_order_release);
}

// Creates the trace file at `path` (a fresh inode: an existing regular file is unlinked first so
// a consumer's old mapping stays valid) and maps it. Returns the mapping or nullptr (error
// logged).
void* create_trace_file(const std::string& path, uint64_t file_bytes) {
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) {
      log_error("shm=" + path + " exists and is not a regular file");
      return nullptr;
    }
    if (unlink(path.c_str()) != 0) {
      log_error("cannot remove old " + path + ": " + std::strerror(errno));
      return nullptr;
    }
  }
  const int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    log_error("cannot create " + path + ": " + std::strerror(errno));
    return nullptr;
  }
  if (ftruncate(fd, static_cast<off_t>(file_bytes)) != 0) {
    log_error("cannot size " + path + " to " + std::to_string(file_bytes) +
              " bytes: " + std::strerror(errno));
    close(fd);
    unlink(path.c_str());
    return nullptr;
  }
  void* base = mmap(nullptr, file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    log_error("cannot map " + path + ": " + std::strerror(errno));
    unlink(path.c_str());
    return nullptr;
  }
  return base;
}

int install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  if (info == nullptr || !info->system_emulation) {
    log_error("system emulation only (qemu-system-*)");
    return 1;
  }
  if (info->version.cur < GLASSBOX_QEMU_PLUGIN_VERSION) {
    log_error("QEMU plugin API " + std::to_string(info->version.cur) + " < " +
              std::to_string(GLASSBOX_QEMU_PLUGIN_VERSION));
    return 1;
  }
  auto plugin = std::make_unique<Plugin>();
  const std::string error = parse_plugin_args(
      std::span<const char* const>(argv, argc > 0 ? static_cast<size_t>(argc) : 0), &plugin->args);
  if (!error.empty()) {
    log_error(error);
    return 1;
  }
  const int max_vcpus = info->system.max_vcpus;
  if (max_vcpus < 1 || static_cast<uint32_t>(max_vcpus) > kMaxVcpus) {
    log_error("unsupported max_vcpus " + std::to_string(max_vcpus) + " (1.." +
              std::to_string(kMaxVcpus) + ")");
    return 1;
  }
  const TraceGeometry geometry{static_cast<uint32_t>(max_vcpus), plugin->args.ring_events,
                               plugin->args.max_tbs, plugin->args.tb_ring_bytes};
  const std::optional<TraceLayout> layout = plan_layout(geometry);
  if (!layout) {
    log_error("trace file geometry out of limits");
    return 1;
  }
  void* base = create_trace_file(plugin->args.shm_path, layout->file_bytes);
  if (base == nullptr) return 1;
  plugin->view = init_trace_file(base, geometry, *layout, plugin->args.mode, random_generation(),
                                 static_cast<uint64_t>(getpid()));
  plugin->tb_producer =
      TbRecordProducer(plugin->view.tb_ring, plugin->view.tb_data, plugin->view.tb_ring_bytes);
  plugin->producers = std::make_unique<EventProducer[]>(plugin->view.n_vcpus);
  for (uint32_t i = 0; i < plugin->view.n_vcpus; ++i) {
    plugin->producers[i] =
        EventProducer(plugin->view.event_ring(i), plugin->view.events(i), plugin->view.ring_events);
  }
  if (!plugin->args.ram_path.empty()) scan_ram_mappings(*plugin);  // may be empty: lazy retry

  g_plugin = plugin.release();
  g_producers = g_plugin->producers.get();
  g_n_vcpus = g_plugin->view.n_vcpus;
  g_events_bad_vcpu = &g_plugin->view.header->events_bad_vcpu;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
  qemu_plugin_register_atexit_cb(id, on_exit, nullptr);
  return 0;
}

}  // namespace
}  // namespace glassbox::trace

extern "C" QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info,
                                                      int argc, char** argv) {
  try {
    return glassbox::trace::install(id, info, argc, argv);
  } catch (const std::exception& e) {  // allocation failure at install: refuse, do not unwind
    std::fprintf(stderr, "glassbox-trace: install failed: %s\n", e.what());
    return 1;
  }
}
