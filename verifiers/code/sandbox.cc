#include "verifiers/code/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "verifiers/code/cgroup.h"
#include "verifiers/code/seccomp_policy.h"

#if defined(__SANITIZE_ADDRESS__)
#define RLVR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RLVR_ASAN 1
#endif
#endif
#ifdef RLVR_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace rlvr::verifiers::code {

std::string_view RunStatusName(RunStatus status) {
  switch (status) {
    case RunStatus::kOk:
      return "ok";
    case RunStatus::kRuntimeError:
      return "runtime_error";
    case RunStatus::kTimeout:
      return "timeout";
    case RunStatus::kMemory:
      return "memory";
    case RunStatus::kOutputLimit:
      return "output_limit";
    case RunStatus::kBlocked:
      return "blocked";
  }
  return "unknown";
}

std::string_view LayerName(Layer layer) {
  switch (layer) {
    case Layer::kSeccomp:
      return "seccomp";
    case Layer::kNetworkNamespace:
      return "network_namespace";
    case Layer::kUserNamespace:
      return "user_namespace";
    case Layer::kPidsLimit:
      return "pids_limit";
    case Layer::kMemoryLimit:
      return "memory_limit";
    case Layer::kOutputCap:
      return "output_cap";
    case Layer::kWallClock:
      return "wall_clock";
  }
  return "unknown";
}

namespace {

using internal::CgroupLayout;
using internal::SlotCgroup;

constexpr uint32_t kMagic = 0x52534258;  // "RSBX"
constexpr int kMaxFiles = 8;
constexpr int kNameBytes = 128;
constexpr int kArgvBytes = 8192;
constexpr int kMaxArgs = 256;
constexpr uint32_t kNsProgramUid = 1000;  // the program's uid inside the slot's user namespace
constexpr uint32_t kFlagExport = 1;

// Fixed-size messages between the supervisor and a zygote (SOCK_SEQPACKET, fds via SCM_RIGHTS):
// request fds, in order: stdin, stdout, stderr, status, [export], files...
struct WireRequest {
  uint32_t magic;
  uint32_t num_files;
  uint32_t flags;
  uint32_t executable_mask;
  int64_t scratch_bytes;
  int64_t cpu_seconds;
  int64_t nofile;
  int64_t fsize;
  int64_t nproc;  // 0: no RLIMIT_NPROC
  int64_t export_max;
  char file_names[kMaxFiles][kNameBytes];
  char export_name[kNameBytes];
  char argv[kArgvBytes];  // NUL-separated, terminated by an empty string
};

struct WireReply {
  uint32_t magic;
  int32_t ok;
  char msg[256];
};

// Written by the run init to the status pipe once the program has exited.
enum : int32_t { kStatusExited = 1, kStatusExecFailed = 2, kStatusSetupFailed = 3 };
struct WireStatus {
  uint32_t magic;
  int32_t kind;
  int32_t wait_status;
  int32_t export_ok;
  int64_t utime_us;
  int64_t stime_us;
  int64_t maxrss_kb;
  int64_t exported_bytes;
  char msg[256];
};

// What a slot's child processes need; they read it from memory inherited through fork().
struct SlotConfig {
  int index = 0;
  pid_t supervisor_pid = 0;
  uint32_t host_uid_base = 0;  // host uid of the slot's root; the program is host_uid_base + 1
  bool user_ns = true;
  bool drop_uid = true;
  bool net_ns = true;
  bool seccomp = true;
  const std::vector<sock_filter>* filter = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Code that runs in the forked children (C, Z, R, P). Single-threaded processes; C-style, and it
// never returns into the supervisor's code.

void SetMsg(char* buf, size_t size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, size, fmt, ap);
  va_end(ap);
}

// The run init and the program run on static stacks and never return from their entry
// functions, so AddressSanitizer's poisoned redzones of one run would stay in the shadow memory
// and trip the next run; clear them before each use (a no-op without ASan).
void UnpoisonStack(void* stack, size_t size) {
#ifdef RLVR_ASAN
  __asan_unpoison_memory_region(stack, size);
#else
  (void)stack;
  (void)size;
#endif
}

// Closes every fd except those in `keep` (sorted ascending, no duplicates).
void CloseAllExcept(const int* keep, int n) {
  unsigned int from = 0;
  for (int i = 0; i < n; ++i) {
    if (keep[i] > static_cast<int>(from)) syscall(SYS_close_range, from, keep[i] - 1, 0);
    from = keep[i] + 1;
  }
  syscall(SYS_close_range, from, ~0U, 0);
}

bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= n;
  }
  return true;
}

bool WriteFileAt(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = WriteAll(fd, text, strlen(text));
  close(fd);
  return ok;
}

bool CopyFd(int in, int out, int64_t limit, int64_t* copied) {
  *copied = 0;
  if (lseek(in, 0, SEEK_SET) < 0 && errno != ESPIPE) return false;
  char buf[65536];
  for (;;) {
    ssize_t n = read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    if (*copied + n > limit) return false;
    if (!WriteAll(out, buf, n)) return false;
    *copied += n;
  }
}

// Zeroes this process's argument and environment strings, so that /proc/<pid>/environ and
// /proc/<pid>/cmdline of the sandbox's own processes reveal nothing of the supervisor.
void ScrubArgsAndEnviron() {
  char buf[4096];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  char* p = strrchr(buf, ')');
  if (p == nullptr) return;
  // Field 3 starts after ") "; arg_start..env_end are fields 48..51.
  unsigned long long fields[52] = {0};
  int field = 3;
  p += 2;
  while (*p && field <= 51) {
    char* end = nullptr;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p) {  // the state field (a letter)
      while (*p && *p != ' ') ++p;
    } else {
      fields[field] = v;
      p = end;
    }
    ++field;
    while (*p == ' ') ++p;
  }
  if (field <= 51) return;
  auto zero = [](unsigned long long a, unsigned long long b) {
    if (a != 0 && b > a && b - a < (64u << 20)) memset(reinterpret_cast<void*>(a), 0, b - a);
  };
  zero(fields[48], fields[49]);
  zero(fields[50], fields[51]);
}

int BindReadOnly(const char* src, const char* dst) {
  if (mount(src, dst, nullptr, MS_BIND | MS_REC, nullptr) != 0) return -1;
  struct statvfs sv;
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV;
  // Inside a user namespace, flags inherited from the host mount are locked and must be kept.
  if (statvfs(src, &sv) == 0) {
    if (sv.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  }
  return mount(nullptr, dst, nullptr, flags, nullptr);
}

int BindDevice(const char* src, const char* dst) {
  int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return -1;
  close(fd);
  return mount(src, dst, nullptr, MS_BIND, nullptr);
}

// Builds the slot's root in a tmpfs mounted on /tmp (private to this mount namespace) and pivots
// into it. Returns an error message or nullptr.
const char* SetUpRoot(char* err, size_t err_size) {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    SetMsg(err, err_size, "make / private: %s", strerror(errno));
    return err;
  }
  if (mount("rlvr-sandbox-root", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") != 0) {
    SetMsg(err, err_size, "mount root tmpfs: %s", strerror(errno));
    return err;
  }
  for (const char* d :
       {"/tmp/usr", "/tmp/proc", "/tmp/work", "/tmp/dev", "/tmp/etc", "/tmp/oldroot"}) {
    mkdir(d, 0755);
  }
  if (BindReadOnly("/usr", "/tmp/usr") != 0) {
    SetMsg(err, err_size, "bind /usr read-only: %s", strerror(errno));
    return err;
  }
  // The merged-/usr symlinks (or read-only binds where the host has real directories).
  for (const char* top : {"bin", "sbin", "lib", "lib64", "lib32", "libx32"}) {
    char host[64], inside[64], target[256];
    snprintf(host, sizeof(host), "/%s", top);
    snprintf(inside, sizeof(inside), "/tmp/%s", top);
    struct stat st;
    if (lstat(host, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      ssize_t n = readlink(host, target, sizeof(target) - 1);
      if (n <= 0) continue;
      target[n] = 0;
      if (symlink(target, inside) != 0) {
        SetMsg(err, err_size, "symlink %s: %s", inside, strerror(errno));
        return err;
      }
    } else if (S_ISDIR(st.st_mode)) {
      mkdir(inside, 0755);
      if (BindReadOnly(host, inside) != 0) {
        SetMsg(err, err_size, "bind %s read-only: %s", host, strerror(errno));
        return err;
      }
    }
  }
  symlink("work", "/tmp/tmp");
  for (const char* dev : {"null", "zero", "urandom"}) {
    char src[32], dst[32];
    snprintf(src, sizeof(src), "/dev/%s", dev);
    snprintf(dst, sizeof(dst), "/tmp/dev/%s", dev);
    if (BindDevice(src, dst) != 0) {
      SetMsg(err, err_size, "bind %s: %s", src, strerror(errno));
      return err;
    }
  }
  symlink("/proc/self/fd", "/tmp/dev/fd");
  symlink("/proc/self/fd/0", "/tmp/dev/stdin");
  symlink("/proc/self/fd/1", "/tmp/dev/stdout");
  symlink("/proc/self/fd/2", "/tmp/dev/stderr");
  WriteFileAt("/tmp/etc/passwd",
              "root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:1000:1000::/work:/bin/sh\n");
  WriteFileAt("/tmp/etc/group", "root:x:0:\nsandbox:x:1000:\n");
  WriteFileAt("/tmp/etc/hostname", "sandbox\n");
  // The dynamic linker's cache (library paths only) saves every program a directory search.
  if (access("/etc/ld.so.cache", R_OK) == 0 &&
      BindDevice("/etc/ld.so.cache", "/tmp/etc/ld.so.cache") == 0) {
    mount(nullptr, "/tmp/etc/ld.so.cache", nullptr,
          MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_RELATIME, nullptr);
  }
  // A proc for the slot's PID namespace; each run mounts its own on top.
  if (mount("proc", "/tmp/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") != 0) {
    SetMsg(err, err_size, "mount /proc: %s", strerror(errno));
    return err;
  }
  if (syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") != 0) {
    SetMsg(err, err_size, "pivot_root: %s", strerror(errno));
    return err;
  }
  if (chdir("/") != 0 || umount2("/oldroot", MNT_DETACH) != 0) {
    SetMsg(err, err_size, "detach the host root: %s", strerror(errno));
    return err;
  }
  rmdir("/oldroot");
  if (mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
            nullptr) != 0) {
    SetMsg(err, err_size, "remount / read-only: %s", strerror(errno));
    return err;
  }
  return nullptr;
}

// P: the program. Never returns.
[[noreturn]] void ProgramExec(const SlotConfig& cfg, const WireRequest& req, const int* fds,
                              int err_fd) {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
  auto fail = [&](const char* what) {
    char msg[256];
    SetMsg(msg, sizeof(msg), "%s: %s", what, strerror(errno));
    WriteAll(err_fd, msg, strlen(msg));
    _exit(127);
  };
  // Move the fds out of the way, then into place (received fds may sit at 0..3).
  int in = fcntl(fds[0], F_DUPFD_CLOEXEC, 64);
  int out = fcntl(fds[1], F_DUPFD_CLOEXEC, 64);
  int errs = fcntl(fds[2], F_DUPFD_CLOEXEC, 64);
  int ef = fcntl(err_fd, F_DUPFD_CLOEXEC, 64);
  err_fd = ef;
  if (in < 0 || out < 0 || errs < 0 || ef < 0) fail("dup");
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errs, 2) < 0 || dup3(ef, 3, O_CLOEXEC) < 0) {
    fail("dup2");
  }
  err_fd = 3;
  syscall(SYS_close_range, 4, ~0U, 0);
  setsid();
  if (chdir("/work") != 0) fail("chdir /work");

  auto limit = [&](int resource, rlim_t soft, rlim_t hard, const char* what) {
    struct rlimit rl = {soft, hard};
    if (setrlimit(resource, &rl) != 0) fail(what);
  };
  limit(RLIMIT_CPU, req.cpu_seconds, req.cpu_seconds + 1, "RLIMIT_CPU");
  limit(RLIMIT_NOFILE, req.nofile, req.nofile, "RLIMIT_NOFILE");
  limit(RLIMIT_FSIZE, req.fsize, req.fsize, "RLIMIT_FSIZE");
  limit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
  limit(RLIMIT_MEMLOCK, 0, 0, "RLIMIT_MEMLOCK");
  limit(RLIMIT_MSGQUEUE, 0, 0, "RLIMIT_MSGQUEUE");
  if (req.nproc > 0) limit(RLIMIT_NPROC, req.nproc, req.nproc, "RLIMIT_NPROC");

  if (cfg.drop_uid) {
    for (int cap = 0; cap <= 63; ++cap) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    uid_t uid = cfg.user_ns ? kNsProgramUid : cfg.host_uid_base + 1;
    // Raw system calls: libc's set*id wrappers synchronise all threads of a process, which a
    // vfork-style child sharing its parent's memory must not attempt.
    if (syscall(SYS_setgroups, 0, nullptr) != 0) fail("setgroups");
    if (syscall(SYS_setresgid, uid, uid, uid) != 0) fail("setresgid");
    if (syscall(SYS_setresuid, uid, uid, uid) != 0) fail("setresuid");
    if (getuid() != uid || geteuid() != uid) fail("uid drop did not take");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS");
  if (cfg.seccomp) {
    struct sock_fprog prog;
    prog.len = static_cast<unsigned short>(cfg.filter->size());
    prog.filter = const_cast<sock_filter*>(cfg.filter->data());
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) fail("seccomp");
  }
  char* argv[kMaxArgs + 1];
  int argc = 0;
  const char* p = req.argv;
  const char* end = req.argv + kArgvBytes;
  while (p < end && *p != 0 && argc < kMaxArgs) {
    argv[argc++] = const_cast<char*>(p);
    p += strnlen(p, end - p) + 1;
  }
  argv[argc] = nullptr;
  static const char* const kEnv[] = {
      "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/work", "TMPDIR=/work", "LANG=C.UTF-8",
      "PYTHONDONTWRITEBYTECODE=1",         nullptr};
  if (argc == 0) {
    errno = EINVAL;
    fail("empty argv");
  }
  execve(argv[0], argv, const_cast<char* const*>(kEnv));
  char what[300];
  SetMsg(what, sizeof(what), "execve %s", argv[0]);
  fail(what);
  _exit(127);
}

void SendReply(int sock, bool ok, const char* msg, int fd);

struct ProgramArgs {
  const SlotConfig* cfg;
  const WireRequest* req;
  const int* fds;
  int err_fd;
};

int ProgramFn(void* arg) {
  auto* a = static_cast<ProgramArgs*>(arg);
  ProgramExec(*a->cfg, *a->req, a->fds, a->err_fd);
}

// R: init of the per-run PID/mount/IPC/UTS namespaces. It runs as a vfork-style child of the
// zygote (shared memory, the zygote suspended until R exits), so that a run never copies the
// zygote's page tables. Never returns.
[[noreturn]] void RunInit(const SlotConfig& cfg, const WireRequest& req, const int* fds,
                          int num_fds, int sock) {
  signal(SIGCHLD, SIG_DFL);
  {
    // Hand the supervisor a pidfd of this run's init: SIGKILL to it ends the whole run.
    int self = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    if (self < 0) {
      char msg[128];
      SetMsg(msg, sizeof(msg), "pidfd_open: %s", strerror(errno));
      SendReply(sock, false, msg, -1);
      _exit(1);
    }
    SendReply(sock, true, nullptr, self);
    close(self);
    close(sock);
  }
  WireStatus st;
  memset(&st, 0, sizeof(st));
  st.magic = kMagic;
  const int status_fd = fds[3];
  const int export_fd = (req.flags & kFlagExport) ? fds[4] : -1;
  const int* file_fds = fds + ((req.flags & kFlagExport) ? 5 : 4);
  auto setup_fail = [&](const char* what) {
    st.kind = kStatusSetupFailed;
    SetMsg(st.msg, sizeof(st.msg), "%s: %s", what, strerror(errno));
    WriteAll(status_fd, &st, sizeof(st));
    _exit(1);
  };
  (void)num_fds;
  uid_t owner = !cfg.drop_uid ? 0 : (cfg.user_ns ? kNsProgramUid : cfg.host_uid_base + 1);
  char opts[128];
  SetMsg(opts, sizeof(opts), "size=%lld,mode=0755,uid=%u,gid=%u",
         static_cast<long long>(req.scratch_bytes), owner, owner);
  if (mount("rlvr-work", "/work", "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) {
    setup_fail("mount /work");
  }
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") != 0) {
    setup_fail("mount /proc");
  }
  for (uint32_t i = 0; i < req.num_files; ++i) {
    char path[kNameBytes + 8];
    SetMsg(path, sizeof(path), "/work/%s", req.file_names[i]);
    mode_t mode = (req.executable_mask >> i) & 1 ? 0755 : 0644;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) setup_fail(path);
    int64_t copied = 0;
    if (!CopyFd(file_fds[i], fd, req.scratch_bytes, &copied)) setup_fail(path);
    if (fchown(fd, owner, owner) != 0) setup_fail("chown");
    close(fd);
  }
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) setup_fail("pipe");
  // P: a vfork-style child (as posix_spawn does): no page-table copy; R waits until it execs.
  alignas(64) static char program_stack[128 * 1024];
  ProgramArgs pargs = {&cfg, &req, fds, err_pipe[1]};
  UnpoisonStack(program_stack, sizeof(program_stack));
  pid_t pid = clone(ProgramFn, program_stack + sizeof(program_stack),
                    CLONE_VM | CLONE_VFORK | SIGCHLD, &pargs);
  if (pid < 0) setup_fail("clone");
  close(err_pipe[1]);
  char exec_err[256];
  ssize_t n;
  do {
    n = read(err_pipe[0], exec_err, sizeof(exec_err) - 1);
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  int ws = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  while (wait4(pid, &ws, 0, &ru) < 0 && errno == EINTR) {
  }
  if (n > 0) {
    exec_err[n] = 0;
    st.kind = kStatusExecFailed;
    SetMsg(st.msg, sizeof(st.msg), "%s", exec_err);
  } else {
    st.kind = kStatusExited;
  }
  st.wait_status = ws;
  st.utime_us = ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec;
  st.stime_us = ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
  st.maxrss_kb = ru.ru_maxrss;
  if (export_fd >= 0) {
    char path[kNameBytes + 8];
    SetMsg(path, sizeof(path), "/work/%s", req.export_name);
    // O_NONBLOCK: the program may have left a FIFO there; only regular files are exported.
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size <= req.export_max) {
      int64_t copied = 0;
      st.export_ok = CopyFd(fd, export_fd, req.export_max, &copied) ? 1 : 0;
      st.exported_bytes = copied;
    }
    if (fd >= 0) close(fd);
  }
  WriteAll(status_fd, &st, sizeof(st));
  _exit(0);
}

void SendReply(int sock, bool ok, const char* msg, int fd) {
  WireReply reply;
  memset(&reply, 0, sizeof(reply));
  reply.magic = kMagic;
  reply.ok = ok ? 1 : 0;
  if (msg != nullptr) SetMsg(reply.msg, sizeof(reply.msg), "%s", msg);
  struct iovec iov = {&reply, sizeof(reply)};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    struct cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

constexpr int kMaxRequestFds = 5 + kMaxFiles;

struct RunInitArgs {
  const SlotConfig* cfg;
  const WireRequest* req;
  const int* fds;
  int num_fds;
  int sock;
};

int RunInitFn(void* arg) {
  auto* a = static_cast<RunInitArgs*>(arg);
  RunInit(*a->cfg, *a->req, a->fds, a->num_fds, a->sock);
}

// Z: the zygote, init of the slot's PID namespace. Serves run requests until the socket closes.
[[noreturn]] void ZygoteMain(const SlotConfig& cfg, int sock) {
  char err[256];
  if (const char* e = SetUpRoot(err, sizeof(err)); e != nullptr) {
    SendReply(sock, false, e, -1);
    _exit(1);
  }
  sethostname("sandbox", 7);
  signal(SIGCHLD, SIG_IGN);  // run inits are reaped by the kernel; their pidfds report exits
  SendReply(sock, true, "ready", -1);
  static WireRequest req;
  for (;;) {
    struct iovec iov = {&req, sizeof(req)};
    struct msghdr mh;
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRequestFds)];
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    int fds[kMaxRequestFds];
    int num_fds = 0;
    for (struct cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        int count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (int i = 0; i < count && num_fds < kMaxRequestFds; ++i) {
          memcpy(&fds[num_fds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        }
      }
    }
    int want = 4 + ((req.flags & kFlagExport) ? 1 : 0) + static_cast<int>(req.num_files);
    if (n != sizeof(req) || req.magic != kMagic || req.num_files > kMaxFiles || num_fds != want) {
      for (int i = 0; i < num_fds; ++i) close(fds[i]);
      SendReply(sock, false, "malformed request", -1);
      continue;
    }
    // R replies itself (with its pidfd); the zygote is suspended until R exits.
    RunInitArgs rargs = {&cfg, &req, fds, num_fds, sock};
    alignas(64) static char run_init_stack[256 * 1024];
    UnpoisonStack(run_init_stack, sizeof(run_init_stack));
    pid_t pid = clone(
        RunInitFn, run_init_stack + sizeof(run_init_stack),
        CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_VM | CLONE_VFORK | SIGCHLD,
        &rargs);
    if (pid < 0) {
      SetMsg(err, sizeof(err), "clone: %s", strerror(errno));
      SendReply(sock, false, err, -1);
    }
    for (int i = 0; i < num_fds; ++i) close(fds[i]);
  }
}

// C: joins the slot's namespaces and forks the zygote. Never returns.
[[noreturn]] void SlotProcess(const SlotConfig& cfg, int sock, int sync_r, int sync_w) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != cfg.supervisor_pid) _exit(1);
  int keep[3] = {sock, sync_r, sync_w};
  std::sort(keep, keep + 3);
  CloseAllExcept(keep, 3);
  prctl(PR_SET_DUMPABLE, 0);
  ScrubArgsAndEnviron();
  char err[256];
  auto fail = [&](const char* what) {
    SetMsg(err, sizeof(err), "%s: %s", what, strerror(errno));
    SendReply(sock, false, err, -1);
    _exit(1);
  };
  if (cfg.user_ns && unshare(CLONE_NEWUSER) != 0) fail("unshare(CLONE_NEWUSER)");
  char c = 'u';
  if (write(sync_w, &c, 1) != 1) _exit(1);
  if (read(sync_r, &c, 1) != 1 || c != 'g') _exit(1);  // maps written, cgroups joined
  close(sync_r);
  close(sync_w);
  if (cfg.user_ns) {
    if (setresgid(0, 0, 0) != 0) fail("setresgid(0) in the user namespace");
    if (setresuid(0, 0, 0) != 0) fail("setresuid(0) in the user namespace");
    // A change of uid clears PR_SET_PDEATHSIG: arm it again, then make sure the supervisor did
    // not die in between.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != cfg.supervisor_pid) _exit(1);
  }
  int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID;
  if (cfg.net_ns) flags |= CLONE_NEWNET;
  if (unshare(flags) != 0) fail("unshare(mount, ipc, uts, pid, net)");
  int life[2];
  if (pipe2(life, O_CLOEXEC) != 0) fail("pipe");
  pid_t z = fork();
  if (z < 0) fail("fork");
  if (z == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(life[1]);
    // If C died before PDEATHSIG was armed, the pipe has no writer left.
    struct pollfd pfd = {life[0], POLLIN, 0};
    if (poll(&pfd, 1, 0) != 0) _exit(1);
    close(life[0]);
    ZygoteMain(cfg, sock);
  }
  close(life[0]);
  close(sock);
  int ws;
  while (waitpid(z, &ws, 0) < 0 && errno == EINTR) {
  }
  _exit(0);
}

// ---------------------------------------------------------------------------------------------
// Supervisor side.

// Runs closures on one long-lived thread: slot processes use PR_SET_PDEATHSIG, which fires when
// the *thread* that forked them exits, so they must be forked from a thread that lives as long as
// the Sandbox.
class Spawner {
 public:
  Spawner() : thread_([this] { Loop(); }) {}
  ~Spawner() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  absl::Status Run(std::function<absl::Status()> fn) {
    std::packaged_task<absl::Status()> task(std::move(fn));
    std::future<absl::Status> result = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_all();
    return result.get();
  }

 private:
  void Loop() {
    for (;;) {
      std::packaged_task<absl::Status()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return done_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<absl::Status()>> queue_;
  bool done_ = false;
  std::thread thread_;
};

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    Reset();
    fd = o.fd;
    o.fd = -1;
    return *this;
  }
  ~Fd() { Reset(); }
  void Reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  int get() const { return fd; }
};

absl::Status Errno(const char* what) {
  return absl::InternalError(absl::StrCat("sandbox: ", what, ": ", strerror(errno)));
}

struct Slot {
  SlotConfig config;
  pid_t c_pid = -1;
  Fd sock;
  std::unique_ptr<SlotCgroup> cgroup;
};

bool PollOne(int fd, short events, int timeout_ms) {
  struct pollfd p = {fd, events, 0};
  for (;;) {
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

absl::StatusOr<WireReply> ReceiveReply(int sock, int timeout_ms, Fd* fd_out) {
  if (!PollOne(sock, POLLIN, timeout_ms)) {
    return absl::UnavailableError("sandbox: zygote did not answer in time");
  }
  WireReply reply;
  memset(&reply, 0, sizeof(reply));
  struct iovec iov = {&reply, sizeof(reply)};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return absl::UnavailableError("sandbox: zygote closed its socket (it died)");
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm), sizeof(int));
      if (fd_out != nullptr) {
        *fd_out = Fd(fd);
      } else {
        close(fd);
      }
    }
  }
  if (n != sizeof(reply) || reply.magic != kMagic) {
    return absl::InternalError("sandbox: malformed reply from zygote");
  }
  reply.msg[sizeof(reply.msg) - 1] = 0;
  return reply;
}

bool ValidName(const std::string& name) {
  return !name.empty() && name.size() < kNameBytes && name != "." && name != ".." &&
         name.find('/') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

class Sandbox::Impl {
 public:
  SandboxOptions options;
  std::vector<std::string> warnings;
  std::vector<sock_filter> filter;
  CgroupLayout layout;
  bool user_ns = true, drop_uid = true, net_ns = true, seccomp = true;
  bool memory_cg = true, pids_cg = true, output_cap = true, wall_clock = true;
  std::unique_ptr<Spawner> spawner;
  std::vector<std::unique_ptr<Slot>> slots;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> free_slots;

  absl::Status SpawnSlot(int index);
  void KillSlot(Slot* slot);
  absl::StatusOr<RunResult> RunInSlot(Slot* slot, const RunRequest& request);

  ~Impl() {
    for (auto& slot : slots) {
      if (slot) KillSlot(slot.get());
    }
    spawner.reset();
  }
};

void Sandbox::Impl::KillSlot(Slot* slot) {
  slot->sock.Reset();
  if (slot->c_pid > 0) {
    kill(slot->c_pid, SIGKILL);
    while (waitpid(slot->c_pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    slot->c_pid = -1;
  }
  slot->cgroup.reset();  // kills what is left inside and removes the directories
}

absl::Status Sandbox::Impl::SpawnSlot(int index) {
  auto slot = std::make_unique<Slot>();
  slot->config.index = index;
  slot->config.supervisor_pid = getpid();
  // Distinct host uids per slot and per supervisor: 0x40000000 + pid * 256 + 2 * slot.
  slot->config.host_uid_base = 0x40000000u + (static_cast<uint32_t>(getpid()) & 0x3fffff) * 256u +
                               2u * static_cast<uint32_t>(index);
  slot->config.user_ns = user_ns;
  slot->config.drop_uid = drop_uid;
  slot->config.net_ns = net_ns;
  slot->config.seccomp = seccomp;
  slot->config.filter = &filter;
  std::string name = absl::StrCat(internal::kSlotPrefix, getpid(), "-", index);
  RLVR_ASSIGN_OR_RETURN(slot->cgroup, SlotCgroup::Create(layout, name, memory_cg, pids_cg), "slot ",
                        index);
  absl::Status status = spawner->Run([&]() -> absl::Status {
    int sv[2], up[2], down[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Errno("socketpair");
    if (pipe2(up, O_CLOEXEC) != 0) return Errno("pipe");
    if (pipe2(down, O_CLOEXEC) != 0) return Errno("pipe");
    pid_t pid = fork();
    if (pid < 0) return Errno("fork");
    if (pid == 0) SlotProcess(slot->config, sv[1], down[0], up[1]);
    close(sv[1]);
    close(down[0]);
    close(up[1]);
    slot->c_pid = pid;
    slot->sock = Fd(sv[0]);
    Fd up_r(up[0]), down_w(down[1]);
    char c = 0;
    if (!PollOne(up_r.get(), POLLIN, 10000) || read(up_r.get(), &c, 1) != 1 || c != 'u') {
      auto reply = ReceiveReply(slot->sock.get(), 0, nullptr);
      if (reply.ok() && !reply->ok) {
        return absl::FailedPreconditionError(
            absl::StrCat("sandbox slot ", index, ": ", reply->msg));
      }
      return absl::InternalError(absl::StrCat("sandbox slot ", index, ": setup process died"));
    }
    RLVR_RETURN_IF_ERROR(slot->cgroup->AddProcess(pid), "sandbox slot ", index);
    if (user_ns) {
      uint32_t b = slot->config.host_uid_base;
      std::string map = absl::StrCat("0 ", b, " 1\n", kNsProgramUid, " ", b + 1, " 1\n");
      RLVR_RETURN_IF_ERROR(internal::WriteSmallFile(absl::StrCat("/proc/", pid, "/uid_map"), map));
      RLVR_RETURN_IF_ERROR(internal::WriteSmallFile(absl::StrCat("/proc/", pid, "/gid_map"), map));
    }
    c = 'g';
    if (write(down_w.get(), &c, 1) != 1) return Errno("sync write");
    return absl::OkStatus();
  });
  if (status.ok()) {
    auto reply = ReceiveReply(slot->sock.get(), 10000, nullptr);
    if (!reply.ok()) {
      status = reply.status();
    } else if (!reply->ok) {
      status = absl::FailedPreconditionError(
          absl::StrCat("sandbox slot ", index, " setup failed: ", reply->msg));
    }
  }
  if (!status.ok()) {
    KillSlot(slot.get());
    return status;
  }
  slots[index] = std::move(slot);
  return absl::OkStatus();
}

absl::StatusOr<RunResult> Sandbox::Impl::RunInSlot(Slot* slot, const RunRequest& request) {
  const RunLimits& lim = request.limits;
  const bool want_export = !request.export_file.empty();
  auto req = std::make_unique<WireRequest>();
  memset(req.get(), 0, sizeof(WireRequest));
  req->magic = kMagic;
  req->num_files = request.files.size();
  req->flags = want_export ? kFlagExport : 0;
  req->scratch_bytes = std::max<int64_t>(lim.scratch_bytes, 1 << 20);
  double cpu = lim.cpu_seconds > 0 ? lim.cpu_seconds : lim.wall_seconds + 1.0;
  req->cpu_seconds = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(cpu)));
  req->nofile = std::max(lim.open_files, 16);
  req->fsize = std::max<int64_t>(lim.file_size_bytes, 1);
  req->nproc = pids_cg ? std::max(lim.pids, 1) : 0;
  req->export_max = request.export_max_bytes;
  for (size_t i = 0; i < request.files.size(); ++i) {
    memcpy(req->file_names[i], request.files[i].name.data(), request.files[i].name.size());
    if (request.files[i].executable) req->executable_mask |= 1u << i;
  }
  if (want_export) {
    memcpy(req->export_name, request.export_file.data(), request.export_file.size());
  }
  size_t off = 0;
  for (const std::string& a : request.argv) {
    memcpy(req->argv + off, a.data(), a.size());
    off += a.size() + 1;
  }

  // Descriptors: stdin is a socket so that writing to a program that closed it cannot raise
  // SIGPIPE in the supervisor (MSG_NOSIGNAL); the others are pipes read by the supervisor.
  int in_sv[2], out_p[2], err_p[2], st_p[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_sv) != 0) return Errno("socketpair");
  Fd in_w(in_sv[0]), in_r(in_sv[1]);
  if (pipe2(out_p, O_CLOEXEC) != 0) return Errno("pipe");
  Fd out_r(out_p[0]), out_w(out_p[1]);
  if (pipe2(err_p, O_CLOEXEC) != 0) return Errno("pipe");
  Fd err_r(err_p[0]), err_w(err_p[1]);
  if (pipe2(st_p, O_CLOEXEC) != 0) return Errno("pipe");
  Fd st_r(st_p[0]), st_w(st_p[1]);
  shutdown(in_r.get(), SHUT_WR);
  Fd export_fd;
  std::vector<Fd> file_fds;
  for (const SandboxFile& f : request.files) {
    Fd m(memfd_create("sandbox-file", MFD_CLOEXEC));
    if (m.get() < 0) return Errno("memfd_create");
    if (!WriteAll(m.get(), f.contents.data(), f.contents.size())) return Errno("memfd write");
    file_fds.push_back(std::move(m));
  }
  if (want_export) {
    export_fd = Fd(memfd_create("sandbox-export", MFD_CLOEXEC));
    if (export_fd.get() < 0) return Errno("memfd_create");
  }
  std::vector<int> send_fds = {in_r.get(), out_w.get(), err_w.get(), st_w.get()};
  if (want_export) send_fds.push_back(export_fd.get());
  for (const Fd& f : file_fds) send_fds.push_back(f.get());

  int64_t mem_limit = lim.memory_bytes > 0 ? lim.memory_bytes : int64_t{1} << 40;
  // C, Z and R are in the slot's pids cgroup too.
  RLVR_RETURN_IF_ERROR(slot->cgroup->SetLimits(mem_limit, std::max(lim.pids, 1) + 3));
  slot->cgroup->ResetPeak();
  SlotCgroup::Counters before = slot->cgroup->Read();

  struct iovec iov = {req.get(), sizeof(WireRequest)};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRequestFds)];
  mh.msg_control = control;
  mh.msg_controllen = CMSG_SPACE(sizeof(int) * send_fds.size());
  struct cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * send_fds.size());
  memcpy(CMSG_DATA(cm), send_fds.data(), sizeof(int) * send_fds.size());
  const auto start = std::chrono::steady_clock::now();
  ssize_t sent;
  do {
    sent = sendmsg(slot->sock.get(), &mh, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != static_cast<ssize_t>(sizeof(WireRequest))) {
    return absl::UnavailableError(absl::StrCat("sandbox: send to zygote: ", strerror(errno)));
  }
  in_r.Reset();
  out_w.Reset();
  err_w.Reset();
  st_w.Reset();
  file_fds.clear();
  Fd pidfd;
  RLVR_ASSIGN_OR_RETURN(WireReply reply, ReceiveReply(slot->sock.get(), 10000, &pidfd));
  if (!reply.ok || pidfd.get() < 0) {
    return absl::InternalError(
        absl::StrCat("sandbox: zygote could not start the run: ", reply.msg));
  }

  for (int fd : {in_w.get(), out_r.get(), err_r.get(), st_r.get()}) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  RunResult result;
  enum class Kill { kNone, kTimeout, kOutput } killed = Kill::kNone;
  auto kill_run = [&](Kill why) {
    if (killed == Kill::kNone) killed = why;
    syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  };
  size_t stdin_off = 0;
  if (request.stdin_data.empty()) {
    in_w.Reset();
  }
  bool exited = false;
  std::chrono::steady_clock::time_point exit_time;
  auto read_stream = [&](Fd& fd, std::string& buf, bool& truncated) {
    char chunk[65536];
    for (;;) {
      ssize_t n = read(fd.get(), chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;  // EAGAIN
      if (n == 0) {
        fd.Reset();
        return;
      }
      if (output_cap && static_cast<int64_t>(buf.size()) + n > lim.output_bytes) {
        buf.append(chunk, lim.output_bytes - buf.size());
        truncated = true;
        kill_run(Kill::kOutput);
        fd.Reset();
        return;
      }
      buf.append(chunk, n);
    }
  };
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(lim.wall_seconds));
  for (;;) {
    if (exited && out_r.get() < 0 && err_r.get() < 0) break;
    auto now = std::chrono::steady_clock::now();
    if (exited && now - exit_time > std::chrono::seconds(2)) break;  // writers leaked: give up
    struct pollfd pfds[4];
    int np = 0;
    int idx_out = -1, idx_err = -1, idx_in = -1, idx_pid = -1;
    if (out_r.get() >= 0) {
      idx_out = np;
      pfds[np++] = {out_r.get(), POLLIN, 0};
    }
    if (err_r.get() >= 0) {
      idx_err = np;
      pfds[np++] = {err_r.get(), POLLIN, 0};
    }
    if (in_w.get() >= 0 && !exited) {
      idx_in = np;
      pfds[np++] = {in_w.get(), POLLOUT, 0};
    }
    if (!exited) {
      idx_pid = np;
      pfds[np++] = {pidfd.get(), POLLIN, 0};
    }
    int timeout_ms = 100;
    if (!exited && wall_clock && killed == Kill::kNone) {
      if (now >= deadline) {
        kill_run(Kill::kTimeout);
      } else {
        timeout_ms = static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1);
      }
    } else if (!exited && killed == Kill::kNone) {
      timeout_ms = 1000;
    }
    int r = poll(pfds, np, timeout_ms);
    if (r < 0 && errno != EINTR) return Errno("poll");
    if (r <= 0) continue;
    if (idx_out >= 0 && pfds[idx_out].revents)
      read_stream(out_r, result.stdout_data, result.stdout_truncated);
    if (idx_err >= 0 && pfds[idx_err].revents)
      read_stream(err_r, result.stderr_data, result.stderr_truncated);
    if (idx_in >= 0 && pfds[idx_in].revents) {
      if (pfds[idx_in].revents & (POLLERR | POLLHUP)) {
        in_w.Reset();
      } else {
        ssize_t n = send(in_w.get(), request.stdin_data.data() + stdin_off,
                         request.stdin_data.size() - stdin_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) stdin_off += n;
        if ((n < 0 && errno != EAGAIN && errno != EINTR) ||
            stdin_off == request.stdin_data.size()) {
          in_w.Reset();
        }
      }
    }
    if (idx_pid >= 0 && pfds[idx_pid].revents) {
      exited = true;
      exit_time = std::chrono::steady_clock::now();
      in_w.Reset();
    }
  }
  result.wall_seconds =
      std::chrono::duration<double>((exited ? exit_time : std::chrono::steady_clock::now()) - start)
          .count();
  WireStatus st;
  memset(&st, 0, sizeof(st));
  ssize_t got = read(st_r.get(), &st, sizeof(st));
  bool have_status = got == static_cast<ssize_t>(sizeof(st)) && st.magic == kMagic;
  SlotCgroup::Counters after = slot->cgroup->Read();
  const bool oom = after.oom_kills > before.oom_kills;
  const int64_t cg_cpu_ns = after.cpu_ns - before.cpu_ns;
  if (have_status) {
    st.msg[sizeof(st.msg) - 1] = 0;
    if (st.kind == kStatusSetupFailed) {
      return absl::InternalError(absl::StrCat("sandbox: run setup failed: ", st.msg));
    }
    result.cpu_seconds = (st.utime_us + st.stime_us) / 1e6;
    result.peak_memory_bytes = st.maxrss_kb * 1024;
  }
  if (cg_cpu_ns > 0) result.cpu_seconds = std::max(result.cpu_seconds, cg_cpu_ns / 1e9);
  if (result.peak_memory_bytes == 0) result.peak_memory_bytes = slot->cgroup->PeakBytes();
  const double cpu_limit = static_cast<double>(req->cpu_seconds);

  if (killed == Kill::kOutput) {
    result.status = RunStatus::kOutputLimit;
    result.detail = absl::StrCat("output exceeded ", lim.output_bytes, " bytes");
  } else if (killed == Kill::kTimeout) {
    result.status = RunStatus::kTimeout;
    result.detail = absl::StrCat("wall-clock limit of ", lim.wall_seconds, " s");
  } else if (!have_status) {
    if (oom) {
      result.status = RunStatus::kMemory;
      result.detail = "killed by the cgroup OOM killer";
    } else {
      return absl::InternalError("sandbox: the run init died without reporting a status");
    }
  } else if (st.kind == kStatusExecFailed) {
    result.status = RunStatus::kRuntimeError;
    result.exit_code = 127;
    result.detail = st.msg;
  } else if (WIFEXITED(st.wait_status)) {
    result.exit_code = WEXITSTATUS(st.wait_status);
    if (result.exit_code == 0) {
      result.status = RunStatus::kOk;
    } else if (oom) {
      result.status = RunStatus::kMemory;
      result.detail = "a process was killed by the cgroup OOM killer";
    } else {
      result.status = RunStatus::kRuntimeError;
      result.detail = absl::StrCat("exit status ", result.exit_code);
    }
  } else if (WIFSIGNALED(st.wait_status)) {
    result.signal = WTERMSIG(st.wait_status);
    if (result.signal == SIGSYS) {
      result.status = RunStatus::kBlocked;
      result.detail = "a forbidden system call was blocked by seccomp";
    } else if (oom) {
      result.status = RunStatus::kMemory;
      result.detail = "killed by the cgroup OOM killer";
    } else if (result.signal == SIGXCPU ||
               (result.signal == SIGKILL && result.cpu_seconds >= cpu_limit)) {
      result.status = RunStatus::kTimeout;
      result.detail = absl::StrCat("CPU time limit of ", cpu_limit, " s");
    } else {
      result.status = RunStatus::kRuntimeError;
      result.detail =
          absl::StrCat("killed by signal ", result.signal, " (", strsignal(result.signal), ")");
    }
  }
  if (want_export && have_status && st.export_ok) {
    std::string data(st.exported_bytes, '\0');
    if (pread(export_fd.get(), data.data(), data.size(), 0) == static_cast<ssize_t>(data.size())) {
      result.exported = std::move(data);
    }
  }
  return result;
}

Sandbox::Sandbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sandbox::~Sandbox() = default;

const std::vector<std::string>& Sandbox::warnings() const { return impl_->warnings; }

std::vector<uint32_t> Sandbox::ProgramHostUids() const {
  std::vector<uint32_t> uids;
  for (const auto& slot : impl_->slots) {
    if (slot) uids.push_back(slot->config.host_uid_base + 1);
  }
  return uids;
}

const std::vector<std::string>& Sandbox::Primitives() {
  static const auto* kPrimitives = new std::vector<std::string>{
      "user_namespace", "pid_namespace", "network_namespace", "mount_namespace", "ipc_namespace",
      "uts_namespace",  "seccomp",       "cgroup_memory",     "cgroup_pids",     "tmpfs",
      "pidfd"};
  return *kPrimitives;
}

absl::StatusOr<int> SweepStaleSandboxes() {
  return internal::SweepStaleCgroups(internal::DetectCgroups());
}

absl::StatusOr<std::unique_ptr<Sandbox>> Sandbox::Create(SandboxOptions options) {
  if (options.concurrency < 1 || options.concurrency > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox: concurrency must be in 1..64, got ", options.concurrency));
  }
  for (const std::string& name : options.allow_missing) {
    const auto& all = Primitives();
    if (std::find(all.begin(), all.end(), name) == all.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sandbox: unknown primitive '", name,
                       "' in allow_missing; known: ", absl::StrJoin(all, ", ")));
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->layout = internal::DetectCgroups();
  const SandboxTesting& testing = options.testing;

  // Probe every primitive; collect why each missing one is missing.
  auto exists = [](const char* path) { return access(path, F_OK) == 0; };
  std::vector<std::pair<std::string, std::string>> missing;
  auto check = [&](const std::string& name, bool ok, std::string why) {
    if (testing.force_unavailable.count(name)) {
      ok = false;
      why = "forced unavailable (test)";
    }
    if (!ok) missing.emplace_back(name, why);
  };
  const bool root = geteuid() == 0;
  auto max_userns = internal::ReadSmallFile("/proc/sys/user/max_user_namespaces");
  check("user_namespace",
        root && exists("/proc/self/ns/user") && max_userns.ok() &&
            !absl::StartsWith(*max_userns, "0"),
        root ? "user namespaces are disabled (/proc/sys/user/max_user_namespaces)"
             : "the sandbox must run as root");
  check("pid_namespace", root && exists("/proc/self/ns/pid"), "no PID namespaces (or not root)");
  check("network_namespace", root && exists("/proc/self/ns/net"),
        "no network namespaces (or not root)");
  check("mount_namespace", root && exists("/proc/self/ns/mnt"),
        "no mount namespaces (or not root)");
  check("ipc_namespace", root && exists("/proc/self/ns/ipc"), "no IPC namespaces (or not root)");
  check("uts_namespace", root && exists("/proc/self/ns/uts"), "no UTS namespaces (or not root)");
  auto actions = internal::ReadSmallFile("/proc/sys/kernel/seccomp/actions_avail");
  absl::StatusOr<std::vector<sock_filter>> filter = internal::BuildSeccompFilter();
  check("seccomp", actions.ok() && absl::StrContains(*actions, "kill_process") && filter.ok(),
        filter.ok() ? "the kernel lacks seccomp SECCOMP_RET_KILL_PROCESS"
                    : std::string(filter.status().message()));
  check("cgroup_memory",
        !impl->layout.memory.empty() && access(impl->layout.memory.c_str(), W_OK) == 0,
        impl->layout.memory.empty()
            ? "no cgroup v1 memory hierarchy is mounted (cgroup v2 memory is not supported)"
            : absl::StrCat(impl->layout.memory, " is not writable"));
  check("cgroup_pids", !impl->layout.pids.empty() && access(impl->layout.pids.c_str(), W_OK) == 0,
        impl->layout.pids.empty() ? "no cgroup v1 pids hierarchy is mounted"
                                  : absl::StrCat(impl->layout.pids, " is not writable"));
  auto filesystems = internal::ReadSmallFile("/proc/filesystems");
  check("tmpfs", filesystems.ok() && absl::StrContains(*filesystems, "tmpfs"),
        "tmpfs is not available");
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  check("pidfd", pidfd >= 0, "pidfd_open is not available (Linux >= 5.3 needed)");
  if (pidfd >= 0) close(pidfd);

  static const std::set<std::string> kOptional = {"user_namespace", "network_namespace", "seccomp",
                                                  "cgroup_memory", "cgroup_pids"};
  for (const auto& [name, why] : missing) {
    if (!options.allow_missing.count(name) || !kOptional.count(name)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sandbox: primitive ", name, " is unavailable: ", why,
          kOptional.count(name) ? "; refusing to run unconfined (allow it explicitly with "
                                  "--allow-missing " +
                                      name + ")"
                                : "; the sandbox cannot run without it"));
    }
    impl->warnings.push_back(absl::StrCat("running without ", name, ": ", why));
    if (name == "user_namespace") impl->user_ns = false;
    if (name == "network_namespace") impl->net_ns = false;
    if (name == "seccomp") impl->seccomp = false;
    if (name == "cgroup_memory") impl->memory_cg = false;
    if (name == "cgroup_pids") impl->pids_cg = false;
  }
  if (impl->seccomp) impl->filter = std::move(*filter);
  for (Layer layer : testing.disabled_layers) {
    switch (layer) {
      case Layer::kSeccomp:
        impl->seccomp = false;
        break;
      case Layer::kNetworkNamespace:
        impl->net_ns = false;
        break;
      case Layer::kUserNamespace:
        impl->user_ns = false;
        impl->drop_uid = false;
        break;
      case Layer::kPidsLimit:
        impl->pids_cg = false;
        break;
      case Layer::kMemoryLimit:
        impl->memory_cg = false;
        break;
      case Layer::kOutputCap:
        impl->output_cap = false;
        break;
      case Layer::kWallClock:
        impl->wall_clock = false;
        break;
    }
  }
  internal::SweepStaleCgroups(impl->layout);
  impl->spawner = std::make_unique<Spawner>();
  impl->slots.resize(options.concurrency);
  for (int i = 0; i < options.concurrency; ++i) {
    RLVR_RETURN_IF_ERROR(impl->SpawnSlot(i), "starting the sandbox");
    impl->free_slots.push_back(i);
  }
  return std::unique_ptr<Sandbox>(new Sandbox(std::move(impl)));
}

absl::StatusOr<RunResult> Sandbox::Run(const RunRequest& request) {
  if (request.argv.empty()) return absl::InvalidArgumentError("sandbox: empty argv");
  size_t argv_bytes = 1;
  for (const std::string& a : request.argv) {
    if (a.empty() || a.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("sandbox: argv entries must be non-empty, without NUL");
    }
    argv_bytes += a.size() + 1;
  }
  if (argv_bytes > kArgvBytes || request.argv.size() > kMaxArgs) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox: argv too long (", argv_bytes, " bytes, at most ", kArgvBytes, ")"));
  }
  if (request.files.size() > kMaxFiles) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox: ", request.files.size(), " files, at most ", kMaxFiles));
  }
  for (const SandboxFile& f : request.files) {
    if (!ValidName(f.name)) {
      return absl::InvalidArgumentError(absl::StrCat("sandbox: bad file name '", f.name, "'"));
    }
  }
  if (!request.export_file.empty() && !ValidName(request.export_file)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox: bad export file name '", request.export_file, "'"));
  }
  if (!(request.limits.wall_seconds > 0)) {
    return absl::InvalidArgumentError("sandbox: wall_seconds must be positive");
  }
  Impl& impl = *impl_;
  int index;
  {
    std::unique_lock<std::mutex> lock(impl.mu);
    impl.cv.wait(lock, [&] { return !impl.free_slots.empty(); });
    index = impl.free_slots.back();
    impl.free_slots.pop_back();
  }
  absl::StatusOr<RunResult> result = absl::InternalError("sandbox: slot unavailable");
  // Unavailable means the zygote is gone before the program could start: replace the slot and
  // try once more.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (impl.slots[index] != nullptr) result = impl.RunInSlot(impl.slots[index].get(), request);
    if (result.ok() || (result.status().code() != absl::StatusCode::kUnavailable &&
                        impl.slots[index] != nullptr)) {
      break;
    }
    if (impl.slots[index] != nullptr) {
      impl.KillSlot(impl.slots[index].get());
      impl.slots[index].reset();
    }
    absl::Status respawn = impl.SpawnSlot(index);
    if (!respawn.ok()) {
      result = Annotate(respawn, absl::StrCat(result.status().message(), "; respawn"));
      break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    impl.free_slots.push_back(index);
  }
  impl.cv.notify_one();
  return result;
}

}  // namespace rlvr::verifiers::code
