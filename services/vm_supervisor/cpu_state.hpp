// vCPU registers from QEMU's HMP `info registers -a` (QMP human-monitor-command): the
// program counter and CR3 of every vCPU, which introspection needs to know which kernel
// (and KASLR slide) runs now and which address space a vCPU is in.
//
// QEMU 7.2 prints, per vCPU, a "CPU#N" line followed by register lines: "RIP=<16 hex>" and
// "CR3=<16 hex>" in long mode, "EIP=<8 hex>" and "CR3=<8 hex>" otherwise, "CPL=<n>" and
// "HLT=<0|1>" (target/i386/cpu-dump.c, x86_cpu_dump_state).
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::vm_supervisor {

inline constexpr std::size_t kMaxRegistersText = 4u << 20;  // ~1.7 KiB per vCPU
inline constexpr uint32_t kMaxVcpus = 1024;

struct VcpuRegisters {
  uint32_t index = 0;  // CPU#index
  uint64_t pc = 0;     // RIP, or EIP outside long mode
  uint64_t cr3 = 0;    // as loaded (PGD gpa | PCID | PTI user bit)
  uint8_t cpl = 0;
  bool halted = false;
  bool long_mode = false;  // RIP (not EIP) was printed
};

// Parses `info registers -a` text. A vCPU block without CR3 or a program counter is an error.
// Errors: kInvalidArgument for text over kMaxRegistersText; kProtocol "info registers: ..."
// naming the malformed vCPU or value (non-hex digits, more than 16 digits, more than
// kMaxVcpus blocks, no "CPU#" block at all).
[[nodiscard]] Result<std::vector<VcpuRegisters>> parse_info_registers(std::string_view text);

}  // namespace glassbox::vm_supervisor
