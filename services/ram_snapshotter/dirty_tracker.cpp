#include "services/ram_snapshotter/dirty_tracker.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>
#include <utility>

// XXH3-64, twice. (1) The library's XXH3_64bits: its baseline x86-64 build is SSE2, which hashes
// at about 10-18 GB/s here, below memory bandwidth. (2) The same algorithm inlined from the header
// with its AVX2 kernel (about 40 GB/s in L2 here), compiled for AVX2 in this unit only and chosen
// at run time. Both give identical hashes. Debian's libxxhash.so also exports
// XXH3_64bits_dispatch, but its static libxxhash.a does not: inlining keeps us independent of how
// the library was built and linked.
#include <xxhash.h>

namespace {
using Xxh3Fn = XXH64_hash_t (*)(const void*, size_t);
constexpr Xxh3Fn kLibraryXxh3 = &XXH3_64bits;  // before the inline re-include renames it
}  // namespace

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GB_XXH3_AVX2 1
#include <immintrin.h>  // the AVX2 intrinsics (declared with their own target attributes)
#pragma GCC push_options
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>
#pragma GCC pop_options
#endif

namespace glassbox::ram_snapshotter {

namespace {

// Hashes pages [first, last) of `base`, stores the hashes, and appends to `out` the pages whose
// hash changed (every page when `!primed`).
template <typename Hash>
__attribute__((always_inline)) inline void hash_pages_with(Hash hash, const uint8_t* base,
                                                           uint64_t first, uint64_t last,
                                                           uint64_t* hashes, bool primed,
                                                           std::vector<uint64_t>& out) {
  for (uint64_t i = first; i < last; ++i) {
    const uint64_t h = hash(base + i * kDirtyPageBytes);
    if (h != hashes[i] || !primed) {
      hashes[i] = h;
      out.push_back(i);
    }
  }
}

// One page's hash: the library's build, or the inlined AVX2 kernel (identical values).
inline uint64_t hash_page_library(const uint8_t* page) {
  return kLibraryXxh3(page, kDirtyPageBytes);
}

void hash_pages_library(const uint8_t* base, uint64_t first, uint64_t last, uint64_t* hashes,
                        bool primed, std::vector<uint64_t>& out) {
  hash_pages_with([](const uint8_t* p) { return hash_page_library(p); }, base, first, last, hashes,
                  primed, out);
}

#if GB_XXH3_AVX2
__attribute__((target("avx2"))) inline uint64_t hash_page_avx2(const uint8_t* page) {
  return XXH3_64bits(page, kDirtyPageBytes);  // the inlined AVX2 kernel
}

__attribute__((target("avx2"))) void hash_pages_avx2(const uint8_t* base, uint64_t first,
                                                     uint64_t last, uint64_t* hashes, bool primed,
                                                     std::vector<uint64_t>& out) {
  hash_pages_with(
      [](const uint8_t* p) __attribute__((target("avx2"))) { return hash_page_avx2(p); }, base,
      first, last, hashes, primed, out);
}
#endif

using HashPagesFn = void (*)(const uint8_t*, uint64_t, uint64_t, uint64_t*, bool,
                             std::vector<uint64_t>&);
using HashPageFn = uint64_t (*)(const uint8_t*);

// Whether this CPU runs the AVX2 kernel. Decided once (a function-local static, so it is ready
// even for callers in other units' static initializers).
bool use_avx2() {
#if GB_XXH3_AVX2
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return avx2;
#else
  return false;
#endif
}

// The AVX2 kernel where the CPU has AVX2, else the library's: for many pages, and for one.
HashPagesFn hash_pages_for_this_cpu() {
#if GB_XXH3_AVX2
  if (use_avx2()) return &hash_pages_avx2;
#endif
  return &hash_pages_library;
}
HashPageFn hash_page_for_this_cpu() {
#if GB_XXH3_AVX2
  if (use_avx2()) return &hash_page_avx2;
#endif
  return &hash_page_library;
}

constexpr uint64_t kMinBlockPages = 256;  // 1 MiB: ~40 us of hashing, cheap to claim

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

// ---- HashDirtyTracker::WorkerPool ---------------------------------------------------------
//
// Protocol. `state_` packs (n_blocks << 32 | next_block). The owner publishes a job by writing
// the job fields and then storing (n_blocks, 0) with release; everyone (owner included) claims
// block `next` with a CAS to next + 1 and reads the job fields only after a successful claim.
// A claim of block b < n_blocks keeps the job alive: the owner does not finish a scan (nor
// write the next job) before `blocks_done_` reaches n_blocks. A stale CAS can only succeed when
// the word is exactly as loaded, i.e. when that block is unclaimed in the current job, so a
// worker that slept through whole scans claims correctly. The owner never waits for a worker
// that has not claimed anything: slow-to-wake workers cost nothing.
class HashDirtyTracker::WorkerPool {
 public:
  explicit WorkerPool(unsigned n_workers) : lanes_(n_workers + 1) {
    workers_.reserve(n_workers);
    for (unsigned i = 0; i < n_workers; ++i) {
      workers_.emplace_back([this, lane = i + 1] { worker_main(lane); });
    }
  }

  ~WorkerPool() {
    stop_.store(true, std::memory_order_release);
    state_.store(kStopState, std::memory_order_release);
    state_.notify_all();
    for (auto& t : workers_) t.join();
  }

  // Hashes [0, n_pages) with the workers; appends changed pages to `out` in page order.
  void run(const uint8_t* base, uint64_t n_pages, uint64_t* hashes, bool primed,
           std::vector<uint64_t>& out) {
    const uint64_t block_pages = std::max(kMinBlockPages, (n_pages + 0xFFFFFFFEu) / 0xFFFFFFFFu);
    const uint64_t n_blocks = (n_pages + block_pages - 1) / block_pages;
    for (auto& lane : lanes_) {
      lane.dirty.clear();
      lane.dirty.reserve(n_pages);  // no allocation (nor bad_alloc) inside the workers
    }
    spans_.resize(n_blocks);
    hash_pages_ = hash_pages_for_this_cpu();
    base_ = base;
    n_pages_ = n_pages;
    block_pages_ = block_pages;
    hashes_ = hashes;
    primed_ = primed;
    blocks_done_.store(0, std::memory_order_relaxed);
    state_.store(n_blocks << 32, std::memory_order_release);
    state_.notify_all();

    claim_and_hash(0);
    // Workers still hashing a claimed block: at most one block each.
    for (unsigned spins = 0; blocks_done_.load(std::memory_order_acquire) != n_blocks; ++spins) {
      if (spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }

    for (const Span& s : spans_) {
      const auto& d = lanes_[s.lane].dirty;
      out.insert(out.end(), d.begin() + static_cast<std::ptrdiff_t>(s.begin),
                 d.begin() + static_cast<std::ptrdiff_t>(s.end));
    }
  }

 private:
  static constexpr uint64_t kStopState = 1;  // n_blocks 0, next 1: nothing to claim

  struct Span {
    uint32_t lane = 0;
    uint64_t begin = 0;  // range of lanes_[lane].dirty
    uint64_t end = 0;
  };
  struct alignas(64) Lane {
    std::vector<uint64_t> dirty;  // written only by its lane during a scan
  };

  // Claims blocks until none is left in the current job. Returns the last state seen.
  uint64_t claim_and_hash(unsigned lane) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      const uint64_t n_blocks = s >> 32;
      const uint64_t next = s & 0xFFFFFFFFu;
      if (next >= n_blocks) return s;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        continue;  // `s` reloaded
      }
      const uint64_t first = next * block_pages_;
      const uint64_t last = std::min(n_pages_, first + block_pages_);
      auto& dirty = lanes_[lane].dirty;
      const uint64_t begin = dirty.size();
      hash_pages_(base_, first, last, hashes_, primed_, dirty);
      spans_[next] = Span{lane, begin, dirty.size()};
      blocks_done_.fetch_add(1, std::memory_order_acq_rel);
      s = state_.load(std::memory_order_acquire);
    }
  }

  void worker_main(unsigned lane) {
    for (;;) {
      const uint64_t seen = claim_and_hash(lane);
      if (stop_.load(std::memory_order_acquire)) return;
      state_.wait(seen, std::memory_order_acquire);
    }
  }

  std::vector<Lane> lanes_;  // 0: the owner's thread
  std::vector<std::thread> workers_;
  std::vector<Span> spans_;  // one per block of the current job
  // Job fields: written by the owner between jobs, read by claimers after a claim.
  HashPagesFn hash_pages_ = nullptr;
  const uint8_t* base_ = nullptr;
  uint64_t n_pages_ = 0;
  uint64_t block_pages_ = kMinBlockPages;
  uint64_t* hashes_ = nullptr;
  bool primed_ = false;
  alignas(64) std::atomic<uint64_t> state_{0};
  alignas(64) std::atomic<uint64_t> blocks_done_{0};
  std::atomic<bool> stop_{false};
};

// ---- HashDirtyTracker -------------------------------------------------------------------

HashDirtyTracker::HashDirtyTracker(unsigned threads)
    : threads_(std::clamp(threads, 1u, 64u)),
      pool_(threads_ > 1 ? std::make_unique<WorkerPool>(threads_ - 1) : nullptr) {}

HashDirtyTracker::~HashDirtyTracker() = default;

Result<void> HashDirtyTracker::scan(const uint8_t* base, uint64_t size_bytes,
                                    std::vector<uint64_t>& dirty) {
  if (size_bytes % kDirtyPageBytes != 0) {
    return fail(Errc::kInvalidArgument, "dirty tracker: size " + std::to_string(size_bytes) +
                                            " bytes is not a multiple of 4096");
  }
  if (base == nullptr && size_bytes != 0) {
    return fail(Errc::kInvalidArgument, "dirty tracker: null base for a non-empty range");
  }
  const uint64_t n_pages = size_bytes / kDirtyPageBytes;
  if (hashes_.size() != n_pages) {
    hashes_.assign(n_pages, 0);
    primed_ = false;
  }
  if (!primed_) dirty.reserve(dirty.size() + n_pages);
  if (pool_ != nullptr && n_pages > kMinBlockPages) {
    pool_->run(base, n_pages, hashes_.data(), primed_, dirty);
  } else {
    hash_pages_for_this_cpu()(base, 0, n_pages, hashes_.data(), primed_, dirty);
  }
  primed_ = true;
  return {};
}

void HashDirtyTracker::reset() { primed_ = false; }

void HashDirtyTracker::note_published(uint64_t page_index, const uint8_t* bytes) {
  if (!primed_ || page_index >= hashes_.size()) return;
  hashes_[page_index] = hash_page_for_this_cpu()(bytes);
}

// ---- /proc parsing ----------------------------------------------------------------------

namespace {

// Splits off the next space-delimited token of `s` (skipping leading spaces).
std::string_view next_token(std::string_view& s) {
  const size_t b = s.find_first_not_of(' ');
  if (b == std::string_view::npos) {
    s = {};
    return {};
  }
  s.remove_prefix(b);
  const size_t e = std::min(s.find(' '), s.size());
  const std::string_view tok = s.substr(0, e);
  s.remove_prefix(e);
  return tok;
}

template <typename T>
bool parse_number(std::string_view s, T& value, int base) {
  if (s.empty()) return false;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Result<MapsEntry> parse_maps_line(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  auto bad = [line](const char* what) {
    return fail(Errc::kProtocol,
                std::string("maps line: ") + what + ": '" + std::string(line) + "'");
  };
  std::string_view rest = line;
  MapsEntry e;

  const std::string_view range = next_token(rest);
  const size_t dash = range.find('-');
  if (dash == std::string_view::npos || !parse_number(range.substr(0, dash), e.start, 16) ||
      !parse_number(range.substr(dash + 1), e.end, 16)) {
    return bad("bad address range");
  }
  if (e.start > e.end) return bad("start above end");

  const std::string_view perms = next_token(rest);
  if (perms.size() != 4) return bad("bad permissions");
  e.readable = perms[0] == 'r';
  e.writable = perms[1] == 'w';
  e.executable = perms[2] == 'x';
  e.shared = perms[3] == 's';

  if (!parse_number(next_token(rest), e.offset, 16)) return bad("bad offset");

  const std::string_view dev = next_token(rest);
  const size_t colon = dev.find(':');
  if (colon == std::string_view::npos || !parse_number(dev.substr(0, colon), e.dev_major, 16) ||
      !parse_number(dev.substr(colon + 1), e.dev_minor, 16)) {
    return bad("bad device");
  }
  if (!parse_number(next_token(rest), e.inode, 10)) return bad("bad inode");

  const size_t p = rest.find_first_not_of(' ');
  if (p != std::string_view::npos) e.path = std::string(rest.substr(p));
  return e;
}

Result<FileId> file_id_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return fail(err == ENOENT ? Errc::kNotFound : Errc::kIo,
                "stat " + path + ": " + std::strerror(err));
  }
  return FileId{major(st.st_dev), minor(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

Result<std::vector<FileMapping>> find_file_mappings(std::string_view maps_text,
                                                    const FileId& file) {
  std::vector<FileMapping> out;
  while (!maps_text.empty()) {
    const size_t nl = maps_text.find('\n');
    const std::string_view line = maps_text.substr(0, nl);
    maps_text.remove_prefix(nl == std::string_view::npos ? maps_text.size() : nl + 1);
    if (line.empty()) continue;
    auto e = parse_maps_line(line);
    if (!e) return tl::unexpected(std::move(e).error());
    if (e->inode == file.inode && e->dev_major == file.dev_major &&
        e->dev_minor == file.dev_minor && e->end > e->start) {
      out.push_back(FileMapping{e->start, e->offset, e->end - e->start});
    }
  }
  std::sort(out.begin(), out.end(), [](const FileMapping& a, const FileMapping& b) {
    return a.file_offset != b.file_offset ? a.file_offset < b.file_offset : a.vaddr < b.vaddr;
  });
  return out;
}

// ---- SoftDirtyTracker -------------------------------------------------------------------

namespace {

constexpr size_t kPagemapBatchEntries = 64 * 1024;  // 512 KiB per pread
constexpr auto kProbePollInterval = std::chrono::milliseconds(5);
constexpr uint64_t kSoftDirtyMask = uint64_t{1} << kPagemapSoftDirtyBit;

std::string errno_text(int err) { return std::strerror(err); }

// A failed system call on a /proc/PID file: kUnavailable when the process is gone (ESRCH),
// else kIo. Reads errno.
tl::unexpected<Error> fail_proc(const std::string& what) {
  const int err = errno;
  return fail(err == ESRCH ? Errc::kUnavailable : Errc::kIo,
              what + ": " + errno_text(err) + (err == ESRCH ? " (the writer exited)" : ""));
}

// Reads all of a /proc seq file from offset 0 into `out`. When the process is gone: empty, or
// kUnavailable (ESRCH), depending on the kernel.
Result<void> read_proc_text(int fd, const std::string& what, std::string& out) {
  out.clear();
  if (::lseek(fd, 0, SEEK_SET) < 0) return fail_proc("lseek " + what);
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_proc("read " + what);
    }
    if (n == 0) return {};
    out.append(buf, static_cast<size_t>(n));
  }
}

// preads the `n` pagemap entries of vaddr `vaddr` onward into `entries`, looping on short reads.
// kUnavailable when it reads empty or fails with ESRCH (the process exited).
Result<void> read_pagemap(int fd, pid_t pid, uint64_t vaddr, size_t n, uint64_t* entries) {
  const uint64_t offset = vaddr / kDirtyPageBytes * sizeof(uint64_t);
  size_t done_bytes = 0;
  const size_t want_bytes = n * sizeof(uint64_t);
  while (done_bytes < want_bytes) {
    const ssize_t r = ::pread(fd, reinterpret_cast<char*>(entries) + done_bytes,
                              want_bytes - done_bytes, static_cast<off_t>(offset + done_bytes));
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail_proc("pread /proc/" + std::to_string(pid) + "/pagemap");
    }
    if (r == 0) {
      return fail(Errc::kUnavailable,
                  "/proc/" + std::to_string(pid) + "/pagemap reads empty: the writer exited");
    }
    done_bytes += static_cast<size_t>(r);
  }
  return {};
}

Result<void> write_clear_refs(int fd, pid_t pid) {
  for (;;) {
    const ssize_t r = ::write(fd, "4", 1);
    if (r == 1) return {};
    if (r < 0 && errno == EINTR) continue;
    if (r >= 0) errno = EIO;
    return fail_proc("write 4 to /proc/" + std::to_string(pid) + "/clear_refs");
  }
}

// Does this kernel track soft-dirty at all? A fresh VMA is soft-dirty (VM_SOFTDIRTY) and a write
// fault sets the PTE's bit, so a page we just mapped and wrote must read soft-dirty.
Result<void> self_test_soft_dirty() {
  void* p =
      ::mmap(nullptr, kDirtyPageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return fail_errno("mmap probe page");
  static_cast<volatile uint8_t*>(p)[0] = 1;
  uint64_t entry = 0;
  Result<void> result{};
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    result = fail_errno("open /proc/self/pagemap");
  } else {
    result = read_pagemap(fd, ::getpid(), reinterpret_cast<uint64_t>(p), 1, &entry);
    ::close(fd);
  }
  ::munmap(p, kDirtyPageBytes);
  GB_TRY(result);
  if (!decode_pagemap_entry(entry).soft_dirty) {
    return fail(Errc::kUnsupported,
                "kernel does not track soft-dirty (a freshly written page reads soft-dirty=0 in "
                "/proc/self/pagemap; CONFIG_MEM_SOFT_DIRTY off?)");
  }
  return {};
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// Any soft-dirty page in the mappings? Reads the entries in batches.
Result<bool> any_soft_dirty(int pagemap_fd, pid_t pid, const std::vector<FileMapping>& maps,
                            std::vector<uint64_t>& entries) {
  for (const FileMapping& m : maps) {
    const uint64_t n_pages = m.size_bytes / kDirtyPageBytes;
    for (uint64_t i = 0; i < n_pages; i += kPagemapBatchEntries) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kPagemapBatchEntries, n_pages - i));
      entries.resize(n);
      GB_TRY(read_pagemap(pagemap_fd, pid, m.vaddr + i * kDirtyPageBytes, n, entries.data()));
      for (const uint64_t e : entries) {
        if (e & kSoftDirtyMask) return true;
      }
    }
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<SoftDirtyTracker>> SoftDirtyTracker::probe(pid_t writer_pid,
                                                                  const std::string& ram_file_path,
                                                                  std::chrono::milliseconds wait) {
  if (writer_pid <= 0) {
    return fail(Errc::kInvalidArgument, "soft-dirty probe: bad pid " + std::to_string(writer_pid));
  }
  if (ram_file_path.empty()) {
    return fail(Errc::kInvalidArgument, "soft-dirty probe: empty RAM file path");
  }
  // Every failure below means "use xxh3 instead": kUnsupported with the original message.
  auto unsupported = [](const Error& e) {
    return fail(Errc::kUnsupported, "soft-dirty: " + e.message);
  };
  auto unsupported_errno = [&](const std::string& what) {
    return unsupported(fail_errno(what).value());
  };
  if (auto r = self_test_soft_dirty(); !r) return unsupported(r.error());

  const std::string proc = "/proc/" + std::to_string(writer_pid);
  auto file = file_id_of(ram_file_path);
  if (!file) return unsupported(file.error());

  Fd maps_fd(::open((proc + "/maps").c_str(), O_RDONLY | O_CLOEXEC));
  if (maps_fd.fd < 0) return unsupported_errno("open " + proc + "/maps");
  std::string maps_text;
  if (auto r = read_proc_text(maps_fd.fd, proc + "/maps", maps_text); !r) {
    return unsupported(r.error());
  }
  auto maps = find_file_mappings(maps_text, *file);
  if (!maps) return unsupported(maps.error());
  if (maps->empty()) {
    return fail(Errc::kUnsupported,
                "soft-dirty: pid " + std::to_string(writer_pid) + " does not map " + ram_file_path);
  }

  Fd pagemap_fd(::open((proc + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (pagemap_fd.fd < 0) return unsupported_errno("open " + proc + "/pagemap");
  Fd clear_refs_fd(::open((proc + "/clear_refs").c_str(), O_WRONLY | O_CLOEXEC));
  if (clear_refs_fd.fd < 0) {
    return unsupported_errno("open " + proc + "/clear_refs for writing");
  }

  std::vector<uint64_t> entries;
  if (auto r = any_soft_dirty(pagemap_fd.fd, writer_pid, *maps, entries); !r) {
    return unsupported(r.error());
  }
  if (auto r = write_clear_refs(clear_refs_fd.fd, writer_pid); !r) return unsupported(r.error());

  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto dirty = any_soft_dirty(pagemap_fd.fd, writer_pid, *maps, entries);
    if (!dirty) return unsupported(dirty.error());
    if (*dirty) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(Errc::kUnsupported,
                  "soft-dirty: no page of " + ram_file_path + " in pid " +
                      std::to_string(writer_pid) + " turned soft-dirty within " +
                      std::to_string(wait.count()) + " ms after clear_refs (guest not running?)");
    }
    std::this_thread::sleep_for(kProbePollInterval);
  }

  return std::unique_ptr<SoftDirtyTracker>(
      new SoftDirtyTracker(writer_pid, ram_file_path, *file, maps_fd.release(),
                           pagemap_fd.release(), clear_refs_fd.release()));
}

SoftDirtyTracker::SoftDirtyTracker(pid_t writer_pid, std::string ram_file_path, FileId file,
                                   int maps_fd, int pagemap_fd, int clear_refs_fd)
    : writer_pid_(writer_pid),
      ram_file_path_(std::move(ram_file_path)),
      file_(file),
      maps_fd_(maps_fd),
      pagemap_fd_(pagemap_fd),
      clear_refs_fd_(clear_refs_fd) {}

SoftDirtyTracker::~SoftDirtyTracker() {
  ::close(maps_fd_);
  ::close(pagemap_fd_);
  ::close(clear_refs_fd_);
}

void SoftDirtyTracker::reset() { primed_ = false; }

Result<void> SoftDirtyTracker::scan(const uint8_t* /*base*/, uint64_t size_bytes,
                                    std::vector<uint64_t>& dirty) {
  if (size_bytes % kDirtyPageBytes != 0) {
    return fail(Errc::kInvalidArgument, "dirty tracker: size " + std::to_string(size_bytes) +
                                            " bytes is not a multiple of 4096");
  }
  const std::string proc = "/proc/" + std::to_string(writer_pid_);
  if (size_bytes != last_size_bytes_) primed_ = false;
  const uint64_t n_pages = size_bytes / kDirtyPageBytes;

  // (1) Where the writer maps the file now.
  GB_TRY(read_proc_text(maps_fd_, proc + "/maps", maps_text_));
  if (maps_text_.empty()) {
    return fail(Errc::kUnavailable, "writer pid " + std::to_string(writer_pid_) + " exited");
  }
  auto maps = find_file_mappings(maps_text_, file_);
  if (!maps) return tl::unexpected(std::move(maps).error());

  // (2) Soft-dirty bits of every mapped page of [0, size_bytes); OR over repeated mappings.
  constexpr uint8_t kUnmapped = 0, kClean = 1, kDirty = 2;
  page_state_.assign(n_pages, kUnmapped);
  for (const FileMapping& m : *maps) {
    const uint64_t first = m.file_offset / kDirtyPageBytes;
    const uint64_t last = std::min(n_pages, (m.file_offset + m.size_bytes) / kDirtyPageBytes);
    for (uint64_t p = first; p < last; p += kPagemapBatchEntries) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kPagemapBatchEntries, last - p));
      const uint64_t vaddr = m.vaddr + (p - first) * kDirtyPageBytes;
      if (primed_) {
        entries_.resize(n);
        GB_TRY(read_pagemap(pagemap_fd_, writer_pid_, vaddr, n, entries_.data()));
        for (size_t i = 0; i < n; ++i) {
          const uint8_t s = (entries_[i] & kSoftDirtyMask) ? kDirty : kClean;
          page_state_[p + i] = std::max(page_state_[p + i], s);
        }
      } else {
        std::fill_n(page_state_.begin() + static_cast<std::ptrdiff_t>(p), n, kDirty);
      }
    }
  }
  const auto unmapped = std::find(page_state_.begin(), page_state_.end(), kUnmapped);
  if (unmapped != page_state_.end()) {
    const uint64_t page = static_cast<uint64_t>(unmapped - page_state_.begin());
    return fail(Errc::kOutOfRange, "writer pid " + std::to_string(writer_pid_) +
                                       " does not map page " + std::to_string(page) + " of " +
                                       ram_file_path_ + " (scan covers " +
                                       std::to_string(size_bytes) + " bytes)");
  }

  // (3) Clear. Writes since (2) read their page's entry are lost here (see the header).
  GB_TRY(write_clear_refs(clear_refs_fd_, writer_pid_));

  for (uint64_t i = 0; i < n_pages; ++i) {
    if (page_state_[i] == kDirty) dirty.push_back(i);
  }
  primed_ = true;
  last_size_bytes_ = size_bytes;
  return {};
}

// ---- choice of method --------------------------------------------------------------------

Result<DirtyTrackerChoice> make_dirty_tracker(std::string_view method,
                                              const DirtyTrackerOptions& options) {
  DirtyTrackerChoice choice;
  if (method == "xxh3") {
    choice.tracker = std::make_unique<HashDirtyTracker>(options.hash_threads);
    return choice;
  }
  if (method != "soft-dirty" && method != "auto") {
    return fail(Errc::kInvalidArgument, "snapshot method '" + std::string(method) +
                                            "' is not one of xxh3, soft-dirty, auto");
  }
  auto probed =
      SoftDirtyTracker::probe(options.writer_pid, options.ram_file_path, options.probe_wait);
  if (probed) {
    choice.tracker = std::move(*probed);
    return choice;
  }
  if (method == "soft-dirty" || probed.error().code != Errc::kUnsupported) {
    return tl::unexpected(std::move(probed).error());
  }
  choice.tracker = std::make_unique<HashDirtyTracker>(options.hash_threads);
  choice.fallback_reason = probed.error().message;
  return choice;
}

}  // namespace glassbox::ram_snapshotter
