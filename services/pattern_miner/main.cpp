// glassbox-pattern-miner: flags, config, run(). See service.hpp.
#include "services/pattern_miner/service.hpp"
#include "shared/service_main.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  shared::ServiceMainOptions o;
  o.binary = "glassbox-pattern-miner";
  o.description = "hot blocks, loops and traces of the guest, from the execution trace";
  return shared::service_main(argc, argv, o,
                              [](shared::Config c, shared::StatePaths p, const auto& stop) {
                                return pattern_miner::Service(std::move(c), std::move(p)).run(stop);
                              });
}
