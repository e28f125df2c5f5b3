// The CLI's commands against a running instance (status, down, console, vm ...).
// Each returns the process exit code: 0 success, 1 failure (message printed to stderr).
// Thread-safety: called once from main().
#pragma once

#include "services/cli/cli_app.hpp"

namespace glassbox::cli {

int cmd_status(const Invocation& inv);
int cmd_down(const Invocation& inv);
int cmd_console(const Invocation& inv);
int cmd_vm(const Invocation& inv);
int cmd_ram(const Invocation& inv);
int cmd_introspect(const Invocation& inv);  // ps, modules, kernel, dmesg, maps, regions
int cmd_trace(const Invocation& inv);       // hot, loops, trace stats
int cmd_synth(const Invocation& inv);       // synth list, synth show PC
int cmd_compositor(const Invocation& inv);  // screenshot, map locate|gpa|view

}  // namespace glassbox::cli
