// glassbox-bench-synth: smt-synthesizer over real hot blocks (issue 5's benchmark).
//
//   glassbox-bench-synth --blocks HOT.json [--top 100] [--json OUT]
//
// HOT.json is `glassbox hot --top 100 --json` of a running reference guest (each block with
// its "bytes"). Each block goes through BlockSynthesis with the service's defaults; the
// figures: the share verified / unsupported / timeout / failed, the median time to the first
// verified program (decode, lift, direct translation, Z3 proof: what the service publishes
// first) over all verified blocks and over ALU blocks (no memory access: the budget,
// median <= 100 ms), the median with the CEGIS search for a shorter program added, and, as
// the same-run baseline, the median time to decode and lift the same blocks (the least any
// verified answer costs). The unsupported reasons are counted.
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "services/smt_synthesizer/lifter.hpp"
#include "services/smt_synthesizer/synthesize.hpp"
#include "services/smt_synthesizer/x86_decode.hpp"
#include "tests/bench/bench_util.hpp"

using namespace glassbox;

int main(int argc, char** argv) {
  CLI::App app{"smt-synthesizer over the hottest blocks of a reference boot"};
  std::string blocks_path, json_out;
  unsigned top = 100;
  app.add_option("--blocks", blocks_path, "`glassbox hot --json` output")->required();
  app.add_option("--top", top, "how many blocks (hottest first)");
  app.add_option("--json", json_out, "write the figures as JSON here");
  CLI11_PARSE(app, argc, argv);
  auto doc = nlohmann::json::parse(bench::read_file(blocks_path), nullptr, false);
  if (!doc.is_object() || !doc["blocks"].is_array()) {
    std::cerr << "glassbox-bench-synth: " << blocks_path << " is not `glassbox hot --json`\n";
    return 2;
  }
  std::map<std::string, unsigned> by_status;
  std::map<std::string, unsigned> reasons;
  std::vector<double> all_ms, alu_ms, lift_ms, alu_lift_ms, with_cegis_ms;
  unsigned n = 0, alu_blocks = 0, cegis_wins = 0;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& b : doc["blocks"]) {
    if (n >= top) break;
    if (!b.contains("bytes") || !b["bytes"].is_string() || b["bytes"].get<std::string>().empty())
      continue;
    auto bytes = smt::parse_hex(b["bytes"].get<std::string>());
    if (!bytes) continue;
    const uint64_t pc = std::stoull(b["pc"].get<std::string>(), nullptr, 16);
    ++n;
    // Baseline: decode + lift only.
    const auto t0 = bench::Clock::now();
    bool alu = false;
    if (auto blk = smt::decode_block(*bytes, pc)) {
      z3::context ctx;
      const auto in = smt::fresh_state(ctx);
      const auto l = smt::lift_block(ctx, *blk, in, *bytes);
      alu = l.supported && !l.touches_memory;
    }
    const double lms = std::chrono::duration<double, std::milli>(bench::Clock::now() - t0).count();
    // Phase 1: the proved direct translation (what the service publishes first); phase 2:
    // the CEGIS search for a shorter program. Wall time of each.
    smt::BlockSynthesis job(*bytes, pc, smt::SynthOptions{});
    const auto t1 = bench::Clock::now();
    smt::SynthOutcome o = job.direct();
    const double first_ms =
        std::chrono::duration<double, std::milli>(bench::Clock::now() - t1).count();
    double cegis_ms = 0;
    if (o.status == "verified") {
      const auto t2 = bench::Clock::now();
      job.improve(o);
      cegis_ms = std::chrono::duration<double, std::milli>(bench::Clock::now() - t2).count();
    }
    ++by_status[o.status];
    if (o.status == "unsupported") {
      std::string r = o.reason.substr(0, o.reason.find(" ("));
      ++reasons[r];
    }
    const double total = first_ms;
    if (o.status == "verified") {
      all_ms.push_back(total);
      with_cegis_ms.push_back(first_ms + cegis_ms);
      lift_ms.push_back(lms);
      if (o.method == "cegis") ++cegis_wins;
      if (alu) {
        ++alu_blocks;
        alu_ms.push_back(total);
        alu_lift_ms.push_back(lms);
      }
    }
    rows.push_back({{"pc", b["pc"]},
                    {"status", o.status},
                    {"method", o.method},
                    {"alu", alu},
                    {"n_x86", o.n_x86_insns},
                    {"n_pixel", o.n_pixel_insns},
                    {"n_direct", o.n_direct_insns},
                    {"ms", total},
                    {"cegis_ms", cegis_ms},
                    {"lift_ms", lms},
                    {"reason", o.reason},
                    {"cegis", o.cegis_note}});
  }
  auto share = [&](const char* s) { return n ? 100.0 * by_status[s] / n : 0.0; };
  nlohmann::json out = {{"blocks", n},
                        {"verified_pct", share("verified")},
                        {"unsupported_pct", share("unsupported")},
                        {"timeout_pct", share("timeout")},
                        {"failed_pct", share("failed")},
                        {"cegis_wins", cegis_wins},
                        {"alu_blocks_verified", alu_blocks},
                        {"median_ms_verified", bench::median(all_ms)},
                        {"median_ms_alu", bench::median(alu_ms)},
                        {"median_lift_ms_verified", bench::median(lift_ms)},
                        {"median_ms_with_cegis", bench::median(with_cegis_ms)},
                        {"median_lift_ms_alu", bench::median(alu_lift_ms)},
                        {"unsupported_reasons", reasons},
                        {"rows", rows}};
  std::cout << "blocks " << n << ": verified " << share("verified") << " %, unsupported "
            << share("unsupported") << " %, timeout " << share("timeout") << " %, failed "
            << share("failed") << " %; CEGIS shorter on " << cegis_wins << "\n"
            << "median synth+verify: verified " << bench::median(all_ms) << " ms (lift baseline "
            << bench::median(lift_ms) << " ms), ALU (" << alu_blocks << " blocks) "
            << bench::median(alu_ms) << " ms (lift " << bench::median(alu_lift_ms)
            << " ms), budget <= 100 ms; with the CEGIS search " << bench::median(with_cegis_ms)
            << " ms\n";
  for (const auto& [r, c] : reasons) std::cout << "  unsupported x" << c << ": " << r << "\n";
  if (!json_out.empty()) {
    std::ofstream f(json_out);
    f << out.dump(1) << "\n";
  }
  return 0;
}
