#include "services/smt_synthesizer/symbolic.hpp"

namespace glassbox::smt {

SymState fresh_state(z3::context& ctx, const std::string& prefix) {
  std::vector<z3::expr> regs;
  regs.reserve(pixel::kNumStateRegs);
  for (unsigned i = 0; i < pixel::kNumStateRegs; ++i) {
    regs.push_back(ctx.bv_const((prefix + "r" + std::to_string(i)).c_str(), 64));
  }
  z3::expr mem =
      ctx.constant((prefix + "mem").c_str(), ctx.array_sort(ctx.bv_sort(64), ctx.bv_sort(8)));
  return SymState{std::move(regs), mem};
}

z3::expr flag_domain(const SymState& s) {
  z3::context& ctx = s.mem.ctx();
  z3::expr all = ctx.bool_val(true);
  for (unsigned r = pixel::kCf; r <= pixel::kOf; ++r) {
    all = all && z3::ule(s.regs[r], ctx.bv_val(1, 64));
  }
  return all;
}

std::vector<std::string> flag_names(uint8_t mask) {
  static const char* kNames[] = {"CF", "PF", "ZF", "SF", "OF"};
  std::vector<std::string> out;
  for (unsigned i = 0; i < 5; ++i) {
    if (mask & (1u << i)) out.emplace_back(kNames[i]);
  }
  return out;
}

z3::expr load_bytes(const z3::expr& mem, const z3::expr& address, unsigned size_bytes) {
  z3::context& ctx = mem.ctx();
  z3::expr v = z3::select(mem, address);
  for (unsigned i = 1; i < size_bytes; ++i) {
    v = z3::concat(z3::select(mem, address + ctx.bv_val(i, 64)), v);
  }
  return v;
}

z3::expr store_bytes(const z3::expr& mem, const z3::expr& address, const z3::expr& value,
                     unsigned size_bytes) {
  z3::context& ctx = mem.ctx();
  z3::expr m = mem;
  for (unsigned i = 0; i < size_bytes; ++i) {
    m = z3::store(m, address + ctx.bv_val(i, 64), value.extract(8 * i + 7, 8 * i));
  }
  return m;
}

}  // namespace glassbox::smt
