// glassbox-bench-ram-latency: guest write -> visible in a subscriber's RamMirror, on a running
// instance with the reference guest.
//
// The guest's gb-physwrite bumps a u64 counter at gpa 0x7010000 every millisecond. This
// program maps the guest RAM file read-only (ground truth: the moment a value is in guest
// RAM) and runs a RamMirror like any consumer. For each counter value it records when the
// RAM file first showed it and when the mirror first did; the difference is the latency.
// A write counts as visible when the mirror shows its value or a newer one (a snapshot
// stream shows the newest state; a value overwritten before the next cycle is never shown by
// itself, but its write became visible with the newer one). It also checks the reference
// pattern at 0x7000000 through the mirror.
//
// Usage: glassbox-bench-ram-latency --state-dir DIR [--seconds S] [--json FILE]
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ram_generated.h"
#include "shared/bus.hpp"
#include "shared/iox.hpp"
#include "shared/paths.hpp"
#include "shared/ram_mirror.hpp"

namespace {
using Clock = std::chrono::steady_clock;
constexpr uint64_t kPatternGpa = 0x7000000;
constexpr uint64_t kTickGpa = 0x7010000;

std::string instance_of(const glassbox::shared::StatePaths& paths) {
  namespace fb = glassbox::schema;
  flatbuffers::FlatBufferBuilder fbb;
  auto get = fb::common::CreateGetStatus(fbb);
  fb::ram::FinishRamRequestBuffer(
      fbb, fb::ram::CreateRamRequest(fbb, fb::ram::Command::common_GetStatus, get.Union()));
  auto r = glassbox::shared::request(paths.service_endpoint("ram-snapshotter"),
                                     {fbb.GetBufferPointer(), fbb.GetSize()},
                                     std::chrono::milliseconds(3000));
  if (!r) return "";
  flatbuffers::Verifier v(r->data(), r->size());
  if (!v.VerifyBuffer<fb::ram::RamReply>(nullptr)) return "";
  const auto* reply = flatbuffers::GetRoot<fb::ram::RamReply>(r->data());
  if (reply->service() == nullptr || reply->service()->instance() == nullptr) return "";
  return reply->service()->instance()->str();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace glassbox;
  std::string state_dir, json_path;
  double seconds = 5;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--state-dir") && i + 1 < argc)
      state_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s --state-dir DIR [--seconds S] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  shared::StatePaths paths(state_dir.empty() ? shared::default_state_dir() : state_dir);
  const std::string instance = instance_of(paths);
  if (instance.empty()) {
    std::fprintf(stderr, "no ram-snapshotter answers at %s\n", paths.dir().c_str());
    return 1;
  }
  if (auto r = shared::init_runtime(instance, "bench-ram-" + std::to_string(::getpid())); !r) {
    std::fprintf(stderr, "%s\n", r.error().message.c_str());
    return 1;
  }
  auto mirror = shared::RamMirror::create(instance, paths.service_endpoint("ram-snapshotter"),
                                          "bench-ram-latency");
  if (!mirror) {
    std::fprintf(stderr, "%s\n", mirror.error().message.c_str());
    return 1;
  }
  if (auto r = (*mirror)->wait_synced(std::chrono::seconds(30)); !r) {
    std::fprintf(stderr, "%s\n", r.error().message.c_str());
    return 1;
  }
  // Ground truth: the RAM file itself. The layout maps the gpa to its file offset.
  const std::string ram_path = shared::guest_ram_path(instance);
  int fd = ::open(ram_path.c_str(), O_RDONLY);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    std::perror(ram_path.c_str());
    return 1;
  }
  const auto* file = static_cast<const uint8_t*>(
      ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0));
  auto view = (*mirror)->view();
  auto tick_off = view->layout().file_offset(Gpa(kTickGpa), 8);
  auto pattern = view->at(Gpa(kPatternGpa), 65536);
  if (!tick_off || !pattern) {
    std::fprintf(stderr,
                 "gpa 0x7000000..0x7010008 not in guest RAM (is this the reference guest?)\n");
    return 1;
  }
  bool pattern_ok = std::memcmp(*pattern, "GLASSBOX-PHYS-PATTERN-V1", 24) == 0;
  for (uint64_t i = 32; i < 65536 && pattern_ok; ++i) {
    pattern_ok = (*pattern)[i] == static_cast<uint8_t>((i * 131 + 7) & 0xff);
  }

  std::deque<std::pair<uint64_t, Clock::time_point>> pending;  // (value, first seen in RAM)
  std::vector<double> latencies_ms;
  uint64_t last_file_value = 0, last_mirror_value = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    uint64_t v = 0;
    std::memcpy(&v, file + *tick_off, 8);
    if (v != last_file_value) {
      last_file_value = v;
      pending.emplace_back(v, Clock::now());
      if (pending.size() > 100000) pending.pop_front();
    }
    (void)(*mirror)->poll(std::chrono::milliseconds(0));
    if (auto mv = (*mirror)->view()) {
      uint64_t m = 0;
      if (auto p = mv->at(Gpa(kTickGpa), 8)) std::memcpy(&m, *p, 8);
      if (m != last_mirror_value) {
        last_mirror_value = m;
        const auto now = Clock::now();
        while (!pending.empty() && pending.front().first <= m) {
          latencies_ms.push_back(
              std::chrono::duration<double, std::milli>(now - pending.front().second).count());
          pending.pop_front();
        }
      }
    }
    ::usleep(200);
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double q) {
    return latencies_ms.empty()
               ? -1.0
               : latencies_ms[std::min(latencies_ms.size() - 1,
                                       static_cast<size_t>(q * latencies_ms.size()))];
  };
  std::printf("pattern at 0x7000000 through the mirror: %s\n", pattern_ok ? "ok" : "MISMATCH");
  std::printf(
      "guest write -> mirror: %zu samples, p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms "
      "(budget <= 50 ms)\n",
      latencies_ms.size(), pct(0.5), pct(0.95), pct(0.99),
      latencies_ms.empty() ? -1.0 : latencies_ms.back());
  if (!json_path.empty()) {
    std::ofstream(json_path)
        << nlohmann::json{{"pattern_ok", pattern_ok},
                          {"samples", latencies_ms.size()},
                          {"p50_ms", pct(0.5)},
                          {"p95_ms", pct(0.95)},
                          {"p99_ms", pct(0.99)},
                          {"max_ms", latencies_ms.empty() ? -1.0 : latencies_ms.back()}}
               .dump(2)
        << "\n";
  }
  return pattern_ok && !latencies_ms.empty() ? 0 : 1;
}
