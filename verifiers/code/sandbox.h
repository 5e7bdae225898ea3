// A sandbox for untrusted, model-written programs.
//
// Every program runs inside a fresh set of Linux namespaces (user, PID, network, mount, IPC, UTS)
// with a seccomp filter (libseccomp), rlimits, cgroup v1 memory/pids/cpu limits, a size-capped
// private tmpfs as its working directory (/work, also /tmp), a read-only bind of /usr (and the
// /bin, /lib, /lib64 symlinks into it) and nothing else of the host, a fresh /proc that shows only
// its own processes, an unprivileged uid that no other concurrent sandbox shares, a wall-clock
// limit enforced from outside (SIGKILL of the PID namespace's init, which takes the whole tree
// with it), and caps on the bytes of stdout/stderr the supervisor reads.
//
// Throughput comes from a pool of ready "slots": each slot is a pre-forked zygote that already
// lives in its own user + network namespace, its own cgroups and its own pivoted root, so that a
// run only costs a clone() into new PID/mount/IPC/UTS namespaces, two mounts and an execve. A slot
// runs one program at a time; `concurrency` slots bound how many run at once.
//
// Layout of one slot (host view):
//   supervisor ── C (host PID ns; in the slot cgroups; PDEATHSIG=KILL)
//                 └─ Z: zygote, init of the slot PID ns, user+net ns, pivoted root (PDEATHSIG=KILL)
//                      └─ R: run init, init of a per-run PID+mount+IPC+UTS ns (tmpfs /work, /proc)
//                           └─ P: the program (uid 1000 in the slot user ns, seccomp, rlimits)
// If the supervisor dies (even by SIGKILL), C and then Z are killed by PDEATHSIG and the kernel
// kills every process in Z's PID namespace. Cgroups left behind by a dead supervisor are removed
// by the next Sandbox::Create() on the machine (SweepStaleSandboxes()).
//
// Requirements: running as root (CAP_SYS_ADMIN and CAP_SETUID in the initial user namespace) on
// Linux >= 5.3 (clone3, pidfd). Where a primitive is missing, Create() fails with
// FailedPrecondition naming it, unless the caller lists it in SandboxOptions::allow_missing.
//
// Thread safety: Sandbox::Run() may be called from many threads at once; it blocks while all
// slots are busy. Create() and the destructor must not race with Run().
#ifndef RLVR_VERIFIERS_CODE_SANDBOX_H_
#define RLVR_VERIFIERS_CODE_SANDBOX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rlvr::verifiers::code {

// Limits of one run. Every limit is enforced by the kernel or by the supervisor, never by the
// program itself.
struct RunLimits {
  double wall_seconds = 10.0;                   // killed from outside after this long
  double cpu_seconds = 0.0;                     // RLIMIT_CPU; 0 means wall_seconds + 1
  int64_t memory_bytes = int64_t{512} << 20;    // cgroup memory limit of the whole tree
  int pids = 64;                                // processes + threads of the whole tree
  int64_t output_bytes = int64_t{1} << 20;      // per stream (stdout, stderr); more is output_limit
  int64_t scratch_bytes = int64_t{64} << 20;    // size of the /work tmpfs
  int open_files = 256;                         // RLIMIT_NOFILE
  int64_t file_size_bytes = int64_t{32} << 20;  // RLIMIT_FSIZE
};

// A file placed in /work before the program starts. `name` is a plain file name (no '/').
struct SandboxFile {
  std::string name;
  std::string contents;
  bool executable = false;
};

struct RunRequest {
  // argv[0] is an absolute path inside the sandbox (e.g. /usr/bin/python3) or a path relative to
  // /work (e.g. ./prog). The environment is fixed: PATH, HOME=/work, LANG=C.UTF-8, TMPDIR=/work.
  std::vector<std::string> argv;
  std::vector<SandboxFile> files;  // at most 8
  std::string stdin_data;
  RunLimits limits;
  // If non-empty, /work/<export_file> is copied out after the program exits (e.g. the binary a
  // compiler produced) into RunResult::exported; at most export_max_bytes.
  std::string export_file;
  int64_t export_max_bytes = int64_t{64} << 20;
};

enum class RunStatus {
  kOk,            // exit status 0
  kRuntimeError,  // non-zero exit status or killed by a signal not listed below
  kTimeout,       // wall clock or CPU time limit
  kMemory,        // the cgroup OOM killer fired
  kOutputLimit,   // stdout or stderr exceeded the cap
  kBlocked,       // a forbidden system call (seccomp killed the program)
};
std::string_view RunStatusName(RunStatus status);

struct RunResult {
  RunStatus status = RunStatus::kRuntimeError;
  int exit_code = -1;       // when the program exited
  int signal = 0;           // when the program was killed by a signal
  std::string stdout_data;  // at most limits.output_bytes
  std::string stderr_data;  // at most limits.output_bytes
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  double wall_seconds = 0.0;
  double cpu_seconds = 0.0;       // user + system of the whole tree
  int64_t peak_memory_bytes = 0;  // largest resident set of one process (or cgroup peak if killed)
  std::optional<std::string> exported;
  std::string detail;  // human-readable reason (which limit, which signal, exec errors)
};

// Confinement layers. Users cannot switch them off; SandboxTesting can (tests only).
enum class Layer {
  kSeccomp,
  kNetworkNamespace,
  kUserNamespace,  // the user namespace and the drop to an unprivileged uid
  kPidsLimit,      // cgroup pids.max and RLIMIT_NPROC
  kMemoryLimit,    // cgroup memory limit
  kOutputCap,
  kWallClock,
};
std::string_view LayerName(Layer layer);

// Test-only switches. Never exposed as a command-line flag or config key: the layer tests use them
// to show that each layer is load-bearing, and the fail-closed tests to fake a missing primitive.
struct SandboxTesting {
  std::set<Layer> disabled_layers;
  // Primitive names (see Sandbox::Primitives()) that the probe must report as unavailable.
  std::set<std::string> force_unavailable;
};

struct SandboxOptions {
  int concurrency = 2;  // number of slots (programs running at once), 1..64
  // Primitives the user explicitly accepts to run without (the CLI's --allow-missing). Without
  // this, a missing primitive makes Create() fail rather than run unconfined.
  std::set<std::string> allow_missing;
  SandboxTesting testing;
};

class Sandbox {
 public:
  // Probes the machine, sweeps what dead supervisors left behind, and starts `concurrency` slots.
  // FailedPrecondition names the first missing primitive ("sandbox: primitive cgroup_memory is
  // unavailable: ...").
  static absl::StatusOr<std::unique_ptr<Sandbox>> Create(SandboxOptions options);

  // Names of the primitives the probe checks: user_namespace, pid_namespace, network_namespace,
  // mount_namespace, ipc_namespace, uts_namespace, seccomp, cgroup_memory, cgroup_pids, tmpfs,
  // pidfd.
  static const std::vector<std::string>& Primitives();

  // Runs one program. Returns a RunResult for every outcome of the program itself (including
  // timeouts, kills and blocked system calls); an error status only when the sandbox itself
  // failed (InvalidArgument for a bad request, Internal/Unavailable when a slot broke; the slot is
  // then replaced).
  absl::StatusOr<RunResult> Run(const RunRequest& request);

  // Warnings gathered at start (primitives that were allowed to be missing).
  const std::vector<std::string>& warnings() const;

  // Host uids used by the slots' programs (for tests that look for leftovers).
  std::vector<uint32_t> ProgramHostUids() const;

  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  class Impl;

 private:
  explicit Sandbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Kills what sandboxes of dead supervisors left behind (processes in their cgroups) and removes
// their cgroups. Called by Create(); returns the number of cgroup directories removed.
absl::StatusOr<int> SweepStaleSandboxes();

}  // namespace rlvr::verifiers::code

#endif  // RLVR_VERIFIERS_CODE_SANDBOX_H_
