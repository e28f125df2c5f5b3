#include "services/semantic_db/vmcoreinfo.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "shared/ram_dump.hpp"

namespace glassbox::semantic_db {
namespace {

constexpr const char* kRefRaw = "/tmp/gb-ref/ram.raw";
constexpr const char* kRefLime = "/tmp/gb-ref/ram.lime";

// A VMCOREINFO text shaped like the 6.1.0-56 kernel's (abridged).
std::string kernel_text(const std::string& kernel_offset = "37e00000",
                        const std::string& stext = "ffffffffb8e00000") {
  return "OSRELEASE=6.1.0-56-amd64\n"
         "BUILD-ID=eb4fbcd037e7253717950bf2b93bd5566f47c56f\n"
         "PAGESIZE=4096\n"
         "SYMBOL(init_uts_ns)=ffffffffba9fb000\n"
         "OFFSET(uts_namespace.name)=0\n"
         "SYMBOL(_stext)=" +
         stext +
         "\n"
         "SIZE(page)=64\n"
         "LENGTH(zone.free_area)=11\n"
         "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129\n"
         "NUMBER(phys_base)=-765460480\n"
         "SYMBOL(init_top_pgt)=ffffffffba810000\n"
         "NUMBER(pgtable_l5_enabled)=0\n"
         "KERNELOFFSET=" +
         kernel_offset +
         "\n"
         "NUMBER(KERNEL_IMAGE_SIZE)=1073741824\n";
}

// Guest RAM in a vector, seen through an identity layout.
struct FakeRam {
  explicit FakeRam(std::size_t size_bytes)
      : mem(size_bytes, 0), view(mem.data(), mem.size(), shared::RamLayout::identity(size_bytes)) {}
  void put(uint64_t gpa, std::string_view bytes) {
    std::memcpy(&mem[gpa], bytes.data(), bytes.size());
  }
  void put_u32(uint64_t gpa, uint32_t v) { std::memcpy(&mem[gpa], &v, 4); }
  // Writes the "VMCOREINFO" ELF note (header + text) at the start of the page at `gpa`.
  void put_note(uint64_t gpa, std::string_view text) {
    put_u32(gpa, 11);
    put_u32(gpa + 4, static_cast<uint32_t>(text.size()));
    put_u32(gpa + 8, 0);
    put(gpa + 12, std::string_view("VMCOREINFO\0", 11));
    put(gpa + 24, text);
  }
  std::vector<uint8_t> mem;
  shared::RamView view;
};

TEST(VmcoreinfoTest, ParsesKernelText) {
  auto v = parse_vmcoreinfo(kernel_text());
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->os_release, "6.1.0-56-amd64");
  EXPECT_EQ(v->build_id, "eb4fbcd037e7253717950bf2b93bd5566f47c56f");
  EXPECT_EQ(v->page_size_bytes, 4096u);
  EXPECT_EQ(v->kernel_offset, 0x37e00000u);
  EXPECT_EQ(v->symbol("init_top_pgt"), 0xffffffffba810000u);
  EXPECT_EQ(v->symbol("_stext"), 0xffffffffb8e00000u);
  EXPECT_EQ(v->number("phys_base"), -765460480);
  EXPECT_EQ(v->number("PAGE_BUDDY_MAPCOUNT_VALUE"), -129);
  EXPECT_EQ(v->offsets.at("uts_namespace.name"), 0);
  EXPECT_EQ(v->sizes.at("page"), 64);
  EXPECT_EQ(v->lengths.at("zone.free_area"), 11);
  EXPECT_FALSE(v->symbol("nope"));
}

TEST(VmcoreinfoTest, KeepsUnknownKeysAndCrashTime) {
  auto v = parse_vmcoreinfo("OSRELEASE=5.10.0\nPAGESIZE=4096\nCRASHTIME=1700000000\nFOO=bar\n");
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->crash_time, 1700000000);
  EXPECT_EQ(v->other.at("FOO"), "bar");
}

TEST(VmcoreinfoTest, RejectsHostileTexts) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty"},
      {"OSRELEASE=%s\n", "printf format in rodata"},
      {"OSRELEASE=6.1\n", "no PAGESIZE"},
      {"OSRELEASE=6.1\nPAGESIZE=8192\n", "PAGESIZE not 4096"},
      {"OSRELEASE=6.1\nPAGESIZE=4096", "unterminated last line"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nSYMBOL(x)=zz\n", "bad hex"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nSYMBOL(x)=11112222333344445\n", "hex over 64 bits"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nSIZE(x)=99999999999999999999\n", "decimal overflow"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nSIZE(x)=+1\n", "plus sign"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nSIZE()=1\n", "empty name"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nSIZE(a b)=1\n", "space in name"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nSIZE(x)=1\nSIZE(x)=2\n", "duplicate key"},
      {"OSRELEASE=6.1\nOSRELEASE=6.2\nPAGESIZE=4096\n", "duplicate OSRELEASE"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nno equals sign\n", "not KEY=VALUE"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nX=\x01\n", "control byte"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\nX=\xff\n", "high byte"},
      {"OSRELEASE=6.1 (x)\nPAGESIZE=4096\n", "release with spaces"},
      {"OSRELEASE=6.1\nPAGESIZE=4096\n" + std::string(4096, 'A') + "=1\n", "too long"},
  };
  for (const auto& [text, what] : cases) {
    auto v = parse_vmcoreinfo(text);
    EXPECT_FALSE(v) << what;
    if (!v) {
      EXPECT_EQ(v.error().code, Errc::kProtocol) << what;
    }
  }
}

TEST(VmcoreinfoTest, FindsNoteCopyAndIgnoresFormatStrings) {
  FakeRam ram(1 << 20);
  // rodata-like format strings, page-aligned to hit the fast pass.
  ram.put(0x10000, std::string_view("OSRELEASE=%s\n\0BUILD-ID=%20phN\n\0PAGESIZE=%ld\n\0", 46));
  ram.put(0x20000, kernel_text());       // vmcoreinfo_data
  ram.put_note(0x30000, kernel_text());  // vmcoreinfo_note
  auto v = find_vmcoreinfo(ram.view);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->gpa, Gpa(0x30018));
  EXPECT_TRUE(v->in_elf_note);
  EXPECT_EQ(v->n_candidates, 2u);
  EXPECT_EQ(v->text_bytes, kernel_text().size());
}

TEST(VmcoreinfoTest, SlowPassFindsUnalignedCopy) {
  FakeRam ram(1 << 20);
  ram.put(0x12345, kernel_text());
  auto v = find_vmcoreinfo(ram.view);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->gpa, Gpa(0x12345));
  EXPECT_FALSE(v->in_elf_note);
}

TEST(VmcoreinfoTest, RejectsInconsistentCopies) {
  FakeRam ram(1 << 20);
  ram.put(0x1000, kernel_text("37e00000", "ffffffff81000000"));  // _stext != base + offset
  ram.put(0x2000, kernel_text("37e00001"));                      // offset not 2 MiB aligned
  ram.put(0x3000, "OSRELEASE=6.1\nPAGESIZE=4096\n");             // no KERNELOFFSET
  auto v = find_vmcoreinfo(ram.view);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Errc::kNotFound);
  EXPECT_NE(v.error().message.find("3 candidates rejected"), std::string::npos)
      << v.error().message;
}

TEST(VmcoreinfoTest, StaysBoundedOnRamFullOfKeys) {
  // Every byte a potential candidate and no NUL anywhere: bounded work, clean rejection.
  FakeRam ram(4 << 20);
  const std::string key = "OSRELEASE=";
  for (std::size_t off = 0; off + key.size() <= ram.mem.size(); off += key.size()) {
    ram.put(off, key);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto v = find_vmcoreinfo(ram.view);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(v);
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), 2000);
}

TEST(VmcoreinfoTest, NoteHeaderWithWrongSizeIsNotTrusted) {
  FakeRam ram(1 << 20);
  ram.put_note(0x30000, kernel_text());
  ram.put_u32(0x30004, 7);  // descsz disagrees with the text
  auto v = find_vmcoreinfo(ram.view);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_FALSE(v->in_elf_note);
}

TEST(VmcoreinfoTest, RealDumpVmcoreinfoAndKernelBase) {
  for (const char* path : {kRefRaw, kRefLime}) {
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " absent";
    auto dump = shared::open_dump(path);
    ASSERT_TRUE(dump) << dump.error().to_string();
    const auto t0 = std::chrono::steady_clock::now();
    auto v = find_vmcoreinfo(dump->view());
    const auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(v) << v.error().to_string();
    auto v2 = find_vmcoreinfo(dump->view());
    const auto t2 = std::chrono::steady_clock::now();
    ASSERT_TRUE(v2);
    std::printf(
        "[ figures ] %s: VMCOREINFO at gpa 0x%llx (note %d, %zu copies), scan %.2f ms "
        "cold, %.2f ms warm\n",
        path, static_cast<unsigned long long>(v->gpa.value), v->in_elf_note, v->n_candidates,
        std::chrono::duration<double, std::milli>(t1 - t0).count(),
        std::chrono::duration<double, std::milli>(t2 - t1).count());
    const double warm_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
    EXPECT_LT(warm_ms, 50.0);
    EXPECT_EQ(v->os_release, "6.1.0-56-amd64");
    EXPECT_EQ(v->symbol("_stext"), 0xffffffffb8e00000u);  // serial.log: _stext
    EXPECT_EQ(v->kernel_offset, 0xffffffffb8e00000u - kUnslidTextVa);

    auto kb = find_kernel_base(dump->view(), &*v);
    ASSERT_TRUE(kb) << kb.error().to_string();
    std::printf("[ figures ] %s\n", kb->describe().c_str());
    EXPECT_EQ(kb->text_gva, Gva(0xffffffffb8e00000));  // serial.log: _text
    EXPECT_EQ(kb->kaslr_slide, 0x37e00000u);
    EXPECT_EQ(kb->phys_base, static_cast<uint64_t>(int64_t{-765460480}));
    EXPECT_EQ(kb->text_gpa.value % kKernelAlignBytes, 0u);
    EXPECT_EQ(kb->sources, (std::vector<std::string>{"vmcoreinfo", "banner", "pgd-scan"}));
    EXPECT_TRUE(kb->notes.empty());

    // Fallback without VMCOREINFO: the same placement from the page tables and the banner.
    auto fb = find_kernel_base(dump->view(), nullptr);
    ASSERT_TRUE(fb) << fb.error().to_string();
    EXPECT_EQ(fb->sources, (std::vector<std::string>{"banner", "pgd-scan"}));
    EXPECT_EQ(fb->kaslr_slide, kb->kaslr_slide);
    EXPECT_EQ(fb->phys_base, kb->phys_base);
    EXPECT_EQ(fb->kernel_pgd, kb->kernel_pgd);
    EXPECT_EQ(fb->release, "6.1.0-56-amd64");
  }
}

}  // namespace
}  // namespace glassbox::semantic_db
