// Hot traces: the paths a dynamic optimiser would compile, selected by Next-Executing-Tail.
//
// Sources: Bala, Duesterwald, Banerjia, "Dynamo: A Transparent Dynamic Optimization System",
// PLDI 2000 (its trace selection); Duesterwald, Bala, "Software Profiling for Hot Path
// Prediction: Less is More", ASPLOS 2000 (the Next-Executing-Tail scheme, NET). NET as
// simulated here, over the executed TB pcs of each vCPU:
//  - Trace heads are the targets of backward taken branches (an edge prev -> pc with
//    pc <= prev, comparing TB start pcs) and the targets of exits from selected traces. Each
//    arrival at a head increments its counter.
//  - When a counter passes `hot_threshold`, the vCPU records the next executing tail: the
//    pcs it executes from the head on, until a backward taken branch (the branch's target is
//    not taken in), the head of a selected trace (not taken in), or `max_trace_blocks` pcs.
//    The recording becomes a trace and the head's counter is dropped.
//  - The selected traces form a simulated code cache shared by all vCPUs: a vCPU arriving at
//    a trace head (by any edge) executes the trace while its pcs match the trace's; a
//    differing pc is a trace exit (its target becomes a head candidate), and so is the pc
//    after the trace's last block unless it is itself a trace head (the traces are linked).
// Counters are per pc and shared by the vCPUs; each vCPU has its own position (previous pc,
// recording or trace being run), so vCPUs never form edges with each other.
//
// Differences from Dynamo: no cache flushes (a trace, once selected, stays; the cache is
// bounded by max_traces and further selections are dropped and counted); the counter table
// is bounded by max_counters and, when full, all counters are halved and zeros forgotten
// (counts of cold heads decay); traced pcs include interrupt/exception entries, so a trace
// can contain a handler where Dynamo (user code only) would not.
//
// Hostile input: any pc and vcpu_index is accepted; vCPUs beyond max_vcpus are dropped and
// counted. Memory: O(max_counters + max_traces * max_trace_blocks + max_vcpus *
// max_trace_blocks) pcs.
// Thread-safety: none (one writer); const methods may run concurrently with each other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace glassbox::pattern_miner {

struct NetOptions {
  uint32_t hot_threshold = 50;          // Dynamo's default: a head is hot after 50 arrivals
  uint32_t max_trace_blocks = 64;       // most pcs in one trace (>= 1)
  std::size_t max_traces = 4096;        // most traces selected (at most 2^32 - 1); more are dropped
  std::size_t max_counters = 1u << 16;  // most head counters at once
  std::size_t max_vcpus = 1024;         // most distinct vcpu_index values
};

// How a trace recording ended.
enum class TraceEnd : uint8_t {
  kBackwardBranch,  // the next pc was <= the last one (usually the loop closing)
  kTraceHead,       // the next pc is the head of a selected trace
  kMaxLength,       // max_trace_blocks reached
};

struct HotTrace {
  uint64_t head_pc = 0;
  std::vector<uint64_t> block_pcs;  // TB pcs in execution order; block_pcs[0] == head_pc
  TraceEnd end = TraceEnd::kBackwardBranch;
  uint64_t selection_order = 0;  // 0 for the first trace selected, 1 for the next, ...
  uint32_t selected_vcpu = 0;    // the vCPU whose path was recorded
  uint64_t times_executed = 0;   // entries at the head after selection (all vCPUs)
  uint64_t times_completed = 0;  // of those, runs through the last block
  uint64_t blocks_executed = 0;  // pcs executed inside the trace (coverage)
};

struct NetStats {
  uint64_t events = 0;            // pcs fed
  uint64_t events_in_traces = 0;  // of those, executed inside a selected trace
  uint64_t traces_selected = 0;
  uint64_t traces_dropped = 0;        // selections over max_traces, or a second recording of
                                      // a head another vCPU selected meanwhile
  uint64_t recordings_abandoned = 0;  // reset_vcpu() during a recording
  uint64_t counter_decays = 0;        // times the full counter table was halved
  uint64_t heads_dropped = 0;         // arrivals not counted: the table stayed full
  uint64_t vcpu_events_dropped = 0;   // pcs of vCPUs beyond max_vcpus
};

class HotTraceSelector {
 public:
  explicit HotTraceSelector(NetOptions options = {});

  // Feeds the next executed TB pc of vCPU `vcpu_index`, in that vCPU's execution order.
  // Cost: O(1) expected (hash lookups); a counter decay is O(max_counters), amortised.
  void on_block(uint32_t vcpu_index, uint64_t pc);
  // Feeds a run of pcs of one vCPU, in execution order.
  void on_blocks(uint32_t vcpu_index, std::span<const uint64_t> pcs);
  // Forgets the vCPU's position: call at a gap in its stream (dropped events, a new QEMU
  // generation); an unfinished recording is abandoned (its head must become hot again).
  void reset_vcpu(uint32_t vcpu_index);

  // The selected traces, most executed first (ties: selected earlier first).
  std::vector<HotTrace> traces() const;
  // The traces in selection order (index = selection_order).
  const std::vector<HotTrace>& traces_by_selection() const noexcept { return traces_; }
  const NetStats& stats() const noexcept { return stats_; }
  const NetOptions& options() const noexcept { return options_; }

 private:
  enum class Mode : uint8_t { kInterpret, kRecord, kInTrace };
  struct Vcpu {
    Mode mode = Mode::kInterpret;
    bool has_prev = false;
    uint64_t prev_pc = 0;
    uint32_t trace = 0;               // kInTrace: index in traces_
    uint32_t position = 0;            // kInTrace: index of prev_pc in the trace
    std::vector<uint64_t> recording;  // kRecord: the pcs so far, recording[0] = head
  };

  // `pc` is reached outside any trace (from the interpreter or a trace exit).
  void dispatch(Vcpu& v, uint64_t pc, bool head_candidate);
  void finish_recording(Vcpu& v, uint32_t vcpu_index, TraceEnd end);
  bool count_arrival(uint64_t pc);  // true when the head just became hot
  void decay_counters();

  NetOptions options_;
  NetStats stats_;
  std::vector<HotTrace> traces_;
  std::unordered_map<uint64_t, uint32_t> trace_at_;  // head pc -> index in traces_
  std::unordered_map<uint64_t, uint32_t> counters_;  // head pc -> arrivals
  std::unordered_map<uint32_t, Vcpu> vcpus_;
};

}  // namespace glassbox::pattern_miner
