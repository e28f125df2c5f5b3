// glassbox-compositor: flags, config, run(). See service.hpp.
#include "compositor/service.hpp"
#include "shared/service_main.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  shared::ServiceMainOptions o;
  o.binary = "glassbox-compositor";
  o.description = "the VM's screen and its RAM on a Hilbert curve, drawn with Vulkan";
  return shared::service_main(argc, argv, o,
                              [](shared::Config c, shared::StatePaths p, const auto& stop) {
                                return compositor::Service(std::move(c), std::move(p)).run(stop);
                              });
}
