// glassbox-itest-mirror-probe INSTANCE STATE_DIR SECONDS [STUCK_MS]: follows the RAM stream
// with a RamMirror like any subscriber and, every 250 ms, compares each mirrored page with the
// guest's RAM file (/dev/shm/glassbox-INSTANCE.ram). A page is *stuck* when the mirror differs
// from the file while the file page has not changed for STUCK_MS (default 3000): the stream
// should have delivered it long ago (a write reaches mirrors within ~50 ms). Prints one JSON
// line: {"checks","stuck_pages","first_stuck":[{"page","since_ms","bytes_differing",
// "last_applied_cycle","mirror_cycle"}...],"stats":{...}} (progress lines go to stderr). Exit 0
// when nothing was stuck, 1 when something was, 2 on usage errors or when the mirror never synced.
// Used by integration.ram.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "shared/iox.hpp"
#include "shared/paths.hpp"
#include "shared/ram_mirror.hpp"

namespace {
using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;
}  // namespace

int main(int argc, char** argv) {
  using namespace glassbox;
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s INSTANCE STATE_DIR SECONDS [STUCK_MS]\n", argv[0]);
    return 2;
  }
  const std::string instance = argv[1];
  const shared::StatePaths paths(argv[2]);
  const int seconds = std::atoi(argv[3]);
  const int stuck_ms = argc == 5 ? std::atoi(argv[4]) : 3000;
  if (auto r = shared::init_runtime(instance, "mirror-probe-" + std::to_string(::getpid())); !r) {
    std::fprintf(stderr, "%s\n", r.error().message.c_str());
    return 2;
  }
  auto mirror = shared::RamMirror::create(instance, paths.service_endpoint("ram-snapshotter"),
                                          "mirror-probe");
  if (!mirror) {
    std::fprintf(stderr, "%s\n", mirror.error().message.c_str());
    return 2;
  }
  auto& m = **mirror;
  if (auto r = m.wait_synced(std::chrono::seconds(60)); !r) {
    std::fprintf(stderr, "%s\n", r.error().message.c_str());
    return 2;
  }
  const std::string ram_path = shared::guest_ram_path(instance);
  const int fd = ::open(ram_path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    std::fprintf(stderr, "cannot open %s\n", ram_path.c_str());
    return 2;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return 2;
  const auto* file = static_cast<const uint8_t*>(p);
  const uint64_t n_pages = size / kPage;

  std::vector<uint64_t> file_hash(n_pages, 0);
  std::vector<Clock::time_point> file_stable_since(n_pages, Clock::now());
  std::vector<Clock::time_point> differs_since(n_pages, Clock::time_point{});
  std::vector<uint64_t> applied_cycle(n_pages, 0);
  std::vector<bool> reported(n_pages, false);
  nlohmann::json stuck = nlohmann::json::array();
  uint64_t checks = 0, stuck_pages = 0, seen_gaps = 0, seen_keyframes = 0;
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  auto next_check = Clock::now();
  while (Clock::now() < end) {
    if (auto r = m.poll(std::chrono::milliseconds(20)); !r) {
      std::fprintf(stderr, "poll: %s\n", r.error().message.c_str());
    }
    const auto ch = m.take_changes();
    if (m.core().stats().gaps != seen_gaps ||
        m.core().stats().keyframes_applied != seen_keyframes) {
      seen_gaps = m.core().stats().gaps;
      seen_keyframes = m.core().stats().keyframes_applied;
      std::fprintf(stderr, "mirror: cycle %llu, gaps %llu, keyframes applied %llu\n",
                   static_cast<unsigned long long>(m.core().last_cycle()),
                   static_cast<unsigned long long>(seen_gaps),
                   static_cast<unsigned long long>(seen_keyframes));
    }
    if (ch.all) {
      std::fill(applied_cycle.begin(), applied_cycle.end(), m.core().last_cycle());
    } else {
      for (uint32_t pg : ch.pages) {
        if (pg < n_pages) applied_cycle[pg] = m.core().last_cycle();
      }
    }
    if (Clock::now() < next_check) continue;
    next_check = Clock::now() + std::chrono::milliseconds(250);
    auto view = m.view();
    if (!view || view->size_bytes() != size) continue;
    ++checks;
    const auto now = Clock::now();
    for (uint64_t i = 0; i < n_pages; ++i) {
      const uint8_t* f = file + i * kPage;
      const uint64_t h = XXH3_64bits(f, kPage);
      if (h != file_hash[i]) {
        file_hash[i] = h;
        file_stable_since[i] = now;
      }
      const bool differs = std::memcmp(view->base() + i * kPage, f, kPage) != 0;
      if (!differs) {
        if (reported[i] && differs_since[i] != Clock::time_point{}) {
          std::fprintf(stderr, "healed: page %llu at cycle %llu\n",
                       static_cast<unsigned long long>(i),
                       static_cast<unsigned long long>(m.core().last_cycle()));
        }
        differs_since[i] = {};
        continue;
      }
      if (differs_since[i] == Clock::time_point{}) differs_since[i] = now;
      const auto stable_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - file_stable_since[i]);
      const auto diff_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(now - differs_since[i]);
      if (stable_ms.count() >= stuck_ms && diff_ms.count() >= stuck_ms && !reported[i]) {
        reported[i] = true;
        ++stuck_pages;
        const uint8_t* mp = view->base() + i * kPage;
        int bytes_differing = 0, first_offset = -1;
        for (int b = 0; b < static_cast<int>(kPage); ++b) {
          if (mp[b] == f[b]) continue;
          ++bytes_differing;
          if (first_offset < 0) first_offset = b;
        }
        std::fprintf(stderr, "stuck: page %llu, %d bytes differ, the first at offset %d\n",
                     static_cast<unsigned long long>(i), bytes_differing, first_offset);
        if (stuck.size() < 32) {
          stuck.push_back({{"page", i},
                           {"since_ms", diff_ms.count()},
                           {"bytes_differing", bytes_differing},
                           {"last_applied_cycle", applied_cycle[i]},
                           {"mirror_cycle", m.core().last_cycle()}});
        }
      }
    }
  }
  const auto& s = m.core().stats();
  nlohmann::json out = {{"checks", checks},
                        {"stuck_pages", stuck_pages},
                        {"first_stuck", stuck},
                        {"stats",
                         {{"chunks", s.chunks},
                          {"cycles_applied", s.cycles_applied},
                          {"keyframes_applied", s.keyframes_applied},
                          {"gaps", s.gaps},
                          {"bad_chunks", s.bad_chunks},
                          {"keyframe_requests", s.keyframe_requests}}}};
  std::printf("%s\n", out.dump().c_str());
  return stuck_pages == 0 ? 0 : 1;
}
