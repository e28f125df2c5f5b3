#include "services/semantic_db/vmcoreinfo.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

#include "services/semantic_db/address_space.hpp"

namespace glassbox::semantic_db {
namespace {

constexpr std::string_view kOsReleaseKey = "OSRELEASE=";
constexpr uint64_t k4KiB = 4096;
constexpr uint64_t k2MiB = 2ULL << 20;
// Offset of the descriptor in the vmcoreinfo_note page: Elf64_Nhdr (12 bytes) + "VMCOREINFO\0"
// padded to 4 bytes (12).
constexpr uint64_t kNoteDescOffset = 24;
constexpr std::size_t kMaxNameBytes = 128;
constexpr std::size_t kMaxReleaseBytes = 64;  // __NEW_UTS_LEN
constexpr std::size_t kMaxBannerHits = 16;

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

std::optional<uint64_t> parse_hex(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<int64_t> parse_dec(std::string_view s) {
  if (s.empty() || s.size() > 20 || s[0] == '+') return std::nullopt;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

bool valid_release(std::string_view s) {
  if (s.empty() || s.size() > kMaxReleaseBytes) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '+' || c == '~' || c == '-';
  });
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_';
  });
}

// "SYMBOL(name)" -> "name" when `key` has that shape.
std::optional<std::string_view> inner(std::string_view key, std::string_view prefix) {
  if (key.size() < prefix.size() + 2 || key.substr(0, prefix.size()) != prefix ||
      key[prefix.size()] != '(' || key.back() != ')') {
    return std::nullopt;
  }
  return key.substr(prefix.size() + 1, key.size() - prefix.size() - 2);
}

// Checks beyond the syntax: the values a real x86-64 kernel writes agree with each other.
Result<void> check_consistent(const Vmcoreinfo& v) {
  if (!v.kernel_offset) return fail(Errc::kProtocol, "no KERNELOFFSET");
  if (!v.symbol("init_top_pgt")) return fail(Errc::kProtocol, "no SYMBOL(init_top_pgt)");
  if (*v.kernel_offset % k2MiB != 0) {
    return fail(Errc::kProtocol, "KERNELOFFSET " + hex(*v.kernel_offset) + " not 2 MiB aligned");
  }
  if (auto stext = v.symbol("_stext"); stext && *stext != kUnslidTextVa + *v.kernel_offset) {
    return fail(Errc::kProtocol, "SYMBOL(_stext) " + hex(*stext) + " != 0xffffffff81000000 + " +
                                     "KERNELOFFSET " + hex(*v.kernel_offset));
  }
  auto pb = v.number("phys_base");
  if (!pb) return fail(Errc::kProtocol, "no NUMBER(phys_base)");
  if (static_cast<uint64_t>(*pb) % k2MiB != 0) {
    return fail(Errc::kProtocol, "NUMBER(phys_base) not 2 MiB aligned");
  }
  if (*v.symbol("init_top_pgt") < kStartKernelMap) {
    return fail(Errc::kProtocol, "SYMBOL(init_top_pgt) is not a kernel-image address");
  }
  return {};
}

// Extracts the text starting at `p` (at most `avail` bytes readable): up to the first NUL,
// at most kMaxVmcoreinfoBytes.
std::string_view text_at(const uint8_t* p, uint64_t avail) {
  const std::size_t lim = static_cast<std::size_t>(std::min<uint64_t>(avail, kMaxVmcoreinfoBytes));
  const void* nul = std::memchr(p, 0, lim);
  const std::size_t len =
      nul ? static_cast<std::size_t>(static_cast<const uint8_t*>(nul) - p) : lim;
  return {reinterpret_cast<const char*>(p), len};
}

// Is `desc` (at page offset 24) the descriptor of a valid "VMCOREINFO" ELF note? Returns the
// descriptor size when so.
std::optional<uint32_t> note_desc_size(const uint8_t* page) {
  uint32_t namesz, descsz, type;
  std::memcpy(&namesz, page, 4);
  std::memcpy(&descsz, page + 4, 4);
  std::memcpy(&type, page + 8, 4);
  if (namesz != 11 || type != 0 || descsz == 0 || descsz > kMaxVmcoreinfoBytes) return std::nullopt;
  if (std::memcmp(page + 12, "VMCOREINFO\0", 11) != 0) return std::nullopt;
  return descsz;
}

struct Scan {
  std::vector<Vmcoreinfo> good;
  std::size_t n_rejected = 0;
  std::vector<std::string> reasons;  // first few

  void consider(Gpa gpa, std::string_view text, bool in_note) {
    auto parsed = parse_vmcoreinfo(text);
    Result<void> ok = parsed ? check_consistent(*parsed) : Result<void>{};
    if (!parsed || !ok) {
      ++n_rejected;
      if (reasons.size() < 3) {
        reasons.push_back("at gpa " + hex(gpa.value) + ": " +
                          (parsed ? ok.error().message : parsed.error().message));
      }
      return;
    }
    parsed->gpa = gpa;
    parsed->in_elf_note = in_note;
    good.push_back(std::move(*parsed));
  }
};

}  // namespace

std::optional<uint64_t> Vmcoreinfo::symbol(std::string_view name) const {
  auto it = symbols.find(std::string(name));
  if (it == symbols.end()) return std::nullopt;
  return it->second;
}

std::optional<int64_t> Vmcoreinfo::number(std::string_view name) const {
  auto it = numbers.find(std::string(name));
  if (it == numbers.end()) return std::nullopt;
  return it->second;
}

Result<Vmcoreinfo> parse_vmcoreinfo(std::string_view text) {
  if (text.size() > kMaxVmcoreinfoBytes) {
    return fail(Errc::kProtocol, "vmcoreinfo: " + std::to_string(text.size()) +
                                     " bytes, more than " + std::to_string(kMaxVmcoreinfoBytes));
  }
  if (text.empty()) return fail(Errc::kProtocol, "vmcoreinfo: empty");
  if (text.back() != '\n') {
    return fail(Errc::kProtocol, "vmcoreinfo: last line not terminated (truncated text)");
  }
  Vmcoreinfo v;
  v.text_bytes = text.size();
  bool have_page_size = false;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    ++line_no;
    const std::size_t nl = text.find('\n', pos);  // found: text ends with '\n'
    const std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    auto bad = [&](const std::string& what) {
      return fail(Errc::kProtocol, "vmcoreinfo line " + std::to_string(line_no) + ": " + what);
    };
    for (char c : line) {
      if (c < 0x20 || c > 0x7e) return bad("non-printable byte");
    }
    const std::size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) return bad("not KEY=VALUE");
    const std::string_view key = line.substr(0, eq);
    const std::string_view value = line.substr(eq + 1);
    auto dup = [&](bool inserted) -> Result<void> {
      if (!inserted) return bad("duplicate key " + std::string(key));
      return {};
    };
    if (auto n = inner(key, "SYMBOL")) {
      auto h = parse_hex(value);
      if (!valid_name(*n) || !h) return bad("bad SYMBOL line");
      GB_TRY(dup(v.symbols.emplace(std::string(*n), *h).second));
      continue;
    }
    std::map<std::string, int64_t>* dec_map = nullptr;
    std::optional<std::string_view> name;
    if ((name = inner(key, "OFFSET"))) {
      dec_map = &v.offsets;
    } else if ((name = inner(key, "SIZE"))) {
      dec_map = &v.sizes;
    } else if ((name = inner(key, "NUMBER"))) {
      dec_map = &v.numbers;
    } else if ((name = inner(key, "LENGTH"))) {
      dec_map = &v.lengths;
    }
    if (dec_map) {
      auto d = parse_dec(value);
      if (!valid_name(*name) || !d) return bad("bad " + std::string(key) + " value");
      GB_TRY(dup(dec_map->emplace(std::string(*name), *d).second));
      continue;
    }
    if (key == "OSRELEASE") {
      if (!v.os_release.empty()) return bad("duplicate OSRELEASE");
      if (!valid_release(value)) return bad("bad OSRELEASE");
      v.os_release = std::string(value);
    } else if (key == "PAGESIZE") {
      auto d = parse_dec(value);
      if (have_page_size) return bad("duplicate PAGESIZE");
      if (!d || *d != 4096) return bad("PAGESIZE is not 4096");
      v.page_size_bytes = 4096;
      have_page_size = true;
    } else if (key == "KERNELOFFSET") {
      auto h = parse_hex(value);
      if (v.kernel_offset) return bad("duplicate KERNELOFFSET");
      if (!h) return bad("bad KERNELOFFSET");
      v.kernel_offset = *h;
    } else if (key == "CRASHTIME") {
      auto d = parse_dec(value);
      if (v.crash_time) return bad("duplicate CRASHTIME");
      if (!d) return bad("bad CRASHTIME");
      v.crash_time = *d;
    } else if (key == "BUILD-ID") {
      if (!v.build_id.empty()) return bad("duplicate BUILD-ID");
      if (value.empty() || value.size() > 128 ||
          !std::all_of(value.begin(), value.end(),
                       [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
        return bad("bad BUILD-ID");
      }
      v.build_id = std::string(value);
    } else {
      if (key.size() > kMaxNameBytes) return bad("key too long");
      GB_TRY(dup(v.other.emplace(std::string(key), std::string(value)).second));
    }
  }
  if (v.os_release.empty()) return fail(Errc::kProtocol, "vmcoreinfo: no OSRELEASE");
  if (!have_page_size) return fail(Errc::kProtocol, "vmcoreinfo: no PAGESIZE");
  return v;
}

Result<Vmcoreinfo> find_vmcoreinfo(const shared::RamView& ram,
                                   std::optional<uint64_t> want_kaslr_slide) {
  Scan scan;
  // Fast pass: page offsets 0 (vmcoreinfo_data) and 24 (vmcoreinfo_note's descriptor).
  for (const shared::RamRegion& region : ram.layout().regions()) {
    const uint64_t first = (region.gpa.value + k4KiB - 1) & ~(k4KiB - 1);
    const uint64_t end = region.gpa.value + region.size_bytes;
    if (first >= end) continue;
    auto base = ram.at(Gpa(first), end - first);
    if (!base) continue;
    const uint64_t len = end - first;
    for (uint64_t off = 0; off + kNoteDescOffset + kOsReleaseKey.size() <= len; off += k4KiB) {
      const uint8_t* page = *base + off;
      if (std::memcmp(page, kOsReleaseKey.data(), kOsReleaseKey.size()) == 0) {
        scan.consider(Gpa(first + off), text_at(page, len - off), false);
      }
      const uint8_t* desc = page + kNoteDescOffset;
      if (std::memcmp(desc, kOsReleaseKey.data(), kOsReleaseKey.size()) == 0) {
        std::string_view text = text_at(desc, len - off - kNoteDescOffset);
        auto descsz = note_desc_size(page);
        const bool in_note = descsz && *descsz == text.size();
        scan.consider(Gpa(first + off + kNoteDescOffset), text, in_note);
      }
    }
  }
  // Slow pass: anywhere in RAM.
  if (scan.good.empty()) {
    std::size_t n_hits = 0;
    for (const shared::RamRegion& region : ram.layout().regions()) {
      auto base = ram.at(region.gpa, region.size_bytes);
      if (!base) continue;
      const uint8_t* p = *base;
      const uint8_t* end = *base + region.size_bytes;
      while (p < end && n_hits < kMaxVmcoreinfoCandidates) {
        const void* hit = memmem(p, static_cast<std::size_t>(end - p), kOsReleaseKey.data(),
                                 kOsReleaseKey.size());
        if (!hit) break;
        const uint8_t* h = static_cast<const uint8_t*>(hit);
        const uint64_t off = static_cast<uint64_t>(h - *base);
        ++n_hits;
        if ((region.gpa.value + off) % k4KiB != 0 &&
            (region.gpa.value + off) % k4KiB != kNoteDescOffset) {
          scan.consider(Gpa(region.gpa.value + off), text_at(h, region.size_bytes - off), false);
        }
        p = h + 1;
      }
    }
  }
  if (scan.good.empty()) {
    std::string msg = "no consistent VMCOREINFO in guest RAM (" + std::to_string(scan.n_rejected) +
                      " candidates rejected";
    for (const std::string& r : scan.reasons) msg += "; " + r;
    return fail(Errc::kNotFound, msg + ")");
  }
  if (want_kaslr_slide) {
    const size_t before = scan.good.size();
    std::erase_if(scan.good,
                  [&](const Vmcoreinfo& v) { return v.kernel_offset != want_kaslr_slide; });
    if (scan.good.empty()) {
      return fail(Errc::kNotFound, "no VMCOREINFO for the running kernel (slide " +
                                       hex(*want_kaslr_slide) + "; " + std::to_string(before) +
                                       " copies of other boots)");
    }
  }
  auto best = std::min_element(scan.good.begin(), scan.good.end(),
                               [](const Vmcoreinfo& a, const Vmcoreinfo& b) {
                                 if (a.in_elf_note != b.in_elf_note) return a.in_elf_note;
                                 return a.gpa < b.gpa;
                               });
  Vmcoreinfo out = std::move(*best);
  out.n_candidates = scan.good.size();
  return out;
}

std::string KernelBase::describe() const {
  std::string s = "slide " + hex(kaslr_slide) + " phys_base " + hex(phys_base) + " _text " +
                  hex(text_gva.value) + " @" + hex(text_gpa.value) + " pgd " +
                  hex(kernel_pgd.value) + " release " + release + " sources ";
  for (std::size_t i = 0; i < sources.size(); ++i) s += (i ? "," : "") + sources[i];
  return s;
}

namespace {

// Bytes from text_gva that the kernel PGD maps contiguously to text_gpa (2 MiB steps, <= 1 GiB).
uint64_t mapped_image_bytes(const PageTableWalker& walker, const KernelBase& kb) {
  uint64_t n = 0;
  for (; n < 512; ++n) {
    auto t = walker.translate(Gva(kb.text_gva.value + n * k2MiB));
    if (!t || t->gpa.value != kb.text_gpa.value + n * k2MiB) break;
  }
  return n * k2MiB;
}

// Chooses among pgd-scan candidates: `want_pgd` first, then one inside its own image with an
// empty user half (init_top_pgt), then the most common (text_gva, text_gpa).
std::optional<KernelPgdCandidate> pick(const std::vector<KernelPgdCandidate>& cands,
                                       std::optional<Gpa> want_pgd) {
  if (cands.empty()) return std::nullopt;
  if (want_pgd) {
    for (const auto& c : cands) {
      if (c.pgd == *want_pgd) return c;
    }
  }
  for (const auto& c : cands) {
    if (c.inside_own_image && c.user_half_empty) return c;
  }
  for (const auto& c : cands) {
    if (c.inside_own_image) return c;
  }
  std::map<std::pair<uint64_t, uint64_t>, std::size_t> votes;
  for (const auto& c : cands) ++votes[{c.text_gva.value, c.text_gpa.value}];
  auto top = std::max_element(votes.begin(), votes.end(),
                              [](const auto& a, const auto& b) { return a.second < b.second; });
  for (const auto& c : cands) {
    if (c.text_gva.value == top->first.first && c.text_gpa.value == top->first.second) return c;
  }
  return std::nullopt;
}

}  // namespace

Result<KernelBase> find_kernel_base(const shared::RamView& ram, const Vmcoreinfo* vmcoreinfo,
                                    const KernelBaseOptions& options) {
  KernelBase kb;
  bool have = false;
  if (vmcoreinfo) {
    if (auto l5 = vmcoreinfo->number("pgtable_l5_enabled"); l5 && *l5 != 0) {
      return fail(Errc::kUnsupported, "vmcoreinfo: 5-level paging (pgtable_l5_enabled=1)");
    }
    auto ko = vmcoreinfo->kernel_offset;
    auto pb = vmcoreinfo->number("phys_base");
    auto pgd = vmcoreinfo->symbol("init_top_pgt");
    if (ko && pb && pgd) {
      kb.kaslr_slide = *ko;
      kb.phys_base = static_cast<uint64_t>(*pb);
      kb.text_gva = Gva(kUnslidTextVa + kb.kaslr_slide);
      kb.text_gpa = Gpa(kb.text_gva.value - kStartKernelMap + kb.phys_base);
      auto pgd_pa = kernel_image_pa(Gva(*pgd), kb);
      if (!pgd_pa) return fail(Errc::kProtocol, "vmcoreinfo: " + pgd_pa.error().message);
      kb.kernel_pgd = *pgd_pa;
      if (!ram.at(kb.text_gpa, k4KiB) || !ram.at(kb.kernel_pgd, k4KiB)) {
        return fail(Errc::kProtocol, "vmcoreinfo: _text (gpa " + hex(kb.text_gpa.value) +
                                         ") or init_top_pgt (gpa " + hex(kb.kernel_pgd.value) +
                                         ") lies outside guest RAM");
      }
      kb.release = vmcoreinfo->os_release;
      kb.vmcoreinfo_gpa = vmcoreinfo->gpa;
      kb.sources.push_back("vmcoreinfo");
      have = true;
    } else {
      kb.notes.push_back(
          "vmcoreinfo: lacks KERNELOFFSET, NUMBER(phys_base) or SYMBOL(init_top_pgt)");
    }
  } else {
    kb.notes.push_back("vmcoreinfo: not available");
  }

  // Page-table scan, or the live vCPU's PGD.
  bool pgd_agrees = false;
  std::optional<KernelPgdCandidate> best;
  const char* pgd_source = "pgd-scan";
  if (options.live_pgd) {
    best = kernel_pgd_at(ram, *options.live_pgd);
    pgd_source = "cr3";
    if (!best) {
      return fail(Errc::kNotFound, "the live vCPU's PGD at gpa " + hex(options.live_pgd->value) +
                                       " maps no kernel image");
    }
    if (have && (best->text_gva != kb.text_gva || best->text_gpa != kb.text_gpa)) {
      return fail(Errc::kNotFound, "VMCOREINFO belongs to another boot: it places _text at " +
                                       hex(kb.text_gva.value) + ", the running kernel (CR3) at " +
                                       hex(best->text_gva.value));
    }
  } else {
    best = pick(scan_kernel_pgds(ram), have ? std::optional<Gpa>(kb.kernel_pgd) : std::nullopt);
  }
  if (!best) {
    kb.notes.push_back("pgd-scan: no PML4 maps the kernel image");
  } else if (have) {
    if (best->text_gva == kb.text_gva && best->text_gpa == kb.text_gpa) {
      pgd_agrees = true;
      kb.scanned_pgd = best->pgd;
    } else {
      kb.notes.push_back("pgd-scan: PGD at gpa " + hex(best->pgd.value) + " maps _text " +
                         hex(best->text_gva.value) + " -> gpa " + hex(best->text_gpa.value) +
                         ", vmcoreinfo says " + hex(kb.text_gva.value) + " -> gpa " +
                         hex(kb.text_gpa.value));
    }
  } else {
    kb.text_gva = best->text_gva;
    kb.text_gpa = best->text_gpa;
    kb.kaslr_slide = kb.text_gva.value - kUnslidTextVa;
    kb.phys_base = kb.text_gpa.value - (kb.text_gva.value - kStartKernelMap);
    kb.kernel_pgd = best->pgd;
    kb.scanned_pgd = best->pgd;
    if (!best->inside_own_image) {
      kb.notes.push_back("pgd-scan: no PGD inside the kernel image; using the PGD at gpa " +
                         hex(best->pgd.value) + " (a process's)");
    }
    pgd_agrees = true;
    have = true;
  }
  if (!have) {
    return fail(Errc::kNotFound,
                "kernel not located: no VMCOREINFO and no PML4 mapping the kernel image");
  }
  PageTableWalker walker(ram, kb.kernel_pgd);
  kb.image_mapped_bytes = mapped_image_bytes(walker, kb);
  if (kb.image_mapped_bytes == 0) {
    kb.notes.push_back("kernel PGD at gpa " + hex(kb.kernel_pgd.value) + " does not map _text " +
                       hex(kb.text_gva.value) + " to gpa " + hex(kb.text_gpa.value));
  }

  // Banner: "Linux version <release> " inside the physical image, mapped at _text + offset.
  const std::string needle =
      kb.release.empty() ? "Linux version " : "Linux version " + kb.release + " ";
  const uint64_t search_bytes = kb.image_mapped_bytes ? kb.image_mapped_bytes : (64ULL << 20);
  bool banner_ok = false;
  std::string banner_note = "banner: not found inside the kernel image";
  const shared::RamRegion* region = nullptr;
  for (const auto& r : ram.layout().regions()) {
    if (kb.text_gpa.value >= r.gpa.value && kb.text_gpa.value - r.gpa.value < r.size_bytes) {
      region = &r;
    }
  }
  if (region) {
    const uint64_t len =
        std::min(search_bytes, region->gpa.value + region->size_bytes - kb.text_gpa.value);
    auto base = ram.at(kb.text_gpa, len);
    const uint8_t* p = base ? *base : nullptr;
    const uint8_t* end = base ? *base + len : nullptr;
    for (std::size_t n_hits = 0; p && p < end && n_hits < kMaxBannerHits && !banner_ok; ++n_hits) {
      const void* hit = memmem(p, static_cast<std::size_t>(end - p), needle.data(), needle.size());
      if (!hit) break;
      const uint8_t* h = static_cast<const uint8_t*>(hit);
      p = h + 1;
      const uint64_t offset = static_cast<uint64_t>(h - *base);
      const Gpa banner_gpa(kb.text_gpa.value + offset);
      auto t = walker.translate(Gva(kb.text_gva.value + offset));
      if (!t || t->gpa != banner_gpa) {
        banner_note =
            "banner: at gpa " + hex(banner_gpa.value) + " but _text + offset does not map there";
        continue;
      }
      if (options.banner_offset_in_image && *options.banner_offset_in_image != offset) {
        banner_note = "banner: at _text + " + hex(offset) + ", the kernel build puts it at +" +
                      hex(*options.banner_offset_in_image);
        continue;
      }
      // Release token after "Linux version ".
      const std::size_t prefix = std::strlen("Linux version ");
      const std::size_t avail = static_cast<std::size_t>(end - h);
      std::string_view rest(reinterpret_cast<const char*>(h) + prefix,
                            std::min(avail - prefix, kMaxReleaseBytes + 1));
      const std::string_view release = rest.substr(0, rest.find(' '));
      if (!valid_release(release)) continue;
      if (kb.release.empty()) kb.release = std::string(release);
      kb.banner_gpa = banner_gpa;
      banner_ok = true;
    }
  }
  if (banner_ok) {
    kb.sources.push_back("banner");
  } else {
    kb.notes.push_back(banner_note);
  }
  if (pgd_agrees) kb.sources.push_back(pgd_source);
  return kb;
}

}  // namespace glassbox::semantic_db
