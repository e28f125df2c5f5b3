// smt-synthesizer on real parts: the one-shot tool, and the live pipeline on the reference
// guest (plugin -> trace-consumer -> pattern-miner -> bus "trace.hot" -> smt-synthesizer ->
// SQLite microcode library -> `glassbox synth`), its benchmark over the guest's hot blocks,
// and a SIGKILL of the service (restarted by `up`, nothing stored lost).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "shared/pixel_isa.hpp"
#include "shared/process.hpp"
#include "tests/integration/harness.hpp"

namespace glassbox::itest {
namespace {

using namespace std::chrono_literals;

// Runs bin/<argv[0]> with the rest, stdout+stderr to a file; exit code and output.
CommandResult run_bin(std::vector<std::string> argv, std::chrono::seconds timeout = 120s) {
  static int seq = 0;
  const std::string out =
      "/tmp/gb-itest-synth-" + std::to_string(::getpid()) + "-" + std::to_string(seq++) + ".out";
  argv[0] = bin_dir() + "/" + argv[0];
  CommandResult r;
  auto pid = shared::spawn(argv, {.new_session = false, .output_path = out});
  if (!pid) {
    r.output = pid.error().message;
    return r;
  }
  auto st = shared::reap_for(*pid, timeout);
  if (!st) {
    ::kill(*pid, SIGKILL);
    (void)shared::reap_for(*pid, 2s);
    r.output = "timed out";
  } else {
    r.exit_code = WIFEXITED(*st) ? WEXITSTATUS(*st) : 128 + WTERMSIG(*st);
    r.output = read_file(out);
  }
  ::unlink(out.c_str());
  return r;
}

nlohmann::json json_of(const std::string& s) {
  const auto first = s.find('{'), last = s.rfind('}');
  if (first == std::string::npos || last == std::string::npos) return nullptr;
  return nlohmann::json::parse(s.substr(first, last - first + 1), nullptr, false);
}

TEST(SynthOneshotTest, PrintsTheIssuesJsonForVerifiedAndUnsupportedBlocks) {
  // add rax, rbx; cmp rax, rcx; jne +0x10
  auto r = run_bin({"glassbox-smt-synthesizer", "--oneshot", "--bytes", "4801d84839c87510", "--pc",
                    "0x401000", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = json_of(r.output);
  ASSERT_TRUE(j.is_object()) << r.output;
  EXPECT_EQ(j["status"], "verified") << j.dump(1);
  EXPECT_EQ(j["program"]["isa"], "pixel-v1");
  EXPECT_EQ(j["n_x86_insns"], 3);
  EXPECT_GT(j["n_pixel_insns"].get<int>(), 0);
  EXPECT_TRUE(j["method"] == "direct" || j["method"] == "cegis") << j.dump(1);
  ASSERT_TRUE(j["undefined_flags"].is_array());
  EXPECT_GE(j["synth_ms"].get<double>(), 0);
  EXPECT_GT(j["verify_ms"].get<double>(), 0);
  auto program = pixel::program_from_json(j["program"].dump());
  ASSERT_TRUE(program) << program.error().to_string();
  EXPECT_EQ(program->insns.size(), j["n_pixel_insns"].get<size_t>());

  auto u = run_bin({"glassbox-smt-synthesizer", "--oneshot", "--bytes", "0fa2", "--pc", "0",
                    "--json"});  // cpuid
  ASSERT_EQ(u.exit_code, 0) << u.output;
  auto uj = json_of(u.output);
  EXPECT_EQ(uj["status"], "unsupported") << u.output;
  EXPECT_NE(uj["reason"].get<std::string>().find("cpuid"), std::string::npos) << u.output;
  EXPECT_TRUE(uj["program"].is_null());

  auto bad = run_bin({"glassbox-smt-synthesizer", "--oneshot", "--bytes", "4g", "--json"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--bytes"), std::string::npos) << bad.output;
}

uint64_t hex_of(const nlohmann::json& v) { return std::stoull(v.get<std::string>(), nullptr, 16); }

// The live pipeline: gb-cpuburn's hot loop becomes a verified Pixel program in the library.
TEST(SynthPipelineTest, TheGuestsHotLoopIsSynthesizedVerifiedAndSurvivesARestart) {
  auto guest = nlohmann::json::parse(read_file(bin_dir() + "/../guest/guest.json"), nullptr, false);
  ASSERT_TRUE(guest.is_object() && guest.contains("hot_loop")) << "rebuild the guest";
  const uint64_t start = hex_of(guest["hot_loop"]["start"]), end = hex_of(guest["hot_loop"]["end"]);
  Instance inst("",
                "services = [\"vm-supervisor\", \"ram-snapshotter\", \"semantic-db\", "
                "\"trace-consumer\", \"pattern-miner\", \"smt-synthesizer\"]",
                "[trace]\nmode = \"counts\"\n[miner]\npublish_top = 100\n"
                "[synth]\ncegis_timeout_ms = 500\n");
  ASSERT_TRUE(inst.start());
  ASSERT_TRUE(inst.wait_ready(240s)) << read_file(inst.up_log());

  nlohmann::json list, hot_block;
  ASSERT_TRUE(wait_until(
      [&] {
        list = json_of(inst.cli({"synth", "list", "--json"}).output);
        if (!list.is_object()) return false;
        for (const auto& b : list["blocks"]) {
          const uint64_t pc = hex_of(b["pc"]);
          if (pc >= start && pc < end && b["status"] == "verified") {
            hot_block = b;
            return true;
          }
        }
        return false;
      },
      180s))
      << "gb_cpuburn_chunk never became a verified program: " << list.dump(1) << "\n"
      << inst.cli({"status"}).output;
  const std::string pc = hot_block["pc"].get<std::string>();
  auto show = inst.cli({"synth", "show", pc, "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.output;
  auto sj = json_of(show.output);
  ASSERT_TRUE(sj.is_object()) << show.output;
  EXPECT_EQ(sj["status"], "verified");
  auto program = pixel::program_from_json(sj["program"].dump());
  ASSERT_TRUE(program) << sj.dump(1);
  EXPECT_EQ(program->insns.size(), sj["n_pixel_insns"].get<size_t>());
  // The same bytes through the one-shot tool give the same verdict.
  auto one = run_bin({"glassbox-smt-synthesizer", "--oneshot", "--bytes",
                      sj["bytes"].get<std::string>(), "--pc", pc, "--json"});
  EXPECT_EQ(json_of(one.output)["status"], "verified") << one.output;
  // Status carries the synth section; an unknown pc is a clear error.
  auto st = inst.status();
  ASSERT_TRUE(st.is_object());
  EXPECT_GE(st["synth"]["by_status"]["verified"].get<int>(), 1) << st.dump(1);
  auto none = inst.cli({"synth", "show", "0x1"});
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.output.find("no synthesized block"), std::string::npos) << none.output;

  // The benchmark over this guest's 100 hottest blocks (figures reported, not asserted).
  const std::string hot_path = inst.state_dir() + "/hot.json";
  {
    auto hot = inst.cli({"hot", "--top", "100", "--json"});
    ASSERT_EQ(hot.exit_code, 0) << hot.output;
    std::ofstream(hot_path) << hot.output.substr(hot.output.find('{'));
  }
  auto bench = run_bin({"glassbox-bench-synth", "--blocks", hot_path, "--json",
                        inst.state_dir() + "/bench-synth.json"},
                       900s);
  EXPECT_EQ(bench.exit_code, 0) << bench.output;
  std::cout << bench.output;

  // SIGKILL: `up` restarts the service; the library keeps every block.
  const size_t before = list["blocks"].size();
  int pid = 0;
  for (const auto& svc : st["services"]) {
    if (svc["name"] == "smt-synthesizer") pid = svc["pid"].get<int>();
  }
  ASSERT_GT(pid, 0) << st.dump(1);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  nlohmann::json again;
  ASSERT_TRUE(wait_until(
      [&] {
        again = json_of(inst.cli({"synth", "list", "--json"}).output);
        return again.is_object() && again["blocks"].size() >= before;
      },
      60s))
      << again.dump(1);
  // The restarted service catches up with the miner's top blocks from the library: known
  // blocks are not synthesized again.
  nlohmann::json after;
  ASSERT_TRUE(wait_until(
      [&] {
        after = inst.status();
        return after.is_object() && after["synth"].is_object() &&
               after["synth"].value("catch_up_known", 0) > 0;
      },
      60s))
      << after.dump(1);
  auto show_again = json_of(inst.cli({"synth", "show", pc, "--json"}).output);
  ASSERT_TRUE(show_again.is_object());
  EXPECT_EQ(show_again["verify_ms"], sj["verify_ms"])
      << "the hot block was synthesized again after the restart";
  EXPECT_EQ(show_again["program"], sj["program"]);
  bool still = false;
  for (const auto& b : again["blocks"]) {
    if (b["pc"] == pc && b["status"] == "verified") still = true;
  }
  EXPECT_TRUE(still) << "the verified hot block is gone after a restart: " << again.dump(1);
}

}  // namespace
}  // namespace glassbox::itest
