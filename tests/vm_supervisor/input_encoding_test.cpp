#include "services/vm_supervisor/input_encoding.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace glassbox::vm_supervisor {
namespace {

using json = nlohmann::json;
using Combo = std::vector<std::string>;

json key(const std::string& qcode, bool down) {
  return {{"type", "key"},
          {"data", {{"down", down}, {"key", {{"type", "qcode"}, {"data", qcode}}}}}};
}

TEST(InputEncodingTest, KnowsEveryQcodeOfQemu72ButUnmapped) {
  const auto all = valid_qcodes();
  EXPECT_EQ(all.size(), 149u);
  EXPECT_EQ(std::set<std::string_view>(all.begin(), all.end()).size(), all.size());
  // clang-format off
  for (const char* q : {"a", "z", "0", "9", "shift", "shift_r", "alt", "alt_r", "ctrl",
                        "ctrl_r", "menu", "esc", "minus", "equal", "backspace", "tab",
                        "bracket_left", "bracket_right", "ret", "semicolon", "apostrophe",
                        "grave_accent", "backslash", "comma", "dot", "slash", "asterisk",
                        "spc", "caps_lock", "f1", "f12", "num_lock", "scroll_lock",
                        "kp_divide", "kp_enter", "kp_0", "kp_9", "less", "home", "pgup",
                        "pgdn", "end", "left", "up", "down", "right", "insert", "delete",
                        "meta_l", "meta_r", "sysrq", "print", "pause", "lang2"}) {
    // clang-format on
    EXPECT_TRUE(is_valid_qcode(q)) << q;
  }
  for (const char* q : {"unmapped", "f13", "A", "Ctrl", "-", "", "enter", "space"}) {
    EXPECT_FALSE(is_valid_qcode(q)) << q;
  }
}

TEST(InputEncodingTest, ParsesKeyCombos) {
  EXPECT_EQ(parse_key_combo("ctrl-alt-delete").value(), (Combo{"ctrl", "alt", "delete"}));
  EXPECT_EQ(parse_key_combo("ret").value(), (Combo{"ret"}));
  EXPECT_EQ(parse_key_combo("shift-a").value(), (Combo{"shift", "a"}));
  EXPECT_EQ(parse_key_combo("ctrl-minus").value(), (Combo{"ctrl", "minus"}));
  EXPECT_EQ(parse_key_combo("kp_enter").value(), (Combo{"kp_enter"}));
}

TEST(InputEncodingTest, RejectsUnknownQcodeNamingIt) {
  auto r = parse_key_combo("ctrl-alt-del");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message.find("'del'"), std::string::npos) << r.error().message;
}

TEST(InputEncodingTest, HintsAtLowercaseForCapitalisedQcodes) {
  auto r = parse_key_combo("Ctrl-c");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("lowercase: 'ctrl'"), std::string::npos) << r.error().message;
}

TEST(InputEncodingTest, RejectsEmptyPartsAndDashes) {
  for (const char* combo : {"", "-", "ctrl-", "-a", "ctrl--a"}) {
    auto r = parse_key_combo(combo);
    ASSERT_FALSE(r) << combo;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << combo;
  }
  EXPECT_NE(parse_key_combo("ctrl--a").error().message.find("minus"), std::string::npos);
}

TEST(InputEncodingTest, RejectsRepeatedQcode) {
  auto r = parse_key_combo("ctrl-a-ctrl");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("twice"), std::string::npos);
}

TEST(InputEncodingTest, ComboEventsPressInOrderAndReleaseInReverse) {
  const json events = key_combo_events({"ctrl", "alt", "delete"});
  const json expected = json::array({key("ctrl", true), key("alt", true), key("delete", true),
                                     key("delete", false), key("alt", false), key("ctrl", false)});
  EXPECT_EQ(events, expected);
  EXPECT_EQ(key_combo_events({}), json::array());
}

TEST(InputEncodingTest, ComboEventsHaveQmpShape) {
  const json events = key_combo_events({"a"});
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].dump(),
            R"({"data":{"down":true,"key":{"data":"a","type":"qcode"}},"type":"key"})");
}

TEST(InputEncodingTest, TextUsesShiftForCapitalsAndShiftedSymbols) {
  auto r = text_to_combos("aZ1!-_ \n\t~");
  ASSERT_TRUE(r) << r.error().to_string();
  // clang-format off
  const std::vector<Combo> expected = {
      {"a"}, {"shift", "z"}, {"1"}, {"shift", "1"}, {"minus"}, {"shift", "minus"},
      {"spc"}, {"ret"}, {"tab"}, {"shift", "grave_accent"}};
  // clang-format on
  EXPECT_EQ(*r, expected);
}

TEST(InputEncodingTest, TextCoversAllPrintableAsciiWithValidQcodes) {
  std::string all;
  for (char c = 0x20; c < 0x7f; ++c) all.push_back(c);
  auto r = text_to_combos(all);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->size(), all.size());
  std::set<Combo> distinct;
  for (std::size_t i = 0; i < r->size(); ++i) {
    const Combo& combo = (*r)[i];
    ASSERT_FALSE(combo.empty());
    ASSERT_LE(combo.size(), 2u);
    if (combo.size() == 2) {
      EXPECT_EQ(combo[0], "shift") << all[i];
    }
    for (const auto& q : combo) EXPECT_TRUE(is_valid_qcode(q)) << all[i] << " -> " << q;
    distinct.insert(combo);
  }
  EXPECT_EQ(distinct.size(), all.size()) << "two characters map to the same combo";
  EXPECT_EQ(text_to_combos("\"")->front(), (Combo{"shift", "apostrophe"}));
  EXPECT_EQ(text_to_combos("?")->front(), (Combo{"shift", "slash"}));
  EXPECT_EQ(text_to_combos("|")->front(), (Combo{"shift", "backslash"}));
}

TEST(InputEncodingTest, TextRejectsOtherBytesNamingByteAndPosition) {
  auto r = text_to_combos("ok\rno");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message.find("0x0d"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("position 2"), std::string::npos) << r.error().message;
  auto utf8 = text_to_combos("caf\xc3\xa9");
  ASSERT_FALSE(utf8);
  EXPECT_NE(utf8.error().message.find("0xc3"), std::string::npos);
  EXPECT_NE(utf8.error().message.find("position 3"), std::string::npos);
  EXPECT_TRUE(text_to_combos("")->empty());
}

int axis_value(const json& events, const char* axis) {
  for (const auto& e : events) {
    if (e["type"] == "abs" && e["data"]["axis"] == axis) return e["data"]["value"].get<int>();
  }
  ADD_FAILURE() << "no " << axis << " axis in " << events.dump();
  return -1;
}

TEST(InputEncodingTest, MouseAbsAimsAtPixelCentres) {
  auto origin = mouse_abs_events(0, 0, 1024, 768);
  ASSERT_TRUE(origin) << origin.error().to_string();
  ASSERT_EQ(origin->size(), 2u);
  EXPECT_EQ((*origin)[0]["type"], "abs");
  EXPECT_EQ(axis_value(*origin, "x"), 16);  // round(0.5 * 32767 / 1024)
  EXPECT_EQ(axis_value(*origin, "y"), 21);  // round(0.5 * 32767 / 768)

  auto corner = mouse_abs_events(1023, 767, 1024, 768);
  ASSERT_TRUE(corner);
  EXPECT_EQ(axis_value(*corner, "x"), 32751);
  EXPECT_EQ(axis_value(*corner, "y"), 32746);

  auto centre = mouse_abs_events(512, 384, 1024, 768);
  ASSERT_TRUE(centre);
  EXPECT_EQ(axis_value(*centre, "x"), 16399);  // round(512.5 * 32767 / 1024 = 16399.499)
}

TEST(InputEncodingTest, MouseAbsClampsOutsideTheScreen) {
  EXPECT_EQ(*mouse_abs_events(-50, 100000, 1024, 768), *mouse_abs_events(0, 767, 1024, 768));
  EXPECT_EQ(*mouse_abs_events(1024, -1, 1024, 768), *mouse_abs_events(1023, 0, 1024, 768));
}

TEST(InputEncodingTest, MouseAbsRoundTripsToTheSamePixel) {
  for (const int width : {1, 2, 640, 720, 1024, 1920, 4096, 32767, 40000}) {
    for (int x = 0; x < width; x += std::max(1, width / 97)) {
      const int v = axis_value(*mouse_abs_events(x, 0, width, 1), "x");
      ASSERT_GE(v, 0);
      ASSERT_LE(v, kInputAbsMax);
      if (width <= 32767) {
        // The usual guest mapping: floor(v * width / 32768).
        EXPECT_EQ(static_cast<long long>(v) * width / 32768, x) << width << " " << x;
      }
    }
  }
  EXPECT_EQ(axis_value(*mouse_abs_events(0, 0, 1, 1), "x"), 16384);
}

TEST(InputEncodingTest, MouseAbsRejectsEmptyScreen) {
  for (auto [w, h] : {std::pair{0, 768}, std::pair{1024, 0}, std::pair{-1, -1}}) {
    auto r = mouse_abs_events(0, 0, w, h);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  }
}

TEST(InputEncodingTest, MouseButtonEvents) {
  auto down = mouse_button_events("left", true);
  ASSERT_TRUE(down) << down.error().to_string();
  EXPECT_EQ(*down,
            json::array({{{"type", "btn"}, {"data", {{"down", true}, {"button", "left"}}}}}));
  auto up = mouse_button_events("middle", false);
  ASSERT_TRUE(up);
  EXPECT_EQ((*up)[0]["data"]["down"], false);
  EXPECT_TRUE(mouse_button_events("right", true));
  EXPECT_TRUE(mouse_button_events("wheel-up", true));
}

TEST(InputEncodingTest, MouseButtonRejectsUnknownButton) {
  auto r = mouse_button_events("thumb", true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message.find("'thumb'"), std::string::npos);
}

}  // namespace
}  // namespace glassbox::vm_supervisor
