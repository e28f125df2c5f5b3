// Client side of the command endpoints: what the CLI (and `up`'s report) asks services.
// Every reply is verified with the FlatBuffers Verifier before it is read.
// Thread-safety: reentrant (each call uses its own ZeroMQ socket).
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "shared/health.hpp"
#include "shared/paths.hpp"
#include "shared/result.hpp"
#include "vm_generated.h"

namespace glassbox::cli {

struct ServiceQuery {
  shared::ServiceStatusFields service;
  nlohmann::json summary;  // the service's summary_json, parsed (an object of status sections)
};

// Asks service `name` for its status. Errors: kUnavailable (not running), kTimeout,
// kProtocol (reply failed verification), kUnsupported (no client for that service).
Result<ServiceQuery> query_service_status(const shared::StatePaths& paths, const std::string& name,
                                          std::chrono::milliseconds timeout);

// Sends a VmRequest built by `build` (which must Finish it with FinishVmRequestBuffer) to
// vm-supervisor. Returns the VmStatus as JSON. Errors: the service's error reply as an
// Error with its code and message; transport errors as above.
Result<nlohmann::json> vm_request(const shared::StatePaths& paths,
                                  const std::function<void(flatbuffers::FlatBufferBuilder&)>& build,
                                  std::chrono::milliseconds timeout);

struct OrchestratorStatus {
  std::vector<shared::ServiceStatusFields> services;
  int32_t roudi_pid = 0;
  std::string metrics_url;  // `glassbox up`'s own metrics endpoint
};

// GetStatus / Shutdown to `glassbox up`. Errors: kUnavailable "no glassbox instance is
// running at STATE_DIR" when nothing listens.
Result<OrchestratorStatus> orchestrator_status(const shared::StatePaths& paths);
Result<void> orchestrator_shutdown(const shared::StatePaths& paths);

}  // namespace glassbox::cli
