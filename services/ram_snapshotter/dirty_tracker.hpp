// Dirty-page tracking for ram-snapshotter: which 4 KiB pages of the guest RAM file changed
// since the last snapshot cycle.
//
// QEMU writes guest RAM live into a MAP_SHARED file (/dev/shm/glassbox-INSTANCE.ram,
// `memory-backend-file,share=on`); ram-snapshotter maps it PROT_READ and, at `[snapshot] hz`,
// asks a DirtyTracker for the pages that changed, then publishes them. Two methods:
//
//   "xxh3"        HashDirtyTracker: hashes every page with XXH3-64 and compares with the previous
//                 cycle's hash. Works everywhere; reads all of RAM once per cycle (it runs at
//                 memory bandwidth: see tests/bench/ram_bench.cpp for the figures).
//   "soft-dirty"  SoftDirtyTracker: the kernel's soft-dirty bits of the writer's (QEMU's) page
//                 tables, via /proc/PID/clear_refs and /proc/PID/pagemap. Reads 8 bytes per page
//                 instead of 4096, but needs CONFIG_MEM_SOFT_DIRTY, the rights to clear QEMU's
//                 bits, and it only sees writes made through QEMU's own page tables. It has a
//                 small loss window per cycle (see SoftDirtyTracker): use it with keyframes.
//
// Page indices are file offsets / 4096 (for the pc machine below the PCI hole, gfns).
//
// Sources: Linux Documentation/admin-guide/mm/soft-dirty.rst and pagemap.rst; proc(5) for
// /proc/PID/maps; xxHash 0.8 (XXH3_64bits).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::ram_snapshotter {

// Page granularity of every tracker, bytes.
inline constexpr uint64_t kDirtyPageBytes = 4096;

// Finds the pages of a RAM range that changed between successive scans.
// Thread-safety: not thread-safe; one owner calls scan() and reset() (implementations may use
// worker threads of their own inside scan()).
class DirtyTracker {
 public:
  virtual ~DirtyTracker() = default;

  // "xxh3" or "soft-dirty": the value of the `[snapshot] method` key. Static string.
  virtual const char* method() const = 0;

  // Appends to `dirty`, in ascending order and without duplicates, the indices (file offset /
  // 4096) of the pages of [base, base + size_bytes) that changed since the previous scan. The
  // first scan after construction or reset() reports every page. Nothing is appended on error.
  // `base`: the caller's mapping of the RAM file, offset 0; it must stay mapped during the call.
  // `size_bytes`: a multiple of 4096 (errors: kInvalidArgument); a size different from the
  // previous scan's starts a new history (every page reported).
  // Thread-safety: one owner (see the class). Other errors: see each implementation.
  [[nodiscard]] virtual Result<void> scan(const uint8_t* base, uint64_t size_bytes,
                                          std::vector<uint64_t>& dirty) = 0;

  // Forgets the history: the next scan reports every page. Call it when the RAM file was
  // remapped or the VM restarted.
  virtual void reset() = 0;

  // Tells the tracker that subscribers now hold `bytes` (4096 of them, the copy just written
  // into a published chunk) as page `page_index`. Call it after every scan for each page
  // published, with the copy, not the live page: the copy is taken after the scan, and a page
  // can change between the two and change back afterwards (a lock word taken and released),
  // so only the copy says what subscribers have. A hash tracker makes the copy's hash its
  // baseline; trackers that see writes (soft-dirty) ignore it. Out-of-range indices (a size
  // change since the last scan) are ignored.
  // Thread-safety: one owner (see the class).
  virtual void note_published(uint64_t page_index, const uint8_t* bytes) = 0;
};

// XXH3-64 of every 4 KiB page against the previous scan's hash.
//
// Cost: reads all `size_bytes` once per scan (no zero-page or sampling shortcut) and keeps one
// u64 per page (8 bytes per 4 KiB, 0.2 %). Measured at memory bandwidth on this project's hosts.
// `threads` > 1 splits each scan into 1 MiB blocks that `threads - 1` persistent workers and the
// calling thread claim dynamically; a worker that is slow to wake is simply not waited for (the
// caller takes the blocks it would have hashed). Dirty lists are merged in page order.
//
// Pages that change during a scan: a page written while it is being hashed gets a hash of a
// mixture of old and new bytes. Either that differs from the previous hash (reported now) or it
// does not (the write landed after the bytes were read); in both cases the next scan compares the
// final content with the stored hash and reports it then. So a write is reported by the scan
// during which it happens or the next one. Misses: only XXH3-64 collisions (2^-64 per changed page
// per scan), which the caller's periodic keyframes repair. Reading memory that another process
// writes is benign here: the bytes are only hashed, never trusted.
//
// The baseline must be what subscribers hold, not what the scan saw: the caller copies a dirty
// page after the scan, and a page can be X at the scan, Y at the copy and X again afterwards
// (a spinlock or flag word: taken during the copy, released after). With the scan's hash as
// baseline the next scans see X == baseline and never send X again, so every mirror keeps Y
// until the next keyframe (seen here: kernel .data pages stale for a minute, `ps` listing
// exited tasks). So the caller passes each copy to note_published(), which makes the copy's
// hash the baseline; then X != hash(Y) and the page is sent again next cycle.
//
// Hash: XXH3_64bits (xxHash 0.8). On x86-64 CPUs with AVX2, the header's AVX2 kernel inlined
// into dirty_tracker.cpp and chosen at run time (~40 GB/s per core in L2); else libxxhash's
// baseline SSE2 build (~10-18 GB/s in L2 here: below memory bandwidth, so such a scan is
// compute-bound and slower than a sequential read).
// Thread-safety: one owner (see DirtyTracker); the workers are internal.
class HashDirtyTracker final : public DirtyTracker {
 public:
  // `threads`: hashing threads per scan including the caller's; 0 means 1, capped at 64.
  // threads - 1 worker threads are started here and live until destruction.
  explicit HashDirtyTracker(unsigned threads = 1);
  ~HashDirtyTracker() override;  // stops and joins the workers
  HashDirtyTracker(const HashDirtyTracker&) = delete;
  HashDirtyTracker& operator=(const HashDirtyTracker&) = delete;

  const char* method() const override { return "xxh3"; }
  // Errors: kInvalidArgument when size_bytes % 4096 != 0 or base is null with size_bytes > 0.
  [[nodiscard]] Result<void> scan(const uint8_t* base, uint64_t size_bytes,
                                  std::vector<uint64_t>& dirty) override;
  void reset() override;
  // Stores XXH3-64 of `bytes` as the page's baseline, so the next scan compares the live page
  // with what subscribers hold (a page that changed after the scan and changed back before the
  // next one is still sent again). Cost: one 4 KiB hash, in cache right after the copy.
  void note_published(uint64_t page_index, const uint8_t* bytes) override;

  // Hashing threads per scan, including the caller's (>= 1).
  unsigned threads() const noexcept { return threads_; }

 private:
  class WorkerPool;

  unsigned threads_;
  std::unique_ptr<WorkerPool> pool_;  // null when threads_ == 1
  std::vector<uint64_t> hashes_;      // one XXH3-64 per page of the previous scan
  bool primed_ = false;               // hashes_ holds a previous scan of this size
};

// ---- /proc parsing (pure functions, exposed for tests) -------------------------------------

// One line of /proc/PID/maps (proc(5)): "start-end perms offset major:minor inode   path".
struct MapsEntry {
  uint64_t start = 0;  // first byte of the VMA, host-virtual address
  uint64_t end = 0;    // one past the last byte
  bool readable = false;
  bool writable = false;
  bool executable = false;
  bool shared = false;  // 's' (MAP_SHARED) rather than 'p'
  uint64_t offset = 0;  // file offset of `start`, bytes
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;  // 0 for anonymous mappings
  std::string path;    // as printed: empty, "[heap]", "/dev/shm/x", "/x (deleted)", ...
};

// Parses one maps line (with or without its trailing '\n'). The path keeps inner spaces.
// Errors: kProtocol naming the line when a field is missing or not a number, or start > end.
// Thread-safety: reentrant.
[[nodiscard]] Result<MapsEntry> parse_maps_line(std::string_view line);

// A file, as /proc/PID/maps names it: device numbers and inode (stat(2) st_dev, st_ino).
struct FileId {
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
};

// stat(2) of `path`. Errors: kNotFound / kIo with the errno text. Thread-safety: reentrant.
[[nodiscard]] Result<FileId> file_id_of(const std::string& path);

// Where a process maps part of a file: bytes [file_offset, file_offset + size_bytes) of the
// file are at host-virtual addresses [vaddr, vaddr + size_bytes) of that process.
struct FileMapping {
  uint64_t vaddr = 0;
  uint64_t file_offset = 0;
  uint64_t size_bytes = 0;
};

// The VMAs of `maps_text` (a whole /proc/PID/maps) that map `file`, sorted by file_offset then
// vaddr (one mapping may be split into several VMAs by mprotect/madvise; a file may be mapped
// more than once). Matches on device and inode, so paths, renames and " (deleted)" don't matter.
// Errors: kProtocol when a line does not parse. Thread-safety: reentrant.
[[nodiscard]] Result<std::vector<FileMapping>> find_file_mappings(std::string_view maps_text,
                                                                  const FileId& file);

// Bits of a /proc/PID/pagemap entry (one little-endian u64 per virtual page, at file offset
// (vaddr / 4096) * 8). Source: Documentation/admin-guide/mm/pagemap.rst.
inline constexpr unsigned kPagemapSoftDirtyBit = 55;
inline constexpr unsigned kPagemapExclusiveBit = 56;
inline constexpr unsigned kPagemapUffdWpBit = 57;
inline constexpr unsigned kPagemapGuardBit = 58;
inline constexpr unsigned kPagemapFileBit = 61;  // file page or shared anonymous
inline constexpr unsigned kPagemapSwappedBit = 62;
inline constexpr unsigned kPagemapPresentBit = 63;
inline constexpr uint64_t kPagemapPfnMask = (uint64_t{1} << 55) - 1;  // bits 0-54

// A decoded pagemap entry.
struct PagemapEntry {
  bool present = false;
  bool swapped = false;
  bool file_or_shared_anon = false;
  bool exclusive = false;   // page exclusively mapped (since Linux 4.2)
  bool soft_dirty = false;  // written since the last clear_refs "4" (soft-dirty.rst)
  bool uffd_wp = false;     // userfaultfd write-protected
  bool guard = false;       // guard region (MADV_GUARD_INSTALL, Linux 6.15+)
  // Bits 0-54: the PFN when present (0 without CAP_SYS_ADMIN since Linux 4.2), else the swap
  // type (bits 0-4) and offset (bits 5-54) when swapped.
  uint64_t pfn_or_swap = 0;
};

// Decodes one raw pagemap entry. Thread-safety: pure.
constexpr PagemapEntry decode_pagemap_entry(uint64_t raw) noexcept {
  auto bit = [raw](unsigned b) { return ((raw >> b) & 1) != 0; };
  PagemapEntry e;
  e.present = bit(kPagemapPresentBit);
  e.swapped = bit(kPagemapSwappedBit);
  e.file_or_shared_anon = bit(kPagemapFileBit);
  e.exclusive = bit(kPagemapExclusiveBit);
  e.soft_dirty = bit(kPagemapSoftDirtyBit);
  e.uffd_wp = bit(kPagemapUffdWpBit);
  e.guard = bit(kPagemapGuardBit);
  e.pfn_or_swap = raw & kPagemapPfnMask;
  return e;
}

// ---- soft-dirty --------------------------------------------------------------------------

// The kernel's soft-dirty bits of the process that writes the RAM file (QEMU).
//
// Each scan: (1) re-reads /proc/PID/maps and finds the VMAs mapping the RAM file (by device and
// inode; a remap gives a new VMA, which the kernel reports all soft-dirty, so remaps are safe);
// (2) reads their pagemap entries (8 bytes per page, preads of up to 512 KiB) and collects the
// pages with bit 55 set; (3) writes "4" to /proc/PID/clear_refs, which clears the bits and
// write-protects the writer's PTEs so its next write to each page faults and sets the bit again.
//
// Loss window (honest): a write that lands on a page after step (2) read that page's entry and
// before step (3) cleared it is lost: its bit is cleared without having been reported, and the
// page is not reported again until it is written again. The window is the time from the
// pagemap read of that page to the end of clear_refs (short: the rest of the pagemap read plus
// one clear_refs walk of the writer's page tables; not measured on real hardware, because no
// host here has soft-dirty).
// The kernel has no atomic read-and-clear of soft-dirty bits. The caller must therefore publish
// periodic keyframes (full copies) to bound how long such a page can stay stale.
//
// Other limits: only writes through the writer's page tables are seen (QEMU's vCPUs under TCG or
// KVM and its own device emulation); writes to the file by other processes (vhost-user
// backends, virtiofsd, anyone with the file mapped or open) are invisible. clear_refs acts on the
// whole process: there must be a single soft-dirty user per writer (not CRIU at the same time),
// and it costs the writer one write-protect fault per page first written in each cycle. Requires
// CONFIG_MEM_SOFT_DIRTY, permission to open /proc/PID/pagemap (PTRACE_MODE_READ) and to write
// /proc/PID/clear_refs (owner only: the same uid as a dumpable QEMU, or root). The file should be
// on tmpfs: hugetlbfs-backed RAM is untested (clear_refs' page walk in fs/proc/task_mmu.c has
// no hugetlb handler, so its bits would likely never clear and every page would read dirty).
//
// The first scan after probe() or reset() reports every page (and then clears the bits).
// Thread-safety: one owner (see DirtyTracker).
class SoftDirtyTracker final : public DirtyTracker {
 public:
  // Detects whether soft-dirty tracking works for `writer_pid` writing `ram_file_path`:
  // (a) the kernel tracks soft-dirty at all (a freshly mapped, written page of this process
  //     must read soft-dirty in /proc/self/pagemap; fails at once on kernels without
  //     CONFIG_MEM_SOFT_DIRTY);
  // (b) /proc/PID/maps shows the file mapped; /proc/PID/pagemap opens and reads;
  //     /proc/PID/clear_refs opens for writing;
  // (c) after a clear_refs "4", some page of the mapping turns soft-dirty within `wait`
  //     (polled every 5 ms). The probe writes nothing itself: it waits for the guest to write,
  //     so call it while the VM runs (a running guest writes RAM continuously).
  // Errors: kInvalidArgument for writer_pid <= 0 or an empty path; kUnsupported, with a one-line
  // reason for the service's status, for everything else (the caller falls back to "xxh3").
  // Thread-safety: reentrant. Blocks up to `wait` (plus the reads).
  [[nodiscard]] static Result<std::unique_ptr<SoftDirtyTracker>> probe(
      pid_t writer_pid, const std::string& ram_file_path, std::chrono::milliseconds wait);

  ~SoftDirtyTracker() override;  // closes the /proc file descriptors
  SoftDirtyTracker(const SoftDirtyTracker&) = delete;
  SoftDirtyTracker& operator=(const SoftDirtyTracker&) = delete;

  const char* method() const override { return "soft-dirty"; }
  // `base` is not read (the bits come from the writer's page tables); [0, size_bytes) of the
  // file must be mapped by the writer. Errors: kInvalidArgument (size not a multiple of 4096);
  // kUnavailable when the writer has exited (the descriptors pin the original process, so a
  // reused pid is never read); kOutOfRange when the writer no longer maps some page of
  // [0, size_bytes); kProtocol for an unparsable maps line; kIo for a failed read or write.
  // On error nothing is appended and the bits are left uncleared (the next scan reports a
  // superset).
  [[nodiscard]] Result<void> scan(const uint8_t* base, uint64_t size_bytes,
                                  std::vector<uint64_t>& dirty) override;
  void reset() override;
  // Nothing to do: a write after the scan's clear_refs sets the bit again, whatever it wrote.
  void note_published(uint64_t, const uint8_t*) override {}

  pid_t writer_pid() const noexcept { return writer_pid_; }

 private:
  SoftDirtyTracker(pid_t writer_pid, std::string ram_file_path, FileId file, int maps_fd,
                   int pagemap_fd, int clear_refs_fd);

  pid_t writer_pid_;
  std::string ram_file_path_;
  FileId file_;
  int maps_fd_;
  int pagemap_fd_;
  int clear_refs_fd_;
  bool primed_ = false;
  uint64_t last_size_bytes_ = 0;
  std::string maps_text_;            // reused buffers
  std::vector<uint64_t> entries_;    // pagemap batch
  std::vector<uint8_t> page_state_;  // per page: 0 unmapped, 1 clean, 2 dirty
};

// ---- choice of method --------------------------------------------------------------------

struct DirtyTrackerOptions {
  unsigned hash_threads = 1;  // HashDirtyTracker threads
  pid_t writer_pid = 0;       // QEMU's pid (soft-dirty, auto)
  std::string ram_file_path;  // the RAM file QEMU maps (soft-dirty, auto)
  std::chrono::milliseconds probe_wait{1000};
};

struct DirtyTrackerChoice {
  std::unique_ptr<DirtyTracker> tracker;
  std::string fallback_reason;  // "auto" fell back to xxh3: the probe's one-line reason
};

// `method`: "xxh3", "soft-dirty" (probe; its error is returned) or "auto" (probe; on
// kUnsupported, xxh3 with fallback_reason set).
// Errors: kInvalidArgument for another method; the probe's errors. Thread-safety: reentrant.
[[nodiscard]] Result<DirtyTrackerChoice> make_dirty_tracker(std::string_view method,
                                                            const DirtyTrackerOptions& options);

}  // namespace glassbox::ram_snapshotter
