#include "services/smt_synthesizer/synthesize.hpp"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

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

struct BlockSynthesis::State {
  std::vector<uint8_t> bytes;
  uint64_t pc;
  SynthOptions options;
  z3::context ctx;
  std::optional<SymState> in;
  std::optional<LiftResult> lifted;
};

BlockSynthesis::BlockSynthesis(std::span<const uint8_t> bytes, uint64_t pc, SynthOptions options)
    : state_(std::make_unique<State>()) {
  state_->bytes.assign(bytes.begin(), bytes.end());
  state_->pc = pc;
  state_->options = options;
}
BlockSynthesis::~BlockSynthesis() = default;

SynthOutcome BlockSynthesis::direct() {
  State& st = *state_;
  const SynthOptions& options = st.options;
  SynthOutcome out;
  auto block = decode_block(st.bytes, st.pc);
  if (!block) {
    out.status = "unsupported";
    out.reason = block.error().message;
    return out;
  }
  out.n_x86_insns = static_cast<uint32_t>(block->insns.size());
  out.block_bytes = block->size_bytes;
  st.in = fresh_state(st.ctx);
  const SymState& in = *st.in;
  st.lifted = lift_block(st.ctx, *block, in, st.bytes);
  const LiftResult& lifted = *st.lifted;
  if (!lifted.supported) {
    out.status = "unsupported";
    out.reason = lifted.reason;
    return out;
  }
  out.undefined_flags = lifted.undefined_flags;

  const auto t_synth = Clock::now();
  const DirectResult direct = translate_direct(*block);
  out.synth_ms = ms_since(t_synth);
  if (!direct.supported) {
    out.status = "unsupported";
    out.reason = "direct translation: " + direct.reason;
    return out;
  }
  out.n_direct_insns = static_cast<uint32_t>(direct.program.insns.size());
  const VerifyResult proof = verify_equivalent(in, lifted.out, pixel_semantics(direct.program, in),
                                               lifted.undefined_flags, options.verify_timeout_ms);
  out.verify_ms = proof.ms;
  if (proof.verdict != Verdict::kVerified) {
    out.status = proof.verdict == Verdict::kTimeout ? "timeout" : "failed";
    out.reason = proof.verdict == Verdict::kTimeout
                     ? fmt::format("z3 did not prove the direct translation within {} ms ({})",
                                   options.verify_timeout_ms, proof.detail)
                     : "counterexample to the direct translation: " + proof.detail;
    return out;
  }
  out.status = "verified";
  out.method = "direct";
  out.program = direct.program;
  out.n_pixel_insns = static_cast<uint32_t>(out.program.insns.size());
  out.cegis_note = "not tried";
  return out;
}

bool BlockSynthesis::improve(SynthOutcome& out) {
  State& st = *state_;
  const SynthOptions& options = st.options;
  if (out.status != "verified" || !st.lifted || !st.in) return false;
  const unsigned budget = out.n_direct_insns == 0
                              ? 0
                              : std::min<unsigned>(options.cegis_max_insns, out.n_direct_insns - 1);
  if (options.cegis_timeout_ms == 0 || budget == 0) {
    out.cegis_note = "not tried";
    return false;
  }
  const SymState& in = *st.in;
  const LiftResult& lifted = *st.lifted;
  CegisOptions co;
  co.max_insns = budget;
  co.timeout_ms = options.cegis_timeout_ms;
  const auto t_cegis = Clock::now();
  const CegisResult c =
      synthesize_cegis(in, lifted.out, lifted.undefined_flags, lifted.touches_memory, co);
  out.synth_ms += ms_since(t_cegis);
  switch (c.status) {
    case CegisResult::Status::kFound: {
      // CEGIS proves its result; prove it again here, against the same spec, independently
      // of how CEGIS got there.
      const VerifyResult again =
          verify_equivalent(in, lifted.out, pixel_semantics(c.program, in), lifted.undefined_flags,
                            options.verify_timeout_ms);
      if (again.verdict == Verdict::kVerified &&
          c.program.insns.size() < out.program.insns.size()) {
        out.program = c.program;
        out.method = "cegis";
        out.verify_ms = again.ms;
        out.n_pixel_insns = static_cast<uint32_t>(out.program.insns.size());
        out.cegis_note =
            fmt::format("found {} insns in {} rounds", c.program.insns.size(), c.iterations);
        return true;
      }
      out.cegis_note = again.verdict == Verdict::kVerified
                           ? "found nothing shorter"
                           : "its program failed the final proof: " + again.detail;
      return false;
    }
    case CegisResult::Status::kNotFound:
      out.cegis_note = "nothing shorter: " + c.reason;
      return false;
    case CegisResult::Status::kTimeout:
      out.cegis_note = "timeout: " + c.reason;
      return false;
    case CegisResult::Status::kSkipped:
      out.cegis_note = "skipped: " + c.reason;
      return false;
  }
  return false;
}

SynthOutcome synthesize_block(std::span<const uint8_t> bytes, uint64_t pc,
                              const SynthOptions& options) {
  BlockSynthesis job(bytes, pc, options);
  SynthOutcome out = job.direct();
  if (out.status == "verified") job.improve(out);
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
