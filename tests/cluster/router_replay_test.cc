// Router replay in the learner: the experts a rollout recorded are the experts the learner's
// forward uses (on-policy: the same logprobs; after a weight change that moves the routing: the
// recorded experts, not the router's new choice), the router still gets gradients, and recorded
// experts of the wrong shape are errors naming the row.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cluster/learner.h"
#include "core/rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"
#include "rollout/backend.h"
#include "rollout/engine.h"

namespace rlvr::cluster {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<policy::CausalLM<float>> TinyMoe(uint64_t seed) {
  policy::ModelConfig c = *policy::Preset("qwen3_moe", "tiny");
  c.vocab_size = 97;
  c.max_position_embeddings = 64;
  auto m = policy::CausalLM<float>::Create(c);
  EXPECT_TRUE(m.ok()) << m.status();
  (*m)->InitRandom(seed, 0.1);
  return std::move(*m);
}

std::vector<int64_t> MoeLayers(const policy::CausalLM<float>& model) {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < model.config().num_hidden_layers; ++l) {
    if (model.config().IsMoeLayer(l)) out.push_back(l);
  }
  return out;
}

// Two prompts, 3 samples each, sampled at temperature 1 with router choices recorded.
std::vector<rollout::Completion> Rollout(policy::CausalLM<float>* model,
                                         std::vector<std::vector<int32_t>>* prompts) {
  rollout::CausalLmBackend backend(model, /*record_experts=*/true);
  rollout::EngineOptions o;
  o.block_size = 8;
  o.max_tokens_in_flight = 1024;
  auto engine = rollout::Engine::Create(&backend, o);
  EXPECT_TRUE(engine.ok()) << engine.status();
  std::vector<rollout::GenerationRequest> reqs(2);
  Rng rng(5);
  for (int r = 0; r < 2; ++r) {
    for (int i = 0; i < 6 + 3 * r; ++i) {
      reqs[r].prompt.push_back(static_cast<int32_t>(1 + rng.UniformInt(96)));
    }
    reqs[r].num_samples = 3;
    reqs[r].sampling.temperature = 1.0;
    reqs[r].stop.max_new_tokens = 12;
    reqs[r].seed = 40 + r;
  }
  auto out = (*engine)->Generate(reqs);
  EXPECT_TRUE(out.ok()) << out.status();
  prompts->clear();
  for (const auto& c : *out) prompts->push_back(reqs[c.request].prompt);
  return *out;
}

struct ReplayBatch {
  TokenBatch batch;
  std::vector<std::vector<int32_t>> prompt_experts, completion_experts;
};

ReplayBatch MakeReplayBatch(const std::vector<std::vector<int32_t>>& prompts,
                            const std::vector<rollout::Completion>& comps,
                            const policy::CausalLM<float>& model) {
  ReplayBatch rb;
  std::vector<std::vector<int32_t>> tokens;
  for (const auto& c : comps) {
    tokens.push_back(c.tokens);
    rb.prompt_experts.push_back(c.prompt_experts);
    rb.completion_experts.push_back(c.experts);
  }
  auto batch = MakeTokenBatch(prompts, tokens);
  EXPECT_TRUE(batch.ok()) << batch.status();
  rb.batch = std::move(*batch);
  absl::Status s = AttachRouterReplay(&rb.batch, rb.prompt_experts, rb.completion_experts,
                                      static_cast<int64_t>(MoeLayers(model).size()),
                                      model.config().num_experts_per_tok);
  EXPECT_TRUE(s.ok()) << s;
  return rb;
}

// Compares the experts the model chose in its last forward with the batch's recorded ones at
// every recorded position. Returns {compared ids, mismatching ids}.
std::pair<int64_t, int64_t> CompareChosen(const policy::CausalLM<float>& model,
                                          const TokenBatch& batch) {
  const std::vector<int64_t> layers = MoeLayers(model);
  const int64_t M = static_cast<int64_t>(layers.size()), K = batch.top_k;
  int64_t compared = 0, mismatched = 0;
  for (int64_t m = 0; m < M; ++m) {
    const int32_t* chosen = model.chosen_experts(layers[m]);
    EXPECT_NE(chosen, nullptr);
    if (chosen == nullptr) return {0, 0};
    for (int64_t n = 0; n < batch.B * batch.T; ++n) {
      const int32_t* rec = batch.experts.data() + (n * M + m) * K;
      if (rec[0] < 0) continue;
      for (int64_t k = 0; k < K; ++k) {
        mismatched += chosen[n * K + k] != rec[k];
        ++compared;
      }
    }
  }
  return {compared, mismatched};
}

TEST(RouterReplayTest, OnPolicyLogprobsAndExpertsEqualTheRollouts) {
  auto model = TinyMoe(7);
  std::vector<std::vector<int32_t>> prompts;
  const auto comps = Rollout(model.get(), &prompts);
  ASSERT_EQ(comps.size(), 6u);
  ReplayBatch rb = MakeReplayBatch(prompts, comps, *model);
  const TokenBatch& b = rb.batch;
  // Every prompt position and every completion position but the last is recorded.
  int64_t want_replayed = 0;
  for (int64_t i = 0; i < b.B; ++i) want_replayed += b.prompt_len[i] + b.completion_len[i] - 1;
  EXPECT_EQ(b.num_replayed_tokens(), want_replayed);

  policy::AdamWConfig ac;
  ac.lr = 1e-2;
  auto opt = policy::AdamW::Create(ac, TrainableParams(model.get()));
  ASSERT_TRUE(opt.ok());
  Learner learner(model.get(), &*opt);
  auto logp = learner.LogProbs(b);
  ASSERT_TRUE(logp.ok()) << logp.status();
  auto [compared, mismatched] = CompareChosen(*model, b);
  EXPECT_GT(compared, 0);
  EXPECT_EQ(mismatched, 0) << "of " << compared;
  double max_err = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < b.B; ++i) {
    for (int64_t j = 0; j < b.completion_len[i]; ++j) {
      const float got = (*logp)[i * b.T + b.prompt_len[i] + j - 1];
      max_err = std::max(max_err, std::abs(static_cast<double>(got) - comps[i].logprobs[j]));
      EXPECT_LT(got, 0.0f);
      ++n;
    }
  }
  EXPECT_EQ(n, b.num_target_tokens());
  EXPECT_GT(n, 12);
  EXPECT_LT(max_err, 1e-5);

  // One on-policy GRPO step with replay: ratio exactly 1, and the router gets gradients through
  // the replayed experts' weights (aux loss off, so that is their only source).
  std::vector<float> adv(b.B * b.T, 0.0f);
  for (int64_t i = 0; i < b.B * b.T; ++i) {
    if (b.mask[i]) adv[i] = (i / b.T) % 2 == 0 ? 1.0f : -1.0f;
  }
  GrpoUpdateOptions o;
  o.group_size = 3;
  o.loss.clip_eps_low = 0.0;
  o.loss.clip_eps_high = 0.0;
  auto stats = learner.GrpoUpdate(b, adv, {}, {}, o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->replayed_tokens, want_replayed);
  EXPECT_EQ(stats->loss_stats.ratio_min, 1.0);
  EXPECT_EQ(stats->loss_stats.ratio_max, 1.0);
  EXPECT_EQ(stats->optimizer_steps, 1);
  for (int64_t l : MoeLayers(*model)) {
    const policy::ParamInfo* router =
        model->FindParam("model.layers." + std::to_string(l) + ".mlp.gate.weight");
    ASSERT_NE(router, nullptr);
    double norm = 0;
    for (int64_t i = 0; i < router->numel; ++i) norm += std::pow(model->grad(*router)[i], 2);
    EXPECT_GT(norm, 0.0) << "layer " << l;
  }
  // Two mini-batches (one group each): the last forward ran on the second group's rows, re-padded
  // by SliceRows, and used that group's recorded experts.
  o.mini_batches = 2;
  o.loss.clip_eps_low = 0.2;
  o.loss.clip_eps_high = 0.2;
  stats = learner.GrpoUpdate(b, adv, {}, {}, o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->optimizer_steps, 2);
  const TokenBatch second = SliceRows(b, 3, 6);
  EXPECT_EQ(model->tokens(), second.B * second.T);
  auto [compared2, mismatched2] = CompareChosen(*model, second);
  EXPECT_GT(compared2, 0);
  EXPECT_EQ(mismatched2, 0) << "of " << compared2;
}

TEST(RouterReplayTest, ReplayKeepsTheRecordedExpertsWhenTheRoutingMoved) {
  auto model = TinyMoe(8);
  std::vector<std::vector<int32_t>> prompts;
  const auto comps = Rollout(model.get(), &prompts);
  ReplayBatch rb = MakeReplayBatch(prompts, comps, *model);
  // Perturb every router so that its top-k changes for many tokens.
  Rng rng(3);
  for (int64_t l : MoeLayers(*model)) {
    const policy::ParamInfo* router =
        model->FindParam("model.layers." + std::to_string(l) + ".mlp.gate.weight");
    ASSERT_NE(router, nullptr);
    float* w = model->data(*router);
    for (int64_t i = 0; i < router->numel; ++i) {
      w[i] += static_cast<float>(0.5 * (rng.UniformDouble() - 0.5));
    }
  }
  Learner learner(model.get(), nullptr);
  // Without replay the learner's router picks other experts for some tokens...
  TokenBatch plain = rb.batch;
  plain.experts.clear();
  auto lp_plain = learner.LogProbs(plain);
  ASSERT_TRUE(lp_plain.ok());
  auto [compared0, mismatched0] = CompareChosen(*model, rb.batch);
  EXPECT_GT(compared0, 0);
  EXPECT_GT(mismatched0, compared0 / 20) << "the perturbation did not move the routing";
  // ...with replay it uses exactly the recorded ones, and the logprobs differ accordingly.
  auto lp_replay = learner.LogProbs(rb.batch);
  ASSERT_TRUE(lp_replay.ok());
  auto [compared1, mismatched1] = CompareChosen(*model, rb.batch);
  EXPECT_EQ(compared1, compared0);
  EXPECT_EQ(mismatched1, 0) << "of " << compared1;
  double diff = 0;
  for (size_t i = 0; i < lp_plain->size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>((*lp_plain)[i]) - (*lp_replay)[i]));
  }
  EXPECT_GT(diff, 1e-4);
  // The load statistics count the replayed choices: recompute them from the recorded experts
  // (and the router's own choice at unrecorded positions).
  const auto stats = model->moe_stats();
  const std::vector<int64_t> layers = MoeLayers(*model);
  ASSERT_EQ(stats.size(), layers.size());
  const int64_t M = rb.batch.moe_layers, K = rb.batch.top_k;
  for (size_t m = 0; m < layers.size(); ++m) {
    std::vector<int64_t> count(model->config().num_experts, 0);
    const int32_t* chosen = model->chosen_experts(layers[m]);
    for (int64_t n = 0; n < rb.batch.B * rb.batch.T; ++n) {
      const int32_t* rec = rb.batch.experts.data() + (n * M + static_cast<int64_t>(m)) * K;
      for (int64_t k = 0; k < K; ++k) ++count[rec[0] >= 0 ? rec[k] : chosen[n * K + k]];
    }
    EXPECT_EQ(stats[m].expert_count, count) << "moe layer " << m;
  }
}

TEST(RouterReplayTest, RecordedExpertsOfTheWrongShapeAreErrors) {
  auto model = TinyMoe(9);
  std::vector<std::vector<int32_t>> prompts;
  const auto comps = Rollout(model.get(), &prompts);
  ReplayBatch rb = MakeReplayBatch(prompts, comps, *model);
  const int64_t M = static_cast<int64_t>(MoeLayers(*model).size());
  const int64_t K = model->config().num_experts_per_tok;
  auto fresh = [&] {
    std::vector<std::vector<int32_t>> tokens;
    for (const auto& c : comps) tokens.push_back(c.tokens);
    return *MakeTokenBatch(prompts, tokens);
  };
  // A completion record one token short.
  TokenBatch b = fresh();
  auto ce = rb.completion_experts;
  ce[1].resize(ce[1].size() - M * K);
  absl::Status s = AttachRouterReplay(&b, rb.prompt_experts, ce, M, K);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("row 1: completion experts"));
  EXPECT_TRUE(b.experts.empty());
  // A prompt record of the wrong size (an empty one is fine: the learner routes the prompt).
  auto pe = rb.prompt_experts;
  pe[2].push_back(0);
  s = AttachRouterReplay(&b, pe, rb.completion_experts, M, K);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("row 2: prompt experts"));
  pe[2].clear();
  EXPECT_TRUE(AttachRouterReplay(&b, pe, rb.completion_experts, M, K).ok());
  // Fewer records than rows.
  pe.pop_back();
  s = AttachRouterReplay(&b, pe, rb.completion_experts, M, K);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  // Records laid out for another model (top_k 1 instead of 2): the sizes still fit
  // when the layer count doubles, but the learner refuses the batch.
  TokenBatch other = fresh();
  ASSERT_TRUE(AttachRouterReplay(&other, rb.prompt_experts, rb.completion_experts, 2 * M, 1).ok());
  Learner learner(model.get(), nullptr);
  auto lp = learner.LogProbs(other);
  EXPECT_EQ(lp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(lp.status().message()), HasSubstr("router replay"));
  EXPECT_THAT(std::string(lp.status().message()), HasSubstr("num_experts_per_tok"));
  // An expert id out of range is reported by the model's forward.
  TokenBatch bad = rb.batch;
  bad.experts[0] = static_cast<int32_t>(model->config().num_experts);
  lp = learner.LogProbs(bad);
  EXPECT_EQ(lp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(lp.status().message()), HasSubstr("forced expert"));
  // No recorded experts at all (a rollout that did not record): a clear error.
  s = AttachRouterReplay(&b, rb.prompt_experts, rb.completion_experts, 0, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rlvr::cluster
