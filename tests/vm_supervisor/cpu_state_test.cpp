#include "services/vm_supervisor/cpu_state.hpp"

#include <gtest/gtest.h>

namespace glassbox::vm_supervisor {
namespace {

// QEMU 7.2 `info registers -a`: a vCPU at reset (real mode, 32-bit register names) ...
constexpr const char* kResetCpu = R"(CPU#0
EAX=00000000 EBX=00000000 ECX=00000000 EDX=00060fb1
ESI=00000000 EDI=00000000 EBP=00000000 ESP=00000000
EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0000 00000000 0000ffff 00009300
CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000
EFER=0000000000000000
)";

// ... and a 64-bit Linux vCPU in user mode with PTI (CR3 bit 12 set, PCID in bits 0-11).
constexpr const char* kLongModeCpu =
    "CPU#1\r\n"
    "RAX=0000000000000000 RBX=00007ffd1b2c3d40 RCX=00000000004012a6 RDX=0000000000000000\r\n"
    "RIP=00000000004012a6 RFL=00000246 [---Z-P-] CPL=3 II=0 A20=1 SMM=0 HLT=0\r\n"
    "CR0=80050033 CR2=00007f4c2b1e5000 CR3=0000000002e0b802 CR4=000006f0\r\n"
    "EFER=0000000000000d01\r\n";

TEST(CpuStateTest, ParsesRealModeAndLongModeVcpus) {
  auto r = parse_info_registers(std::string("(qemu) info registers -a\n\n") + kResetCpu + "\n" +
                                kLongModeCpu);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].index, 0u);
  EXPECT_EQ((*r)[0].pc, 0xfff0u);
  EXPECT_FALSE((*r)[0].long_mode);
  EXPECT_EQ((*r)[0].cr3, 0u);
  EXPECT_EQ((*r)[1].index, 1u);
  EXPECT_TRUE((*r)[1].long_mode);
  EXPECT_EQ((*r)[1].pc, 0x4012a6u);
  EXPECT_EQ((*r)[1].cr3, 0x2e0b802u);
  EXPECT_EQ((*r)[1].cpl, 3);
  EXPECT_FALSE((*r)[1].halted);
}

TEST(CpuStateTest, MalformedOutputIsAnErrorNamingIt) {
  EXPECT_FALSE(parse_info_registers(""));
  EXPECT_FALSE(parse_info_registers("no vcpus here\n"));
  auto no_cr3 = parse_info_registers("CPU#0\nRIP=0000000000001000 CPL=0 HLT=0\n");
  ASSERT_FALSE(no_cr3);
  EXPECT_NE(no_cr3.error().message.find("CPU#0 lacks CR3"), std::string::npos);
  auto bad_hex = parse_info_registers("CPU#0\nRIP=00000000zz001000 CPL=0\nCR3=0\n");
  ASSERT_FALSE(bad_hex);
  EXPECT_NE(bad_hex.error().message.find("RIP="), std::string::npos);
  EXPECT_FALSE(parse_info_registers("CPU#0\nRIP=11112222333344445 CR3=0\n"));  // 17 digits
  EXPECT_FALSE(parse_info_registers("CPU#x\nRIP=1 CR3=0\n"));
  EXPECT_FALSE(parse_info_registers(std::string(kMaxRegistersText + 1, 'A')));
}

}  // namespace
}  // namespace glassbox::vm_supervisor
