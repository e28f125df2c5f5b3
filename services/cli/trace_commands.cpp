// `glassbox hot|loops|trace stats`: where the guest spends its time, asked of
// glassbox-pattern-miner (hot blocks, loops) and glassbox-trace-consumer (rates, drops).
#include <fmt/core.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "miner_generated.h"
#include "services/cli/client.hpp"
#include "services/cli/commands.hpp"
#include "shared/bus.hpp"

namespace glassbox::cli {
namespace {

namespace fb = glassbox::schema;

int report_error(const Error& e) {
  std::cerr << "glassbox: " << e.message << "\n";
  return 1;
}

std::string hex(uint64_t v) { return fmt::format("0x{:x}", v); }

Result<shared::Bytes> ask_miner(const shared::StatePaths& paths, bool loops, uint32_t top_n) {
  flatbuffers::FlatBufferBuilder fbb(128);
  flatbuffers::Offset<void> cmd = loops ? fb::miner::CreateGetLoops(fbb, top_n).Union()
                                        : fb::miner::CreateGetHot(fbb, top_n).Union();
  fb::miner::FinishMinerRequestBuffer(
      fbb,
      fb::miner::CreateMinerRequest(
          fbb, loops ? fb::miner::MinerCommand::GetLoops : fb::miner::MinerCommand::GetHot, cmd));
  auto bytes =
      shared::request(paths.service_endpoint("pattern-miner"),
                      {fbb.GetBufferPointer(), fbb.GetSize()}, std::chrono::milliseconds(30000));
  if (!bytes && bytes.error().code == Errc::kUnavailable) {
    return fail(Errc::kUnavailable, "pattern-miner is not running at " + paths.dir() +
                                        " (add it to [up] services and set [trace] mode)");
  }
  if (!bytes) return tl::unexpected(bytes.error());
  flatbuffers::Verifier v(bytes->data(), bytes->size());
  if (bytes->size() < 8 || !v.VerifyBuffer<fb::miner::MinerReply>(nullptr)) {
    return fail(Errc::kProtocol, "pattern-miner reply failed FlatBuffers verification");
  }
  const auto* r = flatbuffers::GetRoot<fb::miner::MinerReply>(bytes->data());
  if (const auto* e = r->error()) {
    return fail(static_cast<Errc>(e->code()),
                "pattern-miner: " + (e->message() ? e->message()->str() : std::string("error")));
  }
  return bytes;
}

}  // namespace

int cmd_trace(const Invocation& inv) {
  shared::StatePaths paths(inv.state_dir);
  if (inv.command == "trace") {  // trace stats
    nlohmann::json out = nlohmann::json::object();
    for (const char* svc : {"trace-consumer", "pattern-miner"}) {
      auto q = query_service_status(paths, svc, std::chrono::milliseconds(3000));
      if (!q) {
        out[svc] = {{"error", q.error().message}};
        continue;
      }
      for (auto& [section, value] : q->summary.items()) out[section] = value;
    }
    if (inv.json) {
      std::cout << out.dump(2) << "\n";
      return 0;
    }
    if (out.contains("trace") && out["trace"].is_object()) {
      const auto& t = out["trace"];
      std::cout << fmt::format(
          "trace: mode {}  events/s {:.0f}  drops {}  TBs translated {}  generation {}\n",
          t.value("mode", "?"), t.value("events_per_s", 0.0), t.value("drops", 0),
          t.value("tbs_translated", 0), t.value("generation", "?"));
    } else if (out.contains("trace-consumer")) {
      std::cout << "trace-consumer: " << out["trace-consumer"]["error"].get<std::string>() << "\n";
    }
    if (out.contains("miner") && out["miner"].is_object()) {
      const auto& m = out["miner"];
      std::cout << fmt::format("miner: blocks {}  executions {}  batches {}  lost batches {}\n",
                               m.value("blocks", 0), m.value("total_executions", 0),
                               m.value("batches", 0), m.value("batches_lost", 0));
    } else if (out.contains("pattern-miner")) {
      std::cout << "pattern-miner: " << out["pattern-miner"]["error"].get<std::string>() << "\n";
    }
    return 0;
  }
  const bool loops = inv.command == "loops";
  auto bytes = ask_miner(paths, loops, static_cast<uint32_t>(inv.top_n));
  if (!bytes) return report_error(bytes.error());
  const auto* r = flatbuffers::GetRoot<fb::miner::MinerReply>(bytes->data());
  auto str = [](const flatbuffers::String* s) { return s ? s->str() : std::string(); };
  if (loops) {
    nlohmann::json arr = nlohmann::json::array();
    if (r->loops()) {
      for (const auto* l : *r->loops()) {
        nlohmann::json blocks = nlohmann::json::array();
        if (l->blocks()) {
          for (uint64_t b : *l->blocks()) blocks.push_back(hex(b));
        }
        arr.push_back({{"head", hex(l->head())},
                       {"blocks", blocks},
                       {"count", l->count()},
                       {"iterations", l->iterations()},
                       {"symbol", str(l->symbol()).empty() ? nlohmann::json(nullptr)
                                                           : nlohmann::json(str(l->symbol()))}});
      }
    }
    if (inv.json) {
      std::cout << nlohmann::json{{"loops", arr}}.dump(2) << "\n";
    } else {
      std::cout << fmt::format("{:>18} {:>14} {:>14} {:>6}  {}\n", "HEAD", "COUNT", "ITERATIONS",
                               "BLOCKS", "SYMBOL");
      for (const auto& l : arr) {
        std::cout << fmt::format("{:>18} {:>14} {:>14} {:>6}  {}\n", l["head"].get<std::string>(),
                                 l["count"].get<uint64_t>(), l["iterations"].get<uint64_t>(),
                                 l["blocks"].size(),
                                 l["symbol"].is_null() ? "" : l["symbol"].get<std::string>());
      }
    }
    return 0;
  }
  nlohmann::json arr = nlohmann::json::array();
  if (r->blocks()) {
    for (const auto* b : *r->blocks()) {
      nlohmann::json procs = nlohmann::json::array();
      if (b->processes()) {
        for (const auto* p : *b->processes()) procs.push_back(p ? p->str() : "");
      }
      std::string code;
      if (b->bytes()) {
        for (uint8_t x : *b->bytes()) code += fmt::format("{:02x}", x);
      }
      arr.push_back({{"pc", hex(b->pc())},
                     {"processes", procs},
                     {"bytes", code},
                     {"gpa", b->gpa() ? nlohmann::json(hex(b->gpa())) : nlohmann::json(nullptr)},
                     {"count", b->count()},
                     {"count_error", b->count_error()},
                     {"n_insns", b->n_insns()},
                     {"size", b->size_bytes()},
                     {"kernel", b->kernel()},
                     {"symbol", str(b->symbol()).empty() ? nlohmann::json(nullptr)
                                                         : nlohmann::json(str(b->symbol()))}});
    }
  }
  if (inv.json) {
    std::cout << nlohmann::json{{"blocks", arr}, {"total_executions", r->total_executions()}}.dump(
                     2)
              << "\n";
  } else {
    const double total = static_cast<double>(std::max<uint64_t>(1, r->total_executions()));
    std::cout << fmt::format("{:>18} {:>12} {:>14} {:>6} {:>6}  {}\n", "PC", "GPA", "COUNT", "%",
                             "INSNS", "SYMBOL / PROCESS");
    for (const auto& b : arr) {
      std::cout << fmt::format(
          "{:>18} {:>12} {:>14} {:>6.2f} {:>6}  {}\n", b["pc"].get<std::string>(),
          b["gpa"].is_null() ? "-" : b["gpa"].get<std::string>(), b["count"].get<uint64_t>(),
          100.0 * static_cast<double>(b["count"].get<uint64_t>()) / total,
          b["n_insns"].get<uint32_t>(),
          b["symbol"].is_null() ? "" : b["symbol"].get<std::string>());
    }
  }
  return 0;
}

}  // namespace glassbox::cli
