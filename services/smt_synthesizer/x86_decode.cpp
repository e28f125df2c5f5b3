#include "services/smt_synthesizer/x86_decode.hpp"

#include <fmt/format.h>

namespace glassbox::smt {
namespace {

struct RegEntry {
  x86_reg reg;
  GprSlice slice;
};

// Every general-purpose register name Capstone can give, in Pixel numbering.
constexpr RegEntry kGprs[] = {
    {X86_REG_RAX, {0, 0, 64}},   {X86_REG_EAX, {0, 0, 32}},   {X86_REG_AX, {0, 0, 16}},
    {X86_REG_AL, {0, 0, 8}},     {X86_REG_AH, {0, 8, 8}},     {X86_REG_RCX, {1, 0, 64}},
    {X86_REG_ECX, {1, 0, 32}},   {X86_REG_CX, {1, 0, 16}},    {X86_REG_CL, {1, 0, 8}},
    {X86_REG_CH, {1, 8, 8}},     {X86_REG_RDX, {2, 0, 64}},   {X86_REG_EDX, {2, 0, 32}},
    {X86_REG_DX, {2, 0, 16}},    {X86_REG_DL, {2, 0, 8}},     {X86_REG_DH, {2, 8, 8}},
    {X86_REG_RBX, {3, 0, 64}},   {X86_REG_EBX, {3, 0, 32}},   {X86_REG_BX, {3, 0, 16}},
    {X86_REG_BL, {3, 0, 8}},     {X86_REG_BH, {3, 8, 8}},     {X86_REG_RSP, {4, 0, 64}},
    {X86_REG_ESP, {4, 0, 32}},   {X86_REG_SP, {4, 0, 16}},    {X86_REG_SPL, {4, 0, 8}},
    {X86_REG_RBP, {5, 0, 64}},   {X86_REG_EBP, {5, 0, 32}},   {X86_REG_BP, {5, 0, 16}},
    {X86_REG_BPL, {5, 0, 8}},    {X86_REG_RSI, {6, 0, 64}},   {X86_REG_ESI, {6, 0, 32}},
    {X86_REG_SI, {6, 0, 16}},    {X86_REG_SIL, {6, 0, 8}},    {X86_REG_RDI, {7, 0, 64}},
    {X86_REG_EDI, {7, 0, 32}},   {X86_REG_DI, {7, 0, 16}},    {X86_REG_DIL, {7, 0, 8}},
    {X86_REG_R8, {8, 0, 64}},    {X86_REG_R8D, {8, 0, 32}},   {X86_REG_R8W, {8, 0, 16}},
    {X86_REG_R8B, {8, 0, 8}},    {X86_REG_R9, {9, 0, 64}},    {X86_REG_R9D, {9, 0, 32}},
    {X86_REG_R9W, {9, 0, 16}},   {X86_REG_R9B, {9, 0, 8}},    {X86_REG_R10, {10, 0, 64}},
    {X86_REG_R10D, {10, 0, 32}}, {X86_REG_R10W, {10, 0, 16}}, {X86_REG_R10B, {10, 0, 8}},
    {X86_REG_R11, {11, 0, 64}},  {X86_REG_R11D, {11, 0, 32}}, {X86_REG_R11W, {11, 0, 16}},
    {X86_REG_R11B, {11, 0, 8}},  {X86_REG_R12, {12, 0, 64}},  {X86_REG_R12D, {12, 0, 32}},
    {X86_REG_R12W, {12, 0, 16}}, {X86_REG_R12B, {12, 0, 8}},  {X86_REG_R13, {13, 0, 64}},
    {X86_REG_R13D, {13, 0, 32}}, {X86_REG_R13W, {13, 0, 16}}, {X86_REG_R13B, {13, 0, 8}},
    {X86_REG_R14, {14, 0, 64}},  {X86_REG_R14D, {14, 0, 32}}, {X86_REG_R14W, {14, 0, 16}},
    {X86_REG_R14B, {14, 0, 8}},  {X86_REG_R15, {15, 0, 64}},  {X86_REG_R15D, {15, 0, 32}},
    {X86_REG_R15W, {15, 0, 16}}, {X86_REG_R15B, {15, 0, 8}},
};

// Capstone handle, closed on scope exit.
struct Handle {
  csh h = 0;
  bool ok = false;
  Handle() {
    ok = cs_open(CS_ARCH_X86, CS_MODE_64, &h) == CS_ERR_OK &&
         cs_option(h, CS_OPT_DETAIL, CS_OPT_ON) == CS_ERR_OK;
  }
  ~Handle() {
    if (h) cs_close(&h);
  }
};

bool in_group(const cs_detail* d, uint8_t group) {
  for (uint8_t i = 0; i < d->groups_count; ++i) {
    if (d->groups[i] == group) return true;
  }
  return false;
}

bool ends_block(const cs_insn& in) {
  const cs_detail* d = in.detail;
  if (in_group(d, X86_GRP_JUMP) || in_group(d, X86_GRP_CALL) || in_group(d, X86_GRP_RET) ||
      in_group(d, X86_GRP_INT) || in_group(d, X86_GRP_IRET)) {
    return true;
  }
  switch (in.id) {
    case X86_INS_SYSCALL:
    case X86_INS_SYSENTER:
    case X86_INS_SYSEXIT:
    case X86_INS_SYSRET:
    case X86_INS_HLT:
    case X86_INS_UD2:
    case X86_INS_LJMP:
    case X86_INS_LCALL:
      return true;
    default:
      return false;
  }
}

bool legacy_prefix(uint8_t b) {
  switch (b) {
    case 0x66:
    case 0x67:
    case 0xf0:
    case 0xf2:
    case 0xf3:
    case 0x2e:
    case 0x36:
    case 0x3e:
    case 0x26:
    case 0x64:
    case 0x65:
      return true;
    default:
      return false;
  }
}

// Encodings Capstone 4.0.2 decodes differently from a CPU (found by the lifter's differential
// test against Unicorn): a REX byte followed by a legacy prefix (a CPU ignores that REX;
// Capstone applies it) and opcode 0x63 without REX.W (movsxd only with REX.W; a CPU moves 32
// bits). Empty when the bytes mean what Capstone says.
std::string capstone_disagrees(const cs_insn& in) {
  bool rex_pending = false;
  uint8_t rex = 0;
  for (uint16_t i = 0; i < in.size; ++i) {
    const uint8_t b = in.bytes[i];
    if (legacy_prefix(b)) {
      if (rex_pending) return "a REX prefix before a legacy prefix";
      continue;
    }
    if ((b & 0xf0) == 0x40) {
      rex_pending = true;
      rex = b;
      continue;
    }
    if (b == 0x63 && in.id == X86_INS_MOVSXD && !(rex_pending && (rex & 0x08))) {
      return "opcode 63 without REX.W (a 32-bit move, not movsxd)";
    }
    break;
  }
  return {};
}

std::string first_bytes(std::span<const uint8_t> bytes) {
  return to_hex(bytes.subspan(0, std::min<size_t>(bytes.size(), 8)));
}

}  // namespace

bool gpr_slice(x86_reg reg, GprSlice& out) noexcept {
  for (const auto& e : kGprs) {
    if (e.reg == reg) {
      out = e.slice;
      return true;
    }
  }
  return false;
}

Result<DecodedBlock> decode_block(std::span<const uint8_t> bytes, uint64_t pc, size_t max_insns) {
  if (bytes.empty()) return fail(Errc::kInvalidArgument, "x86 block: no bytes");
  Handle cs;
  if (!cs.ok) return fail(Errc::kInternal, "capstone: cannot open an x86-64 handle");
  cs_insn* insn = cs_malloc(cs.h);
  if (!insn) return fail(Errc::kInternal, "capstone: out of memory");
  DecodedBlock block;
  block.pc = pc;
  const uint8_t* code = bytes.data();
  size_t left = bytes.size();
  uint64_t address = pc;
  while (left > 0 && block.insns.size() < max_insns) {
    const uint8_t* at = code;
    if (!cs_disasm_iter(cs.h, &code, &left, &address, insn)) {
      block.undecodable =
          fmt::format("undecodable bytes at offset {}: {}", at - bytes.data(),
                      first_bytes(bytes.subspan(static_cast<size_t>(at - bytes.data()))));
      break;
    }
    std::string why = capstone_disagrees(*insn);
    if (why.empty() && ends_block(*insn) && insn->detail->x86.prefix[2] == 0x66) {
      why =
          "a branch with an operand-size prefix (Intel ignores it, AMD and QEMU truncate rip "
          "to 16 bits)";
    }
    if (!why.empty()) {
      block.undecodable = fmt::format("undecodable bytes at offset {}: {} ({})", at - bytes.data(),
                                      to_hex({insn->bytes, insn->size}), why);
      break;
    }
    X86Insn out;
    out.address = insn->address;
    out.size_bytes = static_cast<uint8_t>(insn->size);
    out.id = insn->id;
    out.mnemonic = insn->mnemonic;
    out.op_str = insn->op_str;
    const cs_x86& x = insn->detail->x86;
    for (int i = 0; i < 4; ++i) out.prefix[i] = x.prefix[i];
    out.addr_size = x.addr_size;
    for (uint8_t i = 0; i < x.op_count; ++i) {
      const cs_x86_op& o = x.operands[i];
      Operand op;
      op.size_bytes = o.size;
      op.access = o.access;
      switch (o.type) {
        case X86_OP_REG:
          op.kind = Operand::Kind::kReg;
          op.reg = o.reg;
          break;
        case X86_OP_IMM:
          op.kind = Operand::Kind::kImm;
          op.imm = o.imm;
          break;
        case X86_OP_MEM:
          op.kind = Operand::Kind::kMem;
          op.mem.segment = o.mem.segment;
          op.mem.base = o.mem.base;
          op.mem.index = o.mem.index;
          op.mem.scale = o.mem.scale;
          op.mem.disp = o.mem.disp;
          break;
        default:
          continue;
      }
      out.ops.push_back(op);
    }
    out.is_control_transfer = ends_block(*insn);
    block.size_bytes += out.size_bytes;
    const bool stop = out.is_control_transfer;
    block.insns.push_back(std::move(out));
    if (stop) break;
  }
  cs_free(insn, 1);
  if (block.insns.empty()) {
    return fail(Errc::kInvalidArgument,
                fmt::format("x86 block at {:#x}: the first instruction does not decode ({})", pc,
                            first_bytes(bytes)));
  }
  return block;
}

Result<std::vector<uint8_t>> parse_hex(std::string_view hex) {
  std::vector<uint8_t> out;
  if (hex.size() >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) hex.remove_prefix(2);
  int high = -1;
  for (size_t i = 0; i < hex.size(); ++i) {
    const char c = hex[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (high >= 0) {
        return fail(Errc::kInvalidArgument,
                    fmt::format("hex bytes: odd digit before the space at position {}", i));
      }
      continue;
    } else {
      return fail(Errc::kInvalidArgument,
                  fmt::format("hex bytes: '{}' at position {} is not a hex digit", c, i));
    }
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<uint8_t>(high << 4 | v));
      high = -1;
    }
  }
  if (high >= 0) return fail(Errc::kInvalidArgument, "hex bytes: odd number of digits");
  return out;
}

std::string to_hex(std::span<const uint8_t> bytes) {
  std::string s;
  s.reserve(bytes.size() * 2);
  static constexpr char kDigits[] = "0123456789abcdef";
  for (uint8_t b : bytes) {
    s += kDigits[b >> 4];
    s += kDigits[b & 15];
  }
  return s;
}

std::optional<X86Conditional> conditional_of(unsigned insn_id) noexcept {
  using F = X86CondFamily;
  using C = X86Cond;
  switch (insn_id) {
#define GB_CC(suffix, cond)                    \
  case X86_INS_J##suffix:                      \
    return X86Conditional{F::kJcc, C::cond};   \
  case X86_INS_SET##suffix:                    \
    return X86Conditional{F::kSetcc, C::cond}; \
  case X86_INS_CMOV##suffix:                   \
    return X86Conditional{F::kCmovcc, C::cond};
    GB_CC(O, kO)
    GB_CC(NO, kNo)
    GB_CC(B, kB)
    GB_CC(AE, kAe)
    GB_CC(E, kE)
    GB_CC(NE, kNe)
    GB_CC(BE, kBe)
    GB_CC(A, kA)
    GB_CC(S, kS)
    GB_CC(NS, kNs)
    GB_CC(P, kP)
    GB_CC(NP, kNp)
    GB_CC(L, kL)
    GB_CC(GE, kGe)
    GB_CC(LE, kLe)
    GB_CC(G, kG)
#undef GB_CC
    case X86_INS_JRCXZ:
      return X86Conditional{F::kJcc, C::kRcxz};
    case X86_INS_JECXZ:
      return X86Conditional{F::kJcc, C::kEcxz};
    case X86_INS_JCXZ:
      return X86Conditional{F::kJcc, C::kCxz};
    default:
      return std::nullopt;
  }
}

}  // namespace glassbox::smt
