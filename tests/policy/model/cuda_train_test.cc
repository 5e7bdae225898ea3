// CudaTrainModel (policy/model/cuda_train.h) against the CPU CausalLM<float>, whose backward is
// checked by float64 finite differences (model_test.cc):
//   * per-token logprobs, entropies, the MoE aux loss and routing counts of the forward;
//   * every parameter's gradient after Backward with random dlogprob AND dentropy (and the aux
//     loss for MoE), on the configs of cuda_model_test_util.h (every architecture at tiny, head
//     dims 16 / 64 / 128, q/k/v/o biases, a shared expert, a dense first layer, a padded
//     vocabulary), some targets skipped (-1);
//   * packed rows (positions restarting inside a row) against the CPU's packed forward;
//   * three SFT steps (Forward, TokenLogProbs, Backward, OptimizerStep with clipping and weight
//     decay) against the CPU AdamW: gradient norms, learning rates and the weights after them;
//   * bad input: unsupported configs, Create without a GPU (host checks, every build), and with a
//     GPU: calls out of order, B*T above max_tokens, ids / targets outside the vocabulary, bad
//     positions, and a rejected call leaves the gradients as they were.
// The CPU runs with SetMatmulPrecision(kBf16) on bf16-grid weights (see cuda_model_test_util.h).
//
// Tolerances (max |gpu - cpu| / max |cpu| per tensor): logprobs and entropies 2e-2 as the
// logits in cuda_model_test.cc. Gradients 6e-2: on top of the forward's extra bf16 roundings the
// GPU rounds every gradient entering a GEMM to bf16 (the residual-stream gradient once per block,
// dlogits, the attention and MLP input gradients; the CPU keeps them fp32), a relative 2^-9 each,
// compounded over 2-4 layers and the LM head, and the attention backward's bf16 dq/dk/dv. A
// wiring error (a transposed GEMM, a missed accumulation, a wrong offset) is O(1). MoE routing
// can differ from the CPU's on near-ties of the router; when the routing counts differ the test
// prints it and checks only that every gradient is written and finite (RandomModel's spread
// router makes near-ties rare).
#include "policy/model/cuda_train.h"

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda.h"
#include "kernels/matmul.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/policy/model/cuda_model_test_util.h"

namespace rlvr::policy {
namespace {

constexpr double kLogpTol = 2e-2;
constexpr double kGradTol = 6e-2;

struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> ids, targets, positions;
  std::vector<float> dlogprob, dentropy;
};

// B rows of T random tokens; targets are the next tokens, the last of each row -1 and every
// fifth -1 too; random upstream gradients.
Batch RandomBatch(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  Batch b;
  b.B = B;
  b.T = T;
  b.ids = RandomIds(B * T, vocab, seed);
  b.targets.assign(static_cast<size_t>(B * T), -1);
  std::mt19937_64 rng(seed + 7);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t t = 0; t + 1 < T; ++t) {
      if ((r * T + t) % 5 != 3) b.targets[r * T + t] = b.ids[r * T + t + 1];
    }
  }
  for (int64_t i = 0; i < B * T; ++i) {
    b.dlogprob.push_back(normal(rng) / static_cast<float>(B * T));
    b.dentropy.push_back(0.3f * normal(rng) / static_cast<float>(B * T));
  }
  return b;
}

// Keeps only targets below `vocab` (a padded vocabulary).
void ClampTargets(Batch* b, int64_t vocab) {
  for (int32_t& t : b->targets) {
    if (t >= vocab) t = -1;
  }
}

class CudaTrainTest : public ::testing::TestWithParam<ModelCase> {
 protected:
  void SetUp() override { kernels::SetMatmulPrecision(kernels::MatmulPrecision::kBf16); }
  void TearDown() override { kernels::SetMatmulPrecision(kernels::MatmulPrecision::kHighest); }
};

// Runs forward, logprobs and backward on both sides and compares everything. forced: router
// replay for both sides (CausalLM::Forward's forced_experts), or empty.
void CompareStep(CausalLM<float>& cpu, CudaTrainModel& gpu, const Batch& b, double aux_weight,
                 const std::string& what, std::span<const int32_t* const> forced = {}) {
  const int64_t N = b.B * b.T;
  const int32_t* pos = b.positions.empty() ? nullptr : b.positions.data();
  ASSERT_TRUE(cpu.Forward(b.ids.data(), b.B, b.T, forced, pos).ok());
  ASSERT_TRUE(gpu.Forward(b.ids.data(), b.B, b.T, forced, pos).ok()) << what;
  std::vector<float> lp_c(N), ent_c(N), lp_g(N, NAN), ent_g(N, NAN);
  ASSERT_TRUE(cpu.TokenLogProbs(b.targets.data(), lp_c.data(), ent_c.data()).ok());
  ASSERT_TRUE(gpu.TokenLogProbs(b.targets.data(), lp_g.data(), ent_g.data()).ok()) << what;
  EXPECT_LE(RelErr(lp_g.data(), lp_c.data(), N), kLogpTol) << what << " logprob";
  EXPECT_LE(RelErr(ent_g.data(), ent_c.data(), N), kLogpTol) << what << " entropy";
  for (int64_t n = 0; n < N; ++n) {
    if (b.targets[n] < 0) {
      EXPECT_EQ(lp_g[n], 0.f) << what << " skipped target " << n;
    }
  }
  bool same_routing = true;
  const auto stats_c = cpu.moe_stats(), stats_g = gpu.moe_stats();
  ASSERT_EQ(stats_c.size(), stats_g.size());
  for (size_t i = 0; i < stats_c.size(); ++i) {
    EXPECT_EQ(stats_c[i].layer, stats_g[i].layer);
    if (stats_c[i].expert_count != stats_g[i].expert_count) same_routing = false;
  }
  if (same_routing) {
    EXPECT_NEAR(gpu.aux_loss(), cpu.aux_loss(), 1e-3 * std::max(1.0, cpu.aux_loss())) << what;
  } else {
    std::printf("[%s] MoE routing differs from the CPU's (bf16 near-ties): gradients checked "
                "for finiteness only\n", what.c_str());
  }

  cpu.ZeroGrads();
  ASSERT_TRUE(gpu.ZeroGrads().ok());
  ASSERT_TRUE(cpu.Backward(b.dlogprob.data(), b.dentropy.data(), aux_weight).ok());
  ASSERT_TRUE(gpu.Backward(b.dlogprob.data(), b.dentropy.data(), aux_weight).ok()) << what;
  std::vector<float> g(static_cast<size_t>(gpu.num_param_elements()), NAN);
  ASSERT_TRUE(gpu.DownloadGrads(g.data()).ok());
  int compared = 0;
  for (const ParamInfo& p : cpu.params()) {
    if (!same_routing) {
      // Every gradient depends on the logits, which a differently routed token moves: only
      // check that each was written and finite.
      for (int64_t i = 0; i < p.numel; ++i) ASSERT_TRUE(std::isfinite(g[p.offset + i])) << p.name;
      continue;
    }
    const double err = RelErr(g.data() + p.offset, cpu.grad(p), p.numel);
    EXPECT_LE(err, kGradTol) << what << " gradient of " << p.name;
    ++compared;
  }
  if (same_routing) {
    EXPECT_EQ(compared, static_cast<int>(cpu.params().size()));
  }
}

TEST_P(CudaTrainTest, GradientsMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const ModelCase& mc = GetParam();
  auto cpu = RandomModel(mc, 11);
  auto gpu = CudaTrainModel::Create(*cpu, {.max_tokens = 64, .head_rows = 7});
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  Batch b = RandomBatch(3, 13, cpu->active_vocab(), 5);
  ClampTargets(&b, cpu->active_vocab());
  const double aux = mc.config.is_moe() ? 0.05 : 0.0;
  CompareStep(*cpu, **gpu, b, aux, mc.name);
  // Backward accumulates: a second Backward without ZeroGrads doubles the gradients.
  std::vector<float> g1(static_cast<size_t>((*gpu)->num_param_elements()));
  std::vector<float> g2(g1.size());
  ASSERT_TRUE((*gpu)->DownloadGrads(g1.data()).ok());
  ASSERT_TRUE((*gpu)->Backward(b.dlogprob.data(), b.dentropy.data(), aux).ok());
  ASSERT_TRUE((*gpu)->DownloadGrads(g2.data()).ok());
  double err = 0, scale = 0;
  for (size_t i = 0; i < g1.size(); ++i) {
    scale = std::max(scale, std::abs(2.0 * g1[i]));
    err = std::max(err, std::abs(g2[i] - 2.0 * g1[i]));
  }
  EXPECT_LE(err, 1e-5 * scale) << "Backward must accumulate";
}

INSTANTIATE_TEST_SUITE_P(Archs, CudaTrainTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<ModelCase>& info) {
                           return info.param.name;
                         });

TEST_F(CudaTrainTest, PackedRowsMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const char* arch : {"qwen3", "qwen3_moe"}) {
    ModelCase mc{std::string(arch) + "_packed", MustPreset(arch, "tiny")};
    auto cpu = RandomModel(mc, 21);
    auto gpu = CudaTrainModel::Create(*cpu, {.max_tokens = 48});
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    Batch b = RandomBatch(2, 16, cpu->active_vocab(), 9);
    // Row 0: examples of 5, 7 and 4 tokens; row 1: 10 tokens then 6 of padding.
    for (int32_t len : {5, 7, 4}) {
      for (int32_t p = 0; p < len; ++p) b.positions.push_back(p);
    }
    for (int32_t p = 0; p < 10; ++p) b.positions.push_back(p);
    for (int32_t p = 0; p < 6; ++p) b.positions.push_back(p);
    for (size_t i = 0; i + 1 < b.positions.size(); ++i) {
      if (b.positions[i + 1] == 0) b.targets[i] = -1;  // never predict across examples
    }
    CompareStep(*cpu, **gpu, b, 0.0, mc.name);
  }
}

// Router replay: half the rows of the batch (every other row of a packed-free [4, 11] batch)
// forced in every MoE layer, each forced token to expert E-1 plus K-1 other distinct random
// experts; the other rows -1 (the router decides). Against the CPU's Forward with the same
// forced_experts: logprobs, entropies, routing counts, the aux loss and every gradient
// (CompareStep). Independently of the CPU, the GPU's counts must include the forced choices
// (expert E-1 at least once per forced token), which a replay that was ignored fails.
TEST_F(CudaTrainTest, RouterReplayMatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const char* arch : {"qwen3_moe"}) {
    ModelCase mc{std::string(arch) + "_replay", MustPreset(arch, "tiny")};
    const ModelConfig& c = mc.config;
    auto cpu = RandomModel(mc, 41);
    auto gpu = CudaTrainModel::Create(*cpu, {.max_tokens = 64, .head_rows = 16});
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    Batch b = RandomBatch(4, 11, cpu->active_vocab(), 13);
    ClampTargets(&b, cpu->active_vocab());
    const int64_t N = b.B * b.T, E = c.num_experts, K = c.num_experts_per_tok;
    const int64_t L = c.num_hidden_layers;
    std::mt19937 rng(5);
    std::vector<std::vector<int32_t>> store(static_cast<size_t>(L));
    std::vector<const int32_t*> forced(static_cast<size_t>(L), nullptr);
    int64_t forced_tokens = 0;
    for (int64_t l = 0; l < L; ++l) {
      if (!c.IsMoeLayer(l)) continue;
      std::vector<int32_t>& f = store[l];
      f.assign(static_cast<size_t>(N * K), -1);
      forced_tokens = 0;
      for (int64_t n = 0; n < N; ++n) {
        if ((n / b.T) % 2 == 1) continue;  // rows 1 and 3: the router
        std::vector<int32_t> others;
        for (int32_t e = 0; e + 1 < E; ++e) others.push_back(e);
        std::shuffle(others.begin(), others.end(), rng);
        f[n * K] = static_cast<int32_t>(E - 1);
        for (int64_t k = 1; k < K; ++k) f[n * K + k] = others[k - 1];
        ++forced_tokens;
      }
      forced[l] = f.data();
    }
    ASSERT_GT(forced_tokens, 0);
    CompareStep(*cpu, **gpu, b, 0.05, mc.name, forced);
    ASSERT_TRUE((*gpu)->Forward(b.ids.data(), b.B, b.T, forced).ok());
    for (const MoeLayerStats& st : (*gpu)->moe_stats()) {
      EXPECT_GE(st.expert_count[E - 1], forced_tokens) << "layer " << st.layer;
      int64_t total = 0;
      for (int64_t x : st.expert_count) total += x;
      EXPECT_EQ(total, N * K) << "layer " << st.layer;
    }
  }
}

TEST_F(CudaTrainTest, SftStepsMatchCpuAdamW) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const char* arch : {"qwen3", "qwen3_moe"}) {
    ModelCase mc{std::string(arch) + "_sft", MustPreset(arch, "tiny")};
    auto cpu = RandomModel(mc, 31);
    auto gpu = CudaTrainModel::Create(*cpu);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    std::vector<OptimParam> params;
    for (const ParamInfo& p : cpu->params()) {
      if (p.trainable) params.push_back({p.name, cpu->data(p), cpu->grad(p), p.numel, p.decay});
    }
    AdamWConfig oc;
    oc.lr = 3e-3;
    oc.weight_decay = 0.1;
    oc.max_grad_norm = 0.5;
    oc.warmup_steps = 2;
    oc.total_steps = 10;
    oc.schedule = LrSchedule::kCosine;
    auto opt = AdamW::Create(oc, params);
    ASSERT_TRUE(opt.ok()) << opt.status();
    Batch b = RandomBatch(2, 24, cpu->active_vocab(), 3);
    int64_t targets = 0;
    for (int32_t t : b.targets) targets += t >= 0;
    std::vector<float> dlp(b.ids.size(), -1.f / static_cast<float>(targets));
    std::vector<float> lp_c(b.ids.size()), lp_g(b.ids.size());
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < 3; ++step) {
      ASSERT_TRUE(cpu->Forward(b.ids.data(), b.B, b.T).ok());
      ASSERT_TRUE(cpu->TokenLogProbs(b.targets.data(), lp_c.data(), nullptr).ok());
      cpu->ZeroGrads();
      ASSERT_TRUE(cpu->Backward(dlp.data(), nullptr, 0.01).ok());
      const StepStats sc = opt->Step();
      CudaTrainModel& g = **gpu;
      ASSERT_TRUE(g.Forward(b.ids.data(), b.B, b.T).ok());
      ASSERT_TRUE(g.TokenLogProbs(b.targets.data(), lp_g.data(), nullptr).ok());
      ASSERT_TRUE(g.ZeroGrads().ok());
      ASSERT_TRUE(g.Backward(dlp.data(), nullptr, 0.01).ok());
      auto sg = g.OptimizerStep(oc);
      ASSERT_TRUE(sg.ok()) << sg.status();
      EXPECT_DOUBLE_EQ(sg->lr, sc.lr) << "step " << step;
      EXPECT_NEAR(sg->grad_norm, sc.grad_norm, kGradTol * sc.grad_norm) << "step " << step;
      EXPECT_EQ(sg->clipped, sc.clipped) << "step " << step;
      EXPECT_FALSE(sg->skipped);
      double loss = 0;
      for (size_t i = 0; i < lp_g.size(); ++i) loss -= lp_g[i];
      loss /= static_cast<double>(targets);
      if (step == 0) first_loss = loss;
      last_loss = loss;
    }
    EXPECT_EQ((*gpu)->optimizer_steps(), 3);
    EXPECT_LT(last_loss, first_loss) << mc.name;
    // Weights after three steps: AdamW's update is ~lr per element whatever the gradient's
    // size, so compare the change from the start against the CPU's change.
    auto start = RandomModel(mc, 31);
    auto after = CausalLM<float>::Create(mc.config);
    ASSERT_TRUE(after.ok());
    ASSERT_TRUE((*gpu)->DownloadParams(after->get()).ok());
    const int64_t P = cpu->num_param_elements();
    std::vector<float> dg(P), dc(P);
    for (int64_t i = 0; i < P; ++i) {
      dg[i] = (*after)->param_data()[i] - start->param_data()[i];
      dc[i] = cpu->param_data()[i] - start->param_data()[i];
    }
    // Elements whose tiny gradients have opposite signs on the two sides move in opposite
    // directions (Adam normalizes them to ~lr): compare in the aggregate, the relative L2 norm.
    double num = 0, den = 0;
    for (int64_t i = 0; i < P; ++i) {
      num += (static_cast<double>(dg[i]) - dc[i]) * (static_cast<double>(dg[i]) - dc[i]);
      den += static_cast<double>(dc[i]) * dc[i];
    }
    EXPECT_LE(std::sqrt(num / den), 0.25) << mc.name << ": weight updates differ";
  }
}

// ---------------------------------------------------------------------------------------------
// Bad input.

TEST(CudaTrainArgs, UnsupportedConfigsAndNoGpu) {
  absl::Status st = CudaTrainModel::CheckSupported(MustPreset("dots1", "tiny"));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(st.message(), "scoring_func sigmoid")) << st;
  EXPECT_TRUE(CudaTrainModel::CheckSupported(MustPreset("qwen3_moe", "small")).ok());
  auto model = CausalLM<float>::Create(MustPreset("qwen3", "tiny"));
  ASSERT_TRUE(model.ok());
  auto bad = CudaTrainModel::Create(**model, {.max_tokens = 0});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument) << bad.status();
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "max_tokens")) << bad.status();
  if (kernels::cuda::testing::HaveGpu()) return;
  auto made = CudaTrainModel::Create(**model);
  EXPECT_EQ(made.status().code(), kernels::cuda::BuiltWithCuda()
                                      ? absl::StatusCode::kFailedPrecondition
                                      : absl::StatusCode::kUnimplemented)
      << made.status();
}

// Router replay's host checks, in every build (no device involved): the CPU Forward's errors.
TEST(CudaTrainArgs, ForcedExpertsChecks) {
  const ModelConfig c = MustPreset("qwen3_moe", "tiny");
  const int64_t L = c.num_hidden_layers, E = c.num_experts, K = c.num_experts_per_tok, N = 5;
  ASSERT_GE(K, 2);
  int64_t moe = -1;
  for (int64_t l = 0; l < L && moe < 0; ++l) {
    if (c.IsMoeLayer(l)) moe = l;
  }
  ASSERT_GE(moe, 0);
  std::vector<int32_t> f(static_cast<size_t>(N * K), -1);
  for (int64_t k = 0; k < K; ++k) f[2 * K + k] = static_cast<int32_t>(k);  // token 2 forced
  std::vector<const int32_t*> forced(static_cast<size_t>(L), nullptr);
  forced[moe] = f.data();
  EXPECT_TRUE(CudaTrainModel::CheckForcedExperts(c, {}, N).ok());
  EXPECT_TRUE(CudaTrainModel::CheckForcedExperts(c, forced, N).ok());
  auto expect = [&](const std::string& needle) {
    const absl::Status st = CudaTrainModel::CheckForcedExperts(c, forced, N);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), needle)) << st << " lacks " << needle;
  };
  f[3 * K + 1] = static_cast<int32_t>(E);  // token 3: a partial row with an id past E
  expect(absl::StrCat("layer ", moe, ": moe: forced expert -1 of token 3 outside [0, ", E, ")"));
  f[3 * K] = 0;
  expect(absl::StrCat("forced expert ", E, " of token 3 outside [0, ", E, ")"));
  f[3 * K + 1] = 0;
  expect("forced expert 0 repeated for token 3");
  for (int64_t k = 0; k < K; ++k) f[3 * K + k] = static_cast<int32_t>(E - 1 - k);
  EXPECT_TRUE(CudaTrainModel::CheckForcedExperts(c, forced, N).ok());
  std::vector<const int32_t*> short_list(forced.begin(), forced.end() - 1);
  const absl::Status st = CudaTrainModel::CheckForcedExperts(c, short_list, N);
  EXPECT_TRUE(absl::StrContains(st.message(), "forced_experts has")) << st;
  const ModelConfig dense = MustPreset("qwen3", "tiny");
  std::vector<const int32_t*> on_dense(static_cast<size_t>(dense.num_hidden_layers), nullptr);
  on_dense[0] = f.data();
  EXPECT_TRUE(absl::StrContains(CudaTrainModel::CheckForcedExperts(dense, on_dense, N).message(),
                                "forced_experts[0] given for a dense layer"));
  // The CPU model agrees on what is an error (it is the reference of these messages).
  auto cpu = CausalLM<float>::Create(c);
  ASSERT_TRUE(cpu.ok());
  std::vector<int32_t> ids(N, 1);
  f[3 * K + 1] = static_cast<int32_t>(E);
  EXPECT_FALSE(CudaTrainModel::CheckForcedExperts(c, forced, N).ok());
  const absl::Status cst = (*cpu)->Forward(ids.data(), 1, N, forced);
  EXPECT_TRUE(absl::StrContains(cst.message(), absl::StrCat("forced expert ", E, " of token 3")))
      << cst;
}

TEST(CudaTrainArgs, MethodsRejectBadInput) {
  RLVR_SKIP_WITHOUT_GPU();
  auto model = CausalLM<float>::Create(MustPreset("qwen3", "tiny"));
  ASSERT_TRUE(model.ok());
  (*model)->InitRandom(1);
  auto made = CudaTrainModel::Create(**model, {.max_tokens = 16});
  ASSERT_TRUE(made.ok()) << made.status();
  CudaTrainModel& gpu = **made;
  const int32_t V = static_cast<int32_t>(gpu.config().vocab_size);
  std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> lp(8), d(8, 0.1f);
  EXPECT_EQ(gpu.TokenLogProbs(ids.data(), lp.data(), nullptr).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(gpu.Backward(d.data(), nullptr).code(), absl::StatusCode::kFailedPrecondition);
  absl::Status st = gpu.Forward(ids.data(), 3, 8);
  EXPECT_TRUE(absl::StrContains(st.message(), "max_tokens")) << st;
  ids[5] = V;
  st = gpu.Forward(ids.data(), 1, 8);
  EXPECT_TRUE(absl::StrContains(st.message(), "ids[5]")) << st;
  ids[5] = 6;
  const std::vector<int32_t> bad_pos = {0, 1, 2, 4, 0, 1, 2, 3};
  st = gpu.Forward(ids.data(), 1, 8, {}, bad_pos.data());
  EXPECT_TRUE(absl::StrContains(st.message(), "positions[0, 3]")) << st;
  ASSERT_TRUE(gpu.Forward(ids.data(), 1, 8).ok());
  std::vector<int32_t> targets = {2, 3, 4, 5, 6, 7, 8, -1};
  targets[2] = V;
  st = gpu.TokenLogProbs(targets.data(), lp.data(), nullptr);
  EXPECT_TRUE(absl::StrContains(st.message(), "targets[2]")) << st;
  EXPECT_EQ(gpu.Backward(d.data(), nullptr).code(), absl::StatusCode::kFailedPrecondition);
  targets[2] = 4;
  ASSERT_TRUE(gpu.ZeroGrads().ok());
  ASSERT_TRUE(gpu.TokenLogProbs(targets.data(), lp.data(), nullptr).ok());
  ASSERT_TRUE(gpu.Backward(d.data(), nullptr).ok());
  // A rejected Forward leaves the gradients alone.
  std::vector<float> g1(static_cast<size_t>(gpu.num_param_elements()));
  std::vector<float> g2(g1.size());
  ASSERT_TRUE(gpu.DownloadGrads(g1.data()).ok());
  ids[0] = -1;
  EXPECT_FALSE(gpu.Forward(ids.data(), 1, 8).ok());
  ASSERT_TRUE(gpu.DownloadGrads(g2.data()).ok());
  EXPECT_EQ(g1, g2);
  // Router replay on a dense model is rejected before any device work.
  ids[0] = 1;
  std::vector<int32_t> f(64, 0);
  std::vector<const int32_t*> forced(static_cast<size_t>(gpu.config().num_hidden_layers),
                                     nullptr);
  forced[0] = f.data();
  st = gpu.Forward(ids.data(), 1, 8, forced);
  EXPECT_TRUE(absl::StrContains(st.message(), "forced_experts[0] given for a dense layer")) << st;
  auto other = CausalLM<float>::Create(MustPreset("qwen3", "small"));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(gpu.DownloadParams(other->get()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu.UploadParams(**other).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rlvr::policy
