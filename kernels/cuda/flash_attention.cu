// Flash-attention style causal attention, forward and backward (see kernels/cuda/attention.h).
//
// Layout of the work (plain fp32 FMAs; bf16 with D = 64 or 128 goes to the tensor-core kernels of
// flash_attention_tc.cu unless RLVR_ATTENTION_FMA=1, see attention.h):
//   forward:  block = 16 query rows of one (b, h), 4 warps x 4 rows; key tiles of 32 keys (lane
//             j scores key j), online softmax per row in registers, each lane owns D/32 output
//             dimensions.
//   backward: (1) Di = dout . out per row; (2) dq: the forward's tiling again, accumulating
//             dS K; (3) dk, dv: block = 32 keys of one (b, kv head), 8 warps x 4 keys, looping
//             over every query head of the group and the query tiles from the key tile on
//             (lane i = query i). Each output row has one owner: no atomics, deterministic.
// Segments: seg_start is non-decreasing, so the first row of a query tile has the smallest
// segment start (the first key tile to visit), and in (3) once a query tile's first row starts
// its segment after the key tile, every later tile does too.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_tc_internal.h"
#include "kernels/cuda/attn_moe_args.h"
#include "kernels/cuda/attn_moe_util.cuh"
#include "kernels/cuda/check.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::FromF;
using internal::kFullMask;
using internal::ToF;
using internal::WarpMax;
using internal::WarpSum;

constexpr int kRows = 16;          // query rows per block (forward, dq)
constexpr int kRowWarps = 4;       // warps per block (forward, dq)
constexpr int kRowsPerWarp = kRows / kRowWarps;
constexpr int kKeys = 32;          // keys per tile (one per lane)
constexpr int kKvWarps = 8;        // warps per block of the dk/dv kernel
constexpr int kKeysPerWarp = kKeys / kKvWarps;
constexpr int kQTile = 32;         // query rows per tile of the dk/dv kernel (one per lane)

// Lane `lane` owns output dimension lane + 32 c (D = 16: only lanes 0..15 own one).
template <int D>
__device__ __forceinline__ bool Owns(int lane, int c) {
  return D % 32 == 0 || lane + 32 * c < D;
}

__device__ __forceinline__ int SegLo(const int32_t* seg, int t) { return seg ? seg[t] : 0; }

template <int D>
constexpr size_t ForwardSmemBytes() {
  return sizeof(float) * (kRows * D + kKeys * (D + 1) + kKeys * D);
}
template <int D>
constexpr size_t DqSmemBytes() {
  return sizeof(float) * (2 * kRows * D + 2 * kKeys * (D + 1));
}
template <int D>
constexpr size_t DkvSmemBytes() {
  return sizeof(float) * (2 * kQTile * (D + 1) + 2 * kKeys * D + 2 * kQTile) +
         sizeof(int) * kQTile;
}

template <typename T, int D>
__global__ void __launch_bounds__(kRowWarps * 32)
    FlashForwardKernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                       int Tn, int H, int Hkv, float scale, T* __restrict__ out,
                       float* __restrict__ lse, const int32_t* __restrict__ seg_start) {
  constexpr int kDl = (D + 31) / 32;  // output dimensions per lane (D = 16: lanes 16..31 idle)
  extern __shared__ float smem[];
  float* sq = smem;                  // [kRows][D]
  float* sk = sq + kRows * D;        // [kKeys][D + 1]: lane j reads row j, padded
  float* sv = sk + kKeys * (D + 1);  // [kKeys][D]
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kRows;
  const int g = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ldq = static_cast<int64_t>(H) * D, ldk = static_cast<int64_t>(Hkv) * D;
  const T* qb = q + static_cast<int64_t>(b) * Tn * ldq + static_cast<int64_t>(h) * D;
  const T* kb = k + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const T* vb = v + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const int32_t* seg = seg_start ? seg_start + static_cast<int64_t>(b) * Tn : nullptr;
  const int q_last = min(q0 + kRows, Tn) - 1;

  for (int i = threadIdx.x; i < kRows * D; i += blockDim.x) {
    const int t = q0 + i / D;
    sq[i] = t < Tn ? ToF(qb[static_cast<int64_t>(t) * ldq + i % D]) : 0.f;
  }
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDl];
  int lo[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = q0 + warp * kRowsPerWarp + r;
    m[r] = -INFINITY;
    l[r] = 0.f;
    lo[r] = t < Tn ? SegLo(seg, t) : 0;
#pragma unroll
    for (int c = 0; c < kDl; ++c) acc[r][c] = 0.f;
  }

  const int k_begin = SegLo(seg, q0) / kKeys * kKeys;
  for (int k0 = k_begin; k0 <= q_last; k0 += kKeys) {
    __syncthreads();  // the previous tile is consumed
    for (int i = threadIdx.x; i < kKeys * D; i += blockDim.x) {
      const int j = i / D, d = i % D, s = k0 + j;
      float kx = 0.f, vx = 0.f;
      if (s < Tn) {
        kx = ToF(kb[static_cast<int64_t>(s) * ldk + d]);
        vx = ToF(vb[static_cast<int64_t>(s) * ldk + d]);
      }
      sk[j * (D + 1) + d] = kx;
      sv[j * D + d] = vx;
    }
    __syncthreads();
    const int s = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r, t = q0 + row;
      // Warp-uniform: the row is padding, or the whole tile is outside its causal segment
      // (otherwise at least one key of the tile is valid, so m_new below is finite).
      if (t >= Tn || k0 > t || k0 + kKeys <= lo[r]) continue;
      const float* qr = sq + row * D;
      const float* kr = sk + lane * (D + 1);
      float dot = 0.f;
#pragma unroll 16
      for (int d = 0; d < D; ++d) dot = fmaf(qr[d], kr[d], dot);
      const bool valid = s >= lo[r] && s <= t;
      const float sc = valid ? dot * scale : -INFINITY;
      const float m_new = fmaxf(m[r], WarpMax(sc));
      const float alpha = expf(m[r] - m_new);  // 0 on the first visited tile (m = -inf)
      const float p = valid ? expf(sc - m_new) : 0.f;
      l[r] = l[r] * alpha + WarpSum(p);
#pragma unroll
      for (int c = 0; c < kDl; ++c) acc[r][c] *= alpha;
      for (int j = 0; j < kKeys; ++j) {
        const float pj = __shfl_sync(kFullMask, p, j);
        const float* vr = sv + j * D + lane;
#pragma unroll
        for (int c = 0; c < kDl; ++c) {
          if (Owns<D>(lane, c)) acc[r][c] = fmaf(pj, vr[32 * c], acc[r][c]);
        }
      }
      m[r] = m_new;
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = q0 + warp * kRowsPerWarp + r;
    if (t >= Tn) continue;
    const float inv = 1.f / l[r];  // l >= 1: the row's maximum contributes exp(0)
    T* o = out + (static_cast<int64_t>(b) * Tn + t) * ldq + static_cast<int64_t>(h) * D + lane;
#pragma unroll
    for (int c = 0; c < kDl; ++c) {
      if (Owns<D>(lane, c)) o[32 * c] = FromF<T>(acc[r][c] * inv);
    }
    if (lane == 0) lse[(static_cast<int64_t>(b) * H + h) * Tn + t] = m[r] + logf(l[r]);
  }
}

// Di[b, h, t] = dout[b, t, h, :] . out[b, t, h, :], one warp per row.
template <typename T, int D>
__global__ void RowDotKernel(const T* __restrict__ dout, const T* __restrict__ out, int64_t B,
                             int Tn, int H, float* __restrict__ di) {
  const int64_t rows = B * Tn * H;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       r < rows; r += warps) {
    // r indexes [B, T, H] rows of dout/out.
    const T* a = dout + r * D;
    const T* o = out + r * D;
    float acc = 0.f;
    for (int d = lane; d < D; d += 32) acc = fmaf(ToF(a[d]), ToF(o[d]), acc);
    acc = WarpSum(acc);
    if (lane == 0) {
      const int64_t h = r % H, bt = r / H, t = bt % Tn, b = bt / Tn;
      di[(b * H + h) * Tn + t] = acc;
    }
  }
}

// dq[b, t, h] += scale * sum_s dS[t, s] k[s], dS = P (dP - Di), P = exp(scale q.k - lse).
template <typename T, int D>
__global__ void __launch_bounds__(kRowWarps * 32)
    FlashDqKernel(const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                  const T* __restrict__ v, const float* __restrict__ lse,
                  const float* __restrict__ di, int Tn, int H, int Hkv, float scale,
                  T* __restrict__ dq, const int32_t* __restrict__ seg_start) {
  constexpr int kDl = (D + 31) / 32;
  extern __shared__ float smem[];
  float* sq = smem;                   // [kRows][D]
  float* sdo = sq + kRows * D;        // [kRows][D]
  float* sk = sdo + kRows * D;        // [kKeys][D + 1]
  float* sv = sk + kKeys * (D + 1);   // [kKeys][D + 1]
  const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kRows;
  const int g = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ldq = static_cast<int64_t>(H) * D, ldk = static_cast<int64_t>(Hkv) * D;
  const int64_t qoff = static_cast<int64_t>(b) * Tn * ldq + static_cast<int64_t>(h) * D;
  const T* kb = k + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const T* vb = v + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const int32_t* seg = seg_start ? seg_start + static_cast<int64_t>(b) * Tn : nullptr;
  const float* lse_bh = lse + (static_cast<int64_t>(b) * H + h) * Tn;
  const float* di_bh = di + (static_cast<int64_t>(b) * H + h) * Tn;
  const int q_last = min(q0 + kRows, Tn) - 1;

  for (int i = threadIdx.x; i < kRows * D; i += blockDim.x) {
    const int t = q0 + i / D;
    const int64_t off = qoff + static_cast<int64_t>(t) * ldq + i % D;
    sq[i] = t < Tn ? ToF(q[off]) : 0.f;
    sdo[i] = t < Tn ? ToF(dout[off]) : 0.f;
  }
  float acc[kRowsPerWarp][kDl], row_lse[kRowsPerWarp], row_di[kRowsPerWarp];
  int lo[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = q0 + warp * kRowsPerWarp + r;
    lo[r] = t < Tn ? SegLo(seg, t) : 0;
    row_lse[r] = t < Tn ? lse_bh[t] : 0.f;
    row_di[r] = t < Tn ? di_bh[t] : 0.f;
#pragma unroll
    for (int c = 0; c < kDl; ++c) acc[r][c] = 0.f;
  }

  const int k_begin = SegLo(seg, q0) / kKeys * kKeys;
  for (int k0 = k_begin; k0 <= q_last; k0 += kKeys) {
    __syncthreads();
    for (int i = threadIdx.x; i < kKeys * D; i += blockDim.x) {
      const int j = i / D, d = i % D, s = k0 + j;
      float kx = 0.f, vx = 0.f;
      if (s < Tn) {
        kx = ToF(kb[static_cast<int64_t>(s) * ldk + d]);
        vx = ToF(vb[static_cast<int64_t>(s) * ldk + d]);
      }
      sk[j * (D + 1) + d] = kx;
      sv[j * (D + 1) + d] = vx;
    }
    __syncthreads();
    const int s = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int row = warp * kRowsPerWarp + r, t = q0 + row;
      if (t >= Tn || k0 > t || k0 + kKeys <= lo[r]) continue;  // warp-uniform
      const float* qr = sq + row * D;
      const float* dor = sdo + row * D;
      const float* kr = sk + lane * (D + 1);
      const float* vr = sv + lane * (D + 1);
      float qk = 0.f, dp = 0.f;
#pragma unroll 16
      for (int d = 0; d < D; ++d) {
        qk = fmaf(qr[d], kr[d], qk);
        dp = fmaf(dor[d], vr[d], dp);
      }
      const bool valid = s >= lo[r] && s <= t;
      const float p = valid ? expf(qk * scale - row_lse[r]) : 0.f;
      const float ds = p * (dp - row_di[r]);
      for (int j = 0; j < kKeys; ++j) {
        const float dsj = __shfl_sync(kFullMask, ds, j);
        const float* kj = sk + j * (D + 1) + lane;
#pragma unroll
        for (int c = 0; c < kDl; ++c) {
          if (Owns<D>(lane, c)) acc[r][c] = fmaf(dsj, kj[32 * c], acc[r][c]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = q0 + warp * kRowsPerWarp + r;
    if (t >= Tn) continue;
    T* o = dq + qoff + static_cast<int64_t>(t) * ldq + lane;
#pragma unroll
    for (int c = 0; c < kDl; ++c) {
      if (Owns<D>(lane, c)) o[32 * c] = FromF<T>(ToF(o[32 * c]) + scale * acc[r][c]);
    }
  }
}

// dk[b, s, g] += scale * sum_{h in g, t} dS[t, s] q[t, h];  dv[b, s, g] += sum P[t, s] dout[t, h].
template <typename T, int D>
__global__ void __launch_bounds__(kKvWarps * 32)
    FlashDkvKernel(const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                   const T* __restrict__ v, const float* __restrict__ lse,
                   const float* __restrict__ di, int Tn, int H, int Hkv, float scale,
                   T* __restrict__ dk, T* __restrict__ dv, const int32_t* __restrict__ seg_start) {
  constexpr int kDl = (D + 31) / 32;
  extern __shared__ float smem[];
  float* sq = smem;                       // [kQTile][D + 1]: lane i reads row i
  float* sdo = sq + kQTile * (D + 1);     // [kQTile][D + 1]
  float* sk = sdo + kQTile * (D + 1);     // [kKeys][D] (broadcast reads)
  float* sv = sk + kKeys * D;             // [kKeys][D]
  float* slse = sv + kKeys * D;           // [kQTile]
  float* sdi = slse + kQTile;             // [kQTile]
  int* slo = reinterpret_cast<int*>(sdi + kQTile);  // [kQTile]
  const int b = blockIdx.z, g = blockIdx.y, k0 = blockIdx.x * kKeys;
  const int group = H / Hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ldq = static_cast<int64_t>(H) * D, ldk = static_cast<int64_t>(Hkv) * D;
  const int64_t koff = static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const int32_t* seg = seg_start ? seg_start + static_cast<int64_t>(b) * Tn : nullptr;
  const int k_last = min(k0 + kKeys, Tn) - 1;

  for (int i = threadIdx.x; i < kKeys * D; i += blockDim.x) {
    const int s = k0 + i / D;
    const int64_t off = koff + static_cast<int64_t>(s) * ldk + i % D;
    sk[i] = s < Tn ? ToF(k[off]) : 0.f;
    sv[i] = s < Tn ? ToF(v[off]) : 0.f;
  }
  float dk_acc[kKeysPerWarp][kDl], dv_acc[kKeysPerWarp][kDl];
#pragma unroll
  for (int kk = 0; kk < kKeysPerWarp; ++kk) {
#pragma unroll
    for (int c = 0; c < kDl; ++c) dk_acc[kk][c] = dv_acc[kk][c] = 0.f;
  }

  for (int h = g * group; h < (g + 1) * group; ++h) {
    const int64_t qoff = static_cast<int64_t>(b) * Tn * ldq + static_cast<int64_t>(h) * D;
    const float* lse_bh = lse + (static_cast<int64_t>(b) * H + h) * Tn;
    const float* di_bh = di + (static_cast<int64_t>(b) * H + h) * Tn;
    // Queries before k0 never see these keys; a tile whose first query starts its segment
    // after the last key sees none of them, nor does any later tile.
    for (int q0 = k0; q0 < Tn && SegLo(seg, q0) <= k_last; q0 += kQTile) {
      __syncthreads();  // the previous query tile is consumed
      for (int i = threadIdx.x; i < kQTile * D; i += blockDim.x) {
        const int r = i / D, d = i % D, t = q0 + r;
        const int64_t off = qoff + static_cast<int64_t>(t) * ldq + d;
        sq[r * (D + 1) + d] = t < Tn ? ToF(q[off]) : 0.f;
        sdo[r * (D + 1) + d] = t < Tn ? ToF(dout[off]) : 0.f;
      }
      for (int r = threadIdx.x; r < kQTile; r += blockDim.x) {
        const int t = q0 + r;
        slse[r] = t < Tn ? lse_bh[t] : 0.f;
        sdi[r] = t < Tn ? di_bh[t] : 0.f;
        slo[r] = t < Tn ? SegLo(seg, t) : Tn;  // padding rows see no key
      }
      __syncthreads();
      const int t = q0 + lane;
#pragma unroll
      for (int kk = 0; kk < kKeysPerWarp; ++kk) {
        const int j = warp * kKeysPerWarp + kk, s = k0 + j;
        if (s >= Tn) continue;  // warp-uniform
        const bool valid = t < Tn && s <= t && s >= slo[lane];
        if (!__any_sync(kFullMask, valid)) continue;
        const float* qr = sq + lane * (D + 1);
        const float* dor = sdo + lane * (D + 1);
        const float* kj = sk + j * D;
        const float* vj = sv + j * D;
        float qk = 0.f, dp = 0.f;
#pragma unroll 16
        for (int d = 0; d < D; ++d) {
          qk = fmaf(qr[d], kj[d], qk);
          dp = fmaf(dor[d], vj[d], dp);
        }
        const float p = valid ? expf(qk * scale - slse[lane]) : 0.f;
        const float ds = valid ? p * (dp - sdi[lane]) : 0.f;
        for (int i = 0; i < kQTile; ++i) {
          const float pi = __shfl_sync(kFullMask, p, i);
          const float dsi = __shfl_sync(kFullMask, ds, i);
          const float* qi = sq + i * (D + 1) + lane;
          const float* doi = sdo + i * (D + 1) + lane;
#pragma unroll
          for (int c = 0; c < kDl; ++c) {
            if (!Owns<D>(lane, c)) continue;
            dv_acc[kk][c] = fmaf(pi, doi[32 * c], dv_acc[kk][c]);
            dk_acc[kk][c] = fmaf(dsi, qi[32 * c], dk_acc[kk][c]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int kk = 0; kk < kKeysPerWarp; ++kk) {
    const int s = k0 + warp * kKeysPerWarp + kk;
    if (s >= Tn) continue;
    const int64_t off = koff + static_cast<int64_t>(s) * ldk + lane;
#pragma unroll
    for (int c = 0; c < kDl; ++c) {
      if (!Owns<D>(lane, c)) continue;
      dk[off + 32 * c] = FromF<T>(ToF(dk[off + 32 * c]) + scale * dk_acc[kk][c]);
      dv[off + 32 * c] = FromF<T>(ToF(dv[off + 32 * c]) + dv_acc[kk][c]);
    }
  }
}

template <typename T, int D>
absl::Status LaunchForward(const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H,
                           int64_t Hkv, float scale, T* out, float* lse, const int32_t* seg,
                           cudaStream_t stream) {
  constexpr size_t smem = ForwardSmemBytes<D>();
  RLVR_RETURN_IF_ERROR(CudaStatus(internal::AllowSharedMemory(FlashForwardKernel<T, D>, smem),
                                  "AttentionForward: shared memory"));
  const dim3 grid(static_cast<unsigned>((Tn + kRows - 1) / kRows), static_cast<unsigned>(H),
                  static_cast<unsigned>(B));
  FlashForwardKernel<T, D><<<grid, kRowWarps * 32, smem, stream>>>(
      q, k, v, static_cast<int>(Tn), static_cast<int>(H), static_cast<int>(Hkv), scale, out, lse,
      seg);
  return LaunchStatus("AttentionForward");
}

template <typename T, int D>
absl::Status LaunchBackward(const T* dout, const T* q, const T* k, const T* v, const T* out,
                            const float* lse, int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                            float scale, T* dq, T* dk, T* dv, float* di, const int32_t* seg,
                            cudaStream_t stream) {
  const int tn = static_cast<int>(Tn), h = static_cast<int>(H), hkv = static_cast<int>(Hkv);
  {
    const int64_t rows = B * Tn * H, per_block = 8;
    const int64_t blocks = std::min<int64_t>((rows + per_block - 1) / per_block, int64_t{1} << 16);
    RowDotKernel<T, D><<<static_cast<unsigned>(blocks), per_block * 32, 0, stream>>>(
        dout, out, B, tn, h, di);
    RLVR_RETURN_IF_ERROR(LaunchStatus("AttentionBackward: dout . out"));
  }
  {
    constexpr size_t smem = DqSmemBytes<D>();
    RLVR_RETURN_IF_ERROR(CudaStatus(internal::AllowSharedMemory(FlashDqKernel<T, D>, smem),
                                    "AttentionBackward: shared memory"));
    const dim3 grid(static_cast<unsigned>((Tn + kRows - 1) / kRows), static_cast<unsigned>(H),
                    static_cast<unsigned>(B));
    FlashDqKernel<T, D><<<grid, kRowWarps * 32, smem, stream>>>(dout, q, k, v, lse, di, tn, h,
                                                                hkv, scale, dq, seg);
    RLVR_RETURN_IF_ERROR(LaunchStatus("AttentionBackward: dq"));
  }
  constexpr size_t smem = DkvSmemBytes<D>();
  RLVR_RETURN_IF_ERROR(CudaStatus(internal::AllowSharedMemory(FlashDkvKernel<T, D>, smem),
                                  "AttentionBackward: shared memory"));
  const dim3 grid(static_cast<unsigned>((Tn + kKeys - 1) / kKeys), static_cast<unsigned>(Hkv),
                  static_cast<unsigned>(B));
  FlashDkvKernel<T, D><<<grid, kKvWarps * 32, smem, stream>>>(dout, q, k, v, lse, di, tn, h, hkv,
                                                              scale, dk, dv, seg);
  return LaunchStatus("AttentionBackward: dk, dv");
}

template <typename T>
absl::Status Forward(const char* fn, const T* q, const T* k, const T* v, int64_t B, int64_t Tn,
                     int64_t H, int64_t Hkv, int64_t D, double scale, T* out, float* lse,
                     const int32_t* seg, Stream stream) {
  RLVR_RETURN_IF_ERROR(internal::CheckAttentionShape(fn, B, Tn, H, Hkv, D));
  if (B == 0 || Tn == 0 || H == 0) return absl::OkStatus();
  if (!q || !k || !v || !out || !lse) return internal::Bad(fn, "null q, k, v, out or lse");
  const float sc = static_cast<float>(scale);
  cudaStream_t st = AsCudaStream(stream);
  switch (D) {
    case 16: return LaunchForward<T, 16>(q, k, v, B, Tn, H, Hkv, sc, out, lse, seg, st);
    case 32: return LaunchForward<T, 32>(q, k, v, B, Tn, H, Hkv, sc, out, lse, seg, st);
    case 64: return LaunchForward<T, 64>(q, k, v, B, Tn, H, Hkv, sc, out, lse, seg, st);
    default: return LaunchForward<T, 128>(q, k, v, B, Tn, H, Hkv, sc, out, lse, seg, st);
  }
}

template <typename T>
absl::Status Backward(const char* fn, const T* dout, const T* q, const T* k, const T* v,
                      const T* out, const float* lse, int64_t B, int64_t Tn, int64_t H,
                      int64_t Hkv, int64_t D, double scale, T* dq, T* dk, T* dv, void* workspace,
                      size_t workspace_bytes, const int32_t* seg, Stream stream) {
  RLVR_RETURN_IF_ERROR(internal::CheckAttentionShape(fn, B, Tn, H, Hkv, D));
  if (B == 0 || Tn == 0 || H == 0) return absl::OkStatus();
  if (!dout || !q || !k || !v || !out || !lse || !dq || !dk || !dv) {
    return internal::Bad(fn, "null dout, q, k, v, out, lse, dq, dk or dv");
  }
  const size_t need = internal::AttentionBackwardBytes(B, Tn, H);
  if (workspace == nullptr || workspace_bytes < need) {
    return internal::Bad(fn, "workspace of ", workspace_bytes, " bytes, need ", need);
  }
  float* di = static_cast<float*>(workspace);
  const float sc = static_cast<float>(scale);
  cudaStream_t st = AsCudaStream(stream);
  switch (D) {
    case 16:
      return LaunchBackward<T, 16>(dout, q, k, v, out, lse, B, Tn, H, Hkv, sc, dq, dk, dv, di,
                                   seg, st);
    case 32:
      return LaunchBackward<T, 32>(dout, q, k, v, out, lse, B, Tn, H, Hkv, sc, dq, dk, dv, di,
                                   seg, st);
    case 64:
      return LaunchBackward<T, 64>(dout, q, k, v, out, lse, B, Tn, H, Hkv, sc, dq, dk, dv, di,
                                   seg, st);
    default:
      return LaunchBackward<T, 128>(dout, q, k, v, out, lse, B, Tn, H, Hkv, sc, dq, dk, dv, di,
                                    seg, st);
  }
}

const __nv_bfloat16* Bf(const uint16_t* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
__nv_bfloat16* Bf(uint16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }

}  // namespace

size_t AttentionBackwardWorkspaceBytes(int64_t B, int64_t Tn, int64_t H) {
  return internal::AttentionBackwardBytes(B, Tn, H);
}

absl::Status AttentionForwardF32(const float* q, const float* k, const float* v, int64_t B,
                                 int64_t Tn, int64_t H, int64_t Hkv, int64_t D, double scale,
                                 float* out, float* lse, const int32_t* seg_start,
                                 Stream stream) {
  return Forward<float>("AttentionForwardF32", q, k, v, B, Tn, H, Hkv, D, scale, out, lse,
                        seg_start, stream);
}

absl::Status AttentionForwardBf16(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                  int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                  double scale, uint16_t* out, float* lse,
                                  const int32_t* seg_start, Stream stream) {
  if (internal::TcAttentionEligible(D, {q, k, v, out})) {
    return internal::TcAttentionForward("AttentionForwardBf16", q, k, v, B, Tn, H, Hkv, D, scale,
                                        out, lse, seg_start, stream);
  }
  return Forward<__nv_bfloat16>("AttentionForwardBf16", Bf(q), Bf(k), Bf(v), B, Tn, H, Hkv, D,
                                scale, Bf(out), lse, seg_start, stream);
}

absl::Status AttentionBackwardF32(const float* dout, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse, int64_t B,
                                  int64_t Tn, int64_t H, int64_t Hkv, int64_t D, double scale,
                                  float* dq, float* dk, float* dv, void* workspace,
                                  size_t workspace_bytes, const int32_t* seg_start,
                                  Stream stream) {
  return Backward<float>("AttentionBackwardF32", dout, q, k, v, out, lse, B, Tn, H, Hkv, D,
                         scale, dq, dk, dv, workspace, workspace_bytes, seg_start, stream);
}

absl::Status AttentionBackwardBf16(const uint16_t* dout, const uint16_t* q, const uint16_t* k,
                                   const uint16_t* v, const uint16_t* out, const float* lse,
                                   int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                   double scale, uint16_t* dq, uint16_t* dk, uint16_t* dv,
                                   void* workspace, size_t workspace_bytes,
                                   const int32_t* seg_start, Stream stream) {
  if (internal::TcAttentionEligible(D, {dout, q, k, v, out, dq, dk, dv})) {
    return internal::TcAttentionBackward("AttentionBackwardBf16", dout, q, k, v, out, lse, B, Tn,
                                         H, Hkv, D, scale, dq, dk, dv, workspace,
                                         workspace_bytes, seg_start, stream);
  }
  return Backward<__nv_bfloat16>("AttentionBackwardBf16", Bf(dout), Bf(q), Bf(k), Bf(v),
                                 Bf(out), lse, B, Tn, H, Hkv, D, scale, Bf(dq), Bf(dk), Bf(dv),
                                 workspace, workspace_bytes, seg_start, stream);
}

}  // namespace rlvr::kernels::cuda
