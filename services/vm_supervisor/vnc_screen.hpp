// VncScreen: the guest's screen, as frames, read from QEMU's VNC server on a unix socket.
//
// QEMU runs with `-vnc unix:PATH`. VncScreen is a libvncclient client of that socket, driven by
// one thread of its own (the "VNC thread"). It:
//   - asks the server for 32-bit true colour laid out as B, G, R, X bytes per pixel
//     (little-endian 0x00RRGGBB, what QEMU holds internally: no conversion on either side) and
//     for lossless encodings only ("raw" by default: on a local socket it costs the least CPU
//     on both sides, and the guest's QEMU competes with us for cores);
//   - applies every FramebufferUpdate to a private framebuffer; after each complete update
//     message, if some rectangle changed content since the last delivered frame, it snapshots
//     the framebuffer into a new Frame, publishes it as latest() and calls on_frame. Deliveries
//     are coalesced to at most max_fps per second: updates arriving faster are folded into the
//     next delivery, which then holds the newest content. An update that repaints pixels with
//     the same values delivers nothing;
//   - follows resolution changes (RFB DesktopSize; ExtendedDesktopSize is deliberately not
//     offered, as libvncclient 0.9.14 rejects QEMU's form of it, see the .cpp): the next frame
//     has the new size, and the first frame of every (re)connection is delivered even when its
//     pixels equal the last frame's;
//   - reconnects when the socket disappears or its server goes away (guest reboot = a new QEMU
//     on the same path), retrying every reconnect_interval, forever, until stop().
//
// Not handled: VNC passwords or TLS (QEMU's unix socket needs neither; a server asking for
// authentication is refused and retried). Input (keys, pointer) goes through QMP, not here.
//
// Latency note: QEMU's VNC server polls the guest display on a timer that backs off while the
// screen is idle (30 ms up to 3 s in QEMU 7.2), so the first change after a long idle spell
// can reach us up to that late. That is the server's behaviour, not ours.
//
// Thread-safety: start(), stop() and the destructor from one owning thread; latest() and
// stats() from any thread, at any time, concurrently. on_frame runs on the VNC thread.
// Signals: the VNC thread blocks SIGPIPE for itself (a write to a dead QEMU returns EPIPE
// instead of killing the process); other threads are untouched.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace glassbox::vm_supervisor {

// One snapshot of the guest screen.
// Shape: `height` rows of `width` pixels, row y at pixels.data() + y * stride_bytes; 4 bytes per
// pixel, B, G, R, X (X is unspecified, usually 0). stride_bytes == width * 4 today.
// `seq` counts delivered frames of one VncScreen from 1, across reconnects (never reused);
// `captured_at` is when the last FramebufferUpdate folded into this frame was fully received.
// A Frame is immutable once delivered.
struct Frame {
  uint32_t width = 0;
  uint32_t height = 0;
  uint32_t stride_bytes = 0;
  std::vector<uint8_t> pixels;  // BGRX8888, height * stride_bytes bytes
  uint64_t seq = 0;
  std::chrono::steady_clock::time_point captured_at{};
};

class VncScreen {
 public:
  struct Options {
    // Upper bound on on_frame calls (and latest() changes) per second; 1..1000.
    int max_fps = 60;
    // Called on the VNC thread with each delivered frame. The reference is valid only for the
    // duration of the call; to keep the frame, call latest() (it returns this same frame until
    // the next delivery). Must not block for long (it delays the next frame; QEMU is not held
    // up, it coalesces) and must not call stop() or destroy this VncScreen. An exception
    // escaping it is caught and logged.
    std::function<void(const Frame&)> on_frame;
    // Wait between connection attempts, and after a disconnect; > 0.
    std::chrono::milliseconds reconnect_interval{250};
    // Encodings to ask for, best first, separated by spaces or commas; from: raw copyrect
    // hextile zlib tight zrle (all lossless as used here: no JPEG quality level is sent).
    std::string encodings = "raw";
    // Our messages go here (connects, disconnects, errors); null = spdlog's default logger.
    // libvncclient's own messages go to spdlog's default logger (debug; its errors at info),
    // as its log hooks are process-wide.
    std::shared_ptr<spdlog::logger> logger;
  };

  // A consistent snapshot of counters and state.
  struct Stats {
    uint64_t frames_delivered = 0;   // on_frame calls / latest() changes
    uint64_t updates_received = 0;   // complete FramebufferUpdate messages applied
    uint64_t unchanged_updates = 0;  // updates whose pixels equalled the last frame: dropped
    uint64_t connects = 0;           // successful RFB handshakes
    uint64_t disconnects = 0;        // sessions that ended (server gone, error, stop())
    bool connected = false;
    uint32_t width = 0;   // current framebuffer size in pixels; 0 before the first connect,
    uint32_t height = 0;  // the last known size while disconnected
  };

  // Starts the VNC thread, which connects to `socket_path` (a unix socket path; the socket may
  // not exist yet: it is retried every reconnect_interval). Never blocks on the server.
  // Returns null (and logs why) when `socket_path` is empty or longer than a unix socket
  // address allows (107 bytes), or when an option is outside its range or names an unknown
  // encoding.
  // Thread-safety: call from the owning thread.
  static std::unique_ptr<VncScreen> start(std::string socket_path, Options options);

  // Stops and joins the VNC thread (as stop()).
  ~VncScreen();
  VncScreen(const VncScreen&) = delete;
  VncScreen& operator=(const VncScreen&) = delete;

  // Disconnects and joins the VNC thread: returns within a few milliseconds plus the duration
  // of an on_frame call in progress; never waits on the server (a blocked read is cut by
  // shutting the socket down). After it returns on_frame is never called again; latest() and
  // stats() keep answering with the last values. Idempotent.
  // Thread-safety: call from the owning thread, never from on_frame.
  void stop();

  // The newest delivered frame, or null before the first one. The frame stays valid (and
  // unchanged) as long as the caller holds the pointer. Across a disconnect it keeps the last
  // frame seen. Thread-safety: any thread; takes a mutex briefly, never waits on the VNC thread.
  std::shared_ptr<const Frame> latest() const;

  // Thread-safety: any thread; takes a mutex briefly.
  Stats stats() const;

  const std::string& socket_path() const;

  struct Impl;  // public only so that the libvncclient callbacks (in the .cpp) can reach it

 private:
  explicit VncScreen(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace glassbox::vm_supervisor
