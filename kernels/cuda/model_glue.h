// Small element-wise kernels that glue the dense / attention / MoE kernels into a whole model on
// the GPU (policy/model/cuda_model.h): dtype conversions, the fused q/k/v post-processing of an
// attention layer, the paired SwiGLU of a fused gate|up projection, bias and residual adds, and
// a greedy argmax over logits. Each mirrors the CPU computation it replaces (noted per function)
// in fp32; bf16 outputs are rounded once, to nearest even.
//
// Conventions (kernels/cuda/cuda.h, dense.h): device pointers; asynchronous on `stream`; sizes
// and required pointers validated on the host first (InvalidArgument naming the function and
// argument); a size of 0 is a no-op; Unimplemented("built without CUDA") without the backend.
#ifndef RLVR_KERNELS_CUDA_MODEL_GLUE_H_
#define RLVR_KERNELS_CUDA_MODEL_GLUE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {

// y[i] = bf16(x[i]) for i < n.
absl::Status ConvertF32ToBf16(const float* x, int64_t n, uint16_t* y, Stream stream = nullptr);

// RMSNorm of fp32 rows with a bf16 result (the input of the next GEMM), as
// kernels::RmsNormForward<float>: rstd = 1 / sqrt(sum_c x^2 / C + eps), y = bf16(w * (x * rstd)).
// x [R, C] fp32, w [C] fp32, y [R, C] bf16; rstd [R] fp32 written when not null (what
// dense.h's RmsNormBackwardF32 takes). One block per row.
absl::Status RmsNormF32ToBf16(const float* x, const float* w, int64_t R, int64_t C, double eps,
                              uint16_t* y, float* rstd, Stream stream = nullptr);

// The attention input after the fused projection qkv = x [Wq; Wk; Wv]^T, fp32 [N, (H + 2 Hkv) D]
// (per row: H query heads, then Hkv key heads, then Hkv value heads, each D wide), as
// policy/layers/attention.cc's ProjectQkv does it on the CPU:
//   + bias [(H + 2 Hkv) D] fp32 if not null (q/k/v biases, qwen2);
//   query and key heads: RMSNorm over the head (q_norm / k_norm [D] fp32, same eps formula as
//     RmsNormF32ToBf16) if q_norm is not null (k_norm must then be given too), then RoPE
//     (rotate_half with cos, sin [N, D/2] fp32 from BuildRopeTableF32: x1' = x1 c - x2 s,
//     x2' = x2 c + x1 s);
//   written as bf16: q [N, H, D], k [N, Hkv, D], v [N, Hkv, D].
// One warp per (row, head); D even and at most 256.
absl::Status QkvPrepare(const float* qkv, const float* bias, const float* q_norm,
                        const float* k_norm, double eps, const float* cos, const float* sin,
                        int64_t N, int64_t H, int64_t Hkv, int64_t D, uint16_t* q, uint16_t* k,
                        uint16_t* v, Stream stream = nullptr);

// Backward of QkvPrepare (the training step). Given dq [N, H, D], dk [N, Hkv, D], dv [N, Hkv, D]
// bf16 (gradients w.r.t. the q, k, v that QkvPrepare wrote) and the forward's inputs (qkv: the
// same fp32 GEMM output, without bias; bias, q_norm, k_norm, eps, cos, sin as in the forward),
// differentiates the fp32 map of QkvPrepare, the bf16 rounding of q/k/v taken as the identity
// (straight-through). Per (row n, head), with a = qkv + bias and g the head's gradient:
//   inverse RoPE: db[j] = g[j] c + g[j+D/2] s, db[j+D/2] = g[j+D/2] c - g[j] s (query / key);
//   with q/k norm (w = q_norm or k_norm, r = 1 / sqrt(mean_d a^2 + eps)):
//     da = r * (w db - a r^2 mean_d(w db a)),  d w += db * a * r;
//   without: da = db; value heads: da = g.
// Written (not accumulated): dqkv [N, (H + 2 Hkv) D] fp32 = d loss / d qkv, which per row is
// also d loss / d bias (sum the rows with ColumnSumF32); dnorm_rows [N, 2, D] fp32 when q_norm is
// not null (may be null otherwise): [n, 0, :] = sum over the H query heads of row n of db * a * r
// (the q_norm gradient of row n), [n, 1, :] = the same over the Hkv key heads (k_norm); sum the
// rows with ColumnSumF32 (ldx = 2D). Deterministic: one block per row, heads summed in a fixed
// order, no atomics. D even and at most 256, as the forward.
absl::Status QkvPrepareBackward(const uint16_t* dq, const uint16_t* dk, const uint16_t* dv,
                                const float* qkv, const float* bias, const float* q_norm,
                                const float* k_norm, double eps, const float* cos,
                                const float* sin, int64_t N, int64_t H, int64_t Hkv, int64_t D,
                                float* dqkv, float* dnorm_rows, Stream stream = nullptr);

// out[c] += sum_{r < R} x[r * ldx + c] for c < C (ACCUMULATES), fp32, ldx >= C: the bias and
// norm-weight gradients from per-row gradients (a column slice of dqkv: x = dqkv + offset, ldx =
// the row width). Deterministic: each block owns 32 columns and sums rows in a fixed order (16
// row slices of stride 16, then the slices in order); no atomics.
absl::Status ColumnSumF32(const float* x, int64_t R, int64_t C, int64_t ldx, float* out,
                          Stream stream = nullptr);

// SwiGLU of a fused gate|up product gu [N, 2I] (row n: gate[0, I) then up[0, I)), fp32 or bf16:
// out[n, i] = bf16(silu(g) * u), silu(g) = g / (1 + exp(-g)) (kernels::SwigluForward).
// out [N, I] bf16.
absl::Status SwigluPairedF32ToBf16(const float* gu, int64_t N, int64_t I, uint16_t* out,
                                   Stream stream = nullptr);
absl::Status SwigluPairedBf16(const uint16_t* gu, int64_t N, int64_t I, uint16_t* out,
                              Stream stream = nullptr);

// Backward of SwigluPairedF32ToBf16, as kernels::SwigluBackward<float>: given dact [N, I] fp32
// and the forward's gu [N, 2I] fp32, with s = 1 / (1 + exp(-g)), silu = g s:
//   dgu[n, i] = bf16(dact * u * (s + silu (1 - s))),  dgu[n, I + i] = bf16(dact * silu).
// dgu [N, 2I] bf16 written (the gradient of the fused gate|up GEMM output).
absl::Status SwigluPairedBackwardF32ToBf16(const float* dact, const float* gu, int64_t N,
                                           int64_t I, uint16_t* dgu, Stream stream = nullptr);

// y[n, c] += bias[c] for y [N, C] fp32 (an o_proj bias on the residual stream).
absl::Status AddRowBiasF32(const float* bias, int64_t N, int64_t C, float* y,
                           Stream stream = nullptr);

// x[i] += float(y[i]) for i < n; x fp32, y bf16 (a bf16 block output onto the residual stream).
absl::Status AddBf16ToF32(const uint16_t* y, int64_t n, float* x, Stream stream = nullptr);

// out[r] = the first index of the largest of logits[r, 0..valid) (rollout/sampler.h's greedy
// choice; NaNs are never chosen unless the whole row is NaN, then 0). logits [R, V] fp32 with
// row stride V, 1 <= valid <= V; out [R] int32. One block per row.
absl::Status ArgmaxRows(const float* logits, int64_t R, int64_t V, int64_t valid, int32_t* out,
                        Stream stream = nullptr);

}  // namespace rlvr::kernels::cuda

#endif  // RLVR_KERNELS_CUDA_MODEL_GLUE_H_
