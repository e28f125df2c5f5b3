#include "services/semantic_db/store.hpp"

#include <sqlite3.h>

#include <set>
#include <utility>

namespace glassbox::semantic_db {
namespace {

constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS boots(
  boot_id INTEGER PRIMARY KEY AUTOINCREMENT,
  kernel_release TEXT NOT NULL,
  kaslr_slide INTEGER NOT NULL,
  first_seen_ns INTEGER NOT NULL,
  last_seen_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS processes(
  boot_id INTEGER NOT NULL REFERENCES boots(boot_id),
  pid INTEGER NOT NULL,
  start_time_ns INTEGER NOT NULL,
  tgid INTEGER NOT NULL,
  ppid INTEGER NOT NULL,
  comm TEXT NOT NULL,
  uid INTEGER NOT NULL,
  state TEXT NOT NULL,
  first_seen_ns INTEGER NOT NULL,
  last_seen_ns INTEGER NOT NULL,
  exited_ns INTEGER,
  PRIMARY KEY(boot_id, pid, start_time_ns));
CREATE TABLE IF NOT EXISTS modules(
  boot_id INTEGER NOT NULL REFERENCES boots(boot_id),
  name TEXT NOT NULL,
  base INTEGER NOT NULL,
  size INTEGER NOT NULL,
  first_seen_ns INTEGER NOT NULL,
  last_seen_ns INTEGER NOT NULL,
  unloaded_ns INTEGER,
  PRIMARY KEY(boot_id, name, base));
CREATE INDEX IF NOT EXISTS processes_alive ON processes(boot_id, exited_ns);
)sql";

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return s_; }
  void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_null(int i) { sqlite3_bind_null(s_, i); }
  int step() { return sqlite3_step(s_); }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  int64_t i64(int col) { return sqlite3_column_int64(s_, col); }
  std::string text(int col) {
    const auto* p = sqlite3_column_text(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  bool is_null(int col) { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

tl::unexpected<Error> db_error(sqlite3* db, const std::string& what) {
  return fail(Errc::kIo, what + ": " + sqlite3_errmsg(db));
}

// Rolls back unless committed.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    ok_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Transaction() {
    if (ok_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  bool ok() const { return ok_; }
  bool commit() {
    done_ = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK;
    return done_;
  }

 private:
  sqlite3* db_;
  bool ok_ = false;
  bool done_ = false;
};

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    auto e =
        fail(Errc::kIo, "open database " + path + ": " + (db ? sqlite3_errmsg(db) : "no memory"));
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                          "PRAGMA foreign_keys=ON", kSchema}) {
    if (auto r = store->exec(sql); !r) {
      return fail(Errc::kIo, "database " + path + ": " + r.error().message);
    }
  }
  Stmt get(db, "SELECT value FROM meta WHERE key='schema_version'");
  if (!get.ok()) return db_error(db, "database " + path);
  if (get.step() == SQLITE_ROW) {
    const int v = std::atoi(get.text(0).c_str());
    if (v > kSchemaVersion) {
      return fail(Errc::kIo, "database " + path + " has schema version " + std::to_string(v) +
                                 " (this glassbox knows " + std::to_string(kSchemaVersion) + ")");
    }
  } else {
    GB_TRY(store->exec("INSERT INTO meta(key, value) VALUES('schema_version', '1')"));
  }
  return store;
}

Store::~Store() { sqlite3_close(db_); }

Result<void> Store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return fail(Errc::kIo, msg);
  }
  return {};
}

Result<int64_t> Store::boot_for(const std::string& release, uint64_t kaslr_slide, uint64_t now_ns) {
  Stmt last(db_,
            "SELECT boot_id, kernel_release, kaslr_slide FROM boots ORDER BY boot_id DESC LIMIT 1");
  if (!last.ok()) return db_error(db_, "boots");
  if (last.step() == SQLITE_ROW && last.text(1) == release &&
      static_cast<uint64_t>(last.i64(2)) == kaslr_slide) {
    const int64_t id = last.i64(0);
    Stmt touch(db_, "UPDATE boots SET last_seen_ns=? WHERE boot_id=?");
    touch.bind(1, static_cast<int64_t>(now_ns));
    touch.bind(2, id);
    if (touch.step() != SQLITE_DONE) return db_error(db_, "boots");
    return id;
  }
  Stmt add(db_,
           "INSERT INTO boots(kernel_release, kaslr_slide, first_seen_ns, last_seen_ns) "
           "VALUES(?,?,?,?)");
  add.bind(1, release);
  add.bind(2, static_cast<int64_t>(kaslr_slide));
  add.bind(3, static_cast<int64_t>(now_ns));
  add.bind(4, static_cast<int64_t>(now_ns));
  if (add.step() != SQLITE_DONE) return db_error(db_, "boots");
  return sqlite3_last_insert_rowid(db_);
}

Result<ProcessDiff> Store::observe_processes(int64_t boot_id,
                                             std::span<const ProcessRecord> processes,
                                             uint64_t now_ns) {
  Transaction tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  ProcessDiff diff;
  std::set<std::pair<int32_t, uint64_t>> present;
  Stmt touch(db_,
             "UPDATE processes SET last_seen_ns=?, tgid=?, ppid=?, comm=?, uid=?, state=? "
             "WHERE boot_id=? AND pid=? AND start_time_ns=? AND exited_ns IS NULL");
  Stmt insert(db_,
              "INSERT OR IGNORE INTO processes(boot_id, pid, start_time_ns, tgid, ppid, comm, uid, "
              "state, first_seen_ns, last_seen_ns) VALUES(?,?,?,?,?,?,?,?,?,?)");
  if (!touch.ok() || !insert.ok()) return db_error(db_, "processes");
  for (const auto& p : processes) {
    if (!present.emplace(p.pid, p.start_time_ns).second) continue;
    touch.bind(1, static_cast<int64_t>(now_ns));
    touch.bind(2, p.tgid);
    touch.bind(3, p.ppid);
    touch.bind(4, p.comm);
    touch.bind(5, p.uid);
    touch.bind(6, p.state);
    touch.bind(7, boot_id);
    touch.bind(8, p.pid);
    touch.bind(9, static_cast<int64_t>(p.start_time_ns));
    if (touch.step() != SQLITE_DONE) return db_error(db_, "processes");
    const bool known = sqlite3_changes(db_) > 0;
    touch.reset();
    if (known) continue;
    insert.bind(1, boot_id);
    insert.bind(2, p.pid);
    insert.bind(3, static_cast<int64_t>(p.start_time_ns));
    insert.bind(4, p.tgid);
    insert.bind(5, p.ppid);
    insert.bind(6, p.comm);
    insert.bind(7, p.uid);
    insert.bind(8, p.state);
    insert.bind(9, static_cast<int64_t>(now_ns));
    insert.bind(10, static_cast<int64_t>(now_ns));
    if (insert.step() != SQLITE_DONE) return db_error(db_, "processes");
    if (sqlite3_changes(db_) > 0) diff.born.push_back(p);
    insert.reset();
  }
  // Everything alive in the store but absent from this observation has exited.
  auto alive = this->processes(boot_id, false);
  if (!alive) return tl::unexpected(alive.error());
  Stmt gone(db_, "UPDATE processes SET exited_ns=? WHERE boot_id=? AND pid=? AND start_time_ns=?");
  if (!gone.ok()) return db_error(db_, "processes");
  for (auto& row : *alive) {
    if (present.count({row.pid, row.start_time_ns})) continue;
    gone.bind(1, static_cast<int64_t>(now_ns));
    gone.bind(2, boot_id);
    gone.bind(3, row.pid);
    gone.bind(4, static_cast<int64_t>(row.start_time_ns));
    if (gone.step() != SQLITE_DONE) return db_error(db_, "processes");
    gone.reset();
    row.exited_ns = now_ns;
    diff.exited.push_back(std::move(row));
  }
  if (!tx.commit()) return db_error(db_, "commit");
  return diff;
}

Result<ModuleDiff> Store::observe_modules(int64_t boot_id, std::span<const ModuleRecord> modules,
                                          uint64_t now_ns) {
  Transaction tx(db_);
  if (!tx.ok()) return db_error(db_, "begin");
  ModuleDiff diff;
  std::set<std::pair<std::string, uint64_t>> present;
  Stmt touch(db_,
             "UPDATE modules SET last_seen_ns=?, size=? WHERE boot_id=? AND name=? AND base=? "
             "AND unloaded_ns IS NULL");
  Stmt insert(db_,
              "INSERT OR IGNORE INTO modules(boot_id, name, base, size, first_seen_ns, "
              "last_seen_ns) VALUES(?,?,?,?,?,?)");
  if (!touch.ok() || !insert.ok()) return db_error(db_, "modules");
  for (const auto& m : modules) {
    if (!present.emplace(m.name, m.base).second) continue;
    touch.bind(1, static_cast<int64_t>(now_ns));
    touch.bind(2, static_cast<int64_t>(m.size_bytes));
    touch.bind(3, boot_id);
    touch.bind(4, m.name);
    touch.bind(5, static_cast<int64_t>(m.base));
    if (touch.step() != SQLITE_DONE) return db_error(db_, "modules");
    const bool known = sqlite3_changes(db_) > 0;
    touch.reset();
    if (known) continue;
    insert.bind(1, boot_id);
    insert.bind(2, m.name);
    insert.bind(3, static_cast<int64_t>(m.base));
    insert.bind(4, static_cast<int64_t>(m.size_bytes));
    insert.bind(5, static_cast<int64_t>(now_ns));
    insert.bind(6, static_cast<int64_t>(now_ns));
    if (insert.step() != SQLITE_DONE) return db_error(db_, "modules");
    if (sqlite3_changes(db_) > 0) diff.loaded.push_back(m);
    insert.reset();
  }
  auto alive = this->modules(boot_id, false);
  if (!alive) return tl::unexpected(alive.error());
  Stmt gone(db_, "UPDATE modules SET unloaded_ns=? WHERE boot_id=? AND name=? AND base=?");
  if (!gone.ok()) return db_error(db_, "modules");
  for (auto& row : *alive) {
    if (present.count({row.name, row.base})) continue;
    gone.bind(1, static_cast<int64_t>(now_ns));
    gone.bind(2, boot_id);
    gone.bind(3, row.name);
    gone.bind(4, static_cast<int64_t>(row.base));
    if (gone.step() != SQLITE_DONE) return db_error(db_, "modules");
    gone.reset();
    row.unloaded_ns = now_ns;
    diff.unloaded.push_back(std::move(row));
  }
  if (!tx.commit()) return db_error(db_, "commit");
  return diff;
}

Result<std::vector<ProcessRow>> Store::processes(std::optional<int64_t> boot_id,
                                                 bool include_gone) {
  std::string sql =
      "SELECT boot_id, pid, start_time_ns, tgid, ppid, comm, uid, state, first_seen_ns, "
      "last_seen_ns, exited_ns FROM processes WHERE 1=1";
  if (boot_id) sql += " AND boot_id=?1";
  if (!include_gone) sql += " AND exited_ns IS NULL";
  sql += " ORDER BY boot_id, pid, start_time_ns";
  Stmt q(db_, sql.c_str());
  if (!q.ok()) return db_error(db_, "processes");
  if (boot_id) q.bind(1, *boot_id);
  std::vector<ProcessRow> rows;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    ProcessRow r;
    r.boot_id = q.i64(0);
    r.pid = static_cast<int32_t>(q.i64(1));
    r.start_time_ns = static_cast<uint64_t>(q.i64(2));
    r.tgid = static_cast<int32_t>(q.i64(3));
    r.ppid = static_cast<int32_t>(q.i64(4));
    r.comm = q.text(5);
    r.uid = static_cast<uint32_t>(q.i64(6));
    r.state = q.text(7);
    r.first_seen_ns = static_cast<uint64_t>(q.i64(8));
    r.last_seen_ns = static_cast<uint64_t>(q.i64(9));
    if (!q.is_null(10)) r.exited_ns = static_cast<uint64_t>(q.i64(10));
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return db_error(db_, "processes");
  return rows;
}

Result<std::vector<ModuleRow>> Store::modules(std::optional<int64_t> boot_id, bool include_gone) {
  std::string sql =
      "SELECT boot_id, name, base, size, first_seen_ns, last_seen_ns, unloaded_ns FROM modules "
      "WHERE 1=1";
  if (boot_id) sql += " AND boot_id=?1";
  if (!include_gone) sql += " AND unloaded_ns IS NULL";
  sql += " ORDER BY boot_id, name, base";
  Stmt q(db_, sql.c_str());
  if (!q.ok()) return db_error(db_, "modules");
  if (boot_id) q.bind(1, *boot_id);
  std::vector<ModuleRow> rows;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    ModuleRow r;
    r.boot_id = q.i64(0);
    r.name = q.text(1);
    r.base = static_cast<uint64_t>(q.i64(2));
    r.size_bytes = static_cast<uint64_t>(q.i64(3));
    r.first_seen_ns = static_cast<uint64_t>(q.i64(4));
    r.last_seen_ns = static_cast<uint64_t>(q.i64(5));
    if (!q.is_null(6)) r.unloaded_ns = static_cast<uint64_t>(q.i64(6));
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return db_error(db_, "modules");
  return rows;
}

}  // namespace glassbox::semantic_db
