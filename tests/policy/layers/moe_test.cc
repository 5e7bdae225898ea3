// MoE: dispatch against a dense per-token loop, backward (with the aux loss) against finite
// differences, routing variants, router replay, and the load-balancing loss formula.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "policy/layers/moe.h"
#include "tests/policy/layers/grad_check.h"

namespace rlvr::policy::layers {
namespace {

using ::rlvr::testing::Dot;
using ::rlvr::testing::ExpectGradMatches;
using ::rlvr::testing::RandomVec;
using ::rlvr::testing::RelMaxErr;

struct MoeParams {
  MoeConfig cfg;
  std::vector<double> router, bias, gate, up, down, sg, su, sd, sgate;
  MoeWeights<double> Weights() const {
    auto p = [](const std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
    return {router.data(), p(bias), gate.data(), up.data(), down.data(),
            MlpWeights<double>{p(sg), p(su), p(sd)}, p(sgate)};
  }
};

MoeParams Make(std::mt19937_64& rng, const MoeConfig& cfg, bool with_bias) {
  MoeParams p;
  p.cfg = cfg;
  const int64_t C = cfg.hidden, E = cfg.experts, I = cfg.intermediate, S = cfg.shared_intermediate;
  p.router = RandomVec(rng, E * C, 0.5);
  if (with_bias) p.bias = RandomVec(rng, E, 0.3);
  p.gate = RandomVec(rng, E * I * C, 0.4);
  p.up = RandomVec(rng, E * I * C, 0.4);
  p.down = RandomVec(rng, E * C * I, 0.4);
  if (S > 0) {
    p.sg = RandomVec(rng, S * C, 0.4);
    p.su = RandomVec(rng, S * C, 0.4);
    p.sd = RandomVec(rng, C * S, 0.4);
  }
  if (cfg.shared_gate) p.sgate = RandomVec(rng, C, 0.5);
  return p;
}

double Silu(double g) { return g / (1 + std::exp(-g)); }

// out[C] += scale * SwiGLU MLP(x) with weights gate/up [I, C], down [C, I].
void NaiveMlp(const double* gate, const double* up, const double* down, int64_t C, int64_t I,
              const double* x, double scale, double* out) {
  for (int64_t i = 0; i < I; ++i) {
    double a = 0, b = 0;
    for (int64_t c = 0; c < C; ++c) {
      a += gate[i * C + c] * x[c];
      b += up[i * C + c] * x[c];
    }
    const double h = Silu(a) * b;
    for (int64_t c = 0; c < C; ++c) out[c] += scale * down[c * I + i] * h;
  }
}

// The dense reference: every token loops over its chosen experts (or `forced`).
std::vector<double> NaiveMoe(const MoeParams& p, const std::vector<double>& x, int64_t N,
                             const int32_t* forced) {
  const MoeConfig& c = p.cfg;
  const int64_t C = c.hidden, E = c.experts, K = c.top_k, I = c.intermediate;
  std::vector<double> y(N * C, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const double* xn = x.data() + n * C;
    std::vector<double> logit(E), s(E);
    for (int64_t e = 0; e < E; ++e) {
      double a = 0;
      for (int64_t j = 0; j < C; ++j) a += p.router[e * C + j] * xn[j];
      logit[e] = a;
    }
    if (c.scoring == MoeScoring::kSoftmax) {
      const double m = *std::max_element(logit.begin(), logit.end());
      double z = 0;
      for (int64_t e = 0; e < E; ++e) z += std::exp(logit[e] - m);
      for (int64_t e = 0; e < E; ++e) s[e] = std::exp(logit[e] - m) / z;
    } else {
      for (int64_t e = 0; e < E; ++e) s[e] = 1 / (1 + std::exp(-logit[e]));
    }
    std::vector<int32_t> chosen(K);
    if (forced != nullptr) {
      std::copy(forced + n * K, forced + (n + 1) * K, chosen.begin());
    } else {
      std::vector<double> choice(E);
      for (int64_t e = 0; e < E; ++e) choice[e] = s[e] + (p.bias.empty() ? 0.0 : p.bias[e]);
      if (c.n_group > 1) {
        const int64_t per = E / c.n_group;
        std::vector<std::pair<double, int64_t>> gs;
        for (int64_t g = 0; g < c.n_group; ++g) {
          std::vector<double> v(choice.begin() + g * per, choice.begin() + (g + 1) * per);
          std::sort(v.rbegin(), v.rend());
          gs.push_back({v[0] + v[1], g});
        }
        std::sort(gs.begin(), gs.end(), [](auto a, auto b) { return a.first > b.first; });
        std::vector<bool> keep(c.n_group, false);
        for (int64_t i = 0; i < c.topk_group; ++i) keep[gs[i].second] = true;
        for (int64_t e = 0; e < E; ++e) {
          if (!keep[e / per]) choice[e] = 0.0;
        }
      }
      std::vector<int32_t> idx(E);
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
        return choice[a] > choice[b];
      });
      std::copy(idx.begin(), idx.begin() + K, chosen.begin());
    }
    double sum = 0;
    for (int32_t e : chosen) sum += s[e];
    if (c.scoring == MoeScoring::kSigmoid) sum += 1e-20;
    for (int32_t e : chosen) {
      const double w = s[e] / (c.norm_topk_prob ? sum : 1.0) * c.routed_scaling_factor;
      NaiveMlp(p.gate.data() + e * I * C, p.up.data() + e * I * C, p.down.data() + e * C * I, C,
               I, xn, w, y.data() + n * C);
    }
    if (c.shared_intermediate > 0) {
      double g = 1.0;
      if (c.shared_gate) {
        double a = 0;
        for (int64_t j = 0; j < C; ++j) a += p.sgate[j] * xn[j];
        g = 1 / (1 + std::exp(-a));
      }
      NaiveMlp(p.sg.data(), p.su.data(), p.sd.data(), C, c.shared_intermediate, xn, g,
               y.data() + n * C);
    }
  }
  return y;
}

MoeConfig QwenConfig() {
  MoeConfig c;
  c.hidden = 8;
  c.experts = 6;
  c.top_k = 2;
  c.intermediate = 5;
  c.norm_topk_prob = true;
  return c;
}

MoeConfig DeepSeekConfig() {
  MoeConfig c;
  c.hidden = 8;
  c.experts = 8;
  c.top_k = 3;
  c.intermediate = 4;
  c.scoring = MoeScoring::kSigmoid;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.n_group = 4;
  c.topk_group = 2;
  c.shared_intermediate = 6;  // two always-on shared experts of size 3
  return c;
}

MoeConfig Qwen2SharedGateConfig() {
  MoeConfig c = QwenConfig();
  c.norm_topk_prob = false;
  c.shared_intermediate = 7;
  c.shared_gate = true;
  return c;
}

struct Case {
  const char* name;
  MoeConfig cfg;
  bool bias;
};

std::vector<Case> Cases() {
  return {{"qwen3", QwenConfig(), false},
          {"deepseek", DeepSeekConfig(), true},
          {"qwen2_shared_gate", Qwen2SharedGateConfig(), false}};
}

TEST(MoeTest, DispatchMatchesDensePerTokenLoop) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    std::mt19937_64 rng(20);
    MoeParams p = Make(rng, c.cfg, c.bias);
    const int64_t N = 16;
    auto x = RandomVec(rng, N * c.cfg.hidden);
    MoeActivations<double> act;
    std::vector<double> y(N * c.cfg.hidden);
    ASSERT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, nullptr, &act, y.data()).ok());
    EXPECT_LT(RelMaxErr(y, NaiveMoe(p, x, N, nullptr)), 1e-12);
    // Load statistics: every token made top_k assignments, probabilities sum to one per token.
    int64_t total = 0;
    for (int64_t v : act.expert_count) total += v;
    EXPECT_EQ(total, N * c.cfg.top_k);
    EXPECT_NEAR(std::accumulate(act.prob_sum.begin(), act.prob_sum.end(), 0.0), N, 1e-9);
  }
}

TEST(MoeTest, BackwardWithAuxLossMatchesFiniteDifferences) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    std::mt19937_64 rng(21);
    MoeParams p = Make(rng, c.cfg, c.bias);
    const int64_t N = 6, C = c.cfg.hidden;
    const double aux_weight = 0.7;
    auto x = RandomVec(rng, N * C), r = RandomVec(rng, N * C);
    auto loss = [&] {
      MoeActivations<double> act;
      std::vector<double> y(N * C);
      EXPECT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, nullptr, &act, y.data()).ok());
      const std::vector<int64_t>* counts[] = {&act.expert_count};
      const std::vector<double>* sums[] = {&act.prob_sum};
      auto aux = LoadBalancingLoss(counts, sums, N, 1.0);
      EXPECT_TRUE(aux.ok());
      return Dot(y, r) + aux_weight * aux->loss;
    };
    MoeActivations<double> act;
    std::vector<double> y(N * C);
    ASSERT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, nullptr, &act, y.data()).ok());
    const std::vector<int64_t>* counts[] = {&act.expert_count};
    const std::vector<double>* sums[] = {&act.prob_sum};
    auto aux = LoadBalancingLoss(counts, sums, N, aux_weight);
    ASSERT_TRUE(aux.ok());
    auto zeros = [](const std::vector<double>& v) { return std::vector<double>(v.size(), 0.0); };
    std::vector<double> dx = zeros(x), dr = zeros(p.router), dg = zeros(p.gate),
                        du = zeros(p.up), dd = zeros(p.down), dsg = zeros(p.sg),
                        dsu = zeros(p.su), dsd = zeros(p.sd), dsgate = zeros(p.sgate);
    auto ptr = [](std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
    MoeBackward(p.cfg, p.Weights(), x.data(), N, act, r.data(), aux->coef.data(), dx.data(),
                MoeGrads<double>{dr.data(), dg.data(), du.data(), dd.data(),
                                 MlpGrads<double>{ptr(dsg), ptr(dsu), ptr(dsd)}, ptr(dsgate)});
    ExpectGradMatches("moe dx", &x, dx, loss);
    ExpectGradMatches("moe drouter", &p.router, dr, loss);
    ExpectGradMatches("moe dgate", &p.gate, dg, loss);
    ExpectGradMatches("moe dup", &p.up, du, loss);
    ExpectGradMatches("moe ddown", &p.down, dd, loss);
    if (c.cfg.shared_intermediate > 0) {
      ExpectGradMatches("moe shared dgate", &p.sg, dsg, loss);
      ExpectGradMatches("moe shared ddown", &p.sd, dsd, loss);
    }
    if (c.cfg.shared_gate) ExpectGradMatches("moe shared_expert_gate", &p.sgate, dsgate, loss);
  }
}

TEST(MoeTest, RouterReplayRecomputesWeightsForForcedExperts) {
  std::mt19937_64 rng(22);
  MoeParams p = Make(rng, QwenConfig(), false);
  const int64_t N = 5, C = p.cfg.hidden, K = p.cfg.top_k;
  auto x = RandomVec(rng, N * C);
  MoeActivations<double> act;
  std::vector<double> y(N * C), y2(N * C);
  ASSERT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, nullptr, &act, y.data()).ok());
  // Replaying the router's own choices reproduces the output exactly.
  std::vector<int32_t> same = act.topk_experts;
  MoeActivations<double> act2;
  ASSERT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, same.data(), &act2, y2.data()).ok());
  EXPECT_EQ(y, y2);
  // Other choices: weights come from the router's probabilities of the forced experts.
  std::vector<int32_t> forced(N * K);
  for (int64_t n = 0; n < N; ++n) {
    forced[n * K] = static_cast<int32_t>(n % p.cfg.experts);
    forced[n * K + 1] = static_cast<int32_t>((n + 3) % p.cfg.experts);
  }
  ASSERT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, forced.data(), &act2, y2.data()).ok());
  EXPECT_LT(RelMaxErr(y2, NaiveMoe(p, x, N, forced.data())), 1e-12);
  EXPECT_EQ(act2.topk_experts, forced);
}

// Partial replay: rows of -1 are routed by the router, the others are forced; the router still
// gets the gradient of the forced experts' weights (finite differences, forced choices that the
// router would not make).
TEST(MoeTest, PartialRouterReplayAndItsRouterGradient) {
  std::mt19937_64 rng(25);
  MoeParams p = Make(rng, QwenConfig(), false);
  const int64_t N = 6, C = p.cfg.hidden, K = p.cfg.top_k, E = p.cfg.experts;
  auto x = RandomVec(rng, N * C), r = RandomVec(rng, N * C);
  MoeActivations<double> own;
  std::vector<double> y(N * C);
  ASSERT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, nullptr, &own, y.data()).ok());
  std::vector<int32_t> forced(N * K, -1);
  int64_t differs = 0;
  for (int64_t n = 0; n < N; n += 2) {  // odd tokens keep the router's choice
    // Two experts the router did not choose.
    std::vector<int32_t> other;
    for (int32_t e = 0; e < E; ++e) {
      if (e != own.topk_experts[n * K] && e != own.topk_experts[n * K + 1]) other.push_back(e);
    }
    forced[n * K] = other[0];
    forced[n * K + 1] = other[1];
    ++differs;
  }
  MoeActivations<double> act;
  ASSERT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, forced.data(), &act, y.data()).ok());
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      EXPECT_EQ(act.topk_experts[n * K + k],
                n % 2 == 0 ? forced[n * K + k] : own.topk_experts[n * K + k])
          << "token " << n;
    }
  }
  ASSERT_GT(differs, 0);
  EXPECT_LT(RelMaxErr(y, NaiveMoe(p, x, N, act.topk_experts.data())), 1e-12);
  auto loss = [&] {
    MoeActivations<double> a;
    std::vector<double> out(N * C);
    EXPECT_TRUE(MoeForward(p.cfg, p.Weights(), x.data(), N, forced.data(), &a, out.data()).ok());
    return Dot(out, r);
  };
  std::vector<double> dx(N * C, 0.0), dr(p.router.size(), 0.0), dg(p.gate.size(), 0.0),
      du(p.up.size(), 0.0), dd(p.down.size(), 0.0);
  MoeBackward(p.cfg, p.Weights(), x.data(), N, act, r.data(), nullptr, dx.data(),
              MoeGrads<double>{dr.data(), dg.data(), du.data(), dd.data(), {}, nullptr});
  double norm = 0;
  for (double v : dr) norm += v * v;
  EXPECT_GT(norm, 0.0);
  ExpectGradMatches("replayed moe drouter", &p.router, dr, loss);
  // A row that is only partly -1 is an error, not a silent partial replay.
  forced[1 * K] = 0;
  absl::Status s = MoeForward(p.cfg, p.Weights(), x.data(), N, forced.data(), &act, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("forced expert -1 of token 1"), std::string_view::npos) << s;
}

TEST(MoeTest, ForcedExpertOutOfRangeIsAnError) {
  std::mt19937_64 rng(23);
  MoeParams p = Make(rng, QwenConfig(), false);
  std::vector<double> x(p.cfg.hidden, 0.1), y(p.cfg.hidden);
  std::vector<int32_t> forced = {1, 9};
  MoeActivations<double> act;
  absl::Status s = MoeForward(p.cfg, p.Weights(), x.data(), 1, forced.data(), &act, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("forced expert 9"), std::string_view::npos) << s;
}

TEST(MoeTest, BadConfigNamesTheField) {
  std::mt19937_64 rng(24);
  MoeParams p = Make(rng, QwenConfig(), false);
  p.cfg.top_k = 7;
  std::vector<double> x(p.cfg.hidden), y(p.cfg.hidden);
  MoeActivations<double> act;
  absl::Status s = MoeForward(p.cfg, p.Weights(), x.data(), 1, nullptr, &act, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("num_experts_per_tok"), std::string_view::npos) << s;
}

TEST(LoadBalancingLossTest, MatchesHuggingFaceFormulaOverLayers) {
  // Two layers, E = 3, 2 tokens each, top-1: HF concatenates the layers' router outputs and
  // computes E * sum_e mean(one_hot) * mean(prob).
  const std::vector<int64_t> c0 = {2, 0, 0}, c1 = {1, 1, 0};
  const std::vector<double> p0 = {1.2, 0.5, 0.3}, p1 = {0.9, 0.8, 0.3};
  const std::vector<int64_t>* counts[] = {&c0, &c1};
  const std::vector<double>* sums[] = {&p0, &p1};
  auto r = LoadBalancingLoss(counts, sums, /*tokens=*/2, /*dloss=*/1.0);
  ASSERT_TRUE(r.ok()) << r.status();
  const double f[3] = {3.0 / 4, 1.0 / 4, 0.0}, P[3] = {2.1 / 4, 1.3 / 4, 0.6 / 4};
  EXPECT_NEAR(r->loss, 3 * (f[0] * P[0] + f[1] * P[1] + f[2] * P[2]), 1e-15);
  EXPECT_NEAR(r->coef[0], 3 * f[0] / 4, 1e-15);
  EXPECT_EQ(r->coef[2], 0.0);
  const std::vector<int64_t>* bad_counts[] = {&c0};
  EXPECT_FALSE(LoadBalancingLoss(bad_counts, sums, 2, 1.0).ok());
}

}  // namespace
}  // namespace rlvr::policy::layers
