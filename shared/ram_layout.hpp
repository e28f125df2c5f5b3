// Guest-physical layout of the guest RAM file, and a bounds-checked view of its mapping.
//
// QEMU backs guest RAM with one file (`-object memory-backend-file,id=glassbox-ram,...`,
// share=on) that the host maps read-only. File offsets are NOT guest-physical addresses in
// general: on the pc and q35 machines RAM that does not fit below the PCI hole is placed at
// 4 GiB (with -m 4608M on pc: file 0..3 GiB is gpa 0..3 GiB, file 3 GiB..4.5 GiB is gpa
// 4 GiB..5.5 GiB; q35 splits at 2 GiB), the legacy VGA window 0xa0000-0xbffff is MMIO when a
// VGA device exists, and 0xc0000-0xfffff is ROM (pc.rom, pc.bios) until SeaBIOS programs the
// PAM registers, after which it is RAM or read-only aliases of the same RAM block.
// RamLayout holds that gpa -> file-offset map, read from QEMU itself (`info mtree -f`).
//
// Units: gpa and file offsets are byte addresses; sizes are bytes.
// Thread-safety: RamLayout and RamView are immutable value types after construction; all
// const methods are reentrant. The bytes behind a RamView belong to a running guest: they
// can change between (and during) reads unless the VM is paused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/address.hpp"
#include "shared/result.hpp"

namespace glassbox::shared {

// One contiguous piece of guest RAM: gpa [gpa, gpa + size_bytes) is file bytes
// [file_offset, file_offset + size_bytes).
struct RamRegion {
  Gpa gpa;
  uint64_t size_bytes = 0;
  uint64_t file_offset = 0;

  bool operator==(const RamRegion&) const = default;
};

// Alignment that RamLayout::from_regions demands of gpa, size_bytes and file_offset.
// kPage (4 KiB) for QEMU's RAM file; kByte for foreign dumps (a LiME range's data starts
// 32 bytes after its header, and Linux's "System RAM" ranges need not end on a page).
enum class RamAlignment { kPage, kByte };

// Hard limits on hostile or broken input (mtree text, dump headers, caller vectors).
inline constexpr std::size_t kMaxRamRegions = 4096;
inline constexpr std::size_t kMaxMtreeTextBytes = 4 * 1024 * 1024;
inline constexpr std::size_t kMaxMtreeLines = 65536;

// The gpa -> file-offset map of one RAM file: regions sorted by gpa, not overlapping in gpa
// (several gpa ranges may alias the same file bytes), each inside the file, adjacent regions
// that are contiguous in both gpa and file offset merged into one.
class RamLayout {
 public:
  // Validates and merges `regions` (see the class comment) for a file of `file_size_bytes`.
  // Rules: non-empty; at most kMaxRamRegions; each size_bytes > 0; gpa + size_bytes and
  // file_offset + size_bytes do not wrap past 2^64; [file_offset, +size_bytes) lies inside
  // the file; sorted by gpa without overlap; gpa, size_bytes, file_offset multiples of 4 KiB
  // when `alignment` is kPage. The regions are not re-sorted: an unsorted input is an error.
  // Errors: kInvalidArgument "region 3 (gpa 0x..., 0x... bytes @file 0x...): <what is wrong>".
  [[nodiscard]] static Result<RamLayout> from_regions(std::vector<RamRegion> regions,
                                                      uint64_t file_size_bytes,
                                                      RamAlignment alignment = RamAlignment::kPage);

  // Parses the HMP output of `info mtree -f` (QEMU 7.2, as returned by QMP
  // human-monitor-command; "\n" or "\r\n" line ends) and returns the layout of the RAM
  // block named `ram_block_name` (the memory-backend id, e.g. "glassbox-ram") as seen by
  // the FlatView whose address spaces include AS "memory" (the system address space; the
  // views of "I/O", "cpu-smm-N" and bus masters are ignored). `file_size_bytes`: the size
  // of the RAM file (fstat), which every range must fit in.
  //
  // Format (source: QEMU 7.2 softmmu/memory.c, mtree_print_flatview()):
  //   FlatView #<n>
  //    AS "<as name>", root: <mr name>[, alias <mr name>]       (one line per address space)
  //    Root memory region: <mr name>|(none)
  //     <start>-<end> (prio <p>, [nv-]<type>): <mr name>[ @<offset_in_region>][ <ACCEL>]...
  //     No rendered FlatView
  // where start/end are %016" PRIx64 with `end` inclusive, type is ram, rom, romd, ramd or
  // i/o ("rom" also for read-only aliases of RAM, e.g. PAM-protected shadow BIOS), the
  // "@offset" suffix (absent when 0) is the offset inside the memory region, which for a
  // memory-backend-file in QEMU 7.2 is the file offset, and under KVM each line ends with
  // " KVM" (AccelClass::has_memory). Lines of our block with type ram/rom/romd/ramd (with
  // or without "nv-") become regions; i/o lines and other names are skipped.
  //
  // Bounds: at most kMaxMtreeTextBytes of text, kMaxMtreeLines lines, kMaxRamRegions ranges
  // of our block; hex numbers of at most 16 digits, prio an int32.
  // Errors: kProtocol "info mtree -f line 12: ..." for a malformed or unexpected line, an
  // input over a bound, no FlatView for AS "memory", a range of our block that is not RAM
  // (i/o) or that breaks a from_regions() rule (page alignment, overlap, past the file);
  // kNotFound when the memory view holds no range of `ram_block_name` (the message lists
  // the ram/rom region names it did see).
  [[nodiscard]] static Result<RamLayout> parse_mtree(std::string_view info_mtree_f_text,
                                                     std::string_view ram_block_name,
                                                     uint64_t file_size_bytes);

  // The identity layout of a plain file: one region gpa 0 .. file_size_bytes at offset 0
  // (tests, raw dumps). No alignment demanded. file_size_bytes == 0 gives a layout with no
  // regions, in which every lookup fails with kOutOfRange.
  [[nodiscard]] static RamLayout identity(uint64_t file_size_bytes);

  // Regions sorted by gpa, merged. Valid for the lifetime of this object.
  const std::vector<RamRegion>& regions() const noexcept { return regions_; }
  // Size of the file the offsets point into.
  uint64_t file_size_bytes() const noexcept { return file_size_bytes_; }
  // Sum of region sizes (aliased file bytes counted once per gpa range).
  uint64_t ram_bytes() const noexcept { return ram_bytes_; }
  // One past the highest mapped gpa (0 when there are no regions).
  Gpa end_gpa() const noexcept;

  // File offset of `gpa`; [gpa, gpa + len) must lie inside one region (len 0 checks gpa
  // alone). O(log n_regions).
  // Errors: kOutOfRange "gpa 0x... (+0x... bytes) is outside guest RAM (regions: 0x0-0x9ffff,
  // ...)" when it falls in a hole, past the end, wraps, or crosses the end of a region.
  [[nodiscard]] Result<uint64_t> file_offset(Gpa gpa, uint64_t len) const;

  // Inverse of file_offset(): the gpa of file byte `file_offset`. When several gpa ranges
  // alias that byte, the lowest gpa wins. O(n_regions).
  // Errors: kOutOfRange when no region maps that file byte (e.g. the file bytes under the
  // VGA hole, or past the end of the file).
  [[nodiscard]] Result<Gpa> gpa_of(uint64_t file_offset) const;

  // "0x0-0x9ffff@0x0, 0xc0000-0xbfffffff@0xc0000, 0x100000000-0x15fffffff@0xc0000000":
  // inclusive gpa ranges, each with the file offset of its first byte.
  std::string describe() const;

 private:
  RamLayout() = default;
  std::vector<RamRegion> regions_;
  uint64_t file_size_bytes_ = 0;
  uint64_t ram_bytes_ = 0;
};

// A mapped RAM file seen through its layout: `base` points at file offset 0 of a mapping of
// `size_bytes` bytes (the PROT_READ mmap of the RAM file, a mirror's buffer, a mapped dump).
// Non-owning: the mapping must outlive the view and every pointer it hands out.
// Thread-safety: const and reentrant; see the file comment about a running guest.
class RamView {
 public:
  // Requires size_bytes >= layout.file_size_bytes() and base != nullptr unless size_bytes is
  // 0 (asserted in debug builds). In release builds a shorter mapping is tolerated: the view
  // clamps to it, so bytes past `size_bytes` are never touched and reads of them fail with
  // kOutOfRange, although the layout says they exist.
  RamView(const uint8_t* base, uint64_t size_bytes, RamLayout layout);

  // Host pointer to guest bytes [gpa, gpa + len), which lie inside one region.
  // Errors: kOutOfRange as RamLayout::file_offset(), or past the end of the mapping.
  [[nodiscard]] Result<const uint8_t*> at(Gpa gpa, uint64_t len) const;

  // Copies out.size() bytes at `gpa` into `out`. The range must lie inside one region (reads
  // do not cross regions, even adjacent ones). Errors: as at(); `out` is untouched on error.
  [[nodiscard]] Result<void> read(Gpa gpa, std::span<uint8_t> out) const;

  const RamLayout& layout() const noexcept { return layout_; }
  const uint8_t* base() const noexcept { return base_; }
  // Size of the mapping behind base().
  uint64_t size_bytes() const noexcept { return size_bytes_; }

 private:
  const uint8_t* base_;
  uint64_t size_bytes_;
  RamLayout layout_;
};

}  // namespace glassbox::shared
