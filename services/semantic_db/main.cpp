// glassbox-semantic-db: flags, config, run(). See README.md beside this file.
#include "services/semantic_db/service.hpp"
#include "shared/service_main.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  shared::ServiceMainOptions o;
  o.binary = "glassbox-semantic-db";
  o.description = "the guest's processes, modules and kernel log from raw RAM, live";
  return shared::service_main(argc, argv, o,
                              [](shared::Config c, shared::StatePaths p, const auto& stop) {
                                return semantic_db::Service(std::move(c), std::move(p)).run(stop);
                              });
}
