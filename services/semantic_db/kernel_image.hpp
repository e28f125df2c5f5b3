// The guest kernel's image: from an x86 bzImage (vmlinuz) to the vmlinux ELF it carries, and
// the few facts of that ELF the introspection needs (section table, link-time `_text`, banner).
//
// bzImage layout (source: Linux Documentation/x86/boot.rst, "THE REAL-MODE KERNEL HEADER"):
//   0x1f1 u8  setup_sects   number of 512-byte setup sectors after the boot sector (0 means 4)
//   0x202 u32 header        "HdrS" magic
//   0x206 u16 version       boot protocol version (payload fields need >= 2.08)
//   0x248 u32 payload_offset offset of the compressed payload from the protected-mode part
//   0x24c u32 payload_length bytes of the compressed payload
// The protected-mode part starts at (setup_sects + 1) * 512. The payload is one compressed
// stream of vmlinux (gzip, bzip2, lzma, xz, lzo, lz4 legacy or zstd, told by its magic), whose
// last 4 bytes are the little-endian decompressed size (arch/x86/boot/compressed/Makefile,
// size_append).
//
// Thread-safety: free functions, reentrant; no shared state. Inputs are untrusted (a bzImage
// from a guest disk, bytes from guest RAM): every read is bounds-checked, output is capped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/result.hpp"

namespace glassbox::semantic_db {

// Largest vmlinux decompress_bzimage() will produce (Debian 6.1's is about 60 MiB).
inline constexpr std::size_t kMaxVmlinuxBytes = 512u * 1024 * 1024;

// Compression of a bzImage payload, told by its leading magic bytes.
enum class PayloadCompression { kGzip, kBzip2, kLzma, kXz, kLzo, kLz4, kZstd, kUnknown };

// Short lowercase name ("xz", "gzip", ...). Never null.
const char* compression_name(PayloadCompression c) noexcept;

// Where the compressed vmlinux sits inside a bzImage.
struct BzImagePayload {
  uint64_t offset_bytes = 0;   // file offset of the first payload byte
  uint64_t size_bytes = 0;     // payload_length
  uint16_t boot_protocol = 0;  // e.g. 0x020f
  PayloadCompression compression = PayloadCompression::kUnknown;
};

// Validates the setup header of `bzimage` and locates its payload.
// Errors: kProtocol "bzImage: ..." when the image is shorter than the header, lacks "HdrS",
// has a boot protocol below 2.08, or a payload outside the file.
[[nodiscard]] Result<BzImagePayload> locate_bzimage_payload(std::span<const uint8_t> bzimage);

// Decompresses the payload of `bzimage` into the vmlinux ELF bytes. Supported: xz, gzip,
// zstd, lzma (legacy .lzma), bzip2, lz4 (legacy frame format, as the kernel's lz4 wrapper
// writes it). Trailing bytes after the stream end (the size_append word) are ignored.
// Bounds: output at most `max_output_bytes` (<= kMaxVmlinuxBytes); decoder memory capped.
// Errors: the errors of locate_bzimage_payload(); kUnsupported for lzo or an unknown magic;
// kProtocol "bzImage xz payload: ..." for a corrupt or truncated stream or one that grows
// past the cap; kInternal when a decoder cannot be set up.
// Cost: about 0.5-1 s for Debian's 8 MiB xz image (see kernel_image_test for figures).
[[nodiscard]] Result<std::vector<uint8_t>> decompress_bzimage(
    std::span<const uint8_t> bzimage, std::size_t max_output_bytes = kMaxVmlinuxBytes);

// Reads a whole file (a vmlinuz) into memory, refusing files over `max_bytes`.
// Errors: kNotFound when it does not exist; kIo for other failures; kInvalidArgument when it
// is larger than `max_bytes`.
[[nodiscard]] Result<std::vector<uint8_t>> read_file_bytes(const std::string& path,
                                                           std::size_t max_bytes = 256u << 20);

// One section of an ELF64 image. [offset, offset + size_bytes) lies inside the image for
// every section that has file bytes (type != SHT_NOBITS); for SHT_NOBITS (.bss) it may not.
struct ElfSection {
  uint64_t offset = 0;      // file offset
  uint64_t size_bytes = 0;  // sh_size
  uint64_t addr = 0;        // sh_addr: link-time virtual address (0 if not allocated)
  uint32_t type = 0;        // sh_type (1 = PROGBITS, 8 = NOBITS, ...)
  uint64_t flags = 0;       // sh_flags
};

// The section table of a vmlinux and what the introspection reads from it.
struct ElfSections {
  uint16_t machine = 0;  // e_machine (62 = EM_X86_64)
  // Section name -> section; with duplicate names the first one wins.
  std::map<std::string, ElfSection, std::less<>> sections;
  // Link-time address of `_text` (the start of .text; 0xffffffff81000000 for x86-64 without
  // relocation), 0 when the image has no .text.
  uint64_t text_addr = 0;
  // The kernel's `linux_banner` ("Linux version 6.1.0-... ...\n" without the final newline)
  // found in .rodata; empty when none was found. At most 512 bytes.
  std::string banner;

  // The bytes of section `name` inside `image` (the span the ElfSections were read from).
  // Errors: kNotFound when there is no such section; kOutOfRange when it has no file bytes
  // (NOBITS) or lies outside `image`.
  [[nodiscard]] Result<std::span<const uint8_t>> bytes(std::span<const uint8_t> image,
                                                       std::string_view name) const;
};

// Parses the ELF64 little-endian header and section table of `elf` by hand, bounds-checking
// every header, the section-name string table and each name (at most 256 bytes, at most
// 65535 sections).
// Errors: kProtocol "ELF: ..." for a non-ELF, 32-bit, big-endian or malformed image (a table
// or name outside the image, a bad e_shentsize).
[[nodiscard]] Result<ElfSections> read_elf_sections(std::span<const uint8_t> elf);

}  // namespace glassbox::semantic_db
