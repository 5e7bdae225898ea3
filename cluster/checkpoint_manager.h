// Crash-safe checkpoint directories for a training run.
//
// A checkpoint is a directory `<root>/step-<NNNNNNNN>` holding whatever files the caller writes
// (the HF model layout, optimizer and trainer state) plus `MANIFEST.json`, which lists every file
// with its size and XXH3-128 hash. The save protocol:
//
//   1. create `<root>/.tmp-step-<N>-<pid>` and let the caller write its files into it;
//   2. fsync every file, write MANIFEST.json (atomically), fsync the directory;
//   3. rename the directory to `step-<N>` and fsync `<root>`;
//   4. only then delete checkpoints beyond `keep` (oldest first; each renamed to a `.tmp-` name
//      before its files go, so a crash mid-delete leaves no half-deleted `step-N`).
//
// A crash at any point leaves either the previous checkpoints intact plus a `.tmp-*` directory
// that the next Open() sweeps away, or the new checkpoint complete. Loading verifies the
// manifest: a missing, extra-truncated or altered file makes a checkpoint invalid, and
// LatestValid() falls back to the newest checkpoint that verifies, reporting every one it
// skipped (naming the file and what was wrong). Running out of disk during a save is an error
// that leaves the previous checkpoints untouched.
//
// Not thread-safe: one manager per run directory, used from the trainer thread.
#ifndef RLVR_CLUSTER_CHECKPOINT_MANAGER_H_
#define RLVR_CLUSTER_CHECKPOINT_MANAGER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rlvr::cluster {

// Points in the save protocol where tests inject a crash (see SetFaultHookForTesting).
enum class SavePoint {
  kTempDirCreated,
  kFilesWritten,
  kManifestWritten,
  kRenamed,
  kOldPruned,
};

struct CheckpointInfo {
  int64_t step = 0;
  std::string path;
};

class CheckpointManager {
 public:
  // Opens (creating if needed) `root` and removes leftover `.tmp-*` directories of crashed saves.
  static absl::StatusOr<CheckpointManager> Open(const std::string& root, int keep);

  // Writes checkpoint `step`. `write_files(dir)` writes the payload into `dir` (files only, one
  // level of sub-directories allowed). Replaces an existing checkpoint of the same step.
  absl::StatusOr<CheckpointInfo> Save(int64_t step,
                                      const std::function<absl::Status(const std::string&)>& write_files);

  // Checkpoints present on disk (verified or not), oldest first.
  absl::StatusOr<std::vector<CheckpointInfo>> List() const;

  // Re-hashes every file of `dir` against its manifest. DataLoss naming the file on mismatch.
  static absl::Status Verify(const std::string& dir);

  // The newest checkpoint that verifies, or nullopt if none does. Each skipped checkpoint is
  // described in `*skipped` (if non-null).
  absl::StatusOr<std::optional<CheckpointInfo>> LatestValid(
      std::vector<std::string>* skipped = nullptr) const;

  const std::string& root() const { return root_; }

  // Test hook: called at each SavePoint; a test can _exit() the process there.
  static void SetFaultHookForTesting(std::function<void(SavePoint)> hook);

 private:
  CheckpointManager(std::string root, int keep) : root_(std::move(root)), keep_(keep) {}
  std::string root_;
  int keep_;
};

// Name of the directory of checkpoint `step` ("step-00000042").
std::string CheckpointDirName(int64_t step);

}  // namespace rlvr::cluster

#endif  // RLVR_CLUSTER_CHECKPOINT_MANAGER_H_
