#include "services/pattern_miner/miner.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>

namespace glassbox::pattern_miner {
namespace {

constexpr uint32_t kMaxVcpus = 1024;

// A prepared statement, finalized on scope exit.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s, nullptr); }
  ~Stmt() { sqlite3_finalize(s); }
  void reset() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
};

tl::unexpected<Error> db_error(sqlite3* db, const std::string& what) {
  return fail(Errc::kIo, "pattern-miner db: " + what + ": " + sqlite3_errmsg(db));
}

}  // namespace

MinerCore::MinerCore(MinerOptions options)
    : options_(options),
      blocks_(options.top_k),
      cfg_(std::make_unique<Cfg>(options.cfg)),
      net_(std::make_unique<HotTraceSelector>(NetOptions{options.trace_threshold})) {}

void MinerCore::begin_generation(uint64_t generation) {
  if (generation == generation_ && stats_.generations > 0) return;
  generation_ = generation;
  ++stats_.generations;
  tb_pc_.clear();
  tb_size_.clear();
  tb_pending_.clear();
  tb_gpa_.clear();
  dirty_tbs_.clear();
  pending_edges_.clear();
  last_tb_.clear();
  info_by_pc_.clear();
  new_tbs_.clear();
  new_edges_.clear();
  blocks_ = SpaceSaving<uint64_t>(options_.top_k);
  cfg_ = std::make_unique<Cfg>(options_.cfg);
  net_ = std::make_unique<HotTraceSelector>(NetOptions{options_.trace_threshold});
}

void MinerCore::grow_tb_tables(uint32_t tb_id) {
  if (tb_id < tb_pc_.size()) return;
  const size_t n = std::min<size_t>(kMaxTbIds, std::max<size_t>(tb_id + 1, tb_pc_.size() * 2));
  tb_pc_.resize(n, 0);
  tb_size_.resize(n, 0);
  tb_pending_.resize(n, 0);
  tb_gpa_.resize(n, kNoGpa);
}

void MinerCore::add_tb(uint32_t tb_id, uint64_t pc, uint64_t gpa, uint32_t size_bytes,
                       uint32_t n_insns, std::span<const uint8_t> bytes) {
  if (tb_id >= kMaxTbIds) {
    ++stats_.events_unknown_tb;
    return;
  }
  ++stats_.tb_records;
  grow_tb_tables(tb_id);
  tb_pc_[tb_id] = pc;
  tb_size_[tb_id] = size_bytes;
  tb_gpa_[tb_id] = gpa;
  TbRecord rec;
  rec.tb_id = tb_id;
  rec.pc = pc;
  rec.size_bytes = size_bytes;
  rec.n_insns = n_insns;
  rec.gpa = gpa;
  cfg_->add_tb(rec);
  std::vector<uint8_t> code(bytes.begin(), bytes.end());
  new_tbs_.emplace_back(tb_id, BlockInfo{pc, gpa, size_bytes, n_insns, code, {}});
  // The variant of this gpa: a retranslation updates it, a new gpa takes a free slot or
  // replaces the coldest variant (the hot one, the one that matters, is never the coldest).
  auto& slot = info_by_pc_[pc];
  auto& vs = slot.variants;
  auto it = std::find_if(vs.begin(), vs.end(), [&](const CodeVariant& v) { return v.gpa == gpa; });
  if (it == vs.end()) {
    if (vs.size() < kMaxVariantsPerPc) {
      it = vs.insert(vs.end(), CodeVariant{});
    } else {
      it = std::min_element(vs.begin(), vs.end(), [](const CodeVariant& a, const CodeVariant& b) {
        return a.executions < b.executions;
      });
      it->executions = 0;
    }
    it->gpa = gpa;
  }
  it->size_bytes = size_bytes;
  it->n_insns = n_insns;
  it->bytes = std::move(code);
  slot.latest = static_cast<size_t>(it - vs.begin());
}

void MinerCore::add_events(uint32_t vcpu_index, std::span<const uint32_t> tb_ids) {
  if (vcpu_index >= kMaxVcpus) return;
  if (last_tb_.size() <= vcpu_index) last_tb_.resize(vcpu_index + 1, kNoTbEvent);
  uint32_t prev = last_tb_[vcpu_index];
  for (uint32_t id : tb_ids) {
    if (id == kNoTbEvent) {  // a resync filler: the stream has a gap here
      prev = kNoTbEvent;
      net_->reset_vcpu(vcpu_index);
      continue;
    }
    ++stats_.events;
    if (id >= tb_pending_.size()) {
      if (id >= kMaxTbIds) {
        ++stats_.events_unknown_tb;
        prev = kNoTbEvent;
        continue;
      }
      grow_tb_tables(id);
    }
    if (tb_pending_[id]++ == 0) dirty_tbs_.push_back(id);
    if (prev != kNoTbEvent) {
      const uint64_t key = uint64_t{prev} << 32 | id;
      if (auto it = pending_edges_.find(key); it != pending_edges_.end()) {
        ++it->second;
      } else if (pending_edges_.size() < kMaxPendingEdges) {
        pending_edges_.emplace(key, 1);
      } else {
        ++stats_.edges_dropped;
      }
    }
    if (const uint64_t pc = tb_pc_[id]; pc != 0) {
      // Not Cfg::mark_entry() after a gap: a stream that resumes inside a loop body (a lost
      // batch, a miner restart) would make that block a root and the loop irreducible.
      net_->on_block(vcpu_index, pc);
    } else {
      net_->reset_vcpu(vcpu_index);  // an unnamed block: the next pc does not follow it
    }
    prev = id;
  }
  last_tb_[vcpu_index] = prev;
}

void MinerCore::add_count(uint32_t tb_id, uint64_t delta) {
  if (tb_id >= kMaxTbIds) {
    ++stats_.events_unknown_tb;
    return;
  }
  grow_tb_tables(tb_id);
  stats_.counted += delta;
  if (tb_pending_[tb_id] == 0 && delta) dirty_tbs_.push_back(tb_id);
  tb_pending_[tb_id] += delta;
}

void MinerCore::fold() {
  ++stats_.folds;
  std::vector<uint32_t> still_dirty;
  for (uint32_t id : dirty_tbs_) {
    const uint64_t n = tb_pending_[id];
    if (n == 0) continue;
    const uint64_t pc = tb_pc_[id];
    if (pc == 0) {  // its record has not arrived yet: keep it pending
      still_dirty.push_back(id);
      continue;
    }
    blocks_.add(pc, n);
    cfg_->add_exec(pc, n, tb_size_[id]);
    if (auto c = info_by_pc_.find(pc); c != info_by_pc_.end()) {
      for (auto& v : c->second.variants) {
        if (v.gpa == tb_gpa_[id]) {
          v.executions += n;
          break;
        }
      }
    }
    tb_pending_[id] = 0;
  }
  dirty_tbs_ = std::move(still_dirty);
  for (auto it = pending_edges_.begin(); it != pending_edges_.end();) {
    const uint32_t from = static_cast<uint32_t>(it->first >> 32);
    const uint32_t to = static_cast<uint32_t>(it->first);
    const uint64_t from_pc = from < tb_pc_.size() ? tb_pc_[from] : 0;
    const uint64_t to_pc = to < tb_pc_.size() ? tb_pc_[to] : 0;
    if (from_pc == 0 || to_pc == 0) {
      ++it;
      continue;
    }
    cfg_->add_edge(from_pc, to_pc, it->second, tb_size_[from]);
    new_edges_.emplace_back(from_pc, to_pc, it->second);
    it = pending_edges_.erase(it);
  }
}

std::optional<BlockInfo> MinerCore::info(uint64_t pc) const {
  auto it = info_by_pc_.find(pc);
  if (it == info_by_pc_.end() || it->second.variants.empty()) return std::nullopt;
  const auto& vs = it->second.variants;
  std::vector<size_t> order(vs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  const size_t latest = it->second.latest;
  // Hottest first; among equals (none run yet, say) the latest translation first.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (vs[a].executions != vs[b].executions) return vs[a].executions > vs[b].executions;
    return a == latest && b != latest;
  });
  const CodeVariant& best = vs[order.front()];
  BlockInfo out{pc, best.gpa, best.size_bytes, best.n_insns, best.bytes, {}};
  for (size_t i : order) {
    if (vs[i].gpa != kNoGpa) out.gpas.push_back(vs[i].gpa);
  }
  return out;
}

std::vector<HotEntry> MinerCore::top(size_t n) const {
  std::vector<HotEntry> out;
  for (const auto& e : blocks_.top(n)) {
    HotEntry h;
    if (auto i = info(e.key)) {
      h.info = std::move(*i);
    } else {
      h.info.pc = e.key;
    }
    h.count = e.count;
    h.error = e.error;
    out.push_back(std::move(h));
  }
  return out;
}

std::vector<Loop> MinerCore::loops(size_t n) const {
  const BlockGraph g = cfg_->build();
  LoopForest f = find_loops(g);
  if (f.loops.size() > n) {
    f.loops.resize(n);
    for (auto& l : f.loops) {
      if (l.parent >= static_cast<int32_t>(n)) l.parent = -1;  // its parent was cut off
    }
  }
  return std::move(f.loops);
}

std::vector<HotTrace> MinerCore::traces(size_t n) const {
  auto t = net_->traces();
  if (t.size() > n) t.resize(n);
  return t;
}

std::vector<std::pair<uint32_t, BlockInfo>> MinerCore::take_new_tbs() {
  return std::exchange(new_tbs_, {});
}
std::vector<std::tuple<uint64_t, uint64_t, uint64_t>> MinerCore::take_new_edges() {
  return std::exchange(new_edges_, {});
}

void MinerCore::restore_tb(uint32_t tb_id, const BlockInfo& info) {
  add_tb(tb_id, info.pc, info.gpa, info.size_bytes, info.n_insns, info.bytes);
  --stats_.tb_records;
  new_tbs_.clear();
}
void MinerCore::restore_block_count(uint64_t pc, uint64_t count) {
  blocks_.add(pc, count);
  if (auto i = info(pc)) cfg_->add_exec(pc, count, i->size_bytes);
}
void MinerCore::restore_edge(uint64_t from_pc, uint64_t to_pc, uint64_t count) {
  const auto i = info(from_pc);
  cfg_->add_edge(from_pc, to_pc, count, i ? i->size_bytes : kAnySize);
}

// ---- MinerStore ----

Result<std::unique_ptr<MinerStore>> MinerStore::open(const std::string& path) {
  std::error_code ec;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    auto e = fail(Errc::kIo, "pattern-miner db " + path + ": " +
                                 (db ? sqlite3_errmsg(db) : std::string("cannot open")));
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<MinerStore> s(new MinerStore(db));
  sqlite3_busy_timeout(db, 2000);
  const char* schema =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE IF NOT EXISTS tbs(generation INTEGER NOT NULL, tb_id INTEGER NOT NULL,"
      " pc INTEGER NOT NULL, gpa INTEGER, size INTEGER NOT NULL, n_insns INTEGER NOT NULL,"
      " bytes BLOB, PRIMARY KEY(generation, tb_id));"
      "CREATE TABLE IF NOT EXISTS blocks(generation INTEGER NOT NULL, pc INTEGER NOT NULL,"
      " count INTEGER NOT NULL, PRIMARY KEY(generation, pc));"
      "CREATE TABLE IF NOT EXISTS edges(generation INTEGER NOT NULL, from_pc INTEGER NOT NULL,"
      " to_pc INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY(generation, from_pc, to_pc));";
  char* err = nullptr;
  if (sqlite3_exec(db, schema, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "unknown";
    sqlite3_free(err);
    return fail(Errc::kIo, "pattern-miner db " + path + ": " + m);
  }
  return s;
}

MinerStore::~MinerStore() { sqlite3_close(db_); }

Result<void> MinerStore::save(MinerCore& core, size_t n) {
  const auto g = static_cast<int64_t>(core.generation());
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return db_error(db_, "begin");
  }
  {
    Stmt tb(db_,
            "INSERT OR REPLACE INTO tbs(generation, tb_id, pc, gpa, size, n_insns, bytes)"
            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    for (const auto& [id, info] : core.take_new_tbs()) {
      sqlite3_bind_int64(tb.s, 1, g);
      sqlite3_bind_int64(tb.s, 2, id);
      sqlite3_bind_int64(tb.s, 3, static_cast<int64_t>(info.pc));
      if (info.gpa == kNoGpa) {
        sqlite3_bind_null(tb.s, 4);
      } else {
        sqlite3_bind_int64(tb.s, 4, static_cast<int64_t>(info.gpa));
      }
      sqlite3_bind_int64(tb.s, 5, info.size_bytes);
      sqlite3_bind_int64(tb.s, 6, info.n_insns);
      sqlite3_bind_blob(tb.s, 7, info.bytes.data(), static_cast<int>(info.bytes.size()),
                        SQLITE_TRANSIENT);
      if (sqlite3_step(tb.s) != SQLITE_DONE) return db_error(db_, "insert tb");
      tb.reset();
    }
    Stmt edge(db_,
              "INSERT INTO edges(generation, from_pc, to_pc, count) VALUES(?1, ?2, ?3, ?4)"
              " ON CONFLICT(generation, from_pc, to_pc) DO UPDATE SET count = count + ?4");
    for (const auto& [from, to, count] : core.take_new_edges()) {
      sqlite3_bind_int64(edge.s, 1, g);
      sqlite3_bind_int64(edge.s, 2, static_cast<int64_t>(from));
      sqlite3_bind_int64(edge.s, 3, static_cast<int64_t>(to));
      sqlite3_bind_int64(edge.s, 4, static_cast<int64_t>(count));
      if (sqlite3_step(edge.s) != SQLITE_DONE) return db_error(db_, "upsert edge");
      edge.reset();
    }
    Stmt block(db_, "INSERT OR REPLACE INTO blocks(generation, pc, count) VALUES(?1, ?2, ?3)");
    for (const auto& e : core.top(n)) {
      sqlite3_bind_int64(block.s, 1, g);
      sqlite3_bind_int64(block.s, 2, static_cast<int64_t>(e.info.pc));
      sqlite3_bind_int64(block.s, 3, static_cast<int64_t>(e.count - e.error));  // a lower bound
      if (sqlite3_step(block.s) != SQLITE_DONE) return db_error(db_, "upsert block");
      block.reset();
    }
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return db_error(db_, "commit");
  }
  return {};
}

Result<bool> MinerStore::load(uint64_t g, MinerCore& core) {
  bool any = false;
  const auto gen = static_cast<int64_t>(g);
  {
    Stmt q(db_, "SELECT tb_id, pc, gpa, size, n_insns, bytes FROM tbs WHERE generation = ?1");
    sqlite3_bind_int64(q.s, 1, gen);
    int rc;
    while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
      BlockInfo info;
      const int64_t id = sqlite3_column_int64(q.s, 0);
      info.pc = static_cast<uint64_t>(sqlite3_column_int64(q.s, 1));
      info.gpa = sqlite3_column_type(q.s, 2) == SQLITE_NULL
                     ? kNoGpa
                     : static_cast<uint64_t>(sqlite3_column_int64(q.s, 2));
      info.size_bytes = static_cast<uint32_t>(sqlite3_column_int64(q.s, 3));
      info.n_insns = static_cast<uint32_t>(sqlite3_column_int64(q.s, 4));
      const auto* b = static_cast<const uint8_t*>(sqlite3_column_blob(q.s, 5));
      const int n = sqlite3_column_bytes(q.s, 5);
      if (b && n > 0 && n <= 65536) info.bytes.assign(b, b + n);
      if (id < 0 || id >= kMaxTbIds) continue;  // a damaged row: skip it
      core.restore_tb(static_cast<uint32_t>(id), info);
      any = true;
    }
    if (rc != SQLITE_DONE) return db_error(db_, "load tbs");
  }
  {
    Stmt q(db_, "SELECT pc, count FROM blocks WHERE generation = ?1");
    sqlite3_bind_int64(q.s, 1, gen);
    int rc;
    while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
      const int64_t count = sqlite3_column_int64(q.s, 1);
      if (count > 0) {
        core.restore_block_count(static_cast<uint64_t>(sqlite3_column_int64(q.s, 0)),
                                 static_cast<uint64_t>(count));
      }
      any = true;
    }
    if (rc != SQLITE_DONE) return db_error(db_, "load blocks");
  }
  {
    Stmt q(db_, "SELECT from_pc, to_pc, count FROM edges WHERE generation = ?1");
    sqlite3_bind_int64(q.s, 1, gen);
    int rc;
    while ((rc = sqlite3_step(q.s)) == SQLITE_ROW) {
      const int64_t count = sqlite3_column_int64(q.s, 2);
      if (count > 0) {
        core.restore_edge(static_cast<uint64_t>(sqlite3_column_int64(q.s, 0)),
                          static_cast<uint64_t>(sqlite3_column_int64(q.s, 1)),
                          static_cast<uint64_t>(count));
      }
    }
    if (rc != SQLITE_DONE) return db_error(db_, "load edges");
  }
  return any;
}

}  // namespace glassbox::pattern_miner
