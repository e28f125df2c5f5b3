// CEGIS for Pixel v1 programs: the component-based encoding of Jha, Gulwani, Seshia, Tiwari
// (ICSE 2010) and Gulwani, Jha, Tiwari, Venkatesan (PLDI 2011), with "any-op" components.
//
// Encoding. A program piece of length n has n component slots. Slot i's output location is
// fixed to nin + i (nin = the source locations: input registers and earlier slots), so
// consistency holds by construction and acyclicity is "every operand location < the slot's
// own location"; fixing output locations in slot order loses nothing (a well-formed program
// can be sorted topologically) and breaks the permutation symmetry of free output locations.
// Each slot has an op selector over the component library (the Pixel ALU ops, zext/sext per
// width, li with an existential 64-bit constant), operand location variables a, b, c (the
// connectivity constraints are multiplexers reading the value at a location) and an imm
// variable. All variables are small bit-vectors: every query is QF_BV. Symmetry breaking,
// sound for a shortest piece: unused operands and imm canonical, commutative ops read a <= b,
// every slot is used later, mov only as the output.
//
// Multiple outputs. One query over all outputs grows too fast (measured: rax += rbx with
// rip += 7 took 2-3 s at 64 bits), so outputs are synthesized one after another in register
// order (GPRs, flags, rip), each by its own CEGIS loop over lengths 1, 2, ..., with every slot
// of the earlier outputs as a free source location: components are shared between outputs
// (e.g. ZF reads the slot that computes rax) but the total is not proved minimal. A final
// scheduler writes each output slot into its target register after the last reader of that
// register's input value (extra movs only for cycles such as swaps; counted).
//
// CEGIS. The spec is evaluated on concrete inputs (substitute + simplify); the synthesis
// query asks for slots agreeing on every example, the verification query (pixel_semantics of
// the candidate vs. the spec, all inputs under flag_domain) proves it or returns a
// counterexample, which joins the examples of every later query. kFound programs pass
// verify_equivalent over the whole state. Every Z3 call gets the budget left (a timeout is
// the result kTimeout).
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
      {Op::kLi, 0, 0, false},    {Op::kMov, 0, 1, false},  {Op::kNot, 0, 1, false},
      {Op::kNeg, 0, 1, false},   {Op::kZext, 8, 1, false}, {Op::kZext, 16, 1, false},
      {Op::kZext, 32, 1, false}, {Op::kSext, 8, 1, false}, {Op::kSext, 16, 1, false},
      {Op::kSext, 32, 1, false}, {Op::kPar, 0, 1, false},  {Op::kAdd, 0, 2, true},
      {Op::kSub, 0, 2, false},   {Op::kAnd, 0, 2, true},   {Op::kOr, 0, 2, true},
      {Op::kXor, 0, 2, true},    {Op::kShl, 0, 2, false},  {Op::kShr, 0, 2, false},
      {Op::kSar, 0, 2, false},   {Op::kEq, 0, 2, true},    {Op::kNe, 0, 2, true},
      {Op::kUlt, 0, 2, false},   {Op::kUle, 0, 2, false},  {Op::kSlt, 0, 2, false},
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

  // (bvmul -1 x): how Z3's simplifier writes x - y (as x + -1 * y); not a multiplication.
  static bool is_negation(const z3::expr& e) {
    if (e.num_args() != 2) return false;
    for (unsigned i = 0; i < 2; ++i) {
      const z3::expr a = e.arg(i);
      if (a.is_numeral() && z3::eq((~a).simplify(), a.ctx().bv_val(0, a.get_sort().bv_size()))) {
        return true;
      }
    }
    return false;
  }

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
      if (e.decl().decl_kind() == Z3_OP_BMUL && !is_negation(e)) {
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
  pixel::Registers in{};  // r0..r21 the input, r22.. the prefix's values (see prefix_values)
  std::vector<uint64_t> out;
};

// A synthesized slot: library index, operand locations, constant.
struct Slot {
  unsigned comp = 0, a = 0, b = 0, c = 0;
  uint64_t imm = 0;
};

inline constexpr size_t kInitialExamples = 3;  // initial_examples()

// Memory for the interpreter on examples: the specs CEGIS accepts never touch it.
class NoMemory : public pixel::Memory {
 public:
  bool load(uint64_t, unsigned, uint64_t&) override { return false; }
  bool store(uint64_t, unsigned, uint64_t) override { return false; }
};

class Cegis {
 public:
  Cegis(const SymState& in, const SymState& spec_out, uint8_t undefined_flags,
        const CegisOptions& options)
      : ctx_(in.mem.ctx()),
        in_(in),
        spec_out_(spec_out),
        undefined_flags_(undefined_flags),
        options_(options),
        deadline_(Clock::now() + std::chrono::milliseconds(options.timeout_ms)) {}

  CegisResult run() {
    CegisResult res = search();
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
    const unsigned left = std::min(remaining_ms(deadline_), 200u);
    if (left == 0) return std::nullopt;
    z3::solver s(ctx_);
    set_timeout(ctx_, s, left);
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
    const z3::expr v = targets_expr_[k].substitute(from, values).simplify();
    uint64_t u = 0;
    if (!v.is_numeral_u64(u)) throw std::runtime_error("spec does not evaluate to a constant");
    return u;
  }

  // The prefix's values on an example (r22 + i = prefix slot i); inputs r0..r21 unchanged.
  void prefix_values(Example& ex) const {
    for (unsigned r = pixel::kNumStateRegs; r < pixel::kNumRegs; ++r) ex.in[r] = 0;
    NoMemory mem;
    (void)pixel::run(prefix_, ex.in, mem);  // ALU ops only: cannot fail
  }

  void add_example(const std::array<uint64_t, pixel::kNumStateRegs>& in) {
    Example ex;
    std::copy(in.begin(), in.end(), ex.in.begin());
    z3::expr_vector values(ctx_);
    for (uint64_t v : in) values.push_back(ctx_.bv_val(v, 64));
    for (size_t k = 0; k < targets_.size(); ++k) ex.out.push_back(eval_spec(k, values));
    prefix_values(ex);
    examples_.push_back(std::move(ex));
  }

  // A random input, an input of edge values (0, 1, -1, sign bit, ...), a random small one.
  void initial_examples() {
    std::mt19937_64 rng(0x9e3779b97f4a7c15ull);
    static const uint64_t kEdges[] = {
        0, 1, ~0ull, 0x8000000000000000ull, 0x7fffffffffffffffull, 0x80, 0xff, 2};
    std::array<uint64_t, pixel::kNumStateRegs> a{}, b{}, c{};
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      const bool flag = r >= pixel::kCf && r <= pixel::kOf;
      a[r] = flag ? rng() & 1 : rng();
      b[r] = flag ? (r & 1) : kEdges[r % std::size(kEdges)];
      c[r] = flag ? 1 - a[r] : rng() % 512;
    }
    add_example(a);
    add_example(b);
    add_example(c);
  }

  // ite-chain reading the value at location `loc` among the first n of `vals` (the papers'
  // connectivity constraint, as a multiplexer).
  z3::expr select_loc(const z3::expr& loc, const std::vector<z3::expr>& vals, size_t n) {
    if (n == 0) return ctx_.bv_val(0, 64);  // slot 0 without sources: only li applies
    z3::expr v = vals[n - 1];
    for (size_t j = n - 1; j-- > 0;) v = z3::ite(loc == ctx_.bv_val(j, loc_bits_), vals[j], v);
    return v;
  }

  // The synthesis query: n new slots computing output k on every example, reading
  // sources_ (input registers and earlier slots). sat -> the slots (the last is the output);
  // unsat -> nullopt with *proved_none; unknown -> nullopt with *timed_out.
  std::optional<std::vector<Slot>> synthesize(unsigned n, size_t k, bool* proved_none,
                                              bool* timed_out) {
    *proved_none = *timed_out = false;
    const unsigned nin = static_cast<unsigned>(sources_.size());
    const unsigned L = static_cast<unsigned>(lib_.size());
    unsigned first_unary = L, first_binary = L, first_ternary = L;
    for (unsigned i = L; i-- > 0;) {
      if (lib_[i].arity >= 1) first_unary = i;
      if (lib_[i].arity >= 2) first_binary = i;
      if (lib_[i].arity >= 3) first_ternary = i;
    }
    auto lv = [&](unsigned x) { return ctx_.bv_val(x, loc_bits_); };
    auto ov = [&](unsigned x) { return ctx_.bv_val(x, op_bits_); };

    z3::solver s(ctx_, "QF_BV");
    std::vector<z3::expr> op, la, lb, lc, imm;
    for (unsigned i = 0; i < n; ++i) {
      op.push_back(ctx_.bv_const(fmt::format("cg_op{}", i).c_str(), op_bits_));
      la.push_back(ctx_.bv_const(fmt::format("cg_a{}", i).c_str(), loc_bits_));
      lb.push_back(ctx_.bv_const(fmt::format("cg_b{}", i).c_str(), loc_bits_));
      lc.push_back(ctx_.bv_const(fmt::format("cg_c{}", i).c_str(), loc_bits_));
      imm.push_back(ctx_.bv_const(fmt::format("cg_imm{}", i).c_str(), 64));
    }
    // Well-formedness (acyclicity: operands before the slot), canonical forms, symmetry
    // breaking. Single output: it is the last slot (every slot is used; nothing follows it).
    for (unsigned i = 0; i < n; ++i) {
      const z3::expr own = lv(nin + i);
      s.add(z3::ult(op[i], ov(L)));
      s.add(z3::ite(z3::uge(op[i], ov(first_unary)), z3::ult(la[i], own), la[i] == own));
      s.add(z3::ite(z3::uge(op[i], ov(first_binary)), z3::ult(lb[i], own), lb[i] == own));
      s.add(z3::ite(z3::uge(op[i], ov(first_ternary)), z3::ult(lc[i], own), lc[i] == own));
      s.add(op[i] == ov(0) || imm[i] == ctx_.bv_val(0, 64));  // lib_[0] is li
      z3::expr comm = ctx_.bool_val(false);
      for (unsigned c = 0; c < L; ++c) {
        if (lib_[c].commutative) comm = comm || op[i] == ov(c);
        if (lib_[c].op == Op::kMov && i + 1 < n) s.add(op[i] != ov(c));  // mov: only the output
      }
      s.add(z3::implies(comm, z3::ule(la[i], lb[i])));
      if (i + 1 < n) {
        z3::expr used = ctx_.bool_val(false);
        for (unsigned j = i + 1; j < n; ++j) {
          used = used || la[j] == own || lb[j] == own || lc[j] == own;
        }
        s.add(used);
      }
    }
    // Behaviour on the examples: the initial ones and this output's counterexamples (the
    // others' would only grow the query).
    for (size_t e = 0; e < examples_.size(); ++e) {
      if (e >= kInitialExamples && e < first_own_example_) continue;
      const Example& ex = examples_[e];
      std::vector<z3::expr> vals;
      for (unsigned r : sources_) vals.push_back(ctx_.bv_val(ex.in[r], 64));
      for (unsigned i = 0; i < n; ++i) {
        const size_t avail = vals.size();
        const z3::expr A = select_loc(la[i], vals, avail), B = select_loc(lb[i], vals, avail),
                       C = select_loc(lc[i], vals, avail);
        z3::expr v = imm[i];  // lib_[0] (li); the chain picks the others
        for (unsigned c = L; c-- > 1;) {
          v = z3::ite(op[i] == ov(c), pixel_alu(lib_[c].op, A, B, C, lib_[c].imm), v);
        }
        vals.push_back(v);
      }
      s.add(vals.back() == ctx_.bv_val(ex.out[k], 64));
    }
    const unsigned left = remaining_ms(deadline_);
    if (left == 0) {
      *timed_out = true;
      return std::nullopt;
    }
    set_timeout(ctx_, s, left);
    const z3::check_result cr = s.check();
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
    std::vector<Slot> slots;
    for (unsigned i = 0; i < n; ++i) {
      slots.push_back(Slot{static_cast<unsigned>(u(op[i])), static_cast<unsigned>(u(la[i])),
                           static_cast<unsigned>(u(lb[i])), static_cast<unsigned>(u(lc[i])),
                           u(imm[i])});
    }
    return slots;
  }

  // The slots as instructions appended to the prefix: slot i writes r22 + prefix + i.
  std::vector<pixel::Insn> to_insns(const std::vector<Slot>& slots) const {
    const unsigned nin = static_cast<unsigned>(sources_.size());
    const size_t base = pixel::kFirstScratch + prefix_.insns.size();
    auto at = [&](unsigned loc) {
      return static_cast<uint8_t>(loc < nin ? sources_[loc] : base + (loc - nin));
    };
    std::vector<pixel::Insn> out;
    for (size_t i = 0; i < slots.size(); ++i) {
      const Slot& s = slots[i];
      const Component& c = lib_[s.comp];
      pixel::Insn insn;
      insn.op = c.op;
      insn.d = static_cast<uint8_t>(base + i);
      if (c.arity >= 1) insn.a = at(s.a);
      if (c.arity >= 2) insn.b = at(s.b);
      if (c.arity >= 3) insn.c = at(s.c);
      insn.imm = c.op == Op::kLi ? s.imm : c.imm;
      out.push_back(insn);
    }
    return out;
  }

  // The final program from the prefix (SSA over r22..): each output slot writes its target
  // register directly, scheduled after every reader of that register's input value (a
  // topological order of data and anti dependences). Where those form a cycle (e.g. a swap),
  // an output slot keeps its scratch register and a mov at the end writes the target.
  pixel::Program schedule() const {
    const std::vector<pixel::Insn>& p = prefix_.insns;
    const size_t n = p.size();
    std::vector<int> target_of(n, -1);
    for (size_t k = 0; k < targets_.size(); ++k)
      target_of[out_slot_[k]] = static_cast<int>(targets_[k]);
    auto reads = [&](const pixel::Insn& insn, unsigned r) {
      const unsigned ns = op_shape(insn.op).n_reg_sources;
      return (ns >= 1 && insn.a == r) || (ns >= 2 && insn.b == r) || (ns >= 3 && insn.c == r);
    };
    std::vector<bool> demoted(n, false), done(n, false);
    std::vector<size_t> order;
    while (order.size() < n) {
      bool progress = false;
      for (size_t j = 0; j < n && !progress; ++j) {
        if (done[j]) continue;
        bool ready = true;
        for (size_t i = 0; i < n && ready; ++i) {
          if (done[i] || i == j) continue;
          if (reads(p[j], static_cast<unsigned>(pixel::kFirstScratch + i))) ready = false;  // data
          if (target_of[j] >= 0 && !demoted[j] &&
              reads(p[i], static_cast<unsigned>(target_of[j]))) {
            ready = false;  // anti: i still reads the input that j overwrites
          }
        }
        if (ready) {
          done[j] = true;
          order.push_back(j);
          progress = true;
        }
      }
      if (!progress) {  // a cycle through anti dependences: demote the first pending output
        for (size_t j = 0; j < n; ++j) {
          if (!done[j] && target_of[j] >= 0 && !demoted[j]) {
            demoted[j] = true;
            break;
          }
        }
      }
    }
    auto reg_of = [&](unsigned r) -> uint8_t {
      if (r < pixel::kFirstScratch) return static_cast<uint8_t>(r);
      const size_t i = r - pixel::kFirstScratch;
      return static_cast<uint8_t>(target_of[i] >= 0 && !demoted[i] ? target_of[i] : r);
    };
    pixel::Program out;
    for (size_t j : order) {
      pixel::Insn insn = p[j];
      const unsigned ns = op_shape(insn.op).n_reg_sources;
      insn.d = reg_of(insn.d);
      if (ns >= 1) insn.a = reg_of(insn.a);
      if (ns >= 2) insn.b = reg_of(insn.b);
      if (ns >= 3) insn.c = reg_of(insn.c);
      out.insns.push_back(insn);
    }
    // A constant used only as a shift count is written as its low 6 bits (what shifts read).
    for (auto& insn : out.insns) {
      if (insn.op != Op::kLi || insn.d < pixel::kFirstScratch) continue;
      bool only_counts = true;
      for (const auto& user : out.insns) {
        const unsigned ns = op_shape(user.op).n_reg_sources;
        const bool shift = user.op == Op::kShl || user.op == Op::kShr || user.op == Op::kSar;
        if ((ns >= 1 && user.a == insn.d) || (ns >= 3 && user.c == insn.d) ||
            (ns >= 2 && user.b == insn.d && !shift)) {
          only_counts = false;
        }
      }
      if (only_counts) insn.imm &= 63;
    }
    for (size_t j = 0; j < n; ++j) {
      if (demoted[j]) {
        pixel::Insn mov;
        mov.op = Op::kMov;
        mov.d = static_cast<uint8_t>(target_of[j]);
        mov.a = p[j].d;
        out.insns.push_back(mov);
      }
    }
    return out;
  }

  // CEGIS for output k on top of the prefix: lengths 1.. up to the instructions left.
  // Returns an error result, or nullopt once the output's slots are in the prefix.
  std::optional<CegisResult> synthesize_output(size_t k, unsigned max_len) {
    const unsigned target = targets_[k];
    sources_.clear();
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      if (reads_[k][r]) sources_.push_back(r);
    }
    for (size_t i = 0; i < prefix_.insns.size(); ++i) {
      sources_.push_back(static_cast<unsigned>(pixel::kFirstScratch + i));
    }
    first_own_example_ = examples_.size();
    const size_t left_insns = max_len > prefix_.insns.size() ? max_len - prefix_.insns.size() : 0;
    for (unsigned n = 1; n <= left_insns; ++n) {
      loc_bits_ = 1;
      while ((1u << loc_bits_) <= sources_.size() + n) ++loc_bits_;
      for (const auto& tier : tiers_) {
        lib_ = tier;
        op_bits_ = 1;
        while ((1u << op_bits_) <= lib_.size()) ++op_bits_;
        for (unsigned round = 0; round < options_.max_iterations; ++round) {
          if (remaining_ms(deadline_) == 0) {
            return timeout(fmt::format("output r{}, length {}", target, n));
          }
          ++iterations_;
          bool none = false, timed_out = false;
          const auto slots = synthesize(n, k, &none, &timed_out);
          if (timed_out) return timeout(fmt::format("synthesis of r{}, length {}", target, n));
          if (none) break;  // no program of length n fits the examples
          const std::vector<pixel::Insn> insns = to_insns(*slots);
          pixel::Program cand = prefix_;
          cand.insns.insert(cand.insns.end(), insns.begin(), insns.end());
          pixel::Insn mov;  // exposes the output slot as r[target] to pixel_semantics
          mov.op = Op::kMov;
          mov.d = static_cast<uint8_t>(target);
          mov.a = insns.back().d;
          cand.insns.push_back(mov);
          const z3::expr impl = pixel_semantics(cand, in_).regs[target];
          const unsigned left = remaining_ms(deadline_);
          if (left == 0) return timeout(fmt::format("verification of r{}", target));
          z3::solver s(ctx_);
          set_timeout(ctx_, s, left);
          s.add(flag_domain(in_));
          s.add(targets_expr_[k] != impl);
          const z3::check_result cr = s.check();
          if (cr == z3::unknown) return timeout(fmt::format("verification of r{}", target));
          if (cr == z3::unsat) {
            prefix_.insns.insert(prefix_.insns.end(), insns.begin(), insns.end());
            out_slot_.push_back(prefix_.insns.size() - 1);
            for (Example& ex : examples_) prefix_values(ex);
            return std::nullopt;
          }
          const z3::model m = s.get_model();
          std::array<uint64_t, pixel::kNumStateRegs> cex{};
          for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
            m.eval(in_.regs[r], true).is_numeral_u64(cex[r]);
          }
          add_example(cex);
        }
      }
    }
    return status(
        CegisResult::Status::kNotFound,
        fmt::format("no program of at most {} instructions (output r{})", max_len, target));
  }

  CegisResult search() {
    scan_.reg_of_id.clear();
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) scan_.reg_of_id[in_.regs[r].id()] = r;
    // Outputs to synthesize: the registers the block changes, minus undefined flags, in
    // register order (GPRs, then flags that may reuse their results, then rip).
    for (unsigned r = 0; r < pixel::kNumStateRegs; ++r) {
      if (r >= pixel::kCf && r <= pixel::kOf && (undefined_flags_ & (1u << (r - pixel::kCf)))) {
        continue;
      }
      const z3::expr e = spec_out_.regs[r].simplify();
      const std::optional<bool> id = is_identity(r, e);
      if (!id) return timeout("identity check of r" + std::to_string(r));
      if (*id) continue;
      targets_.push_back(r);
      targets_expr_.push_back(e);
      std::fill(scan_.reads.begin(), scan_.reads.end(), false);
      scan_.seen.clear();
      scan_.visit(e);
      reads_.push_back(scan_.reads);
    }
    if (scan_.other_symbol) {
      return status(CegisResult::Status::kNotFound,
                    "spec reads symbols other than the input registers");
    }
    // The multiplier circuits dominate a query (n = 2 with mul: ~1.5 s, without: ~0.2 s), so
    // specs that multiply try each length without them first.
    tiers_.push_back(make_library(false, false));
    if (scan_.mul) tiers_.push_back(make_library(true, scan_.wide_mul));
    const unsigned max_len =
        std::min<unsigned>(options_.max_insns, pixel::kNumRegs - pixel::kFirstScratch);
    if (targets_.size() > max_len) {
      return status(
          CegisResult::Status::kNotFound,
          fmt::format("{} outputs need more than {} instructions", targets_.size(), max_len));
    }
    try {
      if (!targets_.empty()) initial_examples();
      for (size_t k = 0; k < targets_.size(); ++k) {
        if (auto failed = synthesize_output(k, max_len)) return *failed;
      }
    } catch (const std::runtime_error& e) {
      return status(CegisResult::Status::kNotFound, e.what());
    }
    const pixel::Program prog = schedule();
    if (prog.insns.size() > max_len) {
      return status(CegisResult::Status::kNotFound,
                    fmt::format("{} instructions with the final movs, more than {}",
                                prog.insns.size(), max_len));
    }
    return finish(prog);
  }

  // The final check over the whole state (verify.hpp) before kFound.
  CegisResult finish(const pixel::Program& prog) {
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

  z3::context& ctx_;
  const SymState& in_;
  const SymState& spec_out_;
  const uint8_t undefined_flags_;
  const CegisOptions& options_;
  const Clock::time_point deadline_;
  SpecScan scan_;
  std::vector<unsigned> targets_;              // registers to synthesize, in order
  std::vector<z3::expr> targets_expr_;         // their simplified specs
  std::vector<std::vector<bool>> reads_;       // per target: the input registers it reads
  std::vector<unsigned> sources_;              // the current output's locations 0..nin-1
  pixel::Program prefix_;                      // the outputs so far, slot i writing r22 + i
  std::vector<size_t> out_slot_;               // per synthesized target: its slot in prefix_
  std::vector<std::vector<Component>> tiers_;  // component libraries, tried in order per length
  std::vector<Component> lib_;                 // the current tier
  std::vector<Example> examples_;
  size_t first_own_example_ = 0;  // examples_[kInitialExamples, this) belong to earlier outputs
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
      Cegis cegis(in, spec_out, undefined_flags, options);
      res = cegis.run();
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
