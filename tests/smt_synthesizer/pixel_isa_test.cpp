#include "shared/pixel_isa.hpp"

#include <gtest/gtest.h>

#include <map>

namespace glassbox::pixel {
namespace {

class MapMemory : public Memory {
 public:
  bool load(uint64_t a, unsigned n, uint64_t& v) override {
    if (a >= 0x8000000000000000ull) return false;
    v = 0;
    for (unsigned i = 0; i < n; ++i) v |= uint64_t{bytes[a + i]} << (8 * i);
    return true;
  }
  bool store(uint64_t a, unsigned n, uint64_t v) override {
    if (a >= 0x8000000000000000ull) return false;
    for (unsigned i = 0; i < n; ++i) bytes[a + i] = static_cast<uint8_t>(v >> (8 * i));
    return true;
  }
  std::map<uint64_t, uint8_t> bytes;
};

Registers run_ok(const Program& p, Registers r = {}) {
  MapMemory m;
  auto res = run(p, r, m);
  EXPECT_TRUE(res) << res.error().to_string();
  return r;
}

TEST(PixelIsaTest, AluOpsFollowTheSpecModulo2To64) {
  Registers r{};
  r[1] = 0xffffffffffffffffull;
  r[2] = 3;
  Program p{{{Op::kAdd, 22, 1, 2},
             {Op::kMul, 23, 1, 2},
             {Op::kMulhu, 24, 1, 2},
             {Op::kMulhs, 25, 1, 2},
             {Op::kShl, 26, 2, 1},  // shift by r1 & 63 = 63
             {Op::kSar, 27, 1, 2},
             {Op::kShr, 28, 1, 2},
             {Op::kSlt, 29, 1, 2},
             {Op::kUlt, 30, 1, 2},
             {Op::kSel, 31, 1, 2, 0},  // r0 == 0 -> r[b]
             {Op::kSel, 32, 1, 2, 2},  // r2 != 0 -> r[a]
             {Op::kPar, 33, 2},        // 0b11: even
             {Op::kSext, 34, 1, 0, 0, 8},
             {Op::kZext, 35, 1, 0, 0, 16},
             {Op::kNeg, 36, 2},
             {Op::kLi, 37, 0, 0, 0, 0x123456789abcdef0ull}}};
  r = run_ok(p, r);
  EXPECT_EQ(r[22], 2u);
  EXPECT_EQ(r[23], 0xfffffffffffffffdull);
  EXPECT_EQ(r[24], 2u);                     // (2^64-1)*3 >> 64
  EXPECT_EQ(r[25], 0xffffffffffffffffull);  // -1 * 3 = -3: high half all ones
  EXPECT_EQ(r[26], 0x8000000000000000ull);
  EXPECT_EQ(r[27], 0xffffffffffffffffull);
  EXPECT_EQ(r[28], 0x1fffffffffffffffull);
  EXPECT_EQ(r[29], 1u);
  EXPECT_EQ(r[30], 0u);
  EXPECT_EQ(r[31], 3u);
  EXPECT_EQ(r[32], 0xffffffffffffffffull);
  EXPECT_EQ(r[33], 1u);
  EXPECT_EQ(r[34], 0xffffffffffffffffull);
  EXPECT_EQ(r[35], 0xffffu);
  EXPECT_EQ(r[36], 0xfffffffffffffffdull);
  EXPECT_EQ(r[37], 0x123456789abcdef0ull);
}

TEST(PixelIsaTest, LoadsAndStoresAreLittleEndianAndSized) {
  Registers r{};
  r[4] = 0x1000;
  r[0] = 0x1122334455667788ull;
  Program p{{{Op::kSt, 0, 4, 0, 0, 8},
             {Op::kLd, 1, 4, 0, 0, 2},
             {Op::kSt, 0, 4, 1, 0, 1},
             {Op::kLd, 2, 4, 0, 0, 8}}};
  MapMemory m;
  ASSERT_TRUE(run(p, r, m));
  EXPECT_EQ(r[1], 0x7788u);
  EXPECT_EQ(r[2], 0x1122334455667788ull);  // the 1-byte store wrote 0x88 over 0x88
  EXPECT_EQ(m.bytes[0x1000], 0x88);
  EXPECT_EQ(m.bytes[0x1007], 0x11);
}

TEST(PixelIsaTest, AFaultStopsWithTheIndexAndAddress) {
  Registers r{};
  r[4] = 0x9000000000000000ull;
  Program p{{{Op::kLi, 0, 0, 0, 0, 5}, {Op::kLd, 1, 4, 0, 0, 8}, {Op::kLi, 2, 0, 0, 0, 7}}};
  MapMemory m;
  auto res = run(p, r, m);
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error().code, Errc::kOutOfRange);
  EXPECT_NE(res.error().message.find("insn 1"), std::string::npos);
  EXPECT_NE(res.error().message.find("0x9000000000000000"), std::string::npos);
  EXPECT_EQ(r[0], 5u);
  EXPECT_EQ(r[2], 0u);
}

TEST(PixelIsaTest, JsonRoundTripsAndRejectsBadInstructions) {
  Program p{{{Op::kLi, 22, 0, 0, 0, 0xffffffffffffffffull},
             {Op::kAdd, 0, 0, 22},
             {Op::kSel, 1, 2, 3, 4},
             {Op::kSt, 0, 4, 0, 0, 8},
             {Op::kZext, 5, 5, 0, 0, 32}}};
  auto back = program_from_json(to_json(p));
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, p);
  auto wrapped = program_from_json(R"({"isa": "pixel-v1", "insns": [{"op": "li", "d": 1,
      "imm": "18446744073709551615"}]})");
  ASSERT_TRUE(wrapped);
  EXPECT_EQ(wrapped->insns[0].imm, 0xffffffffffffffffull);
  for (const char* bad :
       {R"([{"op": "div", "d": 1}])", R"([{"op": "add", "d": 64, "a": 0, "b": 0}])",
        R"([{"op": "ld", "d": 1, "a": 2, "imm": "3"}])", R"([{"op": "zext", "d": 1, "a": 2,
        "imm": "64"}])",
        R"([{"op": "li", "d": 1, "imm": "0xZZ"}])", R"({"isa": "x"})", "[1]", "not json"}) {
    auto r = program_from_json(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    }
  }
  EXPECT_EQ(to_assembly(Program{{{Op::kSt, 0, 4, 1, 0, 8}}}), "st [r4], r1, 8\n");
}

}  // namespace
}  // namespace glassbox::pixel
