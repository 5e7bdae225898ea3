// cgroup v1 controllers for sandbox slots (internal to verifiers/code).
//
// The machines are hybrid: memory, pids, cpu and cpuacct are v1 hierarchies under
// /sys/fs/cgroup/<controller>, while the v2 tree has no controllers. DetectCgroups() reads
// /proc/self/mountinfo and /proc/self/cgroup to find, per controller, the directory of the
// calling process's own cgroup; slot cgroups are created beneath it and named
// "rlvr-sbx-<supervisor pid>-<slot>" so that a later supervisor can recognise and sweep them.
// Nothing here assumes pure v2; a controller that is not mounted as v1 is reported missing.
//
// Not thread-safe per object; distinct SlotCgroup objects may be used from different threads.
#ifndef RLVR_VERIFIERS_CODE_CGROUP_H_
#define RLVR_VERIFIERS_CODE_CGROUP_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rlvr::verifiers::code::internal {

struct CgroupLayout {
  // Directory of this process's cgroup in each v1 hierarchy; empty when the controller is absent.
  std::string memory;
  std::string pids;
  std::string cpu;
  std::string cpuacct;
  std::string unified;  // the cgroup2 mount, if any (informational)
};

CgroupLayout DetectCgroups();

inline constexpr char kSlotPrefix[] = "rlvr-sbx-";

class SlotCgroup {
 public:
  // Creates the slot's directories in the controllers that `layout` has and that are wanted.
  static absl::StatusOr<std::unique_ptr<SlotCgroup>> Create(const CgroupLayout& layout,
                                                            const std::string& name,
                                                            bool want_memory, bool want_pids);
  // Kills whatever is still inside and removes the directories.
  ~SlotCgroup();

  absl::Status AddProcess(pid_t pid);
  // Sets the limits for the next run (memory in bytes, pids as tasks). No-ops for controllers
  // that were not created.
  absl::Status SetLimits(int64_t memory_bytes, int pids);

  struct Counters {
    int64_t oom_kills = 0;  // memory.oom_control oom_kill
    int64_t cpu_ns = 0;     // cpuacct.usage
  };
  Counters Read() const;
  void ResetPeak();
  int64_t PeakBytes() const;
  bool has_memory() const { return !memory_.empty(); }
  bool has_pids() const { return !pids_.empty(); }

 private:
  SlotCgroup() = default;
  std::string memory_, pids_, cpu_, cpuacct_;
  int64_t memory_limit_ = -1;  // last values written, to skip rewriting them every run
  int pids_limit_ = -1;
};

// Removes slot cgroups whose supervisor pid is no longer alive, killing any task inside first.
// Returns how many directories were removed.
int SweepStaleCgroups(const CgroupLayout& layout);

// Helpers shared with the sandbox: write/read a small file (errors name the path).
absl::Status WriteSmallFile(const std::string& path, const std::string& value);
absl::StatusOr<std::string> ReadSmallFile(const std::string& path);

}  // namespace rlvr::verifiers::code::internal

#endif  // RLVR_VERIFIERS_CODE_CGROUP_H_
