#include "services/smt_synthesizer/library.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace glassbox::smt {
namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/gb-synth-lib-XXXXXX";
  return ::mkdtemp(tmpl);
}

LibraryEntry entry(uint64_t hash, const std::string& status) {
  LibraryEntry e;
  e.bytes_hash = hash;
  e.bytes = {0x48, 0x01, 0xd8};
  e.first_pc = 0x401000;
  e.status = status;
  e.method = status == "verified" ? "direct" : "";
  e.program_json = status == "verified" ? R"([{"op":"add","d":0,"a":0,"b":3}])" : "";
  e.undefined_flags = {"OF"};
  e.n_x86_insns = 1;
  e.n_pixel_insns = 1;
  e.created_unix_ns = 1;
  return e;
}

TEST(LibraryTest, KeepsBlocksAndSightingsAcrossAReopen) {
  const std::string dir = temp_dir(), path = dir + "/lib.sqlite";
  {
    auto lib = Library::open(path);
    ASSERT_TRUE(lib) << lib.error().to_string();
    ASSERT_TRUE((*lib)->put(entry(7, "verified")));
    ASSERT_TRUE((*lib)->put(entry(9, "unsupported")));
    ASSERT_TRUE((*lib)->seen(0x401000, 7, 10));
    ASSERT_TRUE((*lib)->seen(0x7f0000401000, 7, 20));  // the same bytes at another pc
    ASSERT_TRUE((*lib)->seen(0x402000, 9, 30));
  }
  auto lib = Library::open(path);
  ASSERT_TRUE(lib);
  EXPECT_EQ(*(*lib)->count(), 2u);
  auto got = (*lib)->get(7);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->status, "verified");
  EXPECT_EQ((*got)->bytes, (std::vector<uint8_t>{0x48, 0x01, 0xd8}));
  EXPECT_EQ((*got)->undefined_flags, std::vector<std::string>{"OF"});
  auto none = (*lib)->get(8);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto at = (*lib)->at_pc(0x7f0000401000);
  ASSERT_TRUE(at && *at);
  EXPECT_EQ((*at)->bytes_hash, 7u);
  EXPECT_EQ((*at)->first_pc, 0x7f0000401000u);
  auto list = (*lib)->list(10);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 3u);  // one row per sighting, newest first
  EXPECT_EQ((*list)[0].first_pc, 0x402000u);
  EXPECT_EQ((*list)[0].status, "unsupported");
  std::filesystem::remove_all(dir);
}

TEST(LibraryTest, ACorruptFileIsAClearError) {
  const std::string dir = temp_dir(), path = dir + "/lib.sqlite";
  std::ofstream(path) << std::string(8192, 'x');
  auto lib = Library::open(path);
  ASSERT_FALSE(lib);
  EXPECT_EQ(lib.error().code, Errc::kIo);
  EXPECT_NE(lib.error().message.find(path), std::string::npos) << lib.error().message;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace glassbox::smt
