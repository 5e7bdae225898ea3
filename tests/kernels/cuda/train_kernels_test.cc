// CUDA kernels of the training step (kernels/cuda/model_glue.h: RmsNormF32ToBf16's rstd,
// QkvPrepareBackward, ColumnSumF32, SwigluPairedBackwardF32ToBf16; kernels/cuda/moe.h:
// MoeGatherRowsBackwardBf16ToF32, MoeGroupedGemmWeightGrad{Bf16,F32}) against independent host
// references. QkvPrepareBackward is checked against a float64 implementation of its backward
// formulas AND against central finite differences of a float64 implementation of the forward
// (itself checked against the GPU's QkvPrepare, so the differentiated map is the one the GPU
// computes); the float64 backward is also checked against the finite differences without a GPU.
// Outputs are poisoned before each run; accumulating kernels start from random values.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/model_glue.h"
#include "kernels/cuda/moe.h"
#include "kernels/elementwise.h"
#include "kernels/rmsnorm.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/dense_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;
using testing::ExpectBadArg;
using testing::ExpectClose;
using testing::FromBf16;
using testing::Randn;
using testing::RoundBf16;

// fp32 kernels against float64 references: sums of at most a few hundred fp32 terms (and the
// RMSNorm backward's cancellation) stay well below 5e-5 of the largest reference value.
constexpr double kF32Tol = 5e-5;
// One rounding to bf16 (8 significant bits): at most 2^-9 of each element, below 2^-8 of max.
constexpr double kBf16Tol = 4e-3;

// ---------------------------------------------------------------------------------------------
// QkvPrepare forward / backward in float64.

struct QkvCase {
  int64_t N, H, Hkv, D;
  bool bias, norm;
  std::string Name() const {
    return "N" + std::to_string(N) + "_H" + std::to_string(H) + "_Hkv" + std::to_string(Hkv) +
           "_D" + std::to_string(D) + (bias ? "_bias" : "") + (norm ? "_norm" : "");
  }
};

const QkvCase kQkvCases[] = {
    {7, 4, 4, 16, false, false}, {7, 4, 4, 16, true, true},   {33, 8, 2, 64, true, false},
    {33, 8, 2, 64, false, true}, {5, 16, 4, 128, true, true}, {3, 2, 2, 128, false, false},
    {1, 4, 1, 64, true, true},   {2, 3, 3, 128, false, true},
};

// Inputs of one case: fp32 values as the device sees them (dq/dk/dv on the bf16 grid).
struct QkvProblem {
  QkvCase c;
  double eps = 1e-6;
  std::vector<float> qkv, bias, q_norm, k_norm, cos, sin, dq, dk, dv;
  std::vector<uint16_t> dq_bits, dk_bits, dv_bits;
  int64_t Heads() const { return c.H + 2 * c.Hkv; }
  int64_t Width() const { return Heads() * c.D; }
};

QkvProblem MakeQkvProblem(const QkvCase& c, uint32_t seed) {
  QkvProblem p;
  p.c = c;
  p.qkv = Randn(c.N * p.Width(), seed);
  if (c.bias) p.bias = Randn(p.Width(), seed + 1, 0.5f);
  if (c.norm) {
    p.q_norm = Randn(c.D, seed + 2, 0.3f);
    p.k_norm = Randn(c.D, seed + 3, 0.3f);
    for (float& w : p.q_norm) w += 1.f;
    for (float& w : p.k_norm) w += 1.f;
  }
  const std::vector<float> angle = Randn(c.N * c.D / 2, seed + 4, 2.f);
  for (float a : angle) {
    p.cos.push_back(std::cos(a));
    p.sin.push_back(std::sin(a));
  }
  p.dq = Randn(c.N * c.H * c.D, seed + 5);
  p.dk = Randn(c.N * c.Hkv * c.D, seed + 6);
  p.dv = Randn(c.N * c.Hkv * c.D, seed + 7);
  p.dq_bits = RoundBf16(&p.dq);
  p.dk_bits = RoundBf16(&p.dk);
  p.dv_bits = RoundBf16(&p.dv);
  return p;
}

enum class Kind { kQuery, kKey, kValue };
Kind KindOf(const QkvProblem& p, int64_t hd) {
  return hd < p.c.H ? Kind::kQuery : hd < p.c.H + p.c.Hkv ? Kind::kKey : Kind::kValue;
}

// The head's slice of the incoming gradient (dq, dk or dv).
const float* HeadGrad(const QkvProblem& p, int64_t n, int64_t hd) {
  const int64_t D = p.c.D;
  switch (KindOf(p, hd)) {
    case Kind::kQuery:
      return p.dq.data() + (n * p.c.H + hd) * D;
    case Kind::kKey:
      return p.dk.data() + (n * p.c.Hkv + hd - p.c.H) * D;
    default:
      return p.dv.data() + (n * p.c.Hkv + hd - p.c.H - p.c.Hkv) * D;
  }
}

// Forward of one head in float64: `in` = the qkv slice (no bias), w = the norm weight (null:
// none), cs/sn = the rope row. Writes the head's output (q, k or v before bf16 rounding).
void HeadForward(const QkvProblem& p, int64_t n, int64_t hd, const double* in, const double* w,
                 std::vector<double>* out) {
  const int64_t D = p.c.D, half = D / 2;
  std::vector<double> a(D);
  for (int64_t d = 0; d < D; ++d) a[d] = in[d] + (p.c.bias ? p.bias[hd * D + d] : 0.0);
  out->assign(D, 0.0);
  if (KindOf(p, hd) == Kind::kValue) {
    *out = a;
    return;
  }
  if (w != nullptr) {
    double ss = 0;
    for (double x : a) ss += x * x;
    const double r = 1.0 / std::sqrt(ss / D + p.eps);
    for (int64_t d = 0; d < D; ++d) a[d] = w[d] * (a[d] * r);
  }
  for (int64_t j = 0; j < half; ++j) {
    const double c = p.cos[n * half + j], s = p.sin[n * half + j];
    (*out)[j] = a[j] * c - a[j + half] * s;
    (*out)[j + half] = a[j + half] * c + a[j] * s;
  }
}

std::vector<double> NormWeight(const QkvProblem& p, int64_t hd) {
  if (!p.c.norm || KindOf(p, hd) == Kind::kValue) return {};
  const std::vector<float>& w = KindOf(p, hd) == Kind::kQuery ? p.q_norm : p.k_norm;
  return std::vector<double>(w.begin(), w.end());
}

// Loss of one head: dot(grad, forward(in)).
double HeadLoss(const QkvProblem& p, int64_t n, int64_t hd, const std::vector<double>& in,
                const std::vector<double>& w) {
  std::vector<double> out;
  HeadForward(p, n, hd, in.data(), w.empty() ? nullptr : w.data(), &out);
  const float* g = HeadGrad(p, n, hd);
  double loss = 0;
  for (int64_t d = 0; d < p.c.D; ++d) loss += g[d] * out[d];
  return loss;
}

std::vector<double> HeadInput(const QkvProblem& p, int64_t n, int64_t hd) {
  const float* src = p.qkv.data() + n * p.Width() + hd * p.c.D;
  return std::vector<double>(src, src + p.c.D);
}

// The analytic backward in float64: dqkv [N, W] and dnorm_rows [N, 2, D] (zeros without norm).
void ReferenceBackward(const QkvProblem& p, std::vector<double>* dqkv, std::vector<double>* dnorm) {
  const int64_t N = p.c.N, D = p.c.D, half = D / 2;
  dqkv->assign(N * p.Width(), 0.0);
  dnorm->assign(N * 2 * D, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t hd = 0; hd < p.Heads(); ++hd) {
      const float* g = HeadGrad(p, n, hd);
      double* da = dqkv->data() + n * p.Width() + hd * D;
      if (KindOf(p, hd) == Kind::kValue) {
        for (int64_t d = 0; d < D; ++d) da[d] = g[d];
        continue;
      }
      std::vector<double> a = HeadInput(p, n, hd), db(D);
      for (int64_t d = 0; d < D; ++d) a[d] += p.c.bias ? p.bias[hd * D + d] : 0.0;
      for (int64_t j = 0; j < half; ++j) {
        const double c = p.cos[n * half + j], s = p.sin[n * half + j];
        db[j] = g[j] * c + g[j + half] * s;
        db[j + half] = g[j + half] * c - g[j] * s;
      }
      const std::vector<double> w = NormWeight(p, hd);
      if (w.empty()) {
        for (int64_t d = 0; d < D; ++d) da[d] = db[d];
        continue;
      }
      double ss = 0, dot = 0;
      for (int64_t d = 0; d < D; ++d) {
        ss += a[d] * a[d];
        dot += w[d] * db[d] * a[d];
      }
      const double r = 1.0 / std::sqrt(ss / D + p.eps);
      double* dn = dnorm->data() + (n * 2 + (KindOf(p, hd) == Kind::kQuery ? 0 : 1)) * D;
      for (int64_t d = 0; d < D; ++d) {
        da[d] = r * (w[d] * db[d] - a[d] * r * r * dot / D);
        dn[d] += db[d] * a[d] * r;
      }
    }
  }
}

// Central finite differences of the float64 forward: the same two arrays.
void FiniteDifferences(const QkvProblem& p, std::vector<double>* dqkv, std::vector<double>* dnorm) {
  const int64_t N = p.c.N, D = p.c.D;
  dqkv->assign(N * p.Width(), 0.0);
  dnorm->assign(N * 2 * D, 0.0);
  auto step = [](double x) { return 1e-5 * std::max(1.0, std::abs(x)); };
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t hd = 0; hd < p.Heads(); ++hd) {
      const std::vector<double> w = NormWeight(p, hd);
      std::vector<double> in = HeadInput(p, n, hd);
      for (int64_t d = 0; d < D; ++d) {
        const double x = in[d], h = step(x);
        in[d] = x + h;
        const double up = HeadLoss(p, n, hd, in, w);
        in[d] = x - h;
        const double down = HeadLoss(p, n, hd, in, w);
        in[d] = x;
        (*dqkv)[n * p.Width() + hd * D + d] = (up - down) / (2 * h);
      }
      if (w.empty()) continue;
      double* dn = dnorm->data() + (n * 2 + (KindOf(p, hd) == Kind::kQuery ? 0 : 1)) * D;
      std::vector<double> wp = w;
      for (int64_t d = 0; d < D; ++d) {
        const double h = step(w[d]);
        wp[d] = w[d] + h;
        const double up = HeadLoss(p, n, hd, in, wp);
        wp[d] = w[d] - h;
        const double down = HeadLoss(p, n, hd, in, wp);
        wp[d] = w[d];
        dn[d] += (up - down) / (2 * h);
      }
    }
  }
}

class QkvBackwardTest : public ::testing::TestWithParam<QkvCase> {};

// Runs without a GPU: the float64 backward is the derivative of the float64 forward.
TEST_P(QkvBackwardTest, ReferenceMatchesFiniteDifferences) {
  const QkvProblem p = MakeQkvProblem(GetParam(), 11);
  std::vector<double> ref_dqkv, ref_dnorm, fd_dqkv, fd_dnorm;
  ReferenceBackward(p, &ref_dqkv, &ref_dnorm);
  FiniteDifferences(p, &fd_dqkv, &fd_dnorm);
  ExpectClose(ref_dqkv, fd_dqkv, 1e-7, "dqkv");
  if (p.c.norm) ExpectClose(ref_dnorm, fd_dnorm, 1e-7, "dnorm_rows");
}

TEST_P(QkvBackwardTest, MatchesReferenceAndFiniteDifferences) {
  RLVR_SKIP_WITHOUT_GPU();
  const QkvProblem p = MakeQkvProblem(GetParam(), 23);
  const QkvCase& c = p.c;
  DeviceBuffer<float> qkv(p.qkv), cos(p.cos), sin(p.sin);
  DeviceBuffer<float> bias(c.bias ? p.bias : std::vector<float>{0.f});
  DeviceBuffer<float> qn(c.norm ? p.q_norm : std::vector<float>{0.f});
  DeviceBuffer<float> kn(c.norm ? p.k_norm : std::vector<float>{0.f});
  DeviceBuffer<uint16_t> dq(p.dq_bits), dk(p.dk_bits), dv(p.dv_bits);
  DeviceBuffer<float> dqkv(c.N * p.Width()), dnorm(c.N * 2 * c.D);
  const float* bias_ptr = c.bias ? bias.get() : nullptr;
  const float* qn_ptr = c.norm ? qn.get() : nullptr;
  const float* kn_ptr = c.norm ? kn.get() : nullptr;

  // The forward the float64 model describes is the GPU's QkvPrepare.
  {
    DeviceBuffer<uint16_t> q(c.N * c.H * c.D), k(c.N * c.Hkv * c.D), v(c.N * c.Hkv * c.D);
    q.Poison();
    k.Poison();
    v.Poison();
    ASSERT_TRUE(QkvPrepare(qkv.get(), bias_ptr, qn_ptr, kn_ptr, p.eps, cos.get(), sin.get(), c.N,
                           c.H, c.Hkv, c.D, q.get(), k.get(), v.get())
                    .ok());
    const std::vector<float> gq = FromBf16(q.Download()), gk = FromBf16(k.Download()),
                             gv = FromBf16(v.Download());
    std::vector<double> rq, rk, rv, out;
    for (int64_t n = 0; n < c.N; ++n) {
      for (int64_t hd = 0; hd < p.Heads(); ++hd) {
        const std::vector<double> w = NormWeight(p, hd);
        HeadForward(p, n, hd, HeadInput(p, n, hd).data(), w.empty() ? nullptr : w.data(), &out);
        std::vector<double>& dst = KindOf(p, hd) == Kind::kQuery ? rq
                                   : KindOf(p, hd) == Kind::kKey ? rk
                                                                 : rv;
        dst.insert(dst.end(), out.begin(), out.end());
      }
    }
    ExpectClose(gq, rq, kBf16Tol, "forward q");
    ExpectClose(gk, rk, kBf16Tol, "forward k");
    ExpectClose(gv, rv, kBf16Tol, "forward v");
  }

  std::vector<double> ref_dqkv, ref_dnorm, fd_dqkv, fd_dnorm;
  ReferenceBackward(p, &ref_dqkv, &ref_dnorm);
  FiniteDifferences(p, &fd_dqkv, &fd_dnorm);
  std::vector<float> first_dqkv, first_dnorm;
  for (int run = 0; run < 2; ++run) {
    dqkv.Poison();
    dnorm.Poison();
    // Without q/k norm dnorm_rows may be null; pass null to check it is not written.
    ASSERT_TRUE(QkvPrepareBackward(dq.get(), dk.get(), dv.get(), qkv.get(), bias_ptr, qn_ptr,
                                   kn_ptr, p.eps, cos.get(), sin.get(), c.N, c.H, c.Hkv, c.D,
                                   dqkv.get(), c.norm ? dnorm.get() : nullptr)
                    .ok());
    const std::vector<float> got = dqkv.Download(), got_norm = dnorm.Download();
    if (run == 0) {
      ExpectClose(got, ref_dqkv, kF32Tol, "dqkv vs float64 backward");
      ExpectClose(got, fd_dqkv, kF32Tol, "dqkv vs finite differences");
      // Value heads pass the bf16 gradient through unchanged.
      for (int64_t n = 0; n < c.N; ++n) {
        for (int64_t i = 0; i < c.Hkv * c.D; ++i) {
          ASSERT_EQ(got[n * p.Width() + (c.H + c.Hkv) * c.D + i], p.dv[n * c.Hkv * c.D + i]);
        }
      }
      if (c.norm) {
        ExpectClose(got_norm, ref_dnorm, kF32Tol, "dnorm_rows vs float64 backward");
        ExpectClose(got_norm, fd_dnorm, kF32Tol, "dnorm_rows vs finite differences");
      } else {
        for (float x : got_norm) ASSERT_TRUE(std::isnan(x)) << "dnorm_rows written without norm";
      }
      first_dqkv = got;
      first_dnorm = got_norm;
    } else {
      // Deterministic: bit-identical on a second run (NaN == NaN compared as bits).
      EXPECT_EQ(0, std::memcmp(got.data(), first_dqkv.data(), got.size() * sizeof(float)));
      EXPECT_EQ(0,
                std::memcmp(got_norm.data(), first_dnorm.data(), got_norm.size() * sizeof(float)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, QkvBackwardTest, ::testing::ValuesIn(kQkvCases),
                         [](const ::testing::TestParamInfo<QkvCase>& i) { return i.param.Name(); });

// ---------------------------------------------------------------------------------------------

TEST(RmsNormF32ToBf16Cuda, WritesRstdWhenAsked) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t R = 9, C = 300;
  const double eps = 1e-6;
  const std::vector<float> x = Randn(R * C, 31, 2.f), w = Randn(C, 32);
  std::vector<float> ref_y(R * C), ref_rstd(R);
  kernels::RmsNormForward<float>(x.data(), w.data(), R, C, eps, ref_y.data(), ref_rstd.data());
  DeviceBuffer<float> dx(x), dw(w), rstd(R);
  DeviceBuffer<uint16_t> y(R * C);
  for (bool with_rstd : {true, false}) {
    y.Poison();
    rstd.Poison();
    ASSERT_TRUE(
        RmsNormF32ToBf16(dx.get(), dw.get(), R, C, eps, y.get(), with_rstd ? rstd.get() : nullptr)
            .ok());
    ExpectClose(FromBf16(y.Download()), ref_y, kBf16Tol, "y");
    const std::vector<float> got_rstd = rstd.Download();
    if (with_rstd) {
      // fp32 sums of 300 squares in another order: ~1e-7 relative.
      ExpectClose(got_rstd, ref_rstd, 1e-5, "rstd");
    } else {
      for (float r : got_rstd) EXPECT_TRUE(std::isnan(r)) << "rstd written though null";
    }
  }
}

struct ColCase {
  int64_t R, C, ldx, offset;
};

TEST(ColumnSumF32Cuda, AccumulatesColumnSlices) {
  RLVR_SKIP_WITHOUT_GPU();
  const ColCase cases[] = {
      {1000, 77, 100, 13}, {1, 1, 1, 0}, {37, 64, 64, 0}, {5000, 33, 256, 200}};
  uint32_t seed = 40;
  for (const ColCase& cc : cases) {
    SCOPED_TRACE("R=" + std::to_string(cc.R) + " C=" + std::to_string(cc.C) +
                 " ldx=" + std::to_string(cc.ldx));
    const std::vector<float> x = Randn(cc.R * cc.ldx, seed++);
    const std::vector<float> out0 = Randn(cc.C, seed++);
    std::vector<double> ref(out0.begin(), out0.end());
    for (int64_t r = 0; r < cc.R; ++r) {
      for (int64_t c = 0; c < cc.C; ++c) ref[c] += x[r * cc.ldx + cc.offset + c];
    }
    DeviceBuffer<float> dx(x), out(out0);
    ASSERT_TRUE(ColumnSumF32(dx.get() + cc.offset, cc.R, cc.C, cc.ldx, out.get()).ok());
    const std::vector<float> got = out.Download();
    ExpectClose(got, ref, 1e-5, "column sums");
    out.Upload(out0);
    ASSERT_TRUE(ColumnSumF32(dx.get() + cc.offset, cc.R, cc.C, cc.ldx, out.get()).ok());
    EXPECT_EQ(out.Download(), got) << "not deterministic";
    // R == 0 adds nothing.
    ASSERT_TRUE(ColumnSumF32(dx.get(), 0, cc.C, cc.ldx, out.get()).ok());
    EXPECT_EQ(out.Download(), got);
  }
}

TEST(SwigluPairedBackwardCuda, MatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const auto& [N, I] : {std::pair<int64_t, int64_t>{37, 300}, {1, 1}, {4, 1024}}) {
    SCOPED_TRACE("N=" + std::to_string(N) + " I=" + std::to_string(I));
    const std::vector<float> gu = Randn(N * 2 * I, 50, 3.f), dact = Randn(N * I, 51);
    std::vector<float> ref(N * 2 * I);
    for (int64_t n = 0; n < N; ++n) {
      kernels::SwigluBackward<float>(dact.data() + n * I, gu.data() + n * 2 * I,
                                     gu.data() + n * 2 * I + I, I, ref.data() + n * 2 * I,
                                     ref.data() + n * 2 * I + I);
    }
    DeviceBuffer<float> dgu_in(gu), ddact(dact);
    DeviceBuffer<uint16_t> dgu(N * 2 * I);
    dgu.Poison();
    ASSERT_TRUE(SwigluPairedBackwardF32ToBf16(ddact.get(), dgu_in.get(), N, I, dgu.get()).ok());
    ExpectClose(FromBf16(dgu.Download()), ref, kBf16Tol, "dgu");
  }
}

TEST(MoeGatherRowsBackwardBf16ToF32Cuda, AccumulatesInSlotOrder) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const auto& [N, K, C] :
       {std::tuple<int64_t, int64_t, int64_t>{29, 4, 70}, {1, 1, 1}, {64, 8, 256}}) {
    SCOPED_TRACE("N=" + std::to_string(N) + " K=" + std::to_string(K) + " C=" + std::to_string(C));
    std::vector<float> dxe = Randn(N * K * C, 60);
    const std::vector<uint16_t> dxe_bits = RoundBf16(&dxe);
    const std::vector<float> dx0 = Randn(N * C, 61);
    std::vector<int32_t> pos(N * K);
    std::iota(pos.begin(), pos.end(), 0);
    std::shuffle(pos.begin(), pos.end(), std::mt19937(62));
    // Reference: the same fp32 additions in the same order (k ascending, then onto dx).
    std::vector<float> ref(N * C);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        float acc = 0.f;
        for (int64_t k = 0; k < K; ++k) acc += dxe[pos[n * K + k] * C + c];
        ref[n * C + c] = dx0[n * C + c] + acc;
      }
    }
    DeviceBuffer<uint16_t> d_dxe(dxe_bits);
    DeviceBuffer<int32_t> d_pos(pos);
    DeviceBuffer<float> dx(dx0);
    ASSERT_TRUE(MoeGatherRowsBackwardBf16ToF32(d_dxe.get(), d_pos.get(), N, K, C, dx.get()).ok());
    ExpectClose(dx.Download(), ref, 1e-6, "dx");
  }
}

// ---------------------------------------------------------------------------------------------
// Grouped GEMM weight gradient.

struct WgradCase {
  std::vector<int32_t> runs;  // rows per expert (0: empty expert)
  int64_t Nout, Kin;
};

template <typename T>
void RunWeightGrad(const WgradCase& wc, bool bf16) {
  const int64_t E = static_cast<int64_t>(wc.runs.size());
  std::vector<int32_t> offset(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) offset[e + 1] = offset[e] + wc.runs[e];
  const int64_t M = offset[E], M_max = M + 5, Nout = wc.Nout, Kin = wc.Kin;
  // Rows past M (up to M_max) hold garbage the kernel must not read into any expert.
  std::vector<float> dy = Randn(M_max * Nout, 70), x = Randn(M_max * Kin, 71);
  std::vector<uint16_t> dy_bits, x_bits;
  if (bf16) {
    dy_bits = RoundBf16(&dy);
    x_bits = RoundBf16(&x);
  }
  const std::vector<float> dw0 = Randn(E * Nout * Kin, 72);
  std::vector<double> ref(dw0.begin(), dw0.end());
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t i = offset[e]; i < offset[e + 1]; ++i) {
      for (int64_t n = 0; n < Nout; ++n) {
        for (int64_t k = 0; k < Kin; ++k) {
          ref[(e * Nout + n) * Kin + k] += double(dy[i * Nout + n]) * double(x[i * Kin + k]);
        }
      }
    }
  }
  DeviceBuffer<int32_t> d_off(offset);
  DeviceBuffer<float> dw(dw0);
  absl::Status s;
  if constexpr (std::is_same_v<T, uint16_t>) {
    DeviceBuffer<uint16_t> d_dy(dy_bits), d_x(x_bits);
    s = MoeGroupedGemmWeightGradBf16(d_dy.get(), d_x.get(), d_off.get(), E, M_max, Nout, Kin,
                                     dw.get());
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(Synchronize().ok());
  } else {
    DeviceBuffer<float> d_dy(dy), d_x(x);
    s = MoeGroupedGemmWeightGradF32(d_dy.get(), d_x.get(), d_off.get(), E, M_max, Nout, Kin,
                                    dw.get());
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_TRUE(Synchronize().ok());
  }
  const std::vector<float> got = dw.Download();
  // Inputs are exact in fp32; fp32 FMA chains over at most ~100 rows.
  ExpectClose(got, ref, 1e-5, "dw");
  for (int64_t e = 0; e < E; ++e) {
    if (wc.runs[e] != 0) continue;
    for (int64_t i = e * Nout * Kin; i < (e + 1) * Nout * Kin; ++i) {
      ASSERT_EQ(got[i], dw0[i]) << "expert " << e << " has no rows but dw changed";
    }
  }
  // M_max == 0: a no-op.
  ASSERT_TRUE(
      (std::is_same_v<T, uint16_t>
           ? MoeGroupedGemmWeightGradBf16(nullptr, nullptr, nullptr, E, 0, Nout, Kin, dw.get())
           : MoeGroupedGemmWeightGradF32(nullptr, nullptr, nullptr, E, 0, Nout, Kin, dw.get()))
          .ok());
  EXPECT_EQ(dw.Download(), got);
}

const WgradCase kWgradCases[] = {
    {{0, 37, 0, 1, 80, 0}, 70, 130},  // empty first / middle / last experts, ragged tiles
    {{16}, 64, 64},                   // exact tiles
    {{17, 0, 33}, 1, 3},              // tiny matrices
    {{100, 3, 45, 0}, 129, 65},
};

TEST(MoeGroupedGemmWeightGradCuda, Bf16) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const WgradCase& wc : kWgradCases) {
    SCOPED_TRACE("Nout=" + std::to_string(wc.Nout) + " Kin=" + std::to_string(wc.Kin));
    RunWeightGrad<uint16_t>(wc, true);
  }
}

TEST(MoeGroupedGemmWeightGradCuda, F32) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const WgradCase& wc : kWgradCases) {
    SCOPED_TRACE("Nout=" + std::to_string(wc.Nout) + " Kin=" + std::to_string(wc.Kin));
    RunWeightGrad<float>(wc, false);
  }
}

// ---------------------------------------------------------------------------------------------
// Host-side validation: runs without a GPU (Unimplemented in a build without CUDA). Pointers are
// host addresses that are never dereferenced: every call fails before any device work.

TEST(TrainKernelsArgs, RejectsBadArguments) {
  std::vector<float> f(64);
  std::vector<uint16_t> h(64);
  std::vector<int32_t> i32(64);
  float* fp = f.data();
  uint16_t* hp = h.data();
  int32_t* ip = i32.data();

  ExpectBadArg(RmsNormF32ToBf16(fp, fp, -1, 4, 1e-6, hp, fp), "R = -1");
  ExpectBadArg(RmsNormF32ToBf16(fp, fp, 2, 4, 1e-6, nullptr, fp), "y is null");

  ExpectBadArg(QkvPrepareBackward(hp, hp, hp, fp, nullptr, nullptr, nullptr, 1e-6, fp, fp, -2, 4, 4,
                                  16, fp, nullptr),
               "N = -2");
  ExpectBadArg(QkvPrepareBackward(hp, hp, hp, fp, nullptr, nullptr, nullptr, 1e-6, fp, fp, 2, 4, 4,
                                  15, fp, nullptr),
               "head dim D = 15");
  ExpectBadArg(QkvPrepareBackward(hp, hp, hp, fp, nullptr, nullptr, nullptr, 1e-6, fp, fp, 2, 4, 4,
                                  258, fp, nullptr),
               "head dim D = 258");
  ExpectBadArg(
      QkvPrepareBackward(hp, hp, hp, fp, nullptr, fp, nullptr, 1e-6, fp, fp, 2, 4, 4, 16, fp, fp),
      "k_norm");
  ExpectBadArg(
      QkvPrepareBackward(hp, hp, hp, fp, nullptr, fp, fp, 1e-6, fp, fp, 2, 4, 4, 16, fp, nullptr),
      "dnorm_rows is null");
  ExpectBadArg(QkvPrepareBackward(hp, hp, hp, fp, nullptr, nullptr, nullptr, 1e-6, fp, fp, 2, 4, 4,
                                  16, nullptr, nullptr),
               "dqkv is null");
  ExpectBadArg(QkvPrepareBackward(hp, nullptr, hp, fp, nullptr, nullptr, nullptr, 1e-6, fp, fp, 2,
                                  4, 4, 16, fp, nullptr),
               "dk is null");
  ExpectBadArg(QkvPrepareBackward(hp, hp, hp, fp, nullptr, nullptr, nullptr, 1e-6, fp, fp, 2, 4, 0,
                                  16, fp, nullptr),
               "H and Hkv");

  ExpectBadArg(ColumnSumF32(fp, 4, 8, 7, fp), "ldx = 7 is below C = 8");
  ExpectBadArg(ColumnSumF32(fp, -1, 8, 8, fp), "R = -1");
  ExpectBadArg(ColumnSumF32(fp, 4, 8, 8, nullptr), "out is null");
  ExpectBadArg(ColumnSumF32(nullptr, 4, 8, 8, fp), "x is null");

  ExpectBadArg(SwigluPairedBackwardF32ToBf16(fp, fp, 2, -3, hp), "I = -3");
  ExpectBadArg(SwigluPairedBackwardF32ToBf16(fp, fp, 2, 3, nullptr), "dgu is null");
  ExpectBadArg(SwigluPairedBackwardF32ToBf16(nullptr, fp, 2, 3, hp), "dact is null");

  ExpectBadArg(MoeGatherRowsBackwardBf16ToF32(hp, ip, 4, 0, 8, fp), "K=0");
  ExpectBadArg(MoeGatherRowsBackwardBf16ToF32(hp, ip, 4, 33, 8, fp), "K=33");
  ExpectBadArg(MoeGatherRowsBackwardBf16ToF32(hp, nullptr, 4, 2, 8, fp), "null");

  ExpectBadArg(MoeGroupedGemmWeightGradBf16(hp, hp, ip, 0, 8, 4, 4, fp), "E=0");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16(hp, hp, ip, 1025, 8, 4, 4, fp), "E=1025");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16(hp, hp, ip, 2, 8, 0, 4, fp), "Nout=0");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16(hp, hp, ip, 2, -1, 4, 4, fp), "M_max=-1");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16(hp, hp, ip, 2, 8, 4, 4, nullptr), "null");
  ExpectBadArg(MoeGroupedGemmWeightGradF32(fp, nullptr, ip, 2, 8, 4, 4, fp), "null");
  ExpectBadArg(MoeGroupedGemmWeightGradF32(fp, fp, ip, 2, 8, int64_t{1} << 40, 4, fp),
               "int32 range");
}

// Size 0 returns before any device work: OK with the backend (GPU or not), Unimplemented
// without it.
TEST(TrainKernelsArgs, ZeroSizesAreNoOps) {
  const absl::StatusCode want =
      BuiltWithCuda() ? absl::StatusCode::kOk : absl::StatusCode::kUnimplemented;
  EXPECT_EQ(RmsNormF32ToBf16(nullptr, nullptr, 0, 4, 1e-6, nullptr, nullptr).code(), want);
  EXPECT_EQ(QkvPrepareBackward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1e-6,
                               nullptr, nullptr, 0, 4, 4, 16, nullptr, nullptr)
                .code(),
            want);
  EXPECT_EQ(ColumnSumF32(nullptr, 5, 0, 0, nullptr).code(), want);
  EXPECT_EQ(SwigluPairedBackwardF32ToBf16(nullptr, nullptr, 0, 8, nullptr).code(), want);
  EXPECT_EQ(MoeGatherRowsBackwardBf16ToF32(nullptr, nullptr, 0, 2, 8, nullptr).code(), want);
  EXPECT_EQ(MoeGroupedGemmWeightGradF32(nullptr, nullptr, nullptr, 2, 0, 4, 4, nullptr).code(),
            want);
}

}  // namespace
}  // namespace rlvr::kernels::cuda
