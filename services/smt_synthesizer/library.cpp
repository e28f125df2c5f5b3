#include "services/smt_synthesizer/library.hpp"

#include <sqlite3.h>

#include <filesystem>
#include <nlohmann/json.hpp>

namespace glassbox::smt {
namespace {

struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s, nullptr); }
  ~Stmt() { sqlite3_finalize(s); }
};

tl::unexpected<Error> db_error(sqlite3* db, const std::string& what) {
  return fail(Errc::kIo, "microcode library: " + what + ": " + sqlite3_errmsg(db));
}

std::string text(sqlite3_stmt* s, int col) {
  const auto* t = sqlite3_column_text(s, col);
  return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
}

constexpr const char* kColumns =
    "l.hash, l.bytes, l.first_pc, l.status, l.reason, l.method, l.program_json, l.cegis,"
    " l.undefined_flags, l.n_x86, l.n_pixel, l.n_direct, l.synth_ms, l.verify_ms, l.created_ns";

LibraryEntry read_row(sqlite3_stmt* s) {
  LibraryEntry e;
  e.bytes_hash = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
  const auto* b = static_cast<const uint8_t*>(sqlite3_column_blob(s, 1));
  const int n = sqlite3_column_bytes(s, 1);
  if (b && n > 0 && n <= 65536) e.bytes.assign(b, b + n);
  e.first_pc = static_cast<uint64_t>(sqlite3_column_int64(s, 2));
  e.status = text(s, 3);
  e.reason = text(s, 4);
  e.method = text(s, 5);
  e.program_json = text(s, 6);
  e.cegis = text(s, 7);
  auto flags = nlohmann::json::parse(text(s, 8), nullptr, false);
  if (flags.is_array()) {
    for (const auto& f : flags) {
      if (f.is_string()) e.undefined_flags.push_back(f.get<std::string>());
    }
  }
  e.n_x86_insns = static_cast<uint32_t>(sqlite3_column_int64(s, 9));
  e.n_pixel_insns = static_cast<uint32_t>(sqlite3_column_int64(s, 10));
  e.n_direct_insns = static_cast<uint32_t>(sqlite3_column_int64(s, 11));
  e.synth_ms = sqlite3_column_double(s, 12);
  e.verify_ms = sqlite3_column_double(s, 13);
  e.created_unix_ns = sqlite3_column_int64(s, 14);
  return e;
}

}  // namespace

Result<std::unique_ptr<Library>> Library::open(const std::string& path) {
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    auto e = fail(Errc::kIo, "microcode library " + path + ": " +
                                 (db ? sqlite3_errmsg(db) : std::string("cannot open")));
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<Library> lib(new Library(db));
  sqlite3_busy_timeout(db, 2000);
  const char* schema =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE IF NOT EXISTS library(hash INTEGER PRIMARY KEY, bytes BLOB NOT NULL,"
      " first_pc INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT, method TEXT,"
      " program_json TEXT, cegis TEXT, undefined_flags TEXT, n_x86 INTEGER, n_pixel INTEGER,"
      " n_direct INTEGER, synth_ms REAL, verify_ms REAL, created_ns INTEGER);"
      "CREATE TABLE IF NOT EXISTS sightings(pc INTEGER NOT NULL, hash INTEGER NOT NULL,"
      " last_seen_ns INTEGER NOT NULL, PRIMARY KEY(pc, hash));";
  char* err = nullptr;
  if (sqlite3_exec(db, schema, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown";
    sqlite3_free(err);
    return fail(Errc::kIo, "microcode library " + path + ": " + m);
  }
  return lib;
}

Library::~Library() { sqlite3_close(db_); }

Result<void> Library::put(const LibraryEntry& e) {
  Stmt q(db_,
         "INSERT OR REPLACE INTO library(hash, bytes, first_pc, status, reason, method,"
         " program_json, cegis, undefined_flags, n_x86, n_pixel, n_direct, synth_ms, verify_ms,"
         " created_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
  sqlite3_bind_int64(q.s, 1, static_cast<int64_t>(e.bytes_hash));
  sqlite3_bind_blob(q.s, 2, e.bytes.data(), static_cast<int>(e.bytes.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(q.s, 3, static_cast<int64_t>(e.first_pc));
  sqlite3_bind_text(q.s, 4, e.status.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q.s, 5, e.reason.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q.s, 6, e.method.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q.s, 7, e.program_json.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(q.s, 8, e.cegis.c_str(), -1, SQLITE_TRANSIENT);
  const std::string flags = nlohmann::json(e.undefined_flags).dump();
  sqlite3_bind_text(q.s, 9, flags.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(q.s, 10, e.n_x86_insns);
  sqlite3_bind_int64(q.s, 11, e.n_pixel_insns);
  sqlite3_bind_int64(q.s, 12, e.n_direct_insns);
  sqlite3_bind_double(q.s, 13, e.synth_ms);
  sqlite3_bind_double(q.s, 14, e.verify_ms);
  sqlite3_bind_int64(q.s, 15, e.created_unix_ns);
  if (sqlite3_step(q.s) != SQLITE_DONE) return db_error(db_, "insert block");
  return {};
}

Result<void> Library::seen(uint64_t pc, uint64_t bytes_hash, int64_t unix_ns) {
  Stmt q(db_,
         "INSERT INTO sightings(pc, hash, last_seen_ns) VALUES(?1, ?2, ?3)"
         " ON CONFLICT(pc, hash) DO UPDATE SET last_seen_ns = ?3");
  sqlite3_bind_int64(q.s, 1, static_cast<int64_t>(pc));
  sqlite3_bind_int64(q.s, 2, static_cast<int64_t>(bytes_hash));
  sqlite3_bind_int64(q.s, 3, unix_ns);
  if (sqlite3_step(q.s) != SQLITE_DONE) return db_error(db_, "record sighting");
  return {};
}

Result<std::optional<LibraryEntry>> Library::get(uint64_t bytes_hash) {
  const std::string sql = std::string("SELECT ") + kColumns + " FROM library l WHERE l.hash = ?1";
  Stmt q(db_, sql.c_str());
  sqlite3_bind_int64(q.s, 1, static_cast<int64_t>(bytes_hash));
  const int rc = sqlite3_step(q.s);
  if (rc == SQLITE_ROW) return read_row(q.s);
  if (rc != SQLITE_DONE) return db_error(db_, "get block");
  return std::nullopt;
}

Result<std::optional<LibraryEntry>> Library::at_pc(uint64_t pc) {
  const std::string sql = std::string("SELECT ") + kColumns +
                          " FROM sightings s JOIN library l ON l.hash = s.hash WHERE s.pc = ?1"
                          " ORDER BY s.last_seen_ns DESC LIMIT 1";
  Stmt q(db_, sql.c_str());
  sqlite3_bind_int64(q.s, 1, static_cast<int64_t>(pc));
  const int rc = sqlite3_step(q.s);
  if (rc == SQLITE_ROW) {
    LibraryEntry e = read_row(q.s);
    e.first_pc = pc;
    return e;
  }
  if (rc != SQLITE_DONE) return db_error(db_, "block at pc");
  return std::nullopt;
}

Result<std::vector<LibraryEntry>> Library::list(uint32_t limit) {
  const std::string sql = std::string("SELECT ") + kColumns +
                          ", s.pc FROM sightings s JOIN library l ON l.hash = s.hash"
                          " ORDER BY s.last_seen_ns DESC LIMIT ?1";
  Stmt q(db_, sql.c_str());
  sqlite3_bind_int64(q.s, 1, limit);
  std::vector<LibraryEntry> out;
  int rc;
  while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
    LibraryEntry e = read_row(q.s);
    e.first_pc = static_cast<uint64_t>(sqlite3_column_int64(q.s, 15));
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return db_error(db_, "list blocks");
  return out;
}

Result<uint64_t> Library::count() {
  Stmt q(db_, "SELECT COUNT(*) FROM library");
  if (sqlite3_step(q.s) != SQLITE_ROW) return db_error(db_, "count");
  return static_cast<uint64_t>(sqlite3_column_int64(q.s, 0));
}

}  // namespace glassbox::smt
