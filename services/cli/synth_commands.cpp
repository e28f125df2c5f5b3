// `glassbox synth list|show`: the microcode library of glassbox-smt-synthesizer (verified
// Pixel v1 programs of hot blocks).
#include <fmt/core.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "services/cli/commands.hpp"
#include "shared/bus.hpp"
#include "shared/paths.hpp"
#include "synth_generated.h"

namespace glassbox::cli {
namespace {

namespace fb = glassbox::schema;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

nlohmann::json block_json(const fb::synth::SynthBlock& b, bool full) {
  nlohmann::json j = {{"pc", fmt::format("0x{:x}", b.pc())},
                      {"status", str(b.status())},
                      {"n_x86_insns", b.n_x86_insns()},
                      {"n_pixel_insns", b.n_pixel_insns()},
                      {"method", str(b.method()).empty() ? nlohmann::json(nullptr)
                                                         : nlohmann::json(str(b.method()))}};
  if (!full) return j;
  j["reason"] = str(b.reason());
  j["bytes_hash"] = fmt::format("{:016x}", b.bytes_hash());
  std::string hex;
  if (b.bytes()) {
    for (uint8_t x : *b.bytes()) hex += fmt::format("{:02x}", x);
  }
  j["bytes"] = hex;
  nlohmann::json flags = nlohmann::json::array();
  if (b.undefined_flags()) {
    for (const auto* f : *b.undefined_flags()) flags.push_back(str(f));
  }
  j["undefined_flags"] = flags;
  j["n_direct_insns"] = b.n_direct_insns();
  auto insns = nlohmann::json::parse(str(b.program_json()), nullptr, false);
  j["program"] = insns.is_array() ? nlohmann::json{{"isa", "pixel-v1"}, {"insns", insns}}
                                  : nlohmann::json(nullptr);
  j["synth_ms"] = b.synth_ms();
  j["verify_ms"] = b.verify_ms();
  j["cegis"] = str(b.cegis());
  return j;
}

}  // namespace

int cmd_synth(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  flatbuffers::FlatBufferBuilder fbb(128);
  if (inv.synth_action == "show") {
    auto q = fb::synth::CreateShowBlock(fbb, inv.pc);
    fb::synth::FinishSynthRequestBuffer(
        fbb, fb::synth::CreateSynthRequest(fbb, fb::synth::SynthCommand::ShowBlock, q.Union()));
  } else {
    auto q = fb::synth::CreateListBlocks(fbb, 0);
    fb::synth::FinishSynthRequestBuffer(
        fbb, fb::synth::CreateSynthRequest(fbb, fb::synth::SynthCommand::ListBlocks, q.Union()));
  }
  auto bytes =
      shared::request(paths.service_endpoint("smt-synthesizer"),
                      {fbb.GetBufferPointer(), fbb.GetSize()}, std::chrono::milliseconds(15000));
  if (!bytes) {
    std::cerr << "glassbox: "
              << (bytes.error().code == Errc::kUnavailable
                      ? "smt-synthesizer is not running at " + paths.dir() +
                            " (add it to [up] services, with pattern-miner and [trace] mode)"
                      : bytes.error().message)
              << "\n";
    return 1;
  }
  flatbuffers::Verifier v(bytes->data(), bytes->size());
  if (bytes->size() < 8 || !v.VerifyBuffer<fb::synth::SynthReply>(nullptr)) {
    std::cerr << "glassbox: smt-synthesizer reply failed FlatBuffers verification\n";
    return 1;
  }
  const auto* r = flatbuffers::GetRoot<fb::synth::SynthReply>(bytes->data());
  if (const auto* e = r->error()) {
    std::cerr << "glassbox: smt-synthesizer: " << str(e->message()) << "\n";
    return 1;
  }
  const bool show = inv.synth_action == "show";
  nlohmann::json blocks = nlohmann::json::array();
  if (r->blocks()) {
    for (const auto* b : *r->blocks()) blocks.push_back(block_json(*b, show));
  }
  if (show) {
    if (blocks.empty()) {
      std::cerr << "glassbox: smt-synthesizer sent no block\n";
      return 1;
    }
    const auto& b = blocks[0];
    if (inv.json) {
      std::cout << b.dump(2) << "\n";
      return 0;
    }
    std::cout << fmt::format("pc {}  {}  {} x86 insns -> {} pixel insns ({}; direct {})\n",
                             b["pc"].get<std::string>(), b["status"].get<std::string>(),
                             b["n_x86_insns"].get<uint32_t>(), b["n_pixel_insns"].get<uint32_t>(),
                             b["method"].is_null() ? "-" : b["method"].get<std::string>(),
                             b["n_direct_insns"].get<uint32_t>());
    if (!b["reason"].get<std::string>().empty()) {
      std::cout << "reason: " << b["reason"].get<std::string>() << "\n";
    }
    std::cout << "bytes: " << b["bytes"].get<std::string>() << "\n";
    std::cout << "undefined flags: " << b["undefined_flags"].dump() << "\n";
    std::cout << fmt::format("synth {:.1f} ms, verify {:.1f} ms; cegis: {}\n",
                             b["synth_ms"].get<double>(), b["verify_ms"].get<double>(),
                             b["cegis"].get<std::string>());
    if (b["program"].is_object()) {
      for (const auto& i : b["program"]["insns"]) std::cout << "  " << i.dump() << "\n";
    }
    return 0;
  }
  if (inv.json) {
    std::cout << nlohmann::json{{"blocks", blocks}}.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{:>18} {:<12} {:>5} {:>6}  {}\n", "PC", "STATUS", "X86", "PIXEL",
                           "METHOD");
  for (const auto& b : blocks) {
    std::cout << fmt::format("{:>18} {:<12} {:>5} {:>6}  {}\n", b["pc"].get<std::string>(),
                             b["status"].get<std::string>(), b["n_x86_insns"].get<uint32_t>(),
                             b["n_pixel_insns"].get<uint32_t>(),
                             b["method"].is_null() ? "-" : b["method"].get<std::string>());
  }
  return 0;
}

}  // namespace glassbox::cli
