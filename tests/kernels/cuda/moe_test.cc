// CUDA MoE kernels (kernels/cuda/moe.h) against the CPU MoE layer (policy/layers/moe.h).
// The routing reference is MoeForward itself: with x = the identity (N = C) the router's
// logits are exactly the router weight's transpose, so the test chooses the logits (multiples
// of 1/4, so many exact ties test the lower-index tie-break) and reads the CPU's probabilities,
// choices, weights, dispatch order and load statistics from MoeActivations. The router's
// backward is read from MoeBackward's router-weight gradient, which for x = I is dlogits^T.
// Outputs are poisoned before each run. Router replay (MoeApplyForcedExperts) is checked the same
// way against MoeForward / MoeBackward with forced experts.
#include "kernels/cuda/moe.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/matmul.h"
#include "policy/layers/moe.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/dense_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;
using testing::FromBf16;
using testing::Randn;
using testing::RoundBf16;
using testing::RelativeMaxError;

// fp32 paths repeat the CPU's arithmetic with different exp implementations and summation
// orders over at most E terms: ~1e-6 relative.
constexpr double kF32Tol = 1e-5;
// bf16 outputs: one rounding to 8 significant bits (2^-9 relative).
constexpr double kBf16Tol = 1e-2;

void CheckClose(const char* what, const std::vector<float>& got, const std::vector<float>& ref,
                double tol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  ASSERT_FALSE(ref.empty()) << what;
  double max_ref = 0;
  for (float r : ref) max_ref = std::max(max_ref, static_cast<double>(std::abs(r)));
  EXPECT_GT(max_ref, 0.0) << what << ": reference is all zero";
  const double err = RelativeMaxError(got, ref);
  EXPECT_LT(err, tol) << what;
}

struct MoeCase {
  int64_t N, E, K;
  bool norm;
  double rsf;
  bool aux;
  std::string Name() const {
    return "N" + std::to_string(N) + "_E" + std::to_string(E) + "_K" + std::to_string(K) +
           (norm ? "_norm" : "") + (rsf != 1.0 ? "_scaled" : "") + (aux ? "_aux" : "");
  }
};

const MoeCase kCases[] = {
    {1, 8, 2, false, 1.0, false},  {37, 16, 4, true, 1.0, true}, {130, 64, 8, true, 2.5, true},
    {130, 40, 1, false, 1.0, false}, {37, 128, 6, false, 1.5, true},
};

class MoeCuda : public ::testing::TestWithParam<MoeCase> {
 protected:
  void SetUp() override { SetMatmulPrecision(MatmulPrecision::kHighest); }
};

TEST_P(MoeCuda, RoutingDispatchAndBackwardMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const MoeCase c = GetParam();
  const int64_t N = c.N, E = c.E, K = c.K, C = N, I = 4;
  std::mt19937 rng(7);
  std::vector<float> logits(N * E), router(E * C), x(N * C, 0.f);
  for (int64_t n = 0; n < N; ++n) {
    x[n * C + n] = 1.f;
    for (int64_t e = 0; e < E; ++e) {
      logits[n * E + e] = static_cast<float>(static_cast<int>(rng() % 17) - 8) * 0.25f;
      router[e * C + n] = logits[n * E + e];
    }
  }
  const std::vector<float> gate = Randn(E * I * C, 8, 0.3f), up = Randn(E * I * C, 9, 0.3f),
                           down = Randn(E * C * I, 10, 0.3f);
  policy::layers::MoeConfig cfg;
  cfg.hidden = C;
  cfg.experts = E;
  cfg.top_k = K;
  cfg.intermediate = I;
  cfg.norm_topk_prob = c.norm;
  cfg.routed_scaling_factor = c.rsf;
  policy::layers::MoeWeights<float> w;
  w.router = router.data();
  w.gate = gate.data();
  w.up = up.data();
  w.down = down.data();
  policy::layers::MoeActivations<float> act;
  std::vector<float> y_ref(N * C);
  ASSERT_TRUE(policy::layers::MoeForward<float>(cfg, w, x.data(), N, nullptr, &act,
                                                y_ref.data())
                  .ok());
  ASSERT_EQ(act.logits, logits) << "x = I must make the logits the router's transpose";
  const int64_t A = N * K;

  // Router.
  DeviceBuffer<float> d_logits(logits), d_probs(N * E), d_w(A);
  DeviceBuffer<int32_t> d_topk(A);
  d_probs.Poison();
  d_w.Poison();
  d_topk.Poison();
  ASSERT_TRUE(MoeRouterTopK(d_logits.get(), N, E, K, c.norm, c.rsf, d_probs.get(), d_topk.get(),
                            d_w.get())
                  .ok());
  CheckClose("probs", d_probs.Download(), act.probs, kF32Tol);
  EXPECT_EQ(d_topk.Download(), act.topk_experts) << "top-k choices (or tie-break) differ";
  CheckClose("topk_weights", d_w.Download(), act.topk_weights, kF32Tol);

  // Permutation and statistics, from the CPU's choices and probabilities.
  DeviceBuffer<int32_t> d_cpu_topk(act.topk_experts), d_off(E + 1), d_order(A), d_pos(A);
  DeviceBuffer<float> d_cpu_probs(act.probs);
  d_off.Poison();
  d_order.Poison();
  d_pos.Poison();
  ASSERT_TRUE(MoePermute(d_cpu_topk.get(), N, K, E, d_off.get(), d_order.get(), d_pos.get()).ok());
  const std::vector<int32_t> off = d_off.Download(), order = d_order.Download(),
                             pos = d_pos.Download();
  ASSERT_EQ(off.size(), act.expert_offset.size());
  for (int64_t e = 0; e <= E; ++e) EXPECT_EQ(off[e], act.expert_offset[e]) << "offset " << e;
  for (int64_t i = 0; i < A; ++i) {
    ASSERT_EQ(order[i], act.order[i]) << "order " << i;
    ASSERT_EQ(pos[order[i]], i) << "slot_pos of assignment " << order[i];
  }
  DeviceBuffer<int64_t> d_count(E);
  DeviceBuffer<double> d_psum(E);
  d_count.Poison();
  d_psum.Poison();
  ASSERT_TRUE(MoeRoutingStats(d_cpu_probs.get(), d_cpu_topk.get(), N, E, K, d_count.get(),
                              d_psum.get())
                  .ok());
  EXPECT_EQ(d_count.Download(), act.expert_count);
  EXPECT_LT(RelativeMaxError(d_psum.Download(), act.prob_sum), 1e-12);

  // Combine (un-permutation) of the CPU's expert outputs gives the CPU's y.
  DeviceBuffer<float> d_ye(act.expert_out), d_cw(act.topk_weights), d_y(N * C);
  d_y.Poison();
  ASSERT_TRUE(MoeCombineF32(d_ye.get(), d_cw.get(), d_pos.get(), N, K, C, d_y.get()).ok());
  CheckClose("combine", d_y.Download(), y_ref, kF32Tol);

  // Combine backward: dweights = dy . ye, dye = w dy.
  const std::vector<float> dy = Randn(N * C, 12);
  std::vector<float> dw_ref(A), dye_ref(A * C);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const int64_t p = pos[n * K + k];
      double acc = 0;
      for (int64_t col = 0; col < C; ++col) {
        acc += static_cast<double>(dy[n * C + col]) * act.expert_out[p * C + col];
        dye_ref[p * C + col] = act.topk_weights[n * K + k] * dy[n * C + col];
      }
      dw_ref[n * K + k] = static_cast<float>(acc);
    }
  }
  DeviceBuffer<float> d_dy(dy), d_dw(A), d_dye(A * C);
  d_dw.Poison();
  d_dye.Poison();
  ASSERT_TRUE(MoeCombineBackwardF32(d_dy.get(), d_ye.get(), d_cw.get(), d_pos.get(), N, K, C,
                                    d_dw.get(), d_dye.get())
                  .ok());
  CheckClose("dweights", d_dw.Download(), dw_ref, kF32Tol);
  CheckClose("dye", d_dye.Download(), dye_ref, kF32Tol);

  // Router backward against MoeBackward's router gradient (dlogits^T for x = I), accumulating.
  std::vector<double> aux(E);
  for (int64_t e = 0; e < E; ++e) aux[e] = 0.01 * static_cast<double>(e % 5) - 0.02;
  std::vector<float> grad_router(E * C, 0.f);
  policy::layers::MoeGrads<float> grads;
  grads.router = grad_router.data();
  policy::layers::MoeBackward<float>(cfg, w, x.data(), N, act, dy.data(),
                                     c.aux ? aux.data() : nullptr, nullptr, grads);
  const std::vector<float> dl0 = Randn(N * E, 13, 0.1f);
  std::vector<float> dl_ref(N * E);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t e = 0; e < E; ++e) dl_ref[n * E + e] = dl0[n * E + e] + grad_router[e * C + n];
  }
  DeviceBuffer<float> d_dwin(dw_ref), d_dl(dl0);
  DeviceBuffer<double> d_aux(aux);
  ASSERT_TRUE(MoeRouterBackward(d_cpu_probs.get(), d_cpu_topk.get(), d_dwin.get(),
                                c.aux ? d_aux.get() : nullptr, N, E, K, c.norm, c.rsf,
                                d_dl.get())
                  .ok());
  CheckClose("dlogits", d_dl.Download(), dl_ref, 1e-4);
  EXPECT_GT(RelativeMaxError(dl0, dl_ref), 1e-3) << "the router gradient is vacuous";

  // Gather to expert order and its backward, on a ragged width.
  const int64_t C2 = 70;
  std::vector<float> x2 = Randn(N * C2, 14), dxe = Randn(A * C2, 15), dx0 = Randn(N * C2, 16);
  std::vector<float> xe_ref(A * C2), dx_ref = dx0;
  for (int64_t i = 0; i < A; ++i) {
    for (int64_t col = 0; col < C2; ++col) xe_ref[i * C2 + col] = x2[(order[i] / K) * C2 + col];
  }
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t col = 0; col < C2; ++col) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc += dxe[pos[n * K + k] * C2 + col];
      dx_ref[n * C2 + col] += acc;
    }
  }
  DeviceBuffer<float> d_x2(x2), d_xe(A * C2), d_dxe(dxe), d_dx(dx0);
  d_xe.Poison();
  ASSERT_TRUE(MoeGatherRowsF32(d_x2.get(), d_order.get(), N, K, C2, d_xe.get()).ok());
  EXPECT_EQ(d_xe.Download(), xe_ref);
  ASSERT_TRUE(MoeGatherRowsBackwardF32(d_dxe.get(), d_pos.get(), N, K, C2, d_dx.get()).ok());
  CheckClose("gather backward", d_dx.Download(), dx_ref, kF32Tol);

  // bf16 rows: gather is exact, combine and the backward within bf16 rounding.
  std::vector<float> x2r = x2, yer = act.expert_out, dyr = dy, dx0r = dx0, dxer = dxe;
  DeviceBuffer<uint16_t> b_x(RoundBf16(&x2r)), b_xe(A * C2), b_ye(RoundBf16(&yer)), b_y(N * C),
      b_dy(RoundBf16(&dyr)), b_dye(A * C), b_dx(RoundBf16(&dx0r)), b_dxe(RoundBf16(&dxer));
  b_xe.Poison();
  b_y.Poison();
  b_dye.Poison();
  d_dw.Poison();
  ASSERT_TRUE(MoeGatherRowsBf16(b_x.get(), d_order.get(), N, K, C2, b_xe.get()).ok());
  std::vector<float> xe_refr(A * C2);
  for (int64_t i = 0; i < A; ++i) {
    for (int64_t col = 0; col < C2; ++col) xe_refr[i * C2 + col] = x2r[(order[i] / K) * C2 + col];
  }
  EXPECT_EQ(FromBf16(b_xe.Download()), xe_refr);
  ASSERT_TRUE(MoeCombineBf16(b_ye.get(), d_cw.get(), d_pos.get(), N, K, C, b_y.get()).ok());
  std::vector<float> yb_ref(N * C, 0.f), dwb_ref(A), dxb_ref = dx0r;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const int64_t p = pos[n * K + k];
      double acc = 0;
      for (int64_t col = 0; col < C; ++col) {
        yb_ref[n * C + col] += act.topk_weights[n * K + k] * yer[p * C + col];
        acc += static_cast<double>(dyr[n * C + col]) * yer[p * C + col];
      }
      dwb_ref[n * K + k] = static_cast<float>(acc);
    }
    for (int64_t col = 0; col < C2; ++col) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc += dxer[pos[n * K + k] * C2 + col];
      dxb_ref[n * C2 + col] += acc;
    }
  }
  CheckClose("combine bf16", FromBf16(b_y.Download()), yb_ref, kBf16Tol);
  ASSERT_TRUE(MoeCombineBackwardBf16(b_dy.get(), b_ye.get(), d_cw.get(), d_pos.get(), N, K, C,
                                     d_dw.get(), b_dye.get())
                  .ok());
  CheckClose("dweights bf16 (fp32 out)", d_dw.Download(), dwb_ref, kF32Tol);
  ASSERT_TRUE(MoeGatherRowsBackwardBf16(b_dxe.get(), d_pos.get(), N, K, C2, b_dx.get()).ok());
  CheckClose("gather backward bf16", FromBf16(b_dx.Download()), dxb_ref, kBf16Tol);
}

// Router replay: MoeApplyForcedExperts after MoeRouterTopK against MoeForward with the same
// forced experts (even rows forced to K distinct experts drawn at random, odd rows -1), then
// MoeRouterBackward on the replayed choices against MoeBackward's router gradient.
TEST_P(MoeCuda, ForcedExpertsMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const MoeCase c = GetParam();
  const int64_t N = c.N, E = c.E, K = c.K, C = N, I = 4;
  std::mt19937 rng(17);
  std::vector<float> logits(N * E), router(E * C), x(N * C, 0.f);
  for (int64_t n = 0; n < N; ++n) {
    x[n * C + n] = 1.f;
    for (int64_t e = 0; e < E; ++e) {
      logits[n * E + e] = static_cast<float>(static_cast<int>(rng() % 17) - 8) * 0.25f;
      router[e * C + n] = logits[n * E + e];
    }
  }
  std::vector<int32_t> forced(N * K, -1);
  for (int64_t n = 0; n < N; n += 2) {
    std::vector<int32_t> perm(E);
    for (int64_t e = 0; e < E; ++e) perm[e] = static_cast<int32_t>(e);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::copy_n(perm.begin(), K, forced.begin() + n * K);
  }
  const std::vector<float> gate = Randn(E * I * C, 8, 0.3f), up = Randn(E * I * C, 9, 0.3f),
                           down = Randn(E * C * I, 10, 0.3f);
  policy::layers::MoeConfig cfg;
  cfg.hidden = C;
  cfg.experts = E;
  cfg.top_k = K;
  cfg.intermediate = I;
  cfg.norm_topk_prob = c.norm;
  cfg.routed_scaling_factor = c.rsf;
  policy::layers::MoeWeights<float> w;
  w.router = router.data();
  w.gate = gate.data();
  w.up = up.data();
  w.down = down.data();
  policy::layers::MoeActivations<float> act;
  std::vector<float> y_ref(N * C);
  ASSERT_TRUE(policy::layers::MoeForward<float>(cfg, w, x.data(), N, forced.data(), &act,
                                                y_ref.data())
                  .ok());
  const int64_t A = N * K;
  DeviceBuffer<float> d_logits(logits), d_probs(N * E), d_w(A);
  DeviceBuffer<int32_t> d_topk(A), d_forced(forced);
  d_probs.Poison();
  d_w.Poison();
  d_topk.Poison();
  ASSERT_TRUE(MoeRouterTopK(d_logits.get(), N, E, K, c.norm, c.rsf, d_probs.get(), d_topk.get(),
                            d_w.get())
                  .ok());
  const std::vector<int32_t> routed = d_topk.Download();
  const std::vector<float> routed_w = d_w.Download();
  ASSERT_TRUE(MoeApplyForcedExperts(d_probs.get(), d_forced.get(), N, E, K, c.norm, c.rsf,
                                    d_topk.get(), d_w.get())
                  .ok());
  const std::vector<int32_t> topk = d_topk.Download();
  const std::vector<float> wts = d_w.Download();
  EXPECT_EQ(topk, act.topk_experts) << "replayed choices differ from MoeForward's";
  CheckClose("replayed topk_weights", wts, act.topk_weights, kF32Tol);
  bool changed = false;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      if (n % 2 == 1) {
        // Router rows are left exactly as MoeRouterTopK wrote them.
        EXPECT_EQ(topk[n * K + k], routed[n * K + k]) << "row " << n;
        EXPECT_EQ(wts[n * K + k], routed_w[n * K + k]) << "row " << n;
      } else if (topk[n * K + k] != routed[n * K + k]) {
        changed = true;
      }
    }
  }
  // (With one row the draw may happen to be the router's choice.)
  EXPECT_TRUE(changed || N == 1) << "the forced experts never differ from the router's";

  // The router's gradient through the replayed weights (and the aux loss), against
  // MoeBackward's router-weight gradient (dlogits^T for x = I).
  std::vector<int64_t> pos(A);
  for (int64_t i = 0; i < A; ++i) pos[act.order[i]] = i;
  const std::vector<float> dy = Randn(N * C, 22);
  std::vector<float> dw_ref(A);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      double acc = 0;
      for (int64_t col = 0; col < C; ++col) {
        acc += static_cast<double>(dy[n * C + col]) * act.expert_out[pos[n * K + k] * C + col];
      }
      dw_ref[n * K + k] = static_cast<float>(acc);
    }
  }
  std::vector<double> aux(E);
  for (int64_t e = 0; e < E; ++e) aux[e] = 0.01 * static_cast<double>(e % 3) - 0.01;
  std::vector<float> grad_router(E * C, 0.f);
  policy::layers::MoeGrads<float> grads;
  grads.router = grad_router.data();
  policy::layers::MoeBackward<float>(cfg, w, x.data(), N, act, dy.data(),
                                     c.aux ? aux.data() : nullptr, nullptr, grads);
  std::vector<float> dl_ref(N * E);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t e = 0; e < E; ++e) dl_ref[n * E + e] = grad_router[e * C + n];
  }
  DeviceBuffer<float> d_dwin(dw_ref), d_dl(std::vector<float>(N * E, 0.f));
  DeviceBuffer<double> d_aux(aux);
  ASSERT_TRUE(MoeRouterBackward(d_probs.get(), d_topk.get(), d_dwin.get(),
                                c.aux ? d_aux.get() : nullptr, N, E, K, c.norm, c.rsf,
                                d_dl.get())
                  .ok());
  CheckClose("replayed dlogits", d_dl.Download(), dl_ref, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeCuda, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.Name(); });

// Grouped GEMM with ragged expert runs (some empty) and ragged Nout / Kin, both layouts.
void RunGroupedGemm(bool trans_w, bool bf16) {
  const std::vector<int32_t> counts = {0, 70, 1, 130, 0, 64, 3, 33};
  const int64_t E = static_cast<int64_t>(counts.size()), Nout = 70, Kin = 37;
  std::vector<int32_t> off(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) off[e + 1] = off[e] + counts[e];
  const int64_t M = off[E];
  std::vector<float> x = Randn(M * Kin, 31), w = Randn(E * Nout * Kin, 32, 0.2f);
  std::vector<uint16_t> xb, wb;
  if (bf16) xb = RoundBf16(&x), wb = RoundBf16(&w);
  std::vector<float> ref(M * Nout);
  for (int64_t e = 0; e < E; ++e) {
    const float* we = w.data() + e * Nout * Kin;
    for (int64_t r = off[e]; r < off[e + 1]; ++r) {
      for (int64_t j = 0; j < Nout; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < Kin; ++i) {
          const float wv = trans_w ? we[i * Nout + j] : we[j * Kin + i];
          acc += static_cast<double>(x[r * Kin + i]) * wv;
        }
        ref[r * Nout + j] = static_cast<float>(acc);
      }
    }
  }
  DeviceBuffer<int32_t> d_off(off);
  std::vector<float> got;
  if (!bf16) {
    DeviceBuffer<float> d_x(x), d_w(w), d_y(M * Nout);
    d_y.Poison();
    ASSERT_TRUE(MoeGroupedGemmF32(d_x.get(), d_w.get(), d_off.get(), E, M + 5, Nout, Kin,
                                  trans_w, d_y.get())
                    .ok());
    got = d_y.Download();
  } else {
    DeviceBuffer<uint16_t> d_x(xb), d_w(wb), d_y(M * Nout);
    d_y.Poison();
    ASSERT_TRUE(MoeGroupedGemmBf16(d_x.get(), d_w.get(), d_off.get(), E, M + 5, Nout, Kin,
                                   trans_w, d_y.get())
                    .ok());
    got = FromBf16(d_y.Download());
  }
  CheckClose("grouped gemm", got, ref, bf16 ? kBf16Tol : kF32Tol);
}

TEST(MoeGroupedGemmCuda, F32) {
  RLVR_SKIP_WITHOUT_GPU();
  RunGroupedGemm(false, false);
  RunGroupedGemm(true, false);
}

TEST(MoeGroupedGemmCuda, Bf16) {
  RLVR_SKIP_WITHOUT_GPU();
  RunGroupedGemm(false, true);
  RunGroupedGemm(true, true);
}

void ExpectBad(const absl::Status& st, const std::string& needle) {
  if (!BuiltWithCuda()) {
    EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
    return;
  }
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find(needle), std::string::npos) << st << " lacks '" << needle << "'";
}

TEST(MoeCudaArgs, RejectsBadArguments) {
  float* f = reinterpret_cast<float*>(16);  // never dereferenced: validation fails first
  int32_t* i = reinterpret_cast<int32_t*>(16);
  ExpectBad(MoeRouterTopK(f, 4, 8, 9, false, 1.0, f, i, f), "K=9");
  ExpectBad(MoeRouterTopK(f, 4, 2000, 2, false, 1.0, f, i, f), "E=2000");
  ExpectBad(MoeRouterTopK(f, 4, 64, 33, false, 1.0, f, i, f), "K=33");
  ExpectBad(MoeRouterTopK(f, -1, 8, 2, false, 1.0, f, i, f), "N=-1");
  ExpectBad(MoeRouterTopK(nullptr, 4, 8, 2, false, 1.0, f, i, f), "null logits");
  ExpectBad(MoeRouterBackward(f, i, f, nullptr, 4, 8, 2, true, 1.0, nullptr), "null probs");
  ExpectBad(MoePermute(i, 4, 2, 8, nullptr, i, i), "null expert_offset");
  ExpectBad(MoeRoutingStats(f, i, 4, 8, 2, nullptr, nullptr), "null expert_count");
  ExpectBad(MoeGatherRowsF32(f, i, 4, 0, 16, f), "K=0");
  ExpectBad(MoeCombineF32(f, f, i, 4, 2, 0, f), "C=0");
  ExpectBad(MoeGroupedGemmF32(f, f, i, 0, 10, 4, 4, false, f), "E=0");
  ExpectBad(MoeGroupedGemmF32(f, f, i, 4, 10, 0, 4, false, f), "Nout=0");
  ExpectBad(MoeGroupedGemmF32(f, f, nullptr, 4, 10, 4, 4, false, f), "null x, w, expert_offset");
  ExpectBad(MoeApplyForcedExperts(f, i, 4, 8, 9, false, 1.0, i, f), "K=9");
  ExpectBad(MoeApplyForcedExperts(f, i, -2, 8, 2, false, 1.0, i, f), "N=-2");
  ExpectBad(MoeApplyForcedExperts(f, nullptr, 4, 8, 2, false, 1.0, i, f), "null probs, forced");
  if (BuiltWithCuda()) {
    EXPECT_TRUE(MoeApplyForcedExperts(nullptr, nullptr, 0, 8, 2, false, 1.0, nullptr, nullptr)
                    .ok());
  }
}

}  // namespace
}  // namespace rlvr::kernels::cuda
