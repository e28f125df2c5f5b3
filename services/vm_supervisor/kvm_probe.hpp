// accel=auto: use KVM only where it really runs a guest.
//
// On some hosts /dev/kvm opens fine but guests hang in early boot (nested "PVM" setups), so
// opening the device proves nothing, and neither does real-mode code: on this project's
// build hosts a boot sector runs under KVM while Linux hangs before its first console line.
// The probe therefore boots a real Linux kernel under KVM (the configured one, else the
// reference guest's) with no root device, `panic=-1` and `-no-reboot`: the kernel runs its
// whole early boot (paging, timers, APIC, SMP), panics at mount_root and QEMU exits 0. The
// serial log must show "Kernel panic" and QEMU must exit within the timeout: KVM works.
// Without any kernel, a 512-byte boot sector writing to isa-debug-exit (exit status 85)
// is the (weaker) fallback. Anything else: TCG, with the reason in one line.
// Results are cached in the state dir per QEMU binary, probe kernel and host kernel.
//
// Thread-safety: reentrant; spawns and reaps its own child.
#pragma once

#include <chrono>
#include <string>

#include "shared/config.hpp"
#include "shared/result.hpp"

namespace glassbox::vm_supervisor {

struct AccelChoice {
  shared::Accel accel = shared::Accel::kTcg;
  std::string reason;  // one line, e.g. "auto: KVM probe guest hung for 4000 ms; using TCG"
};

// The 512-byte probe boot sector (ends in 0x55 0xAA).
std::string kvm_probe_boot_sector();

// Boots the probe guest under KVM: `kernel` to its panic, or the boot sector when `kernel`
// is empty. Ok(true): it ran to the end. Ok(false) with `why` set: KVM does not really work
// here. Errors: kIo when a probe file cannot be written.
Result<bool> probe_kvm(const std::string& qemu, const std::string& kernel,
                       const std::string& work_dir, std::chrono::milliseconds timeout,
                       std::string& why);

// Resolves config.vm.accel: kvm and tcg are taken as given (kvm fails later if absent);
// auto probes with `probe_kernel` (or reads the cached probe from `work_dir`).
AccelChoice choose_accel(const shared::VmConfig& vm, const std::string& probe_kernel,
                         const std::string& work_dir);

}  // namespace glassbox::vm_supervisor
