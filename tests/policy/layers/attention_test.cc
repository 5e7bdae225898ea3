// Grouped-query attention: forward against a naive per-token implementation, backward against
// finite differences, decode through a paged KV cache against the full forward.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "policy/layers/attention.h"
#include "policy/layers/rope.h"
#include "tests/policy/layers/grad_check.h"

namespace rlvr::policy::layers {
namespace {

using ::rlvr::testing::Dot;
using ::rlvr::testing::ExpectGradMatches;
using ::rlvr::testing::RandomVec;
using ::rlvr::testing::RelMaxErr;

struct Params {
  AttentionConfig cfg;
  std::vector<double> wq, bq, wk, bk, wv, bv, wo, qn, kn;
  AttentionWeights<double> Weights() const {
    return {wq.data(), bq.empty() ? nullptr : bq.data(), wk.data(),
            bk.empty() ? nullptr : bk.data(), wv.data(), bv.empty() ? nullptr : bv.data(),
            wo.data(), qn.empty() ? nullptr : qn.data(), kn.empty() ? nullptr : kn.data()};
  }
};

Params MakeParams(std::mt19937_64& rng, bool qk_norm, bool bias) {
  Params p;
  p.cfg = AttentionConfig{/*hidden=*/12, /*heads=*/4, /*kv_heads=*/2, /*head_dim=*/6, qk_norm,
                          1e-6};
  const int64_t C = 12, H = 4, Hkv = 2, D = 6;
  p.wq = RandomVec(rng, H * D * C, 0.4);
  p.wk = RandomVec(rng, Hkv * D * C, 0.4);
  p.wv = RandomVec(rng, Hkv * D * C, 0.4);
  p.wo = RandomVec(rng, C * H * D, 0.4);
  if (bias) {
    p.bq = RandomVec(rng, H * D, 0.3);
    p.bk = RandomVec(rng, Hkv * D, 0.3);
    p.bv = RandomVec(rng, Hkv * D, 0.3);
  }
  if (qk_norm) {
    p.qn = RandomVec(rng, D, 0.5);
    p.kn = RandomVec(rng, D, 0.5);
    for (double& v : p.qn) v += 1.0;
    for (double& v : p.kn) v += 1.0;
  }
  return p;
}

std::vector<int32_t> Positions(int64_t B, int64_t T) {
  std::vector<int32_t> pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) pos[i] = static_cast<int32_t>(i % T);
  return pos;
}

// Direct transcription of the HF modules, one token and head at a time.
std::vector<double> NaiveAttention(const Params& p, const std::vector<double>& x, int64_t B,
                                   int64_t T, double theta) {
  const int64_t C = p.cfg.hidden, H = p.cfg.heads, Hkv = p.cfg.kv_heads, D = p.cfg.head_dim;
  auto proj = [&](const std::vector<double>& w, const std::vector<double>& b, int64_t out,
                  int64_t n) {
    std::vector<double> y(out);
    for (int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[o];
      for (int64_t c = 0; c < C; ++c) s += w[o * C + c] * x[n * C + c];
      y[o] = s;
    }
    return y;
  };
  auto norm_rope = [&](std::vector<double>* v, int64_t heads, const std::vector<double>& nw,
                       int64_t pos) {
    for (int64_t h = 0; h < heads; ++h) {
      double* a = v->data() + h * D;
      if (!nw.empty()) {
        double ss = 0;
        for (int64_t d = 0; d < D; ++d) ss += a[d] * a[d];
        const double r = 1 / std::sqrt(ss / D + p.cfg.rms_eps);
        for (int64_t d = 0; d < D; ++d) a[d] = a[d] * r * nw[d];
      }
      std::vector<double> out(D);
      for (int64_t d = 0; d < D; ++d) {
        const int64_t j = d % (D / 2);
        const double ang = pos * std::pow(theta, -2.0 * j / D);
        const double rot = d < D / 2 ? -a[d + D / 2] : a[d - D / 2];
        out[d] = a[d] * std::cos(ang) + rot * std::sin(ang);
      }
      std::copy(out.begin(), out.end(), a);
    }
  };
  std::vector<std::vector<double>> q(B * T), k(B * T), v(B * T);
  for (int64_t n = 0; n < B * T; ++n) {
    q[n] = proj(p.wq, p.bq, H * D, n);
    k[n] = proj(p.wk, p.bk, Hkv * D, n);
    v[n] = proj(p.wv, p.bv, Hkv * D, n);
    norm_rope(&q[n], H, p.qn, n % T);
    norm_rope(&k[n], Hkv, p.kn, n % T);
  }
  std::vector<double> y(B * T * C, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> o(H * D, 0.0);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / Hkv);
        std::vector<double> s(t + 1);
        double m = -1e300, sum = 0;
        for (int64_t u = 0; u <= t; ++u) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += q[b * T + t][h * D + d] * k[b * T + u][g * D + d];
          s[u] = dot / std::sqrt(static_cast<double>(D));
          m = std::max(m, s[u]);
        }
        for (int64_t u = 0; u <= t; ++u) sum += (s[u] = std::exp(s[u] - m));
        for (int64_t u = 0; u <= t; ++u) {
          for (int64_t d = 0; d < D; ++d) o[h * D + d] += s[u] / sum * v[b * T + u][g * D + d];
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        double acc = 0;
        for (int64_t i = 0; i < H * D; ++i) acc += p.wo[c * H * D + i] * o[i];
        y[(b * T + t) * C + c] = acc;
      }
    }
  }
  return y;
}

class AttentionTest : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(AttentionTest, ForwardMatchesNaive) {
  const auto [qk_norm, bias] = GetParam();
  std::mt19937_64 rng(10);
  Params p = MakeParams(rng, qk_norm, bias);
  const int64_t B = 2, T = 5;
  const double theta = 10000.0;
  auto x = RandomVec(rng, B * T * p.cfg.hidden);
  auto pos = Positions(B, T);
  RopeTable<double> rope;
  BuildRopeTable(pos.data(), B * T, p.cfg.head_dim, theta, &rope);
  AttentionActivations<double> act;
  std::vector<double> y(B * T * p.cfg.hidden);
  ASSERT_TRUE(AttentionForward(p.cfg, p.Weights(), rope, x.data(), B, T, &act, y.data()).ok());
  EXPECT_LT(RelMaxErr(y, NaiveAttention(p, x, B, T, theta)), 1e-12);
}

TEST_P(AttentionTest, BackwardMatchesFiniteDifferences) {
  const auto [qk_norm, bias] = GetParam();
  std::mt19937_64 rng(11);
  Params p = MakeParams(rng, qk_norm, bias);
  const int64_t B = 2, T = 4, C = p.cfg.hidden;
  auto x = RandomVec(rng, B * T * C), r = RandomVec(rng, B * T * C);
  auto pos = Positions(B, T);
  RopeTable<double> rope;
  BuildRopeTable(pos.data(), B * T, p.cfg.head_dim, 1000.0, &rope);
  auto loss = [&] {
    AttentionActivations<double> act;
    std::vector<double> y(B * T * C);
    EXPECT_TRUE(AttentionForward(p.cfg, p.Weights(), rope, x.data(), B, T, &act, y.data()).ok());
    return Dot(y, r);
  };
  AttentionActivations<double> act;
  std::vector<double> y(B * T * C);
  ASSERT_TRUE(AttentionForward(p.cfg, p.Weights(), rope, x.data(), B, T, &act, y.data()).ok());
  auto zeros = [](const std::vector<double>& v) { return std::vector<double>(v.size(), 0.0); };
  std::vector<double> dx = zeros(x), dwq = zeros(p.wq), dbq = zeros(p.bq), dwk = zeros(p.wk),
                      dbk = zeros(p.bk), dwv = zeros(p.wv), dbv = zeros(p.bv),
                      dwo = zeros(p.wo), dqn = zeros(p.qn), dkn = zeros(p.kn);
  auto ptr = [](std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
  AttentionBackward(p.cfg, p.Weights(), rope, x.data(), B, T, act, r.data(), dx.data(),
                    AttentionGrads<double>{ptr(dwq), ptr(dbq), ptr(dwk), ptr(dbk), ptr(dwv),
                                           ptr(dbv), ptr(dwo), ptr(dqn), ptr(dkn)});
  ExpectGradMatches("attn dx", &x, dx, loss);
  ExpectGradMatches("attn dwq", &p.wq, dwq, loss);
  ExpectGradMatches("attn dwk", &p.wk, dwk, loss);
  ExpectGradMatches("attn dwv", &p.wv, dwv, loss);
  ExpectGradMatches("attn dwo", &p.wo, dwo, loss);
  if (bias) {
    ExpectGradMatches("attn dbq", &p.bq, dbq, loss);
    ExpectGradMatches("attn dbk", &p.bk, dbk, loss);
    ExpectGradMatches("attn dbv", &p.bv, dbv, loss);
  }
  if (qk_norm) {
    ExpectGradMatches("attn dq_norm", &p.qn, dqn, loss);
    ExpectGradMatches("attn dk_norm", &p.kn, dkn, loss);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, AttentionTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()));

TEST(AttentionDecodeTest, PagedCacheMatchesFullForward) {
  std::mt19937_64 rng(12);
  Params p = MakeParams(rng, /*qk_norm=*/true, /*bias=*/true);
  const int64_t B = 2, T = 7, C = p.cfg.hidden, Hkv = p.cfg.kv_heads, D = p.cfg.head_dim;
  auto x = RandomVec(rng, B * T * C);
  auto pos = Positions(B, T);
  RopeTable<double> rope;
  BuildRopeTable(pos.data(), B * T, D, 10000.0, &rope);
  AttentionActivations<double> act;
  std::vector<double> full(B * T * C);
  ASSERT_TRUE(AttentionForward(p.cfg, p.Weights(), rope, x.data(), B, T, &act, full.data()).ok());

  // Paged caches of 3 positions per block, blocks deliberately out of order in memory.
  const int64_t block = 3, blocks = 3;
  std::vector<std::vector<double>> kmem(B * blocks, std::vector<double>(block * Hkv * D, -7.0)),
      vmem(B * blocks, std::vector<double>(block * Hkv * D, -7.0));
  std::vector<std::vector<double*>> kptr(B), vptr(B);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < blocks; ++i) {
      kptr[b].push_back(kmem[b * blocks + (blocks - 1 - i)].data());
      vptr[b].push_back(vmem[b * blocks + (blocks - 1 - i)].data());
    }
  }
  std::vector<KvCacheView<double>> caches;
  for (int64_t b = 0; b < B; ++b) caches.push_back({block, kptr[b], vptr[b]});

  // A prefill chunk of 4 tokens, then 3 single-token decode steps.
  std::vector<double> got(B * T * C);
  AttentionActivations<double> scratch;
  int64_t t0 = 0;
  for (int64_t chunk : {4, 1, 1, 1}) {
    std::vector<double> xc(B * chunk * C), yc(B * chunk * C);
    std::vector<int32_t> pc(B * chunk);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < chunk; ++t) {
        pc[b * chunk + t] = static_cast<int32_t>(t0 + t);
        std::copy_n(x.begin() + (b * T + t0 + t) * C, C, xc.begin() + (b * chunk + t) * C);
      }
    }
    RopeTable<double> rc;
    BuildRopeTable(pc.data(), B * chunk, D, 10000.0, &rc);
    ASSERT_TRUE(AttentionDecode(p.cfg, p.Weights(), rc, xc.data(), pc.data(), B, chunk,
                                std::span<const KvCacheView<double>>(caches), &scratch,
                                yc.data())
                    .ok());
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(yc.begin() + b * chunk * C, chunk * C, got.begin() + (b * T + t0) * C);
    }
    t0 += chunk;
  }
  EXPECT_LT(RelMaxErr(got, full), 1e-12);
}

TEST(AttentionConfigTest, HeadsNotMultipleOfKvHeadsIsAnError) {
  std::mt19937_64 rng(13);
  Params p = MakeParams(rng, false, false);
  p.cfg.kv_heads = 3;
  RopeTable<double> rope;
  std::vector<int32_t> pos = {0};
  BuildRopeTable(pos.data(), 1, p.cfg.head_dim, 10000.0, &rope);
  AttentionActivations<double> act;
  std::vector<double> x(p.cfg.hidden), y(p.cfg.hidden);
  absl::Status s = AttentionForward(p.cfg, p.Weights(), rope, x.data(), 1, 1, &act, y.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("num_key_value_heads"), std::string_view::npos) << s;
}

}  // namespace
}  // namespace rlvr::policy::layers
