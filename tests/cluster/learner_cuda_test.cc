// The GPU learner (Learner::UseCuda, cluster/learner.h) against the CPU learner on the same
// weights: SFT and GRPO updates (losses, gradient norms, the weights after the updates, the
// AdamW state brought back by SyncOptimizerToHost), SyncFromHost after the host weights changed
// (a resume), router replay against the CPU's, and the errors: UseCuda without a GPU or without an
// optimizer (every build). The CPU runs its products in bf16 (SetMatmulPrecision(kBf16)) on bf16-grid
// weights, as in tests/policy/model/cuda_train_test.cc, whose tolerances (and reasons) apply:
// logprob-level quantities 2e-2 relative, gradient norms 6e-2, weight updates 0.25 relative L2
// (Adam normalizes each element's step, so the update direction, not the gradient size, is
// compared).
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

#include "cluster/learner.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"
#include "kernels/matmul.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/policy/model/cuda_model_test_util.h"

namespace rlvr::cluster {
namespace {

using policy::CausalLM;
using policy::ModelCase;

struct Side {
  std::unique_ptr<CausalLM<float>> model;
  std::unique_ptr<policy::AdamW> optimizer;
  std::unique_ptr<Learner> learner;
};

Side MakeSide(const ModelCase& mc, uint64_t seed, bool cuda) {
  Side s;
  s.model = policy::RandomModel(mc, seed);
  policy::AdamWConfig oc;
  oc.lr = 2e-3;
  oc.weight_decay = 0.05;
  oc.max_grad_norm = 1.0;
  auto opt = policy::AdamW::Create(oc, TrainableParams(s.model.get()));
  EXPECT_TRUE(opt.ok()) << opt.status();
  s.optimizer = std::make_unique<policy::AdamW>(std::move(*opt));
  s.learner = std::make_unique<Learner>(s.model.get(), s.optimizer.get());
  if (cuda) {
    absl::Status st = s.learner->UseCuda();
    EXPECT_TRUE(st.ok()) << st;
  }
  return s;
}

// Relative L2 distance of the weight changes from `start` on the two sides.
double UpdateDistance(const CausalLM<float>& a, const CausalLM<float>& b,
                      const CausalLM<float>& start) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < start.num_param_elements(); ++i) {
    const double da = a.param_data()[i] - start.param_data()[i];
    const double db = b.param_data()[i] - start.param_data()[i];
    num += (da - db) * (da - db);
    den += db * db;
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

TokenBatch SmallBatch(int64_t vocab) {
  std::vector<std::vector<int32_t>> prompts, completions;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back(policy::RandomIds(5 + i, vocab, 100 + i));
    completions.push_back(policy::RandomIds(7 + 2 * (i % 2), vocab, 200 + i));
  }
  auto b = MakeTokenBatch(prompts, completions);
  EXPECT_TRUE(b.ok()) << b.status();
  return *b;
}

class LearnerCudaTest : public ::testing::Test {
 protected:
  void SetUp() override { kernels::SetMatmulPrecision(kernels::MatmulPrecision::kBf16); }
  void TearDown() override { kernels::SetMatmulPrecision(kernels::MatmulPrecision::kHighest); }
};

TEST_F(LearnerCudaTest, SftUpdatesMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const char* arch : {"qwen3", "qwen3_moe"}) {
    const ModelCase mc{arch, policy::MustPreset(arch, "tiny")};
    Side cpu = MakeSide(mc, 3, false), gpu = MakeSide(mc, 3, true);
    auto start = policy::RandomModel(mc, 3);
    const TokenBatch batch = SmallBatch(mc.config.vocab_size);
    for (int step = 0; step < 3; ++step) {
      auto sc = cpu.learner->SftUpdate(batch, 0.01);
      auto sg = gpu.learner->SftUpdate(batch, 0.01);
      ASSERT_TRUE(sc.ok()) << sc.status();
      ASSERT_TRUE(sg.ok()) << sg.status();
      EXPECT_NEAR(sg->loss, sc->loss, 2e-2 * std::abs(sc->loss)) << arch << " step " << step;
      EXPECT_NEAR(sg->grad_norm, sc->grad_norm, 6e-2 * sc->grad_norm) << arch;
      EXPECT_DOUBLE_EQ(sg->lr, sc->lr);
      EXPECT_FALSE(sg->skipped);
    }
    // The GPU learner copied its weights back after each update.
    EXPECT_LE(UpdateDistance(*gpu.model, *cpu.model, *start), 0.25) << arch;
    // The AdamW state comes back for a checkpoint.
    ASSERT_TRUE(gpu.learner->SyncOptimizerToHost().ok());
    EXPECT_EQ(gpu.optimizer->step(), 3);
    double num = 0, den = 0;
    for (size_t i = 0; i < cpu.optimizer->params().size(); ++i) {
      const std::vector<float>& a = gpu.optimizer->exp_avg_sq(i);
      const std::vector<float>& b = cpu.optimizer->exp_avg_sq(i);
      ASSERT_EQ(a.size(), b.size());
      for (size_t j = 0; j < a.size(); ++j) {
        num += (static_cast<double>(a[j]) - b[j]) * (static_cast<double>(a[j]) - b[j]);
        den += static_cast<double>(b[j]) * b[j];
      }
    }
    EXPECT_LE(std::sqrt(num / den), 0.15) << arch << ": second moments differ";
  }
}

TEST_F(LearnerCudaTest, GrpoUpdateAndResumeMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const ModelCase mc{"qwen3", policy::MustPreset("qwen3", "tiny")};
  Side cpu = MakeSide(mc, 5, false), gpu = MakeSide(mc, 5, true);
  const TokenBatch batch = SmallBatch(mc.config.vocab_size);
  std::vector<float> adv(static_cast<size_t>(batch.B * batch.T), 0.f);
  for (int64_t b = 0; b < batch.B; ++b) {
    for (int64_t t = 0; t < batch.T; ++t) {
      if (batch.mask[b * batch.T + t]) adv[b * batch.T + t] = (b % 2 == 0) ? 1.f : -1.f;
    }
  }
  GrpoUpdateOptions o;
  o.group_size = 2;
  o.mini_batches = 2;  // two optimizer steps: old logprobs recomputed first
  auto sc = cpu.learner->GrpoUpdate(batch, adv, {}, {}, o);
  auto sg = gpu.learner->GrpoUpdate(batch, adv, {}, {}, o);
  ASSERT_TRUE(sc.ok()) << sc.status();
  ASSERT_TRUE(sg.ok()) << sg.status();
  EXPECT_EQ(sg->optimizer_steps, 2);
  EXPECT_NEAR(sg->entropy, sc->entropy, 2e-2 * sc->entropy);
  EXPECT_NEAR(sg->grad_norm, sc->grad_norm, 6e-2 * sc->grad_norm);
  auto start = policy::RandomModel(mc, 5);
  EXPECT_LE(UpdateDistance(*gpu.model, *cpu.model, *start), 0.25);

  // A resume: the host weights change (loaded from a checkpoint); SyncFromHost sends them.
  std::copy_n(cpu.model->param_data(), cpu.model->num_param_elements(),
              gpu.model->param_data());
  ASSERT_TRUE(gpu.learner->SyncFromHost().ok());
  auto lc = cpu.learner->LogProbs(batch);
  auto lg = gpu.learner->LogProbs(batch);
  ASSERT_TRUE(lc.ok() && lg.ok());
  EXPECT_LE(policy::RelErr(lg->data(), lc->data(), static_cast<int64_t>(lc->size())), 2e-2);
}

// Router replay on the GPU: every position of the batch (padding included) replays random
// experts (each row K distinct, drawn per position and MoE layer), so both learners route every
// token identically whatever their routers' bf16 differences: the expert load of the last
// forward must equal the histogram of the replayed ids exactly (an independent reference), and
// the GRPO update (loss, entropy, gradient norm, weights after it) must match the CPU's.
TEST_F(LearnerCudaTest, RouterReplayMatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const ModelCase mc{"qwen3_moe", policy::MustPreset("qwen3_moe", "tiny")};
  Side cpu = MakeSide(mc, 7, false), gpu = MakeSide(mc, 7, true);
  TokenBatch batch = SmallBatch(mc.config.vocab_size);
  const int64_t E = mc.config.num_experts, K = mc.config.num_experts_per_tok;
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < mc.config.num_hidden_layers; ++l) moe_layers += mc.config.IsMoeLayer(l);
  batch.moe_layers = moe_layers;
  batch.top_k = K;
  batch.experts.clear();
  std::mt19937 rng(3);
  std::vector<std::vector<int64_t>> hist(static_cast<size_t>(moe_layers),
                                         std::vector<int64_t>(static_cast<size_t>(E), 0));
  for (int64_t n = 0; n < batch.B * batch.T; ++n) {
    for (int64_t m = 0; m < moe_layers; ++m) {
      std::vector<int32_t> perm(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) perm[e] = static_cast<int32_t>(e);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int64_t k = 0; k < K; ++k) {
        batch.experts.push_back(perm[k]);
        ++hist[m][perm[k]];
      }
    }
  }
  ASSERT_EQ(batch.num_replayed_tokens(), batch.B * batch.T);
  std::vector<float> adv(static_cast<size_t>(batch.B * batch.T), 0.f);
  for (int64_t b = 0; b < batch.B; ++b) {
    for (int64_t t = 0; t < batch.T; ++t) {
      if (batch.mask[b * batch.T + t]) adv[b * batch.T + t] = (b % 2 == 0) ? 1.f : -1.f;
    }
  }
  GrpoUpdateOptions o;
  o.group_size = 2;
  o.aux_loss_coef = 0.01;
  auto sc = cpu.learner->GrpoUpdate(batch, adv, {}, {}, o);
  auto sg = gpu.learner->GrpoUpdate(batch, adv, {}, {}, o);
  ASSERT_TRUE(sc.ok()) << sc.status();
  ASSERT_TRUE(sg.ok()) << sg.status();
  EXPECT_EQ(sg->replayed_tokens, sc->replayed_tokens);
  ASSERT_EQ(sg->expert_load.size(), static_cast<size_t>(moe_layers));
  for (int64_t m = 0; m < moe_layers; ++m) {
    EXPECT_EQ(sg->expert_load[m], hist[m]) << "GPU expert load of MoE layer " << m;
    EXPECT_EQ(sc->expert_load[m], hist[m]) << "CPU expert load of MoE layer " << m;
  }
  EXPECT_NEAR(sg->aux_loss, sc->aux_loss, 1e-3 * std::max(1.0, sc->aux_loss));
  EXPECT_NEAR(sg->entropy, sc->entropy, 2e-2 * sc->entropy);
  EXPECT_NEAR(sg->grad_norm, sc->grad_norm, 6e-2 * sc->grad_norm);
  auto start = policy::RandomModel(mc, 7);
  EXPECT_LE(UpdateDistance(*gpu.model, *cpu.model, *start), 0.25);
  // LogProbs replays too: same logprobs as the CPU's replayed ones.
  auto lc = cpu.learner->LogProbs(batch);
  auto lg = gpu.learner->LogProbs(batch);
  ASSERT_TRUE(lc.ok() && lg.ok());
  EXPECT_LE(policy::RelErr(lg->data(), lc->data(), static_cast<int64_t>(lc->size())), 2e-2);
  // A bad expert id is rejected on the host, naming the layer and token, as on the CPU.
  batch.experts[K] = static_cast<int32_t>(E);  // token 0, second MoE layer or token 1's first
  auto bad = gpu.learner->LogProbs(batch);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_NE(bad.status().message().find(absl::StrCat("forced expert ", E)), std::string::npos)
      << bad.status();
}

// Every build, with or without a GPU.
TEST(LearnerCudaArgs, UseCudaErrors) {
  const ModelCase mc{"qwen3", policy::MustPreset("qwen3", "tiny")};
  auto model = policy::RandomModel(mc, 9);
  Learner no_opt(model.get(), nullptr);
  EXPECT_EQ(no_opt.UseCuda().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(no_opt.on_cuda());
  if (kernels::cuda::testing::HaveGpu()) return;
  auto opt = policy::AdamW::Create({}, TrainableParams(model.get()));
  ASSERT_TRUE(opt.ok());
  Learner learner(model.get(), &*opt);
  absl::Status st = learner.UseCuda();
  EXPECT_EQ(st.code(), kernels::cuda::BuiltWithCuda() ? absl::StatusCode::kFailedPrecondition
                                                      : absl::StatusCode::kUnimplemented)
      << st;
  EXPECT_NE(st.message().find("device: cuda"), std::string::npos) << st;
  EXPECT_FALSE(learner.on_cuda());
  // The learner still trains on the CPU after the failed switch.
  const TokenBatch batch = SmallBatch(mc.config.vocab_size);
  auto s = learner.SftUpdate(batch, 0.0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(std::isfinite(s->loss));
  EXPECT_EQ(opt->step(), 1);
}

}  // namespace
}  // namespace rlvr::cluster
