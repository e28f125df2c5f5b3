// The x86-64 -> Z3 lifter (lifter.hpp). One Lifter object walks a decoded block instruction by
// instruction and rewrites a SymState; anything outside the supported subset throws the
// internal Unsupported exception, which lift_block() turns into supported = false with the
// mnemonic in the reason.
//
// Sources for every flag rule below: Intel 64 and IA-32 Architectures Software Developer's
// Manual, Vol. 2 (instruction set reference), the "Flags Affected" paragraph of each
// instruction, cited per handler as "SDM 2A/2B/2C <section>".
#include "services/smt_synthesizer/lifter.hpp"

#include <fmt/format.h>

#include <atomic>
#include <exception>
#include <optional>
#include <span>
#include <utility>

namespace glassbox::smt {
namespace {

// Thrown by handlers for anything outside the subset; caught only in lift_block().
struct Unsupported {
  std::string reason;
};

[[noreturn]] void unsupported(std::string reason) { throw Unsupported{std::move(reason)}; }

enum Flag : unsigned { kCF = 0, kPF = 1, kZF = 2, kSF = 3, kOF = 4 };
constexpr const char* kFlagName[] = {"CF", "PF", "ZF", "SF", "OF"};

// Process-wide counter so that undefined-flag constants never collide, even when one
// z3::context lifts several blocks (names: "undef_OF_17").
std::atomic<uint64_t> g_undef_counter{0};

uint64_t mask_of(unsigned w) { return w >= 64 ? ~uint64_t{0} : (uint64_t{1} << w) - 1; }

// The condition codes of jcc/setcc/cmovcc/jrcxz: x86_decode.hpp's table.
using Cond = X86Cond;

class Lifter {
 public:
  Lifter(z3::context& ctx, const DecodedBlock& block, const SymState& in,
         std::span<const uint8_t> bytes)
      : c_(ctx),
        block_(block),
        bytes_(bytes.size() >= block.size_bytes ? bytes : std::span<const uint8_t>{}),
        s_{in.regs, in.mem},
        rip0_(in.regs.size() > pixel::kRip ? in.regs[pixel::kRip] : ctx.bv_val(0, 64)),
        next_(rip0_) {}

  void run() {
    if (s_.regs.size() != pixel::kNumStateRegs) unsupported("input state: wrong register count");
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      if (!s_.regs[r].is_bv() || s_.regs[r].get_sort().bv_size() != 64) {
        unsupported("input state: registers must be 64-bit bit-vectors");
      }
    }
    for (size_t i = 0; i < block_.insns.size(); ++i) {
      const X86Insn& in = block_.insns[i];
      insn_ = &in;
      fallthrough_ = rip0_ + bv(in.address + in.size_bytes - block_.pc, 64);
      next_ = fallthrough_;
      lift(in);
      const bool changed_flow = in.is_control_transfer;
      if (changed_flow && i + 1 != block_.insns.size()) {
        unsupported(fmt::format("{} (control transfer before the end of the block)", in.mnemonic));
      }
    }
    if (block_.insns.empty()) next_ = rip0_;
  }

  LiftResult result() {
    SymState out{s_.regs, s_.mem};
    out.regs[pixel::kRip] = next_;
    return LiftResult{true, "", std::move(out), undef_, touches_memory_, block_.insns.size()};
  }

 private:
  // ---- values -------------------------------------------------------------------------
  z3::expr bv(uint64_t v, unsigned w) { return c_.bv_val(v & mask_of(w), w); }
  static unsigned width(const z3::expr& e) { return e.get_sort().bv_size(); }
  static z3::expr msb(const z3::expr& e) { return e.extract(width(e) - 1, width(e) - 1) == 1; }
  static z3::expr bit(const z3::expr& e, unsigned i) { return e.extract(i, i) == 1; }

  // Even parity of the low 8 bits (PF, SDM Vol. 1 3.4.3.1): true when the count is even.
  static z3::expr parity_even(const z3::expr& r) {
    z3::expr x = r.extract(0, 0);
    for (unsigned i = 1; i < 8; ++i) x = x ^ r.extract(i, i);
    return x == 0;
  }

  [[noreturn]] void bad_operands() {
    unsupported(fmt::format("{} (unexpected operands: {})", insn_->mnemonic, insn_->op_str));
  }
  void need(const X86Insn& in, size_t n) {
    if (in.ops.size() != n) bad_operands();
  }

  // ---- flags --------------------------------------------------------------------------
  // Reads flag f as a Bool. Reading a flag that an earlier instruction of the block left
  // undefined would make other outputs depend on an undefined value: unsupported.
  z3::expr flag(Flag f) {
    if (undef_ & (1u << f)) {
      unsupported(fmt::format("{} (reads {}, left undefined by an earlier instruction)",
                              insn_->mnemonic, kFlagName[f]));
    }
    return s_.regs[pixel::kCf + f].extract(0, 0) == 1;
  }
  z3::expr cf_bit() { return z3::ite(flag(kCF), bv(1, 1), bv(0, 1)); }
  z3::expr flag_bv64(const z3::expr& b) { return z3::ite(b, bv(1, 64), bv(0, 64)); }
  void set_flag(Flag f, const z3::expr& b) {
    s_.regs[pixel::kCf + f] = flag_bv64(b);
    undef_ &= static_cast<uint8_t>(~(1u << f));
  }
  // A fresh unconstrained bit for an SDM-undefined flag, as a Bool.
  z3::expr fresh_undefined(Flag f) {
    const std::string name = fmt::format("undef_{}_{}", kFlagName[f], g_undef_counter++);
    return c_.bv_const(name.c_str(), 1) == 1;
  }
  void set_undefined(Flag f) {
    s_.regs[pixel::kCf + f] = flag_bv64(fresh_undefined(f));
    undef_ |= static_cast<uint8_t>(1u << f);
  }
  // Flag f becomes `when ? value : old`; `maybe_undefined` when `value` may be undefined.
  // The flag stays reported undefined when the old one was and `when` may be false.
  void merge_flag(Flag f, const z3::expr& when, const z3::expr& value, bool maybe_undefined) {
    s_.regs[pixel::kCf + f] = z3::ite(when, flag_bv64(value), s_.regs[pixel::kCf + f]);
    if (maybe_undefined) undef_ |= static_cast<uint8_t>(1u << f);
  }
  void set_szp(const z3::expr& r) {
    set_flag(kSF, msb(r));
    set_flag(kZF, r == bv(0, width(r)));
    set_flag(kPF, parity_even(r));
  }

  z3::expr cond(Cond cc) {
    switch (cc) {
      case Cond::kO:
        return flag(kOF);
      case Cond::kNo:
        return !flag(kOF);
      case Cond::kB:
        return flag(kCF);
      case Cond::kAe:
        return !flag(kCF);
      case Cond::kE:
        return flag(kZF);
      case Cond::kNe:
        return !flag(kZF);
      case Cond::kBe:
        return flag(kCF) || flag(kZF);
      case Cond::kA:
        return !flag(kCF) && !flag(kZF);
      case Cond::kS:
        return flag(kSF);
      case Cond::kNs:
        return !flag(kSF);
      case Cond::kP:
        return flag(kPF);
      case Cond::kNp:
        return !flag(kPF);
      case Cond::kL:
        return flag(kSF) != flag(kOF);
      case Cond::kGe:
        return flag(kSF) == flag(kOF);
      case Cond::kLe:
        return flag(kZF) || flag(kSF) != flag(kOF);
      case Cond::kG:
        return !flag(kZF) && flag(kSF) == flag(kOF);
      case Cond::kRcxz:
        return s_.regs[pixel::kRcx] == bv(0, 64);
      case Cond::kEcxz:
        return s_.regs[pixel::kRcx].extract(31, 0) == bv(0, 32);
      case Cond::kCxz:
        return s_.regs[pixel::kRcx].extract(15, 0) == bv(0, 16);
    }
    unsupported("internal: unknown condition");
  }

  // ---- registers ----------------------------------------------------------------------
  GprSlice slice(x86_reg reg) {
    GprSlice sl;
    if (!gpr_slice(reg, sl)) {
      unsupported(fmt::format("{} (operand register is not a general-purpose register: {})",
                              insn_->mnemonic, insn_->op_str));
    }
    return sl;
  }
  z3::expr read_slice(const GprSlice& sl) {
    const z3::expr& r = s_.regs[sl.gpr];
    if (sl.width == 64) return r;
    return r.extract(sl.shift + sl.width - 1, sl.shift);
  }
  // 32-bit writes zero-extend; 8- and 16-bit writes keep the other bits (SDM Vol. 1 3.4.1.1).
  void write_slice(const GprSlice& sl, const z3::expr& v) {
    if (width(v) != sl.width) bad_operands();
    z3::expr& r = s_.regs[sl.gpr];
    if (sl.width == 64) {
      r = v;
    } else if (sl.width == 32) {
      r = z3::zext(v, 32);
    } else {
      const unsigned top = sl.shift + sl.width;  // first bit above the slice
      z3::expr merged = v;
      if (sl.shift > 0) merged = z3::concat(merged, r.extract(sl.shift - 1, 0));
      if (top < 64) merged = z3::concat(r.extract(63, top), merged);
      r = merged;
    }
  }
  z3::expr read_reg(x86_reg reg) { return read_slice(slice(reg)); }
  void write_reg(x86_reg reg, const z3::expr& v) { write_slice(slice(reg), v); }

  // ---- memory -------------------------------------------------------------------------
  // Effective address (SDM Vol. 1 3.7.5): base + index * scale + disp, rip-relative as
  // r21 + (end of this insn - block pc) + disp, truncated to 32 bits under a 0x67 prefix.
  // fs/gs bases are not part of the state: unsupported unless `ignore_segment` (lea).
  z3::expr address(const MemOperand& m, bool ignore_segment = false) {
    if (!ignore_segment && (m.segment == X86_REG_FS || m.segment == X86_REG_GS)) {
      unsupported(fmt::format("{} (fs/gs segment override)", insn_->mnemonic));
    }
    const X86Insn& in = *insn_;
    if (in.addr_size != 8 && in.addr_size != 4) bad_operands();
    z3::expr a = bv(static_cast<uint64_t>(m.disp), 64);
    if (m.base == X86_REG_RIP || m.base == X86_REG_EIP) {
      a = a + fallthrough_;
    } else if (m.base != X86_REG_INVALID) {
      a = a + addr_reg(m.base);
    }
    if (m.index != X86_REG_INVALID && m.index != X86_REG_RIZ && m.index != X86_REG_EIZ) {
      if (m.scale != 1 && m.scale != 2 && m.scale != 4 && m.scale != 8) bad_operands();
      a = a + addr_reg(m.index) * bv(static_cast<uint64_t>(m.scale), 64);
    }
    if (in.addr_size == 4) a = z3::zext(a.extract(31, 0), 32);
    return a;
  }
  z3::expr addr_reg(x86_reg reg) {
    const GprSlice sl = slice(reg);
    if (sl.width == 64) return read_slice(sl);
    if (sl.width == 32) return z3::zext(read_slice(sl), 32);
    bad_operands();
  }
  z3::expr load(const z3::expr& a, unsigned bytes) {
    touches_memory_ = true;
    return load_bytes(s_.mem, a, bytes);
  }
  void store(const z3::expr& a, const z3::expr& v) {
    touches_memory_ = true;
    s_.mem = store_bytes(s_.mem, a, v, width(v) / 8);
  }

  // ---- operands -----------------------------------------------------------------------
  static bool valid_size(unsigned bytes) {
    return bytes == 1 || bytes == 2 || bytes == 4 || bytes == 8;
  }
  // Bit width of a register or memory operand (immediates have none of their own).
  unsigned op_width(const Operand& op) {
    switch (op.kind) {
      case Operand::Kind::kReg:
        return slice(op.reg).width;
      case Operand::Kind::kMem:
        if (!valid_size(op.size_bytes)) bad_operands();
        return op.size_bytes * 8u;
      case Operand::Kind::kImm:
        break;
    }
    bad_operands();
  }
  z3::expr read(const Operand& op, unsigned w) {
    switch (op.kind) {
      case Operand::Kind::kReg: {
        z3::expr v = read_reg(op.reg);
        if (width(v) != w) bad_operands();
        return v;
      }
      case Operand::Kind::kImm:
        return bv(static_cast<uint64_t>(op.imm), w);
      case Operand::Kind::kMem:
        if (!valid_size(w / 8) || w % 8 != 0) bad_operands();
        return load(address(op.mem), w / 8);
    }
    bad_operands();
  }
  void write(const Operand& op, const z3::expr& v) {
    switch (op.kind) {
      case Operand::Kind::kReg:
        write_reg(op.reg, v);
        return;
      case Operand::Kind::kMem:
        store(address(op.mem), v);
        return;
      case Operand::Kind::kImm:
        break;
    }
    bad_operands();
  }

  // ---- stack --------------------------------------------------------------------------
  void push(const z3::expr& v) {
    const unsigned n = width(v) / 8;
    s_.regs[pixel::kRsp] = s_.regs[pixel::kRsp] - bv(n, 64);
    store(s_.regs[pixel::kRsp], v);
  }

  // ---- dispatch -----------------------------------------------------------------------
  void check_prefixes(const X86Insn& in) {
    if (in.prefix[0] == 0xf0) unsupported(fmt::format("{} (lock prefix)", in.mnemonic));
    if (in.prefix[0] == 0xf2 || in.prefix[0] == 0xf3) {
      // bnd (f2) on branches and rep on ret/nop are ignored by the CPU; string ops are
      // unsupported instructions anyway.
      const bool ok = in.is_control_transfer || in.id == X86_INS_NOP || in.id == X86_INS_PAUSE;
      if (!ok) unsupported(fmt::format("{} (rep/repne prefix)", in.mnemonic));
    }
  }

  void lift(const X86Insn& in) {
    check_prefixes(in);
    rex_byte(in);  // with the bytes: rejects a misplaced REX prefix
    if (const auto cc = conditional_of(in.id)) {
      switch (cc->family) {
        case X86CondFamily::kSetcc:
          return lift_setcc(in, cc->cond);
        case X86CondFamily::kCmovcc:
          return lift_cmovcc(in, cc->cond);
        case X86CondFamily::kJcc:
          return lift_jcc(in, cc->cond);
      }
    }
    switch (in.id) {
      case X86_INS_NOP:
      case X86_INS_ENDBR64:
      case X86_INS_ENDBR32:
      case X86_INS_PAUSE:
        return;  // hint nops: no architectural effect (their memory operand is not accessed)
      case X86_INS_MOV:
      case X86_INS_MOVABS:
        return lift_mov(in);
      case X86_INS_MOVZX:
      case X86_INS_MOVSX:
        return lift_movx(in);
      case X86_INS_MOVSXD:
        return lift_movsxd(in);
      case X86_INS_LEA:
        return lift_lea(in);
      case X86_INS_ADD:
      case X86_INS_ADC:
      case X86_INS_SUB:
      case X86_INS_SBB:
      case X86_INS_CMP:
      case X86_INS_AND:
      case X86_INS_OR:
      case X86_INS_XOR:
      case X86_INS_TEST:
        return lift_alu(in);
      case X86_INS_INC:
      case X86_INS_DEC:
      case X86_INS_NEG:
      case X86_INS_NOT:
        return lift_unary(in);
      case X86_INS_SHL:
      case X86_INS_SAL:
      case X86_INS_SHR:
      case X86_INS_SAR:
      case X86_INS_ROL:
      case X86_INS_ROR:
        return lift_shift(in);
      case X86_INS_IMUL:
      case X86_INS_MUL:
        return lift_mul(in);
      case X86_INS_BT:
      case X86_INS_BTS:
      case X86_INS_BTR:
      case X86_INS_BTC:
        return lift_bt(in);
      case X86_INS_XCHG:
        return lift_xchg(in);
      case X86_INS_PUSH:
        return lift_push(in);
      case X86_INS_POP:
        return lift_pop(in);
      case X86_INS_CALL:
        return lift_call(in);
      case X86_INS_RET:
        return lift_ret(in);
      case X86_INS_JMP:
        return lift_jmp(in);
      case X86_INS_CBW:
      case X86_INS_CWDE:
      case X86_INS_CDQE:
      case X86_INS_CWD:
      case X86_INS_CDQ:
      case X86_INS_CQO:
        return lift_convert(in);
      case X86_INS_BSWAP:
        return lift_bswap(in);
      case X86_INS_LEAVE:
        return lift_leave(in);
      case X86_INS_CLC:
        need(in, 0);
        return set_flag(kCF, c_.bool_val(false));
      case X86_INS_STC:
        need(in, 0);
        return set_flag(kCF, c_.bool_val(true));
      case X86_INS_CMC:
        need(in, 0);
        return set_flag(kCF, !flag(kCF));
      case X86_INS_PUSHF:
      case X86_INS_PUSHFD:
      case X86_INS_PUSHFQ:
      case X86_INS_LAHF:
        unsupported(fmt::format("{} (reads AF)", in.mnemonic));
      default:
        unsupported(fmt::format("unsupported instruction: {}", in.mnemonic));
    }
  }

  // MOV/MOVABS (SDM 2B 4.3 "MOV"): no flags.
  void lift_mov(const X86Insn& in) {
    need(in, 2);
    const unsigned w = op_width(in.ops[0]);
    write(in.ops[0], read(in.ops[1], w));
  }

  // MOVZX/MOVSX/MOVSXD (SDM 2B 4.3): zero/sign extension, no flags.
  void lift_movx(const X86Insn& in) {
    need(in, 2);
    const unsigned dw = op_width(in.ops[0]);
    const unsigned sw = op_width(in.ops[1]);
    z3::expr v = read(in.ops[1], sw);
    if (sw < dw) {
      v = in.id == X86_INS_MOVZX ? z3::zext(v, dw - sw) : z3::sext(v, dw - sw);
    } else if (sw > dw) {
      v = v.extract(dw - 1, 0);
    }
    write(in.ops[0], v);
  }

  // The REX byte of `in` (0 when none), from the raw bytes; std::nullopt without them. A REX
  // byte must immediately precede the opcode (SDM Vol. 2 2.2.1: other placements are
  // ignored); Capstone ignores a misplaced one but Unicorn/QEMU honour it, so a REX byte
  // followed by another prefix is unsupported rather than guessed.
  std::optional<uint8_t> rex_byte(const X86Insn& in) {
    if (bytes_.empty()) return std::nullopt;
    const uint64_t begin = in.address - block_.pc;
    if (begin >= bytes_.size() || in.size_bytes > bytes_.size() - begin) bad_operands();
    uint8_t rex = 0;
    for (uint64_t i = begin; i < begin + in.size_bytes; ++i) {
      const uint8_t b = bytes_[i];
      const bool legacy = b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e || b == 0x64 ||
                          b == 0x65 || b == 0x66 || b == 0x67 || b == 0xf0 || b == 0xf2 ||
                          b == 0xf3;
      const bool is_rex = (b & 0xf0) == 0x40;
      if (!legacy && !is_rex) return rex;
      if (rex != 0) {
        unsupported(fmt::format("{} (REX prefix not immediately before the opcode)", in.mnemonic));
      }
      if (is_rex) rex = b;
    }
    bad_operands();
  }

  // MOVSXD (SDM 2B 4.3 "MOVSX/MOVSXD"): with REX.W, sign-extends r/m32 into r64. Without it
  // (rare), it is a plain 32-bit (or, with 0x66, 16-bit) move, which Capstone 4 still prints
  // as "movsxd r64"; only the raw bytes tell them apart (lift_block's `bytes`). Without
  // the bytes, REX.W is assumed (every compiler's encoding).
  void lift_movsxd(const X86Insn& in) {
    need(in, 2);
    const std::optional<uint8_t> rex = rex_byte(in);
    const bool w64 = !rex || (*rex & 0x08) != 0;
    if (w64) return lift_movx(in);
    if (in.ops[0].kind != Operand::Kind::kReg) bad_operands();
    GprSlice dst = slice(in.ops[0].reg);
    dst.width = in.prefix[2] == 0x66 ? 16 : 32;
    dst.shift = 0;
    const unsigned sw = op_width(in.ops[1]);
    if (sw < dst.width) bad_operands();
    write_slice(dst, read(in.ops[1], sw).extract(dst.width - 1, 0));
  }

  // LEA (SDM 2A 3.3 "LEA"): the effective address, truncated to the destination; no memory
  // access, no flags; segment overrides do not apply.
  void lift_lea(const X86Insn& in) {
    need(in, 2);
    if (in.ops[0].kind != Operand::Kind::kReg || in.ops[1].kind != Operand::Kind::kMem) {
      bad_operands();
    }
    const unsigned dw = op_width(in.ops[0]);
    z3::expr a = address(in.ops[1].mem, /*ignore_segment=*/true);
    write(in.ops[0], dw == 64 ? a : a.extract(dw - 1, 0));
  }

  // ADD/ADC/SUB/SBB/CMP (SDM 2A 3.3): OF, SF, ZF, AF, CF, PF set according to the result.
  // AND/OR/XOR/TEST (SDM 2A 3.3, 2B 4.3): OF = CF = 0; SF, ZF, PF by the result; AF undefined
  // (not modelled).
  void lift_alu(const X86Insn& in) {
    need(in, 2);
    const unsigned w = op_width(in.ops[0]);
    const z3::expr a = read(in.ops[0], w);
    const z3::expr b = read(in.ops[1], w);
    z3::expr r = a;
    switch (in.id) {
      case X86_INS_ADD:
      case X86_INS_ADC: {
        const z3::expr cin = in.id == X86_INS_ADC ? cf_bit() : bv(0, 1);
        r = a + b + z3::zext(cin, w - 1);
        const z3::expr wide = z3::zext(a, 1) + z3::zext(b, 1) + z3::zext(cin, w);
        set_flag(kCF, bit(wide, w));
        set_flag(kOF, msb((a ^ r) & (b ^ r)));
        break;
      }
      case X86_INS_SUB:
      case X86_INS_SBB:
      case X86_INS_CMP: {
        const z3::expr cin = in.id == X86_INS_SBB ? cf_bit() : bv(0, 1);
        r = a - b - z3::zext(cin, w - 1);
        const z3::expr wide = z3::zext(a, 1) - z3::zext(b, 1) - z3::zext(cin, w);
        set_flag(kCF, bit(wide, w));
        set_flag(kOF, msb((a ^ b) & (a ^ r)));
        break;
      }
      case X86_INS_AND:
      case X86_INS_TEST:
        r = a & b;
        break;
      case X86_INS_OR:
        r = a | b;
        break;
      default:  // X86_INS_XOR
        r = a ^ b;
        break;
    }
    if (in.id == X86_INS_AND || in.id == X86_INS_TEST || in.id == X86_INS_OR ||
        in.id == X86_INS_XOR) {
      set_flag(kCF, c_.bool_val(false));
      set_flag(kOF, c_.bool_val(false));
    }
    set_szp(r);
    if (in.id != X86_INS_CMP && in.id != X86_INS_TEST) write(in.ops[0], r);
  }

  // INC/DEC (SDM 2A 3.3 "INC", "DEC"): CF unaffected; OF, SF, ZF, AF, PF by the result.
  // NEG (SDM 2B 4.3): CF = (source != 0); OF, SF, ZF, AF, PF by the result.
  // NOT (SDM 2B 4.3): no flags.
  void lift_unary(const X86Insn& in) {
    need(in, 1);
    const unsigned w = op_width(in.ops[0]);
    const z3::expr a = read(in.ops[0], w);
    const z3::expr min = bv(uint64_t{1} << (w - 1), w);
    z3::expr r = a;
    switch (in.id) {
      case X86_INS_INC:
        r = a + bv(1, w);
        set_flag(kOF, r == min);
        set_szp(r);
        break;
      case X86_INS_DEC:
        r = a - bv(1, w);
        set_flag(kOF, a == min);
        set_szp(r);
        break;
      case X86_INS_NEG:
        r = bv(0, w) - a;
        set_flag(kCF, a != bv(0, w));
        set_flag(kOF, a == min);
        set_szp(r);
        break;
      default:  // X86_INS_NOT
        r = ~a;
        break;
    }
    write(in.ops[0], r);
  }

  // SAL/SHL/SHR/SAR (SDM 2B 4.3 "SAL/SAR/SHL/SHR") and ROL/ROR (SDM 2B 4.3 "RCL/RCR/ROL/
  // ROR"). The count is masked to 5 bits (6 with a 64-bit operand); a masked count of 0
  // changes no flag. Shifts: CF = last bit shifted out (undefined for SHL/SHR when the count
  // is >= the operand width, possible for 8/16-bit operands), OF defined only for a count of
  // 1 (SHL: MSB(result) ^ CF; SHR: MSB(original); SAR: 0), SF/ZF/PF by the result.
  // Rotates: only CF (ROL: LSB(result); ROR: MSB(result)) and OF (count 1: ROL MSB ^ CF,
  // ROR the two top bits' xor) change. The destination is always written (a 32-bit
  // register is zero-extended even for a count of 0).
  void lift_shift(const X86Insn& in) {
    if (in.ops.empty() || in.ops.size() > 2) bad_operands();
    const unsigned w = op_width(in.ops[0]);
    const uint64_t cmask = w == 64 ? 63 : 31;
    const z3::expr a = read(in.ops[0], w);
    std::optional<uint64_t> fixed;
    z3::expr cnt = bv(1, w);
    if (in.ops.size() == 1) {
      fixed = 1;
    } else if (in.ops[1].kind == Operand::Kind::kImm) {
      fixed = static_cast<uint64_t>(in.ops[1].imm) & cmask;
      cnt = bv(*fixed, w);
    } else if (in.ops[1].kind == Operand::Kind::kReg) {
      const z3::expr cl = read(in.ops[1], 8);
      cnt = (w == 8 ? cl : z3::zext(cl, w - 8)) & bv(cmask, w);
    } else {
      bad_operands();
    }
    const bool rotate = in.id == X86_INS_ROL || in.id == X86_INS_ROR;
    z3::expr r = a, cf = c_.bool_val(false), of = c_.bool_val(false);
    const z3::expr cnt1 = z3::zext(cnt, 1);  // in w + 1 bits
    switch (in.id) {
      case X86_INS_SHL:
      case X86_INS_SAL:
        r = z3::shl(a, cnt);
        cf = bit(z3::shl(z3::zext(a, 1), cnt1), w);
        of = msb(r) != cf;
        break;
      case X86_INS_SHR:
        r = z3::lshr(a, cnt);
        cf = bit(z3::lshr(z3::concat(a, bv(0, 1)), cnt1), 0);
        of = msb(a);
        break;
      case X86_INS_SAR:
        r = z3::ashr(a, cnt);
        cf = bit(z3::ashr(z3::concat(a, bv(0, 1)), cnt1), 0);
        of = c_.bool_val(false);
        break;
      case X86_INS_ROL: {
        const z3::expr k = cnt & bv(w - 1, w);
        r = z3::shl(a, k) | z3::lshr(a, (bv(w, w) - k) & bv(w - 1, w));
        cf = bit(r, 0);
        of = msb(r) != cf;
        break;
      }
      default: {  // X86_INS_ROR
        const z3::expr k = cnt & bv(w - 1, w);
        r = z3::lshr(a, k) | z3::shl(a, (bv(w, w) - k) & bv(w - 1, w));
        cf = msb(r);
        of = msb(r) != bit(r, w - 2);
        break;
      }
    }
    // SHL/SHR with a count >= width leave CF undefined (only reachable for w < 32).
    const bool cf_may_overflow = !rotate && in.id != X86_INS_SAR && w < 32;
    if (fixed) {
      r = r.simplify();
      write(in.ops[0], r);
      if (*fixed == 0) return;
      if (cf_may_overflow && *fixed >= w) {
        set_undefined(kCF);
      } else {
        set_flag(kCF, cf.simplify());
      }
      if (*fixed == 1) {
        set_flag(kOF, of.simplify());
      } else {
        set_undefined(kOF);
      }
      if (!rotate) set_szp(r);
      return;
    }
    write(in.ops[0], r);
    const z3::expr nz = cnt != bv(0, w);
    if (cf_may_overflow) {
      merge_flag(kCF, nz, z3::ite(z3::uge(cnt, bv(w, w)), fresh_undefined(kCF), cf), true);
    } else {
      merge_flag(kCF, nz, cf, false);
    }
    merge_flag(kOF, nz, z3::ite(cnt == bv(1, w), of, fresh_undefined(kOF)), true);
    if (!rotate) {
      merge_flag(kSF, nz, msb(r), false);
      merge_flag(kZF, nz, r == bv(0, w), false);
      merge_flag(kPF, nz, parity_even(r), false);
    }
  }

  // MUL (SDM 2B 4.3 "MUL"), IMUL (SDM 2A 3.3 "IMUL"): CF = OF = the product does not fit the
  // destination (MUL: upper half != 0; IMUL: product != sign-extended truncation); SF, ZF,
  // AF, PF undefined. One-operand forms write AX (8-bit) or rDX:rAX.
  void lift_mul(const X86Insn& in) {
    const bool is_signed = in.id == X86_INS_IMUL;
    if (in.ops.size() == 1) {
      const unsigned w = op_width(in.ops[0]);
      const z3::expr b = read(in.ops[0], w);
      const z3::expr a = read_slice(GprSlice{pixel::kRax, 0, static_cast<uint8_t>(w)});
      const z3::expr p =
          is_signed ? z3::sext(a, w) * z3::sext(b, w) : z3::zext(a, w) * z3::zext(b, w);
      const z3::expr lo = p.extract(w - 1, 0);
      const z3::expr hi = p.extract(2 * w - 1, w);
      if (w == 8) {
        write_slice(GprSlice{pixel::kRax, 0, 16}, p);
      } else {
        write_slice(GprSlice{pixel::kRax, 0, static_cast<uint8_t>(w)}, lo);
        write_slice(GprSlice{pixel::kRdx, 0, static_cast<uint8_t>(w)}, hi);
      }
      const z3::expr overflow = is_signed ? p != z3::sext(lo, w) : hi != bv(0, w);
      set_flag(kCF, overflow);
      set_flag(kOF, overflow);
    } else {
      if (!is_signed || in.ops.size() > 3) bad_operands();
      const unsigned w = op_width(in.ops[0]);
      const z3::expr a = read(in.ops.size() == 2 ? in.ops[0] : in.ops[1], w);
      const z3::expr b = read(in.ops.size() == 2 ? in.ops[1] : in.ops[2], w);
      const z3::expr p = z3::sext(a, w) * z3::sext(b, w);
      const z3::expr lo = p.extract(w - 1, 0);
      if (in.ops[0].kind != Operand::Kind::kReg) bad_operands();
      write(in.ops[0], lo);
      const z3::expr overflow = p != z3::sext(lo, w);
      set_flag(kCF, overflow);
      set_flag(kOF, overflow);
    }
    set_undefined(kSF);
    set_undefined(kZF);
    set_undefined(kPF);
  }

  // SETcc (SDM 2B 4.3): byte = condition; no flags.
  void lift_setcc(const X86Insn& in, Cond cc) {
    need(in, 1);
    if (op_width(in.ops[0]) != 8) bad_operands();
    write(in.ops[0], z3::ite(cond(cc), bv(1, 8), bv(0, 8)));
  }

  // CMOVcc (SDM 2A 3.3): the source is read whatever the condition; a 32-bit destination is
  // zero-extended even when the condition is false. No flags.
  void lift_cmovcc(const X86Insn& in, Cond cc) {
    need(in, 2);
    if (in.ops[0].kind != Operand::Kind::kReg) bad_operands();
    const unsigned w = op_width(in.ops[0]);
    const z3::expr src = read(in.ops[1], w);
    const z3::expr old = read(in.ops[0], w);
    write(in.ops[0], z3::ite(cond(cc), src, old));
  }

  // A relative branch target: Capstone gives it absolute for pc = block.pc.
  z3::expr rel_target(const Operand& op) {
    return rip0_ + bv(static_cast<uint64_t>(op.imm) - block_.pc, 64);
  }
  // The target of jmp/call: relative immediate, or the 64-bit register/memory value.
  z3::expr branch_target(const X86Insn& in) {
    need(in, 1);
    if (in.ops[0].kind == Operand::Kind::kImm) return rel_target(in.ops[0]);
    if (op_width(in.ops[0]) != 64) bad_operands();
    return read(in.ops[0], 64);
  }

  // Jcc/JrCXZ (SDM 2A 3.3 "Jcc"): no flags.
  void lift_jcc(const X86Insn& in, Cond cc) {
    need(in, 1);
    if (in.ops[0].kind != Operand::Kind::kImm) bad_operands();
    next_ = z3::ite(cond(cc), rel_target(in.ops[0]), fallthrough_);
  }

  // JMP (SDM 2A 3.3): no flags.
  void lift_jmp(const X86Insn& in) { next_ = branch_target(in); }

  // CALL (SDM 2A 3.3): the target is read before the return address is pushed.
  void lift_call(const X86Insn& in) {
    const z3::expr target = branch_target(in);
    push(fallthrough_);
    next_ = target;
  }

  // RET near (SDM 2B 4.3): rip = pop; rsp += imm16.
  void lift_ret(const X86Insn& in) {
    uint64_t extra = 0;
    if (in.ops.size() == 1 && in.ops[0].kind == Operand::Kind::kImm) {
      extra = static_cast<uint64_t>(in.ops[0].imm) & 0xffff;
    } else if (!in.ops.empty()) {
      bad_operands();
    }
    next_ = load(s_.regs[pixel::kRsp], 8);
    s_.regs[pixel::kRsp] = s_.regs[pixel::kRsp] + bv(8 + extra, 64);
  }

  // PUSH (SDM 2B 4.3): 8 bytes, or 2 with a 16-bit operand; the value is read before rsp
  // changes (push rsp pushes the old value). Immediates are sign-extended.
  void lift_push(const X86Insn& in) {
    need(in, 1);
    const Operand& op = in.ops[0];
    unsigned w;
    if (op.kind == Operand::Kind::kImm) {
      w = in.prefix[2] == 0x66 ? 16 : 64;
    } else {
      w = op_width(op);
    }
    if (w != 64 && w != 16) bad_operands();
    push(read(op, w));
  }

  // POP (SDM 2B 4.3): rsp is incremented before the destination is written (pop rsp loads
  // the popped value; a memory destination's address uses the incremented rsp).
  void lift_pop(const X86Insn& in) {
    need(in, 1);
    const unsigned w = op_width(in.ops[0]);
    if (w != 64 && w != 16) bad_operands();
    const z3::expr v = load(s_.regs[pixel::kRsp], w / 8);
    s_.regs[pixel::kRsp] = s_.regs[pixel::kRsp] + bv(w / 8, 64);
    write(in.ops[0], v);
  }

  // LEAVE (SDM 2A 3.3 "LEAVE"): rsp = rbp, then rbp = pop (64-bit operand size only).
  void lift_leave(const X86Insn& in) {
    if (!in.ops.empty() || in.prefix[2] == 0x66) bad_operands();
    s_.regs[pixel::kRsp] = s_.regs[pixel::kRbp];
    const z3::expr v = load(s_.regs[pixel::kRsp], 8);
    s_.regs[pixel::kRsp] = s_.regs[pixel::kRsp] + bv(8, 64);
    s_.regs[pixel::kRbp] = v;
  }

  // XCHG (SDM 2C 5.1 "XCHG"): both operands read, then both written; no flags.
  void lift_xchg(const X86Insn& in) {
    need(in, 2);
    const unsigned w = op_width(in.ops[0]);
    const z3::expr a = read(in.ops[0], w);
    const z3::expr b = read(in.ops[1], w);
    write(in.ops[0], b);
    write(in.ops[1], a);
  }

  // BT/BTS/BTR/BTC (SDM 2A 3.3): CF = the selected bit; ZF unaffected; OF, SF, AF, PF
  // undefined. The bit offset is taken modulo the operand width; a register offset into a
  // memory bit string (which may address outside the operand) is unsupported.
  void lift_bt(const X86Insn& in) {
    need(in, 2);
    const unsigned w = op_width(in.ops[0]);
    z3::expr idx = bv(0, w);
    if (in.ops[1].kind == Operand::Kind::kImm) {
      idx = bv(static_cast<uint64_t>(in.ops[1].imm) & (w - 1), w);
    } else if (in.ops[0].kind == Operand::Kind::kMem) {
      unsupported(fmt::format("{} (register bit offset into memory)", in.mnemonic));
    } else {
      idx = read(in.ops[1], w) & bv(w - 1, w);
    }
    const z3::expr a = read(in.ops[0], w);
    const z3::expr m = z3::shl(bv(1, w), idx);
    set_flag(kCF, (a & m) != bv(0, w));
    set_undefined(kOF);
    set_undefined(kSF);
    set_undefined(kPF);
    switch (in.id) {
      case X86_INS_BTS:
        write(in.ops[0], a | m);
        break;
      case X86_INS_BTR:
        write(in.ops[0], a & ~m);
        break;
      case X86_INS_BTC:
        write(in.ops[0], a ^ m);
        break;
      default:
        break;
    }
  }

  // CBW/CWDE/CDQE and CWD/CDQ/CQO (SDM 2A 3.3): sign extension of rAX; no flags.
  void lift_convert(const X86Insn& in) {
    need(in, 0);
    const z3::expr rax = s_.regs[pixel::kRax];
    switch (in.id) {
      case X86_INS_CBW:
        write_slice({pixel::kRax, 0, 16}, z3::sext(rax.extract(7, 0), 8));
        break;
      case X86_INS_CWDE:
        write_slice({pixel::kRax, 0, 32}, z3::sext(rax.extract(15, 0), 16));
        break;
      case X86_INS_CDQE:
        write_slice({pixel::kRax, 0, 64}, z3::sext(rax.extract(31, 0), 32));
        break;
      case X86_INS_CWD:
        write_slice({pixel::kRdx, 0, 16}, z3::sext(rax.extract(15, 15), 15));
        break;
      case X86_INS_CDQ:
        write_slice({pixel::kRdx, 0, 32}, z3::sext(rax.extract(31, 31), 31));
        break;
      default:  // X86_INS_CQO
        write_slice({pixel::kRdx, 0, 64}, z3::sext(rax.extract(63, 63), 63));
        break;
    }
  }

  // BSWAP (SDM 2A 3.3): 32/64-bit byte reversal (16-bit is undefined: unsupported).
  void lift_bswap(const X86Insn& in) {
    need(in, 1);
    const unsigned w = op_width(in.ops[0]);
    if ((w != 32 && w != 64) || in.ops[0].kind != Operand::Kind::kReg) bad_operands();
    const z3::expr a = read(in.ops[0], w);
    z3::expr r = a.extract(7, 0);
    for (unsigned i = 1; i < w / 8; ++i) r = z3::concat(r, a.extract(8 * i + 7, 8 * i));
    write(in.ops[0], r);
  }

  z3::context& c_;
  const DecodedBlock& block_;
  std::span<const uint8_t> bytes_;  // the block's bytes when the caller gave them, else empty
  SymState s_;
  z3::expr rip0_;                  // r21 on entry: the block's pc
  z3::expr next_;                  // r21 after the current instruction
  z3::expr fallthrough_{c_};       // r21 + end offset of the current instruction
  const X86Insn* insn_ = nullptr;  // the instruction being lifted (for reasons)
  uint8_t undef_ = 0;
  bool touches_memory_ = false;
};

}  // namespace

LiftResult lift_block(z3::context& ctx, const DecodedBlock& block, const SymState& in,
                      std::span<const uint8_t> bytes) {
  std::string reason;
  try {
    Lifter lifter(ctx, block, in, bytes);
    lifter.run();
    return lifter.result();
  } catch (const Unsupported& u) {
    reason = u.reason;
  } catch (const z3::exception& e) {
    reason = fmt::format("internal: z3: {}", e.msg());
  } catch (const std::exception& e) {
    reason = fmt::format("internal: {}", e.what());
  }
  return LiftResult{false, std::move(reason), SymState{in.regs, in.mem}, 0,
                    false, block.insns.size()};
}

}  // namespace glassbox::smt
