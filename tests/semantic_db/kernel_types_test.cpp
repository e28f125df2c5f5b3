// Tests of kernel_types: BTF layouts of the reference guest kernel (from the image and from
// a RAM dump of it; skipped when absent), and hostile BTF bytes.
#include "services/semantic_db/kernel_types.hpp"

#include <gtest/gtest.h>

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

// A raw dump of the reference guest, from $GLASSBOX_REF_RAM (default /tmp/gb-ref/ram.raw).
std::string ref_ram_path() {
  if (const char* e = std::getenv("GLASSBOX_REF_RAM")) return e;
  return "/tmp/gb-ref/ram.raw";
}

// The .BTF bytes of the reference kernel, empty when it is absent.
const std::vector<uint8_t>& reference_btf() {
  static std::vector<uint8_t> btf;
  static bool tried = false;
  if (!tried) {
    tried = true;
    auto img = read_file_bytes((guest_dir() / "vmlinuz").string());
    if (!img) return btf;
    auto v = decompress_bzimage(*img);
    if (!v) return btf;
    auto elf = read_elf_sections(*v);
    if (!elf) return btf;
    if (auto b = elf->bytes(*v, ".BTF")) btf.assign(b->begin(), b->end());
  }
  return btf;
}

TEST(KernelTypesTest, MatchesKnownOffsetsOfDebian610_56) {
  const auto& btf = reference_btf();
  if (btf.empty()) GTEST_SKIP() << "no reference guest kernel under " << guest_dir();
  const auto t0 = std::chrono::steady_clock::now();
  auto kt = KernelTypes::from_bytes(btf);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(kt) << kt.error().to_string();
  std::printf("BTF: %zu bytes, %u types, parsed in %.3f s\n", btf.size(), kt->n_types(), s);
  EXPECT_EQ(*kt->member_offset("task_struct", "tasks"), 2192u);
  EXPECT_EQ(*kt->member_offset("task_struct", "mm"), 2272u);
  EXPECT_EQ(*kt->member_offset("task_struct", "pid"), 2416u);
  EXPECT_EQ(*kt->member_offset("task_struct", "tgid"), 2420u);
  EXPECT_EQ(*kt->member_offset("task_struct", "real_parent"), 2432u);
  EXPECT_EQ(*kt->member_offset("task_struct", "comm"), 2976u);
  EXPECT_EQ(*kt->member_size("task_struct", "comm"), 16u);
  EXPECT_EQ(*kt->member_offset("mm_struct", "pgd"), 72u);  // inside an anonymous struct
  EXPECT_EQ(*kt->member_size("mm_struct", "pgd"), 8u);
  EXPECT_EQ(*kt->member_offset("list_head", "prev"), 8u);
  EXPECT_EQ(*kt->struct_size("list_head"), 16u);
  EXPECT_EQ(*kt->member_offset("qstr", "len"), 4u);  // union { struct { hash; len; }; ... }
}

TEST(KernelTypesTest, ReportsMissingAndBitfieldMembers) {
  const auto& btf = reference_btf();
  if (btf.empty()) GTEST_SKIP() << "no reference guest kernel";
  auto kt = KernelTypes::from_bytes(btf);
  ASSERT_TRUE(kt);
  auto r = kt->member_offset("task_struct", "no_such_member");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  EXPECT_NE(r.error().message.find("no_such_member"), std::string::npos);
  EXPECT_EQ(kt->struct_size("no_such_struct").error().code, Errc::kNotFound);
  // task_struct.sched_reset_on_fork is `unsigned sched_reset_on_fork:1`.
  EXPECT_EQ(kt->member_offset("task_struct", "sched_reset_on_fork").error().code,
            Errc::kUnsupported);
  EXPECT_EQ(kt->member_size("task_struct", "sched_reset_on_fork").error().code, Errc::kUnsupported);
}

TEST(KernelTypesTest, ResolvesAllKernelOffsets) {
  const auto& btf = reference_btf();
  if (btf.empty()) GTEST_SKIP() << "no reference guest kernel";
  auto kt = KernelTypes::from_bytes(btf);
  ASSERT_TRUE(kt);
  const auto t0 = std::chrono::steady_clock::now();
  auto o = KernelOffsets::resolve(*kt);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(o) << o.error().to_string();
  std::printf("KernelOffsets::resolve: %.3f ms\n", s * 1e3);
  EXPECT_EQ(o->task_struct.tasks, 2192u);
  EXPECT_EQ(o->task_struct.comm_size, 16u);
  EXPECT_EQ(o->task_struct.state_size, 4u);  // unsigned int __state
  EXPECT_EQ(o->mm_struct.pgd, 72u);
  EXPECT_EQ(o->new_utsname.field_size, 65u);
  EXPECT_EQ(o->maple_node.slot, 8u);
  EXPECT_EQ(o->list_head.next, 0u);
  EXPECT_GT(o->module.core_size, o->module.core_base);
  EXPECT_GT(o->printk_info.size, 0u);
}

TEST(KernelTypesTest, FindsSameBtfInGuestRam) {
  const auto& btf = reference_btf();
  if (btf.empty()) GTEST_SKIP() << "no reference guest kernel";
  auto dump = shared::open_dump(ref_ram_path());
  if (!dump) GTEST_SKIP() << "no reference RAM dump at " << ref_ram_path();
  const auto t0 = std::chrono::steady_clock::now();
  auto cands = find_btf_in_ram(dump->view());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("find_btf_in_ram: %zu candidates in %.3f s\n", cands.size(), s);
  ASSERT_FALSE(cands.empty());
  EXPECT_EQ(cands[0].size_bytes, btf.size());
  auto p = dump->view().at(cands[0].gpa, cands[0].size_bytes);
  ASSERT_TRUE(p);
  EXPECT_EQ(std::memcmp(*p, btf.data(), btf.size()), 0);
  auto kt = KernelTypes::from_ram(dump->view());
  ASSERT_TRUE(kt) << kt.error().to_string();
  EXPECT_EQ(*kt->member_offset("task_struct", "comm"), 2976u);
}

TEST(KernelTypesTest, FindsBtfInSyntheticRamAndIgnoresBadHeaders) {
  const auto& btf = reference_btf();
  if (btf.empty()) GTEST_SKIP() << "no reference guest kernel";
  std::vector<uint8_t> ram(16u << 20, 0);
  // A fake header with lengths past the end, then the real blob at 8 MiB + 4.
  const uint8_t bad[24] = {0x9f, 0xeb, 1,    0,    24, 0, 0, 0, 0, 0, 0, 0,
                           0xff, 0xff, 0xff, 0x7f, 0,  0, 0, 0, 1, 0, 0, 0};
  std::memcpy(ram.data() + 4096, bad, sizeof bad);
  std::memcpy(ram.data() + (8u << 20) + 4, btf.data(), btf.size());
  shared::RamView view(ram.data(), ram.size(), shared::RamLayout::identity(ram.size()));
  auto c = find_btf_in_ram(view);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].gpa.value, (8u << 20) + 4);
  EXPECT_TRUE(KernelTypes::from_ram(view));
  std::vector<uint8_t> empty_ram(1 << 20, 0);
  shared::RamView v2(empty_ram.data(), empty_ram.size(),
                     shared::RamLayout::identity(empty_ram.size()));
  EXPECT_EQ(KernelTypes::from_ram(v2).error().code, Errc::kNotFound);
}

TEST(KernelTypesTest, RejectsGarbageBytes) {
  EXPECT_FALSE(KernelTypes::from_bytes({}));
  std::vector<uint8_t> junk(4096);
  std::mt19937 rng(1);
  for (auto& b : junk) b = rng() & 0xff;
  EXPECT_EQ(KernelTypes::from_bytes(junk).error().code, Errc::kProtocol);
}

TEST(KernelTypesTest, MutatedBtfNeverCrashes) {
  const auto& btf = reference_btf();
  if (btf.empty()) GTEST_SKIP() << "no reference guest kernel";
  std::mt19937 rng(9);
  int parsed = 0;
  for (int i = 0; i < 40; ++i) {
    auto m = btf;
    for (int k = 0; k < 64; ++k) m[rng() % m.size()] ^= 1 + rng() % 255;
    if (i % 5 == 0) m.resize(rng() % m.size());
    auto kt = KernelTypes::from_bytes(m);
    if (!kt) continue;
    ++parsed;
    (void)KernelOffsets::resolve(*kt);  // any result, no crash
    (void)kt->member_size("task_struct", "comm");
  }
  std::printf("mutated BTF blobs accepted by libbpf: %d of 40\n", parsed);
}

}  // namespace
}  // namespace glassbox::semantic_db
