// The sandbox itself: results of ordinary programs, isolation facts, limits, fail-closed start,
// supervisor death, stale-state sweeping.
#include "verifiers/code/sandbox.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/verifiers/code/attacks.h"
#include "verifiers/code/cgroup.h"

namespace rlvr::verifiers::code {
namespace {

std::unique_ptr<Sandbox> MakeSandbox(int concurrency = 2) {
  SandboxOptions o;
  o.concurrency = concurrency;
  auto sb = Sandbox::Create(o);
  EXPECT_TRUE(sb.ok()) << sb.status();
  return sb.ok() ? *std::move(sb) : nullptr;
}

RunRequest Python(const std::string& code) {
  RunRequest r;
  r.argv = {"/usr/bin/python3", "-I", "-c", code};
  r.limits.wall_seconds = 5;
  return r;
}

TEST(SandboxTest, EchoesStdinAndReportsExitCode) {
  auto sb = MakeSandbox();
  ASSERT_NE(sb, nullptr);
  RunRequest r = Python("import sys; d = sys.stdin.read(); print(len(d)); sys.exit(3)");
  r.stdin_data = std::string(300000, 'a');  // more than a pipe buffer
  auto res = sb->Run(r);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->status, RunStatus::kRuntimeError);
  EXPECT_EQ(res->exit_code, 3);
  EXPECT_EQ(res->stdout_data, "300000\n");
  EXPECT_GT(res->wall_seconds, 0.0);
  EXPECT_GT(res->cpu_seconds, 0.0);
  EXPECT_GT(res->peak_memory_bytes, 1 << 20);
}

TEST(SandboxTest, ProgramSeesOnlyItsRuntimeAndNoSupervisorState) {
  setenv(testing::kSecretEnv, testing::kSecretValue, 1);
  auto sb = MakeSandbox(1);
  ASSERT_NE(sb, nullptr);
  auto res =
      sb->Run(Python("import os\nprint(os.getuid(), os.getgid())\nprint(sorted(os.listdir('/')))\n"
                     "print(sorted(os.environ))\nprint(os.getcwd())\n"
                     "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
                     "print(open('/proc/self/environ','rb').read())\nimport "
                     "socket\nprint(socket.gethostname())\n"));
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->status, RunStatus::kOk) << res->stderr_data;
  std::vector<std::string> lines = absl::StrSplit(res->stdout_data, '\n');
  ASSERT_GE(lines.size(), 8u) << res->stdout_data;
  EXPECT_EQ(lines[0], "1000 1000");
  EXPECT_EQ(lines[1],
            "['bin', 'dev', 'etc', 'lib', 'lib32', 'lib64', 'proc', 'sbin', 'tmp', 'usr', 'work']");
  EXPECT_EQ(lines[2], "['HOME', 'LANG', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'TMPDIR']");
  EXPECT_EQ(lines[3], "/work");
  EXPECT_EQ(lines[4], "['2']");  // only itself: pid 1 is the run's init, hidden by hidepid=2
  EXPECT_FALSE(absl::StrContains(res->stdout_data, testing::kSecretValue));
  EXPECT_EQ(lines[6], "sandbox");
}

TEST(SandboxTest, FilesGoInAndExportComesOut) {
  auto sb = MakeSandbox(1);
  ASSERT_NE(sb, nullptr);
  RunRequest r;
  r.argv = {"/bin/sh", "./make.sh"};
  r.files.push_back({"make.sh", "cat in.txt in.txt > out.bin\necho done\n", true});
  r.files.push_back({"in.txt", "hello\n", false});
  r.export_file = "out.bin";
  auto res = sb->Run(r);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->status, RunStatus::kOk) << res->stderr_data;
  EXPECT_EQ(res->stdout_data, "done\n");
  ASSERT_TRUE(res->exported.has_value());
  EXPECT_EQ(*res->exported, "hello\nhello\n");
}

TEST(SandboxTest, ScratchIsFreshForEveryRun) {
  auto sb = MakeSandbox(1);
  ASSERT_NE(sb, nullptr);
  auto first = sb->Run(Python("open('/work/left', 'w').write('x'); open('/tmp/t', 'w')"));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->status, RunStatus::kOk) << first->stderr_data;
  auto second = sb->Run(Python("import os; print(sorted(os.listdir('/work')))"));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->stdout_data, "[]\n");
}

TEST(SandboxTest, ScratchIsSizeCapped) {
  auto sb = MakeSandbox(1);
  ASSERT_NE(sb, nullptr);
  RunRequest r = Python("f = open('/work/big', 'wb')\nfor i in range(64): f.write(b'x' * 2**20)\n");
  r.limits.scratch_bytes = 8 << 20;
  auto res = sb->Run(r);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->status, RunStatus::kRuntimeError);
  EXPECT_TRUE(absl::StrContains(res->stderr_data, "No space left")) << res->stderr_data;
}

TEST(SandboxTest, LimitsGiveTheirVerdicts) {
  auto sb = MakeSandbox(2);
  ASSERT_NE(sb, nullptr);
  RunRequest t = Python("while True: pass");
  t.limits.wall_seconds = 0.5;
  auto timeout = sb->Run(t);
  ASSERT_TRUE(timeout.ok());
  EXPECT_EQ(timeout->status, RunStatus::kTimeout);
  EXPECT_GE(timeout->wall_seconds, 0.5);

  RunRequest m = Python("a = bytearray(400 * 2**20); a[::4096] = b'x' * len(a[::4096])");
  m.limits.memory_bytes = 128 << 20;
  auto memory = sb->Run(m);
  ASSERT_TRUE(memory.ok());
  EXPECT_EQ(memory->status, RunStatus::kMemory) << memory->detail;

  RunRequest o = Python("print('z' * 5000000)");
  o.limits.output_bytes = 1000;
  auto output = sb->Run(o);
  ASSERT_TRUE(output.ok());
  EXPECT_EQ(output->status, RunStatus::kOutputLimit);
  EXPECT_EQ(output->stdout_data.size(), 1000u);
  EXPECT_TRUE(output->stdout_truncated);

  RunRequest c =
      Python("import time\nt = time.process_time()\nwhile time.process_time() - t < 5: pass");
  c.limits.wall_seconds = 10;
  c.limits.cpu_seconds = 1;
  auto cpu = sb->Run(c);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ(cpu->status, RunStatus::kTimeout) << cpu->detail;
}

TEST(SandboxTest, ExecFailureIsARuntimeError) {
  auto sb = MakeSandbox(1);
  ASSERT_NE(sb, nullptr);
  RunRequest r;
  r.argv = {"/usr/bin/does-not-exist"};
  auto res = sb->Run(r);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->status, RunStatus::kRuntimeError);
  EXPECT_EQ(res->exit_code, 127);
  EXPECT_TRUE(absl::StrContains(res->detail, "execve /usr/bin/does-not-exist")) << res->detail;
}

TEST(SandboxTest, BadRequestsAreInvalidArgument) {
  auto sb = MakeSandbox(1);
  ASSERT_NE(sb, nullptr);
  RunRequest empty;
  EXPECT_EQ(sb->Run(empty).status().code(), absl::StatusCode::kInvalidArgument);
  RunRequest slash = Python("pass");
  slash.files.push_back({"../escape", "x", false});
  auto s = sb->Run(slash);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "../escape"));
  RunRequest many = Python("pass");
  for (int i = 0; i < 9; ++i) many.files.push_back({absl::StrCat("f", i), "", false});
  EXPECT_EQ(sb->Run(many).status().code(), absl::StatusCode::kInvalidArgument);
  SandboxOptions o;
  o.concurrency = 0;
  EXPECT_EQ(Sandbox::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.concurrency = 1;
  o.allow_missing.insert("no_such_primitive");
  auto bad = Sandbox::Create(o);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "no_such_primitive"));
}

class FailClosedTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FailClosedTest, MissingPrimitiveRefusesToStartAndNamesIt) {
  SandboxOptions o;
  o.concurrency = 1;
  o.testing.force_unavailable.insert(GetParam());
  auto sb = Sandbox::Create(o);
  ASSERT_FALSE(sb.ok());
  EXPECT_EQ(sb.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(sb.status().message(), absl::StrCat("primitive ", GetParam())))
      << sb.status();
}

INSTANTIATE_TEST_SUITE_P(AllPrimitives, FailClosedTest, ::testing::ValuesIn(Sandbox::Primitives()));

TEST(SandboxTest, AllowMissingRunsWithoutThePrimitiveAndWarns) {
  SandboxOptions o;
  o.concurrency = 1;
  o.testing.force_unavailable = {"seccomp", "network_namespace"};
  o.allow_missing = {"seccomp", "network_namespace"};
  auto sb = Sandbox::Create(o);
  ASSERT_TRUE(sb.ok()) << sb.status();
  ASSERT_EQ((*sb)->warnings().size(), 2u);
  EXPECT_TRUE(absl::StrContains(absl::StrJoin((*sb)->warnings(), ";"), "running without seccomp"));
  auto res = (*sb)->Run(Python("print(1)"));
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->stdout_data, "1\n");
  // A primitive that cannot be done without is never allowed.
  SandboxOptions p;
  p.concurrency = 1;
  p.testing.force_unavailable = {"pid_namespace"};
  p.allow_missing = {"pid_namespace"};
  EXPECT_EQ(Sandbox::Create(p).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SandboxTest, DestroyingTheSandboxRemovesItsCgroups) {
  internal::CgroupLayout layout = internal::DetectCgroups();
  ASSERT_FALSE(layout.memory.empty());
  std::string dir = absl::StrCat(layout.memory, "/", internal::kSlotPrefix, getpid(), "-0");
  {
    auto sb = MakeSandbox(1);
    ASSERT_NE(sb, nullptr);
    EXPECT_EQ(access(dir.c_str(), F_OK), 0) << dir;
  }
  EXPECT_NE(access(dir.c_str(), F_OK), 0) << dir << " survived the sandbox";
}

TEST(SandboxTest, SlotIsReplacedWhenItsZygoteDies) {
  auto sb = MakeSandbox(1);
  ASSERT_NE(sb, nullptr);
  internal::CgroupLayout layout = internal::DetectCgroups();
  std::string procs =
      absl::StrCat(layout.memory, "/", internal::kSlotPrefix, getpid(), "-0/cgroup.procs");
  auto text = internal::ReadSmallFile(procs);
  ASSERT_TRUE(text.ok()) << text.status();
  int killed = 0;
  for (absl::string_view pid : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    kill(std::stoi(std::string(pid)), SIGKILL);
    ++killed;
  }
  EXPECT_EQ(killed, 2);  // C and the zygote
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto res = sb->Run(Python("print('again')"));
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->stdout_data, "again\n");
}

// SIGKILL of the supervisor leaves no sandboxed process alive after 1 s; a restart sweeps the
// cgroups it left.
TEST(SandboxTest, SupervisorKilledLeavesNothingAliveAndRestartSweeps) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    SandboxOptions o;
    o.concurrency = 2;
    auto sb = Sandbox::Create(o);
    if (!sb.ok()) _exit(2);
    std::vector<uint32_t> uids = (*sb)->ProgramHostUids();
    std::vector<std::thread> runs;
    for (int i = 0; i < 2; ++i) {
      runs.emplace_back([&] {
        RunRequest r = Python(
            "import os, time\nfor i in range(5):\n    if os.fork() == 0:\n        time.sleep(60)\n"
            "time.sleep(60)\n");
        r.limits.wall_seconds = 60;
        (void)(*sb)->Run(r);
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    (void)!write(ready[1], uids.data(), uids.size() * sizeof(uint32_t));
    for (auto& t : runs) t.join();
    _exit(0);
  }
  close(ready[1]);
  uint32_t uids[2] = {0, 0};
  ASSERT_EQ(read(ready[0], uids, sizeof(uids)), static_cast<ssize_t>(sizeof(uids)));
  close(ready[0]);
  std::vector<uint32_t> uid_list(uids, uids + 2);
  ASSERT_GE(testing::HostBreaches(uid_list).size(), 12u) << "the programs did not start";
  kill(child, SIGKILL);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::vector<std::string> left = testing::HostBreaches(uid_list);
  EXPECT_TRUE(left.empty()) << left.size() << " sandboxed processes survived, e.g. " << left[0];

  internal::CgroupLayout layout = internal::DetectCgroups();
  std::string dir = absl::StrCat(layout.memory, "/", internal::kSlotPrefix, child, "-0");
  EXPECT_EQ(access(dir.c_str(), F_OK), 0) << "expected the dead supervisor's cgroup to remain";
  auto swept = SweepStaleSandboxes();
  ASSERT_TRUE(swept.ok());
  EXPECT_GE(*swept, 2);
  EXPECT_NE(access(dir.c_str(), F_OK), 0) << dir << " was not swept";
}

}  // namespace
}  // namespace rlvr::verifiers::code
