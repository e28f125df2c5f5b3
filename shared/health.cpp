#include "shared/health.hpp"

#include <unistd.h>

namespace glassbox::shared {

flatbuffers::Offset<schema::health::ServiceStatus> build_service_status(
    flatbuffers::FlatBufferBuilder& fbb, const ServiceStatusFields& s) {
  return schema::health::CreateServiceStatus(
      fbb, fbb.CreateString(s.instance), fbb.CreateString(s.service), s.pid, s.state, s.uptime_s,
      fbb.CreateString(s.metrics_url), s.restarts, fbb.CreateString(s.summary_json));
}

ServiceStatusFields read_service_status(const schema::health::ServiceStatus& s) {
  auto str = [](const flatbuffers::String* p) { return p ? p->str() : std::string(); };
  ServiceStatusFields f;
  f.instance = str(s.instance());
  f.service = str(s.service());
  f.pid = s.pid();
  f.state = s.state();
  f.uptime_s = s.uptime_s();
  f.metrics_url = str(s.metrics_url());
  f.restarts = s.restarts();
  f.summary_json = s.summary_json() ? s.summary_json()->str() : "{}";
  return f;
}

ServiceStatusFields own_status(const std::string& instance, const std::string& service,
                               std::chrono::steady_clock::time_point started_at,
                               std::string metrics_url, std::string summary_json) {
  ServiceStatusFields f;
  f.instance = instance;
  f.service = service;
  f.pid = static_cast<int32_t>(::getpid());
  f.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at).count();
  f.metrics_url = std::move(metrics_url);
  f.summary_json = std::move(summary_json);
  return f;
}

}  // namespace glassbox::shared
