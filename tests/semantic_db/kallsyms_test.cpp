// Tests of kallsyms recovery: on the reference guest kernel image and a RAM dump of it
// (skipped when absent), and on synthetic tables in both the 6.1 and the seqs_of_names
// layouts, intact and mutated.
#include "services/semantic_db/kallsyms.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "services/semantic_db/kernel_image.hpp"
#include "shared/ram_dump.hpp"

namespace glassbox::semantic_db {
namespace {

std::filesystem::path guest_dir() {
  if (const char* e = std::getenv("GLASSBOX_GUEST_DIR")) return e;
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "build" /
         "guest";
}

std::string ref_ram_path() {
  if (const char* e = std::getenv("GLASSBOX_REF_RAM")) return e;
  return "/tmp/gb-ref/ram.raw";
}

// Ground truth printed by the guest of /tmp/gb-ref/ram.raw from /proc/kallsyms.
constexpr uint64_t kRefRuntimeText = 0xffffffffb8e00000ull;
constexpr uint64_t kRefRuntimeInitTask = 0xffffffffba81aa40ull;

struct Reference {
  std::vector<uint8_t> vmlinux;
  ElfSections elf;
};

const Reference* reference() {
  static Reference ref;
  static bool tried = false, ok = false;
  if (!tried) {
    tried = true;
    auto img = read_file_bytes((guest_dir() / "vmlinuz").string());
    if (!img) return nullptr;
    auto v = decompress_bzimage(*img);
    if (!v) return nullptr;
    auto elf = read_elf_sections(*v);
    if (!elf) return nullptr;
    ref.vmlinux = std::move(*v);
    ref.elf = std::move(*elf);
    ok = true;
  }
  return ok ? &ref : nullptr;
}

TEST(KallsymsTest, RecoversSymbolsFromReferenceImage) {
  const Reference* ref = reference();
  if (ref == nullptr) GTEST_SKIP() << "no reference guest kernel under " << guest_dir();
  auto ro = ref->elf.bytes(ref->vmlinux, ".rodata");
  ASSERT_TRUE(ro);
  const auto t0 = std::chrono::steady_clock::now();
  auto syms = Symbols::parse(*ro, ref->elf.sections.at(".rodata").addr);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(syms) << syms.error().to_string();
  std::printf("kallsyms from .rodata: %zu symbols in %.3f s\n", syms->size(), s);
  EXPECT_GT(syms->size(), 80000u);
  EXPECT_NE(syms->layout().seqs_of_names_pos, 0u);  // Debian 6.1.192 carries the backport
  EXPECT_TRUE(syms->layout().absolute_percpu);
  for (const char* n : {"init_task", "_text", "_stext", "linux_banner", "init_top_pgt", "modules",
                        "prb", "init_uts_ns"}) {
    EXPECT_TRUE(syms->address_of(n)) << n;
  }
  EXPECT_EQ(*syms->address_of("_text"), ref->elf.text_addr);
  EXPECT_EQ(*syms->address_of("_stext"), ref->elf.text_addr);
  // linux_banner is the banner read_elf_sections found in .rodata.
  const uint64_t banner = *syms->address_of("linux_banner");
  const auto& rod = ref->elf.sections.at(".rodata");
  ASSERT_GE(banner, rod.addr);
  const char* text = reinterpret_cast<const char*>(ro->data() + (banner - rod.addr));
  EXPECT_EQ(std::string(text, ref->elf.banner.size()), ref->elf.banner);
  // KASLR: link-time init_task + slide is the running guest's init_task.
  const uint64_t slide = kRefRuntimeText - *syms->address_of("_text");
  EXPECT_EQ(*syms->address_of("init_task") + slide, kRefRuntimeInitTask);
  // Nearest-symbol lookup.
  auto near = syms->nearest(*syms->address_of("init_task") + 8);
  ASSERT_TRUE(near);
  EXPECT_EQ(near->symbol->name, "init_task");
  EXPECT_EQ(near->offset_bytes, 8u);
  EXPECT_EQ(syms->find("init_task")->type, 'D');
  // Per-cpu symbols are absolute and start at 0 (fixed_percpu_data).
  ASSERT_TRUE(syms->nearest(0));
  EXPECT_EQ(syms->nearest(0)->offset_bytes, 0u);
  EXPECT_EQ(syms->address_of("no_such_symbol_xyz").error().code, Errc::kNotFound);
  // Sorted by address.
  EXPECT_TRUE(std::is_sorted(syms->symbols().begin(), syms->symbols().end(),
                             [](auto& a, auto& b) { return a.addr < b.addr; }));
}

TEST(KallsymsTest, RecoversRuntimeSymbolsFromGuestRam) {
  auto dump = shared::open_dump(ref_ram_path());
  if (!dump) GTEST_SKIP() << "no reference RAM dump at " << ref_ram_path();
  const auto t0 = std::chrono::steady_clock::now();
  auto syms = Symbols::from_ram(dump->view());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(syms) << syms.error().to_string();
  std::printf("kallsyms from guest RAM: %zu symbols in %.3f s (tables at gpa 0x%llx)\n",
              syms->size(), s, static_cast<unsigned long long>(syms->layout().names_pos));
  // kallsyms_relative_base is relocated at boot: addresses are run-time ones.
  EXPECT_EQ(*syms->address_of("_text"), kRefRuntimeText);
  EXPECT_EQ(*syms->address_of("init_task"), kRefRuntimeInitTask);
  if (const Reference* ref = reference()) {
    auto ro = ref->elf.bytes(ref->vmlinux, ".rodata");
    auto link = Symbols::parse(*ro);
    ASSERT_TRUE(link);
    EXPECT_EQ(link->size(), syms->size());
  }
}

// Builds kallsyms tables for `names` ("Tname" with the type letter first) at `addrs`, in the
// 6.1 order (with_seqs = false) or with kallsyms_seqs_of_names, preceded by `lead` bytes of
// filler and followed by a string. Tokens: byte b expands to itself when printable, else to
// a two-letter token.
std::vector<uint8_t> build_tables(const std::vector<std::string>& names,
                                  const std::vector<uint64_t>& addrs, uint64_t relative_base,
                                  bool with_seqs, std::size_t lead = 4096) {
  std::vector<uint8_t> b(lead, 0x5a);
  auto align8 = [&] { b.resize((b.size() + 7) & ~std::size_t{7}, 0); };
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back((v >> (8 * i)) & 0xff);
  };
  align8();
  for (uint64_t a : addrs) {  // absolute-percpu encoding of non-absolute symbols
    u32(static_cast<uint32_t>(static_cast<int32_t>(relative_base - a - 1) * 1));
  }
  align8();
  for (int i = 0; i < 8; ++i) b.push_back((relative_base >> (8 * i)) & 0xff);
  align8();
  u32(names.size());
  align8();
  std::vector<uint32_t> markers;
  const std::size_t names_start = b.size();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i % 256 == 0) markers.push_back(b.size() - names_start);
    b.push_back(names[i].size());
    b.insert(b.end(), names[i].begin(), names[i].end());
  }
  align8();
  for (uint32_t m : markers) u32(m);
  align8();
  if (with_seqs) {
    std::vector<uint32_t> order(names.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](uint32_t x, uint32_t y) { return names[x].substr(1) < names[y].substr(1); });
    for (uint32_t o : order) {
      b.push_back(o >> 16);
      b.push_back((o >> 8) & 0xff);
      b.push_back(o & 0xff);
    }
    align8();
  }
  std::vector<uint16_t> idx;
  const std::size_t tt = b.size();
  for (int t = 0; t < 256; ++t) {
    idx.push_back(b.size() - tt);
    if (t > 0x20 && t < 0x7f) {
      b.push_back(t);
    } else {
      b.push_back('Q');
      b.push_back('a' + t % 26);
    }
    b.push_back(0);
  }
  align8();
  for (uint16_t v : idx) {
    b.push_back(v & 0xff);
    b.push_back(v >> 8);
  }
  const char tail[] = "arch/x86/kernel/head64.c";
  b.insert(b.end(), tail, tail + sizeof tail);
  b.resize(b.size() + 64, 0);
  return b;
}

struct Synthetic {
  std::vector<std::string> names;
  std::vector<uint64_t> addrs;
};

Synthetic synthetic(std::size_t n) {
  Synthetic s;
  for (std::size_t i = 0; i < n; ++i) {
    s.names.push_back((i % 3 ? "t" : "T") + std::string("sym_") +
                      std::to_string(i * 7919 % 100003));
    s.addrs.push_back(0xffffffff81000000ull + i * 16);
  }
  s.names[5] = "Dinit_task";
  return s;
}

TEST(KallsymsTest, ParsesSynthetic61Layout) {
  for (bool seqs : {false, true}) {
    SCOPED_TRACE(seqs ? "with seqs_of_names" : "6.1 order");
    const auto s = synthetic(1000);  // 4 markers
    const auto b = build_tables(s.names, s.addrs, 0xffffffff81000000ull, seqs);
    auto syms = Symbols::parse(b, 0x1000);
    ASSERT_TRUE(syms) << syms.error().to_string();
    ASSERT_EQ(syms->size(), 1000u);
    EXPECT_EQ(syms->layout().seqs_of_names_pos != 0, seqs);
    EXPECT_EQ(*syms->address_of("init_task"), 0xffffffff81000000ull + 5 * 16);
    EXPECT_EQ(syms->find("init_task")->type, 'D');
    EXPECT_FALSE(syms->nearest(0xffffffff80000000ull));
    for (std::size_t i = 0; i < 1000; i += 97) {
      EXPECT_EQ(syms->symbols()[i].name, s.names[i].substr(1));
      EXPECT_EQ(syms->symbols()[i].addr, s.addrs[i]);
    }
  }
}

TEST(KallsymsTest, ParsesTablesWithOneMarker) {
  const auto s = synthetic(7);
  for (bool seqs : {false, true}) {
    auto b = build_tables(s.names, s.addrs, 0xffffffff81000000ull, seqs);
    auto syms = Symbols::parse(b);
    ASSERT_TRUE(syms) << syms.error().to_string();
    EXPECT_EQ(syms->size(), 7u);
  }
}

TEST(KallsymsTest, RejectsInputWithoutTables) {
  EXPECT_EQ(Symbols::parse({}).error().code, Errc::kNotFound);
  std::vector<uint8_t> junk(1 << 20);
  std::mt19937 rng(2);
  for (auto& x : junk) x = rng() & 0xff;
  EXPECT_EQ(Symbols::parse(junk).error().code, Errc::kNotFound);
  std::vector<uint8_t> zeros(1 << 20, 0);
  EXPECT_EQ(Symbols::parse(zeros).error().code, Errc::kNotFound);
}

TEST(KallsymsTest, MutatedSyntheticTablesNeverCrash) {
  const auto s = synthetic(1500);
  for (bool seqs : {false, true}) {
    const auto b = build_tables(s.names, s.addrs, 0xffffffff81000000ull, seqs);
    std::mt19937 rng(seqs ? 17 : 4);
    int ok = 0;
    for (int i = 0; i < 600; ++i) {
      auto m = b;
      const int n = 1 + rng() % 8;
      for (int k = 0; k < n; ++k) m[4096 + rng() % (m.size() - 4096)] = rng() & 0xff;
      if (i % 10 == 0) m.resize(4096 + rng() % (m.size() - 4096));
      auto r = Symbols::parse(m);
      if (r) {
        ++ok;
        EXPECT_LE(r->size(), kMaxKallsyms);
        for (const auto& sym : r->symbols()) EXPECT_LE(sym.name.size(), kMaxKsymNameBytes + 1);
      }
    }
    std::printf("mutated synthetic tables (%s) still parsed: %d of 600\n", seqs ? "seqs" : "6.1",
                ok);
  }
}

TEST(KallsymsTest, MutatedReferenceTablesNeverCrash) {
  const Reference* ref = reference();
  if (ref == nullptr) GTEST_SKIP() << "no reference guest kernel";
  auto ro = ref->elf.bytes(ref->vmlinux, ".rodata");
  auto good = Symbols::parse(*ro);
  ASSERT_TRUE(good);
  const auto& l = good->layout();
  // Mutate only inside the tables, then parse the slice around them.
  const std::size_t lo = l.offsets_pos - 4096, hi = l.token_index_pos + 512 + 4096;
  std::vector<uint8_t> slice(ro->begin() + lo, ro->begin() + hi);
  std::mt19937 rng(8);
  for (int i = 0; i < 25; ++i) {
    auto m = slice;
    for (int k = 0; k < 16; ++k) m[4096 + rng() % (m.size() - 8192)] ^= 1 + rng() % 255;
    (void)Symbols::parse(m);
  }
  auto intact = Symbols::parse(slice);
  ASSERT_TRUE(intact) << intact.error().to_string();
  EXPECT_EQ(intact->size(), good->size());
}

}  // namespace
}  // namespace glassbox::semantic_db
