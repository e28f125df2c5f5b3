// The direct, rule-based translation of a decoded x86-64 block into Pixel v1 code: one rule
// per x86 instruction form (the same subset as lifter.hpp), flags computed with Pixel ops,
// then cleaned by optimize(). It is written independently of the lifter; Z3 proves the two
// agree (verify.hpp), and a differential test runs it against Unicorn.
//
// Conventions: x86 state in r0..r21 as on entry (shared/pixel_isa.hpp); temporaries from r22
// up; undefined flags may be left with any value (translate() reports which are undefined, the
// same set as the lifter's).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "services/smt_synthesizer/x86_decode.hpp"
#include "shared/pixel_isa.hpp"

namespace glassbox::smt {

struct DirectResult {
  bool supported = false;
  std::string reason;  // when !supported: the first unsupported mnemonic and why
  pixel::Program program;
  uint8_t undefined_flags = 0;  // FlagMask bits (symbolic.hpp) undefined after the block
};

// Translates the whole block (optimized). Bounded by the block's length.
DirectResult translate_direct(const DecodedBlock& block);

// Dead-code elimination (live out: r0..r21 and every store), copy propagation and constant
// folding; keeps the program's semantics on r0..r21 and memory exactly.
pixel::Program optimize(const pixel::Program& program);

}  // namespace glassbox::smt
