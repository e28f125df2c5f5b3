// Pixel ISA v1: the small, straight-line, 64-bit register ISA that the GPU executes and
// that smt-synthesizer translates hot x86-64 blocks into. The normative spec is
// docs/pixel-isa-v1.md; this header is its machine form and the reference CPU interpreter
// (the GPU executor follows it bit for bit).
//
// Shapes: 64 registers r0..r63 of 64 bits. On entry r0..r15 = rax, rcx, rdx, rbx, rsp, rbp,
// rsi, rdi, r8..r15; r16..r20 = CF, PF, ZF, SF, OF (0 or 1); r21 = rip of the block's first
// instruction; r22..r63 = 0. Memory is flat, byte-addressed, little-endian.
// All arithmetic is modulo 2^64; shift counts are r[b] & 63.
//
// Thread-safety: value types and pure functions; run() touches only its arguments.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::pixel {

inline constexpr std::string_view kIsaName = "pixel-v1";
inline constexpr unsigned kNumRegs = 64;

// Register numbers of the x86 state (the entry/exit convention above).
inline constexpr uint8_t kRax = 0, kRcx = 1, kRdx = 2, kRbx = 3, kRsp = 4, kRbp = 5, kRsi = 6,
                         kRdi = 7;  // r8..r15 are 8..15
inline constexpr uint8_t kCf = 16, kPf = 17, kZf = 18, kSf = 19, kOf = 20, kRip = 21;
inline constexpr uint8_t kFirstScratch = 22;   // r22..r63: zero on entry, free for temporaries
inline constexpr unsigned kNumStateRegs = 22;  // r0..r21 are the x86 state compared on exit

enum class Op : uint8_t {
  kLi,     // r[d] = imm
  kMov,    // r[d] = r[a]
  kAdd,    // r[d] = r[a] + r[b]
  kSub,    // r[d] = r[a] - r[b]
  kAnd,    // r[d] = r[a] & r[b]
  kOr,     // r[d] = r[a] | r[b]
  kXor,    // r[d] = r[a] ^ r[b]
  kMul,    // r[d] = low 64 bits of r[a] * r[b]
  kMulhu,  // r[d] = high 64 bits of the unsigned 128-bit product
  kMulhs,  // r[d] = high 64 bits of the signed 128-bit product
  kShl,    // r[d] = r[a] << (r[b] & 63)
  kShr,    // r[d] = r[a] >> (r[b] & 63), logical
  kSar,    // r[d] = r[a] >> (r[b] & 63), arithmetic
  kNot,    // r[d] = ~r[a]
  kNeg,    // r[d] = -r[a]
  kZext,   // r[d] = low imm bits of r[a], zero-extended (imm 8, 16, 32)
  kSext,   // r[d] = low imm bits of r[a], sign-extended (imm 8, 16, 32)
  kEq,     // r[d] = r[a] == r[b]
  kNe,     // r[d] = r[a] != r[b]
  kUlt,    // r[d] = r[a] < r[b], unsigned
  kUle,    // r[d] = r[a] <= r[b], unsigned
  kSlt,    // r[d] = r[a] < r[b], signed
  kSle,    // r[d] = r[a] <= r[b], signed
  kSel,    // r[d] = r[c] != 0 ? r[a] : r[b]
  kPar,    // r[d] = 1 if r[a] & 0xff has an even number of set bits, else 0
  kLd,     // r[d] = zero-extended load of imm bytes (1, 2, 4, 8) at address r[a]
  kSt,     // store the low imm bytes (1, 2, 4, 8) of r[b] at address r[a]
};
inline constexpr unsigned kNumOps = static_cast<unsigned>(Op::kSt) + 1;

// One instruction. Fields an op does not use are 0.
struct Insn {
  Op op = Op::kLi;
  uint8_t d = 0, a = 0, b = 0, c = 0;
  uint64_t imm = 0;
  friend bool operator==(const Insn&, const Insn&) = default;
};

struct Program {
  std::vector<Insn> insns;
  friend bool operator==(const Program&, const Program&) = default;
};

// Which operand fields an op reads and writes (for validation, liveness and printing).
struct OpShape {
  bool writes_d;
  uint8_t n_reg_sources;  // 0..3: a, then b, then c
  bool uses_imm;
};
OpShape op_shape(Op op) noexcept;

// "add", "mulhu", ...; never empty.
std::string_view op_name(Op op) noexcept;
std::optional<Op> op_from_name(std::string_view name) noexcept;

// Checks register numbers (< 64) and immediates (zext/sext: 8, 16, 32; ld/st: 1, 2, 4, 8).
// Errors: kInvalidArgument naming the instruction index and the field.
Result<void> validate(const Program& program);

// One line per instruction in the spec's assembly form: "add r0, r0, r22", "li r22, 0x10",
// "ld r23, [r4], 8", "st [r4], r0, 8".
std::string to_assembly(const Program& program);

// JSON form (the contract): [{"op": "add", "d": 0, "a": 0, "b": 22}, {"op": "li",
// "d": 22, "imm": "0x10"}, ...]; unused fields left out, imm as a hex string.
std::string to_json(const Program& program);
// Parses the JSON form (an array of instructions, or {"isa": "pixel-v1", "insns": [...]}).
// imm may be a hex ("0x..") or decimal string, or a JSON number < 2^53.
// Errors: kInvalidArgument naming the instruction index and what was wrong.
Result<Program> program_from_json(std::string_view json);

// The guest memory a program runs against. load/store of 1, 2, 4 or 8 bytes, little-endian.
// A false return is a fault (e.g. unmapped): the interpreter stops with an error.
class Memory {
 public:
  virtual ~Memory() = default;
  virtual bool load(uint64_t address, unsigned size_bytes, uint64_t& value) = 0;
  virtual bool store(uint64_t address, unsigned size_bytes, uint64_t value) = 0;
};

using Registers = std::array<uint64_t, kNumRegs>;

// One non-memory op on operand values (the reference semantics run() uses; ld and st give
// 0). For constant folding and other evaluators that must agree with the interpreter bit for
// bit. `imm` must be valid for the op (validate()).
uint64_t alu(Op op, uint64_t a, uint64_t b, uint64_t c, uint64_t imm) noexcept;

// Runs `program` on `regs` and `memory` (the reference semantics of docs/pixel-isa-v1.md).
// Errors: kInvalidArgument for an invalid instruction (validate() first to avoid it),
// kOutOfRange naming the instruction index and address when memory faults (registers and
// memory then hold the state before that instruction). Bounded: one pass, no branches.
Result<void> run(const Program& program, Registers& regs, Memory& memory);

}  // namespace glassbox::pixel
