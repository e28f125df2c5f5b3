#include "services/semantic_db/profile_cache.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

namespace glassbox::semantic_db {
namespace {

constexpr uint64_t kText1 = 0xffffffff9a000000ULL;
constexpr uint64_t kText2 = 0xffffffffb8e00000ULL;

Symbols sample_symbols(uint64_t text) {
  std::vector<KernelSymbol> v = {
      {text, 'T', "_text"},
      {text + 0x1000, 'T', "start_kernel"},
      {text + 0x1000, 't', "alias_at_same_address"},
      {text + 0x2000000, 'D', "init_task"},
      {text + 0x2100000, 'd', "dup"},
      {text + 0x2100008, 'D', "dup"},       // a global and a local of one name: the global wins
      {0x1c000, 'A', "fixed_percpu_data"},  // absolute per-CPU offset: not relocated
  };
  return Symbols::from_symbols(std::move(v));
}

class ProfileCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gb-pcache-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ + "/sub/profiles.sqlite";  // the directory is created on open
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, path_;
};

KernelOffsets sample_offsets() {
  KernelOffsets o;
  o.task_struct.tasks = 2192;
  o.task_struct.comm = 2976;
  o.mm_struct.pgd = 72;
  return o;
}

TEST_F(ProfileCacheTest, MissIsNulloptThenHitRelocatesToTheNewSlide) {
  auto c = ProfileCache::open(path_);
  ASSERT_TRUE(c) << c.error().message;
  auto miss = (*c)->lookup("abc", "6.1.0", kText1);
  ASSERT_TRUE(miss) << miss.error().message;
  EXPECT_FALSE(*miss);

  ASSERT_TRUE((*c)->store("abc", "6.1.0", sample_offsets(), sample_symbols(kText1), kText1));
  auto hit = (*c)->lookup("abc", "6.1.0", kText2);
  ASSERT_TRUE(hit && *hit);
  const auto& p = **hit;
  EXPECT_EQ(p.offsets.task_struct.tasks, 2192u);
  EXPECT_EQ(p.offsets.mm_struct.pgd, 72u);
  EXPECT_EQ(p.symbols.size(), 7u);
  EXPECT_EQ(*p.symbols.address_of("_text"), kText2);
  EXPECT_EQ(*p.symbols.address_of("init_task"), kText2 + 0x2000000);
  EXPECT_EQ(*p.symbols.address_of("dup"), kText2 + 0x2100008);
  EXPECT_EQ(*p.symbols.address_of("fixed_percpu_data"), 0x1c000u);
  auto near = p.symbols.nearest(kText2 + 0x1004);
  ASSERT_TRUE(near);
  EXPECT_EQ(near->offset_bytes, 4u);

  // Another release under the same id is not this entry.
  auto other = (*c)->lookup("abc", "6.2.0", kText2);
  ASSERT_TRUE(other);
  EXPECT_FALSE(*other);
  EXPECT_EQ(*(*c)->size(), 1u);
}

TEST_F(ProfileCacheTest, SurvivesReopenAndRejectsEmptyBuildId) {
  {
    auto c = ProfileCache::open(path_);
    ASSERT_TRUE(c);
    ASSERT_TRUE((*c)->store("id1", "r", sample_offsets(), sample_symbols(kText1), kText1));
    EXPECT_FALSE((*c)->store("", "r", sample_offsets(), sample_symbols(kText1), kText1));
  }
  auto c = ProfileCache::open(path_);
  ASSERT_TRUE(c);
  auto hit = (*c)->lookup("id1", "r", kText1);
  ASSERT_TRUE(hit && *hit);
}

// The file is input like any other: a damaged entry is an error naming it, not a crash.
TEST_F(ProfileCacheTest, CorruptBlobsAreErrorsNamingTheEntry) {
  auto c = ProfileCache::open(path_);
  ASSERT_TRUE(c);
  ASSERT_TRUE((*c)->store("bad", "r", sample_offsets(), sample_symbols(kText1), kText1));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  for (const char* sql : {"UPDATE profiles SET symbols = X'47425359ffffffff'",  // count too large
                          "UPDATE profiles SET symbols = substr(symbols, 1, 40)",  // truncated
                          "UPDATE profiles SET symbols = X'00112233'",             // no header
                          "UPDATE profiles SET offsets = X'0011'"}) {              // wrong size
    ASSERT_TRUE((*c)->store("bad", "r", sample_offsets(), sample_symbols(kText1), kText1));
    ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sql;
    auto r = (*c)->lookup("bad", "r", kText1);
    ASSERT_FALSE(r) << sql;
    EXPECT_EQ(r.error().code, Errc::kProtocol) << sql;
    EXPECT_NE(r.error().message.find("entry bad"), std::string::npos) << r.error().message;
  }
  // A name index that is no permutation, or not sorted by name.
  ASSERT_TRUE((*c)->store("bad", "r", sample_offsets(), sample_symbols(kText1), kText1));
  ASSERT_EQ(sqlite3_exec(db,
                         "UPDATE profiles SET symbols = substr(symbols, 1, length(symbols) - 4)"
                         " || X'00000000'",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  auto r = (*c)->lookup("bad", "r", kText1);
  EXPECT_FALSE(r);
  sqlite3_close(db);
}

TEST(SymbolsTest, FromIndexedChecksOrderAndPermutation) {
  auto s = sample_symbols(kText1);
  auto ok = Symbols::from_indexed(s.symbols(), s.by_name());
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(*ok->address_of("dup"), kText1 + 0x2100008);

  auto by_name = s.by_name();
  std::swap(by_name[0], by_name[1]);
  EXPECT_FALSE(Symbols::from_indexed(s.symbols(), by_name));
  by_name = s.by_name();
  by_name[0] = by_name[1];
  EXPECT_FALSE(Symbols::from_indexed(s.symbols(), by_name));
  by_name = s.by_name();
  by_name[0] = 99;
  EXPECT_FALSE(Symbols::from_indexed(s.symbols(), by_name));
  auto unsorted = s.symbols();
  std::swap(unsorted[0], unsorted[3]);
  EXPECT_FALSE(Symbols::from_indexed(unsorted, s.by_name()));
}

}  // namespace
}  // namespace glassbox::semantic_db
