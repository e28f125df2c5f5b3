#include "services/smt_synthesizer/x86_decode.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace glassbox::smt {
namespace {

TEST(X86DecodeTest, StopsAtTheFirstControlTransfer) {
  // add rax, rbx; mov ecx, [rip + 0x10]; jne -5; nop
  auto bytes = parse_hex("4801d8 8b0d10000000 75fb 90");
  ASSERT_TRUE(bytes);
  auto b = decode_block(*bytes, 0x401000);
  ASSERT_TRUE(b) << b.error().to_string();
  ASSERT_EQ(b->insns.size(), 3u);
  EXPECT_EQ(b->size_bytes, 11u);
  EXPECT_EQ(b->insns[0].mnemonic, "add");
  EXPECT_EQ(b->insns[1].ops[1].kind, Operand::Kind::kMem);
  EXPECT_EQ(b->insns[1].ops[1].mem.base, X86_REG_RIP);
  EXPECT_EQ(b->insns[1].ops[1].mem.disp, 0x10);
  EXPECT_TRUE(b->insns[2].is_control_transfer);
  EXPECT_EQ(b->insns[2].ops[0].imm, 0x401006);  // Capstone gives the absolute target
  GprSlice s;
  ASSERT_TRUE(gpr_slice(X86_REG_AH, s));
  EXPECT_EQ(s.gpr, 0);
  EXPECT_EQ(s.shift, 8);
  ASSERT_TRUE(gpr_slice(X86_REG_R13D, s));
  EXPECT_EQ(s.gpr, 13);
  EXPECT_EQ(s.width, 32);
  EXPECT_FALSE(gpr_slice(X86_REG_RIP, s));
}

// The condition table follows the encoding: the low nibble of 7x/0f 8x (jcc), 0f 9x (setcc)
// and 0f 4x (cmovcc) is the condition's tttn code (SDM Vol. 2 Appendix B.1.4.7).
TEST(X86DecodeTest, ConditionOfEveryConditionalInsnIsItsEncodedCode) {
  auto first_insn = [](const std::string& hex) {
    auto bytes = parse_hex(hex);
    EXPECT_TRUE(bytes) << hex;
    auto b = decode_block(*bytes, 0x400000);
    EXPECT_TRUE(b && !b->insns.empty()) << hex;
    return b->insns.front().id;
  };
  auto expect = [](unsigned id, X86CondFamily family, X86Cond cond, const std::string& what) {
    const auto c = conditional_of(id);
    ASSERT_TRUE(c.has_value()) << what;
    EXPECT_EQ(c->family, family) << what;
    EXPECT_EQ(c->cond, cond) << what;
  };
  for (unsigned cc = 0; cc < 16; ++cc) {
    const auto cond = static_cast<X86Cond>(cc);
    const std::string n = fmt::format("{:x}", cc);
    expect(first_insn("7" + n + "10"), X86CondFamily::kJcc, cond, "jcc rel8 " + n);
    expect(first_insn("0f8" + n + "00010000"), X86CondFamily::kJcc, cond, "jcc rel32 " + n);
    expect(first_insn("0f9" + n + "c0"), X86CondFamily::kSetcc, cond, "setcc " + n);
    expect(first_insn("480f4" + n + "c3"), X86CondFamily::kCmovcc, cond, "cmovcc " + n);
  }
  expect(first_insn("e310"), X86CondFamily::kJcc, X86Cond::kRcxz, "jrcxz");
  expect(first_insn("67e310"), X86CondFamily::kJcc, X86Cond::kEcxz, "jecxz");
  EXPECT_FALSE(conditional_of(X86_INS_ADD).has_value());
  EXPECT_FALSE(conditional_of(X86_INS_JMP).has_value());
  EXPECT_FALSE(conditional_of(X86_INS_INVALID).has_value());
}

TEST(X86DecodeTest, BadInputGetsAClearError) {
  EXPECT_FALSE(decode_block({}, 0));
  auto junk = parse_hex("0f0b");  // ud2 decodes and ends the block
  ASSERT_TRUE(junk);
  auto b = decode_block(*junk, 0);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->insns[0].is_control_transfer);
  auto bad = parse_hex("06");  // push es: invalid in 64-bit mode
  ASSERT_TRUE(bad);
  auto e = decode_block(*bad, 0x1000);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("0x1000"), std::string::npos);
  auto tail = parse_hex("90 06");  // nop, then garbage: the block is the nop
  auto t = decode_block(*tail, 0);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->insns.size(), 1u);
  EXPECT_FALSE(t->undecodable.empty());
  EXPECT_FALSE(parse_hex("4g"));
  EXPECT_FALSE(parse_hex("123"));
  EXPECT_EQ(to_hex(*parse_hex("0x DE ad")), "dead");
}

}  // namespace
}  // namespace glassbox::smt
