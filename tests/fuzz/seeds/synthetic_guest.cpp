// Builders of the synthetic guest and the seed corpus; see synthetic_guest.hpp.
#include "tests/fuzz/seeds/synthetic_guest.hpp"

#include <bpf/btf.h>
#include <bzlib.h>
#include <linux/btf.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <string_view>

namespace glassbox::fuzz {
namespace {

using semantic_db::KernelOffsets;
using semantic_db::KernelTypes;

constexpr uint64_t k4KiB = 4096;
constexpr uint64_t k2MiB = 2ull << 20;
constexpr uint64_t k1GiB = 1ull << 30;
constexpr uint64_t kP = 1, kW = 2, kPs = 1ull << 7, kNx = 1ull << 63;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "synthetic_guest: %s\n", what.c_str());
  std::abort();
}

void put(std::vector<uint8_t>& v, uint64_t off, const void* p, std::size_t n) {
  if (off + n > v.size()) die("write past the synthetic image at " + std::to_string(off));
  std::memcpy(v.data() + off, p, n);
}
void put8(std::vector<uint8_t>& v, uint64_t off, uint8_t x) { put(v, off, &x, 1); }
void put16(std::vector<uint8_t>& v, uint64_t off, uint16_t x) { put(v, off, &x, 2); }
void put32(std::vector<uint8_t>& v, uint64_t off, uint32_t x) { put(v, off, &x, 4); }
void put64(std::vector<uint8_t>& v, uint64_t off, uint64_t x) { put(v, off, &x, 8); }
void put_str(std::vector<uint8_t>& v, uint64_t off, std::string_view s) {
  put(v, off, s.data(), s.size());
}
void app32(std::vector<uint8_t>& v, uint32_t x) {
  v.resize(v.size() + 4);
  std::memcpy(v.data() + v.size() - 4, &x, 4);
}
void app64(std::vector<uint8_t>& v, uint64_t x) {
  v.resize(v.size() + 8);
  std::memcpy(v.data() + v.size() - 8, &x, 8);
}
void pad8(std::vector<uint8_t>& v) { v.resize((v.size() + 7) & ~std::size_t{7}, 0); }

// ---- BTF -----------------------------------------------------------------------------------

struct MemberSpec {
  std::string name;
  uint32_t offset = 0;
  uint32_t size = 8;
};
struct StructSpec {
  uint32_t size = 0;
  std::vector<MemberSpec> members;
};
using Spec = std::map<std::string, StructSpec>;

// The members the walks read, at the offsets the synthetic structures use (the printk ones are
// Debian 6.1's); resolve() asks for the rest, which get made-up offsets past these.
Spec base_spec() {
  Spec s;
  s["task_struct"] = {512,
                      {{"__state", 0, 4},
                       {"flags", 4, 4},
                       {"tasks", 16, 16},
                       {"pid", 32, 4},
                       {"tgid", 36, 4},
                       {"real_parent", 40, 8},
                       {"parent", 48, 8},
                       {"group_leader", 56, 8},
                       {"thread_group", 64, 16},
                       {"comm", 96, 16},
                       {"mm", 112, 8},
                       {"active_mm", 120, 8},
                       {"real_cred", 128, 8},
                       {"cred", 136, 8},
                       {"start_time", 144, 8},
                       {"start_boottime", 152, 8},
                       {"signal", 160, 8}}};
  s["cred"] = {64, {{"uid", 4, 4}, {"gid", 8, 4}, {"euid", 20, 4}}};
  s["list_head"] = {16, {{"next", 0, 8}, {"prev", 8, 8}}};
  s["module"] = {512,
                 {{"state", 0, 4}, {"list", 8, 16}, {"name", 24, 56}, {"core_layout", 320, 16}}};
  s["module_layout"] = {16, {{"base", 0, 8}, {"size", 8, 4}}};
  s["printk_ringbuffer"] = {88, {{"desc_ring", 0, 48}, {"text_data_ring", 48, 32}}};
  s["prb_desc_ring"] = {48,
                        {{"count_bits", 0, 4},
                         {"descs", 8, 8},
                         {"infos", 16, 8},
                         {"head_id", 24, 8},
                         {"tail_id", 32, 8}}};
  s["prb_data_ring"] = {
      32, {{"size_bits", 0, 4}, {"data", 8, 8}, {"head_lpos", 16, 8}, {"tail_lpos", 24, 8}}};
  s["prb_desc"] = {24, {{"state_var", 0, 8}, {"text_blk_lpos", 8, 16}}};
  s["prb_data_blk_lpos"] = {16, {{"begin", 0, 8}, {"next", 8, 8}}};
  s["printk_info"] = {
      88, {{"seq", 0, 8}, {"ts_nsec", 8, 8}, {"text_len", 16, 2}, {"caller_id", 20, 4}}};
  s["new_utsname"] = {390,
                      {{"sysname", 0, 65},
                       {"nodename", 65, 65},
                       {"release", 130, 65},
                       {"version", 195, 65},
                       {"machine", 260, 65},
                       {"domainname", 325, 65}}};
  s["signal_struct"] = {64, {{"nr_threads", 4, 4}}};
  // Process memory maps: 6.1's maple node shapes (256-byte nodes; range_64: 16 slots, 15
  // pivots, metadata in the last slot; arange_64: 10 slots, 9 pivots, gaps, metadata) and the
  // layout of tests/semantic_db/memory_map_test.cpp for the rest.
  s["maple_tree"] = {16, {{"ma_flags", 4, 4}, {"ma_root", 8, 8}}};
  s["maple_node"] = {256, {{"parent", 0, 8}, {"slot", 8, 248}, {"mr64", 0, 256}, {"ma64", 0, 256}}};
  s["maple_range_64"] = {
      256, {{"parent", 0, 8}, {"pivot", 8, 120}, {"slot", 128, 128}, {"meta", 248, 2}}};
  s["maple_arange_64"] = {
      256,
      {{"parent", 0, 8}, {"pivot", 8, 72}, {"slot", 80, 80}, {"gap", 160, 80}, {"meta", 240, 2}}};
  s["maple_metadata"] = {2, {{"end", 0, 1}, {"gap", 1, 1}}};
  s["mm_struct"] = {512,
                    {{"pgd", 0x30, 8},
                     {"mm_mt", 64, 16},
                     {"start_brk", 0x100, 8},
                     {"brk", 0x108, 8},
                     {"start_stack", 0x110, 8}}};
  s["vm_area_struct"] = {192,
                         {{"vm_start", 0, 8},
                          {"vm_end", 8, 8},
                          {"vm_mm", 16, 8},
                          {"vm_flags", 32, 8},
                          {"anon_name", 40, 8},
                          {"vm_ops", 96, 8},
                          {"vm_pgoff", 104, 8},
                          {"vm_file", 112, 8},
                          {"vm_private_data", 120, 8}}};
  s["anon_vma_name"] = {16, {{"name", 4, 8}}};
  s["vm_special_mapping"] = {64, {{"name", 0, 8}}};
  s["file"] = {128, {{"f_path", 16, 16}, {"f_inode", 32, 8}}};
  s["path"] = {16, {{"mnt", 0, 8}, {"dentry", 8, 8}}};
  s["inode"] = {128, {{"i_ino", 64, 8}}};
  s["dentry"] = {192, {{"d_hash", 8, 16}, {"d_parent", 24, 8}, {"d_name", 32, 16}}};
  s["hlist_bl_node"] = {16, {{"next", 0, 8}, {"pprev", 8, 8}}};
  s["qstr"] = {16, {{"len", 4, 4}, {"name", 8, 8}}};
  s["vfsmount"] = {32, {{"mnt_root", 0, 8}}};
  s["mount"] = {128, {{"mnt_parent", 16, 8}, {"mnt_mountpoint", 24, 8}, {"mnt", 32, 32}}};
  return s;
}

void ensure_member(Spec& spec, const std::string& st, const std::string& m) {
  StructSpec& s = spec[st];
  uint32_t end = 0;
  for (const MemberSpec& x : s.members) {
    if (x.name == m) return;
    end = std::max(end, x.offset + x.size);
  }
  end = std::max(end, s.size);
  s.members.push_back({m, (end + 7) & ~7u, 8});
}

std::vector<uint8_t> build_btf(const Spec& spec) {
  btf* b = btf__new_empty();
  if (b == nullptr) die("btf__new_empty failed");
  const int u8 = btf__add_int(b, "unsigned char", 1, 0);
  const int u16 = btf__add_int(b, "short unsigned int", 2, 0);
  const int u32 = btf__add_int(b, "unsigned int", 4, 0);
  const int u64 = btf__add_int(b, "long unsigned int", 8, 0);
  const int chr = btf__add_int(b, "char", 1, BTF_INT_SIGNED);
  std::map<uint32_t, int> arrays;
  for (const auto& [name, s] : spec) {
    for (const MemberSpec& m : s.members) {
      if (m.size != 1 && m.size != 2 && m.size != 4 && m.size != 8 && !arrays.count(m.size)) {
        arrays[m.size] = btf__add_array(b, u32, chr, m.size);
      }
    }
  }
  for (const auto& [name, s] : spec) {
    std::vector<MemberSpec> ms = s.members;
    std::stable_sort(ms.begin(), ms.end(),
                     [](const MemberSpec& a, const MemberSpec& c) { return a.offset < c.offset; });
    uint32_t size = s.size;
    for (const MemberSpec& m : ms) size = std::max(size, m.offset + m.size);
    size = (size + 7) & ~7u;
    if (btf__add_struct(b, name.c_str(), size) < 0) die("btf__add_struct " + name);
    for (const MemberSpec& m : ms) {
      const int t = m.size == 1   ? u8
                    : m.size == 2 ? u16
                    : m.size == 4 ? u32
                    : m.size == 8 ? u64
                                  : arrays.at(m.size);
      if (btf__add_field(b, m.name.c_str(), t, m.offset * 8, 0) < 0) {
        die("btf__add_field " + name + "." + m.name);
      }
    }
  }
  uint32_t n = 0;
  const void* raw = btf__raw_data(b, &n);
  if (raw == nullptr) die("btf__raw_data failed");
  std::vector<uint8_t> out(static_cast<const uint8_t*>(raw), static_cast<const uint8_t*>(raw) + n);
  btf__free(b);
  return out;
}

// ---- kallsyms ------------------------------------------------------------------------------

struct Sym {
  std::string name;
  char type;
  uint64_t addr;
};

// Token i: one printable char for i < 94, else two chars. A name byte is the token of its char.
std::vector<std::string> tokens() {
  std::vector<std::string> t(256);
  for (int i = 0; i < 256; ++i) {
    if (i < 94) {
      t[i] = std::string(1, static_cast<char>(0x21 + i));
    } else {
      t[i] = std::string(1, static_cast<char>('a' + (i - 94) % 26)) +
             static_cast<char>('0' + (i - 94) / 26);
    }
  }
  return t;
}

// The tables in scripts/kallsyms.c order (8-aligned blob, non-absolute-percpu offsets from
// relative_base), with kallsyms_seqs_of_names between markers and token_table when `seqs`.
std::vector<uint8_t> make_kallsyms(const std::vector<Sym>& syms, uint64_t relative_base,
                                   bool seqs) {
  std::vector<uint8_t> v;
  for (const Sym& s : syms) app32(v, static_cast<uint32_t>(s.addr - relative_base));
  pad8(v);
  app64(v, relative_base);
  app32(v, static_cast<uint32_t>(syms.size()));
  app32(v, 0);
  const std::size_t names = v.size();
  std::vector<uint32_t> markers;
  for (std::size_t i = 0; i < syms.size(); ++i) {
    if (i % 256 == 0) markers.push_back(static_cast<uint32_t>(v.size() - names));
    const std::string full = std::string(1, syms[i].type) + syms[i].name;
    v.push_back(static_cast<uint8_t>(full.size()));
    for (char c : full) v.push_back(static_cast<uint8_t>(c - 0x21));
  }
  pad8(v);
  for (uint32_t m : markers) app32(v, m);
  pad8(v);
  if (seqs) {
    std::vector<uint32_t> order(syms.size());
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(),
              [&](uint32_t a, uint32_t c) { return syms[a].name < syms[c].name; });
    for (uint32_t i : order) {
      v.push_back(static_cast<uint8_t>(i >> 16));
      v.push_back(static_cast<uint8_t>(i >> 8));
      v.push_back(static_cast<uint8_t>(i));
    }
    pad8(v);
  }
  std::vector<uint16_t> index;
  const std::size_t table = v.size();
  for (const std::string& t : tokens()) {
    index.push_back(static_cast<uint16_t>(v.size() - table));
    v.insert(v.end(), t.begin(), t.end());
    v.push_back(0);
  }
  pad8(v);
  for (uint16_t i : index) {
    v.push_back(static_cast<uint8_t>(i));
    v.push_back(static_cast<uint8_t>(i >> 8));
  }
  pad8(v);
  return v;
}

// ---- the guest -----------------------------------------------------------------------------

constexpr uint64_t kKallsymsGpa = 0xa000;
constexpr uint64_t kBtfGpa = 0xc000;
constexpr uint64_t kBtfEnd = 0x10000;
constexpr uint64_t kVmcoreinfoGpa = 0x10000;
constexpr uint64_t kBannerGpa = 0x11000;
constexpr uint64_t kMmGpa = 0x12000;        // pid 1's mm_struct; maple nodes at +0x400..
constexpr uint64_t kVmaGpa = 0x13000;       // its vm_area_structs, 0x100 apart
constexpr uint64_t kFsGpa = 0x14000;        // mounts, dentries, names, files, inodes
constexpr uint64_t kUserPml4Gpa = 0x15000;  // its page tables: 0x15000-0x18fff, pages 0x19000..
constexpr uint64_t kDenseBytes = 0x1c000;   // everything above lies below this
constexpr const char* kRelease = "6.1.0-fuzz";

uint64_t img_va(uint64_t gpa) { return kTextVa + gpa; }
uint64_t dm_va(uint64_t gpa) { return kDirectMapBase + gpa; }
uint64_t mod_va(uint64_t gpa) { return kModuleAreaVa + gpa; }

std::string hex16(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

std::string vmcoreinfo_text() {
  std::string t;
  t += std::string("OSRELEASE=") + kRelease + "\n";
  t += "BUILD-ID=0123456789abcdef0123456789abcdef01234567\n";
  t += "PAGESIZE=4096\n";
  t += "SYMBOL(init_uts_ns)=" + hex16(img_va(kUtsGpa)) + "\n";
  t += "OFFSET(uts_namespace.name)=0\n";
  t += "SYMBOL(_stext)=" + hex16(kTextVa) + "\n";
  t += "SYMBOL(prb)=" + hex16(img_va(kPrbGpa)) + "\n";
  t += "SIZE(printk_ringbuffer)=88\n";
  t += "OFFSET(list_head.next)=0\n";
  t += "LENGTH(zone.free_area)=11\n";
  t += "NUMBER(phys_base)=-16777216\n";
  t += "SYMBOL(init_top_pgt)=" + hex16(img_va(kPml4Gpa)) + "\n";
  t += "NUMBER(pgtable_l5_enabled)=0\n";
  t += "KERNELOFFSET=0\n";
  return t;
}

void write_tasks(std::vector<uint8_t>& ram, const KernelOffsets& o) {
  const auto& ts = o.task_struct;
  struct Task {
    uint64_t gpa, va;
    int32_t pid;
    const char* comm;
    uint32_t state;
    uint64_t cred_gpa;
    uint32_t uid;
  };
  const Task tasks[] = {{kInitTaskGpa, img_va(kInitTaskGpa), 0, "swapper/0", 0, 0x7600, 0},
                        {0x7200, dm_va(0x7200), 1, "systemd", 1, 0x7640, 0},
                        {0x7400, dm_va(0x7400), 2, "kthreadd", 0x402, 0x7680, 1000}};
  constexpr std::size_t n = std::size(tasks);
  for (std::size_t i = 0; i < n; ++i) {
    const Task& t = tasks[i];
    const Task& next = tasks[(i + 1) % n];
    const Task& prev = tasks[(i + n - 1) % n];
    put32(ram, t.gpa + ts.state, t.state);
    put32(ram, t.gpa + ts.flags, 0x00400100);
    put64(ram, t.gpa + ts.tasks + o.list_head.next, next.va + ts.tasks);
    put64(ram, t.gpa + ts.tasks + o.list_head.prev, prev.va + ts.tasks);
    put32(ram, t.gpa + ts.pid, static_cast<uint32_t>(t.pid));
    put32(ram, t.gpa + ts.tgid, static_cast<uint32_t>(t.pid));
    put64(ram, t.gpa + ts.real_parent, tasks[0].va);
    put64(ram, t.gpa + ts.parent, tasks[0].va);
    put64(ram, t.gpa + ts.group_leader, t.va);
    put64(ram, t.gpa + ts.thread_group, t.va + ts.thread_group);
    put64(ram, t.gpa + ts.thread_group + 8, t.va + ts.thread_group);
    put_str(ram, t.gpa + ts.comm, t.comm);
    put64(ram, t.gpa + ts.real_cred, dm_va(t.cred_gpa));
    put64(ram, t.gpa + ts.cred, dm_va(t.cred_gpa));
    put64(ram, t.gpa + ts.start_time, uint64_t(t.pid) * 1000000);
    put64(ram, t.gpa + ts.start_boottime, uint64_t(t.pid) * 1000000);
    const uint64_t mm = t.pid == 1 ? dm_va(kMmGpa) : 0;  // the others are kernel threads
    put64(ram, t.gpa + ts.mm, mm);
    put64(ram, t.gpa + ts.active_mm, mm);
    put32(ram, t.cred_gpa + o.cred.uid, t.uid);
    put32(ram, t.cred_gpa + o.cred.euid, t.uid);
    put32(ram, t.cred_gpa + o.cred.gid, t.uid);
  }
}

void write_modules(std::vector<uint8_t>& ram, const KernelOffsets& o) {
  const auto& mo = o.module;
  const uint64_t head = kModulesGpa;
  const uint64_t mods[] = {0x8100, 0x8400};
  const char* names[] = {"ext4", "virtio_net"};
  put64(ram, head + o.list_head.next, mod_va(mods[0]) + mo.list);
  put64(ram, head + o.list_head.prev, mod_va(mods[1]) + mo.list);
  for (int i = 0; i < 2; ++i) {
    const uint64_t m = mods[i];
    const uint64_t next = i == 0 ? mod_va(mods[1]) + mo.list : img_va(head);
    const uint64_t prev = i == 0 ? img_va(head) : mod_va(mods[0]) + mo.list;
    put32(ram, m + mo.state, 0);
    put64(ram, m + mo.list + o.list_head.next, next);
    put64(ram, m + mo.list + o.list_head.prev, prev);
    put_str(ram, m + mo.name, names[i]);
    put64(ram, m + mo.core_base, kModuleAreaVa + 0x100000 + i * 0x10000);
    put32(ram, m + mo.core_size, 0x4000u + i * 0x1000);
  }
}

void write_printk(std::vector<uint8_t>& ram, const KernelOffsets& o) {
  const uint64_t rb = kPrbGpa + 0x40, descs = kPrbGpa + 0x100, infos = kPrbGpa + 0x200,
                 data = kPrbGpa + 0x800;
  constexpr uint32_t kCountBits = 3, kSizeBits = 10;
  const char* texts[] = {"Linux version 6.1.0-fuzz (fuzz@glassbox) #1 SMP", "Command line: quiet",
                         "glassbox: a record\nwith two lines", "x86/fpu: ok", "last record"};
  put64(ram, kPrbGpa, dm_va(rb));  // struct printk_ringbuffer *prb
  const uint64_t dr = rb + o.printk_ringbuffer.desc_ring;
  const uint64_t tr = rb + o.printk_ringbuffer.text_data_ring;
  put32(ram, dr + o.prb_desc_ring.count_bits, kCountBits);
  put64(ram, dr + o.prb_desc_ring.descs, dm_va(descs));
  put64(ram, dr + o.prb_desc_ring.infos, dm_va(infos));
  put64(ram, dr + o.prb_desc_ring.tail_id, 0);
  put64(ram, dr + o.prb_desc_ring.head_id, std::size(texts) - 1);
  put32(ram, tr + o.prb_data_ring.size_bits, kSizeBits);
  put64(ram, tr + o.prb_data_ring.data, dm_va(data));
  uint64_t lpos = 0;
  for (uint64_t id = 0; id < std::size(texts); ++id) {
    const std::string_view text = texts[id];
    const uint64_t next = lpos + ((8 + text.size() + 7) & ~uint64_t{7});
    const uint64_t d = descs + id * o.prb_desc.size;
    put64(ram, d + o.prb_desc.state_var, (2ull << 62) | id);  // desc_finalized
    put64(ram, d + o.prb_desc.text_blk_lpos + o.prb_data_blk_lpos.begin, lpos);
    put64(ram, d + o.prb_desc.text_blk_lpos + o.prb_data_blk_lpos.next, next);
    const uint64_t in = infos + id * o.printk_info.size;
    put64(ram, in + o.printk_info.seq, id);
    put64(ram, in + o.printk_info.ts_nsec, id * 1000000 + 5);
    put16(ram, in + o.printk_info.text_len, static_cast<uint16_t>(text.size()));
    put32(ram, in + o.printk_info.caller_id, 1);
    put64(ram, data + lpos, id);
    put_str(ram, data + lpos + 8, text);
    lpos = next;
  }
  put64(ram, tr + o.prb_data_ring.head_lpos, lpos);
  put64(ram, tr + o.prb_data_ring.tail_lpos, 0);
}

// pid 1's address space: mm_struct, a maple tree (arange_64 root, two leaf_64 leaves) of six
// VMAs (a file on the root mount, a file on a /usr mount, [heap], [vdso], [stack]) and user
// page tables mapping two pages at 0x400000.
void write_process(std::vector<uint8_t>& ram, const KernelOffsets& o) {
  constexpr uint64_t kMax = ~uint64_t{0};
  const uint64_t mm = kMmGpa, tree = kMmGpa + o.mm_struct.mm_mt;
  const uint64_t root = kMmGpa + 0x400, leaf_a = kMmGpa + 0x500, leaf_b = kMmGpa + 0x600;
  auto enode = [](uint64_t node_gpa, uint64_t type) { return dm_va(node_gpa) | type << 3 | 4; };
  put64(ram, mm + o.mm_struct.pgd, dm_va(kUserPml4Gpa));
  put64(ram, mm + o.mm_struct.start_brk, 0x4a3000);
  put64(ram, mm + o.mm_struct.brk, 0x4c5000);
  put64(ram, mm + o.mm_struct.start_stack, 0x7fffffffe5a0);
  put32(ram, tree + o.maple_tree.ma_flags, 0x30b);
  put64(ram, tree + o.maple_tree.ma_root, enode(root, 3) | 2);  // tagged root node

  // Filesystem: "/" (root mount) with /bin/busybox, "/usr" (a mount) with lib/libc.so.6.
  const uint64_t root_mnt = kFsGpa, usr_mnt = kFsGpa + 0x100;
  const uint64_t root_d = kFsGpa + 0x200, usr_d = kFsGpa + 0x300, usr_root = kFsGpa + 0x400;
  uint64_t name_gpa = kFsGpa + 0xa00;
  auto dentry = [&](uint64_t d, uint64_t parent, const std::string& name) {
    put64(ram, d + o.dentry.d_hash + o.hlist_bl_node.pprev, dm_va(kFsGpa + 0x9f8));  // hashed
    put64(ram, d + o.dentry.d_parent, dm_va(parent));
    put32(ram, d + o.dentry.d_name + o.qstr.len, static_cast<uint32_t>(name.size()));
    put64(ram, d + o.dentry.d_name + o.qstr.name, dm_va(name_gpa));
    put_str(ram, name_gpa, name);
    name_gpa += name.size() + 1;
    return d;
  };
  dentry(root_d, root_d, "/");
  dentry(usr_root, usr_root, "/");
  dentry(usr_d, root_d, "usr");
  const uint64_t busybox = dentry(kFsGpa + 0x600, dentry(kFsGpa + 0x500, root_d, "bin"), "busybox");
  const uint64_t libc =
      dentry(kFsGpa + 0x800, dentry(kFsGpa + 0x700, usr_root, "lib"), "libc.so.6");
  for (auto [m, parent, mountpoint, mnt_root] :
       {std::array<uint64_t, 4>{root_mnt, root_mnt, root_d, root_d},
        std::array<uint64_t, 4>{usr_mnt, root_mnt, usr_d, usr_root}}) {
    put64(ram, m + o.mount.mnt_parent, dm_va(parent));
    put64(ram, m + o.mount.mnt_mountpoint, dm_va(mountpoint));
    put64(ram, m + o.mount.mnt + o.vfsmount.mnt_root, dm_va(mnt_root));
  }
  auto file = [&](uint64_t f, uint64_t mnt, uint64_t d, uint64_t ino) {
    put64(ram, f + o.file.f_path + o.path.mnt, dm_va(mnt + o.mount.mnt));
    put64(ram, f + o.file.f_path + o.path.dentry, dm_va(d));
    put64(ram, f + o.file.f_inode, dm_va(f + 0x80));
    put64(ram, f + 0x80 + o.inode.i_ino, ino);
    return dm_va(f);
  };
  const uint64_t f_bb = file(kFsGpa + 0xc00, root_mnt, busybox, 1234);
  const uint64_t f_libc = file(kFsGpa + 0xe00, usr_mnt, libc, 77);

  // [vdso]: vm_ops = special_mapping_vmops, vm_private_data = a vm_special_mapping.
  const uint64_t special_ops = img_va(kMiscGpa), vdso = kMiscGpa + 0x100;
  put64(ram, vdso + o.vm_special_mapping.name, dm_va(kMiscGpa + 0x180));
  put_str(ram, kMiscGpa + 0x180, "[vdso]");

  struct V {
    uint64_t start, end, flags, pgoff, file, ops, priv;
  };
  const V vmas[] = {{0x400000, 0x401000, 0x1, 0, f_bb, 0, 0},
                    {0x401000, 0x4a0000, 0x5, 1, f_bb, 0, 0},
                    {0x4a3000, 0x4c5000, 0x3, 0x4a3, 0, 0, 0},
                    {0x7ffff7e00000, 0x7ffff7e20000, 0x5, 0, f_libc, 0, 0},
                    {0x7ffff7ffd000, 0x7ffff7fff000, 0x5, 0, 0, special_ops, dm_va(vdso)},
                    {0x7ffffffde000, 0x7ffffffff000, 0x3, 0x7ffffffde, 0, 0, 0}};
  uint64_t v[std::size(vmas)];
  const auto& vo = o.vm_area_struct;
  for (std::size_t i = 0; i < std::size(vmas); ++i) {
    const uint64_t g = kVmaGpa + i * 0x100;
    v[i] = dm_va(g);
    put64(ram, g + vo.vm_start, vmas[i].start);
    put64(ram, g + vo.vm_end, vmas[i].end);
    put64(ram, g + vo.vm_mm, dm_va(mm));
    put64(ram, g + vo.vm_flags, vmas[i].flags);
    put64(ram, g + vo.vm_pgoff, vmas[i].pgoff);
    put64(ram, g + vo.vm_file, vmas[i].file);
    put64(ram, g + vo.vm_ops, vmas[i].ops);
    put64(ram, g + vo.vm_private_data, vmas[i].priv);
  }
  // Maple nodes: pivots/slots/metadata through mr64 (range_64, leaf_64) or ma64 (arange_64).
  auto node = [&](uint64_t n, uint64_t parent, bool arange, const std::vector<uint64_t>& pivots,
                  const std::vector<uint64_t>& slots) {
    const uint64_t body = n + (arange ? o.maple_node.ma64 : o.maple_node.mr64);
    const uint64_t piv = body + (arange ? o.maple_arange_64.pivot : o.maple_range_64.pivot);
    const uint64_t slot = body + (arange ? o.maple_arange_64.slot : o.maple_range_64.slot);
    const uint64_t meta = body + (arange ? o.maple_arange_64.meta : o.maple_range_64.meta);
    put64(ram, n + o.maple_node.parent, parent);
    for (std::size_t i = 0; i < pivots.size(); ++i) put64(ram, piv + 8 * i, pivots[i]);
    for (std::size_t i = 0; i < slots.size(); ++i) put64(ram, slot + 8 * i, slots[i]);
    put8(ram, meta + o.maple_metadata.end, static_cast<uint8_t>(slots.size() - 1));
  };
  node(root, dm_va(tree) | 1, true, {0x7ffff7dfffff}, {enode(leaf_a, 1), enode(leaf_b, 1)});
  node(leaf_a, dm_va(root) | 6, false,
       {0x3fffff, 0x400fff, 0x49ffff, 0x4a2fff, 0x4c4fff, 0x7ffff7dfffff},
       {0, v[0], v[1], 0, v[2], 0});
  node(leaf_b, dm_va(root) | 6, false,
       {0x7ffff7e1ffff, 0x7ffff7ffcfff, 0x7ffff7ffefff, 0x7ffffffddfff, 0x7fffffffefff, kMax},
       {v[3], 0, v[4], 0, v[5], 0});

  // User page tables: 0x400000 -> gpa 0x19000 (r-x), 0x401000 -> 0x1a000 (rw, NX).
  constexpr uint64_t kU = 4;
  const uint64_t pml4 = kUserPml4Gpa, pdpt = pml4 + k4KiB, pd = pml4 + 2 * k4KiB,
                 pt = pml4 + 3 * k4KiB;
  put64(ram, pml4, pdpt | kP | kW | kU);
  put64(ram, pdpt, pd | kP | kW | kU);
  put64(ram, pd + 2 * 8, pt | kP | kW | kU);
  put64(ram, pt, (pml4 + 4 * k4KiB) | kP | kU);
  put64(ram, pt + 8, (pml4 + 5 * k4KiB) | kP | kW | kU | kNx);

  // saved_command_line (char *) and the rest of init_uts_ns.
  put64(ram, kMiscGpa + 0x200, dm_va(kMiscGpa + 0x300));
  put_str(ram, kMiscGpa + 0x300, "BOOT_IMAGE=/vmlinuz console=ttyS0 quiet");
}

std::vector<Sym> guest_symbols() {
  return {{"_text", 'T', kTextVa},
          {"startup_64", 'T', kTextVa},
          {"_stext", 'T', kTextVa},
          {"init_top_pgt", 'D', img_va(kPml4Gpa)},
          {"init_task", 'D', img_va(kInitTaskGpa)},
          {"modules", 'd', img_va(kModulesGpa)},
          {"prb", 'D', img_va(kPrbGpa)},
          {"printk_rb_static", 'd', img_va(kPrbGpa + 0x40)},
          {"linux_banner", 'R', img_va(kBannerGpa)},
          {"init_uts_ns", 'D', img_va(kUtsGpa)},
          {"special_mapping_vmops", 'd', img_va(kMiscGpa)},
          {"saved_command_line", 'D', img_va(kMiscGpa + 0x200)}};
}

std::vector<uint8_t> synthetic_ram(const KernelOffsets& o, const std::vector<uint8_t>& btf) {
  std::vector<uint8_t> ram(kSyntheticRamBytes, 0);
  install_page_tables(ram, kPml4Gpa);
  write_tasks(ram, o);
  write_modules(ram, o);
  write_printk(ram, o);
  write_process(ram, o);
  const auto ks = make_kallsyms(guest_symbols(), kTextVa, true);
  if (kKallsymsGpa + ks.size() > kBtfGpa) die("kallsyms tables overflow their slot");
  put(ram, kKallsymsGpa, ks.data(), ks.size());
  if (kBtfGpa + btf.size() > kBtfEnd) die("BTF overflows its slot");
  put(ram, kBtfGpa, btf.data(), btf.size());
  // vmcoreinfo_note: Elf64_Nhdr {namesz 11, descsz, type 0}, "VMCOREINFO\0" padded, the text.
  const std::string text = vmcoreinfo_text();
  put32(ram, kVmcoreinfoGpa, 11);
  put32(ram, kVmcoreinfoGpa + 4, static_cast<uint32_t>(text.size()));
  put32(ram, kVmcoreinfoGpa + 8, 0);
  put(ram, kVmcoreinfoGpa + 12, "VMCOREINFO", 11);
  put_str(ram, kVmcoreinfoGpa + 24, text);
  put_str(ram, kBannerGpa,
          std::string("Linux version ") + kRelease +
              " (fuzz@glassbox) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC\n");
  const auto& u = o.new_utsname;
  put_str(ram, kUtsGpa + o.uts_namespace.name + u.sysname, "Linux");
  put_str(ram, kUtsGpa + o.uts_namespace.name + u.nodename, "fuzz");
  put_str(ram, kUtsGpa + o.uts_namespace.name + u.release, kRelease);
  put_str(ram, kUtsGpa + o.uts_namespace.name + u.version, "#1 SMP PREEMPT_DYNAMIC fuzz");
  put_str(ram, kUtsGpa + o.uts_namespace.name + u.machine, "x86_64");
  return ram;
}

// ---- ELF and bzImage -----------------------------------------------------------------------

std::vector<uint8_t> make_elf(const std::vector<uint8_t>& btf) {
  struct Sec {
    const char* name;
    uint32_t type;
    uint64_t flags, addr;
    std::vector<uint8_t> bytes;
    uint64_t nobits_size;
  };
  const std::string banner =
      std::string("Linux version ") + kRelease + " (fuzz@glassbox) #1 SMP PREEMPT_DYNAMIC\n";
  std::vector<uint8_t> rodata(64, 0);
  rodata.insert(rodata.end(), banner.begin(), banner.end());
  rodata.push_back(0);
  std::vector<Sec> secs = {{"", 0, 0, 0, {}, 0},
                           {".text", 1, 6, kTextVa, std::vector<uint8_t>(16, 0xcc), 0},
                           {".rodata", 1, 2, kTextVa + 0x1000, rodata, 0},
                           {".BTF", 1, 2, kTextVa + 0x2000, btf, 0},
                           {".bss", 8, 3, kTextVa + 0x10000, {}, 0x1000},
                           {".shstrtab", 3, 0, 0, {}, 0}};
  std::vector<uint8_t> shstr(1, 0);
  std::vector<uint32_t> name_off;
  for (const Sec& s : secs) {
    if (!*s.name) {
      name_off.push_back(0);
      continue;
    }
    name_off.push_back(static_cast<uint32_t>(shstr.size()));
    shstr.insert(shstr.end(), s.name, s.name + std::strlen(s.name) + 1);
  }
  secs.back().bytes = shstr;
  std::vector<uint8_t> elf(64, 0);
  std::vector<uint64_t> offs;
  for (const Sec& s : secs) {
    pad8(elf);
    offs.push_back(elf.size());
    elf.insert(elf.end(), s.bytes.begin(), s.bytes.end());
  }
  pad8(elf);
  const uint64_t shoff = elf.size();
  for (std::size_t i = 0; i < secs.size(); ++i) {
    std::vector<uint8_t> sh(64, 0);
    put32(sh, 0, name_off[i]);
    put32(sh, 4, secs[i].type);
    put64(sh, 8, secs[i].flags);
    put64(sh, 16, secs[i].addr);
    put64(sh, 24, i == 0 ? 0 : offs[i]);
    put64(sh, 32, secs[i].type == 8 ? secs[i].nobits_size : secs[i].bytes.size());
    put64(sh, 48, 8);
    elf.insert(elf.end(), sh.begin(), sh.end());
  }
  const uint8_t ident[16] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
  put(elf, 0, ident, 16);
  put16(elf, 16, 2);   // ET_EXEC
  put16(elf, 18, 62);  // EM_X86_64
  put32(elf, 20, 1);
  put64(elf, 24, kTextVa);
  put64(elf, 40, shoff);
  put16(elf, 52, 64);
  put16(elf, 58, 64);
  put16(elf, 60, static_cast<uint16_t>(secs.size()));
  put16(elf, 62, static_cast<uint16_t>(secs.size() - 1));
  return elf;
}

std::vector<uint8_t> compress(const std::vector<uint8_t>& in, const std::string& how) {
  std::vector<uint8_t> out(in.size() * 2 + 65536);
  if (how == "gzip") {
    z_stream z{};
    if (deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      die("deflateInit2");
    }
    z.next_in = const_cast<Bytef*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) die("deflate");
    out.resize(z.total_out);
    deflateEnd(&z);
  } else if (how == "xz") {
    std::size_t pos = 0;
    if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr, in.data(), in.size(), out.data(),
                                &pos, out.size()) != LZMA_OK) {
      die("lzma_easy_buffer_encode");
    }
    out.resize(pos);
  } else if (how == "lzma") {
    lzma_options_lzma opt;
    if (lzma_lzma_preset(&opt, 6)) die("lzma_lzma_preset");
    opt.dict_size = 1u << 16;
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_alone_encoder(&s, &opt) != LZMA_OK) die("lzma_alone_encoder");
    s.next_in = in.data();
    s.avail_in = in.size();
    s.next_out = out.data();
    s.avail_out = out.size();
    if (lzma_code(&s, LZMA_FINISH) != LZMA_STREAM_END) die("lzma_code");
    out.resize(out.size() - s.avail_out);
    lzma_end(&s);
  } else if (how == "zstd") {
    const std::size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 19);
    if (ZSTD_isError(n)) die("ZSTD_compress");
    out.resize(n);
  } else if (how == "bzip2") {
    unsigned n = static_cast<unsigned>(out.size());
    if (BZ2_bzBuffToBuffCompress(reinterpret_cast<char*>(out.data()), &n,
                                 const_cast<char*>(reinterpret_cast<const char*>(in.data())),
                                 static_cast<unsigned>(in.size()), 1, 0, 0) != BZ_OK) {
      die("BZ2_bzBuffToBuffCompress");
    }
    out.resize(n);
  } else if (how == "lz4") {
    std::vector<uint8_t> v;
    app32(v, 0x184c2102);
    std::vector<char> blk(static_cast<std::size_t>(LZ4_compressBound(static_cast<int>(in.size()))));
    const int n = LZ4_compress_default(reinterpret_cast<const char*>(in.data()), blk.data(),
                                       static_cast<int>(in.size()), static_cast<int>(blk.size()));
    if (n <= 0) die("LZ4_compress_default");
    app32(v, static_cast<uint32_t>(n));
    v.insert(v.end(), blk.begin(), blk.begin() + n);
    out = v;
  } else if (how == "lzo") {
    out = {0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a};
  } else {
    die("unknown compression " + how);
  }
  return out;
}

std::vector<uint8_t> make_bzimage(const std::vector<uint8_t>& payload, uint32_t vmlinux_size) {
  std::vector<uint8_t> img(1024, 0);  // boot sector + 1 setup sector
  img[0x1f1] = 1;
  put(img, 0x202, "HdrS", 4);
  put16(img, 0x206, 0x020f);
  put32(img, 0x248, 0);
  put32(img, 0x24c, static_cast<uint32_t>(payload.size() + 4));
  img.insert(img.end(), payload.begin(), payload.end());
  app32(img, vmlinux_size);  // size_append
  return img;
}

// ---- seeds ---------------------------------------------------------------------------------

std::vector<uint8_t> header(Mode mode, uint8_t layout = 0) {
  std::vector<uint8_t> h(kHeaderBytes, 0);
  h[Header::kMode] = mode;
  h[Header::kLayout] = layout;
  h[Header::kFlags] = 1 << 3;  // list_vmas(pid 1)
  put64(h, Header::kCr3, kPml4Gpa);
  put64(h, Header::kVa, img_va(kInitTaskGpa));
  put32(h, Header::kInitTask, static_cast<uint32_t>(kInitTaskGpa));
  put32(h, Header::kModules, static_cast<uint32_t>(kModulesGpa));
  put32(h, Header::kPrb, static_cast<uint32_t>(kPrbGpa));
  return h;
}

std::vector<uint8_t> with_payload(std::vector<uint8_t> h, const uint8_t* p, std::size_t n) {
  h.insert(h.end(), p, p + n);
  return h;
}

// kSparse records for every non-zero stretch of `ram` (gaps under 32 zero bytes merged).
std::vector<uint8_t> sparse_records(const std::vector<uint8_t>& ram) {
  std::vector<uint8_t> out;
  std::size_t i = 0;
  while (i < ram.size()) {
    if (ram[i] == 0) {
      ++i;
      continue;
    }
    std::size_t end = i, zeros = 0;
    while (end < ram.size() && end - i < 65535 && zeros < 32) {
      zeros = ram[end] == 0 ? zeros + 1 : 0;
      ++end;
    }
    end -= zeros;
    app32(out, static_cast<uint32_t>(i));
    out.push_back(static_cast<uint8_t>(end - i));
    out.push_back(static_cast<uint8_t>((end - i) >> 8));
    out.insert(out.end(), ram.begin() + i, ram.begin() + end);
    i = end;
  }
  return out;
}

void write_file(const std::filesystem::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) die("cannot write " + p.string());
}

}  // namespace

uint64_t install_page_tables(std::vector<uint8_t>& ram, uint64_t base, unsigned image_slots) {
  const uint64_t pml4 = base, pdpt_k = base + k4KiB, pd_k = base + 2 * k4KiB,
                 pdpt_dm = base + 3 * k4KiB, pd_m = base + 4 * k4KiB, pt_m = base + 5 * k4KiB;
  if (ram.size() < base + kPageTableBytes) die("no room for the page tables");
  std::memset(ram.data() + base, 0, kPageTableBytes);
  put64(ram, pml4 + 273 * 8, pdpt_dm | kP | kW);
  put64(ram, pml4 + 511 * 8, pdpt_k | kP | kW);
  for (uint64_t j = 0; j < 8; ++j) put64(ram, pdpt_dm + j * 8, (j * k1GiB) | kP | kW | kPs | kNx);
  put64(ram, pdpt_k + 510 * 8, pd_k | kP | kW);
  put64(ram, pdpt_k + 511 * 8, pd_m | kP | kW);
  for (uint64_t i = 0; i < image_slots && i < 504; ++i) {
    put64(ram, pd_k + (8 + i) * 8, (i * k2MiB) | kP | kW | kPs);
  }
  put64(ram, pd_m, pt_m | kP | kW);
  for (uint64_t k = 0; k < 32; ++k) put64(ram, pt_m + k * 8, (k * k4KiB) | kP | kW | kNx);
  return pml4;
}

std::vector<uint8_t> make_btf() {
  Spec spec = base_spec();
  for (int round = 0; round < 64; ++round) {
    std::vector<uint8_t> blob = build_btf(spec);
    auto kt = KernelTypes::from_bytes(blob);
    if (!kt) die("library rejects the synthetic BTF: " + kt.error().to_string());
    auto off = KernelOffsets::resolve(*kt);
    if (off) return blob;
    // "BTF lacks: task_struct.foo, sizeof task_struct.comm, sizeof struct x, module.a|b"
    std::string_view msg = off.error().message;
    const std::string_view prefix = "BTF lacks: ";
    if (msg.substr(0, prefix.size()) != prefix) die("unexpected: " + std::string(msg));
    msg.remove_prefix(prefix.size());
    while (!msg.empty()) {
      const std::size_t comma = msg.find(", ");
      std::string item(msg.substr(0, comma));
      msg = comma == std::string_view::npos ? std::string_view{} : msg.substr(comma + 2);
      if (item.rfind("sizeof struct ", 0) == 0) {
        spec[item.substr(14)];
        continue;
      }
      if (item.rfind("sizeof ", 0) == 0) item = item.substr(7);
      const std::size_t dot = item.find('.');
      if (dot == std::string::npos) die("cannot read missing item " + item);
      std::string member = item.substr(dot + 1);
      member = member.substr(0, member.find('|'));
      ensure_member(spec, item.substr(0, dot), member);
    }
  }
  die("KernelOffsets::resolve never accepted the synthetic BTF");
}

KernelOffsets synthetic_offsets() {
  const std::vector<uint8_t> blob = make_btf();
  auto kt = KernelTypes::from_bytes(blob);
  if (!kt) die(kt.error().to_string());
  auto off = KernelOffsets::resolve(*kt);
  if (!off) die(off.error().to_string());
  return *off;
}

std::size_t write_seeds(const std::string& dir_name) {
  const std::filesystem::path dir(dir_name);
  std::filesystem::create_directories(dir);
  const std::vector<uint8_t> btf = make_btf();
  const KernelOffsets off = synthetic_offsets();
  const std::vector<uint8_t> ram = synthetic_ram(off, btf);
  std::size_t n = 0;
  auto emit = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    if (bytes.size() > kMaxInputBytes) die("seed " + name + " is over kMaxInputBytes");
    write_file(dir / (name + ".bin"), bytes);
    ++n;
  };
  // Whole guest, scattered: build_profile succeeds, the walks run.
  {
    auto h = header(kSparse);
    h[Header::kSparseMib] = 8;
    auto rec = sparse_records(ram);
    emit("sparse_guest", with_payload(h, rec.data(), rec.size()));
    auto h2 = header(kSparse, 1);  // split: [0, 8 MiB) and 4 GiB..
    h2[Header::kSparseMib] = 10;
    put32(h2, Header::kSplit, 8u << 20);
    emit("sparse_guest_split", with_payload(h2, rec.data(), rec.size()));
  }
  // The first 128 KiB as a dense image: the raw pipeline and the hand-built profiles.
  const std::size_t dense = kDenseBytes;
  emit("raw_guest", with_payload(header(kRaw), ram.data(), dense));
  emit("raw_guest_alias", with_payload(header(kRaw, 2), ram.data(), dense));
  emit("hand_tables", with_payload(header(kHandTables), ram.data(), dense));
  emit("hand_pgd", with_payload(header(kHandPgd), ram.data(), dense));
  // Slices.
  emit("slice_btf", with_payload(header(kSlices), btf.data(), btf.size()));
  for (bool seqs : {false, true}) {
    auto ks = make_kallsyms(guest_symbols(), kTextVa, seqs);
    ks.insert(ks.begin(), 8, 0);  // token_index is never at 0
    if (ks.size() < 1024) ks.resize(1024, 0);
    emit(seqs ? "slice_kallsyms_seqs" : "slice_kallsyms",
         with_payload(header(kSlices), ks.data(), ks.size()));
  }
  {
    const std::string t = vmcoreinfo_text();
    emit("slice_vmcoreinfo",
         with_payload(header(kSlices), reinterpret_cast<const uint8_t*>(t.data()), t.size()));
  }
  const std::vector<uint8_t> elf = make_elf(btf);
  emit("slice_elf", with_payload(header(kSlices), elf.data(), elf.size()));
  for (const char* how : {"gzip", "xz", "lzma", "zstd", "bzip2", "lz4", "lzo"}) {
    const auto bz = make_bzimage(compress(elf, how), static_cast<uint32_t>(elf.size()));
    emit(std::string("slice_bzimage_") + how, with_payload(header(kSlices), bz.data(), bz.size()));
  }
  return n;
}

}  // namespace glassbox::fuzz
