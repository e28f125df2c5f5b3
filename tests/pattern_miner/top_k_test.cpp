// Tests of Space-Saving top-K: exactness under capacity, the paper's error bounds on a Zipf
// stream, weighted adds, eviction, bounded memory and saturation.
#include "services/pattern_miner/top_k.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace glassbox::pattern_miner {
namespace {

using Summary = SpaceSaving<uint64_t>;

// Keys 0..n-1 drawn with P(k) proportional to 1 / (k+1)^s, by inverse CDF over the prefix
// sums (portable: only mt19937_64's standardised output is used).
std::vector<uint64_t> zipf_stream(std::size_t n_items, std::size_t n_keys, double s,
                                  uint64_t seed) {
  std::vector<double> cdf(n_keys);
  double sum = 0;
  for (std::size_t k = 0; k < n_keys; ++k) {
    sum += 1.0 / std::pow(static_cast<double>(k + 1), s);
    cdf[k] = sum;
  }
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> out(n_items);
  for (auto& key : out) {
    const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * sum;
    key = static_cast<uint64_t>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    key = std::min<uint64_t>(key, n_keys - 1);
  }
  return out;
}

template <class Map>
void expect_bounds(const Summary& ss, const Map& truth) {
  for (const auto& e : ss.top(ss.size())) {
    const auto it = truth.find(e.key);
    const uint64_t real = it == truth.end() ? 0 : it->second;
    ASSERT_LE(e.error, e.count);
    ASSERT_LE(e.count - e.error, real) << e.key;
    ASSERT_GE(e.count, real) << e.key;
  }
}

TEST(TopKTest, IsExactWhileKeysFitTheCapacity) {
  Summary ss(8);
  for (uint64_t k = 0; k < 5; ++k) {
    for (uint64_t i = 0; i <= k; ++i) ss.add(k);
  }
  EXPECT_EQ(ss.size(), 5u);
  EXPECT_FALSE(ss.full());
  EXPECT_EQ(ss.min_count(), 0u);
  const auto top = ss.top(3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].key, 4u);
  EXPECT_EQ(top[0].count, 5u);
  EXPECT_EQ(top[1].key, 3u);
  EXPECT_EQ(top[2].key, 2u);
  for (const auto& e : ss.top(100)) EXPECT_EQ(e.error, 0u);
  EXPECT_EQ(ss.top(100).size(), 5u);
  EXPECT_EQ(ss.guaranteed_top(5), 5u);
  EXPECT_EQ(ss.total(), 15u);
}

TEST(TopKTest, EvictsTheMinimumAndInheritsItsCountAsError) {
  Summary ss(2);
  ss.add(1, 3);
  ss.add(2, 1);
  ss.add(3);  // replaces key 2 (count 1): count 1 + 1, error 1
  EXPECT_FALSE(ss.find(2).has_value());
  const auto e = ss.find(3);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->count, 2u);
  EXPECT_EQ(e->error, 1u);
  EXPECT_EQ(ss.min_count(), 2u);
  EXPECT_EQ(ss.find(1)->count, 3u);
}

TEST(TopKTest, AlwaysReplacesTheKeyWithTheSmallestCount) {
  std::mt19937_64 rng(11);
  Summary ss(16);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t key = rng() % 64;
    const uint64_t w = 1 + rng() % 20;
    uint64_t min = std::numeric_limits<uint64_t>::max();
    for (const auto& e : ss.top(ss.size())) min = std::min(min, e.count);
    const bool replaces = ss.full() && !ss.find(key).has_value();
    ss.add(key, w);
    const auto e = ss.find(key);
    ASSERT_TRUE(e.has_value());
    if (replaces) {
      ASSERT_EQ(e->error, min) << i;
      ASSERT_EQ(e->count, min + w) << i;
    }
    uint64_t now_min = std::numeric_limits<uint64_t>::max();
    for (const auto& x : ss.top(ss.size())) now_min = std::min(now_min, x.count);
    if (ss.full()) {
      ASSERT_EQ(ss.min_count(), now_min) << i;
    }
  }
}

TEST(TopKTest, FindsTheZipfTop10ExactlyWithinTheErrorBounds) {
  constexpr std::size_t kItems = 300000, kKeys = 50000, kCapacity = 200;
  const std::vector<uint64_t> stream = zipf_stream(kItems, kKeys, 1.1, 42);
  Summary ss(kCapacity);
  std::unordered_map<uint64_t, uint64_t> truth;
  for (uint64_t k : stream) {
    ss.add(k);
    ++truth[k];
  }
  EXPECT_EQ(ss.total(), kItems);
  EXPECT_EQ(ss.size(), kCapacity);  // memory bounded although ~20k distinct keys came
  EXPECT_GT(truth.size(), 10 * kCapacity);
  expect_bounds(ss, truth);
  EXPECT_LE(ss.min_count(), kItems / kCapacity);

  std::vector<std::pair<uint64_t, uint64_t>> exact(truth.begin(), truth.end());
  std::sort(exact.begin(), exact.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  ASSERT_GT(exact[9].second, exact[10].second);  // the true top 10 is well defined
  const auto top = ss.top(10);
  ASSERT_EQ(top.size(), 10u);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(top[i].key, exact[i].first) << i;
    EXPECT_EQ(top[i].count, exact[i].second) << i;  // heavy keys arrive early: never evicted
    EXPECT_EQ(top[i].error, 0u) << i;
  }
  EXPECT_EQ(ss.guaranteed_top(10), 10u);
  // Every key heavier than N / capacity is monitored (the paper's Theorem 3.5 premise).
  for (const auto& [key, count] : exact) {
    if (count <= kItems / kCapacity) break;
    EXPECT_TRUE(ss.find(key).has_value()) << key;
  }
}

TEST(TopKTest, KeepsTheBoundsWithWeightedAdds) {
  std::mt19937_64 rng(7);
  Summary ss(32);
  std::unordered_map<uint64_t, uint64_t> truth;
  uint64_t total = 0;
  for (int i = 0; i < 20000; ++i) {
    // Half the weight goes to 4 heavy keys, each far above total / capacity.
    const uint64_t key = rng() % 2 == 0 ? rng() % 4 : 4 + rng() % 5000;
    const uint64_t w = rng() % 100;
    ss.add(key, w);
    truth[key] += w;
    total += w;
  }
  EXPECT_EQ(ss.total(), total);
  EXPECT_LE(ss.size(), 32u);
  expect_bounds(ss, truth);
  const auto top = ss.top(4);
  ASSERT_EQ(top.size(), 4u);
  for (const auto& e : top) EXPECT_LT(e.key, 4u);
  EXPECT_EQ(ss.guaranteed_top(4), 4u);
}

TEST(TopKTest, MemoryStaysBoundedOnDistinctKeys) {
  Summary ss(64);
  for (uint64_t k = 0; k < 100000; ++k) ss.add(k * 0x9e3779b97f4a7c15ull);
  EXPECT_EQ(ss.size(), 64u);
  EXPECT_EQ(ss.total(), 100000u);
  for (const auto& e : ss.top(64)) {
    EXPECT_LE(e.count - e.error, 1u);  // nothing is known to repeat
  }
}

TEST(TopKTest, SaturatesInsteadOfWrapping) {
  constexpr uint64_t kTop = std::numeric_limits<uint64_t>::max();
  Summary ss(1);
  ss.add(1, kTop - 1);
  ss.add(1, 5);
  EXPECT_EQ(ss.find(1)->count, kTop);
  ss.add(2, 5);  // replaces 1: count saturates, error = the old count
  EXPECT_EQ(ss.find(2)->count, kTop);
  EXPECT_LE(ss.find(2)->error, ss.find(2)->count);
  EXPECT_EQ(ss.total(), kTop);
}

TEST(TopKTest, TreatsCapacityZeroAsOneAndIgnoresZeroWeights) {
  Summary ss(0);
  EXPECT_EQ(ss.capacity(), 1u);
  ss.add(5, 0);
  EXPECT_EQ(ss.size(), 0u);
  ss.add(5);
  ss.add(6);
  EXPECT_EQ(ss.size(), 1u);
  EXPECT_EQ(ss.top(3).size(), 1u);
  EXPECT_EQ(ss.top(0).size(), 0u);
  ss.clear();
  EXPECT_EQ(ss.size(), 0u);
  EXPECT_EQ(ss.total(), 0u);
}

TEST(TopKTest, WorksWithStringKeys) {
  SpaceSaving<std::string> ss(3);
  for (const char* k : {"a", "b", "a", "c", "a", "d", "b"}) ss.add(k);
  const auto top = ss.top(1);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].key, "a");
  EXPECT_EQ(top[0].count, 3u);
}

}  // namespace
}  // namespace glassbox::pattern_miner
