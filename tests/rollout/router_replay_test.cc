// Router replay: the experts RecordingBackend records during generation (prompt prefill and
// every fed completion token) equal the experts a full forward of the learner chooses over the
// same sequence, and RecordingBackend generates exactly what CausalLmBackend generates.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "gtest/gtest.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "rollout/engine.h"
#include "rollout/recording_backend.h"

namespace rlvr::rollout {
namespace {

using policy::CausalLM;

std::unique_ptr<CausalLM<float>> MakeModel(const std::string& arch) {
  auto cfg = policy::Preset(arch, "tiny");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  auto model = CausalLM<float>::Create(*cfg);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->InitRandom(23, 0.15);
  return std::move(*model);
}

GenerationRequest Request(int64_t vocab, double temperature) {
  GenerationRequest r;
  Rng rng(4);
  for (int i = 0; i < 13; ++i) r.prompt.push_back(static_cast<int32_t>(rng.UniformInt(vocab)));
  r.num_samples = 3;
  r.sampling.temperature = temperature;
  r.stop.max_new_tokens = 16;
  r.seed = 8;
  return r;
}

std::vector<Completion> Generate(DecodeBackend* backend, const GenerationRequest& r) {
  EngineOptions o;
  o.block_size = 8;
  o.max_tokens_in_flight = 1024;
  auto engine = Engine::Create(backend, o);
  EXPECT_TRUE(engine.ok());
  auto out = (*engine)->Generate(std::span<const GenerationRequest>(&r, 1));
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::vector<Completion>{};
}

class RouterReplayTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RouterReplayTest, RecordedExpertsEqualFullForwardRouting) {
  auto model = MakeModel(GetParam());
  auto backend = RecordingBackend::Create(model.get());
  ASSERT_TRUE(backend.ok()) << backend.status();
  const int64_t M = (*backend)->num_moe_layers(), K = (*backend)->experts_per_token();
  ASSERT_GT(M, 0);
  const GenerationRequest r = Request(model->config().vocab_size, 1.0);
  const std::vector<Completion> out = Generate(backend->get(), r);
  ASSERT_EQ(out.size(), 3u);
  const int64_t P = static_cast<int64_t>(r.prompt.size());
  int64_t compared = 0, mismatched = 0;
  double max_lp = 0;
  for (const Completion& c : out) {
    const int64_t n = static_cast<int64_t>(c.tokens.size());
    ASSERT_EQ(static_cast<int64_t>(c.experts.size()), n * M * K);
    ASSERT_EQ(static_cast<int64_t>(c.prompt_experts.size()), P * M * K);
    std::vector<int32_t> seq = r.prompt;
    seq.insert(seq.end(), c.tokens.begin(), c.tokens.end());
    const int64_t T = static_cast<int64_t>(seq.size());
    ASSERT_TRUE(model->Forward(seq.data(), 1, T).ok());
    for (int64_t m = 0; m < M; ++m) {
      const int32_t* ref = model->chosen_experts((*backend)->moe_layer_index(m));
      ASSERT_NE(ref, nullptr);
      for (int64_t t = 0; t < T - 1; ++t) {  // the last token is never fed during generation
        const int32_t* got = t < P ? c.prompt_experts.data() + (t * M + m) * K
                                   : c.experts.data() + ((t - P) * M + m) * K;
        for (int64_t k = 0; k < K; ++k) {
          mismatched += got[k] != ref[t * K + k];
          ++compared;
        }
      }
      // The last generated token's row is -1 (never fed).
      EXPECT_EQ(c.experts[((n - 1) * M + m) * K], -1);
    }
    std::vector<int32_t> targets(static_cast<size_t>(T), -1);
    for (int64_t i = 0; i + 1 < T; ++i) targets[i] = seq[i + 1];
    std::vector<float> lp(static_cast<size_t>(T));
    ASSERT_TRUE(model->TokenLogProbs(targets.data(), lp.data(), nullptr).ok());
    for (int64_t i = 0; i < n; ++i) {
      max_lp = std::max(max_lp, std::abs(static_cast<double>(c.logprobs[i]) - lp[P - 1 + i]));
    }
  }
  EXPECT_GT(compared, 3 * 20 * M * K);
  EXPECT_EQ(mismatched, 0) << "of " << compared;
  EXPECT_LT(max_lp, 1e-5);
}

TEST_P(RouterReplayTest, SameTokensAsCausalLmBackend) {
  auto model = MakeModel(GetParam());
  auto recording = RecordingBackend::Create(model.get());
  ASSERT_TRUE(recording.ok());
  CausalLmBackend plain(model.get());
  const GenerationRequest r = Request(model->config().vocab_size, 0.8);
  const auto a = Generate(recording->get(), r);
  const auto b = Generate(&plain, r);
  ASSERT_EQ(a.size(), b.size());
  int64_t compared = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens);
    ASSERT_EQ(a[i].logprobs.size(), b[i].logprobs.size());
    for (size_t t = 0; t < a[i].logprobs.size(); ++t) {
      EXPECT_NEAR(a[i].logprobs[t], b[i].logprobs[t], 5e-6);  // float rounding of two kernels
      ++compared;
    }
    EXPECT_TRUE(b[i].experts.empty());
  }
  EXPECT_EQ(compared, 3 * 16);
}

// CausalLmBackend(model, /*record_experts=*/true) records from CausalLM::Decode's per-layer
// routing: the same tokens as without recording, and the same experts as RecordingBackend.
TEST_P(RouterReplayTest, CausalLmBackendRecordsTheSameExperts) {
  auto model = MakeModel(GetParam());
  auto recording = RecordingBackend::Create(model.get());
  ASSERT_TRUE(recording.ok());
  CausalLmBackend plain(model.get());
  CausalLmBackend recorder(model.get(), /*record_experts=*/true);
  EXPECT_EQ(recorder.num_moe_layers(), (*recording)->num_moe_layers());
  EXPECT_EQ(recorder.experts_per_token(), (*recording)->experts_per_token());
  const GenerationRequest r = Request(model->config().vocab_size, 1.0);
  const auto a = Generate(recording->get(), r);
  const auto b = Generate(&recorder, r);
  const auto c = Generate(&plain, r);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(b.size(), c.size());
  int64_t compared = 0, mismatched = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].tokens, c[i].tokens);
    EXPECT_EQ(b[i].logprobs, c[i].logprobs);  // recording changes nothing else
    if (a[i].tokens != b[i].tokens) continue;  // a float tie may flip a token; not here
    ASSERT_EQ(a[i].experts.size(), b[i].experts.size());
    ASSERT_EQ(a[i].prompt_experts.size(), b[i].prompt_experts.size());
    for (size_t j = 0; j < a[i].experts.size(); ++j) {
      mismatched += a[i].experts[j] != b[i].experts[j];
      ++compared;
    }
    for (size_t j = 0; j < a[i].prompt_experts.size(); ++j) {
      mismatched += a[i].prompt_experts[j] != b[i].prompt_experts[j];
      ++compared;
    }
  }
  EXPECT_GT(compared, 3 * 13);
  EXPECT_EQ(mismatched, 0) << "of " << compared;
}

INSTANTIATE_TEST_SUITE_P(MoeArchitectures, RouterReplayTest,
                         ::testing::Values("qwen3_moe", "dots1"));

TEST(RecordingBackendTest, DenseModelRecordsNothing) {
  auto model = MakeModel("qwen2");
  auto backend = RecordingBackend::Create(model.get());
  ASSERT_TRUE(backend.ok());
  EXPECT_EQ((*backend)->num_moe_layers(), 0);
  const auto out = Generate(backend->get(), Request(model->config().vocab_size, 1.0));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[0].experts.empty());
  EXPECT_TRUE(out[0].prompt_experts.empty());
}

}  // namespace
}  // namespace rlvr::rollout
