// The `glassbox` command line: its grammar (CLI11) and the parsed invocation.
//
//   glassbox [--state-dir DIR] up [--config FILE] [--for SECONDS] [--report FILE]
//   glassbox [--state-dir DIR] down
//   glassbox [--state-dir DIR] status [--json]
//   glassbox [--state-dir DIR] console [--follow]
//   glassbox [--state-dir DIR] vm pause|resume|reset|powerdown|kill|start
//   glassbox [--state-dir DIR] vm key COMBO | vm type TEXT | vm mouse X Y [--click BUTTON]
//   glassbox [--state-dir DIR] vm screendump FILE.png
//   glassbox [--state-dir DIR] ram peek GPA LEN | ram dump FILE --format raw|lime [--consistent]
//   glassbox [--state-dir DIR] ram stats [--json]
//   glassbox [--state-dir DIR] ps|modules|kernel|dmesg [--json] [--ram DUMP [--kernel BZIMAGE]]
//                              [--profile-cache FILE|none]
//   glassbox [--state-dir DIR] ps --history [--json]       (births and exits, from semantic-db)
//   glassbox [--state-dir DIR] maps PID [--json] [--ram DUMP ...]
//   glassbox [--state-dir DIR] regions [--json] [--ram DUMP ...]
//   glassbox [--state-dir DIR] hot [--top N] [--json] | loops [--top N] [--json]
//   glassbox [--state-dir DIR] trace stats [--json]
//   glassbox [--state-dir DIR] synth list [--json] | synth show PC [--json]
// --state-dir is accepted before or after the subcommand.
// Thread-safety: parse_cli() is reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::cli {

struct Invocation {
  std::string state_dir;              // resolved: flag, else the default state dir
  std::string command;                // "up", "down", "status", "console", "vm"
  std::string vm_action;              // for "vm": pause, resume, ..., key, type, mouse, screendump
  std::string config_path;            // up --config
  std::optional<double> for_s;        // up --for
  std::string report_path;            // up --report
  bool json = false;                  // status --json
  bool follow = false;                // console --follow
  std::string key_combo;              // vm key
  std::string text;                   // vm type
  int mouse_x = 0, mouse_y = 0;       // vm mouse
  std::string click;                  // vm mouse --click
  std::string png_path;               // vm screendump
  std::string ram_action;             // for "ram": peek, dump, stats
  uint64_t gpa = 0;                   // ram peek
  uint64_t length_bytes = 0;          // ram peek
  std::string dump_path;              // ram dump
  std::string dump_format = "raw";    // ram dump --format raw|lime
  bool consistent = false;            // ram dump --consistent
  std::string offline_ram;            // ps/modules/kernel --ram DUMP (raw or LiME)
  std::string kernel_image;           // ps/modules/kernel --kernel BZIMAGE
  std::string profile_cache;          // --profile-cache FILE ("none": off; empty: the default)
  bool history = false;               // ps --history
  int32_t pid = 0;                    // maps PID
  int top_n = 20;                     // hot/loops --top N
  std::string synth_action;           // for "synth": list, show
  uint64_t pc = 0;                    // synth show PC
  std::string pane = "all";           // screenshot --pane screen|ram|ram3d|all
  std::string map_action;             // for "map": locate, gpa, view
  uint32_t map_x = 0, map_y = 0;      // map gpa X Y
  std::string view_mode;              // map view --mode 2d|3d
  std::string highlight;              // map view --highlight PID|COMM|-
  double yaw_deg = 0, pitch_deg = 0;  // map view --yaw/--pitch (3D camera, degrees added)
  double zoom = 1.0;                  // map view --zoom (3D camera distance divided by it)
};

// Parses argv (without argv[0]). `help_text` receives CLI11's help/usage when the user asked
// for help (then the result is an Invocation with command "help").
// Errors: kInvalidArgument with CLI11's message (unknown flag, missing argument, bad value).
Result<Invocation> parse_cli(const std::vector<std::string>& args, std::string& help_text);

}  // namespace glassbox::cli
