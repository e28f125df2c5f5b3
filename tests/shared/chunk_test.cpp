#include "shared/chunk.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace glassbox::shared {
namespace {

TEST(ChunkTest, RoundTripsHeaderAndAlignedPayload) {
  std::vector<uint8_t> header = {1, 2, 3, 4, 5};
  std::vector<uint8_t> buf(chunk_size(header.size(), 100));
  uint8_t* payload = write_chunk_prefix(buf.data(), header, 100);
  EXPECT_EQ((payload - buf.data()) % kChunkPayloadAlign, 0);
  for (int i = 0; i < 100; ++i) payload[i] = static_cast<uint8_t>(i);
  auto v = parse_chunk(buf.data(), buf.size());
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(std::vector<uint8_t>(v->header.begin(), v->header.end()), header);
  ASSERT_EQ(v->payload.size(), 100u);
  EXPECT_EQ(v->payload[99], 99);
}

TEST(ChunkTest, RejectsPayloadSizeBeyondChunk) {
  std::vector<uint8_t> header(8);
  std::vector<uint8_t> buf(chunk_size(header.size(), 10));
  write_chunk_prefix(buf.data(), header, 10);
  uint64_t lie = 1ull << 40;
  std::memcpy(buf.data() + 8, &lie, 8);
  auto v = parse_chunk(buf.data(), buf.size());
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("payload_size"), std::string::npos);
}

TEST(ChunkTest, RejectsHeaderSizeBeyondChunkAndBadMagic) {
  std::vector<uint8_t> buf(64, 0);
  EXPECT_FALSE(parse_chunk(buf.data(), buf.size()));  // magic 0
  write_chunk_prefix(buf.data(), std::vector<uint8_t>(4), 0);
  uint32_t big = 0xFFFFFFF0u;
  std::memcpy(buf.data() + 4, &big, 4);
  auto v = parse_chunk(buf.data(), buf.size());
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("header_size"), std::string::npos);
  EXPECT_FALSE(parse_chunk(buf.data(), 3));
}

}  // namespace
}  // namespace glassbox::shared
