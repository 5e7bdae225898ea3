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
// x [R, C] fp32, w [C] fp32, y [R, C] bf16. One block per row.
absl::Status RmsNormF32ToBf16(const float* x, const float* w, int64_t R, int64_t C, double eps,
                              uint16_t* y, Stream stream = nullptr);

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

// SwiGLU of a fused gate|up product gu [N, 2I] (row n: gate[0, I) then up[0, I)), fp32 or bf16:
// out[n, i] = bf16(silu(g) * u), silu(g) = g / (1 + exp(-g)) (kernels::SwigluForward).
// out [N, I] bf16.
absl::Status SwigluPairedF32ToBf16(const float* gu, int64_t N, int64_t I, uint16_t* out,
                                   Stream stream = nullptr);
absl::Status SwigluPairedBf16(const uint16_t* gu, int64_t N, int64_t I, uint16_t* out,
                              Stream stream = nullptr);

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
