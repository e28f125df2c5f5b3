#include "services/semantic_db/introspect.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include "services/semantic_db/address_space.hpp"
#include "services/semantic_db/kernel_image.hpp"
#include "services/semantic_db/profile_cache.hpp"

namespace glassbox::semantic_db {
namespace {

constexpr uint64_t kMaxTaskStructBytes = 64 * 1024;
constexpr uint64_t kMaxKernelImageBytes = 256ull << 20;

// Printable, NUL-terminated, length-limited.
std::string sanitize(const uint8_t* p, size_t max) {
  std::string s;
  for (size_t i = 0; i < max && p[i] != 0; ++i) {
    const char c = static_cast<char>(p[i]);
    s.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  return s;
}

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

template <typename T>
T field(const std::vector<uint8_t>& buf, uint64_t off) {
  T v{};
  if (off + sizeof(T) <= buf.size()) std::memcpy(&v, buf.data() + off, sizeof(T));
  return v;
}

}  // namespace

std::string task_state_letter(uint32_t state, uint32_t exit_state) {
  // include/linux/sched.h (6.1): TASK_RUNNING 0, INTERRUPTIBLE 1, UNINTERRUPTIBLE 2,
  // __TASK_STOPPED 4, __TASK_TRACED 8, EXIT_DEAD 0x10, EXIT_ZOMBIE 0x20, TASK_PARKED 0x40,
  // TASK_NOLOAD 0x400 (TASK_IDLE = UNINTERRUPTIBLE | NOLOAD).
  if (exit_state & 0x20) return "Z";
  if (exit_state & 0x10) return "X";
  if ((state & 0x402) == 0x402) return "I";
  if (state & 0x40) return "P";
  if (state & 0x8) return "t";
  if (state & 0x4) return "T";
  if (state & 0x2) return "D";
  if (state & 0x1) return "S";
  return "R";
}

Result<KernelProfile> build_profile(const shared::RamView& ram, const std::string& kernel_image,
                                    ProfileCache* cache, std::optional<uint64_t> live_cr3) {
  KernelProfile p;
  auto t_stage = std::chrono::steady_clock::now();
  auto stage_done = [&](const char* name) {
    const auto now = std::chrono::steady_clock::now();
    p.stage_ms.emplace_back(name, std::chrono::duration<double, std::milli>(now - t_stage).count());
    t_stage = now;
  };
  KernelBaseOptions base_options;
  std::optional<uint64_t> want_slide;
  if (live_cr3) {
    auto live = kernel_pgd_from_cr3(ram, *live_cr3);
    if (!live) {
      return fail(Errc::kNotFound,
                  "the vCPU's CR3 " + hex(*live_cr3) + " maps no kernel image (yet)");
    }
    base_options.live_pgd = live->pgd;
    want_slide = live->text_gva.value - kUnslidTextVa;
  }
  auto vmci = find_vmcoreinfo(ram, want_slide);
  stage_done("vmcoreinfo");
  if (vmci) p.vmcoreinfo = std::move(*vmci);
  auto base = find_kernel_base(ram, p.vmcoreinfo ? &*p.vmcoreinfo : nullptr, base_options);
  if (!base) return fail(Errc::kNotFound, "no Linux kernel found in RAM: " + base.error().message);
  p.base = std::move(*base);
  stage_done("kernel-base");
  p.release = p.base.release;
  p.sources = p.base.sources;
  if (p.vmcoreinfo) p.build_id = p.vmcoreinfo->build_id;

  if (cache && !p.build_id.empty()) {
    auto hit = cache->lookup(p.build_id, p.release, p.base.text_gva.value);
    if (hit && *hit) {
      auto text = (*hit)->symbols.address_of("_text");
      if (text && *text == p.base.text_gva.value) {
        p.offsets = (*hit)->offsets;
        p.symbols = std::make_unique<Symbols>(std::move((*hit)->symbols));
        p.sources.push_back("profile-cache");
        p.from_cache = true;
        stage_done("profile-cache");
        return p;
      }
    }
    stage_done("profile-cache-miss");
  }

  std::optional<std::vector<uint8_t>> vmlinux;
  auto load_image = [&]() -> Result<void> {
    if (vmlinux) return {};
    auto bz = read_file_bytes(kernel_image, kMaxKernelImageBytes);
    if (!bz) return tl::unexpected(bz.error());
    auto elf = decompress_bzimage(*bz);
    if (!elf) return tl::unexpected(elf.error());
    vmlinux = std::move(*elf);
    return {};
  };

  // BTF: RAM first (no file needed), then the image's .BTF section.
  if (auto t = KernelTypes::from_ram(ram)) {
    p.types = std::make_unique<KernelTypes>(std::move(*t));
    p.sources.push_back("btf:ram");
  } else if (!kernel_image.empty()) {
    GB_TRY(load_image());
    auto sections = read_elf_sections(*vmlinux);
    if (!sections) return tl::unexpected(sections.error());
    auto btf = sections->bytes(*vmlinux, ".BTF");
    if (!btf) return tl::unexpected(btf.error());
    auto t2 = KernelTypes::from_bytes(*btf);
    if (!t2) return tl::unexpected(t2.error());
    p.types = std::make_unique<KernelTypes>(std::move(*t2));
    p.sources.push_back("btf:image");
  } else {
    return fail(Errc::kNotFound, "no BTF in guest RAM (" + t.error().message +
                                     "); pass the kernel image with --kernel");
  }
  stage_done("btf");
  auto offsets = KernelOffsets::resolve(*p.types);
  if (!offsets) return tl::unexpected(offsets.error());
  p.offsets = *offsets;

  // kallsyms: the tables inside the running kernel's image. After a warm reset the previous
  // boot's image (another KASLR slide) is still in RAM: searching all of RAM could find its
  // stale tables, so only [_text, _text + image) is searched, and the table must agree that
  // _text is where the kernel base says it is.
  const uint64_t ram_end = ram.layout().file_size_bytes();
  uint64_t image_bytes = p.base.image_mapped_bytes ? p.base.image_mapped_bytes : (96ull << 20);
  image_bytes = std::min<uint64_t>(image_bytes, 256ull << 20);
  std::optional<Symbols> syms;
  std::string why;
  for (uint64_t len = image_bytes; len >= (8ull << 20) && !syms; len /= 2) {
    (void)ram_end;
    auto bytes = ram.at(p.base.text_gpa, len);
    if (!bytes) continue;
    auto s = Symbols::parse(std::span<const uint8_t>(*bytes, len), p.base.text_gpa.value);
    if (!s) {
      why = s.error().message;
      continue;
    }
    auto text = s->address_of("_text");
    if (!text || *text != p.base.text_gva.value) {
      why = "kallsyms in the image place _text elsewhere than the kernel base";
      continue;
    }
    syms.emplace(std::move(*s));
  }
  if (!syms) {
    return fail(Errc::kNotFound, "kallsyms not found in the running kernel's image at gpa " +
                                     hex(p.base.text_gpa.value) + ": " + why);
  }
  p.symbols = std::make_unique<Symbols>(std::move(*syms));
  p.sources.push_back("kallsyms:ram");
  stage_done("kallsyms");
  if (cache && !p.build_id.empty()) {
    // A cache that cannot be written costs the next run time, not this answer.
    (void)cache->store(p.build_id, p.release, p.offsets, *p.symbols, p.base.text_gva.value);
    stage_done("profile-cache-store");
  }
  return p;
}

KernelInfo read_kernel_info(const shared::RamView& ram, const KernelProfile& profile) {
  KernelInfo info;
  auto kas = KernelAddressSpace::create(ram, profile.base);
  if (!kas) {
    info.warnings.push_back("kernel address space: " + kas.error().message);
    return info;
  }
  const auto& u = profile.offsets.new_utsname;
  auto read_string = [&](uint64_t va, size_t max, const char* what) -> std::string {
    std::vector<uint8_t> b(max + 1, 0);
    auto n = kas->read_virtual(Gva(va), std::span<uint8_t>(b.data(), max));
    if (!n || *n == 0) {
      info.warnings.push_back(std::string(what) + " unreadable at " + hex(va));
      return {};
    }
    return sanitize(b.data(), *n);
  };
  if (auto uts = profile.symbols->address_of("init_uts_ns")) {
    const uint64_t name = *uts + profile.offsets.uts_namespace.name;
    const size_t field = u.field_size ? u.field_size : 65;
    info.release = read_string(name + u.release, field, "utsname.release");
    info.version = read_string(name + u.version, field, "utsname.version");
    info.machine = read_string(name + u.machine, field, "utsname.machine");
  } else {
    info.warnings.push_back(uts.error().message);
  }
  if (auto cl = profile.symbols->address_of("saved_command_line")) {
    if (auto ptr = kas->read_u64(Gva(*cl))) {
      info.cmdline = read_string(*ptr, 4096, "saved_command_line");
    } else {
      info.warnings.push_back("saved_command_line pointer unreadable");
    }
  } else {
    info.warnings.push_back(cl.error().message);
  }
  return info;
}

Result<ProcessList> list_processes(const shared::RamView& ram, const KernelProfile& profile) {
  const auto& ts = profile.offsets.task_struct;
  auto kas = KernelAddressSpace::create(ram, profile.base);
  if (!kas) return tl::unexpected(kas.error());
  auto init_task = profile.symbols->address_of("init_task");
  if (!init_task) return tl::unexpected(init_task.error());
  const uint64_t task_bytes = std::min<uint64_t>(ts.size, kMaxTaskStructBytes);
  auto read_task = [&](uint64_t va, std::vector<uint8_t>& buf) -> bool {
    buf.assign(task_bytes, 0);
    auto n = kas->read_virtual(Gva(va), buf);
    return n && *n == buf.size();
  };
  auto read_i32 = [&](uint64_t va) -> std::optional<int32_t> {
    uint8_t b[4];
    auto n = kas->read_virtual(Gva(va), b);
    if (!n || *n != 4) return std::nullopt;
    int32_t v;
    std::memcpy(&v, b, 4);
    return v;
  };

  ProcessList out;
  std::unordered_set<uint64_t> seen;
  std::vector<uint8_t> buf;
  uint64_t task = *init_task;
  if (!read_task(task, buf)) {
    return fail(Errc::kOutOfRange, "init_task at " + hex(task) + " is unreadable");
  }
  for (size_t n = 0; n < kMaxTasks; ++n) {
    if (!seen.insert(task).second) {
      out.warnings.push_back("task list loops back to a task seen before (" + hex(task) + ")");
      break;
    }
    ProcessRecord r;
    r.pid = field<int32_t>(buf, ts.pid);
    r.tgid = field<int32_t>(buf, ts.tgid);
    r.comm = sanitize(buf.data() + std::min<uint64_t>(ts.comm, buf.size()),
                      std::min<uint64_t>(ts.comm_size ? ts.comm_size : 16,
                                         buf.size() - std::min<uint64_t>(ts.comm, buf.size())));
    const uint64_t parent = field<uint64_t>(buf, ts.real_parent);
    if (auto ppid = read_i32(parent + ts.pid)) r.ppid = task == *init_task ? 0 : *ppid;
    r.state = task_state_letter(field<uint32_t>(buf, ts.state), 0);
    r.start_time_ns = field<uint64_t>(buf, ts.start_time);
    const uint64_t cred = field<uint64_t>(buf, ts.real_cred);
    if (auto uid = read_i32(cred + profile.offsets.cred.uid)) r.uid = static_cast<uint32_t>(*uid);
    const uint64_t signal = field<uint64_t>(buf, ts.signal);
    if (auto nr = read_i32(signal + profile.offsets.signal_struct.nr_threads); nr && *nr > 0) {
      r.threads = *nr;
    }
    out.processes.push_back(std::move(r));
    // Next task: tasks.next points at the next task's `tasks` member.
    const uint64_t next = field<uint64_t>(buf, ts.tasks + profile.offsets.list_head.next);
    const uint64_t next_task = next - ts.tasks;
    if (next_task == *init_task) break;
    if (!read_task(next_task, buf)) {
      out.warnings.push_back("task list broken at " + hex(next_task) +
                             ": unreadable; the list is partial");
      break;
    }
    task = next_task;
    if (n + 1 == kMaxTasks) out.warnings.push_back("more than kMaxTasks tasks; list cut");
  }
  std::sort(out.processes.begin(), out.processes.end(),
            [](const ProcessRecord& a, const ProcessRecord& b) { return a.pid < b.pid; });
  return out;
}

Result<ModuleList> list_modules(const shared::RamView& ram, const KernelProfile& profile) {
  const auto& mo = profile.offsets.module;
  auto kas = KernelAddressSpace::create(ram, profile.base);
  if (!kas) return tl::unexpected(kas.error());
  auto head = profile.symbols->address_of("modules");
  if (!head) return tl::unexpected(head.error());
  ModuleList out;
  std::unordered_set<uint64_t> seen;
  auto next = kas->read_u64(Gva(*head + profile.offsets.list_head.next));
  if (!next) return tl::unexpected(next.error());
  uint64_t entry = *next;
  for (size_t n = 0; n < kMaxModules && entry != *head; ++n) {
    if (!seen.insert(entry).second) {
      out.warnings.push_back("module list loops");
      break;
    }
    const uint64_t mod = entry - mo.list;
    ModuleRecord m;
    uint8_t name[64] = {};
    const uint64_t name_len = std::min<uint64_t>(mo.name_size ? mo.name_size : 56, sizeof name);
    auto got = kas->read_virtual(Gva(mod + mo.name), std::span<uint8_t>(name, name_len));
    if (!got || *got != name_len) {
      out.warnings.push_back("module at " + hex(mod) + " unreadable; list partial");
      break;
    }
    m.name = sanitize(name, name_len);
    if (auto b = kas->read_u64(Gva(mod + mo.core_base))) m.base = *b;
    uint8_t sz[4] = {};
    if (auto k = kas->read_virtual(Gva(mod + mo.core_size), sz); k && *k == 4) {
      uint32_t v;
      std::memcpy(&v, sz, 4);
      m.size_bytes = v;
    }
    out.modules.push_back(std::move(m));
    auto nx = kas->read_u64(Gva(entry + profile.offsets.list_head.next));
    if (!nx) {
      out.warnings.push_back("module list broken after " + out.modules.back().name);
      break;
    }
    entry = *nx;
  }
  return out;
}

Result<KernelLog> read_kernel_log(const shared::RamView& ram, const KernelProfile& profile) {
  const auto& o = profile.offsets;
  auto kas = KernelAddressSpace::create(ram, profile.base);
  if (!kas) return tl::unexpected(kas.error());
  auto prb_sym = profile.symbols->address_of("prb");
  if (!prb_sym) return tl::unexpected(prb_sym.error());
  auto prb = kas->read_u64(Gva(*prb_sym));  // struct printk_ringbuffer *prb
  if (!prb) return tl::unexpected(prb.error());
  const uint64_t dr = *prb + o.printk_ringbuffer.desc_ring;
  const uint64_t tr = *prb + o.printk_ringbuffer.text_data_ring;
  auto u32 = [&](uint64_t va) -> Result<uint32_t> {
    uint8_t b[4];
    auto n = kas->read_virtual(Gva(va), b);
    if (!n || *n != 4) return fail(Errc::kOutOfRange, "unreadable at " + hex(va));
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  };
  auto count_bits = u32(dr + o.prb_desc_ring.count_bits);
  auto size_bits = u32(tr + o.prb_data_ring.size_bits);
  auto descs = kas->read_u64(Gva(dr + o.prb_desc_ring.descs));
  auto infos = kas->read_u64(Gva(dr + o.prb_desc_ring.infos));
  auto head = kas->read_u64(Gva(dr + o.prb_desc_ring.head_id));
  auto tail = kas->read_u64(Gva(dr + o.prb_desc_ring.tail_id));
  auto data = kas->read_u64(Gva(tr + o.prb_data_ring.data));
  if (!count_bits || !size_bits || !descs || !infos || !head || !tail || !data) {
    return fail(Errc::kOutOfRange, "printk ring buffer header unreadable");
  }
  if (*count_bits > 24 || *size_bits > 30 || *size_bits < 8) {
    return fail(Errc::kProtocol, "printk ring buffer has implausible sizes (count_bits " +
                                     std::to_string(*count_bits) + ", size_bits " +
                                     std::to_string(*size_bits) + ")");
  }
  const uint64_t n_descs = 1ull << *count_bits, data_size = 1ull << *size_bits;
  // The whole text ring at once (a few hundred KiB), then records are cut from it. Nothing is
  // allocated for a ring that cannot be there: larger than guest RAM, or whose first or last
  // byte does not translate.
  if (data_size > ram.layout().file_size_bytes()) {
    return fail(Errc::kProtocol, "printk text ring of " + std::to_string(data_size) +
                                     " bytes is larger than guest RAM");
  }
  if (!kas->translate(Gva(*data)) || !kas->translate(Gva(*data + data_size - 1))) {
    return fail(Errc::kOutOfRange, "printk text ring at " + hex(*data) + " is not mapped");
  }
  std::vector<uint8_t> ring(data_size);
  auto got = kas->read_virtual(Gva(*data), ring);
  if (!got || *got != data_size) return fail(Errc::kOutOfRange, "printk text ring unreadable");
  constexpr unsigned kFlagsShift = 62;  // DESC_FLAGS_SHIFT = BITS_PER_LONG - 2
  constexpr uint64_t kIdMask = ~(3ull << kFlagsShift);
  KernelLog log;
  const uint64_t first = *tail & kIdMask, last = *head & kIdMask;
  const uint64_t span = (last - first) & kIdMask;
  if (span >= n_descs) log.warnings.push_back("descriptor ids span more than the ring; cut");
  for (uint64_t k = 0; k <= std::min<uint64_t>(span, n_descs - 1) && k < kMaxLogRecords; ++k) {
    const uint64_t id = (first + k) & kIdMask;
    const uint64_t idx = id & (n_descs - 1);
    const uint64_t desc = *descs + idx * o.prb_desc.size;
    auto sv = kas->read_u64(Gva(desc + o.prb_desc.state_var));
    if (!sv) {
      log.warnings.push_back("descriptor " + std::to_string(id) + " unreadable");
      continue;
    }
    const uint64_t state = *sv >> kFlagsShift;
    if ((*sv & kIdMask) != id || (state != 1 && state != 2)) continue;  // committed/finalized
    auto begin = kas->read_u64(Gva(desc + o.prb_desc.text_blk_lpos + o.prb_data_blk_lpos.begin));
    auto next = kas->read_u64(Gva(desc + o.prb_desc.text_blk_lpos + o.prb_data_blk_lpos.next));
    const uint64_t info = *infos + idx * o.printk_info.size;
    uint8_t ib[16];
    auto seq = kas->read_u64(Gva(info + o.printk_info.seq));
    auto ts = kas->read_u64(Gva(info + o.printk_info.ts_nsec));
    auto tl = kas->read_virtual(Gva(info + o.printk_info.text_len), std::span<uint8_t>(ib, 2));
    if (!begin || !next || !seq || !ts || !tl || *tl != 2) continue;
    const uint16_t text_len = static_cast<uint16_t>(ib[0] | ib[1] << 8);
    if ((*begin & 1) || (*next & 1)) continue;  // data-less record (FAILED_LPOS / NO_LPOS)
    // A block is {unsigned long id; char text[]}; one that would wrap starts at offset 0.
    uint64_t off = *begin & (data_size - 1);
    if ((*begin >> *size_bits) != (*next >> *size_bits) && (*next & (data_size - 1)) != 0) off = 0;
    if (off + 8 + text_len > data_size) {
      log.warnings.push_back("record " + std::to_string(*seq) + " text out of the ring");
      continue;
    }
    uint64_t blk_id;
    std::memcpy(&blk_id, ring.data() + off, 8);
    if (blk_id != id) continue;  // overwritten since
    LogRecord r;
    r.seq = *seq;
    r.ts_nsec = *ts;
    const size_t len = std::min<size_t>(text_len, 1024);
    for (size_t i = 0; i < len; ++i) {
      const char c = static_cast<char>(ring[off + 8 + i]);
      r.text.push_back((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t' ? c : '?');
    }
    log.records.push_back(std::move(r));
  }
  return log;
}

}  // namespace glassbox::semantic_db
