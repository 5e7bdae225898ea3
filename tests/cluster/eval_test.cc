// cluster/eval.h: the pass@k estimator against hand-computed values, and RunEval on a tiny random
// model against an independent recount of its samples.
#include "cluster/eval.h"

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "cluster/demo_task.h"
#include "core/status.h"
#include "gtest/gtest.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/text/tokenizer.h"

namespace rlvr::cluster {
namespace {

TEST(PassAtKTest, HandComputedValues) {
  // 1 - C(n-c, k) / C(n, k), worked out by hand.
  EXPECT_DOUBLE_EQ(PassAtK(5, 2, 1), 0.4);                 // c / n
  EXPECT_NEAR(PassAtK(5, 2, 2), 1.0 - 3.0 / 10.0, 1e-15);  // C(3,2)=3, C(5,2)=10
  EXPECT_NEAR(PassAtK(5, 2, 3), 1.0 - 1.0 / 10.0, 1e-15);  // C(3,3)=1, C(5,3)=10
  EXPECT_EQ(PassAtK(5, 2, 4), 1.0);                        // n - c = 3 < 4
  EXPECT_NEAR(PassAtK(8, 3, 4), 1.0 - 5.0 / 70.0, 1e-15);  // C(5,4)=5, C(8,4)=70
  EXPECT_EQ(PassAtK(10, 0, 1), 0.0);
  EXPECT_EQ(PassAtK(10, 0, 10), 0.0);
  EXPECT_EQ(PassAtK(10, 10, 1), 1.0);
  EXPECT_EQ(PassAtK(4, 1, 4), 1.0);  // pass@n: any correct
  // C(199, 100) / C(200, 100) = 100 / 200: large n without overflow.
  EXPECT_NEAR(PassAtK(200, 1, 100), 0.5, 1e-12);
  // C(1000-10, 50) / C(1000, 50) = prod_{i=0}^{9} (950 - i) / (1000 - i).
  double ratio = 1;
  for (int i = 0; i < 10; ++i) ratio *= (950.0 - i) / (1000.0 - i);
  EXPECT_NEAR(PassAtK(1000, 10, 50), 1.0 - ratio, 1e-12);
}

TEST(PassAtKTest, DefaultKs) {
  EXPECT_EQ(DefaultPassKs(1), (std::vector<int64_t>{1}));
  EXPECT_EQ(DefaultPassKs(2), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(DefaultPassKs(8), (std::vector<int64_t>{1, 2, 4, 8}));
  EXPECT_EQ(DefaultPassKs(10), (std::vector<int64_t>{1, 2, 4, 8, 10}));
  EXPECT_EQ(DefaultPassKs(0), (std::vector<int64_t>{}));
}

// Exact 1 - C(n-c, k) / C(n, k) from binomials in long double (a second formula).
double ExactPassAtK(int64_t n, int64_t c, int64_t k) {
  auto binom = [](int64_t a, int64_t b) -> long double {
    if (b < 0 || b > a) return 0;
    long double r = 1;
    for (int64_t i = 1; i <= b; ++i) r = r * (a - b + i) / i;
    return r;
  };
  return static_cast<double>(1.0L - binom(n - c, k) / binom(n, k));
}

class RunEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tok = policy::Tokenizer::FromJson(ByteLevelTokenizerJson(), "byte tokenizer");
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
    auto c = policy::Preset("qwen3", "tiny");
    ASSERT_TRUE(c.ok());
    c->vocab_size = 257;
    c->max_position_embeddings = 64;
    c->eos_token_ids = {256};
    auto m = policy::CausalLM<float>::Create(*c);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
    model_->InitRandom(3, 0.5);  // a peaked random model: varied but not uniform samples
    for (const auto& p : MakeArithmeticProblems(5, 0, 6)) {
      records_.push_back({{"prompt", p.prompt}, {"answer", p.answer}});
      prompts_.push_back(tokenizer_->Encode(p.prompt));
    }
  }
  // "Correct" iff the completion's first byte is even: a verdict that varies across samples.
  static RewardFn ParityReward() {
    return [](const nlohmann::json&, const std::string& completion, int64_t,
              int64_t) -> absl::StatusOr<RewardResult> {
      RewardResult r;
      r.correct = !completion.empty() && static_cast<unsigned char>(completion[0]) % 2 == 0;
      r.total = r.correct ? 1.0 : 0.0;
      r.components["parity"] = r.total;
      return r;
    };
  }
  std::unique_ptr<policy::Tokenizer> tokenizer_;
  std::unique_ptr<policy::CausalLM<float>> model_;
  std::vector<nlohmann::json> records_;
  std::vector<std::vector<int32_t>> prompts_;
};

TEST_F(RunEvalTest, PassAtKMatchesAnIndependentRecount) {
  EvalOptions o;
  o.n = 8;
  o.greedy = true;
  o.max_new_tokens = 6;
  o.eos_ids = {256};
  o.seed = 11;
  auto report =
      RunEval(model_.get(), prompts_, PerSampleReward(&records_, ParityReward()), *tokenizer_, o);
  ASSERT_TRUE(report.ok()) << report.status();
  const int64_t P = static_cast<int64_t>(prompts_.size());
  ASSERT_EQ(static_cast<int64_t>(report->samples.size()), P * (o.n + 1));
  std::vector<int64_t> c(P, 0), seen(P, 0), greedy_seen(P, 0);
  int64_t greedy_correct = 0;
  for (const EvalSample& s : report->samples) {
    // The verdict recomputed from the text, not taken from the report.
    const bool ok = !s.completion.empty() && static_cast<unsigned char>(s.completion[0]) % 2 == 0;
    EXPECT_EQ(ok, s.reward.correct);
    if (s.greedy) {
      ++greedy_seen[s.problem];
      greedy_correct += ok;
    } else {
      ++seen[s.problem];
      c[s.problem] += ok;
    }
  }
  int64_t total = 0;
  for (int64_t i = 0; i < P; ++i) {
    EXPECT_EQ(seen[i], o.n);
    EXPECT_EQ(greedy_seen[i], 1);
    EXPECT_EQ(report->correct[i], c[i]);
    total += c[i];
  }
  // Not vacuous: some samples right, some wrong.
  EXPECT_GT(total, 0);
  EXPECT_LT(total, P * o.n);
  ASSERT_EQ(report->pass_at_k.size(), 4u);  // 1, 2, 4, 8
  double prev = -1;
  for (const auto& [k, v] : report->pass_at_k) {
    double want = 0;
    for (int64_t i = 0; i < P; ++i) want += ExactPassAtK(o.n, c[i], k);
    want /= P;
    EXPECT_NEAR(v, want, 1e-12) << "pass@" << k;
    EXPECT_GE(v, prev) << "pass@k must not decrease with k";
    prev = v;
    std::printf("pass@%lld = %.4f\n", static_cast<long long>(k), v);
  }
  EXPECT_NEAR(report->PassAt(1), static_cast<double>(total) / (P * o.n), 1e-12);
  EXPECT_NEAR(*report->greedy_accuracy, static_cast<double>(greedy_correct) / P, 1e-12);

  // The legacy entry point reports the same greedy accuracy and pass@8.
  PromptFn prompt = [this](const nlohmann::json& r) -> absl::StatusOr<std::vector<int32_t>> {
    return tokenizer_->Encode(r["prompt"].get<std::string>());
  };
  o.engine.max_batch = 256;
  o.engine.max_tokens_in_flight = 1 << 20;
  o.sampling.temperature = 1.0;
  auto again =
      RunEval(model_.get(), prompts_, PerSampleReward(&records_, ParityReward()), *tokenizer_, o);
  ASSERT_TRUE(again.ok());
  auto legacy =
      Evaluate(model_.get(), records_, prompt, ParityReward(), *tokenizer_, {256}, 6, 8, 11);
  ASSERT_TRUE(legacy.ok()) << legacy.status();
  EXPECT_EQ(legacy->accuracy, *again->greedy_accuracy);
  EXPECT_EQ(legacy->pass_at_k, again->PassAt(8));
}

TEST_F(RunEvalTest, BadOptionsAreErrors) {
  auto reward = PerSampleReward(&records_, ParityReward());
  EvalOptions o;
  o.n = 0;
  auto r = RunEval(model_.get(), prompts_, reward, *tokenizer_, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("n (samples per problem)"), std::string::npos);
  o.n = 4;
  o.ks = {8};
  r = RunEval(model_.get(), prompts_, reward, *tokenizer_, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("pass@8"), std::string::npos);
  o.ks = {};
  std::vector<std::vector<int32_t>> bad = {{}};  // an empty prompt, named by the engine
  r = RunEval(model_.get(), bad, reward, *tokenizer_, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("request 0"), std::string::npos) << r.status();
}

}  // namespace
}  // namespace rlvr::cluster
