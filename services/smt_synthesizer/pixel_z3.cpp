#include "services/smt_synthesizer/pixel_z3.hpp"

namespace glassbox::smt {

using pixel::Op;

z3::expr pixel_alu(Op op, const z3::expr& a, const z3::expr& b, const z3::expr& c, uint64_t imm) {
  z3::context& ctx = a.ctx();
  const z3::expr one = ctx.bv_val(1, 64), zero = ctx.bv_val(0, 64);
  auto flag = [&](const z3::expr& cond) { return z3::ite(cond, one, zero); };
  const z3::expr count = b & ctx.bv_val(63, 64);
  switch (op) {
    case Op::kLi:
      return ctx.bv_val(imm, 64);
    case Op::kMov:
      return a;
    case Op::kAdd:
      return a + b;
    case Op::kSub:
      return a - b;
    case Op::kAnd:
      return a & b;
    case Op::kOr:
      return a | b;
    case Op::kXor:
      return a ^ b;
    case Op::kMul:
      return a * b;
    case Op::kMulhu:
      return (z3::zext(a, 64) * z3::zext(b, 64)).extract(127, 64);
    case Op::kMulhs:
      return (z3::sext(a, 64) * z3::sext(b, 64)).extract(127, 64);
    case Op::kShl: {
      // By a constant 1..3: as a multiplication by 2, 4 or 8, the form the lifter gives
      // scaled indices (index * scale), so both sides' addresses rewrite to the same term and
      // the equivalence check does not have to bit-blast array indices. Same value mod 2^64.
      // Larger shifts stay shifts (Z3 rewrites them to concat/extract, as the lifter's).
      uint64_t k = 0;
      if (z3::expr cnt = count.simplify(); cnt.is_numeral_u64(k) && k >= 1 && k <= 3) {
        return a * ctx.bv_val(uint64_t{1} << (k & 63), 64);
      }
      return z3::shl(a, count);
    }
    case Op::kShr:
      return z3::lshr(a, count);
    case Op::kSar:
      return z3::ashr(a, count);
    case Op::kNot:
      return ~a;
    case Op::kNeg:
      return -a;
    case Op::kZext: {
      const unsigned bits = static_cast<unsigned>(imm);
      return z3::zext(a.extract(bits - 1, 0), 64 - bits);
    }
    case Op::kSext: {
      const unsigned bits = static_cast<unsigned>(imm);
      return z3::sext(a.extract(bits - 1, 0), 64 - bits);
    }
    case Op::kEq:
      return flag(a == b);
    case Op::kNe:
      return flag(a != b);
    case Op::kUlt:
      return flag(z3::ult(a, b));
    case Op::kUle:
      return flag(z3::ule(a, b));
    case Op::kSlt:
      return flag(z3::slt(a, b));
    case Op::kSle:
      return flag(z3::sle(a, b));
    case Op::kSel:
      return z3::ite(c != zero, a, b);
    case Op::kPar: {
      z3::expr x = a.extract(0, 0);
      for (unsigned i = 1; i < 8; ++i) x = x ^ a.extract(i, i);
      return z3::zext(~x, 63);  // even number of set bits -> 1
    }
    case Op::kLd:
    case Op::kSt:
      break;
  }
  return zero;  // ld/st are not ALU ops: pixel_semantics handles them
}

SymState pixel_semantics(const pixel::Program& program, const SymState& in) {
  z3::context& ctx = in.mem.ctx();
  std::vector<z3::expr> r;
  r.reserve(pixel::kNumRegs);
  for (unsigned i = 0; i < pixel::kNumRegs; ++i) {
    r.push_back(i < pixel::kNumStateRegs ? in.regs[i] : ctx.bv_val(0, 64));
  }
  z3::expr mem = in.mem;
  for (const auto& insn : program.insns) {
    const unsigned d = insn.d % pixel::kNumRegs, a = insn.a % pixel::kNumRegs,
                   b = insn.b % pixel::kNumRegs, c = insn.c % pixel::kNumRegs;
    switch (insn.op) {
      case Op::kLd: {
        const auto n = static_cast<unsigned>(insn.imm);
        z3::expr v = load_bytes(mem, r[a], n);
        r[d] = n == 8 ? v : z3::zext(v, 64 - 8 * n);
        break;
      }
      case Op::kSt: {
        const auto n = static_cast<unsigned>(insn.imm);
        mem = store_bytes(mem, r[a], r[b].extract(8 * n - 1, 0), n);
        break;
      }
      default:
        r[d] = pixel_alu(insn.op, r[a], r[b], r[c], insn.imm);
    }
  }
  r.resize(pixel::kNumStateRegs, ctx.bv_val(0, 64));
  return SymState{std::move(r), mem};
}

}  // namespace glassbox::smt
