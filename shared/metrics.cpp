#include "shared/metrics.hpp"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

namespace glassbox::shared {

Result<std::unique_ptr<MetricsExposer>> MetricsExposer::start(const std::string& host,
                                                              uint32_t port) {
  auto m = std::unique_ptr<MetricsExposer>(new MetricsExposer());
  m->registry_ = std::make_shared<prometheus::Registry>();
  const std::string bind = host + ":" + std::to_string(port);
  try {
    m->exposer_ = std::make_unique<prometheus::Exposer>(bind, 2);
  } catch (const std::exception& e) {
    return fail(Errc::kIo, "metrics: cannot listen on " + bind + ": " + e.what());
  }
  m->exposer_->RegisterCollectable(m->registry_);
  const auto ports = m->exposer_->GetListeningPorts();
  const int actual = ports.empty() ? static_cast<int>(port) : ports.front();
  m->url_ = "http://" + host + ":" + std::to_string(actual) + "/metrics";
  return m;
}

MetricsExposer::~MetricsExposer() = default;

}  // namespace glassbox::shared
