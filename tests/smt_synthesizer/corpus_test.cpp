// The differential test on real code: the 100 hottest blocks of a reference boot
// (tests/smt_synthesizer/data/hot_blocks.json, `glassbox hot --top 100 --json` of the
// reference guest: kernel and user blocks) through the whole synthesis; every verified
// program is run by the Pixel interpreter and by Unicorn on 1000 random states each, and
// must agree on r0..r21 (minus the undefined flags) and on every byte written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "services/smt_synthesizer/synthesize.hpp"
#include "services/smt_synthesizer/x86_decode.hpp"
#include "tests/smt_synthesizer/unicorn_oracle.hpp"

namespace glassbox::smt {
namespace {

nlohmann::json load_corpus() {
  const auto path = std::filesystem::path(__FILE__).parent_path() / "data" / "hot_blocks.json";
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return nlohmann::json::parse(s.str(), nullptr, false);
}

TEST(CorpusTest, EveryVerifiedProgramOfARealBootAgreesWithUnicorn) {
  const auto corpus = load_corpus();
  ASSERT_TRUE(corpus.is_object() && corpus["blocks"].is_array());
  SynthOptions options;
  options.cegis_timeout_ms = 300;
  std::mt19937_64 rng(2026);
  size_t verified = 0, runs = 0, blocks = 0;
  for (const auto& b : corpus["blocks"]) {
    auto bytes = parse_hex(b["bytes"].get<std::string>());
    ASSERT_TRUE(bytes);
    const uint64_t pc = std::stoull(b["pc"].get<std::string>(), nullptr, 16);
    ++blocks;
    const SynthOutcome o = synthesize_block(*bytes, pc, options);
    EXPECT_NE(o.status, "failed") << b["pc"] << ": " << o.reason;
    EXPECT_NE(o.status, "timeout") << b["pc"] << ": " << o.reason;
    if (o.status != "verified") continue;
    ++verified;
    const std::span<const uint8_t> code(bytes->data(), o.block_bytes);
    size_t ran = 0;
    for (int i = 0; i < 1000; ++i) {
      test::X86State in = test::random_state(rng);
      in[pixel::kRip] = pc;
      // Half the samples over random bytes, half over memory of pointers into the data
      // window (so blocks that chase pointers or end in ret run too).
      const uint64_t seed = (rng() & ~test::kPointerMemory) | (i % 2 ? test::kPointerMemory : 0);
      const test::OracleRun x86 = test::run_x86(code, pc, in, seed, o.n_x86_insns);
      if (!x86.ok) continue;
      ++ran;
      pixel::Registers regs{};
      for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) regs[r] = in[r];
      test::SeededMemory mem(seed);
      auto res = pixel::run(o.program, regs, mem);
      ASSERT_TRUE(res) << b["pc"] << ": " << res.error().to_string();
      for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
        if (r >= pixel::kCf && r <= pixel::kOf && (o.undefined_flags & (1u << (r - pixel::kCf))))
          continue;
        ASSERT_EQ(regs[r], x86.out[r]) << "block " << b["pc"] << " r" << r << " sample " << i;
      }
      for (const auto& [a, v] : x86.written) {
        auto it = mem.written().find(a);
        ASSERT_TRUE(it != mem.written().end() && it->second == v)
            << "block " << b["pc"] << ": byte at " << a << " sample " << i;
      }
      for (const auto& [a, v] : mem.written()) {
        ASSERT_TRUE(x86.written.count(a)) << "block " << b["pc"] << ": pixel wrote " << a;
      }
    }
    runs += ran;
    EXPECT_GE(ran, 50u) << "block " << b["pc"] << ": Unicorn ran too few samples";
  }
  EXPECT_EQ(blocks, 100u);
  EXPECT_GE(verified, 70u);
  std::cout << verified << " of " << blocks << " blocks verified; " << runs
            << " random states compared with Unicorn\n";
}

}  // namespace
}  // namespace glassbox::smt
