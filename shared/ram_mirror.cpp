#include "shared/ram_mirror.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <thread>

#include "ram_generated.h"
#include "shared/bus.hpp"
#include "shared/iox.hpp"

namespace glassbox::shared {
namespace {

namespace fb = glassbox::schema::ram;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kPageBytes = 4096;

// Verifies a chunk header against its payload. Every size is checked before use.
Result<const fb::RamChunkHeader*> verify_header(std::span<const uint8_t> header,
                                                std::span<const uint8_t> payload) {
  flatbuffers::Verifier::Options o;
  o.max_depth = 8;
  o.max_tables = 1 << 20;
  flatbuffers::Verifier v(header.data(), header.size(), o);
  if (header.size() < 8 || !v.VerifyBuffer<fb::RamChunkHeader>(nullptr)) {
    return fail(Errc::kProtocol, "RAM chunk header failed FlatBuffers verification");
  }
  const auto* h = flatbuffers::GetRoot<fb::RamChunkHeader>(header.data());
  if (h->page_size_bytes() != kPageBytes) {
    return fail(Errc::kProtocol,
                "RAM chunk page_size_bytes " + std::to_string(h->page_size_bytes()) + " != 4096");
  }
  if (h->ram_size_bytes() == 0 || h->ram_size_bytes() % kPageBytes != 0 ||
      h->ram_size_bytes() > kMaxMirroredRamBytes) {
    return fail(Errc::kProtocol,
                "RAM chunk ram_size_bytes " + std::to_string(h->ram_size_bytes()) + " is invalid");
  }
  if (h->parts() == 0 || h->part() >= h->parts() || h->parts() > (1u << 20)) {
    return fail(Errc::kProtocol, "RAM chunk part " + std::to_string(h->part()) + " of " +
                                     std::to_string(h->parts()) + " is invalid");
  }
  const auto* idx = h->page_indices();
  const uint64_t n = idx == nullptr ? 0 : idx->size();
  if (payload.size() != n * kPageBytes) {
    return fail(Errc::kProtocol, "RAM chunk carries " + std::to_string(n) + " pages but " +
                                     std::to_string(payload.size()) + " payload bytes");
  }
  const uint64_t n_pages = h->ram_size_bytes() / kPageBytes;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t p = idx->Get(static_cast<flatbuffers::uoffset_t>(i));
    if (p >= n_pages || (i > 0 && p <= idx->Get(static_cast<flatbuffers::uoffset_t>(i - 1)))) {
      return fail(Errc::kProtocol, "RAM chunk page index " + std::to_string(p) + " at " +
                                       std::to_string(i) + " is out of range or not ascending");
    }
  }
  if (h->layout() == nullptr || h->layout()->size() == 0 || h->layout()->size() > 4096) {
    return fail(Errc::kProtocol, "RAM chunk has no valid layout");
  }
  return h;
}

Result<RamLayout> layout_of(const fb::RamChunkHeader& h) {
  std::vector<RamRegion> regions;
  for (const auto* r : *h.layout()) {
    regions.push_back(RamRegion{Gpa(r->gpa()), r->size_bytes(), r->file_offset()});
  }
  return RamLayout::from_regions(std::move(regions), h.ram_size_bytes());
}

}  // namespace

RamMirrorCore::ApplyResult RamMirrorCore::lose_sync(std::string why) {
  synced_ = false;
  why_unsynced_ = std::move(why);
  pending_.clear();
  ApplyResult r;
  r.action = Action::kRequestKeyframe;
  r.release_held = true;
  return r;
}

Result<void> RamMirrorCore::ensure_buffer(uint64_t ram_size_bytes) {
  if (buffer_ != nullptr && buffer_size_ == ram_size_bytes) return {};
  if (buffer_ != nullptr) ::munmap(buffer_, buffer_size_);
  buffer_ = nullptr;
  buffer_size_ = 0;
  void* p =
      ::mmap(nullptr, ram_size_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return fail_errno("mmap " + std::to_string(ram_size_bytes) + " bytes");
  buffer_ = static_cast<uint8_t*>(p);
  buffer_size_ = ram_size_bytes;
  return {};
}

RamMirrorCore::~RamMirrorCore() {
  if (buffer_ != nullptr) ::munmap(buffer_, buffer_size_);
}

RamMirrorCore::ApplyResult RamMirrorCore::apply(std::span<const uint8_t> header,
                                                std::span<const uint8_t> payload) {
  ++stats_.chunks;
  auto verified = verify_header(header, payload);
  if (!verified) {
    ++stats_.bad_chunks;
    have_seq_ = false;
    return lose_sync("bad chunk: " + verified.error().message);
  }
  const fb::RamChunkHeader* h = *verified;
  const bool gap = have_seq_ && h->seq() != last_seq_ + 1;
  have_seq_ = true;
  last_seq_ = h->seq();
  ApplyResult result;
  if (gap) {
    ++stats_.gaps;
    result = lose_sync("gap before seq " + std::to_string(h->seq()));
  }
  if (h->epoch() != epoch_ && synced_) {
    result = lose_sync("new epoch " + std::to_string(h->epoch()));
  }
  // A cycle starts at part 0. Unsynced, only a keyframe's part 0 starts one.
  if (h->part() == 0) {
    if (!pending_.empty()) {  // the previous cycle never completed
      pending_.clear();
      result.release_held = true;
    }
    if (!synced_ && !h->keyframe()) return result;  // wait for the keyframe we asked for
  } else if (pending_.empty() ||
             flatbuffers::GetRoot<fb::RamChunkHeader>(pending_.front().header.data())->cycle() !=
                 h->cycle()) {
    return result;  // a part of a cycle whose start we did not see: skip it
  }
  pending_.push_back(Pending{std::vector<uint8_t>(header.begin(), header.end()), payload});
  result.hold = true;
  if (h->part() + 1 == h->parts()) {
    apply_cycle();
    result.release_held = true;
    result.hold = false;  // applied: the chunk may go with the others
  }
  return result;
}

void RamMirrorCore::apply_cycle() {
  const auto* first = flatbuffers::GetRoot<fb::RamChunkHeader>(pending_.front().header.data());
  const auto* last = flatbuffers::GetRoot<fb::RamChunkHeader>(pending_.back().header.data());
  auto layout = layout_of(*last);
  if (!layout) {
    ++stats_.bad_chunks;
    (void)lose_sync("bad layout: " + layout.error().message);
    return;
  }
  if (first->keyframe()) {
    if (auto r = ensure_buffer(first->ram_size_bytes()); !r) {
      (void)lose_sync(r.error().message);
      return;
    }
  } else if (!synced_ || first->ram_size_bytes() != buffer_size_) {
    (void)lose_sync("delta for a RAM of another size");
    return;
  }
  for (const auto& part : pending_) {
    const auto* h = flatbuffers::GetRoot<fb::RamChunkHeader>(part.header.data());
    const auto* idx = h->page_indices();
    if (idx == nullptr) continue;
    for (flatbuffers::uoffset_t i = 0; i < idx->size(); ++i) {
      std::memcpy(buffer_ + idx->Get(i) * kPageBytes,
                  part.payload.data() + uint64_t{i} * kPageBytes, kPageBytes);
    }
    stats_.pages_applied += idx->size();
    if (!first->keyframe() && !changes_.all) {
      if (changes_.pages.size() + idx->size() > kMaxTrackedChanges) {
        changes_.all = true;
        changes_.pages.clear();
      } else {
        changes_.pages.insert(changes_.pages.end(), idx->begin(), idx->end());
      }
    }
  }
  if (first->keyframe()) {
    changes_.all = true;
    changes_.keyframe = true;
    changes_.pages.clear();
  }
  layout_.emplace(std::move(*layout));
  epoch_ = first->epoch();
  last_cycle_ = first->cycle();
  last_captured_ns_ = first->captured_unix_ns();
  if (first->keyframe()) {
    ++stats_.keyframes_applied;
    last_keyframe_id_ = first->keyframe_id();
    last_keyframe_consistent_ = first->consistent();
  }
  ++stats_.cycles_applied;
  synced_ = true;
  why_unsynced_.clear();
  pending_.clear();
}

RamChanges RamMirrorCore::take_changes() {
  RamChanges out = std::move(changes_);
  changes_ = RamChanges{};
  return out;
}

Result<RamView> RamMirrorCore::view() const {
  if (!synced_ || !layout_ || buffer_ == nullptr) {
    return fail(Errc::kUnavailable, "RAM mirror not synced: " + why_unsynced_);
  }
  return RamView(buffer_, buffer_size_, *layout_);
}

// ---- RamMirror ----
struct RamMirror::Impl {
  std::string endpoint;
  std::string subscriber;
  std::unique_ptr<ChunkSubscriber> chunks;
  std::deque<TakenChunk> held;
  Clock::time_point last_request{};
  Clock::time_point last_heartbeat{};
  bool request_due = false;
};

RamMirror::RamMirror(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RamMirror::~RamMirror() = default;

Result<uint64_t> RamMirror::request_keyframe(bool consistent, const std::string& reason) {
  flatbuffers::FlatBufferBuilder fbb(256);
  auto body = fb::CreateRequestKeyframe(fbb, fbb.CreateString(impl_->subscriber), consistent,
                                        fbb.CreateString(reason));
  fb::FinishRamRequestBuffer(fbb,
                             fb::CreateRamRequest(fbb, fb::Command::RequestKeyframe, body.Union()));
  auto bytes = shared::request(impl_->endpoint, {fbb.GetBufferPointer(), fbb.GetSize()},
                               std::chrono::milliseconds(consistent ? 10000 : 3000));
  if (!bytes) return tl::unexpected(bytes.error());
  flatbuffers::Verifier v(bytes->data(), bytes->size());
  if (bytes->size() < 8 || !v.VerifyBuffer<fb::RamReply>(nullptr)) {
    return fail(Errc::kProtocol, "ram-snapshotter reply failed verification");
  }
  const auto* reply = flatbuffers::GetRoot<fb::RamReply>(bytes->data());
  if (reply->error() != nullptr) {
    return fail(static_cast<Errc>(reply->error()->code()),
                reply->error()->message() ? reply->error()->message()->str() : "error");
  }
  impl_->last_request = Clock::now();
  return reply->keyframe_id();
}

Result<std::unique_ptr<RamMirror>> RamMirror::create(const std::string& instance,
                                                     const std::string& snapshotter_endpoint,
                                                     const std::string& subscriber) {
  auto impl = std::make_unique<Impl>();
  impl->endpoint = snapshotter_endpoint;
  impl->subscriber = subscriber;
  auto sub = ChunkSubscriber::create(instance, "ram", 0, 64);
  if (!sub) return tl::unexpected(sub.error());
  impl->chunks = std::move(*sub);
  auto mirror = std::unique_ptr<RamMirror>(new RamMirror(std::move(impl)));
  auto id = mirror->request_keyframe(false, "new subscriber");
  if (!id) return tl::unexpected(id.error());
  mirror->core_.note_keyframe_request();
  return mirror;
}

Result<size_t> RamMirror::poll(std::chrono::milliseconds timeout) {
  size_t taken = 0;
  const auto deadline = Clock::now() + timeout;
  for (size_t guard = 0; guard < 100000; ++guard) {
    auto c = impl_->chunks->take();
    if (!c) {
      // An unparseable chunk prefix: treat as a gap.
      auto r = core_.apply({}, {});
      if (r.release_held) impl_->held.clear();
      impl_->request_due = true;
      continue;
    }
    if (!c->has_value()) {
      if (taken > 0 || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    ++taken;
    TakenChunk chunk = std::move(**c);
    auto r = core_.apply(chunk.view().header, chunk.view().payload);
    if (r.release_held) impl_->held.clear();
    if (r.hold) impl_->held.push_back(std::move(chunk));
    if (r.action == RamMirrorCore::Action::kRequestKeyframe) impl_->request_due = true;
  }
  const auto now = Clock::now();
  // Ask again after a gap (at most every 500 ms), or when a requested keyframe never came.
  const bool overdue = !core_.synced() && now - impl_->last_request > std::chrono::seconds(2);
  if ((impl_->request_due && now - impl_->last_request > std::chrono::milliseconds(500)) ||
      overdue) {
    impl_->request_due = false;
    if (auto id = request_keyframe(false, core_.why_unsynced()); id) core_.note_keyframe_request();
  }
  if (now - impl_->last_heartbeat > std::chrono::seconds(3)) {
    impl_->last_heartbeat = now;
    flatbuffers::FlatBufferBuilder fbb(128);
    auto body = fb::CreateHeartbeat(fbb, fbb.CreateString(impl_->subscriber));
    fb::FinishRamRequestBuffer(fbb,
                               fb::CreateRamRequest(fbb, fb::Command::Heartbeat, body.Union()));
    (void)shared::request(impl_->endpoint, {fbb.GetBufferPointer(), fbb.GetSize()},
                          std::chrono::milliseconds(500));
  }
  return taken;
}

Result<void> RamMirror::wait_synced(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!core_.synced()) {
    if (Clock::now() >= deadline) {
      return fail(Errc::kTimeout, "RAM mirror not synced within " +
                                      std::to_string(timeout.count()) +
                                      " ms: " + core_.why_unsynced());
    }
    if (auto r = poll(std::chrono::milliseconds(50)); !r) return tl::unexpected(r.error());
  }
  return {};
}

Result<void> RamMirror::fresh_keyframe(bool consistent, std::chrono::milliseconds timeout) {
  auto id = request_keyframe(consistent, consistent ? "consistent dump" : "fresh keyframe");
  if (!id) return tl::unexpected(id.error());
  core_.note_keyframe_request();
  const auto deadline = Clock::now() + timeout;
  while (!(core_.synced() && core_.last_keyframe_id() == *id)) {
    if (Clock::now() >= deadline) {
      return fail(Errc::kTimeout, "keyframe " + std::to_string(*id) + " not received within " +
                                      std::to_string(timeout.count()) + " ms");
    }
    if (auto r = poll(std::chrono::milliseconds(50)); !r) return tl::unexpected(r.error());
  }
  return {};
}

}  // namespace glassbox::shared
