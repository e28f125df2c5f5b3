// ServiceStatus (schemas/health.fbs) as a plain struct, and its FlatBuffers builder/reader.
// Every service answers GetStatus with one; `glassbox up` adds restarts and state. Also the
// check every service runs on a command request before reading it.
// Thread-safety: value types and pure functions.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <chrono>
#include <cstdint>
#include <span>
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

// This process's status as `service` of `instance`: its pid, the uptime since `started_at`,
// its metrics URL ("" when it has none) and the service's summary (a JSON object as text).
ServiceStatusFields own_status(const std::string& instance, const std::string& service,
                               std::chrono::steady_clock::time_point started_at,
                               std::string metrics_url, std::string summary_json);

// Whether a command request may be read: at least 8 bytes, the schema's 4-character file
// identifier (`file_identifier`, e.g. MinerRequestIdentifier()) and the FlatBuffers verifier
// with the limits every service uses (depth 8, 64 tables), run by `verify` (the generated
// VerifyXxxRequestBuffer). A false answer means: refuse with kProtocol, count it malformed.
template <typename Verify>
bool request_is_valid(std::span<const uint8_t> bytes, const char* file_identifier,
                      Verify&& verify) {
  if (bytes.size() < 8 || !flatbuffers::BufferHasIdentifier(bytes.data(), file_identifier)) {
    return false;
  }
  flatbuffers::Verifier::Options o;
  o.max_depth = 8;
  o.max_tables = 64;
  flatbuffers::Verifier v(bytes.data(), bytes.size(), o);
  return verify(v);
}

}  // namespace glassbox::shared
