#include "shared/bus.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "events_generated.h"
#include "shared/paths.hpp"

namespace glassbox::shared {
namespace {

std::string zmq_text(const zmq::error_t& e) { return e.what(); }

// Removes a socket file nobody listens on, so bind() succeeds after a crash.
void remove_stale_socket(const std::string& endpoint) {
  const std::string path = ipc_path(endpoint);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
}

}  // namespace

zmq::context_t& zmq_context() {
  static zmq::context_t ctx(1);
  return ctx;
}

// ---- EventProxy ----
struct EventProxy::Impl {
  std::thread thread;
  std::string control_endpoint;
  bool stopped = false;
};

EventProxy::EventProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<EventProxy>> EventProxy::start(const std::string& in_endpoint,
                                                      const std::string& out_endpoint) {
  auto impl = std::make_unique<Impl>();
  impl->control_endpoint =
      "inproc://glassbox-proxy-control-" + std::to_string(reinterpret_cast<uintptr_t>(impl.get()));
  // Bind in this thread so errors are reported to the caller, then hand the sockets over.
  auto xsub = std::make_shared<zmq::socket_t>(zmq_context(), zmq::socket_type::xsub);
  auto xpub = std::make_shared<zmq::socket_t>(zmq_context(), zmq::socket_type::xpub);
  auto control = std::make_shared<zmq::socket_t>(zmq_context(), zmq::socket_type::pair);
  try {
    remove_stale_socket(in_endpoint);
    remove_stale_socket(out_endpoint);
    xsub->bind(in_endpoint);
    xpub->bind(out_endpoint);
    xpub->set(zmq::sockopt::linger, 0);
    xsub->set(zmq::sockopt::linger, 0);
    control->bind(impl->control_endpoint);
  } catch (const zmq::error_t& e) {
    return fail(Errc::kIo,
                "event proxy: bind " + in_endpoint + " / " + out_endpoint + ": " + zmq_text(e));
  }
  impl->thread = std::thread([xsub, xpub, control] {
    try {
      zmq::proxy_steerable(*xsub, *xpub, nullptr, *control);
    } catch (const zmq::error_t&) {
      // Context terminated or TERMINATE received: the proxy ends.
    }
    xsub->close();
    xpub->close();
    control->close();
  });
  return std::unique_ptr<EventProxy>(new EventProxy(std::move(impl)));
}

void EventProxy::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  try {
    zmq::socket_t ctl(zmq_context(), zmq::socket_type::pair);
    ctl.set(zmq::sockopt::linger, 0);
    ctl.connect(impl_->control_endpoint);
    ctl.send(zmq::str_buffer("TERMINATE"), zmq::send_flags::none);
  } catch (const zmq::error_t&) {
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

EventProxy::~EventProxy() { stop(); }

// ---- EventPublisher ----
struct EventPublisher::Impl {
  zmq::socket_t socket{zmq_context(), zmq::socket_type::pub};
};

EventPublisher::EventPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EventPublisher::~EventPublisher() = default;

Result<std::unique_ptr<EventPublisher>> EventPublisher::connect(const std::string& in_endpoint) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->socket.set(zmq::sockopt::linger, 200);
    impl->socket.set(zmq::sockopt::sndhwm, 10000);
    impl->socket.connect(in_endpoint);
  } catch (const zmq::error_t& e) {
    return fail(Errc::kIo, "event publisher: connect " + in_endpoint + ": " + zmq_text(e));
  }
  return std::unique_ptr<EventPublisher>(new EventPublisher(std::move(impl)));
}

Result<void> EventPublisher::publish(std::string_view topic, ByteSpan event) {
  try {
    auto a = impl_->socket.send(zmq::buffer(topic.data(), topic.size()),
                                zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    if (!a) {
      ++dropped_;
      return {};
    }
    impl_->socket.send(zmq::buffer(event.data(), event.size()), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    ++dropped_;
    return fail(Errc::kIo, "event publish on " + std::string(topic) + ": " + zmq_text(e));
  }
  ++published_;
  return {};
}

// ---- EventSubscriber ----
struct EventSubscriber::Impl {
  zmq::socket_t socket{zmq_context(), zmq::socket_type::sub};
};

EventSubscriber::EventSubscriber(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EventSubscriber::~EventSubscriber() = default;

Result<std::unique_ptr<EventSubscriber>> EventSubscriber::connect(
    const std::string& out_endpoint, const std::vector<std::string>& topics) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->socket.set(zmq::sockopt::linger, 0);
    for (const auto& t : topics) impl->socket.set(zmq::sockopt::subscribe, t);
    if (topics.empty()) impl->socket.set(zmq::sockopt::subscribe, "");
    impl->socket.connect(out_endpoint);
  } catch (const zmq::error_t& e) {
    return fail(Errc::kIo, "event subscriber: connect " + out_endpoint + ": " + zmq_text(e));
  }
  return std::unique_ptr<EventSubscriber>(new EventSubscriber(std::move(impl)));
}

Result<std::optional<ReceivedEvent>> EventSubscriber::receive(std::chrono::milliseconds timeout) {
  zmq::pollitem_t item{impl_->socket.handle(), 0, ZMQ_POLLIN, 0};
  try {
    if (zmq::poll(&item, 1, timeout) == 0) return std::optional<ReceivedEvent>();
    std::vector<zmq::message_t> parts;
    constexpr size_t kMaxParts = 8;
    for (size_t i = 0;; ++i) {
      zmq::message_t m;
      if (!impl_->socket.recv(m, zmq::recv_flags::dontwait)) break;
      const bool more = m.more();
      if (i < kMaxParts) parts.push_back(std::move(m));
      if (!more) break;
    }
    if (parts.size() != 2) {
      ++malformed_;
      return fail(Errc::kProtocol,
                  "event with " + std::to_string(parts.size()) + " frames (expected 2)");
    }
    const auto* data = static_cast<const uint8_t*>(parts[1].data());
    flatbuffers::Verifier verifier(data, parts[1].size());
    if (!schema::events::VerifyEventBuffer(verifier)) {
      ++malformed_;
      return fail(Errc::kProtocol,
                  "event on topic '" + parts[0].to_string() + "' failed FlatBuffers verification");
    }
    ReceivedEvent ev{parts[0].to_string(), Bytes(data, data + parts[1].size())};
    return std::optional<ReceivedEvent>(std::move(ev));
  } catch (const zmq::error_t& e) {
    return fail(Errc::kIo, "event receive: " + zmq_text(e));
  }
}

// ---- CommandServer ----
struct CommandServer::Impl {
  zmq::socket_t socket{zmq_context(), zmq::socket_type::rep};
};

CommandServer::CommandServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CommandServer::~CommandServer() = default;

Result<std::unique_ptr<CommandServer>> CommandServer::bind(const std::string& endpoint) {
  auto impl = std::make_unique<Impl>();
  try {
    remove_stale_socket(endpoint);
    impl->socket.set(zmq::sockopt::linger, 0);
    impl->socket.set(zmq::sockopt::maxmsgsize, int64_t{16} << 20);  // bound hostile input
    impl->socket.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return fail(Errc::kIo, "command endpoint: bind " + endpoint + ": " + zmq_text(e));
  }
  return std::unique_ptr<CommandServer>(new CommandServer(std::move(impl)));
}

Result<bool> CommandServer::serve_once(std::chrono::milliseconds timeout, const Handler& handler,
                                       const std::function<Bytes(const std::string&)>& reject) {
  zmq::pollitem_t item{impl_->socket.handle(), 0, ZMQ_POLLIN, 0};
  try {
    if (zmq::poll(&item, 1, timeout) == 0) return false;
    std::vector<zmq::message_t> parts;
    constexpr size_t kMaxParts = 4;
    for (size_t i = 0; i < 1024; ++i) {
      zmq::message_t m;
      if (!impl_->socket.recv(m, zmq::recv_flags::dontwait)) break;
      const bool more = m.more();
      if (i < kMaxParts) parts.push_back(std::move(m));
      if (!more) break;
    }
    Bytes reply;
    if (parts.size() != 1) {
      reply = reject("request with " + std::to_string(parts.size()) + " frames (expected 1)");
    } else {
      reply = handler(ByteSpan(static_cast<const uint8_t*>(parts[0].data()), parts[0].size()));
    }
    impl_->socket.send(zmq::buffer(reply.data(), reply.size()), zmq::send_flags::none);
    return true;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return false;  // a signal (shutdown): the caller checks its flag
    return fail(Errc::kIo, std::string("command endpoint: ") + zmq_text(e));
  }
}

// ---- request ----
Result<Bytes> request(const std::string& endpoint, ByteSpan payload,
                      std::chrono::milliseconds timeout) {
  const std::string path = ipc_path(endpoint);
  if (endpoint.starts_with("ipc://") && ::access(path.c_str(), F_OK) != 0) {
    return fail(Errc::kUnavailable, "nothing is listening at " + path);
  }
  try {
    zmq::socket_t s(zmq_context(), zmq::socket_type::req);
    s.set(zmq::sockopt::linger, 0);
    s.connect(endpoint);
    s.send(zmq::buffer(payload.data(), payload.size()), zmq::send_flags::none);
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, timeout) == 0) {
      return fail(Errc::kTimeout,
                  "no reply from " + path + " within " + std::to_string(timeout.count()) + " ms");
    }
    zmq::message_t m;
    if (!s.recv(m, zmq::recv_flags::dontwait)) {
      return fail(Errc::kIo, "no reply frame from " + path);
    }
    const auto* d = static_cast<const uint8_t*>(m.data());
    return Bytes(d, d + m.size());
  } catch (const zmq::error_t& e) {
    return fail(Errc::kIo, "request to " + path + ": " + zmq_text(e));
  }
}

}  // namespace glassbox::shared
