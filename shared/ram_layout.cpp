#include "shared/ram_layout.hpp"

#include <algorithm>
#include <cassert>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

namespace glassbox::shared {
namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

// "gpa 0x1000, 0x2000 bytes @file 0x3000"
std::string region_text(const RamRegion& r) {
  return "gpa " + hex(r.gpa.value) + ", " + hex(r.size_bytes) + " bytes @file " +
         hex(r.file_offset);
}

struct Violation {
  std::size_t index;  // index into the input vector
  std::string what;
};

// Checks the rules of RamLayout::from_regions in input order; the first broken rule wins.
std::optional<Violation> find_violation(const std::vector<RamRegion>& regions,
                                        uint64_t file_size_bytes, RamAlignment alignment) {
  if (regions.empty()) return Violation{0, "no regions"};
  if (regions.size() > kMaxRamRegions) {
    return Violation{kMaxRamRegions, "more than " + std::to_string(kMaxRamRegions) + " regions"};
  }
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const RamRegion& r = regions[i];
    if (r.size_bytes == 0) return Violation{i, "size is 0"};
    if (r.size_bytes > kU64Max - r.gpa.value) {
      return Violation{i, "gpa range wraps around the 64-bit address space"};
    }
    if (r.size_bytes > kU64Max - r.file_offset) {
      return Violation{i, "file range wraps around the 64-bit offset space"};
    }
    if (alignment == RamAlignment::kPage) {
      if (r.gpa.value % kPageSizeBytes != 0) return Violation{i, "gpa is not 4 KiB aligned"};
      if (r.size_bytes % kPageSizeBytes != 0) {
        return Violation{i, "size is not a multiple of 4 KiB"};
      }
      if (r.file_offset % kPageSizeBytes != 0) {
        return Violation{i, "file offset is not 4 KiB aligned"};
      }
    }
    if (r.file_offset + r.size_bytes > file_size_bytes) {
      return Violation{i, "file range ends at " + hex(r.file_offset + r.size_bytes) +
                              ", past the end of the file (" + hex(file_size_bytes) + " bytes)"};
    }
    if (i > 0) {
      const RamRegion& prev = regions[i - 1];
      if (r.gpa < prev.gpa) return Violation{i, "not sorted by gpa (previous region is higher)"};
      if (r.gpa.value < prev.gpa.value + prev.size_bytes) {
        return Violation{i, "overlaps region " + std::to_string(i - 1) + " (which ends at gpa " +
                                hex(prev.gpa.value + prev.size_bytes - 1) + ")"};
      }
    }
  }
  return std::nullopt;
}

// Merges validated regions that are contiguous in gpa and file offset.
std::vector<RamRegion> merge(std::vector<RamRegion> regions) {
  std::vector<RamRegion> out;
  out.reserve(regions.size());
  for (const RamRegion& r : regions) {
    if (!out.empty()) {
      RamRegion& last = out.back();
      if (last.gpa.value + last.size_bytes == r.gpa.value &&
          last.file_offset + last.size_bytes == r.file_offset) {
        last.size_bytes += r.size_bytes;
        continue;
      }
    }
    out.push_back(r);
  }
  return out;
}

// Parses 1..16 hex digits (no prefix), the whole of `s`.
std::optional<uint64_t> parse_hex(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    unsigned d;
    if (c >= '0' && c <= '9') {
      d = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<unsigned>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<unsigned>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    v = (v << 4) | d;
  }
  return v;
}

// Parses an optionally negative decimal int32, the whole of `s`.
std::optional<int32_t> parse_i32(std::string_view s) {
  bool neg = false;
  if (!s.empty() && s.front() == '-') {
    neg = true;
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 10) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (neg) v = -v;
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
    return std::nullopt;
  }
  return static_cast<int32_t>(v);
}

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 9 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The line quoted for an error message: at most 80 bytes, non-printable bytes as '?'.
std::string excerpt(std::string_view line) {
  std::string out(line.substr(0, 80));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  if (line.size() > 80) out += "...";
  return out;
}

// Accelerator names that mtree_print_flatview() appends when AccelClass::has_memory says the
// range is registered with it (only KVM implements it in QEMU 7.2).
bool is_accel_name(std::string_view s) {
  static constexpr std::string_view kNames[] = {"KVM", "HVF", "WHPX", "NVMM", "HAX", "Xen"};
  return std::find(std::begin(kNames), std::end(kNames), s) != std::end(kNames);
}

// One range line of a FlatView, split into its fields.
struct MtreeRange {
  uint64_t start = 0;
  uint64_t end = 0;       // inclusive
  std::string_view type;  // without "nv-"
  std::string_view rest;  // "<name>[ @<offset>][ <ACCEL>]..."
};

// Parses "<start>-<end> (prio <p>, [nv-]<type>): <rest>" (the indent already removed).
Result<MtreeRange> parse_range_line(std::string_view s) {
  MtreeRange r;
  const std::size_t dash = s.find('-');
  if (dash == std::string_view::npos) return fail(Errc::kProtocol, "no '-' in the range");
  const std::size_t prio = s.find(" (prio ", dash);
  if (prio == std::string_view::npos) return fail(Errc::kProtocol, "no \" (prio \"");
  const auto start = parse_hex(s.substr(0, dash));
  const auto end = parse_hex(s.substr(dash + 1, prio - dash - 1));
  if (!start || !end) {
    return fail(Errc::kProtocol, "range bounds are not hex numbers of at most 16 digits");
  }
  if (*end < *start) return fail(Errc::kProtocol, "range end is below its start");
  const std::size_t comma = s.find(", ", prio + 7);
  if (comma == std::string_view::npos) return fail(Errc::kProtocol, "no ', ' after prio");
  if (!parse_i32(s.substr(prio + 7, comma - prio - 7))) {
    return fail(Errc::kProtocol, "prio is not an int32");
  }
  const std::size_t close = s.find("): ", comma + 2);
  if (close == std::string_view::npos) return fail(Errc::kProtocol, "no \"): \" after the type");
  std::string_view type = s.substr(comma + 2, close - comma - 2);
  if (type.substr(0, 3) == "nv-") type.remove_prefix(3);
  if (type != "ram" && type != "rom" && type != "romd" && type != "ramd" && type != "i/o") {
    return fail(Errc::kProtocol, "unknown region type '" + excerpt(type) + "'");
  }
  r.start = *start;
  r.end = *end;
  r.type = type;
  r.rest = s.substr(close + 3);
  if (r.rest.empty()) return fail(Errc::kProtocol, "no region name");
  return r;
}

// Whether `rest` names the region `name`; if so, its offset_in_region (0 when absent).
// "glassbox-ram", "glassbox-ram @00000000c0000000", "glassbox-ram @0000000000100000 KVM" are
// ours; "glassbox-ram-2 ..." and "glassbox-ram extra" (a name with a space) are not.
Result<std::optional<uint64_t>> match_block(std::string_view rest, std::string_view name) {
  if (rest.substr(0, name.size()) != name) return std::optional<uint64_t>{};
  std::string_view tail = rest.substr(name.size());
  uint64_t offset = 0;
  if (tail.substr(0, 2) == " @") {
    tail.remove_prefix(2);
    const std::size_t sp = tail.find(' ');
    const auto v = parse_hex(tail.substr(0, sp));
    if (!v) {
      return fail(Errc::kProtocol, "offset after '@' is not a hex number of at most 16 digits");
    }
    offset = *v;
    tail = sp == std::string_view::npos ? std::string_view{} : tail.substr(sp);
    while (!tail.empty()) {
      if (tail.front() != ' ') return fail(Errc::kProtocol, "unexpected text after the offset");
      tail.remove_prefix(1);
      const std::size_t next = tail.find(' ');
      if (!is_accel_name(tail.substr(0, next))) {
        return fail(Errc::kProtocol, "unexpected text after the offset");
      }
      tail = next == std::string_view::npos ? std::string_view{} : tail.substr(next);
    }
    return std::optional<uint64_t>{offset};
  }
  // No offset: only accelerator names may follow, else it is another region's name.
  while (!tail.empty()) {
    if (tail.front() != ' ') return std::optional<uint64_t>{};
    tail.remove_prefix(1);
    const std::size_t next = tail.find(' ');
    if (!is_accel_name(tail.substr(0, next))) return std::optional<uint64_t>{};
    tail = next == std::string_view::npos ? std::string_view{} : tail.substr(next);
  }
  return std::optional<uint64_t>{offset};
}

}  // namespace

Result<RamLayout> RamLayout::from_regions(std::vector<RamRegion> regions, uint64_t file_size_bytes,
                                          RamAlignment alignment) {
  if (auto v = find_violation(regions, file_size_bytes, alignment)) {
    std::string where = "region " + std::to_string(v->index);
    if (v->index < regions.size()) where += " (" + region_text(regions[v->index]) + ")";
    return fail(Errc::kInvalidArgument, where + ": " + v->what);
  }
  RamLayout layout;
  layout.regions_ = merge(std::move(regions));
  layout.file_size_bytes_ = file_size_bytes;
  for (const RamRegion& r : layout.regions_) layout.ram_bytes_ += r.size_bytes;
  return layout;
}

Result<RamLayout> RamLayout::parse_mtree(std::string_view text, std::string_view ram_block_name,
                                         uint64_t file_size_bytes) {
  const std::string where = "info mtree -f";
  if (text.size() > kMaxMtreeTextBytes) {
    return fail(Errc::kProtocol,
                where + ": text longer than " + std::to_string(kMaxMtreeTextBytes) + " bytes");
  }
  if (ram_block_name.empty()) return fail(Errc::kInvalidArgument, "empty RAM block name");

  enum class Phase { kOutside, kAddressSpaces, kRanges };
  Phase phase = Phase::kOutside;
  bool view_is_memory = false;
  bool memory_view_found = false;
  std::vector<RamRegion> regions;
  std::vector<std::size_t> region_lines;
  std::vector<std::string> ram_names_seen;

  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (++line_no > kMaxMtreeLines) {
      return fail(Errc::kProtocol,
                  where + ": more than " + std::to_string(kMaxMtreeLines) + " lines");
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto bad = [&](const std::string& what) {
      return fail(Errc::kProtocol, where + " line " + std::to_string(line_no) + ": " + what +
                                       " in '" + excerpt(line) + "'");
    };

    if (line.empty()) continue;
    if (line.substr(0, 10) == "FlatView #") {
      if (!all_digits(line.substr(10))) return bad("bad FlatView number");
      phase = Phase::kAddressSpaces;
      view_is_memory = false;
      continue;
    }
    if (line.substr(0, 5) == " AS \"") {
      if (phase != Phase::kAddressSpaces) return bad("address space line outside a view header");
      const std::size_t q = line.find("\", root: ", 5);
      if (q == std::string_view::npos) return bad("malformed address space line");
      if (line.substr(5, q - 5) == "memory") {
        if (memory_view_found || view_is_memory) return bad("second view of AS \"memory\"");
        view_is_memory = true;
      }
      continue;
    }
    if (line.substr(0, 21) == " Root memory region: ") {
      if (phase != Phase::kAddressSpaces) return bad("root line outside a view header");
      phase = Phase::kRanges;
      if (view_is_memory) memory_view_found = true;
      continue;
    }
    if (line.substr(0, 2) == "  ") {
      if (phase != Phase::kRanges) return bad("range line outside a view");
      if (!view_is_memory || line == "  No rendered FlatView") continue;
      auto range = parse_range_line(line.substr(2));
      if (!range) return bad(range.error().message);
      if (range->type == "i/o") {
        // MMIO: not RAM even when it carries our name (which QEMU 7.2 never prints).
        if (range->rest.substr(0, ram_block_name.size()) == ram_block_name) {
          auto ours = match_block(range->rest, ram_block_name);
          if (!ours) return bad(ours.error().message);
          if (*ours) return bad("RAM block '" + std::string(ram_block_name) + "' mapped as i/o");
        }
        continue;
      }
      auto ours = match_block(range->rest, ram_block_name);
      if (!ours) return bad(ours.error().message);
      if (!*ours) {
        std::string_view name = range->rest.substr(0, range->rest.find(" @"));
        while (true) {  // drop trailing accelerator names (" KVM")
          const std::size_t sp = name.rfind(' ');
          if (sp == std::string_view::npos || !is_accel_name(name.substr(sp + 1))) break;
          name = name.substr(0, sp);
        }
        if (ram_names_seen.size() < 8 &&
            std::find(ram_names_seen.begin(), ram_names_seen.end(), name) == ram_names_seen.end()) {
          ram_names_seen.emplace_back(name);
        }
        continue;
      }
      if (range->start == 0 && range->end == kU64Max) return bad("range covers all 2^64 bytes");
      if (regions.size() >= kMaxRamRegions) {
        return bad("more than " + std::to_string(kMaxRamRegions) + " ranges of the RAM block");
      }
      regions.push_back(RamRegion{Gpa(range->start), range->end - range->start + 1, **ours});
      region_lines.push_back(line_no);
      continue;
    }
    return bad("unrecognised line");
  }

  if (!memory_view_found) {
    return fail(Errc::kProtocol, where + ": no FlatView for AS \"memory\"");
  }
  if (regions.empty()) {
    std::string seen;
    for (const std::string& n : ram_names_seen) seen += (seen.empty() ? "" : ", ") + n;
    return fail(Errc::kNotFound, where + ": no ram/rom range of '" + std::string(ram_block_name) +
                                     "' in the FlatView of AS \"memory\" (ram/rom regions seen: " +
                                     (seen.empty() ? "none" : seen) + ")");
  }
  if (auto v = find_violation(regions, file_size_bytes, RamAlignment::kPage)) {
    const std::size_t line = v->index < region_lines.size() ? region_lines[v->index] : line_no;
    std::string what = v->what;
    if (v->index < regions.size()) what += " (" + region_text(regions[v->index]) + ")";
    return fail(Errc::kProtocol, where + " line " + std::to_string(line) + ": " + what);
  }
  auto layout = from_regions(std::move(regions), file_size_bytes, RamAlignment::kPage);
  if (!layout) return fail(Errc::kProtocol, where + ": " + layout.error().message);
  return layout;
}

RamLayout RamLayout::identity(uint64_t file_size_bytes) {
  RamLayout layout;
  layout.file_size_bytes_ = file_size_bytes;
  if (file_size_bytes > 0) {
    layout.regions_.push_back(RamRegion{Gpa(0), file_size_bytes, 0});
    layout.ram_bytes_ = file_size_bytes;
  }
  return layout;
}

Gpa RamLayout::end_gpa() const noexcept {
  if (regions_.empty()) return Gpa(0);
  return regions_.back().gpa + regions_.back().size_bytes;
}

Result<uint64_t> RamLayout::file_offset(Gpa gpa, uint64_t len) const {
  // The last region whose gpa <= the query.
  auto it = std::upper_bound(regions_.begin(), regions_.end(), gpa,
                             [](Gpa g, const RamRegion& r) { return g < r.gpa; });
  if (it != regions_.begin()) {
    const RamRegion& r = *(it - 1);
    const uint64_t into = gpa.value - r.gpa.value;
    if (into < r.size_bytes && len <= r.size_bytes - into) return r.file_offset + into;
  }
  std::string list;
  std::size_t n = 0;
  for (const RamRegion& r : regions_) {
    if (n++ == 8) {
      list += ", ... " + std::to_string(regions_.size() - 8) + " more";
      break;
    }
    if (!list.empty()) list += ", ";
    list += hex(r.gpa.value) + "-" + hex(r.gpa.value + r.size_bytes - 1);
  }
  return fail(Errc::kOutOfRange,
              "gpa " + hex(gpa.value) + " (+" + hex(len) +
                  " bytes) is outside guest RAM (regions: " + (list.empty() ? "none" : list) + ")");
}

Result<Gpa> RamLayout::gpa_of(uint64_t file_offset) const {
  for (const RamRegion& r : regions_) {
    if (file_offset >= r.file_offset && file_offset - r.file_offset < r.size_bytes) {
      return r.gpa + (file_offset - r.file_offset);
    }
  }
  return fail(Errc::kOutOfRange,
              "file offset " + hex(file_offset) + " maps to no gpa (" + describe() + ")");
}

std::string RamLayout::describe() const {
  std::string out;
  for (const RamRegion& r : regions_) {
    if (!out.empty()) out += ", ";
    out += hex(r.gpa.value) + "-" + hex(r.gpa.value + r.size_bytes - 1) + "@" + hex(r.file_offset);
  }
  return out;
}

RamView::RamView(const uint8_t* base, uint64_t size_bytes, RamLayout layout)
    : base_(base), size_bytes_(size_bytes), layout_(std::move(layout)) {
  assert(size_bytes_ >= layout_.file_size_bytes());
  assert(base_ != nullptr || size_bytes_ == 0);
  if (base_ == nullptr) size_bytes_ = 0;
}

Result<const uint8_t*> RamView::at(Gpa gpa, uint64_t len) const {
  auto off = layout_.file_offset(gpa, len);
  if (!off) return tl::unexpected<Error>(std::move(off).error());
  if (len > size_bytes_ || *off > size_bytes_ - len) {
    return fail(Errc::kOutOfRange, "gpa " + hex(gpa.value) + " (+" + hex(len) +
                                       " bytes) lies past the end of the mapping (" +
                                       hex(size_bytes_) + " bytes)");
  }
  return base_ + *off;
}

Result<void> RamView::read(Gpa gpa, std::span<uint8_t> out) const {
  auto p = at(gpa, out.size());
  if (!p) return tl::unexpected<Error>(std::move(p).error());
  if (!out.empty()) std::memcpy(out.data(), *p, out.size());
  return {};
}

}  // namespace glassbox::shared
