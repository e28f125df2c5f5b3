// Tests of QmpClient against a scripted fake QMP peer (a unix socket server on a thread, in a
// temp dir), of parse_qmp_line on its own, and one test against a real QEMU when installed.
#include "services/vm_supervisor/qmp_client.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "services/vm_supervisor/input_encoding.hpp"

namespace glassbox::vm_supervisor {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}})"
    "\n";

// A fresh directory under the system temp dir, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gb-qmp-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The peer's side of one accepted connection. Blocking socket; every read has a timeout so
// that a broken test cannot hang.
class PeerConnection {
 public:
  explicit PeerConnection(int fd) : fd_(fd) {}

  // Sends all of `bytes`; false when the client went away.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  bool send_json(const json& j) { return send(j.dump() + "\n"); }

  // Reads one line and parses it; nullopt on timeout, close or bad JSON.
  std::optional<json> read_json(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (const auto nl = buf_.find('\n'); nl != std::string::npos) {
        json j = json::parse(buf_.substr(0, nl), nullptr, false);
        buf_.erase(0, nl + 1);
        if (j.is_discarded()) return std::nullopt;
        return j;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  // Reads a command and checks that it is `name`; returns it (null json when none came).
  json expect_command(std::string_view name) {
    auto cmd = read_json();
    EXPECT_TRUE(cmd.has_value()) << "peer got no command, wanted " << name;
    if (!cmd) return json();
    EXPECT_EQ(cmd->value("execute", ""), name) << cmd->dump();
    EXPECT_TRUE(cmd->contains("id")) << cmd->dump();
    return *cmd;
  }

  void reply(const json& cmd, const json& value) {
    send_json({{"return", value}, {"id", cmd.value("id", json())}});
  }

  // Greeting, then qmp_capabilities answered.
  void handshake() {
    send(kGreeting);
    const json cmd = expect_command("qmp_capabilities");
    reply(cmd, json::object());
  }

  // Waits until the client closes the connection (or `timeout`), discarding input.
  void wait_for_close(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (fill(deadline)) buf_.clear();
  }

 private:
  // Reads some bytes into buf_; false on timeout, close or error.
  bool fill(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) != 1) return false;
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_;
  std::string buf_;
};

// A QMP server socket that accepts one connection and runs `script` on it, on its own
// thread. The connection is closed when the script returns.
class FakeQmpPeer {
 public:
  using Script = std::function<void(PeerConnection&)>;

  explicit FakeQmpPeer(Script script, std::chrono::milliseconds listen_delay = 0ms)
      : path_(dir_.file("qmp.sock")) {
    if (listen_delay == 0ms) listen_fd_ = listen_on(path_);
    thread_ = std::thread([this, script = std::move(script), listen_delay] {
      if (listen_delay > 0ms) {
        std::this_thread::sleep_for(listen_delay);
        listen_fd_ = listen_on(path_);
      }
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 10'000) != 1) return;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      PeerConnection conn(fd);
      script(conn);
      ::close(fd);
    });
  }
  ~FakeQmpPeer() {
    thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  const std::string& socket_path() const { return path_; }

 private:
  static int listen_on(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd, 4) != 0) {
      std::abort();
    }
    return fd;
  }

  TempDir dir_;
  std::string path_;
  std::atomic<int> listen_fd_{-1};
  std::thread thread_;
};

QmpClient connect_or_die(const FakeQmpPeer& peer) {
  auto client = QmpClient::connect(peer.socket_path(), 5s);
  if (!client) {
    ADD_FAILURE() << client.error().to_string();
    std::abort();
  }
  return std::move(*client);
}

std::string event_line(std::string_view name, const json& data, std::int64_t seconds = 1700000000,
                       std::int64_t micros = 250000) {
  json ev = {{"event", name}, {"timestamp", {{"seconds", seconds}, {"microseconds", micros}}}};
  if (!data.is_null()) ev["data"] = data;
  return ev.dump() + "\n";
}

// ---------------------------------------------------------------------------------------------
// parse_qmp_line

TEST(ParseQmpLineTest, ClassifiesGreeting) {
  auto msg = parse_qmp_line(kGreeting.substr(0, kGreeting.size() - 1));
  ASSERT_TRUE(msg) << msg.error().to_string();
  EXPECT_EQ(msg->kind, QmpMessageKind::kGreeting);
  EXPECT_EQ((*msg->payload)["version"]["qemu"]["major"], 7);
  EXPECT_FALSE(msg->id);
}

TEST(ParseQmpLineTest, ClassifiesReturnWithId) {
  auto msg = parse_qmp_line(R"({"return": {"status": "running"}, "id": 42})");
  ASSERT_TRUE(msg) << msg.error().to_string();
  EXPECT_EQ(msg->kind, QmpMessageKind::kReturn);
  EXPECT_EQ(msg->id, 42u);
  EXPECT_EQ((*msg->payload)["status"], "running");
}

TEST(ParseQmpLineTest, ReturnWithoutIdOrWithForeignIdHasNoId) {
  auto none = parse_qmp_line(R"({"return": {}})");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->id);
  auto text = parse_qmp_line(R"({"return": {}, "id": "abc"})");
  ASSERT_TRUE(text);
  EXPECT_FALSE(text->id);
  auto negative = parse_qmp_line(R"({"return": {}, "id": -3})");
  ASSERT_TRUE(negative);
  EXPECT_FALSE(negative->id);
}

TEST(ParseQmpLineTest, ClassifiesErrorWithClassAndDesc) {
  auto msg = parse_qmp_line(
      R"({"error": {"class": "CommandNotFound", "desc": "The command foo has not been found"}, "id": 7})");
  ASSERT_TRUE(msg) << msg.error().to_string();
  EXPECT_EQ(msg->kind, QmpMessageKind::kError);
  EXPECT_EQ(msg->id, 7u);
  EXPECT_EQ(msg->error_class, "CommandNotFound");
  EXPECT_EQ(msg->error_desc, "The command foo has not been found");
}

TEST(ParseQmpLineTest, ClassifiesEventWithDataAndTimestamp) {
  auto msg = parse_qmp_line(
      R"({"timestamp": {"seconds": 1795455984, "microseconds": 109313}, "event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"}})");
  ASSERT_TRUE(msg) << msg.error().to_string();
  EXPECT_EQ(msg->kind, QmpMessageKind::kEvent);
  EXPECT_EQ(msg->event_name, "SHUTDOWN");
  EXPECT_DOUBLE_EQ(msg->timestamp_s, 1795455984.109313);
  EXPECT_EQ((*msg->payload)["reason"], "host-qmp-quit");
}

TEST(ParseQmpLineTest, EventWithoutDataHasEmptyObject) {
  auto msg = parse_qmp_line(R"({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}})");
  ASSERT_TRUE(msg) << msg.error().to_string();
  ASSERT_TRUE(msg->payload);
  EXPECT_TRUE(msg->payload->is_object());
  EXPECT_TRUE(msg->payload->empty());
}

TEST(ParseQmpLineTest, AcceptsTrailingCarriageReturn) {
  auto msg = parse_qmp_line("{\"return\": {}, \"id\": 1}\r");
  ASSERT_TRUE(msg) << msg.error().to_string();
  EXPECT_EQ(msg->kind, QmpMessageKind::kReturn);
}

TEST(ParseQmpLineTest, RejectsNonJsonAndQuotesAnEscapedExcerpt) {
  auto msg = parse_qmp_line("this is \x01 not json");
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, Errc::kProtocol);
  EXPECT_NE(msg.error().message.find("not valid JSON"), std::string::npos);
  EXPECT_NE(msg.error().message.find("this is \\x01 not json"), std::string::npos)
      << msg.error().message;
}

TEST(ParseQmpLineTest, TruncatesLongExcerpts) {
  const std::string garbage(10000, 'z');
  auto msg = parse_qmp_line(garbage);
  ASSERT_FALSE(msg);
  EXPECT_LT(msg.error().message.size(), 300u);
  EXPECT_NE(msg.error().message.find("10000 bytes"), std::string::npos) << msg.error().message;
}

TEST(ParseQmpLineTest, RejectsTrailingGarbageAfterTheObject) {
  auto msg = parse_qmp_line(R"({"return": {}} {"return": {}})");
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, Errc::kProtocol);
}

TEST(ParseQmpLineTest, RejectsNonObjectNamingItsType) {
  auto msg = parse_qmp_line("[1, 2, 3]");
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, Errc::kProtocol);
  EXPECT_NE(msg.error().message.find("array"), std::string::npos) << msg.error().message;
}

TEST(ParseQmpLineTest, RejectsObjectOfUnknownKind) {
  auto msg = parse_qmp_line(R"({"hello": 1})");
  ASSERT_FALSE(msg);
  EXPECT_NE(msg.error().message.find("none of the keys"), std::string::npos);
}

TEST(ParseQmpLineTest, RejectsObjectOfTwoKinds) {
  auto msg = parse_qmp_line(R"({"return": {}, "event": "STOP"})");
  ASSERT_FALSE(msg);
  EXPECT_NE(msg.error().message.find("more than one"), std::string::npos);
}

TEST(ParseQmpLineTest, RejectsMalformedMembers) {
  for (const char* line : {
           R"({"error": {"desc": "no class"}, "id": 1})",
           R"({"error": "flat", "id": 1})",
           R"({"event": 5})",
           R"({"event": "X", "data": [1]})",
           R"({"event": "X", "timestamp": {"seconds": "now"}})",
           R"({"QMP": 1})",
       }) {
    auto msg = parse_qmp_line(line);
    EXPECT_FALSE(msg) << line;
    if (!msg) {
      EXPECT_EQ(msg.error().code, Errc::kProtocol) << line;
    }
  }
}

TEST(ParseQmpLineTest, RejectsInvalidUtf8) {
  auto msg = parse_qmp_line("{\"event\": \"A\xff\"}");
  ASSERT_FALSE(msg);
  EXPECT_EQ(msg.error().code, Errc::kProtocol);
}

std::string nested_event(int depth) {
  return R"({"event": "DEEP", "data": {"x": )" + std::string(depth, '[') + std::string(depth, ']') +
         "}}";
}

TEST(ParseQmpLineTest, RejectsNestingDeeperThanTheLimit) {
  auto msg = parse_qmp_line(nested_event(kMaxQmpJsonDepth));  // + 2 levels of objects
  ASSERT_FALSE(msg);
  EXPECT_NE(msg.error().message.find("deeper"), std::string::npos) << msg.error().message;
  auto huge = parse_qmp_line(nested_event(1'000'000));
  ASSERT_FALSE(huge);
}

TEST(ParseQmpLineTest, AcceptsNestingAtTheLimitAndIgnoresBracketsInStrings) {
  auto msg = parse_qmp_line(nested_event(kMaxQmpJsonDepth - 2));
  EXPECT_TRUE(msg) << msg.error().to_string();
  auto strings =
      parse_qmp_line(R"({"event": "S", "data": {"s": ")" + std::string(500, '[') + R"(\"[["}})");
  EXPECT_TRUE(strings) << strings.error().to_string();
}

TEST(ParseQmpLineTest, RejectsLineOverTheLengthLimit) {
  std::string line = R"({"event": "BIG", "data": {"s": ")";
  line.append(kMaxQmpLineBytes, 'a');
  line += "\"}}";
  auto msg = parse_qmp_line(line);
  ASSERT_FALSE(msg);
  EXPECT_NE(msg.error().message.find("exceeds"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// QmpClient against the fake peer

TEST(QmpClientTest, ConnectsAndKeepsTheVersionFromTheGreeting) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.wait_for_close();
  });
  auto client = QmpClient::connect(peer.socket_path(), 5s);
  ASSERT_TRUE(client) << client.error().to_string();
  EXPECT_EQ(client->qemu_version().major, 7);
  EXPECT_EQ(client->qemu_version().minor, 2);
  EXPECT_EQ(client->qemu_version().micro, 22);
  EXPECT_EQ(client->qemu_version().package, "Debian 1:7.2+dfsg-7+deb12u18+b3");
  EXPECT_GE(client->fd(), 0);
  EXPECT_TRUE(client->usable());
}

TEST(QmpClientTest, ExecuteSendsArgumentsAndReturnsTheReplyValue) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json plain = c.expect_command("query-status");
    EXPECT_FALSE(plain.contains("arguments")) << plain.dump();
    c.reply(plain, {{"status", "running"}, {"running", true}});
    const json with_args = c.expect_command("screendump");
    EXPECT_EQ(with_args["arguments"], json({{"filename", "/tmp/x.png"}, {"format", "png"}}));
    EXPECT_NE(with_args["id"], plain["id"]);
    c.reply(with_args, json::object());
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto status = client.execute("query-status");
  ASSERT_TRUE(status) << status.error().to_string();
  EXPECT_EQ((*status)["status"], "running");
  auto dump = client.execute("screendump", {{"filename", "/tmp/x.png"}, {"format", "png"}});
  ASSERT_TRUE(dump) << dump.error().to_string();
  EXPECT_EQ(*dump, json::object());
}

TEST(QmpClientTest, QueuesEventsThatArriveBeforeTheReply) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json cmd = c.expect_command("stop");
    c.send(event_line("STOP", nullptr));
    c.send(event_line("BLOCK_IO_ERROR", {{"device", "d0"}}, 1700000001, 5));
    c.reply(cmd, json::object());
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto r = client.execute("stop");
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE(client.has_events());
  auto events = client.take_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].name, "STOP");
  EXPECT_TRUE(events[0].data->empty());
  EXPECT_DOUBLE_EQ(events[0].timestamp_s, 1700000000.25);
  EXPECT_EQ(events[1].name, "BLOCK_IO_ERROR");
  EXPECT_EQ((*events[1].data)["device"], "d0");
  EXPECT_DOUBLE_EQ(events[1].timestamp_s, 1700000001.000005);
  EXPECT_FALSE(client.has_events());
  EXPECT_TRUE(client.take_events().empty());
}

TEST(QmpClientTest, QueuesEventsThatArriveInTheSameReadAfterTheReply) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json cmd = c.expect_command("cont");
    c.send(json({{"return", json::object()}, {"id", cmd["id"]}}).dump() + "\n" +
           event_line("RESUME", nullptr));
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  ASSERT_TRUE(client.execute("cont"));
  // Both lines usually arrive in one read; if not, the event is on the socket.
  for (int i = 0; i < 100 && !client.has_events(); ++i) {
    pollfd p{client.fd(), POLLIN, 0};
    ::poll(&p, 1, 50);
    ASSERT_TRUE(client.read_available());
  }
  auto events = client.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].name, "RESUME");
}

TEST(QmpClientTest, ReassemblesMessagesSplitAcrossWrites) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json cmd = c.expect_command("query-name");
    const std::string bytes = event_line("RESET", {{"guest", true}}) +
                              json({{"return", {{"name", "vm1"}}}, {"id", cmd["id"]}}).dump() +
                              "\n";
    for (std::size_t i = 0; i < bytes.size(); i += 7) {
      c.send(std::string_view(bytes).substr(i, 7));
      std::this_thread::sleep_for(1ms);
    }
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto r = client.execute("query-name");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ((*r)["name"], "vm1");
  auto events = client.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].name, "RESET");
}

TEST(QmpClientTest, ReturnsProtocolErrorWithClassAndDescAndStaysUsable) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json bad = c.expect_command("no-such-command");
    c.send_json({{"error",
                  {{"class", "CommandNotFound"},
                   {"desc", "The command no-such-command has not been found"}}},
                 {"id", bad["id"]}});
    const json good = c.expect_command("query-status");
    c.reply(good, {{"status", "paused"}});
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto r = client.execute("no-such-command");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kProtocol);
  EXPECT_NE(r.error().message.find("CommandNotFound"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("has not been found"), std::string::npos);
  EXPECT_NE(r.error().message.find("no-such-command"), std::string::npos);
  EXPECT_TRUE(client.usable());
  auto ok = client.execute("query-status");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ((*ok)["status"], "paused");
}

TEST(QmpClientTest, ReturnsProtocolErrorOnGarbageLineAndIsUnusableAfterwards) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.expect_command("query-status");
    c.send("this is not json\n");
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto r = client.execute("query-status");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kProtocol);
  EXPECT_NE(r.error().message.find("this is not json"), std::string::npos) << r.error().message;
  EXPECT_FALSE(client.usable());
  auto again = client.execute("query-status");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kUnavailable);
  EXPECT_NE(again.error().message.find("not valid JSON"), std::string::npos);
  EXPECT_EQ(client.read_available().error().code, Errc::kUnavailable);
}

TEST(QmpClientTest, ReturnsProtocolErrorOnNonObjectLine) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.expect_command("query-status");
    c.send("[\"return\", {}]\n");
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto r = client.execute("query-status");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kProtocol);
  EXPECT_NE(r.error().message.find("not an object"), std::string::npos) << r.error().message;
}

TEST(QmpClientTest, ReturnsProtocolErrorOnOverlongLineWithoutBufferingForever) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.expect_command("query-status");
    c.send(R"({"event": "X", "data": {"s": ")");
    const std::string chunk(1 << 20, 'a');
    // 17 MiB without a newline; stops early once the client hangs up.
    for (int i = 0; i < 17; ++i) {
      if (!c.send(chunk)) break;
    }
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  const auto start = Clock::now();
  auto r = client.execute("query-status", 20s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kProtocol);
  EXPECT_NE(r.error().message.find("without a newline"), std::string::npos) << r.error().message;
  EXPECT_LT(Clock::now() - start, 15s);
}

TEST(QmpClientTest, TimesOutWhenPeerIsSilent) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.expect_command("query-status");
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  const auto start = Clock::now();
  auto r = client.execute("query-status", 200ms);
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kTimeout);
  EXPECT_NE(r.error().message.find("query-status"), std::string::npos) << r.error().message;
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(client.usable());
}

TEST(QmpClientTest, DiscardsTheLateReplyToATimedOutCommand) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json slow = c.expect_command("slow");
    const json next = c.expect_command("next");  // sent once "slow" has timed out
    c.reply(slow, "stale");
    c.reply(next, "fresh");
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto slow = client.execute("slow", 100ms);
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code, Errc::kTimeout);
  auto next = client.execute("next");
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(*next, "fresh");
}

TEST(QmpClientTest, ReturnsProtocolErrorOnReplyWithAnIdWeNeverSent) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.expect_command("query-status");
    c.send(R"({"return": {}, "id": 999})"
           "\n");
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto r = client.execute("query-status");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kProtocol);
  EXPECT_NE(r.error().message.find("999"), std::string::npos) << r.error().message;
}

TEST(QmpClientTest, ReturnsUnavailableWhenPeerClosesBeforeTheReply) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.expect_command("query-status");
  });
  QmpClient client = connect_or_die(peer);
  auto r = client.execute("query-status");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  EXPECT_FALSE(client.usable());
  auto again = client.execute("query-status");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kUnavailable);
}

TEST(QmpClientTest, RejectsNonObjectArgumentsWithoutSending) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json cmd = c.expect_command("query-status");  // the bad call sent nothing
    c.reply(cmd, {{"status", "running"}});
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto bad = client.execute("cont", json::array({1, 2}));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kInvalidArgument);
  EXPECT_TRUE(client.execute("query-status"));
}

TEST(QmpClientTest, HumanMonitorCommandReturnsItsText) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json cmd = c.expect_command("human-monitor-command");
    EXPECT_EQ(cmd["arguments"]["command-line"], "info status");
    c.reply(cmd, "VM status: running\r\n");
    const json second = c.expect_command("human-monitor-command");
    c.reply(second, 5);
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  auto text = client.human_monitor_command("info status");
  ASSERT_TRUE(text) << text.error().to_string();
  EXPECT_EQ(*text, "VM status: running\r\n");
  auto not_text = client.human_monitor_command("info status");
  ASSERT_FALSE(not_text);
  EXPECT_EQ(not_text.error().code, Errc::kProtocol);
}

TEST(QmpClientTest, ReadAvailableQueuesEventsWithoutBlocking) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json go = c.expect_command("go");
    c.reply(go, json::object());
    std::this_thread::sleep_for(20ms);
    c.send(event_line("POWERDOWN", nullptr));
    c.send(event_line("SHUTDOWN", {{"guest", true}, {"reason", "guest-shutdown"}}));
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  const auto start = Clock::now();
  ASSERT_TRUE(client.read_available());  // nothing there yet: returns at once
  EXPECT_LT(Clock::now() - start, 100ms);
  EXPECT_FALSE(client.has_events());
  ASSERT_TRUE(client.execute("go"));

  std::vector<QmpEvent> events;
  const auto deadline = Clock::now() + 5s;
  while (events.size() < 2 && Clock::now() < deadline) {
    pollfd p{client.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    ASSERT_TRUE(client.read_available());
    for (auto& e : client.take_events()) events.push_back(std::move(e));
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].name, "POWERDOWN");
  EXPECT_EQ(events[1].name, "SHUTDOWN");
  EXPECT_EQ((*events[1].data)["reason"], "guest-shutdown");
}

TEST(QmpClientTest, ReadAvailableReportsCloseAfterQueueingTheLastEvents) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    c.send(event_line("SHUTDOWN", {{"guest", false}}));
  });
  QmpClient client = connect_or_die(peer);
  Result<void> r;
  const auto deadline = Clock::now() + 5s;
  while (r && Clock::now() < deadline) {
    pollfd p{client.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    r = client.read_available();
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  auto events = client.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].name, "SHUTDOWN");
}

TEST(QmpClientTest, DropsOldestEventsBeyondTheQueueBound) {
  constexpr std::size_t kExtra = 10;
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json cmd = c.expect_command("flood");
    std::string bytes;
    for (std::size_t i = 0; i < kMaxQueuedQmpEvents + kExtra; ++i) {
      bytes += event_line("E", {{"i", i}});
    }
    c.send(bytes);
    c.reply(cmd, json::object());
    c.wait_for_close();
  });
  QmpClient client = connect_or_die(peer);
  ASSERT_TRUE(client.execute("flood"));
  auto events = client.take_events();
  ASSERT_EQ(events.size(), kMaxQueuedQmpEvents);
  EXPECT_EQ((*events.front().data)["i"], kExtra);
  EXPECT_EQ(client.dropped_events(), kExtra);
}

TEST(QmpClientTest, ConnectRetriesUntilTheSocketAppears) {
  FakeQmpPeer peer(
      [](PeerConnection& c) {
        c.handshake();
        c.wait_for_close();
      },
      300ms);
  auto client = QmpClient::connect(peer.socket_path(), 5s);
  ASSERT_TRUE(client) << client.error().to_string();
}

TEST(QmpClientTest, ConnectFailsUnavailableWhenNoOneListens) {
  TempDir dir;
  const auto start = Clock::now();
  auto client = QmpClient::connect(dir.file("absent.sock"), 150ms);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, Errc::kUnavailable);
  EXPECT_GE(Clock::now() - start, 150ms);
  EXPECT_NE(client.error().message.find("absent.sock"), std::string::npos);
}

TEST(QmpClientTest, ConnectRejectsAnOverlongSocketPath) {
  auto client = QmpClient::connect("/tmp/" + std::string(200, 'x'), 100ms);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, Errc::kInvalidArgument);
}

TEST(QmpClientTest, ConnectTimesOutWithoutAGreeting) {
  FakeQmpPeer peer([](PeerConnection& c) { c.wait_for_close(); });
  auto client = QmpClient::connect(peer.socket_path(), 200ms);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, Errc::kTimeout);
  EXPECT_NE(client.error().message.find("greeting"), std::string::npos);
}

TEST(QmpClientTest, ConnectRejectsAPeerThatSkipsTheGreeting) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.send(R"({"return": {}})"
           "\n");
    c.wait_for_close();
  });
  auto client = QmpClient::connect(peer.socket_path(), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, Errc::kProtocol);
  EXPECT_NE(client.error().message.find("instead of the greeting"), std::string::npos);
}

TEST(QmpClientTest, ConnectRejectsAGreetingWithoutVersion) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.send(R"({"QMP": {"capabilities": []}})"
           "\n");
    c.wait_for_close();
  });
  auto client = QmpClient::connect(peer.socket_path(), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, Errc::kProtocol);
  EXPECT_NE(client.error().message.find("version"), std::string::npos);
}

TEST(QmpClientTest, ConnectFailsWhenCapabilitiesAreRefused) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.send(kGreeting);
    const json cmd = c.expect_command("qmp_capabilities");
    c.send_json({{"error", {{"class", "GenericError"}, {"desc", "nope"}}}, {"id", cmd["id"]}});
    c.wait_for_close();
  });
  auto client = QmpClient::connect(peer.socket_path(), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, Errc::kProtocol);
  EXPECT_NE(client.error().message.find("qmp_capabilities"), std::string::npos);
}

TEST(QmpClientTest, ConnectReportsAPeerThatClosesEarly) {
  FakeQmpPeer peer([](PeerConnection& c) { c.send(kGreeting); });
  auto client = QmpClient::connect(peer.socket_path(), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, Errc::kUnavailable);
}

TEST(QmpClientTest, MovedClientKeepsTheSession) {
  FakeQmpPeer peer([](PeerConnection& c) {
    c.handshake();
    const json cmd = c.expect_command("query-status");
    c.reply(cmd, {{"status", "running"}});
    c.wait_for_close();
  });
  QmpClient first = connect_or_die(peer);
  QmpClient second = std::move(first);
  EXPECT_EQ(first.fd(), -1);  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_FALSE(first.execute("query-status"));
  EXPECT_TRUE(second.execute("query-status"));
}

// ---------------------------------------------------------------------------------------------
// Real QEMU

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const std::size_t colon = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = dirs.substr(start, colon - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  return "";
}

// Kills and reaps the child at scope exit unless it exited by itself.
struct ChildGuard {
  pid_t pid = -1;
  ~ChildGuard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  // Waits up to `timeout` for the child to exit; true when it did.
  bool wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
};

TEST(QmpClientTest, TalksToARealQemuAndSeesShutdownOnQuit) {
  const std::string qemu = find_in_path("qemu-system-x86_64");
  if (qemu.empty()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
  TempDir dir;
  const std::string sock = dir.file("qmp.sock");
  const std::string qmp_arg = "unix:" + sock + ",server=on,wait=off";
  std::vector<std::string> args = {qemu,   "-machine", "none",  "-nodefaults", "-display",
                                   "none", "-qmp",     qmp_arg, "-S"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ChildGuard child;
  ASSERT_EQ(::posix_spawn(&child.pid, qemu.c_str(), nullptr, nullptr, argv.data(), environ), 0);

  auto client = QmpClient::connect(sock, 20s);
  ASSERT_TRUE(client) << client.error().to_string();
  EXPECT_GE(client->qemu_version().major, 2);

  auto status = client->execute("query-status");
  ASSERT_TRUE(status) << status.error().to_string();
  ASSERT_TRUE((*status)["status"].is_string());
  EXPECT_TRUE((*status)["running"].is_boolean());

  auto version = client->execute("query-version");
  ASSERT_TRUE(version) << version.error().to_string();
  EXPECT_EQ((*version)["qemu"]["major"], client->qemu_version().major);
  EXPECT_EQ((*version)["qemu"]["minor"], client->qemu_version().minor);

  // Our qcode list must be exactly QEMU's QKeyCode enum (minus "unmapped").
  auto schema = client->execute("query-qmp-schema", 20s);
  ASSERT_TRUE(schema) << schema.error().to_string();
  std::vector<std::string> qemu_qcodes;
  for (const auto& entry : *schema) {
    if (entry.value("meta-type", "") != "enum" || !entry.contains("values")) continue;
    const auto& values = entry["values"];
    if (std::find(values.begin(), values.end(), "ctrl_r") == values.end()) continue;
    for (const auto& v : values) {
      if (v != "unmapped") qemu_qcodes.push_back(v.get<std::string>());
    }
  }
  if (client->qemu_version().major == 7 && client->qemu_version().minor == 2) {
    const auto ours = valid_qcodes();
    EXPECT_EQ(qemu_qcodes, std::vector<std::string>(ours.begin(), ours.end()));
  }

  auto hmp = client->human_monitor_command("info status");
  ASSERT_TRUE(hmp) << hmp.error().to_string();
  EXPECT_NE(hmp->find("VM status"), std::string::npos) << *hmp;

  // QEMU 7.2 sends SHUTDOWN, then the reply, then closes; the reply may be lost to the close.
  auto quit = client->execute("quit");
  if (!quit) {
    EXPECT_EQ(quit.error().code, Errc::kUnavailable) << quit.error().to_string();
  }
  std::vector<QmpEvent> events = client->take_events();
  const auto deadline = Clock::now() + 10s;
  Result<void> r;
  while (r && Clock::now() < deadline &&
         std::none_of(events.begin(), events.end(),
                      [](const QmpEvent& e) { return e.name == "SHUTDOWN"; })) {
    pollfd p{client->fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    r = client->read_available();
    for (auto& e : client->take_events()) events.push_back(std::move(e));
  }
  const auto shutdown = std::find_if(events.begin(), events.end(),
                                     [](const QmpEvent& e) { return e.name == "SHUTDOWN"; });
  ASSERT_NE(shutdown, events.end());
  EXPECT_EQ((*shutdown->data)["reason"], "host-qmp-quit");
  EXPECT_GT(shutdown->timestamp_s, 1e9);
  EXPECT_TRUE(child.wait_exit(10s));
}

}  // namespace
}  // namespace glassbox::vm_supervisor
