// `glassbox ram peek|dump|stats`: guest RAM as a subscriber of the ram-snapshotter sees it.
#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "services/cli/client.hpp"
#include "services/cli/commands.hpp"
#include "shared/iox.hpp"
#include "shared/ram_dump.hpp"
#include "shared/ram_mirror.hpp"

namespace glassbox::cli {
namespace {

using std::chrono::milliseconds;

int report_error(const Error& e) {
  std::cerr << "glassbox: " << e.message << "\n";
  return 1;
}

// xxd-style lines: "0x07000000: 47 4c 41 53 ...  |GLAS...|"
void hexdump(uint64_t gpa, const uint8_t* p, uint64_t len) {
  for (uint64_t off = 0; off < len; off += 16) {
    std::string hex, text;
    for (uint64_t i = 0; i < 16; ++i) {
      if (off + i < len) {
        const uint8_t b = p[off + i];
        hex += fmt::format("{:02x} ", b);
        text += (b >= 0x20 && b < 0x7f) ? static_cast<char>(b) : '.';
      } else {
        hex += "   ";
      }
      if (i == 7) hex += ' ';
    }
    std::cout << fmt::format("0x{:08x}: {} |{}|\n", gpa + off, hex, text);
  }
}

// A live mirror for this CLI process: the instance name comes from the snapshotter.
Result<std::unique_ptr<shared::RamMirror>> open_mirror(const shared::StatePaths& paths) {
  auto st = query_service_status(paths, "ram-snapshotter", milliseconds(3000));
  if (!st) {
    if (st.error().code == Errc::kUnavailable) {
      return fail(Errc::kUnavailable, "ram-snapshotter is not running at " + paths.dir() +
                                          " (start the instance with `glassbox up`)");
    }
    return tl::unexpected(st.error());
  }
  const std::string instance = st->service.instance;
  GB_TRY(shared::init_runtime(instance, "cli-" + std::to_string(::getpid())));
  return shared::RamMirror::create(instance, paths.service_endpoint("ram-snapshotter"),
                                   "glassbox-cli-" + std::to_string(::getpid()));
}

}  // namespace

int cmd_ram(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  if (inv.ram_action == "stats") {
    auto st = query_service_status(paths, "ram-snapshotter", milliseconds(3000));
    if (!st) return report_error(st.error());
    const auto& ram = st->summary["ram"];
    if (inv.json) {
      std::cout << ram.dump(2) << "\n";
      return 0;
    }
    std::cout << fmt::format(
        "method {}  cycle {:.2f} ms  dirty {:.0f} pages/s  subscribers {}  keyframes {}  epoch "
        "{}\n{}\nlayout {}\n",
        ram.value("method", "?"), ram.value("cycle_ms", 0.0), ram.value("dirty_pages_per_s", 0.0),
        ram.value("subscribers", 0), ram.value("keyframes", 0), ram.value("epoch", 0),
        ram.value("method_reason", ""), ram.value("layout", ""));
    if (ram.contains("unavailable")) std::cout << "unavailable: " << ram["unavailable"] << "\n";
    return 0;
  }
  auto mirror = open_mirror(paths);
  if (!mirror) return report_error(mirror.error());
  if (inv.ram_action == "peek") {
    if (auto r = (*mirror)->wait_synced(milliseconds(20000)); !r) return report_error(r.error());
    auto view = (*mirror)->view();
    if (!view) return report_error(view.error());
    auto bytes = view->at(Gpa(inv.gpa), inv.length_bytes);
    if (!bytes) return report_error(bytes.error());
    hexdump(inv.gpa, *bytes, inv.length_bytes);
    return 0;
  }
  if (inv.ram_action == "dump") {
    if (auto r = (*mirror)->fresh_keyframe(inv.consistent, milliseconds(30000)); !r) {
      return report_error(r.error());
    }
    auto view = (*mirror)->view();
    if (!view) return report_error(view.error());
    const auto format =
        inv.dump_format == "lime" ? shared::DumpFormat::kLime : shared::DumpFormat::kRaw;
    if (auto r = shared::write_dump(inv.dump_path, *view, format); !r)
      return report_error(r.error());
    std::cout << fmt::format("wrote {} ({}, {} MiB of RAM in {} regions{})\n", inv.dump_path,
                             inv.dump_format, view->layout().ram_bytes() >> 20,
                             view->layout().regions().size(),
                             (*mirror)->core().last_keyframe_consistent() ? ", consistent" : "");
    return 0;
  }
  return report_error(Error{Errc::kInvalidArgument, "unknown ram action '" + inv.ram_action + "'"});
}

}  // namespace glassbox::cli
