// A tiny synthetic Linux guest for the introspection fuzzer (tests/fuzz/introspect_fuzz.cpp):
// the input format the fuzz target reads, and builders for every structure the introspection
// looks for (VMCOREINFO note, 4-level page tables, BTF, kallsyms tables, task list, module
// list, printk ring buffer, bzImage/ELF), used to write the seed corpus.
//
// Input format (all integers little-endian):
//   bytes [0, kHeaderBytes): header (see Header), bytes [kHeaderBytes, size): payload.
//   byte 0 % kNumModes picks the mode:
//     kRaw       payload = guest RAM image (gpa 0 = payload[0], layout variant from byte 1)
//     kSlices    payload = bytes for parse_vmcoreinfo, KernelTypes::from_bytes, Symbols::parse,
//                decompress_bzimage, read_elf_sections
//     kHandTables  payload = RAM image; the target appends its own page tables (direct map,
//                kernel image, module area) and builds a KernelProfile by hand (fixed offsets,
//                symbols init_task/modules/prb at header offsets) to walk fuzzed structures
//     kHandPgd   as kHandTables, but kernel_pgd = header cr3 (page tables are fuzz data)
//     kSparse    payload = records {u32 gpa, u16 len, len bytes} scattered into a zeroed RAM
//                image of header.sparse_mib MiB (>= 8 MiB lets build_profile find kallsyms)
//
// Synthetic guest (kSyntheticRamBytes, text_gpa 0, KASLR slide 0, phys_base -16 MiB):
//   gpa 0x1000-0x6fff kernel page tables (see install_page_tables; 0x1000 is init_top_pgt),
//   0x7000 tasks (init_task, pid 1 with an mm, pid 2) and creds, 0x8000 module list, 0x9000
//   printk ring buffer, 0xa000 kallsyms tables (with kallsyms_seqs_of_names), 0xc000 BTF,
//   0x10000 VMCOREINFO ELF note page, 0x11000 banner, 0x11200 init_uts_ns, 0x12000 pid 1's
//   mm_struct and maple tree, 0x13000 its VMAs, 0x14000 mounts/dentries/files, 0x15000 its
//   page tables, 0x1b000 special mapping and saved_command_line. Kernel-image VAs are
//   kTextVa + gpa, direct-map VAs kDirectMapBase + gpa, module-area VAs kModuleAreaVa + gpa
//   (first 128 KiB).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "services/semantic_db/kernel_types.hpp"

namespace glassbox::fuzz {

inline constexpr std::size_t kHeaderBytes = 64;
inline constexpr std::size_t kMaxPayloadBytes = 1u << 20;
inline constexpr std::size_t kMaxInputBytes = kHeaderBytes + kMaxPayloadBytes;
inline constexpr std::size_t kMaxSparseMib = 16;

enum Mode : uint8_t { kRaw = 0, kSlices = 1, kHandTables = 2, kHandPgd = 3, kSparse = 4 };
inline constexpr unsigned kNumModes = 5;

// Byte offsets inside the header.
struct Header {
  static constexpr std::size_t kMode = 0;        // u8 % kNumModes
  static constexpr std::size_t kLayout = 1;      // u8 % 4: identity, split@4GiB, alias, hole
  static constexpr std::size_t kFlags = 2;       // u8: bit0 perturb offsets, bits1-2 image
                                                 // map size, bits3-7 pid for list_vmas()
  static constexpr std::size_t kSparseMib = 3;   // u8: RAM size for kSparse (1..16 MiB)
  static constexpr std::size_t kSplit = 4;       // u32: split point hint (layout 1 and 3)
  static constexpr std::size_t kCr3 = 8;         // u64: walker root (kRaw), kernel_pgd (kHandPgd)
  static constexpr std::size_t kVa = 16;         // u64: a VA to translate / read
  static constexpr std::size_t kInitTask = 24;   // u32: image offset of init_task (hand modes)
  static constexpr std::size_t kModules = 28;    // u32: image offset of `modules`
  static constexpr std::size_t kPrb = 32;        // u32: image offset of `prb`
  static constexpr std::size_t kBannerOff = 36;  // u32: KernelBaseOptions banner offset (0: none)
  static constexpr std::size_t kPerturb = 40;    // 8 x {u8 field, u16 value}: KernelOffsets edits
};

// The synthetic guest's constants (gpa == image offset: text_gpa is 0).
inline constexpr uint64_t kSyntheticRamBytes = 8ull << 20;
inline constexpr uint64_t kDirectMapBase = 0xffff888000000000ull;
inline constexpr uint64_t kModuleAreaVa = 0xffffffffc0000000ull;
inline constexpr uint64_t kTextVa = 0xffffffff81000000ull;   // kUnslidTextVa, slide 0
inline constexpr uint64_t kPhysBase = 0ull - (16ull << 20);  // text_gpa 0
inline constexpr uint64_t kPml4Gpa = 0x1000;
inline constexpr uint64_t kInitTaskGpa = 0x7000;
inline constexpr uint64_t kModulesGpa = 0x8000;
inline constexpr uint64_t kPrbGpa = 0x9000;
inline constexpr uint64_t kUtsGpa = 0x11200;  // init_uts_ns
// special_mapping_vmops; saved_command_line (a char *) at +0x200.
inline constexpr uint64_t kMiscGpa = 0x1b000;

// Writes a 4-level page-table tree into `ram` at gpa `base` (6 pages: PML4, PDPT of slot
// 511, PD of the kernel image, PDPT of the direct map, PD and PT of the module area) mapping
// the direct map (1 GiB pages from gpa 0, 8 GiB), the kernel image (kTextVa -> gpa 0,
// `image_slots` 2 MiB pages) and the module area (kModuleAreaVa + x -> gpa x, 4 KiB pages,
// first 128 KiB). `ram` must hold base + 6 pages. Returns the PML4 gpa (== base).
uint64_t install_page_tables(std::vector<uint8_t>& ram, uint64_t base, unsigned image_slots = 4);
inline constexpr uint64_t kPageTableBytes = 6 * 4096;

// A BTF blob that KernelOffsets::resolve() accepts, with the synthetic guest's layout for the
// members the walks read (task_struct, cred, module, printk ring buffer, ...) and made-up
// offsets for the rest. Found by asking resolve() what it lacks, so it follows the library.
std::vector<uint8_t> make_btf();

// Parses make_btf() and resolves it: the offsets the synthetic structures are laid out with.
// Aborts when the library rejects the blob (a bug in this file, not in the fuzzed code).
semantic_db::KernelOffsets synthetic_offsets();

// Writes the seed corpus (one file per seed) into `dir` (created). Returns the file count.
std::size_t write_seeds(const std::string& dir);

}  // namespace glassbox::fuzz
