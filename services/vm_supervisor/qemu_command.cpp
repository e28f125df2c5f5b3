#include "services/vm_supervisor/qemu_command.hpp"

namespace glassbox::vm_supervisor {

QemuPaths qemu_paths_for(const shared::Config& c, const shared::StatePaths& p) {
  return QemuPaths{shared::guest_ram_path(c.instance.name),
                   p.qmp_socket(),
                   p.vnc_socket(),
                   p.serial_log(),
                   shared::trace_shm_path(c.instance.name),
                   shared::exe_dir() + "/../lib/libglassbox-trace.so"};
}

// QEMU option values separate with ','; a literal comma is written ",,".
static std::string qemu_escape(const std::string& v) {
  std::string out;
  for (char ch : v) {
    out += ch;
    if (ch == ',') out += ',';
  }
  return out;
}

static bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> build_qemu_argv(const shared::Config& c, shared::Accel accel,
                                         const QemuPaths& p) {
  const std::string mem = std::to_string(c.vm.memory_mib) + "M";
  std::vector<std::string> a = {
      c.vm.qemu,
      "-name",
      "glassbox-" + c.instance.name,
      "-machine",
      c.vm.machine + ",memory-backend=glassbox-ram",
      "-accel",
      accel == shared::Accel::kKvm ? "kvm" : "tcg",
      "-smp",
      std::to_string(c.vm.cpus),
      "-m",
      mem,
      "-object",
      "memory-backend-file,id=glassbox-ram,size=" + mem + ",mem-path=" + p.ram_file + ",share=on",
      "-nodefaults",
      "-vga",
      "std",
      "-display",
      "none",
      "-vnc",
      "unix:" + p.vnc_socket,
      "-chardev",
      "file,id=glassbox-serial,path=" + p.serial_log,
      "-serial",
      "chardev:glassbox-serial",
      "-qmp",
      "unix:" + p.qmp_socket + ",server=on,wait=off",
      "-device",
      "virtio-tablet-pci",
  };
  if (accel == shared::Accel::kKvm) {
    a.insert(a.end(), {"-cpu", "host"});
  }
  if (!c.vm.kernel.empty()) {
    a.insert(a.end(), {"-kernel", c.vm.kernel});
    if (!c.vm.initrd.empty()) a.insert(a.end(), {"-initrd", c.vm.initrd});
    if (!c.vm.append.empty()) a.insert(a.end(), {"-append", c.vm.append});
  }
  if (!c.vm.disk.empty()) {
    const std::string fmt = ends_with(c.vm.disk, ".qcow2") ? "qcow2" : "raw";
    a.insert(a.end(), {"-drive", "file=" + c.vm.disk + ",if=virtio,format=" + fmt});
  }
  if (!c.vm.cdrom.empty()) {
    a.insert(a.end(), {"-drive", "file=" + c.vm.cdrom + ",media=cdrom,readonly=on"});
    if (c.vm.kernel.empty() && c.vm.disk.empty()) a.insert(a.end(), {"-boot", "d"});
  }
  if (c.trace.mode != "off") {
    a.insert(
        a.end(),
        {"-plugin", "file=" + qemu_escape(p.trace_plugin) + ",shm=" + qemu_escape(p.trace_shm) +
                        ",mode=" + c.trace.mode + ",ram=" + qemu_escape(p.ram_file) +
                        ",ring_events=" + std::to_string(c.trace.ring_events) +
                        ",max_tbs=" + std::to_string(c.trace.max_tbs) +
                        ",tb_ring_bytes=" + std::to_string(uint64_t{c.trace.tb_ring_mib} << 20)});
  }
  a.insert(a.end(), c.vm.extra_args.begin(), c.vm.extra_args.end());
  return a;
}

}  // namespace glassbox::vm_supervisor
