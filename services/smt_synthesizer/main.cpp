// glassbox-smt-synthesizer: the service (see service.hpp), and the one-shot offline tool:
//   glassbox-smt-synthesizer --oneshot --bytes HEX --pc ADDR [--json]
// which synthesizes one block and prints the outcome (synthesize.hpp), exit 0 when it ran
// (whatever the status), 2 for bad flags.
#include <CLI/CLI.hpp>
#include <iostream>

#include "services/smt_synthesizer/service.hpp"
#include "services/smt_synthesizer/synthesize.hpp"
#include "services/smt_synthesizer/x86_decode.hpp"
#include "shared/service_main.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  bool oneshot = false, json = false;
  std::string hex, pc_text = "0";
  shared::ServiceMainOptions o;
  o.binary = "glassbox-smt-synthesizer";
  o.description = "hot x86-64 blocks -> Z3-verified Pixel v1 programs (docs/pixel-isa-v1.md)";
  o.add_flags = [&](CLI::App& app) {
    app.add_flag("--oneshot", oneshot, "synthesize one block (--bytes, --pc) and exit");
    app.add_option("--bytes", hex, "the block's bytes in hex (with --oneshot)");
    app.add_option("--pc", pc_text, "the block's address, hex or decimal (with --oneshot)");
    app.add_flag("--json", json, "print the outcome as JSON (with --oneshot)");
  };
  o.before_run = [&](const shared::Config& config,
                     const shared::StatePaths&) -> std::optional<int> {
    if (!oneshot) return std::nullopt;
    auto bytes = smt::parse_hex(hex);
    if (!bytes || bytes->empty()) {
      std::cerr << "glassbox-smt-synthesizer: --bytes: "
                << (bytes ? std::string("no bytes") : bytes.error().message) << "\n";
      return 2;
    }
    uint64_t pc = 0;
    try {
      size_t used = 0;
      pc = std::stoull(pc_text, &used, 0);
      if (used != pc_text.size()) throw std::invalid_argument("trailing characters");
    } catch (const std::exception&) {
      std::cerr << "glassbox-smt-synthesizer: --pc: '" << pc_text << "' is not an address\n";
      return 2;
    }
    smt::SynthOptions so;
    so.verify_timeout_ms = config.synth.verify_timeout_ms;
    so.cegis_timeout_ms = config.synth.cegis_timeout_ms;
    so.cegis_max_insns = config.synth.cegis_max_insns;
    const smt::SynthOutcome out = smt::synthesize_block(*bytes, pc, so);
    if (json) {
      std::cout << smt::outcome_json(out, pc) << "\n";
    } else {
      std::cout << out.status << (out.reason.empty() ? "" : ": " + out.reason) << "\n";
      if (out.status == "verified") {
        std::cout << out.method << ", " << out.n_x86_insns << " x86 -> " << out.n_pixel_insns
                  << " pixel insns (" << out.synth_ms << " + " << out.verify_ms << " ms)\n"
                  << pixel::to_assembly(out.program);
      }
    }
    return 0;
  };
  return shared::service_main(argc, argv, o,
                              [](shared::Config c, shared::StatePaths p, const auto& stop) {
                                return smt::Service(std::move(c), std::move(p)).run(stop);
                              });
}
