// The seccomp policy of sandboxed programs (internal to verifiers/code).
//
// A deny list on top of "allow": system calls that reach beyond the process's own namespaces
// (mount, ptrace, namespaces via unshare/setns/clone flags, kernel keyrings, BPF, perf, module
// and kexec loading, process_vm_*, userfaultfd, io_uring, handle-based opens, clock setting,
// reboot, swap, accounting) kill the whole process with SIGSYS, which the sandbox reports as
// `blocked`. clone3 returns ENOSYS (its flags live in memory that seccomp cannot read), so libc
// falls back to clone, whose flags are checked. Sockets are NOT filtered here: the empty network
// namespace is the network layer, so that each layer can be shown to be load-bearing on its own.
//
// The filter is compiled once with libseccomp in the supervisor and installed in the child with
// prctl(PR_SET_SECCOMP) right before execve, so no allocation happens after fork.
#ifndef RLVR_VERIFIERS_CODE_SECCOMP_POLICY_H_
#define RLVR_VERIFIERS_CODE_SECCOMP_POLICY_H_

#include <linux/filter.h>

#include <vector>

#include "absl/status/statusor.h"

namespace rlvr::verifiers::code::internal {

// Returns the BPF program of the policy for the native architecture.
absl::StatusOr<std::vector<sock_filter>> BuildSeccompFilter();

}  // namespace rlvr::verifiers::code::internal

#endif  // RLVR_VERIFIERS_CODE_SECCOMP_POLICY_H_
