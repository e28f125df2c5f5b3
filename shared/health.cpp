#include "shared/health.hpp"

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

}  // namespace glassbox::shared
