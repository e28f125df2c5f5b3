// glassbox-trace-consumer: flags, config, run(). See consumer.hpp.
#include "services/trace_consumer/consumer.hpp"
#include "shared/service_main.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  shared::ServiceMainOptions o;
  o.binary = "glassbox-trace-consumer";
  o.description = "drains the TCG trace plugin's rings and republishes them over iceoryx";
  return shared::service_main(
      argc, argv, o, [](shared::Config c, shared::StatePaths p, const auto& stop) {
        return trace_consumer::Consumer(std::move(c), std::move(p)).run(stop);
      });
}
