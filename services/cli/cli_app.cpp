#include "services/cli/cli_app.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>

#include "shared/paths.hpp"

namespace glassbox::cli {

Result<Invocation> parse_cli(const std::vector<std::string>& args, std::string& help_text) {
  Invocation inv;
  CLI::App app{"glassbox: a running VM made a glass box", "glassbox"};
  app.require_subcommand(1);
  std::string state_dir;
  auto add_state = [&](CLI::App* a) {
    a->add_option(
        "--state-dir", state_dir,
        "instance state dir (default $XDG_STATE_HOME/glassbox or ~/.local/state/glassbox)");
  };
  add_state(&app);

  auto* up = app.add_subcommand("up", "start RouDi, the event bus and the services; boot the VM");
  add_state(up);
  up->add_option("--config", inv.config_path, "glassbox.toml")->check(CLI::ExistingFile);
  double for_s = 0;
  auto* for_opt = up->add_option("--for", for_s, "run this many seconds, then shut down")
                      ->check(CLI::PositiveNumber);
  up->add_option("--report", inv.report_path, "write a JSON report here on shutdown");

  auto* bus = app.add_subcommand(
      "bus", "only the event bus of `up` (for services run by docker-compose or systemd)");
  add_state(bus);
  auto* down = app.add_subcommand("down", "stop everything `glassbox up` started");
  add_state(down);
  auto* status = app.add_subcommand("status", "VM and service status");
  add_state(status);
  status->add_flag("--json", inv.json, "JSON output");
  auto* console = app.add_subcommand("console", "print the serial console log");
  add_state(console);
  console->add_flag("-f,--follow", inv.follow, "keep printing new lines (across reboots)");

  auto* vm = app.add_subcommand("vm", "control the VM and inject input");
  add_state(vm);
  vm->require_subcommand(1);
  for (const char* simple : {"pause", "resume", "reset", "powerdown", "kill", "start"}) {
    add_state(vm->add_subcommand(simple, std::string(simple) + " the VM"));
  }
  auto* key =
      vm->add_subcommand("key", "press a key combo: qcodes joined by '-', e.g. ctrl-alt-delete");
  add_state(key);
  key->add_option("COMBO", inv.key_combo, "e.g. ret, shift-a, ctrl-alt-delete")->required();
  auto* type = vm->add_subcommand("type", "type text as key presses (US layout)");
  add_state(type);
  type->add_option("TEXT", inv.text, "printable ASCII; \\n is not interpreted")->required();
  auto* mouse = vm->add_subcommand("mouse", "move the absolute pointer to screen pixel X Y");
  add_state(mouse);
  mouse->add_option("X", inv.mouse_x)->required()->check(CLI::NonNegativeNumber);
  mouse->add_option("Y", inv.mouse_y)->required()->check(CLI::NonNegativeNumber);
  mouse->add_option("--click", inv.click, "click a button there")
      ->check(CLI::IsMember({"left", "right", "middle"}));
  auto* shot = vm->add_subcommand("screendump", "write the latest screen frame as PNG");
  add_state(shot);
  shot->add_option("FILE", inv.png_path, "output .png")->required();

  auto* ram = app.add_subcommand("ram", "guest RAM as the ram-snapshotter streams it");
  add_state(ram);
  ram->require_subcommand(1);
  auto* peek =
      ram->add_subcommand("peek", "hex bytes at a guest-physical address, from a live mirror");
  add_state(peek);
  std::string gpa_text, len_text, pc_text;
  peek->add_option("GPA", gpa_text, "guest-physical address (0x... or decimal)")->required();
  peek->add_option("LEN", len_text, "bytes (at most 1 MiB)")->required();
  auto* dump = ram->add_subcommand("dump", "write guest RAM to a file (raw image or LiME)");
  add_state(dump);
  dump->add_option("FILE", inv.dump_path, "output file")->required();
  dump->add_option("--format", inv.dump_format, "raw: flat gpa image; lime: LiME ranges")
      ->check(CLI::IsMember({"raw", "lime"}));
  dump->add_flag("--consistent", inv.consistent, "stop the vCPUs while the keyframe is copied");
  auto* stats = ram->add_subcommand("stats", "ram-snapshotter figures");
  add_state(stats);
  stats->add_flag("--json", inv.json, "JSON output");

  const std::map<std::string, std::string> kIntrospect = {
      {"ps", "the guest's processes, from raw RAM"},
      {"modules", "the guest kernel's modules"},
      {"kernel", "the guest kernel: release, KASLR slide, phys_base"},
      {"dmesg", "the guest kernel's log (printk ring buffer)"},
      {"maps", "one guest process's memory map, like /proc/PID/maps"},
      {"regions", "which guest-physical pages each process maps (gva -> gpa runs)"}};
  for (const auto& [what, help] : kIntrospect) {
    auto* c = app.add_subcommand(what, help);
    add_state(c);
    c->add_flag("--json", inv.json, "JSON output");
    c->add_option("--ram", inv.offline_ram, "offline: a raw or LiME dump instead of the live VM")
        ->check(CLI::ExistingFile);
    c->add_option("--kernel", inv.kernel_image, "the guest's bzImage (BTF/kallsyms fallback)")
        ->check(CLI::ExistingFile);
    c->add_option("--profile-cache", inv.profile_cache,
                  "offline: kernel profile cache (SQLite; default "
                  "$XDG_CACHE_HOME/glassbox/profiles.sqlite; 'none' turns it off)");
    if (what == "ps") {
      c->add_flag("--history", inv.history,
                  "every process semantic-db has seen, with first/last seen and exit times");
    }
    if (what == "maps") {
      c->add_option("PID", inv.pid, "process id")->required()->check(CLI::PositiveNumber);
    }
  }

  auto* hot = app.add_subcommand("hot", "the guest's hottest blocks (pattern-miner)");
  add_state(hot);
  hot->add_option("--top", inv.top_n, "how many (1..4096)")->check(CLI::Range(1, 4096));
  hot->add_flag("--json", inv.json, "JSON output");
  auto* loops = app.add_subcommand("loops", "the guest's hottest loops (natural loops of the CFG)");
  add_state(loops);
  loops->add_option("--top", inv.top_n, "how many (1..4096)")->check(CLI::Range(1, 4096));
  loops->add_flag("--json", inv.json, "JSON output");
  auto* trace = app.add_subcommand("trace", "execution tracing");
  add_state(trace);
  trace->require_subcommand(1);
  auto* tstats = trace->add_subcommand("stats", "events/s, drops, mode, miner figures");
  add_state(tstats);
  tstats->add_flag("--json", inv.json, "JSON output");

  auto* synth =
      app.add_subcommand("synth", "verified Pixel programs of hot blocks (smt-synthesizer)");
  add_state(synth);
  synth->require_subcommand(1);
  auto* slist = synth->add_subcommand("list", "every block in the microcode library, newest first");
  add_state(slist);
  slist->add_flag("--json", inv.json, "JSON output");
  auto* sshow = synth->add_subcommand("show", "one block: status, x86 and its Pixel program");
  add_state(sshow);
  sshow->add_option("PC", pc_text, "the block's pc (0x... or decimal)")->required();
  sshow->add_flag("--json", inv.json, "JSON output");

  auto* screenshot = app.add_subcommand(
      "screenshot", "write a compositor pane as PNG (the compositor draws it with Vulkan)");
  add_state(screenshot);
  screenshot->add_option("FILE", inv.png_path, "output .png")->required();
  screenshot->add_option("--pane", inv.pane, "screen | ram | ram3d | all (default all)")
      ->check(CLI::IsMember({"screen", "ram", "ram3d", "all"}));
  auto* map = app.add_subcommand("map", "the RAM map's geometry: gpa <-> pixel (compositor)");
  add_state(map);
  map->require_subcommand(1);
  auto* locate = map->add_subcommand("locate", "the pixel of `screenshot --pane ram` showing GPA");
  add_state(locate);
  std::string map_gpa_text;
  locate->add_option("GPA", map_gpa_text, "guest-physical address (0x... or decimal)")->required();
  locate->add_flag("--json", inv.json, "JSON output");
  auto* mgpa = map->add_subcommand("gpa", "the first gpa pixel X Y of the RAM map shows");
  add_state(mgpa);
  mgpa->add_option("X", inv.map_x)->required();
  mgpa->add_option("Y", inv.map_y)->required();
  mgpa->add_flag("--json", inv.json, "JSON output");
  auto* view = map->add_subcommand("view", "switch the RAM view or the highlighted process");
  add_state(view);
  view->add_option("--mode", inv.view_mode, "2d | 3d")->check(CLI::IsMember({"2d", "3d"}));
  view->add_option("--highlight", inv.highlight, "a pid or comm to outline; - for none");
  view->add_option("--yaw", inv.yaw_deg, "turn the 3D camera (degrees)")
      ->check(CLI::Range(-360.0, 360.0));
  view->add_option("--pitch", inv.pitch_deg, "tilt the 3D camera (degrees)")
      ->check(CLI::Range(-180.0, 180.0));
  view->add_option("--zoom", inv.zoom, "zoom the 3D camera (factor, 0.1..10)")
      ->check(CLI::Range(0.1, 10.0));

  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp& e) {
    help_text = app.help("", CLI::AppFormatMode::All);
    inv.command = "help";
    return inv;
  } catch (const CLI::CallForAllHelp& e) {
    help_text = app.help("", CLI::AppFormatMode::All);
    inv.command = "help";
    return inv;
  } catch (const CLI::ParseError& e) {
    return fail(Errc::kInvalidArgument, e.what());
  }
  for (auto* sub : app.get_subcommands()) {
    inv.command = sub->get_name();
    if (sub == vm) {
      for (auto* action : vm->get_subcommands()) inv.vm_action = action->get_name();
    }
    if (sub == ram) {
      for (auto* action : ram->get_subcommands()) inv.ram_action = action->get_name();
    }
    if (sub == synth) {
      for (auto* action : synth->get_subcommands()) inv.synth_action = action->get_name();
    }
    if (sub == map) {
      for (auto* action : map->get_subcommands()) inv.map_action = action->get_name();
    }
  }
  if (for_opt->count() > 0) inv.for_s = for_s;
  if (inv.ram_action == "peek") {
    auto number = [](const std::string& t, const char* what) -> Result<uint64_t> {
      try {
        size_t used = 0;
        const uint64_t v = std::stoull(t, &used, 0);
        if (used != t.size()) throw std::invalid_argument(t);
        return v;
      } catch (const std::exception&) {
        return fail(Errc::kInvalidArgument,
                    std::string(what) + ": '" + t + "' is not a number (0x... or decimal)");
      }
    };
    auto g = number(gpa_text, "GPA");
    if (!g) return tl::unexpected(g.error());
    auto l = number(len_text, "LEN");
    if (!l) return tl::unexpected(l.error());
    if (*l == 0 || *l > (1u << 20)) {
      return fail(Errc::kInvalidArgument, "LEN: expected 1..1048576 bytes, got " + len_text);
    }
    inv.gpa = *g;
    inv.length_bytes = *l;
  }
  if (inv.synth_action == "show") {
    try {
      size_t used = 0;
      inv.pc = std::stoull(pc_text, &used, 0);
      if (used != pc_text.size()) throw std::invalid_argument(pc_text);
    } catch (const std::exception&) {
      return fail(Errc::kInvalidArgument,
                  "PC: '" + pc_text + "' is not an address (0x... or decimal)");
    }
  }
  if (inv.map_action == "locate") {
    try {
      size_t used = 0;
      inv.gpa = std::stoull(map_gpa_text, &used, 0);
      if (used != map_gpa_text.size()) throw std::invalid_argument(map_gpa_text);
    } catch (const std::exception&) {
      return fail(Errc::kInvalidArgument,
                  "GPA: '" + map_gpa_text + "' is not an address (0x... or decimal)");
    }
  }
  inv.state_dir = state_dir.empty() ? shared::default_state_dir() : state_dir;
  return inv;
}

}  // namespace glassbox::cli
