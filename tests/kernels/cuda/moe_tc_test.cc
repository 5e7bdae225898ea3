// Tensor-core grouped expert GEMMs (MoeGroupedGemmBf16Tc, MoeGroupedGemmWeightGradBf16Tc in
// kernels/cuda/moe.h) against a float64 host reference on the same bf16 inputs, against the FMA
// kernels (forced with RLVR_MOE_GEMM_FMA=1), and the dispatch of the plain Bf16 entry points:
// tensor cores for aligned sizes, the FMA kernels for unaligned ones or when the variable is set.
// Ragged expert runs (empty first / middle / last experts, runs not multiples of the tile), Nout
// and Kin multiples of 8 but not of the 64 x 64 tile or the 32-deep reduction chunk, both weight
// layouts, rows past M present (never read into an expert, never written). Outputs are poisoned
// before each run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/moe.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/dense_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;
using testing::ExpectBadArg;
using testing::FromBf16;
using testing::HaveGpu;
using testing::Randn;
using testing::RoundBf16;

constexpr char kFmaVar[] = "RLVR_MOE_GEMM_FMA";

// Sets (or, with nullopt, unsets) RLVR_MOE_GEMM_FMA for its lifetime; restores the old value.
class ScopedFmaVar {
 public:
  explicit ScopedFmaVar(std::optional<std::string> value) {
    if (const char* old = std::getenv(kFmaVar)) old_ = old;
    if (value) {
      setenv(kFmaVar, value->c_str(), 1);
    } else {
      unsetenv(kFmaVar);
    }
  }
  ~ScopedFmaVar() {
    if (old_) {
      setenv(kFmaVar, old_->c_str(), 1);
    } else {
      unsetenv(kFmaVar);
    }
  }

 private:
  std::optional<std::string> old_;
};

std::vector<int32_t> Offsets(const std::vector<int32_t>& runs) {
  std::vector<int32_t> off(runs.size() + 1, 0);
  for (size_t e = 0; e < runs.size(); ++e) off[e + 1] = off[e] + runs[e];
  return off;
}

// Per-element error bound of a bf16-input, fp32-accumulated dot product of n exact products
// (bf16 x bf16 fits in fp32), then the final rounding: fp32 summation error is at most
// n * u * sum|terms| (u = 2^-24); 2^-22 per term allows for the tensor cores' truncating
// alignment of addends. `out_rel` is the relative error of the final rounding (2^-8 for a bf16
// output, allowing a tie flipped by the accumulation error; 2^-22 for an fp32 accumulate).
double Bound(double ref, double abs_sum, int64_t n, double out_rel) {
  return out_rel * std::abs(ref) + static_cast<double>(n + 1) * std::ldexp(1.0, -22) * abs_sum +
         1e-30;
}

// Expects |got - ref| <= bound elementwise and no NaN; reports the worst element.
void ExpectWithin(const std::vector<float>& got, const std::vector<double>& ref,
                  const std::vector<double>& bound, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double max_ref = 0;
  for (double r : ref) max_ref = std::max(max_ref, std::abs(r));
  ASSERT_GT(max_ref, 0.0) << what << ": all-zero reference (the test would be vacuous)";
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = got[i];
    if (std::isnan(g) || std::abs(g - ref[i]) > bound[i]) {
      if (bad++ == 0) first = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << ref.size()
                     << " elements out of bound; first " << first << " got " << got[first]
                     << " want " << ref[first] << " bound " << bound[first];
}

// ---------------------------------------------------------------------------------------------
// Forward: y[rows of e] = x W_e^T (or x W_e).

struct FwdCase {
  std::vector<int32_t> runs;
  int64_t Nout, Kin;
};

const FwdCase kFwdCases[] = {
    {{0, 70, 1, 130, 0, 64, 3, 33, 0}, 72, 40},  // ragged everything, Kin tail of 8
    {{64, 128}, 64, 64},                         // exact tiles
    {{5, 0, 200}, 136, 200},                     // several K chunks, Nout tail of 8
    {{1}, 8, 8},                                 // one row, one vector
};

struct FwdData {
  int64_t E, M, M_max, Nout, Kin;
  std::vector<int32_t> off;
  std::vector<float> x, w;  // bf16-rounded values
  std::vector<uint16_t> xb, wb;
};

FwdData MakeFwd(const FwdCase& fc, uint32_t seed) {
  FwdData d;
  d.E = static_cast<int64_t>(fc.runs.size());
  d.off = Offsets(fc.runs);
  d.M = d.off[d.E];
  d.M_max = d.M + 5;
  d.Nout = fc.Nout;
  d.Kin = fc.Kin;
  // Rows past M (up to M_max) exist: garbage that no expert may read.
  d.x = Randn(d.M_max * d.Kin, seed);
  d.w = Randn(d.E * d.Nout * d.Kin, seed + 1, 0.2f);
  d.xb = RoundBf16(&d.x);
  d.wb = RoundBf16(&d.w);
  return d;
}

// float64 reference over the M rows and its per-element bound (bf16 output).
void FwdReference(const FwdData& d, bool trans_w, std::vector<double>* ref,
                  std::vector<double>* bound) {
  ref->assign(d.M * d.Nout, 0.0);
  bound->assign(d.M * d.Nout, 0.0);
  for (int64_t e = 0; e < d.E; ++e) {
    const float* we = d.w.data() + e * d.Nout * d.Kin;
    for (int64_t r = d.off[e]; r < d.off[e + 1]; ++r) {
      for (int64_t j = 0; j < d.Nout; ++j) {
        double acc = 0, abs_sum = 0;
        for (int64_t i = 0; i < d.Kin; ++i) {
          const double t =
              double(d.x[r * d.Kin + i]) * (trans_w ? we[i * d.Nout + j] : we[j * d.Kin + i]);
          acc += t;
          abs_sum += std::abs(t);
        }
        (*ref)[r * d.Nout + j] = acc;
        (*bound)[r * d.Nout + j] = Bound(acc, abs_sum, d.Kin, std::ldexp(1.0, -8));
      }
    }
  }
}

enum class Entry { kTc, kDispatch, kF32 };

// Runs one entry point into a poisoned y [M_max, Nout]; returns all M_max rows as bits
// (bf16 bits, or the F32 kernel's output rounded to bf16 on the host).
std::vector<uint16_t> RunFwd(const FwdData& d, bool trans_w, Entry entry, int64_t x_shift = 0) {
  DeviceBuffer<int32_t> d_off(d.off);
  if (entry == Entry::kF32) {
    DeviceBuffer<float> d_x(d.x), d_w(d.w), d_y(d.M_max * d.Nout);
    d_y.Poison();
    const absl::Status s = MoeGroupedGemmF32(d_x.get(), d_w.get(), d_off.get(), d.E, d.M_max,
                                             d.Nout, d.Kin, trans_w, d_y.get());
    EXPECT_TRUE(s.ok()) << s;
    return testing::ToBf16(d_y.Download());
  }
  // x_shift > 0 moves x by that many elements off the allocation's 256-byte alignment.
  std::vector<uint16_t> xs(x_shift, 0);
  xs.insert(xs.end(), d.xb.begin(), d.xb.end());
  DeviceBuffer<uint16_t> d_x(xs), d_w(d.wb), d_y(d.M_max * d.Nout);
  d_y.Poison();
  const uint16_t* x = d_x.get() + x_shift;
  const absl::Status s = entry == Entry::kTc
                             ? MoeGroupedGemmBf16Tc(x, d_w.get(), d_off.get(), d.E, d.M_max, d.Nout,
                                                    d.Kin, trans_w, d_y.get())
                             : MoeGroupedGemmBf16(x, d_w.get(), d_off.get(), d.E, d.M_max, d.Nout,
                                                  d.Kin, trans_w, d_y.get());
  EXPECT_TRUE(s.ok()) << s;
  return d_y.Download();
}

// The first M rows as floats; rows M..M_max must still hold the poison (never stored).
std::vector<float> FirstRows(const std::vector<uint16_t>& y, const FwdData& d,
                             const std::string& what) {
  for (int64_t i = d.M * d.Nout; i < d.M_max * d.Nout; ++i) {
    EXPECT_EQ(y[i], 0xFFFF) << what << ": element " << i << " past M was written";
    if (y[i] != 0xFFFF) break;
  }
  return FromBf16(std::vector<uint16_t>(y.begin(), y.begin() + d.M * d.Nout));
}

class GroupedGemmTc : public ::testing::TestWithParam<bool> {};  // trans_w

TEST_P(GroupedGemmTc, MatchesReferenceFmaAndDispatch) {
  RLVR_SKIP_WITHOUT_GPU();
  const bool trans_w = GetParam();
  uint32_t seed = 10;
  for (const FwdCase& fc : kFwdCases) {
    SCOPED_TRACE("Nout=" + std::to_string(fc.Nout) + " Kin=" + std::to_string(fc.Kin));
    const FwdData d = MakeFwd(fc, seed += 2);
    std::vector<double> ref, bound;
    FwdReference(d, trans_w, &ref, &bound);

    const std::vector<uint16_t> tc = RunFwd(d, trans_w, Entry::kTc);
    ExpectWithin(FirstRows(tc, d, "tc"), ref, bound, "tensor-core y");
    std::vector<uint16_t> fma;
    {
      ScopedFmaVar force(std::string("1"));
      ASSERT_FALSE(MoeGroupedGemmUsesTensorCores(d.Nout, d.Kin, nullptr, nullptr, nullptr));
      fma = RunFwd(d, trans_w, Entry::kDispatch);
    }
    ExpectWithin(FirstRows(fma, d, "fma"), ref, bound, "FMA y");
    // Both are within `bound` of the reference, so within twice of each other.
    const std::vector<float> fma_f = FirstRows(fma, d, "fma");
    std::vector<double> fma_d(fma_f.begin(), fma_f.end()), bound2(bound);
    for (double& b : bound2) b *= 2;
    ExpectWithin(FirstRows(tc, d, "tc"), fma_d, bound2, "tensor-core vs FMA y");

    ScopedFmaVar unset(std::nullopt);
    ASSERT_TRUE(MoeGroupedGemmUsesTensorCores(d.Nout, d.Kin, nullptr, nullptr, nullptr))
        << "aligned sizes on a compute capability >= 8.0 device";
    EXPECT_EQ(RunFwd(d, trans_w, Entry::kDispatch), tc) << "MoeGroupedGemmBf16 did not dispatch "
                                                           "to the tensor-core kernel";
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, GroupedGemmTc, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "TransW" : "NoTransW"; });

// ---------------------------------------------------------------------------------------------
// Weight gradient: dw[e] += dy_e^T x_e.

struct WgradCase {
  std::vector<int32_t> runs;
  int64_t Nout, Kin;
};

const WgradCase kWgradCases[] = {
    {{0, 37, 0, 1, 80, 0}, 72, 136},  // empty first / middle / last experts, ragged tiles
    {{32, 64}, 64, 64},               // exact tiles and chunks
    {{17, 0, 33}, 8, 24},             // tiny matrices
    {{100, 3, 45, 0, 300}, 136, 72},  // many row chunks
};

struct WgradData {
  int64_t E, M, M_max, Nout, Kin;
  std::vector<int32_t> off;
  std::vector<float> dy, x, dw0;
  std::vector<uint16_t> dyb, xb;
  std::vector<double> ref, bound;
};

WgradData MakeWgrad(const WgradCase& wc, uint32_t seed) {
  WgradData d;
  d.E = static_cast<int64_t>(wc.runs.size());
  d.off = Offsets(wc.runs);
  d.M = d.off[d.E];
  d.M_max = d.M + 5;
  d.Nout = wc.Nout;
  d.Kin = wc.Kin;
  d.dy = Randn(d.M_max * d.Nout, seed);
  d.x = Randn(d.M_max * d.Kin, seed + 1);
  d.dyb = RoundBf16(&d.dy);
  d.xb = RoundBf16(&d.x);
  d.dw0 = Randn(d.E * d.Nout * d.Kin, seed + 2);  // ACCUMULATES onto this
  d.ref.assign(d.dw0.begin(), d.dw0.end());
  d.bound.assign(d.dw0.size(), 0.0);
  for (int64_t e = 0; e < d.E; ++e) {
    const int64_t rows = d.off[e + 1] - d.off[e];
    for (int64_t n = 0; n < d.Nout; ++n) {
      for (int64_t k = 0; k < d.Kin; ++k) {
        double acc = 0, abs_sum = 0;
        for (int64_t i = d.off[e]; i < d.off[e + 1]; ++i) {
          const double t = double(d.dy[i * d.Nout + n]) * double(d.x[i * d.Kin + k]);
          acc += t;
          abs_sum += std::abs(t);
        }
        const size_t o = (e * d.Nout + n) * d.Kin + k;
        d.ref[o] += acc;
        // fp32 result: the rows' sum, then one more rounding adding it to dw0.
        d.bound[o] = Bound(d.ref[o], abs_sum + std::abs(d.dw0[o]), rows + 1, std::ldexp(1.0, -22));
      }
    }
  }
  return d;
}

std::vector<float> RunWgrad(const WgradData& d, Entry entry, int64_t shift = 0) {
  DeviceBuffer<int32_t> d_off(d.off);
  DeviceBuffer<float> dw(d.dw0);
  if (entry == Entry::kF32) {
    DeviceBuffer<float> d_dy(d.dy), d_x(d.x);
    const absl::Status s = MoeGroupedGemmWeightGradF32(d_dy.get(), d_x.get(), d_off.get(), d.E,
                                                       d.M_max, d.Nout, d.Kin, dw.get());
    EXPECT_TRUE(s.ok()) << s;
    return dw.Download();
  }
  std::vector<uint16_t> dys(shift, 0);
  dys.insert(dys.end(), d.dyb.begin(), d.dyb.end());
  DeviceBuffer<uint16_t> d_dy(dys), d_x(d.xb);
  const uint16_t* dy = d_dy.get() + shift;
  const absl::Status s = entry == Entry::kTc
                             ? MoeGroupedGemmWeightGradBf16Tc(dy, d_x.get(), d_off.get(), d.E,
                                                              d.M_max, d.Nout, d.Kin, dw.get())
                             : MoeGroupedGemmWeightGradBf16(dy, d_x.get(), d_off.get(), d.E,
                                                            d.M_max, d.Nout, d.Kin, dw.get());
  EXPECT_TRUE(s.ok()) << s;
  return dw.Download();
}

void ExpectEmptyExpertsUntouched(const WgradData& d, const std::vector<float>& got,
                                 const std::string& what) {
  for (int64_t e = 0; e < d.E; ++e) {
    if (d.off[e + 1] != d.off[e]) continue;
    for (int64_t i = e * d.Nout * d.Kin; i < (e + 1) * d.Nout * d.Kin; ++i) {
      ASSERT_EQ(got[i], d.dw0[i]) << what << ": expert " << e << " has no rows but dw changed";
    }
  }
}

TEST(GroupedGemmWeightGradTc, MatchesReferenceFmaAndDispatch) {
  RLVR_SKIP_WITHOUT_GPU();
  uint32_t seed = 50;
  for (const WgradCase& wc : kWgradCases) {
    SCOPED_TRACE("Nout=" + std::to_string(wc.Nout) + " Kin=" + std::to_string(wc.Kin));
    const WgradData d = MakeWgrad(wc, seed += 3);
    const std::vector<float> tc = RunWgrad(d, Entry::kTc);
    ExpectWithin(tc, d.ref, d.bound, "tensor-core dw");
    ExpectEmptyExpertsUntouched(d, tc, "tensor-core");
    EXPECT_EQ(RunWgrad(d, Entry::kTc), tc) << "tensor-core weight grad is not deterministic";
    std::vector<float> fma;
    {
      ScopedFmaVar force(std::string("1"));
      fma = RunWgrad(d, Entry::kDispatch);
    }
    ExpectWithin(fma, d.ref, d.bound, "FMA dw");
    ExpectEmptyExpertsUntouched(d, fma, "FMA");
    ScopedFmaVar unset(std::nullopt);
    ASSERT_TRUE(MoeGroupedGemmUsesTensorCores(d.Nout, d.Kin, nullptr, nullptr, nullptr));
    EXPECT_EQ(RunWgrad(d, Entry::kDispatch), tc)
        << "MoeGroupedGemmWeightGradBf16 did not dispatch to the tensor-core kernel";
  }
}

TEST(GroupedGemmWeightGradTc, ZeroRowsIsANoOp) {
  RLVR_SKIP_WITHOUT_GPU();
  const std::vector<float> dw0 = Randn(2 * 8 * 16, 7);
  DeviceBuffer<float> dw(dw0);
  ASSERT_TRUE(
      MoeGroupedGemmWeightGradBf16Tc(nullptr, nullptr, nullptr, 2, 0, 8, 16, dw.get()).ok());
  EXPECT_EQ(dw.Download(), dw0);
}

// ---------------------------------------------------------------------------------------------
// RLVR_MOE_GEMM_FMA=1 selects the FMA kernels: their results are bit-identical to the F32
// kernels' on the same (bf16-valued) inputs, which run the same FMA chains (the forward's
// rounded to bf16 once, on the host here), and differ from the tensor-core kernel's order.

TEST(GroupedGemmTcDispatch, EnvVarForcesFma) {
  RLVR_SKIP_WITHOUT_GPU();
  const FwdData f = MakeFwd(kFwdCases[0], 90);
  const WgradData g = MakeWgrad(kWgradCases[0], 95);
  {
    ScopedFmaVar force(std::string("1"));
    EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(64, 64, nullptr, nullptr, nullptr));
    for (bool trans_w : {false, true}) {
      const std::vector<uint16_t> f32 = RunFwd(f, trans_w, Entry::kF32);
      const std::vector<uint16_t> got = RunFwd(f, trans_w, Entry::kDispatch);
      // Rows past M: poison (0xFFFF) in one, a rounded NaN in the other; compare the M rows.
      EXPECT_TRUE(std::equal(got.begin(), got.begin() + f.M * f.Nout, f32.begin()))
          << "trans_w=" << trans_w << ": MoeGroupedGemmBf16 with " << kFmaVar
          << "=1 is not the FMA kernel";
    }
    EXPECT_EQ(RunWgrad(g, Entry::kDispatch), RunWgrad(g, Entry::kF32))
        << "MoeGroupedGemmWeightGradBf16 with " << kFmaVar << "=1 is not the FMA kernel";
  }
  {
    ScopedFmaVar other(std::string("0"));  // only "1" forces the FMA kernels
    EXPECT_TRUE(MoeGroupedGemmUsesTensorCores(64, 64, nullptr, nullptr, nullptr));
  }
}

// Sizes or pointers the tensor-core kernels cannot load with 16-byte vectors: the plain entry
// points fall back to the FMA kernels (bit-identical to the F32 ones), the Tc entry points
// refuse.
TEST(GroupedGemmTcDispatch, UnalignedFallsBackToFma) {
  RLVR_SKIP_WITHOUT_GPU();
  ScopedFmaVar unset(std::nullopt);
  // Kin = 36 and Nout = 20: multiples of 4, not of 8.
  const FwdCase fc{{0, 70, 3, 0, 33}, 20, 36};
  const FwdData f = MakeFwd(fc, 120);
  EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(f.Nout, f.Kin, nullptr, nullptr, nullptr));
  for (bool trans_w : {false, true}) {
    std::vector<double> ref, bound;
    FwdReference(f, trans_w, &ref, &bound);
    const std::vector<uint16_t> got = RunFwd(f, trans_w, Entry::kDispatch);
    ExpectWithin(FirstRows(got, f, "fallback"), ref, bound, "fallback y (unaligned sizes)");
    const std::vector<uint16_t> f32 = RunFwd(f, trans_w, Entry::kF32);
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + f.M * f.Nout, f32.begin()));
  }
  // Aligned sizes, x one element (2 bytes) off a 16-byte boundary.
  const FwdData a = MakeFwd(kFwdCases[0], 130);
  {
    std::vector<double> ref, bound;
    FwdReference(a, false, &ref, &bound);
    const std::vector<uint16_t> got = RunFwd(a, false, Entry::kDispatch, /*x_shift=*/1);
    ExpectWithin(FirstRows(got, a, "shifted"), ref, bound, "fallback y (misaligned x)");
    const std::vector<uint16_t> f32 = RunFwd(a, false, Entry::kF32);
    EXPECT_TRUE(std::equal(got.begin(), got.begin() + a.M * a.Nout, f32.begin()));
  }
  // The weight gradient: Nout = 12, and a misaligned dy.
  const WgradData g = MakeWgrad({{0, 37, 5}, 12, 24}, 140);
  EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(g.Nout, g.Kin, nullptr, nullptr, nullptr));
  std::vector<float> gw = RunWgrad(g, Entry::kDispatch);
  ExpectWithin(gw, g.ref, g.bound, "fallback dw (Nout = 12)");
  EXPECT_EQ(gw, RunWgrad(g, Entry::kF32));
  const WgradData h = MakeWgrad(kWgradCases[0], 150);
  gw = RunWgrad(h, Entry::kDispatch, /*shift=*/4);
  ExpectWithin(gw, h.ref, h.bound, "fallback dw (misaligned dy)");
  EXPECT_EQ(gw, RunWgrad(h, Entry::kF32));
  EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(
      h.Nout, h.Kin, reinterpret_cast<const void*>(uintptr_t{24}), nullptr, nullptr));
}

// ---------------------------------------------------------------------------------------------
// Host-side validation: runs without a GPU (Unimplemented in a build without CUDA). Pointers are
// never dereferenced: every call fails before any device work.

TEST(GroupedGemmTcArgs, RejectsBadArguments) {
  uint16_t* h = reinterpret_cast<uint16_t*>(uintptr_t{256});
  uint16_t* h_odd = reinterpret_cast<uint16_t*>(uintptr_t{258});  // 2 bytes off 16
  int32_t* ip = reinterpret_cast<int32_t*>(uintptr_t{256});
  float* fp = reinterpret_cast<float*>(uintptr_t{256});
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 0, 10, 8, 8, false, h), "E=0");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 1025, 10, 8, 8, false, h), "E=1025");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 4, -1, 8, 8, false, h), "M_max=-1");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 4, 10, 0, 8, false, h), "Nout=0");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 4, 10, 8, int64_t{1} << 40, true, h), "int32 range");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, nullptr, 4, 10, 8, 8, false, h),
               "null x, w, expert_offset or y");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 4, 10, 8, 12, false, h), "multiples of 8");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 4, 10, 20, 8, true, h), "multiples of 8");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h_odd, ip, 4, 10, 8, 8, false, h), "16-byte aligned");
  ExpectBadArg(MoeGroupedGemmBf16Tc(h, h, ip, 4, 10, 8, 8, false, h_odd), "16-byte aligned");

  ExpectBadArg(MoeGroupedGemmWeightGradBf16Tc(h, h, ip, 0, 8, 8, 8, fp), "E=0");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16Tc(h, h, ip, 2, -1, 8, 8, fp), "M_max=-1");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16Tc(h, h, ip, 2, 8, 8, 0, fp), "Kin=0");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16Tc(h, h, ip, 2, 8, 8, 8, nullptr),
               "null dy, x, expert_offset or dw");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16Tc(h, h, ip, 2, 8, 12, 8, fp), "multiples of 8");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16Tc(h_odd, h, ip, 2, 8, 8, 8, fp), "16-byte aligned");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16Tc(h, h_odd, ip, 2, 8, 8, 8, fp), "16-byte aligned");

  // The plain entry points name themselves whichever kernel they would have chosen.
  ExpectBadArg(MoeGroupedGemmBf16(h, h, ip, 0, 10, 64, 64, false, h), "MoeGroupedGemmBf16: E=0");
  ExpectBadArg(MoeGroupedGemmWeightGradBf16(h, h, ip, 2, 8, 64, 64, nullptr),
               "MoeGroupedGemmWeightGradBf16: null");
}

TEST(GroupedGemmTcArgs, EligibilityWithoutGpu) {
  ScopedFmaVar unset(std::nullopt);
  // Unaligned sizes never use tensor cores, GPU or not.
  EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(12, 64, nullptr, nullptr, nullptr));
  EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(64, 36, nullptr, nullptr, nullptr));
  EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(0, 64, nullptr, nullptr, nullptr));
  if (!HaveGpu()) {
    EXPECT_FALSE(MoeGroupedGemmUsesTensorCores(64, 64, nullptr, nullptr, nullptr))
        << "no device: no tensor cores";
  }
  // Size 0 rows: a no-op before any device work (Unimplemented without the backend).
  EXPECT_EQ(MoeGroupedGemmBf16Tc(nullptr, nullptr, nullptr, 2, 0, 8, 8, false, nullptr).code(),
            BuiltWithCuda() ? absl::StatusCode::kOk : absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace rlvr::kernels::cuda
