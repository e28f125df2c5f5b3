// Introspection of a Linux guest from raw RAM alone: the kernel profile (where the kernel
// is, its type layouts, its symbols) and the walks over its data structures (tasks,
// modules). No agent, no System.map, no debug package: VMCOREINFO, BTF and kallsyms all
// come from guest RAM (or, for BTF/kallsyms, from the kernel image when given).
//
// Guest memory is hostile: every read is bounds-checked through the page tables and the RAM
// layout, every list walk is bounded (kMaxTasks, kMaxModules) and cycle-checked, every
// string is length-limited and sanitised; a broken structure ends that walk with a warning
// and a partial answer, never a crash or a hang.
// Thread-safety: a KernelProfile is immutable after build_profile(); walks are reentrant.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "services/semantic_db/kallsyms.hpp"
#include "services/semantic_db/kernel_types.hpp"
#include "services/semantic_db/store.hpp"
#include "services/semantic_db/vmcoreinfo.hpp"
#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::semantic_db {

inline constexpr size_t kMaxTasks = 1 << 16;
inline constexpr size_t kMaxModules = 4096;

class ProfileCache;

struct KernelProfile {
  std::optional<Vmcoreinfo> vmcoreinfo;
  KernelBase base;
  std::unique_ptr<KernelTypes> types;  // null when the profile came from the profile cache
  KernelOffsets offsets;
  std::unique_ptr<Symbols> symbols;  // run-time addresses
  std::vector<std::string>
      sources;  // e.g. "vmcoreinfo", "banner", "pgd-scan", "btf:ram", "kallsyms:ram"
  std::string release;
  std::string build_id;  // VMCOREINFO BUILD-ID (hex), empty when the kernel does not say
  bool from_cache = false;
  // Wall time of each stage of build_profile(), in order ("vmcoreinfo", "kernel-base",
  // "btf", "kallsyms", ...), milliseconds.
  std::vector<std::pair<std::string, double>> stage_ms;
};

// Builds the profile from `ram`, and from `kernel_image` (a bzImage path) when not empty:
// BTF is taken from RAM first and from the image as a fallback; kallsyms from the running
// kernel's image in RAM. With `cache`, a kernel whose VMCOREINFO names a BUILD-ID is looked
// up first (offsets and symbols reused, "profile-cache" in sources; VMCOREINFO and the
// kernel base are always read from this RAM) and stored after a full build. A cache that
// fails (unreadable, malformed entry) is ignored: the profile is built from RAM.
// Errors: kNotFound naming the missing piece (no kernel found, no BTF, no kallsyms).
// With `live_cr3` (a vCPU's CR3 from the hypervisor, live VMs only), the running kernel is
// the one that CR3's page tables map (kernel_pgd_from_cr3()); VMCOREINFO copies of other
// boots are ignored and "cr3" joins the sources. Errors then also kNotFound when that CR3
// maps no kernel yet (firmware, early boot) or RAM has no VMCOREINFO of this boot yet.
Result<KernelProfile> build_profile(const shared::RamView& ram, const std::string& kernel_image,
                                    ProfileCache* cache = nullptr,
                                    std::optional<uint64_t> live_cr3 = std::nullopt);

struct Walk {
  std::vector<std::string> warnings;  // what was cut short, and why
};

// What `uname -a` and /proc/cmdline would say, read from the running kernel.
struct KernelInfo : Walk {
  std::string release;  // init_uts_ns.name.release
  std::string version;  // init_uts_ns.name.version ("#1 SMP PREEMPT_DYNAMIC Debian ...")
  std::string machine;  // "x86_64"
  std::string cmdline;  // saved_command_line, <= 4096 bytes
};

// Reads utsname and the boot command line. Never fails: unreadable fields are empty, with
// a warning each.
KernelInfo read_kernel_info(const shared::RamView& ram, const KernelProfile& profile);

struct ProcessList : Walk {
  std::vector<ProcessRecord> processes;  // ordered by pid
};

struct ModuleList : Walk {
  std::vector<ModuleRecord> modules;  // in the kernel's list order
};

// The task list from init_task (thread-group leaders, as `ps` shows them). Errors only when
// nothing can be read at all (init_task unreadable); otherwise a partial list with warnings.
Result<ProcessList> list_processes(const shared::RamView& ram, const KernelProfile& profile);

// The loaded modules from the `modules` list head.
Result<ModuleList> list_modules(const shared::RamView& ram, const KernelProfile& profile);

struct LogRecord {
  uint64_t seq = 0;
  uint64_t ts_nsec = 0;  // ns since boot (local clock), as dmesg prints it
  std::string text;      // one record; may hold several lines; sanitised, <= 1024 bytes
};

struct KernelLog : Walk {
  std::vector<LogRecord> records;  // oldest first
};

inline constexpr size_t kMaxLogRecords = 1 << 18;

// The kernel log from the 6.1 lockless printk ring buffer (`prb`, kernel/printk/
// printk_ringbuffer.{h,c}): descriptors from tail_id to head_id whose state is committed or
// finalized and whose id matches, text from the data ring (a block that wraps starts at the
// ring's beginning). Bounded by the ring's own size; garbage ends the walk with a warning.
Result<KernelLog> read_kernel_log(const shared::RamView& ram, const KernelProfile& profile);

// "R", "S", "D", "T", "t", "X", "Z", "P", "I" for a 6.1 task __state (+ exit_state).
std::string task_state_letter(uint32_t state, uint32_t exit_state);

}  // namespace glassbox::semantic_db
