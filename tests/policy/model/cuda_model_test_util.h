// Random models for the GPU model tests (cuda_model_test.cc, cuda_train_test.cc): the configs
// the CUDA kernels support, with every weight on the bf16 grid, and a relative error measure.
#ifndef RLVR_TESTS_POLICY_MODEL_CUDA_MODEL_TEST_UTIL_H_
#define RLVR_TESTS_POLICY_MODEL_CUDA_MODEL_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/dtype.h"
#include "gtest/gtest.h"
#include "policy/model/config.h"
#include "policy/model/model.h"

namespace rlvr::policy {

inline ModelConfig MustPreset(const std::string& arch, const std::string& preset) {
  auto c = Preset(arch, preset);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

struct ModelCase {
  std::string name;
  ModelConfig config;
  bool greedy = true;       // also compare 16 greedy tokens with the CPU
  int64_t active_vocab = 0;  // 0: vocab_size
};

inline std::vector<ModelCase> Cases() {
  std::vector<ModelCase> cases;
  for (const char* arch : {"qwen3_moe", "qwen3", "qwen2", "llama"}) {
    for (const char* preset : {"tiny", "small"}) {
      cases.push_back({std::string(arch) + "_" + preset, MustPreset(arch, preset)});
    }
  }
  // head_dim 64 with GQA 2, a shared expert and a dense first layer, a padded vocabulary.
  ModelConfig moe64 = MustPreset("qwen3_moe", "tiny");
  moe64.hidden_size = 256;
  moe64.num_attention_heads = 4;
  moe64.num_key_value_heads = 2;
  moe64.head_dim = 64;
  moe64.intermediate_size = 384;
  moe64.moe_intermediate_size = 96;
  moe64.n_shared_experts = 1;
  moe64.mlp_only_layers = {0};
  moe64.vocab_size = 2000;
  cases.push_back({"qwen3_moe_d64_shared", moe64, true, 1990});
  // head_dim 128 with GQA 4, q/k/v and o_proj biases, untied LM head.
  ModelConfig llama128 = MustPreset("llama", "tiny");
  llama128.hidden_size = 256;
  llama128.num_attention_heads = 4;
  llama128.num_key_value_heads = 1;
  llama128.head_dim = 128;
  llama128.intermediate_size = 320;
  llama128.attention_bias = true;
  llama128.attention_out_bias = true;
  llama128.tie_word_embeddings = false;
  cases.push_back({"llama_d128_bias", llama128});
  for (ModelCase& c : cases) EXPECT_TRUE(c.config.Validate().ok()) << c.name;
  return cases;
}

// A random model whose every weight is on the bf16 grid. Norm weights are 1 + N(0, 0.1) and
// biases N(0, 0.02) (not HF's 1 and 0), so that a norm weight or bias the GPU ignored or
// misplaced shows in the logits. MoE routers get 10x the init scale (std 0.2): with HF's 0.02
// the router is nearly uniform (top-4 of 16 experts at ~0.07, gaps between the 4th and 5th
// down to 3e-7), so any rounding difference routes a token elsewhere and moves its logits by
// far more than rounding; spread routers make such near-ties rare.
inline std::unique_ptr<CausalLM<float>> RandomModel(const ModelCase& mc, uint64_t seed) {
  auto m = CausalLM<float>::Create(mc.config);
  EXPECT_TRUE(m.ok()) << m.status();
  CausalLM<float>& model = **m;
  model.InitRandom(seed, 0.02);
  std::mt19937_64 rng(seed + 1);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (const ParamInfo& p : model.params()) {
    float* d = model.data(p);
    const bool norm = absl::EndsWith(p.name, "norm.weight");
    const bool bias = absl::EndsWith(p.name, ".bias");
    const bool router = absl::EndsWith(p.name, "mlp.gate.weight");
    for (int64_t i = 0; i < p.numel; ++i) {
      if (norm) d[i] = 1.f + 0.1f * normal(rng);
      if (bias) d[i] = 0.02f * normal(rng);
      if (router) d[i] *= 10.f;
      d[i] = Bf16ToF32(F32ToBf16(d[i]));
    }
  }
  if (mc.active_vocab > 0) {
    EXPECT_TRUE(model.set_active_vocab(mc.active_vocab).ok());
  }
  return std::move(*m);
}

inline std::vector<int32_t> RandomIds(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int32_t& x : out) x = id(rng);
  return out;
}

// max |got - ref| / max |ref| over the finite entries of ref; got must be -inf where ref is
// (masked vocabulary) and finite elsewhere (a NaN or an unwritten entry gives +inf).
inline double RelErr(const float* got, const float* ref, int64_t n) {
  double err = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isinf(ref[i])) {
      if (got[i] != ref[i]) return INFINITY;
      continue;
    }
    if (!std::isfinite(got[i])) return INFINITY;
    err = std::max(err, std::abs(static_cast<double>(got[i]) - ref[i]));
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  return scale > 0 ? err / scale : err;
}

}  // namespace rlvr::policy

#endif  // RLVR_TESTS_POLICY_MODEL_CUDA_MODEL_TEST_UTIL_H_
