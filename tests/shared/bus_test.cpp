#include "shared/bus.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <random>
#include <thread>

#include "events_generated.h"

namespace glassbox::shared {
namespace {

using std::chrono::milliseconds;

class BusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gb-bus-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  std::string ep(const char* name) const { return "ipc://" + dir_ + "/" + name; }
  std::string dir_;
};

Bytes make_event(const std::string& line) {
  flatbuffers::FlatBufferBuilder fbb;
  auto body = schema::events::CreateSerialLine(fbb, 7, fbb.CreateString(line));
  auto ev = schema::events::CreateEvent(fbb, fbb.CreateString("t"), fbb.CreateString("test"), 1,
                                        schema::events::Body::SerialLine, body.Union());
  schema::events::FinishEventBuffer(fbb, ev);
  return Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

TEST_F(BusTest, EventsFlowThroughProxyFilteredByTopic) {
  auto proxy = EventProxy::start(ep("in"), ep("out"));
  ASSERT_TRUE(proxy) << proxy.error().message;
  auto sub = EventSubscriber::connect(ep("out"), {"vm.serial"});
  ASSERT_TRUE(sub);
  auto pub = EventPublisher::connect(ep("in"));
  ASSERT_TRUE(pub);
  // PUB/SUB joins asynchronously: publish until the subscriber sees one (bounded).
  std::optional<ReceivedEvent> got;
  for (int i = 0; i < 200 && !got; ++i) {
    ASSERT_TRUE((*pub)->publish("vm.state", make_event("filtered")));
    ASSERT_TRUE((*pub)->publish("vm.serial", make_event("hello")));
    auto r = (*sub)->receive(milliseconds(10));
    ASSERT_TRUE(r) << r.error().message;
    got = *r;
  }
  ASSERT_TRUE(got);
  EXPECT_EQ(got->topic, "vm.serial");
  const auto* e = schema::events::GetEvent(got->event.data());
  EXPECT_EQ(e->body_as_SerialLine()->line()->str(), "hello");
}

TEST_F(BusTest, SubscriberSkipsAndCountsMalformedEvents) {
  auto proxy = EventProxy::start(ep("in"), ep("out"));
  ASSERT_TRUE(proxy);
  auto sub = EventSubscriber::connect(ep("out"), {""});
  auto pub = EventPublisher::connect(ep("in"));
  ASSERT_TRUE(sub && pub);
  Bytes garbage(64, 0xAB);
  bool saw_error = false;
  for (int i = 0; i < 200 && !saw_error; ++i) {
    ASSERT_TRUE((*pub)->publish("vm.serial", garbage));
    auto r = (*sub)->receive(milliseconds(10));
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::kProtocol);
      saw_error = true;
    }
  }
  EXPECT_TRUE(saw_error);
  EXPECT_GE((*sub)->malformed(), 1u);
}

TEST_F(BusTest, CommandServerAnswersGarbageAndKeepsServing) {
  auto server = CommandServer::bind(ep("svc.sock"));
  ASSERT_TRUE(server) << server.error().message;
  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::thread t([&] {
    while (!stop) {
      auto r = (*server)->serve_once(
          milliseconds(10),
          [&](ByteSpan req) {
            ++served;
            return Bytes{static_cast<uint8_t>(req.size() & 0xff)};
          },
          [](const std::string&) { return Bytes{0xEE}; });
      ASSERT_TRUE(r);
    }
  });
  std::mt19937 rng(42);
  for (int i = 0; i < 50; ++i) {
    Bytes junk(rng() % 300);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    auto reply = request(ep("svc.sock"), junk, milliseconds(2000));
    ASSERT_TRUE(reply) << reply.error().message;
    ASSERT_EQ(reply->size(), 1u);
    EXPECT_EQ((*reply)[0], static_cast<uint8_t>(junk.size() & 0xff));
  }
  stop = true;
  t.join();
  EXPECT_EQ(served.load(), 50);
}

TEST_F(BusTest, RequestToMissingEndpointIsUnavailable) {
  auto r = request(ep("nobody.sock"), Bytes{1}, milliseconds(100));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
}

TEST_F(BusTest, RequestTimesOutWhenServerNeverAnswers) {
  auto server = CommandServer::bind(ep("slow.sock"));
  ASSERT_TRUE(server);
  auto r = request(ep("slow.sock"), Bytes{1}, milliseconds(100));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kTimeout);
}

}  // namespace
}  // namespace glassbox::shared
