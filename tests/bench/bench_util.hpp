// Small helpers the bench commands share: file reads, waiting for the guest's ready marker,
// medians. Thread-safety: reentrant.
#pragma once

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace glassbox::bench {

using Clock = std::chrono::steady_clock;

// The whole file ("" when missing).
inline std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Seconds from `t0` until `marker` shows up in `path` (polled every 2 ms); negative on
// timeout.
inline double wait_marker(const std::string& path, const std::string& marker, Clock::time_point t0,
                          std::chrono::seconds timeout) {
  while (Clock::now() - t0 < timeout) {
    if (read_file(path).find(marker) != std::string::npos) {
      return std::chrono::duration<double>(Clock::now() - t0).count();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return -1;
}

// Median of a non-empty vector (0 when empty).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace glassbox::bench
