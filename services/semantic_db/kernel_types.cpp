#include "services/semantic_db/kernel_types.hpp"

#include <linux/btf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "services/semantic_db/byte_order.hpp"

namespace glassbox::semantic_db {
namespace {

// Bounds how deep anonymous members are searched (real kernels nest 2-3 levels).
constexpr int kMaxAnonDepth = 8;
// Bounds modifier/typedef chains.
constexpr int kMaxTypeChain = 32;

const btf_type* skip_mods_and_typedefs(const btf* b, uint32_t id, uint32_t* out_id) {
  const btf_type* t = btf__type_by_id(b, id);
  for (int i = 0; t != nullptr && i < kMaxTypeChain && (btf_is_mod(t) || btf_is_typedef(t)); ++i) {
    id = t->type;
    t = btf__type_by_id(b, id);
  }
  if (out_id) *out_id = id;
  return t;
}

}  // namespace

std::vector<BtfCandidate> find_btf_in_ram(const shared::RamView& ram, std::size_t max_candidates) {
  std::vector<BtfCandidate> out;
  constexpr std::size_t kMaxSeen = 4096;  // bound on work for hostile RAM full of magics
  for (const auto& r : ram.layout().regions()) {
    auto p = ram.at(r.gpa, r.size_bytes);
    if (!p || r.size_bytes < 24) continue;
    const uint8_t* base = *p;
    for (uint64_t off = 0; off + 24 <= r.size_bytes && out.size() < kMaxSeen; off += 4) {
      // magic 0xeB9F (LE: 9f eb), version 1, flags 0
      if (base[off] != 0x9f || base[off + 1] != 0xeb || base[off + 2] != 1 || base[off + 3] != 0) {
        continue;
      }
      const uint8_t* h = base + off;
      const uint64_t hdr_len = le32(h + 4), type_off = le32(h + 8), type_len = le32(h + 12),
                     str_off = le32(h + 16), str_len = le32(h + 20);
      if (hdr_len < 24 || hdr_len > 256 || type_off % 4 || str_off % 4 || str_len == 0 ||
          type_len == 0) {
        continue;
      }
      const uint64_t end = hdr_len + std::max(type_off + type_len, str_off + str_len);
      const bool overlap = type_off < str_off + str_len && str_off < type_off + type_len;
      if (overlap || end > kMaxBtfBytes || end > r.size_bytes - off) continue;
      // Content, not only a header (struct btf in the kernel's slab embeds a copy of the
      // header): the string section starts with "" then a non-empty string and ends with
      // NUL; the first type's kind is valid (1..BTF_KIND_MAX).
      const uint8_t* strs = h + hdr_len + str_off;
      const uint8_t* types = h + hdr_len + type_off;
      const uint32_t kind = type_len >= 12 ? (le32(types + 4) >> 24) & 0x1f : 0;
      if (str_len < 2 || strs[0] != 0 || strs[1] == 0 || strs[str_len - 1] != 0 || kind == 0 ||
          kind > BTF_KIND_MAX) {
        continue;
      }
      out.push_back(BtfCandidate{r.gpa + off, end});
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const BtfCandidate& a, const BtfCandidate& b) {
    return a.size_bytes > b.size_bytes;
  });
  if (out.size() > max_candidates) out.resize(max_candidates);
  return out;
}

Result<KernelTypes> KernelTypes::from_bytes(std::span<const uint8_t> bytes) {
  if (bytes.size() > kMaxBtfBytes) {
    return fail(Errc::kInvalidArgument,
                "BTF: " + std::to_string(bytes.size()) + " bytes is over the limit");
  }
  if (bytes.size() < 24) return fail(Errc::kProtocol, "BTF: shorter than its header");
  btf* b = btf__new(bytes.data(), static_cast<uint32_t>(bytes.size()));
  if (b == nullptr) {
    const int e = errno;
    return fail(Errc::kProtocol, std::string("BTF: libbpf rejected the data: ") + std::strerror(e));
  }
  KernelTypes kt;
  kt.btf_.reset(b);
  const uint32_t n = btf__type_cnt(b);
  for (uint32_t id = 1; id < n; ++id) {
    const btf_type* t = btf__type_by_id(b, id);
    if (t == nullptr || !btf_is_composite(t) || t->name_off == 0) continue;
    const char* name = btf__name_by_offset(b, t->name_off);
    if (name == nullptr || *name == '\0') continue;
    kt.composite_ids_.emplace(name, id);
  }
  return kt;
}

Result<KernelTypes> KernelTypes::from_ram(const shared::RamView& ram) {
  for (const BtfCandidate& c : find_btf_in_ram(ram)) {
    auto p = ram.at(c.gpa, c.size_bytes);
    if (!p) continue;
    auto kt = from_bytes(std::span<const uint8_t>(*p, c.size_bytes));
    if (kt && kt->struct_size("task_struct")) return kt;
  }
  return fail(Errc::kNotFound, "BTF: no parsable vmlinux BTF in guest RAM");
}

uint32_t KernelTypes::n_types() const noexcept { return btf_ ? btf__type_cnt(btf_.get()) : 0; }

Result<uint64_t> KernelTypes::struct_size(std::string_view name) const {
  auto it = composite_ids_.find(std::string(name));
  if (it == composite_ids_.end()) {
    return fail(Errc::kNotFound, "BTF: no struct " + std::string(name));
  }
  return btf__type_by_id(btf_.get(), it->second)->size;
}

Result<KernelTypes::Found> KernelTypes::find_member(std::string_view struct_name,
                                                    std::string_view member) const {
  auto it = composite_ids_.find(std::string(struct_name));
  if (it == composite_ids_.end()) {
    return fail(Errc::kNotFound, "BTF: no struct " + std::string(struct_name));
  }
  const btf* b = btf_.get();
  // Depth-first over anonymous members; each frame: type, base bit offset, depth.
  struct Frame {
    const btf_type* t;
    uint64_t bit_base;
    int depth;
  };
  std::vector<Frame> stack{{btf__type_by_id(b, it->second), 0, 0}};
  std::size_t visited = 0;
  while (!stack.empty() && visited < 100000) {
    Frame f = stack.back();
    stack.pop_back();
    const btf_member* m = btf_members(f.t);
    const uint16_t vlen = btf_vlen(f.t);
    // Push anonymous members in reverse so the first declared is searched first.
    std::vector<Frame> anon;
    for (uint16_t i = 0; i < vlen; ++i, ++visited) {
      const uint64_t bit = f.bit_base + btf_member_bit_offset(f.t, i);
      if (m[i].name_off == 0) {
        uint32_t id = 0;
        const btf_type* mt = skip_mods_and_typedefs(b, m[i].type, &id);
        if (mt != nullptr && btf_is_composite(mt) && f.depth < kMaxAnonDepth) {
          anon.push_back(Frame{mt, bit, f.depth + 1});
        }
        continue;
      }
      const char* name = btf__name_by_offset(b, m[i].name_off);
      if (name != nullptr && member == name) {
        Found found;
        found.bit_offset = static_cast<uint32_t>(bit);
        found.bitfield_size = btf_member_bitfield_size(f.t, i);
        found.type_id = m[i].type;
        return found;
      }
    }
    for (auto r = anon.rbegin(); r != anon.rend(); ++r) stack.push_back(*r);
  }
  return fail(Errc::kNotFound,
              "BTF: struct " + std::string(struct_name) + " has no member " + std::string(member));
}

Result<uint64_t> KernelTypes::member_offset(std::string_view struct_name,
                                            std::string_view member) const {
  auto f = find_member(struct_name, member);
  if (!f) return tl::unexpected(f.error());
  if (f->bitfield_size != 0 || f->bit_offset % 8 != 0) {
    return fail(Errc::kUnsupported,
                "BTF: " + std::string(struct_name) + "." + std::string(member) + " is a bitfield");
  }
  return f->bit_offset / 8;
}

Result<uint32_t> KernelTypes::member_size(std::string_view struct_name,
                                          std::string_view member) const {
  auto f = find_member(struct_name, member);
  if (!f) return tl::unexpected(f.error());
  if (f->bitfield_size != 0 || f->bit_offset % 8 != 0) {
    return fail(Errc::kUnsupported,
                "BTF: " + std::string(struct_name) + "." + std::string(member) + " is a bitfield");
  }
  const int64_t sz = btf__resolve_size(btf_.get(), f->type_id);
  if (sz < 0 || sz > UINT32_MAX) {
    return fail(Errc::kProtocol,
                "BTF: cannot size " + std::string(struct_name) + "." + std::string(member));
  }
  return static_cast<uint32_t>(sz);
}

bool KernelTypes::has_member(std::string_view struct_name, std::string_view member) const {
  return static_cast<bool>(find_member(struct_name, member));
}

Result<KernelOffsets> KernelOffsets::resolve(const KernelTypes& kt) {
  KernelOffsets o;
  std::vector<std::string> missing;
  auto off = [&](const char* s, const char* m, uint64_t& dst) {
    if (auto r = kt.member_offset(s, m)) {
      dst = *r;
    } else {
      missing.push_back(std::string(s) + "." + m);
    }
  };
  auto msize = [&](const char* s, const char* m, uint64_t& dst) {
    if (auto r = kt.member_size(s, m)) {
      dst = *r;
    } else {
      missing.push_back(std::string("sizeof ") + s + "." + m);
    }
  };
  auto ssize = [&](const char* s, uint64_t& dst) {
    if (auto r = kt.struct_size(s)) {
      dst = *r;
    } else {
      missing.push_back(std::string("sizeof struct ") + s);
    }
  };
  // Element count of an array of 8-byte elements (pointers, unsigned long).
  auto n_u64 = [&](const char* s, const char* m, uint64_t& dst) {
    uint64_t bytes = 0;
    msize(s, m, bytes);
    if (bytes != 0 && bytes % 8 != 0) {
      missing.push_back(std::string("8-byte elements of ") + s + "." + m);
    }
    dst = bytes / 8;
  };
  // Whichever of `names` exists first.
  auto off_any = [&](const char* s, std::initializer_list<const char*> names, uint64_t& dst,
                     uint64_t* size_dst) {
    for (const char* m : names) {
      if (auto r = kt.member_offset(s, m)) {
        dst = *r;
        if (size_dst) msize(s, m, *size_dst);
        return;
      }
    }
    std::string all;
    for (const char* m : names) all += (all.empty() ? "" : "|") + std::string(m);
    missing.push_back(std::string(s) + "." + all);
  };

  auto& t = o.task_struct;
  ssize("task_struct", t.size);
  off("task_struct", "tasks", t.tasks);
  off("task_struct", "pid", t.pid);
  off("task_struct", "tgid", t.tgid);
  off("task_struct", "real_parent", t.real_parent);
  off("task_struct", "parent", t.parent);
  off("task_struct", "comm", t.comm);
  msize("task_struct", "comm", t.comm_size);
  off("task_struct", "mm", t.mm);
  off("task_struct", "active_mm", t.active_mm);
  off("task_struct", "cred", t.cred);
  off("task_struct", "real_cred", t.real_cred);
  off_any("task_struct", {"__state", "state"}, t.state, &t.state_size);
  off("task_struct", "start_time", t.start_time);
  off("task_struct", "start_boottime", t.start_boottime);
  off("task_struct", "signal", t.signal);
  off("task_struct", "thread_group", t.thread_group);
  off("task_struct", "group_leader", t.group_leader);
  off("task_struct", "flags", t.flags);

  off("signal_struct", "nr_threads", o.signal_struct.nr_threads);

  off("cred", "uid", o.cred.uid);
  off("cred", "euid", o.cred.euid);
  off("cred", "gid", o.cred.gid);

  auto& mm = o.mm_struct;
  off("mm_struct", "pgd", mm.pgd);
  off("mm_struct", "mm_mt", mm.mm_mt);
  off("mm_struct", "start_code", mm.start_code);
  off("mm_struct", "arg_start", mm.arg_start);
  off("mm_struct", "arg_end", mm.arg_end);
  off("mm_struct", "env_start", mm.env_start);
  off("mm_struct", "env_end", mm.env_end);
  off("mm_struct", "exe_file", mm.exe_file);
  off("mm_struct", "start_brk", mm.start_brk);
  off("mm_struct", "brk", mm.brk);
  off("mm_struct", "start_stack", mm.start_stack);

  off("maple_tree", "ma_root", o.maple_tree.ma_root);
  off("maple_tree", "ma_flags", o.maple_tree.ma_flags);
  ssize("maple_node", o.maple_node.size);
  off("maple_node", "parent", o.maple_node.parent);
  off("maple_node", "slot", o.maple_node.slot);
  off("maple_node", "mr64", o.maple_node.mr64);
  off("maple_node", "ma64", o.maple_node.ma64);
  n_u64("maple_node", "slot", o.maple_node.n_slots);
  off("maple_range_64", "pivot", o.maple_range_64.pivot);
  off("maple_range_64", "slot", o.maple_range_64.slot);
  off("maple_range_64", "meta", o.maple_range_64.meta);
  n_u64("maple_range_64", "slot", o.maple_range_64.n_slots);
  n_u64("maple_range_64", "pivot", o.maple_range_64.n_pivots);
  off("maple_arange_64", "pivot", o.maple_arange_64.pivot);
  off("maple_arange_64", "slot", o.maple_arange_64.slot);
  off("maple_arange_64", "gap", o.maple_arange_64.gap);
  off("maple_arange_64", "meta", o.maple_arange_64.meta);
  n_u64("maple_arange_64", "slot", o.maple_arange_64.n_slots);
  n_u64("maple_arange_64", "pivot", o.maple_arange_64.n_pivots);
  off("maple_metadata", "end", o.maple_metadata.end);

  auto& v = o.vm_area_struct;
  off("vm_area_struct", "vm_start", v.vm_start);
  off("vm_area_struct", "vm_end", v.vm_end);
  off("vm_area_struct", "vm_flags", v.vm_flags);
  off("vm_area_struct", "vm_file", v.vm_file);
  off("vm_area_struct", "vm_pgoff", v.vm_pgoff);
  off("vm_area_struct", "vm_mm", v.vm_mm);
  off("vm_area_struct", "vm_ops", v.vm_ops);
  off("vm_area_struct", "vm_private_data", v.vm_private_data);
  if (kt.has_member("vm_area_struct", "anon_name")) {  // CONFIG_ANON_VMA_NAME
    off("vm_area_struct", "anon_name", v.anon_name);
    off("anon_vma_name", "name", o.anon_vma_name.name);
  }
  off("vm_special_mapping", "name", o.vm_special_mapping.name);

  off("file", "f_path", o.file.f_path);
  off("file", "f_inode", o.file.f_inode);
  off("inode", "i_ino", o.inode.i_ino);
  off("inode", "i_sb", o.inode.i_sb);
  off("super_block", "s_dev", o.super_block.s_dev);
  off("path", "mnt", o.path.mnt);
  off("path", "dentry", o.path.dentry);
  off("vfsmount", "mnt_root", o.vfsmount.mnt_root);
  off("mount", "mnt", o.mount.mnt);
  off("mount", "mnt_parent", o.mount.mnt_parent);
  off("mount", "mnt_mountpoint", o.mount.mnt_mountpoint);
  off("dentry", "d_name", o.dentry.d_name);
  off("dentry", "d_parent", o.dentry.d_parent);
  off("dentry", "d_iname", o.dentry.d_iname);
  off("dentry", "d_hash", o.dentry.d_hash);
  off("dentry", "d_inode", o.dentry.d_inode);
  off("dentry", "d_op", o.dentry.d_op);
  off("dentry_operations", "d_dname", o.dentry_operations.d_dname);
  off("hlist_bl_node", "pprev", o.hlist_bl_node.pprev);
  off("qstr", "name", o.qstr.name);
  off("qstr", "len", o.qstr.len);

  off("module", "list", o.module.list);
  off("module", "name", o.module.name);
  msize("module", "name", o.module.name_size);
  off("module", "state", o.module.state);
  if (kt.has_member("module", "core_layout")) {  // <= 6.3
    uint64_t layout = 0, base = 0, size = 0;
    off("module", "core_layout", layout);
    off("module_layout", "base", base);
    off("module_layout", "size", size);
    o.module.core_base = layout + base;
    o.module.core_size = layout + size;
  } else if (kt.has_member("module", "mem")) {  // 6.4+: mem[MOD_TEXT], MOD_TEXT == 0
    uint64_t mem = 0, base = 0, size = 0;
    off("module", "mem", mem);
    off("module_memory", "base", base);
    off("module_memory", "size", size);
    o.module.core_base = mem + base;
    o.module.core_size = mem + size;
  } else {
    missing.push_back("module.core_layout|mem");
  }
  off("list_head", "next", o.list_head.next);
  off("list_head", "prev", o.list_head.prev);

  off("printk_ringbuffer", "desc_ring", o.printk_ringbuffer.desc_ring);
  off("printk_ringbuffer", "text_data_ring", o.printk_ringbuffer.text_data_ring);
  auto& dr = o.prb_desc_ring;
  off("prb_desc_ring", "count_bits", dr.count_bits);
  off("prb_desc_ring", "descs", dr.descs);
  off("prb_desc_ring", "infos", dr.infos);
  off("prb_desc_ring", "head_id", dr.head_id);
  off("prb_desc_ring", "tail_id", dr.tail_id);
  auto& da = o.prb_data_ring;
  off("prb_data_ring", "size_bits", da.size_bits);
  off("prb_data_ring", "data", da.data);
  off("prb_data_ring", "head_lpos", da.head_lpos);
  off("prb_data_ring", "tail_lpos", da.tail_lpos);
  ssize("prb_desc", o.prb_desc.size);
  off("prb_desc", "state_var", o.prb_desc.state_var);
  off("prb_desc", "text_blk_lpos", o.prb_desc.text_blk_lpos);
  off("prb_data_blk_lpos", "begin", o.prb_data_blk_lpos.begin);
  off("prb_data_blk_lpos", "next", o.prb_data_blk_lpos.next);
  auto& pi = o.printk_info;
  ssize("printk_info", pi.size);
  off("printk_info", "seq", pi.seq);
  off("printk_info", "ts_nsec", pi.ts_nsec);
  off("printk_info", "text_len", pi.text_len);
  off("printk_info", "caller_id", pi.caller_id);

  auto& u = o.new_utsname;
  off("new_utsname", "sysname", u.sysname);
  off("new_utsname", "nodename", u.nodename);
  off("new_utsname", "release", u.release);
  off("new_utsname", "version", u.version);
  off("new_utsname", "machine", u.machine);
  msize("new_utsname", "release", u.field_size);
  off("uts_namespace", "name", o.uts_namespace.name);

  if (!missing.empty()) {
    std::string msg = "BTF lacks: ";
    for (std::size_t i = 0; i < missing.size(); ++i) msg += (i ? ", " : "") + missing[i];
    return fail(Errc::kNotFound, msg);
  }
  return o;
}

}  // namespace glassbox::semantic_db
