// glassbox-bench-ram: the cost of one ram-snapshotter dirty-page cycle (HashDirtyTracker::scan)
// against one sequential read of the same RAM, in the same run.
//
// RAM is a MAP_SHARED tmpfs mapping (memfd), as the guest RAM file on /dev/shm is: written
// through one read-write view (the "guest"), read through a second PROT_READ view (the
// snapshotter), filled with pseudo-random bytes and touched before timing. Sizes 64 and 256 MiB
// (the 32 MiB L3 of the reference hosts holds neither).
//
//   BM_SequentialRead        sum of the u64 words, 4 accumulators (the baseline)
//   BM_SequentialReadAvx2    same with AVX2 loads: the fastest plain read (reference only)
//   BM_Memcpy                copy into a second tmpfs mapping
//   BM_HashCycleIdle         scan with no change since the previous scan (after a warm-up scan);
//                            args: size MiB, tracker threads
//   BM_HashCycleUnderWrites  scan after `pages` random pages were written (one u64 each) since
//                            the previous scan: 34 pages = 4 MiB/s of page writes at 30 Hz, and
//                            341 = 10x that. The writes are made OUTSIDE the timed region
//                            (PauseTiming); the time is the snapshotter's part of a delta
//                            cycle: the scan, collecting the dirty indices, copying each dirty
//                            page into an outgoing buffer (as into an iceoryx chunk) and making
//                            each copy the tracker's baseline (note_published). Counter
//                            dirty_pages checks they were all reported.
//
// All times are wall-clock (UseRealTime: the tracker runs worker threads). At the end, per size,
// one line per ratio to the sequential read, e.g.
//   ratio 256MiB hash-idle-t1/seq-read = 1.12 (budget <= 1.5)
// from the medians when --benchmark_repetitions > 1 (the default here is 5 repetitions,
// randomly interleaved, so machine noise hits every benchmark alike; pass the flags to
// override). --ratios_json=FILE writes the same ratios and the times as JSON.
//
// Usage: glassbox-bench-ram [--ratios_json=FILE] [google benchmark flags]
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "services/ram_snapshotter/dirty_tracker.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using glassbox::ram_snapshotter::HashDirtyTracker;
using glassbox::ram_snapshotter::kDirtyPageBytes;

constexpr int kSizesMiB[] = {64, 256};
constexpr int kPagesPerCycleLow = 34;    // 4 MiB/s at 30 Hz
constexpr int kPagesPerCycleHigh = 341;  // 10x

// One RAM file: a memfd mapped twice, read-write ("guest") and read-only ("snapshotter").
struct Ram {
  uint64_t size_bytes = 0;
  uint8_t* rw = nullptr;
  const uint8_t* ro = nullptr;
};

Ram map_ram(uint64_t size_bytes, uint64_t seed) {
  const int fd = memfd_create("glassbox-bench-ram", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(size_bytes)) != 0) {
    std::perror("memfd");
    std::exit(1);
  }
  void* rw = mmap(nullptr, size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  void* ro = mmap(nullptr, size_bytes, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (rw == MAP_FAILED || ro == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  auto* words = static_cast<uint64_t*>(rw);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint64_t i = 0; i < size_bytes / 8; ++i) {  // xorshift64
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    words[i] = x;
  }
  // Touch the read-only view so its page tables are populated before timing.
  uint64_t sum = 0;
  const auto* ro_bytes = static_cast<const uint8_t*>(ro);
  for (uint64_t i = 0; i < size_bytes; i += kDirtyPageBytes) sum += ro_bytes[i];
  benchmark::DoNotOptimize(sum);
  return Ram{size_bytes, static_cast<uint8_t*>(rw), ro_bytes};
}

// One RAM per size (and one memcpy destination), made on first use and kept for the process.
const Ram& ram(int size_mib) {
  static std::map<int, Ram> rams;
  auto it = rams.find(size_mib);
  if (it == rams.end()) {
    it = rams.emplace(size_mib, map_ram(uint64_t(size_mib) << 20, size_mib)).first;
  }
  return it->second;
}

const Ram& memcpy_destination(int size_mib) {
  static std::map<int, Ram> rams;
  auto it = rams.find(size_mib);
  if (it == rams.end()) {
    it = rams.emplace(size_mib, map_ram(uint64_t(size_mib) << 20, 1000 + size_mib)).first;
  }
  return it->second;
}

uint64_t sum_words(const uint8_t* p, uint64_t size_bytes) {
  const auto* w = reinterpret_cast<const uint64_t*>(p);
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (uint64_t i = 0; i < size_bytes / 8; i += 4) {
    s0 += w[i];
    s1 += w[i + 1];
    s2 += w[i + 2];
    s3 += w[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_words_avx2(const uint8_t* p, uint64_t size_bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (uint64_t i = 0; i < size_bytes; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i a = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), a);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

void BM_SequentialRead(benchmark::State& state) {
  const Ram& r = ram(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    uint64_t s = sum_words(r.ro, r.size_bytes);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(r.size_bytes));
}

void BM_SequentialReadAvx2(benchmark::State& state) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2")) {
    state.SkipWithError("no AVX2");
    return;
  }
  const Ram& r = ram(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    uint64_t s = sum_words_avx2(r.ro, r.size_bytes);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(r.size_bytes));
#else
  state.SkipWithError("not x86-64");
#endif
}

void BM_Memcpy(benchmark::State& state) {
  const int mib = static_cast<int>(state.range(0));
  const Ram& r = ram(mib);
  const Ram& dst = memcpy_destination(mib);
  for (auto _ : state) {
    std::memcpy(dst.rw, r.ro, r.size_bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(r.size_bytes));
}

void BM_HashCycleIdle(benchmark::State& state) {
  const Ram& r = ram(static_cast<int>(state.range(0)));
  HashDirtyTracker tracker(static_cast<unsigned>(state.range(1)));
  std::vector<uint64_t> dirty;
  if (!tracker.scan(r.ro, r.size_bytes, dirty)) {  // warm-up: every page, hashes stored
    state.SkipWithError("scan failed");
    return;
  }
  uint64_t reported = 0;
  for (auto _ : state) {
    dirty.clear();
    if (!tracker.scan(r.ro, r.size_bytes, dirty)) {
      state.SkipWithError("scan failed");
      break;
    }
    reported += dirty.size();
    benchmark::DoNotOptimize(dirty.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(r.size_bytes));
  state.counters["dirty_pages"] =
      benchmark::Counter(double(reported), benchmark::Counter::kAvgIterations);
}

void BM_HashCycleUnderWrites(benchmark::State& state) {
  const int mib = static_cast<int>(state.range(0));
  const Ram& r = ram(mib);
  const uint64_t n_pages = r.size_bytes / kDirtyPageBytes;
  const auto pages_per_cycle = static_cast<uint64_t>(state.range(2));
  HashDirtyTracker tracker(static_cast<unsigned>(state.range(1)));
  std::vector<uint64_t> dirty;
  if (!tracker.scan(r.ro, r.size_bytes, dirty)) {
    state.SkipWithError("scan failed");
    return;
  }
  std::mt19937_64 rng(uint64_t(mib) * 7919 + pages_per_cycle);
  std::vector<uint8_t> chunk(2 * pages_per_cycle * kDirtyPageBytes);  // the outgoing copy
  uint64_t reported = 0;
  for (auto _ : state) {
    state.PauseTiming();  // the guest's writes are not the snapshotter's cost
    for (uint64_t i = 0; i < pages_per_cycle; ++i) {
      const uint64_t page = rng() % n_pages;
      const uint64_t word = rng() % (kDirtyPageBytes / 8);
      reinterpret_cast<uint64_t*>(r.rw + page * kDirtyPageBytes)[word] += 1 + (rng() | 1);
    }
    dirty.clear();
    state.ResumeTiming();
    if (!tracker.scan(r.ro, r.size_bytes, dirty)) {
      state.SkipWithError("scan failed");
      break;
    }
    for (uint64_t i = 0; i < dirty.size() && (i + 1) * kDirtyPageBytes <= chunk.size(); ++i) {
      uint8_t* copy = chunk.data() + i * kDirtyPageBytes;
      std::memcpy(copy, r.ro + dirty[i] * kDirtyPageBytes, kDirtyPageBytes);
      tracker.note_published(dirty[i], copy);
    }
    reported += dirty.size();
    benchmark::DoNotOptimize(dirty.data());
    benchmark::DoNotOptimize(chunk.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(r.size_bytes));
  // Slightly below pages_per_cycle when two writes hit one page.
  state.counters["dirty_pages"] =
      benchmark::Counter(double(reported), benchmark::Counter::kAvgIterations);
}

void size_args(benchmark::internal::Benchmark* b) {
  for (int mib : kSizesMiB) b->Arg(mib);
}
void size_thread_args(benchmark::internal::Benchmark* b) {
  for (int mib : kSizesMiB) {
    for (int threads : {1, 2}) b->Args({mib, threads});
  }
}
void size_thread_write_args(benchmark::internal::Benchmark* b) {
  for (int mib : kSizesMiB) {
    for (int threads : {1, 2}) {
      for (int pages : {kPagesPerCycleLow, kPagesPerCycleHigh}) b->Args({mib, threads, pages});
    }
  }
}

BENCHMARK(BM_SequentialRead)->Apply(size_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SequentialReadAvx2)->Apply(size_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Memcpy)->Apply(size_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HashCycleIdle)->Apply(size_thread_args)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_HashCycleUnderWrites)
    ->Apply(size_thread_write_args)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Console output as usual, plus the time per iteration of each benchmark instance: the median
// aggregate when there are repetitions, else the single run.
class RecordingReporter : public benchmark::ConsoleReporter {
 public:
  explicit RecordingReporter(bool color) : ConsoleReporter(color ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const std::string key = run.run_name.function_name + "/" + run.run_name.args;
      const double ms = run.GetAdjustedRealTime();  // every benchmark here is in milliseconds
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") medians_[key] = ms;
      } else {
        singles_[key].push_back(ms);
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // Median time in ms of benchmark `key`, or a negative value when it did not run.
  double ms(const std::string& key) const {
    if (auto it = medians_.find(key); it != medians_.end()) return it->second;
    if (auto it = singles_.find(key); it != singles_.end() && !it->second.empty()) {
      std::vector<double> v = it->second;
      std::sort(v.begin(), v.end());
      return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    }
    return -1;
  }

 private:
  std::map<std::string, double> medians_;
  std::map<std::string, std::vector<double>> singles_;
};

struct Ratio {
  int size_mib;
  std::string name;
  double value;
  double budget;  // <= 0: none
};

bool has_flag(int argc, char** argv, const char* prefix) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix, std::strlen(prefix)) == 0) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string ratios_json;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const char* kFlag = "--ratios_json=";
    if (i > 0 && std::strncmp(argv[i], kFlag, std::strlen(kFlag)) == 0) {
      ratios_json = argv[i] + std::strlen(kFlag);
    } else {
      args.push_back(argv[i]);
    }
  }
  // Defaults for honest medians on a shared machine, unless the caller chose.
  std::string reps = "--benchmark_repetitions=5";
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  if (!has_flag(argc, argv, "--benchmark_repetitions")) args.push_back(reps.data());
  if (!has_flag(argc, argv, "--benchmark_enable_random_interleaving")) {
    args.push_back(interleave.data());
  }
  int n_args = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n_args, args.data());
  if (benchmark::ReportUnrecognizedArguments(n_args, args.data())) return 1;

  const bool color = isatty(STDOUT_FILENO) && !has_flag(argc, argv, "--benchmark_color=false") &&
                     !has_flag(argc, argv, "--benchmark_color=no");
  RecordingReporter reporter(color);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::vector<Ratio> ratios;
  for (int mib : kSizesMiB) {
    const std::string m = std::to_string(mib);
    const double seq = reporter.ms("BM_SequentialRead/" + m);
    if (seq <= 0) continue;
    auto add = [&](const std::string& name, const std::string& key, double budget) {
      const double t = reporter.ms(key);
      if (t > 0) ratios.push_back(Ratio{mib, name, t / seq, budget});
    };
    for (int threads : {1, 2}) {
      const std::string t = std::to_string(threads);
      add("hash-idle-t" + t + "/seq-read", "BM_HashCycleIdle/" + m + "/" + t, 1.5);
      for (int pages : {kPagesPerCycleLow, kPagesPerCycleHigh}) {
        add("hash-writes" + std::to_string(pages) + "p-t" + t + "/seq-read",
            "BM_HashCycleUnderWrites/" + m + "/" + t + "/" + std::to_string(pages), 1.5);
      }
    }
    add("memcpy/seq-read", "BM_Memcpy/" + m, 0);
    add("avx2-read/seq-read", "BM_SequentialReadAvx2/" + m, 0);
  }

  std::printf("\n");
  for (int mib : kSizesMiB) {
    const double seq = reporter.ms("BM_SequentialRead/" + std::to_string(mib));
    if (seq > 0)
      std::printf("time %dMiB seq-read = %.3f ms (%.1f GB/s)\n", mib, seq,
                  mib / 1024.0 * 1.073741824 / (seq / 1000));
  }
  for (const Ratio& r : ratios) {
    std::printf("ratio %dMiB %s = %.2f", r.size_mib, r.name.c_str(), r.value);
    if (r.budget > 0) {
      std::printf(" (budget <= %.1f%s)", r.budget, r.value <= r.budget ? "" : ", OVER");
    }
    std::printf("\n");
  }

  if (!ratios_json.empty()) {
    FILE* f = std::fopen(ratios_json.c_str(), "w");
    if (f == nullptr) {
      std::perror(ratios_json.c_str());
      return 1;
    }
    std::fprintf(f, "{\n  \"seq_read_ms\": {");
    bool first = true;
    for (int mib : kSizesMiB) {
      const double seq = reporter.ms("BM_SequentialRead/" + std::to_string(mib));
      if (seq <= 0) continue;
      std::fprintf(f, "%s\"%dMiB\": %.4f", first ? "" : ", ", mib, seq);
      first = false;
    }
    std::fprintf(f, "},\n  \"ratios\": [");
    for (size_t i = 0; i < ratios.size(); ++i) {
      const Ratio& r = ratios[i];
      std::fprintf(f, "%s\n    {\"size\": \"%dMiB\", \"name\": \"%s\", \"value\": %.4f",
                   i ? "," : "", r.size_mib, r.name.c_str(), r.value);
      if (r.budget > 0) {
        std::fprintf(f, ", \"budget\": %.2f, \"ok\": %s", r.budget,
                     r.value <= r.budget ? "true" : "false");
      }
      std::fprintf(f, "}");
    }
    std::fprintf(f, "\n  ]\n}\n");
    std::fclose(f);
  }
  return 0;
}
