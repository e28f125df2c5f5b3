#include "services/vm_supervisor/cpu_state.hpp"

#include <charconv>
#include <optional>
#include <string>

namespace glassbox::vm_supervisor {
namespace {

// The hex value after "KEY=" in `line` (KEY at a word start), or nullopt when absent.
// Errors: kProtocol when present but malformed.
Result<std::optional<uint64_t>> hex_field(std::string_view line, std::string_view key) {
  for (size_t pos = line.find(key); pos != std::string_view::npos; pos = line.find(key, pos + 1)) {
    if (pos > 0 && line[pos - 1] != ' ') continue;
    const size_t start = pos + key.size();
    size_t end = start;
    while (end < line.size() && std::isxdigit(static_cast<unsigned char>(line[end]))) ++end;
    if (end == start || end - start > 16 || (end < line.size() && line[end] != ' ')) {
      return fail(Errc::kProtocol, "info registers: malformed " + std::string(key) + " in '" +
                                       std::string(line.substr(0, 120)) + "'");
    }
    uint64_t v = 0;
    std::from_chars(line.data() + start, line.data() + end, v, 16);
    return std::optional<uint64_t>(v);
  }
  return std::optional<uint64_t>();
}

}  // namespace

Result<std::vector<VcpuRegisters>> parse_info_registers(std::string_view text) {
  if (text.size() > kMaxRegistersText) {
    return fail(Errc::kInvalidArgument, "info registers: output larger than 4 MiB");
  }
  std::vector<VcpuRegisters> out;
  std::vector<bool> have_pc, have_cr3;
  size_t line_start = 0;
  while (line_start < text.size()) {
    size_t nl = text.find('\n', line_start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(line_start, nl - line_start);
    line_start = nl + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.rfind("CPU#", 0) == 0) {
      uint32_t idx = 0;
      auto [p, ec] = std::from_chars(line.data() + 4, line.data() + line.size(), idx);
      if (ec != std::errc() || p == line.data() + 4) {
        return fail(Errc::kProtocol,
                    "info registers: bad vCPU header '" + std::string(line.substr(0, 40)) + "'");
      }
      if (out.size() >= kMaxVcpus) return fail(Errc::kProtocol, "info registers: too many vCPUs");
      out.push_back(VcpuRegisters{});
      out.back().index = idx;
      have_pc.push_back(false);
      have_cr3.push_back(false);
      continue;
    }
    if (out.empty()) continue;  // the echo of the command, banners
    VcpuRegisters& c = out.back();
    auto rip = hex_field(line, "RIP=");
    if (!rip) return tl::unexpected(rip.error());
    if (*rip) {
      c.pc = **rip;
      c.long_mode = true;
      have_pc.back() = true;
    } else {
      auto eip = hex_field(line, "EIP=");
      if (!eip) return tl::unexpected(eip.error());
      if (*eip && !c.long_mode) {
        c.pc = **eip;
        have_pc.back() = true;
      }
    }
    auto cr3 = hex_field(line, "CR3=");
    if (!cr3) return tl::unexpected(cr3.error());
    if (*cr3) {
      c.cr3 = **cr3;
      have_cr3.back() = true;
    }
    auto cpl = hex_field(line, "CPL=");
    if (!cpl) return tl::unexpected(cpl.error());
    if (*cpl) c.cpl = static_cast<uint8_t>(**cpl & 3);
    auto hlt = hex_field(line, "HLT=");
    if (!hlt) return tl::unexpected(hlt.error());
    if (*hlt) c.halted = **hlt != 0;
  }
  if (out.empty()) return fail(Errc::kProtocol, "info registers: no CPU# block in the output");
  for (size_t i = 0; i < out.size(); ++i) {
    if (!have_pc[i] || !have_cr3[i]) {
      return fail(Errc::kProtocol, "info registers: CPU#" + std::to_string(out[i].index) +
                                       " lacks " + (have_pc[i] ? "CR3" : "RIP/EIP"));
    }
  }
  return out;
}

}  // namespace glassbox::vm_supervisor
