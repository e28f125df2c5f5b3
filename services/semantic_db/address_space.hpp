// Guest-virtual to guest-physical translation for x86-64 Linux guests, from raw RAM.
//
// Three ways to translate, from cheapest to most general:
//  - kernel_image_pa(): kernel-image addresses (__START_KERNEL_map range), by arithmetic with
//    phys_base (arch/x86/include/asm/page_64_types.h, __phys_addr_symbol()).
//  - direct_map_pa(): the direct map of all physical memory at page_offset_base (randomized
//    under CONFIG_RANDOMIZE_MEMORY, found from the kernel's page tables).
//  - PageTableWalker: a 4-level walk (PML4, PDPT, PD, PT; Intel SDM Vol. 3A, section 4.5).
// KernelAddressSpace bundles the three for kernel addresses.
//
// Units: byte addresses (Gva, Gpa), sizes in bytes.
// Guest RAM is untrusted: every table read goes through RamView::at() (a table outside RAM is
// an error naming the level), iterations are bounded and skip tables already on the walk path.
// Thread-safety: all classes are immutable after construction and their const methods are
// reentrant; the RamView must outlive them. The guest may rewrite its page tables while it
// runs: pause it for a consistent view.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "services/semantic_db/vmcoreinfo.hpp"
#include "shared/address.hpp"
#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::semantic_db {

// Bits 51:12 of a paging-structure entry: the physical address of the next table or page.
inline constexpr uint64_t kPteAddrMask = 0x000ffffffffff000ULL;
inline constexpr uint64_t kPtePresent = 1ULL << 0;
inline constexpr uint64_t kPteWritable = 1ULL << 1;
inline constexpr uint64_t kPteUser = 1ULL << 2;
inline constexpr uint64_t kPtePageSize = 1ULL << 7;  // PS: 1 GiB page (PDPT), 2 MiB (PD)
inline constexpr uint64_t kPteNx = 1ULL << 63;
// Largest span of the direct map accepted (2^46 bytes: MAX_PHYSMEM_BITS of 4-level paging).
inline constexpr uint64_t kMaxDirectMapBytes = 1ULL << 46;

// True when bits 63:47 of `va` are all equal (4-level paging, 48-bit addresses).
constexpr bool is_canonical(Gva va) {
  const uint64_t top = va.value >> 47;
  return top == 0 || top == 0x1ffff;
}

// Physical address of a kernel-image VA: va - kStartKernelMap + base.phys_base.
// Valid for va in [kStartKernelMap, 2^64) (the image, its data and bss; not modules at
// 0xffffffffc0000000 and above, which are vmalloc'd: walk the tables for those).
// Errors: kOutOfRange when va lies outside [kStartKernelMap, 0xffffffffc0000000).
[[nodiscard]] Result<Gpa> kernel_image_pa(Gva va, const KernelBase& base);

// Physical address of a direct-map VA: va - page_offset_base, for va in
// [page_offset_base, page_offset_base + kMaxDirectMapBytes). Does not check that the gpa is RAM.
// Errors: kOutOfRange outside that range.
[[nodiscard]] Result<Gpa> direct_map_pa(Gva va, uint64_t page_offset_base);

// One leaf translation.
struct Translation {
  Gpa gpa;                       // physical address of the translated byte
  uint64_t page_size_bytes = 0;  // 4 KiB, 2 MiB or 1 GiB
  bool writable = false;         // R/W set at every level
  bool user = false;             // U/S set at every level
  bool nx = false;               // XD set at any level (reported only; not enforced)
};

// A run of virtual pages mapped to contiguous physical memory with the same flags.
struct MappedRange {
  Gva va;
  Gpa gpa;
  uint64_t size_bytes = 0;
  bool writable = false;
  bool user = false;
  bool nx = false;
};

struct MappedRanges {
  std::vector<MappedRange> ranges;   // sorted by va, merged (see MappedRange)
  bool truncated = false;            // a bound (max_ranges, max_entries) stopped the walk early
  std::size_t n_skipped_tables = 0;  // tables outside RAM or already on the walk path (cycles)
  std::size_t n_entries = 0;         // table entries visited (what max_entries bounds)
};

// Walks the 4-level page tables rooted at `cr3`.
class PageTableWalker {
 public:
  // `cr3`: the CR3 value or PML4 gpa; bits outside kPteAddrMask (PCID, PWT/PCD) are dropped.
  PageTableWalker(const shared::RamView& ram, Gpa cr3) noexcept;

  Gpa pml4() const noexcept { return pml4_; }

  // Translates one address. No A/D bits are written, nothing is cached.
  // Errors: kInvalidArgument for a non-canonical va; kNotFound "gva 0x...: PDPT entry 3 not
  // present" when a present bit is clear; kOutOfRange "gva 0x...: PD table at gpa 0x... is
  // outside guest RAM" when a table (or the final page) lies outside RAM; kProtocol for a
  // reserved PS bit at the PML4 level.
  [[nodiscard]] Result<Translation> translate(Gva va) const;

  // Reads out.size() bytes at `va`, page by page (crossing pages and page sizes). Returns the
  // number of bytes read: out.size(), or fewer when a later page is unmapped or outside RAM
  // (the rest of `out` is left untouched). Errors: as translate() for the first byte.
  [[nodiscard]] Result<std::size_t> read_virtual(Gva va, std::span<uint8_t> out) const;

  // Every mapped leaf in [begin, end) (canonical addresses; `end` exclusive, 0 means 2^64),
  // in va order, merged into runs. Bounded: at most `max_ranges` ranges and `max_entries`
  // table entries visited; a table that is already on the current walk path (a self-reference
  // or cycle) or outside RAM is skipped and counted. Never fails on guest data.
  // With `skip_repeated_tables`, a lower-level table met a second time anywhere in the walk
  // (not only on the current path) is skipped and counted: Linux never shares a table page
  // inside one process's user half, and a hostile tree of aliased tables would otherwise make
  // the walk cost 512^3 entries.
  [[nodiscard]] MappedRanges mapped_ranges(Gva begin, Gva end, std::size_t max_ranges = 65536,
                                           std::size_t max_entries = 1u << 22,
                                           bool skip_repeated_tables = false) const;

 private:
  const shared::RamView* ram_;
  Gpa pml4_;
};

// A PML4 page found by scan_kernel_pgds(): its kernel half maps the kernel image.
struct KernelPgdCandidate {
  Gpa pgd;                          // gpa of the PML4 page
  Gva text_gva;                     // first mapped slot of the kernel-image PD (= _text)
  Gpa text_gpa;                     // what it maps to (2 MiB aligned)
  uint64_t image_mapped_bytes = 0;  // contiguous mapping from text_gva (VA and PA in step)
  bool user_half_empty = false;     // PML4 entries 0..255 all zero (a kernel-only PGD)
  bool inside_own_image = false;    // pgd lies in [text_gpa, +image_mapped_bytes): init_top_pgt
};

// Checks one PML4 page as scan_kernel_pgds() does. nullopt when it does not map a kernel
// image (or lies outside RAM, or is not page-aligned).
[[nodiscard]] std::optional<KernelPgdCandidate> kernel_pgd_at(const shared::RamView& ram, Gpa pgd);

// The kernel PGD behind a vCPU's CR3 (from the hypervisor: QMP `info registers`): CR3's
// PML4 if it maps the kernel image, else, under page-table isolation (CR3 bit 12 set: the
// user copy), its even 8 KiB partner. nullopt when neither maps a kernel (a vCPU still in
// firmware or real mode). This names the running kernel without trusting anything stale in
// RAM (after a warm reset the previous boot's page tables and VMCOREINFO are still there).
[[nodiscard]] std::optional<KernelPgdCandidate> kernel_pgd_from_cr3(const shared::RamView& ram,
                                                                    uint64_t cr3);

// Scans every 4 KiB page of guest RAM for a PML4 whose entry 511 -> PDPT entry 510 -> PD maps
// 2 MiB-aligned physical memory contiguously (at least 4 MiB) from its first present slot:
// the kernel image mapping (level2_kernel_pgt; arch/x86/kernel/head_64.S). Reads one u64 per
// page plus a few table entries per hit. Returns at most `max_candidates`, in gpa order.
// Cost: about one cache line per page of RAM. Never fails on guest data (empty when none).
[[nodiscard]] std::vector<KernelPgdCandidate> scan_kernel_pgds(const shared::RamView& ram,
                                                               std::size_t max_candidates = 4096);

// Finds page_offset_base (the direct-map base) from the kernel's page tables: the lowest
// 1 GiB-aligned VA in the KASLR direct-map region (PML4 slots 273..507, from
// 0xffff888000000000) that translates to gpa 0, and where sample addresses across every RAM
// region (first, middle and last page) translate to themselves + that base.
// Errors: kNotFound when no such VA exists.
[[nodiscard]] Result<uint64_t> find_page_offset_base(const PageTableWalker& kernel,
                                                     const shared::RamView& ram);

// The kernel's address space: image arithmetic, direct-map arithmetic, else a table walk.
class KernelAddressSpace {
 public:
  // Walks from base.kernel_pgd and finds page_offset_base.
  // Errors: as find_page_offset_base().
  [[nodiscard]] static Result<KernelAddressSpace> create(const shared::RamView& ram,
                                                         const KernelBase& base);

  uint64_t page_offset_base() const noexcept { return page_offset_base_; }
  const KernelBase& base() const noexcept { return base_; }
  const PageTableWalker& walker() const noexcept { return walker_; }

  // gpa of `va`: kernel_image_pa() inside [_text, _text + image_mapped_bytes),
  // direct_map_pa() inside the direct map below the end of RAM, else the table walk.
  // Errors: as PageTableWalker::translate().
  [[nodiscard]] Result<Gpa> translate(Gva va) const;

  // As PageTableWalker::read_virtual() with translate() per page.
  [[nodiscard]] Result<std::size_t> read_virtual(Gva va, std::span<uint8_t> out) const;

  // Reads a little-endian u64 at `va` (may cross a page). Errors: as translate(); kOutOfRange
  // when only part of it is readable.
  [[nodiscard]] Result<uint64_t> read_u64(Gva va) const;

 private:
  KernelAddressSpace(const shared::RamView& ram, KernelBase base, uint64_t page_offset_base);
  const shared::RamView* ram_;
  KernelBase base_;
  PageTableWalker walker_;
  uint64_t page_offset_base_;
  uint64_t direct_map_end_;  // page_offset_base + end of RAM
};

}  // namespace glassbox::semantic_db
