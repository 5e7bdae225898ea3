// The tensor-core flash attention (AttentionForwardBf16Tc / AttentionBackwardBf16Tc) against the
// FMA kernels (AttentionForwardBf16 / AttentionBackwardBf16 with RLVR_ATTENTION_FMA=1) and the
// CPU kernels (kernels/attention.h, run in float on the bf16-rounded inputs): D 64 and 128, GQA
// ratios 1 and 4, T in {1, 17, 64, 100, 257} (not only multiples of the 64-row tile), packed
// segments; outputs poisoned; dq, dk, dv accumulate; the dispatch of the bf16 entry points;
// argument checks (without a GPU too).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/matmul.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/dense_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;
using testing::ExpectClose;
using testing::FromBf16;
using testing::Randn;
using testing::RoundBf16;

// bf16 outputs and gradients: one rounding of the result to 8 significant bits (2^-9 = 0.002
// relative per element) plus the tensor-core kernels' rounding of P and dS to bf16 before the
// products (each term off by at most 2^-9 relative, errors averaging over the keys); 1e-2 of the
// largest element, as attention_test.cc. A wrongly masked key moves outputs by ~1e-1.
constexpr double kBf16Tol = 1e-2;
// lse is fp32 from fp32 scores of the same rounded inputs; only summation orders differ
// (~1e-6). A single wrongly masked-in key out of 257 moves lse by ~4e-3 of ~5.
constexpr double kLseTol = 1e-4;

// Sets RLVR_ATTENTION_FMA for the scope (nullopt: unset), restoring the previous value.
class ScopedFmaEnv {
 public:
  explicit ScopedFmaEnv(std::optional<std::string> value) {
    if (const char* old = std::getenv("RLVR_ATTENTION_FMA")) old_ = std::string(old);
    Set(value);
  }
  ~ScopedFmaEnv() { Set(old_); }
  ScopedFmaEnv(const ScopedFmaEnv&) = delete;
  ScopedFmaEnv& operator=(const ScopedFmaEnv&) = delete;

 private:
  static void Set(const std::optional<std::string>& v) {
    if (v) {
      setenv("RLVR_ATTENTION_FMA", v->c_str(), 1);
    } else {
      unsetenv("RLVR_ATTENTION_FMA");
    }
  }
  std::optional<std::string> old_;
};

// seg_start [B, T] of random packed segments (lengths 1..T/2+1, so some cross tile borders).
std::vector<int32_t> RandomSegments(int64_t B, int64_t Tn, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> seg(B * Tn);
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = 0;
    while (start < Tn) {
      const int64_t len = 1 + static_cast<int64_t>(rng() % (Tn / 2 + 1));
      for (int64_t t = start; t < std::min(Tn, start + len); ++t) seg[b * Tn + t] = start;
      start += len;
    }
  }
  return seg;
}

struct TcCase {
  int64_t B, Tn, H, Hkv, D;
  bool packed;
  std::string Name() const {
    return "B" + std::to_string(B) + "_T" + std::to_string(Tn) + "_H" + std::to_string(H) +
           "_Hkv" + std::to_string(Hkv) + "_D" + std::to_string(D) + (packed ? "_packed" : "");
  }
};

const TcCase kCases[] = {
    {2, 1, 4, 4, 64, false},   {2, 1, 4, 1, 128, true},   {2, 17, 4, 1, 128, false},
    {3, 17, 4, 4, 64, true},   {1, 64, 4, 4, 128, true},  {2, 64, 8, 2, 64, false},
    {2, 100, 4, 1, 64, true},  {1, 100, 4, 4, 128, false}, {2, 257, 4, 4, 64, true},
    {1, 257, 8, 2, 128, true}, {1, 257, 4, 1, 128, false}, {1, 257, 4, 1, 64, false},
};

// Inputs (bf16-rounded in the float copies), the CPU reference and device copies of one case.
struct Problem {
  explicit Problem(const TcCase& c)
      : c(c),
        nq(c.B * c.Tn * c.H * c.D),
        nk(c.B * c.Tn * c.Hkv * c.D),
        nl(c.B * c.H * c.Tn),
        scale(1.0 / std::sqrt(static_cast<double>(c.D))) {
    q = Randn(nq, 1), k = Randn(nk, 2), v = Randn(nk, 3), dout = Randn(nq, 4);
    dq0 = Randn(nq, 5, 0.1f), dk0 = Randn(nk, 6, 0.1f), dv0 = Randn(nk, 7, 0.1f);
    qb = RoundBf16(&q), kb = RoundBf16(&k), vb = RoundBf16(&v), dob = RoundBf16(&dout);
    dq0b = RoundBf16(&dq0), dk0b = RoundBf16(&dk0), dv0b = RoundBf16(&dv0);
    if (c.packed) seg = RandomSegments(c.B, c.Tn, 11);
    out_ref.resize(nq);
    lse_ref.resize(nl);
    AttentionForward<float>(q.data(), k.data(), v.data(), c.B, c.Tn, c.H, c.Hkv, c.D, scale,
                            out_ref.data(), lse_ref.data(), seg_host());
    out_refb = RoundBf16(&out_ref);  // the backward's `out` input, as stored in bf16
    dq_ref = dq0, dk_ref = dk0, dv_ref = dv0;
    AttentionBackward<float>(dout.data(), q.data(), k.data(), v.data(), out_ref.data(),
                             lse_ref.data(), c.B, c.Tn, c.H, c.Hkv, c.D, scale, dq_ref.data(),
                             dk_ref.data(), dv_ref.data(), seg_host());
  }
  const int32_t* seg_host() const { return c.packed ? seg.data() : nullptr; }

  TcCase c;
  int64_t nq, nk, nl;
  double scale;
  std::vector<float> q, k, v, dout, dq0, dk0, dv0, out_ref, lse_ref, dq_ref, dk_ref, dv_ref;
  std::vector<uint16_t> qb, kb, vb, dob, dq0b, dk0b, dv0b, out_refb;
  std::vector<int32_t> seg;
};

// Device buffers of a Problem; forward and backward outputs downloaded as float.
struct DeviceProblem {
  explicit DeviceProblem(const Problem& p)
      : p(p),
        q(p.qb), k(p.kb), v(p.vb), dout(p.dob), out_in(p.out_refb),
        seg(p.c.packed ? p.seg : std::vector<int32_t>(1, 0)),
        lse_in(p.lse_ref),
        ws(AttentionBackwardWorkspaceBytes(p.c.B, p.c.Tn, p.c.H)) {}
  const int32_t* seg_dev() const { return p.c.packed ? seg.get() : nullptr; }

  // Forward through `tc` (AttentionForwardBf16Tc) or the dispatching AttentionForwardBf16, into
  // poisoned outputs.
  void Forward(bool tc, std::vector<uint16_t>* out_bits, std::vector<float>* lse) {
    const TcCase& c = p.c;
    DeviceBuffer<uint16_t> d_out(p.nq);
    DeviceBuffer<float> d_lse(p.nl);
    d_out.Poison();
    d_lse.Poison();
    const absl::Status st =
        tc ? AttentionForwardBf16Tc(q.get(), k.get(), v.get(), c.B, c.Tn, c.H, c.Hkv, c.D,
                                    p.scale, d_out.get(), d_lse.get(), seg_dev())
           : AttentionForwardBf16(q.get(), k.get(), v.get(), c.B, c.Tn, c.H, c.Hkv, c.D, p.scale,
                                  d_out.get(), d_lse.get(), seg_dev());
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_TRUE(Synchronize().ok());
    *out_bits = d_out.Download();
    *lse = d_lse.Download();
  }

  // Backward from the CPU's out and lse onto dq0, dk0, dv0, run `times` times on the same
  // buffers (the gradients accumulate).
  void Backward(bool tc, int times, std::vector<uint16_t>* dq, std::vector<uint16_t>* dk,
                std::vector<uint16_t>* dv) {
    const TcCase& c = p.c;
    DeviceBuffer<uint16_t> d_dq(p.dq0b), d_dk(p.dk0b), d_dv(p.dv0b);
    for (int i = 0; i < times; ++i) {
      const absl::Status st =
          tc ? AttentionBackwardBf16Tc(dout.get(), q.get(), k.get(), v.get(), out_in.get(),
                                       lse_in.get(), c.B, c.Tn, c.H, c.Hkv, c.D, p.scale,
                                       d_dq.get(), d_dk.get(), d_dv.get(), ws.get(), ws.size(),
                                       seg_dev())
             : AttentionBackwardBf16(dout.get(), q.get(), k.get(), v.get(), out_in.get(),
                                     lse_in.get(), c.B, c.Tn, c.H, c.Hkv, c.D, p.scale,
                                     d_dq.get(), d_dk.get(), d_dv.get(), ws.get(), ws.size(),
                                     seg_dev());
      ASSERT_TRUE(st.ok()) << st;
    }
    ASSERT_TRUE(Synchronize().ok());
    *dq = d_dq.Download(), *dk = d_dk.Download(), *dv = d_dv.Download();
  }

  const Problem& p;
  DeviceBuffer<uint16_t> q, k, v, dout, out_in;
  DeviceBuffer<int32_t> seg;
  DeviceBuffer<float> lse_in;
  DeviceBuffer<unsigned char> ws;
};

class AttentionTc : public ::testing::TestWithParam<TcCase> {
 protected:
  void SetUp() override { SetMatmulPrecision(MatmulPrecision::kHighest); }
};

TEST_P(AttentionTc, ForwardMatchesFmaAndCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const Problem p(GetParam());
  DeviceProblem d(p);
  std::vector<uint16_t> out_tc, out_fma;
  std::vector<float> lse_tc, lse_fma;
  d.Forward(/*tc=*/true, &out_tc, &lse_tc);
  {
    ScopedFmaEnv fma("1");
    d.Forward(/*tc=*/false, &out_fma, &lse_fma);
  }
  ExpectClose(FromBf16(out_tc), p.out_ref, kBf16Tol, "tc out vs cpu");
  ExpectClose(lse_tc, p.lse_ref, kLseTol, "tc lse vs cpu");
  ExpectClose(FromBf16(out_fma), p.out_ref, kBf16Tol, "fma out vs cpu");
  ExpectClose(lse_fma, p.lse_ref, kLseTol, "fma lse vs cpu");
  ExpectClose(FromBf16(out_tc), FromBf16(out_fma), kBf16Tol, "tc out vs fma");
  // Deterministic: a second run gives the same bits.
  std::vector<uint16_t> out_again;
  std::vector<float> lse_again;
  d.Forward(/*tc=*/true, &out_again, &lse_again);
  EXPECT_EQ(out_again, out_tc);
  EXPECT_EQ(lse_again, lse_tc);
}

TEST_P(AttentionTc, BackwardMatchesFmaAndCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const Problem p(GetParam());
  DeviceProblem d(p);
  std::vector<uint16_t> dq, dk, dv, dq_fma, dk_fma, dv_fma;
  d.Backward(/*tc=*/true, 1, &dq, &dk, &dv);
  {
    ScopedFmaEnv fma("1");
    d.Backward(/*tc=*/false, 1, &dq_fma, &dk_fma, &dv_fma);
  }
  ExpectClose(FromBf16(dq), p.dq_ref, kBf16Tol, "tc dq vs cpu");
  ExpectClose(FromBf16(dk), p.dk_ref, kBf16Tol, "tc dk vs cpu");
  ExpectClose(FromBf16(dv), p.dv_ref, kBf16Tol, "tc dv vs cpu");
  ExpectClose(FromBf16(dq_fma), p.dq_ref, kBf16Tol, "fma dq vs cpu");
  ExpectClose(FromBf16(dk_fma), p.dk_ref, kBf16Tol, "fma dk vs cpu");
  ExpectClose(FromBf16(dv_fma), p.dv_ref, kBf16Tol, "fma dv vs cpu");
  ExpectClose(FromBf16(dq), FromBf16(dq_fma), kBf16Tol, "tc dq vs fma");
  ExpectClose(FromBf16(dk), FromBf16(dk_fma), kBf16Tol, "tc dk vs fma");
  ExpectClose(FromBf16(dv), FromBf16(dv_fma), kBf16Tol, "tc dv vs fma");
  // The gradient is far from the initial value, so a kernel that kept dv0 fails (dq and dk are
  // exactly 0 for T = 1, so dv).
  EXPECT_GT(testing::RelativeMaxError(p.dv0, p.dv_ref), 10 * kBf16Tol);
  // Deterministic: the same bits again.
  std::vector<uint16_t> dq2, dk2, dv2;
  d.Backward(/*tc=*/true, 1, &dq2, &dk2, &dv2);
  EXPECT_EQ(dq2, dq);
  EXPECT_EQ(dk2, dk);
  EXPECT_EQ(dv2, dv);
}

// Two backward calls on the same buffers add the gradient twice: x0 + 2 (ref - x0).
TEST_P(AttentionTc, BackwardAccumulates) {
  RLVR_SKIP_WITHOUT_GPU();
  const Problem p(GetParam());
  DeviceProblem d(p);
  std::vector<uint16_t> dq, dk, dv;
  d.Backward(/*tc=*/true, 2, &dq, &dk, &dv);
  auto twice = [](const std::vector<float>& x0, const std::vector<float>& ref) {
    std::vector<float> r(x0.size());
    for (size_t i = 0; i < r.size(); ++i) r[i] = x0[i] + 2 * (ref[i] - x0[i]);
    return r;
  };
  // Two roundings of the running sum instead of one: still within 1e-2 of the largest element.
  ExpectClose(FromBf16(dq), twice(p.dq0, p.dq_ref), kBf16Tol, "dq after two calls");
  ExpectClose(FromBf16(dk), twice(p.dk0, p.dk_ref), kBf16Tol, "dk after two calls");
  ExpectClose(FromBf16(dv), twice(p.dv0, p.dv_ref), kBf16Tol, "dv after two calls");
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTc, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.Name(); });

// AttentionForwardBf16 runs the tensor-core kernel for D = 64 / 128 on sm_80+ (bit-identical
// to AttentionForwardBf16Tc) and the FMA kernel with RLVR_ATTENTION_FMA=1 (close to the CPU,
// but rounded differently, so not bit-identical).
TEST(AttentionTcDispatch, EnvironmentSelectsKernel) {
  RLVR_SKIP_WITHOUT_GPU();
  SetMatmulPrecision(MatmulPrecision::kHighest);
  {
    ScopedFmaEnv unset(std::nullopt);
    if (!AttentionBf16UsesTensorCores(64)) GTEST_SKIP() << "device older than sm_80";
    EXPECT_TRUE(AttentionBf16UsesTensorCores(128));
    EXPECT_FALSE(AttentionBf16UsesTensorCores(32));
    EXPECT_FALSE(AttentionBf16UsesTensorCores(16));
  }
  {
    ScopedFmaEnv fma("1");
    EXPECT_FALSE(AttentionBf16UsesTensorCores(64));
    EXPECT_FALSE(AttentionBf16UsesTensorCores(128));
  }
  {
    ScopedFmaEnv other("0");
    EXPECT_TRUE(AttentionBf16UsesTensorCores(64));
  }
  const Problem p(TcCase{2, 257, 4, 1, 64, true});
  DeviceProblem d(p);
  std::vector<uint16_t> out_tc, out_default, out_fma;
  std::vector<float> lse_tc, lse_default, lse_fma;
  d.Forward(/*tc=*/true, &out_tc, &lse_tc);
  {
    ScopedFmaEnv unset(std::nullopt);
    d.Forward(/*tc=*/false, &out_default, &lse_default);
  }
  {
    ScopedFmaEnv fma("1");
    d.Forward(/*tc=*/false, &out_fma, &lse_fma);
  }
  EXPECT_EQ(out_default, out_tc) << "AttentionForwardBf16 did not run the tensor-core kernel";
  EXPECT_NE(out_fma, out_tc) << "RLVR_ATTENTION_FMA=1 still ran the tensor-core kernel";
  ExpectClose(FromBf16(out_fma), p.out_ref, kBf16Tol, "fma out vs cpu");
  // The backward dispatches the same way.
  std::vector<uint16_t> dq_tc, dk_tc, dv_tc, dq_def, dk_def, dv_def;
  d.Backward(/*tc=*/true, 1, &dq_tc, &dk_tc, &dv_tc);
  {
    ScopedFmaEnv unset(std::nullopt);
    d.Backward(/*tc=*/false, 1, &dq_def, &dk_def, &dv_def);
  }
  EXPECT_EQ(dq_def, dq_tc);
  EXPECT_EQ(dk_def, dk_tc);
  EXPECT_EQ(dv_def, dv_tc);
}

// Host-side validation runs before any CUDA call, so these run without a GPU; a build without
// CUDA answers Unimplemented instead.
TEST(AttentionTcArgs, RejectsBadArguments) {
  uint16_t* h = reinterpret_cast<uint16_t*>(256);  // never dereferenced: validation fails first
  float* f = reinterpret_cast<float*>(256);
  using testing::ExpectBadArg;
  ExpectBadArg(AttentionForwardBf16Tc(h, h, h, 1, 4, 4, 4, 32, 1.0, h, f),
               "head dim D=32 unsupported by the tensor-core kernels");
  ExpectBadArg(AttentionForwardBf16Tc(h, h, h, 1, 4, 4, 4, 96, 1.0, h, f), "head dim D=96");
  ExpectBadArg(AttentionForwardBf16Tc(h, h, h, 1, 4, 6, 4, 64, 1.0, h, f),
               "not a multiple of Hkv");
  ExpectBadArg(AttentionForwardBf16Tc(h, h, h, -1, 4, 4, 4, 64, 1.0, h, f), "negative size");
  ExpectBadArg(AttentionForwardBf16Tc(nullptr, h, h, 1, 4, 4, 4, 64, 1.0, h, f), "null q");
  ExpectBadArg(AttentionForwardBf16Tc(h, h + 1, h, 1, 4, 4, 4, 64, 1.0, h, f),
               "16-byte aligned");
  ExpectBadArg(AttentionBackwardBf16Tc(h, h, h, h, h, f, 1, 4, 4, 4, 128, 1.0, h, h, h, nullptr,
                                       0),
               "workspace of 0 bytes");
  ExpectBadArg(AttentionBackwardBf16Tc(h, h, h, h, h, f, 1, 4, 4, 4, 128, 1.0, h, h, h + 4, f,
                                       1 << 20),
               "16-byte aligned");
  ExpectBadArg(AttentionBackwardBf16Tc(h, h, h, h, h, nullptr, 1, 4, 4, 4, 64, 1.0, h, h, h, f,
                                       1 << 20),
               "null dout, q, k, v, out, lse");
  ExpectBadArg(AttentionBackwardBf16Tc(h, h, h, h, h, f, 1, 4, 4, 2, 16, 1.0, h, h, h, f,
                                       1 << 20),
               "AttentionBackwardBf16Tc: head dim D=16");
  // Unsupported head dims never dispatch to the tensor-core kernels, in any build.
  EXPECT_FALSE(AttentionBf16UsesTensorCores(16));
  EXPECT_FALSE(AttentionBf16UsesTensorCores(32));
  EXPECT_FALSE(AttentionBf16UsesTensorCores(96));
}

TEST(AttentionTcArgs, EmptyIsNoOp) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "built without the CUDA backend";
  EXPECT_TRUE(AttentionForwardBf16Tc(nullptr, nullptr, nullptr, 0, 5, 4, 4, 64, 1.0, nullptr,
                                     nullptr)
                  .ok());
  EXPECT_TRUE(AttentionBackwardBf16Tc(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 0,
                                      4, 4, 128, 1.0, nullptr, nullptr, nullptr, nullptr, 0)
                  .ok());
}

}  // namespace
}  // namespace rlvr::kernels::cuda
