// x86-64 block decoding for smt-synthesizer: Capstone (Debian libcapstone-dev, detail mode)
// turned into a small value type that the lifter (lifter.hpp: Z3 semantics) and the direct
// translator (direct.hpp: Pixel code) both consume, so neither touches Capstone.
//
// A block is the bytes given, decoded from `pc`, ending at the end of the bytes or after the
// first control-transfer instruction (jmp, jcc, call, ret, loop*, int*, syscall, iret, ...),
// whichever comes first (issue 5: "the block is the bytes given, ending at the end of the
// bytes or at the first control-transfer instruction").
//
// Capstone 4.0.2 and a CPU disagree on two encodings (a REX byte followed by a legacy prefix;
// opcode 0x63 without REX.W), and CPUs disagree on a near branch with a 0x66 prefix (Intel
// ignores it, AMD and QEMU truncate rip to 16 bits): decoding stops before such an
// instruction (`undecodable` says which), so no stage gives it a wrong meaning.
//
// Thread-safety: decode_block() is reentrant (its own Capstone handle per call).
#pragma once

#include <capstone/capstone.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::smt {

// A general-purpose register slice in Pixel numbering: gpr 0..15 = rax, rcx, rdx, rbx, rsp,
// rbp, rsi, rdi, r8..r15; bits [shift, shift + width) of it (ah: shift 8, width 8).
struct GprSlice {
  uint8_t gpr = 0;
  uint8_t shift = 0;   // 0, or 8 for ah/ch/dh/bh
  uint8_t width = 64;  // 8, 16, 32 or 64
};

// Capstone register -> slice; false for anything else (rip, segment, vector, flags...).
bool gpr_slice(x86_reg reg, GprSlice& out) noexcept;

struct MemOperand {
  x86_reg segment = X86_REG_INVALID;  // fs/gs base matters; others are flat in 64-bit mode
  x86_reg base = X86_REG_INVALID;     // may be X86_REG_RIP
  x86_reg index = X86_REG_INVALID;
  int scale = 1;
  int64_t disp = 0;
};

struct Operand {
  enum class Kind : uint8_t { kReg, kImm, kMem };
  Kind kind = Kind::kReg;
  uint8_t size_bytes = 0;  // the operand's size (1, 2, 4, 8; mem: the access size)
  x86_reg reg = X86_REG_INVALID;
  int64_t imm = 0;  // Capstone's immediate: already sign-extended to the operand size
  MemOperand mem;
  uint8_t access = 0;  // CS_AC_READ | CS_AC_WRITE (Capstone's view; may be 0 when unknown)
};

struct X86Insn {
  uint64_t address = 0;           // its pc
  uint8_t size_bytes = 0;         // length; the next insn is at address + size_bytes
  unsigned id = X86_INS_INVALID;  // x86_insn (X86_INS_ADD, ...)
  std::string mnemonic;           // "add", "cmovne", ...
  std::string op_str;             // "rax, qword ptr [rbx + 8]"
  std::vector<Operand> ops;       // Intel order: destination first
  uint8_t prefix[4] = {};         // Capstone's prefix bytes (rep/lock, segment, opsize, addrsize)
  uint8_t addr_size = 8;          // address size in bytes (a 0x67 prefix makes it 4)
  bool is_control_transfer = false;  // ends the block
};

// The conditions of Jcc/SETcc/CMOVcc in their encoding order (the `tttn` field, Intel SDM
// Vol. 2 Appendix B.1.4.7 and Vol. 1 Appendix B "EFLAGS Condition Codes"): 0..15, so that an
// odd code is the negation of the even code before it (code ^ 1). Then the count-register
// jumps JRCXZ/JECXZ/JCXZ (rcx/ecx/cx == 0), which test no flag.
enum class X86Cond : uint8_t {
  kO,
  kNo,
  kB,
  kAe,
  kE,
  kNe,
  kBe,
  kA,
  kS,
  kNs,
  kP,
  kNp,
  kL,
  kGe,
  kLe,
  kG,
  kRcxz,
  kEcxz,
  kCxz
};

// Which conditional instruction family an insn id belongs to.
enum class X86CondFamily : uint8_t { kJcc, kSetcc, kCmovcc };  // JrCXZ counts as kJcc

struct X86Conditional {
  X86CondFamily family = X86CondFamily::kJcc;
  X86Cond cond = X86Cond::kO;
};

// The family and condition of a Jcc/SETcc/CMOVcc/JrCXZ Capstone insn id (x86_insn); nullopt
// for every other id. The one decoding table of conditions the lifter and the direct
// translator share. Thread-safety: pure.
std::optional<X86Conditional> conditional_of(unsigned insn_id) noexcept;

struct DecodedBlock {
  uint64_t pc = 0;
  std::vector<X86Insn> insns;
  uint32_t size_bytes = 0;  // bytes covered by insns
  // Set when decoding stopped at bytes Capstone could not decode (the block is then the
  // insns before them; the caller decides whether that is "unsupported").
  std::string undecodable;
};

// Decodes `bytes` at `pc` as 64-bit code, at most `max_insns` instructions.
// Errors: kInvalidArgument for empty input or when not even the first instruction decodes
// (message names the offset and the first bytes); kInternal if Capstone cannot start.
Result<DecodedBlock> decode_block(std::span<const uint8_t> bytes, uint64_t pc,
                                  size_t max_insns = 512);

// "48 01 d8" <-> bytes. parse_hex accepts upper/lower case, optional spaces and a "0x"
// prefix. Errors: kInvalidArgument naming the position of the first bad character.
Result<std::vector<uint8_t>> parse_hex(std::string_view hex);
std::string to_hex(std::span<const uint8_t> bytes);

}  // namespace glassbox::smt
