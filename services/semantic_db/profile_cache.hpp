// The profile cache: what build_profile() learned about a kernel build (the BTF-resolved
// KernelOffsets and the whole kallsyms table), kept per kernel build id so that the next
// snapshot, dump or boot of the same build skips the BTF scan and parse (~65 ms on the
// reference guest) and the kallsyms decode (~40 ms).
//
// Key: VMCOREINFO's BUILD-ID (the GNU build id of vmlinux, lib/buildid.c) plus the release;
// a kernel without BUILD-ID in VMCOREINFO (before 5.9) is never cached. Symbols are stored
// relative to _text, so one entry serves every KASLR slide; symbols below the kernel half
// (absolute per-CPU offsets) are stored as they are.
// Storage: one SQLite file (default $XDG_CACHE_HOME/glassbox/profiles.sqlite, else
// ~/.cache/glassbox/profiles.sqlite), table profiles(build_id, release, format, offsets BLOB,
// symbols BLOB, created_unix_ns). `format` changes whenever KernelOffsets' layout does: an
// entry of another format is ignored and rebuilt. A blob that does not decode is an error
// naming the entry (the caller rebuilds), never a crash: the file is input like any other.
//
// Thread-safety: one ProfileCache per thread; several processes may share the file (SQLite
// locking, WAL).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "services/semantic_db/kallsyms.hpp"
#include "services/semantic_db/kernel_types.hpp"
#include "shared/result.hpp"

struct sqlite3;

namespace glassbox::semantic_db {

// Bumped when the meaning of a stored field changes; the layout size is folded in too.
inline constexpr uint32_t kProfileCacheFormatVersion = 2;

// Largest symbols blob accepted (the reference kernel's is ~3 MiB).
inline constexpr uint64_t kMaxCachedSymbolsBytes = 256ull << 20;

// A cached profile, relocated for one boot.
struct CachedProfile {
  std::string release;
  KernelOffsets offsets;
  Symbols symbols;  // run-time addresses for the _text given to lookup()
};

class ProfileCache {
 public:
  // Opens (creating the file and its directory) the cache at `path`.
  // Errors: kIo naming the path and SQLite's message.
  [[nodiscard]] static Result<std::unique_ptr<ProfileCache>> open(const std::string& path);
  ~ProfileCache();
  ProfileCache(const ProfileCache&) = delete;
  ProfileCache& operator=(const ProfileCache&) = delete;

  // The entry for (build_id, release) relocated to `text_gva` (_text of the running kernel),
  // or nullopt when there is none (or only one of another format).
  // Errors: kProtocol "profile cache PATH: entry BUILD_ID: ..." when a stored blob is
  // malformed; kIo on SQLite errors.
  [[nodiscard]] Result<std::optional<CachedProfile>> lookup(const std::string& build_id,
                                                            const std::string& release,
                                                            uint64_t text_gva);

  // Stores (replacing) the entry for `build_id`. `symbols` carry run-time addresses for
  // `text_gva`. Errors: kInvalidArgument for an empty build id; kIo on SQLite errors.
  [[nodiscard]] Result<void> store(const std::string& build_id, const std::string& release,
                                   const KernelOffsets& offsets, const Symbols& symbols,
                                   uint64_t text_gva);

  // Number of entries (any format).
  [[nodiscard]] Result<uint64_t> size();

  const std::string& path() const { return path_; }

 private:
  ProfileCache(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

// $XDG_CACHE_HOME/glassbox/profiles.sqlite, else $HOME/.cache/glassbox/profiles.sqlite, else
// /tmp/glassbox-profiles.sqlite.
std::string default_profile_cache_path();

}  // namespace glassbox::semantic_db
