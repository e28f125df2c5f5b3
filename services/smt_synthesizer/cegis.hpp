// Counterexample-guided inductive synthesis of a Pixel program from a block's semantics:
// component-based synthesis with location variables (S. Jha, S. Gulwani, S. Seshia,
// A. Tiwari, "Oracle-guided component-based program synthesis", ICSE 2010; S. Gulwani,
// S. Jha, A. Tiwari, R. Venkatesan, "Synthesis of loop-free programs", PLDI 2011).
//
// The spec is the lifter's output over a fresh input state. Only the outputs that differ
// from their input are synthesized (the rest is the identity, free in Pixel); flags in
// `undefined_flags` are free. Blocks that touch memory are not attempted (result kSkipped).
// The search tries programs of 1, 2, ... up to `max_insns` components; each length is a
// CEGIS loop of a synthesis query (finite set of example inputs) and a verification query
// (all inputs), bounded by the overall `timeout_ms`. Outputs are synthesized one after
// another (GPRs, flags, rip), each reusing the earlier outputs' instructions as free
// sources; the total is within `max_insns` but not proved minimal (cegis.cpp says why).
//
// Thread-safety: uses only the context of the states.
#pragma once

#include <string>

#include "services/smt_synthesizer/symbolic.hpp"
#include "shared/pixel_isa.hpp"

namespace glassbox::smt {

struct CegisOptions {
  unsigned max_insns = 4;        // longest program searched (the caller passes direct - 1)
  unsigned timeout_ms = 2000;    // for the whole search
  unsigned max_iterations = 64;  // CEGIS rounds per length
};

struct CegisResult {
  enum class Status { kFound, kNotFound, kTimeout, kSkipped } status = Status::kNotFound;
  pixel::Program program;   // kFound: verified for all inputs against the spec
  std::string reason;       // kSkipped/kNotFound/kTimeout: why
  unsigned iterations = 0;  // CEGIS rounds over all lengths
  double ms = 0;
};

CegisResult synthesize_cegis(const SymState& in, const SymState& spec_out, uint8_t undefined_flags,
                             bool touches_memory, const CegisOptions& options);

}  // namespace glassbox::smt
