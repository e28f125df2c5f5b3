// shared/health: the request check every service runs before reading a command, and the
// status fields a service reports about itself.
#include "shared/health.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "miner_generated.h"
#include "ram_generated.h"

namespace glassbox::shared {
namespace {

namespace fb = glassbox::schema;

std::vector<uint8_t> miner_get_hot(uint32_t top_n) {
  flatbuffers::FlatBufferBuilder fbb(64);
  auto body = fb::miner::CreateGetHot(fbb, top_n);
  fb::miner::FinishMinerRequestBuffer(
      fbb, fb::miner::CreateMinerRequest(fbb, fb::miner::MinerCommand::GetHot, body.Union()));
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

bool miner_ok(const std::vector<uint8_t>& b) {
  return request_is_valid(b, fb::miner::MinerRequestIdentifier(),
                          fb::miner::VerifyMinerRequestBuffer);
}

TEST(RequestIsValidTest, AcceptsAWellFormedRequestOfItsSchema) {
  EXPECT_TRUE(miner_ok(miner_get_hot(10)));
}

TEST(RequestIsValidTest, RefusesShortWrongSchemaTruncatedAndCorruptRequests) {
  EXPECT_FALSE(miner_ok({}));
  EXPECT_FALSE(miner_ok({1, 2, 3, 4, 5, 6, 7}));
  // Another service's request: a valid FlatBuffer with another file identifier.
  flatbuffers::FlatBufferBuilder fbb(64);
  fb::ram::FinishRamRequestBuffer(fbb, fb::ram::CreateRamRequest(fbb));
  EXPECT_FALSE(miner_ok({fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()}));
  const auto good = miner_get_hot(10);
  // Truncated after the identifier: the verifier must refuse the dangling offsets.
  EXPECT_FALSE(miner_ok({good.begin(), good.begin() + 8}));
  // The root offset pointing far outside the buffer, identifier intact.
  auto bad = good;
  bad[0] = 0xff;
  bad[1] = 0xff;
  EXPECT_FALSE(miner_ok(bad));
}

TEST(OwnStatusTest, CarriesThisProcessAndItsSummary) {
  const auto started = std::chrono::steady_clock::now() - std::chrono::seconds(3);
  const auto f = own_status("inst", "pattern-miner", started, "http://127.0.0.1:1/metrics",
                            R"({"blocks": 1})");
  EXPECT_EQ(f.instance, "inst");
  EXPECT_EQ(f.service, "pattern-miner");
  EXPECT_EQ(f.pid, ::getpid());
  EXPECT_GE(f.uptime_s, 3.0);
  EXPECT_LT(f.uptime_s, 60.0);
  EXPECT_EQ(f.metrics_url, "http://127.0.0.1:1/metrics");
  EXPECT_EQ(f.summary_json, R"({"blocks": 1})");
  EXPECT_EQ(f.restarts, 0u);
}

}  // namespace
}  // namespace glassbox::shared
