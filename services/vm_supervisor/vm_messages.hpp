// vm-supervisor's wire messages: verifying a VmRequest, building a VmReply, and turning an
// input.InputBatch into QMP input-send-event events.
// Thread-safety: pure functions.
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "services/vm_supervisor/cpu_state.hpp"
#include "shared/bus.hpp"
#include "shared/health.hpp"
#include "shared/result.hpp"
#include "vm_generated.h"

namespace glassbox::vm_supervisor {

// Everything a VmStatus (schemas/vm.fbs) carries, plus the service's own status.
struct VmStatusFields {
  schema::vm::VmState state = schema::vm::VmState::Stopped;
  bool ready = false;
  schema::vm::Accel accel = schema::vm::Accel::Tcg;
  std::string accel_reason;
  int32_t qemu_pid = 0;
  double boot_to_ready_s = -1;
  uint32_t boots = 0;
  uint32_t vm_restarts = 0;
  uint32_t screen_width = 0;
  uint32_t screen_height = 0;
  uint64_t frames_published = 0;
  uint64_t serial_lines = 0;
  std::string ram_path;
  uint64_t ram_size_bytes = 0;
  std::string qmp_socket;
  std::string vnc_socket;
  std::string serial_log;
  struct Range {
    uint64_t gpa, size_bytes, file_offset;
  };
  std::vector<Range> ram_layout;     // gpa <-> RAM-file map of the current boot; empty if unknown
  std::vector<VcpuRegisters> vcpus;  // only in the reply to GetVcpus
  shared::ServiceStatusFields service;
};

// Verifies `bytes` as a VmRequest (file identifier "GBVM" and the FlatBuffers Verifier,
// depth and table limits bounded). Returns a pointer into `bytes` (valid while they are).
// Errors: kProtocol naming what failed: size, identifier, or verification.
Result<const schema::vm::VmRequest*> verify_vm_request(shared::ByteSpan bytes);

// A finished VmReply: `error` when set, the status always, the service status when asked.
shared::Bytes build_vm_reply(const std::optional<Error>& error, const VmStatusFields& status,
                             bool with_service);

// Converts an InputBatch to the QMP `events` array. Pointer moves use their own width and
// height when positive, else `screen_size`. Errors: kInvalidArgument naming the event index
// and what was wrong (unknown qcode, unknown button, empty batch, more than 256 events).
Result<nlohmann::json> input_batch_to_qmp(
    const schema::input::InputBatch& batch,
    const std::function<Result<void>(int&, int&)>& screen_size);

}  // namespace glassbox::vm_supervisor
