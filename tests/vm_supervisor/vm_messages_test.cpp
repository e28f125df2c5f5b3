#include "services/vm_supervisor/vm_messages.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

namespace glassbox::vm_supervisor {
namespace {

namespace fb = glassbox::schema;

shared::Bytes finish(flatbuffers::FlatBufferBuilder& fbb) {
  return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

TEST(VmMessagesTest, AcceptsWellFormedRequest) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = fb::vm::CreateTypeText(fbb, fbb.CreateString("ls"));
  fb::vm::FinishVmRequestBuffer(
      fbb, fb::vm::CreateVmRequest(fbb, fb::vm::Command::TypeText, body.Union()));
  auto bytes = finish(fbb);
  auto req = verify_vm_request(bytes);
  ASSERT_TRUE(req) << req.error().message;
  EXPECT_EQ((*req)->command_as_TypeText()->text()->str(), "ls");
}

TEST(VmMessagesTest, RejectsRandomBytesWithoutCrashing) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    shared::Bytes junk(rng() % 256);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    if (junk.size() >= 8 && (i % 2) == 0) std::memcpy(junk.data() + 4, "GBVM", 4);
    auto r = verify_vm_request(junk);
    if (!r) EXPECT_EQ(r.error().code, Errc::kProtocol);
  }
}

TEST(VmMessagesTest, RejectsTruncatedAndWrongIdentifier) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = fb::vm::CreateScreendump(fbb, fbb.CreateString("/tmp/x.png"));
  fb::vm::FinishVmRequestBuffer(
      fbb, fb::vm::CreateVmRequest(fbb, fb::vm::Command::Screendump, body.Union()));
  auto bytes = finish(fbb);
  for (size_t n = 0; n < bytes.size(); ++n) {
    shared::Bytes cut(bytes.begin(), bytes.begin() + static_cast<long>(n));
    auto r = verify_vm_request(cut);
    // Trailing alignment padding may be cut without harm; anything the message references
    // may not: an accepted prefix must still read back whole.
    if (r) {
      EXPECT_EQ((*r)->command_as_Screendump()->path()->str(), "/tmp/x.png") << n;
    } else {
      EXPECT_EQ(r.error().code, Errc::kProtocol);
    }
    if (n < bytes.size() / 2) EXPECT_FALSE(r) << "accepted a request cut to " << n << " bytes";
  }
  bytes[4] = 'X';
  auto r = verify_vm_request(bytes);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("GBVM"), std::string::npos);
}

TEST(VmMessagesTest, ReplyCarriesErrorAndStatus) {
  VmStatusFields s;
  s.state = fb::vm::VmState::Running;
  s.qemu_pid = 42;
  s.service.service = "vm-supervisor";
  auto bytes = build_vm_reply(Error{Errc::kUnavailable, "no"}, s, true);
  flatbuffers::Verifier v(bytes.data(), bytes.size());
  ASSERT_TRUE(v.VerifyBuffer<fb::vm::VmReply>(nullptr));
  const auto* reply = flatbuffers::GetRoot<fb::vm::VmReply>(bytes.data());
  EXPECT_EQ(reply->error()->code(), static_cast<int>(Errc::kUnavailable));
  EXPECT_EQ(reply->status()->qemu_pid(), 42);
  EXPECT_EQ(reply->service()->service()->str(), "vm-supervisor");
}

TEST(VmMessagesTest, InputBatchBecomesQmpEvents) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<fb::input::InputEvent> types = {fb::input::InputEvent::KeyEvent,
                                              fb::input::InputEvent::PointerMove,
                                              fb::input::InputEvent::PointerButton};
  std::vector<flatbuffers::Offset<void>> values = {
      fb::input::CreateKeyEvent(fbb, fbb.CreateString("a"), true).Union(),
      fb::input::CreatePointerMove(fbb, 10, 20, 0, 0).Union(),
      fb::input::CreatePointerButton(fbb, fbb.CreateString("left"), true).Union()};
  auto batch = fb::input::CreateInputBatch(fbb, fbb.CreateVector(types), fbb.CreateVector(values));
  fbb.Finish(batch);
  const auto* b = flatbuffers::GetRoot<fb::input::InputBatch>(fbb.GetBufferPointer());
  auto ev = input_batch_to_qmp(*b, [](int& w, int& h) -> Result<void> {
    w = 640;
    h = 480;
    return {};
  });
  ASSERT_TRUE(ev) << ev.error().message;
  ASSERT_EQ(ev->size(), 4u);  // key, abs x, abs y, btn
  EXPECT_EQ((*ev)[0]["data"]["key"]["data"], "a");
  EXPECT_EQ((*ev)[1]["type"], "abs");
  EXPECT_EQ((*ev)[3]["data"]["button"], "left");
}

TEST(VmMessagesTest, InputBatchRejectsUnknownQcodeNamingIndex) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<fb::input::InputEvent> types = {fb::input::InputEvent::KeyEvent};
  std::vector<flatbuffers::Offset<void>> values = {
      fb::input::CreateKeyEvent(fbb, fbb.CreateString("notakey"), true).Union()};
  fbb.Finish(fb::input::CreateInputBatch(fbb, fbb.CreateVector(types), fbb.CreateVector(values)));
  const auto* b = flatbuffers::GetRoot<fb::input::InputBatch>(fbb.GetBufferPointer());
  auto ev = input_batch_to_qmp(*b, [](int&, int&) -> Result<void> { return {}; });
  ASSERT_FALSE(ev);
  EXPECT_NE(ev.error().message.find("input event 0"), std::string::npos);
  EXPECT_NE(ev.error().message.find("notakey"), std::string::npos);
}

}  // namespace
}  // namespace glassbox::vm_supervisor
