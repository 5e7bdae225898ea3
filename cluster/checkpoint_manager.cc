#include "cluster/checkpoint_manager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace rlvr::cluster {
namespace {

namespace fs = std::filesystem;

constexpr char kManifest[] = "MANIFEST.json";
constexpr int kManifestVersion = 1;

std::function<void(SavePoint)>& FaultHook() {
  static std::function<void(SavePoint)> hook;
  return hook;
}

void Reached(SavePoint p) {
  if (FaultHook()) FaultHook()(p);
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", std::strerror(errno)));
}

struct FileDigest {
  int64_t size = 0;
  std::string hash;  // 32 hex digits of XXH3-128
};

// Hashes a file and (optionally) fsyncs it.
absl::StatusOr<FileDigest> HashFile(const std::string& path, bool fsync_it) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::DataLossError(absl::StrCat(path, ": missing"));
    return Errno("open", path);
  }
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  std::vector<char> buf(1 << 20);
  FileDigest d;
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status s = Errno("read", path);
      XXH3_freeState(state);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    XXH3_128bits_update(state, buf.data(), static_cast<size_t>(n));
    d.size += n;
  }
  XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  if (fsync_it && ::fsync(fd) != 0) {
    absl::Status s = Errno("fsync", path);
    ::close(fd);
    return s;
  }
  ::close(fd);
  d.hash = absl::StrFormat("%016x%016x", h.high64, h.low64);
  return d;
}

// Regular files under `dir` (relative paths, sorted), excluding the manifest.
absl::StatusOr<std::vector<std::string>> ListFiles(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, ec), end;
  if (ec) return absl::InternalError(absl::StrCat(dir, ": cannot list: ", ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec) return absl::InternalError(absl::StrCat(dir, ": cannot list: ", ec.message()));
    if (!it->is_regular_file(ec)) continue;
    std::string rel = fs::relative(it->path(), dir, ec).string();
    if (rel == kManifest) continue;
    files.push_back(rel);
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool ParseStepDir(const std::string& name, int64_t* step) {
  if (!absl::StartsWith(name, "step-")) return false;
  return absl::SimpleAtoi(name.substr(5), step) && *step >= 0;
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return absl::InternalError(absl::StrCat(path, ": cannot remove: ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

std::string CheckpointDirName(int64_t step) { return absl::StrFormat("step-%08d", step); }

void CheckpointManager::SetFaultHookForTesting(std::function<void(SavePoint)> hook) {
  FaultHook() = std::move(hook);
}

absl::StatusOr<CheckpointManager> CheckpointManager::Open(const std::string& root, int keep) {
  if (keep < 1) return absl::InvalidArgumentError("trainer.keep_checkpoints: must be at least 1");
  RLVR_RETURN_IF_ERROR(MakeDirs(root));
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (absl::StartsWith(name, ".tmp-")) {
      std::fprintf(stderr, "checkpoints: removing %s left by an interrupted save\n",
                   it->path().c_str());
      RLVR_RETURN_IF_ERROR(RemoveAll(it->path().string()));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat(root, ": cannot list: ", ec.message()));
  return CheckpointManager(root, keep);
}

absl::StatusOr<CheckpointInfo> CheckpointManager::Save(
    int64_t step, const std::function<absl::Status(const std::string&)>& write_files) {
  std::string final_dir = absl::StrCat(root_, "/", CheckpointDirName(step));
  std::string tmp = absl::StrCat(root_, "/.tmp-", CheckpointDirName(step), "-", ::getpid());
  RLVR_RETURN_IF_ERROR(RemoveAll(tmp));
  if (::mkdir(tmp.c_str(), 0755) != 0) return Errno("mkdir", tmp);
  Reached(SavePoint::kTempDirCreated);
  auto fail = [&](absl::Status s) {
    // Leave nothing half-written behind; the previous checkpoints were never touched.
    (void)RemoveAll(tmp);
    return Annotate(s, absl::StrCat("saving checkpoint ", step));
  };
  if (absl::Status s = write_files(tmp); !s.ok()) return fail(s);
  Reached(SavePoint::kFilesWritten);
  auto files = ListFiles(tmp);
  if (!files.ok()) return fail(files.status());
  nlohmann::json manifest;
  manifest["format"] = "rlvr-checkpoint";
  manifest["version"] = kManifestVersion;
  manifest["step"] = step;
  nlohmann::json entries = nlohmann::json::array();
  for (const std::string& rel : *files) {
    auto d = HashFile(tmp + "/" + rel, /*fsync_it=*/true);
    if (!d.ok()) return fail(d.status());
    entries.push_back({{"path", rel}, {"size", d->size}, {"xxh3_128", d->hash}});
  }
  manifest["files"] = entries;
  if (absl::Status s = WriteFileAtomically(tmp + "/" + kManifest, manifest.dump(1) + "\n");
      !s.ok()) {
    return fail(s);
  }
  std::error_code ec;
  for (fs::recursive_directory_iterator it(tmp, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) {
      if (absl::Status s = FsyncDir(it->path().string()); !s.ok()) return fail(s);
    }
  }
  if (absl::Status s = FsyncDir(tmp); !s.ok()) return fail(s);
  Reached(SavePoint::kManifestWritten);
  if (fs::exists(final_dir, ec)) {
    // Re-saving a step (e.g. after resume): move the old one aside first so that a crash between
    // the two renames still leaves a complete copy under some name.
    std::string old = absl::StrCat(root_, "/.tmp-old-", CheckpointDirName(step), "-", ::getpid());
    if (std::rename(final_dir.c_str(), old.c_str()) != 0) return fail(Errno("rename", final_dir));
    (void)RemoveAll(old);
  }
  if (std::rename(tmp.c_str(), final_dir.c_str()) != 0) return fail(Errno("rename", tmp));
  RLVR_RETURN_IF_ERROR(FsyncDir(root_));
  Reached(SavePoint::kRenamed);
  RLVR_ASSIGN_OR_RETURN(auto all, List());
  // Prune the oldest beyond `keep_`, never the one just written. Each is renamed to a .tmp-
  // name first: a crash in the middle of removing its files must not leave a step-N directory
  // that fails verification (Open() sweeps the .tmp- leftovers).
  int excess = static_cast<int>(all.size()) - keep_;
  for (int i = 0; i < excess; ++i) {
    if (all[i].step == step) continue;
    std::string doomed = absl::StrCat(root_, "/.tmp-pruned-", CheckpointDirName(all[i].step),
                                      "-", ::getpid());
    if (std::rename(all[i].path.c_str(), doomed.c_str()) != 0) {
      return Errno("rename", all[i].path);
    }
    RLVR_RETURN_IF_ERROR(RemoveAll(doomed));
  }
  if (excess > 0) RLVR_RETURN_IF_ERROR(FsyncDir(root_));
  Reached(SavePoint::kOldPruned);
  return CheckpointInfo{step, final_dir};
}

absl::StatusOr<std::vector<CheckpointInfo>> CheckpointManager::List() const {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
    int64_t step;
    if (it->is_directory(ec) && ParseStepDir(it->path().filename().string(), &step)) {
      out.push_back({step, it->path().string()});
    }
  }
  if (ec) return absl::InternalError(absl::StrCat(root_, ": cannot list: ", ec.message()));
  std::sort(out.begin(), out.end(),
            [](const CheckpointInfo& a, const CheckpointInfo& b) { return a.step < b.step; });
  return out;
}

absl::Status CheckpointManager::Verify(const std::string& dir) {
  std::string mpath = dir + "/" + kManifest;
  auto text = ReadFile(mpath);
  if (!text.ok()) return absl::DataLossError(absl::StrCat(mpath, ": missing or unreadable"));
  nlohmann::json m = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object() || m.value("format", "") != "rlvr-checkpoint" ||
      !m.contains("files") || !m["files"].is_array()) {
    return absl::DataLossError(absl::StrCat(mpath, ": not a valid rlvr checkpoint manifest"));
  }
  if (m.value("version", 0) != kManifestVersion) {
    return absl::DataLossError(absl::StrCat(mpath, ": unsupported manifest version"));
  }
  std::map<std::string, std::pair<int64_t, std::string>> expected;
  for (const auto& e : m["files"]) {
    if (!e.is_object() || !e.contains("path") || !e["path"].is_string() || !e.contains("size") ||
        !e["size"].is_number_integer() || !e.contains("xxh3_128") || !e["xxh3_128"].is_string()) {
      return absl::DataLossError(absl::StrCat(mpath, ": malformed file entry"));
    }
    expected[e["path"].get<std::string>()] = {e["size"].get<int64_t>(),
                                              e["xxh3_128"].get<std::string>()};
  }
  RLVR_ASSIGN_OR_RETURN(auto files, ListFiles(dir));
  for (const std::string& f : files) {
    if (!expected.count(f)) {
      return absl::DataLossError(absl::StrCat(dir, "/", f, ": not in the manifest"));
    }
  }
  for (const auto& [rel, want] : expected) {
    auto d = HashFile(dir + "/" + rel, /*fsync_it=*/false);
    if (!d.ok()) return absl::DataLossError(d.status().message());
    if (d->size != want.first) {
      return absl::DataLossError(absl::StrCat(dir, "/", rel, ": size ", d->size,
                                              ", manifest says ", want.first));
    }
    if (d->hash != want.second) {
      return absl::DataLossError(
          absl::StrCat(dir, "/", rel, ": content hash differs from the manifest (corrupt)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<CheckpointInfo>> CheckpointManager::LatestValid(
    std::vector<std::string>* skipped) const {
  RLVR_ASSIGN_OR_RETURN(auto all, List());
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    absl::Status s = Verify(it->path);
    if (s.ok()) return std::optional<CheckpointInfo>(*it);
    if (skipped != nullptr) skipped->push_back(std::string(s.message()));
  }
  return std::optional<CheckpointInfo>();
}

}  // namespace rlvr::cluster
