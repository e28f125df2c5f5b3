#include "services/ram_snapshotter/dirty_tracker.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace glassbox::ram_snapshotter {
namespace {

constexpr uint64_t kPage = kDirtyPageBytes;

std::vector<uint64_t> all_pages(uint64_t n_pages) {
  std::vector<uint64_t> v(n_pages);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

std::vector<uint8_t> random_buffer(uint64_t size_bytes, uint32_t seed) {
  std::vector<uint8_t> buf(size_bytes);
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i < size_bytes; i += 8) {
    const uint64_t x = rng();
    std::memcpy(buf.data() + i, &x, 8);
  }
  return buf;
}

std::vector<uint64_t> scan_ok(DirtyTracker& t, const std::vector<uint8_t>& buf) {
  std::vector<uint64_t> dirty;
  auto r = t.scan(buf.data(), buf.size(), dirty);
  EXPECT_TRUE(r) << (r ? "" : r.error().to_string());
  return dirty;
}

// ---- HashDirtyTracker --------------------------------------------------------------------

TEST(HashDirtyTrackerTest, FirstScanReportsEveryPage) {
  const auto buf = random_buffer(64 * kPage, 1);
  HashDirtyTracker t;
  EXPECT_STREQ(t.method(), "xxh3");
  EXPECT_EQ(scan_ok(t, buf), all_pages(64));
}

TEST(HashDirtyTrackerTest, ReportsNothingWhenNothingChanged) {
  const auto buf = random_buffer(64 * kPage, 2);
  HashDirtyTracker t;
  scan_ok(t, buf);
  EXPECT_TRUE(scan_ok(t, buf).empty());
  EXPECT_TRUE(scan_ok(t, buf).empty());
}

TEST(HashDirtyTrackerTest, ReportsExactlyTheChangedPagesSorted) {
  auto buf = random_buffer(64 * kPage, 3);
  HashDirtyTracker t;
  scan_ok(t, buf);
  buf[63 * kPage + 4095] ^= 1;  // last byte of the last page
  buf[17 * kPage + 100] ^= 0x80;
  buf[0] ^= 0xff;
  EXPECT_EQ(scan_ok(t, buf), (std::vector<uint64_t>{0, 17, 63}));
  EXPECT_TRUE(scan_ok(t, buf).empty());
}

// The ABA race the snapshotter hit: a lock word is free (X) at the scan, taken (Y) when the
// dirty page is copied for publishing, free (X) again afterwards. With the scan's hash as the
// baseline the page would never be sent again and every mirror would keep Y.
TEST(HashDirtyTrackerTest, APageThatChangesBackAfterTheCopyIsSentAgain) {
  auto buf = random_buffer(8 * kPage, 14);
  HashDirtyTracker t;
  scan_ok(t, buf);
  buf[3 * kPage + 64] = 0;  // X: the lock is free
  EXPECT_EQ(scan_ok(t, buf), (std::vector<uint64_t>{3}));
  buf[3 * kPage + 64] = 1;  // Y: taken while the page is copied
  std::vector<uint8_t> copy(buf.begin() + 3 * kPage, buf.begin() + 4 * kPage);
  t.note_published(3, copy.data());
  buf[3 * kPage + 64] = 0;  // X again: what the scan saw, not what subscribers hold
  EXPECT_EQ(scan_ok(t, buf), (std::vector<uint64_t>{3}));
  t.note_published(3, buf.data() + 3 * kPage);
  EXPECT_TRUE(scan_ok(t, buf).empty());
}

TEST(HashDirtyTrackerTest, NotePublishedIgnoresPagesOutsideTheHistory) {
  const auto buf = random_buffer(4 * kPage, 15);
  HashDirtyTracker t;
  t.note_published(0, buf.data());  // before any scan: nothing to update
  scan_ok(t, buf);
  t.note_published(4, buf.data());  // past the end
  t.note_published(~uint64_t{0}, buf.data());
  EXPECT_TRUE(scan_ok(t, buf).empty());
}

TEST(HashDirtyTrackerTest, AppendsWithoutClearingTheCallersVector) {
  auto buf = random_buffer(8 * kPage, 4);
  HashDirtyTracker t;
  scan_ok(t, buf);
  buf[5 * kPage] ^= 1;
  std::vector<uint64_t> dirty{1000};
  ASSERT_TRUE(t.scan(buf.data(), buf.size(), dirty));
  EXPECT_EQ(dirty, (std::vector<uint64_t>{1000, 5}));
}

TEST(HashDirtyTrackerTest, ResetReportsEveryPageAgain) {
  const auto buf = random_buffer(32 * kPage, 5);
  HashDirtyTracker t;
  scan_ok(t, buf);
  EXPECT_TRUE(scan_ok(t, buf).empty());
  t.reset();
  EXPECT_EQ(scan_ok(t, buf), all_pages(32));
  EXPECT_TRUE(scan_ok(t, buf).empty());
}

TEST(HashDirtyTrackerTest, NewSizeStartsANewHistory) {
  const auto buf = random_buffer(32 * kPage, 6);
  HashDirtyTracker t;
  scan_ok(t, buf);
  std::vector<uint64_t> dirty;
  ASSERT_TRUE(t.scan(buf.data(), 16 * kPage, dirty));
  EXPECT_EQ(dirty, all_pages(16));
}

TEST(HashDirtyTrackerTest, RejectsSizeNotAMultipleOfThePageSize) {
  const auto buf = random_buffer(8 * kPage, 7);
  HashDirtyTracker t;
  std::vector<uint64_t> dirty;
  auto r = t.scan(buf.data(), 8 * kPage - 1, dirty);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_TRUE(dirty.empty());
  HashDirtyTracker t2(2);
  r = t2.scan(buf.data(), 4097, dirty);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

TEST(HashDirtyTrackerTest, RejectsNullBaseButAcceptsAnEmptyRange) {
  HashDirtyTracker t;
  std::vector<uint64_t> dirty;
  auto r = t.scan(nullptr, kPage, dirty);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_TRUE(t.scan(nullptr, 0, dirty));
  EXPECT_TRUE(dirty.empty());
}

TEST(HashDirtyTrackerTest, ThreadCountIsClamped) {
  EXPECT_EQ(HashDirtyTracker(0).threads(), 1u);
  EXPECT_EQ(HashDirtyTracker(3).threads(), 3u);
  EXPECT_EQ(HashDirtyTracker(1000).threads(), 64u);
}

// Property: for any change pattern, every thread count reports exactly the pages whose bytes
// differ from the previous scan (checked against a shadow copy), in order.
TEST(HashDirtyTrackerTest, MultiThreadedMatchesSingleThreadedOnRandomChanges) {
  // 1000 pages: several 256-page blocks plus a partial one.
  constexpr uint64_t kPages = 1000;
  auto buf = random_buffer(kPages * kPage, 8);
  auto shadow = buf;
  HashDirtyTracker t1(1), t2(2), t4(4);
  for (auto* t : {&t1, &t2, &t4}) EXPECT_EQ(scan_ok(*t, buf), all_pages(kPages));

  for (uint32_t seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    // No change, a few pages, clusters, up to every page; a byte may be hit twice and restored.
    const uint32_t mode = seed % 5;
    const uint64_t n_changes = mode == 0   ? 0
                               : mode == 1 ? 1 + rng() % 4
                               : mode == 2 ? rng() % 100
                               : mode == 3 ? rng() % kPages
                                           : kPages * 2;
    const uint64_t cluster = mode == 2 ? rng() % kPages : 0;
    for (uint64_t c = 0; c < n_changes; ++c) {
      const uint64_t page = mode == 2 ? (cluster + rng() % 8) % kPages : rng() % kPages;
      buf[page * kPage + rng() % kPage] ^= static_cast<uint8_t>(1 + rng() % 255);
    }
    if (mode == 1 && (seed / 5) % 2 == 0) buf[12 * kPage] ^= 1, buf[12 * kPage] ^= 1;  // undone
    std::vector<uint64_t> truth;
    for (uint64_t p = 0; p < kPages; ++p) {
      if (std::memcmp(&buf[p * kPage], &shadow[p * kPage], kPage) != 0) truth.push_back(p);
    }
    shadow = buf;

    const auto d1 = scan_ok(t1, buf);
    const auto d2 = scan_ok(t2, buf);
    const auto d4 = scan_ok(t4, buf);
    ASSERT_EQ(d1, truth) << "seed " << seed;
    ASSERT_EQ(d2, d1) << "seed " << seed;
    ASSERT_EQ(d4, d1) << "seed " << seed;
  }
}

TEST(HashDirtyTrackerTest, MultiThreadedResetAndResizeMatchSingleThreaded) {
  auto buf = random_buffer(2048 * kPage, 9);
  HashDirtyTracker t1(1), t2(2);
  for (int round = 0; round < 20; ++round) {
    const uint64_t n_pages = round % 3 == 0 ? 2048 : (round % 3 == 1 ? 1500 : 257);
    if (round % 7 == 0) {
      t1.reset();
      t2.reset();
    }
    buf[(round * 97 % n_pages) * kPage] ^= 1;
    std::vector<uint64_t> d1, d2;
    ASSERT_TRUE(t1.scan(buf.data(), n_pages * kPage, d1));
    ASSERT_TRUE(t2.scan(buf.data(), n_pages * kPage, d2));
    ASSERT_EQ(d1, d2) << "round " << round;
  }
}

// ---- /proc parsing -----------------------------------------------------------------------

TEST(ParseMapsLineTest, ParsesAFileMapping) {
  auto e = parse_maps_line(
      "7f1c2a400000-7f1c3a400000 rw-s 00200000 00:1a 12345                      "
      "/dev/shm/glassbox-a.ram\n");
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->start, 0x7f1c2a400000u);
  EXPECT_EQ(e->end, 0x7f1c3a400000u);
  EXPECT_TRUE(e->readable);
  EXPECT_TRUE(e->writable);
  EXPECT_FALSE(e->executable);
  EXPECT_TRUE(e->shared);
  EXPECT_EQ(e->offset, 0x200000u);
  EXPECT_EQ(e->dev_major, 0u);
  EXPECT_EQ(e->dev_minor, 0x1au);
  EXPECT_EQ(e->inode, 12345u);
  EXPECT_EQ(e->path, "/dev/shm/glassbox-a.ram");
}

TEST(ParseMapsLineTest, ParsesAnonymousSpecialAndDeletedMappings) {
  auto anon = parse_maps_line("7ffd1000-7ffd3000 rw-p 00000000 00:00 0 ");
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->inode, 0u);
  EXPECT_TRUE(anon->path.empty());
  EXPECT_FALSE(anon->shared);

  auto vsys =
      parse_maps_line("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0   [vsyscall]");
  ASSERT_TRUE(vsys);
  EXPECT_EQ(vsys->start, 0xffffffffff600000u);
  EXPECT_FALSE(vsys->readable);
  EXPECT_TRUE(vsys->executable);
  EXPECT_EQ(vsys->path, "[vsyscall]");

  auto del = parse_maps_line("1000-2000 r--s 00000000 fd:01 987 /tmp/a b (deleted)");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->dev_major, 0xfdu);
  EXPECT_EQ(del->dev_minor, 1u);
  EXPECT_EQ(del->path, "/tmp/a b (deleted)");
}

TEST(ParseMapsLineTest, RejectsMalformedLines) {
  for (const char* line : {
           "", "garbage",
           "1000 rw-p 00000000 00:00 0",         // no dash
           "1000-zz rw-p 00000000 00:00 0",      // bad end
           "2000-1000 rw-p 00000000 00:00 0",    // start above end
           "1000-2000 rw- 00000000 00:00 0",     // short perms
           "1000-2000 rw-p xyz 00:00 0",         // bad offset
           "1000-2000 rw-p 00000000 0000 0",     // no colon
           "1000-2000 rw-p 00000000 00:00",      // no inode
           "1000-2000 rw-p 00000000 00:00 12a",  // inode not decimal
           "-1000-2000 rw-p 00000000 00:00 0",   // sign
       }) {
    auto e = parse_maps_line(line);
    ASSERT_FALSE(e) << "accepted '" << line << "'";
    EXPECT_EQ(e.error().code, Errc::kProtocol);
  }
}

TEST(ParseMapsLineTest, ParsesEveryLineOfThisProcessMaps) {
  std::ifstream f("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    auto e = parse_maps_line(line);
    ASSERT_TRUE(e) << e.error().to_string();
    ++n;
  }
  EXPECT_GT(n, 5);
}

TEST(FindFileMappingsTest, SelectsByDeviceAndInodeSortedByFileOffset) {
  const std::string maps =
      "55d0a0000000-55d0a0100000 r-xp 00000000 08:01 42 /usr/bin/qemu\n"
      "7f0000200000-7f0000400000 rw-s 00200000 00:1a 777 /dev/shm/g.ram\n"
      "7f0000000000-7f0000200000 rw-s 00000000 00:1a 777 /dev/shm/g.ram\n"
      "7f0000400000-7f0000500000 rw-s 00000000 00:1b 777 /dev/shm/other-device\n"
      "7f1000000000-7f1000001000 rw-s 00000000 00:1a 778 /dev/shm/g.ram (deleted)\n"
      "7f2000000000-7f2000400000 r--s 00000000 00:1a 777 /renamed\n";
  auto m = find_file_mappings(maps, FileId{0, 0x1a, 777});
  ASSERT_TRUE(m) << m.error().to_string();
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0].file_offset, 0u);
  EXPECT_EQ((*m)[0].vaddr, 0x7f0000000000u);
  EXPECT_EQ((*m)[0].size_bytes, 0x200000u);
  EXPECT_EQ((*m)[1].file_offset, 0u);
  EXPECT_EQ((*m)[1].vaddr, 0x7f2000000000u);
  EXPECT_EQ((*m)[1].size_bytes, 0x400000u);
  EXPECT_EQ((*m)[2].file_offset, 0x200000u);
  EXPECT_EQ((*m)[2].vaddr, 0x7f0000200000u);

  auto none = find_file_mappings(maps, FileId{8, 1, 43});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());

  auto bad = find_file_mappings("1000-2000 rw-p 00000000 00:00 0\nnonsense\n", FileId{});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kProtocol);
}

TEST(FindFileMappingsTest, FindsThisProcessMappingOfAShmFile) {
  const std::string path = "/dev/shm/glassbox-dt-test-" + std::to_string(::getpid());
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 8 * kPage), 0);
  void* p = ::mmap(nullptr, 8 * kPage, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto id = file_id_of(path);
  ASSERT_TRUE(id) << id.error().to_string();
  std::stringstream text;
  text << std::ifstream("/proc/self/maps").rdbuf();
  auto m = find_file_mappings(text.str(), *id);
  ::munmap(p, 8 * kPage);
  ::close(fd);
  ::unlink(path.c_str());
  ASSERT_TRUE(m) << m.error().to_string();
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].vaddr, reinterpret_cast<uint64_t>(p));
  EXPECT_EQ((*m)[0].file_offset, 0u);
  EXPECT_EQ((*m)[0].size_bytes, 8 * kPage);

  auto missing = file_id_of(path);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
}

TEST(DecodePagemapEntryTest, DecodesEveryFlagAndThePfn) {
  static_assert(decode_pagemap_entry(uint64_t{1} << 55).soft_dirty);
  const auto zero = decode_pagemap_entry(0);
  EXPECT_FALSE(zero.present || zero.swapped || zero.file_or_shared_anon || zero.exclusive ||
               zero.soft_dirty || zero.uffd_wp || zero.guard);
  EXPECT_EQ(zero.pfn_or_swap, 0u);

  const uint64_t raw = (uint64_t{1} << 63) | (uint64_t{1} << 61) | (uint64_t{1} << 56) |
                       (uint64_t{1} << 55) | 0x1d9dadu;
  const auto e = decode_pagemap_entry(raw);
  EXPECT_TRUE(e.present);
  EXPECT_FALSE(e.swapped);
  EXPECT_TRUE(e.file_or_shared_anon);
  EXPECT_TRUE(e.exclusive);
  EXPECT_TRUE(e.soft_dirty);
  EXPECT_FALSE(e.uffd_wp);
  EXPECT_FALSE(e.guard);
  EXPECT_EQ(e.pfn_or_swap, 0x1d9dadu);

  const auto s = decode_pagemap_entry((uint64_t{1} << 62) | (uint64_t{1} << 57) |
                                      (uint64_t{1} << 58) | kPagemapPfnMask);
  EXPECT_TRUE(s.swapped);
  EXPECT_TRUE(s.uffd_wp);
  EXPECT_TRUE(s.guard);
  EXPECT_FALSE(s.present);
  EXPECT_FALSE(s.soft_dirty);
  EXPECT_EQ(s.pfn_or_swap, kPagemapPfnMask);
}

// ---- SoftDirtyTracker --------------------------------------------------------------------

// A child process that maps a /dev/shm file MAP_SHARED and writes pages on command.
// Commands (one byte, then a u64 for 'w' and 'W'): 'b' busy (write page 0 every ms), 'q' quiet,
// 'w' write page N, 's' split the mapping in three VMAs (madvise MADV_DONTDUMP on pages 16-31,
// as QEMU does on guest RAM), 'm' map the file a second time, 'W' write page N through that
// second mapping, 'x' exit. Every command but 'x' is acknowledged with one byte.
class Writer {
 public:
  Writer(const std::string& path, uint64_t map_pages) {
    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(to_child[1]);
      ::close(from_child[0]);
      child_main(path, map_pages, to_child[0], from_child[1]);
      ::_exit(0);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    cmd_fd_ = to_child[1];
    ack_fd_ = from_child[0];
    ok_ = pid_ > 0 && wait_ack();  // the child acks once it has mapped the file
  }
  ~Writer() {
    if (pid_ > 0) {
      const char x = 'x';
      (void)!::write(cmd_fd_, &x, 1);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (cmd_fd_ >= 0) ::close(cmd_fd_);
    if (ack_fd_ >= 0) ::close(ack_fd_);
  }
  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }
  bool command(char c, uint64_t page = 0) {
    char msg[9] = {c};
    std::memcpy(msg + 1, &page, 8);
    const size_t n = (c == 'w' || c == 'W') ? 9 : 1;
    return ::write(cmd_fd_, msg, n) == static_cast<ssize_t>(n) && wait_ack();
  }

 private:
  bool wait_ack() {  // 10 s at most, so a broken child fails the test instead of hanging it
    pollfd pfd{ack_fd_, POLLIN, 0};
    char a;
    return ::poll(&pfd, 1, 10000) == 1 && ::read(ack_fd_, &a, 1) == 1;
  }
  static void child_main(const std::string& path, uint64_t map_pages, int cmd, int ack) {
    const int fd = ::open(path.c_str(), O_RDWR);
    auto* p = static_cast<volatile uint8_t*>(
        ::mmap(nullptr, map_pages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (fd < 0 || p == MAP_FAILED) ::_exit(1);
    volatile uint8_t* second = nullptr;
    const char a = 'a';
    (void)!::write(ack, &a, 1);
    bool busy = false;
    for (uint64_t tick = 0;; ++tick) {
      pollfd pfd{cmd, POLLIN, 0};
      if (::poll(&pfd, 1, busy ? 1 : 1000) == 1) {
        char c = 0;
        if (::read(cmd, &c, 1) != 1 || c == 'x') return;
        if (c == 'w' || c == 'W') {
          uint64_t page = 0;
          if (::read(cmd, &page, 8) != 8) return;
          volatile uint8_t* view = c == 'w' ? p : second;
          if (view == nullptr) return;
          view[page * kPage + tick % kPage] = static_cast<uint8_t>(tick + 1);
        }
        if (c == 's' &&
            ::madvise(const_cast<uint8_t*>(p + 16 * kPage), 16 * kPage, MADV_DONTDUMP) != 0) {
          return;
        }
        if (c == 'm') {
          void* v = ::mmap(nullptr, map_pages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
          if (v == MAP_FAILED) return;
          second = static_cast<volatile uint8_t*>(v);
        }
        if (c == 'b') busy = true;
        if (c == 'q') busy = false;
        (void)!::write(ack, &a, 1);
      } else if (busy) {
        p[tick % kPage] = static_cast<uint8_t>(tick);
      }
    }
  }

  pid_t pid_ = -1;
  int cmd_fd_ = -1;
  int ack_fd_ = -1;
  bool ok_ = false;
};

class SoftDirtyTrackerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = "/dev/shm/glassbox-dt-sd-" + std::to_string(::getpid());
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(kPages * kPage)), 0);
    ::close(fd);
  }
  void TearDown() override { ::unlink(path_.c_str()); }

  static constexpr uint64_t kPages = 64;
  std::string path_;
};

TEST_F(SoftDirtyTrackerTest, ProbeRejectsBadArguments) {
  auto r = SoftDirtyTracker::probe(0, path_, std::chrono::milliseconds(10));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  r = SoftDirtyTracker::probe(::getpid(), "", std::chrono::milliseconds(10));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

TEST_F(SoftDirtyTrackerTest, ProbeIsUnsupportedWhenTheWriterDoesNotMapTheFile) {
  auto r = SoftDirtyTracker::probe(::getpid(), path_, std::chrono::milliseconds(10));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsupported);
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos);  // one line for the status
}

TEST_F(SoftDirtyTrackerTest, ProbeIsUnsupportedWhenNobodyWrites) {
  Writer w(path_, kPages);
  ASSERT_TRUE(w.ok());
  auto r = SoftDirtyTracker::probe(w.pid(), path_, std::chrono::milliseconds(50));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsupported) << r.error().to_string();
}

TEST_F(SoftDirtyTrackerTest, ReportsThePagesTheWriterWrote) {
  Writer w(path_, kPages);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w.command('b'));
  auto probed = SoftDirtyTracker::probe(w.pid(), path_, std::chrono::milliseconds(2000));
  if (!probed && probed.error().code == Errc::kUnsupported) {
    GTEST_SKIP() << probed.error().message;
  }
  ASSERT_TRUE(probed) << probed.error().to_string();
  SoftDirtyTracker& t = **probed;
  EXPECT_STREQ(t.method(), "soft-dirty");
  EXPECT_EQ(t.writer_pid(), w.pid());
  ASSERT_TRUE(w.command('q'));

  std::vector<uint64_t> dirty;
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_EQ(dirty, all_pages(kPages));  // first scan: everything
  dirty.clear();
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_TRUE(dirty.empty());

  for (uint64_t page : {2u, 5u, 63u}) ASSERT_TRUE(w.command('w', page));
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_EQ(dirty, (std::vector<uint64_t>{2, 5, 63}));
  dirty.clear();
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_TRUE(dirty.empty());

  ASSERT_TRUE(w.command('w', 5));  // written twice in one cycle: reported once
  ASSERT_TRUE(w.command('w', 5));
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_EQ(dirty, (std::vector<uint64_t>{5}));

  t.reset();
  dirty.clear();
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_EQ(dirty, all_pages(kPages));

  // A range the writer does not map, then a bad size.
  auto r = t.scan(nullptr, 2 * kPages * kPage, dirty);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kOutOfRange);
  r = t.scan(nullptr, 100, dirty);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

TEST_F(SoftDirtyTrackerTest, FollowsSplitAndRepeatedMappingsOfTheFile) {
  Writer w(path_, kPages);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w.command('b'));
  auto probed = SoftDirtyTracker::probe(w.pid(), path_, std::chrono::milliseconds(2000));
  if (!probed && probed.error().code == Errc::kUnsupported) {
    GTEST_SKIP() << probed.error().message;
  }
  ASSERT_TRUE(probed) << probed.error().to_string();
  SoftDirtyTracker& t = **probed;
  ASSERT_TRUE(w.command('q'));
  std::vector<uint64_t> dirty;
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  dirty.clear();

  ASSERT_TRUE(w.command('s'));  // three VMAs: pages 0-15, 16-31, 32-63
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_TRUE(dirty.empty());
  for (uint64_t page : {15u, 16u, 31u, 32u}) ASSERT_TRUE(w.command('w', page));
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_EQ(dirty, (std::vector<uint64_t>{15, 16, 31, 32}));
  dirty.clear();

  ASSERT_TRUE(w.command('m'));  // a new VMA is all soft-dirty until the next clear
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_EQ(dirty, all_pages(kPages));
  dirty.clear();
  ASSERT_TRUE(w.command('W', 40));  // through the second mapping
  ASSERT_TRUE(w.command('w', 7));   // through the first
  ASSERT_TRUE(t.scan(nullptr, kPages * kPage, dirty));
  EXPECT_EQ(dirty, (std::vector<uint64_t>{7, 40}));
}

TEST_F(SoftDirtyTrackerTest, ScanFailsUnavailableAfterTheWriterExits) {
  std::unique_ptr<SoftDirtyTracker> t;
  {
    Writer w(path_, kPages);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w.command('b'));
    auto probed = SoftDirtyTracker::probe(w.pid(), path_, std::chrono::milliseconds(2000));
    if (!probed && probed.error().code == Errc::kUnsupported) {
      GTEST_SKIP() << probed.error().message;
    }
    ASSERT_TRUE(probed) << probed.error().to_string();
    t = std::move(*probed);
  }  // the writer exits and is reaped here
  std::vector<uint64_t> dirty;
  auto r = t->scan(nullptr, kPages * kPage, dirty);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable) << r.error().to_string();
  EXPECT_TRUE(dirty.empty());
}

// ---- make_dirty_tracker ------------------------------------------------------------------

TEST(MakeDirtyTrackerTest, BuildsXxh3AndRejectsUnknownMethods) {
  DirtyTrackerOptions options;
  options.hash_threads = 2;
  auto c = make_dirty_tracker("xxh3", options);
  ASSERT_TRUE(c);
  EXPECT_STREQ(c->tracker->method(), "xxh3");
  EXPECT_TRUE(c->fallback_reason.empty());

  auto bad = make_dirty_tracker("md5", options);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kInvalidArgument);
}

TEST_F(SoftDirtyTrackerTest, MakeDirtyTrackerAutoFallsBackToXxh3WithTheReason) {
  DirtyTrackerOptions options;
  options.writer_pid = ::getpid();
  options.ram_file_path = path_;  // not mapped by this process: soft-dirty is unsupported
  options.probe_wait = std::chrono::milliseconds(10);
  auto c = make_dirty_tracker("auto", options);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_STREQ(c->tracker->method(), "xxh3");
  EXPECT_FALSE(c->fallback_reason.empty());

  auto sd = make_dirty_tracker("soft-dirty", options);
  ASSERT_FALSE(sd);
  EXPECT_EQ(sd.error().code, Errc::kUnsupported);
}

}  // namespace
}  // namespace glassbox::ram_snapshotter
