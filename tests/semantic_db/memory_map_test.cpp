// Tests of memory_map: the maple-tree walker, the d_path walker and the VMA reader over a
// synthetic kernel address space (a fake GvaReader and a made-up KernelOffsets layout),
// hostile variants of each (cycles, pointers outside RAM, bad VMAs, deep chains), and, when
// the reference dump is present, list_vmas()/user_regions() on the real Debian 6.1 guest.
#include "services/semantic_db/memory_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "shared/ram_dump.hpp"

namespace glassbox::semantic_db {
namespace {

constexpr uint64_t kBase = 0xffff888000000000ULL;  // a direct-map-like kernel address
constexpr uint64_t kMax = ~uint64_t{0};

// Kernel memory as sparse 4 KiB pages; unmapped pages are unreadable.
struct FakeKernel {
  std::map<uint64_t, std::vector<uint8_t>> pages;
  mutable std::size_t n_reads = 0;

  void put(uint64_t va, const void* src, std::size_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    for (std::size_t i = 0; i < n; ++i) {
      auto& page = pages[(va + i) & ~0xfffULL];
      if (page.empty()) page.assign(4096, 0);
      page[(va + i) & 0xfff] = p[i];
    }
  }
  void u64(uint64_t va, uint64_t v) { put(va, &v, 8); }
  void u32(uint64_t va, uint32_t v) { put(va, &v, 4); }
  void u8(uint64_t va, uint8_t v) { put(va, &v, 1); }
  void str(uint64_t va, const std::string& s) { put(va, s.c_str(), s.size() + 1); }

  GvaReader reader() const {
    return [this](Gva va, std::span<uint8_t> out) -> Result<std::size_t> {
      ++n_reads;
      std::size_t done = 0;
      while (done < out.size()) {
        const uint64_t cur = va.value + done;
        auto it = pages.find(cur & ~0xfffULL);
        if (it == pages.end()) {
          if (done == 0) return fail(Errc::kNotFound, "unmapped");
          break;
        }
        const std::size_t n = std::min<std::size_t>(out.size() - done, 4096 - (cur & 0xfff));
        std::memcpy(out.data() + done, it->second.data() + (cur & 0xfff), n);
        done += n;
      }
      return done;
    };
  }
};

// A made-up layout with the 6.1 maple node shapes (256-byte nodes; range_64 16 slots and 15
// pivots with the metadata in the last slot; arange_64 10 slots, 9 pivots, gaps, metadata).
KernelOffsets fake_offsets() {
  KernelOffsets o;
  o.maple_tree.ma_root = 8;
  o.maple_tree.ma_flags = 4;
  o.maple_node = {256, 0, 8, 0, 0, 31};
  o.maple_range_64.pivot = 8;
  o.maple_range_64.slot = 128;
  o.maple_range_64.meta = 248;
  o.maple_range_64.n_slots = 16;
  o.maple_range_64.n_pivots = 15;
  o.maple_arange_64.pivot = 8;
  o.maple_arange_64.slot = 80;
  o.maple_arange_64.gap = 160;
  o.maple_arange_64.meta = 240;
  o.maple_arange_64.n_slots = 10;
  o.maple_arange_64.n_pivots = 9;
  o.maple_metadata.end = 0;
  o.mm_struct.mm_mt = 64;
  o.mm_struct.pgd = 0x30;
  o.mm_struct.start_brk = 0x100;
  o.mm_struct.brk = 0x108;
  o.mm_struct.start_stack = 0x110;
  auto& v = o.vm_area_struct;
  v.vm_start = 0;
  v.vm_end = 8;
  v.vm_mm = 16;
  v.vm_flags = 32;
  v.anon_name = 40;
  v.vm_ops = 96;
  v.vm_pgoff = 104;
  v.vm_file = 112;
  v.vm_private_data = 120;
  o.anon_vma_name.name = 4;
  o.vm_special_mapping.name = 0;
  o.file.f_path = 16;
  o.file.f_inode = 32;
  o.path.mnt = 0;
  o.path.dentry = 8;
  o.inode.i_ino = 64;
  o.inode.i_sb = 40;
  o.super_block.s_dev = 16;
  o.dentry.d_inode = 48;
  o.dentry.d_op = 56;
  o.dentry_operations.d_dname = 8;
  o.dentry.d_hash = 8;
  o.hlist_bl_node.pprev = 8;
  o.dentry.d_parent = 24;
  o.dentry.d_name = 32;
  o.qstr.len = 4;
  o.qstr.name = 8;
  o.vfsmount.mnt_root = 0;
  o.mount.mnt_parent = 16;
  o.mount.mnt_mountpoint = 24;
  o.mount.mnt = 32;
  return o;
}

constexpr unsigned kLeaf64 = 1, kRange64 = 2, kArange64 = 3;

uint64_t enode(uint64_t node, unsigned type) { return node | (uint64_t{type} << 3) | 4; }

// Writes a range_64/leaf_64 node: slots[i] up to pivots[i]; the last slot's pivot may be
// omitted (pivots.size() == slots.size() - 1). Metadata end set when not full.
void put_range64(FakeKernel& k, const KernelOffsets& o, uint64_t node, uint64_t parent,
                 const std::vector<uint64_t>& pivots, const std::vector<uint64_t>& slots) {
  k.u64(node + o.maple_node.parent, parent);
  for (std::size_t i = 0; i < pivots.size(); ++i) k.u64(node + 8 + i * 8, pivots[i]);
  for (std::size_t i = 0; i < slots.size(); ++i) k.u64(node + 128 + i * 8, slots[i]);
  if (slots.size() < 16) k.u8(node + 248, static_cast<uint8_t>(slots.size() - 1));
}

void put_arange64(FakeKernel& k, uint64_t node, uint64_t parent,
                  const std::vector<uint64_t>& pivots, const std::vector<uint64_t>& slots) {
  k.u64(node, parent);
  for (std::size_t i = 0; i < pivots.size(); ++i) k.u64(node + 8 + i * 8, pivots[i]);
  for (std::size_t i = 0; i < slots.size(); ++i) k.u64(node + 80 + i * 8, slots[i]);
  k.u8(node + 240, static_cast<uint8_t>(slots.size() - 1));
}

bool has_warning(const std::vector<std::string>& w, const std::string& needle) {
  for (const auto& s : w) {
    if (s.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& w) {
  std::string s;
  for (const auto& x : w) s += x + "\n";
  return s;
}

// ---------------------------------------------------------------------------------------
// A synthetic process: mm at kMm with an arange_64 root and two leaf_64 leaves, file
// mappings on the root mount and on a mount at /usr, heap, stack, vdso/vvar, anon names.

constexpr uint64_t kMm = kBase + 0x10000;
constexpr uint64_t kTree = kMm + 64;
constexpr uint64_t kRoot = kBase + 0x20000;
constexpr uint64_t kLeafA = kBase + 0x20100;
constexpr uint64_t kLeafB = kBase + 0x20200;
constexpr uint64_t kSpecialOps = kBase + 0x90000;
constexpr uint64_t kOtherOps = kBase + 0x90100;
constexpr uint64_t kSimpleDname = kBase + 0x90200;  // "functions"
constexpr uint64_t kAnonDname = kBase + 0x90300;
constexpr uint64_t kPipeDname = kBase + 0x90400;
constexpr uint64_t kPseudoDops = kBase + 0x93000;  // dentry_operations {.d_dname = simple}
constexpr uint64_t kAnonDops = kBase + 0x93100;
constexpr uint64_t kPipeDops = kBase + 0x93200;
constexpr uint64_t kOddDops = kBase + 0x93300;  // an unknown d_dname
constexpr uint64_t kRootSb = kBase + 0x94000;   // super_blocks: s_dev 00:02 and 08:01
constexpr uint64_t kUsrSb = kBase + 0x94100;

const MapSymbols kSyms{kSpecialOps, kSimpleDname, kAnonDname, kPipeDname, 0};

struct Fs {
  uint64_t root_mount = kBase + 0x40000;  // struct mount; vfsmount at +32
  uint64_t usr_mount = kBase + 0x40100;
  uint64_t root_dentry = kBase + 0x41000;
  uint64_t usr_dentry = kBase + 0x41100;  // /usr on the root fs (mountpoint)
  uint64_t usr_root = kBase + 0x41200;    // root of the fs mounted on /usr
  uint64_t next_dentry = kBase + 0x1000000;
  uint64_t next_name = kBase + 0x2000000;
};

uint64_t vfsmount_of(uint64_t mount) { return mount + 32; }

uint64_t add_dentry(FakeKernel& k, Fs& fs, uint64_t parent, const std::string& name,
                    bool hashed = true) {
  const uint64_t d = fs.next_dentry;
  fs.next_dentry += 0x100;
  k.u64(d + 8 + 8, hashed ? kBase + 0x1234 : 0);  // d_hash.pprev
  k.u64(d + 24, parent ? parent : d);
  k.u32(d + 32 + 4, static_cast<uint32_t>(name.size()));
  k.u64(d + 32 + 8, fs.next_name);
  k.str(fs.next_name, name);
  fs.next_name += name.size() + 1;
  return d;
}

void build_fs(FakeKernel& k, Fs& fs) {
  // Root dentries: their own parent, name "/".
  for (uint64_t d : {fs.root_dentry, fs.usr_root}) {
    k.u64(d + 16, kBase + 0x1);
    k.u64(d + 24, d);
    k.u32(d + 32 + 4, 1);
    k.u64(d + 32 + 8, kBase + 0x47000);
  }
  k.str(kBase + 0x47000, "/");
  k.u64(fs.usr_dentry + 16, kBase + 0x1);
  k.u64(fs.usr_dentry + 24, fs.root_dentry);
  k.u32(fs.usr_dentry + 36, 3);
  k.u64(fs.usr_dentry + 40, kBase + 0x47100);
  k.str(kBase + 0x47100, "usr");
  // The root mount is its own parent; /usr's mount hangs on usr_dentry.
  k.u64(fs.root_mount + 16, fs.root_mount);
  k.u64(fs.root_mount + 24, fs.root_dentry);
  k.u64(vfsmount_of(fs.root_mount), fs.root_dentry);
  k.u64(fs.usr_mount + 16, fs.root_mount);
  k.u64(fs.usr_mount + 24, fs.usr_dentry);
  k.u64(vfsmount_of(fs.usr_mount), fs.usr_root);
}

uint64_t add_file(FakeKernel& k, uint64_t file, uint64_t mount, uint64_t dentry, uint64_t ino,
                  uint64_t sb = kRootSb) {
  k.u64(file + 16, vfsmount_of(mount));
  k.u64(file + 24, dentry);
  k.u64(file + 32, file + 0x80);  // the inode right behind the file
  k.u64(file + 0x80 + 64, ino);
  k.u64(file + 0x80 + 40, sb);
  k.u64(dentry + 48, file + 0x80);  // d_inode
  return file;
}

// A pseudo dentry as alloc_file_pseudo() makes it: its own parent, unhashed, with d_op.
uint64_t add_pseudo_dentry(FakeKernel& k, Fs& fs, const std::string& name, uint64_t d_op) {
  const uint64_t d = add_dentry(k, fs, 0, name, /*hashed=*/false);
  k.u64(d + 56, d_op);
  return d;
}

// "start-end perms offset major:minor inode path" with single spaces.
std::string brief(const Vma& v) {
  char b[160];
  std::snprintf(b, sizeof b, "%08" PRIx64 "-%08" PRIx64 " %s %08" PRIx64 " %02x:%02x %" PRIu64,
                v.start, v.end, v.perms.c_str(), v.offset_bytes, v.dev_major, v.dev_minor, v.inode);
  return v.path.empty() ? b : std::string(b) + " " + v.path;
}

struct VmaSpec {
  uint64_t start, end, flags, pgoff = 0, file = 0, ops = 0, priv = 0, anon_name = 0;
};

uint64_t put_vma(FakeKernel& k, uint64_t va, const VmaSpec& s, uint64_t mm = kMm) {
  k.u64(va + 0, s.start);
  k.u64(va + 8, s.end);
  k.u64(va + 16, mm);
  k.u64(va + 32, s.flags);
  k.u64(va + 40, s.anon_name);
  k.u64(va + 96, s.ops);
  k.u64(va + 104, s.pgoff);
  k.u64(va + 112, s.file);
  k.u64(va + 120, s.priv);
  return va;
}

struct Process {
  FakeKernel k;
  KernelOffsets o = fake_offsets();
  Fs fs;
  uint64_t vma[10] = {};
};

// VMAs (leaf A: up to 0x7ffff7dfffff, leaf B: the rest):
//   0 00400000-00401000 r--p /bin/busybox (ino 1234)
//   1 00401000-004a0000 r-xp /bin/busybox +0x1000
//   2 004a0000-004a2000 rw-p anonymous (vm_pgoff nonzero: offset must print 0)
//   3 004a3000-004c5000 rw-p [heap]
//   4 7ffff7e00000-7ffff7e20000 r-xp /usr/lib/libc.so.6 (on the /usr mount, ino 77)
//   5 7ffff7f00000-7ffff7f01000 rw-s /memfd:buf (deleted) (ino 5; a pseudo dentry with
//     d_op->d_dname = simple_dname) and, at 7ffff7f01000-7ffff7f02000 r--p, /old.so (deleted)
//     (an unhashed dentry on the root fs)
//   6 7ffff7ff9000-7ffff7ffd000 r--p [vvar]
//   7 7ffff7ffd000-7ffff7fff000 r-xp [vdso]
//   8 7ffffffde000-7ffffffff000 rw-p [stack]
void build_process(Process& p) {
  FakeKernel& k = p.k;
  build_fs(k, p.fs);
  const uint64_t bin = add_dentry(k, p.fs, p.fs.root_dentry, "bin");
  const uint64_t busybox = add_dentry(k, p.fs, bin, "busybox");
  const uint64_t lib = add_dentry(k, p.fs, p.fs.usr_root, "lib");
  const uint64_t libc = add_dentry(k, p.fs, lib, "libc.so.6");
  k.u64(kPseudoDops + 8, kSimpleDname);
  k.u64(kAnonDops + 8, kAnonDname);
  k.u64(kPipeDops + 8, kPipeDname);
  k.u64(kOddDops + 8, kBase + 0x90500);
  k.u32(kRootSb + 16, 2);
  k.u32(kUsrSb + 16, (8u << 20) | 1);
  const uint64_t memfd = add_pseudo_dentry(k, p.fs, "memfd:buf", kPseudoDops);
  const uint64_t old = add_dentry(k, p.fs, p.fs.root_dentry, "old.so", /*hashed=*/false);
  const uint64_t f_bb = add_file(k, kBase + 0x50000, p.fs.root_mount, busybox, 1234);
  const uint64_t f_libc = add_file(k, kBase + 0x50200, p.fs.usr_mount, libc, 77, kUsrSb);
  const uint64_t f_memfd = add_file(k, kBase + 0x50400, p.fs.root_mount, memfd, 5, kBase + 0x94200);
  const uint64_t f_old = add_file(k, kBase + 0x50600, p.fs.root_mount, old, 6);
  k.u32(kBase + 0x94200 + 16, 1);  // shm_mnt's super_block: 00:01
  // vm_special_mapping structs and their names.
  k.u64(kBase + 0x91000, kBase + 0x91100);
  k.str(kBase + 0x91100, "[vvar]");
  k.u64(kBase + 0x91200, kBase + 0x91300);
  k.str(kBase + 0x91300, "[vdso]");
  const VmaSpec specs[10] = {
      {0x400000, 0x401000, 0x1, 0, f_bb},
      {0x401000, 0x4a0000, 0x5, 1, f_bb},
      {0x4a0000, 0x4a2000, 0x3, 0x4a0},
      {0x4a3000, 0x4c5000, 0x3, 0x4a3},
      {0x7ffff7e00000, 0x7ffff7e20000, 0x5, 0, f_libc},
      {0x7ffff7f00000, 0x7ffff7f01000, 0xb, 0, f_memfd},
      {0x7ffff7ff9000, 0x7ffff7ffd000, 0x1, 0, 0, kSpecialOps, kBase + 0x91000},
      {0x7ffff7ffd000, 0x7ffff7fff000, 0x5, 0, 0, kSpecialOps, kBase + 0x91200},
      {0x7ffffffde000, 0x7ffffffff000, 0x3, 0x7ffffffde},
      {0x7ffff7f01000, 0x7ffff7f02000, 0x1, 0, f_old},
  };
  for (int i = 0; i < 10; ++i) p.vma[i] = put_vma(k, kBase + 0x60000 + i * 0x100, specs[i]);
  k.u64(kMm + 0x100, 0x4a3000);                                  // start_brk
  k.u64(kMm + 0x108, 0x4c5000);                                  // brk
  k.u64(kMm + 0x110, 0x7fffffffe5a0);                            // start_stack
  k.u64(kTree + 8, kRoot | (uint64_t{kArange64} << 3) | 4 | 2);  // ma_root: tagged root node
  put_arange64(k, kRoot, kTree | 1, {0x7ffff7dfffff},
               {enode(kLeafA, kLeaf64), enode(kLeafB, kLeaf64)});
  put_range64(k, p.o, kLeafA, kRoot | 6,
              {0x3fffff, 0x400fff, 0x49ffff, 0x4a1fff, 0x4a2fff, 0x4c4fff, 0x7ffff7dfffff},
              {0, p.vma[0], p.vma[1], p.vma[2], 0, p.vma[3], 0});
  put_range64(k, p.o, kLeafB, kRoot | 6,
              {0x7ffff7e1ffff, 0x7ffff7efffff, 0x7ffff7f00fff, 0x7ffff7f01fff, 0x7ffff7ff8fff,
               0x7ffff7ffcfff, 0x7ffff7ffefff, 0x7ffffffddfff, 0x7fffffffefff, kMax},
              {p.vma[4], 0, p.vma[5], p.vma[9], 0, p.vma[6], p.vma[7], 0, p.vma[8], 0});
}

TEST(MemoryMapTest, ListsVmasOfSyntheticProcessLikeProcMaps) {
  Process p;
  build_process(p);
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(w.warnings.empty()) << joined(w.warnings);
  ASSERT_EQ(w.vmas.size(), 10u);
  std::vector<std::string> lines;
  for (const Vma& v : w.vmas) lines.push_back(brief(v));
  const std::vector<std::string> want = {
      "00400000-00401000 r--p 00000000 00:02 1234 /bin/busybox",
      "00401000-004a0000 r-xp 00001000 00:02 1234 /bin/busybox",
      "004a0000-004a2000 rw-p 00000000 00:00 0",
      "004a3000-004c5000 rw-p 00000000 00:00 0 [heap]",
      "7ffff7e00000-7ffff7e20000 r-xp 00000000 08:01 77 /usr/lib/libc.so.6",
      "7ffff7f00000-7ffff7f01000 rw-s 00000000 00:01 5 /memfd:buf (deleted)",
      "7ffff7f01000-7ffff7f02000 r--p 00000000 00:02 6 /old.so (deleted)",
      "7ffff7ff9000-7ffff7ffd000 r--p 00000000 00:00 0 [vvar]",
      "7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0 [vdso]",
      "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]",
  };
  EXPECT_EQ(lines, want);
  EXPECT_EQ(w.vmas[1].vma_gva, p.vma[1]);
  EXPECT_EQ(w.vmas[1].vm_flags, 0x5u);
}

TEST(MemoryMapTest, WalksMapleTreeEntriesWithRanges) {
  Process p;
  build_process(p);
  MapleWalk t = walk_maple_tree(p.k.reader(), p.o, kTree);
  EXPECT_TRUE(t.warnings.empty()) << joined(t.warnings);
  EXPECT_EQ(t.n_nodes, 3u);
  ASSERT_EQ(t.entries.size(), 10u);
  EXPECT_EQ(t.entries[0].first, 0x400000u);
  EXPECT_EQ(t.entries[0].last, 0x400fffu);
  EXPECT_EQ(t.entries[4].first, 0x7ffff7e00000u);  // first slot of leaf B: min from the parent
  EXPECT_EQ(t.entries[9].last, 0x7fffffffefffu);
}

TEST(MemoryMapTest, WalksRange64RootWithFullLeaf) {
  // A range_64 root with three leaf_64 children; the middle one has all 16 slots used (its
  // last pivot below the node max, so ma_data_end() says 15 and slot 15 is real).
  FakeKernel k;
  const KernelOffsets o = fake_offsets();
  const uint64_t tree = kBase + 0x1000, root = kBase + 0x2000;
  const uint64_t l0 = kBase + 0x2100, l1 = kBase + 0x2200, l2 = kBase + 0x2300;
  k.u64(tree + 8, enode(root, kRange64) | 2);
  put_range64(k, o, root, tree | 1, {0xfff, 0x10fff},
              {enode(l0, kLeaf64), enode(l1, kLeaf64), enode(l2, kLeaf64)});
  put_range64(k, o, l0, root, {0x0fff}, {kBase + 0x100000});
  std::vector<uint64_t> piv, slots;
  for (uint64_t i = 0; i < 16; ++i) {
    if (i < 15) piv.push_back(0x1fff + i * 0x1000);
    slots.push_back(kBase + 0x200000 + i * 0x100);
  }
  put_range64(k, o, l1, root, piv, slots);
  put_range64(k, o, l2, root, {0x11fff, kMax}, {kBase + 0x300000, 0});
  MapleWalk t = walk_maple_tree(k.reader(), o, tree);
  EXPECT_TRUE(t.warnings.empty()) << joined(t.warnings);
  ASSERT_EQ(t.entries.size(), 1u + 16u + 1u);
  EXPECT_EQ(t.entries[16].value, kBase + 0x200000 + 15 * 0x100);
  EXPECT_EQ(t.entries[16].first, 0x10000u);  // slot 15 ends at the node max 0x10fff
  EXPECT_EQ(t.entries[16].last, 0x10fffu);
  EXPECT_EQ(t.entries[17].first, 0x11000u);
  for (std::size_t i = 1; i < t.entries.size(); ++i) {
    EXPECT_GT(t.entries[i].first, t.entries[i - 1].last);
  }
}

TEST(MemoryMapTest, EmptyAndSingleEntryTrees) {
  FakeKernel k;
  const KernelOffsets o = fake_offsets();
  k.u64(kBase + 8, 0);
  EXPECT_TRUE(walk_maple_tree(k.reader(), o, kBase).entries.empty());
  k.u64(kBase + 8, kBase + 0x5000);  // a plain pointer: one entry at index 0
  auto t = walk_maple_tree(k.reader(), o, kBase);
  ASSERT_EQ(t.entries.size(), 1u);
  EXPECT_EQ(t.entries[0].value, kBase + 0x5000);
  EXPECT_TRUE(walk_maple_tree(k.reader(), o, kBase + 0x777000).entries.empty());  // unreadable
}

TEST(MemoryMapTest, NodeCycleIsCutWithWarning) {
  Process p;
  build_process(p);
  // Leaf B's slot becomes an internal pointer back to the root: the leaf is re-typed as a
  // range_64 whose first child is the root itself.
  p.k.u64(kRoot + 80 + 8, enode(kLeafB, kRange64));
  p.k.u64(kLeafB + 128, enode(kRoot, kArange64));
  const auto t0 = std::chrono::steady_clock::now();
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_TRUE(has_warning(w.warnings, "visited twice")) << joined(w.warnings);
  EXPECT_EQ(w.vmas.size(), 4u);  // leaf A still listed
}

TEST(MemoryMapTest, NodeOutsideRamAndBadPointersAreSkipped) {
  Process p;
  build_process(p);
  p.k.u64(kRoot + 80 + 8, enode(kBase + 0x7770000, kLeaf64));  // unmapped kernel address
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "unreadable")) << joined(w.warnings);
  EXPECT_EQ(w.vmas.size(), 4u);
  p.k.u64(kRoot + 80 + 8, enode(0x7770000, kLeaf64));  // a user address
  w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "not a kernel address")) << joined(w.warnings);
  p.k.u64(kRoot + 80 + 8, kLeafB | (uint64_t{9} << 3));  // unknown node type
  w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "unknown node type 9")) << joined(w.warnings);
}

TEST(MemoryMapTest, DeadAndForeignNodesAreSkipped) {
  Process p;
  build_process(p);
  p.k.u64(kLeafB, kLeafB);  // dead: its own parent
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "dead node")) << joined(w.warnings);
  EXPECT_EQ(w.vmas.size(), 4u);
  p.k.u64(kLeafB, kBase + 0x99900);  // another node's child
  w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "is not")) << joined(w.warnings);
}

TEST(MemoryMapTest, BadVmasAreSkippedWithWarnings) {
  Process p;
  build_process(p);
  p.k.u64(p.vma[2] + 8, 0x4a0000);         // start == end
  p.k.u64(p.vma[4] + 16, kBase + 0xdead);  // vm_mm of another mm
  p.k.u64(p.vma[6] + 0, 0x7ffff7ff8000);   // vvar starts before its tree range: kept
  p.k.u64(p.vma[7] + 0, 0x7ffff7ffc000);   // vdso overlaps vvar: skipped
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "bad range 0x4a0000-0x4a0000")) << joined(w.warnings);
  EXPECT_TRUE(has_warning(w.warnings, "is not mm")) << joined(w.warnings);
  EXPECT_TRUE(has_warning(w.warnings, "overlaps")) << joined(w.warnings);
  EXPECT_TRUE(has_warning(w.warnings, "stored at")) << joined(w.warnings);
  ASSERT_EQ(w.vmas.size(), 7u);
  for (std::size_t i = 1; i < w.vmas.size(); ++i) {
    EXPECT_GE(w.vmas[i].start, w.vmas[i - 1].end);
  }
  EXPECT_EQ(w.vmas[5].start, 0x7ffff7ff8000u);
  EXPECT_EQ(w.vmas[5].path, "[vvar]");
}

TEST(MemoryMapTest, NonPointerLeafEntriesAndGarbageMetadata) {
  Process p;
  build_process(p);
  p.k.u64(kLeafA + 128, 0x406);  // XA_ZERO_ENTRY-like internal entry in a gap slot
  p.k.u8(kRoot + 240, 200);      // arange metadata end past the 10 slots
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "not pointers")) << joined(w.warnings);
  EXPECT_TRUE(has_warning(w.warnings, "data end 200")) << joined(w.warnings);
  EXPECT_EQ(w.vmas.size(), 10u);  // slot 1's pivot 0 = node max: the walk ends there
}

TEST(MemoryMapTest, DescendingPivotsStopTheNode) {
  Process p;
  build_process(p);
  p.k.u64(kLeafA + 8 + 2 * 8, 0x100);  // pivot 2 below pivot 1
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_TRUE(has_warning(w.warnings, "slot 2 ends at 0x100")) << joined(w.warnings);
  EXPECT_EQ(w.vmas.size(), 1u + 6u);  // busybox r--p, then leaf B
}

TEST(MemoryMapTest, GiantTreeDepthIsBounded) {
  // A chain of 100 range_64 nodes, each the only child of the previous one.
  FakeKernel k;
  const KernelOffsets o = fake_offsets();
  const uint64_t tree = kBase + 0x1000;
  k.u64(tree + 8, enode(kBase + 0x10000, kRange64) | 2);
  for (int i = 0; i < 100; ++i) {
    const uint64_t node = kBase + 0x10000 + i * 0x100;
    put_range64(k, o, node, i == 0 ? (tree | 1) : node - 0x100, {kMax},
                {enode(node + 0x100, kRange64)});
  }
  MapleWalk t = walk_maple_tree(k.reader(), o, tree);
  EXPECT_TRUE(has_warning(t.warnings, "deeper than 32")) << joined(t.warnings);
  EXPECT_LE(t.n_nodes, 33u);
}

TEST(MemoryMapTest, EntryBoundCutsTheWalk) {
  Process p;
  build_process(p);
  MapleWalk t = walk_maple_tree(p.k.reader(), p.o, kTree, 3);
  EXPECT_EQ(t.entries.size(), 3u);
  EXPECT_TRUE(has_warning(t.warnings, "more than 3 entries")) << joined(t.warnings);
}

TEST(MemoryMapTest, DentryParentCycleEndsPathWalk) {
  Process p;
  build_process(p);
  const uint64_t a = add_dentry(p.k, p.fs, 0, "a");
  const uint64_t b = add_dentry(p.k, p.fs, a, "b");
  p.k.u64(a + 24, b);  // a <-> b
  DentryPath d = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount), b);
  EXPECT_FALSE(d.complete);
  EXPECT_NE(d.problem.find("seen twice"), std::string::npos) << d.problem;
  EXPECT_EQ(d.path.rfind(".../", 0), 0u) << d.path;
}

TEST(MemoryMapTest, DeepDentryChainIsBounded) {
  Process p;
  build_process(p);
  uint64_t d = p.fs.root_dentry;
  for (int i = 0; i < 300; ++i) d = add_dentry(p.k, p.fs, d, "d");
  DentryPath r = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount), d);
  EXPECT_FALSE(r.complete);
  EXPECT_NE(r.problem.find("deeper than 256"), std::string::npos) << r.problem;
  // A 200-deep chain is fine.
  d = p.fs.root_dentry;
  for (int i = 0; i < 200; ++i) d = add_dentry(p.k, p.fs, d, "d");
  r = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount), d);
  EXPECT_TRUE(r.complete) << r.problem;
  EXPECT_EQ(r.path.size(), 400u);
}

TEST(MemoryMapTest, HostileDentryNamesAndMounts) {
  Process p;
  build_process(p);
  const uint64_t bin = add_dentry(p.k, p.fs, p.fs.root_dentry, "b\x01n\n");
  DentryPath r = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount), bin);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.path, "/b?n?");
  p.k.u32(bin + 36, 100000);  // length over NAME_MAX
  r = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount), bin);
  EXPECT_FALSE(r.complete);
  EXPECT_NE(r.problem.find("NAME_MAX"), std::string::npos) << r.problem;
  // A mount cycle: /usr's mount parent is itself via another mount that points back.
  const uint64_t m2 = kBase + 0x40200;
  p.k.u64(p.fs.usr_mount + 16, m2);
  p.k.u64(m2 + 16, p.fs.usr_mount);
  p.k.u64(m2 + 24, p.fs.usr_root);
  p.k.u64(vfsmount_of(m2), p.fs.usr_root);
  p.k.u64(p.fs.usr_mount + 24, p.fs.usr_root);
  const uint64_t lib = add_dentry(p.k, p.fs, p.fs.usr_root, "lib");
  r = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.usr_mount), lib);
  EXPECT_FALSE(r.complete);
  EXPECT_NE(r.problem.find("seen twice"), std::string::npos) << r.problem;
  // Unreadable dentry.
  r = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount), kBase + 0x6660000);
  EXPECT_FALSE(r.complete);
}

TEST(MemoryMapTest, UnknownSpecialOpsAndAnonNames) {
  Process p;
  build_process(p);
  // vma 2 gets an anon name; vdso/vvar go unnamed without the special_mapping_vmops address.
  p.k.u64(p.vma[2] + 40, kBase + 0x92000);
  p.k.str(kBase + 0x92000 + 4, "jit-cache");
  p.k.u64(p.vma[7] + 96, kOtherOps);
  VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, MapSymbols{});
  ASSERT_EQ(w.vmas.size(), 10u);
  EXPECT_EQ(w.vmas[2].path, "[anon:jit-cache]");
  EXPECT_EQ(w.vmas[7].path, "");
  EXPECT_EQ(w.vmas[8].path, "");
  EXPECT_TRUE(has_warning(w.warnings, "special_mapping_vmops unknown")) << joined(w.warnings);
  // The special-mapping name pointer is garbage: unnamed with a warning.
  p.k.u64(kBase + 0x91000, 0x1234);
  w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
  EXPECT_EQ(w.vmas[7].path, "");
  EXPECT_TRUE(has_warning(w.warnings, "special mapping name unreadable")) << joined(w.warnings);
}

TEST(MemoryMapTest, FormatsLinesByteForByteAsProcMaps) {
  // Lines copied from the reference guest's /proc/PID/maps.
  Vma v;
  v.start = 0x400000;
  v.end = 0x401000;
  v.perms = "r--p";
  v.dev_minor = 2;
  v.inode = 9;
  v.path = "/bin/busybox";
  EXPECT_EQ(format_maps_line(v),
            "00400000-00401000 r--p 00000000 00:02 9                                  "
            "/bin/busybox");
  v = Vma{};
  v.start = 0x7ffc55957000;
  v.end = 0x7ffc55978000;
  v.perms = "rw-p";
  v.path = "[stack]";
  EXPECT_EQ(format_maps_line(v),
            "7ffc55957000-7ffc55978000 rw-p 00000000 00:00 0                          [stack]");
  v.path.clear();
  EXPECT_EQ(format_maps_line(v), "7ffc55957000-7ffc55978000 rw-p 00000000 00:00 0 ");
  v.start = 0xffffffffff600000;  // a header longer than the pad width: one space
  v.end = 0xffffffffff601000;
  v.perms = "--xp";
  v.dev_major = 0x103;
  v.offset_bytes = 0x123456789;
  v.inode = ~uint64_t{0};
  v.path = "[vsyscall]";
  EXPECT_EQ(format_maps_line(v),
            "ffffffffff600000-ffffffffff601000 --xp 123456789 103:00 18446744073709551615  "
            "[vsyscall]");
}

TEST(MemoryMapTest, DnameDentriesAreNamedLikeTheKernel) {
  Process p;
  build_process(p);
  const uint64_t anon = add_pseudo_dentry(p.k, p.fs, "[io_uring]", kAnonDops);
  const uint64_t pipe = add_pseudo_dentry(p.k, p.fs, "", kPipeDops);
  add_file(p.k, kBase + 0x50800, p.fs.root_mount, pipe, 4242);
  const uint64_t odd = add_pseudo_dentry(p.k, p.fs, "thing", kOddDops);
  auto path = [&](uint64_t d) {
    return dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount), d, kSyms);
  };
  EXPECT_EQ(path(anon).path, "anon_inode:[io_uring]");
  EXPECT_EQ(path(pipe).path, "pipe:[4242]");
  DentryPath r = path(odd);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.path, "/thing");
  EXPECT_NE(r.problem.find("not a function this reader knows"), std::string::npos) << r.problem;
  // Without the symbols, a simple_dname dentry is not named by guesswork.
  r = dentry_path(p.k.reader(), p.o, vfsmount_of(p.fs.root_mount),
                  add_pseudo_dentry(p.k, p.fs, "memfd:x", kPseudoDops), MapSymbols{});
  EXPECT_FALSE(r.complete);
  // The mount's own root dentry with d_dname is walked normally ("/").
  p.k.u64(p.fs.root_dentry + 56, kAnonDops);
  r = path(p.fs.root_dentry);
  EXPECT_TRUE(r.complete) << r.problem;
  EXPECT_EQ(r.path, "/");
}

TEST(MemoryMapTest, UnreadableMmGivesWarningNotCrash) {
  FakeKernel k;
  VmaWalk w = vmas_of_mm(k.reader(), fake_offsets(), kMm, MapSymbols{});
  EXPECT_TRUE(w.vmas.empty());
  EXPECT_FALSE(w.warnings.empty());
  w = vmas_of_mm(k.reader(), fake_offsets(), 0x1000, MapSymbols{});
  EXPECT_TRUE(has_warning(w.warnings, "not a kernel address"));
}

TEST(MemoryMapTest, RandomGarbageNeverHangs) {
  // Fill the nodes with pseudo-random bytes (keeping the root tag) many times.
  Process p;
  build_process(p);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (int round = 0; round < 200; ++round) {
    for (uint64_t node : {kRoot, kLeafA, kLeafB}) {
      for (uint64_t off = 0; off < 256; off += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Keep some values plausible: node pointers into the node page, VMA pointers.
        uint64_t v = x;
        if ((x & 3) == 0) v = kBase + 0x20000 + (x & 0x3ff00) + ((x >> 20) & 0x1f);
        if ((x & 3) == 1) v = p.vma[(x >> 8) % 10];
        p.k.u64(node + off, v);
      }
    }
    VmaWalk w = vmas_of_mm(p.k.reader(), p.o, kMm, kSyms);
    for (std::size_t i = 1; i < w.vmas.size(); ++i) {
      ASSERT_GE(w.vmas[i].start, w.vmas[i - 1].end);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The reference dump (skipped when absent).

std::string ref_ram_path() {
  if (const char* e = std::getenv("GLASSBOX_REF_RAM")) return e;
  return "/tmp/gb-ref/ram.raw";
}

TEST(MemoryMapTest, ReferenceDumpMapsAndRegions) {
  auto dump = shared::open_dump(ref_ram_path());
  if (!dump) GTEST_SKIP() << "no reference RAM dump at " << ref_ram_path();
  auto profile = build_profile(dump->view(), "");
  ASSERT_TRUE(profile) << profile.error().to_string();
  // Shapes resolved from the guest's BTF (Debian 6.1.0-56).
  const KernelOffsets& o = profile->offsets;
  EXPECT_EQ(o.maple_node.size, 256u);
  EXPECT_EQ(o.maple_node.n_slots, 31u);
  EXPECT_EQ(o.maple_range_64.n_slots, 16u);
  EXPECT_EQ(o.maple_range_64.n_pivots, 15u);
  EXPECT_EQ(o.maple_range_64.meta, o.maple_range_64.slot + 15 * 8);
  EXPECT_EQ(o.maple_arange_64.n_slots, 10u);
  EXPECT_EQ(o.maple_arange_64.n_pivots, 9u);
  EXPECT_NE(o.signal_struct.nr_threads, 0u);
  EXPECT_NE(o.mount.mnt, 0u);
  EXPECT_NE(o.mm_struct.start_stack, 0u);
  std::printf("signal_struct.nr_threads %" PRIu64 ", vm_area_struct.anon_name %" PRIu64
              " (0: no CONFIG_ANON_VMA_NAME)\n",
              o.signal_struct.nr_threads, o.vm_area_struct.anon_name);
  auto procs = list_processes(dump->view(), *profile);
  ASSERT_TRUE(procs) << procs.error().to_string();
  const bool verbose = std::getenv("GLASSBOX_MAPS_VERBOSE") != nullptr;
  std::size_t n_user = 0;
  std::map<int32_t, std::vector<Vma>> by_pid;
  for (const ProcessRecord& pr : procs->processes) {
    const auto t0 = std::chrono::steady_clock::now();
    auto m = list_vmas(dump->view(), *profile, pr.pid);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(m) << "pid " << pr.pid << ": " << m.error().to_string();
    EXPECT_EQ(m->comm, pr.comm);
    if (m->vmas.empty()) {
      EXPECT_TRUE(has_warning(m->warnings, "kernel thread")) << pr.pid << " " << pr.comm;
      continue;
    }
    ++n_user;
    EXPECT_TRUE(m->warnings.empty()) << pr.pid << " " << pr.comm << ":\n" << joined(m->warnings);
    bool stack = false, vdso = false, vvar = false, file = false;
    for (const Vma& v : m->vmas) {
      stack |= v.path == "[stack]";
      vdso |= v.path == "[vdso]";
      vvar |= v.path == "[vvar]";
      if (!v.path.empty() && v.path[0] == '/') {
        file = true;
        EXPECT_NE(v.inode, 0u) << format_maps_line(v);
      }
    }
    EXPECT_TRUE(stack && vdso && vvar && file) << pr.pid << " " << pr.comm;
    const bool show = verbose || pr.comm == "gb-sleeper" || pr.comm == "init";
    if (show) {
      std::printf("pid %d (%s): %zu VMAs in %.2f ms\n", m->pid, m->comm.c_str(), m->vmas.size(),
                  ms);
      for (const Vma& v : m->vmas) std::printf("  %s\n", format_maps_line(v).c_str());
    }
    by_pid[pr.pid] = m->vmas;
  }
  EXPECT_GE(n_user, 5u);
  auto missing = list_vmas(dump->view(), *profile, 999999);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);

  const auto t0 = std::chrono::steady_clock::now();
  auto regions = user_regions(dump->view(), *profile);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(regions) << regions.error().to_string();
  EXPECT_TRUE(regions->warnings.empty()) << joined(regions->warnings);
  EXPECT_EQ(regions->processes.size(), n_user);
  std::printf("user_regions: %zu processes in %.1f ms\n", regions->processes.size(), ms);
  for (const ProcessRegions& pr : regions->processes) {
    uint64_t bytes = 0;
    std::size_t outside = 0;
    const auto& vmas = by_pid[pr.pid];
    for (const MappedRange& r : pr.ranges) {
      bytes += r.size_bytes;
      EXPECT_TRUE(r.user);
      // Every mapped user page lies inside the process's VMAs (a merged range may span
      // adjacent VMAs).
      uint64_t va = r.va.value;
      const uint64_t end = r.va.value + r.size_bytes;
      for (const Vma& v : vmas) {
        if (va >= v.start && va < v.end) va = std::min(end, v.end);
      }
      if (va != end) {
        ++outside;
        std::printf("  pid %d: range %" PRIx64 "+%" PRIx64 " -> gpa %" PRIx64
                    " not inside VMAs (from %" PRIx64 ")\n",
                    pr.pid, r.va.value, r.size_bytes, r.gpa.value, va);
      }
    }
    EXPECT_FALSE(pr.truncated);
    EXPECT_EQ(outside, 0u) << "pid " << pr.pid;
    std::printf("  pid %d (%s): %zu ranges, %" PRIu64 " KiB resident\n", pr.pid, pr.comm.c_str(),
                pr.ranges.size(), bytes / 1024);
  }
}

}  // namespace
}  // namespace glassbox::semantic_db
