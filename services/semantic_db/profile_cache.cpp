#include "services/semantic_db/profile_cache.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <type_traits>
#include <vector>

namespace glassbox::semantic_db {
namespace {

static_assert(std::is_trivially_copyable_v<KernelOffsets>, "KernelOffsets is stored as bytes");
static_assert(sizeof(KernelOffsets) % sizeof(uint64_t) == 0, "KernelOffsets: u64 fields only");

// The stored format: the version, and the layout size so that a build with more or fewer
// offsets never reads another build's bytes.
constexpr int64_t kFormat =
    static_cast<int64_t>(kProfileCacheFormatVersion) << 32 | sizeof(KernelOffsets);

constexpr char kSymbolsMagic[4] = {'G', 'B', 'S', 'Y'};
constexpr uint64_t kKernelHalf = 0xffff800000000000ULL;

tl::unexpected<Error> db_error(sqlite3* db, const std::string& path, const std::string& what) {
  return fail(Errc::kIo, "profile cache " + path + ": " + what + ": " + sqlite3_errmsg(db));
}

// A prepared statement, finalized on scope exit.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s, nullptr); }
  ~Stmt() { sqlite3_finalize(s); }
};

void put_u16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t get_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

// Blob: "GBSY", u32 count, then per symbol in address order: u8 kind (0: value is an offset
// from _text, 1: absolute), u8 nm type, u16 name length, u64 value, name bytes; then the
// name index (count u32: symbol indices in name order), so loading sorts nothing.
std::vector<uint8_t> encode_symbols(const Symbols& symbols, uint64_t text_gva) {
  std::vector<uint8_t> b(kSymbolsMagic, kSymbolsMagic + 4);
  put_u32(b, static_cast<uint32_t>(symbols.size()));
  for (const auto& s : symbols.symbols()) {
    const bool relative = s.addr >= kKernelHalf;
    b.push_back(relative ? 0 : 1);
    b.push_back(static_cast<uint8_t>(s.type));
    const auto len = static_cast<uint16_t>(std::min<size_t>(s.name.size(), kMaxKsymNameBytes));
    put_u16(b, len);
    put_u64(b, relative ? s.addr - text_gva : s.addr);
    b.insert(b.end(), s.name.begin(), s.name.begin() + len);
  }
  for (uint32_t i : symbols.by_name()) put_u32(b, i);
  return b;
}

Result<Symbols> decode_symbols(const uint8_t* p, uint64_t n, uint64_t text_gva) {
  if (n < 8 || std::memcmp(p, kSymbolsMagic, 4) != 0) {
    return fail(Errc::kProtocol, "symbols blob has no GBSY header");
  }
  const uint64_t count = get_le(p + 4, 4);
  if (count > kMaxKallsyms) return fail(Errc::kProtocol, "symbols blob claims too many symbols");
  std::vector<KernelSymbol> out;
  out.reserve(count);
  uint64_t pos = 8;
  for (uint64_t i = 0; i < count; ++i) {
    if (pos + 12 > n)
      return fail(Errc::kProtocol, "symbols blob ends inside symbol " + std::to_string(i));
    const uint8_t kind = p[pos];
    const char type = static_cast<char>(p[pos + 1]);
    const uint64_t len = get_le(p + pos + 2, 2);
    const uint64_t value = get_le(p + pos + 4, 8);
    pos += 12;
    if (kind > 1 || len > kMaxKsymNameBytes || pos + len > n) {
      return fail(Errc::kProtocol, "symbols blob: symbol " + std::to_string(i) + " is malformed");
    }
    KernelSymbol s;
    s.type = type;
    s.addr = kind == 0 ? text_gva + value : value;
    s.name.assign(reinterpret_cast<const char*>(p + pos), len);
    pos += len;
    out.push_back(std::move(s));
  }
  if (n - pos != count * 4) return fail(Errc::kProtocol, "symbols blob: name index size");
  std::vector<uint32_t> by_name(count);
  for (uint64_t i = 0; i < count; ++i)
    by_name[i] = static_cast<uint32_t>(get_le(p + pos + 4 * i, 4));
  return Symbols::from_indexed(std::move(out), std::move(by_name));
}

uint64_t unix_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

std::string default_profile_cache_path() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    return std::string(x) + "/glassbox/profiles.sqlite";
  }
  if (const char* h = std::getenv("HOME"); h && *h) {
    return std::string(h) + "/.cache/glassbox/profiles.sqlite";
  }
  return "/tmp/glassbox-profiles.sqlite";
}

Result<std::unique_ptr<ProfileCache>> ProfileCache::open(const std::string& path) {
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    auto e = fail(Errc::kIo, "profile cache " + path + ": " +
                                 (db ? sqlite3_errmsg(db) : std::string("cannot open")));
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<ProfileCache> cache(new ProfileCache(db, path));
  sqlite3_busy_timeout(db, 2000);
  char* err = nullptr;
  const char* schema =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE IF NOT EXISTS profiles(build_id TEXT PRIMARY KEY, release TEXT NOT NULL,"
      " format INTEGER NOT NULL, offsets BLOB NOT NULL, symbols BLOB NOT NULL,"
      " created_unix_ns INTEGER NOT NULL);";
  if (sqlite3_exec(db, schema, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown";
    sqlite3_free(err);
    return fail(Errc::kIo, "profile cache " + path + ": " + m);
  }
  return cache;
}

ProfileCache::~ProfileCache() { sqlite3_close(db_); }

Result<std::optional<CachedProfile>> ProfileCache::lookup(const std::string& build_id,
                                                          const std::string& release,
                                                          uint64_t text_gva) {
  Stmt q(db_,
         "SELECT offsets, symbols FROM profiles WHERE build_id=?1 AND release=?2 AND format=?3");
  if (!q.s) return db_error(db_, path_, "prepare lookup");
  sqlite3_bind_text(q.s, 1, build_id.data(), static_cast<int>(build_id.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(q.s, 2, release.data(), static_cast<int>(release.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(q.s, 3, kFormat);
  const int rc = sqlite3_step(q.s);
  if (rc == SQLITE_DONE) return std::optional<CachedProfile>();
  if (rc != SQLITE_ROW) return db_error(db_, path_, "lookup " + build_id);
  const auto where = "profile cache " + path_ + ": entry " + build_id + ": ";
  const auto* off = static_cast<const uint8_t*>(sqlite3_column_blob(q.s, 0));
  const auto off_n = static_cast<uint64_t>(sqlite3_column_bytes(q.s, 0));
  if (!off || off_n != sizeof(KernelOffsets)) {
    return fail(Errc::kProtocol, where + "offsets blob has the wrong size");
  }
  CachedProfile c;
  c.release = release;
  std::memcpy(&c.offsets, off, sizeof c.offsets);
  const auto* sym = static_cast<const uint8_t*>(sqlite3_column_blob(q.s, 1));
  const auto sym_n = static_cast<uint64_t>(sqlite3_column_bytes(q.s, 1));
  if (!sym || sym_n > kMaxCachedSymbolsBytes) {
    return fail(Errc::kProtocol, where + "symbols blob missing or too large");
  }
  auto symbols = decode_symbols(sym, sym_n, text_gva);
  if (!symbols) return fail(Errc::kProtocol, where + symbols.error().message);
  c.symbols = std::move(*symbols);
  return std::optional<CachedProfile>(std::move(c));
}

Result<void> ProfileCache::store(const std::string& build_id, const std::string& release,
                                 const KernelOffsets& offsets, const Symbols& symbols,
                                 uint64_t text_gva) {
  if (build_id.empty()) return fail(Errc::kInvalidArgument, "profile cache: empty build id");
  const auto blob = encode_symbols(symbols, text_gva);
  Stmt q(db_,
         "INSERT OR REPLACE INTO profiles(build_id, release, format, offsets, symbols,"
         " created_unix_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  if (!q.s) return db_error(db_, path_, "prepare store");
  sqlite3_bind_text(q.s, 1, build_id.data(), static_cast<int>(build_id.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(q.s, 2, release.data(), static_cast<int>(release.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(q.s, 3, kFormat);
  sqlite3_bind_blob(q.s, 4, &offsets, sizeof offsets, SQLITE_TRANSIENT);
  sqlite3_bind_blob64(q.s, 5, blob.data(), blob.size(), SQLITE_TRANSIENT);
  sqlite3_bind_int64(q.s, 6, static_cast<int64_t>(unix_ns()));
  if (sqlite3_step(q.s) != SQLITE_DONE) return db_error(db_, path_, "store " + build_id);
  return {};
}

Result<uint64_t> ProfileCache::size() {
  Stmt q(db_, "SELECT COUNT(*) FROM profiles");
  if (!q.s || sqlite3_step(q.s) != SQLITE_ROW) return db_error(db_, path_, "count");
  return static_cast<uint64_t>(sqlite3_column_int64(q.s, 0));
}

}  // namespace glassbox::semantic_db
