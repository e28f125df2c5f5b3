// `glassbox up`: the orchestrator of one instance.
//
// Takes the state dir's lock (one live instance per state dir), starts iceoryx RouDi when
// none runs (and stops it on exit if it started it), runs the ZeroMQ event proxy
// (XSUB bus-in.sock / XPUB bus-out.sock), serves its command endpoint up.sock
// (orchestrator.OrchestratorRequest: GetStatus, Shutdown) and runs each service of
// [up] services as a child process in its own process group, restarting a crashed one with
// exponential backoff ([up] restart_backoff_ms doubling to restart_backoff_max_ms; reset
// after 30 s of uptime). Runs until SIGINT/SIGTERM, `glassbox down`, or --for SECONDS; then
// stops every service (SIGTERM, then SIGKILL after 10 s), any QEMU left behind, the proxy
// and its RouDi, and writes the --report JSON.
//
// Thread-safety: run_up() runs on the calling thread; the proxy has its own thread.
#pragma once

#include <optional>
#include <string>

#include "shared/result.hpp"

namespace glassbox::cli {

struct UpOptions {
  std::string state_dir;
  std::string config_path;      // empty: built-in defaults
  std::optional<double> for_s;  // run this long, then shut down
  std::string report_path;      // JSON report written on shutdown
};

// Errors (nothing is left running): kInvalidArgument for a bad config; kNotFound naming
// the Debian package when QEMU or iox-roudi is missing, or the unreadable kernel;
// kAlreadyExists when another instance owns the state dir.
Result<void> run_up(const UpOptions& options);

// `glassbox bus`: only the event proxy of `up` (XSUB bus-in.sock / XPUB bus-out.sock in the
// state dir), for running services without `up` (docker-compose, systemd). Runs until SIGINT
// or SIGTERM. Errors: kAlreadyExists when another bus runs for the state dir; kIo when the
// endpoints cannot be bound.
Result<void> run_bus(const std::string& state_dir);

}  // namespace glassbox::cli
