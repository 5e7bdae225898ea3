// The dense CUDA kernels of the policy and the optimizer (issue 7): GEMM through cuBLASLt,
// RMSNorm (+ residual), RoPE, SwiGLU, log-softmax statistics and their gradient, multi-tensor
// AdamW with global-norm clipping, and the token embedding. Each mirrors a CPU kernel of
// kernels/*.h (same argument order and meaning, noted per function) so a layer swaps one for the
// other; deviations are stated where they occur.
//
// Conventions (shared with kernels/cuda/cuda.h):
//   * Every pointer is a DEVICE pointer unless stated otherwise. bf16 tensors are passed as
//     uint16_t bit patterns (core/dtype.h's F32ToBf16 / Bf16ToF32 on the host); "bf16" below
//     means such a pointer. Shapes and dtypes are given per argument: `[R, C] bf16`.
//   * Every entry point is asynchronous on `stream` (nullptr = the legacy default stream): it
//     validates its arguments on the host, enqueues, and returns the launch status. Errors inside
//     a kernel show at the next Synchronize. Functions that synchronize say so.
//   * Bad arguments (negative sizes, null required pointers, inconsistent leading dimensions)
//     return InvalidArgument naming the function and the argument, before any CUDA call; a size
//     of 0 is a no-op. In a build without CUDA every function returns Unimplemented("built
//     without CUDA") (argument checks included), so callers never #ifdef.
//   * All arithmetic accumulates in fp32 (the grad norm in fp64); bf16 outputs are rounded once,
//     to nearest even, when stored.
//   * Determinism: every kernel gives bit-identical results run to run on one device, except
//     EmbeddingBackward* (fp32 atomicAdd: rows of repeated token ids are summed in an
//     unspecified order) and the GEMMs (cuBLASLt's algorithm choice may differ between devices
//     or library versions; for one device and shape it is fixed).
#ifndef RLVR_KERNELS_CUDA_DENSE_H_
#define RLVR_KERNELS_CUDA_DENSE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {

// ---------------------------------------------------------------------------------------------
// GEMM (kernels/matmul.h's Gemm): C[M, N] = alpha * op(A) @ op(B) + beta * C, row-major with
// leading dimensions, op(X) = X or X^T. op(A) is [M, K]: A is [M, K] (lda >= K) or, transposed,
// [K, M] (lda >= M); op(B) is [K, N]: B is [K, N] (ldb >= N) or [N, K] (ldb >= K); ldc >= N.
// beta == 0 ignores C's prior contents (NaNs included). M or N == 0 is a no-op; K == 0 gives
// C = beta * C. Runs cuBLASLt (the row-major product is the column-major C^T = op(B)^T op(A)^T)
// with one handle per device, created on first use, and one 32 MiB workspace per (device,
// stream) pair; the handle lives until the process exits, a workspace until then or until
// ReleaseGemmWorkspace(stream). Thread-safe: any thread, any stream (two
// threads must not share one stream concurrently, as with any CUDA work). The algorithm chosen
// by cuBLASLt's heuristic is cached per shape, dtype and pointer alignment. Pointers need only
// element alignment (sub-matrices at any offset are fine).

// Precision of fp32 products (kernels::MatmulPrecision):
//   kHighest  fp32 operands and accumulation (CUBLAS_COMPUTE_32F, no TF32): matches kHighest.
//   kTf32     operands rounded to TF32 on the tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32).
//   kBf16     operands rounded to bf16, fp32 accumulation (CUBLAS_COMPUTE_32F_FAST_16BF): the
//             semantics of kernels::MatmulPrecision::kBf16.
enum class GemmPrecision { kHighest, kTf32, kBf16 };

// Frees the workspace the GEMMs allocated for `stream` on the current device, if any: call it
// before destroying a stream from StreamCreate that ran GEMMs (and after destroying every CUDA
// graph that captured them: the graphs hold the workspace's address), else its 32 MiB stay
// allocated until the process exits. Waits for the device (cudaFree). Not to be called while
// another thread runs GEMMs on the same stream.
void ReleaseGemmWorkspace(Stream stream);

// A, B, C fp32.
absl::Status GemmF32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, GemmPrecision precision = GemmPrecision::kHighest,
                     Stream stream = nullptr);
// A, B bf16, fp32 accumulation; C bf16 (read as bf16 when beta != 0) or fp32.
absl::Status GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                      uint16_t* C, int64_t ldc, Stream stream = nullptr);
absl::Status GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                      float* C, int64_t ldc, Stream stream = nullptr);

// `batch` independent products: matrix i of A starts at A + i * stride_a (elements), likewise B
// and C. stride_a or stride_b may be 0 (one matrix shared by every product); C's matrices must
// not overlap (stride_c >= (M - 1) * ldc + N when batch > 1). batch == 0 is a no-op.
absl::Status GemmStridedBatchedF32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                   float alpha, const float* A, int64_t lda, int64_t stride_a,
                                   const float* B, int64_t ldb, int64_t stride_b, float beta,
                                   float* C, int64_t ldc, int64_t stride_c, int64_t batch,
                                   GemmPrecision precision = GemmPrecision::kHighest,
                                   Stream stream = nullptr);
absl::Status GemmStridedBatchedBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                    float alpha, const uint16_t* A, int64_t lda,
                                    int64_t stride_a, const uint16_t* B, int64_t ldb,
                                    int64_t stride_b, float beta, uint16_t* C, int64_t ldc,
                                    int64_t stride_c, int64_t batch, Stream stream = nullptr);
absl::Status GemmStridedBatchedBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                    float alpha, const uint16_t* A, int64_t lda,
                                    int64_t stride_a, const uint16_t* B, int64_t ldb,
                                    int64_t stride_b, float beta, float* C, int64_t ldc,
                                    int64_t stride_c, int64_t batch, Stream stream = nullptr);

// ---------------------------------------------------------------------------------------------
// RMSNorm (kernels/rmsnorm.h): y[r, c] = w[c] * (x[r, c] * rstd[r]),
// rstd[r] = 1 / sqrt(mean_c x[r, c]^2 + eps). One block per row. x, y: [R, C]; w: [C];
// rstd: [R] fp32, saved for the backward (may be null). y may alias x. The bf16 variants take
// bf16 x, w, y and compute in fp32 (one rounding, of y).
absl::Status RmsNormForwardF32(const float* x, const float* w, int64_t R, int64_t C, double eps,
                               float* y, float* rstd, Stream stream = nullptr);
absl::Status RmsNormForwardBf16(const uint16_t* x, const uint16_t* w, int64_t R, int64_t C,
                                double eps, uint16_t* y, float* rstd, Stream stream = nullptr);

// Fused residual add + RMSNorm (the pre-norm block input): h = x + residual is written to h
// ([R, C]; rounded to bf16 in the bf16 variant), then y = rmsnorm(h) as above, computed from
// the stored (rounded) h so that the backward, which is given h, sees what the forward used.
// h and y may alias x or residual.
absl::Status AddRmsNormForwardF32(const float* x, const float* residual, const float* w,
                                  int64_t R, int64_t C, double eps, float* h, float* y,
                                  float* rstd, Stream stream = nullptr);
absl::Status AddRmsNormForwardBf16(const uint16_t* x, const uint16_t* residual, const uint16_t* w,
                                   int64_t R, int64_t C, double eps, uint16_t* h, uint16_t* y,
                                   float* rstd, Stream stream = nullptr);

// Backward, given dy[R, C] and the forward's x (h for the fused form) and rstd:
//   dx[R, C] += rstd * (w*dy - x * rstd^2 * mean_c(w*dy*x))   (ACCUMULATES; dx may not alias)
//   dw[C]    += sum_r dy * x * rstd                              (ACCUMULATES; skipped if null)
// dw is deterministic without float atomics: each of P = min(R, 256) blocks sums its rows'
// contributions into `workspace` (P * C fp32, see RmsNormBackwardWorkspaceFloats; needed only
// when dw is not null) and a second kernel adds the P partial rows, in order, to dw. The
// per-block partial row lives in shared memory (4*C bytes); C <= 49152.
// bf16 variant: dy, x, w, dx bf16 (dx read, accumulated in fp32, rounded once); rstd, dw fp32.
int64_t RmsNormBackwardWorkspaceFloats(int64_t R, int64_t C);
absl::Status RmsNormBackwardF32(const float* dy, const float* x, const float* w,
                                const float* rstd, int64_t R, int64_t C, float* dx, float* dw,
                                float* workspace, Stream stream = nullptr);
absl::Status RmsNormBackwardBf16(const uint16_t* dy, const uint16_t* x, const uint16_t* w,
                                 const float* rstd, int64_t R, int64_t C, uint16_t* dx, float* dw,
                                 float* workspace, Stream stream = nullptr);

// ---------------------------------------------------------------------------------------------
// RoPE (kernels/rope.h, Hugging Face rotate_half: halves [x1 | x2] of each head, angle
// a_j = pos * inv_freq_j, inv_freq_j = 1 / theta^(2j/D)).
// BuildRopeTableF32: cos, sin [N, D/2] fp32 for positions[N] (device int32; non-negative ids).
// inv_freq is computed on the host with the CPU's float expression (bit-identical); the angle
// is the same float product; cos/sin are evaluated in double and rounded, so each entry is
// within 1 ulp of the CPU table. D must be even and at most 1024.
absl::Status BuildRopeTableF32(const int32_t* positions, int64_t N, int64_t D, double theta,
                               float* cos, float* sin, Stream stream = nullptr);
// In place on x[N, heads, D] (fp32 or bf16): rotates every head of row n by the angles of row n
// of the tables. The backward is the transpose rotation (angle -a), also in place on dx.
absl::Status RopeForwardF32(const float* cos, const float* sin, int64_t N, int64_t heads,
                            int64_t D, float* x, Stream stream = nullptr);
absl::Status RopeBackwardF32(const float* cos, const float* sin, int64_t N, int64_t heads,
                             int64_t D, float* dx, Stream stream = nullptr);
absl::Status RopeForwardBf16(const float* cos, const float* sin, int64_t N, int64_t heads,
                             int64_t D, uint16_t* x, Stream stream = nullptr);
absl::Status RopeBackwardBf16(const float* cos, const float* sin, int64_t N, int64_t heads,
                              int64_t D, uint16_t* dx, Stream stream = nullptr);

// ---------------------------------------------------------------------------------------------
// SwiGLU (kernels/elementwise.h): out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
// out may alias gate or up. SwigluForwardF32 with four arguments (cuda.h) is the same kernel
// followed by a device synchronize, kept for its callers.
absl::Status SwigluForwardF32(const float* gate, const float* up, int64_t n, float* out,
                              Stream stream);
absl::Status SwigluForwardBf16(const uint16_t* gate, const uint16_t* up, int64_t n,
                               uint16_t* out, Stream stream = nullptr);
// Backward given dout: dgate = dout * up * (s + silu * (1 - s)), s = sigmoid(gate);
// dup = dout * silu. dgate and dup are OVERWRITTEN and may not alias gate or up.
absl::Status SwigluBackwardF32(const float* dout, const float* gate, const float* up, int64_t n,
                               float* dgate, float* dup, Stream stream = nullptr);
absl::Status SwigluBackwardBf16(const uint16_t* dout, const uint16_t* gate, const uint16_t* up,
                                int64_t n, uint16_t* dgate, uint16_t* dup,
                                Stream stream = nullptr);

// ---------------------------------------------------------------------------------------------
// Log-softmax statistics (kernels/softmax.h's LogSoftmaxStats) without materializing the
// probabilities: one block per row, one pass over the row keeping per thread the online triple
// (max m, S = sum e^(u-m), A = sum e^(u-m) (u-m)) of u = scale * z, merged across the block in a
// fixed order. logits [R, V] (row stride V; fp32 or bf16); entries at index >= valid are padding
// (treated as -inf), 1 <= valid <= V. Outputs fp32 [R]:
//   lse[r] = log sum_j exp(scale z_j)                    (required)
//   logprob[r] = scale * z[r, target[r]] - lse[r]        (if not null; needs target)
//   entropy[r] = -sum_j p_j log p_j = log S - A / S      (if not null)
// target [R] int32 in [0, valid); a target outside it gives logprob NaN (it cannot be checked
// on the host without a synchronize).
absl::Status LogSoftmaxStatsF32(const float* logits, const int32_t* target, int64_t R, int64_t V,
                                int64_t valid, double scale, float* lse, float* logprob,
                                float* entropy, Stream stream = nullptr);
absl::Status LogSoftmaxStatsBf16(const uint16_t* logits, const int32_t* target, int64_t R,
                                 int64_t V, int64_t valid, double scale, float* lse,
                                 float* logprob, float* entropy, Stream stream = nullptr);

// Overwrites logits[R, V] with d(loss)/d(logits) (kernels/softmax.h's LogSoftmaxGradInPlace):
//   p = exp(scale z - lse), l = log p, H = entropy[r]
//   dz_j = scale * (dlogprob * (1[j == target] - p_j) - dentropy * p_j * (l_j + H))
// and 0 for j >= valid. dlogprob, dentropy [R] fp32 may be null (0); entropy is needed when
// dentropy is given; target may be null (no one-hot term) and out-of-range targets add none.
// lse and entropy are what LogSoftmaxStats* returned. bf16 logits: the gradient is computed in
// fp32 and rounded once.
absl::Status LogSoftmaxGradInPlaceF32(const int32_t* target, const float* lse,
                                      const float* entropy, const float* dlogprob,
                                      const float* dentropy, int64_t R, int64_t V, int64_t valid,
                                      double scale, float* logits, Stream stream = nullptr);
absl::Status LogSoftmaxGradInPlaceBf16(const int32_t* target, const float* lse,
                                       const float* entropy, const float* dlogprob,
                                       const float* dentropy, int64_t R, int64_t V,
                                       int64_t valid, double scale, uint16_t* logits,
                                       Stream stream = nullptr);

// ---------------------------------------------------------------------------------------------
// AdamW with global gradient-norm clipping, over many tensors in one launch per phase, with the
// semantics of policy/optim/adamw.h's AdamW::Step (PyTorch clip_grad_norm_ + torch.optim.AdamW):
//   norm = sqrt(sum over all tensors of grad^2)   (fp64, deterministic: fixed per-block partials
//                                                  then one block sums them in a fixed order)
//   skipped = norm is not finite: nothing below happens (params, m, v, bf16 copies untouched)
//   clip = max_grad_norm > 0 && norm > max_grad_norm ? max_grad_norm / (norm + 1e-6) : 1
//   per element, g = grad * clip (grad itself is not written):
//     p *= 1 - lr * wd   (wd = weight_decay for tensors with decay, else 0)
//     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//     p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   and, for tensors with a bf16 copy, param_bf16 = bf16(p).
// The step number t and the learning rate come from the caller (policy/optim's LearningRate);
// the scalar factors are formed on the host exactly as the CPU optimizer forms them. The norm,
// clip and skip flag stay on the device (no synchronize per step); LastStepResult() reads them.
// The CPU optimizer does not advance t after a skipped step: a caller reproducing that reads the
// result before choosing the next t.
struct AdamWTensor {
  float* param = nullptr;            // [numel] fp32 master weights, updated in place
  const float* grad = nullptr;       // [numel] fp32, read only
  float* exp_avg = nullptr;          // [numel] fp32 m
  float* exp_avg_sq = nullptr;       // [numel] fp32 v
  uint16_t* param_bf16 = nullptr;    // [numel] bf16 copy of the updated param, or null
  int64_t numel = 0;
  bool decay = true;                 // weight decay applies
};

struct AdamWStepConfig {
  double lr = 0;         // this step's learning rate
  int64_t step = 1;      // t, 1-based (the CPU's step count after its increment)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // <= 0: no clipping
};

struct AdamWStepResult {
  double grad_norm = 0;  // before clipping
  float clip = 1;        // the factor applied to the gradients
  bool clipped = false;
  bool skipped = false;  // non-finite norm: nothing was updated
};

class AdamWMultiTensor {
 public:
  // Uploads the tensor list (pointers and sizes; the tensors themselves must outlive the object
  // and keep their addresses) and a table of fixed-size chunks over it; synchronizes.
  // InvalidArgument naming the index of a tensor with a null param/grad/m/v or numel <= 0.
  static absl::StatusOr<std::unique_ptr<AdamWMultiTensor>> Create(
      const std::vector<AdamWTensor>& tensors);
  ~AdamWMultiTensor();
  AdamWMultiTensor(const AdamWMultiTensor&) = delete;
  AdamWMultiTensor& operator=(const AdamWMultiTensor&) = delete;

  // One optimizer step: three launches (norm partials, norm + clip, update), asynchronous.
  // InvalidArgument for lr < 0, beta outside [0, 1), eps <= 0, weight_decay < 0 or step < 1.
  absl::Status Step(const AdamWStepConfig& config, Stream stream = nullptr);
  // Only the global gradient norm (sqrt of the sum of grad^2 in fp64); synchronizes `stream`.
  absl::StatusOr<double> GradNorm(Stream stream = nullptr);
  // The result of the last Step, read on `stream` (the one the Step ran on); synchronizes it.
  // FailedPrecondition before any Step, or when GradNorm ran after the last Step.
  absl::StatusOr<AdamWStepResult> LastStepResult(Stream stream = nullptr);

  int64_t num_tensors() const;
  int64_t num_chunks() const;

  struct Impl;

 private:
  explicit AdamWMultiTensor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------------
// Embedding (kernels/embedding.h). out[n, :] = table[ids[n], :]; ids [N] int32, table [V, C],
// out [N, C] (fp32 or bf16). Ids cannot be checked on the host without a synchronize: an id
// outside [0, V) fills its output row with NaN. ValidateTokenIds gives the CPU kernel's error.
absl::Status EmbeddingForwardF32(const int32_t* ids, const float* table, int64_t N, int64_t V,
                                 int64_t C, float* out, Stream stream = nullptr);
absl::Status EmbeddingForwardBf16(const int32_t* ids, const uint16_t* table, int64_t N,
                                  int64_t V, int64_t C, uint16_t* out, Stream stream = nullptr);
// OK if every ids[n] is in [0, V); else InvalidArgument naming the first such position and id,
// worded as the CPU EmbeddingForward's. Synchronizes `stream`.
absl::Status ValidateTokenIds(const int32_t* ids, int64_t N, int64_t V, Stream stream = nullptr);
// dtable[ids[n], :] += dout[n, :] (ACCUMULATES) into an fp32 table [V, C] (the CPU signature plus
// V, so that out-of-range ids are skipped instead of writing outside the table). Uses fp32
// atomicAdd: rows of a token id that occurs more than once are summed in an unspecified order,
// so results may differ run to run in the last bits (a token occurring once is exact).
// dout fp32 or bf16.
absl::Status EmbeddingBackwardF32(const int32_t* ids, const float* dout, int64_t N, int64_t V,
                                  int64_t C, float* dtable, Stream stream = nullptr);
absl::Status EmbeddingBackwardBf16(const int32_t* ids, const uint16_t* dout, int64_t N,
                                   int64_t V, int64_t C, float* dtable, Stream stream = nullptr);

}  // namespace rlvr::kernels::cuda

#endif  // RLVR_KERNELS_CUDA_DENSE_H_
