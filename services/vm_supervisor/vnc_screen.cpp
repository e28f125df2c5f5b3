#include "services/vm_supervisor/vnc_screen.hpp"

#include <fcntl.h>
#include <rfb/rfbclient.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "shared/result.hpp"

namespace glassbox::vm_supervisor {
namespace {

using Clock = std::chrono::steady_clock;

// Largest framebuffer side accepted from the server, in pixels (the server is untrusted).
constexpr int kMaxScreenDimension = 16384;
// Upper bound on one WaitForMessage() wait. stop() wakes the thread sooner by shutting the
// socket down; this only bounds the damage if that ever fails.
constexpr auto kMaxWait = std::chrono::milliseconds(100);
// Tag under which the Impl pointer is stored in the rfbClient.
int kClientDataTag = 0;

// libvncclient's log hooks are process-wide printf-style function pointers: forward them to
// spdlog's default logger, without the trailing newline libvncclient puts on every line.
void forward_vnc_log(spdlog::level::level_enum level, const char* format, va_list args) {
  if (!rfbEnableClientLogging) return;
  char line[512];
  const int n = std::vsnprintf(line, sizeof(line), format, args);
  if (n < 0) return;
  std::size_t len = std::min<std::size_t>(static_cast<std::size_t>(n), sizeof(line) - 1);
  while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) --len;
  spdlog::default_logger_raw()->log(level, "libvncclient: {}", std::string_view(line, len));
}
void vnc_log(const char* format, ...) {
  va_list args;
  va_start(args, format);
  forward_vnc_log(spdlog::level::debug, format, args);
  va_end(args);
}
// libvncclient reports every disconnect through its error hook ("read (104: Connection reset
// by peer)"); a guest reboot is routine here, so these go at info, and we log the outcome.
void vnc_err(const char* format, ...) {
  va_list args;
  va_start(args, format);
  forward_vnc_log(spdlog::level::info, format, args);
  va_end(args);
}
void install_vnc_log_hooks() {
  static std::once_flag once;
  std::call_once(once, [] {
    rfbClientLog = vnc_log;
    rfbClientErr = vnc_err;
  });
}

// libvncclient asks for a password only when the server demands VNC authentication; we have
// none. Returning null makes the handshake fail instead of reading a terminal.
char* no_password(rfbClient* /*client*/) { return nullptr; }

// Connects a blocking unix stream socket to `path`. Errors: kNotFound (no socket file),
// kUnavailable (nobody listening, or backlog full), kIo otherwise.
Result<int> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return fail(Errc::kInvalidArgument, "VNC socket path longer than " +
                                            std::to_string(sizeof(addr.sun_path) - 1) +
                                            " bytes: " + path);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail_errno("socket(AF_UNIX)");
  // Non-blocking connect: a unix socket whose listener has a full backlog answers EAGAIN
  // instead of blocking us; retried like a refused connection.
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    ::close(fd);
    const std::string why = "connect " + path + ": " + std::strerror(e);
    if (e == ENOENT || e == ENOTDIR) return fail(Errc::kNotFound, why);
    if (e == ECONNREFUSED || e == EAGAIN) return fail(Errc::kUnavailable, why);
    return fail(Errc::kIo, why);
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    auto error = fail_errno("fcntl(" + path + ")");
    ::close(fd);
    return error;
  }
  return fd;
}

// Encoding names accepted in Options::encodings, with their RFB numbers. Lossless only.
struct NamedEncoding {
  const char* name;
  int32_t number;
};
constexpr NamedEncoding kEncodings[] = {
    {"raw", rfbEncodingRaw},   {"copyrect", rfbEncodingCopyRect}, {"hextile", rfbEncodingHextile},
    {"zlib", rfbEncodingZlib}, {"tight", rfbEncodingTight},       {"zrle", rfbEncodingZRLE},
};

struct ParsedEncodings {
  std::vector<int32_t> numbers;  // {0, 5}
  std::string names;             // "raw hextile": libvncclient's own parser wants spaces
};

// "raw hextile" or "raw,hextile" -> {0, 5}. Errors: kInvalidArgument naming the unknown word.
Result<ParsedEncodings> parse_encodings(const std::string& text) {
  ParsedEncodings out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t end = text.find_first_of(" ,", pos);
    const std::string word = text.substr(pos, end == std::string::npos ? end : end - pos);
    pos = end == std::string::npos ? text.size() : end + 1;
    if (word.empty()) continue;
    const auto it = std::find_if(std::begin(kEncodings), std::end(kEncodings),
                                 [&](const NamedEncoding& e) { return word == e.name; });
    if (it == std::end(kEncodings)) {
      return fail(Errc::kInvalidArgument, "encodings: unknown or lossy encoding '" + word +
                                              "' (known: raw copyrect hextile zlib tight zrle)");
    }
    out.numbers.push_back(it->number);
    if (!out.names.empty()) out.names += ' ';
    out.names += it->name;
  }
  if (out.numbers.empty()) return fail(Errc::kInvalidArgument, "encodings: empty");
  return out;
}

// Sends our own SetEncodings, replacing the one rfbInitClient sent. libvncclient 0.9.14
// always advertises ExtendedDesktopSize (-308) along with DesktopSize (-223); QEMU then
// prefers -308 and describes its screen with id 0, which libvncclient 0.9.14 treats as
// invalid: it ignores the new size and drops the connection on the next, larger rectangle
// ("Rect too large"). Without -308 QEMU announces resizes with -223, which works. Sending only
// what we decode also keeps out the JPEG quality and compression pseudo-encodings.
bool send_set_encodings(rfbClient* client, const std::vector<int32_t>& encodings) {
  std::vector<int32_t> all = encodings;
  all.push_back(static_cast<int32_t>(rfbEncodingNewFBSize));
  std::vector<char> msg(4 + all.size() * 4);
  msg[0] = rfbSetEncodings;
  msg[1] = 0;
  msg[2] = static_cast<char>((all.size() >> 8) & 0xff);
  msg[3] = static_cast<char>(all.size() & 0xff);
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto v = static_cast<uint32_t>(all[i]);
    msg[4 + i * 4 + 0] = static_cast<char>(v >> 24);
    msg[4 + i * 4 + 1] = static_cast<char>(v >> 16);
    msg[4 + i * 4 + 2] = static_cast<char>(v >> 8);
    msg[4 + i * 4 + 3] = static_cast<char>(v);
  }
  return WriteToRFBServer(client, msg.data(), static_cast<unsigned>(msg.size()));
}

// Pixel buffers of dropped frames, for reuse: a 1080p frame is 8 MB, and a fresh allocation of
// that size is an mmap plus 2000 page faults. A frame's deleter (run by whichever thread drops
// the last reference) returns its buffer here; the mutex orders that thread's last reads
// before our next writes. Shared with the frames, so it outlives the VncScreen if they do.
struct FramePool {
  static constexpr std::size_t kMaxBuffers = 2;
  std::mutex mu;
  std::vector<std::vector<uint8_t>> buffers;
};

struct Rect {
  uint32_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // [x0, x1) x [y0, y1)
  bool empty() const { return x0 >= x1 || y0 >= y1; }
};

}  // namespace

struct VncScreen::Impl {
  Impl(std::string path, Options opts, ParsedEncodings parsed)
      : socket_path(std::move(path)),
        options(std::move(opts)),
        encodings(std::move(parsed.numbers)),
        encoding_names(std::move(parsed.names)),
        log(options.logger ? options.logger : spdlog::default_logger()),
        min_interval(std::chrono::nanoseconds(1'000'000'000LL / options.max_fps)) {}

  // ---- Immutable after start().
  const std::string socket_path;
  const Options options;
  const std::vector<int32_t> encodings;  // parsed options.encodings
  const std::string encoding_names;      // the same, space-separated, for libvncclient
  const std::shared_ptr<spdlog::logger> log;
  const std::chrono::nanoseconds min_interval;

  // ---- Shared between the VNC thread and others; guarded by `mu`.
  mutable std::mutex mu;
  std::condition_variable wake;         // signalled by stop()
  bool stopping = false;                // set once by stop()
  int session_fd = -1;                  // our descriptor of the current socket, for shutdown()
  std::shared_ptr<const Frame> latest;  // newest delivered frame
  Stats stats;

  // ---- VNC thread only.
  std::vector<uint8_t> framebuffer;  // libvncclient draws here (client->frameBuffer)
  uint32_t fb_width = 0, fb_height = 0;
  bool fb_valid = false;  // false after a refused resize: deliver nothing
  Rect dirty;             // union of updated rectangles since the last delivery
  bool resized = false;   // size changed since the last delivery
  Clock::time_point last_update_at{};
  Clock::time_point last_delivery_at{};
  std::shared_ptr<const Frame> last_frame;  // == latest; kept to compare against
  const std::shared_ptr<FramePool> pool = std::make_shared<FramePool>();
  uint64_t seq = 0;

  std::thread thread;

  bool should_stop() const {
    std::lock_guard lock(mu);
    return stopping;
  }

  void run();
  void run_session(int fd);
  bool on_malloc_framebuffer(rfbClient* client);
  void on_update(int x, int y, int w, int h);
  void on_update_finished();
  void maybe_deliver(Clock::time_point now);
  Clock::duration wait_budget(Clock::time_point now) const;
  std::shared_ptr<Frame> new_frame();

  static Impl* from(rfbClient* client) {
    return static_cast<Impl*>(rfbClientGetClientData(client, &kClientDataTag));
  }
};

namespace {

rfbBool malloc_framebuffer_hook(rfbClient* client) {
  return VncScreen::Impl::from(client)->on_malloc_framebuffer(client) ? TRUE : FALSE;
}
void got_update_hook(rfbClient* client, int x, int y, int w, int h) {
  VncScreen::Impl::from(client)->on_update(x, y, w, h);
}
void finished_update_hook(rfbClient* client) {
  VncScreen::Impl::from(client)->on_update_finished();
}

}  // namespace

void VncScreen::Impl::run() {
  // A write to a socket whose peer died raises SIGPIPE on the writing thread; with it blocked
  // here, libvncclient's write() fails with EPIPE and we reconnect. The signal stays pending on
  // this thread only and is discarded when it exits.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);

  Errc last_connect_error = Errc::kOk;
  while (!should_stop()) {
    auto fd = connect_unix(socket_path);
    if (fd) {
      last_connect_error = Errc::kOk;
      run_session(*fd);
    } else if (fd.error().code != last_connect_error) {
      // Log once per kind of failure, not every reconnect_interval.
      last_connect_error = fd.error().code;
      log->info("vnc: waiting for {} ({})", socket_path, fd.error().message);
    }
    // Drop a SIGPIPE raised by the session that just ended, so it does not pile up.
    const timespec no_wait{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &no_wait) > 0) {
    }
    std::unique_lock lock(mu);
    wake.wait_for(lock, options.reconnect_interval, [this] { return stopping; });
  }
}

void VncScreen::Impl::run_session(int fd) {
  {
    std::lock_guard lock(mu);
    if (stopping) {
      ::close(fd);
      return;
    }
    session_fd = fd;
  }
  // libvncclient closes its socket itself (in rfbClientCleanup, and inside rfbInitClient when
  // that fails); it gets a duplicate, so that `fd` stays ours: stop() may shutdown() it at any
  // moment under `mu` without racing with a close() and a reuse of the number.
  auto end_session = [this, fd] {
    std::lock_guard lock(mu);
    ::close(fd);
    session_fd = -1;
    if (stats.connected) ++stats.disconnects;
    stats.connected = false;
  };
  const int lib_fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (lib_fd < 0) {
    log->error("vnc: dup of the socket failed: {}", std::strerror(errno));
    end_session();
    return;
  }

  // rfbGetClient(8, 3, 4) asks for 8-bit samples, 3 per pixel, 4 bytes per pixel; its default
  // shifts give R, G, B, X bytes on little-endian. We want B, G, R, X (0x00RRGGBB), QEMU's own
  // layout.
  rfbClient* client = rfbGetClient(8, 3, 4);
  if (client == nullptr) {
    ::close(lib_fd);
    log->error("vnc: rfbGetClient failed (out of memory)");
    end_session();
    return;
  }
  client->format.bitsPerPixel = 32;
  client->format.depth = 24;
  client->format.bigEndian = FALSE;
  client->format.trueColour = TRUE;
  client->format.redMax = client->format.greenMax = client->format.blueMax = 255;
  client->format.redShift = 16;
  client->format.greenShift = 8;
  client->format.blueShift = 0;
  client->appData.encodingsString = encoding_names.c_str();
  client->appData.enableJPEG = FALSE;
  client->appData.useRemoteCursor = FALSE;  // the server draws the pointer into the frame
  client->appData.shareDesktop = TRUE;      // do not kick other VNC clients off QEMU
  client->canHandleNewFBSize = TRUE;
  client->MallocFrameBuffer = malloc_framebuffer_hook;
  client->GotFrameBufferUpdate = got_update_hook;
  client->FinishedFrameBufferUpdate = finished_update_hook;
  client->GetPassword = no_password;
  rfbClientSetClientData(client, &kClientDataTag, this);
  // Hand libvncclient the connected socket: with listenSpecified it skips its own connect
  // (the path it takes after accepting a reverse connection) and starts the RFB handshake.
  free(client->serverHost);
  client->serverHost = strdup(socket_path.c_str());
  client->sock = lib_fd;
  client->listenSpecified = TRUE;

  fb_valid = false;
  if (!rfbInitClient(client, nullptr, nullptr)) {
    // rfbInitClient has freed `client` and closed lib_fd.
    if (!should_stop()) log->warn("vnc: RFB handshake on {} failed", socket_path);
    end_session();
    return;
  }
  if (!send_set_encodings(client, encodings)) {
    rfbClientCleanup(client);
    if (!should_stop()) log->warn("vnc: sending SetEncodings to {} failed", socket_path);
    end_session();
    return;
  }
  {
    std::lock_guard lock(mu);
    ++stats.connects;
    stats.connected = true;
  }
  log->info("vnc: connected to {} ({}x{}, \"{}\")", socket_path, fb_width, fb_height,
            client->desktopName ? client->desktopName : "");

  const char* why = "stopped";
  while (!should_stop()) {
    const auto now = Clock::now();
    maybe_deliver(now);
    // libvncclient reads ahead into client->buf: a message may already sit there while the
    // socket is quiet, so only wait when nothing is buffered.
    if (client->buffered == 0) {
      const auto budget = std::chrono::duration_cast<std::chrono::microseconds>(wait_budget(now));
      const int ready = WaitForMessage(client, static_cast<unsigned>(budget.count()));
      if (ready < 0) {
        why = "wait failed";
        break;
      }
      if (ready == 0) continue;
    }
    if (!HandleRFBServerMessage(client)) {
      why = "server closed the connection or sent an invalid message";
      break;
    }
    if (!fb_valid) {
      why = "server announced an unacceptable screen size";
      break;
    }
  }
  // Deliver what arrived before the end (unless stopping: then nobody waits for it).
  if (!should_stop()) maybe_deliver(Clock::time_point::max());
  rfbClientCleanup(client);  // closes lib_fd; leaves the framebuffer to us
  if (!should_stop()) log->info("vnc: disconnected from {}: {}", socket_path, why);
  end_session();
}

bool VncScreen::Impl::on_malloc_framebuffer(rfbClient* client) {
  const int w = client->width;
  const int h = client->height;
  if (w <= 0 || h <= 0 || w > kMaxScreenDimension || h > kMaxScreenDimension ||
      client->format.bitsPerPixel != 32) {
    log->error(
        "vnc: server announced {}x{} at {} bits per pixel; refusing (limit {} pixels a "
        "side, 32 bpp)",
        w, h, client->format.bitsPerPixel, kMaxScreenDimension);
    // Some libvncclient paths ignore our answer and go on decoding: make every later rectangle
    // fail libvncclient's bounds check ("Rect too large"), keep a valid buffer, and end the
    // session after this message.
    fb_valid = false;
    client->width = 0;
    client->height = 0;
    framebuffer.assign(4, 0);
    client->frameBuffer = framebuffer.data();
    return false;
  }
  fb_width = static_cast<uint32_t>(w);
  fb_height = static_cast<uint32_t>(h);
  framebuffer.assign(std::size_t{fb_width} * fb_height * 4, 0);
  client->frameBuffer = framebuffer.data();
  fb_valid = true;
  resized = true;
  dirty = Rect{};  // a full update follows (libvncclient requests it); deliver after that
  {
    std::lock_guard lock(mu);
    stats.width = fb_width;
    stats.height = fb_height;
  }
  log->debug("vnc: framebuffer {}x{}", fb_width, fb_height);
  return true;
}

void VncScreen::Impl::on_update(int x, int y, int w, int h) {
  if (!fb_valid || w <= 0 || h <= 0) return;
  // Clip to the framebuffer (libvncclient checked already; do not trust it to).
  const uint32_t x0 = static_cast<uint32_t>(std::clamp(x, 0, static_cast<int>(fb_width)));
  const uint32_t y0 = static_cast<uint32_t>(std::clamp(y, 0, static_cast<int>(fb_height)));
  const uint32_t x1 = static_cast<uint32_t>(
      std::clamp(static_cast<int64_t>(x) + w, int64_t{0}, static_cast<int64_t>(fb_width)));
  const uint32_t y1 = static_cast<uint32_t>(
      std::clamp(static_cast<int64_t>(y) + h, int64_t{0}, static_cast<int64_t>(fb_height)));
  const Rect r{x0, y0, x1, y1};
  if (r.empty()) return;
  if (dirty.empty()) {
    dirty = r;
  } else {
    dirty.x0 = std::min(dirty.x0, r.x0);
    dirty.y0 = std::min(dirty.y0, r.y0);
    dirty.x1 = std::max(dirty.x1, r.x1);
    dirty.y1 = std::max(dirty.y1, r.y1);
  }
}

void VncScreen::Impl::on_update_finished() {
  last_update_at = Clock::now();
  std::lock_guard lock(mu);
  ++stats.updates_received;
}

Clock::duration VncScreen::Impl::wait_budget(Clock::time_point now) const {
  if (dirty.empty()) return kMaxWait;
  const auto due = last_delivery_at + min_interval;
  if (due <= now) return Clock::duration::zero();
  return std::min<Clock::duration>(due - now, kMaxWait);
}

std::shared_ptr<Frame> VncScreen::Impl::new_frame() {
  auto frame = std::make_unique<Frame>();
  {
    std::lock_guard lock(pool->mu);
    if (!pool->buffers.empty()) {
      frame->pixels = std::move(pool->buffers.back());
      pool->buffers.pop_back();
    }
  }
  return std::shared_ptr<Frame>(frame.release(), [pool = pool](Frame* f) {
    {
      std::lock_guard lock(pool->mu);
      if (pool->buffers.size() < FramePool::kMaxBuffers) {
        pool->buffers.push_back(std::move(f->pixels));
      }
    }
    delete f;
  });
}

void VncScreen::Impl::maybe_deliver(Clock::time_point now) {
  if (!fb_valid || dirty.empty()) return;
  if (now != Clock::time_point::max() && now < last_delivery_at + min_interval) return;
  const std::size_t row_bytes = std::size_t{fb_width} * 4;

  // Same size as the last frame and the updated area holds the same pixels: nothing to say.
  if (!resized && last_frame && last_frame->width == fb_width && last_frame->height == fb_height) {
    bool same = true;
    const std::size_t offset = std::size_t{dirty.x0} * 4;
    const std::size_t len = std::size_t{dirty.x1 - dirty.x0} * 4;
    for (uint32_t y = dirty.y0; y < dirty.y1 && same; ++y) {
      same = std::memcmp(framebuffer.data() + y * row_bytes + offset,
                         last_frame->pixels.data() + y * row_bytes + offset, len) == 0;
    }
    if (same) {
      dirty = Rect{};
      std::lock_guard lock(mu);
      ++stats.unchanged_updates;
      return;
    }
  }

  std::shared_ptr<Frame> frame = new_frame();
  frame->width = fb_width;
  frame->height = fb_height;
  frame->stride_bytes = static_cast<uint32_t>(row_bytes);
  frame->pixels.assign(framebuffer.begin(), framebuffer.end());
  frame->seq = ++seq;
  frame->captured_at = last_update_at;
  dirty = Rect{};
  resized = false;
  last_delivery_at = (now == Clock::time_point::max()) ? Clock::now() : now;
  {
    std::lock_guard lock(mu);
    latest = frame;
    ++stats.frames_delivered;
  }
  last_frame = frame;
  if (options.on_frame) {
    try {
      options.on_frame(*frame);
    } catch (const std::exception& e) {
      log->error("vnc: on_frame threw: {}", e.what());
    } catch (...) {
      log->error("vnc: on_frame threw a non-std exception");
    }
  }
}

// ---- VncScreen

VncScreen::VncScreen(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<VncScreen> VncScreen::start(std::string socket_path, Options options) {
  auto log = options.logger ? options.logger : spdlog::default_logger();
  if (socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    log->error("vnc: socket path must be 1..{} bytes, got {} ('{}')",
               sizeof(sockaddr_un::sun_path) - 1, socket_path.size(), socket_path);
    return nullptr;
  }
  if (options.max_fps < 1 || options.max_fps > 1000) {
    log->error("vnc: max_fps must be 1..1000, got {}", options.max_fps);
    return nullptr;
  }
  if (options.reconnect_interval <= std::chrono::milliseconds::zero()) {
    log->error("vnc: reconnect_interval must be > 0, got {} ms",
               options.reconnect_interval.count());
    return nullptr;
  }
  auto encodings = parse_encodings(options.encodings);
  if (!encodings) {
    log->error("vnc: {}", encodings.error().message);
    return nullptr;
  }
  install_vnc_log_hooks();
  auto impl =
      std::make_unique<Impl>(std::move(socket_path), std::move(options), std::move(*encodings));
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<VncScreen>(new VncScreen(std::move(impl)));
}

VncScreen::~VncScreen() { stop(); }

void VncScreen::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    // Wakes a read blocked in libvncclient (handshake or message body) and WaitForMessage.
    if (impl_->session_fd >= 0) ::shutdown(impl_->session_fd, SHUT_RDWR);
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::shared_ptr<const Frame> VncScreen::latest() const {
  std::lock_guard lock(impl_->mu);
  return impl_->latest;
}

VncScreen::Stats VncScreen::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

const std::string& VncScreen::socket_path() const { return impl_->socket_path; }

}  // namespace glassbox::vm_supervisor
