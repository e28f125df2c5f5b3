// Top-K heavy hitters of an unbounded weighted stream in bounded memory: Space-Saving.
//
// Source: Metwally, Agrawal, El Abbadi, "Efficient Computation of Frequent and Top-k Elements
// in Data Streams", ICDT 2005 (algorithm Space-Saving and its properties). The paper keeps its
// counters in the Stream-Summary structure (O(1) per unit increment); this is the
// O(log capacity) variant: counters in a fixed array, a binary min-heap of their indices
// ordered by count, and a hash map from key to counter; it also handles weighted increments
// (add(key, w) = w unit increments of one key: the weighted generalisation keeps the paper's
// bounds). Heap moves touch only the index arrays, never the hash map.
//
// The rule: a monitored key's count grows by the weight. An unmonitored key, while fewer
// than `capacity` keys are monitored, enters with count = weight and error = 0; once full,
// it replaces the key with the smallest count `min`, entering with count = min + weight and
// error = min.
//
// Guarantees (the paper's lemmas on Space-Saving), with N = total() the sum of all weights:
//  - for every monitored key: count - error <= true count <= count;
//  - the counts sum to N, so min_count() <= N / capacity, and every key whose true count
//    exceeds N / capacity is monitored;
//  - a leading entry of top() whose count - error is at least the next entry's count (and
//    min_count()) is truly heavier than every key after it: see guaranteed_top().
// Counts saturate at UINT64_MAX instead of wrapping (hostile weights from counts mode).
//
// Memory: at most `capacity` entries (Key + 32 bytes each) plus one hash-map node per entry;
// nothing grows with the stream.
// Cost: add() O(log capacity) (heap sift) + one hash lookup (three when a key is replaced);
// top(n) O(capacity log n).
// Thread-safety: none; one writer at a time, const methods may run concurrently with each
// other but not with add().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace glassbox::pattern_miner {

template <class Key, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
class SpaceSaving {
 public:
  // One monitored key. Invariant: error <= count; count - error <= true count <= count.
  struct Entry {
    Key key{};
    uint64_t count = 0;  // over-estimate of the key's total weight
    uint64_t error = 0;  // the most by which `count` may over-estimate
  };

  // `capacity`: the most keys monitored at once (a capacity of 0 is taken as 1). More
  // capacity means smaller errors: every error is <= total() / capacity.
  explicit SpaceSaving(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {
    slot_.reserve(std::min<std::size_t>(capacity_, std::size_t{1} << 16));
  }

  // Counts `weight` occurrences of `key`. A weight of 0 changes nothing.
  // Cost: O(log capacity). Throws only what Key's copy and hash, or an allocation while the
  // summary fills, throw.
  void add(const Key& key, uint64_t weight = 1) {
    if (weight == 0) return;
    total_ = saturating_add(total_, weight);
    if (auto it = slot_.find(key); it != slot_.end()) {
      Entry& e = entries_[it->second];
      e.count = saturating_add(e.count, weight);
      sift_down(heap_pos_[it->second]);
      return;
    }
    if (entries_.size() < capacity_) {
      const std::size_t i = entries_.size();
      entries_.push_back(Entry{key, weight, 0});
      heap_.push_back(i);
      heap_pos_.push_back(i);
      slot_.emplace(key, i);
      sift_up(i);
      return;
    }
    // Replace the minimum (the heap root): the newcomer inherits its count as error.
    const std::size_t i = heap_[0];
    Entry& root = entries_[i];
    auto node = slot_.extract(root.key);  // reuse the hash node: no allocation
    node.key() = key;
    slot_.insert(std::move(node));
    const uint64_t min = root.count;
    root.key = key;
    root.error = min;
    root.count = saturating_add(min, weight);
    sift_down(0);
  }

  // The `n` entries with the largest counts (all of them when n >= size()), largest count
  // first; ties: smaller error first (the better-known key), then key insertion order is
  // not guaranteed. Cost: O(size() log n).
  std::vector<Entry> top(std::size_t n) const {
    std::vector<Entry> out(entries_.begin(), entries_.end());
    n = std::min(n, out.size());
    auto heavier = [](const Entry& a, const Entry& b) {
      if (a.count != b.count) return a.count > b.count;
      return a.error < b.error;
    };
    std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), out.end(),
                      heavier);
    out.resize(n);
    return out;
  }

  // How many leading entries of top(n) are guaranteed to be the true heaviest keys, in the
  // true order up to ties (after the paper's QueryTop-k: entry i is guaranteed when
  // it and every entry before it have count - error >= the next entry's count and >= the
  // bound min_count() on unmonitored keys).
  // Cost: O(size() log size()).
  std::size_t guaranteed_top(std::size_t n) const {
    const std::vector<Entry> all = top(entries_.size());
    n = std::min(n, all.size());
    // Keys not monitored have true counts <= min_count() (0 while the summary is not full).
    const uint64_t outside = min_count();
    std::size_t ok = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const uint64_t lower = all[i].count - all[i].error;
      const uint64_t next = i + 1 < all.size() ? all[i + 1].count : 0;
      if (lower < next || lower < outside) break;
      ++ok;
    }
    return ok;
  }

  // The entry of `key` when it is monitored. Cost: one hash lookup.
  std::optional<Entry> find(const Key& key) const {
    auto it = slot_.find(key);
    if (it == slot_.end()) return std::nullopt;
    return entries_[it->second];
  }

  // Smallest monitored count once the summary is full (an upper bound on the true count of
  // every unmonitored key); 0 while it is not full.
  uint64_t min_count() const noexcept { return full() ? entries_[heap_[0]].count : 0; }
  // Sum of all weights added (saturating).
  uint64_t total() const noexcept { return total_; }
  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t capacity() const noexcept { return capacity_; }
  bool full() const noexcept { return entries_.size() == capacity_; }

  // Forgets every key and the total; capacity stays.
  void clear() {
    entries_.clear();
    heap_.clear();
    heap_pos_.clear();
    slot_.clear();
    total_ = 0;
  }

 private:
  static uint64_t saturating_add(uint64_t a, uint64_t b) noexcept {
    return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                        : a + b;
  }
  // Min-heap order: smaller count first; on equal counts the larger error first, so the
  // least certain key is evicted first.
  // Compares the entries at heap positions i and j.
  bool lighter(std::size_t i, std::size_t j) const noexcept {
    const Entry& a = entries_[heap_[i]];
    const Entry& b = entries_[heap_[j]];
    if (a.count != b.count) return a.count < b.count;
    return a.error > b.error;
  }
  void swap_slots(std::size_t i, std::size_t j) noexcept {
    std::swap(heap_[i], heap_[j]);
    heap_pos_[heap_[i]] = i;
    heap_pos_[heap_[j]] = j;
  }
  void sift_up(std::size_t i) {
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!lighter(i, parent)) break;
      swap_slots(i, parent);
      i = parent;
    }
  }
  void sift_down(std::size_t i) {
    const std::size_t n = heap_.size();
    for (;;) {
      const std::size_t l = 2 * i + 1, r = l + 1;
      std::size_t m = i;
      if (l < n && lighter(l, m)) m = l;
      if (r < n && lighter(r, m)) m = r;
      if (m == i) break;
      swap_slots(i, m);
      i = m;
    }
  }

  std::size_t capacity_;
  uint64_t total_ = 0;
  std::vector<Entry> entries_;         // the counters; an entry never moves
  std::vector<std::size_t> heap_;      // indices into entries_: a min-heap by lighter()
  std::vector<std::size_t> heap_pos_;  // entries_ index -> its position in heap_
  std::unordered_map<Key, std::size_t, Hash, KeyEqual> slot_;  // key -> index in entries_
};

}  // namespace glassbox::pattern_miner
