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
#include <memory>
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

// Both phases below, one after the other (the one-shot tool and the benchmark).
SynthOutcome synthesize_block(std::span<const uint8_t> bytes, uint64_t pc,
                              const SynthOptions& options);

// The same work in two phases, so a service can publish the first verified program at once
// and a shorter one later: direct() decodes, lifts, translates and proves (fast: the
// answer users wait for); improve() runs the CEGIS search against the same lifted spec and,
// when it finds a shorter program that Z3 proves, replaces the outcome's program.
// Thread-safety: one thread at a time (it owns a Z3 context).
class BlockSynthesis {
 public:
  BlockSynthesis(std::span<const uint8_t> bytes, uint64_t pc, SynthOptions options);
  ~BlockSynthesis();
  BlockSynthesis(const BlockSynthesis&) = delete;
  BlockSynthesis& operator=(const BlockSynthesis&) = delete;

  SynthOutcome direct();
  // Only for a "verified" outcome of direct(); returns whether the program got shorter.
  // Adds the search time to synth_ms and sets method, verify_ms and cegis_note.
  bool improve(SynthOutcome& outcome);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The JSON: {"status", "reason", "program": {"isa": "pixel-v1", "insns": [...]},
// "undefined_flags": [...], "n_x86_insns", "n_pixel_insns", "method", "synth_ms",
// "verify_ms"} plus "pc", "block_bytes", "n_direct_insns", "cegis".
std::string outcome_json(const SynthOutcome& outcome, uint64_t pc, bool pretty = true);

}  // namespace glassbox::smt
