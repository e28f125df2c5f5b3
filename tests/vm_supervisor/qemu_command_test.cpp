#include "services/vm_supervisor/qemu_command.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "services/vm_supervisor/kvm_probe.hpp"

namespace glassbox::vm_supervisor {
namespace {

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += a + " ";
  return s;
}

TEST(QemuCommandTest, SharesGuestRamAndPutsSocketsInStateDir) {
  auto c = shared::parse_config("[instance]\nname = \"t1\"\n[vm]\nkernel = \"/k\"\n", "t.toml");
  ASSERT_TRUE(c);
  shared::StatePaths paths("/state");
  auto argv = build_qemu_argv(*c, shared::Accel::kTcg, qemu_paths_for(*c, paths));
  const std::string s = joined(argv);
  EXPECT_EQ(argv[0], "qemu-system-x86_64");
  EXPECT_NE(s.find("memory-backend-file,id=glassbox-ram,size=256M,mem-path=/dev/shm/"
                   "glassbox-t1.ram,share=on"),
            std::string::npos);
  EXPECT_NE(s.find("-machine pc,memory-backend=glassbox-ram"), std::string::npos);
  EXPECT_NE(s.find("-m 256M"), std::string::npos);
  EXPECT_NE(s.find("-qmp unix:/state/vm/qmp.sock,server=on,wait=off"), std::string::npos);
  EXPECT_NE(s.find("-vnc unix:/state/vm/vnc.sock"), std::string::npos);
  EXPECT_NE(s.find("path=/state/vm/serial.log"), std::string::npos);
  EXPECT_NE(s.find("-accel tcg"), std::string::npos);
  EXPECT_NE(s.find("virtio-tablet-pci"), std::string::npos);
  EXPECT_NE(s.find("-kernel /k"), std::string::npos);
  EXPECT_EQ(s.find("-cpu host"), std::string::npos);
}

TEST(QemuCommandTest, KvmUsesHostCpuAndDiskAndCdromBoot) {
  auto c = shared::parse_config("[vm]\ndisk = \"/d.qcow2\"\ncdrom = \"/x.iso\"\n", "t.toml");
  ASSERT_TRUE(c);
  auto argv =
      build_qemu_argv(*c, shared::Accel::kKvm, qemu_paths_for(*c, shared::StatePaths("/s")));
  const std::string s = joined(argv);
  EXPECT_NE(s.find("-accel kvm"), std::string::npos);
  EXPECT_NE(s.find("-cpu host"), std::string::npos);
  EXPECT_NE(s.find("file=/d.qcow2,if=virtio,format=qcow2"), std::string::npos);
  EXPECT_NE(s.find("file=/x.iso,media=cdrom"), std::string::npos);
  EXPECT_EQ(s.find("-kernel"), std::string::npos);
}

TEST(QemuCommandTest, TracingLoadsThePluginWithItsRingsAndTheRamFile) {
  auto c = shared::parse_config(
      "[instance]\nname = \"t2\"\n[trace]\nmode = \"stream\"\nring_events = 4096\n", "t.toml");
  ASSERT_TRUE(c) << c.error().message;
  auto paths = qemu_paths_for(*c, shared::StatePaths("/s"));
  paths.trace_plugin = "/opt/a,b/libglassbox-trace.so";  // a comma must be doubled
  const std::string s = joined(build_qemu_argv(*c, shared::Accel::kTcg, paths));
  EXPECT_NE(s.find("-plugin file=/opt/a,,b/libglassbox-trace.so,shm=/dev/shm/glassbox-t2.trace,"
                   "mode=stream,ram=/dev/shm/glassbox-t2.ram,ring_events=4096,max_tbs=4194304,"
                   "tb_ring_bytes=67108864"),
            std::string::npos)
      << s;
  auto off = shared::parse_config("[trace]\nmode = \"off\"\n", "t.toml");
  ASSERT_TRUE(off);
  EXPECT_EQ(joined(build_qemu_argv(*off, shared::Accel::kTcg, paths)).find("-plugin"),
            std::string::npos);
  EXPECT_FALSE(shared::parse_config("[trace]\nmode = \"fast\"\n", "t.toml"));
  EXPECT_FALSE(shared::parse_config("[trace]\nring_events = 5000\n", "t.toml"));
}

TEST(QemuCommandTest, ProbeBootSectorIsBootable) {
  const std::string s = kvm_probe_boot_sector();
  ASSERT_EQ(s.size(), 512u);
  EXPECT_EQ(static_cast<unsigned char>(s[510]), 0x55);
  EXPECT_EQ(static_cast<unsigned char>(s[511]), 0xAA);
}

TEST(QemuCommandTest, AccelGivenInConfigIsNotProbed) {
  shared::VmConfig vm;
  vm.accel = shared::Accel::kTcg;
  auto a = choose_accel(vm, "", "/nonexistent");
  EXPECT_EQ(a.accel, shared::Accel::kTcg);
  EXPECT_NE(a.reason.find("[vm] accel"), std::string::npos);
}

}  // namespace
}  // namespace glassbox::vm_supervisor
