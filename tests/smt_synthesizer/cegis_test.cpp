// CEGIS (services/smt_synthesizer/cegis.hpp): specs are the Z3 semantics of hand-written Pixel
// programs (pixel_semantics), so these tests do not depend on the lifter. Every kFound
// program is checked again here with verify_equivalent.
#include "services/smt_synthesizer/cegis.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "services/smt_synthesizer/pixel_z3.hpp"
#include "services/smt_synthesizer/verify.hpp"

namespace glassbox::smt {
namespace {

using pixel::Insn;
using pixel::Op;
using pixel::Program;
using Status = CegisResult::Status;

Insn rrr(Op op, uint8_t d, uint8_t a, uint8_t b = 0, uint8_t c = 0) {
  Insn i;
  i.op = op;
  i.d = d;
  i.a = a;
  i.b = b;
  i.c = c;
  return i;
}
Insn li(uint8_t d, uint64_t imm) {
  Insn i;
  i.op = Op::kLi;
  i.d = d;
  i.imm = imm;
  return i;
}

// Runs CEGIS on the semantics of `reference` and checks a kFound result: verified for all
// inputs and no longer than `max_len`.
CegisResult expect_found(const Program& reference, size_t max_len, uint8_t undefined_flags = 0,
                         unsigned timeout_ms = 10000, unsigned max_insns = 8) {
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  const SymState spec = pixel_semantics(reference, in);
  CegisOptions opt;
  opt.max_insns = max_insns;
  opt.timeout_ms = timeout_ms;
  const CegisResult r = synthesize_cegis(in, spec, undefined_flags, false, opt);
  EXPECT_EQ(r.status, Status::kFound) << r.reason;
  if (r.status != Status::kFound) return r;
  EXPECT_TRUE(pixel::validate(r.program).has_value());
  EXPECT_LE(r.program.insns.size(), max_len) << pixel::to_assembly(r.program);
  const VerifyResult v =
      verify_equivalent(in, spec, pixel_semantics(r.program, in), undefined_flags, 10000);
  EXPECT_EQ(v.verdict, Verdict::kVerified) << v.detail << "\n" << pixel::to_assembly(r.program);
  std::printf("[cegis] %zu insns, %u iterations, %.1f ms:\n%s", r.program.insns.size(),
              r.iterations, r.ms, pixel::to_assembly(r.program).c_str());
  return r;
}

TEST(CegisTest, FindsOneAndTwoInstructionSpecs) {
  expect_found(Program{{rrr(Op::kAdd, 0, 0, 3)}}, 1);                // rax += rbx
  expect_found(Program{{li(22, 7), rrr(Op::kAdd, 21, 21, 22)}}, 2);  // rip += 7
  expect_found(Program{{rrr(Op::kXor, 0, 0, 0)}}, 1);                // rax = 0
}

TEST(CegisTest, FindsRaxPlusRbxAndRipPlusSeven) {
  // The typical goal: rax = rax + rbx; rip = r21 + 7, in three instructions.
  expect_found(Program{{rrr(Op::kAdd, 0, 0, 3), li(22, 7), rrr(Op::kAdd, 21, 21, 22)}}, 3);
}

TEST(CegisTest, FindsShortProgramForLongSpec) {
  // rax * 8 as eight additions (nine instructions) -> two (li 3; shl, or li 8; mul).
  Program times8;
  times8.insns.push_back(rrr(Op::kAdd, 22, 0, 0));
  for (int i = 0; i < 6; ++i) times8.insns.push_back(rrr(Op::kAdd, 22, 22, 0));
  times8.insns.push_back(rrr(Op::kMov, 0, 22));
  expect_found(times8, 2);
  // (a & b) + (a | b) == a + b: one instruction.
  expect_found(Program{{rrr(Op::kAnd, 22, 0, 3), rrr(Op::kOr, 23, 0, 3), rrr(Op::kAdd, 0, 22, 23)}},
               1);
}

TEST(CegisTest, MultiOutputSharesComponents) {
  // rax = rax - rcx; ZF = (rax == 0); rip = r21 + 5. sub; li 0; eq; li 5; add would be five,
  // but ZF = (rax == rcx) on the inputs saves the constant: four.
  const Program ref{{rrr(Op::kSub, 0, 0, 1), li(22, 0), rrr(Op::kEq, 18, 0, 22), li(23, 5),
                     rrr(Op::kAdd, 21, 21, 23)}};
  const CegisResult r = expect_found(ref, 4);
  EXPECT_GE(r.program.insns.size(), 4u);
}

TEST(CegisTest, SwapNeedsOneMov) {
  // xchg rax, rbx: each output is a mov of the other's input, a cycle; the scheduler keeps
  // one in a scratch register and writes it last (three instructions, counted).
  const CegisResult r =
      expect_found(Program{{rrr(Op::kMov, 22, 0), rrr(Op::kMov, 0, 3), rrr(Op::kMov, 3, 22)}}, 3);
  EXPECT_EQ(r.program.insns.size(), 3u);
}

TEST(CegisTest, XorEaxEaxSetsRaxAndFlags) {
  // xor eax, eax: rax = 0, CF = OF = SF = 0, ZF = PF = 1 (six outputs, one instruction each).
  const Program ref{{li(0, 0), li(16, 0), li(17, 1), li(18, 1), li(19, 0), li(20, 0)}};
  expect_found(ref, 6);
}

TEST(CegisTest, NothingChangedIsTheEmptyProgram) {
  const CegisResult r = expect_found(Program{{rrr(Op::kMov, 22, 0), rrr(Op::kMov, 0, 22)}}, 0);
  EXPECT_EQ(r.iterations, 0u);
}

TEST(CegisTest, MemoryIsSkipped) {
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  Insn st;
  st.op = Op::kSt;
  st.a = 4;
  st.b = 0;
  st.imm = 8;
  const SymState spec = pixel_semantics(Program{{st}}, in);
  const CegisResult r = synthesize_cegis(in, spec, 0, true, CegisOptions{});
  EXPECT_EQ(r.status, Status::kSkipped);
  EXPECT_EQ(r.reason, "block touches memory");
}

TEST(CegisTest, TinyTimeoutIsAResult) {
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  // Ten outputs mixing multiplications, shifts and comparisons: far beyond 1 ms.
  const Program hard{{rrr(Op::kMul, 22, 0, 3), rrr(Op::kMulhu, 23, 1, 2), li(24, 13),
                      rrr(Op::kShl, 25, 22, 24), rrr(Op::kXor, 0, 25, 23), rrr(Op::kSlt, 16, 0, 6),
                      rrr(Op::kSub, 1, 7, 0), rrr(Op::kPar, 17, 1), rrr(Op::kEq, 18, 1, 22),
                      rrr(Op::kSar, 2, 23, 25), rrr(Op::kSel, 3, 2, 1, 18), li(26, 9),
                      rrr(Op::kAdd, 21, 21, 26)}};
  const SymState spec = pixel_semantics(hard, in);
  CegisOptions opt;
  opt.max_insns = 12;
  opt.timeout_ms = 1;
  const auto t0 = std::chrono::steady_clock::now();
  const CegisResult r = synthesize_cegis(in, spec, 0, false, opt);
  const double wall =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, Status::kTimeout) << r.reason;
  EXPECT_LT(wall, 2000.0);
  // And with a real but short budget, still a timeout (or not found), in bounded time.
  opt.timeout_ms = 300;
  const auto t1 = std::chrono::steady_clock::now();
  const CegisResult r2 = synthesize_cegis(in, spec, 0, false, opt);
  const double wall2 =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_LT(wall2, 2000.0) << r2.reason;
  if (r2.status == Status::kFound) {  // a fast machine may: then it must be right
    EXPECT_EQ(verify_equivalent(in, spec, pixel_semantics(r2.program, in), 0, 10000).verdict,
              Verdict::kVerified);
  }
}

TEST(CegisTest, UndefinedFlagsAreFree) {
  // rax += rbx; CF = (rax < rbx) as the carry. With CF undefined one add suffices, and it
  // need not compute the carry.
  const Program ref{{rrr(Op::kAdd, 0, 0, 3), rrr(Op::kUlt, 16, 0, 3)}};
  const CegisResult r = expect_found(ref, 1, kFlagCf);
  // CF defined: both outputs are needed.
  expect_found(ref, 2, 0);
  for (const auto& insn : r.program.insns) EXPECT_NE(insn.d, pixel::kCf);
}

TEST(CegisTest, HotBlockWithinBudget) {
  // add rax, 1; cmp rax, rbx; jne rip+0x29 (9 bytes): rax, all five flags and rip change.
  // Seventeen instructions directly; CEGIS gets 16 and 2 s: found or timeout, never more.
  const Program ref{{li(22, 1), rrr(Op::kAdd, 0, 0, 22), rrr(Op::kSub, 23, 0, 3),
                     rrr(Op::kUlt, 16, 0, 3), rrr(Op::kPar, 17, 23), rrr(Op::kEq, 18, 0, 3),
                     li(24, 63), rrr(Op::kShr, 19, 23, 24), rrr(Op::kXor, 25, 0, 3),
                     rrr(Op::kXor, 26, 0, 23), rrr(Op::kAnd, 25, 25, 26), rrr(Op::kShr, 20, 25, 24),
                     li(27, 9), rrr(Op::kAdd, 28, 21, 27), li(29, 0x29), rrr(Op::kAdd, 30, 21, 29),
                     rrr(Op::kSel, 21, 28, 30, 18)}};
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  const SymState spec = pixel_semantics(ref, in);
  CegisOptions opt;
  opt.max_insns = 16;
  opt.timeout_ms = 2000;
  const CegisResult r = synthesize_cegis(in, spec, 0, false, opt);
  std::printf("[cegis] hot block: status %d, %zu insns, %u iterations, %.1f ms (%s)\n%s",
              static_cast<int>(r.status), r.program.insns.size(), r.iterations, r.ms,
              r.reason.c_str(), pixel::to_assembly(r.program).c_str());
  EXPECT_LT(r.ms, 3000.0);
  if (r.status == Status::kFound) {
    EXPECT_LE(r.program.insns.size(), 16u);
    EXPECT_EQ(verify_equivalent(in, spec, pixel_semantics(r.program, in), 0, 10000).verdict,
              Verdict::kVerified);
  } else {
    EXPECT_EQ(r.status, Status::kTimeout) << r.reason;
  }
}

TEST(CegisTest, NotFoundWithinMaxInsns) {
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  const SymState spec =
      pixel_semantics(Program{{li(22, 7), rrr(Op::kAdd, 21, 21, 22), rrr(Op::kAdd, 0, 0, 3)}}, in);
  CegisOptions opt;
  opt.max_insns = 2;  // three are needed
  opt.timeout_ms = 10000;
  const CegisResult r = synthesize_cegis(in, spec, 0, false, opt);
  EXPECT_EQ(r.status, Status::kNotFound) << r.reason;
}

}  // namespace
}  // namespace glassbox::smt
