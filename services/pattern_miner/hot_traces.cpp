#include "services/pattern_miner/hot_traces.hpp"

#include <algorithm>
#include <utility>

namespace glassbox::pattern_miner {

HotTraceSelector::HotTraceSelector(NetOptions options) : options_(options) {
  options_.max_trace_blocks = std::max<uint32_t>(options_.max_trace_blocks, 1);
  options_.max_traces = std::min<std::size_t>(options_.max_traces, uint32_t{0xffffffff});
}

void HotTraceSelector::on_blocks(uint32_t vcpu_index, std::span<const uint64_t> pcs) {
  for (uint64_t pc : pcs) on_block(vcpu_index, pc);
}

void HotTraceSelector::reset_vcpu(uint32_t vcpu_index) {
  auto it = vcpus_.find(vcpu_index);
  if (it == vcpus_.end()) return;
  if (it->second.mode == Mode::kRecord) ++stats_.recordings_abandoned;
  it->second = Vcpu{};
}

void HotTraceSelector::on_block(uint32_t vcpu_index, uint64_t pc) {
  auto it = vcpus_.find(vcpu_index);
  if (it == vcpus_.end()) {
    if (vcpus_.size() >= options_.max_vcpus) {
      ++stats_.vcpu_events_dropped;
      return;
    }
    it = vcpus_.emplace(vcpu_index, Vcpu{}).first;
  }
  ++stats_.events;
  Vcpu& v = it->second;
  switch (v.mode) {
    case Mode::kInTrace: {
      HotTrace& t = traces_[v.trace];
      const std::size_t next = std::size_t{v.position} + 1;
      if (next < t.block_pcs.size() && t.block_pcs[next] == pc) {
        v.position = static_cast<uint32_t>(next);
        v.prev_pc = pc;
        ++t.blocks_executed;
        ++stats_.events_in_traces;
        return;
      }
      if (next == t.block_pcs.size()) ++t.times_completed;
      // A trace exit, or the end of the trace: its target is a head candidate unless it is
      // a trace head itself (then the traces are linked and it is entered).
      dispatch(v, pc, /*head_candidate=*/true);
      return;
    }
    case Mode::kRecord: {
      TraceEnd end;
      if (pc <= v.prev_pc) {
        end = TraceEnd::kBackwardBranch;
      } else if (trace_at_.count(pc) != 0) {
        end = TraceEnd::kTraceHead;
      } else if (v.recording.size() >= options_.max_trace_blocks) {
        end = TraceEnd::kMaxLength;
      } else {
        v.recording.push_back(pc);
        v.prev_pc = pc;
        return;
      }
      finish_recording(v, vcpu_index, end);
      // The new trace ends here, so `pc` is reached through its exit.
      dispatch(v, pc, /*head_candidate=*/true);
      return;
    }
    case Mode::kInterpret: {
      const bool backward = v.has_prev && pc <= v.prev_pc;
      dispatch(v, pc, backward);
      return;
    }
  }
}

void HotTraceSelector::dispatch(Vcpu& v, uint64_t pc, bool head_candidate) {
  v.has_prev = true;
  v.prev_pc = pc;
  if (auto t = trace_at_.find(pc); t != trace_at_.end()) {
    v.mode = Mode::kInTrace;
    v.trace = t->second;
    v.position = 0;
    HotTrace& trace = traces_[t->second];
    ++trace.times_executed;
    ++trace.blocks_executed;
    ++stats_.events_in_traces;
    return;
  }
  v.mode = Mode::kInterpret;
  if (!head_candidate || !count_arrival(pc)) return;
  if (traces_.size() >= options_.max_traces) {
    ++stats_.traces_dropped;
    return;
  }
  v.mode = Mode::kRecord;
  v.recording.clear();
  v.recording.push_back(pc);
}

void HotTraceSelector::finish_recording(Vcpu& v, uint32_t vcpu_index, TraceEnd end) {
  v.mode = Mode::kInterpret;
  const uint64_t head = v.recording.front();
  if (trace_at_.count(head) != 0 || traces_.size() >= options_.max_traces) {
    ++stats_.traces_dropped;  // another vCPU selected this head meanwhile, or the cache is full
    v.recording.clear();
    return;
  }
  HotTrace t;
  t.head_pc = head;
  t.block_pcs = std::move(v.recording);
  t.end = end;
  t.selection_order = traces_.size();
  t.selected_vcpu = vcpu_index;
  v.recording = {};
  trace_at_.emplace(head, static_cast<uint32_t>(traces_.size()));
  traces_.push_back(std::move(t));
  ++stats_.traces_selected;
}

bool HotTraceSelector::count_arrival(uint64_t pc) {
  auto it = counters_.find(pc);
  if (it == counters_.end()) {
    if (counters_.size() >= options_.max_counters) {
      decay_counters();
      if (counters_.size() >= options_.max_counters) {
        ++stats_.heads_dropped;
        return false;
      }
    }
    it = counters_.emplace(pc, 0).first;
  }
  if (++it->second > options_.hot_threshold) {
    counters_.erase(it);
    return true;
  }
  return false;
}

void HotTraceSelector::decay_counters() {
  ++stats_.counter_decays;
  for (auto it = counters_.begin(); it != counters_.end();) {
    it->second /= 2;
    it = it->second == 0 ? counters_.erase(it) : std::next(it);
  }
}

std::vector<HotTrace> HotTraceSelector::traces() const {
  std::vector<HotTrace> out = traces_;
  std::stable_sort(out.begin(), out.end(), [](const HotTrace& a, const HotTrace& b) {
    return a.times_executed > b.times_executed;
  });
  return out;
}

}  // namespace glassbox::pattern_miner
