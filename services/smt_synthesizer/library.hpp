// The microcode library: every block smt-synthesizer has finished, keyed by xxh3-64 of its
// bytes, in SQLite (WAL), and where each was seen hot (pc). Resumed at start: a block in the
// library is never synthesized again.
//
// Thread-safety: one thread (the service's).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shared/result.hpp"

struct sqlite3;

namespace glassbox::smt {

struct LibraryEntry {
  uint64_t bytes_hash = 0;
  std::vector<uint8_t> bytes;  // the block's bytes as received
  uint64_t first_pc = 0;
  std::string status, reason, method, program_json, cegis;
  std::vector<std::string> undefined_flags;
  uint32_t n_x86_insns = 0, n_pixel_insns = 0, n_direct_insns = 0;
  double synth_ms = 0, verify_ms = 0;
  int64_t created_unix_ns = 0;
};

class Library {
 public:
  // Opens or creates the file. Errors: kIo naming the path and SQLite's message.
  static Result<std::unique_ptr<Library>> open(const std::string& path);
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  Result<void> put(const LibraryEntry& e);  // insert or replace. Errors: kIo.
  Result<void> seen(uint64_t pc, uint64_t bytes_hash, int64_t unix_ns);  // Errors: kIo.
  Result<std::optional<LibraryEntry>> get(uint64_t bytes_hash);
  // The block last seen at `pc` (nullopt when none).
  Result<std::optional<LibraryEntry>> at_pc(uint64_t pc);
  // Newest first, at most `limit`, each with the pc it was last seen at in first_pc.
  Result<std::vector<LibraryEntry>> list(uint32_t limit);
  Result<uint64_t> count();

 private:
  explicit Library(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace glassbox::smt
