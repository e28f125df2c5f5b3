// One hot block, end to end: decode (Capstone) -> lift (Z3 semantics) -> direct translation
// (rule-based Pixel code) -> Z3 proof of equivalence -> CEGIS for a shorter program (also
// proved) -> the shorter verified program wins.
//
// Status: "verified" (Z3 proved the program equal to the block for all inputs, except the
// flags listed as undefined), "unsupported" (an instruction outside the lifted subset, or
// bytes that do not decode: `reason` names it), "timeout" (Z3 ran out of its time limit
// proving the direct translation), "failed" (Z3 found a counterexample to the direct
// translation: a bug in the lifter or the translator, `reason` has the counterexample).
//
// Thread-safety: reentrant; each call makes its own Z3 context. Runs in a worker thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "shared/pixel_isa.hpp"

namespace glassbox::smt {

struct SynthOptions {
  unsigned verify_timeout_ms = 10000;  // the direct translation's proof
  unsigned cegis_timeout_ms = 2000;    // the whole CEGIS search (0: no CEGIS)
  unsigned cegis_max_insns = 6;        // longest program CEGIS tries (and < direct's length)
};

struct SynthOutcome {
  std::string status;  // verified | unsupported | timeout | failed
  std::string reason;  // empty when verified
  pixel::Program program;
  uint8_t undefined_flags = 0;  // FlagMask bits
  uint32_t n_x86_insns = 0;
  uint32_t n_pixel_insns = 0;
  uint32_t n_direct_insns = 0;  // the direct translation's length (CEGIS must beat it)
  uint32_t block_bytes = 0;     // bytes the block covers (<= the bytes given)
  std::string method;           // cegis | direct (empty unless verified)
  double synth_ms = 0;          // direct translation + CEGIS search
  double verify_ms = 0;         // the winning program's proof
  std::string cegis_note;       // what CEGIS did ("found 3 insns", "timeout", "skipped: ...")
};

SynthOutcome synthesize_block(std::span<const uint8_t> bytes, uint64_t pc,
                              const SynthOptions& options);

// The JSON: {"status", "reason", "program": {"isa": "pixel-v1", "insns": [...]},
// "undefined_flags": [...], "n_x86_insns", "n_pixel_insns", "method", "synth_ms",
// "verify_ms"} plus "pc", "block_bytes", "n_direct_insns", "cegis".
std::string outcome_json(const SynthOutcome& outcome, uint64_t pc, bool pretty = true);

}  // namespace glassbox::smt
