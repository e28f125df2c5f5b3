// The symbolic machine state that every smt-synthesizer stage agrees on: the x86 block's
// semantics (lifter.hpp), a Pixel program's semantics (pixel_z3.hpp), the equivalence check
// (verify.hpp) and CEGIS (cegis.hpp) all speak it.
//
// Shapes: regs[0..21] are Z3 bit-vectors of 64 bits in Pixel v1 numbering (shared/pixel_isa.hpp):
// r0..r15 the GPRs (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15), r16..r20 CF, PF, ZF,
// SF, OF as 0 or 1 (the upper 63 bits are 0 in every reachable state), r21 rip. `mem` is a
// Z3 array from 64-bit byte addresses to 8-bit bytes (flat, little-endian).
//
// rip is symbolic: programs must be position-independent (r21 + offset), so one verified
// program serves the same bytes at any pc (the synthesizer caches by the bytes' hash).
//
// Thread-safety: Z3 objects belong to their z3::context; one context per thread.
#pragma once

#include <z3++.h>

#include <cstdint>
#include <string>
#include <vector>

#include "shared/pixel_isa.hpp"

namespace glassbox::smt {

struct SymState {
  std::vector<z3::expr> regs;  // pixel::kNumStateRegs entries, each bv64
  z3::expr mem;                // (Array (_ BitVec 64) (_ BitVec 8))
};

// The initial state: fresh constants "<prefix>r0".."<prefix>r21" and "<prefix>mem". Flags
// are constrained to 0/1 by flag_domain(), not by construction.
SymState fresh_state(z3::context& ctx, const std::string& prefix = "");

// r16..r20 of `s` are each 0 or 1 (the precondition of every query over a fresh state).
z3::expr flag_domain(const SymState& s);

// Flags as a bit mask (bit i = r16 + i): for `undefined_flags`.
enum FlagMask : uint8_t {
  kFlagCf = 1u << 0,
  kFlagPf = 1u << 1,
  kFlagZf = 1u << 2,
  kFlagSf = 1u << 3,
  kFlagOf = 1u << 4,
};
inline constexpr uint8_t kAllFlags = 0x1f;

// {"CF", "PF", ...} in register order, for the JSON result.
std::vector<std::string> flag_names(uint8_t mask);

// Little-endian loads/stores of `size_bytes` (1, 2, 4, 8) on a byte array; the value is
// bv(8 * size_bytes).
z3::expr load_bytes(const z3::expr& mem, const z3::expr& address, unsigned size_bytes);
z3::expr store_bytes(const z3::expr& mem, const z3::expr& address, const z3::expr& value,
                     unsigned size_bytes);

}  // namespace glassbox::smt
