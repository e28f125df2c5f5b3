// The ZeroMQ side of glassbox: the event bus (XPUB/XSUB proxy, publishers, subscribers)
// and per-service command endpoints (REQ/REP). Payloads are FlatBuffers (schemas/).
//
// Event framing: two frames, [topic][Event flatbuffer]. Topics are dotted prefixes
// ("vm.state", "vm.serial", "vm.qmp", "health"); a subscriber filters by prefix.
// Command framing: one frame each way; the server verifies the request with the
// FlatBuffers Verifier (in the handler) and always answers, with an error reply when the
// request was malformed.
//
// Thread-safety: a ZeroMQ socket belongs to one thread. Each object here owns its socket and
// must be used by one thread at a time; EventProxy runs its own thread. The process-wide
// context (zmq_context()) is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shared/result.hpp"

namespace zmq {
class context_t;
}

namespace glassbox::shared {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

// The one ZeroMQ context of the process.
zmq::context_t& zmq_context();

// Forwards events from publishers (bound XSUB at `in_endpoint`) to subscribers (bound XPUB
// at `out_endpoint`) in a background thread until stop() or destruction.
class EventProxy {
 public:
  // Errors: kIo when an endpoint cannot be bound (e.g. address in use).
  static Result<std::unique_ptr<EventProxy>> start(const std::string& in_endpoint,
                                                   const std::string& out_endpoint);
  ~EventProxy();
  void stop();

 private:
  struct Impl;
  explicit EventProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Publishes events to the proxy. Connects lazily and never blocks: with no proxy, messages
// are dropped by ZeroMQ (PUB semantics), counted in dropped().
class EventPublisher {
 public:
  static Result<std::unique_ptr<EventPublisher>> connect(const std::string& in_endpoint);
  ~EventPublisher();
  // Sends [topic][event]. Errors: kIo on a ZeroMQ failure other than "would block".
  Result<void> publish(std::string_view topic, ByteSpan event);
  uint64_t published() const { return published_; }
  uint64_t dropped() const { return dropped_; }

 private:
  struct Impl;
  explicit EventPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  uint64_t published_ = 0;
  uint64_t dropped_ = 0;
};

// A received event: topic and the verified Event bytes.
struct ReceivedEvent {
  std::string topic;
  Bytes event;  // verified glassbox.schema.events.Event (GetEvent(event.data()) is safe)
};

// Subscribes to topic prefixes ("" = all) on the proxy's out endpoint.
class EventSubscriber {
 public:
  static Result<std::unique_ptr<EventSubscriber>> connect(const std::string& out_endpoint,
                                                          const std::vector<std::string>& topics);
  ~EventSubscriber();
  // Waits up to `timeout` for one event. nullopt on timeout. A message that is not two frames
  // or whose Event fails the Verifier is skipped, counted in malformed(), and reported as
  // kProtocol naming what was wrong.
  Result<std::optional<ReceivedEvent>> receive(std::chrono::milliseconds timeout);
  uint64_t malformed() const { return malformed_; }

 private:
  struct Impl;
  explicit EventSubscriber(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  uint64_t malformed_ = 0;
};

// A service's command endpoint (REP, bound at an ipc:// endpoint under the state dir).
class CommandServer {
 public:
  // Turns one request (unverified bytes) into one reply. Must not throw.
  using Handler = std::function<Bytes(ByteSpan request)>;

  // Binds `endpoint`, removing a stale socket file left by a dead process first.
  // Errors: kIo when binding fails.
  static Result<std::unique_ptr<CommandServer>> bind(const std::string& endpoint);
  ~CommandServer();
  // Waits up to `timeout` for one request and answers it with `handler`'s reply. A
  // multi-frame request is answered with `reject(reason)` without calling the handler.
  // Returns true when a request was served.
  Result<bool> serve_once(std::chrono::milliseconds timeout, const Handler& handler,
                          const std::function<Bytes(const std::string&)>& reject);

 private:
  struct Impl;
  explicit CommandServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Sends one request to `endpoint` and waits for the reply (fresh REQ socket, linger 0).
// Errors: kUnavailable when no socket file exists (nothing running), kTimeout when no reply
// came within `timeout`, kIo on ZeroMQ errors.
Result<Bytes> request(const std::string& endpoint, ByteSpan payload,
                      std::chrono::milliseconds timeout);

}  // namespace glassbox::shared
