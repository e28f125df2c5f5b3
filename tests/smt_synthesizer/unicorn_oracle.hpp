// The independent x86-64 reference for smt-synthesizer's differential tests: Unicorn (Debian
// libunicorn-dev, QEMU's TCG x86 front end) runs a block from a given register file over a
// deterministic pseudo-random memory, and SeededMemory gives the Pixel interpreter the same
// memory, so both sides start from the same state.
//
// Memory: byte at address A is memory_byte(seed, A) until written. Unicorn maps 4 KiB pages
// on first touch and fills them from the seed. Non-canonical or code-page accesses make the
// run `skipped` (the sample is then not comparable, not a failure).
//
// Thread-safety: one Unicorn engine per call; no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <string>

#include "shared/pixel_isa.hpp"

namespace glassbox::smt::test {

// A seed with this bit set makes "pointer memory": every aligned qword holds an address in
// [0x20000000, 0x20100000) (for blocks that load pointers or return).
inline constexpr uint64_t kPointerMemory = 1ull << 63;

uint8_t memory_byte(uint64_t seed, uint64_t address);

// The x86 state in Pixel numbering: regs[0..15] GPRs, [16..20] CF PF ZF SF OF (0/1),
// [21] rip.
using X86State = std::array<uint64_t, pixel::kNumStateRegs>;

struct OracleRun {
  bool ok = false;       // ran the n_insns instructions
  bool skipped = false;  // a fault or a code-page access made the sample meaningless
  std::string error;
  X86State out{};
  std::map<uint64_t, uint8_t> written;  // every byte stored (final values)
};

// Runs `n_insns` instructions of `code` placed at `pc` (the block's start, rip = pc; in.regs[21]
// is ignored) from `in`; AF, DF and the other RFLAGS bits start at 0.
OracleRun run_x86(std::span<const uint8_t> code, uint64_t pc, const X86State& in, uint64_t seed,
                  size_t n_insns);

// The Pixel side of the same memory.
class SeededMemory : public pixel::Memory {
 public:
  explicit SeededMemory(uint64_t seed) : seed_(seed) {}
  bool load(uint64_t address, unsigned size_bytes, uint64_t& value) override;
  bool store(uint64_t address, unsigned size_bytes, uint64_t value) override;
  const std::map<uint64_t, uint8_t>& written() const { return written_; }

 private:
  uint64_t seed_;
  std::map<uint64_t, uint8_t> written_;
};

// A random x86 state: each GPR is, at random, a full 64-bit value, a small value (0..255,
// for counts and flags-heavy cases), or an address in a data window [0x10000000,
// 0x10100000) so memory operands hit mapped, non-code memory; flags 0/1 at random.
X86State random_state(std::mt19937_64& rng);

}  // namespace glassbox::smt::test
