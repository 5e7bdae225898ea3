// The attack suite: every hostile program gets its expected verdict and leaves the host untouched;
// re-run with each confinement layer disabled in turn, the suite fails at least one case.
#include <cstdlib>

#include "gtest/gtest.h"
#include "tests/verifiers/code/attacks.h"

namespace rlvr::verifiers::code {
namespace {

using testing::AllAttacks;
using testing::Attack;
using testing::AttackOutcome;

HarnessOptions SuiteOptions() {
  HarnessOptions o;
  o.run_limits = Attack::DefaultLimits();
  o.compile_limits.wall_seconds = 8.0;
  o.compile_limits.memory_bytes = int64_t{768} << 20;
  o.stop_at_first_failure = true;
  return o;
}

class AttackSuiteTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { setenv(testing::kSecretEnv, testing::kSecretValue, 1); }
};

TEST_F(AttackSuiteTest, EveryAttackGetsItsVerdictAndTheHostIsUntouched) {
  testing::LoopbackListener listener;
  SandboxOptions so;
  so.concurrency = 4;
  auto sandbox = Sandbox::Create(so);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status();
  const int fds_before = testing::CountOpenFds();
  std::vector<Attack> attacks = AllAttacks(listener.port(), /*bounded_only=*/false);
  ASSERT_GE(attacks.size(), 30u);
  std::vector<AttackOutcome> outcomes = testing::RunAttacks(**sandbox, SuiteOptions(), attacks, 4);
  ASSERT_EQ(outcomes.size(), attacks.size());
  for (const AttackOutcome& o : outcomes) {
    EXPECT_FALSE(o.failed) << o.name << ": " << o.why;
  }
  EXPECT_EQ(listener.Accepted(), 0) << "a sandboxed program reached host loopback";
  std::vector<std::string> breaches = testing::HostBreaches((*sandbox)->ProgramHostUids());
  EXPECT_TRUE(breaches.empty()) << breaches.front();
  EXPECT_EQ(testing::CountOpenFds(), fds_before) << "file descriptors leaked";
}

class LayerTest : public ::testing::TestWithParam<Layer> {
 protected:
  static void SetUpTestSuite() { setenv(testing::kSecretEnv, testing::kSecretValue, 1); }
};

TEST_P(LayerTest, DisablingTheLayerFailsAtLeastOneAttack) {
  testing::LoopbackListener listener;
  SandboxOptions so;
  so.concurrency = 6;
  so.testing.disabled_layers.insert(GetParam());
  auto sandbox = Sandbox::Create(so);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status();
  std::vector<Attack> attacks = AllAttacks(listener.port(), /*bounded_only=*/true);
  // Compile-time abuse does not exercise run-time layers; skip it to keep the test short.
  std::vector<Attack> runtime;
  for (Attack& a : attacks) {
    if (a.name.rfind("cpp_include", 0) != 0 && a.name != "cpp_template_bomb") runtime.push_back(a);
  }
  std::vector<AttackOutcome> outcomes = testing::RunAttacks(**sandbox, SuiteOptions(), runtime, 6);
  int failed = 0;
  std::string which;
  for (const AttackOutcome& o : outcomes) {
    if (o.failed) {
      ++failed;
      absl::StrAppend(&which, "\n  ", o.name, ": ", o.why.substr(0, 160));
    }
  }
  listener.Accepted();
  EXPECT_GE(failed, 1) << "layer " << std::string(LayerName(GetParam()))
                       << " is not load-bearing: all " << outcomes.size() << " attacks passed";
  std::printf("layer %s off: %d of %zu attacks failed:%s\n",
              std::string(LayerName(GetParam())).c_str(), failed, outcomes.size(), which.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    AllLayers, LayerTest,
    ::testing::Values(Layer::kSeccomp, Layer::kNetworkNamespace, Layer::kUserNamespace,
                      Layer::kPidsLimit, Layer::kMemoryLimit, Layer::kOutputCap, Layer::kWallClock),
    [](const ::testing::TestParamInfo<Layer>& info) { return std::string(LayerName(info.param)); });

}  // namespace
}  // namespace rlvr::verifiers::code
