#include "services/cli/cli_app.hpp"

#include <gtest/gtest.h>

namespace glassbox::cli {
namespace {

Result<Invocation> parse(std::vector<std::string> args) {
  std::string help;
  return parse_cli(args, help);
}

TEST(CliAppTest, ParsesUpWithAllFlags) {
  auto inv = parse({"--state-dir", "/s", "up", "--for", "30", "--report", "/r.json"});
  ASSERT_TRUE(inv) << inv.error().message;
  EXPECT_EQ(inv->command, "up");
  EXPECT_EQ(inv->state_dir, "/s");
  ASSERT_TRUE(inv->for_s);
  EXPECT_DOUBLE_EQ(*inv->for_s, 30.0);
  EXPECT_EQ(inv->report_path, "/r.json");
}

TEST(CliAppTest, StateDirAfterSubcommandAndDefault) {
  auto inv = parse({"status", "--json", "--state-dir", "/x"});
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->state_dir, "/x");
  EXPECT_TRUE(inv->json);
  auto def = parse({"status"});
  ASSERT_TRUE(def);
  EXPECT_FALSE(def->state_dir.empty());
}

TEST(CliAppTest, ParsesVmActions) {
  auto key = parse({"vm", "key", "ctrl-alt-delete"});
  ASSERT_TRUE(key);
  EXPECT_EQ(key->command, "vm");
  EXPECT_EQ(key->vm_action, "key");
  EXPECT_EQ(key->key_combo, "ctrl-alt-delete");
  auto mouse = parse({"vm", "mouse", "10", "20", "--click", "left"});
  ASSERT_TRUE(mouse);
  EXPECT_EQ(mouse->mouse_x, 10);
  EXPECT_EQ(mouse->mouse_y, 20);
  EXPECT_EQ(mouse->click, "left");
  auto type = parse({"vm", "type", "echo hi"});
  ASSERT_TRUE(type);
  EXPECT_EQ(type->text, "echo hi");
  for (const char* a : {"pause", "resume", "reset", "powerdown", "kill", "start"}) {
    auto r = parse({"vm", a});
    ASSERT_TRUE(r) << a;
    EXPECT_EQ(r->vm_action, a);
  }
}

TEST(CliAppTest, RejectsBadInput) {
  EXPECT_FALSE(parse({}));
  EXPECT_FALSE(parse({"frobnicate"}));
  EXPECT_FALSE(parse({"vm"}));
  EXPECT_FALSE(parse({"vm", "mouse", "1"}));
  EXPECT_FALSE(parse({"vm", "mouse", "1", "2", "--click", "thumb"}));
  EXPECT_FALSE(parse({"up", "--for", "-3"}));
  EXPECT_FALSE(parse({"up", "--config", "/nonexistent/x.toml"}));
  EXPECT_FALSE(parse({"status", "--bogus"}));
}

TEST(CliAppTest, HelpIsNotAnError) {
  std::string help;
  auto inv = parse_cli({"--help"}, help);
  ASSERT_TRUE(inv);
  EXPECT_EQ(inv->command, "help");
  EXPECT_NE(help.find("screendump"), std::string::npos);
}

}  // namespace
}  // namespace glassbox::cli
