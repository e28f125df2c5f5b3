// `glassbox screenshot FILE.png [--pane screen|ram|ram3d|all]` and `glassbox map
// locate|gpa|view`: glassbox-compositor's panes and the RAM map's geometry
// (schemas/compositor.fbs). The PNG is written here with libspng (shared/png.hpp).
#include <fmt/core.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "compositor_generated.h"
#include "services/cli/commands.hpp"
#include "shared/bus.hpp"
#include "shared/paths.hpp"
#include "shared/png.hpp"

namespace glassbox::cli {
namespace {

namespace fb = glassbox::schema;

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

// Sends `fbb` (a finished CompositorRequest) and returns the verified reply bytes, or prints
// the error and returns nullopt.
std::optional<shared::Bytes> ask(const shared::StatePaths& paths,
                                 flatbuffers::FlatBufferBuilder& fbb) {
  auto bytes =
      shared::request(paths.service_endpoint("compositor"), {fbb.GetBufferPointer(), fbb.GetSize()},
                      std::chrono::milliseconds(15000));
  if (!bytes) {
    std::cerr << "glassbox: "
              << (bytes.error().code == Errc::kUnavailable
                      ? "the compositor is not running at " + paths.dir() +
                            " (add \"compositor\" to [up] services)"
                      : bytes.error().message)
              << "\n";
    return std::nullopt;
  }
  flatbuffers::Verifier v(bytes->data(), bytes->size());
  if (bytes->size() < 8 || !v.VerifyBuffer<fb::compositor::CompositorReply>(nullptr)) {
    std::cerr << "glassbox: compositor reply failed FlatBuffers verification\n";
    return std::nullopt;
  }
  const auto* r = flatbuffers::GetRoot<fb::compositor::CompositorReply>(bytes->data());
  if (const auto* e = r->error()) {
    std::cerr << "glassbox: compositor: " << str(e->message()) << "\n";
    return std::nullopt;
  }
  return std::move(*bytes);
}

int screenshot(const Invocation& inv, const shared::StatePaths& paths) {
  flatbuffers::FlatBufferBuilder fbb(128);
  auto q = fb::compositor::CreateScreenshot(fbb, fbb.CreateString(inv.pane));
  fb::compositor::FinishCompositorRequestBuffer(
      fbb,
      fb::compositor::CreateCompositorRequest(fbb, fb::compositor::Command::Screenshot, q.Union()));
  auto bytes = ask(paths, fbb);
  if (!bytes) return 1;
  const auto* r = flatbuffers::GetRoot<fb::compositor::CompositorReply>(bytes->data());
  const auto* img = r->image();
  if (img == nullptr || img->rgba() == nullptr || img->width() == 0 || img->height() == 0 ||
      img->rgba()->size() != uint64_t{img->width()} * img->height() * 4) {
    std::cerr << "glassbox: compositor sent no image or one of the wrong size\n";
    return 1;
  }
  auto w = shared::write_png(inv.png_path, img->rgba()->data(), img->width(), img->height(),
                             img->width() * 4, shared::PixelFormat::kRgbx8888);
  if (!w) {
    std::cerr << "glassbox: " << w.error().message << "\n";
    return 1;
  }
  std::cout << fmt::format("{}: {} pane, {}x{} (compositor frame {})\n", inv.png_path, inv.pane,
                           img->width(), img->height(), img->frame());
  return 0;
}

int map(const Invocation& inv, const shared::StatePaths& paths) {
  flatbuffers::FlatBufferBuilder fbb(128);
  if (inv.map_action == "locate") {
    auto q = fb::compositor::CreateLocate(fbb, inv.gpa);
    fb::compositor::FinishCompositorRequestBuffer(
        fbb,
        fb::compositor::CreateCompositorRequest(fbb, fb::compositor::Command::Locate, q.Union()));
  } else if (inv.map_action == "gpa") {
    auto q = fb::compositor::CreateGpaAt(fbb, inv.map_x, inv.map_y);
    fb::compositor::FinishCompositorRequestBuffer(
        fbb,
        fb::compositor::CreateCompositorRequest(fbb, fb::compositor::Command::GpaAt, q.Union()));
  } else {
    constexpr double kRadPerDeg = 3.14159265358979 / 180.0;
    auto q = fb::compositor::CreateSetView(
        fbb, fbb.CreateString(inv.view_mode), fbb.CreateString(inv.highlight),
        static_cast<float>(inv.yaw_deg * kRadPerDeg),
        static_cast<float>(inv.pitch_deg * kRadPerDeg), static_cast<float>(inv.zoom));
    fb::compositor::FinishCompositorRequestBuffer(
        fbb,
        fb::compositor::CreateCompositorRequest(fbb, fb::compositor::Command::SetView, q.Union()));
  }
  auto bytes = ask(paths, fbb);
  if (!bytes) return 1;
  const auto* r = flatbuffers::GetRoot<fb::compositor::CompositorReply>(bytes->data());
  if (inv.map_action == "view") {
    std::cout << "ok\n";
    return 0;
  }
  const auto* g = r->geometry();
  if (g == nullptr) {
    std::cerr << "glassbox: compositor sent no map geometry\n";
    return 1;
  }
  nlohmann::json j = {{"x", r->x()},
                      {"y", r->y()},
                      {"bytes_per_pixel", g->bytes_per_pixel()},
                      {"pane_width", g->pane_width()},
                      {"pane_height", g->pane_height()}};
  if (inv.map_action == "gpa") j["gpa"] = fmt::format("0x{:x}", r->gpa());
  if (inv.json) {
    std::cout << j.dump() << "\n";
  } else if (inv.map_action == "gpa") {
    std::cout << fmt::format("pixel ({}, {}) shows gpa 0x{:x} .. +{} bytes\n", r->x(), r->y(),
                             r->gpa(), g->bytes_per_pixel());
  } else {
    std::cout << fmt::format(
        "gpa 0x{:x} is pixel ({}, {}) of the {}x{} RAM map ({} bytes per "
        "pixel)\n",
        inv.gpa, r->x(), r->y(), g->pane_width(), g->pane_height(), g->bytes_per_pixel());
  }
  return 0;
}

}  // namespace

int cmd_compositor(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  if (inv.command == "screenshot") return screenshot(inv, paths);
  return map(inv, paths);
}

}  // namespace glassbox::cli
