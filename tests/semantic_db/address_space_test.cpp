#include "services/semantic_db/address_space.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "shared/ram_dump.hpp"

namespace glassbox::semantic_db {
namespace {

constexpr uint64_t kP = kPtePresent;
constexpr uint64_t kW = kPteWritable;
constexpr uint64_t kU = kPteUser;
constexpr uint64_t kPs = kPtePageSize;
constexpr uint64_t k2MiB = 2ULL << 20;

// Guest RAM in a vector, seen through an identity layout (or `layout`).
struct FakeRam {
  explicit FakeRam(std::size_t size_bytes)
      : mem(size_bytes, 0), view(mem.data(), mem.size(), shared::RamLayout::identity(size_bytes)) {}
  FakeRam(std::size_t size_bytes, shared::RamLayout layout)
      : mem(size_bytes, 0), view(mem.data(), mem.size(), std::move(layout)) {}
  void set(uint64_t table, unsigned idx, uint64_t entry) {
    std::memcpy(&mem[table + idx * 8ULL], &entry, 8);
  }
  void put(uint64_t gpa, std::string_view bytes) {
    std::memcpy(&mem[gpa], bytes.data(), bytes.size());
  }
  std::vector<uint8_t> mem;
  shared::RamView view;
};

constexpr unsigned pml4_idx(uint64_t va) { return (va >> 39) & 511; }
constexpr unsigned pdpt_idx(uint64_t va) { return (va >> 30) & 511; }
constexpr unsigned pd_idx(uint64_t va) { return (va >> 21) & 511; }
constexpr unsigned pt_idx(uint64_t va) { return (va >> 12) & 511; }

TEST(AddressSpaceTest, Translates4KiBPageWithFlags) {
  FakeRam ram(1 << 20);
  const uint64_t va = 0x00007f1234567abcULL;
  ram.set(0x1000, pml4_idx(va), 0x2000 | kP | kW | kU);
  ram.set(0x2000, pdpt_idx(va), 0x3000 | kP | kW | kU);
  ram.set(0x3000, pd_idx(va), 0x4000 | kP | kW | kU);
  ram.set(0x4000, pt_idx(va), 0x9000 | kP | kU | kPteNx);  // read-only, user, NX
  PageTableWalker w(ram.view, Gpa(0x1000 | 0x18));         // PCD/PWT bits in CR3 ignored
  auto t = w.translate(Gva(va));
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->gpa, Gpa(0x9abc));
  EXPECT_EQ(t->page_size_bytes, 4096u);
  EXPECT_FALSE(t->writable);
  EXPECT_TRUE(t->user);
  EXPECT_TRUE(t->nx);
}

TEST(AddressSpaceTest, Translates2MiBAnd1GiBPages) {
  FakeRam ram(8 << 20);
  const uint64_t va2m = 0xffff888000000000ULL + 0x40000000ULL + 0x212345;  // PD leaf
  const uint64_t va1g = 0xffff888000000000ULL + 0x123456;                  // PDPT leaf
  ram.set(0x1000, pml4_idx(va2m), 0x2000 | kP | kW);
  ram.set(0x2000, pdpt_idx(va1g), 0x0 | kP | kW | kPs);  // 1 GiB page at gpa 0
  ram.set(0x2000, pdpt_idx(va2m), 0x3000 | kP | kW);
  ram.set(0x3000, pd_idx(va2m), 0x400000 | kP | kW | kPs);  // 2 MiB page at 4 MiB
  PageTableWalker w(ram.view, Gpa(0x1000));
  auto t2 = w.translate(Gva(va2m));
  ASSERT_TRUE(t2) << t2.error().to_string();
  EXPECT_EQ(t2->gpa, Gpa(0x400000 + 0x12345));
  EXPECT_EQ(t2->page_size_bytes, k2MiB);
  EXPECT_TRUE(t2->writable);
  EXPECT_FALSE(t2->user);
  auto t1 = w.translate(Gva(va1g));
  ASSERT_TRUE(t1) << t1.error().to_string();
  EXPECT_EQ(t1->gpa, Gpa(0x123456));
  EXPECT_EQ(t1->page_size_bytes, 1ULL << 30);
}

TEST(AddressSpaceTest, NonPresentEntryNamesTheLevel) {
  FakeRam ram(1 << 20);
  const uint64_t va = 0x400000;
  ram.set(0x1000, 0, 0x2000 | kP);
  ram.set(0x2000, 0, 0x3000 | kP);
  ram.set(0x3000, pd_idx(va), 0x4000);  // present bit clear
  PageTableWalker w(ram.view, Gpa(0x1000));
  auto t = w.translate(Gva(va));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::kNotFound);
  EXPECT_NE(t.error().message.find("PD entry 2 not present"), std::string::npos)
      << t.error().message;
}

TEST(AddressSpaceTest, TableOutsideRamIsOutOfRange) {
  // RAM: gpa 0..1 MiB and 2..3 MiB; the PD lies in the hole.
  auto layout = shared::RamLayout::from_regions(
      {{Gpa(0), 1 << 20, 0}, {Gpa(2 << 20), 1 << 20, 1 << 20}}, 2 << 20);
  ASSERT_TRUE(layout);
  FakeRam ram(2 << 20, *layout);
  ram.set(0x1000, 0, 0x2000 | kP);
  ram.set(0x2000, 0, 0x180000 | kP);  // PD at 1.5 MiB: not RAM
  PageTableWalker w(ram.view, Gpa(0x1000));
  auto t = w.translate(Gva(0x1000));
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::kOutOfRange);
  EXPECT_NE(t.error().message.find("PD table at gpa 0x180000"), std::string::npos)
      << t.error().message;
  // A PML4 outside RAM, and a leaf page outside RAM.
  EXPECT_EQ(PageTableWalker(ram.view, Gpa(0x7fff000)).translate(Gva(0)).error().code,
            Errc::kOutOfRange);
  ram.set(0x2000, 1, 0xfffc0000000ULL | kP | kPs);  // 1 GiB page far past RAM
  EXPECT_EQ(w.translate(Gva(1ULL << 30)).error().code, Errc::kOutOfRange);
  // Nothing bad happens in mapped_ranges either.
  auto r = w.mapped_ranges(Gva(0), Gva(0));
  EXPECT_GE(r.n_skipped_tables, 1u);
}

TEST(AddressSpaceTest, RejectsNonCanonicalAndReservedPs) {
  FakeRam ram(1 << 20);
  PageTableWalker w(ram.view, Gpa(0x1000));
  EXPECT_EQ(w.translate(Gva(0x0000800000000000ULL)).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(w.translate(Gva(0xfff0000000000000ULL)).error().code, Errc::kInvalidArgument);
  EXPECT_TRUE(is_canonical(Gva(0xffff800000000000ULL)));
  EXPECT_TRUE(is_canonical(Gva(0x00007fffffffffffULL)));
  ram.set(0x1000, 0, 0x2000 | kP | kPs);
  EXPECT_EQ(w.translate(Gva(0)).error().code, Errc::kProtocol);
}

TEST(AddressSpaceTest, ReadVirtualCrossesPagesAndStopsAtHole) {
  FakeRam ram(1 << 20);
  ram.set(0x1000, 0, 0x2000 | kP);
  ram.set(0x2000, 0, 0x3000 | kP);
  ram.set(0x3000, 0, 0x4000 | kP);
  ram.set(0x4000, 0x10, 0x8000 | kP);  // va 0x10000 -> 0x8000
  ram.set(0x4000, 0x11, 0x6000 | kP);  // va 0x11000 -> 0x6000 (not contiguous)
  ram.put(0x8ffc, "abcd");
  ram.put(0x6000, "efgh");
  PageTableWalker w(ram.view, Gpa(0x1000));
  std::vector<uint8_t> buf(8);
  auto n = w.read_virtual(Gva(0x10ffc), buf);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 8u);
  EXPECT_EQ(std::string(buf.begin(), buf.end()), "abcdefgh");
  std::vector<uint8_t> big(0x2000 + 16);
  auto m = w.read_virtual(Gva(0x10000), big);  // third page unmapped: short read
  ASSERT_TRUE(m);
  EXPECT_EQ(*m, 0x2000u);
  EXPECT_FALSE(w.read_virtual(Gva(0x12000), buf));  // first byte unmapped: error
}

TEST(AddressSpaceTest, SelfReferencingTablesStayBounded) {
  FakeRam ram(1 << 20);
  for (unsigned i = 0; i < 512; ++i) ram.set(0x1000, i, 0x1000 | kP | kW);  // PML4 -> itself
  PageTableWalker w(ram.view, Gpa(0x1000));
  auto t = w.translate(Gva(0x1234));  // 4 levels of the same page: terminates
  ASSERT_TRUE(t);
  EXPECT_EQ(t->gpa, Gpa(0x1234));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = w.mapped_ranges(Gva(0), Gva(0));
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(r.ranges.empty());
  EXPECT_EQ(r.n_skipped_tables, 512u);  // each PML4 slot's "PDPT" is on the path
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), 1000);
}

TEST(AddressSpaceTest, AliasedTablesAreCutByTheEntryBudget) {
  // No cycle, but every entry of every level points to the next table: 512^4 leaves.
  FakeRam ram(1 << 20);
  for (unsigned i = 0; i < 512; ++i) {
    ram.set(0x1000, i, 0x2000 | kP);
    ram.set(0x2000, i, 0x3000 | kP);
    ram.set(0x3000, i, 0x4000 | kP);
    ram.set(0x4000, i, (0x10000 + i * 4096ULL) | kP);
  }
  PageTableWalker w(ram.view, Gpa(0x1000));
  auto r = w.mapped_ranges(Gva(0), Gva(0), 1000, 100000);
  EXPECT_TRUE(r.truncated);
  EXPECT_LE(r.ranges.size(), 1000u);
}

TEST(AddressSpaceTest, MappedRangesMergesAndClips) {
  FakeRam ram(1 << 20);
  ram.set(0x1000, 0, 0x2000 | kP | kW | kU);
  ram.set(0x2000, 0, 0x3000 | kP | kW | kU);
  ram.set(0x3000, 0, 0x4000 | kP | kW | kU);
  for (unsigned i = 0; i < 4; ++i) ram.set(0x4000, i, (0x10000 + i * 4096ULL) | kP | kW | kU);
  ram.set(0x4000, 4, 0x30000 | kP | kU);  // read-only: a new range
  ram.set(0x4000, 5, 0x31000 | kP | kU);
  PageTableWalker w(ram.view, Gpa(0x1000));
  auto r = w.mapped_ranges(Gva(0), Gva(0x00007fffffffffffULL));
  ASSERT_EQ(r.ranges.size(), 2u);
  EXPECT_EQ(r.ranges[0].va, Gva(0));
  EXPECT_EQ(r.ranges[0].gpa, Gpa(0x10000));
  EXPECT_EQ(r.ranges[0].size_bytes, 0x4000u);
  EXPECT_TRUE(r.ranges[0].writable);
  EXPECT_EQ(r.ranges[1].va, Gva(0x4000));
  EXPECT_EQ(r.ranges[1].size_bytes, 0x2000u);
  EXPECT_FALSE(r.ranges[1].writable);
  auto clipped = w.mapped_ranges(Gva(0x1800), Gva(0x2800));
  ASSERT_EQ(clipped.ranges.size(), 1u);
  EXPECT_EQ(clipped.ranges[0].gpa, Gpa(0x11800));
  EXPECT_EQ(clipped.ranges[0].size_bytes, 0x1000u);
}

TEST(AddressSpaceTest, ImageAndDirectMapArithmetic) {
  KernelBase kb;
  kb.phys_base = static_cast<uint64_t>(int64_t{-765460480});
  auto pa = kernel_image_pa(Gva(0xffffffffba81aa40ULL), kb);
  ASSERT_TRUE(pa);
  EXPECT_EQ(*pa, Gpa(0xffffffffba81aa40ULL - kStartKernelMap - 765460480));
  EXPECT_EQ(kernel_image_pa(Gva(0xffffffffc02fd000ULL), kb).error().code, Errc::kOutOfRange);
  EXPECT_EQ(kernel_image_pa(Gva(0xffff888000000000ULL), kb).error().code, Errc::kOutOfRange);
  EXPECT_EQ(direct_map_pa(Gva(0xffff8dd94fd22000ULL), 0xffff8dd940000000ULL), Gpa(0xfd22000));
  EXPECT_FALSE(direct_map_pa(Gva(0xffff8dd93fffffffULL), 0xffff8dd940000000ULL));
}

// A synthetic kernel: image of 4 x 2 MiB at gpa 2 MiB, mapped from _text 0xffffffff81a00000,
// init_top_pgt inside it, a banner, and a direct map at PML4 slot 278, PDPT slot 3.
struct SyntheticKernel {
  static constexpr uint64_t kTextGpa = 0x200000;
  static constexpr uint64_t kTextGva = 0xffffffff81a00000ULL;
  static constexpr uint64_t kPgd = 0x300000;                     // inside the image
  static constexpr uint64_t kDirectMap = 0xffff8b00c0000000ULL;  // slot 278, PDPT 3
  SyntheticKernel() : ram(16 << 20) {
    ram.set(kPgd, 511, 0x100000 | kP | kW);
    ram.set(0x100000, 510, 0x101000 | kP | kW);
    for (unsigned k = 0; k < 4; ++k) {
      ram.set(0x101000, pd_idx(kTextGva) + k, (kTextGpa + k * k2MiB) | kP | kW | kPs);
    }
    ram.set(kPgd, pml4_idx(kDirectMap), 0x102000 | kP | kW);
    ram.set(0x102000, pdpt_idx(kDirectMap), 0x103000 | kP | kW);
    for (unsigned k = 0; k < 8; ++k) ram.set(0x103000, k, (k * k2MiB) | kP | kW | kPs);
    ram.put(kTextGpa + 0x123456, "Linux version 6.1.0-test (x@y) #1 SMP\n");
    // A process PGD sharing the kernel half (user half non-empty), outside the image.
    for (unsigned i = 256; i < 512; ++i) {
      std::memcpy(&ram.mem[0xa00000 + i * 8], &ram.mem[kPgd + i * 8], 8);
    }
    ram.set(0xa00000, 0, 0x104000 | kP | kW | kU);
  }
  FakeRam ram;
};

TEST(AddressSpaceTest, ScansKernelPgdsAndFindsDirectMap) {
  SyntheticKernel k;
  auto cands = scan_kernel_pgds(k.ram.view);
  ASSERT_EQ(cands.size(), 2u);
  EXPECT_EQ(cands[0].pgd, Gpa(SyntheticKernel::kPgd));
  EXPECT_TRUE(cands[0].inside_own_image);
  EXPECT_TRUE(cands[0].user_half_empty);
  EXPECT_EQ(cands[0].text_gva, Gva(SyntheticKernel::kTextGva));
  EXPECT_EQ(cands[0].text_gpa, Gpa(SyntheticKernel::kTextGpa));
  EXPECT_EQ(cands[0].image_mapped_bytes, 4 * k2MiB);
  EXPECT_FALSE(cands[1].inside_own_image);
  EXPECT_FALSE(cands[1].user_half_empty);

  auto kb = find_kernel_base(k.ram.view, nullptr);
  ASSERT_TRUE(kb) << kb.error().to_string();
  EXPECT_EQ(kb->sources, (std::vector<std::string>{"banner", "pgd-scan"}));
  EXPECT_EQ(kb->kaslr_slide, 0xa00000u);
  EXPECT_EQ(kb->phys_base,
            SyntheticKernel::kTextGpa - (SyntheticKernel::kTextGva - kStartKernelMap));
  EXPECT_EQ(kb->kernel_pgd, Gpa(SyntheticKernel::kPgd));
  EXPECT_EQ(kb->release, "6.1.0-test");
  EXPECT_EQ(kb->banner_gpa, Gpa(SyntheticKernel::kTextGpa + 0x123456));

  auto ks = KernelAddressSpace::create(k.ram.view, *kb);
  ASSERT_TRUE(ks) << ks.error().to_string();
  EXPECT_EQ(ks->page_offset_base(), SyntheticKernel::kDirectMap);
  EXPECT_EQ(*ks->translate(Gva(SyntheticKernel::kDirectMap + 0x5678)), Gpa(0x5678));
  EXPECT_EQ(*ks->translate(Gva(SyntheticKernel::kTextGva + 0x10)),
            Gpa(SyntheticKernel::kTextGpa + 0x10));
  auto u = ks->read_u64(Gva(SyntheticKernel::kTextGva + 0x123456));
  ASSERT_TRUE(u);
  EXPECT_EQ(*u, 0x65762078756e694cULL);                     // "Linux ve"
  EXPECT_FALSE(ks->translate(Gva(0xffffc90000000000ULL)));  // unmapped vmalloc

  // With the banner offset known from the build, a wrong one is reported.
  KernelBaseOptions opts;
  opts.banner_offset_in_image = 0x1000;
  auto kb2 = find_kernel_base(k.ram.view, nullptr, opts);
  ASSERT_TRUE(kb2);
  EXPECT_EQ(kb2->sources, (std::vector<std::string>{"pgd-scan"}));
  ASSERT_FALSE(kb2->notes.empty());
}

TEST(AddressSpaceTest, KernelBaseReportsDisagreeingVmcoreinfo) {
  SyntheticKernel k;
  Vmcoreinfo v;
  v.os_release = "6.1.0-test";
  v.page_size_bytes = 4096;
  v.kernel_offset = 0xc00000;  // scan says 0xa00000
  v.numbers["phys_base"] =
      static_cast<int64_t>(SyntheticKernel::kTextGpa - (0xffffffff81c00000ULL - kStartKernelMap));
  v.symbols["init_top_pgt"] = 0xffffffff81c00000ULL + 0x100000;  // -> gpa kPgd
  auto kb = find_kernel_base(k.ram.view, &v);
  ASSERT_TRUE(kb) << kb.error().to_string();
  EXPECT_EQ(kb->sources.front(), "vmcoreinfo");
  EXPECT_EQ(kb->kaslr_slide, 0xc00000u);
  EXPECT_EQ(std::count(kb->sources.begin(), kb->sources.end(), "pgd-scan"), 0);
  bool noted = false;
  for (const auto& n : kb->notes) noted = noted || n.find("pgd-scan") != std::string::npos;
  EXPECT_TRUE(noted);

  v.numbers["pgtable_l5_enabled"] = 1;
  EXPECT_EQ(find_kernel_base(k.ram.view, &v).error().code, Errc::kUnsupported);
  EXPECT_EQ(find_kernel_base(FakeRam(1 << 20).view, nullptr).error().code, Errc::kNotFound);
}

TEST(AddressSpaceTest, SurvivesRandomRam) {
  FakeRam ram(8 << 20);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (std::size_t i = 0; i + 8 <= ram.mem.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    // Mostly small present entries pointing into (or just past) RAM, sometimes with PS.
    const uint64_t e = (x & 0xfff) | ((x >> 20) % (10 << 20) & kPteAddrMask);
    std::memcpy(&ram.mem[i], &e, 8);
  }
  for (uint64_t cr3 = 0; cr3 < (9 << 20); cr3 += 0x7f000) {
    PageTableWalker w(ram.view, Gpa(cr3));
    auto r = w.mapped_ranges(Gva(0), Gva(0), 4096, 200000);
    EXPECT_LE(r.ranges.size(), 4096u);
    for (uint64_t va = 0; va < (1ULL << 47); va += 0x3fffe1234567ULL) {
      (void)w.translate(Gva(va));
      uint8_t buf[64];
      (void)w.read_virtual(Gva(va), buf);
    }
  }
  (void)scan_kernel_pgds(ram.view);
  (void)find_kernel_base(ram.view, nullptr);
}

// ---- The reference dump (skipped when absent). Offsets below are 6.1.0-56's, from BTF;
// the product gets them from BTF at run time.
constexpr uint64_t kTasksOff = 2192;
constexpr uint64_t kPidOff = 2416;
constexpr uint64_t kCommOff = 2976;
constexpr uint64_t kInitTask = 0xffffffffba81aa40ULL;  // serial.log: init_task

struct Task {
  int32_t pid;
  std::string comm;
};

// Walks init_task.tasks: bounded, cycle-checked.
Result<std::vector<Task>> pslist(const KernelAddressSpace& ks) {
  std::vector<Task> out;
  std::set<uint64_t> seen;
  const uint64_t head = kInitTask + kTasksOff;
  uint64_t task = kInitTask;
  for (std::size_t n = 0; n < 100000; ++n) {
    uint8_t comm[16] = {};
    uint8_t pid[4] = {};
    auto c = ks.read_virtual(Gva(task + kCommOff), comm);
    auto p = ks.read_virtual(Gva(task + kPidOff), pid);
    if (!c || !p || *c != 16 || *p != 4) return fail(Errc::kProtocol, "unreadable task");
    Task t;
    std::memcpy(&t.pid, pid, 4);
    t.comm.assign(reinterpret_cast<const char*>(comm), strnlen(reinterpret_cast<char*>(comm), 16));
    out.push_back(t);
    auto next = ks.read_u64(Gva(task + kTasksOff));
    if (!next) return tl::unexpected<Error>(next.error());
    if (*next == head) return out;
    if (!seen.insert(*next).second) return fail(Errc::kProtocol, "cycle in task list");
    task = *next - kTasksOff;
  }
  return fail(Errc::kProtocol, "task list too long");
}

// "PID PPID COMMAND" rows of the guest's ps in serial.log.
std::map<int32_t, std::string> ground_truth_ps(const std::string& path) {
  std::ifstream in(path);
  std::map<int32_t, std::string> ps;
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.find("PID") != std::string::npos && line.find("COMMAND") != std::string::npos) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    std::istringstream ss(line);
    int32_t pid, ppid;
    std::string comm;
    if (!(ss >> pid >> ppid >> comm)) break;
    ps[pid] = comm;
  }
  return ps;
}

TEST(AddressSpaceTest, RealDumpTaskWalkMatchesGuestPs) {
  const std::string dir = "/tmp/gb-ref/";
  if (!std::filesystem::exists(dir + "ram.raw") || !std::filesystem::exists(dir + "serial.log")) {
    GTEST_SKIP() << "reference dump absent";
  }
  for (const char* name : {"ram.raw", "ram.lime"}) {
    auto dump = shared::open_dump(dir + name);
    ASSERT_TRUE(dump) << dump.error().to_string();
    double ms[2] = {};
    std::vector<Task> tasks;
    uint64_t page_offset_base = 0;
    for (int run = 0; run < 2; ++run) {  // cold (first touch of the mapping), then warm
      const auto t0 = std::chrono::steady_clock::now();
      auto v = find_vmcoreinfo(dump->view());
      ASSERT_TRUE(v) << v.error().to_string();
      auto kb = find_kernel_base(dump->view(), &*v);
      ASSERT_TRUE(kb) << kb.error().to_string();
      auto ks = KernelAddressSpace::create(dump->view(), *kb);
      ASSERT_TRUE(ks) << ks.error().to_string();
      auto list = pslist(*ks);
      ASSERT_TRUE(list) << list.error().to_string();
      ms[run] =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      tasks = std::move(*list);
      page_offset_base = ks->page_offset_base();

      // init_task through init_top_pgt == through phys_base arithmetic.
      auto walked = ks->walker().translate(Gva(kInitTask));
      ASSERT_TRUE(walked) << walked.error().to_string();
      EXPECT_EQ(walked->gpa, *kernel_image_pa(Gva(kInitTask), *kb));
      // SYMBOL(mem_section) is a direct-map address: arithmetic == walk.
      const Gva mem_section(*v->symbol("mem_section"));
      EXPECT_EQ(ks->walker().translate(mem_section)->gpa,
                *direct_map_pa(mem_section, ks->page_offset_base()));
    }
    std::printf(
        "[ figures ] %s: page_offset_base 0x%llx, %zu tasks; VMCOREINFO + base + "
        "direct map + pslist: %.2f ms cold, %.2f ms warm\n",
        name, static_cast<unsigned long long>(page_offset_base), tasks.size(), ms[0], ms[1]);
    EXPECT_LT(ms[1], 50.0);
    ASSERT_FALSE(tasks.empty());
    EXPECT_EQ(tasks[0].pid, 0);
    EXPECT_EQ(tasks[0].comm, "swapper/0");

    std::map<int32_t, std::string> found;
    for (const Task& t : tasks) found[t.pid] = t.comm;
    auto truth = ground_truth_ps(dir + "serial.log");
    ASSERT_GT(truth.size(), 40u);
    truth.erase(116);  // sh and ps of the ground-truth command: exited before the dump
    truth.erase(117);
    for (const auto& [pid, comm] : truth) {
      ASSERT_TRUE(found.count(pid)) << "pid " << pid << " (" << comm << ") missing";
      // /proc shows kworkers as "kworker/0:0-<workqueue>"; task->comm is "kworker/0:0".
      const std::string want =
          comm.substr(0, comm.rfind("kworker/", 0) == 0 ? comm.find('-') : std::string::npos);
      EXPECT_EQ(found[pid].substr(0, want.size()), want) << "pid " << pid;
    }
    for (const char* name2 :
         {"gb-cpuburn", "gb-memwriter", "gb-physwrite", "acpid", "init", "tty1-shell"}) {
      bool any = false;
      for (const Task& t : tasks) any = any || t.comm == name2;
      EXPECT_TRUE(any) << name2;
    }
    std::string extra;
    for (const Task& t : tasks) {
      if (!truth.count(t.pid)) extra += " " + std::to_string(t.pid) + ":" + t.comm;
    }
    std::printf("[ figures ] %s: tasks not in the guest's ps:%s\n", name, extra.c_str());
    EXPECT_EQ(std::count_if(tasks.begin(), tasks.end(),
                            [](const Task& t) { return t.comm == "gb-sleeper"; }),
              2);
  }
}

}  // namespace
}  // namespace glassbox::semantic_db
