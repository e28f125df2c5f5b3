// QmpClient: a client of the QEMU Machine Protocol (QMP) over a unix stream socket.
//
// QEMU is started with `-qmp unix:PATH,server=on,wait=off` (pretty=off, the default). The
// protocol: QEMU sends a greeting `{"QMP": {"version": ..., "capabilities": [...]}}`; the
// client must send `qmp_capabilities` before anything else; afterwards every command
// `{"execute": NAME, "arguments": {...}, "id": N}` is answered by exactly one
// `{"return": VALUE, "id": N}` or `{"error": {"class": C, "desc": D}, "id": N}`, and
// asynchronous events `{"event": NAME, "data": {...}, "timestamp": {"seconds": S,
// "microseconds": U}}` may arrive at any time, including between a command and its reply.
// Every message is one JSON object on one line ('\n'-terminated).
//
// QEMU is a peer we do not trust (the guest can drive parts of it): every line is bounded
// (kMaxQmpLineBytes), nesting is bounded (kMaxQmpJsonDepth), the event queue is bounded
// (kMaxQueuedQmpEvents), and every wait is bounded by a caller-given timeout. Nothing here
// throws or aborts on anything the peer sends.
//
// JSON values are nlohmann::json. This header only forward-declares it: include
// <nlohmann/json.hpp> in the translation units that look into results, events or payloads.
//
// Thread-safety: a QmpClient is NOT thread-safe. One owner thread calls everything
// (execute, read_available, take_events, ...). Distinct clients are independent.
//
// Source: QEMU docs/interop/qmp-spec.txt; behaviour checked against QEMU 7.2 (facts.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::vm_supervisor {

// Longest line (one QMP message, without its '\n') accepted from the peer. A longer line is a
// kProtocol error. The largest real reply we know (query-qmp-schema in 7.2) is ~200 KiB.
inline constexpr std::size_t kMaxQmpLineBytes = std::size_t{16} << 20;

// Deepest nesting of arrays/objects accepted in one message (QEMU's own replies stay below
// 10). Bounds the recursion of code that walks or dumps a received value.
inline constexpr int kMaxQmpJsonDepth = 128;

// Events kept between two take_events() calls; beyond it the oldest are dropped (and counted
// in QmpClient::dropped_events()).
inline constexpr std::size_t kMaxQueuedQmpEvents = 4096;

// Timeout of execute() when the caller gives none.
inline constexpr std::chrono::milliseconds kDefaultQmpTimeout{5000};

// What a QMP message is, by its single top-level key.
enum class QmpMessageKind {
  kGreeting,  // {"QMP": {...}}
  kReturn,    // {"return": VALUE, "id": N}
  kError,     // {"error": {"class": C, "desc": D}, "id": N}
  kEvent,     // {"event": NAME, "data": {...}, "timestamp": {...}}
};

// "greeting", "return", "error" or "event". Never null.
const char* qmp_message_kind_name(QmpMessageKind kind) noexcept;

// One asynchronous QMP event, e.g. {name "SHUTDOWN", data {"guest": false, "reason":
// "host-qmp-quit"}, timestamp_s 1795455984.109313}.
struct QmpEvent {
  std::string name;
  // The event's "data" object; an empty object when QEMU sent none (STOP, RESUME...). Never
  // null. Shared and immutable so that an event can be handed on without copying the JSON.
  std::shared_ptr<const nlohmann::json> data;
  // Host wall-clock time at which QEMU emitted the event: seconds since the Unix epoch, with
  // microseconds as the fraction. QEMU sends -1 (seconds and microseconds) when it could not
  // read the clock, giving -1.000001; 0 when the peer sent no timestamp.
  double timestamp_s = 0;
};

// One parsed and classified line from the peer (see parse_qmp_line).
struct QmpMessage {
  QmpMessageKind kind = QmpMessageKind::kReturn;
  // kReturn/kError: the "id" member when it is a non-negative integer (we only ever send
  // those); nullopt when absent or of another type. Always nullopt for other kinds.
  std::optional<std::uint64_t> id;
  // Never null after a successful parse:
  //   kGreeting: the value of "QMP" (an object);
  //   kReturn:   the value of "return" (any JSON; `{}` for most commands);
  //   kError:    the "error" object;
  //   kEvent:    the "data" object, or an empty object when absent.
  std::shared_ptr<nlohmann::json> payload;
  // kError only: error.class (e.g. "GenericError", "CommandNotFound") and error.desc.
  std::string error_class;
  std::string error_desc;
  // kEvent only: the event name and its timestamp as in QmpEvent::timestamp_s.
  std::string event_name;
  double timestamp_s = 0;
};

// Parses one line received from a QMP peer (without the trailing '\n'; a trailing '\r' or
// other JSON whitespace is accepted) and classifies it.
// Errors (all kProtocol, the message names what was wrong and quotes a short, escaped
// excerpt of the line): the line is longer than kMaxQmpLineBytes; it is not valid JSON
// (including invalid UTF-8 inside strings and trailing garbage after the object); it nests
// deeper than kMaxQmpJsonDepth; it is not an object; it has none, or more than one, of the
// keys "QMP", "return", "error", "event"; "QMP" is not an object; "error" lacks string
// "class"/"desc"; "event" is not a string; "data" is present but not an object; "timestamp"
// is present but not {"seconds": int, "microseconds": int}.
// Thread-safety: pure function, reentrant.
[[nodiscard]] Result<QmpMessage> parse_qmp_line(std::string_view line);

// The QEMU version announced in the greeting, e.g. {7, 2, 22, "Debian 1:7.2+dfsg-7+deb12u18"}.
struct QemuVersion {
  int major = 0;
  int minor = 0;
  int micro = 0;
  std::string package;  // free text, may be empty
};

// A connected, capability-negotiated QMP session. Owns its socket (closed by the destructor).
// Movable, not copyable. Not thread-safe: one owner thread (see the file comment).
//
// Failure model: a `{"error": ...}` reply fails only that command (kProtocol). A broken
// stream (peer closed or reset, a malformed line, an unexpected reply, a timeout in the
// middle of sending a command) makes the client unusable: the call that saw it returns the
// cause (kUnavailable, kProtocol or kTimeout), and every later execute() / read_available()
// returns kUnavailable naming that first cause. The owner then destroys the client and, if
// QEMU still runs, connects again. A timeout while waiting for a reply does not break the
// client: the late reply is recognised by its id and discarded.
class QmpClient {
 public:
  // Connects to the QMP server socket at `socket_path`, reads the greeting and negotiates
  // capabilities (`qmp_capabilities`), all within `timeout` in total.
  // While the socket does not exist yet or refuses connections (QEMU is still starting),
  // retries every 10 ms until `timeout` has passed.
  // Errors: kInvalidArgument when the path does not fit in sockaddr_un (107 bytes);
  // kUnavailable when no connection could be made within `timeout` (message has the last
  // errno text); kIo when connect fails for another reason (EACCES...); kTimeout when the
  // greeting or the capabilities reply did not arrive in time; kProtocol when the first
  // message is not a greeting, the greeting has no integer version.qemu.{major,minor,micro},
  // or the peer refused qmp_capabilities; kUnavailable when the peer closed meanwhile.
  [[nodiscard]] static Result<QmpClient> connect(const std::string& socket_path,
                                                 std::chrono::milliseconds timeout);

  QmpClient(QmpClient&& other) noexcept;
  QmpClient& operator=(QmpClient&& other) noexcept;
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;
  ~QmpClient();

  // Runs QMP command `command` with no arguments and returns the value of its "return"
  // member. Equivalent to execute(command, <no arguments>, timeout); see below.
  [[nodiscard]] Result<nlohmann::json> execute(
      std::string_view command, std::chrono::milliseconds timeout = kDefaultQmpTimeout);

  // Sends `{"execute": command, "arguments": arguments, "id": N}` ("arguments" omitted when
  // `arguments` is null) and waits up to `timeout` for the reply with id N. Events that
  // arrive meanwhile, or in the same read right after the reply, are queued for
  // take_events(). Returns the reply's "return" value (often `{}`).
  // Errors: kInvalidArgument when `arguments` is neither null nor an object, or holds a
  // string that is not valid UTF-8 (nothing is sent); kProtocol "QMP 'cmd' failed: CLASS:
  // DESC" for an error reply (the client stays usable); kTimeout when no reply came within
  // `timeout`; kUnavailable when the peer closed the connection; kProtocol when the peer
  // sent a malformed line or a reply with an id we did not send; kIo for a failed syscall.
  // Blocks the calling thread for at most about `timeout`.
  [[nodiscard]] Result<nlohmann::json> execute(
      std::string_view command, const nlohmann::json& arguments,
      std::chrono::milliseconds timeout = kDefaultQmpTimeout);

  // Runs an HMP (human monitor) command through QMP `human-monitor-command` and returns its
  // text output (often empty; lines end with "\r\n"), e.g. human_monitor_command("info
  // mtree -f"). Errors: as execute(); kProtocol when the return value is not a string.
  [[nodiscard]] Result<std::string> human_monitor_command(
      std::string_view command_line, std::chrono::milliseconds timeout = kDefaultQmpTimeout);

  // The socket, for the owner's poll()/epoll set (wait for POLLIN, then call
  // read_available()). Owned by the client: do not read, write or close it. -1 after a move.
  int fd() const noexcept { return fd_; }

  // Reads whatever the socket has now, without blocking, and queues the events in it (at
  // most a few MiB per call: when the socket stays readable, poll and call again). A reply
  // here can only be a late one to a timed-out command and is discarded.
  // Errors: kUnavailable when the peer has closed (events that came before the close are
  // still queued: call take_events() anyway), kProtocol for a malformed line, kIo.
  [[nodiscard]] Result<void> read_available();

  // Hands over the queued events, oldest first, and empties the queue. Check it after
  // execute() and read_available(), whatever they returned: execute() may queue events that
  // arrived before its reply, which poll() on fd() will not announce again.
  [[nodiscard]] std::vector<QmpEvent> take_events();

  // Whether take_events() would return anything.
  bool has_events() const noexcept { return !events_.empty(); }

  // Events dropped because the queue held kMaxQueuedQmpEvents (since connect).
  std::uint64_t dropped_events() const noexcept { return dropped_events_; }

  // Whether the stream is still usable (see the failure model above).
  bool usable() const noexcept { return !broken_.has_value(); }

  // The version from the greeting.
  const QemuVersion& qemu_version() const noexcept { return version_; }

 private:
  using Clock = std::chrono::steady_clock;

  explicit QmpClient(int fd) noexcept : fd_(fd) {}

  Result<nlohmann::json> execute_impl(std::string_view command, const nlohmann::json* arguments,
                                      std::chrono::milliseconds timeout);
  // Pops and parses the next complete, non-blank line from the receive buffer; nullopt when
  // no complete line is buffered. Errors: kProtocol (over-long or malformed line).
  Result<std::optional<QmpMessage>> pop_buffered_message();
  // One non-blocking recv() into the receive buffer; returns the number of bytes read (0 when
  // nothing was available). Errors: kUnavailable (closed/reset), kIo.
  Result<std::size_t> recv_some();
  // Returns the next message, reading until `deadline`. Errors: kTimeout ("QMP sent no
  // <what> within <timeout_ms> ms"), and those of pop_buffered_message and recv_some.
  Result<QmpMessage> next_message(Clock::time_point deadline, std::string_view what,
                                  std::chrono::milliseconds timeout);
  Result<void> send_all(std::string_view bytes, Clock::time_point deadline,
                        std::string_view command, std::chrono::milliseconds timeout);
  // Moves the messages already buffered into the event queue (replies there are stale).
  Result<void> drain_buffered();
  // Handles a message that is not the awaited reply: queues events, drops stale replies,
  // fails on anything else.
  Result<void> handle_unsolicited(QmpMessage&& message);
  void queue_event(QmpMessage&& message);
  // Records `error` as the reason the stream is unusable and returns it.
  tl::unexpected<Error> break_stream(Error error);
  Result<void> check_usable() const;

  int fd_ = -1;
  std::string rx_;              // received bytes; unconsumed ones start at rx_begin_
  std::size_t rx_begin_ = 0;    // start of the first unconsumed line in rx_
  std::size_t rx_scanned_ = 0;  // rx_[rx_begin_, rx_scanned_) is known to hold no '\n'
  std::uint64_t next_id_ = 1;   // id of the next command; replies with smaller ids are stale
  std::deque<QmpEvent> events_;
  std::uint64_t dropped_events_ = 0;
  std::optional<Error> broken_;
  QemuVersion version_;
};

}  // namespace glassbox::vm_supervisor
