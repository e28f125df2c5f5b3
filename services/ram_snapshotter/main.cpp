// glassbox-ram-snapshotter: flags, config, run(). See README.md beside this file.
#include "services/ram_snapshotter/snapshotter.hpp"
#include "shared/service_main.hpp"

int main(int argc, char** argv) {
  using namespace glassbox;
  shared::ServiceMainOptions o;
  o.binary = "glassbox-ram-snapshotter";
  o.description = "guest RAM as a live stream of keyframes and deltas";
  return shared::service_main(
      argc, argv, o, [](shared::Config c, shared::StatePaths p, const auto& stop) {
        return ram_snapshotter::Snapshotter(std::move(c), std::move(p)).run(stop);
      });
}
