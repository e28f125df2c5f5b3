#include "services/vm_supervisor/vm_messages.hpp"

#include <nlohmann/json.hpp>

#include "services/vm_supervisor/input_encoding.hpp"

namespace glassbox::vm_supervisor {

namespace fb = glassbox::schema;

Result<const fb::vm::VmRequest*> verify_vm_request(shared::ByteSpan bytes) {
  if (bytes.size() < 8) {
    return fail(Errc::kProtocol, "request of " + std::to_string(bytes.size()) +
                                     " bytes is too short for a FlatBuffer");
  }
  if (!fb::vm::VmRequestBufferHasIdentifier(bytes.data())) {
    return fail(Errc::kProtocol, "request is not a VmRequest (file identifier is not GBVM)");
  }
  flatbuffers::Verifier::Options o;
  o.max_depth = 16;
  o.max_tables = 4096;
  flatbuffers::Verifier v(bytes.data(), bytes.size(), o);
  if (!fb::vm::VerifyVmRequestBuffer(v)) {
    return fail(Errc::kProtocol, "VmRequest failed FlatBuffers verification");
  }
  return fb::vm::GetVmRequest(bytes.data());
}

shared::Bytes build_vm_reply(const std::optional<Error>& error, const VmStatusFields& s,
                             bool with_service) {
  flatbuffers::FlatBufferBuilder fbb(1024);
  flatbuffers::Offset<fb::common::Error> err;
  if (error) {
    err = fb::common::CreateError(fbb, static_cast<int>(error->code),
                                  fbb.CreateString(error->message));
  }
  std::vector<flatbuffers::Offset<fb::vm::RamRange>> ranges;
  for (const auto& r : s.ram_layout) {
    ranges.push_back(fb::vm::CreateRamRange(fbb, r.gpa, r.size_bytes, r.file_offset));
  }
  auto layout = fbb.CreateVector(ranges);
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::vm::Vcpu>>> vcpus;
  if (!s.vcpus.empty()) {
    std::vector<flatbuffers::Offset<fb::vm::Vcpu>> v;
    for (const auto& c : s.vcpus) {
      v.push_back(fb::vm::CreateVcpu(fbb, c.index, c.pc, c.cr3, c.cpl, c.halted, c.long_mode));
    }
    vcpus = fbb.CreateVector(v);
  }
  auto status = fb::vm::CreateVmStatus(
      fbb, s.state, s.ready, s.accel, fbb.CreateString(s.accel_reason), s.qemu_pid,
      s.boot_to_ready_s, s.boots, s.vm_restarts, s.screen_width, s.screen_height,
      s.frames_published, s.serial_lines, fbb.CreateString(s.ram_path), s.ram_size_bytes,
      fbb.CreateString(s.qmp_socket), fbb.CreateString(s.vnc_socket),
      fbb.CreateString(s.serial_log), layout, vcpus);
  flatbuffers::Offset<fb::health::ServiceStatus> svc;
  if (with_service) svc = shared::build_service_status(fbb, s.service);
  auto reply = fb::vm::CreateVmReply(fbb, err, status, svc);
  fbb.Finish(reply);
  return shared::Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

Result<nlohmann::json> input_batch_to_qmp(
    const fb::input::InputBatch& batch,
    const std::function<Result<void>(int&, int&)>& screen_size) {
  constexpr size_t kMaxEvents = 256;
  const auto* types = batch.events_type();
  const auto* values = batch.events();
  if (types == nullptr || values == nullptr || types->size() == 0) {
    return fail(Errc::kInvalidArgument, "input batch has no events");
  }
  if (types->size() != values->size()) {
    return fail(Errc::kInvalidArgument, "input batch: events and their types differ in count");
  }
  if (types->size() > kMaxEvents) {
    return fail(Errc::kInvalidArgument, "input batch of " + std::to_string(types->size()) +
                                            " events exceeds " + std::to_string(kMaxEvents));
  }
  nlohmann::json out = nlohmann::json::array();
  for (flatbuffers::uoffset_t i = 0; i < types->size(); ++i) {
    const std::string where = "input event " + std::to_string(i) + ": ";
    switch (static_cast<fb::input::InputEvent>(types->Get(i))) {
      case fb::input::InputEvent::KeyEvent: {
        const auto* k = static_cast<const fb::input::KeyEvent*>(values->Get(i));
        const std::string q = k->qcode() ? k->qcode()->str() : "";
        if (!is_valid_qcode(q))
          return fail(Errc::kInvalidArgument, where + "unknown qcode '" + q + "'");
        out.push_back({{"type", "key"},
                       {"data", {{"down", k->down()}, {"key", {{"type", "qcode"}, {"data", q}}}}}});
        break;
      }
      case fb::input::InputEvent::PointerMove: {
        const auto* m = static_cast<const fb::input::PointerMove*>(values->Get(i));
        int w = m->width(), h = m->height();
        if (w <= 0 || h <= 0) {
          if (auto r = screen_size(w, h); !r)
            return fail(r.error().code, where + r.error().message);
        }
        auto ev = mouse_abs_events(m->x(), m->y(), w, h);
        if (!ev) return fail(Errc::kInvalidArgument, where + ev.error().message);
        for (auto& e : *ev) out.push_back(e);
        break;
      }
      case fb::input::InputEvent::PointerButton: {
        const auto* b = static_cast<const fb::input::PointerButton*>(values->Get(i));
        auto ev = mouse_button_events(b->button() ? b->button()->string_view() : "", b->down());
        if (!ev) return fail(Errc::kInvalidArgument, where + ev.error().message);
        for (auto& e : *ev) out.push_back(e);
        break;
      }
      default:
        return fail(Errc::kInvalidArgument, where + "unknown event type");
    }
  }
  return out;
}

}  // namespace glassbox::vm_supervisor
