#include "services/vm_supervisor/qmp_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

namespace glassbox::vm_supervisor {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kRecvChunkBytes = 64 * 1024;
// read_available() stops after this much so that a flooding peer cannot starve the owner.
constexpr std::size_t kReadAvailableBudgetBytes = 4 * 1024 * 1024;
constexpr milliseconds kConnectRetryInterval{10};
constexpr std::size_t kExcerptBytes = 80;

// A short, printable rendering of untrusted bytes for error messages: at most kExcerptBytes
// bytes, control and non-ASCII bytes as \xNN, with the total length when truncated.
std::string excerpt(std::string_view bytes) {
  std::string out = "'";
  const std::size_t n = std::min(bytes.size(), kExcerptBytes);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  out += "'";
  if (n < bytes.size()) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

// Deepest nesting of arrays/objects in `text`, stopping early once above `limit`. Skips
// brackets inside strings. Malformed input gives some number; the JSON parser rejects it.
int max_nesting(std::string_view text, int limit) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) return max_depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// now + timeout, with the timeout clamped to [0, 1 day] so that the sum cannot overflow.
Clock::time_point deadline_after(milliseconds timeout) {
  return Clock::now() + std::clamp(timeout, milliseconds{0}, milliseconds{24 * 3600 * 1000});
}

int remaining_ms(Clock::time_point deadline) {
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<milliseconds>(left).count();
  return static_cast<int>(std::min<long long>(ms, 1 << 30));
}

// Parses {"seconds": S, "microseconds": U} into S + U / 1e6.
Result<double> parse_timestamp(const json& ts) {
  if (!ts.is_object()) return fail(Errc::kProtocol, "QMP event timestamp is not an object");
  const auto s = ts.find("seconds");
  const auto us = ts.find("microseconds");
  if (s == ts.end() || us == ts.end() || !s->is_number_integer() || !us->is_number_integer()) {
    return fail(Errc::kProtocol, "QMP event timestamp lacks integer 'seconds' and 'microseconds'");
  }
  return static_cast<double>(s->get<std::int64_t>()) +
         static_cast<double>(us->get<std::int64_t>()) / 1e6;
}

Result<QemuVersion> parse_greeting_version(const json& qmp) {
  QemuVersion version;
  const auto v = qmp.find("version");
  const json* qemu = nullptr;
  if (v != qmp.end() && v->is_object()) {
    const auto q = v->find("qemu");
    if (q != v->end() && q->is_object()) qemu = &*q;
    const auto p = v->find("package");
    if (p != v->end() && p->is_string()) version.package = p->get<std::string>();
  }
  auto component = [&](const char* key, int& out) {
    if (qemu == nullptr) return false;
    const auto it = qemu->find(key);
    if (it == qemu->end() || !it->is_number_integer()) return false;
    const auto value = it->get<std::int64_t>();
    if (value < 0 || value > 1'000'000) return false;
    out = static_cast<int>(value);
    return true;
  };
  if (!component("major", version.major) || !component("minor", version.minor) ||
      !component("micro", version.micro)) {
    return fail(Errc::kProtocol, "QMP greeting lacks integer version.qemu.{major,minor,micro}: " +
                                     excerpt(qmp.dump()));
  }
  return version;
}

}  // namespace

const char* qmp_message_kind_name(QmpMessageKind kind) noexcept {
  switch (kind) {
    case QmpMessageKind::kGreeting:
      return "greeting";
    case QmpMessageKind::kReturn:
      return "return";
    case QmpMessageKind::kError:
      return "error";
    case QmpMessageKind::kEvent:
      return "event";
  }
  return "unknown";
}

Result<QmpMessage> parse_qmp_line(std::string_view line) {
  if (line.size() > kMaxQmpLineBytes) {
    return fail(Errc::kProtocol, "QMP line of " + std::to_string(line.size()) +
                                     " bytes exceeds the limit of " +
                                     std::to_string(kMaxQmpLineBytes) + " bytes");
  }
  if (const int depth = max_nesting(line, kMaxQmpJsonDepth); depth > kMaxQmpJsonDepth) {
    return fail(Errc::kProtocol, "QMP line nests JSON deeper than " +
                                     std::to_string(kMaxQmpJsonDepth) +
                                     " levels: " + excerpt(line));
  }
  json doc = json::parse(line, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return fail(Errc::kProtocol, "QMP line is not valid JSON: " + excerpt(line));
  }
  if (!doc.is_object()) {
    return fail(Errc::kProtocol, std::string("QMP line is a JSON ") + doc.type_name() +
                                     ", not an object: " + excerpt(line));
  }

  static constexpr const char* kKindKeys[] = {"QMP", "return", "error", "event"};
  int n_kinds = 0;
  for (const char* key : kKindKeys) n_kinds += doc.contains(key) ? 1 : 0;
  if (n_kinds != 1) {
    return fail(Errc::kProtocol, std::string("QMP object has ") +
                                     (n_kinds == 0 ? "none" : "more than one") +
                                     " of the keys QMP/return/error/event: " + excerpt(line));
  }

  QmpMessage msg;
  auto take_id = [&] {
    const auto it = doc.find("id");
    if (it != doc.end() && it->is_number_unsigned()) msg.id = it->get<std::uint64_t>();
  };

  if (auto it = doc.find("QMP"); it != doc.end()) {
    if (!it->is_object()) {
      return fail(Errc::kProtocol,
                  "QMP greeting's 'QMP' member is not an object: " + excerpt(line));
    }
    msg.kind = QmpMessageKind::kGreeting;
    msg.payload = std::make_shared<json>(std::move(*it));
    return msg;
  }
  if (auto it = doc.find("return"); it != doc.end()) {
    msg.kind = QmpMessageKind::kReturn;
    take_id();
    msg.payload = std::make_shared<json>(std::move(*it));
    return msg;
  }
  if (auto it = doc.find("error"); it != doc.end()) {
    const auto cls = it->is_object() ? it->find("class") : it->end();
    const auto desc = it->is_object() ? it->find("desc") : it->end();
    if (!it->is_object() || cls == it->end() || desc == it->end() || !cls->is_string() ||
        !desc->is_string()) {
      return fail(Errc::kProtocol,
                  "QMP error reply lacks string error.class and error.desc: " + excerpt(line));
    }
    msg.kind = QmpMessageKind::kError;
    take_id();
    msg.error_class = cls->get<std::string>();
    msg.error_desc = desc->get<std::string>();
    msg.payload = std::make_shared<json>(std::move(*it));
    return msg;
  }
  // The only kind left: "event".
  const auto ev = doc.find("event");
  if (!ev->is_string()) {
    return fail(Errc::kProtocol, "QMP event name is not a string: " + excerpt(line));
  }
  msg.kind = QmpMessageKind::kEvent;
  msg.event_name = ev->get<std::string>();
  if (const auto ts = doc.find("timestamp"); ts != doc.end()) {
    auto seconds = parse_timestamp(*ts);
    if (!seconds) {
      return fail(Errc::kProtocol,
                  seconds.error().message + " in event " + msg.event_name + ": " + excerpt(line));
    }
    msg.timestamp_s = *seconds;
  }
  if (const auto data = doc.find("data"); data != doc.end()) {
    if (!data->is_object()) {
      return fail(Errc::kProtocol,
                  "QMP event " + msg.event_name +
                      " has a 'data' member that is not an object: " + excerpt(line));
    }
    msg.payload = std::make_shared<json>(std::move(*data));
  } else {
    msg.payload = std::make_shared<json>(json::object());
  }
  return msg;
}

// ---------------------------------------------------------------------------------------------
// QmpClient

Result<QmpClient> QmpClient::connect(const std::string& socket_path, milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return fail(Errc::kInvalidArgument, "QMP socket path must have 1.." +
                                            std::to_string(sizeof(addr.sun_path) - 1) +
                                            " bytes: '" + socket_path + "'");
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  const auto deadline = deadline_after(timeout);

  int fd = -1;
  int last_errno = 0;
  for (;;) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail_errno("socket(AF_UNIX) for QMP");
    int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) {  // not expected for AF_UNIX, handled for safety
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) == 1) {
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      } else {
        err = ETIMEDOUT;
      }
    }
    if (err == 0) break;
    ::close(fd);
    fd = -1;
    last_errno = err;
    if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN && err != EINTR && err != ETIMEDOUT) {
      return fail(Errc::kIo, "connect to QMP socket " + socket_path + ": " + std::strerror(err));
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      return fail(Errc::kUnavailable, "QMP socket " + socket_path +
                                          " accepted no connection within " +
                                          std::to_string(timeout.count()) +
                                          " ms (last error: " + std::strerror(last_errno) + ")");
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(kConnectRetryInterval, deadline - now));
  }

  QmpClient client(fd);
  auto greeting = client.next_message(deadline, "greeting", timeout);
  if (!greeting) return tl::unexpected(std::move(greeting.error()));
  if (greeting->kind != QmpMessageKind::kGreeting) {
    return fail(Errc::kProtocol, std::string("QMP peer at ") + socket_path + " sent a " +
                                     qmp_message_kind_name(greeting->kind) +
                                     " message instead of the greeting");
  }
  auto version = parse_greeting_version(*greeting->payload);
  if (!version) return tl::unexpected(std::move(version.error()));
  client.version_ = std::move(*version);

  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  auto caps = client.execute("qmp_capabilities", std::max(left, milliseconds{0}));
  if (!caps) return tl::unexpected(std::move(caps.error()));
  return client;
}

QmpClient::QmpClient(QmpClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      rx_(std::move(other.rx_)),
      rx_begin_(std::exchange(other.rx_begin_, 0)),
      rx_scanned_(std::exchange(other.rx_scanned_, 0)),
      next_id_(other.next_id_),
      events_(std::move(other.events_)),
      dropped_events_(other.dropped_events_),
      broken_(std::move(other.broken_)),
      version_(std::move(other.version_)) {
  other.broken_ = Error{Errc::kUnavailable, "QMP client was moved from"};
}

QmpClient& QmpClient::operator=(QmpClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    rx_ = std::move(other.rx_);
    rx_begin_ = std::exchange(other.rx_begin_, 0);
    rx_scanned_ = std::exchange(other.rx_scanned_, 0);
    next_id_ = other.next_id_;
    events_ = std::move(other.events_);
    dropped_events_ = other.dropped_events_;
    broken_ = std::move(other.broken_);
    version_ = std::move(other.version_);
    other.broken_ = Error{Errc::kUnavailable, "QMP client was moved from"};
  }
  return *this;
}

QmpClient::~QmpClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<json> QmpClient::execute(std::string_view command, milliseconds timeout) {
  return execute_impl(command, nullptr, timeout);
}

Result<json> QmpClient::execute(std::string_view command, const json& arguments,
                                milliseconds timeout) {
  return execute_impl(command, &arguments, timeout);
}

Result<std::string> QmpClient::human_monitor_command(std::string_view command_line,
                                                     milliseconds timeout) {
  const json args = {{"command-line", std::string(command_line)}};
  auto reply = execute_impl("human-monitor-command", &args, timeout);
  if (!reply) return tl::unexpected(std::move(reply.error()));
  if (!reply->is_string()) {
    return fail(Errc::kProtocol, std::string("QMP human-monitor-command returned a ") +
                                     reply->type_name() + ", not a string");
  }
  return reply->get<std::string>();
}

Result<json> QmpClient::execute_impl(std::string_view command, const json* arguments,
                                     milliseconds timeout) {
  if (auto ok = check_usable(); !ok) return tl::unexpected(std::move(ok.error()));
  const std::string name(command);
  if (arguments != nullptr && !arguments->is_null() && !arguments->is_object()) {
    return fail(Errc::kInvalidArgument,
                "arguments of QMP '" + name + "' must be an object, got " + arguments->type_name());
  }
  const auto deadline = deadline_after(timeout);
  const std::uint64_t id = next_id_;

  std::string request;
  {
    json req = {{"execute", name}};
    if (arguments != nullptr && !arguments->is_null()) req["arguments"] = *arguments;
    req["id"] = id;
    try {  // dump() throws only on invalid UTF-8 in strings
      request = req.dump();
    } catch (const json::exception& e) {
      return fail(Errc::kInvalidArgument,
                  "QMP '" + name + "' has a string that is not valid UTF-8: " + e.what());
    }
  }
  request.push_back('\n');
  ++next_id_;  // from here on, any reply with `id` or lower that is not awaited is stale

  if (auto sent = send_all(request, deadline, name, timeout); !sent) {
    return tl::unexpected(std::move(sent.error()));
  }

  const std::string what = "reply to '" + name + "'";
  for (;;) {
    auto msg = next_message(deadline, what, timeout);
    if (!msg) return tl::unexpected(std::move(msg.error()));
    const bool is_reply =
        msg->kind == QmpMessageKind::kReturn || msg->kind == QmpMessageKind::kError;
    if (!is_reply || msg->id != id) {
      if (auto handled = handle_unsolicited(std::move(*msg)); !handled) {
        return tl::unexpected(std::move(handled.error()));
      }
      continue;
    }
    // The awaited reply. Queue the events that came in the same read; a failure there breaks
    // the stream for the next call but does not take this reply away.
    (void)drain_buffered();
    if (msg->kind == QmpMessageKind::kError) {
      return fail(Errc::kProtocol,
                  "QMP '" + name + "' failed: " + msg->error_class + ": " + msg->error_desc);
    }
    return std::move(*msg->payload);
  }
}

Result<void> QmpClient::read_available() {
  if (auto ok = check_usable(); !ok) return ok;
  if (auto ok = drain_buffered(); !ok) return ok;
  std::size_t total = 0;
  while (total < kReadAvailableBudgetBytes) {
    auto n = recv_some();
    if (!n) {
      (void)drain_buffered();  // complete lines that came before the close still count
      return tl::unexpected(break_stream(std::move(n.error())));
    }
    if (*n == 0) break;
    total += *n;
    if (auto ok = drain_buffered(); !ok) return ok;
  }
  return {};
}

std::vector<QmpEvent> QmpClient::take_events() {
  std::vector<QmpEvent> out(std::make_move_iterator(events_.begin()),
                            std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

Result<std::optional<QmpMessage>> QmpClient::pop_buffered_message() {
  for (;;) {
    const std::size_t from = std::max(rx_scanned_, rx_begin_);
    const std::size_t nl = rx_.find('\n', from);
    if (nl == std::string::npos) {
      rx_scanned_ = rx_.size();
      if (rx_.size() - rx_begin_ > kMaxQmpLineBytes) {
        return fail(Errc::kProtocol, "QMP peer sent more than " + std::to_string(kMaxQmpLineBytes) +
                                         " bytes without a newline: " +
                                         excerpt(std::string_view(rx_).substr(rx_begin_)));
      }
      return std::optional<QmpMessage>{};
    }
    const std::string_view line = std::string_view(rx_).substr(rx_begin_, nl - rx_begin_);
    rx_begin_ = nl + 1;
    rx_scanned_ = rx_begin_;
    if (is_blank(line)) continue;  // bounded: each pass consumes a line of the buffer
    auto msg = parse_qmp_line(line);
    if (!msg) return tl::unexpected(std::move(msg.error()));
    return std::optional<QmpMessage>(std::move(*msg));
  }
}

Result<std::size_t> QmpClient::recv_some() {
  if (rx_begin_ > 0) {  // compact: drop consumed lines
    rx_.erase(0, rx_begin_);
    rx_scanned_ -= std::min(rx_scanned_, rx_begin_);
    rx_begin_ = 0;
  }
  const std::size_t old_size = rx_.size();
  rx_.resize(old_size + kRecvChunkBytes);
  const ssize_t n = ::recv(fd_, rx_.data() + old_size, kRecvChunkBytes, MSG_DONTWAIT);
  const int err = errno;
  rx_.resize(old_size + (n > 0 ? static_cast<std::size_t>(n) : 0));
  if (n > 0) return static_cast<std::size_t>(n);
  if (n == 0) return fail(Errc::kUnavailable, "QMP peer closed the connection");
  if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) return std::size_t{0};
  if (err == ECONNRESET || err == EPIPE) {
    return fail(Errc::kUnavailable, "QMP peer reset the connection");
  }
  errno = err;
  return fail_errno("recv from QMP socket");
}

Result<QmpMessage> QmpClient::next_message(Clock::time_point deadline, std::string_view what,
                                           milliseconds timeout) {
  for (;;) {
    auto buffered = pop_buffered_message();
    if (!buffered) return break_stream(std::move(buffered.error()));
    if (*buffered) return std::move(**buffered);

    const int wait_ms = remaining_ms(deadline);
    if (wait_ms <= 0) {
      return fail(Errc::kTimeout, "QMP sent no " + std::string(what) + " within " +
                                      std::to_string(timeout.count()) + " ms");
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, wait_ms);
    if (rc < 0 && errno != EINTR) return break_stream(fail_errno("poll on QMP socket").value());
    if (rc <= 0) continue;  // timeout or EINTR: the deadline check above decides
    auto n = recv_some();
    if (!n) return break_stream(std::move(n.error()));
  }
}

Result<void> QmpClient::send_all(std::string_view bytes, Clock::time_point deadline,
                                 std::string_view command, milliseconds timeout) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n =
        ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    const int err = errno;
    if (n < 0 && err == EINTR) continue;
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK) {
      if (err == EPIPE || err == ECONNRESET) {
        return break_stream(Error{Errc::kUnavailable, "QMP peer closed the connection"});
      }
      errno = err;
      return break_stream(fail_errno("send to QMP socket").value());
    }
    const int wait_ms = remaining_ms(deadline);
    if (wait_ms <= 0) {
      Error error{Errc::kTimeout, "QMP socket did not take '" + std::string(command) + "' within " +
                                      std::to_string(timeout.count()) + " ms"};
      // Half a command on the wire would corrupt the next one.
      if (sent > 0) return break_stream(std::move(error));
      return tl::unexpected(std::move(error));
    }
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, wait_ms) < 0 && errno != EINTR) {
      return break_stream(fail_errno("poll on QMP socket").value());
    }
  }
  return {};
}

Result<void> QmpClient::drain_buffered() {
  for (;;) {
    auto msg = pop_buffered_message();
    if (!msg) return break_stream(std::move(msg.error()));
    if (!*msg) return {};
    if (auto ok = handle_unsolicited(std::move(**msg)); !ok) return ok;
  }
}

Result<void> QmpClient::handle_unsolicited(QmpMessage&& message) {
  switch (message.kind) {
    case QmpMessageKind::kEvent:
      queue_event(std::move(message));
      return {};
    case QmpMessageKind::kGreeting:
      return break_stream(Error{Errc::kProtocol, "QMP peer sent a second greeting"});
    case QmpMessageKind::kReturn:
    case QmpMessageKind::kError:
      // Replies to commands that timed out arrive late: ids below next_id_ are ours.
      if (message.id && *message.id < next_id_) return {};
      return break_stream(
          Error{Errc::kProtocol,
                std::string("QMP peer sent a ") + qmp_message_kind_name(message.kind) +
                    (message.id ? " with id " + std::to_string(*message.id) + " that we never sent"
                                : " without an id we sent")});
  }
  return {};
}

void QmpClient::queue_event(QmpMessage&& message) {
  if (events_.size() >= kMaxQueuedQmpEvents) {
    events_.pop_front();
    ++dropped_events_;
  }
  events_.push_back(
      QmpEvent{std::move(message.event_name), std::move(message.payload), message.timestamp_s});
}

tl::unexpected<Error> QmpClient::break_stream(Error error) {
  if (!broken_) broken_ = error;
  return tl::unexpected<Error>(std::move(error));
}

Result<void> QmpClient::check_usable() const {
  if (!broken_) return {};
  return fail(Errc::kUnavailable,
              "QMP connection is unusable after an earlier error (" + broken_->to_string() + ")");
}

}  // namespace glassbox::vm_supervisor
