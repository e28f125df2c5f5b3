#include "services/vm_supervisor/input_encoding.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace glassbox::vm_supervisor {
namespace {

using json = nlohmann::json;

// QKeyCode of QEMU 7.2 (qapi/ui.json), in enum order, as reported by query-qmp-schema of
// Debian's qemu-system-x86_64 1:7.2+dfsg-7+deb12u18; "unmapped" (enum value 0) left out.
// clang-format off
constexpr std::array<std::string_view, 149> kQcodes = {
    "shift", "shift_r", "alt", "alt_r", "ctrl", "ctrl_r", "menu", "esc",
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "0",
    "minus", "equal", "backspace", "tab",
    "q", "w", "e", "r", "t", "y", "u", "i", "o", "p",
    "bracket_left", "bracket_right", "ret",
    "a", "s", "d", "f", "g", "h", "j", "k", "l",
    "semicolon", "apostrophe", "grave_accent", "backslash",
    "z", "x", "c", "v", "b", "n", "m",
    "comma", "dot", "slash", "asterisk", "spc", "caps_lock",
    "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10",
    "num_lock", "scroll_lock",
    "kp_divide", "kp_multiply", "kp_subtract", "kp_add", "kp_enter", "kp_decimal",
    "sysrq",
    "kp_0", "kp_1", "kp_2", "kp_3", "kp_4", "kp_5", "kp_6", "kp_7", "kp_8", "kp_9",
    "less", "f11", "f12", "print",
    "home", "pgup", "pgdn", "end", "left", "up", "down", "right", "insert", "delete",
    "stop", "again", "props", "undo", "front", "copy", "open", "paste", "find", "cut",
    "lf", "help", "meta_l", "meta_r", "compose", "pause",
    "ro", "hiragana", "henkan", "yen", "muhenkan", "katakanahiragana",
    "kp_comma", "kp_equals", "power", "sleep", "wake",
    "audionext", "audioprev", "audiostop", "audioplay", "audiomute",
    "volumeup", "volumedown", "mediaselect", "mail", "calculator", "computer",
    "ac_home", "ac_back", "ac_forward", "ac_refresh", "ac_bookmarks",
    "lang1", "lang2",
};
// clang-format on
static_assert(kQcodes.back() == "lang2", "kQcodes must list all 149 qcodes");

// InputButton of QEMU 7.2 (qapi/ui.json).
// clang-format off
constexpr std::array<std::string_view, 9> kButtons = {
    "left", "middle", "right", "wheel-up", "wheel-down", "side", "extra", "wheel-left",
    "wheel-right",
};
// clang-format on

// A character and the qcode that types it (with shift, or without, by table).
struct KeySymbol {
  char symbol;
  std::string_view qcode;
};

// clang-format off
// US layout: the unshifted qcode of each shifted symbol.
constexpr std::array<KeySymbol, 21> kKeySymbols = {{
    {'!', "1"}, {'@', "2"}, {'#', "3"}, {'$', "4"}, {'%', "5"}, {'^', "6"}, {'&', "7"},
    {'*', "8"}, {'(', "9"}, {')', "0"}, {'_', "minus"}, {'+', "equal"},
    {'{', "bracket_left"}, {'}', "bracket_right"}, {':', "semicolon"},
    {'"', "apostrophe"}, {'~', "grave_accent"}, {'|', "backslash"}, {'<', "comma"},
    {'>', "dot"}, {'?', "slash"},
}};

// US layout: unshifted symbols and whitespace.
constexpr std::array<KeySymbol, 14> kPlainSymbols = {{
    {' ', "spc"}, {'\n', "ret"}, {'\t', "tab"}, {'-', "minus"}, {'=', "equal"},
    {'[', "bracket_left"}, {']', "bracket_right"}, {';', "semicolon"},
    {'\'', "apostrophe"}, {'`', "grave_accent"}, {'\\', "backslash"}, {',', "comma"},
    {'.', "dot"}, {'/', "slash"},
}};
// clang-format on

std::string hex_byte(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", c);
  return buf;
}

}  // namespace

std::span<const std::string_view> valid_qcodes() noexcept { return kQcodes; }

bool is_valid_qcode(std::string_view qcode) noexcept {
  return std::find(kQcodes.begin(), kQcodes.end(), qcode) != kQcodes.end();
}

Result<std::vector<std::string>> parse_key_combo(std::string_view combo) {
  if (combo.empty()) return fail(Errc::kInvalidArgument, "empty key combo");
  std::vector<std::string> qcodes;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dash = combo.find('-', start);
    const std::string_view part =
        combo.substr(start, dash == std::string_view::npos ? std::string_view::npos : dash - start);
    if (part.empty()) {
      return fail(Errc::kInvalidArgument, "empty qcode at byte " + std::to_string(start) +
                                              " of key combo '" + std::string(combo) +
                                              "' (the '-' key is the qcode 'minus')");
    }
    if (!is_valid_qcode(part)) {
      std::string lower(part);
      std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      });
      std::string message =
          "unknown qcode '" + std::string(part) + "' in key combo '" + std::string(combo) + "'";
      if (lower != part && is_valid_qcode(lower)) {
        message += " (qcodes are lowercase: '" + lower + "'; add 'shift' for capitals)";
      }
      return fail(Errc::kInvalidArgument, std::move(message));
    }
    if (std::find(qcodes.begin(), qcodes.end(), part) != qcodes.end()) {
      return fail(Errc::kInvalidArgument, "qcode '" + std::string(part) +
                                              "' appears twice in key combo '" +
                                              std::string(combo) + "'");
    }
    qcodes.emplace_back(part);
    if (dash == std::string_view::npos) return qcodes;
    start = dash + 1;
  }
}

json key_combo_events(const std::vector<std::string>& qcodes) {
  json events = json::array();
  auto key_event = [](const std::string& qcode, bool down) {
    return json{{"type", "key"},
                {"data", {{"down", down}, {"key", {{"type", "qcode"}, {"data", qcode}}}}}};
  };
  for (const auto& q : qcodes) events.push_back(key_event(q, true));
  for (auto it = qcodes.rbegin(); it != qcodes.rend(); ++it) {
    events.push_back(key_event(*it, false));
  }
  return events;
}

Result<std::vector<std::vector<std::string>>> text_to_combos(std::string_view text) {
  std::vector<std::vector<std::string>> combos;
  combos.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      combos.push_back({std::string(1, c)});
      continue;
    }
    if (c >= 'A' && c <= 'Z') {
      combos.push_back({"shift", std::string(1, static_cast<char>(c - 'A' + 'a'))});
      continue;
    }
    const auto plain = std::find_if(kPlainSymbols.begin(), kPlainSymbols.end(),
                                    [c](const KeySymbol& s) { return s.symbol == c; });
    if (plain != kPlainSymbols.end()) {
      combos.push_back({std::string(plain->qcode)});
      continue;
    }
    const auto shifted = std::find_if(kKeySymbols.begin(), kKeySymbols.end(),
                                      [c](const KeySymbol& s) { return s.symbol == c; });
    if (shifted != kKeySymbols.end()) {
      combos.push_back({"shift", std::string(shifted->qcode)});
      continue;
    }
    return fail(Errc::kInvalidArgument,
                "cannot type byte " + hex_byte(static_cast<unsigned char>(c)) + " at position " +
                    std::to_string(i) + ": only printable ASCII, '\\n' and '\\t' are supported");
  }
  return combos;
}

Result<json> mouse_abs_events(int x, int y, int width, int height) {
  if (width < 1 || height < 1) {
    return fail(Errc::kInvalidArgument, "screen size must be at least 1x1, got " +
                                            std::to_string(width) + "x" + std::to_string(height));
  }
  // round((p + 0.5) * kInputAbsMax / size) = floor(((2p + 1) * kInputAbsMax + size) / (2 size))
  auto scale = [](int p, int size) {
    const std::int64_t clamped = std::clamp(p, 0, size - 1);
    const std::int64_t value =
        ((2 * clamped + 1) * kInputAbsMax + size) / (2 * static_cast<std::int64_t>(size));
    return static_cast<int>(std::min<std::int64_t>(value, kInputAbsMax));
  };
  return json::array({
      {{"type", "abs"}, {"data", {{"axis", "x"}, {"value", scale(x, width)}}}},
      {{"type", "abs"}, {"data", {{"axis", "y"}, {"value", scale(y, height)}}}},
  });
}

Result<json> mouse_button_events(std::string_view button, bool down) {
  if (std::find(kButtons.begin(), kButtons.end(), button) == kButtons.end()) {
    return fail(Errc::kInvalidArgument,
                "unknown mouse button '" + std::string(button) +
                    "' (known: left, middle, right, wheel-up, wheel-down, side, extra, "
                    "wheel-left, wheel-right)");
  }
  return json::array(
      {{{"type", "btn"}, {"data", {{"down", down}, {"button", std::string(button)}}}}});
}

}  // namespace glassbox::vm_supervisor
