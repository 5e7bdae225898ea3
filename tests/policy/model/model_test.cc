// CausalLM behaviour beyond fixture parity: KV-cache decode against recomputation, router
// replay, vocabulary masking, the entropy gradient and a whole-model finite-difference check.
#include "policy/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "core/status.h"
#include "gtest/gtest.h"

namespace rlvr::policy {
namespace {

ModelConfig TinyConfig(const std::string& arch) {
  auto c = Preset(arch, "tiny");
  RLVR_CHECK(c.ok());
  c->vocab_size = 64;
  c->eos_token_ids = {1};
  return *c;
}

template <typename T>
std::unique_ptr<CausalLM<T>> MakeModel(const ModelConfig& c, uint64_t seed = 7) {
  auto m = CausalLM<T>::Create(c);
  RLVR_CHECK(m.ok());
  (*m)->InitRandom(seed, 0.2);
  // Non-trivial norms so that every weight matters.
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.7, 1.3);
  for (const ParamInfo& p : (*m)->params()) {
    if (p.name.find("norm") == std::string::npos) continue;
    for (int64_t i = 0; i < p.numel; ++i) (*m)->data(p)[i] = static_cast<T>(u(rng));
  }
  return std::move(*m);
}

std::vector<int32_t> RandomIds(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& x : ids) x = static_cast<int32_t>(rng() % vocab);
  return ids;
}

class ArchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchTest, DecodeWithKvCacheMatchesFullForward) {
  const ModelConfig c = TinyConfig(GetParam());
  auto model = MakeModel<float>(c);
  const int64_t B = 2, Tn = 7, V = c.vocab_size;
  std::vector<int32_t> ids = RandomIds(B * Tn, V, 1);
  ASSERT_TRUE(model->Forward(ids.data(), B, Tn).ok());
  std::vector<float> full(B * Tn * V);
  ASSERT_TRUE(model->Logits(full.data()).ok());

  // Prefill 3 tokens, then one token at a time.
  KvCache<float> cache(c, B, 16);
  std::vector<float> last(B * V);
  int64_t compared = 0;
  double max_diff = 0;
  auto step = [&](int64_t t0, int64_t len) {
    std::vector<int32_t> step_ids, pos;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = t0; t < t0 + len; ++t) {
        step_ids.push_back(ids[b * Tn + t]);
        pos.push_back(static_cast<int32_t>(t));
      }
    }
    ASSERT_TRUE(
        model->Decode(step_ids.data(), pos.data(), B, len, cache.views(), last.data()).ok());
    for (int64_t b = 0; b < B; ++b) {
      const float* want = full.data() + (b * Tn + t0 + len - 1) * V;
      for (int64_t v = 0; v < V; ++v) {
        max_diff = std::max(max_diff, static_cast<double>(std::abs(last[b * V + v] - want[v])));
        ++compared;
      }
    }
  };
  step(0, 3);
  for (int64_t t = 3; t < Tn; ++t) step(t, 1);
  EXPECT_EQ(compared, 5 * B * V);
  // The last decode step routed its tokens like the full forward did (router replay input).
  for (int64_t l = 0; l < c.num_hidden_layers && c.is_moe(); ++l) {
    const int32_t* dec = model->decode_chosen_experts(l);
    const int32_t* full_choice = model->chosen_experts(l);
    if (full_choice == nullptr) continue;
    ASSERT_NE(dec, nullptr);
    const int64_t K = c.num_experts_per_tok;
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int32_t> a(dec + b * K, dec + (b + 1) * K);
      std::vector<int32_t> w(full_choice + (b * Tn + Tn - 1) * K, full_choice + (b * Tn + Tn) * K);
      std::sort(a.begin(), a.end());
      std::sort(w.begin(), w.end());
      EXPECT_EQ(a, w) << "layer " << l << " sequence " << b;
    }
  }
  EXPECT_LE(max_diff, 1e-5);
}

TEST_P(ArchTest, WholeModelGradientMatchesFiniteDifferences) {
  const ModelConfig c = TinyConfig(GetParam());
  auto model = MakeModel<double>(c);
  const int64_t B = 2, Tn = 5, N = B * Tn;
  std::vector<int32_t> ids = RandomIds(N, c.vocab_size, 2);
  std::vector<int32_t> targets = RandomIds(N, c.vocab_size, 3);
  targets[4] = -1;  // a skipped row
  // Loss = sum(w_lp * logprob) + sum(w_ent * entropy) + 0.3 * aux.
  std::vector<double> w_lp(N), w_ent(N);
  std::mt19937 rng(4);
  std::normal_distribution<double> g;
  for (int64_t n = 0; n < N; ++n) {
    w_lp[n] = g(rng);
    w_ent[n] = g(rng);
  }
  const double aux_w = 0.3;
  auto loss = [&]() {
    RLVR_CHECK(model->Forward(ids.data(), B, Tn).ok());
    std::vector<double> lp(N), ent(N);
    RLVR_CHECK(model->TokenLogProbs(targets.data(), lp.data(), ent.data()).ok());
    double l = aux_w * model->aux_loss();
    for (int64_t n = 0; n < N; ++n) l += w_lp[n] * lp[n] + w_ent[n] * ent[n];
    return l;
  };
  loss();
  model->ZeroGrads();
  ASSERT_TRUE(model->Backward(w_lp.data(), w_ent.data(), aux_w).ok());
  // A few elements of every trainable tensor. Top-k routing is piecewise constant, so the step
  // is small enough not to flip a choice.
  int64_t checked = 0;
  double worst = 0;
  for (const ParamInfo& p : model->params()) {
    if (!p.trainable) continue;
    for (int64_t i : {int64_t{0}, p.numel / 2, p.numel - 1}) {
      double* w = model->data(p) + i;
      const double saved = *w, h = 1e-6;
      *w = saved + h;
      const double lplus = loss();
      *w = saved - h;
      const double lminus = loss();
      *w = saved;
      const double fd = (lplus - lminus) / (2 * h);
      const double an = model->grad(p)[i];
      const double err = std::abs(fd - an) / std::max(1e-3, std::abs(fd));
      worst = std::max(worst, err);
      EXPECT_LE(err, 1e-4) << p.name << "[" << i << "]: analytic " << an << ", numeric " << fd;
      ++checked;
    }
  }
  EXPECT_GT(checked, 20);
  std::printf("%s: worst relative FD error %.3g over %lld elements\n", GetParam().c_str(), worst,
              static_cast<long long>(checked));
}

TEST_P(ArchTest, ActiveVocabMasksPaddedLogits) {
  const ModelConfig c = TinyConfig(GetParam());
  auto model = MakeModel<double>(c);
  const int64_t B = 1, Tn = 4, V = c.vocab_size, active = V - 10;
  std::vector<int32_t> ids = RandomIds(Tn, active, 5);
  ASSERT_TRUE(model->Forward(ids.data(), B, Tn).ok());
  std::vector<double> full(Tn * V);
  ASSERT_TRUE(model->Logits(full.data()).ok());
  ASSERT_TRUE(model->set_active_vocab(active).ok());
  std::vector<double> masked(Tn * V);
  ASSERT_TRUE(model->Logits(masked.data()).ok());
  std::vector<int32_t> targets = {ids[1], ids[2], ids[3], 5};
  std::vector<double> lp(Tn), ent(Tn);
  ASSERT_TRUE(model->TokenLogProbs(targets.data(), lp.data(), ent.data()).ok());
  for (int64_t t = 0; t < Tn; ++t) {
    double mx = -1e300;
    for (int64_t v = 0; v < active; ++v) mx = std::max(mx, full[t * V + v]);
    double z = 0;
    for (int64_t v = 0; v < active; ++v) z += std::exp(full[t * V + v] - mx);
    double h = 0;
    for (int64_t v = 0; v < active; ++v) {
      const double l = full[t * V + v] - mx - std::log(z);
      h -= std::exp(l) * l;
    }
    EXPECT_NEAR(lp[t], full[t * V + targets[t]] - mx - std::log(z), 1e-10);
    EXPECT_NEAR(ent[t], h, 1e-10);
    for (int64_t v = active; v < V; ++v) {
      EXPECT_EQ(masked[t * V + v], -std::numeric_limits<double>::infinity());
    }
    EXPECT_EQ(masked[t * V], full[t * V]);
  }
  // A target in the masked range is an error naming the row.
  targets[0] = static_cast<int32_t>(active);
  auto s = model->TokenLogProbs(targets.data(), lp.data(), ent.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("targets[0]"), std::string::npos) << s;
  EXPECT_FALSE(model->set_active_vocab(V + 1).ok());
}

// Sequence packing: rows holding several sequences (positions restarting at 0) give every
// sequence the logprobs and parameter gradients it gets alone, in double and in float.
template <typename T>
void CheckPackedMatchesSeparate(const std::string& arch, double tol) {
  const ModelConfig c = TinyConfig(arch);
  auto model = MakeModel<T>(c);
  const int64_t V = c.vocab_size;
  // Two packed rows of 16: [5, 3, 6 | 2 padding] and [4, 7 | 5 padding].
  const std::vector<std::vector<int64_t>> rows = {{5, 3, 6}, {4, 7}};
  const int64_t B = 2, Tn = 16, N = B * Tn;
  std::vector<int32_t> ids = RandomIds(N, V, 11), positions(N), targets(N, -1);
  std::vector<T> w(N, T(0));
  std::mt19937 rng(12);
  std::normal_distribution<double> g;
  struct Segment {
    int64_t b, a, len;
  };
  std::vector<Segment> segments;
  for (int64_t b = 0; b < B; ++b) {
    int64_t a = 0;
    for (int64_t len : rows[b]) {
      segments.push_back({b, a, len});
      for (int64_t t = 0; t < len; ++t) {
        positions[b * Tn + a + t] = static_cast<int32_t>(t);
        if (t + 1 < len) {
          targets[b * Tn + a + t] = ids[b * Tn + a + t + 1];
          w[b * Tn + a + t] = static_cast<T>(g(rng));
        }
      }
      a += len;
    }
    for (int64_t t = a; t < Tn; ++t) positions[b * Tn + t] = static_cast<int32_t>(t - a);
  }
  const int64_t P = model->num_param_elements();
  ASSERT_TRUE(model->Forward(ids.data(), B, Tn, {}, positions.data()).ok());
  std::vector<T> packed_lp(N);
  ASSERT_TRUE(model->TokenLogProbs(targets.data(), packed_lp.data(), nullptr).ok());
  model->ZeroGrads();
  ASSERT_TRUE(model->Backward(w.data(), nullptr, 0.0).ok());
  std::vector<T> packed_grad(model->grad_data(), model->grad_data() + P);

  // Each sequence alone (Backward accumulates: the sum over sequences).
  model->ZeroGrads();
  std::vector<T> alone_lp(N, T(0));
  for (const Segment& s : segments) {
    const int64_t off = s.b * Tn + s.a;
    ASSERT_TRUE(model->Forward(ids.data() + off, 1, s.len).ok());
    ASSERT_TRUE(model->TokenLogProbs(targets.data() + off, alone_lp.data() + off, nullptr).ok());
    ASSERT_TRUE(model->Backward(w.data() + off, nullptr, 0.0).ok());
  }
  const T* alone_grad = model->grad_data();
  int64_t compared = 0;
  double lp_diff = 0, ref_norm = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    lp_diff = std::max(lp_diff, std::abs(static_cast<double>(packed_lp[n] - alone_lp[n])));
    ref_norm = std::max(ref_norm, std::abs(static_cast<double>(alone_lp[n])));
    ++compared;
  }
  EXPECT_GT(ref_norm, 0.1);
  EXPECT_EQ(compared, 4 + 2 + 5 + 3 + 6);
  EXPECT_LE(lp_diff, tol) << arch << ": logprobs differ by " << lp_diff;
  double g_diff = 0, g_max = 0;
  int64_t nonzero = 0;
  for (int64_t i = 0; i < P; ++i) {
    g_max = std::max(g_max, std::abs(static_cast<double>(alone_grad[i])));
    g_diff = std::max(g_diff, std::abs(static_cast<double>(packed_grad[i] - alone_grad[i])));
    nonzero += alone_grad[i] != T(0);
  }
  EXPECT_GT(nonzero, P / 4);
  EXPECT_GT(g_max, 1e-3);
  EXPECT_LE(g_diff, tol * std::max(1.0, g_max))
      << arch << ": gradients differ by " << g_diff << " (largest " << g_max << ")";
  std::printf("%s %s: packed vs separate, max |dlogp| %.3g, max |dgrad| %.3g (max |grad| %.3g)\n",
              arch.c_str(), sizeof(T) == 8 ? "double" : "float", lp_diff, g_diff, g_max);

  // Without the positions the row is one causal sequence: later segments then see earlier ones.
  ASSERT_TRUE(model->Forward(ids.data(), B, Tn).ok());
  std::vector<T> causal_lp(N);
  ASSERT_TRUE(model->TokenLogProbs(targets.data(), causal_lp.data(), nullptr).ok());
  const int64_t second = segments[1].a;  // first token of row 0's second segment
  EXPECT_GT(std::abs(static_cast<double>(causal_lp[second] - alone_lp[second])), 100 * tol);
}

TEST_P(ArchTest, PackedRowsMatchSeparateSequencesDouble) {
  CheckPackedMatchesSeparate<double>(GetParam(), 1e-10);
}

TEST_P(ArchTest, PackedRowsMatchSeparateSequencesFloat) {
  CheckPackedMatchesSeparate<float>(GetParam(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Archs, ArchTest,
                         ::testing::Values("qwen3_moe", "dots1", "qwen3", "qwen2", "llama"));

TEST(MoeModelTest, RouterReplayReproducesAndOverridesChoices) {
  const ModelConfig c = TinyConfig("qwen3_moe");
  auto model = MakeModel<float>(c);
  const int64_t B = 2, Tn = 6, N = B * Tn, V = c.vocab_size, K = c.num_experts_per_tok;
  std::vector<int32_t> ids = RandomIds(N, V, 6);
  ASSERT_TRUE(model->Forward(ids.data(), B, Tn).ok());
  std::vector<float> base(N * V);
  ASSERT_TRUE(model->Logits(base.data()).ok());
  std::vector<std::vector<int32_t>> chosen;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const int32_t* e = model->chosen_experts(l);
    ASSERT_NE(e, nullptr);
    chosen.emplace_back(e, e + N * K);
  }
  std::vector<const int32_t*> forced;
  for (auto& v : chosen) forced.push_back(v.data());
  ASSERT_TRUE(model->Forward(ids.data(), B, Tn, forced).ok());
  std::vector<float> replay(N * V);
  ASSERT_TRUE(model->Logits(replay.data()).ok());
  EXPECT_EQ(replay, base);

  // Forcing other experts changes the output.
  std::vector<std::vector<int32_t>> other = chosen;
  for (auto& v : other) {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) v[n * K + k] = static_cast<int32_t>((n + k) % c.num_experts);
    }
  }
  forced.clear();
  for (auto& v : other) forced.push_back(v.data());
  ASSERT_TRUE(model->Forward(ids.data(), B, Tn, forced).ok());
  ASSERT_TRUE(model->Logits(replay.data()).ok());
  EXPECT_NE(replay, base);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    EXPECT_EQ(std::vector<int32_t>(model->chosen_experts(l), model->chosen_experts(l) + N * K),
              other[l]);
  }
  auto stats = model->moe_stats();
  ASSERT_EQ(static_cast<int64_t>(stats.size()), c.num_hidden_layers);
  int64_t total = 0;
  for (int64_t x : stats[0].expert_count) total += x;
  EXPECT_EQ(total, N * K);

  // Wrong number of entries is an error.
  forced.pop_back();
  EXPECT_EQ(model->Forward(ids.data(), B, Tn, forced).code(), absl::StatusCode::kInvalidArgument);
}

TEST(MoeModelTest, CorrectionBiasUpdateMovesTowardsBalance) {
  const ModelConfig c = TinyConfig("dots1");
  auto model = MakeModel<float>(c);
  std::vector<int32_t> ids = RandomIds(32, c.vocab_size, 8);
  ASSERT_TRUE(model->Forward(ids.data(), 2, 16).ok());
  const ParamInfo* bias = model->FindParam("model.layers.1.mlp.gate.e_score_correction_bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_FALSE(bias->trainable);
  auto stats = model->moe_stats();
  ASSERT_FALSE(stats.empty());
  model->UpdateCorrectionBias(0.01);
  double mean = 0;
  for (int64_t x : stats[0].expert_count) mean += x;
  mean /= stats[0].expert_count.size();
  int64_t moved = 0;
  for (int64_t e = 0; e < c.num_experts; ++e) {
    const float b = model->data(*bias)[e];
    if (stats[0].expert_count[e] > mean) {
      EXPECT_FLOAT_EQ(b, -0.01f);
    } else if (stats[0].expert_count[e] < mean) {
      EXPECT_FLOAT_EQ(b, 0.01f);
    }
    moved += b != 0;
  }
  EXPECT_GT(moved, 0);
}

TEST(ModelTest, RejectsBadInput) {
  const ModelConfig c = TinyConfig("qwen3");
  auto model = MakeModel<float>(c);
  std::vector<int32_t> ids = {1, 2, 64};
  auto s = model->Forward(ids.data(), 1, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model->Forward(ids.data(), 0, 3).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> out(64);
  EXPECT_EQ(model->Logits(out.data()).code(), absl::StatusCode::kFailedPrecondition);
  ModelConfig bad = c;
  bad.num_key_value_heads = 3;
  EXPECT_EQ(CausalLM<float>::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelTest, RejectsBadPackedPositions) {
  const ModelConfig c = TinyConfig("qwen3");
  auto model = MakeModel<float>(c);
  std::vector<int32_t> ids = RandomIds(6, c.vocab_size, 1);
  std::vector<int32_t> skip = {0, 1, 2, 4, 5, 6};  // jumps from 2 to 4
  auto s = model->Forward(ids.data(), 1, 6, {}, skip.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("positions[0, 3]"), std::string::npos) << s;
  std::vector<int32_t> late = {1, 2, 3, 0, 1, 2};  // the row does not start at 0
  s = model->Forward(ids.data(), 1, 6, {}, late.data());
  EXPECT_NE(std::string(s.message()).find("positions[0, 0]"), std::string::npos) << s;
  std::vector<int32_t> ok = {0, 1, 2, 0, 1, 0};
  EXPECT_TRUE(model->Forward(ids.data(), 1, 6, {}, ok.data()).ok());
}

TEST(ModelTest, TiedEmbeddingsHaveNoLmHead) {
  ModelConfig c = TinyConfig("qwen3");
  c.tie_word_embeddings = true;
  auto m = CausalLM<float>::Create(c);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->FindParam("lm_head.weight"), nullptr);
  c.tie_word_embeddings = false;
  m = CausalLM<float>::Create(c);
  ASSERT_TRUE(m.ok());
  EXPECT_NE((*m)->FindParam("lm_head.weight"), nullptr);
  int64_t total = 0;
  for (const ParamInfo& p : (*m)->params()) total += p.numel;
  EXPECT_EQ(total, c.NumParameters());
}

}  // namespace
}  // namespace rlvr::policy
