#include "services/semantic_db/store.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>

namespace glassbox::semantic_db {
namespace {

ProcessRecord proc(int32_t pid, int32_t ppid, const std::string& comm, uint64_t start) {
  ProcessRecord p;
  p.pid = pid;
  p.tgid = pid;
  p.ppid = ppid;
  p.comm = comm;
  p.state = "S";
  p.start_time_ns = start;
  return p;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gb-store-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/semantic.db";
  }
  void TearDown() override {
    for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((path_ + suffix).c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_, path_;
};

TEST_F(StoreTest, BirthsAndExitsAcrossObservations) {
  auto s = Store::open(path_);
  ASSERT_TRUE(s) << s.error().message;
  auto boot = (*s)->boot_for("6.1.0-56-amd64", 0x37e00000, 100);
  ASSERT_TRUE(boot);
  std::vector<ProcessRecord> first = {proc(1, 0, "init", 10), proc(2, 0, "kthreadd", 11),
                                      proc(100, 1, "gb-sleeper", 500)};
  auto d1 = (*s)->observe_processes(*boot, first, 1000);
  ASSERT_TRUE(d1) << d1.error().message;
  EXPECT_EQ(d1->born.size(), 3u);
  EXPECT_TRUE(d1->exited.empty());
  // pid 100 exits; pid 101 is born; an identical list again changes nothing.
  std::vector<ProcessRecord> second = {proc(1, 0, "init", 10), proc(2, 0, "kthreadd", 11),
                                       proc(101, 1, "sh", 900)};
  auto d2 = (*s)->observe_processes(*boot, second, 2000);
  ASSERT_TRUE(d2);
  ASSERT_EQ(d2->born.size(), 1u);
  EXPECT_EQ(d2->born[0].comm, "sh");
  ASSERT_EQ(d2->exited.size(), 1u);
  EXPECT_EQ(d2->exited[0].pid, 100);
  EXPECT_EQ(d2->exited[0].exited_ns, 2000u);
  auto d3 = (*s)->observe_processes(*boot, second, 3000);
  ASSERT_TRUE(d3);
  EXPECT_TRUE(d3->born.empty() && d3->exited.empty());
  auto alive = (*s)->processes(*boot, false);
  ASSERT_TRUE(alive);
  EXPECT_EQ(alive->size(), 3u);
  EXPECT_EQ((*alive)[0].first_seen_ns, 1000u);
  EXPECT_EQ((*alive)[0].last_seen_ns, 3000u);
  auto all = (*s)->processes(*boot, true);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 4u);
}

TEST_F(StoreTest, PidReuseIsANewProcess) {
  auto s = Store::open(path_);
  ASSERT_TRUE(s);
  auto boot = (*s)->boot_for("r", 1, 1);
  ASSERT_TRUE((*s)->observe_processes(*boot, std::vector{proc(50, 1, "a", 100)}, 10));
  auto d = (*s)->observe_processes(*boot, std::vector{proc(50, 1, "b", 200)}, 20);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->born.size(), 1u);
  EXPECT_EQ(d->exited.size(), 1u);
  EXPECT_EQ(d->exited[0].comm, "a");
}

TEST_F(StoreTest, ResumesFromTheFileAfterARestart) {
  {
    auto s = Store::open(path_);
    ASSERT_TRUE(s);
    auto boot = (*s)->boot_for("r", 7, 1);
    ASSERT_TRUE((*s)->observe_processes(*boot, std::vector{proc(1, 0, "init", 1)}, 10));
    ASSERT_TRUE(
        (*s)->observe_modules(*boot, std::vector{ModuleRecord{"virtio", 0xc000, 4096}}, 10));
  }
  auto s = Store::open(path_);
  ASSERT_TRUE(s);
  auto boot = (*s)->boot_for("r", 7, 50);
  ASSERT_TRUE(boot);
  EXPECT_EQ(*boot, 1) << "same kernel and slide: same boot";
  auto d = (*s)->observe_processes(*boot, std::vector{proc(1, 0, "init", 1)}, 60);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->born.empty()) << "a restarted semantic-db must not re-announce known processes";
  auto m = (*s)->modules(std::nullopt, false);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->size(), 1u);
  EXPECT_EQ((*m)[0].name, "virtio");
  // A new KASLR slide is a new boot.
  auto next = (*s)->boot_for("r", 8, 70);
  ASSERT_TRUE(next);
  EXPECT_NE(*next, *boot);
}

TEST_F(StoreTest, ModulesLoadAndUnload) {
  auto s = Store::open(":memory:");
  ASSERT_TRUE(s);
  auto boot = (*s)->boot_for("r", 1, 1);
  std::vector<ModuleRecord> a = {{"button", 0xffffffffc02fd000, 24576},
                                 {"evdev", 0xffffffffc02f5000, 28672}};
  auto d1 = (*s)->observe_modules(*boot, a, 1);
  ASSERT_TRUE(d1);
  EXPECT_EQ(d1->loaded.size(), 2u);
  auto d2 = (*s)->observe_modules(*boot, std::vector{a[1]}, 2);
  ASSERT_TRUE(d2);
  ASSERT_EQ(d2->unloaded.size(), 1u);
  EXPECT_EQ(d2->unloaded[0].name, "button");
  EXPECT_EQ((*s)->modules(*boot, false)->front().base, 0xffffffffc02f5000u);
}

TEST_F(StoreTest, GarbageFileIsAClearError) {
  std::ofstream(path_) << std::string(4096, 'x');
  auto s = Store::open(path_);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find(path_), std::string::npos) << s.error().message;
}

TEST_F(StoreTest, UsesWriteAheadLogging) {
  auto s = Store::open(path_);
  ASSERT_TRUE(s);
  auto boot = (*s)->boot_for("r", 1, 1);
  ASSERT_TRUE((*s)->observe_processes(*boot, std::vector{proc(1, 0, "init", 1)}, 10));
  EXPECT_EQ(::access((path_ + "-wal").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace glassbox::semantic_db
