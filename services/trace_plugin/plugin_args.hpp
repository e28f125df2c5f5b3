// plugin_args.hpp: the arguments of libglassbox-trace.so, as QEMU passes them ("key=value"
// strings from `-plugin /abs/libglassbox-trace.so,key=value,...`).
//
//   shm=PATH            required, absolute: the trace file to create (see shared/trace_ring.hpp)
//   mode=counts|stream  default counts
//   ring_events=N       events per vCPU ring, a power of two in [16, 2^28]; default 2^20
//   max_tbs=N           counter slots, in [1, 2^28]; default 2^22
//   tb_ring_bytes=N     TB record ring bytes, a power of two in [64 KiB, 4 GiB]; default 64 MiB
//   ram=PATH            absolute path of the guest RAM file (memory-backend-file mem-path), to
//                       turn an insn's host address into a RAM-file offset; optional
// Numbers: decimal or 0x-hex, optionally followed by K, M or G (binary multiples).
//
// Header-only, C++ standard library only (the plugin links nothing).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "shared/trace_ring.hpp"

namespace glassbox::trace {

// The parsed arguments; defaults as above.
struct PluginArgs {
  std::string shm_path;
  std::string ram_path;  // empty: no ram= argument, every ram_offset is kNoRamOffset
  TraceMode mode = TraceMode::kCounts;
  uint32_t ring_events = kDefaultRingEvents;
  uint64_t max_tbs = kDefaultMaxTbs;
  uint64_t tb_ring_bytes = kDefaultTbRingBytes;
};

namespace detail {
// Parses "123", "0x7b", "64M": nullopt-like false on anything else or on overflow.
inline bool parse_size(std::string_view s, uint64_t* out) noexcept {
  uint64_t multiplier = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K':
      case 'k':
        multiplier = 1ull << 10;
        break;
      case 'M':
      case 'm':
        multiplier = 1ull << 20;
        break;
      case 'G':
      case 'g':
        multiplier = 1ull << 30;
        break;
      default:
        break;
    }
    if (multiplier != 1) s.remove_suffix(1);
  }
  uint64_t base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (const char c : s) {
    uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      digit = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      return false;
    }
    if (v > (UINT64_MAX - digit) / base) return false;
    v = v * base + digit;
  }
  if (v > UINT64_MAX / multiplier) return false;
  *out = v * multiplier;
  return true;
}
}  // namespace detail

// Parses argv (argc "key=value" strings) into *out, starting from the defaults. Returns an
// empty string on success, else one line naming the offending argument and what is expected
// (unknown key, duplicate key, missing '=', bad number, bound or power of two, relative path,
// missing shm=). Thread-safety: reentrant.
[[nodiscard]] inline std::string parse_plugin_args(std::span<const char* const> argv,
                                                   PluginArgs* out) {
  PluginArgs args;
  bool seen_shm = false, seen_ram = false, seen_mode = false, seen_events = false, seen_tbs = false,
       seen_ring = false;
  for (const char* raw : argv) {
    const std::string_view arg = raw != nullptr ? std::string_view(raw) : std::string_view();
    const size_t eq = arg.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return "bad argument '" + std::string(arg) + "': expected key=value";
    }
    const std::string_view key = arg.substr(0, eq);
    const std::string_view value = arg.substr(eq + 1);
    const auto bad = [&](std::string_view expected) {
      return "bad argument '" + std::string(arg) + "': " + std::string(expected);
    };
    const auto once = [&](bool* seen) {
      const bool first = !*seen;
      *seen = true;
      return first;
    };
    uint64_t n = 0;
    if (key == "shm") {
      if (!once(&seen_shm)) return bad("shm given twice");
      if (value.empty() || value[0] != '/') return bad("expected an absolute path");
      args.shm_path = value;
    } else if (key == "ram") {
      if (!once(&seen_ram)) return bad("ram given twice");
      if (value.empty() || value[0] != '/') return bad("expected an absolute path");
      args.ram_path = value;
    } else if (key == "mode") {
      if (!once(&seen_mode)) return bad("mode given twice");
      if (value == "counts") {
        args.mode = TraceMode::kCounts;
      } else if (value == "stream") {
        args.mode = TraceMode::kStream;
      } else {
        return bad("expected mode=counts or mode=stream");
      }
    } else if (key == "ring_events") {
      if (!once(&seen_events)) return bad("ring_events given twice");
      if (!detail::parse_size(value, &n) || n < kMinRingEvents || n > kMaxRingEvents ||
          !std::has_single_bit(n)) {
        return bad("expected a power of two in [16, 268435456]");
      }
      args.ring_events = static_cast<uint32_t>(n);
    } else if (key == "max_tbs") {
      if (!once(&seen_tbs)) return bad("max_tbs given twice");
      if (!detail::parse_size(value, &n) || n < 1 || n > kMaxTbs) {
        return bad("expected a number in [1, 268435456]");
      }
      args.max_tbs = n;
    } else if (key == "tb_ring_bytes") {
      if (!once(&seen_ring)) return bad("tb_ring_bytes given twice");
      if (!detail::parse_size(value, &n) || n < kMinTbRingBytes || n > kMaxTbRingBytes ||
          !std::has_single_bit(n)) {
        return bad("expected a power of two in [64K, 4G]");
      }
      args.tb_ring_bytes = n;
    } else {
      return "unknown argument '" + std::string(arg) +
             "' (known: shm, mode, ring_events, max_tbs, tb_ring_bytes, ram)";
    }
  }
  if (!seen_shm) return "missing argument shm=PATH (the trace file to create)";
  *out = std::move(args);
  return {};
}

}  // namespace glassbox::trace
