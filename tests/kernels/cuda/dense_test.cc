// The dense CUDA kernels of kernels/cuda/dense.h (RMSNorm, RoPE, SwiGLU, log-softmax statistics
// and gradient, multi-tensor AdamW, embedding) against their CPU counterparts on the same inputs
// (bf16 paths: the CPU kernel in float on the bf16-rounded inputs), outputs poisoned before each
// run, ragged sizes; plus the host-side argument checks, which run without a GPU.
//
// Tolerances, relative to max |ref| of each output: 1e-5 for fp32 outputs (the kernels use the
// CPU's formulas in fp32; only summation order and FMA contraction differ, a few ulp), 1e-2 for
// bf16 outputs (one rounding, 2^-9 relative to the element, plus the fp32 differences).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/dense.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/softmax.h"
#include "policy/optim/adamw.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/dense_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using ::testing::HasSubstr;
using testing::DeviceBuffer;
using testing::ExpectBadArg;
using testing::ExpectClose;
using testing::FromBf16;
using testing::Randn;
using testing::RoundedBf16;
using testing::ToBf16;

constexpr double kF32Tol = 1e-5;
constexpr double kBf16Tol = 1e-2;

float* FakeF() { return reinterpret_cast<float*>(uintptr_t{256}); }
uint16_t* FakeB() { return reinterpret_cast<uint16_t*>(uintptr_t{256}); }

// ---------------------------------------------------------------------------------------------
// RMSNorm

TEST(CudaRmsNormTest, ForwardMatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const double eps = 1e-6;
  for (int64_t R : {1, 7, 300}) {
    for (int64_t C : {1, 33, 1000}) {
      const std::string what = absl::StrCat("R=", R, " C=", C);
      std::vector<float> x = Randn(R * C, 1 + R + C, 2.0f), w = Randn(C, 2 + C);
      std::vector<float> y_ref(R * C), rstd_ref(R);
      RmsNormForward<float>(x.data(), w.data(), R, C, eps, y_ref.data(), rstd_ref.data());
      {
        DeviceBuffer<float> dx(x), dw(w), dy(R * C), drstd(R);
        dy.Poison();
        drstd.Poison();
        ASSERT_TRUE(RmsNormForwardF32(dx.get(), dw.get(), R, C, eps, dy.get(), drstd.get()).ok());
        ExpectClose(dy.Download(), y_ref, kF32Tol, "f32 y " + what);
        ExpectClose(drstd.Download(), rstd_ref, kF32Tol, "f32 rstd " + what);
        // In place (y aliases x).
        ASSERT_TRUE(RmsNormForwardF32(dx.get(), dw.get(), R, C, eps, dx.get(), nullptr).ok());
        ExpectClose(dx.Download(), y_ref, kF32Tol, "f32 in place " + what);
      }
      std::vector<float> xr = RoundedBf16(x), wr = RoundedBf16(w);
      RmsNormForward<float>(xr.data(), wr.data(), R, C, eps, y_ref.data(), rstd_ref.data());
      DeviceBuffer<uint16_t> dx(ToBf16(x)), dw(ToBf16(w)), dy(R * C);
      DeviceBuffer<float> drstd(R);
      dy.Poison();
      drstd.Poison();
      ASSERT_TRUE(RmsNormForwardBf16(dx.get(), dw.get(), R, C, eps, dy.get(), drstd.get()).ok());
      ExpectClose(FromBf16(dy.Download()), y_ref, kBf16Tol, "bf16 y " + what);
      ExpectClose(drstd.Download(), rstd_ref, kF32Tol, "bf16 rstd " + what);
    }
  }
}

TEST(CudaRmsNormTest, FusedResidualMatchesAddThenNorm) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t R = 9, C = 777;
  const double eps = 1e-5;
  std::vector<float> x = Randn(R * C, 5), res = Randn(R * C, 6, 3.0f), w = Randn(C, 7);
  for (bool bf16 : {false, true}) {
    std::vector<float> xs = bf16 ? RoundedBf16(x) : x, rs = bf16 ? RoundedBf16(res) : res,
                       ws = bf16 ? RoundedBf16(w) : w;
    std::vector<float> h_ref(R * C), y_ref(R * C), rstd_ref(R);
    for (int64_t i = 0; i < R * C; ++i) h_ref[i] = xs[i] + rs[i];
    if (bf16) h_ref = RoundedBf16(h_ref);  // the kernel normalizes the stored (rounded) h
    RmsNormForward<float>(h_ref.data(), ws.data(), R, C, eps, y_ref.data(), rstd_ref.data());
    DeviceBuffer<float> drstd(R);
    drstd.Poison();
    if (!bf16) {
      DeviceBuffer<float> dx(x), dres(res), dw(w), dh(R * C), dy(R * C);
      dh.Poison();
      dy.Poison();
      ASSERT_TRUE(AddRmsNormForwardF32(dx.get(), dres.get(), dw.get(), R, C, eps, dh.get(),
                                       dy.get(), drstd.get())
                      .ok());
      ExpectClose(dh.Download(), h_ref, 1e-7, "f32 h");
      ExpectClose(dy.Download(), y_ref, kF32Tol, "f32 y");
      // h written over the residual stream (h aliases residual), y over x.
      ASSERT_TRUE(AddRmsNormForwardF32(dx.get(), dres.get(), dw.get(), R, C, eps, dres.get(),
                                       dx.get(), nullptr)
                      .ok());
      ExpectClose(dres.Download(), h_ref, 1e-7, "f32 h in place");
      ExpectClose(dx.Download(), y_ref, kF32Tol, "f32 y in place");
    } else {
      DeviceBuffer<uint16_t> dx(ToBf16(x)), dres(ToBf16(res)), dw(ToBf16(w)), dh(R * C),
          dy(R * C);
      dh.Poison();
      dy.Poison();
      ASSERT_TRUE(AddRmsNormForwardBf16(dx.get(), dres.get(), dw.get(), R, C, eps, dh.get(),
                                        dy.get(), drstd.get())
                      .ok());
      // h: the same float sum rounded the same way: exact.
      ExpectClose(FromBf16(dh.Download()), h_ref, 0.0, "bf16 h");
      ExpectClose(FromBf16(dy.Download()), y_ref, kBf16Tol, "bf16 y");
    }
    ExpectClose(drstd.Download(), rstd_ref, kF32Tol, bf16 ? "bf16 rstd" : "f32 rstd");
  }
}

// Backward with accumulation into non-zero dx and dw; R = 300 > 256 blocks, so blocks loop
// over rows and dw sums several partial rows. The CPU forward's rstd is given to both.
TEST(CudaRmsNormTest, BackwardMatchesCpuAndIsDeterministic) {
  RLVR_SKIP_WITHOUT_GPU();
  for (int64_t R : {1, 5, 300}) {
    for (int64_t C : {7, 1024}) {
      const std::string what = absl::StrCat("R=", R, " C=", C);
      std::vector<float> x = Randn(R * C, 11, 1.5f), w = Randn(C, 12), dy = Randn(R * C, 13),
                         dx0 = Randn(R * C, 14), dw0 = Randn(C, 15);
      for (bool bf16 : {false, true}) {
        std::vector<float> xs = bf16 ? RoundedBf16(x) : x, ws = bf16 ? RoundedBf16(w) : w,
                           dys = bf16 ? RoundedBf16(dy) : dy, dxs = bf16 ? RoundedBf16(dx0) : dx0;
        std::vector<float> y(R * C), rstd(R), dx_ref = dxs, dw_ref = dw0;
        RmsNormForward<float>(xs.data(), ws.data(), R, C, 1e-6, y.data(), rstd.data());
        RmsNormBackward<float>(dys.data(), xs.data(), ws.data(), rstd.data(), R, C,
                               dx_ref.data(), dw_ref.data());
        DeviceBuffer<float> drstd(rstd), ddw(dw0), ws_buf(RmsNormBackwardWorkspaceFloats(R, C));
        ws_buf.Poison();
        std::vector<float> got_dx, got_dw;
        if (!bf16) {
          DeviceBuffer<float> ddy(dy), dxx(x), dw(w), ddx(dx0);
          ASSERT_TRUE(RmsNormBackwardF32(ddy.get(), dxx.get(), dw.get(), drstd.get(), R, C,
                                         ddx.get(), ddw.get(), ws_buf.get())
                          .ok());
          got_dx = ddx.Download();
          got_dw = ddw.Download();
          // Same inputs again: dw must come out bit-identical (no float atomics).
          ddw.Upload(dw0);
          ddx.Upload(dx0);
          ASSERT_TRUE(RmsNormBackwardF32(ddy.get(), dxx.get(), dw.get(), drstd.get(), R, C,
                                         ddx.get(), ddw.get(), ws_buf.get())
                          .ok());
          std::vector<float> again = ddw.Download();
          EXPECT_EQ(0, std::memcmp(again.data(), got_dw.data(), C * sizeof(float))) << what;
          ExpectClose(got_dx, dx_ref, kF32Tol, "f32 dx " + what);
        } else {
          DeviceBuffer<uint16_t> ddy(ToBf16(dy)), dxx(ToBf16(x)), dw(ToBf16(w)), ddx(ToBf16(dx0));
          ASSERT_TRUE(RmsNormBackwardBf16(ddy.get(), dxx.get(), dw.get(), drstd.get(), R, C,
                                          ddx.get(), ddw.get(), ws_buf.get())
                          .ok());
          got_dw = ddw.Download();
          ExpectClose(FromBf16(ddx.Download()), dx_ref, kBf16Tol, "bf16 dx " + what);
        }
        ExpectClose(got_dw, dw_ref, kF32Tol, (bf16 ? "bf16 dw " : "f32 dw ") + what);
      }
      // dw == nullptr: only dx, no workspace needed.
      std::vector<float> y(R * C), rstd(R), dx_ref = dx0;
      RmsNormForward<float>(x.data(), w.data(), R, C, 1e-6, y.data(), rstd.data());
      RmsNormBackward<float>(dy.data(), x.data(), w.data(), rstd.data(), R, C, dx_ref.data(),
                             nullptr);
      DeviceBuffer<float> ddy(dy), dxx(x), dw(w), drstd(rstd), ddx(dx0);
      ASSERT_TRUE(RmsNormBackwardF32(ddy.get(), dxx.get(), dw.get(), drstd.get(), R, C, ddx.get(),
                                     nullptr, nullptr)
                      .ok());
      ExpectClose(ddx.Download(), dx_ref, kF32Tol, "f32 dx without dw " + what);
    }
  }
}

TEST(CudaRmsNormTest, BadArguments) {
  float* f = FakeF();
  ExpectBadArg(RmsNormForwardF32(f, f, -1, 4, 1e-6, f, f), "R = -1");
  ExpectBadArg(RmsNormForwardF32(f, f, 4, -3, 1e-6, f, f), "C = -3");
  ExpectBadArg(RmsNormForwardF32(f, nullptr, 4, 4, 1e-6, f, f), "w is null");
  ExpectBadArg(RmsNormForwardF32(f, f, 4, 4, -1.0, f, f), "eps");
  ExpectBadArg(RmsNormForwardBf16(FakeB(), FakeB(), 4, 4, 1e-6, nullptr, f), "y is null");
  ExpectBadArg(AddRmsNormForwardF32(f, nullptr, f, 4, 4, 1e-6, f, f, f), "residual is null");
  ExpectBadArg(AddRmsNormForwardBf16(FakeB(), FakeB(), FakeB(), 4, 4, 1e-6, nullptr, FakeB(), f),
               "h is null");
  ExpectBadArg(RmsNormBackwardF32(f, f, f, nullptr, 4, 4, f, f, f), "rstd is null");
  ExpectBadArg(RmsNormBackwardF32(f, f, f, f, 4, 4, f, f, nullptr), "workspace");
  ExpectBadArg(RmsNormBackwardBf16(FakeB(), FakeB(), FakeB(), f, 4, 60000, FakeB(), f, f),
               "C = 60000");
  EXPECT_EQ(RmsNormBackwardWorkspaceFloats(1000, 64), 256 * 64);
  EXPECT_EQ(RmsNormBackwardWorkspaceFloats(3, 64), 3 * 64);
}

// ---------------------------------------------------------------------------------------------
// RoPE

TEST(CudaRopeTest, TableMatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  std::vector<int32_t> pos(37);
  for (auto& p : pos) p = static_cast<int32_t>(rng() % 8192);
  pos[0] = 0;
  for (double theta : {10000.0, 1000000.0}) {
    for (int64_t D : {2, 64, 128}) {
      RopeTable<float> ref;
      BuildRopeTable<float>(pos.data(), 37, D, theta, &ref);
      DeviceBuffer<int32_t> dpos(pos);
      DeviceBuffer<float> dcos(37 * D / 2), dsin(37 * D / 2);
      dcos.Poison();
      dsin.Poison();
      ASSERT_TRUE(BuildRopeTableF32(dpos.get(), 37, D, theta, dcos.get(), dsin.get()).ok());
      // Same inv_freq and angle bits; cos/sin within 1 ulp of libm's (<= 6e-8 for |v| <= 1).
      const std::string what = absl::StrCat("theta=", theta, " D=", D);
      ExpectClose(dcos.Download(), ref.cos, 2e-7, "cos " + what);
      ExpectClose(dsin.Download(), ref.sin, 2e-7, "sin " + what);
    }
  }
}

// Forward and backward with the CPU's table uploaded, heads 1 and 4 (GQA's key and query head
// counts), head dims 2, 64, 128.
TEST(CudaRopeTest, ForwardBackwardMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t N = 29;
  std::vector<int32_t> pos(N);
  for (int64_t n = 0; n < N; ++n) pos[n] = static_cast<int32_t>(100 + 7 * n);
  for (int64_t heads : {1, 4}) {
    for (int64_t D : {2, 64, 128}) {
      const std::string what = absl::StrCat("heads=", heads, " D=", D);
      RopeTable<float> table;
      BuildRopeTable<float>(pos.data(), N, D, 10000.0, &table);
      DeviceBuffer<float> dcos(table.cos), dsin(table.sin);
      std::vector<float> x = Randn(N * heads * D, heads * 100 + D);
      for (bool backward : {false, true}) {
        std::vector<float> ref = x;
        (backward ? RopeBackward<float> : RopeForward<float>)(table, heads, D, ref.data());
        DeviceBuffer<float> dx(x);
        ASSERT_TRUE((backward ? RopeBackwardF32 : RopeForwardF32)(dcos.get(), dsin.get(), N,
                                                                  heads, D, dx.get(), nullptr)
                        .ok());
        ExpectClose(dx.Download(), ref, kF32Tol, (backward ? "f32 bwd " : "f32 fwd ") + what);
        std::vector<float> xr = RoundedBf16(x);
        ref = xr;
        (backward ? RopeBackward<float> : RopeForward<float>)(table, heads, D, ref.data());
        DeviceBuffer<uint16_t> db(ToBf16(x));
        ASSERT_TRUE((backward ? RopeBackwardBf16 : RopeForwardBf16)(dcos.get(), dsin.get(), N,
                                                                    heads, D, db.get(), nullptr)
                        .ok());
        ExpectClose(FromBf16(db.Download()), ref, kBf16Tol,
                    (backward ? "bf16 bwd " : "bf16 fwd ") + what);
      }
      // Backward undoes forward (the rotation is orthogonal).
      DeviceBuffer<float> dx(x);
      ASSERT_TRUE(RopeForwardF32(dcos.get(), dsin.get(), N, heads, D, dx.get()).ok());
      ASSERT_TRUE(RopeBackwardF32(dcos.get(), dsin.get(), N, heads, D, dx.get()).ok());
      ExpectClose(dx.Download(), x, 1e-6, "round trip " + what);
    }
  }
}

TEST(CudaRopeTest, BadArguments) {
  float* f = FakeF();
  const int32_t* p = reinterpret_cast<const int32_t*>(f);
  ExpectBadArg(RopeForwardF32(f, f, 4, 2, 7, f), "D = 7 is odd");
  ExpectBadArg(RopeBackwardBf16(f, f, 4, -2, 8, FakeB()), "heads = -2");
  ExpectBadArg(RopeForwardBf16(nullptr, f, 4, 2, 8, FakeB()), "cos is null");
  ExpectBadArg(BuildRopeTableF32(p, 4, 2050, 1e4, f, f), "exceeds");
  ExpectBadArg(BuildRopeTableF32(p, 4, 64, 0.0, f, f), "theta");
  ExpectBadArg(BuildRopeTableF32(nullptr, 4, 64, 1e4, f, f), "positions is null");
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

TEST(CudaSwigluTest, ForwardBackwardMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t n = 100003;
  std::vector<float> g = Randn(n, 41, 3.0f), u = Randn(n, 42), d = Randn(n, 43);
  for (bool bf16 : {false, true}) {
    std::vector<float> gs = bf16 ? RoundedBf16(g) : g, us = bf16 ? RoundedBf16(u) : u,
                       ds = bf16 ? RoundedBf16(d) : d;
    std::vector<float> out_ref(n), dg_ref(n), du_ref(n);
    SwigluForward<float>(gs.data(), us.data(), n, out_ref.data());
    SwigluBackward<float>(ds.data(), gs.data(), us.data(), n, dg_ref.data(), du_ref.data());
    const double tol = bf16 ? kBf16Tol : kF32Tol;
    const std::string tag = bf16 ? "bf16 " : "f32 ";
    if (!bf16) {
      DeviceBuffer<float> dg(g), du(u), dd(d), out(n), dgate(n), dup(n);
      out.Poison();
      dgate.Poison();
      dup.Poison();
      ASSERT_TRUE(SwigluForwardF32(dg.get(), du.get(), n, out.get(), Stream{nullptr}).ok());
      ASSERT_TRUE(SwigluBackwardF32(dd.get(), dg.get(), du.get(), n, dgate.get(), dup.get()).ok());
      ExpectClose(out.Download(), out_ref, tol, tag + "out");
      ExpectClose(dgate.Download(), dg_ref, tol, tag + "dgate");
      ExpectClose(dup.Download(), du_ref, tol, tag + "dup");
    } else {
      DeviceBuffer<uint16_t> dg(ToBf16(g)), du(ToBf16(u)), dd(ToBf16(d)), out(n), dgate(n),
          dup(n);
      out.Poison();
      dgate.Poison();
      dup.Poison();
      ASSERT_TRUE(SwigluForwardBf16(dg.get(), du.get(), n, out.get()).ok());
      ASSERT_TRUE(
          SwigluBackwardBf16(dd.get(), dg.get(), du.get(), n, dgate.get(), dup.get()).ok());
      ExpectClose(FromBf16(out.Download()), out_ref, tol, tag + "out");
      ExpectClose(FromBf16(dgate.Download()), dg_ref, tol, tag + "dgate");
      ExpectClose(FromBf16(dup.Download()), du_ref, tol, tag + "dup");
    }
  }
}

TEST(CudaSwigluTest, BadArguments) {
  float* f = FakeF();
  ExpectBadArg(SwigluForwardF32(f, f, -5, f, Stream{nullptr}), "n = -5");
  ExpectBadArg(SwigluForwardBf16(FakeB(), nullptr, 8, FakeB()), "up is null");
  ExpectBadArg(SwigluBackwardF32(f, f, f, 8, f, nullptr), "dup is null");
  ExpectBadArg(SwigluBackwardBf16(nullptr, FakeB(), FakeB(), 8, FakeB(), FakeB()),
               "dout is null");
}

// ---------------------------------------------------------------------------------------------
// Log-softmax statistics and gradient

struct SoftmaxCase {
  int64_t R, V, valid;
  double scale;
};

// Rows of N(0, 3) logits; the padding (j >= valid) holds 1e4, which would dominate every
// statistic if it were not masked.
std::vector<float> Logits(const SoftmaxCase& c, uint32_t seed) {
  std::vector<float> z = Randn(c.R * c.V, seed, 3.0f);
  for (int64_t r = 0; r < c.R; ++r)
    for (int64_t j = c.valid; j < c.V; ++j) z[r * c.V + j] = 1e4f;
  return z;
}

std::vector<int32_t> Targets(const SoftmaxCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(c.R);
  for (auto& x : t) x = static_cast<int32_t>(rng() % c.valid);
  return t;
}

const SoftmaxCase kSoftmaxCases[] = {
    {5, 2, 2, 1.0}, {3, 37, 30, 1.0 / 0.7}, {4, 1000, 1000, 1.0}, {2, 50000, 49993, 1.0 / 0.6}};

TEST(CudaSoftmaxTest, StatsMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const SoftmaxCase& c : kSoftmaxCases) {
    const std::string what = absl::StrCat("R=", c.R, " V=", c.V, " valid=", c.valid);
    std::vector<float> z = Logits(c, c.V);
    std::vector<int32_t> t = Targets(c, c.V + 1);
    DeviceBuffer<int32_t> dt(t);
    for (bool bf16 : {false, true}) {
      std::vector<float> zs = bf16 ? RoundedBf16(z) : z;
      std::vector<float> lse(c.R), lp(c.R), ent(c.R);
      LogSoftmaxStats<float>(zs.data(), t.data(), c.R, c.V, c.valid, c.scale, lse.data(),
                             lp.data(), ent.data());
      DeviceBuffer<float> dlse(c.R), dlp(c.R), dent(c.R);
      dlse.Poison();
      dlp.Poison();
      dent.Poison();
      absl::Status st;
      if (bf16) {
        DeviceBuffer<uint16_t> dz(ToBf16(z));
        st = LogSoftmaxStatsBf16(dz.get(), dt.get(), c.R, c.V, c.valid, c.scale, dlse.get(),
                                 dlp.get(), dent.get());
      } else {
        DeviceBuffer<float> dz(z);
        st = LogSoftmaxStatsF32(dz.get(), dt.get(), c.R, c.V, c.valid, c.scale, dlse.get(),
                                dlp.get(), dent.get());
      }
      ASSERT_TRUE(st.ok()) << st;
      const std::string tag = (bf16 ? "bf16 " : "f32 ") + what;
      ExpectClose(dlse.Download(), lse, kF32Tol, "lse " + tag);
      ExpectClose(dlp.Download(), lp, kF32Tol, "logprob " + tag);
      ExpectClose(dent.Download(), ent, kF32Tol, "entropy " + tag);
    }
  }
}

// A target in the padding gives a NaN logprob (it cannot be reported without a synchronize);
// lse alone (logprob, entropy null) is still right.
TEST(CudaSoftmaxTest, OutOfRangeTargetGivesNan) {
  RLVR_SKIP_WITHOUT_GPU();
  const SoftmaxCase c = {2, 37, 30, 1.0};
  std::vector<float> z = Logits(c, 9);
  std::vector<int32_t> t = {3, 30};
  DeviceBuffer<float> dz(z), dlse(2), dlp(2);
  DeviceBuffer<int32_t> dt(t);
  ASSERT_TRUE(
      LogSoftmaxStatsF32(dz.get(), dt.get(), 2, 37, 30, 1.0, dlse.get(), dlp.get(), nullptr).ok());
  std::vector<float> lp = dlp.Download();
  EXPECT_FALSE(std::isnan(lp[0]));
  EXPECT_TRUE(std::isnan(lp[1]));
  std::vector<float> lse(2);
  LogSoftmaxStats<float>(z.data(), nullptr, 2, 37, 30, 1.0, lse.data(), nullptr, nullptr);
  dlse.Poison();
  ASSERT_TRUE(
      LogSoftmaxStatsF32(dz.get(), nullptr, 2, 37, 30, 1.0, dlse.get(), nullptr, nullptr).ok());
  ExpectClose(dlse.Download(), lse, kF32Tol, "lse only");
}

// The gradient against the CPU's, given the CPU's lse and entropy; with and without the entropy
// term and the target. The padding must come out exactly 0 (it held 1e4).
TEST(CudaSoftmaxTest, GradMatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  for (const SoftmaxCase& c : kSoftmaxCases) {
    std::vector<float> z = Logits(c, c.V + 5);
    std::vector<int32_t> t = Targets(c, c.V + 6);
    std::vector<float> dlp = Randn(c.R, 7), dh = Randn(c.R, 8);
    for (bool bf16 : {false, true}) {
      for (int variant = 0; variant < 2; ++variant) {
        const bool with_entropy = variant == 0;
        const std::string what =
            absl::StrCat(bf16 ? "bf16" : "f32", " V=", c.V, " valid=", c.valid,
                         with_entropy ? " with dentropy" : " dlogprob only, no target");
        const int32_t* tp = with_entropy ? t.data() : nullptr;
        std::vector<float> zs = bf16 ? RoundedBf16(z) : z;
        std::vector<float> lse(c.R), ent(c.R);
        LogSoftmaxStats<float>(zs.data(), nullptr, c.R, c.V, c.valid, c.scale, lse.data(),
                               nullptr, ent.data());
        std::vector<float> ref = zs;
        LogSoftmaxGradInPlace<float>(tp, lse.data(), ent.data(), dlp.data(),
                                     with_entropy ? dh.data() : nullptr, c.R, c.V, c.valid,
                                     c.scale, ref.data());
        DeviceBuffer<int32_t> dt(t);
        DeviceBuffer<float> dlse(lse), dent(ent), ddlp(dlp), ddh(dh);
        std::vector<float> got;
        const int32_t* dtp = with_entropy ? dt.get() : nullptr;
        const float* ddhp = with_entropy ? ddh.get() : nullptr;
        const float* dentp = with_entropy ? dent.get() : nullptr;
        if (bf16) {
          DeviceBuffer<uint16_t> dz(ToBf16(z));
          ASSERT_TRUE(LogSoftmaxGradInPlaceBf16(dtp, dlse.get(), dentp, ddlp.get(), ddhp, c.R,
                                                c.V, c.valid, c.scale, dz.get())
                          .ok());
          got = FromBf16(dz.Download());
        } else {
          DeviceBuffer<float> dz(z);
          ASSERT_TRUE(LogSoftmaxGradInPlaceF32(dtp, dlse.get(), dentp, ddlp.get(), ddhp, c.R,
                                               c.V, c.valid, c.scale, dz.get())
                          .ok());
          got = dz.Download();
        }
        ExpectClose(got, ref, bf16 ? kBf16Tol : kF32Tol, what);
        for (int64_t r = 0; r < c.R; ++r)
          for (int64_t j = c.valid; j < c.V; ++j)
            ASSERT_EQ(got[r * c.V + j], 0.0f) << what << " padding r=" << r << " j=" << j;
      }
    }
  }
}

TEST(CudaSoftmaxTest, BadArguments) {
  float* f = FakeF();
  const int32_t* t = reinterpret_cast<const int32_t*>(f);
  ExpectBadArg(LogSoftmaxStatsF32(f, t, -1, 8, 8, 1.0, f, f, f), "R = -1");
  ExpectBadArg(LogSoftmaxStatsF32(f, t, 2, 8, 0, 1.0, f, f, f), "valid = 0");
  ExpectBadArg(LogSoftmaxStatsBf16(FakeB(), t, 2, 8, 9, 1.0, f, f, f), "valid = 9");
  ExpectBadArg(LogSoftmaxStatsF32(f, nullptr, 2, 8, 8, 1.0, f, f, f), "target");
  ExpectBadArg(LogSoftmaxStatsF32(f, t, 2, 8, 8, 1.0, nullptr, f, f), "lse is null");
  ExpectBadArg(LogSoftmaxStatsF32(f, t, 2, 8, 8, NAN, f, f, f), "scale");
  ExpectBadArg(LogSoftmaxGradInPlaceF32(t, f, nullptr, f, f, 2, 8, 8, 1.0, f), "entropy");
  ExpectBadArg(LogSoftmaxGradInPlaceBf16(t, nullptr, f, f, f, 2, 8, 8, 1.0, FakeB()),
               "lse is null");
}

// ---------------------------------------------------------------------------------------------
// AdamW

struct AdamWCase {
  std::vector<int64_t> numel;
  std::vector<bool> decay;
  std::vector<bool> bf16_copy;
};

// Three steps on three tensors (one of a single element, one just past a 16384-element chunk,
// one without weight decay), against policy::AdamW (itself checked against torch) with the same
// fresh gradients each step; a warmup schedule so that lr changes between steps.
void RunAdamWAgainstCpu(double max_grad_norm, float grad_scale) {
  const AdamWCase tc = {{1, 16385, 40000}, {true, true, false}, {true, false, true}};
  policy::AdamWConfig cfg;
  cfg.lr = 1e-2;
  cfg.beta1 = 0.9;
  cfg.beta2 = 0.95;
  cfg.eps = 1e-8;
  cfg.weight_decay = 0.1;
  cfg.max_grad_norm = max_grad_norm;
  cfg.warmup_steps = 2;
  const size_t k = tc.numel.size();
  std::vector<std::vector<float>> p(k), g(k);
  std::vector<policy::OptimParam> params;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dp, dg, dm, dv;
  std::vector<std::unique_ptr<DeviceBuffer<uint16_t>>> dcopy;
  std::vector<AdamWTensor> tensors;
  for (size_t i = 0; i < k; ++i) {
    p[i] = Randn(tc.numel[i], 100 + i);
    g[i].assign(tc.numel[i], 0.0f);
    params.push_back({.name = absl::StrCat("t", i),
                      .data = p[i].data(),
                      .grad = g[i].data(),
                      .numel = tc.numel[i],
                      .decay = tc.decay[i]});
    dp.push_back(std::make_unique<DeviceBuffer<float>>(p[i]));
    dg.push_back(std::make_unique<DeviceBuffer<float>>(tc.numel[i]));
    dm.push_back(std::make_unique<DeviceBuffer<float>>(std::vector<float>(tc.numel[i], 0.0f)));
    dv.push_back(std::make_unique<DeviceBuffer<float>>(std::vector<float>(tc.numel[i], 0.0f)));
    dcopy.push_back(std::make_unique<DeviceBuffer<uint16_t>>(tc.numel[i]));
    dcopy.back()->Poison();
    AdamWTensor t;
    t.param = dp[i]->get();
    t.grad = dg[i]->get();
    t.exp_avg = dm[i]->get();
    t.exp_avg_sq = dv[i]->get();
    t.param_bf16 = tc.bf16_copy[i] ? dcopy[i]->get() : nullptr;
    t.numel = tc.numel[i];
    t.decay = tc.decay[i];
    tensors.push_back(t);
  }
  auto cpu = policy::AdamW::Create(cfg, params);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto gpu = AdamWMultiTensor::Create(tensors);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_EQ((*gpu)->num_tensors(), 3);
  EXPECT_EQ((*gpu)->num_chunks(), 1 + 2 + 3);
  EXPECT_EQ((*gpu)->LastStepResult().status().code(), absl::StatusCode::kFailedPrecondition);
  for (int step = 1; step <= 3; ++step) {
    for (size_t i = 0; i < k; ++i) {
      // Into the existing storage: the CPU optimizer holds g[i].data().
      const std::vector<float> fresh = Randn(tc.numel[i], 1000 * step + i, grad_scale);
      std::copy(fresh.begin(), fresh.end(), g[i].begin());
      dg[i]->Upload(g[i]);
    }
    auto norm = (*gpu)->GradNorm();
    ASSERT_TRUE(norm.ok()) << norm.status();
    EXPECT_NEAR(*norm, cpu->GradNorm(), 1e-9 * cpu->GradNorm());
    policy::StepStats st = cpu->Step();
    AdamWStepConfig sc;
    sc.lr = st.lr;
    sc.step = step;
    sc.beta1 = cfg.beta1;
    sc.beta2 = cfg.beta2;
    sc.eps = cfg.eps;
    sc.weight_decay = cfg.weight_decay;
    sc.max_grad_norm = cfg.max_grad_norm;
    ASSERT_TRUE((*gpu)->Step(sc).ok());
    auto res = (*gpu)->LastStepResult();
    ASSERT_TRUE(res.ok()) << res.status();
    EXPECT_NEAR(res->grad_norm, st.grad_norm, 1e-9 * st.grad_norm) << "step " << step;
    EXPECT_EQ(res->clipped, st.clipped) << "step " << step;
    EXPECT_FALSE(res->skipped);
    for (size_t i = 0; i < k; ++i) {
      const std::string what = absl::StrCat("step ", step, " tensor ", i);
      // fp32, same formula; a few ulp of the parameter.
      ExpectClose(dp[i]->Download(), p[i], 1e-6, what);
      if (tc.bf16_copy[i]) {
        std::vector<uint16_t> copy = dcopy[i]->Download(), want = ToBf16(dp[i]->Download());
        EXPECT_EQ(copy, want) << what << ": bf16 copy is not bf16(param)";
      }
    }
  }
  // The gradients are read only.
  for (size_t i = 0; i < k; ++i) EXPECT_EQ(dg[i]->Download(), g[i]);
}

TEST(CudaAdamWTest, ClippedStepsMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  RunAdamWAgainstCpu(1.0, 1.0f);  // norm ~ 240: clipped
}

TEST(CudaAdamWTest, UnclippedStepsMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  RunAdamWAgainstCpu(1.0, 1e-3f);  // norm ~ 0.24: not clipped
  RunAdamWAgainstCpu(0.0, 1.0f);   // clipping off
}

// A non-finite gradient skips the step: params, moments and the bf16 copy keep their bits.
TEST(CudaAdamWTest, NonFiniteGradientSkips) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t n = 20000;
  std::vector<float> p = Randn(n, 1), g = Randn(n, 2), m = Randn(n, 3), v(n, 0.5f);
  g[17000] = INFINITY;
  DeviceBuffer<float> dp(p), dg(g), dm(m), dv(v);
  DeviceBuffer<uint16_t> dcopy(n);
  dcopy.Poison();
  AdamWTensor t;
  t.param = dp.get();
  t.grad = dg.get();
  t.exp_avg = dm.get();
  t.exp_avg_sq = dv.get();
  t.param_bf16 = dcopy.get();
  t.numel = n;
  auto opt = AdamWMultiTensor::Create({t});
  ASSERT_TRUE(opt.ok()) << opt.status();
  AdamWStepConfig sc;
  sc.lr = 1e-3;
  ASSERT_TRUE((*opt)->Step(sc).ok());
  auto res = (*opt)->LastStepResult();
  ASSERT_TRUE(res.ok());
  EXPECT_TRUE(res->skipped);
  EXPECT_TRUE(std::isinf(res->grad_norm));
  EXPECT_EQ(dp.Download(), p);
  EXPECT_EQ(dm.Download(), m);
  EXPECT_EQ(dv.Download(), v);
  for (uint16_t b : dcopy.Download()) ASSERT_EQ(b, 0xFFFFu);
  // Step arguments are checked.
  sc.step = 0;
  ExpectBadArg((*opt)->Step(sc), "step = 0");
  sc.step = 1;
  sc.beta2 = 1.0;
  ExpectBadArg((*opt)->Step(sc), "beta2");
}

TEST(CudaAdamWTest, CreateBadArguments) {
  AdamWTensor ok;
  ok.param = FakeF();
  ok.grad = FakeF();
  ok.exp_avg = FakeF();
  ok.exp_avg_sq = FakeF();
  ok.numel = 4;
  AdamWTensor no_grad = ok;
  no_grad.grad = nullptr;
  AdamWTensor empty = ok;
  empty.numel = 0;
  ExpectBadArg(AdamWMultiTensor::Create({ok, no_grad}).status(), "tensor 1");
  ExpectBadArg(AdamWMultiTensor::Create({empty}).status(), "tensor 0");
}

// ---------------------------------------------------------------------------------------------
// Embedding

TEST(CudaEmbeddingTest, ForwardBackwardMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t V = 50, N = 300;
  std::mt19937 rng(77);
  std::vector<int32_t> ids(N);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % V);  // many repeats
  ids[0] = 0;
  ids[1] = V - 1;
  DeviceBuffer<int32_t> dids(ids);
  for (int64_t C : {1, 33, 1000}) {
    const std::string what = absl::StrCat("C=", C);
    std::vector<float> table = Randn(V * C, C), dout = Randn(N * C, C + 1),
                       dtable0 = Randn(V * C, C + 2);
    // Forward: a copy, so exact.
    std::vector<float> out_ref(N * C);
    ASSERT_TRUE(
        EmbeddingForward<float>(ids.data(), table.data(), N, V, C, out_ref.data()).ok());
    DeviceBuffer<float> dt(table), dout_buf(N * C);
    dout_buf.Poison();
    ASSERT_TRUE(EmbeddingForwardF32(dids.get(), dt.get(), N, V, C, dout_buf.get()).ok());
    EXPECT_EQ(dout_buf.Download(), out_ref) << what;
    DeviceBuffer<uint16_t> dtb(ToBf16(table)), doutb(N * C);
    doutb.Poison();
    ASSERT_TRUE(EmbeddingForwardBf16(dids.get(), dtb.get(), N, V, C, doutb.get()).ok());
    std::vector<float> tr = RoundedBf16(table);
    ASSERT_TRUE(EmbeddingForward<float>(ids.data(), tr.data(), N, V, C, out_ref.data()).ok());
    EXPECT_EQ(FromBf16(doutb.Download()), out_ref) << what;
    // Backward (accumulates; repeated ids summed by atomics in some order: fp32 tolerance).
    for (bool bf16 : {false, true}) {
      std::vector<float> ds = bf16 ? RoundedBf16(dout) : dout, ref = dtable0;
      EmbeddingBackward<float>(ids.data(), ds.data(), N, C, ref.data());
      DeviceBuffer<float> dtab(dtable0);
      if (bf16) {
        DeviceBuffer<uint16_t> dd(ToBf16(dout));
        ASSERT_TRUE(EmbeddingBackwardBf16(dids.get(), dd.get(), N, V, C, dtab.get()).ok());
      } else {
        DeviceBuffer<float> dd(dout);
        ASSERT_TRUE(EmbeddingBackwardF32(dids.get(), dd.get(), N, V, C, dtab.get()).ok());
      }
      ExpectClose(dtab.Download(), ref, kF32Tol, (bf16 ? "bf16 dtable " : "f32 dtable ") + what);
    }
  }
}

TEST(CudaEmbeddingTest, OutOfRangeIds) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t V = 10, C = 4;
  std::vector<int32_t> ids = {1, 2, 3, 4, 5, 10, 6, 7, -1, 9};
  DeviceBuffer<int32_t> dids(ids);
  absl::Status st = ValidateTokenIds(dids.get(), 10, V);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("token id 10 at position 5"));
  EXPECT_TRUE(ValidateTokenIds(dids.get(), 5, V).ok());
  // Forward: the bad rows are NaN, the others are copies.
  std::vector<float> table = Randn(V * C, 1);
  DeviceBuffer<float> dt(table), out(10 * C);
  ASSERT_TRUE(EmbeddingForwardF32(dids.get(), dt.get(), 10, V, C, out.get()).ok());
  std::vector<float> got = out.Download();
  for (int64_t n = 0; n < 10; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      if (ids[n] < 0 || ids[n] >= V) {
        EXPECT_TRUE(std::isnan(got[n * C + c])) << n;
      } else {
        EXPECT_EQ(got[n * C + c], table[ids[n] * C + c]) << n;
      }
    }
  }
  // Backward skips them (nothing written outside the table: the guard rows keep their values).
  std::vector<float> big(12 * C, 0.0f);
  DeviceBuffer<float> dtab(big), dd(std::vector<float>(10 * C, 1.0f));
  ASSERT_TRUE(EmbeddingBackwardF32(dids.get(), dd.get(), 10, V, C, dtab.get() + C).ok());
  std::vector<float> back = dtab.Download();
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(back[c], 0.0f);                 // row "-1"
    EXPECT_EQ(back[(V + 1) * C + c], 0.0f);   // row "V"
    EXPECT_EQ(back[(1 + 1) * C + c], 1.0f);   // id 1 once
  }
}

TEST(CudaEmbeddingTest, BadArguments) {
  float* f = FakeF();
  const int32_t* ids = reinterpret_cast<const int32_t*>(f);
  ExpectBadArg(EmbeddingForwardF32(ids, f, -1, 8, 4, f), "N = -1");
  ExpectBadArg(EmbeddingForwardBf16(nullptr, FakeB(), 2, 8, 4, FakeB()), "ids is null");
  ExpectBadArg(EmbeddingBackwardF32(ids, f, 2, 8, -4, f), "C = -4");
  ExpectBadArg(EmbeddingBackwardBf16(ids, FakeB(), 2, 8, 4, nullptr), "dtable is null");
  ExpectBadArg(ValidateTokenIds(nullptr, 3, 8), "ids is null");
  ExpectBadArg(ValidateTokenIds(ids, 3, -8), "V = -8");
}

}  // namespace
}  // namespace rlvr::kernels::cuda
