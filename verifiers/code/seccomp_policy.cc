#include "verifiers/code/seccomp_policy.h"

#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace rlvr::verifiers::code::internal {
namespace {

constexpr const char* kKilled[] = {
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "uselib",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "sethostname",
    "setdomainname",
    "personality",
    "fanotify_init",
};

constexpr uint64_t kNamespaceFlags[] = {CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,   CLONE_NEWNET,
                                        CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP};

struct CtxDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};

}  // namespace

absl::StatusOr<std::vector<sock_filter>> BuildSeccompFilter() {
  std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return absl::FailedPreconditionError("seccomp_init failed");
  for (const char* name : kKilled) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_KILL_PROCESS, nr, 0);
    if (rc != 0) {
      return absl::InternalError(absl::StrCat("seccomp rule for ", name, ": ", strerror(-rc)));
    }
  }
  for (uint64_t flag : kNamespaceFlags) {
    int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_KILL_PROCESS, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
    if (rc != 0) return absl::InternalError(absl::StrCat("seccomp clone rule: ", strerror(-rc)));
  }
  int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc != 0) return absl::InternalError(absl::StrCat("seccomp clone3 rule: ", strerror(-rc)));

  int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("memfd_create: ", strerror(errno)));
  rc = seccomp_export_bpf(ctx.get(), fd);
  if (rc != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("seccomp_export_bpf: ", strerror(-rc)));
  }
  off_t size = lseek(fd, 0, SEEK_END);
  std::vector<sock_filter> prog(size / sizeof(sock_filter));
  ssize_t n = pread(fd, prog.data(), prog.size() * sizeof(sock_filter), 0);
  close(fd);
  if (size <= 0 || n != static_cast<ssize_t>(prog.size() * sizeof(sock_filter))) {
    return absl::InternalError("seccomp: could not read back the exported BPF program");
  }
  return prog;
}

}  // namespace rlvr::verifiers::code::internal
