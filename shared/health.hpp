// ServiceStatus (schemas/health.fbs) as a plain struct, and its FlatBuffers builder/reader.
// Every service answers GetStatus with one; `glassbox up` adds restarts and state.
// Thread-safety: value types and pure functions.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstdint>
#include <string>

#include "health_generated.h"

namespace glassbox::shared {

struct ServiceStatusFields {
  std::string instance;
  std::string service;
  int32_t pid = 0;
  schema::health::ServiceState state = schema::health::ServiceState::Up;
  double uptime_s = 0;
  std::string metrics_url;
  uint32_t restarts = 0;
  std::string summary_json = "{}";
};

flatbuffers::Offset<schema::health::ServiceStatus> build_service_status(
    flatbuffers::FlatBufferBuilder& fbb, const ServiceStatusFields& s);

// Copies a verified ServiceStatus into the plain struct (missing strings become "").
ServiceStatusFields read_service_status(const schema::health::ServiceStatus& s);

}  // namespace glassbox::shared
