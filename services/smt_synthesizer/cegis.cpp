// CEGIS for Pixel v1 programs: the component-based encoding of Jha, Gulwani, Seshia, Tiwari
// (ICSE 2010) and Gulwani, Jha, Tiwari, Venkatesan (PLDI 2011), with "any-op" components.
//
// Encoding. A program of length n has n component slots. Slot i's output location is fixed
// to nin + i (nin = the inputs the spec reads), so consistency holds by construction and
// acyclicity is "every operand location < the slot's own location"; fixing the output
// locations in slot order loses nothing (any well-formed program can be sorted
// topologically) and breaks the permutation symmetry of the papers' free output locations.
// Each slot has an op selector over the component library (the Pixel ALU ops, zext/sext per
// width, li with an existential 64-bit constant), operand location variables a, b, c
// (the connectivity constraints are the ite-chains that read the value at a location) and
// one imm variable. Each output k to synthesize has a location variable o_k over the slots
// (pairwise distinct). All variables are small bit-vectors, so every query is QF_BV.
// Extra constraints, all sound for "a shortest program":
//   - unused operands and imm are canonical (operand = own location, imm = 0);
//   - commutative ops read a <= b;
//   - every slot is used by a later slot or is an output; mov is only an output;
//   - register allocation is honest: slot o_k writes its target register T directly, so no
//     slot after o_k may read input T (the papers' programs have no
//     registers; this makes the slot count the Pixel program's length, no fix-up movs).
// The spec is evaluated on concrete example inputs (substitute + simplify), the synthesis
// query asks for a program agreeing on all examples, the verification query (pixel_semantics
// of the candidate vs. the spec, for all inputs under flag_domain) returns a counterexample
// or proves it; the examples carry over from one length to the next.
#include "services/smt_synthesizer/cegis.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "services/smt_synthesizer/pixel_z3.hpp"
#include "services/smt_synthesizer/verify.hpp"

namespace glassbox::smt {
namespace {

using pixel::Op;
using Clock = std::chrono::steady_clock;

// One library component: a Pixel op with a fixed immediate (zext/sext width) and its arity.
struct Component {
  Op op;
  uint64_t imm;
  unsigned arity;  // reg sources: a, then b, then c (li: 0, its imm is a synthesized constant)
  bool commutative;
};

// The library, ordered by arity (the selectors' "uses operand x" tests are range tests).
// mul is offered when the spec multiplies, mulhu/mulhs when it multiplies wider than 64
// bits: they are the expensive circuits of the synthesis query.
std::vector<Component> make_library(bool with_mul, bool with_mulh) {
  std::vector<Component> lib = {
      {Op::kLi, 0, 0, false},    {Op::kMov, 0, 1, false},   {Op::kNot, 0, 1, false},
      {Op::kNeg, 0, 1, false},   {Op::kZext, 8, 1, false},  {Op::kZext, 16, 1, false},
      {Op::kZext, 32, 1, false}, {Op::kSext, 8, 1, false},  {Op::kSext, 16, 1, false},
      {Op::kSext, 32, 1, false}, {Op::kPar, 0, 1, false},   {Op::kAdd, 0, 2, true},
      {Op::kSub, 0, 2, false},   {Op::kAnd, 0, 2, true},    {Op::kOr, 0, 2, true},
      {Op::kXor, 0, 2, true},    {Op::kShl, 0, 2, false},   {Op::kShr, 0, 2, false},
      {Op::kSar, 0, 2, false},   {Op::kEq, 0, 2, true},     {Op::kNe, 0, 2, true},
      {Op::kUlt, 0, 2, false},   {Op::kUle, 0, 2, false},   {Op::kSlt, 0, 2, false},
      {Op::kSle, 0, 2, false},
  };
  if (with_mul) lib.push_back({Op::kMul, 0, 2, true});
  if (with_mulh) {
    lib.push_back({Op::kMulhu, 0, 2, true});
    lib.push_back({Op::kMulhs, 0, 2, true});
  }
  lib.push_back({Op::kSel, 0, 3, false});
  return lib;
}

// Milliseconds left before `deadline` (0 when passed).
unsigned remaining_ms(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<unsigned>(left) : 0u;
}

void set_timeout(z3::context& ctx, z3::solver& s, unsigned ms) {
  z3::params p(ctx);
  p.set("timeout", std::max(1u, ms));
  s.set(p);
}

// Walks `e` (a DAG, each node once): the state registers it reads (by AST id of in.regs),
// whether it reads any other symbol, and its multiplications.
struct SpecScan {
  std::unordered_map<unsigned, unsigned> reg_of_id;
  std::unordered_set<unsigned> seen;
  std::vector<bool> reads = std::vector<bool>(pixel::kNumStateRegs, false);
  bool other_symbol = false, mul = false, wide_mul = false;

  void visit(const z3::expr& e) {
    if (!seen.insert(e.id()).second) return;
    if (e.is_const() && !e.is_numeral()) {
      auto it = reg_of_id.find(e.id());
      if (it != reg_of_id.end()) {
        reads[it->second] = true;
      } else {
        other_symbol = true;
      }
      return;
    }
    if (e.is_app()) {
      if (e.decl().decl_kind() == Z3_OP_BMUL) {
        mul = true;
        if (e.get_sort().is_bv() && e.get_sort().bv_size() > 64) wide_mul = true;
      }
      for (unsigned i = 0; i < e.num_args(); ++i) visit(e.arg(i));
    } else {
      other_symbol = true;  // quantifiers, variables: not a register function
    }
  }
};

// One concrete input (r0..r21, flags 0/1) and the spec's value of each synthesized output.
struct Example {
  std::array<uint64_t, pixel::kNumStateRegs> in{};
  std::vector<uint64_t> out;
};

// A synthesized slot: library index, operand locations, constant.
struct Slot {
  unsigned comp = 0, a = 0, b = 0, c = 0;
  uint64_t imm = 0;
};

struct Candidate {
  std::vector<Slot> slots;
  std::vector<unsigned> out_slot;  // per output: the slot that computes it
};

class Cegis {
 public:
  Cegis(const SymState& in, const SymState& spec_out, const CegisOptions& options)
      : ctx_(in.mem.ctx()),
        in_(in),
        spec_out_(spec_out),
        options_(options),
        deadline_(Clock::now() + std::chrono::milliseconds(options.timeout_ms)) {}

  CegisResult run(uint8_t undefined_flags) {
    CegisResult res = search(undefined_flags);
    res.iterations = iterations_;
    return res;
  }

 private:
  CegisResult status(CegisResult::Status s, std::string reason) {
    CegisResult r;
    r.status = s;
    r.reason = std::move(reason);
    return r;
  }
  CegisResult timeout(const std::string& where) {
    return status(CegisResult::Status::kTimeout,
                  fmt::format("timeout after {} ms ({})", options_.timeout_ms, where));
  }

  // True when spec_out[r] is the identity on in[r] (syntactically, or proved quickly).
  // nullopt: undecided within the budget.
  std::optional<bool> is_identity(unsigned r, const z3::expr& simplified) {
    if (z3::eq(simplified, in_.regs[r])) return true;
    z3::solver s(ctx_);
    set_timeout(ctx_, s, std::min(remaining_ms(deadline_), 200u));
    s.add(flag_domain(in_));
    s.add(simplified != in_.regs[r]);
    const z3::check_result cr = s.check();
    if (cr == z3::unsat) return true;
    if (cr == z3::sat) return false;
    return std::nullopt;
  }

  uint64_t eval_spec(size_t k, const z3::expr_vector& values) {
    z3::expr_vector from(ctx_);
    for (const auto& r : in_.regs) from.push_back(r);
    z3::expr v = targets_expr_[k];
    v = v.substitute(from, values).simplify();
    uint64_t u = 0;
    if (!v.is_numeral_u64(u)) throw std::runtime_error("spec does not evaluate to a constant");
    return u;
  }

  void add_example(const std::array<uint64_t, pixel::kNumStateRegs>& in) {
    Example ex;
    ex.in = in;
    z3::expr_vector values(ctx_);
    for (uint64_t v : in) values.push_back(ctx_.bv_val(v, 64));
    for (size_t k = 0; k < targets_.size(); ++k) ex.out.push_back(eval_spec(k, values));
    examples_.push_back(std::move(ex));
  }

  void initial_examples() {
    std::mt19937_64 rng(0x9e3779b97f4a7c15ull);
    static const uint64_t kEdges[] = {0,    1, ~0ull, 0x8000000000000000ull, 0x7fffffffffffffffull,
                                      0x80, 0xff, 2};
    std::array<uint64_t, pixel::kNumStateRegs> a{}, b{}, c{};
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      const bool flag = r >= pixel::kCf && r <= pixel::kOf;
      a[r] = flag ? rng() & 1 : rng();
      b[r] = flag ? (r & 1) : kEdges[r % std::size(kEdges)];
      c[r] = flag ? 1 - a[r] : rng() % 512;
    }
    add_example(a);
    int nex = getenv("CEGIS_NEX") ? atoi(getenv("CEGIS_NEX")) : 3;
    if (nex > 1) add_example(b);
    if (nex > 2) add_example(c);
  }

  // ite-chain reading the value at location `loc` among `vals` (the connectivity constraint).
  z3::expr select_loc(const z3::expr& loc, const std::vector<z3::expr>& vals, size_t n) {
    if (n == 0) return ctx_.bv_val(0, 64);  // slot 0 without inputs: only li applies
    z3::expr v = vals[n - 1];
    for (size_t j = n - 1; j-- > 0;) v = z3::ite(loc == ctx_.bv_val(j, loc_bits_), vals[j], v);
    return v;
  }

  z3::expr op_in(const z3::expr& op, unsigned lo, unsigned hi) {  // lo <= op < hi
    z3::expr r = ctx_.bool_val(false);
    if (lo < hi) r = z3::uge(op, ctx_.bv_val(lo, op_bits_)) && z3::ult(op, ctx_.bv_val(hi, op_bits_));
    return r;
  }

  // The synthesis query for length n over the examples. sat -> candidate; unsat -> nullopt
  // with *proved_none; unknown -> nullopt with *timed_out.
  std::optional<Candidate> synthesize(unsigned n, bool* proved_none, bool* timed_out) {
    *proved_none = *timed_out = false;
    const unsigned nin = static_cast<unsigned>(inputs_.size());
    const unsigned L = static_cast<unsigned>(lib_.size());
    unsigned first_unary = L, first_binary = L, first_ternary = L;
    for (unsigned i = L; i-- > 0;) {
      if (lib_[i].arity >= 1) first_unary = i;
      if (lib_[i].arity >= 2) first_binary = i;
      if (lib_[i].arity >= 3) first_ternary = i;
    }
    auto lv = [&](unsigned x) { return ctx_.bv_val(x, loc_bits_); };

    z3::solver s(ctx_, "QF_BV");
    std::vector<z3::expr> op, la, lb, lc, imm, out;
    for (unsigned i = 0; i < n; ++i) {
      op.push_back(ctx_.bv_const(fmt::format("cg_op{}", i).c_str(), op_bits_));
      la.push_back(ctx_.bv_const(fmt::format("cg_a{}", i).c_str(), loc_bits_));
      lb.push_back(ctx_.bv_const(fmt::format("cg_b{}", i).c_str(), loc_bits_));
      lc.push_back(ctx_.bv_const(fmt::format("cg_c{}", i).c_str(), loc_bits_));
      imm.push_back(ctx_.bv_const(fmt::format("cg_imm{}", i).c_str(), 64));
    }
    for (size_t k = 0; k < targets_.size(); ++k) {
      out.push_back(ctx_.bv_const(fmt::format("cg_out{}", k).c_str(), loc_bits_));
      s.add(z3::uge(out[k], lv(nin)) && z3::ult(out[k], lv(nin + n)));
      for (size_t k2 = 0; k2 < k; ++k2) s.add(out[k] != out[k2]);
    }
    auto is_output = [&](unsigned i) {
      z3::expr r = ctx_.bool_val(false);
      for (const auto& o : out) r = r || o == lv(nin + i);
      return r;
    };
    // Well-formedness, canonical forms, symmetry breaking.
    for (unsigned i = 0; i < n; ++i) {
      const z3::expr own = lv(nin + i);
      s.add(z3::ult(op[i], ctx_.bv_val(L, op_bits_)));
      const z3::expr uses_a = z3::uge(op[i], ctx_.bv_val(first_unary, op_bits_));
      const z3::expr uses_b = z3::uge(op[i], ctx_.bv_val(first_binary, op_bits_));
      const z3::expr uses_c = z3::uge(op[i], ctx_.bv_val(first_ternary, op_bits_));
      s.add(z3::ite(uses_a, z3::ult(la[i], own), la[i] == own));
      s.add(z3::ite(uses_b, z3::ult(lb[i], own), lb[i] == own));
      s.add(z3::ite(uses_c, z3::ult(lc[i], own), lc[i] == own));
      s.add(op[i] == ctx_.bv_val(0, op_bits_) || imm[i] == ctx_.bv_val(0, 64));  // lib_[0] is li
      z3::expr comm = ctx_.bool_val(false);
      for (unsigned c = 0; c < L; ++c) {
        if (lib_[c].commutative) comm = comm || op[i] == ctx_.bv_val(c, op_bits_);
        if (lib_[c].op == Op::kMov) s.add(z3::implies(op[i] == ctx_.bv_val(c, op_bits_), is_output(i)));
      }
      s.add(z3::implies(comm, z3::ule(la[i], lb[i])));
      // Used later or an output.
      z3::expr used = is_output(i);
      for (unsigned j = i + 1; j < n; ++j) used = used || la[j] == own || lb[j] == own || lc[j] == own;
      s.add(used);
      // Honest register allocation: input T is not read after T's output slot wrote it.
      for (size_t k = 0; k < targets_.size(); ++k) {
        auto pos = std::find(inputs_.begin(), inputs_.end(), targets_[k]);
        if (pos == inputs_.end()) continue;
        const z3::expr t = lv(static_cast<unsigned>(pos - inputs_.begin()));
        s.add(z3::implies(la[i] == t || lb[i] == t || lc[i] == t, z3::uge(out[k], own)));
      }
    }
    // Behaviour on the examples.
    for (const Example& ex : examples_) {
      std::vector<z3::expr> vals;
      for (unsigned r : inputs_) vals.push_back(ctx_.bv_val(ex.in[r], 64));
      for (unsigned i = 0; i < n; ++i) {
        const size_t avail = vals.size();
        const z3::expr A = select_loc(la[i], vals, avail), B = select_loc(lb[i], vals, avail),
                       C = select_loc(lc[i], vals, avail);
        z3::expr v = imm[i];  // lib_[0] (li); the chain below picks the others
        for (unsigned c = L; c-- > 1;) {
          v = z3::ite(op[i] == ctx_.bv_val(c, op_bits_),
                      pixel_alu(lib_[c].op, A, B, C, lib_[c].imm), v);
        }
        vals.push_back(v);
      }
      for (size_t k = 0; k < targets_.size(); ++k) {
        const z3::expr want = ctx_.bv_val(ex.out[k], 64);
        for (unsigned i = 0; i < n; ++i) {
          s.add(z3::implies(out[k] == lv(nin + i), vals[nin + i] == want));
        }
      }
    }
    const unsigned left = remaining_ms(deadline_);
    if (left == 0) {
      *timed_out = true;
      return std::nullopt;
    }
    set_timeout(ctx_, s, left);
    auto tq = Clock::now();
    if (getenv("CEGIS_DUMP")) { static int q = 0; FILE* f = fopen(fmt::format("/tmp/cegisq/q{}_n{}.smt2", q++, n).c_str(), "w"); if (f) { fputs(s.to_smt2().c_str(), f); fclose(f);} }
    const z3::check_result cr = s.check();
    if (getenv("CEGIS_DEBUG")) fprintf(stderr, "synth n=%u ex=%zu res=%d %.1f ms\n", n, examples_.size(), (int)cr, std::chrono::duration<double, std::milli>(Clock::now() - tq).count());
    if (cr == z3::unsat) {
      *proved_none = true;
      return std::nullopt;
    }
    if (cr == z3::unknown) {
      *timed_out = true;
      return std::nullopt;
    }
    const z3::model m = s.get_model();
    auto u = [&](const z3::expr& e) {
      uint64_t x = 0;
      m.eval(e, true).is_numeral_u64(x);
      return x;
    };
    Candidate cand;
    for (unsigned i = 0; i < n; ++i) {
      cand.slots.push_back(Slot{static_cast<unsigned>(u(op[i])), static_cast<unsigned>(u(la[i])),
                                static_cast<unsigned>(u(lb[i])), static_cast<unsigned>(u(lc[i])),
                                u(imm[i])});
    }
    for (const auto& o : out) cand.out_slot.push_back(static_cast<unsigned>(u(o)) - nin);
    return cand;
  }

  // The Pixel program of a candidate: an output slot writes its target register, the others
  // r22 + i (the synthesis constraints make that allocation clobber nothing still read).
  pixel::Program to_program(const Candidate& cand) const {
    const unsigned nin = static_cast<unsigned>(inputs_.size());
    std::vector<uint8_t> reg(cand.slots.size());
    for (size_t i = 0; i < reg.size(); ++i) reg[i] = static_cast<uint8_t>(pixel::kFirstScratch + i);
    for (size_t k = 0; k < targets_.size(); ++k) reg[cand.out_slot[k]] = static_cast<uint8_t>(targets_[k]);
    auto at = [&](unsigned loc) {
      return loc < nin ? static_cast<uint8_t>(inputs_[loc]) : reg[loc - nin];
    };
    pixel::Program p;
    for (size_t i = 0; i < cand.slots.size(); ++i) {
      const Slot& s = cand.slots[i];
      const Component& c = lib_[s.comp];
      pixel::Insn insn;
      insn.op = c.op;
      insn.d = reg[i];
      if (c.arity >= 1) insn.a = at(s.a);
      if (c.arity >= 2) insn.b = at(s.b);
      if (c.arity >= 3) insn.c = at(s.c);
      insn.imm = c.op == Op::kLi ? s.imm : c.imm;
      p.insns.push_back(insn);
    }
    return p;
  }

  CegisResult search(uint8_t undefined_flags) {
    reg_scan_.reg_of_id.clear();
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) reg_scan_.reg_of_id[in_.regs[r].id()] = r;
    // Outputs to synthesize: the registers the block changes, minus undefined flags.
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      if (r >= pixel::kCf && r <= pixel::kOf && (undefined_flags & (1u << (r - pixel::kCf)))) {
        continue;
      }
      const z3::expr e = spec_out_.regs[r].simplify();
      const std::optional<bool> id = is_identity(r, e);
      if (!id) return timeout("identity check of r" + std::to_string(r));
      if (*id) continue;
      targets_.push_back(r);
      targets_expr_.push_back(e);
      reg_scan_.visit(e);
    }
    if (reg_scan_.other_symbol) {
      return status(CegisResult::Status::kNotFound,
                    "spec reads symbols other than the input registers");
    }
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      if (reg_scan_.reads[r]) inputs_.push_back(r);
    }
    lib_ = make_library(reg_scan_.mul, reg_scan_.wide_mul);
    if (getenv("CEGIS_SMALL")) lib_ = {{Op::kLi, 0, 0, false}, {Op::kMov, 0, 1, false}, {Op::kAdd, 0, 2, true}, {Op::kSub, 0, 2, false}, {Op::kEq, 0, 2, true}};
    op_bits_ = 1;
    while ((1u << op_bits_) <= lib_.size()) ++op_bits_;

    const unsigned max_len =
        std::min<unsigned>(options_.max_insns, pixel::kNumRegs - pixel::kFirstScratch);
    if (targets_.empty()) return finish(Candidate{});  // nothing changes: the empty program
    if (targets_.size() > max_len) {
      return status(CegisResult::Status::kNotFound,
                    fmt::format("{} outputs need more than {} instructions", targets_.size(),
                                max_len));
    }
    try {
      initial_examples();
    } catch (const std::exception& e) {
      return status(CegisResult::Status::kNotFound, e.what());
    }
    bool capped = false;
    for (unsigned n = static_cast<unsigned>(targets_.size()); n <= max_len; ++n) {
      loc_bits_ = 1;
      while ((1u << loc_bits_) < inputs_.size() + n + 1) ++loc_bits_;
      for (unsigned round = 0;; ++round) {
        if (round >= options_.max_iterations) {
          capped = true;
          break;
        }
        if (remaining_ms(deadline_) == 0) return timeout(fmt::format("length {}", n));
        ++iterations_;
        bool none = false, timed_out = false;
        const std::optional<Candidate> cand = synthesize(n, &none, &timed_out);
        if (timed_out) return timeout(fmt::format("synthesis at length {}", n));
        if (none) break;  // no program of length n fits the examples
        const pixel::Program prog = to_program(*cand);
        const SymState impl = pixel_semantics(prog, in_);
        z3::solver s(ctx_);
        const unsigned left = remaining_ms(deadline_);
        if (left == 0) return timeout(fmt::format("verification at length {}", n));
        set_timeout(ctx_, s, left);
        s.add(flag_domain(in_));
        z3::expr differs = ctx_.bool_val(false);
        for (size_t k = 0; k < targets_.size(); ++k) {
          differs = differs || targets_expr_[k] != impl.regs[targets_[k]];
        }
        s.add(differs);
        const z3::check_result cr = s.check();
        if (cr == z3::unknown) return timeout(fmt::format("verification at length {}", n));
        if (cr == z3::unsat) return finish(*cand);
        const z3::model m = s.get_model();
        std::array<uint64_t, pixel::kNumStateRegs> cex{};
        for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
          m.eval(in_.regs[r], true).is_numeral_u64(cex[r]);
        }
        try {
          add_example(cex);
        } catch (const std::exception& e) {
          return status(CegisResult::Status::kNotFound, e.what());
        }
      }
    }
    return status(CegisResult::Status::kNotFound,
                  fmt::format("no program of {} to {} instructions{}", targets_.size(), max_len,
                              capped ? " (some lengths hit the iteration cap)" : ""));
  }

  // The final check over the whole state (verify.hpp) before kFound.
  CegisResult finish(const Candidate& cand) {
    const pixel::Program prog = to_program(cand);
    const unsigned left = remaining_ms(deadline_);
    if (left == 0) return timeout("final check");
    const VerifyResult v =
        verify_equivalent(in_, spec_out_, pixel_semantics(prog, in_), undefined_flags_, left);
    if (v.verdict == Verdict::kTimeout) return timeout("final check: " + v.detail);
    if (v.verdict == Verdict::kCounterexample) {
      return status(CegisResult::Status::kNotFound, "final check failed: " + v.detail);
    }
    CegisResult r;
    r.status = CegisResult::Status::kFound;
    r.program = prog;
    return r;
  }

 public:
  uint8_t undefined_flags_ = 0;

 private:
  z3::context& ctx_;
  const SymState& in_;
  const SymState& spec_out_;
  const CegisOptions& options_;
  const Clock::time_point deadline_;
  SpecScan reg_scan_;
  std::vector<unsigned> targets_;    // registers to synthesize
  std::vector<z3::expr> targets_expr_;  // their simplified specs
  std::vector<unsigned> inputs_;     // registers the specs read (the input locations)
  std::vector<Component> lib_;
  std::vector<Example> examples_;
  unsigned op_bits_ = 5, loc_bits_ = 6, iterations_ = 0;
};

}  // namespace

CegisResult synthesize_cegis(const SymState& in, const SymState& spec_out, uint8_t undefined_flags,
                             bool touches_memory, const CegisOptions& options) {
  const auto t0 = Clock::now();
  CegisResult res;
  if (touches_memory) {
    res.status = CegisResult::Status::kSkipped;
    res.reason = "block touches memory";
  } else {
    try {
      Cegis cegis(in, spec_out, options);
      cegis.undefined_flags_ = undefined_flags;
      res = cegis.run(undefined_flags);
    } catch (const z3::exception& e) {
      res = CegisResult{};
      res.status = CegisResult::Status::kNotFound;
      res.reason = std::string("z3: ") + e.msg();
    }
  }
  res.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  return res;
}

}  // namespace glassbox::smt
