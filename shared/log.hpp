// One named spdlog logger per service ("vm-supervisor", "up", ...), writing to stderr with
// time, level and name; `GLASSBOX_LOG_LEVEL` (trace|debug|info|warn|error) sets the level.
// Hot paths count in metrics instead of logging. Thread-safety: spdlog loggers are
// thread-safe (the _mt sinks).
#pragma once

#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace glassbox::shared {

// Creates (or returns) the logger `name` and makes it spdlog's default.
std::shared_ptr<spdlog::logger> make_logger(const std::string& name);

}  // namespace glassbox::shared
