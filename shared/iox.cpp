#include "shared/iox.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/mepoo/chunk_header.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"

namespace glassbox::shared {
namespace {

iox::capro::ServiceDescription service_description(const std::string& instance,
                                                   const std::string& topic) {
  return iox::capro::ServiceDescription(
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, "glassbox"),
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, instance.c_str()),
      iox::capro::IdString_t(iox::cxx::TruncateToCapacity, topic.c_str()));
}

}  // namespace

bool roudi_available() {
  // iceoryx 2.0 on Linux: RouDi listens on the unix datagram socket /tmp/roudi.
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, "/tmp/roudi", sizeof addr.sun_path - 1);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

Result<void> init_runtime(const std::string& instance, const std::string& service) {
  static bool initialised = false;
  if (initialised) return {};
  if (!roudi_available()) {
    return fail(Errc::kUnavailable,
                "no iceoryx RouDi is running (start it with `glassbox up` or `iox-roudi`)");
  }
  // iceoryx logs its registration chatter at Debug to stderr; glassbox keeps warnings and up
  // (GLASSBOX_IOX_DEBUG=1 shows everything).
  if (std::getenv("GLASSBOX_IOX_DEBUG") == nullptr) {
    iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn);
  }
  const std::string name = "glassbox-" + instance + "-" + service;
  iox::runtime::PoshRuntime::initRuntime(
      iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
  initialised = true;
  return {};
}

// ---- ChunkPublisher ----
struct ChunkPublisher::Impl {
  iox::popo::UntypedPublisher publisher;
  Impl(const iox::capro::ServiceDescription& sd, const iox::popo::PublisherOptions& o)
      : publisher(sd, o) {}
};

ChunkPublisher::ChunkPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChunkPublisher::~ChunkPublisher() = default;

Result<std::unique_ptr<ChunkPublisher>> ChunkPublisher::create(const std::string& instance,
                                                               const std::string& topic,
                                                               uint64_t history) {
  iox::popo::PublisherOptions o;
  o.historyCapacity = std::min<uint64_t>(history, 16);
  auto impl = std::make_unique<Impl>(service_description(instance, topic), o);
  return std::unique_ptr<ChunkPublisher>(new ChunkPublisher(std::move(impl)));
}

Result<void> ChunkPublisher::publish(std::span<const uint8_t> header, uint64_t payload_size_bytes,
                                     const std::function<void(uint8_t*)>& fill) {
  const uint64_t size = chunk_size(header.size(), payload_size_bytes);
  // The chunk also carries iceoryx's own 40-byte header inside the mempool slot.
  if (size + 64 > kMaxChunkBytes) {
    return fail(Errc::kOutOfRange, "chunk of " + std::to_string(size) +
                                       " bytes exceeds the largest iceoryx mempool (" +
                                       std::to_string(kMaxChunkBytes) + ")");
  }
  auto loaned = impl_->publisher.loan(static_cast<uint32_t>(size), 8);
  if (loaned.has_error()) {
    return fail(Errc::kUnavailable,
                "iceoryx loan of " + std::to_string(size) + " bytes failed (mempool exhausted)");
  }
  auto* chunk = static_cast<uint8_t*>(loaned.value());
  uint8_t* payload = write_chunk_prefix(chunk, header, payload_size_bytes);
  fill(payload);
  impl_->publisher.publish(chunk);
  return {};
}

bool ChunkPublisher::has_subscribers() const { return impl_->publisher.hasSubscribers(); }

// ---- TakenChunk / ChunkSubscriber ----
TakenChunk::TakenChunk(TakenChunk&& o) noexcept
    : subscriber_(o.subscriber_), chunk_(o.chunk_), view_(o.view_) {
  o.chunk_ = nullptr;
}

TakenChunk::~TakenChunk() {
  if (chunk_ != nullptr) static_cast<iox::popo::UntypedSubscriber*>(subscriber_)->release(chunk_);
}

struct ChunkSubscriber::Impl {
  iox::popo::UntypedSubscriber subscriber;
  Impl(const iox::capro::ServiceDescription& sd, const iox::popo::SubscriberOptions& o)
      : subscriber(sd, o) {}
};

ChunkSubscriber::ChunkSubscriber(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChunkSubscriber::~ChunkSubscriber() = default;

Result<std::unique_ptr<ChunkSubscriber>> ChunkSubscriber::create(const std::string& instance,
                                                                 const std::string& topic,
                                                                 uint64_t history_request,
                                                                 uint64_t queue_capacity) {
  iox::popo::SubscriberOptions o;
  o.historyRequest = std::min<uint64_t>(history_request, 16);
  o.queueCapacity = std::clamp<uint64_t>(queue_capacity, 1, 256);
  auto impl = std::make_unique<Impl>(service_description(instance, topic), o);
  return std::unique_ptr<ChunkSubscriber>(new ChunkSubscriber(std::move(impl)));
}

Result<std::optional<TakenChunk>> ChunkSubscriber::take() {
  auto taken = impl_->subscriber.take();
  if (taken.has_error()) return std::optional<TakenChunk>();
  const void* payload = taken.value();
  const uint32_t size = iox::mepoo::ChunkHeader::fromUserPayload(payload)->userPayloadSize();
  auto view = parse_chunk(static_cast<const uint8_t*>(payload), size);
  if (!view) {
    impl_->subscriber.release(payload);
    return tl::unexpected(view.error());
  }
  return std::optional<TakenChunk>(TakenChunk(&impl_->subscriber, payload, *view));
}

Result<std::optional<TakenChunk>> ChunkSubscriber::take_for(uint32_t timeout_ms) {
  for (uint32_t waited = 0;; ++waited) {
    auto r = take();
    if (!r || r->has_value() || waited >= timeout_ms) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace glassbox::shared
