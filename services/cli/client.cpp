#include "services/cli/client.hpp"

#include "compositor_generated.h"
#include "miner_generated.h"
#include "orchestrator_generated.h"
#include "ram_generated.h"
#include "semantic_generated.h"
#include "shared/bus.hpp"
#include "synth_generated.h"
#include "trace_generated.h"

namespace glassbox::cli {
namespace {

namespace fb = glassbox::schema;
using std::chrono::milliseconds;

template <typename T>
Result<const T*> verify_reply(const shared::Bytes& b, const char* what) {
  flatbuffers::Verifier v(b.data(), b.size());
  if (b.size() < 8 || !v.VerifyBuffer<T>(nullptr)) {
    return fail(Errc::kProtocol, std::string(what) + " reply failed FlatBuffers verification");
  }
  return flatbuffers::GetRoot<T>(b.data());
}

Error reply_error(const fb::common::Error& e) {
  return Error{static_cast<Errc>(e.code()), e.message() ? e.message()->str() : "unknown error"};
}

Error no_instance(const shared::StatePaths& paths, const Error& e) {
  if (e.code == Errc::kUnavailable) {
    return Error{Errc::kUnavailable, "no glassbox instance is running at " + paths.dir() +
                                         " (start one with `glassbox up`)"};
  }
  return e;
}

nlohmann::json vm_status_json(const fb::vm::VmStatus* s) {
  if (s == nullptr) return nlohmann::json::object();
  auto str = [](const flatbuffers::String* p) { return p ? p->str() : std::string(); };
  std::string state = fb::vm::EnumNameVmState(s->state());
  for (auto& ch : state) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return {{"state", state},
          {"ready", s->ready()},
          {"accel", s->accel() == fb::vm::Accel::Kvm ? "kvm" : "tcg"},
          {"accel_reason", str(s->accel_reason())},
          {"qemu_pid", s->qemu_pid()},
          {"boot_to_ready_s", s->boot_to_ready_s()},
          {"boots", s->boots()},
          {"restarts", s->vm_restarts()},
          {"screen_width", s->screen_width()},
          {"screen_height", s->screen_height()},
          {"frames_published", s->frames_published()},
          {"serial_lines", s->serial_lines()},
          {"ram_path", str(s->ram_path())},
          {"ram_size_bytes", s->ram_size_bytes()},
          {"qmp_socket", str(s->qmp_socket())},
          {"vnc_socket", str(s->vnc_socket())},
          {"serial_log", str(s->serial_log())}};
}

}  // namespace

Result<nlohmann::json> vm_request(const shared::StatePaths& paths,
                                  const std::function<void(flatbuffers::FlatBufferBuilder&)>& build,
                                  milliseconds timeout) {
  flatbuffers::FlatBufferBuilder fbb(256);
  build(fbb);
  auto bytes = shared::request(paths.service_endpoint("vm-supervisor"),
                               {fbb.GetBufferPointer(), fbb.GetSize()}, timeout);
  if (!bytes) {
    if (bytes.error().code == Errc::kUnavailable) {
      return fail(Errc::kUnavailable, "vm-supervisor is not running at " + paths.dir() +
                                          " (start the instance with `glassbox up`)");
    }
    return tl::unexpected(bytes.error());
  }
  auto reply = verify_reply<fb::vm::VmReply>(*bytes, "vm-supervisor");
  if (!reply) return tl::unexpected(reply.error());
  if ((*reply)->error() != nullptr) return tl::unexpected(reply_error(*(*reply)->error()));
  return vm_status_json((*reply)->status());
}

// A service whose reply carries `service` (a ServiceStatus) for a GetStatus request.
template <typename Reply>
static Result<ServiceQuery> status_reply(const shared::StatePaths& paths, const std::string& name,
                                         flatbuffers::FlatBufferBuilder& request,
                                         milliseconds timeout) {
  auto bytes = shared::request(paths.service_endpoint(name),
                               {request.GetBufferPointer(), request.GetSize()}, timeout);
  if (!bytes) return tl::unexpected(bytes.error());
  auto reply = verify_reply<Reply>(*bytes, name.c_str());
  if (!reply) return tl::unexpected(reply.error());
  if ((*reply)->error() != nullptr) return tl::unexpected(reply_error(*(*reply)->error()));
  if ((*reply)->service() == nullptr) {
    return fail(Errc::kProtocol, name + " status reply has no service status");
  }
  ServiceQuery q;
  q.service = shared::read_service_status(*(*reply)->service());
  auto summary = nlohmann::json::parse(q.service.summary_json, nullptr, false);
  q.summary = summary.is_object() ? summary : nlohmann::json::object();
  return q;
}

Result<ServiceQuery> query_service_status(const shared::StatePaths& paths, const std::string& name,
                                          milliseconds timeout) {
  if (name == "trace-consumer") {
    flatbuffers::FlatBufferBuilder fbb(128);
    auto get = fb::common::CreateGetStatus(fbb);
    fb::trace::FinishTraceRequestBuffer(
        fbb,
        fb::trace::CreateTraceRequest(fbb, fb::trace::TraceCommand::common_GetStatus, get.Union()));
    return status_reply<fb::trace::TraceReply>(paths, name, fbb, timeout);
  }
  if (name == "pattern-miner") {
    flatbuffers::FlatBufferBuilder fbb(128);
    auto get = fb::common::CreateGetStatus(fbb);
    fb::miner::FinishMinerRequestBuffer(
        fbb,
        fb::miner::CreateMinerRequest(fbb, fb::miner::MinerCommand::common_GetStatus, get.Union()));
    return status_reply<fb::miner::MinerReply>(paths, name, fbb, timeout);
  }
  if (name == "smt-synthesizer") {
    flatbuffers::FlatBufferBuilder fbb(128);
    auto get = fb::common::CreateGetStatus(fbb);
    fb::synth::FinishSynthRequestBuffer(
        fbb,
        fb::synth::CreateSynthRequest(fbb, fb::synth::SynthCommand::common_GetStatus, get.Union()));
    return status_reply<fb::synth::SynthReply>(paths, name, fbb, timeout);
  }
  if (name == "compositor") {
    flatbuffers::FlatBufferBuilder fbb(128);
    auto get = fb::common::CreateGetStatus(fbb);
    fb::compositor::FinishCompositorRequestBuffer(
        fbb, fb::compositor::CreateCompositorRequest(fbb, fb::compositor::Command::common_GetStatus,
                                                     get.Union()));
    return status_reply<fb::compositor::CompositorReply>(paths, name, fbb, timeout);
  }
  if (name == "ram-snapshotter") {
    flatbuffers::FlatBufferBuilder fbb(128);
    auto get = fb::common::CreateGetStatus(fbb);
    fb::ram::FinishRamRequestBuffer(
        fbb, fb::ram::CreateRamRequest(fbb, fb::ram::Command::common_GetStatus, get.Union()));
    return status_reply<fb::ram::RamReply>(paths, name, fbb, timeout);
  }
  if (name == "semantic-db") {
    flatbuffers::FlatBufferBuilder fbb(128);
    auto get = fb::common::CreateGetStatus(fbb);
    fb::semantic::FinishSemanticRequestBuffer(
        fbb, fb::semantic::CreateSemanticRequest(fbb, fb::semantic::Command::common_GetStatus,
                                                 get.Union()));
    return status_reply<fb::semantic::SemanticReply>(paths, name, fbb, timeout);
  }
  if (name != "vm-supervisor") {
    return fail(Errc::kUnsupported, "no status client for service '" + name + "'");
  }
  flatbuffers::FlatBufferBuilder fbb(128);
  auto get = fb::common::CreateGetStatus(fbb);
  fb::vm::FinishVmRequestBuffer(
      fbb, fb::vm::CreateVmRequest(fbb, fb::vm::Command::common_GetStatus, get.Union()));
  auto bytes = shared::request(paths.service_endpoint(name),
                               {fbb.GetBufferPointer(), fbb.GetSize()}, timeout);
  if (!bytes) return tl::unexpected(bytes.error());
  auto reply = verify_reply<fb::vm::VmReply>(*bytes, name.c_str());
  if (!reply) return tl::unexpected(reply.error());
  if ((*reply)->error() != nullptr) return tl::unexpected(reply_error(*(*reply)->error()));
  ServiceQuery q;
  if ((*reply)->service() != nullptr) q.service = shared::read_service_status(*(*reply)->service());
  auto summary = nlohmann::json::parse(q.service.summary_json, nullptr, false);
  q.summary = summary.is_object() ? summary : nlohmann::json::object();
  // vm-supervisor's section is "vm": the documented VmStatus fields plus its own figures.
  const nlohmann::json typed = vm_status_json((*reply)->status());
  nlohmann::json vm = typed;
  if (q.summary.contains("vm") && q.summary["vm"].is_object()) vm.update(q.summary["vm"]);
  vm["state"] = typed["state"];  // the schema's lowercase names win
  vm["accel"] = typed["accel"];
  q.summary["vm"] = vm;
  return q;
}

static Result<OrchestratorStatus> orchestrator_call(const shared::StatePaths& paths,
                                                    bool shutdown) {
  flatbuffers::FlatBufferBuilder fbb(128);
  flatbuffers::Offset<fb::orchestrator::OrchestratorRequest> req;
  if (shutdown) {
    auto c = fb::common::CreateShutdown(fbb);
    req = fb::orchestrator::CreateOrchestratorRequest(
        fbb, fb::orchestrator::Command::common_Shutdown, c.Union());
  } else {
    auto c = fb::common::CreateGetStatus(fbb);
    req = fb::orchestrator::CreateOrchestratorRequest(
        fbb, fb::orchestrator::Command::common_GetStatus, c.Union());
  }
  fb::orchestrator::FinishOrchestratorRequestBuffer(fbb, req);
  auto bytes = shared::request(paths.up_endpoint(), {fbb.GetBufferPointer(), fbb.GetSize()},
                               milliseconds(5000));
  if (!bytes) return tl::unexpected(no_instance(paths, bytes.error()));
  auto reply = verify_reply<fb::orchestrator::OrchestratorReply>(*bytes, "glassbox up");
  if (!reply) return tl::unexpected(reply.error());
  if ((*reply)->error() != nullptr) return tl::unexpected(reply_error(*(*reply)->error()));
  OrchestratorStatus st;
  st.roudi_pid = (*reply)->roudi_pid();
  if ((*reply)->metrics_url() != nullptr) st.metrics_url = (*reply)->metrics_url()->str();
  if ((*reply)->services() != nullptr) {
    for (const auto* s : *(*reply)->services())
      st.services.push_back(shared::read_service_status(*s));
  }
  return st;
}

Result<OrchestratorStatus> orchestrator_status(const shared::StatePaths& paths) {
  return orchestrator_call(paths, false);
}

Result<void> orchestrator_shutdown(const shared::StatePaths& paths) {
  auto r = orchestrator_call(paths, true);
  if (!r) return tl::unexpected(r.error());
  return {};
}

}  // namespace glassbox::cli
