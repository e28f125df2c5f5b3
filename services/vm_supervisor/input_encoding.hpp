// Input encoding: keyboard and mouse input as the `events` array of QMP `input-send-event`.
//
// Pure functions, no I/O. A typical use:
//   auto combo = parse_key_combo("ctrl-alt-delete");            // {"ctrl","alt","delete"}
//   client.execute("input-send-event", {{"events", key_combo_events(*combo)}});
// Typing text: send one input-send-event per combo of text_to_combos(), not one command for
// the whole text: QEMU delivers the events of one command back to back, and the emulated
// keyboard's queue (PS/2) can overflow and drop keys on long texts.
// Mouse: absolute positioning needs a tablet in the guest (`-device virtio-tablet-pci` or
// `-usb -device usb-tablet`); see facts.md.
//
// Key names are QEMU's QKeyCode values ("qcodes") from qapi/ui.json of QEMU 7.2, the list
// QEMU 7.2 itself reports through query-qmp-schema (149 names; "unmapped" is left out since
// it stands for no key). Newer QEMUs add f13..f24 and others; they are rejected here.
//
// Thread-safety: all functions are pure and reentrant.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::vm_supervisor {

// Largest value of an absolute axis in QEMU (INPUT_EVENT_ABS_MAX); the smallest is 0.
inline constexpr int kInputAbsMax = 32767;

// Every accepted qcode, in QEMU's enum order. Static storage.
std::span<const std::string_view> valid_qcodes() noexcept;

// Whether `qcode` is an accepted qcode (exact, lowercase: "ctrl", "kp_enter", "a").
bool is_valid_qcode(std::string_view qcode) noexcept;

// Splits a key combo, qcodes joined by '-', into its qcodes: "ctrl-alt-delete" ->
// {"ctrl","alt","delete"}, "ret" -> {"ret"}, "shift-a" -> {"shift","a"}. The '-' key itself
// is the qcode "minus" ("ctrl-minus").
// Errors (kInvalidArgument, the message names the combo and the culprit): empty combo; an
// empty qcode (leading, trailing or doubled '-'); an unknown qcode (with a hint when its
// lowercase form is valid); a qcode given twice.
[[nodiscard]] Result<std::vector<std::string>> parse_key_combo(std::string_view combo);

// The events of pressing `qcodes` in order and releasing them in reverse order, e.g. for
// {"ctrl","c"}: ctrl down, c down, c up, ctrl up. Each element:
//   {"type":"key","data":{"down":true,"key":{"type":"qcode","data":"ctrl"}}}
// Returns a JSON array (empty for no qcodes). Does not validate: pass the output of
// parse_key_combo() or text_to_combos().
nlohmann::json key_combo_events(const std::vector<std::string>& qcodes);

// Maps text to one key combo per byte, for a US keyboard layout: 'a' -> {"a"}, 'A' ->
// {"shift","a"}, '!' -> {"shift","1"}, ' ' -> {"spc"}, '\n' -> {"ret"}, '\t' -> {"tab"}.
// Accepts printable ASCII (0x20..0x7e), '\n' and '\t'.
// Errors: kInvalidArgument for any other byte (including '\r' and every byte >= 0x80), naming
// the byte in hex and its 0-based position in `text`.
[[nodiscard]] Result<std::vector<std::vector<std::string>>> text_to_combos(std::string_view text);

// Absolute pointer motion to pixel (x, y) of a width x height screen: two events
//   {"type":"abs","data":{"axis":"x","value":VX}}, {"type":"abs","data":{"axis":"y",...}}
// x is clamped to [0, width-1] and y to [0, height-1]. Values aim at the centre of the
// pixel: VX = round((x + 0.5) * 32767 / width), computed in integers, rounding halves up;
// always within 0..32767. The centre (rather than QEMU's own x * 32767 / width, the pixel's
// left edge) makes the guest land on pixel x whether it scales back with floor(v * width /
// 32768), floor(v * width / 32767) or round(v * (width - 1) / 32767).
// Errors: kInvalidArgument when width or height is below 1.
[[nodiscard]] Result<nlohmann::json> mouse_abs_events(int x, int y, int width, int height);

// A mouse button press (`down` true) or release: one event
//   {"type":"btn","data":{"down":true,"button":"left"}}
// `button`: QEMU 7.2's InputButton names: left, middle, right, wheel-up, wheel-down, side,
// extra, wheel-left, wheel-right (a wheel step is a press then a release).
// Errors: kInvalidArgument naming an unknown button.
[[nodiscard]] Result<nlohmann::json> mouse_button_events(std::string_view button, bool down);

}  // namespace glassbox::vm_supervisor
