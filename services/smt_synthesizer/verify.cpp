#include "services/smt_synthesizer/verify.hpp"

#include <fmt/format.h>

#include <chrono>

namespace glassbox::smt {
namespace {

const char* kRegNames[pixel::kNumStateRegs] = {
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10",
    "r11", "r12", "r13", "r14", "r15", "CF",  "PF",  "ZF",  "SF", "OF", "rip"};

std::string value_of(const z3::model& m, const z3::expr& e) {
  z3::expr v = m.eval(e, true);
  uint64_t u = 0;
  if (v.is_numeral_u64(u)) return fmt::format("{:#x}", u);
  return v.to_string();
}

}  // namespace

VerifyResult verify_equivalent(const SymState& in, const SymState& spec_out,
                               const SymState& impl_out, uint8_t undefined_flags,
                               unsigned timeout_ms) {
  const auto t0 = std::chrono::steady_clock::now();
  z3::context& ctx = in.mem.ctx();
  VerifyResult out;
  z3::solver s(ctx);
  z3::params p(ctx);
  p.set("timeout", timeout_ms);
  s.set(p);
  std::vector<unsigned> compared;
  z3::expr differs = ctx.bool_val(false);
  for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
    if (r >= pixel::kCf && r <= pixel::kOf && (undefined_flags & (1u << (r - pixel::kCf)))) {
      continue;
    }
    compared.push_back(r);
    differs = differs || spec_out.regs[r] != impl_out.regs[r];
  }
  const z3::expr mem_differs = spec_out.mem != impl_out.mem;
  s.add(flag_domain(in));
  s.add(differs || mem_differs);
  const z3::check_result res = s.check();
  out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (res == z3::unsat) {
    out.verdict = Verdict::kVerified;
    return out;
  }
  if (res == z3::unknown) {
    out.verdict = Verdict::kTimeout;
    out.detail = "z3: " + s.reason_unknown();
    return out;
  }
  out.verdict = Verdict::kCounterexample;
  const z3::model m = s.get_model();
  std::string what;
  for (unsigned r : compared) {
    const std::string x = value_of(m, spec_out.regs[r]), y = value_of(m, impl_out.regs[r]);
    if (x != y) {
      what = fmt::format("r{} ({}): x86 {}, pixel {}", r, kRegNames[r], x, y);
      break;
    }
  }
  if (what.empty()) what = "memory differs";
  std::string inputs;
  for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
    inputs += fmt::format(" r{}={}", r, value_of(m, in.regs[r]));
  }
  out.detail = what + "; with" + inputs;
  return out;
}

}  // namespace glassbox::smt
