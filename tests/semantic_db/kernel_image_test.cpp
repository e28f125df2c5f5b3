// Tests of kernel_image: bzImage payload decompression and ELF section parsing, on the
// reference guest kernel (skipped when absent) and on synthetic and mutated inputs.
#include "services/semantic_db/kernel_image.hpp"

#include <bzlib.h>
#include <gtest/gtest.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

namespace glassbox::semantic_db {
namespace {

// <repo>/build/guest, or $GLASSBOX_GUEST_DIR.
std::filesystem::path guest_dir() {
  if (const char* e = std::getenv("GLASSBOX_GUEST_DIR")) return e;
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "build" /
         "guest";
}

// The decompressed reference vmlinux, or nullptr when the guest kernel is absent.
const std::vector<uint8_t>* reference_vmlinux(double* seconds = nullptr) {
  static std::vector<uint8_t> cached;
  static bool tried = false;
  static double took = 0;
  if (!tried) {
    tried = true;
    auto img = read_file_bytes((guest_dir() / "vmlinuz").string());
    if (img) {
      const auto t0 = std::chrono::steady_clock::now();
      auto v = decompress_bzimage(*img);
      took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (v) cached = std::move(*v);
    }
  }
  if (seconds) *seconds = took;
  return cached.empty() ? nullptr : &cached;
}

void put16(std::vector<uint8_t>& b, std::size_t at, uint16_t v) {
  b[at] = v & 0xff;
  b[at + 1] = v >> 8;
}
void put32(std::vector<uint8_t>& b, std::size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = (v >> (8 * i)) & 0xff;
}
void put64(std::vector<uint8_t>& b, std::size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = (v >> (8 * i)) & 0xff;
}

// A minimal bzImage: one setup sector, payload at protected-mode offset 0x100.
std::vector<uint8_t> wrap_bzimage(const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> b(1024 + 0x100, 0);
  b[0x1f1] = 1;  // setup_sects -> protected-mode part at 1024
  std::memcpy(b.data() + 0x202, "HdrS", 4);
  put16(b, 0x206, 0x020f);
  put32(b, 0x248, 0x100);
  put32(b, 0x24c, static_cast<uint32_t>(payload.size() + 4));
  b.insert(b.end(), payload.begin(), payload.end());
  b.resize(b.size() + 4, 0);  // size_append
  return b;
}

std::vector<uint8_t> sample_data() {
  std::vector<uint8_t> d(300000);
  std::mt19937 rng(7);
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = (i % 97 < 50) ? 'A' + (i % 13) : rng() & 3;
  return d;
}

TEST(KernelImageTest, DecompressesReferenceImage) {
  double seconds = 0;
  const auto* v = reference_vmlinux(&seconds);
  if (v == nullptr) GTEST_SKIP() << "no reference guest kernel under " << guest_dir();
  RecordProperty("decompress_seconds", std::to_string(seconds));
  std::printf("decompress: %zu bytes in %.3f s\n", v->size(), seconds);
  auto elf = read_elf_sections(*v);
  ASSERT_TRUE(elf) << elf.error().to_string();
  EXPECT_EQ(elf->machine, 62);  // EM_X86_64
  auto btf = elf->bytes(*v, ".BTF");
  ASSERT_TRUE(btf);
  EXPECT_GT(btf->size(), 3u << 20);
  EXPECT_LT(btf->size(), 8u << 20);
  EXPECT_EQ(elf->text_addr, 0xffffffff81000000ull);
  EXPECT_EQ(elf->banner.rfind("Linux version 6.1.0-56-amd64 ", 0), 0u) << elf->banner;
  EXPECT_FALSE(elf->sections.contains(".symtab"));
  EXPECT_EQ(elf->bytes(*v, ".bss").error().code, Errc::kOutOfRange);
  EXPECT_EQ(elf->bytes(*v, ".nope").error().code, Errc::kNotFound);
}

TEST(KernelImageTest, LocatesXzPayloadOfReferenceImage) {
  auto img = read_file_bytes((guest_dir() / "vmlinuz").string());
  if (!img) GTEST_SKIP() << "no reference guest kernel";
  auto p = locate_bzimage_payload(*img);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->compression, PayloadCompression::kXz);
  EXPECT_GE(p->boot_protocol, 0x020f);
}

TEST(KernelImageTest, RejectsImagesWithoutSetupHeader) {
  std::vector<uint8_t> empty;
  EXPECT_EQ(decompress_bzimage(empty).error().code, Errc::kProtocol);
  std::vector<uint8_t> zeros(4096, 0);
  EXPECT_EQ(decompress_bzimage(zeros).error().code, Errc::kProtocol);
  auto img = wrap_bzimage({1, 2, 3});
  img[0x203] = 'x';
  EXPECT_EQ(decompress_bzimage(img).error().code, Errc::kProtocol);
}

TEST(KernelImageTest, RejectsPayloadOutsideImage) {
  auto img = wrap_bzimage({0xfd, '7', 'z', 'X', 'Z', 0});
  put32(img, 0x24c, 0xffffffff);
  EXPECT_EQ(decompress_bzimage(img).error().code, Errc::kProtocol);
  put32(img, 0x24c, 6);
  put32(img, 0x248, 0xfffffff0);
  EXPECT_EQ(decompress_bzimage(img).error().code, Errc::kProtocol);
}

TEST(KernelImageTest, RejectsUnknownAndLzoPayloads) {
  EXPECT_EQ(decompress_bzimage(wrap_bzimage({9, 9, 9, 9})).error().code, Errc::kUnsupported);
  EXPECT_EQ(decompress_bzimage(wrap_bzimage({0x89, 'L', 'Z', 'O', 0})).error().code,
            Errc::kUnsupported);
}

TEST(KernelImageTest, RoundTripsEveryLibraryFormat) {
  const auto data = sample_data();
  std::vector<std::pair<const char*, std::vector<uint8_t>>> payloads;
  {  // xz
    std::vector<uint8_t> out(data.size() + 1024);
    size_t pos = 0;
    ASSERT_EQ(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr, data.data(), data.size(),
                                      out.data(), &pos, out.size()),
              LZMA_OK);
    out.resize(pos);
    payloads.emplace_back("xz", out);
  }
  {  // lzma alone
    lzma_stream s = LZMA_STREAM_INIT;
    lzma_options_lzma opt;
    lzma_lzma_preset(&opt, 6);
    ASSERT_EQ(lzma_alone_encoder(&s, &opt), LZMA_OK);
    std::vector<uint8_t> out(data.size() + 1024);
    s.next_in = data.data();
    s.avail_in = data.size();
    s.next_out = out.data();
    s.avail_out = out.size();
    ASSERT_EQ(lzma_code(&s, LZMA_FINISH), LZMA_STREAM_END);
    out.resize(out.size() - s.avail_out);
    lzma_end(&s);
    payloads.emplace_back("lzma", out);
  }
  {  // gzip
    z_stream z{};
    ASSERT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    std::vector<uint8_t> out(deflateBound(&z, data.size()) + 64);
    z.next_in = const_cast<Bytef*>(data.data());
    z.avail_in = data.size();
    z.next_out = out.data();
    z.avail_out = out.size();
    ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    payloads.emplace_back("gzip", out);
  }
  {  // zstd
    std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
    out.resize(ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 19));
    payloads.emplace_back("zstd", out);
  }
  {  // bzip2
    std::vector<uint8_t> out(data.size() + 4096);
    unsigned n = out.size();
    ASSERT_EQ(
        BZ2_bzBuffToBuffCompress(reinterpret_cast<char*>(out.data()), &n,
                                 const_cast<char*>(reinterpret_cast<const char*>(data.data())),
                                 data.size(), 9, 0, 0),
        BZ_OK);
    out.resize(n);
    payloads.emplace_back("bzip2", out);
  }
  {  // lz4 legacy: magic, then [u32 size, block] per <= 8 MiB chunk (two chunks here)
    std::vector<uint8_t> out = {0x02, 0x21, 0x4c, 0x18};
    const std::size_t half = data.size() / 2;
    for (std::size_t start : {std::size_t{0}, half}) {
      const std::size_t len = start == 0 ? half : data.size() - half;
      std::vector<uint8_t> blk(LZ4_compressBound(len));
      int n = LZ4_compress_default(reinterpret_cast<const char*>(data.data() + start),
                                   reinterpret_cast<char*>(blk.data()), len, blk.size());
      ASSERT_GT(n, 0);
      std::size_t at = out.size();
      out.resize(at + 4);
      put32(out, at, n);
      out.insert(out.end(), blk.begin(), blk.begin() + n);
    }
    payloads.emplace_back("lz4", out);
  }
  for (auto& [name, payload] : payloads) {
    SCOPED_TRACE(name);
    auto img = wrap_bzimage(payload);
    EXPECT_STREQ(compression_name(locate_bzimage_payload(img)->compression), name);
    auto v = decompress_bzimage(img);
    ASSERT_TRUE(v) << v.error().to_string();
    EXPECT_EQ(*v, data);
    // Over the cap: a clean error.
    auto capped = decompress_bzimage(img, 1000);
    ASSERT_FALSE(capped);
    EXPECT_EQ(capped.error().code, Errc::kProtocol);
    // Truncated stream: a clean error.
    auto cut =
        wrap_bzimage(std::vector<uint8_t>(payload.begin(), payload.begin() + payload.size() / 2));
    auto t = decompress_bzimage(cut);
    EXPECT_FALSE(t);
    // Mutations: errors or (rarely) some output, never a crash.
    std::mt19937 rng(11);
    for (int i = 0; i < 40; ++i) {
      auto m = img;
      for (int k = 0; k < 4; ++k)
        m[1024 + 0x100 + 8 + rng() % (payload.size() - 8)] ^= 1 + rng() % 255;
      (void)decompress_bzimage(m, 1u << 20);
    }
  }
}

TEST(KernelImageTest, MutatedReferencePayloadFailsCleanly) {
  auto img = read_file_bytes((guest_dir() / "vmlinuz").string());
  if (!img) GTEST_SKIP() << "no reference guest kernel";
  auto p = locate_bzimage_payload(*img);
  ASSERT_TRUE(p);
  // Truncated payload (length halved): truncated-stream error.
  auto cut = *img;
  put32(cut, 0x24c, static_cast<uint32_t>(p->size_bytes / 2));
  auto r = decompress_bzimage(cut, 8u << 20);
  EXPECT_FALSE(r);
  // Flipped bytes near the start of the stream, with a small cap to bound time.
  std::mt19937 rng(3);
  for (int i = 0; i < 12; ++i) {
    auto m = *img;
    m[p->offset_bytes + 12 + rng() % 65536] ^= 1 + rng() % 255;
    auto out = decompress_bzimage(m, 4u << 20);
    EXPECT_FALSE(out);  // corrupt, or over the 4 MiB cap
  }
  // Truncated file.
  std::vector<uint8_t> half(img->begin(), img->begin() + img->size() / 2);
  EXPECT_EQ(decompress_bzimage(half).error().code, Errc::kProtocol);
}

// A small ELF64: null, .text, .shstrtab.
std::vector<uint8_t> tiny_elf() {
  const std::string names = std::string("\0.text\0.shstrtab\0.rodata\0", 25);
  std::vector<uint8_t> e(64 + 64 + names.size(), 0);
  std::memcpy(e.data(),
              "\x7f"
              "ELF",
              4);
  e[4] = 2;
  e[5] = 1;
  e[6] = 1;
  put16(e, 18, 62);
  std::memcpy(e.data() + 64, "xxxxxxxxLinux version 6.1.0-x (gcc) #1\n\0zzzzzzzzzzzzzzzzzzzzzzzz",
              64);
  std::memcpy(e.data() + 128, names.data(), names.size());
  const std::size_t shoff = e.size();
  e.resize(shoff + 4 * 64, 0);
  put64(e, 40, shoff);
  put16(e, 58, 64);
  put16(e, 60, 4);
  put16(e, 62, 2);
  auto sh = [&](int i, uint32_t name, uint32_t type, uint64_t addr, uint64_t off, uint64_t size) {
    const std::size_t at = shoff + i * 64;
    put32(e, at, name);
    put32(e, at + 4, type);
    put64(e, at + 16, addr);
    put64(e, at + 24, off);
    put64(e, at + 32, size);
  };
  sh(1, 1, 1, 0xffffffff81000000ull, 64, 8);
  sh(2, 7, 3, 0, 128, names.size());
  sh(3, 17, 1, 0xffffffff82000000ull, 64, 64);
  return e;
}

TEST(KernelImageTest, ParsesTinyElf) {
  auto e = tiny_elf();
  auto s = read_elf_sections(e);
  ASSERT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(s->sections.size(), 3u);
  EXPECT_EQ(s->text_addr, 0xffffffff81000000ull);
  EXPECT_EQ(s->banner, "Linux version 6.1.0-x (gcc) #1");
}

TEST(KernelImageTest, RejectsMalformedElf) {
  EXPECT_FALSE(read_elf_sections(std::vector<uint8_t>(10, 0)));
  auto e = tiny_elf();
  auto bad = e;
  bad[4] = 1;  // ELF32
  EXPECT_FALSE(read_elf_sections(bad));
  bad = e;
  put16(bad, 60, 400);  // more sections than fit
  EXPECT_FALSE(read_elf_sections(bad));
  bad = e;
  put16(bad, 62, 9);  // shstrndx out of range
  EXPECT_FALSE(read_elf_sections(bad));
  bad = e;
  bad.resize(bad.size() - 10);  // section table truncated
  EXPECT_FALSE(read_elf_sections(bad));
}

TEST(KernelImageTest, ElfMutationLoopNeverCrashes) {
  const auto e = tiny_elf();
  std::mt19937 rng(5);
  int ok = 0;
  for (int i = 0; i < 20000; ++i) {
    auto m = e;
    const int n = 1 + rng() % 6;
    for (int k = 0; k < n; ++k) m[rng() % m.size()] = rng() & 0xff;
    if (rng() % 8 == 0) m.resize(rng() % m.size());
    if (auto s = read_elf_sections(m)) {
      ++ok;
      for (auto& [name, sec] : s->sections) {
        if (auto b = s->bytes(m, name)) {
          EXPECT_LE(b->data() + b->size(), m.data() + m.size());
        }
      }
    }
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace glassbox::semantic_db
