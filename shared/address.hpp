// Strong address types: a gpa cannot be passed where a gva is wanted.
//
// Gpa: guest-physical address. Gva: guest-virtual address. Hva: host-virtual address.
// Gfn: guest frame number (gpa >> 12). All are byte addresses (u64) except Gfn (page index).
// Thread-safety: value types.
#pragma once

#include <compare>
#include <cstdint>

namespace glassbox {

inline constexpr uint64_t kPageSizeBytes = 4096;
inline constexpr unsigned kPageShift = 12;

template <typename Tag>
struct Address {
  uint64_t value = 0;
  constexpr Address() = default;
  constexpr explicit Address(uint64_t v) : value(v) {}
  constexpr auto operator<=>(const Address&) const = default;
  constexpr Address operator+(uint64_t delta_bytes) const { return Address(value + delta_bytes); }
};

struct GpaTag {};
struct GvaTag {};
struct HvaTag {};
struct GfnTag {};
using Gpa = Address<GpaTag>;
using Gva = Address<GvaTag>;
using Hva = Address<HvaTag>;
using Gfn = Address<GfnTag>;

constexpr Gfn gfn_of(Gpa gpa) { return Gfn(gpa.value >> kPageShift); }
constexpr Gpa gpa_of(Gfn gfn) { return Gpa(gfn.value << kPageShift); }

}  // namespace glassbox
