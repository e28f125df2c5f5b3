// VMCOREINFO and the kernel's KASLR placement, read from raw guest RAM.
//
// The Linux kernel keeps a plain-text "VMCOREINFO" block in RAM for crash tools: KEY=VALUE
// lines such as OSRELEASE=6.1.0-56-amd64, PAGESIZE=4096, SYMBOL(init_top_pgt)=ffffffff...,
// OFFSET(page.flags)=0, SIZE(page)=64, NUMBER(phys_base)=-765460480, LENGTH(zone.free_area)=11,
// KERNELOFFSET=37e00000 (hex), CRASHTIME=<seconds> (only after a crash).
// Sources: Linux Documentation/admin-guide/kdump/vmcoreinfo.rst; kernel/crash_core.c
// (vmcoreinfo_data: one zeroed page, the text starts at offset 0; vmcoreinfo_note: one page
// holding an ELF note "VMCOREINFO" whose descriptor, the same text, starts at offset 24);
// arch/x86/kernel/machine_kexec_64.c (the x86-64 lines: phys_base, init_top_pgt,
// pgtable_l5_enabled, KERNELOFFSET); arch/x86/include/asm/page_64_types.h
// (__START_KERNEL_map = 0xffffffff80000000; the unslid _text is at __START_KERNEL_map +
// CONFIG_PHYSICAL_START = 0xffffffff81000000 on Debian).
//
// Guest RAM is untrusted: every read is bounds-checked through the RamView, every scan and
// string is bounded, and nothing here throws on bad data.
// Thread-safety: all functions are reentrant; the RamView must outlive each call. The guest
// may change RAM during a call unless it is paused: results then may be inconsistent (and
// are reported as disagreements or errors), never undefined behaviour.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/address.hpp"
#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::semantic_db {

// __START_KERNEL_map: the virtual base of the kernel-image mapping (page_64_types.h).
inline constexpr uint64_t kStartKernelMap = 0xffffffff80000000ULL;
// Unslid virtual address of _text (__START_KERNEL_map + CONFIG_PHYSICAL_START 0x1000000).
inline constexpr uint64_t kUnslidTextVa = 0xffffffff81000000ULL;
// CONFIG_PHYSICAL_ALIGN on x86-64: the kernel is loaded at a 2 MiB-aligned physical address.
inline constexpr uint64_t kKernelAlignBytes = 2ULL << 20;
// Longest VMCOREINFO text accepted: the kernel's VMCOREINFO_BYTES is one 4 KiB page.
inline constexpr std::size_t kMaxVmcoreinfoBytes = 4096;
// At most this many "OSRELEASE=" hits are examined by the slow (full-RAM) scan.
inline constexpr std::size_t kMaxVmcoreinfoCandidates = 256;

// The parsed VMCOREINFO text. Maps are keyed by the name inside the parentheses
// ("init_top_pgt", "page.flags"). Values: SYMBOL and KERNELOFFSET are hex in the text and
// stored as u64; OFFSET/SIZE/NUMBER/LENGTH are signed decimal (NUMBER(phys_base) is
// negative when the kernel sits below its link address).
struct Vmcoreinfo {
  Gpa gpa;                       // gpa of the first byte of the text ("OSRELEASE=...")
  bool in_elf_note = false;      // the copy inside the ELF note (vmcoreinfo_note), header checked
  std::size_t n_candidates = 0;  // how many copies parsed and were consistent
  std::size_t text_bytes = 0;    // length of the text
  std::string os_release;        // OSRELEASE
  std::string build_id;          // BUILD-ID (hex text), empty when absent
  uint64_t page_size_bytes = 0;  // PAGESIZE
  std::optional<uint64_t> kernel_offset;     // KERNELOFFSET: the KASLR virtual slide
  std::optional<int64_t> crash_time;         // CRASHTIME
  std::map<std::string, uint64_t> symbols;   // SYMBOL(name)=hex
  std::map<std::string, int64_t> offsets;    // OFFSET(struct.member)=dec
  std::map<std::string, int64_t> sizes;      // SIZE(type)=dec
  std::map<std::string, int64_t> numbers;    // NUMBER(name)=dec
  std::map<std::string, int64_t> lengths;    // LENGTH(name)=dec
  std::map<std::string, std::string> other;  // any other KEY=VALUE (printable, bounded)

  std::optional<uint64_t> symbol(std::string_view name) const;
  std::optional<int64_t> number(std::string_view name) const;
};

// Parses one VMCOREINFO text (without the terminating NUL). Rules: at most
// kMaxVmcoreinfoBytes; printable ASCII and '\n' only; every line "KEY=VALUE" with a known
// value syntax for its key (hex of 1..16 digits for SYMBOL/KERNELOFFSET, signed decimal that
// fits in int64 for OFFSET/SIZE/NUMBER/LENGTH/PAGESIZE/CRASHTIME, a release of
// [A-Za-z0-9._+~-] for OSRELEASE); no duplicate key; OSRELEASE present and non-empty;
// PAGESIZE present and 4096.
// Errors: kProtocol "vmcoreinfo line N: <what>" naming the first bad line or missing key.
[[nodiscard]] Result<Vmcoreinfo> parse_vmcoreinfo(std::string_view text);

// Finds and parses the kernel's VMCOREINFO in guest RAM.
// Fast pass: looks for "OSRELEASE=" only at offsets 0 and 24 of each 4 KiB page (where
// vmcoreinfo_data and vmcoreinfo_note put it; one 10-byte compare per page). Slow pass, only
// when the fast pass finds no valid copy: memmem over every RAM region, at most
// kMaxVmcoreinfoCandidates hits. A candidate counts when it parses (parse_vmcoreinfo) and is
// consistent: KERNELOFFSET and SYMBOL(init_top_pgt) present, SYMBOL(_stext), when present,
// equal to kUnslidTextVa + KERNELOFFSET, NUMBER(phys_base) and KERNELOFFSET multiples of
// 2 MiB. False positives (the printf formats "OSRELEASE=%s" in the kernel's rodata, stale
// copies) fail these checks. Among good copies the ELF-note copy wins, then the lowest gpa.
// Cost: the fast pass touches one cache line per page (about 1-5 ms for 256 MiB here).
// Errors: kNotFound "no consistent VMCOREINFO in guest RAM (N candidates rejected: ...)".
// With `want_kaslr_slide` (the running kernel's slide, known from a live CR3), only copies
// whose KERNELOFFSET equals it count: after a warm reset the previous boot's copy is still
// in RAM. Errors then also kNotFound "no VMCOREINFO for the running kernel (slide 0x...)".
[[nodiscard]] Result<Vmcoreinfo> find_vmcoreinfo(
    const shared::RamView& ram, std::optional<uint64_t> want_kaslr_slide = std::nullopt);

// Where the kernel sits, and which independent sources agreed on it.
struct KernelBase {
  uint64_t kaslr_slide = 0;  // virtual slide of _text vs kUnslidTextVa (KERNELOFFSET)
  uint64_t phys_base = 0;    // NUMBER(phys_base), two's complement: phys = va -
                             // kStartKernelMap + phys_base (mod 2^64) for kernel-image VAs
  Gva text_gva;              // _text = kUnslidTextVa + kaslr_slide
  Gpa text_gpa;              // physical load address of _text (2 MiB aligned)
  Gpa kernel_pgd;            // gpa of init_top_pgt (the kernel's PML4; the CR3 of idle tasks)
  uint64_t image_mapped_bytes = 0;  // bytes from _text mapped contiguously by the kernel PGD
                                    // (0 when no page-table source was available)
  std::string release;              // kernel release ("6.1.0-56-amd64")
  // Sources that produced or agreed with the values above, in this order when present:
  // "vmcoreinfo", "banner", "pgd-scan". The values come from "vmcoreinfo" when it is listed,
  // else from "pgd-scan"; the banner never provides the shift on its own (see
  // KernelBaseOptions).
  std::vector<std::string> sources;
  // Human-readable lines: a source that disagreed (with both values), one that was absent.
  std::vector<std::string> notes;
  std::optional<Gpa> vmcoreinfo_gpa;  // where VMCOREINFO was found
  std::optional<Gpa> banner_gpa;      // the "Linux version ..." banner inside the image
  std::optional<Gpa> scanned_pgd;     // the PGD chosen by the page-table scan

  // "slide 0x37e00000 phys_base 0xffffffffd2600000 _text 0xffffffffb8e00000 @0xb400000
  // release 6.1.0-56-amd64 sources vmcoreinfo,banner,pgd-scan".
  std::string describe() const;
};

struct KernelBaseOptions {
  // Offset of the banner ("Linux version ...") from _text in this kernel build, when the
  // caller knows it (e.g. from the vmlinux ELF's .rodata). With it the banner is an
  // independent physical source: text_gpa = banner_gpa - offset. Without it the banner only
  // confirms the release and that the kernel's page tables map it inside the image.
  std::optional<uint64_t> banner_offset_in_image;
  // The running kernel's PGD (kernel_pgd_from_cr3() of a live vCPU's CR3). With it, that PGD
  // replaces the RAM-wide scan ("cr3" in sources instead of "pgd-scan"), and VMCOREINFO must
  // agree with it.
  std::optional<Gpa> live_pgd;
};

// Determines the KASLR placement of the kernel.
// With `vmcoreinfo` (may be null): values from KERNELOFFSET, NUMBER(phys_base),
// SYMBOL(init_top_pgt), OSRELEASE; then cross-checked by (a) a scan of RAM for PML4 pages whose
// kernel half maps __START_KERNEL_map (entry 511 -> PDPT entry 510 -> the PD of the kernel
// image): the first mapped 2 MiB slot gives _text's VA and PA ("pgd-scan"), and (b) the banner
// "Linux version <release> " found inside the physical image, whose VA (_text + its offset)
// must translate through the kernel PGD to its PA ("banner").
// Without VMCOREINFO (fallback): the pgd-scan gives slide, phys_base and the PGD (preferring
// the PGD page that lies inside the image it maps, i.e. init_top_pgt), the banner gives the
// release. A source that disagrees is named in `notes` and left out of `sources`.
// Only 4-level paging: NUMBER(pgtable_l5_enabled)=1 gives kUnsupported.
// Errors: kNotFound when neither VMCOREINFO nor the pgd-scan locate the kernel;
// kProtocol when VMCOREINFO points outside RAM; kUnsupported for 5-level paging.
[[nodiscard]] Result<KernelBase> find_kernel_base(const shared::RamView& ram,
                                                  const Vmcoreinfo* vmcoreinfo,
                                                  const KernelBaseOptions& options = {});

}  // namespace glassbox::semantic_db
