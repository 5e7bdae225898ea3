#include "kernels/matmul.h"

#include <cblas.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <type_traits>
#include <unordered_map>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/gemm_bf16.h"
#include "kernels/elementwise.h"

namespace rlvr::kernels {
namespace {

std::atomic<MatmulPrecision> g_precision{MatmulPrecision::kHighest};

// The PackedWeights registry: weight pointer -> its packed copy. Read on every LinearForward
// while any entry exists (a shared lock), written when a PackedWeights is made or destroyed.
struct PackedEntry {
  int64_t out = 0, in = 0;
  std::unique_ptr<internal::PackedB> packed;
};
std::shared_mutex g_packed_mu;
std::unordered_map<const float*, PackedEntry> g_packed;
std::atomic<int64_t> g_packed_count{0};

// The packed copy of w for x @ w^T, or null.
const internal::PackedB* FindPacked(const float* w, int64_t out, int64_t in) {
  if (g_packed_count.load(std::memory_order_acquire) == 0) return nullptr;
  std::shared_lock lock(g_packed_mu);
  auto it = g_packed.find(w);
  if (it == g_packed.end() || it->second.out != out || it->second.in != in) return nullptr;
  return it->second.packed.get();
}

CBLAS_TRANSPOSE Tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

void BlasGemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, Tr(ta), Tr(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void BlasGemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
              int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, Tr(ta), Tr(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
// y = alpha * op(A) x + beta * y with A [rows, cols] row-major.
void BlasGemv(bool t, int64_t rows, int64_t cols, float alpha, const float* A, int64_t lda,
              const float* x, int64_t incx, float beta, float* y, int64_t incy) {
  cblas_sgemv(CblasRowMajor, Tr(t), rows, cols, alpha, A, lda, x, incx, beta, y, incy);
}
void BlasGemv(bool t, int64_t rows, int64_t cols, double alpha, const double* A, int64_t lda,
              const double* x, int64_t incx, double beta, double* y, int64_t incy) {
  cblas_dgemv(CblasRowMajor, Tr(t), rows, cols, alpha, A, lda, x, incx, beta, y, incy);
}

}  // namespace

void SetMatmulPrecision(MatmulPrecision precision) { g_precision.store(precision); }
MatmulPrecision GetMatmulPrecision() { return g_precision.load(); }
bool Bf16MatmulAvailable() { return internal::CpuHasAvx512Bf16(); }
bool MatmulInBf16() {
  return g_precision.load(std::memory_order_relaxed) == MatmulPrecision::kBf16 &&
         internal::CpuHasAvx512Bf16();
}

void RoundToBf16(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = internal::RoundBf16(x[i]);
}

absl::Status ParseMatmulPrecision(const std::string& name, MatmulPrecision* out) {
  if (name == "highest" || name == "fp32" || name == "float32" || name.empty()) {
    *out = MatmulPrecision::kHighest;
  } else if (name == "bf16" || name == "bfloat16") {  // model.dtype's spelling too
    *out = MatmulPrecision::kBf16;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown matmul precision '", name,
                                                   "' (expected highest or bf16)"));
  }
  return absl::OkStatus();
}

absl::Status SetMatmulPrecision(const std::string& name) {
  MatmulPrecision precision;
  if (absl::Status s = ParseMatmulPrecision(name, &precision); !s.ok()) return s;
  SetMatmulPrecision(precision);
  return absl::OkStatus();
}

template <typename T>
void Gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i) {
      if (beta == T(0)) {
        std::memset(C + i * ldc, 0, sizeof(T) * N);
      } else {
        Scale(beta, N, C + i * ldc);
      }
    }
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (MatmulInBf16()) {
      internal::GemmBf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
  }
  // BLAS reads y when beta == 0 only to scale it (NaN * 0 = NaN in some paths); clear first.
  if (M == 1) {
    // C[1, N] = alpha * a[1, K] op(B) + beta C: y = op(B)^T a. B is [K, N] (ldb) or [N, K].
    if (beta == T(0)) std::memset(C, 0, sizeof(T) * N);
    if (!trans_b) {
      BlasGemv(true, K, N, alpha, B, ldb, A, trans_a ? lda : 1, beta, C, 1);
    } else {
      BlasGemv(false, N, K, alpha, B, ldb, A, trans_a ? lda : 1, beta, C, 1);
    }
    return;
  }
  if (N == 1) {
    // C[M, 1] = alpha * op(A) b[K, 1] + beta C.
    if (beta == T(0)) {
      for (int64_t i = 0; i < M; ++i) C[i * ldc] = T(0);
    }
    if (!trans_a) {
      BlasGemv(false, M, K, alpha, A, lda, B, trans_b ? 1 : ldb, beta, C, ldc);
    } else {
      BlasGemv(true, K, M, alpha, A, lda, B, trans_b ? 1 : ldb, beta, C, ldc);
    }
    return;
  }
  BlasGemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

PackedWeights::PackedWeights(const std::vector<Matrix>& matrices) {
  if (g_precision.load() != MatmulPrecision::kBf16 || !internal::CpuHasAvx512Bf16()) return;
  std::vector<std::unique_ptr<internal::PackedB>> packed(matrices.size());
#pragma omp parallel for schedule(dynamic)
  for (size_t i = 0; i < matrices.size(); ++i) {
    const Matrix& m = matrices[i];
    if (m.out > 0 && m.in > 0) packed[i] = internal::PackB(true, m.in, m.out, m.w, m.in);
  }
  std::unique_lock lock(g_packed_mu);
  for (size_t i = 0; i < matrices.size(); ++i) {
    if (packed[i] == nullptr || g_packed.count(matrices[i].w)) continue;
    g_packed[matrices[i].w] = {matrices[i].out, matrices[i].in, std::move(packed[i])};
    keys_.push_back(matrices[i].w);
  }
  g_packed_count.store(static_cast<int64_t>(g_packed.size()), std::memory_order_release);
}

PackedWeights::~PackedWeights() {
  std::unique_lock lock(g_packed_mu);
  for (const float* k : keys_) g_packed.erase(k);
  g_packed_count.store(static_cast<int64_t>(g_packed.size()), std::memory_order_release);
}

template <typename T>
void LinearForward(const T* x, const T* w, const T* bias, int64_t N, int64_t in, int64_t out,
                   T* y) {
  const internal::PackedB* packed = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (N > 0 && g_precision.load(std::memory_order_relaxed) == MatmulPrecision::kBf16) {
      packed = FindPacked(w, out, in);
    }
  }
  if (packed != nullptr) {
    if constexpr (std::is_same_v<T, float>) {
      internal::GemmBf16(false, true, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out, packed);
    }
  } else {
    Gemm<T>(false, true, N, out, in, T(1), x, in, w, in, T(0), y, out);
  }
  if (bias != nullptr) {
    for (int64_t n = 0; n < N; ++n) Add(y + n * out, bias, out, y + n * out);
  }
}

template <typename T>
void LinearBackward(const T* dy, const T* x, const T* w, int64_t N, int64_t in, int64_t out,
                    T* dx, T* dw, T* dbias) {
  if (dx != nullptr) Gemm<T>(false, false, N, in, out, T(1), dy, out, w, in, T(1), dx, in);
  if (dw != nullptr) Gemm<T>(true, false, out, in, N, T(1), dy, out, x, in, T(1), dw, in);
  if (dbias != nullptr) {
    for (int64_t n = 0; n < N; ++n) Axpy(T(1), dy + n * out, out, dbias);
  }
}

absl::Status Matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor* c) {
  if (a.ndim() != 2 || b.ndim() != 2 || c->ndim() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("Matmul: 2-d tensors expected, got a ",
                                                   a.DebugString(), ", b ", b.DebugString(),
                                                   ", c ", c->DebugString()));
  }
  const int64_t M = trans_a ? a.dim(1) : a.dim(0);
  const int64_t K = trans_a ? a.dim(0) : a.dim(1);
  const int64_t Kb = trans_b ? b.dim(1) : b.dim(0);
  const int64_t N = trans_b ? b.dim(0) : b.dim(1);
  if (K != Kb || c->dim(0) != M || c->dim(1) != N || a.dtype() != b.dtype() ||
      a.dtype() != c->dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Matmul: shapes do not match: a ", a.DebugString(), trans_a ? "^T" : "", ", b ",
        b.DebugString(), trans_b ? "^T" : "", ", c ", c->DebugString()));
  }
  if (a.device() != Device::kCpu || b.device() != Device::kCpu || c->device() != Device::kCpu) {
    return absl::UnimplementedError("Matmul on CUDA tensors is not implemented yet (issue 7)");
  }
  switch (a.dtype()) {
    case DType::kF32:
      Gemm<float>(trans_a, trans_b, M, N, K, 1.0f, a.data<float>(), a.dim(1), b.data<float>(),
                  b.dim(1), 0.0f, c->data<float>(), N);
      return absl::OkStatus();
    case DType::kF64:
      Gemm<double>(trans_a, trans_b, M, N, K, 1.0, a.data<double>(), a.dim(1), b.data<double>(),
                   b.dim(1), 0.0, c->data<double>(), N);
      return absl::OkStatus();
    default:
      return absl::UnimplementedError(
          absl::StrCat("Matmul: dtype ", DTypeName(a.dtype()), " is not supported on the CPU"));
  }
}

#define RLVR_INSTANTIATE(T)                                                                   \
  template void Gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                        int64_t, T, T*, int64_t);                                             \
  template void LinearForward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, T*); \
  template void LinearBackward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, T*, \
                                  T*, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::kernels
