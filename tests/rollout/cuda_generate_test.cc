// rollout::CudaGenerator's router replay recording (record_experts) on a MoE model, end to end:
// every completion carries experts [tokens, moe_layers, K] with the last token's row -1 (never
// fed) and prompt_experts [prompt tokens, moe_layers, K], as the CPU engine lays them out
// (rollout/engine.cc), and the recorded rows are the routing of the tokens that were fed:
// against the CPU model's chosen_experts of a full forward over prompt + completion (all but the
// last token), in bf16 products on bf16-grid weights with router weights at 10x the init scale
// so near-ties are rare; at most 2% of the rows may differ (a near-tie flipped by the GPU's
// bf16 roundings), and every row holds K distinct experts in [0, E). Without record_experts
// nothing is recorded. Skips without a GPU.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/matmul.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "rollout/cuda_generate.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/policy/model/cuda_model_test_util.h"

namespace rlvr::rollout {
namespace {

TEST(CudaGenerateReplay, RecordsExpertsAsTheEngine) {
  RLVR_SKIP_WITHOUT_GPU();
  kernels::SetMatmulPrecision(kernels::MatmulPrecision::kBf16);
  const policy::ModelCase mc{"qwen3_moe", policy::MustPreset("qwen3_moe", "tiny")};
  auto model = policy::RandomModel(mc, 71);  // spread router (cuda_model_test_util.h)
  const policy::ModelConfig& c = mc.config;
  const int64_t E = c.num_experts, K = c.num_experts_per_tok;
  std::vector<int64_t> moe;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (c.IsMoeLayer(l)) moe.push_back(l);
  }
  const int64_t ML = static_cast<int64_t>(moe.size()), row = ML * K;
  EngineOptions o;
  o.max_batch = 3;  // 4 samples: continuous batching, slots reused
  o.max_tokens_in_flight = 256;
  o.block_size = 8;
  std::vector<GenerationRequest> reqs(2);
  for (int64_t i = 0; i < 2; ++i) {
    reqs[i].prompt = policy::RandomIds(5 + 4 * i, c.vocab_size, 80 + i);
    reqs[i].num_samples = 2;
    reqs[i].stop.max_new_tokens = 7;
    reqs[i].seed = 9 + i;
  }
  auto plain = CudaGenerator::Create(*model, o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  auto none = (*plain)->Generate(reqs);
  ASSERT_TRUE(none.ok()) << none.status();
  for (const Completion& comp : *none) {
    EXPECT_TRUE(comp.experts.empty());
    EXPECT_TRUE(comp.prompt_experts.empty());
  }
  auto gen = CudaGenerator::Create(*model, o, {}, /*record_experts=*/true);
  ASSERT_TRUE(gen.ok()) << gen.status();
  auto out = (*gen)->Generate(reqs);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 4u);
  int64_t rows = 0, differ = 0;
  for (const Completion& comp : *out) {
    const std::vector<int32_t>& prompt = reqs[comp.request].prompt;
    const int64_t P = static_cast<int64_t>(prompt.size());
    const int64_t G = static_cast<int64_t>(comp.tokens.size());
    ASSERT_GE(G, 1);
    ASSERT_EQ(static_cast<int64_t>(comp.experts.size()), G * row);
    ASSERT_EQ(static_cast<int64_t>(comp.prompt_experts.size()), P * row);
    for (int64_t j = 0; j < row; ++j) EXPECT_EQ(comp.experts[(G - 1) * row + j], -1);
    // The fed tokens: the prompt, then every completion token but the last.
    std::vector<int32_t> fed = prompt;
    fed.insert(fed.end(), comp.tokens.begin(), comp.tokens.end() - 1);
    std::vector<int32_t> rec = comp.prompt_experts;
    rec.insert(rec.end(), comp.experts.begin(), comp.experts.end() - row);
    const int64_t T = static_cast<int64_t>(fed.size());
    ASSERT_TRUE(model->Forward(fed.data(), 1, T).ok());
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t m = 0; m < ML; ++m) {
        const int32_t* got = rec.data() + (t * ML + m) * K;
        for (int64_t k = 0; k < K; ++k) {
          ASSERT_TRUE(got[k] >= 0 && got[k] < E) << "token " << t << " layer " << m;
          for (int64_t j = 0; j < k; ++j) ASSERT_NE(got[j], got[k]);
        }
        ++rows;
        const int32_t* want = model->chosen_experts(moe[m]) + t * K;
        if (!std::equal(got, got + K, want)) ++differ;
      }
    }
  }
  EXPECT_LE(differ * 50, rows) << differ << " of " << rows << " rows differ from the CPU";
  kernels::SetMatmulPrecision(kernels::MatmulPrecision::kHighest);
}

}  // namespace
}  // namespace rlvr::rollout
