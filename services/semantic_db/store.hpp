// semantic-db's store: what the guest kernel knew, over time, in SQLite (WAL).
//
// Tables (created on open, schema version in `meta`):
//   boots(boot_id, kernel_release, kaslr_slide, first_seen_ns, last_seen_ns)
//   processes(boot_id, pid, start_time_ns, tgid, ppid, comm, uid, state,
//             first_seen_ns, last_seen_ns, exited_ns)        -- identity: (boot, pid, start time)
//   modules(boot_id, name, base, size, first_seen_ns, last_seen_ns, unloaded_ns)
// A process is "born" when an observation first contains it and "exited" when an observation
// no longer does (exited_ns set, the row kept), so births and exits are queryable afterwards
// and a restarted semantic-db resumes from the file. pid reuse is a new row (new start time).
// Times are host unix ns of the observation.
//
// Thread-safety: one Store per thread (SQLite connection, default serialized mode); several
// processes may read the file while one writes (WAL).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "shared/result.hpp"

struct sqlite3;

namespace glassbox::semantic_db {

struct ProcessRecord {
  int32_t pid = 0;
  int32_t tgid = 0;
  int32_t ppid = 0;
  std::string comm;  // at most 16 bytes (TASK_COMM_LEN), printable
  uint32_t uid = 0;
  std::string state;           // "R", "S", "D", "T", "Z", "I", ...
  uint64_t start_time_ns = 0;  // task start_time (ns since boot): with pid, the identity
  int32_t threads = 0;         // signal->nr_threads at the walk (not stored in the history)
};

struct ProcessRow : ProcessRecord {
  int64_t boot_id = 0;
  uint64_t first_seen_ns = 0;
  uint64_t last_seen_ns = 0;
  std::optional<uint64_t> exited_ns;
};

struct ModuleRecord {
  std::string name;
  uint64_t base = 0;  // gva of the module's core
  uint64_t size_bytes = 0;
};

struct ModuleRow : ModuleRecord {
  int64_t boot_id = 0;
  uint64_t first_seen_ns = 0;
  uint64_t last_seen_ns = 0;
  std::optional<uint64_t> unloaded_ns;
};

struct ProcessDiff {
  std::vector<ProcessRecord> born;
  std::vector<ProcessRow> exited;
};

struct ModuleDiff {
  std::vector<ModuleRecord> loaded;
  std::vector<ModuleRow> unloaded;
};

class Store {
 public:
  // Opens (creating) the database at `path` in WAL mode. ":memory:" works for tests.
  // Errors: kIo naming the path and SQLite's message (unwritable dir, not a database,
  // a newer schema version).
  static Result<std::unique_ptr<Store>> open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The boot a kernel (release + KASLR slide) belongs to: the latest boot if it matches,
  // else a new one. A new KASLR slide means a new boot.
  Result<int64_t> boot_for(const std::string& release, uint64_t kaslr_slide, uint64_t now_ns);

  // Records one complete process list of `boot_id`: updates last_seen of the present,
  // inserts the new (born), marks the missing as exited. One transaction. Duplicate
  // (pid, start_time) entries in `processes` are ignored after the first.
  Result<ProcessDiff> observe_processes(int64_t boot_id, std::span<const ProcessRecord> processes,
                                        uint64_t now_ns);
  // The same for modules (identity: name + base).
  Result<ModuleDiff> observe_modules(int64_t boot_id, std::span<const ModuleRecord> modules,
                                     uint64_t now_ns);

  // Rows of `boot_id` (all boots when nullopt), alive only unless `include_gone`, by pid/name.
  Result<std::vector<ProcessRow>> processes(std::optional<int64_t> boot_id, bool include_gone);
  Result<std::vector<ModuleRow>> modules(std::optional<int64_t> boot_id, bool include_gone);

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Result<void> exec(const char* sql);
  sqlite3* db_;
};

}  // namespace glassbox::semantic_db
