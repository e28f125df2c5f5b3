#include "shared/ram_dump.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace glassbox::shared {
namespace {

constexpr uint64_t kGiB = 1024 * 1024 * 1024;

// A synthetic RAM file of 3 MiB laid out like a small pc guest:
//   gpa 0x0-0x9ffff        @ file 0x0        (below the VGA hole)
//   gpa 0xc0000-0x1fffff   @ file 0xc0000
//   gpa 0x100000000-+1 MiB @ file 0x200000   (RAM above 4 GiB)
// File bytes 0xa0000-0xbffff sit under the VGA hole: no gpa reaches them.
class RamDumpTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kFileBytes = 0x300000;

  void SetUp() override {
    char tmpl[] = "/tmp/glassbox_ram_dump_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    file_.resize(kFileBytes);
    for (uint64_t i = 0; i < kFileBytes; ++i) {
      file_[i] = static_cast<uint8_t>((i * 2654435761u) >> 13) | 1;  // never 0
    }
    // Zero pages inside RAM (skipped by the writers, must still read back as zeros).
    std::memset(&file_[0x10000], 0, 0x8000);
    std::memset(&file_[0x250000], 0, 0x20000);
    std::memset(&file_[0xa0000], 0xEE, 0x20000);  // under the hole: must not leak
    auto layout = RamLayout::from_regions({{Gpa(0), 0xa0000, 0},
                                           {Gpa(0xc0000), 0x140000, 0xc0000},
                                           {Gpa(4 * kGiB), 0x100000, 0x200000}},
                                          kFileBytes);
    ASSERT_TRUE(layout) << layout.error().to_string();
    layout_ = *layout;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  RamView view() const { return RamView(file_.data(), file_.size(), layout_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }

  // Every byte of every region of the original, read through `ram`.
  void expect_same_ram(const RamView& ram) const {
    for (const RamRegion& r : layout_.regions()) {
      auto p = ram.at(r.gpa, r.size_bytes);
      ASSERT_TRUE(p) << p.error().to_string();
      ASSERT_EQ(std::memcmp(*p, &file_[r.file_offset], r.size_bytes), 0)
          << "region at gpa 0x" << std::hex << r.gpa.value;
      std::vector<uint8_t> small(7);
      ASSERT_TRUE(ram.read(r.gpa + (r.size_bytes - 7), small));
      EXPECT_EQ(std::memcmp(small.data(), &file_[r.file_offset + r.size_bytes - 7], 7), 0);
    }
  }

  std::filesystem::path dir_;
  std::vector<uint8_t> file_;
  RamLayout layout_ = RamLayout::identity(0);
};

std::vector<uint8_t> read_file(const std::string& p, uint64_t offset, uint64_t n) {
  std::ifstream in(p, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<uint8_t> out(n);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(n));
  out.resize(static_cast<std::size_t>(in.gcount()));
  return out;
}

void write_file(const std::string& p, const std::vector<uint8_t>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// One LiME header followed by `data_bytes` bytes of 0x5A (data_bytes may be shorter than
// the range to make a truncated file).
void append_lime(std::vector<uint8_t>& out, uint64_t s_addr, uint64_t e_addr, uint64_t data_bytes,
                 uint32_t magic = kLimeMagic, uint32_t version = kLimeVersion) {
  uint8_t h[32] = {};
  for (int i = 0; i < 4; ++i) h[i] = static_cast<uint8_t>(magic >> (8 * i));
  for (int i = 0; i < 4; ++i) h[4 + i] = static_cast<uint8_t>(version >> (8 * i));
  for (int i = 0; i < 8; ++i) h[8 + i] = static_cast<uint8_t>(s_addr >> (8 * i));
  for (int i = 0; i < 8; ++i) h[16 + i] = static_cast<uint8_t>(e_addr >> (8 * i));
  out.insert(out.end(), h, h + 32);
  out.insert(out.end(), data_bytes, 0x5A);
}

TEST_F(RamDumpTest, RawDumpRoundTripsAndIsSparse) {
  const std::string p = path("ram.raw");
  auto w = write_dump(p, view(), DumpFormat::kRaw);
  ASSERT_TRUE(w) << w.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(p + ".tmp"));

  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4 * kGiB + 0x100000);  // = end_gpa
  // 4 GiB long, about 2.7 MiB of it written: the holes are not allocated.
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 4 * 1024 * 1024u);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto dump = open_dump(p);
  ASSERT_TRUE(dump) << dump.error().to_string();
  EXPECT_EQ(dump->format(), DumpFormat::kRaw);
  EXPECT_EQ(dump->file_size_bytes(), 4 * kGiB + 0x100000);
  expect_same_ram(dump->view());
  // Holes read as zeros in a raw image; the file bytes under the VGA hole did not leak.
  for (uint64_t gpa : {uint64_t{0xa0000}, uint64_t{0xbffff}, uint64_t{0x200000}, 3 * kGiB}) {
    auto b = dump->view().at(Gpa(gpa), 1);
    ASSERT_TRUE(b);
    EXPECT_EQ(**b, 0) << std::hex << gpa;
  }
  EXPECT_FALSE(dump->view().at(Gpa(4 * kGiB + 0x100000), 1));
}

TEST_F(RamDumpTest, LimeDumpHasExactHeadersAndRoundTrips) {
  const std::string p = path("ram.lime");
  auto w = write_dump(p, view(), DumpFormat::kLime);
  ASSERT_TRUE(w) << w.error().to_string();

  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 3 * 32 + layout_.ram_bytes());
  // The 160 KiB of zero pages inside RAM were skipped: holes in the LiME file too.
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, static_cast<uint64_t>(st.st_size) - 0x10000);
  const std::vector<uint8_t> h0 = {
      0x45, 0x4d, 0x69, 0x4c, 0x01, 0x00, 0x00, 0x00,  // "EMiL", version 1
      0,    0,    0,    0,    0,    0,    0,    0,     // s_addr 0
      0xff, 0xff, 0x09, 0,    0,    0,    0,    0,     // e_addr 0x9ffff (inclusive)
      0,    0,    0,    0,    0,    0,    0,    0};
  EXPECT_EQ(read_file(p, 0, 32), h0);
  const uint64_t h1_at = 32 + 0xa0000;
  const std::vector<uint8_t> h1 = {0x45, 0x4d, 0x69, 0x4c, 0x01, 0x00, 0x00, 0x00,
                                   0x00, 0x00, 0x0c, 0,    0,    0,    0,    0,  // s_addr 0xc0000
                                   0xff, 0xff, 0x1f, 0,    0,    0,    0,    0,  // e_addr 0x1fffff
                                   0,    0,    0,    0,    0,    0,    0,    0};
  EXPECT_EQ(read_file(p, h1_at, 32), h1);
  const uint64_t h2_at = h1_at + 32 + 0x140000;
  const std::vector<uint8_t> h2 = {
      0x45, 0x4d, 0x69, 0x4c, 0x01, 0x00, 0x00, 0x00,
      0,    0,    0,    0,    0x01, 0,    0,    0,  // s_addr 0x100000000
      0xff, 0xff, 0x0f, 0,    0x01, 0,    0,    0,  // e_addr 0x1000fffff
      0,    0,    0,    0,    0,    0,    0,    0};
  EXPECT_EQ(read_file(p, h2_at, 32), h2);
  EXPECT_EQ(read_file(p, 32, 16), std::vector<uint8_t>(file_.begin(), file_.begin() + 16));

  auto dump = open_dump(p);
  ASSERT_TRUE(dump) << dump.error().to_string();
  EXPECT_EQ(dump->format(), DumpFormat::kLime);
  const auto& r = dump->view().layout().regions();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0], (RamRegion{Gpa(0), 0xa0000, 32}));
  EXPECT_EQ(r[1], (RamRegion{Gpa(0xc0000), 0x140000, h1_at + 32}));
  EXPECT_EQ(r[2], (RamRegion{Gpa(4 * kGiB), 0x100000, h2_at + 32}));
  expect_same_ram(dump->view());
  // LiME knows its holes.
  EXPECT_EQ(dump->view().at(Gpa(0xa0000), 1).error().code, Errc::kOutOfRange);
  EXPECT_EQ(dump->view().at(Gpa(0x200000), 1).error().code, Errc::kOutOfRange);

  // A dump loaded from disk is a RamView like any other: re-dump it as raw.
  LoadedDump moved = std::move(*dump);
  auto raw = write_dump(path("again.raw"), moved.view(), DumpFormat::kRaw);
  ASSERT_TRUE(raw) << raw.error().to_string();
  auto again = open_dump(path("again.raw"));
  ASSERT_TRUE(again);
  expect_same_ram(again->view());
}

TEST_F(RamDumpTest, OverwritesAnExistingDump) {
  const std::string p = path("ram.lime");
  write_file(p, std::vector<uint8_t>(100, 1));
  ASSERT_TRUE(write_dump(p, view(), DumpFormat::kLime));
  auto dump = open_dump(p);
  ASSERT_TRUE(dump);
  expect_same_ram(dump->view());
}

TEST_F(RamDumpTest, WriteErrorsNameThePath) {
  const std::string p = path("missing-dir/ram.raw");
  auto w = write_dump(p, view(), DumpFormat::kRaw);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kIo);
  EXPECT_NE(w.error().message.find(p), std::string::npos) << w.error().message;
  EXPECT_FALSE(std::filesystem::exists(p + ".tmp"));
}

#ifdef NDEBUG  // a view shorter than its layout asserts in debug builds
TEST_F(RamDumpTest, ShortViewFailsWithoutLeavingFiles) {
  RamView short_view(file_.data(), 0x100000, layout_);
  auto w = write_dump(path("short.raw"), short_view, DumpFormat::kRaw);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kOutOfRange);
  EXPECT_FALSE(std::filesystem::exists(path("short.raw")));
  EXPECT_FALSE(std::filesystem::exists(path("short.raw.tmp")));
}
#endif

TEST_F(RamDumpTest, OpenErrors) {
  auto missing = open_dump(path("nope"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  auto dir = open_dump(dir_.string());
  ASSERT_FALSE(dir);
  EXPECT_EQ(dir.error().code, Errc::kIo);
  write_file(path("empty"), {});
  auto empty = open_dump(path("empty"));
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Errc::kProtocol);
  // A short file without the magic is a (tiny) raw image.
  write_file(path("tiny"), {1, 2, 3});
  auto tiny = open_dump(path("tiny"));
  ASSERT_TRUE(tiny);
  EXPECT_EQ(tiny->format(), DumpFormat::kRaw);
  EXPECT_EQ(*tiny->view().at(Gpa(2), 1).value(), 3);
}

TEST_F(RamDumpTest, RejectsCorruptLimeFiles) {
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    std::string expected;  // substring of the message
  };
  std::vector<Case> cases;
  const uint64_t max = ~uint64_t{0};
  {
    std::vector<uint8_t> b;
    append_lime(b, 0, 0xfff, 0x1000);
    append_lime(b, 0x2000, 0x2fff, 0x1000);
    append_lime(b, 0x4000, 0x4fff, 0xfff);  // one byte short
    cases.push_back({"truncated data", b, "LiME header 2 at file offset 0x2040: range data"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0, 0xfff, 0x1000);
    b.resize(b.size() + 10, 0);
    cases.push_back({"trailing bytes", b, "LiME header 1 at file offset 0x1020: truncated header"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0x2000, 0x1fff, 0);
    cases.push_back(
        {"e_addr < s_addr", b, "LiME header 0 at file offset 0x0: e_addr 0x1fff is below"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0, 0x1fff, 0x2000);
    append_lime(b, 0x1fff, 0x2fff, 0x1001);
    cases.push_back(
        {"overlap", b, "LiME header 1 at file offset 0x2020: s_addr 0x1fff is not above"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0x5000, 0x5fff, 0x1000);
    append_lime(b, 0x1000, 0x1fff, 0x1000);
    cases.push_back({"unsorted", b, "LiME header 1"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0x1000, max, 0x1000);
    cases.push_back({"absurd size", b, "runs past the end of the file"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0, max, 0x1000);
    cases.push_back({"2^64 bytes", b, "range of 2^64 bytes"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0, 0xfff, 0x1000);
    append_lime(b, 0x1000, 0x1fff, 0x1000, kLimeMagic, 2);
    cases.push_back({"version", b, "LiME header 1 at file offset 0x1020: unsupported version 2"});
  }
  {
    std::vector<uint8_t> b;
    append_lime(b, 0, 0xfff, 0x1000);
    append_lime(b, 0x1000, 0x1fff, 0x1000, 0x12345678);
    cases.push_back({"magic", b, "LiME header 1 at file offset 0x1020: bad magic 0x12345678"});
  }
  {
    std::vector<uint8_t> b;
    for (uint64_t i = 0; i <= kMaxLimeRanges; ++i) append_lime(b, i * 2, i * 2, 1);
    cases.push_back({"too many", b, "LiME header 4096 at file offset 0x21000: more than 4096"});
  }
  for (const Case& c : cases) {
    write_file(path("bad.lime"), c.bytes);
    auto d = open_dump(path("bad.lime"));
    ASSERT_FALSE(d) << c.name;
    EXPECT_EQ(d.error().code, Errc::kProtocol) << c.name;
    EXPECT_NE(d.error().message.find(c.expected), std::string::npos)
        << c.name << ": " << d.error().message;
    EXPECT_NE(d.error().message.find(path("bad.lime")), std::string::npos);
  }
}

TEST_F(RamDumpTest, ReadsForeignLimeWithUnalignedRanges) {
  // LiME dumps /proc/iomem "System RAM" ranges, which need not be page-sized.
  std::vector<uint8_t> b;
  append_lime(b, 0x1000, 0x9fbff, 0x9ec00);
  append_lime(b, 0x100000, 0x100000, 1);
  write_file(path("foreign.lime"), b);
  auto d = open_dump(path("foreign.lime"));
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_EQ(d->view().layout().describe(), "0x1000-0x9fbff@0x20, 0x100000-0x100000@0x9ec40");
  EXPECT_EQ(*d->view().at(Gpa(0x100000), 1).value(), 0x5A);
  EXPECT_FALSE(d->view().at(Gpa(0x9fc00), 1));
}

}  // namespace
}  // namespace glassbox::shared
