#include "services/semantic_db/address_space.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <unordered_set>
#include <utility>

namespace glassbox::semantic_db {
namespace {

constexpr uint64_t k4KiB = 4096;
constexpr uint64_t k2MiB = 2ULL << 20;
constexpr uint64_t k1GiB = 1ULL << 30;
constexpr uint64_t kModulesVa = 0xffffffffc0000000ULL;  // MODULES_VADDR on 4-level paging
// KASLR's direct-map region starts at __PAGE_OFFSET_BASE_L4 0xffff888000000000 (slot 273);
// the randomized regions end below the CPU entry area (slot 508).
constexpr unsigned kDirectMapFirstSlot = 273;
constexpr unsigned kDirectMapLastSlot = 507;
constexpr const char* kLevelNames[4] = {"PML4", "PDPT", "PD", "PT"};

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Sign-extends bit 47 (4-level canonical form).
constexpr uint64_t canonicalize(uint64_t va) {
  return (va & (1ULL << 47)) ? (va | 0xffff000000000000ULL) : (va & 0x0000ffffffffffffULL);
}

// Reads entry `idx` of the table at `table`; nullopt when the table is outside RAM.
std::optional<uint64_t> entry_at(const shared::RamView& ram, uint64_t table, unsigned idx) {
  auto p = ram.at(Gpa(table + idx * 8ULL), 8);
  if (!p) return std::nullopt;
  return load_u64(*p);
}

// The gpa mapped at slot `idx` of a PD (2 MiB page or the first 4 KiB of a PT), if present.
std::optional<uint64_t> pd_slot_gpa(const shared::RamView& ram, const uint8_t* pd, unsigned idx) {
  const uint64_t e = load_u64(pd + idx * 8ULL);
  if (!(e & kPtePresent)) return std::nullopt;
  if (e & kPtePageSize) return e & kPteAddrMask & ~(k2MiB - 1);
  auto pte = entry_at(ram, e & kPteAddrMask, 0);
  if (!pte || !(*pte & kPtePresent)) return std::nullopt;
  return *pte & kPteAddrMask;
}

struct RangeWalk {
  const shared::RamView* ram;
  uint64_t begin;
  uint64_t last;  // inclusive
  std::size_t max_ranges;
  std::size_t max_entries;
  std::size_t n_entries = 0;
  uint64_t path[4] = {};
  MappedRanges out;
  bool skip_repeated = false;
  std::unordered_set<uint64_t> seen_tables;

  void emit(uint64_t va, uint64_t gpa, uint64_t size, bool w, bool u, bool nx) {
    if (va < begin) {
      const uint64_t cut = begin - va;
      va += cut;
      gpa += cut;
      size -= cut;
    }
    if (va + (size - 1) > last) size = last - va + 1;
    if (!out.ranges.empty()) {
      MappedRange& r = out.ranges.back();
      if (r.va.value + r.size_bytes == va && r.gpa.value + r.size_bytes == gpa && r.writable == w &&
          r.user == u && r.nx == nx) {
        r.size_bytes += size;
        return;
      }
    }
    if (out.ranges.size() >= max_ranges) {
      out.truncated = true;
      return;
    }
    out.ranges.push_back(MappedRange{Gva(va), Gpa(gpa), size, w, u, nx});
  }

  void visit(int level, uint64_t table, uint64_t va_prefix, bool w, bool u, bool nx) {
    auto p = ram->at(Gpa(table), k4KiB);
    if (!p) {
      ++out.n_skipped_tables;
      return;
    }
    for (int d = 0; d < level; ++d) {
      if (path[d] == table) {  // self-reference or cycle: Linux never builds one
        ++out.n_skipped_tables;
        return;
      }
    }
    if (skip_repeated && level > 0 && !seen_tables.insert(table).second) {
      ++out.n_skipped_tables;
      return;
    }
    path[level] = table;
    const unsigned shift = 39 - 9 * level;
    const uint64_t size = 1ULL << shift;
    for (unsigned idx = 0; idx < 512; ++idx) {
      if (out.truncated) return;
      const uint64_t va_lo = canonicalize(va_prefix | (uint64_t{idx} << shift));
      const uint64_t va_hi = va_lo + (size - 1);
      if (va_hi < begin || va_lo > last) continue;
      if (++n_entries > max_entries) {
        out.truncated = true;
        return;
      }
      const uint64_t e = load_u64(*p + idx * 8ULL);
      if (!(e & kPtePresent)) continue;
      const bool ew = w && (e & kPteWritable);
      const bool eu = u && (e & kPteUser);
      const bool enx = nx || (e & kPteNx);
      const bool leaf = level == 3 || ((level == 1 || level == 2) && (e & kPtePageSize));
      if (level == 0 && (e & kPtePageSize)) continue;  // reserved bit: the CPU would fault
      if (leaf) {
        emit(va_lo, e & kPteAddrMask & ~(size - 1), size, ew, eu, enx);
      } else {
        visit(level + 1, e & kPteAddrMask, va_lo, ew, eu, enx);
      }
    }
  }
};

}  // namespace

Result<Gpa> kernel_image_pa(Gva va, const KernelBase& base) {
  if (va.value < kStartKernelMap || va.value >= kModulesVa) {
    return fail(Errc::kOutOfRange, "gva " + hex(va.value) +
                                       " is not a kernel-image address (__START_KERNEL_map "
                                       "0xffffffff80000000..0xffffffffbfffffff)");
  }
  return Gpa(va.value - kStartKernelMap + base.phys_base);
}

Result<Gpa> direct_map_pa(Gva va, uint64_t page_offset_base) {
  if (va.value < page_offset_base || va.value - page_offset_base >= kMaxDirectMapBytes) {
    return fail(Errc::kOutOfRange, "gva " + hex(va.value) +
                                       " is not a direct-map address (page_offset_base " +
                                       hex(page_offset_base) + ")");
  }
  return Gpa(va.value - page_offset_base);
}

PageTableWalker::PageTableWalker(const shared::RamView& ram, Gpa cr3) noexcept
    : ram_(&ram), pml4_(cr3.value & kPteAddrMask) {}

Result<Translation> PageTableWalker::translate(Gva va) const {
  if (!is_canonical(va)) {
    return fail(Errc::kInvalidArgument, "gva " + hex(va.value) + " is not canonical");
  }
  Translation t;
  t.writable = true;
  t.user = true;
  uint64_t table = pml4_.value;
  for (int level = 0; level < 4; ++level) {
    const unsigned shift = 39 - 9 * level;
    const unsigned idx = (va.value >> shift) & 511;
    auto p = ram_->at(Gpa(table + idx * 8ULL), 8);
    if (!p) {
      return fail(Errc::kOutOfRange, "gva " + hex(va.value) + ": " + kLevelNames[level] +
                                         " table at gpa " + hex(table) + " is outside guest RAM");
    }
    const uint64_t e = load_u64(*p);
    if (!(e & kPtePresent)) {
      return fail(Errc::kNotFound, "gva " + hex(va.value) + ": " + kLevelNames[level] + " entry " +
                                       std::to_string(idx) + " not present");
    }
    t.writable = t.writable && (e & kPteWritable);
    t.user = t.user && (e & kPteUser);
    t.nx = t.nx || (e & kPteNx);
    if (level == 0 && (e & kPtePageSize)) {
      return fail(Errc::kProtocol, "gva " + hex(va.value) + ": PML4 entry " + std::to_string(idx) +
                                       " has the reserved PS bit set");
    }
    const bool leaf = level == 3 || ((level == 1 || level == 2) && (e & kPtePageSize));
    if (leaf) {
      const uint64_t size = 1ULL << shift;
      const uint64_t gpa = (e & kPteAddrMask & ~(size - 1)) | (va.value & (size - 1));
      if (!ram_->at(Gpa(gpa), 1)) {
        return fail(Errc::kOutOfRange,
                    "gva " + hex(va.value) + ": page maps gpa " + hex(gpa) + ", outside guest RAM");
      }
      t.gpa = Gpa(gpa);
      t.page_size_bytes = size;
      return t;
    }
    table = e & kPteAddrMask;
  }
  return fail(Errc::kInternal, "unreachable page walk end");
}

namespace {

// Shared by both read_virtual()s: `xlate(va)` -> Result<Gpa>, copied 4 KiB chunk by chunk.
template <typename Xlate>
Result<std::size_t> read_chunks(const shared::RamView& ram, Gva va, std::span<uint8_t> out,
                                Xlate&& xlate) {
  std::size_t done = 0;
  while (done < out.size()) {
    const uint64_t cur = va.value + done;
    if (done != 0 && cur < va.value) break;  // wrapped past 2^64
    auto gpa = xlate(Gva(cur));
    if (!gpa) {
      if (done == 0) return tl::unexpected<Error>(std::move(gpa).error());
      break;
    }
    const std::size_t n =
        static_cast<std::size_t>(std::min<uint64_t>(out.size() - done, k4KiB - (cur & 0xfff)));
    auto p = ram.at(*gpa, n);
    if (!p) {
      if (done == 0) return tl::unexpected<Error>(std::move(p).error());
      break;
    }
    std::memcpy(out.data() + done, *p, n);
    done += n;
  }
  return done;
}

}  // namespace

Result<std::size_t> PageTableWalker::read_virtual(Gva va, std::span<uint8_t> out) const {
  // Cache the last leaf so that a large page is walked once.
  uint64_t page_va = 1, page_size = 0, page_gpa = 0;
  return read_chunks(*ram_, va, out, [&](Gva v) -> Result<Gpa> {
    if (page_size != 0 && v.value - page_va < page_size) {
      return Gpa(page_gpa + (v.value - page_va));
    }
    auto t = translate(v);
    if (!t) return tl::unexpected<Error>(std::move(t).error());
    page_size = t->page_size_bytes;
    page_va = v.value & ~(page_size - 1);
    page_gpa = t->gpa.value - (v.value - page_va);
    return t->gpa;
  });
}

MappedRanges PageTableWalker::mapped_ranges(Gva begin, Gva end, std::size_t max_ranges,
                                            std::size_t max_entries,
                                            bool skip_repeated_tables) const {
  RangeWalk w{ram_, begin.value, end.value - 1, max_ranges, max_entries, 0, {}, {}};
  w.skip_repeated = skip_repeated_tables;
  if (end.value != 0 && end.value <= begin.value) return {};
  w.visit(0, pml4_.value, 0, true, true, false);
  w.out.n_entries = w.n_entries;
  return std::move(w.out);
}

std::optional<KernelPgdCandidate> kernel_pgd_at(const shared::RamView& ram, Gpa pgd) {
  if (pgd.value & (k4KiB - 1)) return std::nullopt;
  auto pagep = ram.at(pgd, k4KiB);
  if (!pagep) return std::nullopt;
  const uint8_t* page = *pagep;
  const uint64_t e511 = load_u64(page + 511 * 8);
  if ((e511 & (kPtePresent | kPtePageSize)) != kPtePresent) return std::nullopt;
  auto e510 = entry_at(ram, e511 & kPteAddrMask, 510);
  if (!e510 || (*e510 & (kPtePresent | kPtePageSize)) != kPtePresent) return std::nullopt;
  auto pd = ram.at(Gpa(*e510 & kPteAddrMask), k4KiB);
  if (!pd) return std::nullopt;
  unsigned idx = 0;
  std::optional<uint64_t> text_gpa;
  for (; idx < 512; ++idx) {
    if (load_u64(*pd + idx * 8ULL) & kPtePresent) {
      text_gpa = pd_slot_gpa(ram, *pd, idx);
      break;
    }
  }
  if (!text_gpa || (*text_gpa & (k2MiB - 1)) != 0) return std::nullopt;
  unsigned run = 1;
  while (idx + run < 512) {
    auto g = pd_slot_gpa(ram, *pd, idx + run);
    if (!g || *g != *text_gpa + run * k2MiB) break;
    ++run;
  }
  if (run < 2) return std::nullopt;
  KernelPgdCandidate c;
  c.pgd = pgd;
  c.text_gva = Gva(kStartKernelMap + idx * k2MiB);
  c.text_gpa = Gpa(*text_gpa);
  c.image_mapped_bytes = run * k2MiB;
  c.user_half_empty = true;
  for (unsigned k = 0; k < 256 && c.user_half_empty; ++k) {
    c.user_half_empty = load_u64(page + k * 8ULL) == 0;
  }
  c.inside_own_image =
      c.pgd.value >= c.text_gpa.value && c.pgd.value - c.text_gpa.value < c.image_mapped_bytes;
  return c;
}

std::optional<KernelPgdCandidate> kernel_pgd_from_cr3(const shared::RamView& ram, uint64_t cr3) {
  const uint64_t pgd = cr3 & kPteAddrMask;
  if (auto c = kernel_pgd_at(ram, Gpa(pgd))) return c;
  // Page-table isolation: in user mode CR3 holds the user copy, the odd 4 KiB page of an
  // 8 KiB-aligned pair whose even page is the kernel's (arch/x86/mm/pti.c).
  if (pgd & k4KiB) return kernel_pgd_at(ram, Gpa(pgd & ~k4KiB));
  return std::nullopt;
}

std::vector<KernelPgdCandidate> scan_kernel_pgds(const shared::RamView& ram,
                                                 std::size_t max_candidates) {
  std::vector<KernelPgdCandidate> out;
  for (const shared::RamRegion& region : ram.layout().regions()) {
    const uint64_t first = (region.gpa.value + k4KiB - 1) & ~(k4KiB - 1);
    const uint64_t end = region.gpa.value + region.size_bytes;
    if (first >= end || end - first < k4KiB) continue;
    auto base = ram.at(Gpa(first), end - first);
    if (!base) continue;
    const uint64_t n_pages = (end - first) / k4KiB;
    for (uint64_t i = 0; i < n_pages; ++i) {
      // Cheap prefilter (one load per page) before the full check.
      const uint64_t e511 = load_u64(*base + i * k4KiB + 511 * 8);
      if ((e511 & (kPtePresent | kPtePageSize)) != kPtePresent) continue;
      auto c = kernel_pgd_at(ram, Gpa(first + i * k4KiB));
      if (!c) continue;
      out.push_back(*c);
      if (out.size() >= max_candidates) return out;
    }
  }
  return out;
}

Result<uint64_t> find_page_offset_base(const PageTableWalker& kernel, const shared::RamView& ram) {
  // Sample gpas: up to 16 evenly spaced pages per RAM region.
  std::vector<uint64_t> samples;
  for (const shared::RamRegion& r : ram.layout().regions()) {
    const uint64_t n_pages = r.size_bytes / k4KiB;
    if (n_pages == 0) continue;
    const uint64_t n = std::min<uint64_t>(16, n_pages);
    for (uint64_t k = 0; k < n; ++k) {
      samples.push_back((r.gpa.value + (n == 1 ? 0 : k * (n_pages - 1) / (n - 1)) * k4KiB) &
                        ~(k4KiB - 1));
    }
    if (samples.size() > 4096) break;
  }
  for (unsigned i = kDirectMapFirstSlot; i <= kDirectMapLastSlot; ++i) {
    auto e = entry_at(ram, kernel.pml4().value, i);
    if (!e || (*e & (kPtePresent | kPtePageSize)) != kPtePresent) continue;
    auto pdpt = ram.at(Gpa(*e & kPteAddrMask), k4KiB);
    if (!pdpt) continue;
    for (unsigned j = 0; j < 512; ++j) {
      if (!(load_u64(*pdpt + j * 8ULL) & kPtePresent)) continue;
      const uint64_t va = canonicalize((uint64_t{i} << 39) | (uint64_t{j} << 30));
      auto t0 = kernel.translate(Gva(va));
      if (!t0 || t0->gpa.value != 0) continue;
      std::size_t n_ok = 0, n_bad = 0;
      for (uint64_t gpa : samples) {
        if (gpa >= kMaxDirectMapBytes) continue;
        auto t = kernel.translate(Gva(va + gpa));
        if (!t) continue;
        if (t->gpa.value == gpa) {
          ++n_ok;
        } else {
          ++n_bad;
        }
      }
      if (n_bad == 0 && n_ok * 2 >= samples.size()) return va;
    }
  }
  return fail(Errc::kNotFound,
              "no direct map (a 1 GiB-aligned VA in PML4 slots 273..507 mapping gpa 0 and the "
              "sampled RAM linearly) in the page tables at gpa " +
                  hex(kernel.pml4().value));
}

KernelAddressSpace::KernelAddressSpace(const shared::RamView& ram, KernelBase base,
                                       uint64_t page_offset_base)
    : ram_(&ram),
      base_(std::move(base)),
      walker_(ram, base_.kernel_pgd),
      page_offset_base_(page_offset_base),
      direct_map_end_(page_offset_base + ram.layout().end_gpa().value) {}

Result<KernelAddressSpace> KernelAddressSpace::create(const shared::RamView& ram,
                                                      const KernelBase& base) {
  PageTableWalker walker(ram, base.kernel_pgd);
  auto pob = find_page_offset_base(walker, ram);
  if (!pob) return tl::unexpected<Error>(std::move(pob).error());
  return KernelAddressSpace(ram, base, *pob);
}

Result<Gpa> KernelAddressSpace::translate(Gva va) const {
  if (va.value >= base_.text_gva.value &&
      va.value - base_.text_gva.value < base_.image_mapped_bytes) {
    return kernel_image_pa(va, base_);
  }
  if (va.value >= page_offset_base_ && va.value < direct_map_end_) {
    return Gpa(va.value - page_offset_base_);
  }
  auto t = walker_.translate(va);
  if (!t) return tl::unexpected<Error>(std::move(t).error());
  return t->gpa;
}

Result<std::size_t> KernelAddressSpace::read_virtual(Gva va, std::span<uint8_t> out) const {
  return read_chunks(*ram_, va, out, [&](Gva v) { return translate(v); });
}

Result<uint64_t> KernelAddressSpace::read_u64(Gva va) const {
  uint8_t buf[8];
  auto n = read_virtual(va, buf);
  if (!n) return tl::unexpected<Error>(std::move(n).error());
  if (*n != sizeof buf) {
    return fail(Errc::kOutOfRange, "gva " + hex(va.value) + ": u64 crosses into unmapped memory");
  }
  return load_u64(buf);
}

}  // namespace glassbox::semantic_db
