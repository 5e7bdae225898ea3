// Glue kernels of the model on the GPU (see kernels/cuda/model_glue.h). All element-wise or one
// block / one warp per row; fp32 arithmetic, bf16 rounded once when stored.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dense_util.cuh"
#include "kernels/cuda/model_glue.h"

namespace rlvr::kernels::cuda {
namespace {

using internal::Bf16;
using internal::BlockSum;
using internal::CheckPtr;
using internal::CheckSize;
using internal::GridFor;
using internal::Load;
using internal::WarpSum;

constexpr int kThreads = 256;

__global__ void ConvertKernel(const float* __restrict__ x, int64_t n, __nv_bfloat16* __restrict__ y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __float2bfloat16_rn(x[i]);
  }
}

__global__ void RmsNormToBf16Kernel(const float* __restrict__ x, const float* __restrict__ w,
                                    int64_t C, float eps, __nv_bfloat16* __restrict__ y,
                                    float* __restrict__ rstd) {
  __shared__ float scratch[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * C;
  __nv_bfloat16* yr = y + static_cast<int64_t>(blockIdx.x) * C;
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss = fmaf(xr[c], xr[c], ss);
  ss = BlockSum(ss, scratch);
  const float rs = 1.f / sqrtf(ss / static_cast<float>(C) + eps);
  if (rstd != nullptr && threadIdx.x == 0) rstd[blockIdx.x] = rs;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    yr[c] = __float2bfloat16_rn(w[c] * (xr[c] * rs));
  }
}

constexpr int kQkvWarps = 4;
constexpr int kMaxHeadDim = 256;

// One warp per (row n, head hd of the H + 2 Hkv heads of the fused projection).
__global__ void __launch_bounds__(kQkvWarps * 32)
    QkvPrepareKernel(const float* __restrict__ qkv, const float* __restrict__ bias,
                     const float* __restrict__ q_norm, const float* __restrict__ k_norm,
                     float eps, const float* __restrict__ cos, const float* __restrict__ sin,
                     int64_t N, int H, int Hkv, int D, __nv_bfloat16* __restrict__ q,
                     __nv_bfloat16* __restrict__ k, __nv_bfloat16* __restrict__ v) {
  __shared__ float buf[kQkvWarps][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int heads = H + 2 * Hkv;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kQkvWarps + warp;
  if (item >= N * heads) return;  // warp-uniform; the kernel has no block-wide barrier
  const int64_t n = item / heads;
  const int hd = static_cast<int>(item % heads);
  const float* src = qkv + item * D;  // row n, head hd: (n * heads + hd) * D
  const float* b = bias ? bias + static_cast<int64_t>(hd) * D : nullptr;
  float* x = buf[warp];
  const bool is_q = hd < H, is_k = !is_q && hd < H + Hkv;
  for (int d = lane; d < D; d += 32) x[d] = b ? src[d] + b[d] : src[d];
  __syncwarp();
  if ((is_q || is_k) && q_norm != nullptr) {
    const float* w = is_q ? q_norm : k_norm;
    float ss = 0.f;
    for (int d = lane; d < D; d += 32) ss = fmaf(x[d], x[d], ss);
    ss = WarpSum(ss);
    const float rs = 1.f / sqrtf(ss / static_cast<float>(D) + eps);
    __syncwarp();
    for (int d = lane; d < D; d += 32) x[d] = w[d] * (x[d] * rs);
    __syncwarp();
  }
  __nv_bfloat16* dst;
  if (is_q) {
    dst = q + (n * H + hd) * D;
  } else if (is_k) {
    dst = k + (n * Hkv + (hd - H)) * D;
  } else {
    dst = v + (n * Hkv + (hd - H - Hkv)) * D;
  }
  if (is_q || is_k) {
    const int half = D / 2;
    const float* cr = cos + n * half;
    const float* sr = sin + n * half;
    for (int j = lane; j < half; j += 32) {
      const float a = x[j], bb = x[j + half], c = cr[j], s = sr[j];
      dst[j] = __float2bfloat16_rn(a * c - bb * s);
      dst[j + half] = __float2bfloat16_rn(bb * c + a * s);
    }
  } else {
    for (int d = lane; d < D; d += 32) dst[d] = __float2bfloat16_rn(x[d]);
  }
}

// Backward of QkvPrepareKernel: one block per row n, warp w handling heads w, w + kQkvWarps, ...
// Lane l owns the rotation pairs (j, j + D/2) for j = l + 32 p, p < kPairs, in registers.
// dnorm contributions are summed per warp over its heads (ascending), then over the warps in
// order through shared memory: a fixed order, so the result is deterministic.
constexpr int kPairs = kMaxHeadDim / 64;
__global__ void __launch_bounds__(kQkvWarps * 32)
    QkvPrepareBackwardKernel(const __nv_bfloat16* __restrict__ dq,
                             const __nv_bfloat16* __restrict__ dk,
                             const __nv_bfloat16* __restrict__ dv, const float* __restrict__ qkv,
                             const float* __restrict__ bias, const float* __restrict__ q_norm,
                             const float* __restrict__ k_norm, float eps,
                             const float* __restrict__ cos, const float* __restrict__ sin, int H,
                             int Hkv, int D, float* __restrict__ dqkv,
                             float* __restrict__ dnorm_rows) {
  __shared__ float part[kQkvWarps][2][kMaxHeadDim];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int heads = H + 2 * Hkv, half = D / 2;
  const int64_t n = blockIdx.x;
  const bool norm = q_norm != nullptr;
  const float* cr = cos + n * half;
  const float* sr = sin + n * half;
  // Per-lane dnorm sums over this warp's query (0) and key (1) heads, for d = j and j + half.
  float wq1[kPairs] = {}, wq2[kPairs] = {}, wk1[kPairs] = {}, wk2[kPairs] = {};
  for (int hd = warp; hd < heads; hd += kQkvWarps) {
    const float* src = qkv + (n * heads + hd) * D;
    float* dst = dqkv + (n * heads + hd) * D;
    const float* b = bias ? bias + static_cast<int64_t>(hd) * D : nullptr;
    const bool is_q = hd < H, is_k = !is_q && hd < H + Hkv;
    if (!is_q && !is_k) {  // value head: the identity
      const __nv_bfloat16* g = dv + (n * Hkv + (hd - H - Hkv)) * D;
      for (int d = lane; d < D; d += 32) dst[d] = __bfloat162float(g[d]);
      continue;
    }
    const __nv_bfloat16* g = is_q ? dq + (n * H + hd) * D : dk + (n * Hkv + (hd - H)) * D;
    float a1[kPairs], a2[kPairs], d1[kPairs], d2[kPairs];
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      const int j = lane + 32 * p;
      a1[p] = a2[p] = d1[p] = d2[p] = 0.f;
      if (j < half) {
        a1[p] = b ? src[j] + b[j] : src[j];
        a2[p] = b ? src[j + half] + b[j + half] : src[j + half];
        const float g1 = __bfloat162float(g[j]), g2 = __bfloat162float(g[j + half]);
        const float c = cr[j], s = sr[j];
        d1[p] = g1 * c + g2 * s;  // d b[j]
        d2[p] = g2 * c - g1 * s;  // d b[j + half]
      }
    }
    if (!norm) {
#pragma unroll
      for (int p = 0; p < kPairs; ++p) {
        const int j = lane + 32 * p;
        if (j < half) {
          dst[j] = d1[p];
          dst[j + half] = d2[p];
        }
      }
      continue;
    }
    const float* w = is_q ? q_norm : k_norm;
    float ss = 0.f, dot = 0.f;
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      const int j = lane + 32 * p;
      if (j < half) {  // zero-filled otherwise, but w must not be read past D
        ss = fmaf(a1[p], a1[p], ss);
        ss = fmaf(a2[p], a2[p], ss);
        dot = fmaf(w[j] * d1[p], a1[p], dot);
        dot = fmaf(w[j + half] * d2[p], a2[p], dot);
      }
    }
    ss = WarpSum(ss);
    dot = WarpSum(dot);
    const float r = 1.f / sqrtf(ss / static_cast<float>(D) + eps);
    const float coef = r * r * dot / static_cast<float>(D);  // r^2 mean_d(w db a)
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      const int j = lane + 32 * p;
      if (j < half) {
        dst[j] = r * (w[j] * d1[p] - a1[p] * coef);
        dst[j + half] = r * (w[j + half] * d2[p] - a2[p] * coef);
        const float c1 = d1[p] * (a1[p] * r), c2 = d2[p] * (a2[p] * r);
        if (is_q) {
          wq1[p] += c1;
          wq2[p] += c2;
        } else {
          wk1[p] += c1;
          wk2[p] += c2;
        }
      }
    }
  }
  if (!norm) return;  // block-uniform (q_norm is a kernel argument)
#pragma unroll
  for (int p = 0; p < kPairs; ++p) {
    const int j = lane + 32 * p;
    if (j < half) {
      part[warp][0][j] = wq1[p];
      part[warp][0][j + half] = wq2[p];
      part[warp][1][j] = wk1[p];
      part[warp][1][j + half] = wk2[p];
    }
  }
  __syncthreads();
  float* out = dnorm_rows + n * 2 * D;
  for (int i = threadIdx.x; i < 2 * D; i += blockDim.x) {
    const int which = i / D, d = i % D;
    float acc = 0.f;
    for (int wp = 0; wp < kQkvWarps; ++wp) acc += part[wp][which][d];
    out[i] = acc;
  }
}

// Block (32 columns x kColSlices row slices): slice t sums rows t, t + kColSlices, ... of its
// column, then thread 0 of the column adds the slices in order to out.
constexpr int kColSlices = 16;
__global__ void __launch_bounds__(32 * kColSlices)
    ColumnSumKernel(const float* __restrict__ x, int64_t R, int64_t C, int64_t ldx,
                    float* __restrict__ out) {
  __shared__ float part[kColSlices][32];
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + tx;
  float acc = 0.f;
  if (c < C) {
    for (int64_t r = ty; r < R; r += kColSlices) acc += x[r * ldx + c];
  }
  part[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < C) {
    float sum = 0.f;
    for (int t = 0; t < kColSlices; ++t) sum += part[t][tx];
    out[c] += sum;
  }
}

template <typename T>
__global__ void SwigluPairedKernel(const T* __restrict__ gu, int64_t N, int64_t I,
                                   __nv_bfloat16* __restrict__ out) {
  const int64_t total = N * I;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / I, j = i % I;
    const float g = Load(gu + n * 2 * I + j);
    const float u = Load(gu + n * 2 * I + I + j);
    out[i] = __float2bfloat16_rn(g / (1.f + expf(-g)) * u);
  }
}

__global__ void SwigluPairedBackwardKernel(const float* __restrict__ dact,
                                           const float* __restrict__ gu, int64_t N, int64_t I,
                                           __nv_bfloat16* __restrict__ dgu) {
  const int64_t total = N * I;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / I, j = i % I;
    const float g = gu[n * 2 * I + j];
    const float u = gu[n * 2 * I + I + j];
    const float da = dact[i];
    // kernels::SwigluBackward's expressions, in the same order.
    const float s = 1.f / (1.f + expf(-g));
    const float silu = g * s;
    dgu[n * 2 * I + j] = __float2bfloat16_rn(da * u * (s + silu * (1.f - s)));
    dgu[n * 2 * I + I + j] = __float2bfloat16_rn(da * silu);
  }
}

__global__ void AddRowBiasKernel(const float* __restrict__ bias, int64_t N, int64_t C,
                                 float* __restrict__ y) {
  const int64_t total = N * C;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] += bias[i % C];
  }
}

__global__ void AddBf16ToF32Kernel(const __nv_bfloat16* __restrict__ y, int64_t n,
                                   float* __restrict__ x) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    x[i] += __bfloat162float(y[i]);
  }
}

// (value, index) with the larger value, the lower index on ties; idx == INT32_MAX is "none".
__device__ __forceinline__ void ArgmaxMerge(float& v, int& i, float ov, int oi) {
  if (oi == INT32_MAX) return;
  if (i == INT32_MAX || ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

__global__ void ArgmaxKernel(const float* __restrict__ logits, int64_t V, int64_t valid,
                             int32_t* __restrict__ out) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * V;
  float best = 0.f;
  int idx = INT32_MAX;
  for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) {
    const float x = row[j];
    if (isnan(x)) continue;
    // j increases per thread, so ">" keeps this thread's first maximum.
    if (idx == INT32_MAX || x > best) {
      best = x;
      idx = static_cast<int>(j);
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    ArgmaxMerge(best, idx, ov, oi);
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = idx;
  }
  __syncthreads();
  if (warp == 0) {
    best = lane < nwarps ? sv[lane] : 0.f;
    idx = lane < nwarps ? si[lane] : INT32_MAX;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
      ArgmaxMerge(best, idx, ov, oi);
    }
    if (lane == 0) out[blockIdx.x] = idx == INT32_MAX ? 0 : idx;
  }
}

}  // namespace

absl::Status ConvertF32ToBf16(const float* x, int64_t n, uint16_t* y, Stream stream) {
  constexpr const char* fn = "ConvertF32ToBf16";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  ConvertKernel<<<GridFor(n, kThreads), kThreads, 0, AsCudaStream(stream)>>>(x, n, Bf16(y));
  return LaunchStatus(fn);
}

absl::Status RmsNormF32ToBf16(const float* x, const float* w, int64_t R, int64_t C, double eps,
                              uint16_t* y, float* rstd, Stream stream) {
  constexpr const char* fn = "RmsNormF32ToBf16";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (R == 0 || C == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "w", w));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  if (R > 0x7fffffff) return internal::ArgError(fn, "R above 2^31 - 1");
  RmsNormToBf16Kernel<<<static_cast<unsigned>(R), kThreads, 0, AsCudaStream(stream)>>>(
      x, w, C, static_cast<float>(eps), Bf16(y), rstd);
  return LaunchStatus(fn);
}

absl::Status QkvPrepare(const float* qkv, const float* bias, const float* q_norm,
                        const float* k_norm, double eps, const float* cos, const float* sin,
                        int64_t N, int64_t H, int64_t Hkv, int64_t D, uint16_t* q, uint16_t* k,
                        uint16_t* v, Stream stream) {
  constexpr const char* fn = "QkvPrepare";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "H", H));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "Hkv", Hkv));
  if (D <= 0 || D % 2 != 0 || D > kMaxHeadDim) {
    return internal::ArgError(fn, absl::StrCat("head dim D = ", D, " must be even, in [2, 256]"));
  }
  if (N == 0 || H + Hkv == 0) return absl::OkStatus();
  if (Hkv <= 0 || H <= 0) return internal::ArgError(fn, "H and Hkv must both be positive");
  if ((q_norm == nullptr) != (k_norm == nullptr)) {
    return internal::ArgError(fn, "q_norm and k_norm must both be given or both be null");
  }
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "qkv", qkv));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "q", q));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "k", k));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "v", v));
  const int64_t items = N * (H + 2 * Hkv);
  const int64_t blocks = (items + kQkvWarps - 1) / kQkvWarps;
  if (blocks > 0x7fffffff) return internal::ArgError(fn, "N * heads too large");
  QkvPrepareKernel<<<static_cast<unsigned>(blocks), kQkvWarps * 32, 0, AsCudaStream(stream)>>>(
      qkv, bias, q_norm, k_norm, static_cast<float>(eps), cos, sin, N, static_cast<int>(H),
      static_cast<int>(Hkv), static_cast<int>(D), Bf16(q), Bf16(k), Bf16(v));
  return LaunchStatus(fn);
}

absl::Status QkvPrepareBackward(const uint16_t* dq, const uint16_t* dk, const uint16_t* dv,
                                const float* qkv, const float* bias, const float* q_norm,
                                const float* k_norm, double eps, const float* cos,
                                const float* sin, int64_t N, int64_t H, int64_t Hkv, int64_t D,
                                float* dqkv, float* dnorm_rows, Stream stream) {
  constexpr const char* fn = "QkvPrepareBackward";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "H", H));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "Hkv", Hkv));
  if (D <= 0 || D % 2 != 0 || D > kMaxHeadDim) {
    return internal::ArgError(fn, absl::StrCat("head dim D = ", D, " must be even, in [2, 256]"));
  }
  if (N == 0 || H + Hkv == 0) return absl::OkStatus();
  if (Hkv <= 0 || H <= 0) return internal::ArgError(fn, "H and Hkv must both be positive");
  if (H + 2 * Hkv > 0x7fffffff) return internal::ArgError(fn, "H + 2 Hkv above 2^31 - 1");
  if (N > 0x7fffffff) return internal::ArgError(fn, "N above 2^31 - 1");
  if ((q_norm == nullptr) != (k_norm == nullptr)) {
    return internal::ArgError(fn, "q_norm and k_norm must both be given or both be null");
  }
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dq", dq));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dk", dk));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dv", dv));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "qkv", qkv));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dqkv", dqkv));
  if (q_norm != nullptr) RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dnorm_rows", dnorm_rows));
  QkvPrepareBackwardKernel<<<static_cast<unsigned>(N), kQkvWarps * 32, 0,
                             AsCudaStream(stream)>>>(
      Bf16(dq), Bf16(dk), Bf16(dv), qkv, bias, q_norm, k_norm, static_cast<float>(eps), cos, sin,
      static_cast<int>(H), static_cast<int>(Hkv), static_cast<int>(D), dqkv, dnorm_rows);
  return LaunchStatus(fn);
}

absl::Status ColumnSumF32(const float* x, int64_t R, int64_t C, int64_t ldx, float* out,
                          Stream stream) {
  constexpr const char* fn = "ColumnSumF32";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (ldx < C) {
    return internal::ArgError(fn, absl::StrCat("ldx = ", ldx, " is below C = ", C));
  }
  if (C == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  if (R == 0) return absl::OkStatus();  // out += 0
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  const int64_t blocks = (C + 31) / 32;
  if (blocks > 0x7fffffff) return internal::ArgError(fn, "C too large");
  ColumnSumKernel<<<static_cast<unsigned>(blocks), 32 * kColSlices, 0, AsCudaStream(stream)>>>(
      x, R, C, ldx, out);
  return LaunchStatus(fn);
}

absl::Status SwigluPairedBackwardF32ToBf16(const float* dact, const float* gu, int64_t N,
                                           int64_t I, uint16_t* dgu, Stream stream) {
  constexpr const char* fn = "SwigluPairedBackwardF32ToBf16";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "I", I));
  if (N == 0 || I == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dact", dact));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "gu", gu));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dgu", dgu));
  SwigluPairedBackwardKernel<<<GridFor(N * I, kThreads), kThreads, 0, AsCudaStream(stream)>>>(
      dact, gu, N, I, Bf16(dgu));
  return LaunchStatus(fn);
}

template <typename T>
static absl::Status SwigluPaired(const char* fn, const T* gu, int64_t N, int64_t I,
                                 uint16_t* out, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "I", I));
  if (N == 0 || I == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "gu", gu));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  SwigluPairedKernel<T><<<GridFor(N * I, kThreads), kThreads, 0, AsCudaStream(stream)>>>(
      gu, N, I, Bf16(out));
  return LaunchStatus(fn);
}

absl::Status SwigluPairedF32ToBf16(const float* gu, int64_t N, int64_t I, uint16_t* out,
                                   Stream stream) {
  return SwigluPaired<float>("SwigluPairedF32ToBf16", gu, N, I, out, stream);
}

absl::Status SwigluPairedBf16(const uint16_t* gu, int64_t N, int64_t I, uint16_t* out,
                              Stream stream) {
  return SwigluPaired<__nv_bfloat16>("SwigluPairedBf16", Bf16(gu), N, I, out, stream);
}

absl::Status AddRowBiasF32(const float* bias, int64_t N, int64_t C, float* y, Stream stream) {
  constexpr const char* fn = "AddRowBiasF32";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (N == 0 || C == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "bias", bias));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  AddRowBiasKernel<<<GridFor(N * C, kThreads), kThreads, 0, AsCudaStream(stream)>>>(bias, N, C,
                                                                                   y);
  return LaunchStatus(fn);
}

absl::Status AddBf16ToF32(const uint16_t* y, int64_t n, float* x, Stream stream) {
  constexpr const char* fn = "AddBf16ToF32";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  AddBf16ToF32Kernel<<<GridFor(n, kThreads), kThreads, 0, AsCudaStream(stream)>>>(Bf16(y), n, x);
  return LaunchStatus(fn);
}

absl::Status ArgmaxRows(const float* logits, int64_t R, int64_t V, int64_t valid, int32_t* out,
                        Stream stream) {
  constexpr const char* fn = "ArgmaxRows";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  if (R == 0) return absl::OkStatus();
  if (V <= 0 || valid < 1 || valid > V || V > 0x7fffffff) {
    return internal::ArgError(fn, absl::StrCat("need 1 <= valid (", valid, ") <= V (", V,
                                               ") < 2^31"));
  }
  if (R > 0x7fffffff) return internal::ArgError(fn, "R above 2^31 - 1");
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "logits", logits));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  ArgmaxKernel<<<static_cast<unsigned>(R), kThreads, 0, AsCudaStream(stream)>>>(logits, V, valid,
                                                                                out);
  return LaunchStatus(fn);
}

}  // namespace rlvr::kernels::cuda
