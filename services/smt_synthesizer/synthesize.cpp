#include "services/smt_synthesizer/synthesize.hpp"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "services/smt_synthesizer/cegis.hpp"
#include "services/smt_synthesizer/direct.hpp"
#include "services/smt_synthesizer/lifter.hpp"
#include "services/smt_synthesizer/pixel_z3.hpp"
#include "services/smt_synthesizer/verify.hpp"
#include "services/smt_synthesizer/x86_decode.hpp"

namespace glassbox::smt {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

SynthOutcome synthesize_block(std::span<const uint8_t> bytes, uint64_t pc,
                              const SynthOptions& options) {
  SynthOutcome out;
  auto block = decode_block(bytes, pc);
  if (!block) {
    out.status = "unsupported";
    out.reason = block.error().message;
    return out;
  }
  out.n_x86_insns = static_cast<uint32_t>(block->insns.size());
  out.block_bytes = block->size_bytes;
  z3::context ctx;
  const SymState in = fresh_state(ctx);
  const LiftResult lifted = lift_block(ctx, *block, in);
  if (!lifted.supported) {
    out.status = "unsupported";
    out.reason = lifted.reason;
    return out;
  }
  out.undefined_flags = lifted.undefined_flags;

  const auto t_synth = Clock::now();
  const DirectResult direct = translate_direct(*block);
  if (!direct.supported) {
    out.status = "unsupported";
    out.reason = "direct translation: " + direct.reason;
    out.synth_ms = ms_since(t_synth);
    return out;
  }
  out.n_direct_insns = static_cast<uint32_t>(direct.program.insns.size());
  double synth_ms = ms_since(t_synth);
  const VerifyResult proof = verify_equivalent(in, lifted.out, pixel_semantics(direct.program, in),
                                               lifted.undefined_flags, options.verify_timeout_ms);
  if (proof.verdict != Verdict::kVerified) {
    out.status = proof.verdict == Verdict::kTimeout ? "timeout" : "failed";
    out.reason = proof.verdict == Verdict::kTimeout
                     ? fmt::format("z3 did not prove the direct translation within {} ms ({})",
                                   options.verify_timeout_ms, proof.detail)
                     : "counterexample to the direct translation: " + proof.detail;
    out.synth_ms = synth_ms;
    out.verify_ms = proof.ms;
    return out;
  }
  out.status = "verified";
  out.method = "direct";
  out.program = direct.program;
  out.verify_ms = proof.ms;

  // CEGIS: only worth it when a shorter program can exist.
  const unsigned budget = std::min<unsigned>(options.cegis_max_insns, out.n_direct_insns - 1);
  if (options.cegis_timeout_ms == 0 || out.n_direct_insns <= 1 || budget == 0) {
    out.cegis_note = "not tried";
  } else {
    CegisOptions co;
    co.max_insns = budget;
    co.timeout_ms = options.cegis_timeout_ms;
    const auto t_cegis = Clock::now();
    const CegisResult c =
        synthesize_cegis(in, lifted.out, lifted.undefined_flags, lifted.touches_memory, co);
    synth_ms += ms_since(t_cegis);
    switch (c.status) {
      case CegisResult::Status::kFound: {
        // CEGIS proves its result; prove it again here, against the same spec, independently
        // of how CEGIS got there.
        const VerifyResult again =
            verify_equivalent(in, lifted.out, pixel_semantics(c.program, in),
                              lifted.undefined_flags, options.verify_timeout_ms);
        if (again.verdict == Verdict::kVerified &&
            c.program.insns.size() < out.program.insns.size()) {
          out.program = c.program;
          out.method = "cegis";
          out.verify_ms = again.ms;
          out.cegis_note =
              fmt::format("found {} insns in {} rounds", c.program.insns.size(), c.iterations);
        } else {
          out.cegis_note = again.verdict == Verdict::kVerified
                               ? "found nothing shorter"
                               : "its program failed the final proof: " + again.detail;
        }
        break;
      }
      case CegisResult::Status::kNotFound:
        out.cegis_note = "nothing shorter: " + c.reason;
        break;
      case CegisResult::Status::kTimeout:
        out.cegis_note = "timeout: " + c.reason;
        break;
      case CegisResult::Status::kSkipped:
        out.cegis_note = "skipped: " + c.reason;
        break;
    }
  }
  out.synth_ms = synth_ms;
  out.n_pixel_insns = static_cast<uint32_t>(out.program.insns.size());
  return out;
}

std::string outcome_json(const SynthOutcome& o, uint64_t pc, bool pretty) {
  nlohmann::json j;
  j["pc"] = fmt::format("{:#x}", pc);
  j["status"] = o.status;
  j["reason"] = o.reason;
  if (o.status == "verified") {
    j["program"] = {{"isa", std::string(pixel::kIsaName)},
                    {"insns", nlohmann::json::parse(pixel::to_json(o.program))}};
    j["method"] = o.method;
  } else {
    j["program"] = nullptr;
    j["method"] = nullptr;
  }
  j["undefined_flags"] = flag_names(o.undefined_flags);
  j["n_x86_insns"] = o.n_x86_insns;
  j["n_pixel_insns"] = o.n_pixel_insns;
  j["n_direct_insns"] = o.n_direct_insns;
  j["block_bytes"] = o.block_bytes;
  j["synth_ms"] = o.synth_ms;
  j["verify_ms"] = o.verify_ms;
  j["cegis"] = o.cegis_note;
  return j.dump(pretty ? 1 : -1);
}

}  // namespace glassbox::smt
