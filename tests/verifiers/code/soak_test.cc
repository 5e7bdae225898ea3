// Soak: many consecutive mixed benign and attack runs leave no process, cgroup, scratch mount or
// file descriptor behind and the supervisor's memory stays flat; fork bombs, a memory hog and an
// output flood running beside benign programs change no benign verdict.
//
// The full sizes of the issue (2,000 runs; 200 benign neighbours) run with RLVR_SOAK_FULL=1
// (the `sandbox_soak_full_test` CTest entry, labelled slow); CI runs a short variant.
#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/verifiers/code/attacks.h"
#include "verifiers/code/cgroup.h"

namespace rlvr::verifiers::code {
namespace {

bool Full() {
  const char* v = std::getenv("RLVR_SOAK_FULL");
  return v != nullptr && std::string(v) == "1";
}

int64_t RssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return 0;
}

int CountSlotCgroups() {
  internal::CgroupLayout layout = internal::DetectCgroups();
  int n = 0;
  std::string mine = absl::StrCat(internal::kSlotPrefix, getpid(), "-");
  for (const std::string* parent : {&layout.memory, &layout.pids}) {
    DIR* d = opendir(parent->c_str());
    while (dirent* e = d ? readdir(d) : nullptr) {
      if (absl::StartsWith(e->d_name, mine)) ++n;
    }
    if (d) closedir(d);
  }
  return n;
}

// Mounts named rlvr-work (per-run scratch) visible from the host: must be none, ever.
int CountScratchMountsOnHost() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (absl::StrContains(line, "rlvr-work") || absl::StrContains(line, "rlvr-sandbox-root")) ++n;
  }
  return n;
}

TEST(SoakTest, MixedRunsLeaveNothingBehind) {
  const int kRuns = Full() ? 2000 : 150;
  testing::LoopbackListener listener;
  std::vector<testing::Attack> attacks = testing::AllAttacks(listener.port(), false);
  // Python only (C++ compiles would dominate the time), and the long-running ones only in full.
  std::vector<testing::Attack> mix;
  for (const auto& a : attacks) {
    if (a.language != Language::kPython) continue;
    mix.push_back(a);
  }
  ASSERT_GE(mix.size(), 20u);
  std::vector<uint32_t> uids;
  int fds_before = testing::CountOpenFds();
  int64_t rss_after_warmup = 0, rss_end = 0;
  {
    SandboxOptions so;
    so.concurrency = 4;
    auto sb = Sandbox::Create(so);
    ASSERT_TRUE(sb.ok()) << sb.status();
    uids = (*sb)->ProgramHostUids();
    HarnessOptions ho;
    ho.run_limits = testing::Attack::DefaultLimits();
    ho.run_limits.wall_seconds = 0.6;
    // Benign programs get a generous clock: on a loaded CI machine a Python start-up alone can
    // pass 0.6 s, and a benign timeout here would be a flake, not a leak.
    HarnessOptions benign_options = ho;
    benign_options.run_limits.wall_seconds = 20;
    CodeHarness harness(sb->get(), benign_options);
    std::atomic<int> next{0}, benign_ok{0}, benign{0}, harness_errors{0};
    auto worker = [&] {
      for (int i = next++; i < kRuns; i = next++) {
        // Four benign runs for every attack.
        if (i % 5 != 4) {
          ++benign;
          auto r = harness.RunStdio(
              Language::kPython, "import sys\nn = int(sys.stdin.read())\nprint(n * (n + 1) // 2)\n",
              {{std::to_string(i), std::to_string(int64_t{i} * (i + 1) / 2)}});
          if (!r.ok()) {
            ++harness_errors;
          } else if (r->verdict == Verdict::kOk) {
            ++benign_ok;
          }
        } else {
          auto out = testing::RunAttack(**sb, ho, mix[(i / 5) % mix.size()]);
          if (absl::StartsWith(out.why, "harness error")) ++harness_errors;
        }
        if (i == kRuns / 5) rss_after_warmup = RssKb();
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
    rss_end = RssKb();
    EXPECT_EQ(harness_errors.load(), 0);
    EXPECT_EQ(benign_ok.load(), benign.load());
    EXPECT_GT(benign.load(), kRuns / 2);
    // While the sandbox is alive: slot cgroups exist, no scratch is visible on the host.
    EXPECT_EQ(CountSlotCgroups(), 2 * so.concurrency);
    EXPECT_EQ(CountScratchMountsOnHost(), 0);
    std::vector<std::string> left = testing::HostBreaches(uids);
    EXPECT_TRUE(left.empty()) << left.size() << " left, e.g. " << left.front();
  }
  EXPECT_EQ(CountSlotCgroups(), 0);
  EXPECT_EQ(testing::CountOpenFds(), fds_before);
  std::vector<std::string> left = testing::HostBreaches(uids);
  EXPECT_TRUE(left.empty()) << left.front();
  EXPECT_EQ(listener.Accepted(), 0);
  std::printf("soak: %d runs, supervisor RSS %lld kB after warm-up, %lld kB at the end\n", kRuns,
              static_cast<long long>(rss_after_warmup), static_cast<long long>(rss_end));
  EXPECT_GT(rss_after_warmup, 0);
  EXPECT_LT(rss_end - rss_after_warmup, 16 * 1024) << "supervisor memory grew";
}

TEST(SoakTest, HostileNeighboursChangeNoBenignVerdict) {
  const int kBenign = Full() ? 200 : 40;
  SandboxOptions so;
  so.concurrency = 8;
  auto sb = Sandbox::Create(so);
  ASSERT_TRUE(sb.ok()) << sb.status();
  HarnessOptions hostile_opts;
  hostile_opts.run_limits = testing::Attack::DefaultLimits();
  hostile_opts.run_limits.wall_seconds = Full() ? 20 : 6;
  HarnessOptions benign_opts;
  benign_opts.run_limits.wall_seconds = 30;
  CodeHarness benign(sb->get(), benign_opts);

  testing::LoopbackListener listener;
  std::vector<testing::Attack> all = testing::AllAttacks(listener.port(), false);
  std::vector<testing::Attack> bad;
  for (const auto& a : all) {
    if (a.name == "fork_bomb") {
      for (int i = 0; i < 3; ++i) bad.push_back(a);
    }
    if (a.name == "memory_hog" || a.name == "huge_stdout") bad.push_back(a);
  }
  ASSERT_EQ(bad.size(), 5u);
  std::vector<std::thread> attackers;
  std::vector<testing::AttackOutcome> bad_out(bad.size());
  for (size_t i = 0; i < bad.size(); ++i) {
    attackers.emplace_back([&, i] { bad_out[i] = testing::RunAttack(**sb, hostile_opts, bad[i]); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let them get going
  std::atomic<int> next{0}, ok{0}, done{0};
  std::vector<std::string> wrong;
  std::mutex mu;
  std::vector<std::thread> pool;
  for (int t = 0; t < 3; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < kBenign; i = next++) {
        auto r = benign.RunStdio(
            Language::kPython,
            "import sys\nn = int(sys.stdin.read())\nprint(sum(k * k for k in range(n)))\n",
            {{std::to_string(i * 100), std::to_string([&] {
                int64_t s = 0;
                for (int64_t k = 0; k < i * 100; ++k) s += k * k;
                return s;
              }())}});
        ++done;
        if (r.ok() && r->verdict == Verdict::kOk) {
          ++ok;
        } else {
          std::lock_guard<std::mutex> lock(mu);
          wrong.push_back(
              r.ok() ? absl::StrCat(i, ": ", std::string(VerdictName(r->verdict)), " ", r->detail)
                     : r.status().ToString());
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  for (auto& t : attackers) t.join();
  EXPECT_EQ(done.load(), kBenign);
  EXPECT_EQ(ok.load(), kBenign) << wrong.front();
  for (const auto& o : bad_out) EXPECT_FALSE(o.failed) << o.name << ": " << o.why;
}

}  // namespace
}  // namespace rlvr::verifiers::code
