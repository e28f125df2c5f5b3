// Tests of VncScreen against a scripted in-process RFB server (hermetic: pixel format, resize,
// coalescing, reconnects, prompt stop) and against a real QEMU (skipped when
// qemu-system-x86_64 is not installed).
#include "services/vm_supervisor/vnc_screen.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "shared/png.hpp"

extern char** environ;

namespace glassbox::vm_supervisor {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return done();
}

// ---------------------------------------------------------------------------------------------
// A scripted RFB 3.8 server on a unix socket: no authentication, raw encoding only, one client
// at a time. The screen is filled with one colour; the test changes the colour or the size and
// the server answers the client's next FramebufferUpdateRequest accordingly, in the pixel
// format the client asked for.
class FakeRfbServer {
 public:
  struct ClientFormat {
    uint8_t bits_per_pixel = 0, depth = 0, big_endian = 0, true_colour = 0;
    uint16_t red_max = 0, green_max = 0, blue_max = 0;
    uint8_t red_shift = 0, green_shift = 0, blue_shift = 0;
    bool received = false;
  };

  FakeRfbServer(std::string path, uint16_t width, uint16_t height)
      : path_(std::move(path)), width_(width), height_(height) {
    ::unlink(path_.c_str());
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_fd_, 4) != 0) {
      ADD_FAILURE() << "bind/listen " << path_ << ": " << std::strerror(errno);
    }
    thread_ = std::thread([this] { loop(); });
  }

  ~FakeRfbServer() {
    stop_ = true;
    thread_.join();
    if (client_fd_ >= 0) ::close(client_fd_);
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }

  void set_colour(uint8_t r, uint8_t g, uint8_t b) {
    std::lock_guard lock(mu_);
    colour_ = {r, g, b};
    ++content_gen_;
  }
  // Sends the same pixels again as an update (a repaint without change).
  void repaint() {
    std::lock_guard lock(mu_);
    ++content_gen_;
  }
  void resize(uint16_t width, uint16_t height) {
    std::lock_guard lock(mu_);
    width_ = width;
    height_ = height;
    resize_pending_ = true;
  }
  // When on, every incremental request is answered with a new colour (as fast as the client
  // asks); the last colour sent is in last_animated_colour().
  void set_animating(bool on) {
    std::lock_guard lock(mu_);
    animating_ = on;
  }
  std::array<uint8_t, 3> colour() const {
    std::lock_guard lock(mu_);
    return colour_;
  }
  void drop_client() { drop_ = true; }

  ClientFormat client_format() const {
    std::lock_guard lock(mu_);
    return format_;
  }
  std::vector<int32_t> client_encodings() const {
    std::lock_guard lock(mu_);
    return encodings_;
  }
  int accepted() const { return accepted_; }
  int updates_sent() const { return updates_sent_; }

 private:
  bool read_exact(void* out, std::size_t n) {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
      pollfd pfd{client_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 20) == 0) {
        if (stop_ || drop_) return false;
        continue;
      }
      const ssize_t got = ::read(client_fd_, p, n);
      if (got <= 0) return false;
      p += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }
  bool write_all(const std::vector<uint8_t>& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(client_fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  static void put16(std::vector<uint8_t>& v, uint16_t x) {
    v.push_back(static_cast<uint8_t>(x >> 8));
    v.push_back(static_cast<uint8_t>(x));
  }
  static void put32(std::vector<uint8_t>& v, uint32_t x) {
    put16(v, static_cast<uint16_t>(x >> 16));
    put16(v, static_cast<uint16_t>(x));
  }

  bool handshake() {
    const std::string version = "RFB 003.008\n";
    if (!write_all(std::vector<uint8_t>(version.begin(), version.end()))) return false;
    char client_version[12];
    if (!read_exact(client_version, 12)) return false;
    if (!write_all({1, 1})) return false;  // one security type: None
    uint8_t chosen = 0;
    if (!read_exact(&chosen, 1) || chosen != 1) return false;
    if (!write_all({0, 0, 0, 0})) return false;  // SecurityResult OK
    uint8_t shared = 0;
    if (!read_exact(&shared, 1)) return false;  // ClientInit
    std::vector<uint8_t> init;
    {
      std::lock_guard lock(mu_);
      put16(init, width_);
      put16(init, height_);
      sent_width_ = width_;
      sent_height_ = height_;
      resize_pending_ = false;
    }
    // Server pixel format: R, G, B, X bytes (deliberately not what the client wants).
    const uint8_t server_format[16] = {32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0};
    init.insert(init.end(), server_format, server_format + 16);
    const std::string name = "fake";
    put32(init, static_cast<uint32_t>(name.size()));
    init.insert(init.end(), name.begin(), name.end());
    return write_all(init);
  }

  // Reads one client message; false when the client is gone or sent something unknown.
  bool read_message() {
    uint8_t type = 0;
    if (!read_exact(&type, 1)) return false;
    switch (type) {
      case 0: {  // SetPixelFormat
        uint8_t b[19];
        if (!read_exact(b, 19)) return false;
        const uint8_t* f = b + 3;
        std::lock_guard lock(mu_);
        format_.bits_per_pixel = f[0];
        format_.depth = f[1];
        format_.big_endian = f[2];
        format_.true_colour = f[3];
        format_.red_max = static_cast<uint16_t>(f[4] << 8 | f[5]);
        format_.green_max = static_cast<uint16_t>(f[6] << 8 | f[7]);
        format_.blue_max = static_cast<uint16_t>(f[8] << 8 | f[9]);
        format_.red_shift = f[10];
        format_.green_shift = f[11];
        format_.blue_shift = f[12];
        format_.received = true;
        return true;
      }
      case 2: {  // SetEncodings
        uint8_t b[3];
        if (!read_exact(b, 3)) return false;
        const int n = b[1] << 8 | b[2];
        std::vector<int32_t> encodings;
        for (int i = 0; i < n; ++i) {
          uint8_t e[4];
          if (!read_exact(e, 4)) return false;
          encodings.push_back(static_cast<int32_t>(uint32_t{e[0]} << 24 | uint32_t{e[1]} << 16 |
                                                   uint32_t{e[2]} << 8 | e[3]));
        }
        std::lock_guard lock(mu_);
        encodings_ = encodings;
        return true;
      }
      case 3: {  // FramebufferUpdateRequest
        uint8_t b[9];
        if (!read_exact(b, 9)) return false;
        request_pending_ = true;
        if (b[0] == 0) full_requested_ = true;
        return true;
      }
      case 4: {  // KeyEvent
        uint8_t b[7];
        return read_exact(b, 7);
      }
      case 5: {  // PointerEvent
        uint8_t b[5];
        return read_exact(b, 5);
      }
      case 6: {  // ClientCutText
        uint8_t b[7];
        if (!read_exact(b, 7)) return false;
        uint32_t n = uint32_t{b[3]} << 24 | uint32_t{b[4]} << 16 | uint32_t{b[5]} << 8 | b[6];
        std::vector<uint8_t> text(n);
        return n == 0 || read_exact(text.data(), n);
      }
      default:
        ADD_FAILURE() << "fake RFB server: unexpected client message type " << int{type};
        return false;
    }
  }

  // Answers a pending request, if there is something to send.
  bool maybe_send_update() {
    if (!request_pending_) return true;
    std::vector<uint8_t> msg;
    {
      std::lock_guard lock(mu_);
      auto advertised = [&](int32_t e) {
        return std::find(encodings_.begin(), encodings_.end(), e) != encodings_.end();
      };
      if (resize_pending_ && advertised(-308)) {
        // As QEMU 7.2 does: ExtendedDesktopSize, one screen, screen id 0.
        msg = {0, 0};
        put16(msg, 1);
        put16(msg, 0);  // reason: server-side change
        put16(msg, 0);  // status: no error
        put16(msg, width_);
        put16(msg, height_);
        put32(msg, static_cast<uint32_t>(-308));
        msg.insert(msg.end(), {1, 0, 0, 0});  // number of screens, padding
        put32(msg, 0);                        // screen id
        put16(msg, 0);
        put16(msg, 0);
        put16(msg, width_);
        put16(msg, height_);
        put32(msg, 0);  // flags
        sent_width_ = width_;
        sent_height_ = height_;
        resize_pending_ = false;
      } else if (resize_pending_ && advertised(-223)) {
        msg = {0, 0};
        put16(msg, 1);
        put16(msg, 0);
        put16(msg, 0);
        put16(msg, width_);
        put16(msg, height_);
        put32(msg, static_cast<uint32_t>(-223));
        sent_width_ = width_;
        sent_height_ = height_;
        resize_pending_ = false;
        // The client answers with a full (non-incremental) request.
      } else {
        if (animating_) {
          colour_ = {static_cast<uint8_t>(colour_[0] + 1), static_cast<uint8_t>(colour_[1] + 3),
                     colour_[2]};
          ++content_gen_;
        }
        if (!full_requested_ && content_gen_ == sent_gen_) return true;
        const uint32_t pixel = uint32_t{colour_[0]} << format_.red_shift |
                               uint32_t{colour_[1]} << format_.green_shift |
                               uint32_t{colour_[2]} << format_.blue_shift;
        const uint16_t w = sent_width_, h = sent_height_;
        msg = {0, 0};
        put16(msg, 1);
        put16(msg, 0);
        put16(msg, 0);
        put16(msg, w);
        put16(msg, h);
        put32(msg, 0);  // raw
        msg.reserve(msg.size() + std::size_t{w} * h * 4);
        for (std::size_t i = 0; i < std::size_t{w} * h; ++i) {
          msg.push_back(static_cast<uint8_t>(pixel));  // little-endian, 32 bpp
          msg.push_back(static_cast<uint8_t>(pixel >> 8));
          msg.push_back(static_cast<uint8_t>(pixel >> 16));
          msg.push_back(static_cast<uint8_t>(pixel >> 24));
        }
        sent_gen_ = content_gen_;
        full_requested_ = false;
      }
    }
    request_pending_ = false;
    ++updates_sent_;
    return write_all(msg);
  }

  void serve_client() {
    request_pending_ = false;
    full_requested_ = false;
    if (!handshake()) return;
    while (!stop_ && !drop_) {
      pollfd pfd{client_fd_, POLLIN, 0};
      const int ready = ::poll(&pfd, 1, 2);
      if (ready > 0 && !read_message()) return;
      if (!maybe_send_update()) return;
    }
  }

  void loop() {
    while (!stop_) {
      pollfd pfd{listen_fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 10) <= 0) continue;
      client_fd_ = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client_fd_ < 0) continue;
      ++accepted_;
      drop_ = false;
      serve_client();
      ::close(client_fd_);
      client_fd_ = -1;
    }
  }

  const std::string path_;
  int listen_fd_ = -1;
  int client_fd_ = -1;  // server thread only
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> updates_sent_{0};
  bool request_pending_ = false;  // server thread only
  bool full_requested_ = false;   // server thread only

  mutable std::mutex mu_;  // guards what follows
  uint16_t width_, height_;
  uint16_t sent_width_ = 0, sent_height_ = 0;
  bool resize_pending_ = false;
  bool animating_ = false;
  std::array<uint8_t, 3> colour_{0, 0, 0};
  uint64_t content_gen_ = 1, sent_gen_ = 0;
  ClientFormat format_;
  std::vector<int32_t> encodings_;
};

// What the tests keep of each delivered frame.
struct SeenFrame {
  uint32_t width, height, stride_bytes;
  uint64_t seq;
  std::array<uint8_t, 4> first_pixel;  // B, G, R, X
  bool uniform;
};

class FrameLog {
 public:
  std::function<void(const Frame&)> callback() {
    return [this](const Frame& f) {
      SeenFrame seen{f.width, f.height, f.stride_bytes, f.seq, {}, true};
      if (f.pixels.size() >= 4) std::memcpy(seen.first_pixel.data(), f.pixels.data(), 4);
      for (std::size_t i = 0; i + 4 <= f.pixels.size(); i += 4) {
        // Compare B, G, R only: X is unspecified.
        if (std::memcmp(f.pixels.data() + i, f.pixels.data(), 3) != 0) {
          seen.uniform = false;
          break;
        }
      }
      std::lock_guard lock(mu_);
      frames_.push_back(seen);
    };
  }
  std::vector<SeenFrame> frames() const {
    std::lock_guard lock(mu_);
    return frames_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return frames_.size();
  }
  std::optional<SeenFrame> last() const {
    std::lock_guard lock(mu_);
    if (frames_.empty()) return std::nullopt;
    return frames_.back();
  }

 private:
  mutable std::mutex mu_;
  std::vector<SeenFrame> frames_;
};

class VncScreenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/glassbox_vnc_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_path_ = (dir_ / "vnc.sock").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  VncScreen::Options options(FrameLog& log, int max_fps = 60) {
    VncScreen::Options o;
    o.max_fps = max_fps;
    o.on_frame = log.callback();
    o.reconnect_interval = 50ms;
    return o;
  }

  std::filesystem::path dir_;
  std::string socket_path_;
};

bool pixel_is(const std::optional<SeenFrame>& f, uint8_t r, uint8_t g, uint8_t b) {
  return f && f->first_pixel[0] == b && f->first_pixel[1] == g && f->first_pixel[2] == r;
}

TEST_F(VncScreenTest, RequestsBgrxTrueColourAndDeliversFirstFrame) {
  FakeRfbServer server(socket_path_, 64, 48);
  server.set_colour(255, 0, 0);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 5s));

  const auto format = server.client_format();
  ASSERT_TRUE(format.received);
  EXPECT_EQ(format.bits_per_pixel, 32);
  EXPECT_EQ(format.depth, 24);
  EXPECT_EQ(format.big_endian, 0);
  EXPECT_NE(format.true_colour, 0);  // libvncclient sends TRUE as 0xFF
  EXPECT_EQ(format.red_max, 255);
  EXPECT_EQ(format.red_shift, 16);
  EXPECT_EQ(format.green_shift, 8);
  EXPECT_EQ(format.blue_shift, 0);
  // The encodings in effect are ours: raw and DesktopSize, without ExtendedDesktopSize
  // (-308), which libvncclient 0.9.14 mishandles with QEMU.
  const std::vector<int32_t> expected_encodings = {0, -223};
  EXPECT_TRUE(wait_until([&] { return server.client_encodings() == expected_encodings; }, 2s));

  const auto first = log.last();
  EXPECT_EQ(first->width, 64u);
  EXPECT_EQ(first->height, 48u);
  EXPECT_EQ(first->stride_bytes, 64u * 4);
  EXPECT_EQ(first->seq, 1u);
  EXPECT_TRUE(first->uniform);
  // Pure red arrives as bytes B=0, G=0, R=255.
  EXPECT_EQ(first->first_pixel[0], 0);
  EXPECT_EQ(first->first_pixel[1], 0);
  EXPECT_EQ(first->first_pixel[2], 255);

  auto latest = screen->latest();
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->seq, 1u);
  EXPECT_EQ(latest->pixels.size(), std::size_t{64} * 48 * 4);
  const auto stats = screen->stats();
  EXPECT_TRUE(stats.connected);
  EXPECT_EQ(stats.connects, 1u);
  EXPECT_EQ(stats.width, 64u);
  EXPECT_EQ(stats.height, 48u);
  EXPECT_EQ(stats.frames_delivered, 1u);
}

TEST_F(VncScreenTest, DeliversOnlyWhenContentChanges) {
  FakeRfbServer server(socket_path_, 32, 32);
  server.set_colour(10, 20, 30);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  ASSERT_TRUE(wait_until([&] { return log.size() == 1; }, 5s));

  const auto updates_before = screen->stats().updates_received;
  server.repaint();  // same pixels again
  ASSERT_TRUE(wait_until([&] { return screen->stats().unchanged_updates >= 1; }, 5s));
  EXPECT_GT(screen->stats().updates_received, updates_before);
  EXPECT_EQ(log.size(), 1u);

  server.set_colour(40, 50, 60);
  ASSERT_TRUE(wait_until([&] { return log.size() == 2; }, 5s));
  EXPECT_TRUE(pixel_is(log.last(), 40, 50, 60));
  EXPECT_EQ(log.last()->seq, 2u);
}

TEST_F(VncScreenTest, HeldFrameStaysUnchangedWhileNewFramesArrive) {
  FakeRfbServer server(socket_path_, 32, 32);
  server.set_colour(7, 7, 7);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 5s));
  const std::shared_ptr<const Frame> held = screen->latest();
  ASSERT_TRUE(held);
  const std::vector<uint8_t> held_pixels = held->pixels;
  for (uint8_t i = 1; i <= 6; ++i) {  // enough frames to cycle the buffer pool
    server.set_colour(i * 30, 0, 0);
    ASSERT_TRUE(wait_until([&] { return pixel_is(log.last(), i * 30, 0, 0); }, 5s));
  }
  EXPECT_EQ(held->pixels, held_pixels);
  EXPECT_EQ(held->seq, 1u);
  EXPECT_EQ(screen->latest()->seq, 7u);
}

TEST_F(VncScreenTest, FollowsResolutionChange) {
  FakeRfbServer server(socket_path_, 64, 48);
  server.set_colour(1, 2, 3);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 5s));

  server.resize(100, 30);
  server.set_colour(200, 100, 50);
  ASSERT_TRUE(wait_until(
      [&] {
        auto f = log.last();
        return f && f->width == 100 && f->height == 30 && pixel_is(f, 200, 100, 50);
      },
      5s));
  // No frame of the new size was delivered before its content arrived.
  for (const auto& f : log.frames()) {
    if (f.width == 100) {
      EXPECT_TRUE(pixel_is(f, 200, 100, 50)) << "seq " << f.seq;
    }
  }
  const auto latest = screen->latest();
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->width, 100u);
  EXPECT_EQ(latest->stride_bytes, 400u);
  EXPECT_EQ(latest->pixels.size(), std::size_t{100} * 30 * 4);
  EXPECT_EQ(screen->stats().width, 100u);
  EXPECT_EQ(screen->stats().height, 30u);
  EXPECT_EQ(screen->stats().connects, 1u);
}

TEST_F(VncScreenTest, CoalescesUpdatesToMaxFpsAndEndsOnNewestContent) {
  FakeRfbServer server(socket_path_, 16, 16);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log, /*max_fps=*/10));
  ASSERT_TRUE(screen);
  ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 5s));

  const auto t0 = Clock::now();
  const auto frames0 = log.size();
  const auto updates0 = screen->stats().updates_received;
  server.set_animating(true);
  std::this_thread::sleep_for(1000ms);
  server.set_animating(false);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto final_colour = server.colour();
  // Let the last, held-back update through.
  ASSERT_TRUE(wait_until(
      [&] { return pixel_is(log.last(), final_colour[0], final_colour[1], final_colour[2]); }, 2s));
  const auto frames = log.size() - frames0;
  const auto updates = screen->stats().updates_received - updates0;
  EXPECT_GT(updates, 30u) << "the fake server should outpace 10 fps";
  EXPECT_LE(frames, static_cast<std::size_t>(seconds * 10) + 3) << updates << " updates";
  EXPECT_GE(frames, 5u);
  // Coalescing skips updates, never sequence numbers.
  const auto all = log.frames();
  for (std::size_t i = 1; i < all.size(); ++i) EXPECT_EQ(all[i].seq, all[i - 1].seq + 1);
}

TEST_F(VncScreenTest, ReconnectsWhenServerDropsTheConnection) {
  FakeRfbServer server(socket_path_, 32, 32);
  server.set_colour(9, 9, 9);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 5s));

  server.drop_client();
  ASSERT_TRUE(wait_until([&] { return screen->stats().connects >= 2; }, 5s));
  // A new connection delivers its first full frame even when the pixels did not change.
  ASSERT_TRUE(wait_until([&] { return log.size() >= 2; }, 5s));
  EXPECT_TRUE(pixel_is(log.last(), 9, 9, 9));
  EXPECT_GE(screen->stats().disconnects, 1u);
  EXPECT_EQ(server.accepted(), 2);
}

TEST_F(VncScreenTest, ReconnectsToANewServerOnTheSamePath) {
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  std::this_thread::sleep_for(120ms);  // no socket yet: it keeps retrying
  EXPECT_FALSE(screen->stats().connected);
  EXPECT_EQ(screen->latest(), nullptr);
  {
    FakeRfbServer first(socket_path_, 40, 30);
    first.set_colour(1, 1, 1);
    ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 5s));
  }  // server gone, socket unlinked ("QEMU exited")
  ASSERT_TRUE(wait_until([&] { return !screen->stats().connected; }, 5s));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(screen->latest()->width, 40u) << "keeps the last frame while disconnected";

  FakeRfbServer second(socket_path_, 80, 60);  // "the VM rebooted"
  second.set_colour(2, 2, 2);
  ASSERT_TRUE(wait_until([&] { return log.size() >= 2; }, 5s));
  EXPECT_EQ(log.last()->width, 80u);
  EXPECT_TRUE(pixel_is(log.last(), 2, 2, 2));
  const auto stats = screen->stats();
  EXPECT_EQ(stats.connects, 2u);
  EXPECT_TRUE(stats.connected);
  EXPECT_EQ(stats.width, 80u);
}

TEST_F(VncScreenTest, StopIsPromptWhileConnected) {
  FakeRfbServer server(socket_path_, 32, 32);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 5s));
  const auto t0 = Clock::now();
  screen->stop();
  EXPECT_LT(Clock::now() - t0, 300ms);
  EXPECT_FALSE(screen->stats().connected);
  EXPECT_TRUE(screen->latest());
  screen->stop();  // idempotent
}

TEST_F(VncScreenTest, StopIsPromptWhileWaitingForTheSocket) {
  FrameLog log;
  auto o = options(log);
  o.reconnect_interval = 5000ms;
  auto screen = VncScreen::start(socket_path_, o);
  ASSERT_TRUE(screen);
  std::this_thread::sleep_for(50ms);
  const auto t0 = Clock::now();
  screen.reset();
  EXPECT_LT(Clock::now() - t0, 300ms);
}

TEST_F(VncScreenTest, StopIsPromptWhenServerNeverSpeaks) {
  // A listener that never accepts: connect() succeeds through the backlog and libvncclient
  // blocks reading the server's version string.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  FrameLog log;
  auto screen = VncScreen::start(socket_path_, options(log));
  ASSERT_TRUE(screen);
  std::this_thread::sleep_for(200ms);
  const auto t0 = Clock::now();
  screen->stop();
  EXPECT_LT(Clock::now() - t0, 300ms);
  EXPECT_EQ(screen->stats().connects, 0u);
  ::close(fd);
}

TEST_F(VncScreenTest, RejectsInvalidOptions) {
  FrameLog log;
  EXPECT_EQ(VncScreen::start("", options(log)), nullptr);
  EXPECT_EQ(VncScreen::start(std::string(200, 'a'), options(log)), nullptr);
  EXPECT_EQ(VncScreen::start(socket_path_, options(log, 0)), nullptr);
  auto o = options(log);
  o.reconnect_interval = 0ms;
  EXPECT_EQ(VncScreen::start(socket_path_, o), nullptr);
  o = options(log);
  o.encodings = "raw jpeg";
  EXPECT_EQ(VncScreen::start(socket_path_, o), nullptr);
  o.encodings = " , ";
  EXPECT_EQ(VncScreen::start(socket_path_, o), nullptr);
}

TEST_F(VncScreenTest, AcceptsOtherLosslessEncodings) {
  FakeRfbServer server(socket_path_, 8, 8);
  FrameLog log;
  auto o = options(log);
  o.encodings = "hextile, raw";
  auto screen = VncScreen::start(socket_path_, o);
  ASSERT_TRUE(screen);
  const std::vector<int32_t> expected = {5, 0, -223};
  EXPECT_TRUE(wait_until([&] { return server.client_encodings() == expected; }, 2s));
}

// ---------------------------------------------------------------------------------------------
// Against a real QEMU: SeaBIOS on the std VGA text console, no guest.

const char* find_qemu() {
  static const char* const kCandidates[] = {"/usr/bin/qemu-system-x86_64",
                                            "/usr/local/bin/qemu-system-x86_64"};
  for (const char* path : kCandidates) {
    if (::access(path, X_OK) == 0) return path;
  }
  return nullptr;
}

// Sends `commands` (one JSON object each) to QEMU's QMP socket at `path`, after the greeting
// and qmp_capabilities; true when every command got a "return". Retries the connect for 5 s.
bool qmp(const std::string& path, const std::vector<std::string>& commands) {
  int fd = -1;
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) break;
    ::close(fd);
    fd = -1;
    std::this_thread::sleep_for(20ms);
  }
  if (fd < 0) return false;
  std::string pending;
  // Reads lines until one contains `want`; false on timeout, EOF or an "error".
  auto read_until = [&](const std::string& want) {
    const auto until = Clock::now() + 5s;
    while (Clock::now() < until) {
      std::size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        const std::string line = pending.substr(0, nl);
        pending.erase(0, nl + 1);
        if (line.find("\"error\"") != std::string::npos) return false;
        if (line.find(want) != std::string::npos) return true;
      }
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) return false;
      pending.append(buf, static_cast<std::size_t>(n));
    }
    return false;
  };
  bool ok = read_until("\"QMP\"");
  std::vector<std::string> all = {R"({"execute":"qmp_capabilities"})"};
  all.insert(all.end(), commands.begin(), commands.end());
  for (const auto& command : all) {
    if (!ok) break;
    const std::string line = command + "\n";
    ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
         read_until("\"return\"");
  }
  ::close(fd);
  return ok;
}

class Qemu {
 public:
  // Starts QEMU with the VNC server on `socket_path`; with `paused`, QEMU waits for a QMP
  // "cont" on `socket_path`.qmp before running the guest (SeaBIOS).
  Qemu(const char* binary, const std::string& socket_path, const std::string& log_path,
       bool paused = false) {
    const std::string vnc = "unix:" + socket_path;
    std::vector<std::string> args = {binary,     "-machine", "pc",          "-accel", "tcg",
                                     "-m",       "64",       "-nodefaults", "-vga",   "std",
                                     "-display", "none",     "-vnc",        vnc};
    if (paused) {
      args.insert(args.end(), {"-S", "-qmp", "unix:" + socket_path + ".qmp,server=on,wait=off"});
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    if (posix_spawn(&pid_, binary, &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Qemu() { kill(); }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
};

TEST_F(VncScreenTest, ReadsSeaBiosScreenFromQemuAndReconnectsAfterRestart) {
  const char* binary = find_qemu();
  if (binary == nullptr) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  const std::string qemu_log = (dir_ / "qemu.log").string();

  FrameLog log;
  auto o = options(log);
  o.reconnect_interval = 100ms;
  auto screen = VncScreen::start(socket_path_, o);
  ASSERT_TRUE(screen);

  // Paused before SeaBIOS runs: the screen is QEMU's 640x480 placeholder.
  auto qemu = std::make_unique<Qemu>(binary, socket_path_, qemu_log, /*paused=*/true);
  ASSERT_TRUE(qemu->running());
  ASSERT_TRUE(wait_until([&] { return log.size() >= 1; }, 10s)) << "no frame from QEMU";
  const auto placeholder = *log.last();
  std::printf("[ info     ] QEMU paused screen %ux%u\n", placeholder.width, placeholder.height);
  EXPECT_EQ(placeholder.width, 640u);
  EXPECT_EQ(placeholder.height, 480u);

  // Run: SeaBIOS switches to the 720x400 text mode (a resize on the same connection) and
  // prints its banner and "No bootable device": a frame with more than one colour.
  ASSERT_TRUE(qmp(socket_path_ + ".qmp", {R"({"execute":"cont"})"}));
  const bool text_seen = wait_until(
      [&] {
        auto f = log.last();
        return f && !f->uniform && f->width == 720 && f->height == 400;
      },
      15s);
  ASSERT_TRUE(text_seen) << "frames seen: " << log.size()
                         << ", connects: " << screen->stats().connects;
  EXPECT_EQ(screen->stats().connects, 1u) << "the resize must not cost a reconnect";
  const auto frame = screen->latest();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->width, 720u);
  EXPECT_EQ(frame->height, 400u);
  EXPECT_EQ(frame->stride_bytes, frame->width * 4);
  EXPECT_EQ(frame->pixels.size(), std::size_t{frame->stride_bytes} * frame->height);
  std::printf("[ info     ] QEMU screen %ux%u, %zu frames, %llu updates\n", frame->width,
              frame->height, log.size(),
              static_cast<unsigned long long>(screen->stats().updates_received));

  // The frame written as PNG reads back with the same pixels.
  const std::string png_path = (dir_ / "seabios.png").string();
  auto written = shared::write_png(png_path, frame->pixels.data(), frame->width, frame->height,
                                   frame->stride_bytes, shared::PixelFormat::kBgrx8888);
  ASSERT_TRUE(written) << written.error().to_string();
  auto image = shared::read_png(png_path);
  ASSERT_TRUE(image) << image.error().to_string();
  ASSERT_EQ(image->width, frame->width);
  ASSERT_EQ(image->height, frame->height);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < std::size_t{frame->width} * frame->height; ++i) {
    const uint8_t* in = &frame->pixels[i * 4];
    const uint8_t* out = &image->rgba[i * 4];
    if (out[0] != in[2] || out[1] != in[1] || out[2] != in[0] || out[3] != 255) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0u);

  // "Reboot": a new QEMU on the same socket path.
  const auto frames_before = log.size();
  qemu->kill();
  ASSERT_TRUE(wait_until([&] { return !screen->stats().connected; }, 5s));
  qemu = std::make_unique<Qemu>(binary, socket_path_, qemu_log);
  ASSERT_TRUE(qemu->running());
  ASSERT_TRUE(wait_until([&] { return screen->stats().connects >= 2; }, 10s))
      << "connects: " << screen->stats().connects;
  ASSERT_TRUE(wait_until([&] { return log.size() > frames_before; }, 10s));
  ASSERT_TRUE(wait_until(
      [&] {
        auto f = log.last();
        return f && !f->uniform && f->width == 720 && f->height == 400;
      },
      15s));
  EXPECT_TRUE(screen->stats().connected);

  const auto t0 = Clock::now();
  screen->stop();
  EXPECT_LT(Clock::now() - t0, 300ms);
}

}  // namespace
}  // namespace glassbox::vm_supervisor
