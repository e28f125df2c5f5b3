// Prometheus exposition for a service: one registry, served over HTTP by prometheus-cpp's
// civetweb-based Exposer at http://HOST:PORT/metrics.
//
// Metric names follow Prometheus conventions: glassbox_ prefix, _total for counters,
// _seconds for durations; every metric carries the label instance="<instance name>".
// Thread-safety: prometheus-cpp metrics are thread-safe; the exposer serves from its own
// threads. Create once per process.
#pragma once

#include <memory>
#include <string>

#include "shared/result.hpp"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace glassbox::shared {

class MetricsExposer {
 public:
  // Listens on host:port (port 0: the kernel picks a free one; url() tells which).
  // Errors: kIo when the address cannot be bound.
  static Result<std::unique_ptr<MetricsExposer>> start(const std::string& host, uint32_t port);
  ~MetricsExposer();

  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> registry_ptr() { return registry_; }
  // "http://127.0.0.1:PORT/metrics"
  const std::string& url() const { return url_; }

 private:
  MetricsExposer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::string url_;
};

}  // namespace glassbox::shared
