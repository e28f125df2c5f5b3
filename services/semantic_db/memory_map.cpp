#include "services/semantic_db/memory_map.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_set>
#include <utility>

namespace glassbox::semantic_db {
namespace {

// Lowest kernel-half address (4-level paging).
constexpr uint64_t kKernelHalf = 0xffff800000000000ULL;
constexpr uint64_t kMapleNodeMask = 0xff;  // MAPLE_NODE_MASK
constexpr unsigned kMapleTypeShift = 3;    // MAPLE_ENODE_TYPE_SHIFT
constexpr uint64_t kMapleTypeMask = 0xf;   // MAPLE_ENODE_TYPE_MASK
constexpr uint64_t kMaRootParent = 1;      // MA_ROOT_PARENT
enum MapleType : unsigned { kDense = 0, kLeaf64 = 1, kRange64 = 2, kArange64 = 3 };
constexpr uint64_t kMaxNodeBytes = 4096;       // sanity bound on sizeof(struct maple_node)
constexpr uint64_t kMaxVmaStructBytes = 4096;  // bound on the part of a VMA that is read
constexpr std::size_t kMaxAnonNameBytes = 80;  // ANON_VMA_NAME_MAX_LEN
constexpr std::size_t kMaxEntryWarnings = 16;  // per walk, then one summary line
// VM_* flags (include/linux/mm.h).
constexpr uint64_t kVmRead = 0x1, kVmWrite = 0x2, kVmExec = 0x4, kVmShared = 0x8;

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

bool is_kernel_ptr(uint64_t v) { return v >= kKernelHalf; }

// Printable, stops at NUL, at most `max` bytes.
std::string sanitize(const uint8_t* p, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n && p[i] != 0; ++i) {
    const char c = static_cast<char>(p[i]);
    s.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  return s;
}

bool read_exact(const GvaReader& read, uint64_t va, std::span<uint8_t> out) {
  auto n = read(Gva(va), out);
  return n && *n == out.size();
}

std::optional<uint64_t> read_u64(const GvaReader& read, uint64_t va) {
  uint8_t b[8];
  if (!read_exact(read, va, b)) return std::nullopt;
  uint64_t v;
  std::memcpy(&v, b, 8);
  return v;
}

std::optional<uint32_t> read_u32(const GvaReader& read, uint64_t va) {
  uint8_t b[4];
  if (!read_exact(read, va, b)) return std::nullopt;
  uint32_t v;
  std::memcpy(&v, b, 4);
  return v;
}

// A NUL-terminated string of at most `max` bytes at `va` (a shorter read near an unmapped
// page is accepted); nullopt when nothing is readable.
std::optional<std::string> read_cstring(const GvaReader& read, uint64_t va, std::size_t max) {
  std::vector<uint8_t> b(max, 0);
  auto n = read(Gva(va), b);
  if (!n || *n == 0) return std::nullopt;
  return sanitize(b.data(), *n);
}

template <typename T>
T field(const std::vector<uint8_t>& buf, uint64_t off) {
  T v{};
  if (off <= buf.size() && sizeof(T) <= buf.size() - off)
    std::memcpy(&v, buf.data() + off, sizeof v);
  return v;
}

// Adds `w` unless `n_warnings` already reached the cap (then one summary at the end).
struct WarningSink {
  std::vector<std::string>* out;
  std::size_t n = 0;
  void add(std::string w) {
    if (n++ < kMaxEntryWarnings) out->push_back(std::move(w));
  }
  void finish(const char* what) {
    if (n > kMaxEntryWarnings) {
      out->push_back(std::to_string(n - kMaxEntryWarnings) + " more " + what + " warnings");
    }
  }
};

// Layout of one maple node type inside struct maple_node.
struct NodeLayout {
  uint64_t pivots = 0, slots = 0, meta_end = 0;
  uint64_t n_pivots = 0, n_slots = 0;
  bool has_meta = false;
};

NodeLayout layout_of(const KernelOffsets& o, unsigned type) {
  NodeLayout l;
  switch (type) {
    case kDense:
      l.slots = o.maple_node.slot;
      l.n_slots = o.maple_node.n_slots;
      break;
    case kLeaf64:
    case kRange64:
      l.pivots = o.maple_node.mr64 + o.maple_range_64.pivot;
      l.slots = o.maple_node.mr64 + o.maple_range_64.slot;
      l.meta_end = o.maple_node.mr64 + o.maple_range_64.meta + o.maple_metadata.end;
      l.n_pivots = o.maple_range_64.n_pivots;
      l.n_slots = o.maple_range_64.n_slots;
      l.has_meta = true;
      break;
    default:
      l.pivots = o.maple_node.ma64 + o.maple_arange_64.pivot;
      l.slots = o.maple_node.ma64 + o.maple_arange_64.slot;
      l.meta_end = o.maple_node.ma64 + o.maple_arange_64.meta + o.maple_metadata.end;
      l.n_pivots = o.maple_arange_64.n_pivots;
      l.n_slots = o.maple_arange_64.n_slots;
      l.has_meta = true;
      break;
  }
  return l;
}

bool layout_fits(const NodeLayout& l, uint64_t node_size) {
  if (l.n_slots == 0 || l.n_slots > 64 || l.n_pivots > 64) return false;
  if (l.slots + l.n_slots * 8 > node_size || l.pivots + l.n_pivots * 8 > node_size) return false;
  return !l.has_meta || l.meta_end < node_size;
}

}  // namespace

MapleWalk walk_maple_tree(const GvaReader& read, const KernelOffsets& o, uint64_t tree_gva,
                          std::size_t max_entries) {
  MapleWalk w;
  const uint64_t node_size = o.maple_node.size;
  if (node_size < 16 || node_size > kMaxNodeBytes) {
    w.warnings.push_back("maple_node size " + std::to_string(node_size) + " is implausible");
    return w;
  }
  auto root = read_u64(read, tree_gva + o.maple_tree.ma_root);
  if (!root) {
    w.warnings.push_back("maple tree at " + hex(tree_gva) + " unreadable");
    return w;
  }
  if (*root == 0) return w;  // empty tree
  const bool root_is_node = (*root & 3) == 2 && *root > 4096;
  if (!root_is_node) {
    // A single entry, stored for index 0 only (mas_start()).
    if ((*root & 3) != 0) {
      w.warnings.push_back("maple tree root holds a non-pointer entry " + hex(*root));
    } else {
      w.entries.push_back(MapleEntry{0, 0, *root});
    }
    return w;
  }

  struct Frame {
    uint64_t enode;
    uint64_t parent_node;  // 0 for the root
    uint64_t min, max;
    int depth;
  };
  WarningSink warn{&w.warnings};
  std::size_t n_non_pointer = 0;
  std::unordered_set<uint64_t> seen;
  std::vector<Frame> stack{{*root & ~uint64_t{2}, 0, 0, ~uint64_t{0}, 1}};
  std::vector<uint8_t> buf(node_size);
  std::vector<Frame> children;
  bool stop = false;
  while (!stack.empty() && !stop) {
    const Frame f = stack.back();
    stack.pop_back();
    const uint64_t node = f.enode & ~kMapleNodeMask;
    const unsigned type = static_cast<unsigned>((f.enode >> kMapleTypeShift) & kMapleTypeMask);
    const std::string where = "maple node " + hex(node);
    if (f.depth > kMaxMapleDepth) {
      warn.add(where + ": deeper than " + std::to_string(kMaxMapleDepth) + " levels; skipped");
      continue;
    }
    if (!is_kernel_ptr(node)) {
      warn.add(where + ": not a kernel address; skipped");
      continue;
    }
    if (type > kArange64) {
      warn.add(where + ": unknown node type " + std::to_string(type) + "; skipped");
      continue;
    }
    if (!seen.insert(node).second) {
      warn.add(where + ": visited twice (a cycle); skipped");
      continue;
    }
    if (w.n_nodes >= kMaxMapleNodes) {
      w.warnings.push_back("more than " + std::to_string(kMaxMapleNodes) +
                           " maple nodes; walk cut");
      break;
    }
    ++w.n_nodes;
    if (!read_exact(read, node, buf)) {
      warn.add(where + ": unreadable; skipped");
      continue;
    }
    const uint64_t parent = field<uint64_t>(buf, o.maple_node.parent);
    if (f.parent_node == 0) {
      if (parent != (tree_gva | kMaRootParent)) {
        warn.add(where + ": root's parent " + hex(parent) + " does not name the tree");
      }
    } else if ((parent & ~kMapleNodeMask) == node) {
      warn.add(where + ": dead node (its own parent); skipped");
      continue;
    } else if ((parent & ~kMapleNodeMask) != f.parent_node) {
      warn.add(where + ": parent " + hex(parent) + " is not " + hex(f.parent_node) + "; skipped");
      continue;
    }
    const NodeLayout l = layout_of(o, type);
    if (!layout_fits(l, node_size)) {
      w.warnings.push_back(where + ": node layout (type " + std::to_string(type) +
                           ") does not fit maple_node; walk stopped");
      break;
    }
    const bool leaf = type < kRange64;
    auto slot = [&](uint64_t i) { return field<uint64_t>(buf, l.slots + i * 8); };
    auto emit = [&](uint64_t first, uint64_t last, uint64_t value) {
      if (value == 0) return;
      if ((value & 3) != 0) {
        ++n_non_pointer;
        return;
      }
      if (w.entries.size() >= max_entries) {
        w.warnings.push_back("more than " + std::to_string(max_entries) + " entries; walk cut");
        stop = true;
        return;
      }
      w.entries.push_back(MapleEntry{first, last, value});
    };
    if (type == kDense) {
      for (uint64_t i = 0; i < l.n_slots && !stop; ++i) {
        if (f.min + i < f.min || f.min + i > f.max) break;
        emit(f.min + i, f.min + i, slot(i));
      }
      continue;
    }
    // ma_data_end()
    auto pivot = [&](uint64_t i) { return field<uint64_t>(buf, l.pivots + i * 8); };
    uint64_t end = 0;
    const uint64_t meta_end = field<uint8_t>(buf, l.meta_end);
    if (type == kArange64) {
      end = meta_end;
    } else if (l.n_pivots == 0 || pivot(l.n_pivots - 1) == 0) {
      end = meta_end;
    } else if (pivot(l.n_pivots - 1) == f.max) {
      end = l.n_pivots - 1;
    } else {
      end = l.n_pivots;
    }
    if (end >= l.n_slots) {
      warn.add(where + ": data end " + std::to_string(end) + " past its " +
               std::to_string(l.n_slots) + " slots; cut");
      end = l.n_slots - 1;
    }
    children.clear();
    uint64_t slot_min = f.min;
    for (uint64_t i = 0; i <= end && !stop; ++i) {
      // mas_logical_pivot(): past the pivots, or a 0 pivot after slot 0, means the node's max.
      uint64_t slot_max = i < l.n_pivots ? pivot(i) : f.max;
      if (slot_max == 0 && i != 0) slot_max = f.max;
      if (slot_max < slot_min || slot_max > f.max) {
        warn.add(where + ": slot " + std::to_string(i) + " ends at " + hex(slot_max) +
                 ", outside [" + hex(slot_min) + ", " + hex(f.max) + "]; rest of node skipped");
        break;
      }
      const uint64_t value = slot(i);
      if (leaf) {
        emit(slot_min, slot_max, value);
      } else if (value == 0) {
        warn.add(where + ": internal slot " + std::to_string(i) + " is NULL");
      } else {
        children.push_back(Frame{value, node, slot_min, slot_max, f.depth + 1});
      }
      if (slot_max == f.max) break;  // the node's range is used up
      slot_min = slot_max + 1;
    }
    for (auto it = children.rbegin(); it != children.rend(); ++it) stack.push_back(*it);
  }
  warn.finish("maple tree");
  if (n_non_pointer != 0) {
    w.warnings.push_back(std::to_string(n_non_pointer) +
                         " leaf entries are not pointers (xarray values or reserved); skipped");
  }
  return w;
}

MapSymbols map_symbols(const Symbols& symbols) {
  MapSymbols m;
  auto get = [&](const char* name, uint64_t& dst) {
    if (auto a = symbols.address_of(name)) dst = *a;
  };
  get("special_mapping_vmops", m.special_mapping_vmops);
  get("simple_dname", m.simple_dname);
  get("anon_inodefs_dname", m.anon_inodefs_dname);
  get("pipefs_dname", m.pipefs_dname);
  get("sockfs_dname", m.sockfs_dname);
  return m;
}

namespace {

// d_name of `dentry`, sanitised; nullopt with `why` set when unreadable or too long.
std::optional<std::string> dentry_name(const GvaReader& read, const KernelOffsets& o,
                                       uint64_t dentry, std::string* why) {
  auto name_ptr = read_u64(read, dentry + o.dentry.d_name + o.qstr.name);
  auto len = read_u32(read, dentry + o.dentry.d_name + o.qstr.len);
  if (!name_ptr || !len) {
    *why = "dentry " + hex(dentry) + " unreadable";
    return std::nullopt;
  }
  if (*len > kMaxDentryNameBytes) {
    *why = "dentry " + hex(dentry) + " name length " + std::to_string(*len) + " over NAME_MAX";
    return std::nullopt;
  }
  std::vector<uint8_t> name(*len);
  if (*len != 0 && !read_exact(read, *name_ptr, name)) {
    *why = "dentry " + hex(dentry) + " name at " + hex(*name_ptr) + " unreadable";
    return std::nullopt;
  }
  return sanitize(name.data(), name.size());
}

// The d_op->d_dname name of `dentry` (d_path()'s first branch), or nullopt when the dentry
// has none or is its mount's root. A d_dname this code does not know gives the d_name,
// marked incomplete.
std::optional<DentryPath> dname_path(const GvaReader& read, const KernelOffsets& o,
                                     uint64_t vfsmount, uint64_t dentry, const MapSymbols& syms) {
  auto d_op = read_u64(read, dentry + o.dentry.d_op);
  if (!d_op || *d_op == 0 || !is_kernel_ptr(*d_op)) return std::nullopt;
  auto fn = read_u64(read, *d_op + o.dentry_operations.d_dname);
  if (!fn || *fn == 0) return std::nullopt;
  auto parent = read_u64(read, dentry + o.dentry.d_parent);
  auto mnt_root = read_u64(read, vfsmount + o.vfsmount.mnt_root);
  if (parent && mnt_root && *parent == dentry && *mnt_root == dentry) return std::nullopt;
  DentryPath p;
  std::string why;
  auto name = dentry_name(read, o, dentry, &why);
  auto ino = [&]() -> std::string {
    auto inode = read_u64(read, dentry + o.dentry.d_inode);
    auto i = inode && is_kernel_ptr(*inode) ? read_u64(read, *inode + o.inode.i_ino) : std::nullopt;
    return i ? std::to_string(*i) : "?";
  };
  if (*fn == syms.simple_dname && name) {
    p.path = "/" + *name + " (deleted)";
  } else if (*fn == syms.anon_inodefs_dname && name) {
    p.path = "anon_inode:" + *name;
  } else if (*fn == syms.pipefs_dname) {
    p.path = "pipe:[" + ino() + "]";
  } else if (*fn == syms.sockfs_dname) {
    p.path = "socket:[" + ino() + "]";
  } else {
    p.complete = false;
    p.problem = name ? "d_op->d_dname " + hex(*fn) + " is not a function this reader knows" : why;
    p.path = "/" + (name ? *name : std::string("?"));
  }
  return p;
}

}  // namespace

DentryPath dentry_path(const GvaReader& read, const KernelOffsets& o, uint64_t vfsmount_gva,
                       uint64_t dentry_gva, const MapSymbols& syms) {
  DentryPath out;
  std::vector<std::string> parts;  // leaf first
  std::size_t total_bytes = 0;
  auto fail_with = [&](std::string why) {
    out.complete = false;
    out.problem = std::move(why);
  };
  std::string suffix;
  uint64_t dentry = dentry_gva;
  uint64_t mount = vfsmount_gva - o.mount.mnt;
  if (!is_kernel_ptr(vfsmount_gva) || !is_kernel_ptr(dentry_gva)) {
    fail_with("path {mnt " + hex(vfsmount_gva) + ", dentry " + hex(dentry_gva) +
              "} holds a non-kernel pointer");
  } else if (auto special = dname_path(read, o, vfsmount_gva, dentry_gva, syms)) {
    return std::move(*special);
  } else {
    // d_unlinked(): unhashed (d_hash.pprev == NULL) and not a root (d_parent != itself).
    auto pprev = read_u64(read, dentry + o.dentry.d_hash + o.hlist_bl_node.pprev);
    auto parent = read_u64(read, dentry + o.dentry.d_parent);
    if (pprev && parent && *pprev == 0 && *parent != dentry) suffix = " (deleted)";
  }
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  int step = 0;
  for (; out.complete && step < kMaxPathDepth; ++step) {
    const std::pair<uint64_t, uint64_t> here{mount, dentry};
    if (std::find(seen.begin(), seen.end(), here) != seen.end()) {
      fail_with("dentry " + hex(dentry) + " in mount " + hex(mount) + " seen twice (a cycle)");
      break;
    }
    seen.push_back(here);
    auto mnt_root = read_u64(read, mount + o.mount.mnt + o.vfsmount.mnt_root);
    auto parent = read_u64(read, dentry + o.dentry.d_parent);
    if (!mnt_root || !parent) {
      fail_with(!mnt_root ? "mount " + hex(mount) + " unreadable"
                          : "dentry " + hex(dentry) + " unreadable");
      break;
    }
    if (dentry == *mnt_root) {
      auto mnt_parent = read_u64(read, mount + o.mount.mnt_parent);
      auto mountpoint = read_u64(read, mount + o.mount.mnt_mountpoint);
      if (!mnt_parent || !mountpoint) {
        fail_with("mount " + hex(mount) + " unreadable");
        break;
      }
      if (*mnt_parent == mount) break;  // the root of the mount tree: done
      if (!is_kernel_ptr(*mnt_parent) || !is_kernel_ptr(*mountpoint)) {
        fail_with("mount " + hex(mount) + " has a non-kernel parent or mountpoint");
        break;
      }
      dentry = *mountpoint;
      mount = *mnt_parent;
      continue;
    }
    if (*parent == dentry) {
      fail_with("dentry " + hex(dentry) + " is its own parent but not its mount's root");
      break;
    }
    if (!is_kernel_ptr(*parent)) {
      fail_with("dentry " + hex(dentry) + " has a non-kernel parent " + hex(*parent));
      break;
    }
    std::string why;
    auto name = dentry_name(read, o, dentry, &why);
    if (!name) {
      fail_with(why);
      break;
    }
    std::string s = std::move(*name);
    total_bytes += s.size() + 1;
    if (total_bytes > kMaxPathBytes) {
      fail_with("path longer than " + std::to_string(kMaxPathBytes) + " bytes");
      break;
    }
    parts.push_back(std::move(s));
    dentry = *parent;
  }
  if (out.complete && step >= kMaxPathDepth) {
    fail_with("path deeper than " + std::to_string(kMaxPathDepth) + " steps");
  }
  std::string path = out.complete ? "" : "...";
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) path += "/" + *it;
  if (path.empty()) path = "/";
  out.path = path + suffix;
  return out;
}

VmaWalk vmas_of_mm(const GvaReader& read, const KernelOffsets& o, uint64_t mm_gva,
                   const MapSymbols& syms) {
  const uint64_t special_mapping_vmops = syms.special_mapping_vmops;
  VmaWalk out;
  if (!is_kernel_ptr(mm_gva)) {
    out.warnings.push_back("mm " + hex(mm_gva) + " is not a kernel address");
    return out;
  }
  const auto& mo = o.mm_struct;
  auto start_brk = read_u64(read, mm_gva + mo.start_brk);
  auto brk = read_u64(read, mm_gva + mo.brk);
  auto start_stack = read_u64(read, mm_gva + mo.start_stack);
  if (!start_brk || !brk || !start_stack) {
    out.warnings.push_back("mm " + hex(mm_gva) +
                           ": brk/start_stack unreadable; [heap] and [stack] not named");
  }
  MapleWalk tree = walk_maple_tree(read, o, mm_gva + mo.mm_mt);
  out.warnings.insert(out.warnings.end(), tree.warnings.begin(), tree.warnings.end());

  const auto& vo = o.vm_area_struct;
  const uint64_t vma_bytes =
      8 + std::max({vo.vm_start, vo.vm_end, vo.vm_mm, vo.vm_flags, vo.vm_pgoff, vo.vm_file,
                    vo.vm_ops, vo.vm_private_data, vo.anon_name});
  if (vma_bytes > kMaxVmaStructBytes) {
    out.warnings.push_back("vm_area_struct offsets are implausible");
    return out;
  }
  WarningSink warn{&out.warnings};
  bool unnamed_special = false;
  std::vector<uint8_t> buf(vma_bytes);
  uint64_t prev_end = 0;
  for (const MapleEntry& e : tree.entries) {
    const uint64_t vma = e.value;
    const std::string where = "vma " + hex(vma);
    if (!is_kernel_ptr(vma)) {
      warn.add(where + ": not a kernel address; skipped");
      continue;
    }
    if (!read_exact(read, vma, buf)) {
      warn.add(where + ": unreadable; skipped");
      continue;
    }
    Vma v;
    v.vma_gva = vma;
    v.start = field<uint64_t>(buf, vo.vm_start);
    v.end = field<uint64_t>(buf, vo.vm_end);
    const uint64_t vm_mm = field<uint64_t>(buf, vo.vm_mm);
    if (v.start >= v.end || (v.start | v.end) % kPageSizeBytes != 0 || v.end > kUserHalfEnd) {
      warn.add(where + ": bad range " + hex(v.start) + "-" + hex(v.end) + "; skipped");
      continue;
    }
    if (vm_mm != mm_gva) {
      warn.add(where + ": vm_mm " + hex(vm_mm) + " is not mm " + hex(mm_gva) + "; skipped");
      continue;
    }
    if (v.start < prev_end) {
      warn.add(where + ": " + hex(v.start) + "-" + hex(v.end) + " overlaps or precedes " +
               hex(prev_end) + "; skipped");
      continue;
    }
    if (e.first != v.start || e.last != v.end - 1) {
      warn.add(where + ": stored at [" + hex(e.first) + ", " + hex(e.last) + "] but spans " +
               hex(v.start) + "-" + hex(v.end));
    }
    prev_end = v.end;
    v.vm_flags = field<uint64_t>(buf, vo.vm_flags);
    v.perms = {v.vm_flags & kVmRead ? 'r' : '-', v.vm_flags & kVmWrite ? 'w' : '-',
               v.vm_flags & kVmExec ? 'x' : '-', v.vm_flags & kVmShared ? 's' : 'p'};
    const uint64_t file = field<uint64_t>(buf, vo.vm_file);
    if (file != 0) {
      v.offset_bytes = field<uint64_t>(buf, vo.vm_pgoff) << kPageShift;
      const bool kernel_file = is_kernel_ptr(file);
      auto mnt = kernel_file ? read_u64(read, file + o.file.f_path + o.path.mnt) : std::nullopt;
      auto dentry =
          kernel_file ? read_u64(read, file + o.file.f_path + o.path.dentry) : std::nullopt;
      auto inode = kernel_file ? read_u64(read, file + o.file.f_inode) : std::nullopt;
      if (inode && is_kernel_ptr(*inode)) {
        if (auto ino = read_u64(read, *inode + o.inode.i_ino)) v.inode = *ino;
        auto sb = read_u64(read, *inode + o.inode.i_sb);
        auto dev =
            sb && is_kernel_ptr(*sb) ? read_u32(read, *sb + o.super_block.s_dev) : std::nullopt;
        if (dev) {  // include/linux/kdev_t.h: MINORBITS 20
          v.dev_major = *dev >> 20;
          v.dev_minor = *dev & 0xfffff;
        }
      }
      if (!mnt || !dentry) {
        warn.add(where + ": file " + hex(file) + " unreadable");
        v.path = "?";
      } else {
        DentryPath p = dentry_path(read, o, *mnt, *dentry, syms);
        if (!p.complete) warn.add(where + ": path " + p.path + " incomplete: " + p.problem);
        v.path = std::move(p.path);
      }
      out.vmas.push_back(std::move(v));
      continue;
    }
    // show_map_vma(): vm_ops->name(), then [heap], [stack], [anon:NAME].
    const uint64_t vm_ops = field<uint64_t>(buf, vo.vm_ops);
    if (vm_ops != 0 && vm_ops == special_mapping_vmops) {
      const uint64_t sm = field<uint64_t>(buf, vo.vm_private_data);
      auto name_ptr = read_u64(read, sm + o.vm_special_mapping.name);
      std::optional<std::string> name;
      if (name_ptr && is_kernel_ptr(*name_ptr)) {
        name = read_cstring(read, *name_ptr, kMaxSpecialNameBytes);
      }
      if (name) {
        v.path = std::move(*name);
      } else {
        warn.add(where + ": special mapping name unreadable");
      }
    } else if (vm_ops != 0 && special_mapping_vmops == 0) {
      unnamed_special = true;
    }
    if (v.path.empty() && brk && start_brk && v.start <= *brk && v.end >= *start_brk) {
      v.path = "[heap]";
    } else if (v.path.empty() && start_stack && v.start <= *start_stack && v.end >= *start_stack) {
      v.path = "[stack]";
    } else if (v.path.empty() && vo.anon_name != 0) {
      const uint64_t anon = field<uint64_t>(buf, vo.anon_name);
      if (anon != 0 && is_kernel_ptr(anon)) {
        if (auto name = read_cstring(read, anon + o.anon_vma_name.name, kMaxAnonNameBytes)) {
          v.path = "[anon:" + *name + "]";
        }
      }
    }
    out.vmas.push_back(std::move(v));
  }
  warn.finish("VMA");
  if (unnamed_special) {
    out.warnings.push_back(
        "special_mapping_vmops unknown: special mappings ([vdso], [vvar]) left unnamed");
  }
  return out;
}

std::string format_maps_line(const Vma& v) {
  // fs/proc/task_mmu.c show_vma_header_prefix(): seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)
  // then seq_pad(m, ' ') before the name.
  constexpr std::size_t kPadTo = 25 + 8 * 6 - 1;
  char b[128];
  std::snprintf(b, sizeof b,
                "%08" PRIx64 "-%08" PRIx64 " %.4s %08" PRIx64 " %02x:%02x %" PRIu64 " ", v.start,
                v.end, v.perms.c_str(), v.offset_bytes, v.dev_major, v.dev_minor, v.inode);
  std::string s = b;
  if (!v.path.empty()) {
    if (s.size() < kPadTo) s.append(kPadTo - s.size(), ' ');
    s += ' ';
    s += v.path;
  }
  return s;
}

namespace {

// What the walks need of one task.
struct TaskRef {
  uint64_t task = 0;
  int32_t pid = 0;
  std::string comm;
  uint64_t mm = 0;
};

struct TaskScan {
  std::vector<TaskRef> tasks;
  std::vector<std::string> warnings;
};

std::optional<TaskRef> read_task_ref(const GvaReader& read, const KernelOffsets& o, uint64_t task) {
  const auto& ts = o.task_struct;
  TaskRef r;
  r.task = task;
  auto pid = read_u32(read, task + ts.pid);
  auto mm = read_u64(read, task + ts.mm);
  uint8_t comm[64] = {};
  const std::size_t comm_len = std::min<uint64_t>(ts.comm_size ? ts.comm_size : 16, sizeof comm);
  if (!pid || !mm || !read_exact(read, task + ts.comm, std::span<uint8_t>(comm, comm_len))) {
    return std::nullopt;
  }
  r.pid = static_cast<int32_t>(*pid);
  r.mm = *mm;
  r.comm = sanitize(comm, comm_len);
  return r;
}

// Walks a circular list_head embedded at `member` in tasks, from `first` (a task), calling
// `visit(task)` for each task after `first` until the list returns to `first`; bounded by
// `*budget` steps and cycle-checked. Returns false when the walk broke (warning added).
template <typename Visit>
bool walk_task_ring(const GvaReader& read, const KernelOffsets& o, uint64_t first, uint64_t member,
                    const char* what, std::size_t* budget, std::vector<std::string>* warnings,
                    Visit&& visit) {
  std::unordered_set<uint64_t> seen{first};
  uint64_t task = first;
  while (true) {
    if (*budget == 0) {
      warnings->push_back(std::string(what) + " longer than kMaxTasks; cut");
      return false;
    }
    --*budget;
    auto next = read_u64(read, task + member + o.list_head.next);
    if (!next) {
      warnings->push_back(std::string(what) + " broken at " + hex(task) + ": unreadable");
      return false;
    }
    const uint64_t next_task = *next - member;
    if (next_task == first) return true;
    if (!is_kernel_ptr(*next) || !seen.insert(next_task).second) {
      warnings->push_back(std::string(what) + " loops or leaves the kernel at " + hex(next_task));
      return false;
    }
    if (!visit(next_task)) return true;
    task = next_task;
  }
}

// The thread-group leaders on init_task.tasks (init_task first), as list_processes() walks.
TaskScan scan_leaders(const GvaReader& read, const KernelOffsets& o, uint64_t init_task) {
  TaskScan s;
  std::size_t budget = kMaxTasks;
  auto add = [&](uint64_t task) {
    if (auto r = read_task_ref(read, o, task)) {
      s.tasks.push_back(std::move(*r));
      return true;
    }
    s.warnings.push_back("task " + hex(task) + " unreadable; task list partial");
    return false;
  };
  if (!add(init_task)) return s;
  walk_task_ring(read, o, init_task, o.task_struct.tasks, "task list", &budget, &s.warnings, add);
  return s;
}

struct Context {
  KernelAddressSpace kas;
  GvaReader read;
  uint64_t init_task = 0;
};

Result<Context> make_context(const shared::RamView& ram, const KernelProfile& profile) {
  if (!profile.symbols) return fail(Errc::kNotFound, "profile has no kallsyms");
  auto init_task = profile.symbols->address_of("init_task");
  if (!init_task) return tl::unexpected(init_task.error());
  auto kas = KernelAddressSpace::create(ram, profile.base);
  if (!kas) return tl::unexpected(kas.error());
  Context c{std::move(*kas), {}, *init_task};
  return c;
}

}  // namespace

Result<VmaList> list_vmas(const shared::RamView& ram, const KernelProfile& profile, int32_t pid) {
  auto ctx = make_context(ram, profile);
  if (!ctx) return tl::unexpected(ctx.error());
  const KernelAddressSpace& kas = ctx->kas;
  const GvaReader read = [&kas](Gva va, std::span<uint8_t> out) {
    return kas.read_virtual(va, out);
  };
  const KernelOffsets& o = profile.offsets;
  TaskScan scan = scan_leaders(read, o, ctx->init_task);
  std::optional<TaskRef> found;
  for (const TaskRef& t : scan.tasks) {
    if (t.pid == pid) {
      found = t;
      break;
    }
  }
  // A thread: search each leader's thread_group ring.
  std::size_t budget = kMaxTasks;
  for (std::size_t i = 0; !found && i < scan.tasks.size() && budget != 0; ++i) {
    walk_task_ring(read, o, scan.tasks[i].task, o.task_struct.thread_group, "thread group", &budget,
                   &scan.warnings, [&](uint64_t task) {
                     auto p = read_u32(read, task + o.task_struct.pid);
                     if (p && static_cast<int32_t>(*p) == pid) found = read_task_ref(read, o, task);
                     return !found;
                   });
  }
  if (!found) {
    std::string msg = "no process with pid " + std::to_string(pid);
    for (const auto& w : scan.warnings) msg += "; " + w;
    return fail(Errc::kNotFound, msg);
  }
  VmaList out;
  out.pid = found->pid;
  out.comm = found->comm;
  out.warnings = std::move(scan.warnings);
  if (found->mm == 0) {
    out.warnings.push_back("pid " + std::to_string(pid) + " (" + found->comm +
                           ") is a kernel thread: no user address space");
    return out;
  }
  VmaWalk v = vmas_of_mm(read, o, found->mm, map_symbols(*profile.symbols));
  out.vmas = std::move(v.vmas);
  out.warnings.insert(out.warnings.end(), v.warnings.begin(), v.warnings.end());
  return out;
}

Result<RegionMap> user_regions(const shared::RamView& ram, const KernelProfile& profile,
                               std::size_t max_ranges_per_process) {
  auto ctx = make_context(ram, profile);
  if (!ctx) return tl::unexpected(ctx.error());
  const KernelAddressSpace& kas = ctx->kas;
  const GvaReader read = [&kas](Gva va, std::span<uint8_t> out) {
    return kas.read_virtual(va, out);
  };
  const KernelOffsets& o = profile.offsets;
  TaskScan scan = scan_leaders(read, o, ctx->init_task);
  RegionMap out;
  out.warnings = std::move(scan.warnings);
  // One budget for the whole call (a hostile task list may name thousands of processes that
  // share one aliased tree), and each pgd walked once.
  std::size_t budget = kMaxRegionEntriesPerCall;
  bool budget_warned = false;
  std::map<uint64_t, size_t> walked;  // pgd gpa -> index in out.processes
  for (const TaskRef& t : scan.tasks) {
    if (t.mm == 0) continue;  // kernel thread
    const std::string who = "pid " + std::to_string(t.pid) + " (" + t.comm + ")";
    auto pgd = is_kernel_ptr(t.mm) ? read_u64(read, t.mm + o.mm_struct.pgd) : std::nullopt;
    if (!pgd) {
      out.warnings.push_back(who + ": mm " + hex(t.mm) + " unreadable; left out");
      continue;
    }
    auto pgd_gpa = kas.translate(Gva(*pgd));
    if (!pgd_gpa) {
      out.warnings.push_back(who + ": pgd " + hex(*pgd) + " untranslatable (" +
                             pgd_gpa.error().message + "); left out");
      continue;
    }
    ProcessRegions p;
    p.pid = t.pid;
    p.comm = t.comm;
    if (auto it = walked.find(pgd_gpa->value); it != walked.end()) {
      p.ranges = out.processes[it->second].ranges;  // CLONE_VM: the same address space
      p.truncated = out.processes[it->second].truncated;
      out.processes.push_back(std::move(p));
      continue;
    }
    if (budget == 0) {
      if (!budget_warned) {
        out.warnings.push_back("page-table entry budget of the call spent at " + who +
                               "; later processes have no ranges (truncated)");
        budget_warned = true;
      }
      p.truncated = true;
      out.processes.push_back(std::move(p));
      continue;
    }
    PageTableWalker walker(ram, *pgd_gpa);
    MappedRanges r = walker.mapped_ranges(Gva(0), Gva(kUserHalfEnd), max_ranges_per_process,
                                          std::min<std::size_t>(budget, 1u << 22), true);
    budget -= std::min(budget, r.n_entries);
    walked[pgd_gpa->value] = out.processes.size();
    p.ranges = std::move(r.ranges);
    p.truncated = r.truncated;
    if (r.n_skipped_tables != 0) {
      out.warnings.push_back(who + ": " + std::to_string(r.n_skipped_tables) +
                             " page tables outside RAM or cyclic; skipped");
    }
    out.processes.push_back(std::move(p));
  }
  std::sort(out.processes.begin(), out.processes.end(),
            [](const ProcessRegions& a, const ProcessRegions& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace glassbox::semantic_db
