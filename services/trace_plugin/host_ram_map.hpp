// host_ram_map.hpp: where QEMU mapped the guest RAM file in its own address space, read from
// /proc/self/maps, to turn an insn's host address (qemu_plugin_insn_haddr, an hva) into an
// offset in the RAM file (memory-backend-file mem-path=...).
//
// Header-only, C++ standard library only (the plugin links nothing).
// Source: proc(5), /proc/[pid]/maps: "start-end perms offset dev inode pathname", hex
// addresses and offset, pathname after whitespace, " (deleted)" appended once unlinked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace glassbox::trace {

// One mapping of the RAM file: hva [host_start, host_end) holds file bytes from file_offset.
struct RamMapping {
  uint64_t host_start = 0;
  uint64_t host_end = 0;
  uint64_t file_offset = 0;
};

namespace detail {
// Parses a hex number at the front of `s`, advancing it. False when none or on overflow.
inline bool take_hex(std::string_view* s, uint64_t* out) noexcept {
  uint64_t v = 0;
  size_t i = 0;
  for (; i < s->size() && i < 17; ++i) {
    const char c = (*s)[i];
    uint64_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint64_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      break;
    }
    if (v >> 60 != 0) return false;
    v = (v << 4) | d;
  }
  if (i == 0) return false;
  s->remove_prefix(i);
  *out = v;
  return true;
}

// Removes the whitespace-separated field at the front of `s` (and the blanks before it).
inline std::string_view take_field(std::string_view* s) noexcept {
  const size_t begin = s->find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    *s = {};
    return {};
  }
  s->remove_prefix(begin);
  const size_t end = s->find(' ');
  const std::string_view field = s->substr(0, end);
  s->remove_prefix(end == std::string_view::npos ? s->size() : end);
  return field;
}
}  // namespace detail

// Parses the text of /proc/self/maps and stores into `out` every mapping whose pathname is
// exactly `ram_path` (or `ram_path` + " (deleted)"), in file order. Malformed lines are skipped.
// Returns the number stored (at most out.size(); further matches are ignored).
// Thread-safety: reentrant.
[[nodiscard]] inline size_t parse_ram_mappings(std::string_view maps_text,
                                               std::string_view ram_path,
                                               std::span<RamMapping> out) noexcept {
  size_t n = 0;
  while (!maps_text.empty() && n < out.size() && !ram_path.empty()) {
    const size_t nl = maps_text.find('\n');
    std::string_view line = maps_text.substr(0, nl);
    maps_text.remove_prefix(nl == std::string_view::npos ? maps_text.size() : nl + 1);
    RamMapping m;
    if (!detail::take_hex(&line, &m.host_start) || line.empty() || line[0] != '-') continue;
    line.remove_prefix(1);
    if (!detail::take_hex(&line, &m.host_end) || m.host_end <= m.host_start) continue;
    detail::take_field(&line);  // perms
    std::string_view offset = detail::take_field(&line);
    if (!detail::take_hex(&offset, &m.file_offset) || !offset.empty()) continue;
    detail::take_field(&line);  // dev
    detail::take_field(&line);  // inode
    const size_t path_begin = line.find_first_not_of(' ');
    if (path_begin == std::string_view::npos) continue;
    std::string_view path = line.substr(path_begin);
    constexpr std::string_view kDeleted = " (deleted)";
    if (path != ram_path && !(path.size() == ram_path.size() + kDeleted.size() &&
                              path.starts_with(ram_path) && path.ends_with(kDeleted))) {
      continue;
    }
    out[n++] = m;
  }
  return n;
}

// The mapping in `mappings` that contains hva `host_address`, or nullptr.
// Thread-safety: reentrant.
[[nodiscard]] inline const RamMapping* find_ram_mapping(std::span<const RamMapping> mappings,
                                                        uint64_t host_address) noexcept {
  for (const RamMapping& m : mappings) {
    if (host_address >= m.host_start && host_address < m.host_end) return &m;
  }
  return nullptr;
}

// RAM-file offset of hva `host_address`, or nullopt when no mapping in `mappings` holds it.
// Thread-safety: reentrant.
[[nodiscard]] inline std::optional<uint64_t> host_to_ram_offset(
    std::span<const RamMapping> mappings, uint64_t host_address) noexcept {
  const RamMapping* m = find_ram_mapping(mappings, host_address);
  if (m == nullptr) return std::nullopt;
  return m->file_offset + (host_address - m->host_start);
}

}  // namespace glassbox::trace
