// The attack suite shared by the sandbox tests: hostile programs, each with the verdicts it may
// get, plus checks that the host is untouched afterwards.
#ifndef RLVR_TESTS_VERIFIERS_CODE_ATTACKS_H_
#define RLVR_TESTS_VERIFIERS_CODE_ATTACKS_H_

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "verifiers/code/harness.h"
#include "verifiers/code/sandbox.h"

namespace rlvr::verifiers::code::testing {

inline constexpr char kSecretEnv[] = "RLVR_SANDBOX_TEST_SECRET";
inline constexpr char kSecretValue[] = "s3cr3t-d0-n0t-l3ak-7f1e";

struct Attack {
  std::string name;
  Language language = Language::kPython;
  std::string code;
  std::set<Verdict> expected;
  // Unbounded attacks (a real fork bomb, a real memory hog, an endless flood) only run with every
  // layer on: with a layer off they would hurt the machine instead of showing a failed case.
  bool unbounded = false;
  std::string stdin_data;

  // The limits the suite runs under (HarnessOptions::run_limits).
  static RunLimits DefaultLimits() {
    RunLimits l;
    l.wall_seconds = 1.5;
    l.memory_bytes = int64_t{256} << 20;
    l.pids = 64;
    l.output_bytes = int64_t{1} << 20;
    return l;
  }
};

struct AttackOutcome {
  std::string name;
  Verdict verdict = Verdict::kOk;
  std::string stdout_data;
  std::string detail;
  bool failed = false;  // wrong verdict or a breach
  std::string why;
};

// A listening TCP socket on host loopback; the network attacks try to reach it.
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 16);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~LoopbackListener() { close(fd_); }
  int port() const { return port_; }
  // Number of connections that reached the listener since the last call.
  int Accepted() {
    int n = 0;
    for (;;) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) break;
      close(c);
      ++n;
    }
    return n;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

inline std::vector<Attack> AllAttacks(int loopback_port, bool bounded_only) {
  using V = Verdict;
  std::vector<Attack> a;
  auto py = [&](std::string name, std::string code, std::set<V> expected, bool unbounded = false) {
    Attack at;
    at.name = std::move(name);
    at.code = std::move(code);
    at.expected = std::move(expected);
    at.unbounded = unbounded;
    a.push_back(at);
    return &a.back();
  };
  auto cpp = [&](std::string name, std::string code, std::set<V> expected, bool unbounded = false) {
    Attack* at = py(std::move(name), std::move(code), std::move(expected), unbounded);
    at->language = Language::kCpp;
    return at;
  };
  // Resource exhaustion.
  py("fork_bomb",
     "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
     {V::kTimeout, V::kRuntimeError, V::kMemory}, true);
  py("fork_probe",  // bounded: counts how many processes it can hold at once
     "import os, sys, time\nn = 0\nfor i in range(150):\n    try:\n        pid = os.fork()\n"
     "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(2)\n        "
     "os._exit(0)\n"
     "    n += 1\nprint('forked', n)\nif n >= 100:\n    print('ESCAPED pids', n)\n",
     {V::kOk});
  py("memory_hog", "a = []\nwhile True:\n    a.append(bytearray(10**7))\n", {V::kMemory}, true);
  py("memory_probe",  // bounded: 600 MB against a 256 MB limit
     "a = []\nfor i in range(60):\n    a.append(bytearray(10**7))\nprint('ESCAPED memory')\n",
     {V::kMemory});
  py("infinite_loop", "while True:\n    pass\n", {V::kTimeout});
  py("long_sleep", "import time\ntime.sleep(4)\nprint('ESCAPED slept')\n", {V::kTimeout});
  py("cpu_threads",
     "import threading\ndef burn():\n    while True:\n        pass\n"
     "for i in range(8):\n    threading.Thread(target=burn, daemon=True).start()\n"
     "import time\ntime.sleep(4)\nprint('ESCAPED threads')\n",
     {V::kTimeout});
  // Network.
  py("net_loopback",
     absl::StrCat("import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', ",
                  loopback_port, "))\nprint('ESCAPED connected')\n"),
     {V::kRuntimeError});
  py("net_outside",
     "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('8.8.8.8', 53))\n"
     "print('ESCAPED connected')\n",
     {V::kRuntimeError});
  // Files.
  py("write_tmp",
     "open('/tmp/rlvr_sbx_attack_marker', 'w').write('x')\nprint('wrote private tmp')\n", {V::kOk});
  py("write_etc", "open('/etc/rlvr_sbx_attack_marker', 'w').write('x')\nprint('ESCAPED etc')\n",
     {V::kRuntimeError});
  py("write_home",
     "import os\nopen(os.path.expanduser('~/home_marker'), 'w').write('x')\n"
     "open('/root/rlvr_sbx_attack_marker', 'w').write('x')\nprint('ESCAPED root')\n",
     {V::kRuntimeError});
  py("read_project",
     "import os\nfor p in ['/work/main/CMakeLists.txt', '/work/shared/DESIGN.md', '/root/.bashrc',"
     " '/etc/shadow', '/etc/hostname.host']:\n    try:\n        open(p).read()\n"
     "        print('ESCAPED read', p)\n    except OSError:\n        pass\n"
     "print(sorted(os.listdir('/')))\n",
     {V::kOk});
  py("proc_snoop",
     "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nme = str(os.getpid())\n"
     "others = [p for p in pids if p != me]\nprint('pids', pids)\n"
     "for p in others:\n    try:\n        print('ESCAPED saw', p, open('/proc/%s/cmdline' % "
     "p).read())\n"
     "    except OSError:\n        pass\n"
     "try:\n    print('ESCAPED environ', open('/proc/1/environ').read())\nexcept OSError:\n    "
     "pass\n",
     {V::kOk});
  py("read_supervisor_env",
     "import os\nprint(dict(os.environ))\nfor p in ['/proc/self/environ', '/proc/1/environ', "
     "'/proc/self/cmdline']:\n    try:\n        print(open(p, 'rb').read())\n    except OSError as "
     "e:\n"
     "        print(p, e)\n",
     {V::kOk});
  // Privilege.
  py("ptrace",
     "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
     "if libc.ptrace(0, 0, 0, 0) == 0:\n    print('ESCAPED ptrace')\n",
     {V::kBlocked});
  py("unshare_userns",
     "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
     "if libc.unshare(0x10000000) == 0:\n    print('ESCAPED unshare')\n",
     {V::kBlocked});
  py("mount",
     "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
     "if libc.mount(b'none', b'/work', b'tmpfs', 0, None) == 0:\n    print('ESCAPED mount')\n",
     {V::kBlocked});
  py("kill_parent",
     "import os, signal\nfor pid in [os.getppid(), 1, -1]:\n    try:\n"
     "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\nprint('still "
     "here')\n",
     {V::kOk, V::kRuntimeError});
  py("setuid",
     "import os\nos.setuid(0)\nopen('/proc/sys/kernel/hostname', 'w').write('pwned')\n"
     "print('ESCAPED setuid')\n",
     {V::kRuntimeError});
  // Output and descriptors.
  py("huge_stdout", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
     {V::kOutputLimit}, true);
  py("output_probe",  // bounded: 8 MB against a 1 MB cap
     "import sys\nfor i in range(128):\n    sys.stdout.write('y' * 65536)\n", {V::kOutputLimit});
  py("many_files",
     "fs = []\nfor i in range(100000):\n    fs.append(open('/dev/null'))\nprint('ESCAPED files')\n",
     {V::kRuntimeError});
  py("close_stdout_keep_running", "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(4)\n",
     {V::kTimeout});
  py("double_fork_daemon",
     "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
     "        time.sleep(30)\n        os._exit(0)\n    os._exit(0)\ntime.sleep(0.1)\nprint('parent "
     "done')\n",
     {V::kOk});
  // Native code.
  cpp("cpp_fork_bomb", "#include <unistd.h>\nint main() { for (;;) fork(); }\n",
      {V::kTimeout, V::kRuntimeError, V::kMemory}, true);
  cpp("cpp_memory_hog",
      "#include <cstdlib>\n#include <cstring>\nint main() { for (;;) { char* p = (char*)malloc(1 "
      "<< 24);"
      " if (p) memset(p, 1, 1 << 24); } }\n",
      {V::kMemory}, true);
  cpp("cpp_ptrace",
      "#include <sys/ptrace.h>\n#include <cstdio>\nint main() { if (ptrace(PTRACE_TRACEME, 0, 0, 0)"
      " == 0) std::puts(\"ESCAPED ptrace\"); }\n",
      {V::kBlocked});
  cpp("cpp_write_etc",
      "#include <cstdio>\nint main() { FILE* f = std::fopen(\"/etc/rlvr_sbx_attack_marker\", "
      "\"w\");"
      " if (f) { std::puts(\"ESCAPED etc\"); return 0; } return 1; }\n",
      {V::kRuntimeError});
  cpp("cpp_infinite_loop", "int main() { volatile int x = 0; for (;;) ++x; }\n", {V::kTimeout});
  cpp("cpp_environ",
      "#include <cstdio>\n#include <initializer_list>\nint main() { for (const char* p : "
      "{\"/proc/1/environ\", "
      "\"/proc/self/environ\"}) { FILE* f = std::fopen(p, \"r\"); if (!f) continue; char b[4096];"
      " size_t n = std::fread(b, 1, sizeof b, f); std::fwrite(b, 1, n, stdout); } }\n",
      {V::kOk});
  // Compile-time abuse (the verdict is compile_error either way).
  cpp("cpp_include_dev_random", "#include </dev/random>\nint main() {}\n", {V::kCompileError});
  cpp("cpp_include_dev_urandom", "#include </dev/urandom>\nint main() {}\n", {V::kCompileError});
  cpp("cpp_template_bomb",
      "template <int N> struct F { static constexpr long v = F<N - 1>::v + F<N - 2>::v; };\n"
      "template <> struct F<1> { static constexpr long v = 1; };\n"
      "template <> struct F<0> { static constexpr long v = 0; };\n"
      "template <int N, int M> struct G { using T = typename G<N - 1, M * 2 + 1>::T; };\n"
      "template <int M> struct G<0, M> { using T = int; };\n"
      "int main() { G<100000, 0>::T x = F<90>::v; return x > 0 ? 0 : 1; }\n",
      {V::kCompileError});
  if (bounded_only) {
    std::vector<Attack> kept;
    for (Attack& at : a) {
      if (!at.unbounded) kept.push_back(std::move(at));
    }
    return kept;
  }
  return a;
}

inline Verdict VerdictOf(RunStatus s) {
  switch (s) {
    case RunStatus::kOk:
      return Verdict::kOk;
    case RunStatus::kRuntimeError:
      return Verdict::kRuntimeError;
    case RunStatus::kTimeout:
      return Verdict::kTimeout;
    case RunStatus::kMemory:
      return Verdict::kMemory;
    case RunStatus::kOutputLimit:
      return Verdict::kOutputLimit;
    case RunStatus::kBlocked:
      return Verdict::kBlocked;
  }
  return Verdict::kRuntimeError;
}

// C++ attacks are compiled once per process (the layer tests re-run them many times); the
// compile result, success or failure, is cached by source.
inline absl::StatusOr<RunResult> CompileCached(Sandbox& sandbox, const HarnessOptions& options,
                                               const std::string& code) {
  static std::mutex mu;
  static auto* cache = new std::map<std::string, RunResult>();
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(code);
    if (it != cache->end()) return it->second;
  }
  auto res = CompileCpp(sandbox, options, code);
  if (!res.ok()) return res.status();
  std::lock_guard<std::mutex> lock(mu);
  (*cache)[code] = *res;
  return res;
}

// Runs one attack in `sandbox` under options.run_limits and judges it.
inline AttackOutcome RunAttack(Sandbox& sandbox, const HarnessOptions& options,
                               const Attack& attack) {
  AttackOutcome out;
  out.name = attack.name;
  RunRequest req;
  req.limits = options.run_limits;
  req.stdin_data = attack.stdin_data;
  if (attack.language == Language::kPython) {
    req.argv = {options.python, "-I", "solution.py"};
    req.files.push_back({"solution.py", attack.code, false});
  } else {
    auto compiled = CompileCached(sandbox, options, attack.code);
    if (!compiled.ok()) {
      out.failed = true;
      out.why = absl::StrCat("harness error: ", compiled.status().ToString());
      return out;
    }
    if (compiled->status != RunStatus::kOk || !compiled->exported.has_value()) {
      out.verdict = Verdict::kCompileError;
      out.detail = compiled->stderr_data.substr(0, 300) + compiled->detail;
    } else {
      req.argv = {"./prog"};
      req.files.push_back({"prog", *compiled->exported, true});
    }
  }
  if (out.verdict != Verdict::kCompileError) {
    auto res = sandbox.Run(req);
    if (!res.ok()) {
      out.failed = true;
      out.why = absl::StrCat("harness error: ", res.status().ToString());
      return out;
    }
    out.verdict = VerdictOf(res->status);
    out.detail = res->detail + " " + res->stderr_data.substr(0, 300);
    out.stdout_data = res->stdout_data;
  }
  if (!attack.expected.count(out.verdict)) {
    out.failed = true;
    out.why = absl::StrCat("verdict ", std::string(VerdictName(out.verdict)), ": ", out.detail);
  }
  if (out.stdout_data.find("ESCAPED") != std::string::npos) {
    out.failed = true;
    out.why = absl::StrCat("breach: ", out.stdout_data.substr(0, 300));
  }
  if (out.stdout_data.find(kSecretValue) != std::string::npos) {
    out.failed = true;
    out.why = "breach: the supervisor's secret environment variable leaked";
  }
  return out;
}

// Host checks: files the attacks tried to create, and processes left running under the uids.
inline std::vector<std::string> HostBreaches(const std::vector<uint32_t>& uids) {
  std::vector<std::string> breaches;
  for (const char* p : {"/tmp/rlvr_sbx_attack_marker", "/etc/rlvr_sbx_attack_marker",
                        "/root/rlvr_sbx_attack_marker", "/root/home_marker"}) {
    if (access(p, F_OK) == 0) breaches.push_back(absl::StrCat("host file exists: ", p));
  }
  std::set<uint32_t> wanted(uids.begin(), uids.end());
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(absl::StrCat("/proc/", e->d_name, "/status"));
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("State:", 0) == 0 && line.find('Z') != std::string::npos) break;  // zombie
      if (line.rfind("Uid:", 0) == 0) {
        std::istringstream ss(line.substr(4));
        uint32_t uid = 0;
        ss >> uid;
        if (wanted.count(uid)) breaches.push_back(absl::StrCat("process left: pid ", e->d_name));
      }
    }
  }
  if (d) closedir(d);
  return breaches;
}

inline int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = d ? readdir(d) : nullptr) {
    if (e->d_name[0] != '.') ++n;
  }
  if (d) closedir(d);
  return n;
}

// Runs `attacks` on `threads` threads; returns outcomes in input order.
inline std::vector<AttackOutcome> RunAttacks(Sandbox& sandbox, const HarnessOptions& options,
                                             const std::vector<Attack>& attacks, int threads) {
  std::vector<AttackOutcome> out(attacks.size());
  std::mutex mu;
  size_t next = 0;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (;;) {
        size_t i;
        {
          std::lock_guard<std::mutex> lock(mu);
          if (next >= attacks.size()) return;
          i = next++;
        }
        out[i] = RunAttack(sandbox, options, attacks[i]);
      }
    });
  }
  for (auto& th : pool) th.join();
  return out;
}

}  // namespace rlvr::verifiers::code::testing

#endif  // RLVR_TESTS_VERIFIERS_CODE_ATTACKS_H_
