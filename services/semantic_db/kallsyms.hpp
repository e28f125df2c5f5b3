// The kernel's own symbol table (kallsyms), recovered from a stripped vmlinux or guest RAM.
//
// Debian's vmlinux has no .symtab, and System.map ships only with the -dbg package, but with
// CONFIG_KALLSYMS(_ALL) the kernel embeds every symbol in .rodata, in tables that
// scripts/kallsyms.c (Linux 6.1, write_src()) emits in this order, each label aligned to 8
// bytes (ALGN = .balign 8 on 64-bit):
//   kallsyms_offsets        s32[num_syms]   (CONFIG_KALLSYMS_BASE_RELATIVE)
//   kallsyms_relative_base  u64             (a .quad: relocated by KASLR when in RAM)
//   kallsyms_num_syms       u32
//   kallsyms_names          num_syms entries: a length (1 byte, or 2 bytes little-endian
//                           base-128 when the first has bit 7 set) then that many token
//                           bytes; the expansion's first char is the nm type ('T', 'd', ...)
//   kallsyms_markers        u32[(num_syms + 255) / 256]: offset in kallsyms_names of every
//                           256th entry
//   kallsyms_token_table    256 NUL-terminated strings
//   kallsyms_token_index    u16[256]: offset of each token in kallsyms_token_table
// Linux 6.2 added kallsyms_seqs_of_names (u24 big-endian per symbol, names sorted) between
// markers and token_table; Debian's 6.1.192 carries it as a stable backport. Both orders are
// accepted (later kernels, which moved offsets after token_index, are not). Addresses decode as
// kernel/kallsyms.c kallsyms_sym_address(): with CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86-64 SMP)
// an offset >= 0 is an absolute value (per-cpu symbols) and a negative one means
// relative_base - 1 - offset; without it, relative_base + (u32)offset.
//
// Locating the tables without symbols: kallsyms_token_index is found by its shape (256
// strictly increasing u16 starting at 0, at an 8-aligned position) and accepted only when the
// 256 NUL-terminated printable tokens it indexes end exactly (after alignment) where it
// starts. From there the known order is walked backwards: markers (ascending u32 from 0),
// num_syms (a u32 consistent with the marker count), names (decoded lengths must hit every
// marker and end at the markers), relative_base, offsets.
//
// Units: addresses are kernel virtual addresses. From a vmlinux they are link-time; from
// guest RAM they are the running kernel's (KASLR applied), because the boot-time relocation
// patches kallsyms_relative_base; absolute (per-cpu) symbols are never relocated.
// Thread-safety: Symbols is immutable after construction; const methods are reentrant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shared/ram_layout.hpp"
#include "shared/result.hpp"

namespace glassbox::semantic_db {

// Bounds on hostile tables.
inline constexpr uint32_t kMaxKallsyms = 4u << 20;      // symbols
inline constexpr std::size_t kMaxKsymNameBytes = 1024;  // one expanded name (6.1: 512)

// Where the tables were found: byte positions inside the scanned span (or gpas for RAM).
struct KallsymsLayout {
  uint64_t offsets_pos = 0;
  uint64_t relative_base_pos = 0;
  uint64_t num_syms_pos = 0;
  uint64_t names_pos = 0;
  uint64_t markers_pos = 0;
  uint64_t token_table_pos = 0;
  uint64_t token_index_pos = 0;
  uint64_t seqs_of_names_pos = 0;  // 0 when the kernel has no kallsyms_seqs_of_names
  uint32_t num_syms = 0;
  uint64_t relative_base = 0;  // as stored (link-time in a vmlinux, run-time in RAM)
  bool absolute_percpu = false;
};

struct KernelSymbol {
  uint64_t addr = 0;
  char type = '?';   // nm type letter: T/t text, D/d data, R/r rodata, B/b bss, A absolute...
  std::string name;  // without the type letter, e.g. "init_task"
};

// The decoded table. Symbols are kept sorted by address (ties in table order).
class Symbols {
 public:
  // Scans `bytes` (a vmlinux's .rodata, a whole vmlinux, or a RAM region) for the tables.
  // `base` is added to the positions reported in layout() (e.g. the gpa of bytes[0]).
  // Bounds: at most kMaxKallsyms symbols, names of at most kMaxKsymNameBytes, every read
  // inside `bytes`. Cost: one pass over `bytes` with an 8-byte prefilter, plus decoding.
  // Errors: kNotFound "kallsyms: ..." when no consistent set of tables is found (the message
  // says which stage failed); kProtocol when the tables are found but a name does not decode.
  [[nodiscard]] static Result<Symbols> parse(std::span<const uint8_t> bytes, uint64_t base = 0);

  // Scans every region of `ram` (the kernel image's .rodata is physically contiguous) and
  // returns the first consistent table; layout() positions are gpas. Addresses are run-time.
  // Errors: kNotFound when no region holds the tables.
  [[nodiscard]] static Result<Symbols> from_ram(const shared::RamView& ram);

  // A table from already-decoded symbols (a profile cache, a test): sorted and indexed as
  // parse() does; at most kMaxKallsyms are kept. layout() is all zero.
  [[nodiscard]] static Symbols from_symbols(std::vector<KernelSymbol> symbols);

  // A table with its index already built (a profile cache written from by_addr() and
  // by_name()): no sorting, only checks. `by_addr` must be sorted by address and `by_name` a
  // permutation of its indices sorted by name. Cost: O(n) comparisons.
  // Errors: kProtocol naming the first violated rule; kInvalidArgument above kMaxKallsyms.
  [[nodiscard]] static Result<Symbols> from_indexed(std::vector<KernelSymbol> by_addr,
                                                    std::vector<uint32_t> by_name);
  // Indices into symbols() in name order (ties: the symbol address_of() prefers first).
  const std::vector<uint32_t>& by_name() const noexcept { return by_name_; }

  // Address of `name`. With several symbols of that name (static functions), a global one
  // (upper-case type) wins, then the lowest address.
  // Errors: kNotFound "kallsyms: no symbol <name>".
  [[nodiscard]] Result<uint64_t> address_of(std::string_view name) const;

  // The symbol of that name as address_of() picks it, or nullptr. Valid while *this lives.
  const KernelSymbol* find(std::string_view name) const;

  // The symbol with the highest address <= `addr` (ties: the first in table order), and
  // `addr` minus its address; nullopt when `addr` is below every symbol.
  struct Nearest {
    const KernelSymbol* symbol = nullptr;  // valid while *this lives
    uint64_t offset_bytes = 0;
  };
  std::optional<Nearest> nearest(uint64_t addr) const;

  // All symbols, sorted by address.
  const std::vector<KernelSymbol>& symbols() const noexcept { return by_addr_; }
  std::size_t size() const noexcept { return by_addr_.size(); }
  const KallsymsLayout& layout() const noexcept { return layout_; }

 private:
  void index(std::vector<KernelSymbol> symbols);
  std::vector<KernelSymbol> by_addr_;
  std::vector<uint32_t> by_name_;  // indices into by_addr_, sorted by name then preference
  KallsymsLayout layout_;
};

}  // namespace glassbox::semantic_db
