// Equivalence of a Pixel program with the x86 block, proved by Z3 for all inputs: every
// initial register file (flags 0/1), every rip and every memory. The outputs compared are
// r0..r21 (minus the flags in `undefined_flags`) and the whole memory.
//
// Thread-safety: uses only the context of the states.
#pragma once

#include <z3++.h>

#include <string>

#include "services/smt_synthesizer/symbolic.hpp"

namespace glassbox::smt {

enum class Verdict { kVerified, kCounterexample, kTimeout };

struct VerifyResult {
  Verdict verdict = Verdict::kTimeout;
  // kCounterexample: the first output that differs and the input that shows it, e.g.
  // "r0 (rax): x86 0x5, pixel 0x4 with r0=0x1 r3=0x4 ..."; kTimeout: Z3's reason.
  std::string detail;
  double ms = 0;
};

// Proves spec_out == impl_out for all `in` (both computed from `in`). `timeout_ms` bounds
// Z3 (a timeout is a result, never a hang).
VerifyResult verify_equivalent(const SymState& in, const SymState& spec_out,
                               const SymState& impl_out, uint8_t undefined_flags,
                               unsigned timeout_ms);

}  // namespace glassbox::smt
