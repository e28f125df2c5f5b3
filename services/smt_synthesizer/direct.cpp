// The direct translator: one rule per x86 instruction form, written from the Intel SDM (Vol. 2,
// each instruction's "Operation" and "Flags Affected"), independently of the lifter. Then a
// small straight-line optimizer (value numbering with constant folding and algebraic rules,
// copy propagation, dead-code elimination, and coalescing of a final `mov` into its def).
//
// Translation scheme, per x86 instruction:
//   1. every memory operand's address is computed into a temporary (before anything is
//      written, so `pop [rsp + 8]`, `xchg [rax], rax` and friends see the right registers);
//   2. every value the instruction produces is computed into temporaries, reading the x86
//      state registers r0..r21 as they are before the instruction;
//   3. the effects are committed in a fixed order: stores, then registers (partial writes
//      merge with the register's current value), then flags, then rip (only the block's
//      last instruction may write rip; r21 keeps the block's start until then, so
//      rip-relative addresses are r21 + constant and programs are position independent).
// Temporaries r22..r63 are handed out afresh for each x86 instruction; values that live
// across instructions live only in r0..r21.
#include "services/smt_synthesizer/direct.hpp"

#include <fmt/format.h>

#include <array>
#include <bit>
#include <exception>
#include <map>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "services/smt_synthesizer/symbolic.hpp"

namespace glassbox::smt {
namespace {

using pixel::Insn;
using pixel::Op;
using pixel::Program;
using Reg = uint8_t;

// Thrown inside the translator only; translate_direct() turns it into a DirectResult.
struct Unsupported {
  std::string reason;
};

[[noreturn]] void unsupported(const X86Insn& in, std::string_view why = {}) {
  if (why.empty()) throw Unsupported{fmt::format("unsupported instruction: {}", in.mnemonic)};
  throw Unsupported{fmt::format("unsupported instruction: {} ({})", in.mnemonic, why)};
}

uint64_t size_mask(unsigned bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

// Condition codes of jcc/setcc/cmovcc: x86_decode.hpp's table (in tttn order: an odd code
// negates the even one before it, which condition() relies on).
using Cond = X86Cond;

// New flag values of one instruction (nullopt: unchanged), in r16..r20 order.
struct Flags {
  std::array<std::optional<Reg>, 5> v;  // CF, PF, ZF, SF, OF
  std::optional<Reg>& cf() { return v[0]; }
  std::optional<Reg>& pf() { return v[1]; }
  std::optional<Reg>& zf() { return v[2]; }
  std::optional<Reg>& sf() { return v[3]; }
  std::optional<Reg>& of() { return v[4]; }
};

class Translator {
 public:
  explicit Translator(const DecodedBlock& block) : block_(block) {}

  DirectResult translate() {
    DirectResult r;
    if (block_.insns.empty()) {
      r.reason = "empty block";
      return r;
    }
    try {
      for (size_t i = 0; i < block_.insns.size(); ++i) {
        last_ = i + 1 == block_.insns.size();
        one(block_.insns[i]);
      }
      if (!rip_written_) {
        next_temp_ = pixel::kFirstScratch;
        const X86Insn& end = block_.insns.back();
        set(pixel::kRip, add(copy(pixel::kRip), li(end.address + end.size_bytes - block_.pc)));
      }
    } catch (const Unsupported& u) {
      r.reason = u.reason;
      return r;
    } catch (const std::exception& e) {  // e.g. bad_alloc: never escapes translate_direct
      r.reason = std::string("internal error: ") + e.what();
      return r;
    }
    r.supported = true;
    r.undefined_flags = undefined_;
    r.program = optimize(prog_);
    return r;
  }

 private:
  // ---- emission --------------------------------------------------------------------------
  Reg temp() {
    if (next_temp_ >= pixel::kNumRegs) {
      throw Unsupported{
          fmt::format("unsupported instruction: {} (too many temporaries)", cur_->mnemonic)};
    }
    return next_temp_++;
  }
  void emit(Op op, Reg d, Reg a = 0, Reg b = 0, Reg c = 0, uint64_t imm = 0) {
    prog_.insns.push_back(Insn{op, d, a, b, c, imm});
  }
  Reg op3(Op op, Reg a, Reg b, Reg c = 0, uint64_t imm = 0) {
    const Reg d = temp();
    emit(op, d, a, b, c, imm);
    return d;
  }
  Reg li(uint64_t v) {
    const Reg d = temp();
    emit(Op::kLi, d, 0, 0, 0, v);
    return d;
  }
  Reg copy(Reg a) { return op3(Op::kMov, a, 0); }
  Reg add(Reg a, Reg b) { return op3(Op::kAdd, a, b); }
  Reg sub(Reg a, Reg b) { return op3(Op::kSub, a, b); }
  Reg and_(Reg a, Reg b) { return op3(Op::kAnd, a, b); }
  Reg or_(Reg a, Reg b) { return op3(Op::kOr, a, b); }
  Reg xor_(Reg a, Reg b) { return op3(Op::kXor, a, b); }
  Reg shl(Reg a, Reg b) { return op3(Op::kShl, a, b); }
  Reg shr(Reg a, Reg b) { return op3(Op::kShr, a, b); }
  Reg sar(Reg a, Reg b) { return op3(Op::kSar, a, b); }
  Reg cmp(Op op, Reg a, Reg b) { return op3(op, a, b); }
  Reg sel(Reg if_true, Reg if_false, Reg cond) { return op3(Op::kSel, if_true, if_false, cond); }
  Reg zero() { return li(0); }
  // Low `bits` of v, zero-extended (v itself for 64).
  Reg trunc(Reg v, unsigned bits) { return bits >= 64 ? v : op3(Op::kZext, v, 0, 0, bits); }
  // Low `bits` of v, sign-extended.
  Reg sx(Reg v, unsigned bits) { return bits >= 64 ? v : op3(Op::kSext, v, 0, 0, bits); }
  // Bit bits-1 of v as 0/1.
  Reg msb(Reg v, unsigned bits) { return cmp(Op::kSlt, sx(v, bits), zero()); }
  // Bit i of v as 0/1.
  Reg bit(Reg v, Reg i) { return and_(shr(v, i), li(1)); }
  Reg lnot(Reg flag) { return xor_(flag, li(1)); }
  Reg ld(Reg addr, unsigned bytes) { return op3(Op::kLd, addr, 0, 0, bytes); }
  void st(Reg addr, Reg v, unsigned bytes) { emit(Op::kSt, 0, addr, v, 0, bytes); }
  void set(Reg d, Reg v) { emit(Op::kMov, d, v); }

  // ---- operands --------------------------------------------------------------------------
  GprSlice slice(const Operand& o) {
    GprSlice s;
    if (o.kind != Operand::Kind::kReg || !gpr_slice(o.reg, s)) {
      unsupported(*cur_, "operand is not a general-purpose register");
    }
    return s;
  }
  // Operand size in bits (8, 16, 32, 64).
  unsigned bits_of(const Operand& o) {
    if (o.kind == Operand::Kind::kReg) return slice(o).width;
    switch (o.size_bytes) {
      case 1:
      case 2:
      case 4:
      case 8:
        return 8u * o.size_bytes;
      default:
        unsupported(*cur_, "operand size");
    }
  }
  const Operand& op(size_t i) {
    if (i >= cur_->ops.size()) unsupported(*cur_, "unexpected operands");
    return cur_->ops[i];
  }
  size_t n_ops() const { return cur_->ops.size(); }

  // Offset of the next instruction from the block's start (rip after `cur_` = r21 + this).
  uint64_t end_offset() const { return cur_->address + cur_->size_bytes - block_.pc; }

  // The effective address of a memory operand (segment base ignored: flat in 64-bit mode;
  // fs/gs are rejected unless `for_lea`). `rsp_delta` is added to rsp when rsp is the base or
  // index (pop [rsp + x] addresses with the incremented rsp, SDM "POP").
  Reg address(const MemOperand& m, bool for_lea, uint64_t rsp_delta = 0) {
    if (!for_lea && (m.segment == X86_REG_FS || m.segment == X86_REG_GS)) {
      unsupported(*cur_, "fs/gs segment");
    }
    if (cur_->addr_size != 8 && cur_->addr_size != 4) unsupported(*cur_, "address size");
    uint64_t disp = static_cast<uint64_t>(m.disp);
    std::optional<Reg> sum;
    auto accumulate = [&](Reg v) { sum = sum ? add(*sum, v) : v; };
    auto gpr_value = [&](x86_reg r) {
      GprSlice s;
      if (!gpr_slice(r, s) || s.shift != 0 || s.width < 32) {
        unsupported(*cur_, "address register");
      }
      Reg v = copy(s.gpr);
      if (s.gpr == pixel::kRsp && rsp_delta != 0) v = add(v, li(rsp_delta));
      return v;
    };
    if (m.base == X86_REG_RIP || m.base == X86_REG_EIP) {
      disp += end_offset();
      accumulate(copy(pixel::kRip));
    } else if (m.base != X86_REG_INVALID) {
      accumulate(gpr_value(m.base));
    }
    if (m.index != X86_REG_INVALID) {
      Reg idx = gpr_value(m.index);
      switch (m.scale) {
        case 1:
          break;
        case 2:
          idx = shl(idx, li(1));
          break;
        case 4:
          idx = shl(idx, li(2));
          break;
        case 8:
          idx = shl(idx, li(3));
          break;
        default:
          unsupported(*cur_, "index scale");
      }
      accumulate(idx);
    }
    Reg a = sum ? (disp != 0 ? add(*sum, li(disp)) : *sum) : li(disp);
    if (cur_->addr_size == 4) a = trunc(a, 32);
    return a;
  }

  // The address of operand i (computed once per instruction, before any effect).
  Reg addr_of(size_t i) {
    const Operand& o = op(i);
    if (o.kind != Operand::Kind::kMem) unsupported(*cur_, "expected a memory operand");
    if (i >= addr_.size()) addr_.resize(i + 1);
    if (!addr_[i]) addr_[i] = address(o.mem, false);
    return *addr_[i];
  }

  // A GPR slice's value, zero-extended.
  Reg read_slice(const GprSlice& s) {
    if (s.shift == 8) return trunc(shr(s.gpr, li(8)), 8);
    if (s.width == 64) return copy(s.gpr);
    return trunc(s.gpr, s.width);
  }
  // Operand i's value, zero-extended from `bits` (immediates: Capstone's value cut to `bits`).
  Reg read(size_t i, unsigned bits) {
    const Operand& o = op(i);
    switch (o.kind) {
      case Operand::Kind::kReg:
        return read_slice(slice(o));
      case Operand::Kind::kImm:
        return li(static_cast<uint64_t>(o.imm) & size_mask(bits));
      case Operand::Kind::kMem:
        return ld(addr_of(i), bits / 8);
    }
    unsupported(*cur_, "operand kind");
  }
  Reg read(size_t i) { return read(i, bits_of(op(i))); }

  // Writes a GPR slice: 64-bit as is, 32-bit zero-extended, 16/8-bit merged into the
  // register's current value (SDM Vol. 1 3.4.1.1).
  void write_slice(const GprSlice& s, Reg v) {
    const Reg g = s.gpr;
    if (s.width == 64) {
      set(g, v);
    } else if (s.width == 32) {
      emit(Op::kZext, g, v, 0, 0, 32);
    } else {
      const uint64_t mask = size_mask(s.width) << s.shift;
      Reg part = trunc(v, s.width);
      if (s.shift != 0) part = shl(part, li(s.shift));
      emit(Op::kOr, g, and_(g, li(~mask)), part);
    }
  }
  // Writes operand i (its own size); memory is stored now, so call stores before registers.
  void write(size_t i, Reg v) {
    const Operand& o = op(i);
    switch (o.kind) {
      case Operand::Kind::kReg:
        write_slice(slice(o), v);
        return;
      case Operand::Kind::kMem:
        st(addr_of(i), v, bits_of(o) / 8);
        return;
      case Operand::Kind::kImm:
        break;
    }
    unsupported(*cur_, "destination is an immediate");
  }
  bool is_mem(size_t i) { return op(i).kind == Operand::Kind::kMem; }

  // ---- flags -----------------------------------------------------------------------------
  // ZF, SF, PF of an n-bit result (zero-extended in `res`).
  void szp(Flags& f, Reg res, unsigned bits) {
    f.zf() = cmp(Op::kEq, res, zero());
    f.sf() = msb(res, bits);
    f.pf() = op3(Op::kPar, res, 0);
  }
  // Commits flags. `undefined`: FlagMask bits the SDM leaves undefined (their registers are
  // left as they are). With `only_if`, the new values apply only when r[only_if] != 0 (shift
  // counts of 0 leave every flag alone), so previously undefined flags stay undefined.
  void commit_flags(Flags& f, uint8_t undefined, std::optional<Reg> only_if = std::nullopt) {
    std::array<std::optional<Reg>, 5> v = f.v;
    if (only_if) {
      for (unsigned i = 0; i < 5; ++i) {
        if (v[i]) v[i] = sel(*v[i], static_cast<Reg>(pixel::kCf + i), *only_if);
      }
    }
    for (unsigned i = 0; i < 5; ++i) {
      if (v[i]) set(static_cast<Reg>(pixel::kCf + i), *v[i]);
      if (!only_if && v[i]) undefined_ &= static_cast<uint8_t>(~(1u << i));
    }
    undefined_ |= undefined;
  }

  // The condition as a 0/1 register, possibly negated (then `negated` is set and the register
  // holds the opposite), so sel-based users can swap arms instead of paying for a not.
  Reg condition(Cond c, bool& negated) {
    const Reg cf = pixel::kCf, pf = pixel::kPf, zf = pixel::kZf, sf = pixel::kSf, of = pixel::kOf;
    const auto k = static_cast<unsigned>(c);
    negated = (k & 1) != 0;  // odd codes are the negations of the even ones before them
    switch (static_cast<Cond>(k & ~1u)) {
      case Cond::kO:
        return copy(of);
      case Cond::kB:
        return copy(cf);
      case Cond::kE:
        return copy(zf);
      case Cond::kBe:
        return or_(cf, zf);
      case Cond::kS:
        return copy(sf);
      case Cond::kP:
        return copy(pf);
      case Cond::kL:
        return cmp(Op::kNe, sf, of);
      case Cond::kLe:
        return or_(zf, cmp(Op::kNe, sf, of));
      default:
        break;
    }
    unsupported(*cur_, "condition");
  }
  Reg condition01(Cond c) {
    bool negated = false;
    const Reg r = condition(c, negated);
    return negated ? lnot(r) : r;
  }

  // ---- instruction rules -----------------------------------------------------------------
  void one(const X86Insn& in) {
    cur_ = &in;
    next_temp_ = pixel::kFirstScratch;
    addr_.clear();
    if (in.prefix[0] == 0xf0) unsupported(in, "lock prefix");
    const bool rep = in.prefix[0] == 0xf2 || in.prefix[0] == 0xf3;
    if (rep && !in.is_control_transfer && in.id != X86_INS_ENDBR64) {
      unsupported(in, "rep prefix");
    }
    if (in.is_control_transfer && !last_) {
      unsupported(in, "control transfer before the end of the block");
    }
    const unsigned id = in.id;
    if (const auto cc = conditional_of(id)) {
      switch (cc->family) {
        case X86CondFamily::kJcc:
          if (cc->cond == Cond::kRcxz || cc->cond == Cond::kEcxz) {
            return jrcxz(cc->cond == Cond::kRcxz ? 64 : 32);
          }
          return jcc(cc->cond);  // jcxz (not encodable in 64-bit code): condition() refuses
        case X86CondFamily::kSetcc:
          return setcc(cc->cond);
        case X86CondFamily::kCmovcc:
          return cmovcc(cc->cond);
      }
    }
    switch (id) {
      case X86_INS_NOP:
      case X86_INS_ENDBR64:
        return;
      case X86_INS_MOV:
      case X86_INS_MOVABS:
        return mov(false, false);
      case X86_INS_MOVZX:
        return mov(true, false);
      case X86_INS_MOVSX:
      case X86_INS_MOVSXD:
        return mov(true, true);
      case X86_INS_LEA:
        return lea();
      case X86_INS_ADD:
      case X86_INS_ADC:
      case X86_INS_SUB:
      case X86_INS_SBB:
      case X86_INS_CMP:
      case X86_INS_AND:
      case X86_INS_OR:
      case X86_INS_XOR:
      case X86_INS_TEST:
        return alu(id);
      case X86_INS_INC:
      case X86_INS_DEC:
        return inc_dec(id == X86_INS_INC);
      case X86_INS_NEG:
        return neg();
      case X86_INS_NOT:
        return not_();
      case X86_INS_SHL:
      case X86_INS_SAL:
      case X86_INS_SHR:
      case X86_INS_SAR:
        return shift(id);
      case X86_INS_ROL:
      case X86_INS_ROR:
        return rotate(id == X86_INS_ROL);
      case X86_INS_IMUL:
      case X86_INS_MUL:
        return multiply(id == X86_INS_IMUL);
      case X86_INS_BT:
        return bt();
      case X86_INS_XCHG:
        return xchg();
      case X86_INS_PUSH:
        return push();
      case X86_INS_POP:
        return pop();
      case X86_INS_CALL:
        return call();
      case X86_INS_RET:
        return ret();
      case X86_INS_JMP:
        return jmp();
      case X86_INS_CBW:
      case X86_INS_CWDE:
      case X86_INS_CDQE:
      case X86_INS_CWD:
      case X86_INS_CDQ:
      case X86_INS_CQO:
        return convert(id);
      default:
        unsupported(in);
    }
  }

  // MOV/MOVABS, MOVZX, MOVSX/MOVSXD: no flags.
  void mov(bool extend, bool sign) {
    const unsigned dbits = bits_of(op(0));
    const unsigned sbits = extend ? bits_of(op(1)) : dbits;
    Reg v = read(1, sbits);
    if (sign) v = sx(v, sbits);
    write(0, v);
  }

  // LEA: the effective address, cut to the destination size; no memory access, no flags.
  void lea() {
    const Operand& m = op(1);
    if (m.kind != Operand::Kind::kMem) unsupported(*cur_, "expected a memory operand");
    const Reg a = address(m.mem, true);
    write(0, a);
  }

  // ADD ADC SUB SBB CMP AND OR XOR TEST. SDM: OF SF ZF AF CF PF set by the result for the
  // arithmetic ones; AND/OR/XOR/TEST clear OF and CF, set SF ZF PF (AF undefined: not
  // modelled).
  void alu(unsigned id) {
    const unsigned n = bits_of(op(0));
    const Reg a = read(0, n);
    const Reg b = read(1, n);
    Flags f;
    Reg res;
    switch (id) {
      case X86_INS_ADD:
      case X86_INS_ADC: {
        Reg full = add(a, b);
        if (id == X86_INS_ADC) full = add(full, pixel::kCf);
        res = trunc(full, n);
        const Reg lt = cmp(Op::kUlt, res, a);
        f.cf() = id == X86_INS_ADC ? sel(cmp(Op::kUle, res, a), lt, pixel::kCf) : lt;
        f.of() = msb(and_(xor_(a, res), xor_(b, res)), n);
        break;
      }
      case X86_INS_SUB:
      case X86_INS_SBB:
      case X86_INS_CMP: {
        Reg full = sub(a, b);
        if (id == X86_INS_SBB) full = sub(full, pixel::kCf);
        res = trunc(full, n);
        const Reg lt = cmp(Op::kUlt, a, b);
        f.cf() = id == X86_INS_SBB ? sel(cmp(Op::kUle, a, b), lt, pixel::kCf) : lt;
        f.of() = msb(and_(xor_(a, b), xor_(a, res)), n);
        break;
      }
      case X86_INS_AND:
      case X86_INS_TEST:
        res = and_(a, b);
        f.cf() = f.of() = zero();
        break;
      case X86_INS_OR:
        res = or_(a, b);
        f.cf() = f.of() = zero();
        break;
      default:  // XOR
        res = xor_(a, b);
        f.cf() = f.of() = zero();
        break;
    }
    szp(f, res, n);
    if (id != X86_INS_CMP && id != X86_INS_TEST) write(0, res);
    commit_flags(f, 0);
  }

  // INC/DEC: like ADD/SUB 1 but CF is unaffected (SDM "INC", "DEC").
  void inc_dec(bool inc) {
    const unsigned n = bits_of(op(0));
    const Reg a = read(0, n);
    const Reg one = li(1);
    const Reg res = trunc(inc ? add(a, one) : sub(a, one), n);
    Flags f;
    f.of() =
        inc ? msb(and_(xor_(a, res), xor_(one, res)), n) : msb(and_(xor_(a, one), xor_(a, res)), n);
    szp(f, res, n);
    write(0, res);
    commit_flags(f, 0);
  }

  // NEG: CF = (source != 0); OF SF ZF PF from the result (SDM "NEG").
  void neg() {
    const unsigned n = bits_of(op(0));
    const Reg a = read(0, n);
    const Reg res = trunc(op3(Op::kNeg, a, 0), n);
    Flags f;
    f.cf() = cmp(Op::kNe, a, zero());
    f.of() = msb(and_(a, res), n);  // only -(-2^(n-1)) overflows: both signs set
    szp(f, res, n);
    write(0, res);
    commit_flags(f, 0);
  }

  // NOT: no flags.
  void not_() {
    const unsigned n = bits_of(op(0));
    write(0, trunc(op3(Op::kNot, read(0, n), 0), n));
  }

  // The masked count of a shift/rotate (SDM: 5 bits, 6 for 64-bit operands): a constant when
  // the count is an immediate (or the implicit 1), else a register.
  struct Count {
    std::optional<uint64_t> constant;
    Reg reg = 0;
  };
  Count count(unsigned n) {
    const uint64_t mask = n == 64 ? 63 : 31;
    Count c;
    if (n_ops() < 2) {
      c.constant = 1;
    } else if (op(1).kind == Operand::Kind::kImm) {
      c.constant = static_cast<uint64_t>(op(1).imm) & mask;
    } else {
      c.reg = and_(read(1, 8), li(mask));
      return c;
    }
    c.reg = li(*c.constant);
    return c;
  }

  // SHL/SAL, SHR, SAR (SDM "SAL/SAR/SHL/SHR"): CF = last bit shifted out (undefined for
  // SHL/SHR when the count >= the operand size); OF defined only for a count of 1 (SHL: MSB
  // of the result XOR CF; SHR: MSB of the original; SAR: 0); SF ZF PF from the result; a
  // masked count of 0 affects no flag. The destination is written even for a count of 0 (a
  // 32-bit register is then zero-extended, as hardware and QEMU do).
  void shift(unsigned id) {
    const unsigned n = bits_of(op(0));
    const Reg a = read(0, n);
    const Count c = count(n);
    if (c.constant && *c.constant == 0) {
      write(0, a);
      return;
    }
    const Reg cm1 = c.constant ? li(*c.constant - 1) : sub(c.reg, li(1));
    Reg res;
    Flags f;
    if (id == X86_INS_SHL || id == X86_INS_SAL) {
      res = trunc(shl(a, c.reg), n);
      f.cf() = bit(shl(a, cm1), li(n - 1));
      if (c.constant == 1) f.of() = xor_(msb(res, n), *f.cf());
    } else if (id == X86_INS_SHR) {
      res = shr(a, c.reg);
      f.cf() = bit(a, cm1);
      if (c.constant == 1) f.of() = msb(a, n);
    } else {
      const Reg sa = sx(a, n);
      res = trunc(sar(sa, c.reg), n);
      f.cf() = bit(sa, cm1);
      if (c.constant == 1) f.of() = zero();
    }
    szp(f, res, n);
    write(0, res);
    uint8_t undefined = c.constant == 1 ? 0 : kFlagOf;
    if (id != X86_INS_SAR && n < 32 && (!c.constant || *c.constant >= n)) undefined |= kFlagCf;
    if (c.constant) {
      commit_flags(f, undefined);
    } else {
      commit_flags(f, undefined, cmp(Op::kNe, c.reg, zero()));
    }
  }

  // ROL/ROR (SDM "RCL/RCR/ROL/ROR"): rotate by (masked count) mod n; only CF (ROL: LSB of the
  // result, ROR: MSB) and OF (count 1 only: ROL MSB XOR CF, ROR the two top bits XORed) are
  // affected, and none when the masked count is 0.
  void rotate(bool left) {
    const unsigned n = bits_of(op(0));
    const Reg a = read(0, n);
    const Count c = count(n);
    if (c.constant && *c.constant == 0) {
      write(0, a);
      return;
    }
    const Reg r = n < 32 ? and_(c.reg, li(n - 1)) : c.reg;
    const Reg back = sub(li(n), r);
    const Reg res = trunc(left ? or_(shl(a, r), shr(a, back)) : or_(shr(a, r), shl(a, back)), n);
    Flags f;
    if (left) {
      f.cf() = and_(res, li(1));
      if (c.constant == 1) f.of() = xor_(msb(res, n), *f.cf());
    } else {
      f.cf() = msb(res, n);
      if (c.constant == 1) f.of() = xor_(*f.cf(), bit(res, li(n - 2)));
    }
    write(0, res);
    const uint8_t undefined = c.constant == 1 ? 0 : kFlagOf;
    if (c.constant) {
      commit_flags(f, undefined);
    } else {
      commit_flags(f, undefined, cmp(Op::kNe, c.reg, zero()));
    }
  }

  // IMUL (1, 2, 3 operands) and MUL (SDM "IMUL", "MUL"): CF = OF = the full product does not
  // fit the destination (signed: is not the sign extension of the low half; unsigned: the
  // high half is not 0); SF ZF PF (and AF) undefined.
  void multiply(bool is_signed) {
    Flags f;
    if (n_ops() == 1) {
      const unsigned n = bits_of(op(0));
      const Reg src = read(0, n);
      const GprSlice acc{pixel::kRax, 0, static_cast<uint8_t>(n)};
      const GprSlice hi{pixel::kRdx, 0, static_cast<uint8_t>(n)};
      const Reg a = read_slice(acc);
      Reg low, high, full = 0;
      if (n == 64) {
        low = op3(Op::kMul, a, src);
        high = op3(is_signed ? Op::kMulhs : Op::kMulhu, a, src);
        f.of() = is_signed ? cmp(Op::kNe, high, sar(low, li(63))) : cmp(Op::kNe, high, zero());
      } else {
        full = is_signed ? op3(Op::kMul, sx(a, n), sx(src, n)) : op3(Op::kMul, a, src);
        low = trunc(full, n);
        high = trunc(shr(full, li(n)), n);
        f.of() = is_signed ? cmp(Op::kNe, full, sx(full, n)) : cmp(Op::kNe, high, zero());
      }
      f.cf() = *f.of();
      if (n == 8) {
        write_slice(GprSlice{pixel::kRax, 0, 16}, full);  // AX = AL * r/m8
      } else {
        write_slice(acc, low);
        write_slice(hi, high);
      }
    } else {
      if (!is_signed) unsupported(*cur_, "unexpected operands");
      const unsigned n = bits_of(op(0));
      const Reg a = n_ops() == 2 ? read(0, n) : read(1, n);
      const Reg b = n_ops() == 2 ? read(1, n) : read(2, n);
      if (n == 64) {
        const Reg low = op3(Op::kMul, a, b);
        f.of() = cmp(Op::kNe, op3(Op::kMulhs, a, b), sar(low, li(63)));
        write(0, low);
      } else {
        const Reg full = op3(Op::kMul, sx(a, n), sx(b, n));
        f.of() = cmp(Op::kNe, full, sx(full, n));
        write(0, trunc(full, n));
      }
      f.cf() = *f.of();
    }
    commit_flags(f, kFlagSf | kFlagZf | kFlagPf);
  }

  // BT (SDM "BT"): CF = the selected bit; ZF unaffected; OF SF PF (AF) undefined. A register
  // bit offset with a memory base addresses the bit string: the signed offset's
  // (offset >> log2 n) * (n / 8) bytes are added to the address, bit offset & (n - 1) there.
  void bt() {
    const unsigned n = bits_of(op(0));
    const Reg mask = li(n - 1);
    Reg value, index;
    if (is_mem(0) && op(1).kind != Operand::Kind::kImm) {
      const Reg off = sx(read(1, n), n);
      const unsigned log_n = std::countr_zero(n);
      const Reg bytes = shl(sar(off, li(log_n)), li(log_n - 3));
      Reg a = add(addr_of(0), bytes);
      if (cur_->addr_size == 4) a = trunc(a, 32);
      value = ld(a, n / 8);
      index = and_(off, mask);
    } else {
      value = read(0, n);
      index = and_(read(1, n), mask);
    }
    Flags f;
    f.cf() = bit(value, index);
    commit_flags(f, kFlagOf | kFlagSf | kFlagPf);
  }

  // XCHG: swap; no flags (the implicit lock of a memory form has no effect on the result).
  void xchg() {
    const Reg a = read(0);
    const Reg b = read(1);
    if (is_mem(1)) {
      write(1, a);
      write(0, b);
    } else {
      write(0, b);
      write(1, a);
    }
  }

  void require_64bit_stack() {
    if (cur_->prefix[2] == 0x66) unsupported(*cur_, "16-bit stack operation");
  }

  // PUSH (SDM "PUSH"): the source is read (rsp-relative with the old rsp), rsp -= 8, store.
  void push() {
    require_64bit_stack();
    const Reg v =
        op(0).kind == Operand::Kind::kImm ? li(static_cast<uint64_t>(op(0).imm)) : read(0, 64);
    const Reg sp = sub(copy(pixel::kRsp), li(8));
    st(sp, v, 8);
    set(pixel::kRsp, sp);
  }

  // POP (SDM "POP"): load at rsp, rsp += 8; a memory destination is addressed with the
  // incremented rsp; `pop rsp` leaves the popped value in rsp.
  void pop() {
    require_64bit_stack();
    const Reg sp = copy(pixel::kRsp);
    const Reg v = ld(sp, 8);
    const Reg next = add(sp, li(8));
    if (is_mem(0)) {
      if (bits_of(op(0)) != 64) unsupported(*cur_, "operand size");
      addr_.assign(1, address(op(0).mem, false, 8));
      write(0, v);
      set(pixel::kRsp, next);
    } else {
      set(pixel::kRsp, next);
      write(0, v);
    }
  }

  // A direct target (Capstone gives the absolute address) as r21 + (target - block pc);
  // an indirect one is the 64-bit operand value.
  Reg target() {
    if (cur_->prefix[2] == 0x66) unsupported(*cur_, "16-bit operand size");
    if (op(0).kind == Operand::Kind::kImm) {
      return add(copy(pixel::kRip), li(static_cast<uint64_t>(op(0).imm) - block_.pc));
    }
    if (bits_of(op(0)) != 64) unsupported(*cur_, "operand size");
    return read(0, 64);
  }
  Reg fallthrough() { return add(copy(pixel::kRip), li(end_offset())); }
  void set_rip(Reg v) {
    set(pixel::kRip, v);
    rip_written_ = true;
  }

  void jmp() { set_rip(target()); }

  // CALL (SDM "CALL"): the target is read first (call [rsp] uses the old rsp), then the
  // return address is pushed.
  void call() {
    const Reg t = target();
    const Reg sp = sub(copy(pixel::kRsp), li(8));
    st(sp, fallthrough(), 8);
    set(pixel::kRsp, sp);
    set_rip(t);
  }

  // RET / RET imm16 (SDM "RET"): rip = [rsp]; rsp += 8 + imm16.
  void ret() {
    if (cur_->prefix[2] == 0x66) unsupported(*cur_, "16-bit operand size");
    const Reg sp = copy(pixel::kRsp);
    const Reg v = ld(sp, 8);
    uint64_t pop_bytes = 8;
    if (n_ops() >= 1 && op(0).kind == Operand::Kind::kImm) {
      pop_bytes += static_cast<uint64_t>(op(0).imm) & 0xffff;
    }
    set(pixel::kRsp, add(sp, li(pop_bytes)));
    set_rip(v);
  }

  void jcc(Cond c) {
    const Reg taken = target();
    const Reg next = fallthrough();
    bool negated = false;
    const Reg cond = condition(c, negated);
    set_rip(negated ? sel(next, taken, cond) : sel(taken, next, cond));
  }

  // JRCXZ/JECXZ: jump when rcx (ecx with a 0x67 prefix) is 0; no flags.
  void jrcxz(unsigned bits) {
    const Reg taken = target();
    const Reg next = fallthrough();
    const Reg cond = cmp(Op::kEq, trunc(pixel::kRcx, bits), zero());
    set_rip(sel(taken, next, cond));
  }

  void setcc(Cond c) {
    if (bits_of(op(0)) != 8) unsupported(*cur_, "operand size");
    const Reg v = condition01(c);
    write(0, v);
  }

  // CMOVcc (SDM "CMOVcc"): the source is read (a memory source is loaded) whatever the
  // condition; a 32-bit destination is zero-extended even when the move does not happen.
  void cmovcc(Cond c) {
    const unsigned n = bits_of(op(0));
    const Reg src = read(1, n);
    const Reg dst = read(0, n);
    bool negated = false;
    const Reg cond = condition(c, negated);
    write(0, negated ? sel(dst, src, cond) : sel(src, dst, cond));
  }

  // CBW/CWDE/CDQE (sign-extend the low half of rax into its own width) and CWD/CDQ/CQO
  // (the sign of ax/eax/rax into dx/edx/rdx); no flags.
  void convert(unsigned id) {
    const auto w = [](unsigned bits) { return GprSlice{0, 0, static_cast<uint8_t>(bits)}; };
    switch (id) {
      case X86_INS_CBW:
        return write_slice(w(16), sx(read_slice(w(8)), 8));
      case X86_INS_CWDE:
        return write_slice(w(32), sx(read_slice(w(16)), 16));
      case X86_INS_CDQE:
        return write_slice(w(64), sx(read_slice(w(32)), 32));
      default:
        break;
    }
    const unsigned n = id == X86_INS_CWD ? 16 : id == X86_INS_CDQ ? 32 : 64;
    const Reg sign = sar(sx(read_slice(w(n)), n), li(63));
    write_slice(GprSlice{pixel::kRdx, 0, static_cast<uint8_t>(n)}, sign);
  }

  const DecodedBlock& block_;
  const X86Insn* cur_ = nullptr;
  bool last_ = false;
  bool rip_written_ = false;
  Reg next_temp_ = pixel::kFirstScratch;
  std::vector<std::optional<Reg>> addr_;
  uint8_t undefined_ = 0;
  Program prog_;
};

// =========================================================================================
// The optimizer.

// A pure op on constants, exactly as pixel::run computes it.
uint64_t eval(Op op, uint64_t a, uint64_t b, uint64_t c, uint64_t imm) {
  return pixel::alu(op, a, b, c, imm);
}

bool commutative(Op op) {
  switch (op) {
    case Op::kAdd:
    case Op::kAnd:
    case Op::kOr:
    case Op::kXor:
    case Op::kMul:
    case Op::kMulhu:
    case Op::kMulhs:
    case Op::kEq:
    case Op::kNe:
      return true;
    default:
      return false;
  }
}

// Value numbering over a straight-line program: every register holds a value number; equal
// numbers are equal values for every input. Loads are numbered with the memory version
// (bumped by each store), and a store makes its value known to a same-size load of the same
// address until the next store.
class ValueNumbering {
 public:
  Program run(const Program& in) {
    for (unsigned r = 0; r < pixel::kNumRegs; ++r) {
      reg_[r] = r < pixel::kNumStateRegs ? fresh() : constant(0);
    }
    Program out;
    for (const Insn& insn : in.insns) step(insn, out);
    return out;
  }

 private:
  using Key = std::tuple<uint8_t, uint32_t, uint32_t, uint32_t, uint64_t, uint32_t>;
  struct Value {
    bool is_const = false;
    uint64_t c = 0;
    Op op = Op::kLi;
    uint32_t a = 0, b = 0, cc = 0;
    uint64_t imm = 0;
    bool boolean = false;  // 0 or 1 for every input
    bool opaque = true;    // an input or a load: no structure to simplify with
  };

  uint32_t fresh() {
    vals_.push_back(Value{});
    return static_cast<uint32_t>(vals_.size() - 1);
  }
  uint32_t constant(uint64_t c) {
    const Key k{255, 0, 0, 0, c, 0};
    auto it = table_.find(k);
    if (it != table_.end()) return it->second;
    Value v;
    v.is_const = true;
    v.c = c;
    v.boolean = c <= 1;
    v.opaque = false;
    vals_.push_back(v);
    const auto id = static_cast<uint32_t>(vals_.size() - 1);
    table_.emplace(k, id);
    return id;
  }
  bool is_const(uint32_t v, uint64_t c) const { return vals_[v].is_const && vals_[v].c == c; }
  bool is_op(uint32_t v, Op op) const {
    return !vals_[v].opaque && !vals_[v].is_const && vals_[v].op == op;
  }

  // The value number of op(a, b, c, imm) for a pure op, simplified.
  uint32_t expr(Op op, uint32_t a, uint32_t b, uint32_t c, uint64_t imm) {
    const auto s = pixel::op_shape(op);
    if (s.n_reg_sources < 3) c = 0;
    if (s.n_reg_sources < 2) b = 0;
    if (s.n_reg_sources < 1) a = 0;
    if (op == Op::kLi) return constant(imm);
    if (op == Op::kMov) return a;
    const Value &va = vals_[a], &vb = vals_[b], &vc = vals_[c];
    if ((s.n_reg_sources < 1 || va.is_const) && (s.n_reg_sources < 2 || vb.is_const) &&
        (s.n_reg_sources < 3 || vc.is_const)) {
      return constant(eval(op, va.c, vb.c, vc.c, imm));
    }
    if (commutative(op) && (a > b || va.is_const)) {
      if (!vb.is_const) std::swap(a, b);
    }
    // After the swap a constant operand of a commutative op is b.
    const bool bc = vals_[b].is_const;
    const uint64_t bv = vals_[b].c;
    switch (op) {
      case Op::kAdd:
      case Op::kOr:
      case Op::kXor:
        if (bc && bv == 0) return a;
        if (a == b && op == Op::kOr) return a;
        if (a == b && op == Op::kXor) return constant(0);
        if (op == Op::kOr && bc && bv == ~uint64_t{0}) return b;
        break;
      case Op::kSub:
        if (bc && bv == 0) return a;
        if (a == b) return constant(0);
        break;
      case Op::kAnd:
        if (bc && bv == 0) return b;
        if (bc && bv == ~uint64_t{0}) return a;
        if (a == b) return a;
        if (bc && bv == 1 && vals_[a].boolean) return a;
        break;
      case Op::kMul:
        if (bc && bv == 0) return b;
        if (bc && bv == 1) return a;
        break;
      case Op::kMulhu:
      case Op::kMulhs:
        if (bc && bv == 0) return b;
        break;
      case Op::kShl:
      case Op::kShr:
      case Op::kSar:
        if (bc && (bv & 63) == 0) return a;
        if (is_const(a, 0)) return a;
        break;
      case Op::kNot:
        if (is_op(a, Op::kNot)) return vals_[a].a;
        break;
      case Op::kNeg:
        if (is_op(a, Op::kNeg)) return vals_[a].a;
        break;
      case Op::kZext:
        if (imm >= 64 || vals_[a].boolean) return a;
        if (is_op(a, Op::kZext) && vals_[a].imm <= imm) return a;
        if ((is_op(a, Op::kZext) || is_op(a, Op::kSext)) && vals_[a].imm >= imm) {
          return expr(Op::kZext, vals_[a].a, 0, 0, imm);
        }
        break;
      case Op::kSext:
        if (imm >= 64) return a;
        if (is_op(a, Op::kSext) && vals_[a].imm <= imm) return a;
        if ((is_op(a, Op::kZext) || is_op(a, Op::kSext)) && vals_[a].imm >= imm) {
          return expr(Op::kSext, vals_[a].a, 0, 0, imm);
        }
        break;
      case Op::kEq:
      case Op::kUle:
      case Op::kSle:
        if (a == b) return constant(1);
        break;
      case Op::kNe:
      case Op::kUlt:
      case Op::kSlt:
        if (a == b) return constant(0);
        break;
      case Op::kSel:
        if (vals_[c].is_const) return vals_[c].c != 0 ? a : b;
        if (a == b) return a;
        break;
      default:
        break;
    }
    return fresh_expr(op, a, b, c, imm);
  }

  uint32_t fresh_expr(Op op, uint32_t a, uint32_t b, uint32_t c, uint64_t imm) {
    const Key k{static_cast<uint8_t>(op), a, b, c, imm, 0};
    auto it = table_.find(k);
    if (it != table_.end()) return it->second;
    Value v;
    v.op = op;
    v.a = a;
    v.b = b;
    v.cc = c;
    v.imm = imm;
    v.opaque = false;
    switch (op) {
      case Op::kEq:
      case Op::kNe:
      case Op::kUlt:
      case Op::kUle:
      case Op::kSlt:
      case Op::kSle:
      case Op::kPar:
        v.boolean = true;
        break;
      case Op::kAnd:
        v.boolean = vals_[a].boolean || vals_[b].boolean;
        break;
      case Op::kOr:
      case Op::kXor:
        v.boolean = vals_[a].boolean && vals_[b].boolean;
        break;
      case Op::kSel:
        v.boolean = vals_[a].boolean && vals_[b].boolean;
        break;
      case Op::kShr:
        v.boolean = vals_[b].is_const && (vals_[b].c & 63) == 63;
        break;
      default:
        break;
    }
    vals_.push_back(v);
    const auto id = static_cast<uint32_t>(vals_.size() - 1);
    table_.emplace(k, id);
    return id;
  }

  uint32_t load_value(uint32_t addr, uint64_t size) {
    const Key k{254, addr, 0, 0, size, version_};
    auto it = table_.find(k);
    if (it != table_.end()) return it->second;
    const uint32_t id = fresh();
    table_.emplace(k, id);
    return id;
  }

  // The lowest-numbered register holding value v, if any.
  std::optional<Reg> holder(uint32_t v) const {
    for (unsigned r = 0; r < pixel::kNumRegs; ++r) {
      if (reg_[r] == v) return static_cast<Reg>(r);
    }
    return std::nullopt;
  }
  Reg source(Reg r) const { return *holder(reg_[r]); }

  void step(const Insn& insn, Program& out) {
    const auto s = pixel::op_shape(insn.op);
    Insn x = insn;
    if (s.n_reg_sources >= 1) x.a = source(insn.a);
    if (s.n_reg_sources >= 2) x.b = source(insn.b);
    if (s.n_reg_sources >= 3) x.c = source(insn.c);
    if (insn.op == Op::kSt) {
      out.insns.push_back(x);
      ++version_;
      const uint32_t v =
          insn.imm >= 8 ? reg_[insn.b] : expr(Op::kZext, reg_[insn.b], 0, 0, insn.imm * 8);
      table_[Key{254, reg_[insn.a], 0, 0, insn.imm, version_}] = v;
      return;
    }
    const uint32_t v = insn.op == Op::kLd
                           ? load_value(reg_[insn.a], insn.imm)
                           : expr(insn.op, reg_[insn.a], reg_[insn.b], reg_[insn.c], insn.imm);
    if (reg_[insn.d] == v) return;  // already there
    if (vals_[v].is_const) {
      x = Insn{Op::kLi, insn.d, 0, 0, 0, vals_[v].c};
    } else if (auto h = holder(v)) {
      x = Insn{Op::kMov, insn.d, *h, 0, 0, 0};
    }
    out.insns.push_back(x);
    reg_[insn.d] = v;
  }

  std::vector<Value> vals_;
  std::map<Key, uint32_t> table_;
  std::array<uint32_t, pixel::kNumRegs> reg_{};
  uint32_t version_ = 0;
};

bool reads(const Insn& in, unsigned r) {
  const auto s = pixel::op_shape(in.op);
  return (s.n_reg_sources >= 1 && in.a == r) || (s.n_reg_sources >= 2 && in.b == r) ||
         (s.n_reg_sources >= 3 && in.c == r);
}
bool writes(const Insn& in, unsigned r) { return pixel::op_shape(in.op).writes_d && in.d == r; }

// Removes instructions whose result is never read before being overwritten or the end (live
// out: r0..r21). Stores are always kept; dead loads go (memory reads have no effect).
Program dead_code(const Program& in) {
  std::array<bool, pixel::kNumRegs> live{};
  for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) live[r] = true;
  std::vector<bool> keep(in.insns.size(), false);
  for (size_t i = in.insns.size(); i-- > 0;) {
    const Insn& x = in.insns[i];
    const auto s = pixel::op_shape(x.op);
    if (s.writes_d) {
      if (!live[x.d]) continue;
      live[x.d] = false;
    }
    keep[i] = true;
    if (s.n_reg_sources >= 1) live[x.a] = true;
    if (s.n_reg_sources >= 2) live[x.b] = true;
    if (s.n_reg_sources >= 3) live[x.c] = true;
  }
  Program out;
  for (size_t i = 0; i < in.insns.size(); ++i) {
    if (keep[i]) out.insns.push_back(in.insns[i]);
  }
  return out;
}

// `mov d, t` where t was last written by instruction i and d is neither read nor written
// between i and the mov, and t is dead after the mov: make i write d directly (its readers
// in between read d) and drop the mov.
Program coalesce(const Program& in) {
  Program p = in;
  for (size_t j = 0; j < p.insns.size(); ++j) {
    const Insn m = p.insns[j];
    if (m.op != Op::kMov || m.d == m.a) continue;
    const unsigned d = m.d, t = m.a;
    size_t i = j;
    bool ok = false;
    while (i-- > 0) {
      if (writes(p.insns[i], t)) {
        ok = true;
        break;
      }
      if (reads(p.insns[i], d) || writes(p.insns[i], d)) break;
    }
    if (!ok) continue;
    // t dead after j: not read before it is written again or the end.
    bool dead = t >= pixel::kNumStateRegs;
    for (size_t k = j + 1; k < p.insns.size(); ++k) {
      if (reads(p.insns[k], t)) {
        dead = false;
        break;
      }
      if (writes(p.insns[k], t)) {
        dead = true;
        break;
      }
    }
    if (!dead) continue;
    p.insns[i].d = static_cast<Reg>(d);
    for (size_t k = i + 1; k < j; ++k) {
      Insn& x = p.insns[k];
      const auto s = pixel::op_shape(x.op);
      if (s.n_reg_sources >= 1 && x.a == t) x.a = static_cast<Reg>(d);
      if (s.n_reg_sources >= 2 && x.b == t) x.b = static_cast<Reg>(d);
      if (s.n_reg_sources >= 3 && x.c == t) x.c = static_cast<Reg>(d);
    }
    p.insns.erase(p.insns.begin() + static_cast<std::ptrdiff_t>(j));
    --j;
  }
  return p;
}

}  // namespace

DirectResult translate_direct(const DecodedBlock& block) { return Translator(block).translate(); }

pixel::Program optimize(const pixel::Program& program) {
  if (!pixel::validate(program)) return program;  // nothing to reason about
  Program p = program;
  for (int iter = 0; iter < 16; ++iter) {
    Program q = dead_code(coalesce(dead_code(ValueNumbering().run(p))));
    if (q == p) break;
    p = std::move(q);
  }
  return p;
}

}  // namespace glassbox::smt
