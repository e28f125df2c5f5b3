#include "shared/pixel_isa.hpp"

#include <fmt/format.h>

#include <bit>
#include <charconv>
#include <nlohmann/json.hpp>

namespace glassbox::pixel {
namespace {

struct OpInfo {
  Op op;
  std::string_view name;
  OpShape shape;
};

constexpr OpInfo kOps[kNumOps] = {
    {Op::kLi, "li", {true, 0, true}},        {Op::kMov, "mov", {true, 1, false}},
    {Op::kAdd, "add", {true, 2, false}},     {Op::kSub, "sub", {true, 2, false}},
    {Op::kAnd, "and", {true, 2, false}},     {Op::kOr, "or", {true, 2, false}},
    {Op::kXor, "xor", {true, 2, false}},     {Op::kMul, "mul", {true, 2, false}},
    {Op::kMulhu, "mulhu", {true, 2, false}}, {Op::kMulhs, "mulhs", {true, 2, false}},
    {Op::kShl, "shl", {true, 2, false}},     {Op::kShr, "shr", {true, 2, false}},
    {Op::kSar, "sar", {true, 2, false}},     {Op::kNot, "not", {true, 1, false}},
    {Op::kNeg, "neg", {true, 1, false}},     {Op::kZext, "zext", {true, 1, true}},
    {Op::kSext, "sext", {true, 1, true}},    {Op::kEq, "eq", {true, 2, false}},
    {Op::kNe, "ne", {true, 2, false}},       {Op::kUlt, "ult", {true, 2, false}},
    {Op::kUle, "ule", {true, 2, false}},     {Op::kSlt, "slt", {true, 2, false}},
    {Op::kSle, "sle", {true, 2, false}},     {Op::kSel, "sel", {true, 3, false}},
    {Op::kPar, "par", {true, 1, false}},     {Op::kLd, "ld", {true, 1, true}},
    {Op::kSt, "st", {false, 2, true}},
};

const OpInfo& info(Op op) { return kOps[static_cast<unsigned>(op) % kNumOps]; }

bool valid_ext_width(uint64_t imm) { return imm == 8 || imm == 16 || imm == 32; }
bool valid_mem_size(uint64_t imm) { return imm == 1 || imm == 2 || imm == 4 || imm == 8; }

uint64_t mulh_unsigned(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}
uint64_t mulh_signed(uint64_t a, uint64_t b) {
  const __int128 p = static_cast<__int128>(static_cast<int64_t>(a)) * static_cast<int64_t>(b);
  return static_cast<uint64_t>(static_cast<unsigned __int128>(p) >> 64);
}
uint64_t low_bits(uint64_t v, uint64_t bits) { return bits >= 64 ? v : v & ((1ull << bits) - 1); }
uint64_t sign_extend(uint64_t v, uint64_t bits) {
  const unsigned shift = 64 - static_cast<unsigned>(bits);
  return static_cast<uint64_t>(static_cast<int64_t>(v << shift) >> shift);
}

Result<void> check_insn(const Insn& in, size_t index) {
  if (static_cast<unsigned>(in.op) >= kNumOps) {
    return fail(Errc::kInvalidArgument,
                fmt::format("pixel insn {}: unknown op {}", index, static_cast<unsigned>(in.op)));
  }
  for (uint8_t r : {in.d, in.a, in.b, in.c}) {
    if (r >= kNumRegs) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("pixel insn {} ({}): register r{} (there are r0..r63)", index,
                              op_name(in.op), r));
    }
  }
  if ((in.op == Op::kZext || in.op == Op::kSext) && !valid_ext_width(in.imm)) {
    return fail(Errc::kInvalidArgument,
                fmt::format("pixel insn {} ({}): imm {} (must be 8, 16 or 32)", index,
                            op_name(in.op), in.imm));
  }
  if ((in.op == Op::kLd || in.op == Op::kSt) && !valid_mem_size(in.imm)) {
    return fail(Errc::kInvalidArgument,
                fmt::format("pixel insn {} ({}): imm {} (must be 1, 2, 4 or 8 bytes)", index,
                            op_name(in.op), in.imm));
  }
  return {};
}

}  // namespace

OpShape op_shape(Op op) noexcept { return info(op).shape; }
std::string_view op_name(Op op) noexcept { return info(op).name; }

std::optional<Op> op_from_name(std::string_view name) noexcept {
  for (const auto& o : kOps) {
    if (o.name == name) return o.op;
  }
  return std::nullopt;
}

Result<void> validate(const Program& program) {
  for (size_t i = 0; i < program.insns.size(); ++i) GB_TRY(check_insn(program.insns[i], i));
  return {};
}

std::string to_assembly(const Program& program) {
  std::string out;
  for (const auto& in : program.insns) {
    const auto name = op_name(in.op);
    switch (in.op) {
      case Op::kLi:
        out += fmt::format("{} r{}, {:#x}\n", name, in.d, in.imm);
        break;
      case Op::kLd:
        out += fmt::format("ld r{}, [r{}], {}\n", in.d, in.a, in.imm);
        break;
      case Op::kSt:
        out += fmt::format("st [r{}], r{}, {}\n", in.a, in.b, in.imm);
        break;
      case Op::kZext:
      case Op::kSext:
        out += fmt::format("{} r{}, r{}, {}\n", name, in.d, in.a, in.imm);
        break;
      default: {
        const auto s = op_shape(in.op);
        out += fmt::format("{} r{}, r{}", name, in.d, in.a);
        if (s.n_reg_sources >= 2) out += fmt::format(", r{}", in.b);
        if (s.n_reg_sources >= 3) out += fmt::format(", r{}", in.c);
        out += '\n';
      }
    }
  }
  return out;
}

std::string to_json(const Program& program) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& in : program.insns) {
    nlohmann::json j;
    j["op"] = std::string(op_name(in.op));
    const auto s = op_shape(in.op);
    if (s.writes_d) j["d"] = in.d;
    if (s.n_reg_sources >= 1) j["a"] = in.a;
    if (s.n_reg_sources >= 2) j["b"] = in.b;
    if (s.n_reg_sources >= 3) j["c"] = in.c;
    if (s.uses_imm) j["imm"] = fmt::format("{:#x}", in.imm);
    a.push_back(std::move(j));
  }
  return a.dump();
}

namespace {

Result<uint64_t> parse_imm(const nlohmann::json& v, size_t index) {
  auto bad = [&](const std::string& why) {
    return fail(Errc::kInvalidArgument, fmt::format("pixel insn {}: imm {}", index, why));
  };
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) return static_cast<uint64_t>(v.get<int64_t>());
  if (!v.is_string()) return bad("must be a string (hex or decimal)");
  std::string s = v.get<std::string>();
  bool negative = false;
  if (!s.empty() && s[0] == '-') {
    negative = true;
    s.erase(0, 1);
  }
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.erase(0, 2);
  }
  uint64_t value = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) {
    return bad("'" + v.get<std::string>() + "' is not a 64-bit hex or decimal number");
  }
  return negative ? 0 - value : value;
}

Result<uint8_t> parse_reg(const nlohmann::json& j, const char* field, size_t index) {
  if (!j.contains(field)) return uint8_t{0};
  const auto& v = j[field];
  if (!v.is_number_unsigned() || v.get<uint64_t>() >= kNumRegs) {
    return fail(
        Errc::kInvalidArgument,
        fmt::format("pixel insn {}: field '{}' must be a register number 0..63", index, field));
  }
  return static_cast<uint8_t>(v.get<uint64_t>());
}

}  // namespace

Result<Program> program_from_json(std::string_view text) {
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return fail(Errc::kInvalidArgument, "pixel program: not valid JSON");
  if (doc.is_object()) {
    if (doc.contains("isa") && doc["isa"] != std::string(kIsaName)) {
      return fail(Errc::kInvalidArgument, "pixel program: isa is not " + std::string(kIsaName));
    }
    if (!doc.contains("insns")) return fail(Errc::kInvalidArgument, "pixel program: no insns");
    doc = doc["insns"];
  }
  if (!doc.is_array()) return fail(Errc::kInvalidArgument, "pixel program: insns not an array");
  Program p;
  for (size_t i = 0; i < doc.size(); ++i) {
    const auto& j = doc[i];
    if (!j.is_object() || !j.contains("op") || !j["op"].is_string()) {
      return fail(Errc::kInvalidArgument, fmt::format("pixel insn {}: no \"op\" string", i));
    }
    auto op = op_from_name(j["op"].get<std::string>());
    if (!op) {
      return fail(Errc::kInvalidArgument,
                  fmt::format("pixel insn {}: unknown op '{}'", i, j["op"].get<std::string>()));
    }
    Insn in;
    in.op = *op;
    auto d = parse_reg(j, "d", i);
    auto a = parse_reg(j, "a", i);
    auto b = parse_reg(j, "b", i);
    auto c = parse_reg(j, "c", i);
    for (auto* r : {&d, &a, &b, &c}) {
      if (!*r) return tl::unexpected(r->error());
    }
    in.d = *d;
    in.a = *a;
    in.b = *b;
    in.c = *c;
    if (j.contains("imm")) {
      auto imm = parse_imm(j["imm"], i);
      if (!imm) return tl::unexpected(imm.error());
      in.imm = *imm;
    }
    p.insns.push_back(in);
  }
  GB_TRY(validate(p));
  return p;
}

uint64_t alu(Op op, uint64_t a, uint64_t b, uint64_t c, uint64_t imm) noexcept {
  switch (op) {
    case Op::kLi:
      return imm;
    case Op::kMov:
      return a;
    case Op::kAdd:
      return a + b;
    case Op::kSub:
      return a - b;
    case Op::kAnd:
      return a & b;
    case Op::kOr:
      return a | b;
    case Op::kXor:
      return a ^ b;
    case Op::kMul:
      return a * b;
    case Op::kMulhu:
      return mulh_unsigned(a, b);
    case Op::kMulhs:
      return mulh_signed(a, b);
    case Op::kShl:
      return a << (b & 63);
    case Op::kShr:
      return a >> (b & 63);
    case Op::kSar:
      return static_cast<uint64_t>(static_cast<int64_t>(a) >> (b & 63));
    case Op::kNot:
      return ~a;
    case Op::kNeg:
      return 0 - a;
    case Op::kZext:
      return low_bits(a, imm);
    case Op::kSext:
      return sign_extend(a, imm);
    case Op::kEq:
      return a == b;
    case Op::kNe:
      return a != b;
    case Op::kUlt:
      return a < b;
    case Op::kUle:
      return a <= b;
    case Op::kSlt:
      return static_cast<int64_t>(a) < static_cast<int64_t>(b);
    case Op::kSle:
      return static_cast<int64_t>(a) <= static_cast<int64_t>(b);
    case Op::kSel:
      return c != 0 ? a : b;
    case Op::kPar:
      return (std::popcount(a & 0xff) % 2) == 0;
    case Op::kLd:
    case Op::kSt:
      break;
  }
  return 0;
}

Result<void> run(const Program& program, Registers& r, Memory& memory) {
  for (size_t i = 0; i < program.insns.size(); ++i) {
    const Insn& in = program.insns[i];
    GB_TRY(check_insn(in, i));
    const uint64_t a = r[in.a], b = r[in.b];
    uint64_t v = 0;
    switch (in.op) {
      case Op::kLd:
        if (!memory.load(a, static_cast<unsigned>(in.imm), v)) {
          return fail(
              Errc::kOutOfRange,
              fmt::format("pixel insn {} (ld): load of {} bytes at {:#x} faulted", i, in.imm, a));
        }
        break;
      case Op::kSt:
        if (!memory.store(a, static_cast<unsigned>(in.imm), low_bits(b, in.imm * 8))) {
          return fail(
              Errc::kOutOfRange,
              fmt::format("pixel insn {} (st): store of {} bytes at {:#x} faulted", i, in.imm, a));
        }
        continue;
      default:
        v = alu(in.op, a, b, r[in.c], in.imm);
    }
    r[in.d] = v;
  }
  return {};
}

}  // namespace glassbox::pixel
