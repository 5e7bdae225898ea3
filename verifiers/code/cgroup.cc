#include "verifiers/code/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rlvr::verifiers::code::internal {
namespace {

bool HasOption(const std::string& options, const std::string& name) {
  for (absl::string_view opt : absl::StrSplit(options, ',')) {
    if (opt == name) return true;
  }
  return false;
}

std::vector<pid_t> Tasks(const std::string& dir) {
  std::vector<pid_t> out;
  std::ifstream in(dir + "/cgroup.procs");
  pid_t pid;
  while (in >> pid) out.push_back(pid);
  return out;
}

// Kills every task in `dir` and removes it, retrying while the tasks die. Returns true on success.
bool KillAndRemove(const std::string& dir) {
  for (int attempt = 0; attempt < 200; ++attempt) {
    for (pid_t pid : Tasks(dir)) kill(pid, SIGKILL);
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace

absl::Status WriteSmallFile(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat(path, ": open: ", strerror(errno)));
  ssize_t n = write(fd, value.data(), value.size());
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return absl::InternalError(absl::StrCat(path, ": write '", value, "': ", strerror(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": open: ", strerror(errno)));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, n);
  }
  close(fd);
  return out;
}

CgroupLayout DetectCgroups() {
  CgroupLayout layout;
  // controller -> mount point, from mountinfo: "... mountpoint ... - cgroup cgroup rw,memory".
  std::string memory_mnt, pids_mnt, cpu_mnt, cpuacct_mnt;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    // After "-": fstype, source, super options.
    if (f.size() < 5 || dash + 3 >= f.size()) continue;
    const std::string& fstype = f[dash + 1];
    const std::string& super = f[dash + 3];
    const std::string& mountpoint = f[4];
    if (fstype == "cgroup2") {
      if (layout.unified.empty()) layout.unified = mountpoint;
      continue;
    }
    if (fstype != "cgroup") continue;
    if (HasOption(super, "memory")) memory_mnt = mountpoint;
    if (HasOption(super, "pids")) pids_mnt = mountpoint;
    if (HasOption(super, "cpu")) cpu_mnt = mountpoint;
    if (HasOption(super, "cpuacct")) cpuacct_mnt = mountpoint;
  }
  // controller -> our path, from /proc/self/cgroup: "4:memory:/a/b" (or "4:cpu,cpuacct:/").
  std::ifstream cg("/proc/self/cgroup");
  while (std::getline(cg, line)) {
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    std::string path = f[2] == "/" ? "" : f[2];
    for (absl::string_view c : absl::StrSplit(f[1], ',')) {
      if (c == "memory" && !memory_mnt.empty()) layout.memory = memory_mnt + path;
      if (c == "pids" && !pids_mnt.empty()) layout.pids = pids_mnt + path;
      if (c == "cpu" && !cpu_mnt.empty()) layout.cpu = cpu_mnt + path;
      if (c == "cpuacct" && !cpuacct_mnt.empty()) layout.cpuacct = cpuacct_mnt + path;
    }
  }
  return layout;
}

absl::StatusOr<std::unique_ptr<SlotCgroup>> SlotCgroup::Create(const CgroupLayout& layout,
                                                               const std::string& name,
                                                               bool want_memory, bool want_pids) {
  std::unique_ptr<SlotCgroup> cg(new SlotCgroup());
  auto make = [&](const std::string& parent, std::string* out) -> absl::Status {
    if (parent.empty()) return absl::OkStatus();
    std::string dir = absl::StrCat(parent, "/", name);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(absl::StrCat(dir, ": mkdir: ", strerror(errno)));
    }
    *out = dir;
    return absl::OkStatus();
  };
  if (want_memory) {
    absl::Status s = make(layout.memory, &cg->memory_);
    if (!s.ok()) return s;
    // No swap for sandboxes: the limit must bound resident memory, not push it to disk.
    if (access((cg->memory_ + "/memory.swappiness").c_str(), W_OK) == 0) {
      WriteSmallFile(cg->memory_ + "/memory.swappiness", "0").IgnoreError();
    }
  }
  if (want_pids) {
    absl::Status s = make(layout.pids, &cg->pids_);
    if (!s.ok()) return s;
  }
  if (absl::Status s = make(layout.cpuacct, &cg->cpuacct_); !s.ok()) return s;
  if (layout.cpu != layout.cpuacct) {
    if (absl::Status s = make(layout.cpu, &cg->cpu_); !s.ok()) return s;
  }
  if (!cg->cpu_.empty()) {
    // One core per slot at most, so that a program with many threads cannot starve the others.
    WriteSmallFile(cg->cpu_ + "/cpu.cfs_period_us", "100000").IgnoreError();
    WriteSmallFile(cg->cpu_ + "/cpu.cfs_quota_us", "100000").IgnoreError();
  }
  return cg;
}

SlotCgroup::~SlotCgroup() {
  for (const std::string* dir : {&memory_, &pids_, &cpu_, &cpuacct_}) {
    if (!dir->empty()) KillAndRemove(*dir);
  }
}

absl::Status SlotCgroup::AddProcess(pid_t pid) {
  std::string p = std::to_string(pid);
  for (const std::string* dir : {&memory_, &pids_, &cpu_, &cpuacct_}) {
    if (dir->empty()) continue;
    absl::Status s = WriteSmallFile(*dir + "/cgroup.procs", p);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status SlotCgroup::SetLimits(int64_t memory_bytes, int pids) {
  if (!memory_.empty() && memory_bytes != memory_limit_) {
    absl::Status s =
        WriteSmallFile(memory_ + "/memory.limit_in_bytes", std::to_string(memory_bytes));
    if (!s.ok()) return s;
    memory_limit_ = memory_bytes;
  }
  if (!pids_.empty() && pids != pids_limit_) {
    absl::Status s = WriteSmallFile(pids_ + "/pids.max", std::to_string(pids));
    if (!s.ok()) return s;
    pids_limit_ = pids;
  }
  return absl::OkStatus();
}

SlotCgroup::Counters SlotCgroup::Read() const {
  Counters c;
  if (!memory_.empty()) {
    auto text = ReadSmallFile(memory_ + "/memory.oom_control");
    if (text.ok()) {
      for (absl::string_view l : absl::StrSplit(*text, '\n')) {
        if (absl::ConsumePrefix(&l, "oom_kill ")) {
          int64_t v = 0;
          if (absl::SimpleAtoi(l, &v)) c.oom_kills = v;
        }
      }
    }
  }
  if (!cpuacct_.empty()) {
    auto text = ReadSmallFile(cpuacct_ + "/cpuacct.usage");
    int64_t v = 0;
    if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v)) c.cpu_ns = v;
  }
  return c;
}

void SlotCgroup::ResetPeak() {
  if (!memory_.empty()) {
    WriteSmallFile(memory_ + "/memory.max_usage_in_bytes", "0").IgnoreError();
  }
}

int64_t SlotCgroup::PeakBytes() const {
  if (memory_.empty()) return 0;
  auto text = ReadSmallFile(memory_ + "/memory.max_usage_in_bytes");
  int64_t v = 0;
  if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &v)) return v;
  return 0;
}

int SweepStaleCgroups(const CgroupLayout& layout) {
  int removed = 0;
  for (const std::string* parent : {&layout.memory, &layout.pids, &layout.cpu, &layout.cpuacct}) {
    if (parent->empty()) continue;
    DIR* d = opendir(parent->c_str());
    if (d == nullptr) continue;
    std::vector<std::string> stale;
    while (dirent* e = readdir(d)) {
      absl::string_view n = e->d_name;
      if (!absl::ConsumePrefix(&n, kSlotPrefix)) continue;
      std::vector<std::string> parts = absl::StrSplit(n, '-');
      int pid = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &pid)) continue;
      if (pid == getpid()) continue;
      if (kill(pid, 0) == 0 || errno != ESRCH) continue;  // its supervisor is alive
      stale.push_back(absl::StrCat(*parent, "/", e->d_name));
    }
    closedir(d);
    for (const std::string& dir : stale) {
      if (KillAndRemove(dir)) ++removed;
    }
  }
  return removed;
}

}  // namespace rlvr::verifiers::code::internal
