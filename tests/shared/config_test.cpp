#include "shared/config.hpp"

#include <gtest/gtest.h>

namespace glassbox::shared {
namespace {

TEST(ConfigTest, EmptyFileGivesReferenceGuestDefaults) {
  auto c = parse_config("", "test.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->instance.name, "default");
  EXPECT_EQ(c->vm.memory_mib, 256u);
  EXPECT_EQ(c->vm.accel, Accel::kAuto);
  EXPECT_EQ(c->vm.ready_marker, "GLASSBOX-GUEST-READY");
  EXPECT_TRUE(c->vm.kernel.ends_with("/guest/vmlinuz"));
  EXPECT_TRUE(c->vm.initrd.ends_with("/guest/initrd.img"));
  EXPECT_EQ(c->vm.append.find("nokaslr"), std::string::npos);
}

TEST(ConfigTest, ReadsEveryDocumentedKey) {
  auto c = parse_config(R"(
[instance]
name = "lab-1"
[vm]
kernel = "/k"
initrd = "/i"
append = "console=ttyS0"
memory_mib = 512
cpus = 2
accel = "tcg"
machine = "q35"
ready_marker = "READY"
restart = false
restart_backoff_ms = 100
restart_backoff_max_ms = 1000
kvm_probe_timeout_ms = 2000
qemu = "/usr/bin/qemu-system-x86_64"
extra_args = ["-rtc", "base=utc"]
[screen]
max_fps = 30
[semantic]
interval_ms = 250
db = "/var/lib/gb/semantic.sqlite"
profile_cache = "none"
kernel = "/boot/vmlinuz"
log_events = false
[metrics]
host = "0.0.0.0"
base_port = 9400
[up]
services = ["vm-supervisor"]
restart_backoff_ms = 50
restart_backoff_max_ms = 500
[iceoryx]
roudi = "/usr/bin/iox-roudi"
roudi_config = "/etc/roudi.toml"
)",
                        "full.toml");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->instance.name, "lab-1");
  EXPECT_EQ(c->vm.kernel, "/k");
  EXPECT_EQ(c->vm.memory_mib, 512u);
  EXPECT_EQ(c->vm.cpus, 2u);
  EXPECT_EQ(c->vm.accel, Accel::kTcg);
  EXPECT_EQ(c->vm.machine, "q35");
  EXPECT_FALSE(c->vm.restart);
  EXPECT_EQ(c->vm.extra_args, (std::vector<std::string>{"-rtc", "base=utc"}));
  EXPECT_EQ(c->screen.max_fps, 30u);
  EXPECT_EQ(c->metrics.base_port, 9400u);
  EXPECT_EQ(c->up.restart_backoff_max_ms, 500u);
  EXPECT_EQ(c->iceoryx.roudi_config, "/etc/roudi.toml");
  EXPECT_EQ(c->semantic.interval_ms, 250u);
  EXPECT_EQ(c->semantic.db, "/var/lib/gb/semantic.sqlite");
  EXPECT_EQ(c->semantic.profile_cache, "none");
  EXPECT_EQ(c->semantic.kernel, "/boot/vmlinuz");
  EXPECT_FALSE(c->semantic.log_events);
}

TEST(ConfigTest, RejectsUnknownKeyNamingKeyAndFile) {
  auto c = parse_config("[vm]\nmemroy_mib = 64\n", "/etc/gb.toml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kInvalidArgument);
  EXPECT_NE(c.error().message.find("/etc/gb.toml"), std::string::npos);
  EXPECT_NE(c.error().message.find("memroy_mib"), std::string::npos);
}

TEST(ConfigTest, RejectsUnknownSection) {
  auto c = parse_config("[vmm]\n", "a.toml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("[vmm]"), std::string::npos);
}

TEST(ConfigTest, RejectsValuesOfWrongTypeOrRange) {
  for (const char* text :
       {"[vm]\nmemory_mib = 8\n", "[vm]\nmemory_mib = \"256\"\n", "[vm]\naccel = \"hvf\"\n",
        "[vm]\nrestart = 1\n", "[instance]\nname = \"a b\"\n", "[screen]\nmax_fps = 0\n",
        "[up]\nservices = [\"nope\"]\n", "[vm]\ninitrd = \"/i\"\n"}) {
    auto c = parse_config(text, "x.toml");
    EXPECT_FALSE(c) << text;
    if (!c) EXPECT_NE(c.error().message.find("x.toml: ["), std::string::npos) << c.error().message;
  }
}

TEST(ConfigTest, ReportsSyntaxErrorWithLine) {
  auto c = parse_config("[vm]\nmemory_mib = = 3\n", "bad.toml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("bad.toml:2"), std::string::npos) << c.error().message;
}

TEST(ConfigTest, DiskImageReplacesReferenceKernel) {
  auto c = parse_config("[vm]\ndisk = \"/img/debian.qcow2\"\n", "d.toml");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->vm.kernel.empty());
  EXPECT_TRUE(c->vm.initrd.empty());
}

TEST(ConfigTest, MissingKernelFileIsNamed) {
  auto c = parse_config("[vm]\nkernel = \"/nonexistent/bzImage\"\n", "k.toml");
  ASSERT_TRUE(c);
  auto r = check_config_files(*c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
  EXPECT_NE(r.error().message.find("[vm] kernel"), std::string::npos);
  EXPECT_NE(r.error().message.find("/nonexistent/bzImage"), std::string::npos);
}

TEST(ConfigTest, MissingFileIsNotFound) {
  auto c = load_config("/nonexistent/glassbox.toml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kNotFound);
}

}  // namespace
}  // namespace glassbox::shared
