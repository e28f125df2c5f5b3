// Kernel type layouts (struct sizes and member offsets) read from the kernel's BTF.
//
// Source of the bytes: the vmlinux `.BTF` section (see kernel_image.hpp), or the same bytes
// resident in guest RAM (the .BTF section is loaded with the kernel image; find_btf_in_ram()
// locates it). Parsing is libbpf's (btf__new, libbpf 1.1; BTF format:
// Documentation/bpf/btf.rst): it validates the header, type and string sections.
//
// Offsets are never hard-coded: they differ per build (Debian 6.1.0-56: task_struct.tasks
// 2192, mm 2272, pid 2416, tgid 2420, real_parent 2432, comm 2976; mm_struct.pgd 72).
//
// Units: bytes unless a name says otherwise.
// Thread-safety: KernelTypes is immutable after construction; its const methods only read
// libbpf's parsed tables and may be called from any number of threads. KernelOffsets is a
// plain value.
#pragma once

#include <bpf/btf.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::semantic_db {

// Largest .BTF accepted (Debian 6.1's is about 4.2 MiB).
inline constexpr std::size_t kMaxBtfBytes = 64u << 20;

// A BTF blob seen in guest RAM: the header (magic 0xeB9F, version 1, hdr_len >= 24) with
// type and string sections that fit inside one RAM region.
struct BtfCandidate {
  Gpa gpa;                  // first byte of the header
  uint64_t size_bytes = 0;  // hdr_len + end of the later of the type and string sections
};

// Scans every region of `ram` (4-byte aligned positions) for BTF headers whose lengths are
// consistent (type_off, str_off 4-aligned as libbpf wants, sections inside the blob, blob at
// most kMaxBtfBytes and inside the region) and whose content looks like BTF (string section
// "\0name...\0", first type of a valid kind): the kernel's struct btf embeds a copy of the
// header alone, which is skipped. Returns at most `max_candidates`, largest first:
// the vmlinux BTF is the largest; module BTF is split BTF and cannot be parsed alone.
// Cost: one pass over guest RAM. Errors: none (an empty vector when nothing matched).
[[nodiscard]] std::vector<BtfCandidate> find_btf_in_ram(const shared::RamView& ram,
                                                        std::size_t max_candidates = 16);

class KernelTypes {
 public:
  // Parses `btf_bytes` (copied; the span need not outlive the call) and indexes every named
  // struct and union (the first definition of a duplicated name wins).
  // Errors: kInvalidArgument when larger than kMaxBtfBytes; kProtocol "BTF: ..." when libbpf
  // rejects the bytes.
  [[nodiscard]] static Result<KernelTypes> from_bytes(std::span<const uint8_t> btf_bytes);

  // Tries find_btf_in_ram() candidates, largest first, and keeps the first that parses and
  // defines struct task_struct.
  // Errors: kNotFound "BTF: no parsable vmlinux BTF in guest RAM".
  [[nodiscard]] static Result<KernelTypes> from_ram(const shared::RamView& ram);

  KernelTypes(KernelTypes&&) noexcept = default;
  KernelTypes& operator=(KernelTypes&&) noexcept = default;

  // sizeof(struct or union `name`).
  // Errors: kNotFound "BTF: no struct <name>".
  [[nodiscard]] Result<uint64_t> struct_size(std::string_view name) const;

  // Byte offset of member `member` (one name, no dots) in struct/union `struct_name`,
  // descending into anonymous struct/union members (mm_struct.pgd sits in one in 6.1).
  // Errors: kNotFound "BTF: struct <s> has no member <m>" (or no such struct);
  // kUnsupported for a bitfield member or one not on a byte boundary.
  [[nodiscard]] Result<uint64_t> member_offset(std::string_view struct_name,
                                               std::string_view member) const;

  // sizeof the member's type (arrays: the whole array, e.g. task_struct.comm is 16).
  // Errors: as member_offset(); kProtocol when libbpf cannot size the type.
  [[nodiscard]] Result<uint32_t> member_size(std::string_view struct_name,
                                             std::string_view member) const;

  // Whether `struct_name` has `member` (anonymous members searched).
  bool has_member(std::string_view struct_name, std::string_view member) const;

  // Number of types in the BTF (type ids 1..n_types-1 valid).
  uint32_t n_types() const noexcept;

 private:
  struct BtfDeleter {
    void operator()(btf* b) const noexcept { btf__free(b); }
  };
  struct Found {
    uint32_t bit_offset = 0;
    uint32_t bitfield_size = 0;
    uint32_t type_id = 0;
  };
  KernelTypes() = default;
  Result<Found> find_member(std::string_view struct_name, std::string_view member) const;

  std::unique_ptr<btf, BtfDeleter> btf_;
  std::unordered_map<std::string, uint32_t> composite_ids_;
};

// Every offset the introspection reads, resolved once from BTF. All values are byte
// offsets inside the named struct (or sizes where the name ends in _size).
struct KernelOffsets {
  struct {
    uint64_t size = 0, tasks = 0, pid = 0, tgid = 0, real_parent = 0, parent = 0, comm = 0,
             comm_size = 0, mm = 0, active_mm = 0, cred = 0, real_cred = 0,
             state = 0,  // `__state` (5.14+) or `state`; an unsigned int in 6.1
        state_size = 0, start_time = 0, start_boottime = 0, signal = 0, thread_group = 0,
             group_leader = 0, flags = 0;
  } task_struct;
  struct {
    uint64_t nr_threads = 0;  // int: threads in the thread group (task_struct.signal)
  } signal_struct;
  struct {
    uint64_t uid = 0, euid = 0, gid = 0;
  } cred;
  struct {
    uint64_t pgd = 0, mm_mt = 0, start_code = 0, arg_start = 0, arg_end = 0, env_start = 0,
             env_end = 0, exe_file = 0, start_brk = 0, brk = 0, start_stack = 0;
  } mm_struct;
  struct {
    uint64_t ma_root = 0, ma_flags = 0;
  } maple_tree;
  // Maple tree nodes (lib/maple_tree.c). n_slots/n_pivots: element counts of the slot and
  // pivot arrays, from their BTF sizes (6.1 on 64-bit: dense 31; range_64 16/15;
  // arange_64 10/9).
  struct {
    uint64_t size = 0, parent = 0, slot = 0, mr64 = 0, ma64 = 0, n_slots = 0;
  } maple_node;
  struct {
    uint64_t pivot = 0, slot = 0, meta = 0,  // meta overlays the last slot (when not full)
        n_slots = 0, n_pivots = 0;
  } maple_range_64;
  struct {
    uint64_t pivot = 0, slot = 0, gap = 0, meta = 0, n_slots = 0, n_pivots = 0;
  } maple_arange_64;
  struct {
    uint64_t end = 0;  // unsigned char: last used slot
  } maple_metadata;
  struct {
    uint64_t vm_start = 0, vm_end = 0, vm_flags = 0, vm_file = 0, vm_pgoff = 0, vm_mm = 0,
             vm_ops = 0, vm_private_data = 0;
    // `anon_name` (struct anon_vma_name *; CONFIG_ANON_VMA_NAME): 0 when the kernel lacks it
    // (optional: never listed as missing; offset 0 is vm_start, so 0 is unambiguous).
    uint64_t anon_name = 0;
  } vm_area_struct;
  struct {
    uint64_t name = 0;  // char name[]; valid when vm_area_struct.anon_name is not 0
  } anon_vma_name;
  struct {
    uint64_t name = 0;  // const char *
  } vm_special_mapping;
  struct {
    uint64_t f_path = 0, f_inode = 0;
  } file;
  struct {
    uint64_t i_ino = 0,  // unsigned long
        i_sb = 0;        // struct super_block *
  } inode;
  struct {
    uint64_t s_dev = 0;  // dev_t (u32): major << 20 | minor
  } super_block;
  struct {
    uint64_t mnt = 0, dentry = 0;
  } path;
  struct {
    uint64_t mnt_root = 0;  // struct dentry *
  } vfsmount;
  struct {
    // struct mount (fs/mount.h) embeds `struct vfsmount mnt`: mount = vfsmount - mnt.
    uint64_t mnt = 0, mnt_parent = 0, mnt_mountpoint = 0;
  } mount;
  struct {
    uint64_t d_name = 0, d_parent = 0, d_iname = 0,
             d_hash = 0,  // struct hlist_bl_node: pprev == NULL means unhashed
        d_inode = 0, d_op = 0;
  } dentry;
  struct {
    uint64_t d_dname = 0;  // char *(*)(struct dentry *, char *, int)
  } dentry_operations;
  struct {
    uint64_t pprev = 0;
  } hlist_bl_node;
  struct {
    uint64_t name = 0, len = 0;  // len is a u32 inside an anonymous union (hash_len)
  } qstr;
  struct {
    uint64_t list = 0, name = 0, name_size = 0, state = 0;
    // Offsets (from the start of struct module, the inner struct's offset already added) of
    // the pointer to the module's core mapping and of its size (unsigned int): 6.1 has
    // core_layout.{base,size}; 6.4+ has mem[MOD_TEXT].{base,size}.
    uint64_t core_base = 0, core_size = 0;
  } module;
  struct {
    uint64_t next = 0, prev = 0;
  } list_head;
  struct {
    uint64_t desc_ring = 0, text_data_ring = 0;
  } printk_ringbuffer;
  struct {
    uint64_t count_bits = 0, descs = 0, infos = 0, head_id = 0, tail_id = 0;
  } prb_desc_ring;
  struct {
    uint64_t size_bits = 0, data = 0, head_lpos = 0, tail_lpos = 0;
  } prb_data_ring;
  struct {
    uint64_t size = 0, state_var = 0, text_blk_lpos = 0;
  } prb_desc;
  struct {
    uint64_t begin = 0, next = 0;
  } prb_data_blk_lpos;
  struct {
    uint64_t size = 0, seq = 0, ts_nsec = 0, text_len = 0, caller_id = 0;
  } printk_info;
  struct {
    uint64_t sysname = 0, nodename = 0, release = 0, version = 0, machine = 0, field_size = 0;
  } new_utsname;
  struct {
    uint64_t name = 0;
  } uts_namespace;

  // Resolves everything above. Alternatives across versions are handled where noted.
  // Errors: kNotFound "BTF lacks: task_struct.foo, cred.bar" naming every missing or
  // unusable (bitfield) item.
  [[nodiscard]] static Result<KernelOffsets> resolve(const KernelTypes& types);
};

}  // namespace glassbox::semantic_db
