// A Pixel v1 program's semantics over SymState: symbolic execution of docs/pixel-isa-v1.md
// (shared/pixel_isa.hpp's run() is the concrete twin). Scratch registers r22..r63 start at 0.
//
// Thread-safety: uses only the context of `in`.
#pragma once

#include <z3++.h>

#include "services/smt_synthesizer/symbolic.hpp"
#include "shared/pixel_isa.hpp"

namespace glassbox::smt {

// The state after running `program` (valid per pixel::validate) from `in`: r0..r21 and mem.
SymState pixel_semantics(const pixel::Program& program, const SymState& in);

// One instruction's result value given its operand values (a, b, c: bv64; ld/st excluded).
// Shared by pixel_semantics and CEGIS's component library.
z3::expr pixel_alu(pixel::Op op, const z3::expr& a, const z3::expr& b, const z3::expr& c,
                   uint64_t imm);

}  // namespace glassbox::smt
