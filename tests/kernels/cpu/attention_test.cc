// kernels::AttentionForward / AttentionBackward against a direct double-precision transcription
// of causal grouped-query attention and its gradient, on sequences longer than the kernel's
// 64-row causal block (150 = 64 + 64 + 22), so every block boundary is crossed. The layer tests
// (tests/policy/layers) check the same kernels by finite differences on short sequences.
#include "kernels/attention.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace rlvr::kernels {
namespace {

TEST(AttentionKernelTest, LongCausalSequencesMatchDirectFormulas) {
  const int64_t B = 2, T = 150, H = 4, Hkv = 2, D = 8, G = H / Hkv;
  const double sc = 1.0 / std::sqrt(static_cast<double>(D));
  std::mt19937 rng(3);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto rand = [&](int64_t n) {
    std::vector<double> v(n);
    for (double& x : v) x = nd(rng);
    return v;
  };
  const auto q = rand(B * T * H * D), k = rand(B * T * Hkv * D), v = rand(B * T * Hkv * D);
  const auto dout = rand(B * T * H * D);
  std::vector<double> out(B * T * H * D), lse(B * H * T);
  AttentionForward<double>(q.data(), k.data(), v.data(), B, T, H, Hkv, D, sc, out.data(),
                           lse.data());
  std::vector<double> dq(q.size(), 0.0), dk(k.size(), 0.0), dv(v.size(), 0.0);
  AttentionBackward<double>(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), B, T,
                            H, Hkv, D, sc, dq.data(), dk.data(), dv.data());

  auto Q = [&](int64_t b, int64_t t, int64_t h, int64_t d) {
    return q[((b * T + t) * H + h) * D + d];
  };
  auto K = [&](int64_t b, int64_t t, int64_t g, int64_t d) {
    return k[((b * T + t) * Hkv + g) * D + d];
  };
  auto V = [&](int64_t b, int64_t t, int64_t g, int64_t d) {
    return v[((b * T + t) * Hkv + g) * D + d];
  };
  auto DO = [&](int64_t b, int64_t t, int64_t h, int64_t d) {
    return dout[((b * T + t) * H + h) * D + d];
  };
  std::vector<double> rdq(q.size(), 0.0), rdk(k.size(), 0.0), rdv(v.size(), 0.0);
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / G;
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> p(t + 1), dp(t + 1);
        double m = -1e300, sum = 0;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += Q(b, t, h, d) * K(b, s, g, d);
          p[s] = dot * sc;
          m = std::max(m, p[s]);
        }
        for (int64_t s = 0; s <= t; ++s) sum += (p[s] = std::exp(p[s] - m));
        for (int64_t s = 0; s <= t; ++s) p[s] /= sum;
        worst = std::max(worst, std::fabs(lse[(b * H + h) * T + t] - (m + std::log(sum))));
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t s = 0; s <= t; ++s) o += p[s] * V(b, s, g, d);
          worst = std::max(worst, std::fabs(out[((b * T + t) * H + h) * D + d] - o));
        }
        // Backward: dP = dO V^T, dS = P (dP - sum P dP), dQ = sc dS K, dK = sc dS^T Q, dV = P^T dO.
        double pdp = 0;
        for (int64_t s = 0; s <= t; ++s) {
          double x = 0;
          for (int64_t d = 0; d < D; ++d) x += DO(b, t, h, d) * V(b, s, g, d);
          dp[s] = x;
          pdp += p[s] * x;
        }
        for (int64_t s = 0; s <= t; ++s) {
          const double ds = p[s] * (dp[s] - pdp);
          for (int64_t d = 0; d < D; ++d) {
            rdq[((b * T + t) * H + h) * D + d] += sc * ds * K(b, s, g, d);
            rdk[((b * T + s) * Hkv + g) * D + d] += sc * ds * Q(b, t, h, d);
            rdv[((b * T + s) * Hkv + g) * D + d] += p[s] * DO(b, t, h, d);
          }
        }
      }
    }
  }
  EXPECT_LT(worst, 1e-12) << "forward (out, lse)";
  auto max_diff = [](const std::vector<double>& a, const std::vector<double>& b) {
    double w = 0;
    for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::fabs(a[i] - b[i]));
    return w;
  };
  EXPECT_LT(max_diff(dq, rdq), 1e-11);
  EXPECT_LT(max_diff(dk, rdk), 1e-11);
  EXPECT_LT(max_diff(dv, rdv), 1e-11);
}

}  // namespace
}  // namespace rlvr::kernels
