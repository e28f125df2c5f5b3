// glassbox-compositor: frames (iceoryx) + RamMirror + semantic-db regions -> Renderer ->
// window and screenshots. See service.hpp for the contract.
#include "compositor/service.hpp"

#include <flatbuffers/flatbuffers.h>
#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <variant>

#include "compositor/renderer.hpp"
#include "compositor/window.hpp"
#include "compositor_generated.h"
#include "frame_generated.h"
#include "input_generated.h"
#include "semantic_generated.h"
#include "shared/bus.hpp"
#include "shared/health.hpp"
#include "shared/iox.hpp"
#include "shared/log.hpp"
#include "shared/metrics.hpp"
#include "shared/process.hpp"
#include "shared/ram_mirror.hpp"
#include "vm_generated.h"

namespace glassbox::compositor {
namespace {

namespace fb = glassbox::schema;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint64_t kPlaceholderRamBytes = 1u << 20;  // until the first RAM keyframe
constexpr size_t kMaxInputEventsPerFrame = 256;

struct KeyInput {
  std::string qcode;
  bool down;
};
struct MoveInput {
  int32_t x, y, w, h;
};
struct ButtonInput {
  std::string button;
  bool down;
};
using InputEvent = std::variant<KeyInput, MoveInput, ButtonInput>;

// semantic-db's answer for the highlighted process (ok: semantic-db answered).
struct RegionsAnswer {
  bool ok = false;
  Highlight h;
};

}  // namespace

struct Service::Impl {
  shared::Config config;
  shared::StatePaths paths;
  std::shared_ptr<spdlog::logger> log;
  Clock::time_point started_at = Clock::now();

  std::unique_ptr<shared::MetricsExposer> metrics;
  prometheus::Counter* m_frames = nullptr;
  prometheus::Counter* m_upload = nullptr;
  prometheus::Counter* m_screen_frames = nullptr;
  prometheus::Counter* m_bad_frames = nullptr;
  prometheus::Counter* m_malformed = nullptr;
  prometheus::Gauge* m_frame_seconds = nullptr;
  prometheus::Gauge* m_gpu_seconds = nullptr;
  prometheus::Gauge* m_fps = nullptr;

  std::unique_ptr<shared::CommandServer> commands;
  bool iox_ready = false;
  Clock::time_point last_iox_try{}, last_mirror_try{};
  std::unique_ptr<shared::ChunkSubscriber> frames;
  std::unique_ptr<shared::RamMirror> mirror;

  std::unique_ptr<VkContext> ctx;
  std::unique_ptr<Renderer> renderer;
  std::unique_ptr<Window> window;
  bool ram_known = false;  // the renderer holds the guest's real layout
  std::string layout_key;  // RamLayout::describe() + size of the renderer's layout
  std::vector<uint8_t> last_frame;
  uint32_t frame_w = 0, frame_h = 0, frame_stride = 0;
  uint64_t screen_frames = 0, bad_frames = 0, malformed_requests = 0;
  std::string last_bad_frame;

  // Rates and smoothing.
  uint64_t frames_drawn = 0;
  double fps = 0, frame_ms = 0, gpu_ms = 0;
  double upload_bytes_per_s = 0, dirty_pages_per_s = 0;
  uint64_t upload_window_bytes = 0, dirty_window_pages = 0;
  Clock::time_point rate_window_start = Clock::now();
  Clock::time_point last_frame_at = Clock::now();

  // Staleness and VM state.
  Clock::time_point last_vm_probe{};
  bool screen_stale = true;
  std::string vm_state = "unknown";
  Clock::time_point last_ram_cycle_at = Clock::now();
  uint64_t last_ram_cycle = 0;
  bool ram_stale = true;

  // Highlight.
  std::string highlight_spec;
  std::string highlight_label;
  size_t highlight_runs = 0;
  Clock::time_point last_regions{};
  std::future<RegionsAnswer> regions_job;
  std::string regions_job_spec;

  std::vector<InputEvent> input;
  uint64_t input_batches = 0, input_failures = 0;

  Impl(shared::Config c, shared::StatePaths p) : config(std::move(c)), paths(std::move(p)) {
    highlight_spec = config.compositor.highlight;
  }

  uint32_t now_ms() const {
    return static_cast<uint32_t>(
        std::chrono::duration_cast<milliseconds>(Clock::now() - started_at).count() + 1);
  }

  Result<void> setup_metrics() {
    const uint32_t port = config.metrics.base_port == 0 ? 0 : config.metrics.base_port + 7;
    auto m = shared::MetricsExposer::start(config.metrics.host, port);
    if (!m) return tl::unexpected(m.error());
    metrics = std::move(*m);
    auto& reg = metrics->registry();
    const std::map<std::string, std::string> labels = {{"instance", config.instance.name}};
    auto counter = [&](const char* name, const char* help) {
      return &prometheus::BuildCounter().Name(name).Help(help).Register(reg).Add(labels);
    };
    auto gauge = [&](const char* name, const char* help) {
      return &prometheus::BuildGauge().Name(name).Help(help).Register(reg).Add(labels);
    };
    m_frames = counter("glassbox_compositor_frames_total", "Frames drawn");
    m_upload = counter("glassbox_compositor_upload_bytes_total",
                       "Bytes copied host -> GPU (changed RAM pages, screen frames, text)");
    m_screen_frames = counter("glassbox_compositor_screen_frames_total", "Guest frames taken");
    m_bad_frames =
        counter("glassbox_compositor_bad_frames_total", "Screen chunks that failed verification");
    m_malformed = counter("glassbox_compositor_malformed_requests_total",
                          "Command requests that failed FlatBuffers verification");
    m_frame_seconds = gauge("glassbox_compositor_frame_seconds",
                            "Wall time of the latest frame (upload, draw, wait), smoothed");
    m_gpu_seconds = gauge("glassbox_compositor_gpu_frame_seconds",
                          "GPU time of the latest frame (timestamps), smoothed");
    m_fps = gauge("glassbox_compositor_fps", "Frames drawn per second, smoothed");
    return {};
  }

  Result<void> setup_vulkan() {
    const auto& cc = config.compositor;
    bool want_window = cc.window == "on" || (cc.window == "auto" && Window::display_available());
    if (cc.window == "on" && !Window::display_available()) {
      return fail(Errc::kUnavailable,
                  "[compositor] window = on, but no display (DISPLAY / WAYLAND_DISPLAY) "
                  "with Vulkan support; use window = auto or off for headless");
    }
    VkContextOptions o;
    o.device_filter = cc.device;
    if (want_window) {
      auto exts = Window::required_instance_extensions();
      if (!exts) {
        if (cc.window == "on") return tl::unexpected(exts.error());
        log->warn("no window: {}", exts.error().message);
        want_window = false;
      } else {
        o.instance_extensions = *exts;
        o.want_swapchain = true;
      }
    }
    auto c = VkContext::create(o);
    if (!c) return tl::unexpected(c.error());
    ctx = std::move(*c);
    log->info("Vulkan device: {}", ctx->device_description());
    GB_TRY(make_renderer(shared::RamLayout::identity(kPlaceholderRamBytes), false));
    if (want_window) {
      WindowCallbacks cb;
      cb.on_key = [this](const std::string& q, bool down) { push_input(KeyInput{q, down}); };
      cb.on_mouse_move = [this](double x, double y) {
        int32_t gx, gy;
        if (renderer && renderer->canvas_to_guest(x, y, &gx, &gy)) {
          push_input(MoveInput{gx, gy, static_cast<int32_t>(renderer->screen_width()),
                               static_cast<int32_t>(renderer->screen_height())});
        }
      };
      cb.on_mouse_button = [this](const std::string& b, bool down) {
        push_input(ButtonInput{b, down});
      };
      cb.on_scroll = [this](double, double dy) {
        if (!renderer) return;
        Camera c = renderer->camera();
        c.distance *= dy > 0 ? 0.9f : 1.1f;
        renderer->set_camera(c);
      };
      cb.on_hotkey = [this](int key, int) { on_hotkey(key); };
      auto w = Window::create(*ctx, cc.width, cc.height, "glassbox - " + config.instance.name,
                              std::move(cb));
      if (!w) {
        if (cc.window == "on") return tl::unexpected(w.error());
        log->warn("no window: {}", w.error().message);
      } else {
        window = std::move(*w);
      }
    }
    return {};
  }

  void push_input(InputEvent e) {
    if (input.size() < kMaxInputEventsPerFrame) input.push_back(std::move(e));
  }

  void on_hotkey(int glfw_key) {
    // Ctrl+Alt+M: 2D/3D; Ctrl+Alt+arrows: orbit; Ctrl+Alt+PgUp/PgDn: zoom (GLFW key codes).
    constexpr int kM = 77, kRight = 262, kLeft = 263, kDown = 264, kUp = 265, kPgUp = 266,
                  kPgDn = 267;
    if (!renderer) return;
    Camera c = renderer->camera();
    switch (glfw_key) {
      case kM:
        renderer->set_show_3d(!renderer->options().show_3d);
        return;
      case kLeft:
        c.yaw_rad -= 0.15f;
        break;
      case kRight:
        c.yaw_rad += 0.15f;
        break;
      case kUp:
        c.pitch_rad += 0.1f;
        break;
      case kDown:
        c.pitch_rad -= 0.1f;
        break;
      case kPgUp:
        c.distance *= 0.9f;
        break;
      case kPgDn:
        c.distance *= 1.1f;
        break;
      default:
        return;
    }
    renderer->set_camera(c);
  }

  Result<void> make_renderer(const shared::RamLayout& layout, bool real) {
    const auto& cc = config.compositor;
    RendererOptions o;
    o.canvas_width = cc.width;
    o.canvas_height = cc.height;
    o.bytes_per_pixel = cc.bytes_per_pixel;
    o.volume_bits = cc.volume_bits;
    o.glow_ms = cc.glow_ms;
    o.crt = cc.crt;
    o.show_3d = renderer ? renderer->options().show_3d : cc.mode == "3d";
    Camera cam = renderer ? renderer->camera() : Camera{};
    renderer.reset();
    auto r = Renderer::create(*ctx, o, layout);
    if (!r) return tl::unexpected(r.error());
    renderer = std::move(*r);
    renderer->set_camera(cam);
    if (auto f = renderer->set_font(cc.font, 14); !f) {
      log->warn("HUD text off: {}", f.error().message);
    }
    if (!last_frame.empty()) {
      (void)renderer->update_screen(last_frame.data(), last_frame.size(), frame_w, frame_h,
                                    frame_stride);
    }
    ram_known = real;
    layout_key = fmt::format("{}|{}", layout.file_size_bytes(), layout.describe());
    last_regions = {};  // re-apply the highlight on the new map
    if (real) {
      log->info("RAM map: {} bytes per pixel, {}x{} pixels for {} MiB ({})",
                renderer->ram_map().bytes_per_pixel(), renderer->ram_map().pane_width(),
                renderer->ram_map().pane_height(), layout.file_size_bytes() >> 20,
                layout.describe());
    }
    return {};
  }

  void try_init_iox() {
    if (!iox_ready) {
      if (Clock::now() - last_iox_try < milliseconds(500)) return;
      last_iox_try = Clock::now();
      if (!shared::roudi_available()) return;
      if (auto r = shared::init_runtime(config.instance.name, "compositor"); !r) return;
      auto s = shared::ChunkSubscriber::create(config.instance.name, "vm-screen", 1, 4);
      if (!s) {
        log->warn("iceoryx subscriber: {}", s.error().message);
        return;
      }
      frames = std::move(*s);
      iox_ready = true;
    }
    if (!mirror && Clock::now() - last_mirror_try > milliseconds(2000)) {
      last_mirror_try = Clock::now();
      auto m = shared::RamMirror::create(config.instance.name,
                                         paths.service_endpoint("ram-snapshotter"), "compositor");
      if (m) {
        mirror = std::move(*m);
      } else {
        log->debug("RAM mirror: {}", m.error().message);
      }
    }
  }

  void poll_screen() {
    if (!frames) return;
    // Drain the queue: only the newest frame is drawn.
    for (int i = 0; i < 16; ++i) {
      auto c = frames->take();
      if (!c) {
        note_bad_frame(c.error().message);
        continue;
      }
      if (!*c) break;
      const auto& view = (*c)->view();
      flatbuffers::Verifier v(view.header.data(), view.header.size());
      if (!fb::frame::FrameHeaderBufferHasIdentifier(view.header.data()) ||
          !fb::frame::VerifyFrameHeaderBuffer(v)) {
        note_bad_frame("frame header is not a valid FrameHeader (GBFR)");
        continue;
      }
      const auto* h = fb::frame::GetFrameHeader(view.header.data());
      const uint64_t need = uint64_t{h->stride_bytes()} * h->height();
      if (h->format() != fb::frame::PixelFormat::Bgrx8888 || h->width() == 0 || h->height() == 0 ||
          h->width() > 8192 || h->height() > 8192 || h->stride_bytes() < uint64_t{h->width()} * 4 ||
          view.payload.size() < need) {
        note_bad_frame(fmt::format("frame {}x{} stride {} with {} payload bytes: bad geometry",
                                   h->width(), h->height(), h->stride_bytes(),
                                   view.payload.size()));
        continue;
      }
      last_frame.assign(view.payload.begin(), view.payload.begin() + need);
      frame_w = h->width();
      frame_h = h->height();
      frame_stride = h->stride_bytes();
      ++screen_frames;
      m_screen_frames->Increment();
      if (renderer) {
        if (auto r = renderer->update_screen(last_frame.data(), last_frame.size(), frame_w, frame_h,
                                             frame_stride);
            !r) {
          note_bad_frame(r.error().message);
        }
      }
    }
  }

  void note_bad_frame(std::string why) {
    ++bad_frames;
    m_bad_frames->Increment();
    if (why != last_bad_frame) log->warn("screen: {}", why);
    last_bad_frame = std::move(why);
  }

  void poll_ram() {
    if (!mirror) {
      ram_stale = true;
      return;
    }
    if (auto r = mirror->poll(milliseconds(0)); !r) log->debug("RAM mirror: {}", r.error().message);
    const auto& core = mirror->core();
    if (core.last_cycle() != last_ram_cycle) {
      last_ram_cycle = core.last_cycle();
      last_ram_cycle_at = Clock::now();
    }
    ram_stale = !core.synced() || Clock::now() - last_ram_cycle_at > milliseconds(2000);
    auto view = mirror->view();
    if (!view) return;
    const std::string key =
        fmt::format("{}|{}", view->layout().file_size_bytes(), view->layout().describe());
    bool full = false;
    if (!ram_known || key != layout_key) {
      if (auto r = make_renderer(view->layout(), true); !r) {
        log->error("renderer for the new RAM layout: {}", r.error().message);
        return;
      }
      full = true;
    }
    shared::RamChanges ch = mirror->take_changes();
    if (!full && !ch.all && ch.pages.empty()) return;
    dirty_window_pages += ch.all ? 0 : ch.pages.size();
    std::span<const uint8_t> ram(view->base(), view->size_bytes());
    auto r = renderer->update_ram(ram, ch.pages, full || ch.all, now_ms());
    if (!r) log->warn("RAM upload: {}", r.error().message);
  }

  void probe_vm() {
    if (Clock::now() - last_vm_probe < milliseconds(1000)) return;
    last_vm_probe = Clock::now();
    flatbuffers::FlatBufferBuilder fbb(128);
    auto get = fb::common::CreateGetStatus(fbb);
    fb::vm::FinishVmRequestBuffer(
        fbb, fb::vm::CreateVmRequest(fbb, fb::vm::Command::common_GetStatus, get.Union()));
    auto bytes = shared::request(paths.service_endpoint("vm-supervisor"),
                                 {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(200));
    if (!bytes) {
      screen_stale = true;
      vm_state = "no supervisor";
      return;
    }
    flatbuffers::Verifier v(bytes->data(), bytes->size());
    if (bytes->size() < 8 || !v.VerifyBuffer<fb::vm::VmReply>(nullptr)) {
      screen_stale = true;
      vm_state = "bad reply";
      return;
    }
    const auto* r = flatbuffers::GetRoot<fb::vm::VmReply>(bytes->data());
    if (r->status() == nullptr) {
      screen_stale = true;
      return;
    }
    vm_state = fb::vm::EnumNameVmState(r->status()->state());
    screen_stale = r->status()->state() != fb::vm::VmState::Running;
  }

  // The highlighted process's runs, fetched from semantic-db on a worker thread (a page-table
  // walk of every process can take seconds on a loaded host; the render loop never waits).
  static RegionsAnswer fetch_regions(const std::string& endpoint, const std::string& spec) {
    RegionsAnswer out;
    flatbuffers::FlatBufferBuilder fbb(64);
    auto q = fb::semantic::CreateGetRegions(fbb, 0);
    fb::semantic::FinishSemanticRequestBuffer(
        fbb,
        fb::semantic::CreateSemanticRequest(fbb, fb::semantic::Command::GetRegions, q.Union()));
    auto bytes =
        shared::request(endpoint, {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(10000));
    if (!bytes) return out;
    flatbuffers::Verifier v(bytes->data(), bytes->size());
    if (bytes->size() < 8 || !v.VerifyBuffer<fb::semantic::SemanticReply>(nullptr)) return out;
    const auto* r = flatbuffers::GetRoot<fb::semantic::SemanticReply>(bytes->data());
    if (r->error() || !r->regions()) return out;
    char* end = nullptr;
    const long pid = std::strtol(spec.c_str(), &end, 10);
    const bool by_pid = end && *end == '\0';
    out.ok = true;
    for (const auto* p : *r->regions()) {
      const std::string comm = p->comm() ? p->comm()->str() : "";
      if (by_pid ? p->pid() != pid : comm != spec) continue;
      out.h.label = fmt::format("pid {} {}", p->pid(), comm);
      if (p->ranges()) {
        for (const auto* g : *p->ranges()) {
          out.h.runs.push_back(Highlight::Run{Gpa(g->gpa()), g->size_bytes()});
        }
      }
      break;
    }
    return out;
  }

  void refresh_highlight() {
    if (!renderer || !ram_known) return;
    if (regions_job.valid()) {
      if (regions_job.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return;
      RegionsAnswer a = regions_job.get();
      if (a.ok && regions_job_spec == highlight_spec) {
        highlight_label = a.h.label.empty() ? highlight_spec + " (not running)" : a.h.label;
        highlight_runs = a.h.runs.size();
        (void)renderer->set_highlight(a.h);
      }
    }
    if (Clock::now() - last_regions < milliseconds(2000)) return;
    last_regions = Clock::now();
    if (highlight_spec.empty() || highlight_spec == "-") {
      if (highlight_runs != 0 || !highlight_label.empty()) (void)renderer->set_highlight({});
      highlight_runs = 0;
      highlight_label.clear();
      return;
    }
    regions_job_spec = highlight_spec;
    regions_job = std::async(std::launch::async, fetch_regions,
                             paths.service_endpoint("semantic-db"), highlight_spec);
  }

  void send_input() {
    if (input.empty()) return;
    flatbuffers::FlatBufferBuilder fbb(1024);
    std::vector<uint8_t> types;
    std::vector<flatbuffers::Offset<void>> values;
    for (const auto& e : input) {
      if (const auto* k = std::get_if<KeyInput>(&e)) {
        types.push_back(static_cast<uint8_t>(fb::input::InputEvent::KeyEvent));
        values.push_back(
            fb::input::CreateKeyEvent(fbb, fbb.CreateString(k->qcode), k->down).Union());
      } else if (const auto* m = std::get_if<MoveInput>(&e)) {
        types.push_back(static_cast<uint8_t>(fb::input::InputEvent::PointerMove));
        values.push_back(fb::input::CreatePointerMove(fbb, m->x, m->y, m->w, m->h).Union());
      } else if (const auto* b = std::get_if<ButtonInput>(&e)) {
        types.push_back(static_cast<uint8_t>(fb::input::InputEvent::PointerButton));
        values.push_back(
            fb::input::CreatePointerButton(fbb, fbb.CreateString(b->button), b->down).Union());
      }
    }
    input.clear();
    auto tv = fbb.CreateVector(reinterpret_cast<const fb::input::InputEvent*>(types.data()),
                               types.size());
    auto vv = fbb.CreateVector(values);
    auto batch = fb::input::CreateInputBatch(fbb, tv, vv);
    fb::vm::FinishVmRequestBuffer(
        fbb, fb::vm::CreateVmRequest(fbb, fb::vm::Command::input_InputBatch, batch.Union()));
    ++input_batches;
    auto r = shared::request(paths.service_endpoint("vm-supervisor"),
                             {fbb.GetBufferPointer(), fbb.GetSize()}, milliseconds(300));
    if (!r) ++input_failures;
  }

  std::string hud_text() const {
    std::string s = fmt::format("glassbox {} | vm {} | {:.1f} fps | frame {:.1f} ms",
                                config.instance.name, vm_state, fps, frame_ms);
    if (gpu_ms > 0) s += fmt::format(" (gpu {:.2f} ms)", gpu_ms);
    if (ram_known) {
      s += fmt::format(" | RAM {} MiB @ {} B/px | dirty {:.0f} pages/s | upload {:.1f} MB/s",
                       renderer->ram_map().layout().file_size_bytes() >> 20,
                       renderer->ram_map().bytes_per_pixel(), dirty_pages_per_s,
                       upload_bytes_per_s / 1e6);
    }
    if (!highlight_label.empty()) s += " | " + highlight_label;
    if (screen_stale) s += " | SCREEN STALE";
    if (ram_stale) s += ram_known ? " | RAM STALE" : " | RAM: waiting for ram-snapshotter";
    s += " | " + ctx->device_name();
    return s;
  }

  Result<void> draw_frame() {
    const auto now = Clock::now();
    const double dt = std::chrono::duration<double>(now - last_frame_at).count();
    last_frame_at = now;
    if (dt > 0) fps = fps == 0 ? 1.0 / dt : 0.9 * fps + 0.1 / dt;
    const double window_s = std::chrono::duration<double>(now - rate_window_start).count();
    if (window_s >= 1.0) {
      upload_bytes_per_s = static_cast<double>(upload_window_bytes) / window_s;
      dirty_pages_per_s = static_cast<double>(dirty_window_pages) / window_s;
      upload_window_bytes = dirty_window_pages = 0;
      rate_window_start = now;
    }
    if (config.compositor.pulse) {
      const double activity = std::min(1.0, dirty_pages_per_s / 4000.0);
      const double t = std::chrono::duration<double>(now - started_at).count();
      renderer->set_brightness(static_cast<float>(0.85 + 0.15 * activity +
                                                  0.08 * activity * std::sin(t * 6.2832 * 1.5)));
    }
    renderer->set_stale(screen_stale, ram_stale);
    renderer->set_hud_text(hud_text());
    auto st = renderer->render(now_ms());
    if (!st) return tl::unexpected(st.error());
    ++frames_drawn;
    frame_ms = frames_drawn == 1 ? st->cpu_ms : 0.9 * frame_ms + 0.1 * st->cpu_ms;
    gpu_ms = frames_drawn == 1 ? st->gpu_ms : 0.9 * gpu_ms + 0.1 * st->gpu_ms;
    upload_window_bytes += st->upload_bytes;
    m_frames->Increment();
    m_upload->Increment(static_cast<double>(st->upload_bytes));
    m_frame_seconds->Set(frame_ms / 1e3);
    m_gpu_seconds->Set(gpu_ms / 1e3);
    m_fps->Set(fps);
    if (window) {
      if (auto r = window->present(renderer->canvas_image(), renderer->canvas_width(),
                                   renderer->canvas_height());
          !r) {
        log->warn("window: {}", r.error().message);
      }
    }
    return {};
  }

  // ---- commands ----
  using Fbb = flatbuffers::FlatBufferBuilder;
  shared::Bytes finish(Fbb& fbb, flatbuffers::Offset<fb::compositor::CompositorReply> r) {
    fbb.Finish(r, fb::compositor::CompositorRequestIdentifier());
    return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  }
  shared::Bytes error_reply(const Error& e) {
    Fbb fbb(256);
    auto err = fb::common::CreateError(fbb, static_cast<int>(e.code), fbb.CreateString(e.message));
    fb::compositor::CompositorReplyBuilder b(fbb);
    b.add_error(err);
    return finish(fbb, b.Finish());
  }

  nlohmann::json summary() const {
    nlohmann::json c = {{"frame_ms", frame_ms},
                        {"gpu_ms", gpu_ms},
                        {"fps", fps},
                        {"frames", frames_drawn},
                        {"device", ctx ? ctx->device_description() : ""},
                        {"window", window != nullptr},
                        {"mode", renderer && renderer->options().show_3d ? "3d" : "2d"},
                        {"upload_bytes_per_s", upload_bytes_per_s},
                        {"dirty_pages_per_s", dirty_pages_per_s},
                        {"screen",
                         {{"width", frame_w},
                          {"height", frame_h},
                          {"frames", screen_frames},
                          {"bad_frames", bad_frames},
                          {"stale", screen_stale},
                          {"vm_state", vm_state}}},
                        {"ram", {{"known", ram_known}, {"stale", ram_stale}}},
                        {"highlight", highlight_label},
                        {"input_batches", input_batches},
                        {"input_failures", input_failures},
                        {"malformed_requests", malformed_requests}};
    if (renderer && ram_known) {
      c["ram"]["bytes_per_pixel"] = renderer->ram_map().bytes_per_pixel();
      c["ram"]["pane_width"] = renderer->ram_map().pane_width();
      c["ram"]["pane_height"] = renderer->ram_map().pane_height();
    }
    if (!last_bad_frame.empty()) c["screen"]["last_bad_frame"] = last_bad_frame;
    return {{"compositor", c}};
  }

  shared::Bytes status_reply() {
    Fbb fbb(2048);
    auto svc = shared::build_service_status(
        fbb, shared::own_status(config.instance.name, "compositor", started_at,
                                metrics ? metrics->url() : "", summary().dump()));
    fb::compositor::CompositorReplyBuilder b(fbb);
    b.add_service(svc);
    return finish(fbb, b.Finish());
  }

  flatbuffers::Offset<fb::compositor::MapGeometry> geometry(Fbb& fbb) {
    const RamMap& m = renderer->ram_map();
    return fb::compositor::CreateMapGeometry(fbb, m.bytes_per_pixel(), m.pane_width(),
                                             m.pane_height());
  }

  shared::Bytes on_screenshot(const std::string& pane_name) {
    auto pane = parse_pane(pane_name.empty() ? "all" : pane_name);
    if (!pane) return error_reply(pane.error());
    if ((*pane == Pane::kRam || *pane == Pane::kRam3d) && !ram_known) {
      return error_reply(Error{Errc::kUnavailable,
                               "no guest RAM yet: the compositor waits for ram-snapshotter's "
                               "first keyframe"});
    }
    auto img = renderer->read_pane(*pane);
    if (!img) return error_reply(img.error());
    Fbb fbb(img->rgba.size() + 1024);
    auto px = fbb.CreateVector(img->rgba);
    auto image = fb::compositor::CreateImage(fbb, img->width, img->height, px, frames_drawn);
    fb::compositor::CompositorReplyBuilder b(fbb);
    b.add_image(image);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_locate(uint64_t gpa) {
    if (!ram_known) return error_reply(Error{Errc::kUnavailable, "no guest RAM layout yet"});
    auto cell = renderer->ram_map().locate(Gpa(gpa));
    if (!cell) return error_reply(cell.error());
    Fbb fbb(256);
    auto g = geometry(fbb);
    fb::compositor::CompositorReplyBuilder b(fbb);
    b.add_x(cell->x);
    b.add_y(cell->y);
    b.add_geometry(g);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_gpa_at(uint32_t x, uint32_t y) {
    if (!ram_known) return error_reply(Error{Errc::kUnavailable, "no guest RAM layout yet"});
    auto gpa = renderer->ram_map().gpa_at(x, y);
    if (!gpa) return error_reply(gpa.error());
    Fbb fbb(256);
    auto g = geometry(fbb);
    fb::compositor::CompositorReplyBuilder b(fbb);
    b.add_gpa(gpa->value);
    b.add_x(x);
    b.add_y(y);
    b.add_geometry(g);
    return finish(fbb, b.Finish());
  }

  shared::Bytes on_set_view(const fb::compositor::SetView& v) {
    const std::string mode = v.mode() ? v.mode()->str() : "";
    if (!mode.empty() && mode != "2d" && mode != "3d") {
      return error_reply(Error{Errc::kInvalidArgument, "mode '" + mode + "': expected 2d or 3d"});
    }
    const std::string hl = v.highlight() ? v.highlight()->str() : "";
    if (hl.size() > 64) return error_reply(Error{Errc::kInvalidArgument, "highlight too long"});
    if (!mode.empty()) renderer->set_show_3d(mode == "3d");
    if (!hl.empty()) {
      highlight_spec = hl;
      last_regions = {};
      refresh_highlight();
    }
    Camera c = renderer->camera();
    if (std::isfinite(v.yaw_delta())) c.yaw_rad += v.yaw_delta();
    if (std::isfinite(v.pitch_delta())) c.pitch_rad += v.pitch_delta();
    if (std::isfinite(v.zoom_factor()) && v.zoom_factor() > 0) c.distance /= v.zoom_factor();
    renderer->set_camera(c);
    return status_reply();
  }

  shared::Bytes on_request(shared::ByteSpan bytes) {
    if (!shared::request_is_valid(bytes, fb::compositor::CompositorRequestIdentifier(),
                                  fb::compositor::VerifyCompositorRequestBuffer)) {
      ++malformed_requests;
      m_malformed->Increment();
      return error_reply(Error{Errc::kProtocol, "request is not a valid CompositorRequest (GBCO)"});
    }
    const auto* req = fb::compositor::GetCompositorRequest(bytes.data());
    switch (req->command_type()) {
      case fb::compositor::Command::common_GetStatus:
        return status_reply();
      case fb::compositor::Command::Screenshot: {
        const auto* s = req->command_as_Screenshot();
        return on_screenshot(s->pane() ? s->pane()->str() : "");
      }
      case fb::compositor::Command::Locate:
        return on_locate(req->command_as_Locate()->gpa());
      case fb::compositor::Command::GpaAt:
        return on_gpa_at(req->command_as_GpaAt()->x(), req->command_as_GpaAt()->y());
      case fb::compositor::Command::SetView:
        return on_set_view(*req->command_as_SetView());
      default:
        ++malformed_requests;
        m_malformed->Increment();
        return error_reply(Error{Errc::kInvalidArgument, "request carries no command"});
    }
  }
};

Service::Service(shared::Config config, shared::StatePaths paths)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(paths))) {}
Service::~Service() = default;

Result<void> Service::run(const std::atomic<bool>& stop) {
  Impl& s = *impl_;
  s.log = shared::make_logger("compositor");
  GB_TRY(s.paths.create());
  auto lock = shared::FileLock::acquire(
      s.paths.dir() + "/compositor.lock",
      "another compositor runs for " + s.paths.dir() + " (one per state dir)");
  if (!lock) return tl::unexpected(lock.error());
  GB_TRY(s.setup_metrics());
  GB_TRY(s.setup_vulkan());
  auto cmd = shared::CommandServer::bind(s.paths.service_endpoint("compositor"));
  if (!cmd) return tl::unexpected(cmd.error());
  s.commands = std::move(*cmd);
  s.log->info("command endpoint {}, metrics {}, {} at {}x{}, up to {} fps",
              s.paths.service_endpoint("compositor"), s.metrics->url(),
              s.window ? "window" : "headless", s.config.compositor.width,
              s.config.compositor.height, s.config.compositor.fps);
  const auto handler = [&s](shared::ByteSpan b) { return s.on_request(b); };
  const auto reject = [&s](const std::string& why) {
    ++s.malformed_requests;
    s.m_malformed->Increment();
    return s.error_reply(Error{Errc::kProtocol, why});
  };
  const auto period = std::chrono::microseconds(1'000'000 / s.config.compositor.fps);
  auto next = Clock::now();
  while (!stop.load()) {
    s.try_init_iox();
    s.poll_screen();
    s.poll_ram();
    s.probe_vm();
    s.refresh_highlight();
    if (auto r = s.draw_frame(); !r) return tl::unexpected(r.error());
    if (s.window) {
      s.window->poll_events();
      s.send_input();
      if (s.window->should_close()) {
        s.log->info("window closed");
        break;
      }
    }
    next += period;
    if (Clock::now() > next + period * 4) next = Clock::now();  // fell behind: do not burst
    // Serve commands until the next frame is due (at least one poll per frame).
    do {
      const auto left = std::chrono::duration_cast<milliseconds>(next - Clock::now());
      if (auto r = s.commands->serve_once(std::max(milliseconds(1), left), handler, reject); !r) {
        s.log->warn("{}", r.error().message);
      }
    } while (Clock::now() < next && !stop.load());
  }
  return {};
}

}  // namespace glassbox::compositor
