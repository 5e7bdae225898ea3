// Dense matrix products on the CPU through BLAS (OpenBLAS, OpenMP build), for float and double.
//
// Matrices are row-major with an explicit leading dimension (elements between consecutive rows),
// so a head's slice of a [N, H, D] activation is a matrix with ld = H*D. When called from inside
// an OpenMP parallel region, OpenBLAS runs single-threaded (no oversubscription); from outside it
// uses the OpenMP team. One-row and one-column products go to GEMV: OpenBLAS sgemm with M == 1
// (batch-1 decode) runs at a few GFLOP/s, gemv at memory speed.
#ifndef RLVR_KERNELS_MATMUL_H_
#define RLVR_KERNELS_MATMUL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/tensor.h"

namespace rlvr::kernels {

// Precision of float matrix products, process-wide (PyTorch's set_float32_matmul_precision):
//   kHighest  float32 operands and accumulation (OpenBLAS sgemm). The default; every parity
//             test against transformers runs in it.
//   kBf16     operands rounded to bfloat16 (nearest even), products accumulated in float32, on
//             CPUs with AVX512-BF16 (twice the fp32 rate); elsewhere float32 as kHighest.
//             Every float product of every shape (one-row decode products included), so a
//             row's result never depends on how many rows it is computed with. Like
//             torch.autocast(bf16) for the matrix products only: weights, activations and
//             gradients stay float32.
// Double-precision products are unaffected.
enum class MatmulPrecision { kHighest, kBf16 };
void SetMatmulPrecision(MatmulPrecision precision);
MatmulPrecision GetMatmulPrecision();
// "highest" | "bf16" (also "fp32"/"float32" for highest); InvalidArgument naming the value.
absl::Status ParseMatmulPrecision(const std::string& name, MatmulPrecision* out);
// ParseMatmulPrecision then SetMatmulPrecision; on error the precision is left unchanged.
absl::Status SetMatmulPrecision(const std::string& name);
// True when kBf16 actually runs bf16 products on this CPU.
bool Bf16MatmulAvailable();
// True when the current precision is kBf16 and this CPU runs it (products round to bf16).
bool MatmulInBf16();
// Rounds x[0, n) to the nearest bf16 values (kept as float): what a kBf16 product does to its
// operands. The decode-time attention kernels, which compute their dot products without a GEMM,
// apply it to queries, cached keys/values and probabilities when MatmulInBf16(), so that
// decoding gives what the GEMM-based full forward gives.
void RoundToBf16(float* x, int64_t n);

// Weight matrices packed once for many products, as the rollout engine's decode steps do.
// While a PackedWeights object lives, LinearForward<float>(x, w, ...) with one of its
// matrices `w` ([out, in], the nn.Linear layout) reads the packed bf16 copy instead of
// converting w on every call, when the precision is kBf16 at the time of the call; the result
// is bit for bit what the unpacked kBf16 product gives (one-row products included, which then
// also run in bf16 instead of the float32 GEMV). The matrices must not change while the object
// lives (it would silently keep using the old values). Under kHighest, or on a CPU without
// AVX512-BF16, constructing one packs nothing. Objects may coexist (distinct matrices).
class PackedWeights {
 public:
  struct Matrix {
    const float* w;
    int64_t out, in;
  };
  explicit PackedWeights(const std::vector<Matrix>& matrices);
  ~PackedWeights();
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;
  int64_t packed_matrices() const { return static_cast<int64_t>(keys_.size()); }

 private:
  std::vector<const float*> keys_;
};

// C[M, N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T.
// op(A) is [M, K]: A is [M, K] (lda >= K) or, transposed, [K, M] (lda >= M); likewise op(B) is
// [K, N]. beta == 0 ignores C's prior contents (NaNs included). M, N or K == 0 is allowed (with
// K == 0, C = beta * C).
template <typename T>
void Gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// y[N, out] = x[N, in] @ w[out, in]^T (+ bias[out] if not null): the HF nn.Linear layout.
template <typename T>
void LinearForward(const T* x, const T* w, const T* bias, int64_t N, int64_t in, int64_t out,
                   T* y);

// Backward of LinearForward given dy[N, out]. Every gradient ACCUMULATES (+=):
//   dx[N, in] += dy @ w      (skipped if dx is null)
//   dw[out, in] += dy^T @ x  (skipped if dw is null)
//   dbias[out] += sum_n dy   (skipped if dbias is null)
template <typename T>
void LinearBackward(const T* dy, const T* x, const T* w, int64_t N, int64_t in, int64_t out,
                    T* dx, T* dw, T* dbias);

// Tensor-level entry: c = a @ b (with transposes), over 2-D tensors of one dtype (f32 or f64)
// on one device. InvalidArgument on shape/dtype mismatch (naming the shapes); Unimplemented for
// a CUDA tensor in a build without CUDA, or bf16.
absl::Status Matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor* c);

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_MATMUL_H_
