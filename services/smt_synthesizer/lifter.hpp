// The x86-64 lifter: a decoded block (x86_decode.hpp) -> its exact bit-vector semantics over
// SymState (symbolic.hpp), for the integer subset hot code uses (issue 5): mov/movzx/movsx/
// movsxd/movabs, lea, add/adc/sub/sbb/inc/dec/neg/cmp, and/or/xor/not/test, shl/shr/sar/
// rol/ror (immediate and cl counts; a masked count of 0 leaves every flag alone), imul/mul
// (one-, two-, three-operand), setcc, cmovcc, bt, xchg, push/pop/call/ret/jmp/jcc, nop/endbr64,
// partial registers (8-bit high/low and 16-bit writes keep the other bits, 32-bit writes
// zero-extend). Also: bts/btr/btc, cbw/cwde/cdqe/cwd/cdq/cqo, bswap, clc/stc/cmc, leave,
// jrcxz/jecxz, pause. Unsupported (reason names the mnemonic): everything else, lock and
// rep/repne prefixes (bnd/rep on branches and nops excepted), fs/gs memory operands,
// instructions that read AF (pushf, lahf), bt* with a register bit offset into memory.
//
// Flags follow the Intel SDM (Vol. 2, each instruction's "Flags Affected"). A flag the SDM
// leaves undefined is given a fresh unconstrained value and reported in `undefined_flags`
// unless a later instruction of the block defines it again. AF is not modelled: an
// instruction that reads AF makes the block unsupported. rip (r21) is symbolic: the
// next-instruction address is r21 + (offset in the block), a taken jcc target likewise,
// an indirect jmp/call/ret's target is the value read.
//
// Thread-safety: uses only `ctx` and its arguments; one context per thread.
#pragma once

#include <z3++.h>

#include <cstdint>
#include <span>
#include <string>

#include "services/smt_synthesizer/symbolic.hpp"
#include "services/smt_synthesizer/x86_decode.hpp"

namespace glassbox::smt {

struct LiftResult {
  bool supported = false;
  std::string reason;           // when !supported: the first unsupported mnemonic and why
  SymState out;                 // the state after the whole block (valid when supported)
  uint8_t undefined_flags = 0;  // FlagMask bits undefined after the block
  bool touches_memory = false;  // loads or stores (push/pop/call/ret included)
  size_t n_insns = 0;
};

// Lifts every instruction of `block` starting from `in`. Never throws for any decoded input.
// `bytes` (optional): the bytes `block` was decoded from (starting at block.pc). They are
// needed only to tell `48 63` (movsxd r64, sign-extending) from `63` without REX.W (a plain
// 32/16-bit move that Capstone 4 also prints as "movsxd r64"); without them REX.W is assumed.
// A flag read after an earlier instruction of the block left it undefined is unsupported.
LiftResult lift_block(z3::context& ctx, const DecodedBlock& block, const SymState& in,
                      std::span<const uint8_t> bytes = {});

}  // namespace glassbox::smt
