#include "services/smt_synthesizer/verify.hpp"

#include <fmt/format.h>

#include <chrono>
#include <unordered_map>
#include <unordered_set>

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

// Every multiplication of two non-constant bit-vectors in `e`, each once (by AST id).
void collect_products(const z3::expr& e, std::unordered_map<unsigned, z3::expr>& out,
                      std::unordered_set<unsigned>& seen) {
  if (!seen.insert(e.id()).second) return;
  if (e.is_app()) {
    for (unsigned i = 0; i < e.num_args(); ++i) collect_products(e.arg(i), out, seen);
    if (e.decl().decl_kind() == Z3_OP_BMUL && e.num_args() == 2 && !e.arg(0).is_numeral() &&
        !e.arg(1).is_numeral()) {
      out.emplace(e.id(), e);
    }
  }
}

}  // namespace

VerifyResult verify_equivalent(const SymState& in, const SymState& spec_out,
                               const SymState& impl_out, uint8_t undefined_flags,
                               unsigned timeout_ms) {
  const auto t0 = std::chrono::steady_clock::now();
  z3::context& ctx = in.mem.ctx();
  VerifyResult out;
  // Outputs that Z3's rewriter brings to the same term are equal for all inputs: only the
  // others go to the solver (a copy loop's memory, written with the same bytes at
  // differently spelled addresses, otherwise costs seconds of bit-blasting).
  std::vector<unsigned> compared;
  z3::expr differs = ctx.bool_val(false);
  for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
    if (r >= pixel::kCf && r <= pixel::kOf && (undefined_flags & (1u << (r - pixel::kCf)))) {
      continue;
    }
    compared.push_back(r);
    z3::expr a = spec_out.regs[r], b = impl_out.regs[r];
    a = a.simplify();
    b = b.simplify();
    if (z3::eq(a, b)) continue;
    differs = differs || a != b;
  }
  z3::expr ma = spec_out.mem, mb = impl_out.mem;
  ma = ma.simplify();
  mb = mb.simplify();
  if (!z3::eq(ma, mb)) differs = differs || ma != mb;

  // First with every product of two non-constants replaced by a fresh variable (the same
  // product on both sides gets the same one): multiplier circuits are what makes
  // bit-blasting slow, and most blocks compute their products the same way on both sides,
  // differing only in how carries and flags around them are spelled. "unsat" there is a
  // proof for the real products too (they are one instance of the variables); otherwise
  // (a counterexample may be spurious, or Z3 ran out of time) the full query decides.
  std::unordered_map<unsigned, z3::expr> products;
  std::unordered_set<unsigned> seen;
  collect_products(differs, products, seen);
  z3::solver s(ctx);
  z3::params p(ctx);
  if (!products.empty()) {
    z3::expr_vector from(ctx), to(ctx);
    unsigned n = 0;
    for (const auto& [id, e] : products) {
      from.push_back(e);
      to.push_back(
          ctx.bv_const(("product_" + std::to_string(n++)).c_str(), e.get_sort().bv_size()));
    }
    z3::solver abstract(ctx);
    p.set("timeout", std::max(1u, timeout_ms / 4));
    abstract.set(p);
    abstract.add(flag_domain(in));
    abstract.add(differs.substitute(from, to));
    if (abstract.check() == z3::unsat) {
      out.verdict = Verdict::kVerified;
      out.ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      return out;
    }
  }
  const double spent =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  p.set("timeout", static_cast<unsigned>(std::max(1.0, timeout_ms - spent)));
  s.set(p);
  s.add(flag_domain(in));
  s.add(differs);
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
