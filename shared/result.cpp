#include "shared/result.hpp"

#include <cerrno>
#include <cstring>

namespace glassbox {

const char* errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::kOk:
      return "ok";
    case Errc::kInvalidArgument:
      return "invalid argument";
    case Errc::kNotFound:
      return "not found";
    case Errc::kAlreadyExists:
      return "already exists";
    case Errc::kIo:
      return "i/o error";
    case Errc::kTimeout:
      return "timeout";
    case Errc::kProtocol:
      return "protocol error";
    case Errc::kUnavailable:
      return "unavailable";
    case Errc::kUnsupported:
      return "unsupported";
    case Errc::kOutOfRange:
      return "out of range";
    case Errc::kInternal:
      return "internal error";
  }
  return "unknown error";
}

tl::unexpected<Error> fail_errno(std::string_view what) {
  const int e = errno;
  return fail(Errc::kIo, std::string(what) + ": " + std::strerror(e));
}

}  // namespace glassbox
