#include "services/smt_synthesizer/pixel_z3.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "services/smt_synthesizer/verify.hpp"
#include "tests/smt_synthesizer/unicorn_oracle.hpp"

namespace glassbox::smt {
namespace {

using pixel::Insn;
using pixel::Op;
using pixel::Program;

// A random valid program over r0..r30 (memory ops into the seeded memory).
Program random_program(std::mt19937_64& rng, size_t n) {
  Program p;
  for (size_t i = 0; i < n; ++i) {
    Insn in;
    in.op = static_cast<Op>(rng() % pixel::kNumOps);
    in.d = static_cast<uint8_t>(rng() % 31);
    in.a = static_cast<uint8_t>(rng() % 31);
    in.b = static_cast<uint8_t>(rng() % 31);
    in.c = static_cast<uint8_t>(rng() % 31);
    switch (in.op) {
      case Op::kZext:
      case Op::kSext:
        in.imm = (uint64_t[]){8, 16, 32}[rng() % 3];
        break;
      case Op::kLd:
      case Op::kSt:
        in.imm = (uint64_t[]){1, 2, 4, 8}[rng() % 4];
        break;
      case Op::kLi:
        in.imm = rng();
        break;
      default:
        break;
    }
    p.insns.push_back(in);
  }
  return p;
}

constexpr uint64_t kWindow = 0x10000000, kWindowBytes = 80;

// Seeded bytes inside the window, zero outside (until written): what the symbolic side's
// concrete initial array holds.
class WindowMemory : public pixel::Memory {
 public:
  explicit WindowMemory(uint64_t seed) : seed_(seed) {}
  bool load(uint64_t address, unsigned size_bytes, uint64_t& value) override {
    value = 0;
    for (unsigned i = 0; i < size_bytes; ++i) value |= uint64_t{byte(address + i)} << (8 * i);
    return true;
  }
  bool store(uint64_t address, unsigned size_bytes, uint64_t value) override {
    for (unsigned i = 0; i < size_bytes; ++i) written[address + i] = uint8_t(value >> (8 * i));
    return true;
  }
  uint8_t byte(uint64_t a) const {
    if (auto it = written.find(a); it != written.end()) return it->second;
    return a >= kWindow && a < kWindow + kWindowBytes ? test::memory_byte(seed_, a) : 0;
  }
  std::map<uint64_t, uint8_t> written;

 private:
  uint64_t seed_;
};

// The symbolic semantics evaluated on concrete inputs equal the reference interpreter, for
// every op (ld/st through a memory with the same bytes on both sides).
TEST(PixelZ3Test, SymbolicSemanticsMatchTheInterpreterOnRandomPrograms) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 60; ++round) {
    const Program p = random_program(rng, 12);
    ASSERT_TRUE(pixel::validate(p));
    pixel::Registers regs{};
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      regs[r] = rng() % 2 ? rng() : kWindow + rng() % 64;
    }
    const uint64_t seed = rng();
    WindowMemory mem(seed);
    pixel::Registers after = regs;
    ASSERT_TRUE(pixel::run(p, after, mem));

    z3::context ctx;
    const SymState in = fresh_state(ctx);
    const SymState out = pixel_semantics(p, in);
    // Concrete input: the registers, and the window's bytes (zero elsewhere, as WindowMemory).
    z3::expr_vector from(ctx), to(ctx);
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      from.push_back(in.regs[r]);
      to.push_back(ctx.bv_val(regs[r], 64));
    }
    z3::expr m0 = z3::const_array(ctx.bv_sort(64), ctx.bv_val(0, 8));
    for (uint64_t a = kWindow; a < kWindow + kWindowBytes; ++a) {
      m0 = z3::store(m0, ctx.bv_val(a, 64), ctx.bv_val(test::memory_byte(seed, a), 8));
    }
    from.push_back(in.mem);
    to.push_back(m0);
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      z3::expr e = out.regs[r];
      z3::expr v = e.substitute(from, to).simplify();
      uint64_t u = 0;
      ASSERT_TRUE(v.is_numeral_u64(u)) << v;
      EXPECT_EQ(u, after[r]) << "r" << r << " of\n" << pixel::to_assembly(p);
    }
    for (const auto& [a, byte] : mem.written) {
      z3::expr e = z3::select(out.mem, ctx.bv_val(a, 64));
      z3::expr v = e.substitute(from, to).simplify();
      uint64_t u = 0;
      ASSERT_TRUE(v.is_numeral_u64(u));
      EXPECT_EQ(u, byte) << "byte at " << a;
    }
  }
}

TEST(PixelZ3Test, EveryAluOpMatchesTheInterpreterOnEdgeValues) {
  const uint64_t edges[] = {0,
                            1,
                            2,
                            63,
                            64,
                            0x7f,
                            0x80,
                            0xff,
                            0x8000000000000000ull,
                            0x7fffffffffffffffull,
                            0xffffffffffffffffull,
                            0x123456789abcdefull};
  z3::context ctx;
  for (unsigned o = 0; o < pixel::kNumOps; ++o) {
    const Op op = static_cast<Op>(o);
    if (op == Op::kLd || op == Op::kSt) continue;
    const uint64_t imm = (op == Op::kZext || op == Op::kSext) ? 16 : 0x42;
    for (uint64_t a : edges) {
      for (uint64_t b : edges) {
        pixel::Registers regs{};
        regs[1] = a;
        regs[2] = b;
        regs[3] = b & 1;
        test::SeededMemory mem(1);
        Program p{{Insn{op, 0, 1, 2, 3, imm}}};
        ASSERT_TRUE(pixel::run(p, regs, mem));
        z3::expr v = pixel_alu(op, ctx.bv_val(a, 64), ctx.bv_val(b, 64), ctx.bv_val(b & 1, 64), imm)
                         .simplify();
        uint64_t u = 0;
        ASSERT_TRUE(v.is_numeral_u64(u));
        EXPECT_EQ(u, regs[0]) << pixel::op_name(op) << " " << a << " " << b;
      }
    }
  }
}

TEST(PixelZ3Test, VerifyProvesEquivalentProgramsAndNamesADifference) {
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  // rax * 8 two ways; the second also clobbers CF, which is declared undefined.
  const Program a{{Insn{Op::kLi, 22, 0, 0, 0, 3}, Insn{Op::kShl, 0, 0, 22}}};
  const Program b{
      {Insn{Op::kLi, 22, 0, 0, 0, 8}, Insn{Op::kMul, 0, 0, 22}, Insn{Op::kMov, 16, 22}}};
  auto ok = verify_equivalent(in, pixel_semantics(a, in), pixel_semantics(b, in), kFlagCf, 5000);
  EXPECT_EQ(ok.verdict, Verdict::kVerified) << ok.detail;
  auto bad = verify_equivalent(in, pixel_semantics(a, in), pixel_semantics(b, in), 0, 5000);
  ASSERT_EQ(bad.verdict, Verdict::kCounterexample);
  EXPECT_NE(bad.detail.find("r16 (CF)"), std::string::npos) << bad.detail;
  // A store to a different address is a memory difference.
  const Program st1{{Insn{Op::kSt, 0, 4, 0, 0, 8}}};
  const Program st2{{Insn{Op::kSt, 0, 5, 0, 0, 8}}};
  auto mem = verify_equivalent(in, pixel_semantics(st1, in), pixel_semantics(st2, in), 0, 5000);
  ASSERT_EQ(mem.verdict, Verdict::kCounterexample);
  EXPECT_NE(mem.detail.find("memory"), std::string::npos) << mem.detail;
}

TEST(PixelZ3Test, AHardQueryTimesOutAsAResult) {
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  // Is multiplication by rbx commutative through a chain of mulhs? Hard for bit-blasting.
  Program a, b;
  for (uint8_t i = 0; i < 6; ++i) {
    a.insns.push_back(Insn{Op::kMulhs, 0, 0, 3});
    a.insns.push_back(Insn{Op::kMul, 1, 1, 0});
    b.insns.push_back(Insn{Op::kMulhs, 0, 3, 0});
    b.insns.push_back(Insn{Op::kMul, 1, 0, 1});
  }
  auto r = verify_equivalent(in, pixel_semantics(a, in), pixel_semantics(b, in), 0, 50);
  EXPECT_NE(r.verdict, Verdict::kCounterexample) << r.detail;
  EXPECT_LT(r.ms, 5000);
}

}  // namespace
}  // namespace glassbox::smt
