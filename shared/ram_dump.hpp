// Guest RAM dumps on disk: writing a RamView as a raw or LiME image, and mapping a dump back
// as a RamView for offline tools (e.g. `semantic-db --ram DUMP`).
//
// Formats:
//  - kRaw: a flat image of guest-physical memory: the byte at file offset X is gpa X. Holes
//    (gpa ranges that are not RAM: the VGA window, the PCI hole below 4 GiB) are zeros, left
//    sparse; the file is end_gpa bytes long. A reader cannot tell a hole from zeroed RAM.
//  - kLime: LiME's format (source: LiME's README "LiME Memory Range Header Version 1
//    Specification" and src/lime.h; what Volatility 3's volatility3/framework/layers/lime.py
//    reads): for each RAM range in gpa order, a 32-byte little-endian header
//      u32 magic 0x4C694D45 ("EMiL" on disk), u32 version 1, u64 s_addr, u64 e_addr
//      (inclusive: the last byte of the range), u8 reserved[8] (zeros)
//    followed by the e_addr - s_addr + 1 bytes of the range. No file header, no padding.
//
// Writers skip all-zero 4 KiB pages (seek over them), so dumps of a mostly idle guest stay
// sparse in both formats.
//
// Thread-safety: write_dump reads guest RAM while the guest may run: pause the VM (QMP
// `stop`) first for a consistent image. Different calls are independent. A LoadedDump is
// immutable and may be read from any number of threads.
#pragma once

#include <cstdint>
#include <string>

#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::shared {

enum class DumpFormat { kRaw, kLime };

inline constexpr uint32_t kLimeMagic = 0x4C694D45;
inline constexpr uint32_t kLimeVersion = 1;
inline constexpr uint64_t kLimeHeaderBytes = 32;
// The most LiME ranges open_dump accepts.
inline constexpr std::size_t kMaxLimeRanges = kMaxRamRegions;

// Writes every region of `ram` to `path` in `format`: first to "<path>.tmp" (mode 0600:
// guest memory may hold secrets), fsync, then rename over `path`; the tmp file is removed on
// failure. Reads ram.layout().regions() through ram.at(); a kLime dump holds one range per
// (merged) region.
// Errors: kIo "write_dump <path>: <syscall>: <strerror>"; kOutOfRange when a region is not
// readable through `ram` (a mapping shorter than the layout); kInvalidArgument for a view
// with no regions.
[[nodiscard]] Result<void> write_dump(const std::string& path, const RamView& ram,
                                      DumpFormat format);

// A dump file mapped read-only (PROT_READ, MAP_PRIVATE) with the layout that maps gpas into
// it: identity for kRaw (gpa X = file offset X, holes read as zeros), one region per range
// for kLime (file offsets point at each range's data, just past its header).
// Move-only; owns the mapping, which is unmapped on destruction. The RamView and every
// pointer it returns are valid while this object lives (moving it keeps them valid: the
// mapping does not move). A moved-from LoadedDump may only be destroyed or assigned to.
class LoadedDump {
 public:
  LoadedDump(LoadedDump&& other) noexcept;
  LoadedDump& operator=(LoadedDump&& other) noexcept;
  LoadedDump(const LoadedDump&) = delete;
  LoadedDump& operator=(const LoadedDump&) = delete;
  ~LoadedDump();

  DumpFormat format() const noexcept { return format_; }
  const RamView& view() const noexcept { return view_; }
  const std::string& path() const noexcept { return path_; }
  uint64_t file_size_bytes() const noexcept { return map_size_bytes_; }

 private:
  friend Result<LoadedDump> open_dump(const std::string& path);
  LoadedDump(std::string path, DumpFormat format, void* map, uint64_t map_size_bytes,
             RamLayout layout);
  void unmap() noexcept;

  std::string path_;
  DumpFormat format_;
  void* map_;
  uint64_t map_size_bytes_;
  RamView view_;
};

// Opens and maps a dump: kLime when the file starts with the LiME magic, else kRaw (a raw
// image whose gpa 0 happens to begin with "EMiL" would be misread; x86 keeps the real-mode
// IVT there). Every LiME header is validated before anything is mapped into the layout:
// magic and version, e_addr >= s_addr, a range length that fits in 64 bits, the data inside
// the file, s_addr above the previous range's e_addr (sorted, no overlap), at most
// kMaxLimeRanges ranges, and headers that tile the file exactly (no trailing bytes).
// The reserved bytes are not checked (Volatility ignores them too).
// Errors: kNotFound when `path` does not exist; kIo "open_dump <path>: ..." for other
// system call failures or a file that is not regular; kProtocol "open_dump <path>: LiME
// header 2 at file offset 0x...: <what>" for a bad LiME file, or an empty file.
[[nodiscard]] Result<LoadedDump> open_dump(const std::string& path);

}  // namespace glassbox::shared
