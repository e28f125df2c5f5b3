#include "shared/ram_dump.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace glassbox::shared {
namespace {

constexpr uint64_t kMaxFileBytes = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
// Largest single pwrite: bounds the time between EINTR checks, not memory (no copy is made).
constexpr uint64_t kMaxWriteRunBytes = 8 * 1024 * 1024;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

void put_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_le32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

bool is_zero(const uint8_t* p, uint64_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

// Writes all of [src, src + n) at file offset `pos`, retrying on EINTR and short writes.
Result<void> pwrite_all(int fd, const uint8_t* src, uint64_t n, uint64_t pos,
                        const std::string& where) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, src, n, static_cast<off_t>(pos));
    if (w < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::kIo, errno_text(where + ": pwrite at " + hex(pos)));
    }
    if (w == 0) return fail(Errc::kIo, where + ": pwrite at " + hex(pos) + " wrote nothing");
    src += w;
    n -= static_cast<uint64_t>(w);
    pos += static_cast<uint64_t>(w);
  }
  return {};
}

// Writes [src, src + n) at file offset `pos`, skipping all-zero 4 KiB file pages (aligned
// on the file, not on `src`: a LiME range's data starts 32 bytes past a page boundary, and
// skipping source pages would leave every written page straddling two file blocks), which
// stay holes; the caller sets the final file size with ftruncate.
Result<void> write_sparse(int fd, const uint8_t* src, uint64_t n, uint64_t pos,
                          const std::string& where) {
  uint64_t run_start = 0;
  uint64_t run_len = 0;
  uint64_t len = 0;
  for (uint64_t off = 0; off < n; off += len) {
    len = std::min<uint64_t>(kPageSizeBytes - (pos + off) % kPageSizeBytes, n - off);
    const bool zero = is_zero(src + off, len);
    if (!zero) {
      if (run_len == 0) run_start = off;
      run_len += len;
    }
    if (run_len > 0 && (zero || run_len >= kMaxWriteRunBytes)) {
      GB_TRY(pwrite_all(fd, src + run_start, run_len, pos + run_start, where));
      run_len = 0;
    }
  }
  if (run_len > 0) GB_TRY(pwrite_all(fd, src + run_start, run_len, pos + run_start, where));
  return {};
}

// Writes the body of the dump into the open tmp file `fd` and sets its size.
Result<void> write_body(int fd, const RamView& ram, DumpFormat format, const std::string& where) {
  const std::vector<RamRegion>& regions = ram.layout().regions();
  if (format == DumpFormat::kRaw) {
    const uint64_t end = ram.layout().end_gpa().value;
    if (end > kMaxFileBytes) {
      return fail(Errc::kInvalidArgument,
                  where + ": end gpa " + hex(end) + " too large for a file");
    }
    for (const RamRegion& r : regions) {
      auto src = ram.at(r.gpa, r.size_bytes);
      if (!src) return tl::unexpected<Error>(std::move(src).error());
      GB_TRY(write_sparse(fd, *src, r.size_bytes, r.gpa.value, where));
    }
    if (::ftruncate(fd, static_cast<off_t>(end)) != 0) {
      return fail(Errc::kIo, errno_text(where + ": ftruncate"));
    }
    return {};
  }
  uint64_t pos = 0;
  for (const RamRegion& r : regions) {
    if (r.size_bytes > kMaxFileBytes - kLimeHeaderBytes ||
        pos > kMaxFileBytes - kLimeHeaderBytes - r.size_bytes) {
      return fail(Errc::kInvalidArgument, where + ": LiME file would exceed the largest file size");
    }
    auto src = ram.at(r.gpa, r.size_bytes);
    if (!src) return tl::unexpected<Error>(std::move(src).error());
    uint8_t header[kLimeHeaderBytes] = {};
    put_le32(header + 0, kLimeMagic);
    put_le32(header + 4, kLimeVersion);
    put_le64(header + 8, r.gpa.value);
    put_le64(header + 16, r.gpa.value + r.size_bytes - 1);  // inclusive
    GB_TRY(pwrite_all(fd, header, sizeof header, pos, where));
    GB_TRY(write_sparse(fd, *src, r.size_bytes, pos + kLimeHeaderBytes, where));
    pos += kLimeHeaderBytes + r.size_bytes;
  }
  if (::ftruncate(fd, static_cast<off_t>(pos)) != 0) {
    return fail(Errc::kIo, errno_text(where + ": ftruncate"));
  }
  return {};
}

// Parses and validates the LiME headers of a mapped file into regions pointing into it.
Result<std::vector<RamRegion>> parse_lime(const uint8_t* data, uint64_t size,
                                          const std::string& where) {
  std::vector<RamRegion> regions;
  uint64_t offset = 0;
  uint64_t prev_e_addr = 0;
  for (std::size_t index = 0; offset < size; ++index) {
    const auto bad = [&](const std::string& what) {
      return fail(Errc::kProtocol, where + ": LiME header " + std::to_string(index) +
                                       " at file offset " + hex(offset) + ": " + what);
    };
    if (index >= kMaxLimeRanges) {
      return bad("more than " + std::to_string(kMaxLimeRanges) + " ranges");
    }
    if (size - offset < kLimeHeaderBytes) {
      return bad("truncated header (" + std::to_string(size - offset) + " bytes left)");
    }
    const uint8_t* h = data + offset;
    const uint32_t magic = get_le32(h);
    const uint32_t version = get_le32(h + 4);
    const uint64_t s_addr = get_le64(h + 8);
    const uint64_t e_addr = get_le64(h + 16);
    if (magic != kLimeMagic) return bad("bad magic " + hex(magic));
    if (version != kLimeVersion) return bad("unsupported version " + std::to_string(version));
    if (e_addr < s_addr) return bad("e_addr " + hex(e_addr) + " is below s_addr " + hex(s_addr));
    if (s_addr == 0 && e_addr == std::numeric_limits<uint64_t>::max()) {
      return bad("range of 2^64 bytes");
    }
    if (index > 0 && s_addr <= prev_e_addr) {
      return bad("s_addr " + hex(s_addr) + " is not above the previous range's e_addr " +
                 hex(prev_e_addr) + " (ranges must be sorted and must not overlap)");
    }
    const uint64_t len = e_addr - s_addr + 1;
    const uint64_t data_offset = offset + kLimeHeaderBytes;
    if (len > size - data_offset) {
      return bad("range data of " + hex(len) + " bytes runs past the end of the file (" +
                 hex(size) + " bytes)");
    }
    regions.push_back(RamRegion{Gpa(s_addr), len, data_offset});
    prev_e_addr = e_addr;
    offset = data_offset + len;
  }
  return regions;
}

}  // namespace

Result<void> write_dump(const std::string& path, const RamView& ram, DumpFormat format) {
  const std::string where = "write_dump " + path;
  if (ram.layout().regions().empty()) {
    return fail(Errc::kInvalidArgument, where + ": the RAM view has no regions");
  }
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Errc::kIo, errno_text(where + ": open " + tmp));
  auto result = write_body(fd, ram, format, where);
  if (result && ::fsync(fd) != 0) result = fail(Errc::kIo, errno_text(where + ": fsync"));
  if (::close(fd) != 0 && result) result = fail(Errc::kIo, errno_text(where + ": close"));
  if (result && ::rename(tmp.c_str(), path.c_str()) != 0) {
    result = fail(Errc::kIo, errno_text(where + ": rename " + tmp));
  }
  if (!result) ::unlink(tmp.c_str());
  return result;
}

LoadedDump::LoadedDump(std::string path, DumpFormat format, void* map, uint64_t map_size_bytes,
                       RamLayout layout)
    : path_(std::move(path)),
      format_(format),
      map_(map),
      map_size_bytes_(map_size_bytes),
      view_(static_cast<const uint8_t*>(map), map_size_bytes, std::move(layout)) {}

LoadedDump::LoadedDump(LoadedDump&& other) noexcept
    : path_(std::move(other.path_)),
      format_(other.format_),
      map_(std::exchange(other.map_, nullptr)),
      map_size_bytes_(std::exchange(other.map_size_bytes_, 0)),
      view_(std::move(other.view_)) {}

LoadedDump& LoadedDump::operator=(LoadedDump&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    format_ = other.format_;
    map_ = std::exchange(other.map_, nullptr);
    map_size_bytes_ = std::exchange(other.map_size_bytes_, 0);
    view_ = std::move(other.view_);
  }
  return *this;
}

LoadedDump::~LoadedDump() { unmap(); }

void LoadedDump::unmap() noexcept {
  if (map_ != nullptr) ::munmap(map_, map_size_bytes_);
  map_ = nullptr;
}

Result<LoadedDump> open_dump(const std::string& path) {
  const std::string where = "open_dump " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const Errc code = errno == ENOENT ? Errc::kNotFound : Errc::kIo;
    return fail(code, errno_text(where + ": open"));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    auto err = fail(Errc::kIo, errno_text(where + ": fstat"));
    ::close(fd);
    return err;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(Errc::kIo, where + ": not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return fail(Errc::kProtocol, where + ": empty file");
  }
  // MAP_POPULATE: introspection scans every page anyway (VMCOREINFO, page tables); mapping
  // them in one call costs a third of faulting them in one by one (256 MiB: ~40 vs ~50 ms
  // for a whole `glassbox ps --ram`).
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  const int mmap_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    errno = mmap_errno;
    return fail(Errc::kIo, errno_text(where + ": mmap"));
  }
  const auto* bytes = static_cast<const uint8_t*>(map);
  if (size >= 4 && get_le32(bytes) == kLimeMagic) {
    auto regions = parse_lime(bytes, size, where);
    if (!regions) {
      ::munmap(map, size);
      return tl::unexpected<Error>(std::move(regions).error());
    }
    auto layout = RamLayout::from_regions(std::move(*regions), size, RamAlignment::kByte);
    if (!layout) {
      ::munmap(map, size);
      return fail(Errc::kProtocol, where + ": " + layout.error().message);
    }
    return LoadedDump(path, DumpFormat::kLime, map, size, std::move(*layout));
  }
  return LoadedDump(path, DumpFormat::kRaw, map, size, RamLayout::identity(size));
}

}  // namespace glassbox::shared
