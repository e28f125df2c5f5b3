// Process memory maps (what /proc/PID/maps shows) and the guest-physical pages of each
// process, recovered from raw guest RAM of a Linux 6.1 x86-64 guest.
//
// Sources of the algorithms (Linux 6.1):
//  - VMAs live in mm_struct.mm_mt, a maple tree (lib/maple_tree.c, include/linux/
//    maple_tree.h). ma_root is NULL (empty), a node tagged as internal ((root & 3) == 2 and
//    root > 4096: xa_is_node()), or a single entry for index 0 alone. An encoded node
//    ("enode") is node address | type << 3 | bit 2; the node is enode & ~0xff
//    (MAPLE_NODE_MASK), the type (enode >> 3) & 0xf: maple_dense 0, maple_leaf_64 1,
//    maple_range_64 2, maple_arange_64 3; types below maple_range_64 are leaves. Child slots
//    of internal nodes hold enodes (without the root tag). The used slots are 0..end
//    (ma_data_end()): for arange_64, end is the node's metadata; for range_64 and leaf_64,
//    when the last pivot is 0 the metadata (which overlays the last slot) gives it, when it
//    equals the node's max it is the last pivot's index, else every slot is used. Slot i
//    spans [previous pivot + 1, pivot i] (pivot 0 past slot 0, or past the pivot array,
//    means the node's max: mas_logical_pivot()). mm trees (MM_MT_FLAGS) have arange_64
//    internal nodes and leaf_64 leaves; a leaf entry is a vm_area_struct * stored at
//    [vm_start, vm_end - 1].
//  - The columns of /proc/PID/maps: fs/proc/task_mmu.c show_map_vma(); the offset column
//    is vm_pgoff << 12 for file mappings and 0 otherwise; names: the file's d_path(),
//    vm_ops->name() (special mappings: vm_special_mapping.name, "[vdso]", "[vvar]"),
//    "[heap]" (vm_start <= brk && vm_end >= start_brk), "[stack]" (the VMA holds
//    start_stack), "[anon:NAME]" (CONFIG_ANON_VMA_NAME).
//  - File paths: fs/d_path.c d_path() / prepend_path(): d_name components from the dentry up
//    its d_parent chain; at a mount's root (dentry == vfsmount.mnt_root) the walk continues
//    from mount.mnt_mountpoint in mount.mnt_parent, until a mount that is its own parent
//    (the namespace root). An unhashed dentry that is not a root gets " (deleted)". A dentry
//    with d_op->d_dname (and not its mount's root) is named by that function instead; the
//    ones recognised by their kallsyms address: simple_dname (fs/libfs.c; shmem/memfd files
//    from alloc_file_pseudo(): "/NAME (deleted)"), anon_inodefs_dname ("anon_inode:NAME"),
//    pipefs_dname ("pipe:[INO]"), sockfs_dname ("socket:[INO]").
//
// Guest memory is hostile: every node, VMA, dentry and mount is read through a bounded
// reader; walks are bounded (kMaxMapleNodes, kMaxMapleDepth, kMaxVmas, kMaxPathDepth) and
// cycle-checked; names are length-limited and sanitised (bytes outside 0x20..0x7e become
// '?'). Inconsistent data ends or skips that part with a warning: the answer is partial,
// never a crash or a hang. A running guest changes these structures under the reader: pause
// it for a consistent view.
//
// Units: addresses are guest-virtual (kernel VAs for kernel objects, user VAs for VMAs)
// unless named gpa; sizes in bytes.
// Thread-safety: all functions are reentrant; they only read guest RAM and the profile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "services/semantic_db/address_space.hpp"
#include "services/semantic_db/introspect.hpp"
#include "services/semantic_db/kernel_types.hpp"
#include "shared/address.hpp"
#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::semantic_db {

// Bounds on hostile structures.
inline constexpr std::size_t kMaxVmas = 1u << 18;        // per mm (default max_map_count 65530)
inline constexpr std::size_t kMaxMapleNodes = 1u << 17;  // nodes visited per tree
inline constexpr int kMaxMapleDepth = 32;                // tree height (MAPLE_HEIGHT_MAX is 31)
inline constexpr int kMaxPathDepth = 256;                // dentries + mount crossings per path
inline constexpr std::size_t kMaxPathBytes = 4096;       // PATH_MAX
inline constexpr std::size_t kMaxDentryNameBytes = 255;  // NAME_MAX
inline constexpr std::size_t kMaxSpecialNameBytes = 32;  // vm_special_mapping.name strings
// End of the x86-64 user half with 4-level paging (TASK_SIZE_MAX + one guard page).
inline constexpr uint64_t kUserHalfEnd = 0x0000800000000000ULL;

// Reads guest-virtual memory: fills `out` from `gva` and returns the number of bytes read
// (out.size(), or fewer when a later page is unreadable). Errors when the first byte is
// unreadable. KernelAddressSpace::read_virtual() and PageTableWalker::read_virtual() fit;
// tests pass a fake.
using GvaReader = std::function<Result<std::size_t>(Gva gva, std::span<uint8_t> out)>;

// One entry of a maple tree: the value stored at indices [first, last].
struct MapleEntry {
  uint64_t first = 0;
  uint64_t last = 0;   // inclusive
  uint64_t value = 0;  // the slot's content (for an mm tree: a vm_area_struct *)
};

struct MapleWalk : Walk {
  std::vector<MapleEntry> entries;  // non-NULL leaf entries, in index order
  std::size_t n_nodes = 0;          // nodes read
};

// Walks the maple tree whose `struct maple_tree` is at `tree_gva` (e.g. mm + mm_struct.mm_mt)
// depth-first, left to right, and returns its non-NULL entries with their index ranges.
// Layouts from `o` (maple_tree, maple_node, maple_range_64, maple_arange_64, maple_metadata;
// slot and pivot counts from BTF). Entries whose low two bits are not 0 (xarray values and
// reserved internal entries: never a vm_area_struct) are skipped and counted in a warning.
// Checks: node and child addresses in the kernel half, node types 0..3 (dense only as a
// leaf), each node read whole, each child's parent pointer naming its parent (a node that is
// its own parent is dead: skipped), pivots ascending inside the node's [min, max], depth
// <= kMaxMapleDepth, at most kMaxMapleNodes nodes, no node visited twice, at most
// `max_entries` entries. A failed check skips that node or slot with a warning.
// Errors: none (an unreadable tree gives no entries and a warning).
[[nodiscard]] MapleWalk walk_maple_tree(const GvaReader& read, const KernelOffsets& o,
                                        uint64_t tree_gva, std::size_t max_entries = kMaxVmas);

// Run-time (kallsyms) addresses that name things the kernel computes with a function call;
// 0 when unknown (the thing then stays unnamed, with a warning).
struct MapSymbols {
  uint64_t special_mapping_vmops = 0;  // mm/mmap.c: vm_ops of _install_special_mapping()
  uint64_t simple_dname = 0, anon_inodefs_dname = 0, pipefs_dname = 0, sockfs_dname = 0;
};

// Looks the MapSymbols up in `symbols` (missing ones stay 0). Never fails.
MapSymbols map_symbols(const Symbols& symbols);

// A file path as d_path() would build it (see the file comment), best effort.
struct DentryPath {
  std::string path;      // e.g. "/usr/lib/libc.so.6", "/memfd:x (deleted)"; <= kMaxPathBytes
  bool complete = true;  // false: `path` holds the components read so far after ".../"
  std::string problem;   // why it is incomplete (empty when complete)
};

// The path of (vfsmount_gva, dentry_gva) (a struct path) up to the root of its mount tree
// (the global root: a process in a chroot or another mount namespace is shown as seen from
// there, not from the reader's root). Components are d_name (qstr name pointer and len; a len
// over kMaxDentryNameBytes, or an unreadable name, is a problem), joined with '/'. At most
// kMaxPathDepth steps and kMaxPathBytes bytes; a dentry or mount seen twice (a cycle) stops
// the walk. A d_op->d_dname dentry is named as the file comment says from `syms`; an unknown
// d_dname function gives the d_name path, marked incomplete.
// Errors: none; see DentryPath::complete.
[[nodiscard]] DentryPath dentry_path(const GvaReader& read, const KernelOffsets& o,
                                     uint64_t vfsmount_gva, uint64_t dentry_gva,
                                     const MapSymbols& syms = {});

// One line of /proc/PID/maps.
struct Vma {
  uint64_t start = 0, end = 0;  // user gva; end exclusive
  uint64_t vm_flags = 0;
  std::string perms;          // "r-xp": VM_READ 1, VM_WRITE 2, VM_EXEC 4, VM_SHARED 8 ('s'/'p')
  uint64_t offset_bytes = 0;  // vm_pgoff << 12 for a file mapping, else 0 (as the kernel shows)
  uint64_t inode = 0;         // vm_file->f_inode->i_ino, 0 when anonymous
  uint32_t dev_major = 0, dev_minor = 0;  // vm_file->f_inode->i_sb->s_dev (MAJOR/MINOR)
  std::string path;      // d_path() of vm_file, or "[heap]", "[stack]", "[vdso]", "[vvar]",
                         // "[anon:NAME]", or "" (anonymous)
  uint64_t vma_gva = 0;  // the vm_area_struct's kernel address
};

struct VmaWalk : Walk {
  std::vector<Vma> vmas;  // ordered by start, not overlapping
};

// The VMAs of the mm_struct at `mm_gva`: walk_maple_tree() over mm->mm_mt, then each
// vm_area_struct read and checked (vm_start < vm_end, page-aligned, vm_mm == mm_gva, below
// kUserHalfEnd, after the previous VMA without overlap); a failed check skips that VMA with a
// warning (a VMA stored in the tree at a range other than [vm_start, vm_end - 1] is kept,
// with a warning). Names as in the file comment. With syms.special_mapping_vmops == 0,
// special mappings ([vdso], [vvar]) are unnamed, with a warning if any anonymous VMA has
// vm_ops. legacy_special_mapping_vmops have no name() (the kernel prints no name for them,
// and their vm_private_data is a page array), so they are not named either.
// Errors: none (an unreadable mm gives no VMAs and a warning).
[[nodiscard]] VmaWalk vmas_of_mm(const GvaReader& read, const KernelOffsets& o, uint64_t mm_gva,
                                 const MapSymbols& syms);

struct VmaList : Walk {
  int32_t pid = 0;
  std::string comm;
  std::vector<Vma> vmas;  // ordered by start
};

// The memory map of process (or thread) `pid`, as `cat /proc/PID/maps` in the guest would
// show it (see format_maps_line()). The task is
// found on the init_task.tasks list (thread-group leaders), then on each leader's
// thread_group list; bounded by kMaxTasks and cycle-checked.
// A kernel thread (mm == NULL) gives an empty list and a warning.
// Errors: kNotFound "no process with pid N" (a partial task list adds its warnings to the
// message); as KernelAddressSpace::create(); kNotFound when init_task is not in kallsyms.
[[nodiscard]] Result<VmaList> list_vmas(const shared::RamView& ram, const KernelProfile& profile,
                                        int32_t pid);

// One /proc/PID/maps line, byte for byte as show_map_vma() prints it, without the newline:
// "00400000-00401000 r--p 00000000 00:02 9" then a space; with a path, spaces up to column
// 73 (the header padded to 72 characters, then one more) and the path. Hex is lower case;
// start, end and offset at least 8 digits, major and minor at least 2.
std::string format_maps_line(const Vma& vma);

struct ProcessRegions {
  int32_t pid = 0;
  std::string comm;
  std::vector<MappedRange> ranges;  // user-half pages -> gpa, sorted by va, merged
  bool truncated = false;           // max_ranges_per_process (or the walk's entry bound) hit
};

struct RegionMap : Walk {
  std::vector<ProcessRegions> processes;  // thread-group leaders with an mm, ordered by pid
};

// Which guest-physical pages each process maps: for every thread-group leader with an mm,
// mm->pgd (a kernel VA) translated to a gpa through KernelAddressSpace, then
// PageTableWalker::mapped_ranges() over the user half [0, kUserHalfEnd), at most
// `max_ranges_per_process` ranges each. Several processes may map the same gpa (shared
// libraries, page cache, CLONE_VM). Flags are those of mm->pgd, the kernel's copy of the
// PML4: under page-table isolation the kernel sets NX in its copy's user-half entries, so
// `nx` then reads true for every range. A process whose pgd is unreadable is left out with a
// warning; a truncated one is flagged. Bounded: processes sharing a pgd are walked once, a
// table met twice in one tree is skipped, and the call visits at most
// kMaxRegionEntriesPerCall entries (later processes come back truncated, with a warning).
// Errors: as KernelAddressSpace::create(); kNotFound when init_task is not in kallsyms.
// Page-table entries one user_regions() call visits at most, over all processes (512 per
// table visited: a small process needs a few thousand).
inline constexpr std::size_t kMaxRegionEntriesPerCall = 1u << 22;

[[nodiscard]] Result<RegionMap> user_regions(const shared::RamView& ram,
                                             const KernelProfile& profile,
                                             std::size_t max_ranges_per_process = 4096);

}  // namespace glassbox::semantic_db
