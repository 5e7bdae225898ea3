// cuBLASLt GEMMs (kernels/cuda/dense.h) against the CPU Gemm in double on the same (for bf16:
// bf16-rounded) inputs: every transpose combination, ragged M, N, K, padded leading dimensions,
// alpha/beta, beta = 0 over a NaN-poisoned C, the untouched padding of C, K = 0, strided batches,
// unaligned sub-matrices, and the argument checks (which need no GPU).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/cuda/dense.h"
#include "kernels/matmul.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/dense_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;
using testing::ExpectBadArg;
using testing::ExpectClose;
using testing::FromBf16;
using testing::Randn;
using testing::RoundedBf16;
using testing::ToBf16;

enum class Path { kF32, kBf16ToF32, kBf16ToBf16 };

std::string PathName(Path p) {
  return p == Path::kF32 ? "f32" : p == Path::kBf16ToF32 ? "bf16->f32" : "bf16->bf16";
}

// Tolerances relative to max |ref|. fp32 outputs: fp32 accumulation over K <= 130 terms of
// exactly representable products (bf16 x bf16 is exact in fp32) stays near 1e-6; 1e-5 leaves
// margin. bf16 outputs: one rounding, 2^-9 relative to the element, so below 4e-3 of max |ref|.
double Tolerance(Path p) { return p == Path::kBf16ToBf16 ? 1e-2 : 1e-5; }

// Runs one product C[M, N] (ldc = N + 3) = alpha op(A) op(B) + beta C on the device and checks
// it against kernels::Gemm<double>; with beta == 0, C starts as NaN; the 3 padding columns of
// every row must keep their poison bits.
void CheckGemm(Path path, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
               float beta, uint32_t seed) {
  const std::string what = absl::StrCat(PathName(path), " ta=", ta, " tb=", tb, " M=", M,
                                        " N=", N, " K=", K, " alpha=", alpha, " beta=", beta);
  const int64_t lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1, ldc = N + 3;
  const int64_t a_rows = ta ? K : M, b_rows = tb ? N : K;
  std::vector<float> a = Randn(a_rows * lda, seed), b = Randn(b_rows * ldb, seed + 1),
                     c = Randn(M * ldc, seed + 2);
  const bool bf16_in = path != Path::kF32, bf16_out = path == Path::kBf16ToBf16;
  if (bf16_in) {
    a = RoundedBf16(a);
    b = RoundedBf16(b);
  }
  if (bf16_out) c = RoundedBf16(c);
  std::vector<double> ad(a.begin(), a.end()), bd(b.begin(), b.end()), ref(c.begin(), c.end());
  if (beta == 0.0f) std::fill(ref.begin(), ref.end(), std::nan(""));
  kernels::Gemm<double>(ta, tb, M, N, K, alpha, ad.data(), lda, bd.data(), ldb, beta, ref.data(),
                        ldc);

  std::vector<double> got(M * ldc);
  std::vector<bool> untouched(M * ldc, false);
  absl::Status st;
  if (path == Path::kF32) {
    DeviceBuffer<float> da(a), db(b), dc(c);
    if (beta == 0.0f) dc.Poison();
    st = GemmF32(ta, tb, M, N, K, alpha, da.get(), lda, db.get(), ldb, beta, dc.get(), ldc);
    ASSERT_TRUE(st.ok()) << what << ": " << st;
    std::vector<float> h = dc.Download();
    for (size_t i = 0; i < h.size(); ++i) {
      got[i] = h[i];
      uint32_t bits;
      std::memcpy(&bits, &h[i], 4);
      untouched[i] = bits == 0xFFFFFFFFu;
    }
  } else {
    DeviceBuffer<uint16_t> da(ToBf16(a)), db(ToBf16(b));
    if (path == Path::kBf16ToF32) {
      DeviceBuffer<float> dc(c);
      if (beta == 0.0f) dc.Poison();
      st = GemmBf16(ta, tb, M, N, K, alpha, da.get(), lda, db.get(), ldb, beta, dc.get(), ldc);
      ASSERT_TRUE(st.ok()) << what << ": " << st;
      std::vector<float> h = dc.Download();
      for (size_t i = 0; i < h.size(); ++i) {
        got[i] = h[i];
        uint32_t bits;
        std::memcpy(&bits, &h[i], 4);
        untouched[i] = bits == 0xFFFFFFFFu;
      }
    } else {
      DeviceBuffer<uint16_t> dc(ToBf16(c));
      if (beta == 0.0f) dc.Poison();
      st = GemmBf16(ta, tb, M, N, K, alpha, da.get(), lda, db.get(), ldb, beta, dc.get(), ldc);
      ASSERT_TRUE(st.ok()) << what << ": " << st;
      std::vector<uint16_t> h = dc.Download();
      for (size_t i = 0; i < h.size(); ++i) {
        got[i] = Bf16ToF32(h[i]);
        untouched[i] = h[i] == 0xFFFFu;
      }
    }
  }
  std::vector<double> g_in, r_in;
  for (int64_t r = 0; r < M; ++r) {
    for (int64_t col = 0; col < ldc; ++col) {
      if (col < N) {
        g_in.push_back(got[r * ldc + col]);
        r_in.push_back(ref[r * ldc + col]);
      } else if (beta == 0.0f) {
        EXPECT_TRUE(untouched[r * ldc + col]) << what << ": wrote padding at row " << r;
      }
    }
  }
  ExpectClose(g_in, r_in, Tolerance(path), what);
}

TEST(CudaGemmTest, AllTransposesRaggedShapesMatchCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t shapes[][3] = {{1, 17, 63}, {17, 130, 1}, {63, 1, 130}, {130, 63, 17},
                               {64, 64, 64}};
  uint32_t seed = 1;
  for (Path path : {Path::kF32, Path::kBf16ToF32, Path::kBf16ToBf16}) {
    for (int t = 0; t < 4; ++t) {
      for (const auto& s : shapes) {
        CheckGemm(path, t & 1, t & 2, s[0], s[1], s[2], 1.5f, 0.0f, seed += 3);
        CheckGemm(path, t & 1, t & 2, s[0], s[1], s[2], -0.75f, 0.5f, seed += 3);
      }
    }
  }
}

// K == 0: C = beta * C (beta == 0 writes zeros over the NaNs).
TEST(CudaGemmTest, KZeroScalesC) {
  RLVR_SKIP_WITHOUT_GPU();
  for (Path path : {Path::kF32, Path::kBf16ToF32, Path::kBf16ToBf16}) {
    CheckGemm(path, false, false, 5, 7, 0, 1.0f, 0.5f, 11);
  }
  // beta == 0: the reference is all zeros, so check directly.
  DeviceBuffer<float> dc(5 * 7);
  dc.Poison();
  ASSERT_TRUE(
      GemmF32(false, false, 5, 7, 0, 1.0f, nullptr, 1, nullptr, 7, 0.0f, dc.get(), 7).ok());
  for (float v : dc.Download()) EXPECT_EQ(v, 0.0f);
}

// fp32 storage with the faster precisions: operands rounded (TF32: 10 mantissa bits; bf16: 7),
// so compare against the exact product with a loose tolerance, and the bf16 one against the
// product of bf16-rounded operands.
TEST(CudaGemmTest, F32PrecisionsTf32AndBf16) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t M = 33, N = 65, K = 129;
  std::vector<float> a = Randn(M * K, 3), b = Randn(K * N, 4);
  for (GemmPrecision p : {GemmPrecision::kTf32, GemmPrecision::kBf16}) {
    std::vector<float> ar = p == GemmPrecision::kBf16 ? RoundedBf16(a) : a;
    std::vector<float> br = p == GemmPrecision::kBf16 ? RoundedBf16(b) : b;
    std::vector<double> ad(ar.begin(), ar.end()), bd(br.begin(), br.end()), ref(M * N);
    kernels::Gemm<double>(false, true, M, N, K, 1.0, ad.data(), K, bd.data(), K, 0.0, ref.data(),
                          N);
    DeviceBuffer<float> da(a), db(b), dc(M * N);
    dc.Poison();
    ASSERT_TRUE(GemmF32(false, true, M, N, K, 1.0f, da.get(), K, db.get(), K, 0.0f, dc.get(), N,
                        p)
                    .ok());
    // TF32 rounding is 2^-11 relative per operand; bf16 RN matches the rounded reference up to
    // fp32 accumulation, but cuBLAS does not document its conversion's rounding: 1e-2 for both.
    ExpectClose(dc.Download(), ref, 1e-2, p == GemmPrecision::kTf32 ? "tf32" : "bf16");
  }
}

// Batches with a shared A (stride 0), transposed B, and C strides with a gap between matrices.
TEST(CudaGemmTest, StridedBatchedMatchesPerMatrixCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t M = 17, N = 33, K = 65, batch = 3;
  const int64_t lda = K, ldb = K + 1, ldc = N, sa = 0, sb = N * ldb + 5, sc = M * ldc + 7;
  std::vector<float> a = RoundedBf16(Randn(M * lda, 21)), b = RoundedBf16(Randn(batch * sb, 22));
  std::vector<double> ref(batch * sc, 0.0);
  std::vector<double> ad(a.begin(), a.end()), bd(b.begin(), b.end());
  for (int64_t i = 0; i < batch; ++i) {
    kernels::Gemm<double>(false, true, M, N, K, 2.0, ad.data() + i * sa, lda, bd.data() + i * sb,
                          ldb, 0.0, ref.data() + i * sc, ldc);
  }
  std::vector<double> ref_in;
  auto inside = [&](const auto& v) {
    std::vector<double> out;
    for (int64_t i = 0; i < batch; ++i)
      for (int64_t e = 0; e < M * ldc; ++e) out.push_back(double(v[i * sc + e]));
    return out;
  };
  ref_in = inside(ref);
  {
    DeviceBuffer<float> da(a), db(b), dc(batch * sc);
    dc.Poison();
    ASSERT_TRUE(GemmStridedBatchedF32(false, true, M, N, K, 2.0f, da.get(), lda, sa, db.get(),
                                      ldb, sb, 0.0f, dc.get(), ldc, sc, batch)
                    .ok());
    ExpectClose(inside(dc.Download()), ref_in, 1e-5, "batched f32");
  }
  {
    DeviceBuffer<uint16_t> da(ToBf16(a)), db(ToBf16(b)), dc(batch * sc);
    dc.Poison();
    ASSERT_TRUE(GemmStridedBatchedBf16(false, true, M, N, K, 2.0f, da.get(), lda, sa, db.get(),
                                       ldb, sb, 0.0f, dc.get(), ldc, sc, batch)
                    .ok());
    ExpectClose(inside(FromBf16(dc.Download())), ref_in, 1e-2, "batched bf16");
    DeviceBuffer<float> dcf(batch * sc);
    dcf.Poison();
    ASSERT_TRUE(GemmStridedBatchedBf16(false, true, M, N, K, 2.0f, da.get(), lda, sa, db.get(),
                                       ldb, sb, 0.0f, dcf.get(), ldc, sc, batch)
                    .ok());
    ExpectClose(inside(dcf.Download()), ref_in, 1e-5, "batched bf16->f32");
  }
}

// Sub-matrices at odd element offsets (2-byte aligned bf16 pointers): the heuristic must be told
// the real alignment, and the same shape at two alignments must both be right (algorithm cache).
TEST(CudaGemmTest, UnalignedSubMatrices) {
  RLVR_SKIP_WITHOUT_GPU();
  const int64_t M = 64, N = 64, K = 64;
  std::vector<float> a = RoundedBf16(Randn(M * K + 1, 31)), b = RoundedBf16(Randn(K * N + 1, 32));
  DeviceBuffer<uint16_t> da(ToBf16(a)), db(ToBf16(b));
  for (int off = 0; off < 2; ++off) {
    std::vector<double> ad(a.begin() + off, a.begin() + off + M * K),
        bd(b.begin() + off, b.begin() + off + K * N), ref(M * N);
    kernels::Gemm<double>(false, false, M, N, K, 1.0, ad.data(), K, bd.data(), N, 0.0,
                          ref.data(), N);
    DeviceBuffer<float> dc(M * N + 1);
    dc.Poison();
    ASSERT_TRUE(GemmBf16(false, false, M, N, K, 1.0f, da.get() + off, K, db.get() + off, N, 0.0f,
                         dc.get() + off, N)
                    .ok());
    std::vector<float> h = dc.Download();
    ExpectClose(std::vector<float>(h.begin() + off, h.begin() + off + M * N), ref, 1e-5,
                absl::StrCat("offset ", off));
  }
}

// Host-side checks: no GPU needed (Unimplemented in a build without CUDA).
TEST(CudaGemmTest, BadArguments) {
  float* fake = reinterpret_cast<float*>(uintptr_t{256});
  ExpectBadArg(GemmF32(false, false, -1, 4, 4, 1.0f, fake, 4, fake, 4, 0.0f, fake, 4), "M = -1");
  ExpectBadArg(GemmF32(false, false, 4, 4, -2, 1.0f, fake, 4, fake, 4, 0.0f, fake, 4), "K = -2");
  ExpectBadArg(GemmF32(false, false, 4, 8, 6, 1.0f, fake, 5, fake, 8, 0.0f, fake, 8), "lda = 5");
  ExpectBadArg(GemmF32(true, false, 4, 8, 6, 1.0f, fake, 3, fake, 8, 0.0f, fake, 8), "lda = 3");
  ExpectBadArg(GemmF32(false, false, 4, 8, 6, 1.0f, fake, 6, fake, 7, 0.0f, fake, 8), "ldb = 7");
  ExpectBadArg(GemmF32(false, true, 4, 8, 6, 1.0f, fake, 6, fake, 5, 0.0f, fake, 8), "ldb = 5");
  ExpectBadArg(GemmF32(false, false, 4, 8, 6, 1.0f, fake, 6, fake, 8, 0.0f, fake, 7), "ldc = 7");
  ExpectBadArg(GemmF32(false, false, 4, 8, 6, 1.0f, fake, 6, fake, 8, 0.0f, nullptr, 8),
               "C is null");
  ExpectBadArg(GemmF32(false, false, 4, 8, 6, 1.0f, nullptr, 6, fake, 8, 0.0f, fake, 8),
               "A is null");
  const uint16_t* fb = reinterpret_cast<const uint16_t*>(fake);
  ExpectBadArg(GemmBf16(false, false, 4, 8, 6, 1.0f, fb, 6, nullptr, 8, 0.0f,
                        static_cast<uint16_t*>(nullptr), 8),
               "C is null");
  ExpectBadArg(GemmBf16(false, false, 4, 8, 6, 1.0f, fb, 6, nullptr, 8, 0.0f, fake, 8),
               "B is null");
  ExpectBadArg(GemmStridedBatchedF32(false, false, 4, 8, 6, 1.0f, fake, 6, 24, fake, 8, 48, 0.0f,
                                     fake, 8, 31, 2),
               "stride_c = 31");
  ExpectBadArg(GemmStridedBatchedF32(false, false, 4, 8, 6, 1.0f, fake, 6, 24, fake, 8, 48, 0.0f,
                                     fake, 8, 32, -1),
               "batch = -1");
  ExpectBadArg(GemmStridedBatchedBf16(false, false, 4, 8, 6, 1.0f, fb, 6, -24, fb, 8, 48, 0.0f,
                                      fake, 8, 32, 2),
               "stride_a = -24");
}

// Sizes of zero are no-ops that touch nothing (null pointers allowed): no GPU needed.
TEST(CudaGemmTest, EmptyIsNoOp) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "built without the CUDA backend";
  EXPECT_TRUE(GemmF32(false, false, 0, 8, 6, 1.0f, nullptr, 6, nullptr, 8, 0.0f, nullptr, 8).ok());
  EXPECT_TRUE(GemmF32(false, false, 4, 0, 6, 1.0f, nullptr, 6, nullptr, 1, 0.0f, nullptr, 1).ok());
  EXPECT_TRUE(GemmStridedBatchedF32(false, false, 4, 8, 6, 1.0f, nullptr, 6, 0, nullptr, 8, 0,
                                    0.0f, nullptr, 8, 0, 0)
                  .ok());
}

}  // namespace
}  // namespace rlvr::kernels::cuda
