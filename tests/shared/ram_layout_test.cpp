#include "shared/ram_layout.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace glassbox::shared {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr uint64_t k4608MiB = 4608 * kMiB;
constexpr std::string_view kBlock = "glassbox-ram";

// Outputs of `info mtree -f` captured from QEMU 7.2 (see data/README.md), as QMP returned
// them (CRLF line ends).
std::string read_data(const std::string& name) {
  const auto path = std::filesystem::path(__FILE__).parent_path() / "data" / name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "missing test data " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RamLayout parse_file(const std::string& name, uint64_t file_size_bytes) {
  auto layout = RamLayout::parse_mtree(read_data(name), kBlock, file_size_bytes);
  EXPECT_TRUE(layout) << name << ": " << layout.error().to_string();
  if (!layout) return RamLayout::identity(0);
  return *layout;
}

std::vector<RamRegion> regions(std::initializer_list<RamRegion> r) { return r; }

// A minimal FlatView text around `lines` (each a range line without its indent).
std::string memory_view(const std::vector<std::string>& lines) {
  std::string t = "FlatView #0\n AS \"memory\", root: system\n Root memory region: system\n";
  for (const std::string& l : lines) t += "  " + l + "\n";
  return t + "\n";
}

TEST(RamLayoutTest, ParsesPc256mBeforeBios) {
  const RamLayout l = parse_file("mtree_pc_256m.txt", 256 * kMiB);
  // 0xa0000-0xbffff is vga-lowmem, 0xc0000-0xfffff is pc.rom/pc.bios until SeaBIOS runs.
  EXPECT_EQ(l.regions(),
            regions({{Gpa(0), 0xa0000, 0}, {Gpa(0x100000), 256 * kMiB - 0x100000, 0x100000}}));
  EXPECT_EQ(l.describe(), "0x0-0x9ffff@0x0, 0x100000-0xfffffff@0x100000");
  EXPECT_EQ(l.end_gpa(), Gpa(256 * kMiB));
  EXPECT_EQ(l.ram_bytes(), 256 * kMiB - 0x60000);
  EXPECT_EQ(l.file_size_bytes(), 256 * kMiB);
}

TEST(RamLayoutTest, ParsesPc4608mWithRamAbove4GiB) {
  const RamLayout l = parse_file("mtree_pc_4608m.txt", k4608MiB);
  EXPECT_EQ(l.regions(), regions({{Gpa(0), 0xa0000, 0},
                                  {Gpa(0x100000), 3 * kGiB - 0x100000, 0x100000},
                                  {Gpa(4 * kGiB), 1536 * kMiB, 3 * kGiB}}));
  EXPECT_EQ(l.end_gpa(), Gpa(0x160000000));
}

TEST(RamLayoutTest, ParsesQ35SplitAt2GiB) {
  const RamLayout l = parse_file("mtree_q35_4608m.txt", k4608MiB);
  EXPECT_EQ(l.regions(), regions({{Gpa(0), 0xa0000, 0},
                                  {Gpa(0x100000), 2 * kGiB - 0x100000, 0x100000},
                                  {Gpa(4 * kGiB), 2560 * kMiB, 2 * kGiB}}));
}

TEST(RamLayoutTest, MergesPamAliasesOnceSeaBiosRan) {
  // After SeaBIOS: 0xc0000-0xfffff are ram/rom aliases of the block at matching offsets.
  const RamLayout pc = parse_file("mtree_pc_4608m_running.txt", k4608MiB);
  EXPECT_EQ(pc.describe(),
            "0x0-0x9ffff@0x0, 0xc0000-0xbfffffff@0xc0000, 0x100000000-0x15fffffff@0xc0000000");
  const RamLayout q35 = parse_file("mtree_q35_4608m_running.txt", k4608MiB);
  EXPECT_EQ(q35.describe(),
            "0x0-0x9ffff@0x0, 0xc0000-0x7fffffff@0xc0000, 0x100000000-0x19fffffff@0x80000000");
}

TEST(RamLayoutTest, ParsesWithoutVgaAndUnderKvm) {
  // -nodefaults without -vga: no VGA hole, 0..0xbffff is RAM.
  const RamLayout novga = parse_file("mtree_pc_4608m_novga.txt", k4608MiB);
  EXPECT_EQ(novga.describe(),
            "0x0-0xbffff@0x0, 0x100000-0xbfffffff@0x100000, 0x100000000-0x15fffffff@0xc0000000");
  // Under KVM every RAM line ends with " KVM".
  const RamLayout kvm = parse_file("mtree_pc_256m_kvm.txt", 256 * kMiB);
  EXPECT_EQ(kvm.describe(), "0x0-0x9ffff@0x0, 0x100000-0xfffffff@0x100000");
}

TEST(RamLayoutTest, AcceptsLfLineEnds) {
  std::string text = read_data("mtree_pc_4608m_running.txt");
  std::erase(text, '\r');
  auto l = RamLayout::parse_mtree(text, kBlock, k4608MiB);
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->regions().size(), 3u);
}

TEST(RamLayoutTest, TranslatesAddressesInEveryRegion) {
  const RamLayout l = parse_file("mtree_pc_4608m_running.txt", k4608MiB);
  EXPECT_EQ(l.file_offset(Gpa(0), 8).value(), 0u);
  EXPECT_EQ(l.file_offset(Gpa(0x9f000), 0x1000).value(), 0x9f000u);
  EXPECT_EQ(l.file_offset(Gpa(0xc0000), 1).value(), 0xc0000u);
  EXPECT_EQ(l.file_offset(Gpa(0x1000000), 4096).value(), 0x1000000u);
  EXPECT_EQ(l.file_offset(Gpa(0xbfffffff), 1).value(), 0xbfffffffu);
  EXPECT_EQ(l.file_offset(Gpa(4 * kGiB), 8).value(), 3 * kGiB);
  EXPECT_EQ(l.file_offset(Gpa(0x15fffffff), 1).value(), 0x11fffffffu);  // the very last byte
  EXPECT_EQ(l.file_offset(Gpa(0x15ffff000), 0x1000).value(), 0x11ffff000u);
  EXPECT_EQ(l.file_offset(Gpa(0x1234), 0).value(), 0x1234u);

  EXPECT_EQ(l.gpa_of(0).value(), Gpa(0));
  EXPECT_EQ(l.gpa_of(0xc0000).value(), Gpa(0xc0000));
  EXPECT_EQ(l.gpa_of(3 * kGiB).value(), Gpa(4 * kGiB));
  EXPECT_EQ(l.gpa_of(k4608MiB - 1).value(), Gpa(0x15fffffff));
}

TEST(RamLayoutTest, RejectsAddressesInHolesAndAcrossEnds) {
  const RamLayout l = parse_file("mtree_pc_4608m_running.txt", k4608MiB);
  auto vga = l.file_offset(Gpa(0xa0000), 4);
  ASSERT_FALSE(vga);
  EXPECT_EQ(vga.error().code, Errc::kOutOfRange);
  EXPECT_EQ(vga.error().message,
            "gpa 0xa0000 (+0x4 bytes) is outside guest RAM (regions: 0x0-0x9ffff, "
            "0xc0000-0xbfffffff, 0x100000000-0x15fffffff)");
  const std::pair<uint64_t, uint64_t> bad[] = {
      {0xbffff, 1},               // last byte of the VGA hole
      {0x9ffff, 2},               // crosses the end of region 0 into the hole
      {0xbffff000, 0x1001},       // crosses into the PCI hole
      {0xc0000000, 1},            // PCI hole
      {0xfffc0000, 1},            // pc.bios, not our block
      {0x15ffff000, 0x1001},      // crosses the very end
      {0x160000000, 1},           // one past the end
      {0xffffffffffffffff, 2},    // wraps
      {0, 0xffffffffffffffff},    // absurd length
      {0x100000000, 0x60000001},  // one byte too long
  };
  for (auto [gpa, len] : bad) {
    auto r = l.file_offset(Gpa(gpa), len);
    ASSERT_FALSE(r) << std::hex << gpa << "+" << len;
    EXPECT_EQ(r.error().code, Errc::kOutOfRange);
  }
  // File bytes under the VGA hole and past the file map to no gpa.
  for (uint64_t off : {uint64_t{0xa0000}, uint64_t{0xbffff}, k4608MiB, ~uint64_t{0}}) {
    auto r = l.gpa_of(off);
    ASSERT_FALSE(r) << std::hex << off;
    EXPECT_EQ(r.error().code, Errc::kOutOfRange);
  }
}

TEST(RamLayoutTest, ViewReadsThroughTheLayout) {
  const RamLayout l = parse_file("mtree_pc_4608m_running.txt", k4608MiB);
  // A 4.5 GiB mapping that costs nothing until touched, standing in for the RAM file.
  void* map = ::mmap(nullptr, k4608MiB, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(map, MAP_FAILED);
  auto* base = static_cast<uint8_t*>(map);
  base[0x1234] = 0x11;
  base[0xc0000000] = 0x22;  // file offset 3 GiB = gpa 4 GiB
  base[k4608MiB - 1] = 0x33;
  base[0xa0000] = 0x44;  // file byte under the VGA hole: unreachable by gpa

  RamView view(base, k4608MiB, l);
  EXPECT_EQ(view.at(Gpa(0x1234), 1).value(), base + 0x1234);
  EXPECT_EQ(*view.at(Gpa(4 * kGiB), 1).value(), 0x22);
  EXPECT_EQ(*view.at(Gpa(0x15fffffff), 1).value(), 0x33);
  uint8_t buf[2] = {};
  ASSERT_TRUE(view.read(Gpa(0x1233), buf));
  EXPECT_EQ(buf[1], 0x11);
  EXPECT_EQ(view.read(Gpa(0x15fffffff), buf).error().code, Errc::kOutOfRange);
  EXPECT_EQ(view.at(Gpa(0xa0000), 1).error().code, Errc::kOutOfRange);
  EXPECT_TRUE(view.read(Gpa(0x10), std::span<uint8_t>()));
  EXPECT_EQ(view.base(), base);
  EXPECT_EQ(view.layout().regions().size(), 3u);
  ::munmap(map, k4608MiB);
}

TEST(RamLayoutTest, ViewDoesNotReadAcrossRegions) {
  // Contiguous in gpa, not in the file: two regions, and a read may not span them.
  auto l = RamLayout::from_regions({{Gpa(0), 0x1000, 0x1000}, {Gpa(0x1000), 0x1000, 0}}, 0x2000);
  ASSERT_TRUE(l);
  ASSERT_EQ(l->regions().size(), 2u);
  std::vector<uint8_t> file(0x2000);
  file[0x1fff] = 1;
  file[0] = 2;
  RamView view(file.data(), file.size(), *l);
  uint8_t two[2];
  EXPECT_EQ(view.read(Gpa(0xfff), two).error().code, Errc::kOutOfRange);
  uint8_t one[1];
  ASSERT_TRUE(view.read(Gpa(0xfff), one));
  EXPECT_EQ(one[0], 1);
  ASSERT_TRUE(view.read(Gpa(0x1000), one));
  EXPECT_EQ(one[0], 2);
}

#ifdef NDEBUG
TEST(RamLayoutTest, ViewClampsToAShortMapping) {
  std::vector<uint8_t> file(0x1000);
  RamView view(file.data(), file.size(), RamLayout::identity(0x2000));
  EXPECT_TRUE(view.at(Gpa(0xfff), 1));
  auto r = view.at(Gpa(0x1000), 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kOutOfRange);
  EXPECT_NE(r.error().message.find("past the end of the mapping"), std::string::npos);
}
#endif

TEST(RamLayoutTest, IdentityCoversTheWholeFile) {
  const RamLayout l = RamLayout::identity(100);  // no alignment demanded
  EXPECT_EQ(l.file_offset(Gpa(99), 1).value(), 99u);
  EXPECT_FALSE(l.file_offset(Gpa(99), 2));
  EXPECT_EQ(l.gpa_of(42).value(), Gpa(42));
  EXPECT_EQ(l.end_gpa(), Gpa(100));
  const RamLayout empty = RamLayout::identity(0);
  EXPECT_TRUE(empty.regions().empty());
  EXPECT_EQ(empty.end_gpa(), Gpa(0));
  EXPECT_EQ(empty.file_offset(Gpa(0), 0).error().message,
            "gpa 0x0 (+0x0 bytes) is outside guest RAM (regions: none)");
}

TEST(RamLayoutTest, FromRegionsMergesContiguousRegions) {
  auto l = RamLayout::from_regions({{Gpa(0), 0x1000, 0},
                                    {Gpa(0x1000), 0x2000, 0x1000},
                                    {Gpa(0x3000), 0x1000, 0x3000},
                                    {Gpa(0x5000), 0x1000, 0x4000},   // gpa gap: kept apart
                                    {Gpa(0x6000), 0x1000, 0x4000}},  // alias: kept apart
                                   0x10000);
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(
      l->regions(),
      regions({{Gpa(0), 0x4000, 0}, {Gpa(0x5000), 0x1000, 0x4000}, {Gpa(0x6000), 0x1000, 0x4000}}));
  EXPECT_EQ(l->ram_bytes(), 0x6000u);
  EXPECT_EQ(l->gpa_of(0x4000).value(), Gpa(0x5000));  // lowest alias wins
}

TEST(RamLayoutTest, FromRegionsRejectsBadRegions) {
  struct Case {
    std::vector<RamRegion> regions;
    uint64_t file_size;
    std::string expected;  // substring of the message
  };
  const uint64_t top = 0xfffffffffffff000;
  const Case cases[] = {
      {{}, 0x1000, "region 0: no regions"},
      {{{Gpa(0), 0, 0}}, 0x1000, "region 0 (gpa 0x0, 0x0 bytes @file 0x0): size is 0"},
      {{{Gpa(0), 0x1000, 0}, {Gpa(0x800), 0x1000, 0x1000}}, 0x2000, "not 4 KiB aligned"},
      {{{Gpa(0), 0x800, 0}}, 0x1000, "region 0 (gpa 0x0, 0x800 bytes @file 0x0): size is not"},
      {{{Gpa(0), 0x1000, 0x10}}, 0x2000, "file offset is not 4 KiB aligned"},
      {{{Gpa(0), 0x2000, 0}}, 0x1000, "past the end of the file (0x1000 bytes)"},
      {{{Gpa(0x2000), 0x1000, 0}, {Gpa(0), 0x1000, 0}}, 0x1000, "region 1 (gpa 0x0"},
      {{{Gpa(0), 0x2000, 0}, {Gpa(0x1000), 0x1000, 0}}, 0x2000, "overlaps region 0"},
      {{{Gpa(top), 0x2000, 0}}, 0x2000, "gpa range wraps"},
      {{{Gpa(0), 0x2000, top}}, ~uint64_t{0}, "file range wraps"},
  };
  for (const Case& c : cases) {
    auto l = RamLayout::from_regions(c.regions, c.file_size);
    ASSERT_FALSE(l) << c.expected;
    EXPECT_EQ(l.error().code, Errc::kInvalidArgument);
    EXPECT_NE(l.error().message.find(c.expected), std::string::npos) << l.error().message;
  }
  std::vector<RamRegion> many;
  for (uint64_t i = 0; i <= kMaxRamRegions; ++i) many.push_back({Gpa(i * 0x2000), 0x1000, 0});
  EXPECT_FALSE(RamLayout::from_regions(many, 0x1000));
  many.pop_back();
  EXPECT_TRUE(RamLayout::from_regions(many, 0x1000));
}

TEST(RamLayoutTest, FromRegionsByteAlignmentForForeignDumps) {
  auto l = RamLayout::from_regions({{Gpa(0x1000), 0x9ec00, 32}}, 0x9ec20, RamAlignment::kByte);
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->file_offset(Gpa(0x9fbff), 1).value(), 0x9ec1fu);
  EXPECT_FALSE(RamLayout::from_regions({{Gpa(0x1000), 0x9ec00, 32}}, 0x9ec20));
}

// Parses `text` expecting an error of `code` whose message contains `expected`.
void expect_parse_error(const std::string& text, Errc code, const std::string& expected,
                        uint64_t file_size = 0x100000000) {
  auto l = RamLayout::parse_mtree(text, kBlock, file_size);
  ASSERT_FALSE(l) << "accepted: " << text.substr(0, 200);
  EXPECT_EQ(l.error().code, code) << l.error().to_string();
  EXPECT_NE(l.error().message.find(expected), std::string::npos) << l.error().message;
}

TEST(RamLayoutTest, MtreeRejectsMalformedText) {
  const std::string ok = "0000000000000000-0000000000000fff (prio 0, ram): glassbox-ram";
  ASSERT_TRUE(RamLayout::parse_mtree(memory_view({ok}), kBlock, 0x1000));

  expect_parse_error("", Errc::kProtocol, "no FlatView for AS \"memory\"");
  expect_parse_error("unknown command: 'info'\r\n", Errc::kProtocol,
                     "info mtree -f line 1: unrecognised line");
  expect_parse_error(std::string("\x00\xff\x01garbage", 10), Errc::kProtocol, "line 1");
  expect_parse_error("  " + ok + "\n", Errc::kProtocol, "line 1: range line outside a view");
  expect_parse_error("FlatView #x\n", Errc::kProtocol, "bad FlatView number");
  expect_parse_error(memory_view({ok}) + memory_view({ok}), Errc::kProtocol,
                     "line 7: second view of AS \"memory\"");

  const std::pair<std::string, std::string> bad_lines[] = {
      {"00000000000000000-0000000000000fff (prio 0, ram): glassbox-ram", "at most 16 digits"},
      {"0000000000001000-0000000000000fff (prio 0, ram): glassbox-ram", "end is below"},
      {"0000000000000000-0000000000000fff (prio 99999999999, ram): glassbox-ram", "int32"},
      {"0000000000000000-0000000000000fff (prio 0, flash): glassbox-ram", "unknown region type"},
      {"0000000000000000-0000000000000fff (prio 0, ram): glassbox-ram @zz", "offset after '@'"},
      {"0000000000000000-0000000000000fff (prio 0, ram): glassbox-ram @0 junk", "after the off"},
      {"0000000000000000-0000000000000fff (prio 0, ram): ", "no region name"},
      {"0000000000000000 0000000000000fff (prio 0, ram): glassbox-ram", "(prio"},
      {"0000000000000000-0000000000000fff prio 0, ram: glassbox-ram", "(prio"},
      {"0000000000000000-0000000000000fff (prio 0, i/o): glassbox-ram", "mapped as i/o"},
      {"0000000000000000-ffffffffffffffff (prio 0, ram): glassbox-ram", "all 2^64 bytes"},
  };
  for (const auto& [line, expected] : bad_lines) {
    expect_parse_error(memory_view({line}), Errc::kProtocol, "line 4: ", 0x1000);
    expect_parse_error(memory_view({line}), Errc::kProtocol, expected, 0x1000);
  }
}

TEST(RamLayoutTest, MtreeRejectsRangesThatBreakTheLayoutRules) {
  const auto range = [](const char* s, const char* e, const char* suffix) {
    return std::string(s) + "-" + e + " (prio 0, ram): glassbox-ram" + suffix;
  };
  // Overlap (impossible in a real FlatView, but the text is untrusted).
  expect_parse_error(memory_view({range("0000000000000000", "0000000000001fff", ""),
                                  range("0000000000001000", "0000000000002fff", " @1000")}),
                     Errc::kProtocol, "line 5: overlaps region 0");
  // Unaligned end.
  expect_parse_error(memory_view({range("0000000000000000", "0000000000000ffe", "")}),
                     Errc::kProtocol, "line 4: size is not a multiple of 4 KiB");
  // Offset past the file: the real 4608M text against a 256M file.
  expect_parse_error(read_data("mtree_pc_4608m.txt"), Errc::kProtocol,
                     "line 94: file range ends at 0xc0000000, past the end of the file",
                     256 * kMiB);
  // Huge offset that wraps.
  expect_parse_error(
      memory_view({range("0000000000000000", "0000000000001fff", " @fffffffffffff000")}),
      Errc::kProtocol, "wraps");
}

TEST(RamLayoutTest, MtreeNamesTheRamItSawWhenTheBlockIsMissing) {
  auto l = RamLayout::parse_mtree(read_data("mtree_pc_4608m_running.txt"), "other-ram", k4608MiB);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, Errc::kNotFound);
  EXPECT_NE(l.error().message.find("ram/rom regions seen: glassbox-ram, vga.vram, pc.bios"),
            std::string::npos)
      << l.error().message;
  // A longer name that starts with ours is another region.
  auto prefixed = RamLayout::parse_mtree(
      memory_view({"0000000000000000-0000000000000fff (prio 0, ram): glassbox-ram-2 @1000",
                   "0000000000001000-0000000000001fff (prio 0, ram): glassbox-ram extra"}),
      kBlock, 0x2000);
  ASSERT_FALSE(prefixed);
  EXPECT_EQ(prefixed.error().code, Errc::kNotFound);
}

TEST(RamLayoutTest, MtreeIgnoresOtherViewsAndIoRanges) {
  // The smm views and the I/O view hold glassbox-ram or look odd; only AS "memory" counts.
  const std::string text =
      "FlatView #0\n AS \"cpu-smm-0\", root: memory\n Root memory region: memory\n"
      "  0000000000000000-00000000000bffff (prio 0, ram): glassbox-ram\n"
      "  whatever QEMU prints in another view\n\n" +
      memory_view({"0000000000000000-0000000000000fff (prio 0, nv-ram): glassbox-ram",
                   "0000000000001000-0000000000001fff (prio 1, i/o): vga ioports remapped",
                   "0000000000002000-0000000000002fff (prio -1, rom): glassbox-ram @2000 KVM"}) +
      "FlatView #2\n AS \"I/O\", root: io\n Root memory region: io\n  No rendered FlatView\n";
  auto l = RamLayout::parse_mtree(text, kBlock, 0x3000);
  ASSERT_TRUE(l) << l.error().to_string();
  EXPECT_EQ(l->describe(), "0x0-0xfff@0x0, 0x2000-0x2fff@0x2000");
}

TEST(RamLayoutTest, MtreeEnforcesSizeLimits) {
  expect_parse_error(std::string(kMaxMtreeTextBytes + 1, '\n'), Errc::kProtocol, "longer than");
  expect_parse_error(std::string(kMaxMtreeLines + 1, '\n'), Errc::kProtocol, "more than 65536");
  std::vector<std::string> lines;
  for (uint64_t i = 0; i <= kMaxRamRegions; ++i) {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%016llx-%016llx (prio 0, ram): glassbox-ram",
                  static_cast<unsigned long long>(i * 0x2000),
                  static_cast<unsigned long long>(i * 0x2000 + 0xfff));
    lines.emplace_back(buf);
  }
  expect_parse_error(memory_view(lines), Errc::kProtocol, "more than 4096 ranges");
}

TEST(RamLayoutTest, MtreeSurvivesMutatedInput) {
  // Byte flips, truncations and spliced lines of real outputs must give a layout or an
  // error, never a crash (run under ASan/UBSan to make this bite).
  const std::string base = read_data("mtree_pc_4608m_running.txt");
  std::mt19937_64 rng(12345);
  std::size_t accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string t = base;
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n; ++k) {
      const std::size_t at = rng() % t.size();
      switch (rng() % 4) {
        case 0:
          t[at] = static_cast<char>(rng());
          break;
        case 1:
          t.resize(at);
          break;
        case 2:
          t.insert(at, t.substr(rng() % t.size(), rng() % 200));
          break;
        default:
          t.erase(at, rng() % 64);
          break;
      }
      if (t.empty()) t = "x";
    }
    auto l = RamLayout::parse_mtree(t, kBlock, k4608MiB);
    if (l) {
      ++accepted;
      for (const RamRegion& r : l->regions()) {
        ASSERT_LE(r.file_offset + r.size_bytes, k4608MiB);
        ASSERT_EQ(r.gpa.value % kPageSizeBytes, 0u);
      }
    } else {
      ASSERT_TRUE(l.error().code == Errc::kProtocol || l.error().code == Errc::kNotFound)
          << l.error().to_string();
    }
  }
  EXPECT_GT(accepted, 0u);  // mutations outside the memory view leave it intact
}

}  // namespace
}  // namespace glassbox::shared
