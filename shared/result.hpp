// glassbox::Result and glassbox::Error: the one error type of the project.
//
// Every fallible function returns `Result<T>` (= tl::expected<T, Error>). Exceptions are
// only used at boundaries (main(), and adapters around toml++/CLI11/cppzmq), which turn
// them into Error. An Error carries a machine-readable code and a human message that names
// what was wrong (the key, the file, the field), ready to print as one line.
//
// Thread-safety: value types; no shared state.
#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace glassbox {

// What kind of failure. Stable: services put it in FlatBuffers replies (as its integer).
enum class Errc : int {
  kOk = 0,
  kInvalidArgument = 1,  // caller passed a bad value (CLI flag, config value)
  kNotFound = 2,         // file, instance, key, or object does not exist
  kAlreadyExists = 3,    // e.g. another live instance owns the state dir
  kIo = 4,               // a system call failed (errno text in the message)
  kTimeout = 5,          // a peer did not answer in time
  kProtocol = 6,         // a peer sent something malformed (QMP, FlatBuffers, ring record)
  kUnavailable = 7,      // a peer is not running / not reachable
  kUnsupported = 8,      // a feature the host or guest lacks (KVM, soft-dirty, ...)
  kOutOfRange = 9,       // an address or index outside what exists (gpa outside RAM)
  kInternal = 10,        // a broken invariant we could report instead of aborting
};

// Short lowercase name of `code`, e.g. "timeout". Never null.
const char* errc_name(Errc code) noexcept;

struct Error {
  Errc code = Errc::kInternal;
  std::string message;

  // "timeout: QMP did not answer 'stop' within 5000 ms"
  std::string to_string() const { return std::string(errc_name(code)) + ": " + message; }
};

template <typename T>
using Result = tl::expected<T, Error>;

// Builds the unexpected value: `return fail(Errc::kIo, "open " + path + ": " + strerror(e));`
inline tl::unexpected<Error> fail(Errc code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

// "what: strerror(errno)" as an Errc::kIo error, for a failed system call.
tl::unexpected<Error> fail_errno(std::string_view what);

}  // namespace glassbox

// Evaluates a Result-returning expression; on error returns that error from the caller.
#define GB_TRY(expr)                                                                 \
  do {                                                                               \
    if (auto gb_try_result_ = (expr); !gb_try_result_) {                             \
      return ::tl::unexpected<::glassbox::Error>(std::move(gb_try_result_).error()); \
    }                                                                                \
  } while (0)
