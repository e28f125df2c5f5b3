#include "tests/smt_synthesizer/unicorn_oracle.hpp"

#include <unicorn/unicorn.h>

#include <vector>

namespace glassbox::smt::test {
namespace {

constexpr uint64_t kPage = 4096;

const int kUcGpr[16] = {UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX,
                        UC_X86_REG_RSP, UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI,
                        UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11,
                        UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15};
// RFLAGS bit of CF, PF, ZF, SF, OF.
const unsigned kFlagBit[5] = {0, 2, 6, 7, 11};

bool canonical(uint64_t a) {
  const auto s = static_cast<int64_t>(a) >> 47;
  return s == 0 || s == -1;
}

struct Ctx {
  uint64_t seed;
  uint64_t code_lo, code_hi;  // page-aligned code range
  bool touched_code = false;
  std::map<uint64_t, uint8_t>* written;
};

bool on_unmapped(uc_engine* uc, uc_mem_type type, uint64_t address, int size, int64_t, void* user) {
  auto* c = static_cast<Ctx*>(user);
  if (type == UC_MEM_FETCH_UNMAPPED) {
    // A branch out of the block: Unicorn may fetch the target before the instruction count
    // stops it. Map the target page as int3s (never executed within the count) so the run
    // ends with rip at the target, as a CPU's would.
    const uint64_t p = address & ~(kPage - 1);
    if (!canonical(p)) return false;
    std::vector<uint8_t> traps(kPage, 0xcc);
    return uc_mem_map(uc, p, kPage, UC_PROT_ALL) == UC_ERR_OK &&
           uc_mem_write(uc, p, traps.data(), kPage) == UC_ERR_OK;
  }
  // An access may straddle two pages: map every page it touches.
  const uint64_t first = address & ~(kPage - 1);
  const uint64_t last = (address + static_cast<uint64_t>(size > 0 ? size - 1 : 0)) & ~(kPage - 1);
  for (uint64_t p = first;; p += kPage) {
    if (!canonical(p) || !canonical(p + kPage - 1)) return false;
    std::vector<uint8_t> fill(kPage);
    for (uint64_t i = 0; i < kPage; ++i) fill[i] = memory_byte(c->seed, p + i);
    if (uc_mem_map(uc, p, kPage, UC_PROT_READ | UC_PROT_WRITE) != UC_ERR_OK) return false;
    if (uc_mem_write(uc, p, fill.data(), kPage) != UC_ERR_OK) return false;
    if (p == last) break;
  }
  return true;
}

void on_access(uc_engine* uc, uc_mem_type type, uint64_t address, int size, int64_t value,
               void* user) {
  auto* c = static_cast<Ctx*>(user);
  (void)uc;
  if (address < c->code_hi && address + static_cast<uint64_t>(size) > c->code_lo) {
    c->touched_code = true;
  }
  if (type == UC_MEM_WRITE) {
    for (int i = 0; i < size && i < 8; ++i) {
      (*c->written)[address + static_cast<uint64_t>(i)] =
          static_cast<uint8_t>(static_cast<uint64_t>(value) >> (8 * i));
    }
  }
}

}  // namespace

uint8_t memory_byte(uint64_t seed, uint64_t address) {
  auto mix = [](uint64_t z) {  // splitmix64 finalizer
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  if (seed & kPointerMemory) {
    // Every aligned qword is a pointer into [0x20000000, 0x20100000), so loaded pointers,
    // pointer chains and return addresses stay canonical (pages are mapped on first touch).
    const uint64_t q =
        0x20000000 + (mix(seed ^ ((address >> 3) * 0x9e3779b97f4a7c15ull)) & 0xffff8);
    return static_cast<uint8_t>(q >> (8 * (address & 7)));
  }
  return static_cast<uint8_t>(mix(seed ^ (address * 0x9e3779b97f4a7c15ull)));
}

OracleRun run_x86(std::span<const uint8_t> code, uint64_t pc, const X86State& in, uint64_t seed,
                  size_t n_insns) {
  OracleRun r;
  uc_engine* uc = nullptr;
  if (uc_open(UC_ARCH_X86, UC_MODE_64, &uc) != UC_ERR_OK) {
    r.error = "uc_open failed";
    return r;
  }
  Ctx ctx{seed, pc & ~(kPage - 1), (pc + code.size() + kPage - 1) & ~(kPage - 1), false,
          &r.written};
  uc_mem_map(uc, ctx.code_lo, ctx.code_hi - ctx.code_lo, UC_PROT_ALL);
  uc_mem_write(uc, pc, code.data(), code.size());
  for (int i = 0; i < 16; ++i) uc_reg_write(uc, kUcGpr[i], &in[static_cast<size_t>(i)]);
  uint64_t rflags = 0x2;
  for (int f = 0; f < 5; ++f) {
    if (in[16 + static_cast<size_t>(f)] & 1) rflags |= 1ull << kFlagBit[f];
  }
  uc_reg_write(uc, UC_X86_REG_RFLAGS, &rflags);
  uc_hook h1, h2;
  uc_hook_add(uc, &h1, UC_HOOK_MEM_UNMAPPED, reinterpret_cast<void*>(&on_unmapped), &ctx, 1, 0);
  uc_hook_add(uc, &h2, UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, reinterpret_cast<void*>(&on_access),
              &ctx, 1, 0);
  const uc_err e = uc_emu_start(uc, pc, 0, 0, n_insns);
  if (e != UC_ERR_OK || ctx.touched_code) {
    r.skipped = true;
    r.error = e != UC_ERR_OK ? uc_strerror(e) : "touched the code page";
    uc_close(uc);
    return r;
  }
  for (int i = 0; i < 16; ++i) uc_reg_read(uc, kUcGpr[i], &r.out[static_cast<size_t>(i)]);
  uc_reg_read(uc, UC_X86_REG_RFLAGS, &rflags);
  for (int f = 0; f < 5; ++f) r.out[16 + static_cast<size_t>(f)] = (rflags >> kFlagBit[f]) & 1;
  uc_reg_read(uc, UC_X86_REG_RIP, &r.out[21]);
  uc_close(uc);
  r.ok = true;
  return r;
}

bool SeededMemory::load(uint64_t address, unsigned size_bytes, uint64_t& value) {
  value = 0;
  for (unsigned i = 0; i < size_bytes; ++i) {
    const uint64_t a = address + i;
    auto it = written_.find(a);
    const uint8_t b = it != written_.end() ? it->second : memory_byte(seed_, a);
    value |= uint64_t{b} << (8 * i);
  }
  return true;
}

bool SeededMemory::store(uint64_t address, unsigned size_bytes, uint64_t value) {
  for (unsigned i = 0; i < size_bytes; ++i) {
    written_[address + i] = static_cast<uint8_t>(value >> (8 * i));
  }
  return true;
}

X86State random_state(std::mt19937_64& rng) {
  X86State s{};
  for (int i = 0; i < 16; ++i) {
    switch (rng() % 3) {
      case 0:
        s[static_cast<size_t>(i)] = rng();
        break;
      case 1:
        s[static_cast<size_t>(i)] = rng() % 256;
        break;
      default:
        s[static_cast<size_t>(i)] = 0x10000000 + (rng() % 0x100000);
        break;
    }
  }
  for (int f = 16; f <= 20; ++f) s[static_cast<size_t>(f)] = rng() & 1;
  return s;
}

}  // namespace glassbox::smt::test
