#include "services/vm_supervisor/kvm_probe.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "shared/process.hpp"

namespace glassbox::vm_supervisor {

std::string kvm_probe_boot_sector() {
  // mov al, 0x2a ; out 0xf4, al ; hlt ; jmp $-1   (real mode, loaded at 0x7c00)
  std::string s = {'\xB0', '\x2A', '\xE6', '\xF4', '\xF4', '\xEB', '\xFD'};
  s.resize(510, '\0');
  s += '\x55';
  s += '\xAA';
  return s;
}

Result<bool> probe_kvm(const std::string& qemu, const std::string& kernel,
                       const std::string& work_dir, std::chrono::milliseconds timeout,
                       std::string& why) {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    why = std::string("/dev/kvm: ") + std::strerror(errno);
    return false;
  }
  ::close(fd);
  const std::string serial = work_dir + "/kvm-probe.serial";
  std::vector<std::string> argv = {qemu,  "-accel",      "kvm",      "-machine", "pc",        "-m",
                                   "128", "-nodefaults", "-display", "none",     "-no-reboot"};
  if (!kernel.empty()) {
    ::unlink(serial.c_str());
    argv.insert(argv.end(), {"-kernel", kernel, "-append",
                             "console=ttyS0 panic=-1 root=/dev/glassbox-kvm-probe", "-serial",
                             "file:" + serial});
  } else {
    const std::string img = work_dir + "/kvm-probe.img";
    std::ofstream f(img, std::ios::binary | std::ios::trunc);
    if (!f) return fail_errno("write " + img);
    f << kvm_probe_boot_sector();
    f.close();
    argv.insert(argv.end(), {"-drive", "file=" + img + ",format=raw,if=ide", "-device",
                             "isa-debug-exit,iobase=0xf4,iosize=0x04"});
  }
  auto pid = shared::spawn(argv, {.new_session = true, .output_path = work_dir + "/kvm-probe.log"});
  if (!pid) {
    why = pid.error().message;
    return false;
  }
  auto status = shared::reap_for(*pid, timeout);
  if (!status) {
    shared::terminate_group(*pid, std::chrono::milliseconds(200));
    (void)shared::reap_for(*pid, std::chrono::milliseconds(1000));
    why = std::string("KVM probe guest (") + (kernel.empty() ? "boot sector" : "Linux kernel") +
          ") did not finish within " + std::to_string(timeout.count()) +
          " ms: guests hang on this host's KVM";
    return false;
  }
  if (kernel.empty()) {
    if (WIFEXITED(*status) && WEXITSTATUS(*status) == 85) return true;
  } else if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) {
    std::ifstream in(serial);
    std::stringstream text;
    text << in.rdbuf();
    if (text.str().find("Kernel panic") != std::string::npos) return true;
    why = "KVM probe kernel exited without reaching its panic (see " + serial + ")";
    return false;
  }
  why = "KVM probe QEMU " + shared::describe_wait_status(*status) + " (see " + work_dir +
        "/kvm-probe.log)";
  return false;
}

static std::string cache_key(const std::string& qemu, const std::string& kernel) {
  std::ostringstream k;
  k << kernel << ":";
  const std::string path = shared::find_executable(qemu);
  struct stat st {};
  if (!path.empty() && ::stat(path.c_str(), &st) == 0) {
    k << path << ":" << st.st_size << ":" << st.st_mtim.tv_sec;
  } else {
    k << qemu;
  }
  utsname u{};
  if (::uname(&u) == 0) k << ":" << u.release << ":" << u.version;
  return k.str();
}

AccelChoice choose_accel(const shared::VmConfig& vm, const std::string& probe_kernel,
                         const std::string& work_dir) {
  if (vm.accel == shared::Accel::kTcg) return {shared::Accel::kTcg, "tcg: set in [vm] accel"};
  if (vm.accel == shared::Accel::kKvm) return {shared::Accel::kKvm, "kvm: set in [vm] accel"};

  const std::string cache = work_dir + "/kvm-probe.cache";
  const std::string key = cache_key(vm.qemu, probe_kernel);
  {
    std::ifstream in(cache);
    std::string k, verdict, why;
    if (std::getline(in, k) && std::getline(in, verdict) && std::getline(in, why) && k == key) {
      if (verdict == "kvm") return {shared::Accel::kKvm, "auto: KVM probe passed (cached)"};
      return {shared::Accel::kTcg, "auto: " + why + " (cached probe); using TCG"};
    }
  }
  std::string why;
  auto ok = probe_kvm(vm.qemu, probe_kernel, work_dir,
                      std::chrono::milliseconds(vm.kvm_probe_timeout_ms), why);
  AccelChoice choice;
  if (ok && *ok) {
    choice = {shared::Accel::kKvm, "auto: KVM probe guest ran; using KVM"};
  } else {
    if (!ok) why = ok.error().message;
    choice = {shared::Accel::kTcg, "auto: " + why + "; using TCG"};
  }
  std::ofstream out(cache, std::ios::trunc);
  out << key << "\n"
      << (choice.accel == shared::Accel::kKvm ? "kvm" : "tcg") << "\n"
      << why << "\n";
  return choice;
}

}  // namespace glassbox::vm_supervisor
