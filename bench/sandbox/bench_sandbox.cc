// Sandboxed executions per second vs plain unsandboxed launches of the same program, in one run.
//
//   bench_sandbox [--runs N] [--threads T] [--slots S] [--humaneval PATH]
//
// Workloads: `python3 -I -c pass`, and HumanEval/0's canonical solution with its tests (as one
// script). "bare" is posix_spawn (new session) + pipe for stdout + waitpid, with the same argv,
// on the same number of threads; the two sides alternate in rounds. Prints runs/s and p50/p90
// latency for each; the headline is printed last:
//   sandbox_python_pass: rlvr X runs/s, bare Y runs/s, ratio Z
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "verifiers/code/cgroup.h"
#include "verifiers/code/sandbox.h"

extern char** environ;

namespace {

namespace vc = ::rlvr::verifiers::code;
using Clock = std::chrono::steady_clock;

struct Stats {
  double cpu_ms_per_run = 0;  // CPU of the whole tree (program, sandbox processes, supervisor)
  double runs_per_s = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  int failures = 0;
};

double RusageMs(int who) {
  struct rusage ru;
  getrusage(who, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

// CPU used so far by this process, its reaped children and the sandbox slots' cgroups.
double TreeCpuMs() {
  double ms = RusageMs(RUSAGE_SELF) + RusageMs(RUSAGE_CHILDREN);
  rlvr::verifiers::code::internal::CgroupLayout layout =
      rlvr::verifiers::code::internal::DetectCgroups();
  if (layout.cpuacct.empty()) return ms;
  std::string prefix =
      std::string(rlvr::verifiers::code::internal::kSlotPrefix) + std::to_string(getpid()) + "-";
  DIR* d = opendir(layout.cpuacct.c_str());
  while (dirent* e = d ? readdir(d) : nullptr) {
    if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) != 0) continue;
    std::ifstream in(layout.cpuacct + "/" + e->d_name + "/cpuacct.usage");
    long long ns = 0;
    in >> ns;
    ms += ns / 1e6;
  }
  if (d) closedir(d);
  return ms;
}

// Runs `fn` `runs` times on `threads` threads; fn returns false on a failed run.
Stats Measure(int runs, int threads, const std::function<bool()>& fn) {
  const double cpu0 = TreeCpuMs();
  std::vector<double> lat(runs);
  std::atomic<int> next{0}, failures{0};
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < runs; i = next++) {
        auto t0 = Clock::now();
        if (!fn()) ++failures;
        lat[i] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      }
    });
  }
  for (auto& t : pool) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(lat.begin(), lat.end());
  Stats s;
  s.runs_per_s = runs / secs;
  s.cpu_ms_per_run = (TreeCpuMs() - cpu0) / runs;
  s.p50_ms = lat[runs / 2];
  s.p90_ms = lat[runs * 9 / 10];
  s.failures = failures;
  return s;
}

bool BareRun(const std::vector<std::string>& argv, const std::string& file_name,
             const std::string& file_contents, const std::string& base_dir) {
  // One working directory per thread, so that concurrent launches do not share the file.
  thread_local std::string dir;
  if (!base_dir.empty() && dir.empty()) {
    static std::atomic<int> counter{0};
    dir = base_dir + "/t" + std::to_string(counter++);
    mkdir(dir.c_str(), 0755);
  }
  if (!file_name.empty()) {
    // Same work as the sandbox: the program's file is written before each launch.
    std::ofstream(dir + "/" + file_name) << file_contents;
  }
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return false;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!dir.empty()) posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // A new session, as the sandbox gives its programs: with sched autogroup on, a session is a
  // scheduling entity, so launches in one shared session would get less CPU on a loaded machine.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return false;
  }
  char buf[4096];
  while (read(out[0], buf, sizeof(buf)) > 0) {
  }
  close(out[0]);
  int ws = 0;
  waitpid(pid, &ws, 0);
  return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

void Print(const char* name, const Stats& s) {
  std::printf("%-28s %8.1f runs/s   p50 %7.2f ms   p90 %7.2f ms   cpu %6.2f ms/run   failures %d\n",
              name, s.runs_per_s, s.p50_ms, s.p90_ms, s.cpu_ms_per_run, s.failures);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 600, threads = 4, slots = 4;
  std::string humaneval = "../shared/data/humaneval.jsonl";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--runs")
      runs = std::atoi(argv[i + 1]);
    else if (k == "--threads")
      threads = std::atoi(argv[i + 1]);
    else if (k == "--slots")
      slots = std::atoi(argv[i + 1]);
    else if (k == "--humaneval")
      humaneval = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  vc::SandboxOptions so;
  so.concurrency = slots;
  auto sandbox = vc::Sandbox::Create(so);
  if (!sandbox.ok()) {
    std::fprintf(stderr, "bench_sandbox: %s\n", std::string(sandbox.status().message()).c_str());
    return 1;
  }
  std::string program;
  {
    std::ifstream in(humaneval);
    std::string line;
    if (!std::getline(in, line)) {
      std::fprintf(stderr, "bench_sandbox: cannot read %s\n", humaneval.c_str());
      return 1;
    }
    auto r = nlohmann::json::parse(line);
    program = r["prompt"].get<std::string>() + r["canonical_solution"].get<std::string>() + "\n" +
              r["test"].get<std::string>() + "\ncheck(" + r["entry_point"].get<std::string>() +
              ")\n";
  }
  char tmpl[] = "/tmp/rlvr_bench_sandbox_XXXXXX";
  std::string dir = mkdtemp(tmpl);
  const std::vector<std::string> pass_argv = {"/usr/bin/python3", "-I", "-c", "pass"};
  const std::vector<std::string> he_argv = {"/usr/bin/python3", "-I", "solution.py"};

  auto sandboxed = [&](const std::vector<std::string>& args, const std::string& file) {
    vc::RunRequest req;
    req.argv = args;
    if (!file.empty()) req.files.push_back({"solution.py", file, false});
    req.limits.wall_seconds = 10;
    auto res = (*sandbox)->Run(req);
    return res.ok() && res->status == vc::RunStatus::kOk;
  };
  // Warm up both paths (page cache, slot cgroups).
  Measure(20, threads, [&] { return sandboxed(pass_argv, ""); });
  Measure(20, threads, [&] { return BareRun(pass_argv, "", "", ""); });

  std::printf("machine: %u cores; %d runs per workload, %d threads, %d sandbox slots\n",
              std::thread::hardware_concurrency(), runs, threads, slots);
  // Interleave the two sides in rounds so that load drift on a shared machine hits both; the
  // stats merge the rounds (latencies pooled, rate = runs / summed time).
  const int kRounds = 6;
  auto rounds = [&](int n, const std::function<bool()>& a, const std::function<bool()>& b,
                    Stats* sa, Stats* sb) {
    std::vector<Stats> ra, rb;
    for (int r = 0; r < kRounds; ++r) {
      ra.push_back(Measure(n / kRounds, threads, a));
      rb.push_back(Measure(n / kRounds, threads, b));
    }
    auto merge = [&](const std::vector<Stats>& v, Stats* out) {
      double secs = 0;
      std::vector<double> p50, p90;
      for (const Stats& s : v) {
        out->cpu_ms_per_run += s.cpu_ms_per_run / v.size();
        secs += (n / kRounds) / s.runs_per_s;
        p50.push_back(s.p50_ms);
        p90.push_back(s.p90_ms);
        out->failures += s.failures;
      }
      std::sort(p50.begin(), p50.end());
      std::sort(p90.begin(), p90.end());
      out->runs_per_s = (n / kRounds) * kRounds / secs;
      out->p50_ms = p50[p50.size() / 2];  // median of the rounds' medians
      out->p90_ms = p90[p90.size() / 2];
    };
    merge(ra, sa);
    merge(rb, sb);
  };
  Stats sb_pass, bare_pass, sb_he, bare_he;
  rounds(
      runs, [&] { return sandboxed(pass_argv, ""); },
      [&] { return BareRun(pass_argv, "", "", ""); }, &sb_pass, &bare_pass);
  rounds(
      runs / 2, [&] { return sandboxed(he_argv, program); },
      [&] { return BareRun(he_argv, "solution.py", program, dir); }, &sb_he, &bare_he);
  Print("sandboxed python -c pass", sb_pass);
  Print("bare python -c pass", bare_pass);
  Print("sandboxed HumanEval/0", sb_he);
  Print("bare HumanEval/0", bare_he);
  std::printf("sandbox_humaneval_0: rlvr %.1f runs/s, bare %.1f runs/s, ratio %.2f\n",
              sb_he.runs_per_s, bare_he.runs_per_s, sb_he.runs_per_s / bare_he.runs_per_s);
  std::string cleanup = "rm -rf " + dir;
  if (std::system(cleanup.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
  std::printf("sandbox_python_pass: rlvr %.1f runs/s, bare %.1f runs/s, ratio %.2f\n",
              sb_pass.runs_per_s, bare_pass.runs_per_s, sb_pass.runs_per_s / bare_pass.runs_per_s);
  return (sb_pass.failures + bare_pass.failures + sb_he.failures + bare_he.failures) == 0 ? 0 : 1;
}
