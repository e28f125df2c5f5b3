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

struct KernelProfile {
  std::optional<Vmcoreinfo> vmcoreinfo;
  KernelBase base;
  std::unique_ptr<KernelTypes> types;
  KernelOffsets offsets;
  std::unique_ptr<Symbols> symbols;  // run-time addresses
  std::vector<std::string>
      sources;  // e.g. "vmcoreinfo", "banner", "pgd-scan", "btf:ram", "kallsyms:ram"
  std::string release;
};

// Builds the profile from `ram`, and from `kernel_image` (a bzImage path) when not empty:
// BTF and kallsyms are taken from RAM first and from the image as a fallback.
// Errors: kNotFound naming the missing piece (no kernel found, no BTF, no kallsyms).
Result<KernelProfile> build_profile(const shared::RamView& ram, const std::string& kernel_image);

struct Walk {
  std::vector<std::string> warnings;  // what was cut short, and why
};

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
