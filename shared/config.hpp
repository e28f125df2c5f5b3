// glassbox.toml: the one configuration file of an instance.
//
// Every key has a built-in default; the built-in guest is the reference guest built by
// orchestration/build-guest into build/guest. An unknown section or key, or a value of the
// wrong type or range, is an error naming the key and the file. Keys (see README "Config"):
//   [instance] name
//   [vm]       kernel, initrd, append, disk, cdrom, memory_mib, cpus, accel (auto|kvm|tcg),
//              machine, ready_marker, restart, restart_backoff_ms, restart_backoff_max_ms,
//              kvm_probe_timeout_ms, qemu, extra_args
//   [screen]   max_fps
//   [snapshot] hz, keyframe_every, method (auto|xxh3|soft-dirty), hash_threads
//   [semantic] interval_ms, db, profile_cache, kernel, log_events
//   [trace]    mode (off|counts|stream), ring_events, max_tbs, tb_ring_mib, batch_events
//   [miner]    db, top_k, publish_top, trace_threshold, persist_interval_ms
//   [compositor] window, width, height, fps, bytes_per_pixel, glow_ms, crt, pulse, mode,
//              highlight, device, font, volume_bits
//   [metrics]  host, base_port
//   [up]       services, restart_backoff_ms, restart_backoff_max_ms
//   [iceoryx]  roudi, roudi_config
// Thread-safety: plain values; parse functions are reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::shared {

enum class Accel { kAuto, kKvm, kTcg };
const char* accel_name(Accel a) noexcept;

struct InstanceConfig {
  std::string name = "default";  // [a-zA-Z0-9_-]{1,32}; names RAM file and iceoryx services
};

struct VmConfig {
  std::string kernel;         // bzImage path; default: the reference guest's
  std::string initrd;         // initramfs path; default: the reference guest's
  std::string append;         // kernel command line; default: the reference guest's
  std::string disk;           // raw/qcow2 disk image (virtio); used instead of kernel
  std::string cdrom;          // ISO image; used instead of kernel
  uint32_t memory_mib = 256;  // guest RAM, 16..65536
  uint32_t cpus = 1;          // vCPUs, 1..64
  Accel accel = Accel::kAuto;
  std::string machine = "pc";
  std::string ready_marker = "GLASSBOX-GUEST-READY";  // serial text meaning "booted"
  bool restart = true;                                // reboot the VM when QEMU dies unexpectedly
  uint32_t restart_backoff_ms = 500;                  // first delay; doubles per quick death
  uint32_t restart_backoff_max_ms = 10000;
  uint32_t kvm_probe_timeout_ms = 4000;     // a KVM guest that has not exited by then: hangs
  std::string qemu = "qemu-system-x86_64";  // binary name or path
  std::vector<std::string> extra_args;      // appended to QEMU's command line
};

struct ScreenConfig {
  uint32_t max_fps = 60;  // frames published per second at most, 1..240
};

struct SnapshotConfig {
  uint32_t hz = 30;                // snapshot cycles per second, 1..240
  uint32_t keyframe_every = 1800;  // deltas between periodic keyframes (1 min at 30 Hz)
  std::string method = "auto";     // auto | xxh3 | soft-dirty
  uint32_t hash_threads = 1;       // xxh3 worker threads, 1..16
};

struct SemanticConfig {
  uint32_t interval_ms = 1000;  // live walk period (processes, modules, log), 50..600000
  std::string db;               // SQLite history; default STATE_DIR/semantic.sqlite
  std::string profile_cache;    // default $XDG_CACHE_HOME/glassbox/profiles.sqlite; "none": off
  std::string kernel;           // bzImage for BTF when RAM has none; default [vm] kernel
  bool log_events = true;       // publish new kernel log records on the bus ("guest.log")
};

struct TraceConfig {
  std::string mode = "off";         // off | counts (inline per-TB counters) | stream (every
                                    // executed TB, per-vCPU rings); not off forces accel tcg
  uint32_t ring_events = 1u << 22;  // per-vCPU event ring capacity (power of two, 2^12..2^26):
                                    // 16 MiB absorbs ~40 ms of a booting guest undrained
  uint32_t max_tbs = 1u << 22;      // TB counter slots (2^12..2^26)
  uint32_t tb_ring_mib = 64;        // TB record ring (1..1024 MiB)
  uint32_t batch_events = 65536;    // events per published iceoryx batch (1024..1048576)
};

struct MinerConfig {
  std::string db;                       // SQLite; default STATE_DIR/pattern-miner.sqlite
  uint32_t top_k = 65536;               // Space-Saving capacity: blocks tracked (1024..4194304)
  uint32_t publish_top = 32;            // hot blocks announced on the bus (trace.hot), 0..4096
  uint32_t trace_threshold = 50;        // NET: head executions before a trace is recorded
  uint32_t persist_interval_ms = 2000;  // counts written to SQLite this often
};

// smt-synthesizer: hot blocks -> verified Pixel programs (docs/pixel-isa-v1.md).
struct SynthConfig {
  std::string db;                      // the microcode library (SQLite); default
                                       // STATE_DIR/smt-synthesizer.sqlite
  uint32_t workers = 1;                // synthesis threads (1..64), each with its own Z3 context
  uint32_t queue_max = 4096;           // blocks waiting for a worker; beyond it new ones are
                                       // dropped (counted) until the queue drains
  uint32_t verify_timeout_ms = 10000;  // Z3 limit for one equivalence proof (10..600000)
  uint32_t cegis_timeout_ms = 2000;    // the whole CEGIS search per block; 0: direct only
  uint32_t cegis_max_insns = 6;        // longest program CEGIS searches (1..16)
};

// glassbox-compositor: the VM screen and its RAM drawn with Vulkan (compositor/README.md).
struct CompositorConfig {
  std::string window = "auto";  // auto (a window when a display exists) | on | off (headless)
  uint32_t width = 1600;        // canvas (and window) size, 320..8192 x 240..8192
  uint32_t height = 900;
  uint32_t fps = 30;             // frames drawn per second at most, 1..240
  uint32_t bytes_per_pixel = 0;  // RAM map density: power of two 4..65536; 0: the smallest that
                                 // keeps the map within 1024 x 1024 pixels
  uint32_t glow_ms = 1500;       // dirty pages glow and fade over this long; 0: off
  bool crt = true;               // CRT look on the screen pane (scanlines, curvature, vignette)
  bool pulse = true;             // screen brightness pulses with the dirty-page rate
  std::string mode = "2d";       // 2d | 3d: which RAM view the canvas shows
  std::string highlight;         // process outlined on the RAM map: a pid or a comm; "": none
  std::string device;            // Vulkan device name substring; "": discrete > integrated > cpu
  std::string font = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf";
  uint32_t volume_bits = 7;  // 3D view: 2^bits voxels per axis, 4..9
};

struct MetricsConfig {
  std::string host = "127.0.0.1";
  uint32_t base_port = 0;  // 0: each service picks a free port; else base_port + service index
                           // (vm-supervisor 1, ram-snapshotter 2, semantic-db 3,
                           // trace-consumer 4, pattern-miner 5, smt-synthesizer 6,
                           // compositor 7)
};

struct UpConfig {
  std::vector<std::string> services = {"vm-supervisor", "ram-snapshotter", "semantic-db"};
  uint32_t restart_backoff_ms = 500;
  uint32_t restart_backoff_max_ms = 10000;
};

struct IceoryxConfig {
  std::string roudi = "iox-roudi";  // RouDi binary, started by `glassbox up` when none runs
  std::string roudi_config;         // default: build/share/glassbox/roudi.toml
};

struct Config {
  std::string source = "<built-in defaults>";  // the file it came from
  InstanceConfig instance;
  VmConfig vm;
  ScreenConfig screen;
  SnapshotConfig snapshot;
  SemanticConfig semantic;
  TraceConfig trace;
  MinerConfig miner;
  SynthConfig synth;
  CompositorConfig compositor;
  MetricsConfig metrics;
  UpConfig up;
  IceoryxConfig iceoryx;
};

// Parses TOML text. `source_name` names the file in error messages. Defaults fill every
// missing key; the reference-guest defaults (kernel/initrd/append) are applied only when
// none of kernel, disk, cdrom is set. Does not touch the filesystem.
// Errors: kInvalidArgument "FILE: [vm] memory_mib: expected an integer in 16..65536", or
// "FILE: unknown key [vm] memroy_mib", or a TOML syntax error with line and column.
[[nodiscard]] Result<Config> parse_config(std::string_view toml_text, std::string_view source_name);

// Loads `path` (or the built-in defaults when empty) and parses it.
// Errors: kNotFound / kIo when the file cannot be read, plus parse_config's errors.
[[nodiscard]] Result<Config> load_config(const std::string& path);

// Checks that the files the config names exist and are readable (kernel, initrd, disk,
// cdrom). Errors: kNotFound "FILE: [vm] kernel: cannot read /x/bzImage: No such file".
[[nodiscard]] Result<void> check_config_files(const Config& config);

// Where the reference guest lives: $GLASSBOX_GUEST_DIR, else <exe dir>/../guest.
std::string reference_guest_dir();

// The reference guest's kernel command line (KASLR on). Console on ttyS0 for the marker.
// memmap reserves 2 MiB at 0x7000000 where the guest writes a known pattern (gb.phys).
inline constexpr std::string_view kReferenceAppend =
    "console=tty0 console=ttyS0,115200 quiet panic=-1 memmap=2M$0x7000000 gb.phys=0x7000000";

}  // namespace glassbox::shared
