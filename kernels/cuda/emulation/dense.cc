// Host emulation of kernels/cuda/dense.h (and the four-argument
// SwigluForwardF32 of cuda.h): the same host-side argument checks as the .cu
// files, then the computation as a closure on the stream
// (kernels/cuda/emulation/emu.h). fp32 arithmetic as the kernels document it;
// the GEMMs run kernels::Gemm<float> on the (bf16-rounded where the precision
// says so) operands, or kernels::Gemm<double> when the process-wide CPU
// precision would round fp32 operands that the GPU keeps (MatmulInBf16()).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/dense.h"
#include "core/status.h"
#include "kernels/cuda/emulation/emu.h"
#include "kernels/matmul.h"


namespace rlvr::kernels::cuda {
namespace {

using emu::Bad;
using emu::CheckElems;
using emu::Enqueue;
using emu::Load;
using emu::Span;
using emu::Store;

absl::Status CheckSize(const char *fn, const char *name, int64_t v) {
  if (v < 0)
    return Bad(fn, absl::StrCat(name, " = ", v, " is negative"));
  return absl::OkStatus();
}
absl::Status CheckPtr(const char *fn, const char *name, const void *p) {
  if (p == nullptr)
    return Bad(fn, absl::StrCat(name, " is null"));
  return absl::OkStatus();
}

// ---- GEMM ----

float RoundTf32(float v) {
  if (!std::isfinite(v))
    return v;
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = (bits + 0xFFFu + ((bits >> 13) & 1u)) & ~0x1FFFu;
  std::memcpy(&v, &bits, 4);
  return v;
}

enum class OperandRounding { kNone, kTf32, kBf16 };

template <typename T, typename U>
std::vector<U> Widen(const T *src, int64_t n, OperandRounding r) {
  std::vector<U> out(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) {
    float v = Load(src + i);
    if (r == OperandRounding::kTf32)
      v = RoundTf32(v);
    if (r == OperandRounding::kBf16)
      v = emu::Bf(emu::ToBf(v));
    out[i] = static_cast<U>(v);
  }
  return out;
}

absl::Status ValidateGemm(const char *fn, bool trans_a, bool trans_b, int64_t M,
                          int64_t N, int64_t K, const void *A, int64_t lda,
                          int64_t stride_a, const void *B, int64_t ldb,
                          int64_t stride_b, const void *C, int64_t ldc,
                          int64_t stride_c, int64_t batch) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "M", M));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "K", K));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "batch", batch));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "stride_a", stride_a));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "stride_b", stride_b));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "stride_c", stride_c));
  if (batch > INT32_MAX)
    return Bad(fn, absl::StrCat("batch = ", batch, " exceeds 2^31-1"));
  const int64_t min_lda = trans_a ? M : K, min_ldb = trans_b ? K : N;
  if (lda < std::max<int64_t>(1, min_lda)) {
    return Bad(fn,
               absl::StrCat("lda = ", lda, " < ", std::max<int64_t>(1, min_lda),
                            trans_a ? " (M, A transposed)" : " (K)"));
  }
  if (ldb < std::max<int64_t>(1, min_ldb)) {
    return Bad(fn,
               absl::StrCat("ldb = ", ldb, " < ", std::max<int64_t>(1, min_ldb),
                            trans_b ? " (K, B transposed)" : " (N)"));
  }
  if (ldc < std::max<int64_t>(1, N)) {
    return Bad(fn, absl::StrCat("ldc = ", ldc, " < ", std::max<int64_t>(1, N),
                                " (N)"));
  }
  if (M == 0 || N == 0 || batch == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "C", C));
  if (K > 0) {
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "A", A));
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "B", B));
  }
  if (batch > 1 && stride_c < (M - 1) * ldc + N) {
    return Bad(fn, absl::StrCat("stride_c = ", stride_c, " makes the ", batch,
                                " output matrices overlap (need >= ",
                                (M - 1) * ldc + N, ")"));
  }
  return absl::OkStatus();
}

template <typename TAB, typename TC>
absl::Status EmuGemm(const char *fn, OperandRounding rounding, bool trans_a,
                     bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const TAB *A, int64_t lda, int64_t stride_a, const TAB *B,
                     int64_t ldb, int64_t stride_b, float beta, TC *C,
                     int64_t ldc, int64_t stride_c, int64_t batch,
                     Stream stream) {
  RLVR_RETURN_IF_ERROR(ValidateGemm(fn, trans_a, trans_b, M, N, K, A, lda,
                                   stride_a, B, ldb, stride_b, C, ldc, stride_c,
                                   batch));
  if (M == 0 || N == 0 || batch == 0)
    return absl::OkStatus();
  const int64_t span_c = Span(M, N, ldc);
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "C", C, (batch - 1) * stride_c + span_c));
  if (K == 0) {
    return Enqueue(fn, stream, [=] {
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t r = 0; r < M; ++r) {
          for (int64_t c = 0; c < N; ++c) {
            TC *p = C + b * stride_c + r * ldc + c;
            Store(p, beta == 0.0f ? 0.0f : beta * Load(p));
          }
        }
      }
    });
  }
  const int64_t span_a = trans_a ? Span(K, M, lda) : Span(M, K, lda);
  const int64_t span_b = trans_b ? Span(N, K, ldb) : Span(K, N, ldb);
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "A", A, (batch - 1) * stride_a + span_a));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "B", B, (batch - 1) * stride_b + span_b));
  RLVR_RETURN_IF_ERROR(emu::EnsureGemmWorkspace(fn, stream));
  return Enqueue(fn, stream, [=] {
    // The CPU's float GEMM rounds its operands to bf16 under
    // MatmulPrecision::kBf16; operands that are not bf16 values already then go
    // through double instead.
    const bool bf16_operands =
        std::is_same_v<TAB, uint16_t> || rounding == OperandRounding::kBf16;
    const bool use_double = MatmulInBf16() && !bf16_operands;
    for (int64_t b = 0; b < batch; ++b) {
      const TAB *a = A + b * stride_a;
      const TAB *bm = B + b * stride_b;
      TC *c = C + b * stride_c;
      if (use_double) {
        std::vector<double> da = Widen<TAB, double>(a, span_a, rounding);
        std::vector<double> db = Widen<TAB, double>(bm, span_b, rounding);
        std::vector<double> dc(span_c, 0.0);
        if (beta != 0.0f)
          dc = Widen<TC, double>(c, span_c, OperandRounding::kNone);
        Gemm<double>(trans_a, trans_b, M, N, K, alpha, da.data(), lda,
                     db.data(), ldb, beta, dc.data(), ldc);
        for (int64_t r = 0; r < M; ++r) {
          for (int64_t j = 0; j < N; ++j) {
            Store(c + r * ldc + j, static_cast<float>(dc[r * ldc + j]));
          }
        }
      } else {
        std::vector<float> fa = Widen<TAB, float>(a, span_a, rounding);
        std::vector<float> fb = Widen<TAB, float>(bm, span_b, rounding);
        std::vector<float> fc(span_c, 0.0f);
        if (beta != 0.0f)
          fc = Widen<TC, float>(c, span_c, OperandRounding::kNone);
        Gemm<float>(trans_a, trans_b, M, N, K, alpha, fa.data(), lda, fb.data(),
                    ldb, beta, fc.data(), ldc);
        for (int64_t r = 0; r < M; ++r) {
          for (int64_t j = 0; j < N; ++j)
            Store(c + r * ldc + j, fc[r * ldc + j]);
        }
      }
    }
  });
}

OperandRounding RoundingFor(GemmPrecision p) {
  switch (p) {
  case GemmPrecision::kTf32:
    return OperandRounding::kTf32;
  case GemmPrecision::kBf16:
    return OperandRounding::kBf16;
  case GemmPrecision::kHighest:
    break;
  }
  return OperandRounding::kNone;
}

} // namespace

namespace emu {
void HostGemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
              const float *A, int64_t lda, const float *B, int64_t ldb,
              float beta, float *C, int64_t ldc, bool bf16_operands) {
  if (bf16_operands || !MatmulInBf16()) {
    Gemm<float>(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int64_t span_a = trans_a ? Span(K, M, lda) : Span(M, K, lda);
  const int64_t span_b = trans_b ? Span(N, K, ldb) : Span(K, N, ldb);
  const int64_t span_c = Span(M, N, ldc);
  std::vector<double> da(A, A + span_a), db(B, B + span_b), dc(span_c, 0.0);
  if (beta != 0.0f)
    dc.assign(C, C + span_c);
  Gemm<double>(trans_a, trans_b, M, N, K, 1.0, da.data(), lda, db.data(), ldb,
               beta, dc.data(), ldc);
  for (int64_t r = 0; r < M; ++r) {
    for (int64_t j = 0; j < N; ++j)
      C[r * ldc + j] = static_cast<float>(dc[r * ldc + j]);
  }
}
} // namespace emu

absl::Status GemmF32(bool trans_a, bool trans_b, int64_t M, int64_t N,
                     int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc, GemmPrecision precision, Stream stream) {
  return EmuGemm("GemmF32", RoundingFor(precision), trans_a, trans_b, M, N, K,
                 alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, stream);
}
absl::Status GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const uint16_t *A, int64_t lda,
                      const uint16_t *B, int64_t ldb, float beta, uint16_t *C,
                      int64_t ldc, Stream stream) {
  return EmuGemm("GemmBf16", OperandRounding::kNone, trans_a, trans_b, M, N, K,
                 alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, stream);
}
absl::Status GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const uint16_t *A, int64_t lda,
                      const uint16_t *B, int64_t ldb, float beta, float *C,
                      int64_t ldc, Stream stream) {
  return EmuGemm("GemmBf16", OperandRounding::kNone, trans_a, trans_b, M, N, K,
                 alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, stream);
}
absl::Status GemmStridedBatchedF32(
    bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
    const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
    int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
    int64_t batch, GemmPrecision precision, Stream stream) {
  return EmuGemm("GemmStridedBatchedF32", RoundingFor(precision), trans_a,
                 trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b,
                 beta, C, ldc, stride_c, batch, stream);
}
absl::Status GemmStridedBatchedBf16(bool trans_a, bool trans_b, int64_t M,
                                    int64_t N, int64_t K, float alpha,
                                    const uint16_t *A, int64_t lda,
                                    int64_t stride_a, const uint16_t *B,
                                    int64_t ldb, int64_t stride_b, float beta,
                                    uint16_t *C, int64_t ldc, int64_t stride_c,
                                    int64_t batch, Stream stream) {
  return EmuGemm("GemmStridedBatchedBf16", OperandRounding::kNone, trans_a,
                 trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b,
                 beta, C, ldc, stride_c, batch, stream);
}
absl::Status GemmStridedBatchedBf16(bool trans_a, bool trans_b, int64_t M,
                                    int64_t N, int64_t K, float alpha,
                                    const uint16_t *A, int64_t lda,
                                    int64_t stride_a, const uint16_t *B,
                                    int64_t ldb, int64_t stride_b, float beta,
                                    float *C, int64_t ldc, int64_t stride_c,
                                    int64_t batch, Stream stream) {
  return EmuGemm("GemmStridedBatchedBf16", OperandRounding::kNone, trans_a,
                 trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b,
                 beta, C, ldc, stride_c, batch, stream);
}

// ---- RMSNorm ----

namespace {
constexpr int64_t kDwBlocks = 256;
constexpr int64_t kMaxDwColumns = 49152;
constexpr int64_t kMaxRopeHalf = 512;

absl::Status CheckNormArgs(const char *fn, int64_t R, int64_t C, double eps) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (R > INT32_MAX)
    return Bad(fn, absl::StrCat("R = ", R, " exceeds 2^31-1 rows"));
  if (!(eps >= 0))
    return Bad(fn, absl::StrCat("eps = ", eps, " must be non-negative"));
  return absl::OkStatus();
}

template <typename T>
absl::Status NormForward(const char *fn, const T *x, const T *residual,
                         const T *w, int64_t R, int64_t C, double eps, T *h,
                         T *y, float *rstd, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNormArgs(fn, R, C, eps));
  if (R == 0 || C == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "w", w));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, R * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "w", w, C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "y", y, R * C));
  if (residual != nullptr) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "residual", residual, R * C));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "h", h, R * C));
  }
  if (rstd != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "rstd", rstd, R));
  const float epsf = static_cast<float>(eps);
  return Enqueue(fn, stream, [=] {
    std::vector<float> row(C);
    for (int64_t r = 0; r < R; ++r) {
      float ss = 0.0f;
      for (int64_t c = 0; c < C; ++c) {
        float v = Load(x + r * C + c);
        if (residual != nullptr) {
          T *hp = h + r * C + c;
          Store(hp, v + Load(residual + r * C + c));
          v = Load(hp); // the norm of the stored (rounded) h
        }
        row[c] = v;
        ss += v * v;
      }
      const float rs = 1.0f / std::sqrt(ss / static_cast<float>(C) + epsf);
      if (rstd != nullptr)
        rstd[r] = rs;
      for (int64_t c = 0; c < C; ++c)
        Store(y + r * C + c, Load(w + c) * (row[c] * rs));
    }
  });
}

template <typename T>
absl::Status NormBackward(const char *fn, const T *dy, const T *x, const T *w,
                          const float *rstd, int64_t R, int64_t C, T *dx,
                          float *dw, float *workspace, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNormArgs(fn, R, C, 0.0));
  if (R == 0 || C == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dy", dy));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "w", w));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "rstd", rstd));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dx", dx));
  if (dw != nullptr) {
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "workspace (needed with dw)", workspace));
    if (C > kMaxDwColumns) {
      return Bad(
          fn,
          absl::StrCat("C = ", C, " exceeds ", kMaxDwColumns,
                       " (dw's per-block partial row lives in shared memory)"));
    }
  }
  const int64_t P = R < kDwBlocks ? R : kDwBlocks;
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dy", dy, R * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, R * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "w", w, C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "rstd", rstd, R));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dx", dx, R * C));
  if (dw != nullptr) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "dw", dw, C));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "workspace", workspace, P * C));
  }
  return Enqueue(fn, stream, [=] {
    // Block p of P owns rows p, p + P, ...; its dw partial row goes to
    // workspace[p, :].
    if (dw != nullptr)
      std::fill(workspace, workspace + P * C, 0.0f);
    for (int64_t r = 0; r < R; ++r) {
      const T *xr = x + r * C;
      const T *dyr = dy + r * C;
      const float rs = rstd[r];
      float dot = 0.0f;
      for (int64_t c = 0; c < C; ++c)
        dot += Load(w + c) * Load(dyr + c) * Load(xr + c);
      const float k = rs * rs * rs * dot / static_cast<float>(C);
      T *dxr = dx + r * C;
      float *part = dw != nullptr ? workspace + (r % P) * C : nullptr;
      for (int64_t c = 0; c < C; ++c) {
        const float xv = Load(xr + c), dyv = Load(dyr + c);
        Store(dxr + c, Load(dxr + c) + (rs * Load(w + c) * dyv - k * xv));
        if (part != nullptr)
          part[c] += dyv * xv * rs;
      }
    }
    if (dw != nullptr) {
      for (int64_t c = 0; c < C; ++c) {
        float s = 0.0f;
        for (int64_t p = 0; p < P; ++p)
          s += workspace[p * C + c];
        dw[c] += s;
      }
    }
  });
}
} // namespace

absl::Status RmsNormForwardF32(const float *x, const float *w, int64_t R,
                               int64_t C, double eps, float *y, float *rstd,
                               Stream stream) {
  return NormForward<float>("RmsNormForwardF32", x, nullptr, w, R, C, eps,
                            nullptr, y, rstd, stream);
}
absl::Status RmsNormForwardBf16(const uint16_t *x, const uint16_t *w, int64_t R,
                                int64_t C, double eps, uint16_t *y, float *rstd,
                                Stream stream) {
  return NormForward<uint16_t>("RmsNormForwardBf16", x, nullptr, w, R, C, eps,
                               nullptr, y, rstd, stream);
}
absl::Status AddRmsNormForwardF32(const float *x, const float *residual,
                                  const float *w, int64_t R, int64_t C,
                                  double eps, float *h, float *y, float *rstd,
                                  Stream stream) {
  const char *fn = "AddRmsNormForwardF32";
  if (R > 0 && C > 0) {
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "residual", residual));
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "h", h));
  }
  return NormForward<float>(fn, x, residual, w, R, C, eps, h, y, rstd, stream);
}
absl::Status AddRmsNormForwardBf16(const uint16_t *x, const uint16_t *residual,
                                   const uint16_t *w, int64_t R, int64_t C,
                                   double eps, uint16_t *h, uint16_t *y,
                                   float *rstd, Stream stream) {
  const char *fn = "AddRmsNormForwardBf16";
  if (R > 0 && C > 0) {
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "residual", residual));
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "h", h));
  }
  return NormForward<uint16_t>(fn, x, residual, w, R, C, eps, h, y, rstd,
                               stream);
}
int64_t RmsNormBackwardWorkspaceFloats(int64_t R, int64_t C) {
  if (R <= 0 || C <= 0)
    return 0;
  return (R < kDwBlocks ? R : kDwBlocks) * C;
}
absl::Status RmsNormBackwardF32(const float *dy, const float *x, const float *w,
                                const float *rstd, int64_t R, int64_t C,
                                float *dx, float *dw, float *workspace,
                                Stream stream) {
  return NormBackward<float>("RmsNormBackwardF32", dy, x, w, rstd, R, C, dx, dw,
                             workspace, stream);
}
absl::Status RmsNormBackwardBf16(const uint16_t *dy, const uint16_t *x,
                                 const uint16_t *w, const float *rstd,
                                 int64_t R, int64_t C, uint16_t *dx, float *dw,
                                 float *workspace, Stream stream) {
  return NormBackward<uint16_t>("RmsNormBackwardBf16", dy, x, w, rstd, R, C, dx,
                                dw, workspace, stream);
}

// ---- RoPE ----

namespace {
absl::Status CheckRopeArgs(const char *fn, int64_t N, int64_t heads,
                           int64_t D) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "heads", heads));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "D", D));
  if (D % 2 != 0)
    return Bad(fn, absl::StrCat("head dim D = ", D, " is odd"));
  return absl::OkStatus();
}

template <typename T>
absl::Status Rope(const char *fn, const float *cos_t, const float *sin_t,
                  int64_t N, int64_t heads, int64_t D, float sign, T *x,
                  Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckRopeArgs(fn, N, heads, D));
  if (N == 0 || heads == 0 || D == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos_t));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin_t));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  const int64_t half = D / 2;
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "cos", cos_t, N * half));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "sin", sin_t, N * half));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, N * heads * D));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t h = 0; h < heads; ++h) {
        T *p = x + (n * heads + h) * D;
        for (int64_t j = 0; j < half; ++j) {
          const float c = cos_t[n * half + j], s = sign * sin_t[n * half + j];
          const float a = Load(p + j), b = Load(p + j + half);
          Store(p + j, a * c - b * s);
          Store(p + j + half, b * c + a * s);
        }
      }
    }
  });
}
} // namespace

absl::Status BuildRopeTableF32(const int32_t *positions, int64_t N, int64_t D,
                               double theta, float *cos, float *sin,
                               Stream stream) {
  const char *fn = "BuildRopeTableF32";
  RLVR_RETURN_IF_ERROR(CheckRopeArgs(fn, N, 1, D));
  const int64_t half = D / 2;
  if (half > kMaxRopeHalf) {
    return Bad(fn,
               absl::StrCat("head dim D = ", D, " exceeds ", 2 * kMaxRopeHalf));
  }
  if (!(theta > 0))
    return Bad(fn, absl::StrCat("theta = ", theta, " must be positive"));
  if (N == 0 || D == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "positions", positions));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "positions", positions, N));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "cos", cos, N * half));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "sin", sin, N * half));
  std::vector<float> inv(half);
  for (int64_t j = 0; j < half; ++j) {
    inv[j] = 1.0f / static_cast<float>(std::pow(static_cast<float>(theta),
                                                static_cast<float>(2 * j) /
                                                    static_cast<float>(D)));
  }
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < half; ++j) {
        const float a = static_cast<float>(positions[n]) * inv[j];
        cos[n * half + j] =
            static_cast<float>(std::cos(static_cast<double>(a)));
        sin[n * half + j] =
            static_cast<float>(std::sin(static_cast<double>(a)));
      }
    }
  });
}
absl::Status RopeForwardF32(const float *cos, const float *sin, int64_t N,
                            int64_t heads, int64_t D, float *x, Stream stream) {
  return Rope<float>("RopeForwardF32", cos, sin, N, heads, D, 1.0f, x, stream);
}
absl::Status RopeBackwardF32(const float *cos, const float *sin, int64_t N,
                             int64_t heads, int64_t D, float *dx,
                             Stream stream) {
  return Rope<float>("RopeBackwardF32", cos, sin, N, heads, D, -1.0f, dx,
                     stream);
}
absl::Status RopeForwardBf16(const float *cos, const float *sin, int64_t N,
                             int64_t heads, int64_t D, uint16_t *x,
                             Stream stream) {
  return Rope<uint16_t>("RopeForwardBf16", cos, sin, N, heads, D, 1.0f, x,
                        stream);
}
absl::Status RopeBackwardBf16(const float *cos, const float *sin, int64_t N,
                              int64_t heads, int64_t D, uint16_t *dx,
                              Stream stream) {
  return Rope<uint16_t>("RopeBackwardBf16", cos, sin, N, heads, D, -1.0f, dx,
                        stream);
}

// ---- SwiGLU ----

namespace {
template <typename T>
absl::Status SwiForward(const char *fn, const T *gate, const T *up, int64_t n,
                        T *out, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "gate", gate));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "up", up));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "gate", gate, n));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "up", up, n));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, n));
  return Enqueue(fn, stream, [=] {
    for (int64_t i = 0; i < n; ++i) {
      const float g = Load(gate + i), u = Load(up + i);
      Store(out + i, g / (1.0f + std::exp(-g)) * u);
    }
  });
}

template <typename T>
absl::Status SwiBackward(const char *fn, const T *dout, const T *gate,
                         const T *up, int64_t n, T *dgate, T *dup,
                         Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dout", dout));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "gate", gate));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "up", up));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dgate", dgate));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dup", dup));
  for (const auto &[name, p] :
       {std::pair<const char *, const T *>{"dout", dout},
        {"gate", gate},
        {"up", up},
        {"dgate", dgate},
        {"dup", dup}}) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, name, p, n));
  }
  return Enqueue(fn, stream, [=] {
    for (int64_t i = 0; i < n; ++i) {
      const float g = Load(gate + i), u = Load(up + i), d = Load(dout + i);
      const float s = 1.0f / (1.0f + std::exp(-g));
      const float silu = g * s;
      Store(dgate + i, d * u * (s + silu * (1.0f - s)));
      Store(dup + i, d * silu);
    }
  });
}
} // namespace

absl::Status SwigluForwardF32(const float *gate, const float *up, int64_t n,
                              float *out, Stream stream) {
  return SwiForward<float>("SwigluForwardF32", gate, up, n, out, stream);
}
absl::Status SwigluForwardF32(const float *gate, const float *up, int64_t n,
                              float *out) {
  RLVR_RETURN_IF_ERROR(SwigluForwardF32(gate, up, n, out, Stream{nullptr}));
  return emu::DeviceSynchronize("SwigluForwardF32");
}
absl::Status SwigluForwardBf16(const uint16_t *gate, const uint16_t *up,
                               int64_t n, uint16_t *out, Stream stream) {
  return SwiForward<uint16_t>("SwigluForwardBf16", gate, up, n, out, stream);
}
absl::Status SwigluBackwardF32(const float *dout, const float *gate,
                               const float *up, int64_t n, float *dgate,
                               float *dup, Stream stream) {
  return SwiBackward<float>("SwigluBackwardF32", dout, gate, up, n, dgate, dup,
                            stream);
}
absl::Status SwigluBackwardBf16(const uint16_t *dout, const uint16_t *gate,
                                const uint16_t *up, int64_t n, uint16_t *dgate,
                                uint16_t *dup, Stream stream) {
  return SwiBackward<uint16_t>("SwigluBackwardBf16", dout, gate, up, n, dgate,
                               dup, stream);
}

// ---- log-softmax ----

namespace {
absl::Status CheckSoftmax(const char *fn, int64_t R, int64_t V, int64_t valid,
                          double scale) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "V", V));
  if (R > INT32_MAX)
    return Bad(fn, absl::StrCat("R = ", R, " exceeds 2^31-1 rows"));
  if (R > 0 && (valid < 1 || valid > V)) {
    return Bad(fn,
               absl::StrCat("valid = ", valid, " is outside [1, V = ", V, "]"));
  }
  if (!std::isfinite(scale))
    return Bad(fn, absl::StrCat("scale = ", scale, " is not finite"));
  return absl::OkStatus();
}

template <typename T>
absl::Status Stats(const char *fn, const T *logits, const int32_t *target,
                   int64_t R, int64_t V, int64_t valid, double scale,
                   float *lse, float *logprob, float *entropy, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckSoftmax(fn, R, V, valid, scale));
  if (R == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "logits", logits));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "lse", lse));
  if (logprob != nullptr)
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "target (needed with logprob)", target));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "logits", logits, R * V));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "lse", lse, R));
  if (logprob != nullptr) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "target", target, R));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "logprob", logprob, R));
  }
  if (entropy != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "entropy", entropy, R));
  const float sc = static_cast<float>(scale);
  return Enqueue(fn, stream, [=] {
    for (int64_t r = 0; r < R; ++r) {
      const T *z = logits + r * V;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < valid; ++j)
        m = std::max(m, sc * Load(z + j));
      // fp32 terms summed in double: the GPU's block-wide tree sum of a
      // 50k-wide row is far more accurate than one sequential fp32 chain.
      double S = 0.0, A = 0.0;
      for (int64_t j = 0; j < valid; ++j) {
        const float u = sc * Load(z + j) - m;
        const float e = std::exp(u);
        S += e;
        A += static_cast<double>(e) * u;
      }
      const float l = m + static_cast<float>(std::log(S));
      lse[r] = l;
      if (logprob != nullptr) {
        const int32_t t = target[r];
        logprob[r] = t >= 0 && t < valid
                         ? sc * Load(z + t) - l
                         : std::numeric_limits<float>::quiet_NaN();
      }
      if (entropy != nullptr)
        entropy[r] = static_cast<float>(std::log(S) - A / S);
    }
  });
}

template <typename T>
absl::Status Grad(const char *fn, const int32_t *target, const float *lse,
                  const float *entropy, const float *dlogprob,
                  const float *dentropy, int64_t R, int64_t V, int64_t valid,
                  double scale, T *logits, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckSoftmax(fn, R, V, valid, scale));
  if (R == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "logits", logits));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "lse", lse));
  if (dentropy != nullptr) {
    RLVR_RETURN_IF_ERROR(
        CheckPtr(fn, "entropy (needed with dentropy)", entropy));
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "logits", logits, R * V));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "lse", lse, R));
  if (target != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "target", target, R));
  if (entropy != nullptr && dentropy != nullptr) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "entropy", entropy, R));
  }
  if (dlogprob != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "dlogprob", dlogprob, R));
  if (dentropy != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "dentropy", dentropy, R));
  const float sc = static_cast<float>(scale);
  return Enqueue(fn, stream, [=] {
    for (int64_t r = 0; r < R; ++r) {
      T *z = logits + r * V;
      const float l = lse[r];
      const float dlp = dlogprob != nullptr ? dlogprob[r] : 0.0f;
      const float dent = dentropy != nullptr ? dentropy[r] : 0.0f;
      const float H = dentropy != nullptr ? entropy[r] : 0.0f;
      const int32_t t = target != nullptr ? target[r] : -1;
      for (int64_t j = 0; j < V; ++j) {
        if (j >= valid) {
          Store(z + j, 0.0f);
          continue;
        }
        const float lj = sc * Load(z + j) - l;
        const float p = std::exp(lj);
        const float onehot = j == t ? 1.0f : 0.0f;
        Store(z + j, sc * (dlp * (onehot - p) - dent * p * (lj + H)));
      }
    }
  });
}
} // namespace

absl::Status LogSoftmaxStatsF32(const float *logits, const int32_t *target,
                                int64_t R, int64_t V, int64_t valid,
                                double scale, float *lse, float *logprob,
                                float *entropy, Stream stream) {
  return Stats<float>("LogSoftmaxStatsF32", logits, target, R, V, valid, scale,
                      lse, logprob, entropy, stream);
}
absl::Status LogSoftmaxStatsBf16(const uint16_t *logits, const int32_t *target,
                                 int64_t R, int64_t V, int64_t valid,
                                 double scale, float *lse, float *logprob,
                                 float *entropy, Stream stream) {
  return Stats<uint16_t>("LogSoftmaxStatsBf16", logits, target, R, V, valid,
                         scale, lse, logprob, entropy, stream);
}
absl::Status LogSoftmaxGradInPlaceF32(const int32_t *target, const float *lse,
                                      const float *entropy,
                                      const float *dlogprob,
                                      const float *dentropy, int64_t R,
                                      int64_t V, int64_t valid, double scale,
                                      float *logits, Stream stream) {
  return Grad<float>("LogSoftmaxGradInPlaceF32", target, lse, entropy, dlogprob,
                     dentropy, R, V, valid, scale, logits, stream);
}
absl::Status LogSoftmaxGradInPlaceBf16(const int32_t *target, const float *lse,
                                       const float *entropy,
                                       const float *dlogprob,
                                       const float *dentropy, int64_t R,
                                       int64_t V, int64_t valid, double scale,
                                       uint16_t *logits, Stream stream) {
  return Grad<uint16_t>("LogSoftmaxGradInPlaceBf16", target, lse, entropy,
                        dlogprob, dentropy, R, V, valid, scale, logits, stream);
}

// ---- AdamW ----

struct AdamWMultiTensor::Impl {
  std::vector<AdamWTensor> tensors;
  int64_t num_chunks = 0;
  // The device-side Result of the kernels (written by the closures).
  std::shared_ptr<AdamWStepResult> result = std::make_shared<AdamWStepResult>();
  bool stepped = false;
};

AdamWMultiTensor::AdamWMultiTensor(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
AdamWMultiTensor::~AdamWMultiTensor() = default;
int64_t AdamWMultiTensor::num_tensors() const {
  return static_cast<int64_t>(impl_->tensors.size());
}
int64_t AdamWMultiTensor::num_chunks() const { return impl_->num_chunks; }

namespace {
constexpr int64_t kAdamChunk = 16384;

// Sum of grad^2 over every tensor in fp64, then the norm, clip and skip flag
// (NormFinalKernel).
void NormAndClip(const std::vector<AdamWTensor> &tensors, double max_grad_norm,
                 AdamWStepResult *r) {
  double s = 0.0;
  for (const AdamWTensor &t : tensors) {
    for (int64_t i = 0; i < t.numel; ++i) {
      const double x = t.grad[i];
      s += x * x;
    }
  }
  const double norm = std::sqrt(s);
  r->grad_norm = norm;
  r->skipped = !std::isfinite(norm);
  r->clipped = false;
  r->clip = 1.0f;
  if (!r->skipped && max_grad_norm > 0 && norm > max_grad_norm) {
    r->clip = static_cast<float>(max_grad_norm / (norm + 1e-6));
    r->clipped = true;
  }
}
} // namespace

absl::StatusOr<std::unique_ptr<AdamWMultiTensor>>
AdamWMultiTensor::Create(const std::vector<AdamWTensor> &tensors) {
  const char *fn = "AdamWMultiTensor::Create";
  if (tensors.size() > static_cast<size_t>(INT32_MAX))
    return Bad(fn, "too many tensors");
  auto impl = std::make_unique<Impl>();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor &t = tensors[i];
    if (t.param == nullptr || t.grad == nullptr || t.exp_avg == nullptr ||
        t.exp_avg_sq == nullptr || t.numel <= 0) {
      return Bad(fn, absl::StrCat("tensor ", i,
                                  " has a null param/grad/exp_avg/exp_avg_sq",
                                  " or numel = ", t.numel, " <= 0"));
    }
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor &t = tensors[i];
    const std::string name = absl::StrCat("tensor ", i);
    RLVR_RETURN_IF_ERROR(
        CheckElems(fn, (name + " param").c_str(), t.param, t.numel));
    RLVR_RETURN_IF_ERROR(
        CheckElems(fn, (name + " grad").c_str(), t.grad, t.numel));
    RLVR_RETURN_IF_ERROR(
        CheckElems(fn, (name + " exp_avg").c_str(), t.exp_avg, t.numel));
    RLVR_RETURN_IF_ERROR(
        CheckElems(fn, (name + " exp_avg_sq").c_str(), t.exp_avg_sq, t.numel));
    if (t.param_bf16 != nullptr) {
      RLVR_RETURN_IF_ERROR(CheckElems(fn, (name + " param_bf16").c_str(),
                                     t.param_bf16, t.numel));
    }
    impl->num_chunks += (t.numel + kAdamChunk - 1) / kAdamChunk;
    impl->tensors.push_back(t);
  }
  // The real Create uploads the tables with blocking copies (cudaMalloc +
  // cudaMemcpy).
  RLVR_RETURN_IF_ERROR(emu::SynchronizeStream(fn, nullptr));
  return std::unique_ptr<AdamWMultiTensor>(
      new AdamWMultiTensor(std::move(impl)));
}

absl::Status AdamWMultiTensor::Step(const AdamWStepConfig &c, Stream stream) {
  const char *fn = "AdamWMultiTensor::Step";
  if (!(c.lr >= 0))
    return Bad(fn, absl::StrCat("lr = ", c.lr, " must be non-negative"));
  if (!(c.beta1 >= 0 && c.beta1 < 1))
    return Bad(fn, "beta1 must be in [0, 1)");
  if (!(c.beta2 >= 0 && c.beta2 < 1))
    return Bad(fn, "beta2 must be in [0, 1)");
  if (!(c.eps > 0))
    return Bad(fn, "eps must be positive");
  if (!(c.weight_decay >= 0))
    return Bad(fn, "weight_decay must be non-negative");
  if (c.step < 1)
    return Bad(fn, absl::StrCat("step = ", c.step, " must be >= 1"));
  const double t = static_cast<double>(c.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(c.beta1, t));
  const float bc2_sqrt =
      static_cast<float>(std::sqrt(1.0 - std::pow(c.beta2, t)));
  const float lr = static_cast<float>(c.lr);
  const float step_size = lr / bc1;
  const float eps = static_cast<float>(c.eps);
  const float b1 = static_cast<float>(c.beta1),
              b2 = static_cast<float>(c.beta2);
  const float decay = 1.0f - lr * static_cast<float>(c.weight_decay);
  const double max_grad_norm = c.max_grad_norm;
  const std::vector<AdamWTensor> tensors = impl_->tensors;
  std::shared_ptr<AdamWStepResult> result = impl_->result;
  RLVR_RETURN_IF_ERROR(Enqueue(fn, stream, [=] {
    NormAndClip(tensors, max_grad_norm, result.get());
    if (result->skipped)
      return;
    const float clip = result->clip;
    for (const AdamWTensor &tt : tensors) {
      const float dec = tt.decay ? decay : 1.0f;
      for (int64_t i = 0; i < tt.numel; ++i) {
        const float gi = tt.grad[i] * clip;
        const float m = b1 * tt.exp_avg[i] + (1.0f - b1) * gi;
        const float v = b2 * tt.exp_avg_sq[i] + (1.0f - b2) * gi * gi;
        tt.exp_avg[i] = m;
        tt.exp_avg_sq[i] = v;
        const float denom = std::sqrt(v) / bc2_sqrt + eps;
        const float w = tt.param[i] * dec - step_size * m / denom;
        tt.param[i] = w;
        if (tt.param_bf16 != nullptr)
          tt.param_bf16[i] = emu::ToBf(w);
      }
    }
  }));
  impl_->stepped = true;
  return absl::OkStatus();
}

absl::StatusOr<double> AdamWMultiTensor::GradNorm(Stream stream) {
  const char *fn = "AdamWMultiTensor::GradNorm";
  const std::vector<AdamWTensor> tensors = impl_->tensors;
  std::shared_ptr<AdamWStepResult> result = impl_->result;
  RLVR_RETURN_IF_ERROR(
      Enqueue(fn, stream, [=] { NormAndClip(tensors, 0.0, result.get()); }));
  RLVR_RETURN_IF_ERROR(emu::SynchronizeStream(fn, stream));
  impl_->stepped = false;
  return result->grad_norm;
}

absl::StatusOr<AdamWStepResult>
AdamWMultiTensor::LastStepResult(Stream stream) {
  const char *fn = "AdamWMultiTensor::LastStepResult";
  if (!impl_->stepped) {
    return absl::FailedPreconditionError(absl::StrCat(
        fn, ": no Step since creation or since the last GradNorm"));
  }
  RLVR_RETURN_IF_ERROR(emu::SynchronizeStream(fn, stream));
  return *impl_->result;
}

// ---- embedding ----

namespace {
absl::Status CheckEmbedding(const char *fn, int64_t N, int64_t V, int64_t C) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "V", V));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  return absl::OkStatus();
}

template <typename T>
absl::Status EmbForward(const char *fn, const int32_t *ids, const T *table,
                        int64_t N, int64_t V, int64_t C, T *out,
                        Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckEmbedding(fn, N, V, C));
  if (N == 0 || C == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "ids", ids));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  if (V > 0)
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "table", table));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "ids", ids, N));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "table", table, V * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, N * C));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      const int32_t id = ids[n];
      for (int64_t c = 0; c < C; ++c) {
        Store(out + n * C + c, id >= 0 && id < V
                                   ? Load(table + id * C + c)
                                   : std::numeric_limits<float>::quiet_NaN());
      }
    }
  });
}

template <typename T>
absl::Status EmbBackward(const char *fn, const int32_t *ids, const T *dout,
                         int64_t N, int64_t V, int64_t C, float *dtable,
                         Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckEmbedding(fn, N, V, C));
  if (N == 0 || C == 0 || V == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "ids", ids));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dout", dout));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dtable", dtable));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "ids", ids, N));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dout", dout, N * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dtable", dtable, V * C));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      const int32_t id = ids[n];
      if (id < 0 || id >= V)
        continue;
      for (int64_t c = 0; c < C; ++c)
        dtable[id * C + c] += Load(dout + n * C + c);
    }
  });
}
} // namespace

absl::Status EmbeddingForwardF32(const int32_t *ids, const float *table,
                                 int64_t N, int64_t V, int64_t C, float *out,
                                 Stream stream) {
  return EmbForward<float>("EmbeddingForwardF32", ids, table, N, V, C, out,
                           stream);
}
absl::Status EmbeddingForwardBf16(const int32_t *ids, const uint16_t *table,
                                  int64_t N, int64_t V, int64_t C,
                                  uint16_t *out, Stream stream) {
  return EmbForward<uint16_t>("EmbeddingForwardBf16", ids, table, N, V, C, out,
                              stream);
}
absl::Status ValidateTokenIds(const int32_t *ids, int64_t N, int64_t V,
                              Stream stream) {
  const char *fn = "ValidateTokenIds";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "V", V));
  if (N == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "ids", ids));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "ids", ids, N));
  // The real one cudaMallocs a flag and synchronizes the stream.
  RLVR_RETURN_IF_ERROR(emu::ForbiddenWhileCapturing(fn));
  RLVR_RETURN_IF_ERROR(emu::SynchronizeStream(fn, stream));
  for (int64_t n = 0; n < N; ++n) {
    if (ids[n] < 0 || ids[n] >= V) {
      return absl::InvalidArgumentError(
          absl::StrCat("embedding: token id ", ids[n], " at position ", n,
                       " is outside the vocabulary [0, ", V, ")"));
    }
  }
  return absl::OkStatus();
}
absl::Status EmbeddingBackwardF32(const int32_t *ids, const float *dout,
                                  int64_t N, int64_t V, int64_t C,
                                  float *dtable, Stream stream) {
  return EmbBackward<float>("EmbeddingBackwardF32", ids, dout, N, V, C, dtable,
                            stream);
}
absl::Status EmbeddingBackwardBf16(const int32_t *ids, const uint16_t *dout,
                                   int64_t N, int64_t V, int64_t C,
                                   float *dtable, Stream stream) {
  return EmbBackward<uint16_t>("EmbeddingBackwardBf16", ids, dout, N, V, C,
                               dtable, stream);
}

} // namespace rlvr::kernels::cuda
