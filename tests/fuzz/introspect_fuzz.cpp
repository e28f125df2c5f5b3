// libFuzzer target: random and mutated guest RAM images through the whole introspection
// (services/semantic_db): VMCOREINFO, kernel base, page-table walks, BTF, kallsyms, bzImage/ELF,
// build_profile and the task/module/printk walks. Input format and modes:
// tests/fuzz/seeds/synthetic_guest.hpp. Built and run by tests/fuzz/run_fuzz.sh.
//
// Every library call must return (a value or an error) without a crash, a sanitizer report, a
// leak or a hang; results are only consumed, never checked (that is the unit tests' job).
// Environment: GLASSBOX_FUZZ_WRITE_SEEDS=DIR writes the seed corpus to DIR and exits;
// GLASSBOX_FUZZ_VERBOSE=1 prints what each input reached (to debug seeds).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "services/semantic_db/address_space.hpp"
#include "services/semantic_db/introspect.hpp"
#include "services/semantic_db/kallsyms.hpp"
#include "services/semantic_db/kernel_image.hpp"
#include "services/semantic_db/kernel_types.hpp"
#include "services/semantic_db/memory_map.hpp"
#include "services/semantic_db/vmcoreinfo.hpp"
#include "shared/ram_layout.hpp"
#include "tests/fuzz/seeds/synthetic_guest.hpp"

namespace {

using namespace glassbox;
using namespace glassbox::semantic_db;
using namespace glassbox::fuzz;
using shared::RamAlignment;
using shared::RamLayout;
using shared::RamRegion;
using shared::RamView;

constexpr uint64_t k4KiB = 4096;
constexpr uint64_t k4GiB = 4ull << 30;
// Output cap for decompress_bzimage(): a 1 MiB deflate bomb would otherwise inflate to 512 MiB.
constexpr std::size_t kMaxDecompressedBytes = 32u << 20;

// Immutable after LLVMFuzzerInitialize(): nothing is carried from one input to the next.
struct Fixed {
  KernelOffsets offsets;     // the synthetic guest's layout (hand-built profiles)
  std::vector<uint8_t> btf;  // the BTF it comes from (KernelProfile::types)
  bool verbose = false;
};
const Fixed* g_fixed = nullptr;

uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
uint32_t rd32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t rd64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Keeps a computed value alive so the optimizer cannot drop the call that made it.
template <typename T>
void sink(const T& v) {
  asm volatile("" : : "r"(&v) : "memory");
}

void note(const char* fmt, const std::string& what) {
  if (g_fixed->verbose) std::fprintf(stderr, fmt, what.c_str());
}

constexpr uint64_t canonical(uint64_t va) {
  return (va & (1ull << 47)) ? (va | 0xffff000000000000ull) : (va & 0x0000ffffffffffffull);
}

// The gpa -> file map of an image of `size` bytes. Variants: 0 identity; 1 split at the hint,
// the rest at 4 GiB (QEMU pc above-4G RAM); 2 the whole file again at 4 GiB (aliases);
// 3 split with a 128 KiB gpa hole (a VGA-like window).
RamLayout make_layout(uint8_t variant, uint64_t size, uint32_t split_hint) {
  if (size == 0 || variant % 4 == 0) return RamLayout::identity(size);
  const bool paged = size % k4KiB == 0;
  uint64_t split = split_hint % size;
  if (paged) split &= ~(k4KiB - 1);
  std::vector<RamRegion> regions;
  switch (variant % 4) {
    case 1:
      if (split == 0) return RamLayout::identity(size);
      regions = {{Gpa(0), split, 0}, {Gpa(k4GiB), size - split, split}};
      break;
    case 2:
      regions = {{Gpa(0), size, 0}, {Gpa(k4GiB), size, 0}};
      break;
    default:
      if (split == 0) return RamLayout::identity(size);
      regions = {{Gpa(0), split, 0}, {Gpa(split + 0x20000), size - split, split}};
      break;
  }
  auto l = RamLayout::from_regions(std::move(regions), size,
                                   paged ? RamAlignment::kPage : RamAlignment::kByte);
  if (!l) {  // a harness bug, not a finding
    std::fprintf(stderr, "introspect_fuzz: layout rejected: %s\n", l.error().to_string().c_str());
    std::abort();
  }
  return *std::move(l);
}

// The walks over a profile (a built one or a hand-made one).
void run_walks(const RamView& ram, const KernelProfile& profile, const uint8_t* hdr) {
  if (auto ps = list_processes(ram, profile)) {
    std::size_t bytes = 0;
    for (const ProcessRecord& r : ps->processes) bytes += r.comm.size() + r.state.size();
    sink(bytes);
    note("  processes: %s\n", std::to_string(ps->processes.size()) + " (" +
                                  std::to_string(ps->warnings.size()) + " warnings)");
  } else {
    note("  processes: %s\n", ps.error().to_string());
  }
  if (auto ms = list_modules(ram, profile)) {
    std::size_t bytes = 0;
    for (const ModuleRecord& m : ms->modules) bytes += m.name.size() + m.size_bytes;
    sink(bytes);
    note("  modules: %s\n", std::to_string(ms->modules.size()) + " (" +
                                std::to_string(ms->warnings.size()) + " warnings)");
  } else {
    note("  modules: %s\n", ms.error().to_string());
  }
  if (auto log = read_kernel_log(ram, profile)) {
    std::size_t bytes = 0;
    for (const LogRecord& r : log->records) bytes += r.text.size();
    sink(bytes);
    note("  log: %s\n", std::to_string(log->records.size()) + " records (" +
                            std::to_string(log->warnings.size()) + " warnings)");
  } else {
    note("  log: %s\n", log.error().to_string());
  }
  const KernelInfo info = read_kernel_info(ram, profile);
  note("  kernel info: %s\n",
       info.release + " " + info.machine + " cmdline '" + info.cmdline + "'");
  const int32_t pid = hdr[Header::kFlags] >> 3;
  if (auto vmas = list_vmas(ram, profile, pid)) {
    std::size_t bytes = 0;
    for (const Vma& v : vmas->vmas) {
      const std::string line = format_maps_line(v);
      bytes += line.size();
      note("    %s\n", line);
    }
    for (const std::string& w : vmas->warnings) note("    warning: %s\n", w);
    sink(bytes);
    note("  vmas: %s\n", std::to_string(vmas->vmas.size()) + " of pid " + std::to_string(pid) +
                             " (" + std::to_string(vmas->warnings.size()) + " warnings)");
  } else {
    note("  vmas: %s\n", vmas.error().to_string());
  }
  if (auto regions = user_regions(ram, profile, 256)) {
    std::size_t n = 0;
    for (const ProcessRegions& p : regions->processes) n += p.ranges.size();
    sink(n);
    note("  user regions: %s\n", std::to_string(regions->processes.size()) + " processes, " +
                                     std::to_string(n) + " ranges");
  } else {
    note("  user regions: %s\n", regions.error().to_string());
  }
}

// Everything that takes a RamView, each stage run whether or not the previous one succeeded.
void exercise_ram(const RamView& ram, const uint8_t* hdr) {
  auto vmci = find_vmcoreinfo(ram);
  note("vmcoreinfo: %s\n", vmci ? vmci->os_release : vmci.error().to_string());
  KernelBaseOptions opts;
  if (const uint32_t bo = rd32(hdr + Header::kBannerOff)) opts.banner_offset_in_image = bo;
  auto kb = find_kernel_base(ram, vmci ? &*vmci : nullptr, opts);
  note("kernel base: %s\n", kb ? kb->describe() : kb.error().to_string());
  if (vmci) sink(find_kernel_base(ram, nullptr));  // the pgd-scan-only path
  sink(scan_kernel_pgds(ram, 64));

  const uint64_t va = rd64(hdr + Header::kVa);
  uint8_t buf[64];
  PageTableWalker walker(ram, Gpa(rd64(hdr + Header::kCr3)));
  sink(walker.translate(Gva(va)));
  sink(walker.read_virtual(Gva(va), buf));
  sink(walker.mapped_ranges(Gva(canonical(va & ~(k4KiB - 1))), Gva(0), 256, 1u << 15));
  sink(walker.mapped_ranges(Gva(0), Gva(0), 4096, 1u << 16));
  sink(find_page_offset_base(walker, ram));
  if (kb) {
    if (auto kas = KernelAddressSpace::create(ram, *kb)) {
      sink(kas->translate(Gva(va)));
      sink(kas->read_u64(Gva(va)));
      sink(kas->read_virtual(Gva(va), buf));
      sink(kas->read_u64(kb->text_gva));
    }
  }

  // build_profile() repeats the VMCOREINFO and kernel-base stages (cheap) and scans for BTF
  // and kallsyms (the costly part: one pass each over RAM), so those scans run on their own
  // only where build_profile() did not get to them.
  auto profile = build_profile(ram, "");
  note("profile: %s\n", profile ? profile->base.describe() : profile.error().to_string());
  if (!profile) {
    if (!kb) {
      if (auto kt = KernelTypes::from_ram(ram)) sink(KernelOffsets::resolve(*kt));
    }
    if (auto syms = Symbols::from_ram(ram)) {
      sink(syms->address_of("init_task"));
      sink(syms->nearest(va));
    }
  }
  if (profile) run_walks(ram, *profile, hdr);
}

// The profile of the synthetic guest's layout, with the kernel PGD at `pgd`; the fuzzer
// moves init_task/modules/prb (header offsets) and optionally edits KernelOffsets fields.
KernelProfile hand_profile(const uint8_t* hdr, uint64_t pgd) {
  KernelProfile p;
  KernelBase& b = p.base;
  b.kaslr_slide = 0;
  b.phys_base = kPhysBase;
  b.text_gva = Gva(kTextVa);
  b.text_gpa = Gpa(0);
  b.kernel_pgd = Gpa(pgd);
  static constexpr uint64_t kImageBytes[4] = {8ull << 20, 0, 2ull << 20, 1ull << 30};
  b.image_mapped_bytes = kImageBytes[(hdr[Header::kFlags] >> 1) & 3];
  b.release = "6.1.0-fuzz";
  b.sources = {"fuzz"};
  p.release = b.release;
  p.sources = b.sources;
  auto kt = KernelTypes::from_bytes(g_fixed->btf);
  if (!kt) std::abort();  // checked in LLVMFuzzerInitialize
  p.types = std::make_unique<KernelTypes>(std::move(*kt));

  p.offsets = g_fixed->offsets;
  if (hdr[Header::kFlags] & 1) {
    static_assert(std::is_trivially_copyable_v<KernelOffsets> &&
                  std::has_unique_object_representations_v<KernelOffsets> &&
                  sizeof(KernelOffsets) % sizeof(uint64_t) == 0);
    constexpr std::size_t kFields = sizeof(KernelOffsets) / sizeof(uint64_t);
    uint64_t f[kFields];
    std::memcpy(f, &p.offsets, sizeof f);
    for (std::size_t k = 0; k < 8; ++k) {
      const uint8_t* e = hdr + Header::kPerturb + 3 * k;
      f[e[0] % kFields] = rd16(e + 1);
    }
    std::memcpy(&p.offsets, f, sizeof f);
  }
  p.symbols = std::make_unique<Symbols>(Symbols::from_symbols({
      {kTextVa, 'T', "_text"},
      {kTextVa + rd32(hdr + Header::kInitTask), 'D', "init_task"},
      {kTextVa + rd32(hdr + Header::kModules), 'd', "modules"},
      {kTextVa + rd32(hdr + Header::kPrb), 'D', "prb"},
      {kTextVa + kUtsGpa, 'D', "init_uts_ns"},
      {kTextVa + kMiscGpa, 'd', "special_mapping_vmops"},
      {kTextVa + kMiscGpa + 0x200, 'D', "saved_command_line"},
  }));
  return p;
}

void exercise_hand(const uint8_t* hdr, std::vector<uint8_t> image, bool own_tables) {
  uint64_t pgd = rd64(hdr + Header::kCr3);
  uint8_t layout = hdr[Header::kLayout];
  if (own_tables) {
    // Tables after the payload; the layout must keep file offset == gpa for them.
    const uint64_t base = (image.size() + k4KiB - 1) & ~(k4KiB - 1);
    image.resize(base + kPageTableBytes, 0);
    pgd = install_page_tables(image, base, 4);
    layout = layout % 2 == 0 ? 0 : 2;
  }
  const RamView ram(image.data(), image.size(),
                    make_layout(layout, image.size(), rd32(hdr + Header::kSplit)));
  const KernelProfile profile = hand_profile(hdr, pgd);
  note("hand profile: %s\n", profile.base.describe());
  run_walks(ram, profile, hdr);
}

void exercise_elf(std::span<const uint8_t> elf) {
  auto sections = read_elf_sections(elf);
  if (!sections) return;
  sink(sections->banner);
  if (auto btf = sections->bytes(elf, ".BTF")) {
    if (auto kt = KernelTypes::from_bytes(*btf)) sink(KernelOffsets::resolve(*kt));
  }
  if (auto ro = sections->bytes(elf, ".rodata"); ro && ro->size() <= (1u << 20)) {
    auto it = sections->sections.find(".rodata");
    sink(Symbols::parse(*ro, it->second.addr));
  }
}

void exercise_slices(const uint8_t* hdr, std::span<const uint8_t> p) {
  // VMCOREINFO text: up to the first NUL, one byte past the limit at most.
  std::string_view text(reinterpret_cast<const char*>(p.data()),
                        std::min<std::size_t>(p.size(), kMaxVmcoreinfoBytes + 1));
  text = text.substr(0, text.find('\0'));
  auto v = parse_vmcoreinfo(text);
  note("parse_vmcoreinfo: %s\n", v ? v->os_release : v.error().to_string());

  if (auto kt = KernelTypes::from_bytes(p)) {
    note("BTF: %s types\n", std::to_string(kt->n_types()));
    sink(KernelOffsets::resolve(*kt));
    sink(kt->struct_size("task_struct"));
    sink(kt->member_size("task_struct", "comm"));
    sink(kt->has_member("mm_struct", "pgd"));
  }

  if (auto syms = Symbols::parse(p, rd64(hdr + Header::kVa))) {
    note("kallsyms: %s symbols\n", std::to_string(syms->size()));
    sink(syms->address_of("_text"));
    sink(syms->nearest(rd64(hdr + Header::kCr3)));
  } else {
    note("kallsyms: %s\n", syms.error().to_string());
  }

  sink(locate_bzimage_payload(p));
  if (auto vmlinux = decompress_bzimage(p, kMaxDecompressedBytes)) {
    note("bzImage: %s bytes\n", std::to_string(vmlinux->size()));
    exercise_elf(*vmlinux);
  } else {
    note("bzImage: %s\n", vmlinux.error().to_string());
  }
  exercise_elf(p);
}

// kSparse: records {u32 gpa, u16 len, bytes} into a zeroed image of 1..16 MiB.
std::vector<uint8_t> scatter(const uint8_t* hdr, std::span<const uint8_t> p) {
  const std::size_t mib = std::clamp<std::size_t>(hdr[Header::kSparseMib], 1, kMaxSparseMib);
  std::vector<uint8_t> image(mib << 20, 0);
  std::size_t pos = 0;
  while (p.size() - pos >= 6) {
    const uint64_t gpa = rd32(p.data() + pos) % image.size();
    const std::size_t len =
        std::min<std::size_t>({rd16(p.data() + pos + 4), p.size() - pos - 6, image.size() - gpa});
    std::memcpy(image.data() + gpa, p.data() + pos + 6, len);
    pos += 6 + len;
  }
  return image;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("GLASSBOX_FUZZ_WRITE_SEEDS")) {
    const std::size_t n = write_seeds(dir);
    std::printf("introspect_fuzz: wrote %zu seeds to %s\n", n, dir);
    std::exit(0);
  }
  static Fixed fixed;
  fixed.offsets = synthetic_offsets();
  fixed.btf = make_btf();
  const char* v = std::getenv("GLASSBOX_FUZZ_VERBOSE");
  fixed.verbose = v != nullptr && *v != '\0' && *v != '0';
  if (!KernelTypes::from_bytes(fixed.btf)) {
    std::fprintf(stderr, "introspect_fuzz: the library rejects the synthetic BTF\n");
    std::abort();
  }
  g_fixed = &fixed;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < kHeaderBytes || size > kMaxInputBytes) return -1;
  const uint8_t* hdr = data;
  // An exactly sized heap copy: a read one byte past the image is an ASan report.
  std::vector<uint8_t> payload(data + kHeaderBytes, data + size);
  switch (hdr[Header::kMode] % kNumModes) {
    case kRaw: {
      const RamView ram(
          payload.data(), payload.size(),
          make_layout(hdr[Header::kLayout], payload.size(), rd32(hdr + Header::kSplit)));
      exercise_ram(ram, hdr);
      break;
    }
    case kSlices:
      exercise_slices(hdr, payload);
      break;
    case kHandTables:
      exercise_hand(hdr, std::move(payload), true);
      break;
    case kHandPgd:
      exercise_hand(hdr, std::move(payload), false);
      break;
    case kSparse: {
      const std::vector<uint8_t> image = scatter(hdr, payload);
      const RamView ram(
          image.data(), image.size(),
          make_layout(hdr[Header::kLayout], image.size(), rd32(hdr + Header::kSplit)));
      exercise_ram(ram, hdr);
      break;
    }
  }
  return 0;
}
