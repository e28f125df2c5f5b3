#include "services/semantic_db/kallsyms.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "services/semantic_db/byte_order.hpp"

namespace glassbox::semantic_db {
namespace {

constexpr uint64_t round_up8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

constexpr unsigned kMaxTokenBytes = 256;

struct TokenTables {
  uint64_t table_pos = 0;
  uint64_t index_pos = 0;
  std::array<std::string_view, 256> tokens;
};

// Checks the token table that would end right before a token_index at `p` (already known to
// hold 256 strictly increasing u16 from 0 with gaps >= 2). Returns true and fills `out`.
bool check_token_table(std::span<const uint8_t> b, uint64_t p, const uint16_t* idx,
                       TokenTables& out) {
  const uint64_t min_len = uint64_t{idx[255]} + 2;
  for (uint64_t span = round_up8(min_len); span <= round_up8(min_len + kMaxTokenBytes); span += 8) {
    if (span > p) return false;
    const uint64_t t = p - span;
    const uint8_t* tab = b.data() + t;
    bool ok = true;
    for (int i = 0; i < 256 && ok; ++i) {
      const uint64_t start = idx[i];
      const uint64_t end = i < 255 ? uint64_t{idx[i + 1]} - 1 : 0;  // the NUL of token i
      if (i < 255) {
        if (tab[end] != 0) ok = false;
        for (uint64_t k = start; ok && k < end; ++k) {
          if (tab[k] <= 0x20 || tab[k] >= 0x7f) ok = false;
        }
      } else {
        uint64_t k = start;
        while (k < span && tab[k] > 0x20 && tab[k] < 0x7f) ++k;
        if (k == start || k >= span || tab[k] != 0 || round_up8(k + 1) != span) ok = false;
        for (uint64_t z = k; ok && z < span; ++z) {
          if (tab[z] != 0) ok = false;  // the NUL and the alignment padding
        }
      }
    }
    if (!ok) continue;
    out.table_pos = t;
    out.index_pos = p;
    for (std::size_t i = 0; i < 256; ++i) {
      const char* s = reinterpret_cast<const char*>(tab + idx[i]);
      out.tokens[i] = std::string_view(s, std::strlen(s));  // NUL checked above
    }
    return true;
  }
  return false;
}

// Walks the length prefixes of `n` names from `pos`, checking every 256th against
// `markers`; returns the end position or nullopt.
std::optional<uint64_t> walk_names(std::span<const uint8_t> b, uint64_t pos, uint64_t limit,
                                   uint32_t n, std::span<const uint32_t> markers) {
  const uint64_t start = pos;
  for (uint32_t i = 0; i < n; ++i) {
    if ((i & 255) == 0) {
      const uint32_t m = markers[i >> 8];
      if (pos - start != m) return std::nullopt;
    }
    if (pos >= limit) return std::nullopt;
    uint64_t len = b[pos++];
    if (len & 0x80) {
      if (pos >= limit) return std::nullopt;
      len = (len & 0x7f) | (uint64_t{b[pos++]} << 7);
    }
    if (len == 0 || limit - pos < len) return std::nullopt;
    pos += len;
  }
  return pos;
}

// Reads kallsyms_markers backwards from its end `e` (the byte after the last entry, or the
// start of 4 bytes of alignment padding): strictly ascending u32 down to a 0 at an 8-aligned
// position. Returns the markers in order and sets `pos` to the first one.
Result<std::vector<uint32_t>> read_markers(std::span<const uint8_t> b, uint64_t e, uint64_t& pos) {
  if (e >= 4 && le32(b.data() + e - 4) == 0) e -= 4;  // padding
  std::vector<uint32_t> rev;
  pos = e;
  uint32_t prev = UINT32_MAX;
  constexpr uint64_t kMaxMarkers = (uint64_t{kMaxKallsyms} + 255) / 256;
  for (;;) {
    if (pos < 4 || rev.size() >= kMaxMarkers) {
      return fail(Errc::kNotFound, "kallsyms: no kallsyms_markers starting at 0");
    }
    pos -= 4;
    const uint32_t v = le32(b.data() + pos);
    if (v >= prev) return fail(Errc::kNotFound, "kallsyms: kallsyms_markers not ascending");
    rev.push_back(v);
    prev = v;
    if (v == 0) break;
  }
  if (pos % 8 != 0) return fail(Errc::kNotFound, "kallsyms: kallsyms_markers not 8-aligned");
  return std::vector<uint32_t>(rev.rbegin(), rev.rend());
}

// Given markers at `m`, finds kallsyms_num_syms and kallsyms_names before them and fills the
// rest of `l`. `want_num` (when nonzero) is checked against the num_syms found.
Result<void> find_names(std::span<const uint8_t> b, uint64_t m,
                        const std::vector<uint32_t>& markers, KallsymsLayout& l) {
  const uint64_t n_markers = markers.size();
  if (markers.back() > m) return fail(Errc::kNotFound, "kallsyms: markers exceed the names");
  // num_syms sits 8 bytes before names; names end within 8 bytes of the markers.
  const uint64_t lo_syms = (n_markers - 1) * 256 + 1;
  const uint64_t hi_syms = n_markers * 256;
  const uint64_t latest = (m - markers.back()) & ~uint64_t{7};
  const uint64_t bound = 256 * (kMaxKsymNameBytes + 2) + 16;
  for (uint64_t n_pos = latest; n_pos >= 16 && latest - n_pos <= bound; n_pos -= 8) {
    const uint32_t num = le32(b.data() + n_pos - 8);
    if (num < lo_syms || num > hi_syms || le32(b.data() + n_pos - 4) != 0) continue;
    auto end = walk_names(b, n_pos, m, num, markers);
    if (!end || m - *end >= 8) continue;
    for (uint64_t z = *end; z < m; ++z) {
      if (b[z] != 0) return fail(Errc::kNotFound, "kallsyms: non-zero padding after names");
    }
    l.markers_pos = m;
    l.names_pos = n_pos;
    l.num_syms_pos = n_pos - 8;
    l.num_syms = num;
    l.relative_base_pos = n_pos - 16;
    l.relative_base = le64(b.data() + l.relative_base_pos);
    const uint64_t off_bytes = round_up8(uint64_t{num} * 4);
    if (l.relative_base_pos < off_bytes) {
      return fail(Errc::kNotFound, "kallsyms: offsets table would start before the data");
    }
    l.offsets_pos = l.relative_base_pos - off_bytes;
    return {};
  }
  return fail(Errc::kNotFound, "kallsyms: no kallsyms_num_syms consistent with " +
                                   std::to_string(n_markers) + " markers");
}

// kallsyms_seqs_of_names: num_syms big-endian u24 symbol indices, a permutation.
bool check_seqs(std::span<const uint8_t> b, uint64_t s, uint32_t num) {
  std::vector<bool> seen(num, false);
  for (uint64_t i = 0; i < num; ++i) {
    const uint8_t* p = b.data() + s + 3 * i;
    const uint32_t v = (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
    if (v >= num || seen[v]) return false;
    seen[v] = true;
  }
  return true;
}

// From a validated token table, walks backwards to the other tables. Two orders exist:
//   6.1:          ... names, markers, token_table, token_index
//   6.2 (and 6.1 stable kernels that backported commit 60443c88f3a8, e.g. Debian 6.1.192):
//                 ... names, markers, seqs_of_names (3 bytes per symbol), token_table, ...
Result<KallsymsLayout> walk_back(std::span<const uint8_t> b, const TokenTables& tt) {
  KallsymsLayout l;
  l.token_table_pos = tt.table_pos;
  l.token_index_pos = tt.index_pos;
  const uint64_t t = tt.table_pos;
  if (t < 16) return fail(Errc::kNotFound, "kallsyms: no room for markers");
  std::string first_error;
  {
    uint64_t m = 0;
    auto markers = read_markers(b, t, m);
    if (markers) {
      auto r = find_names(b, m, *markers, l);
      if (r) return l;
      first_error = r.error().message;
    } else {
      first_error = markers.error().message;
    }
  }
  // With seqs_of_names: its start S is 8-aligned, markers end at S (or S - 4), and
  // round_up8(S + 3 * num_syms) == t.
  const uint64_t max_seqs = 3 * uint64_t{kMaxKallsyms} + 8;
  for (uint64_t s = (t - 8) & ~uint64_t{7}; s >= 16 && t - s <= max_seqs; s -= 8) {
    // Prefilter: the last marker is non-zero and above the one before it.
    uint64_t e = s;
    if (le32(b.data() + e - 4) == 0) e -= 4;
    if (e < 8) continue;
    const uint32_t last = le32(b.data() + e - 4);
    const uint32_t before = le32(b.data() + e - 8);
    if (last == 0 ? (e - 4) % 8 != 0 : before >= last) continue;  // 0: a lone marker
    const uint64_t n_guess_lo = (t - s - 7) / 3;                  // bounds on num_syms from the gap
    const uint64_t n_guess_hi = (t - s) / 3;
    uint64_t m = 0;
    auto markers = read_markers(b, s, m);
    if (!markers) continue;
    const uint64_t n_markers = markers->size();
    if (n_guess_hi < (n_markers - 1) * 256 + 1 || n_guess_lo > n_markers * 256) continue;
    KallsymsLayout l2 = l;
    if (!find_names(b, m, *markers, l2)) continue;
    if (round_up8(s + 3 * uint64_t{l2.num_syms}) != t) continue;
    if (!check_seqs(b, s, l2.num_syms)) continue;
    l2.seqs_of_names_pos = s;
    return l2;
  }
  return fail(Errc::kNotFound, first_error + "; and no kallsyms_seqs_of_names layout fits");
}

Result<std::vector<KernelSymbol>> decode(std::span<const uint8_t> b, const KallsymsLayout& l,
                                         const TokenTables& tt, KallsymsLayout& out_layout) {
  const uint32_t n = l.num_syms;
  // Absolute-percpu mode: text and data symbols are stored negative; count to decide.
  uint64_t n_neg = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (static_cast<int32_t>(le32(b.data() + l.offsets_pos + 4 * uint64_t{i})) < 0) ++n_neg;
  }
  out_layout.absolute_percpu = n_neg * 2 > n;
  std::vector<KernelSymbol> syms;
  syms.reserve(n);
  uint64_t pos = l.names_pos;
  const uint64_t limit = l.markers_pos;
  std::string name;
  for (uint32_t i = 0; i < n; ++i) {
    if (pos >= limit) return fail(Errc::kProtocol, "kallsyms: names run into the markers");
    uint64_t len = b[pos++];
    if (len & 0x80) {
      if (pos >= limit) return fail(Errc::kProtocol, "kallsyms: truncated name length");
      len = (len & 0x7f) | (uint64_t{b[pos++]} << 7);
    }
    if (limit - pos < len) return fail(Errc::kProtocol, "kallsyms: name runs past the table");
    name.clear();
    for (uint64_t k = 0; k < len; ++k) {
      name.append(tt.tokens[b[pos + k]]);
      if (name.size() > kMaxKsymNameBytes + 1) {
        return fail(Errc::kProtocol,
                    "kallsyms: symbol " + std::to_string(i) + " expands past the name limit");
      }
    }
    pos += len;
    if (name.empty()) return fail(Errc::kProtocol, "kallsyms: empty symbol");
    const int32_t off = static_cast<int32_t>(le32(b.data() + l.offsets_pos + 4 * uint64_t{i}));
    KernelSymbol s;
    if (!out_layout.absolute_percpu) {
      s.addr = l.relative_base + static_cast<uint32_t>(off);
    } else if (off >= 0) {
      s.addr = static_cast<uint64_t>(off);
    } else {
      s.addr = l.relative_base - 1 - static_cast<uint64_t>(static_cast<int64_t>(off));
    }
    s.type = name[0];
    s.name = name.substr(1);
    syms.push_back(std::move(s));
  }
  return syms;
}

}  // namespace

Result<Symbols> Symbols::parse(std::span<const uint8_t> b, uint64_t base) {
  if (b.size() < 1024) return fail(Errc::kNotFound, "kallsyms: input too small");
  std::string last_error = "kallsyms: no kallsyms_token_index found";
  std::array<uint16_t, 256> idx{};
  TokenTables tt;
  // Positions must be 8-aligned relative to the image; `bytes` starts page-aligned in every
  // use (a section, a RAM region), so 8-alignment relative to bytes[0] is the same thing.
  for (uint64_t p = 8; p + 512 <= b.size(); p += 8) {
    const uint8_t* q = b.data() + p;
    // Prefilter: idx[0] == 0, 2 <= idx[1] < idx[2] < idx[3], gaps small.
    if (q[0] != 0 || q[1] != 0) continue;
    const uint16_t i1 = le16(q + 2), i2 = le16(q + 4), i3 = le16(q + 6);
    if (i1 < 2 || i1 > kMaxTokenBytes + 1 || i2 < i1 + 2 || i3 < i2 + 2 ||
        unsigned(i3 - i2) > kMaxTokenBytes + 1) {
      continue;
    }
    bool ok = true;
    idx[0] = 0;
    for (int i = 1; i < 256 && ok; ++i) {
      idx[i] = le16(q + 2 * i);
      if (idx[i] < idx[i - 1] + 2 || unsigned(idx[i] - idx[i - 1]) > kMaxTokenBytes + 1) ok = false;
    }
    if (!ok || !check_token_table(b, p, idx.data(), tt)) continue;
    auto l = walk_back(b, tt);
    if (!l) {
      last_error = l.error().message;
      continue;
    }
    KallsymsLayout layout = *l;
    auto syms = decode(b, *l, tt, layout);
    if (!syms) return tl::unexpected(syms.error());
    Symbols out;
    out.layout_ = layout;
    for (uint64_t* f :
         {&out.layout_.offsets_pos, &out.layout_.relative_base_pos, &out.layout_.num_syms_pos,
          &out.layout_.names_pos, &out.layout_.markers_pos, &out.layout_.token_table_pos,
          &out.layout_.seqs_of_names_pos, &out.layout_.token_index_pos}) {
      if (*f != 0 || f != &out.layout_.seqs_of_names_pos) *f += base;
    }
    out.index(std::move(*syms));
    return out;
  }
  return fail(Errc::kNotFound, last_error);
}

void Symbols::index(std::vector<KernelSymbol> symbols) {
  by_addr_ = std::move(symbols);
  std::stable_sort(by_addr_.begin(), by_addr_.end(),
                   [](const KernelSymbol& a, const KernelSymbol& c) { return a.addr < c.addr; });
  by_name_.resize(by_addr_.size());
  for (uint32_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
  const auto& v = by_addr_;
  auto is_global = [](char t) { return t >= 'A' && t <= 'Z'; };
  std::sort(by_name_.begin(), by_name_.end(), [&](uint32_t a, uint32_t c) {
    if (int r = v[a].name.compare(v[c].name); r != 0) return r < 0;
    if (is_global(v[a].type) != is_global(v[c].type)) return is_global(v[a].type);
    return a < c;
  });
}

Symbols Symbols::from_symbols(std::vector<KernelSymbol> symbols) {
  Symbols out;
  if (symbols.size() > kMaxKallsyms) symbols.resize(kMaxKallsyms);
  out.index(std::move(symbols));
  return out;
}

Result<Symbols> Symbols::from_indexed(std::vector<KernelSymbol> by_addr,
                                      std::vector<uint32_t> by_name) {
  const size_t n = by_addr.size();
  if (n > kMaxKallsyms) return fail(Errc::kInvalidArgument, "kallsyms: too many symbols");
  if (by_name.size() != n) return fail(Errc::kProtocol, "kallsyms: name index has another size");
  for (size_t i = 1; i < n; ++i) {
    if (by_addr[i - 1].addr > by_addr[i].addr) {
      return fail(Errc::kProtocol,
                  "kallsyms: symbols not sorted by address at " + std::to_string(i));
    }
  }
  std::vector<bool> seen(n, false);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t k = by_name[i];
    if (k >= n || seen[k]) return fail(Errc::kProtocol, "kallsyms: name index is no permutation");
    seen[k] = true;
    if (i > 0 && by_addr[by_name[i - 1]].name > by_addr[k].name) {
      return fail(Errc::kProtocol, "kallsyms: name index not sorted at " + std::to_string(i));
    }
  }
  Symbols out;
  out.by_addr_ = std::move(by_addr);
  out.by_name_ = std::move(by_name);
  return out;
}

Result<Symbols> Symbols::from_ram(const shared::RamView& ram) {
  std::string errors;
  for (const auto& r : ram.layout().regions()) {
    auto p = ram.at(r.gpa, r.size_bytes);
    if (!p) continue;
    auto s = parse(std::span<const uint8_t>(*p, r.size_bytes), r.gpa.value);
    if (s) return s;
    if (s.error().code != Errc::kNotFound) return s;
  }
  return fail(Errc::kNotFound, "kallsyms: no kallsyms tables in guest RAM");
}

const KernelSymbol* Symbols::find(std::string_view name) const {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [&](uint32_t i, std::string_view n) { return by_addr_[i].name < n; });
  if (it == by_name_.end() || by_addr_[*it].name != name) return nullptr;
  return &by_addr_[*it];
}

Result<uint64_t> Symbols::address_of(std::string_view name) const {
  const KernelSymbol* s = find(name);
  if (s == nullptr) return fail(Errc::kNotFound, "kallsyms: no symbol " + std::string(name));
  return s->addr;
}

std::optional<Symbols::Nearest> Symbols::nearest(uint64_t addr) const {
  auto it = std::upper_bound(by_addr_.begin(), by_addr_.end(), addr,
                             [](uint64_t a, const KernelSymbol& s) { return a < s.addr; });
  if (it == by_addr_.begin()) return std::nullopt;
  --it;
  const uint64_t a = it->addr;
  while (it != by_addr_.begin() && std::prev(it)->addr == a) --it;
  return Nearest{&*it, addr - a};
}

}  // namespace glassbox::semantic_db
