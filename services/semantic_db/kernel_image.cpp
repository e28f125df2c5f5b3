#include "services/semantic_db/kernel_image.hpp"

#include <bzlib.h>
#include <fcntl.h>
#include <lz4.h>
#include <lzma.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "services/semantic_db/byte_order.hpp"

namespace glassbox::semantic_db {
namespace {

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Magic numbers of the payload formats (lib/decompress.c, compressed_formats[]).
PayloadCompression detect(std::span<const uint8_t> p) {
  auto starts = [&](std::initializer_list<uint8_t> m) {
    if (p.size() < m.size()) return false;
    return std::equal(m.begin(), m.end(), p.begin());
  };
  if (starts({0xfd, '7', 'z', 'X', 'Z', 0x00})) return PayloadCompression::kXz;
  if (starts({0x1f, 0x8b})) return PayloadCompression::kGzip;
  if (starts({0x28, 0xb5, 0x2f, 0xfd})) return PayloadCompression::kZstd;
  if (starts({0x02, 0x21, 0x4c, 0x18})) return PayloadCompression::kLz4;
  if (starts({0x5d, 0x00, 0x00})) return PayloadCompression::kLzma;
  if (starts({'B', 'Z', 'h'})) return PayloadCompression::kBzip2;
  if (starts({0x89, 'L', 'Z', 'O'})) return PayloadCompression::kLzo;
  return PayloadCompression::kUnknown;
}

constexpr std::size_t kChunkBytes = 4u << 20;

// Grows `out` by one chunk, failing past `cap`.
Result<void> grow(std::vector<uint8_t>& out, std::size_t cap, const char* what) {
  if (out.size() >= cap) {
    return fail(Errc::kProtocol, std::string("bzImage ") + what +
                                     " payload: output exceeds the cap of " + std::to_string(cap) +
                                     " bytes");
  }
  out.resize(std::min(cap, out.size() + kChunkBytes));
  return {};
}

Result<std::vector<uint8_t>> unxz(std::span<const uint8_t> in, std::size_t cap, bool alone) {
  const char* what = alone ? "lzma" : "xz";
  lzma_stream s = LZMA_STREAM_INIT;
  constexpr uint64_t kMemLimit = 512ull << 20;
  lzma_ret r = alone ? lzma_alone_decoder(&s, kMemLimit) : lzma_stream_decoder(&s, kMemLimit, 0);
  if (r != LZMA_OK) return fail(Errc::kInternal, std::string(what) + " decoder init failed");
  std::vector<uint8_t> out;
  s.next_in = in.data();
  s.avail_in = in.size();
  std::size_t produced = 0;
  for (;;) {
    if (produced == out.size()) {
      if (auto g = grow(out, cap, what); !g) {
        lzma_end(&s);
        return tl::unexpected(g.error());
      }
    }
    s.next_out = out.data() + produced;
    s.avail_out = out.size() - produced;
    r = lzma_code(&s, LZMA_FINISH);
    produced = out.size() - s.avail_out;
    if (r == LZMA_STREAM_END) break;
    if (r == LZMA_OK && s.avail_out == 0) continue;
    lzma_end(&s);
    if (r == LZMA_OK || r == LZMA_BUF_ERROR) {
      return fail(Errc::kProtocol, std::string("bzImage ") + what + " payload: truncated stream");
    }
    return fail(Errc::kProtocol, std::string("bzImage ") + what +
                                     " payload: corrupt stream (lzma_ret " +
                                     std::to_string(static_cast<int>(r)) + ")");
  }
  lzma_end(&s);
  out.resize(produced);
  return out;
}

Result<std::vector<uint8_t>> ungzip(std::span<const uint8_t> in, std::size_t cap) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    return fail(Errc::kInternal, "gzip decoder init failed");
  }
  std::vector<uint8_t> out;
  std::size_t produced = 0;
  std::size_t consumed = 0;
  for (;;) {
    if (produced == out.size()) {
      if (auto g = grow(out, cap, "gzip"); !g) {
        inflateEnd(&z);
        return tl::unexpected(g.error());
      }
    }
    // zlib counts in uInt: feed and drain at most 1 GiB per call.
    const std::size_t in_left = in.size() - consumed;
    z.next_in = const_cast<Bytef*>(in.data() + consumed);
    z.avail_in = static_cast<uInt>(std::min<std::size_t>(in_left, 1u << 30));
    z.next_out = out.data() + produced;
    z.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, 1u << 30));
    const uInt in_before = z.avail_in;
    const uInt out_before = z.avail_out;
    int r = inflate(&z, Z_NO_FLUSH);
    consumed += in_before - z.avail_in;
    produced += out_before - z.avail_out;
    if (r == Z_STREAM_END) break;
    if (r == Z_OK) continue;
    if (r == Z_BUF_ERROR && produced == out.size()) continue;
    inflateEnd(&z);
    if (r == Z_BUF_ERROR) return fail(Errc::kProtocol, "bzImage gzip payload: truncated stream");
    return fail(Errc::kProtocol, std::string("bzImage gzip payload: corrupt stream (") +
                                     (z.msg ? z.msg : "inflate error") + ")");
  }
  inflateEnd(&z);
  out.resize(produced);
  return out;
}

Result<std::vector<uint8_t>> unzstd(std::span<const uint8_t> in, std::size_t cap) {
  ZSTD_DStream* d = ZSTD_createDStream();
  if (d == nullptr) return fail(Errc::kInternal, "zstd decoder init failed");
  // The kernel's zstd22 uses a 128 MiB window at most (windowLog 27, the library default).
  ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 27);
  std::vector<uint8_t> out;
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  std::size_t produced = 0;
  for (;;) {
    if (produced == out.size()) {
      if (auto g = grow(out, cap, "zstd"); !g) {
        ZSTD_freeDStream(d);
        return tl::unexpected(g.error());
      }
    }
    ZSTD_outBuffer ob{out.data(), out.size(), produced};
    const std::size_t r = ZSTD_decompressStream(d, &ob, &ib);
    produced = ob.pos;
    if (ZSTD_isError(r)) {
      ZSTD_freeDStream(d);
      return fail(Errc::kProtocol, std::string("bzImage zstd payload: corrupt stream (") +
                                       ZSTD_getErrorName(r) + ")");
    }
    if (r == 0) break;  // frame complete
    if (ib.pos == ib.size && ob.pos < ob.size) {
      ZSTD_freeDStream(d);
      return fail(Errc::kProtocol, "bzImage zstd payload: truncated stream");
    }
  }
  ZSTD_freeDStream(d);
  out.resize(produced);
  return out;
}

Result<std::vector<uint8_t>> unbzip2(std::span<const uint8_t> in, std::size_t cap) {
  bz_stream b{};
  if (BZ2_bzDecompressInit(&b, 0, 0) != BZ_OK) {
    return fail(Errc::kInternal, "bzip2 decoder init failed");
  }
  std::vector<uint8_t> out;
  std::size_t produced = 0;
  std::size_t consumed = 0;
  for (;;) {
    if (produced == out.size()) {
      if (auto g = grow(out, cap, "bzip2"); !g) {
        BZ2_bzDecompressEnd(&b);
        return tl::unexpected(g.error());
      }
    }
    const unsigned in_n =
        static_cast<unsigned>(std::min<std::size_t>(in.size() - consumed, 1u << 30));
    const unsigned out_n =
        static_cast<unsigned>(std::min<std::size_t>(out.size() - produced, 1u << 30));
    b.next_in = const_cast<char*>(reinterpret_cast<const char*>(in.data() + consumed));
    b.avail_in = in_n;
    b.next_out = reinterpret_cast<char*>(out.data() + produced);
    b.avail_out = out_n;
    int r = BZ2_bzDecompress(&b);
    consumed += in_n - b.avail_in;
    produced += out_n - b.avail_out;
    if (r == BZ_STREAM_END) break;
    if (r == BZ_OK) {
      if (b.avail_in == 0 && consumed == in.size() && b.avail_out != 0) {
        BZ2_bzDecompressEnd(&b);
        return fail(Errc::kProtocol, "bzImage bzip2 payload: truncated stream");
      }
      continue;
    }
    BZ2_bzDecompressEnd(&b);
    return fail(Errc::kProtocol,
                "bzImage bzip2 payload: corrupt stream (bz error " + std::to_string(r) + ")");
  }
  BZ2_bzDecompressEnd(&b);
  out.resize(produced);
  return out;
}

// The lz4 "legacy" frame (lib/decompress_unlz4.c): u32 magic 0x184c2102, then chunks of
// u32 compressed size + LZ4 block, each block decompressing to at most 8 MiB. A size equal to
// the magic starts a new stream. The kernel appends a 4-byte decompressed size.
Result<std::vector<uint8_t>> unlz4(std::span<const uint8_t> in, std::size_t cap) {
  constexpr uint32_t kMagic = 0x184c2102;
  constexpr std::size_t kBlockMax = 8u << 20;
  const std::size_t bound = static_cast<std::size_t>(LZ4_compressBound(kBlockMax));
  std::vector<uint8_t> out;
  std::size_t pos = 4;  // past the magic
  // Every iteration consumes at least 4 input bytes, so the loop ends.
  while (pos <= in.size()) {
    if (in.size() - pos < 4) break;
    const uint32_t csize = le32(in.data() + pos);
    if (csize == kMagic) {
      pos += 4;
      continue;
    }
    if (in.size() - pos - 4 < csize || csize == 0) {
      if (!out.empty() && in.size() - pos <= 8) break;  // the size_append trailer
      return fail(Errc::kProtocol, "bzImage lz4 payload: chunk of " + std::to_string(csize) +
                                       " bytes at payload offset " + std::to_string(pos) +
                                       " runs past the payload");
    }
    if (csize > bound) {
      return fail(Errc::kProtocol, "bzImage lz4 payload: chunk too large");
    }
    if (out.size() >= cap) {
      return fail(Errc::kProtocol, "bzImage lz4 payload: output exceeds the cap");
    }
    const std::size_t old = out.size();
    out.resize(old + kBlockMax);
    const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data() + pos + 4),
                                      reinterpret_cast<char*>(out.data() + old),
                                      static_cast<int>(csize), static_cast<int>(kBlockMax));
    if (n < 0) return fail(Errc::kProtocol, "bzImage lz4 payload: corrupt block");
    out.resize(old + static_cast<std::size_t>(n));
    if (out.size() > cap)
      return fail(Errc::kProtocol, "bzImage lz4 payload: output exceeds the cap");
    pos += 4 + csize;
  }
  if (out.empty()) return fail(Errc::kProtocol, "bzImage lz4 payload: no data");
  return out;
}

}  // namespace

const char* compression_name(PayloadCompression c) noexcept {
  switch (c) {
    case PayloadCompression::kGzip:
      return "gzip";
    case PayloadCompression::kBzip2:
      return "bzip2";
    case PayloadCompression::kLzma:
      return "lzma";
    case PayloadCompression::kXz:
      return "xz";
    case PayloadCompression::kLzo:
      return "lzo";
    case PayloadCompression::kLz4:
      return "lz4";
    case PayloadCompression::kZstd:
      return "zstd";
    case PayloadCompression::kUnknown:
      break;
  }
  return "unknown";
}

Result<BzImagePayload> locate_bzimage_payload(std::span<const uint8_t> img) {
  if (img.size() < 0x250) {
    return fail(Errc::kProtocol, "bzImage: " + std::to_string(img.size()) +
                                     " bytes is shorter than the setup header");
  }
  if (std::memcmp(img.data() + 0x202, "HdrS", 4) != 0) {
    return fail(Errc::kProtocol, "bzImage: no \"HdrS\" magic at 0x202 (not a bzImage)");
  }
  BzImagePayload p;
  p.boot_protocol = le16(img.data() + 0x206);
  if (p.boot_protocol < 0x0208) {
    return fail(Errc::kProtocol,
                "bzImage: boot protocol " + hex(p.boot_protocol) + " predates payload fields");
  }
  unsigned setup_sects = img[0x1f1];
  if (setup_sects == 0) setup_sects = 4;
  const uint64_t pm_start = (static_cast<uint64_t>(setup_sects) + 1) * 512;
  const uint64_t off = le32(img.data() + 0x248);
  const uint64_t len = le32(img.data() + 0x24c);
  p.offset_bytes = pm_start + off;
  p.size_bytes = len;
  if (len == 0 || p.offset_bytes > img.size() || img.size() - p.offset_bytes < len) {
    return fail(Errc::kProtocol, "bzImage: payload " + hex(p.offset_bytes) + " + " + hex(len) +
                                     " lies outside the " + std::to_string(img.size()) +
                                     "-byte image");
  }
  p.compression = detect(img.subspan(p.offset_bytes, len));
  return p;
}

Result<std::vector<uint8_t>> decompress_bzimage(std::span<const uint8_t> bzimage,
                                                std::size_t max_output_bytes) {
  auto loc = locate_bzimage_payload(bzimage);
  if (!loc) return tl::unexpected(loc.error());
  const std::size_t cap = std::min(max_output_bytes, kMaxVmlinuxBytes);
  auto payload = bzimage.subspan(loc->offset_bytes, loc->size_bytes);
  switch (loc->compression) {
    case PayloadCompression::kXz:
      return unxz(payload, cap, false);
    case PayloadCompression::kLzma:
      return unxz(payload, cap, true);
    case PayloadCompression::kGzip:
      return ungzip(payload, cap);
    case PayloadCompression::kZstd:
      return unzstd(payload, cap);
    case PayloadCompression::kBzip2:
      return unbzip2(payload, cap);
    case PayloadCompression::kLz4:
      return unlz4(payload, cap);
    case PayloadCompression::kLzo:
      return fail(Errc::kUnsupported, "bzImage: lzo payloads are not supported");
    case PayloadCompression::kUnknown:
      break;
  }
  return fail(Errc::kUnsupported, "bzImage: payload has an unknown compression magic");
}

Result<std::vector<uint8_t>> read_file_bytes(const std::string& path, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return fail(Errc::kNotFound, "read " + path + ": no such file");
    return fail(Errc::kIo, "open " + path + ": " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(Errc::kIo, "read " + path + ": not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return fail(Errc::kInvalidArgument, "read " + path + ": " + std::to_string(st.st_size) +
                                            " bytes is over the limit of " +
                                            std::to_string(max_bytes));
  }
  std::vector<uint8_t> buf(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < buf.size()) {
    const ssize_t n = ::read(fd, buf.data() + got, buf.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      return fail(Errc::kIo, "read " + path + ": " + (n == 0 ? "short read" : std::strerror(e)));
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return buf;
}

Result<std::span<const uint8_t>> ElfSections::bytes(std::span<const uint8_t> image,
                                                    std::string_view name) const {
  auto it = sections.find(name);
  if (it == sections.end()) {
    return fail(Errc::kNotFound, "ELF: no section " + std::string(name));
  }
  const ElfSection& s = it->second;
  if (s.type == 8 /* SHT_NOBITS */ || s.offset > image.size() ||
      image.size() - s.offset < s.size_bytes) {
    return fail(Errc::kOutOfRange, "ELF: section " + std::string(name) + " has no file bytes");
  }
  return image.subspan(s.offset, s.size_bytes);
}

Result<ElfSections> read_elf_sections(std::span<const uint8_t> elf) {
  if (elf.size() < 64 || std::memcmp(elf.data(),
                                     "\x7f"
                                     "ELF",
                                     4) != 0) {
    return fail(Errc::kProtocol, "ELF: no ELF magic");
  }
  if (elf[4] != 2) return fail(Errc::kProtocol, "ELF: not ELF64");
  if (elf[5] != 1) return fail(Errc::kProtocol, "ELF: not little-endian");
  ElfSections out;
  const uint8_t* h = elf.data();
  out.machine = le16(h + 18);
  const uint64_t shoff = le64(h + 40);
  const uint16_t shentsize = le16(h + 58);
  uint64_t shnum = le16(h + 60);
  uint64_t shstrndx = le16(h + 62);
  if (shoff == 0) return fail(Errc::kProtocol, "ELF: no section header table");
  if (shentsize != 64) {
    return fail(Errc::kProtocol, "ELF: e_shentsize " + std::to_string(shentsize) + " != 64");
  }
  if (shoff > elf.size() || elf.size() - shoff < 64) {
    return fail(Errc::kProtocol, "ELF: section header table outside the image");
  }
  // Extended numbering (SHN_UNDEF count / SHN_XINDEX strndx) lives in section 0.
  if (shnum == 0) shnum = le64(elf.data() + shoff + 32);
  if (shstrndx == 0xffff) shstrndx = le32(elf.data() + shoff + 40);
  if (shnum == 0 || shnum > 65535 || (elf.size() - shoff) / 64 < shnum) {
    return fail(Errc::kProtocol,
                "ELF: " + std::to_string(shnum) + " section headers do not fit in the image");
  }
  if (shstrndx >= shnum) return fail(Errc::kProtocol, "ELF: e_shstrndx out of range");
  auto sh = [&](uint64_t i) { return elf.data() + shoff + i * 64; };
  const uint8_t* strhdr = sh(shstrndx);
  const uint64_t str_off = le64(strhdr + 24);
  const uint64_t str_size = le64(strhdr + 32);
  if (str_off > elf.size() || elf.size() - str_off < str_size) {
    return fail(Errc::kProtocol, "ELF: section name table outside the image");
  }
  for (uint64_t i = 1; i < shnum; ++i) {
    const uint8_t* p = sh(i);
    const uint32_t name_off = le32(p);
    if (name_off >= str_size) {
      return fail(Errc::kProtocol, "ELF: section " + std::to_string(i) + " name out of range");
    }
    const char* name = reinterpret_cast<const char*>(elf.data() + str_off + name_off);
    const std::size_t max_len = std::min<uint64_t>(256, str_size - name_off);
    const std::size_t len = strnlen(name, max_len);
    if (len == max_len) {
      return fail(Errc::kProtocol, "ELF: section " + std::to_string(i) + " name unterminated");
    }
    ElfSection s;
    s.type = le32(p + 4);
    s.flags = le64(p + 8);
    s.addr = le64(p + 16);
    s.offset = le64(p + 24);
    s.size_bytes = le64(p + 32);
    if (s.type != 8 && (s.offset > elf.size() || elf.size() - s.offset < s.size_bytes)) {
      return fail(Errc::kProtocol, "ELF: section " + std::string(name, len) + " (" + hex(s.offset) +
                                       " + " + hex(s.size_bytes) + ") lies outside the image");
    }
    out.sections.emplace(std::string(name, len), s);
  }
  if (auto it = out.sections.find(".text"); it != out.sections.end()) {
    out.text_addr = it->second.addr;
  }
  if (auto ro = out.bytes(elf, ".rodata"); ro) {
    // Several "Linux version <digit>" strings may exist: 6.1 keeps a __weak linux_banner
    // in init/version.c ("... # SMP ...", no build number) next to the one the kernel uses
    // (init/version-timestamp.c, "... #1 SMP ..."). Prefer one whose '#' has a number.
    constexpr std::string_view kNeedle = "Linux version ";
    std::string_view hay(reinterpret_cast<const char*>(ro->data()), ro->size());
    std::size_t n_seen = 0;
    for (std::size_t pos = hay.find(kNeedle); pos != std::string_view::npos && n_seen < 64;
         pos = hay.find(kNeedle, pos + 1), ++n_seen) {
      const std::size_t v = pos + kNeedle.size();
      if (v >= hay.size() || hay[v] < '0' || hay[v] > '9') continue;
      std::size_t end = v;
      while (end < hay.size() && end - pos < 512 && hay[end] != '\0' && hay[end] != '\n') ++end;
      const std::string_view cand = hay.substr(pos, end - pos);
      const std::size_t hash = cand.find(" #");
      const bool numbered = hash != std::string_view::npos && hash + 2 < cand.size() &&
                            cand[hash + 2] >= '0' && cand[hash + 2] <= '9';
      if (out.banner.empty() || numbered) out.banner = std::string(cand);
      if (numbered) break;
    }
  }
  return out;
}

}  // namespace glassbox::semantic_db
