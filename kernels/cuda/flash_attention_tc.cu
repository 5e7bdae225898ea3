// Tensor-core flash attention, bf16, D = 64 or 128 (see kernels/cuda/attention.h,
// AttentionForwardBf16Tc / AttentionBackwardBf16Tc). nvcuda::wmma 16x16x16 bf16 fragments with
// fp32 accumulators; sm_80 or newer.
//
// Layout of the work (tiles of kTile = 64 query rows and 64 keys, zero-filled past T):
//   forward: block = 64 query rows of one (b, h), 4 warps x 16 rows. Per key tile: S = Q K^T
//            (fp32, shared memory), masked online softmax per row in fp32 (one warp walks its
//            16 rows; lane r < 16 keeps row r's running max m and sum l), P rounded to bf16 in
//            shared memory, O = alpha O + P V in accumulator fragments kept in registers.
//   backward: (1) Di = dout . out per row; (2) dq: the forward's tiling, per key tile
//            S = Q K^T and dP = dO V^T, dS = P (dP - Di) as bf16, dq += dS K; (3) dk, dv:
//            block = 64 keys of one (b, kv head), 8 warps; for every query head of the group
//            and every query tile from the key tile on: warps 0-3 compute S^T = K Q^T, warps
//            4-7 dP^T = V dO^T, all warps form P^T and dS^T (bf16), then warps 0-3 accumulate
//            dv += P^T dO and warps 4-7 dk += dS^T Q. Each output row has one owner block and
//            every sum has a fixed order: deterministic, no atomics.
// The accumulator fragments' element-to-(row, column) mapping is unspecified by wmma, but it is
// the same for every fragment of one type: loading a 16x16 matrix whose element (r, c) is r into
// an accumulator fragment (`rowid`) tells which row each register of the output fragments
// holds, so the online softmax can rescale the output rows in registers.
// Masking: query t sees key s iff seg_start[b, t] <= s <= t. A warp skips a key tile when none
// of its rows sees any of its keys (warp-uniform); inside a visited tile masked scores are -inf
// and their probabilities exactly 0; a row whose keys so far are all masked keeps m = -inf and
// rescales by 1. Every valid row sees its own key, so l >= 1 at the end.
// Rounding: P and dS are rounded to bf16 for the tensor-core products (as FlashAttention-2);
// l and lse are summed from the fp32 probabilities.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_tc_internal.h"
#include "kernels/cuda/attn_moe_args.h"
#include "kernels/cuda/attn_moe_util.cuh"
#include "kernels/cuda/check.cuh"

namespace rlvr::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;
using internal::WarpMax;
using internal::WarpSum;
namespace wmma = nvcuda::wmma;

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define RLVR_TC_ATTENTION 1
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
#endif

constexpr int kTile = 64;        // query rows and keys per tile
constexpr int kLdS = kTile + 4;  // fp32 [64][64] score tiles, padded (wmma: ldm % 4 == 0)
constexpr int kLdP = kTile + 8;  // bf16 [64][64] probability tiles (wmma: ldm % 8 == 0)
constexpr int kFwdThreads = 128;
constexpr int kDqThreads = 128;
constexpr int kDkvThreads = 256;

// bf16 [64][D] tiles are stored [64][D + 8]; fp32 [64][D] output staging [64][D + 4]. Every
// 16x16 sub-tile then starts 32-byte aligned, as wmma loads and stores require.
template <int D>
__host__ __device__ constexpr int LdB() {
  return D + 8;
}
template <int D>
__host__ __device__ constexpr int LdO() {
  return D + 4;
}
template <int D>
constexpr size_t BTileBytes() {
  return sizeof(bf16) * kTile * LdB<D>();
}
constexpr size_t kSTileBytes = sizeof(float) * kTile * kLdS;
constexpr size_t kPTileBytes = sizeof(bf16) * kTile * kLdP;
template <int D>
constexpr size_t OTileBytes() {
  return sizeof(float) * kTile * LdO<D>();
}

// Forward: sk, sv | ss (Q staging first) | sp | row ids [16][16] | salpha [64] | slo [64].
template <int D>
constexpr size_t FwdSmemBytes() {
  return 2 * BTileBytes<D>() + kSTileBytes + kPTileBytes + sizeof(float) * (256 + kTile) +
         sizeof(int) * kTile;
}
// dq: sk, sv | sq, sdo | ss, sdp | sds | slse, sdi [64] | slo [64].
template <int D>
constexpr size_t DqSmemBytes() {
  return 4 * BTileBytes<D>() + 2 * kSTileBytes + kPTileBytes + sizeof(float) * 2 * kTile +
         sizeof(int) * kTile;
}
// dk/dv: sk, sv | sq, sdo | ss, sdp | sp, sds | slse, sdi [64] | slo [64].
template <int D>
constexpr size_t DkvSmemBytes() {
  return 4 * BTileBytes<D>() + 2 * kSTileBytes + 2 * kPTileBytes + sizeof(float) * 2 * kTile +
         sizeof(int) * kTile;
}
// Staging overlays: the forward's and dq's fp32 output over sk + sv; dv over sq + sdo, dk over
// ss + sdp; the forward's bf16 Q staging over ss.
static_assert(OTileBytes<128>() <= 2 * BTileBytes<128>(), "output staging over sk, sv");
static_assert(OTileBytes<128>() <= 2 * kSTileBytes, "dk staging over ss, sdp");
static_assert(BTileBytes<128>() <= kSTileBytes, "Q staging over ss");
static_assert(OTileBytes<64>() <= 2 * BTileBytes<64>(), "output staging over sk, sv (D = 64)");
static_assert(BTileBytes<128>() % 128 == 0 && BTileBytes<64>() % 128 == 0 &&
                  kSTileBytes % 128 == 0 && kPTileBytes % 128 == 0,
              "shared regions stay 128-byte aligned");
static_assert(FwdSmemBytes<128>() <= 227 * 1024 && DqSmemBytes<128>() <= 227 * 1024 &&
                  DkvSmemBytes<128>() <= 227 * 1024,
              "H100 allows 227 KiB of shared memory per block");

__device__ __forceinline__ int SegLo(const int32_t* seg, int t) { return seg ? seg[t] : 0; }

__device__ __forceinline__ void Unpack8(uint4 x, float* f) {
  const __nv_bfloat162* p = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(p[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ uint4 Pack8(const float* f) {
  uint4 x;
  __nv_bfloat162* p = reinterpret_cast<__nv_bfloat162*>(&x);
#pragma unroll
  for (int i = 0; i < 4; ++i) p[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return x;
}

// dst [64][D + 8] = rows row0 .. row0 + 63 of src (row t at src + t * ld), zero past Tn.
// src and ld keep every row 16-byte aligned (checked on the host).
template <int D, int kThreads>
__device__ __forceinline__ void LoadTile(bf16* dst, const bf16* src, int64_t ld, int row0,
                                         int Tn) {
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < kTile * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks, t = row0 + r;
    uint4 x = make_uint4(0u, 0u, 0u, 0u);
    if (t < Tn) x = *reinterpret_cast<const uint4*>(src + static_cast<int64_t>(t) * ld + c * 8);
    *reinterpret_cast<uint4*>(dst + r * LdB<D>() + c * 8) = x;
  }
}

template <int D>
__global__ void __launch_bounds__(kFwdThreads)
    TcForwardKernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                    const bf16* __restrict__ v, int Tn, int H, int Hkv, float scale,
                    bf16* __restrict__ out, float* __restrict__ lse,
                    const int32_t* __restrict__ seg_start) {
#ifdef RLVR_TC_ATTENTION
  constexpr int kLdB = LdB<D>(), kLdO = LdO<D>(), kN = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sk = reinterpret_cast<bf16*>(smem);                    // [64][kLdB]
  bf16* sv = sk + kTile * kLdB;                                // [64][kLdB]
  float* ss = reinterpret_cast<float*>(sv + kTile * kLdB);     // [64][kLdS] scores
  bf16* sq = reinterpret_cast<bf16*>(ss);                      // [64][kLdB] Q, before the loop
  bf16* sp = reinterpret_cast<bf16*>(ss + kTile * kLdS);       // [64][kLdP] probabilities
  float* srow = reinterpret_cast<float*>(sp + kTile * kLdP);   // [16][16], element (r, c) = r
  float* salpha = srow + 256;                                  // [64] per-row factor
  int* slo = reinterpret_cast<int*>(salpha + kTile);           // [64] segment starts
  float* so = reinterpret_cast<float*>(smem);                  // [64][kLdO] after the loop

  const int b = blockIdx.z, h = blockIdx.y;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile;  // the longest causal ranges first
  const int g = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ldq = static_cast<int64_t>(H) * D, ldk = static_cast<int64_t>(Hkv) * D;
  const bf16* qb = q + static_cast<int64_t>(b) * Tn * ldq + static_cast<int64_t>(h) * D;
  const bf16* kb = k + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const bf16* vb = v + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const int32_t* seg = seg_start ? seg_start + static_cast<int64_t>(b) * Tn : nullptr;
  const int q_last = min(q0 + kTile, Tn) - 1;

  LoadTile<D, kFwdThreads>(sq, qb, ldq, q0, Tn);
  for (int i = threadIdx.x; i < 256; i += kFwdThreads) srow[i] = static_cast<float>(i / 16);
  for (int i = threadIdx.x; i < kTile; i += kFwdThreads) {
    const int t = q0 + i;
    slo[i] = t < Tn ? SegLo(seg, t) : 0;
    salpha[i] = 1.f;
  }
  __syncthreads();

  const int row0 = warp * 16;  // this warp's rows of the tile
  const int r_first = q0 + row0, r_last = min(r_first + 15, Tn - 1);
  const int lo_first = slo[row0];  // the smallest segment start of the warp's rows
  FragA qf[kN];
#pragma unroll
  for (int kd = 0; kd < kN; ++kd) wmma::load_matrix_sync(qf[kd], sq + row0 * kLdB + 16 * kd, kLdB);
  FragC acc[kN], rowid;
#pragma unroll
  for (int n = 0; n < kN; ++n) wmma::fill_fragment(acc[n], 0.f);
  wmma::load_matrix_sync(rowid, srow, 16, wmma::mem_row_major);
  // Lane r < 16 holds the running max and sum of row row0 + r.
  float m_mine = -INFINITY, l_mine = 0.f;

  const int k_begin = SegLo(seg, q0) / kTile * kTile;
  for (int k0 = k_begin; k0 <= q_last; k0 += kTile) {
    __syncthreads();  // the previous tile is consumed (first time: Q fragments loaded from ss)
    LoadTile<D, kFwdThreads>(sk, kb, ldk, k0, Tn);
    LoadTile<D, kFwdThreads>(sv, vb, ldk, k0, Tn);
    __syncthreads();
    // Warp-uniform: no row of this warp sees a key of the tile (padding rows, keys after the
    // last row, or keys before the first row's segment, which starts no later than the others).
    if (r_first >= Tn || k0 > r_last || k0 + kTile <= lo_first) continue;
#pragma unroll
    for (int n = 0; n < kTile / 16; ++n) {
      FragC c;
      wmma::fill_fragment(c, 0.f);
#pragma unroll
      for (int kd = 0; kd < kN; ++kd) {
        FragBCol kf;  // K^T: element (d, j) at sk[j][d]
        wmma::load_matrix_sync(kf, sk + 16 * n * kLdB + 16 * kd, kLdB);
        wmma::mma_sync(c, qf[kd], kf, c);
      }
      wmma::store_matrix_sync(ss + row0 * kLdS + 16 * n, c, kLdS, wmma::mem_row_major);
    }
    __syncwarp();
    for (int r = 0; r < 16; ++r) {
      const int row = row0 + r, t = q0 + row;
      float p0 = 0.f, p1 = 0.f, alpha = 1.f;
      if (t < Tn) {  // warp-uniform
        const int lo = slo[row], s0 = k0 + lane, s1 = s0 + 32;
        const bool v0 = s0 >= lo && s0 <= t, v1 = s1 >= lo && s1 <= t;
        const float x0 = v0 ? ss[row * kLdS + lane] * scale : -INFINITY;
        const float x1 = v1 ? ss[row * kLdS + lane + 32] * scale : -INFINITY;
        const float m_old = __shfl_sync(internal::kFullMask, m_mine, r);
        const float m_new = fmaxf(m_old, WarpMax(fmaxf(x0, x1)));
        if (m_new != -INFINITY) {  // warp-uniform: some key seen so far
          alpha = expf(m_old - m_new);  // 0 when m_old = -inf
          p0 = v0 ? expf(x0 - m_new) : 0.f;
          p1 = v1 ? expf(x1 - m_new) : 0.f;
        }
        const float sum = WarpSum(p0 + p1);
        if (lane == r) {
          m_mine = m_new;
          l_mine = l_mine * alpha + sum;
        }
      }
      sp[row * kLdP + lane] = __float2bfloat16_rn(p0);
      sp[row * kLdP + lane + 32] = __float2bfloat16_rn(p1);
      if (lane == 0) salpha[row] = alpha;
    }
    __syncwarp();
#pragma unroll
    for (int n = 0; n < kN; ++n) {
#pragma unroll
      for (int i = 0; i < acc[n].num_elements; ++i) {
        acc[n].x[i] *= salpha[row0 + static_cast<int>(rowid.x[i])];
      }
    }
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      FragA pf;
      wmma::load_matrix_sync(pf, sp + row0 * kLdP + 16 * kk, kLdP);
#pragma unroll
      for (int n = 0; n < kN; ++n) {
        FragBRow vf;
        wmma::load_matrix_sync(vf, sv + 16 * kk * kLdB + 16 * n, kLdB);
        wmma::mma_sync(acc[n], pf, vf, acc[n]);
      }
    }
  }
  __syncthreads();  // every warp is done with sk and sv, which `so` overlays
  if (lane < 16) {
    const int t = q0 + row0 + lane;
    float inv = 0.f;
    if (t < Tn) {
      lse[(static_cast<int64_t>(b) * H + h) * Tn + t] = m_mine + logf(l_mine);
      inv = 1.f / l_mine;
    }
    salpha[row0 + lane] = inv;
  }
  __syncwarp();
#pragma unroll
  for (int n = 0; n < kN; ++n) {
#pragma unroll
    for (int i = 0; i < acc[n].num_elements; ++i) {
      acc[n].x[i] *= salpha[row0 + static_cast<int>(rowid.x[i])];
    }
    wmma::store_matrix_sync(so + row0 * kLdO + 16 * n, acc[n], kLdO, wmma::mem_row_major);
  }
  __syncwarp();
  constexpr int kChunks = D / 8;
  for (int i = lane; i < 16 * kChunks; i += 32) {
    const int r = i / kChunks, c = i % kChunks, t = q0 + row0 + r;
    if (t >= Tn) continue;
    *reinterpret_cast<uint4*>(out + (static_cast<int64_t>(b) * Tn + t) * ldq +
                              static_cast<int64_t>(h) * D + c * 8) =
        Pack8(so + (row0 + r) * kLdO + c * 8);
  }
#else
  __trap();
#endif
}

// Di[b, h, t] = dout[b, t, h, :] . out[b, t, h, :] in fp32, one warp per row.
template <int D>
__global__ void TcRowDotKernel(const bf16* __restrict__ dout, const bf16* __restrict__ out,
                               int64_t B, int Tn, int H, float* __restrict__ di) {
  const int64_t rows = B * Tn * H;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       r < rows; r += warps) {
    const bf16* a = dout + r * D;  // r indexes the [B, T, H] rows
    const bf16* o = out + r * D;
    float acc = 0.f;
    for (int d = lane; d < D; d += 32) acc = fmaf(__bfloat162float(a[d]), __bfloat162float(o[d]), acc);
    acc = WarpSum(acc);
    if (lane == 0) {
      const int64_t h = r % H, bt = r / H, t = bt % Tn, b = bt / Tn;
      di[(b * H + h) * Tn + t] = acc;
    }
  }
}

// dq[b, t, h] += scale * sum_s dS[t, s] k[s], dS = P (dP - Di), P = exp(scale q.k - lse).
template <int D>
__global__ void __launch_bounds__(kDqThreads)
    TcDqKernel(const bf16* __restrict__ dout, const bf16* __restrict__ q,
               const bf16* __restrict__ k, const bf16* __restrict__ v,
               const float* __restrict__ lse, const float* __restrict__ di, int Tn, int H,
               int Hkv, float scale, bf16* __restrict__ dq, const int32_t* __restrict__ seg_start) {
#ifdef RLVR_TC_ATTENTION
  constexpr int kLdB = LdB<D>(), kLdO = LdO<D>(), kN = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sk = reinterpret_cast<bf16*>(smem);                 // [64][kLdB]
  bf16* sv = sk + kTile * kLdB;                             // [64][kLdB]
  bf16* sq = sv + kTile * kLdB;                             // [64][kLdB]
  bf16* sdo = sq + kTile * kLdB;                            // [64][kLdB]
  float* ss = reinterpret_cast<float*>(sdo + kTile * kLdB); // [64][kLdS] scores
  float* sdp = ss + kTile * kLdS;                           // [64][kLdS] dO V^T
  bf16* sds = reinterpret_cast<bf16*>(sdp + kTile * kLdS);  // [64][kLdP] dS
  float* slse = reinterpret_cast<float*>(sds + kTile * kLdP);
  float* sdi = slse + kTile;
  int* slo = reinterpret_cast<int*>(sdi + kTile);
  float* so = reinterpret_cast<float*>(smem);  // [64][kLdO] after the loop

  const int b = blockIdx.z, h = blockIdx.y;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kTile;
  const int g = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t ldq = static_cast<int64_t>(H) * D, ldk = static_cast<int64_t>(Hkv) * D;
  const int64_t qoff = static_cast<int64_t>(b) * Tn * ldq + static_cast<int64_t>(h) * D;
  const bf16* kb = k + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const bf16* vb = v + static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const int32_t* seg = seg_start ? seg_start + static_cast<int64_t>(b) * Tn : nullptr;
  const float* lse_bh = lse + (static_cast<int64_t>(b) * H + h) * Tn;
  const float* di_bh = di + (static_cast<int64_t>(b) * H + h) * Tn;
  const int q_last = min(q0 + kTile, Tn) - 1;

  LoadTile<D, kDqThreads>(sq, q + qoff, ldq, q0, Tn);
  LoadTile<D, kDqThreads>(sdo, dout + qoff, ldq, q0, Tn);
  for (int i = threadIdx.x; i < kTile; i += kDqThreads) {
    const int t = q0 + i;
    slse[i] = t < Tn ? lse_bh[t] : 0.f;
    sdi[i] = t < Tn ? di_bh[t] : 0.f;
    slo[i] = t < Tn ? SegLo(seg, t) : 0;
  }
  __syncthreads();

  const int row0 = warp * 16;
  const int r_first = q0 + row0, r_last = min(r_first + 15, Tn - 1);
  const int lo_first = slo[row0];
  FragC acc[kN];
#pragma unroll
  for (int n = 0; n < kN; ++n) wmma::fill_fragment(acc[n], 0.f);

  const int k_begin = SegLo(seg, q0) / kTile * kTile;
  for (int k0 = k_begin; k0 <= q_last; k0 += kTile) {
    __syncthreads();  // the previous tile is consumed
    LoadTile<D, kDqThreads>(sk, kb, ldk, k0, Tn);
    LoadTile<D, kDqThreads>(sv, vb, ldk, k0, Tn);
    __syncthreads();
    if (r_first >= Tn || k0 > r_last || k0 + kTile <= lo_first) continue;  // warp-uniform
#pragma unroll
    for (int n = 0; n < kTile / 16; ++n) {
      FragC c;
      wmma::fill_fragment(c, 0.f);
#pragma unroll
      for (int kd = 0; kd < kN; ++kd) {
        FragA a;
        FragBCol bt;
        wmma::load_matrix_sync(a, sq + row0 * kLdB + 16 * kd, kLdB);
        wmma::load_matrix_sync(bt, sk + 16 * n * kLdB + 16 * kd, kLdB);
        wmma::mma_sync(c, a, bt, c);
      }
      wmma::store_matrix_sync(ss + row0 * kLdS + 16 * n, c, kLdS, wmma::mem_row_major);
      wmma::fill_fragment(c, 0.f);
#pragma unroll
      for (int kd = 0; kd < kN; ++kd) {
        FragA a;
        FragBCol bt;
        wmma::load_matrix_sync(a, sdo + row0 * kLdB + 16 * kd, kLdB);
        wmma::load_matrix_sync(bt, sv + 16 * n * kLdB + 16 * kd, kLdB);
        wmma::mma_sync(c, a, bt, c);
      }
      wmma::store_matrix_sync(sdp + row0 * kLdS + 16 * n, c, kLdS, wmma::mem_row_major);
    }
    __syncwarp();
    for (int i = lane; i < 16 * kTile; i += 32) {
      const int row = row0 + i / kTile, c = i % kTile, t = q0 + row, s = k0 + c;
      float ds = 0.f;
      if (t < Tn && s >= slo[row] && s <= t) {
        const float p = expf(ss[row * kLdS + c] * scale - slse[row]);
        ds = p * (sdp[row * kLdS + c] - sdi[row]);
      }
      sds[row * kLdP + c] = __float2bfloat16_rn(ds);
    }
    __syncwarp();
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk) {
      FragA a;
      wmma::load_matrix_sync(a, sds + row0 * kLdP + 16 * kk, kLdP);
#pragma unroll
      for (int n = 0; n < kN; ++n) {
        FragBRow kf;
        wmma::load_matrix_sync(kf, sk + 16 * kk * kLdB + 16 * n, kLdB);
        wmma::mma_sync(acc[n], a, kf, acc[n]);
      }
    }
  }
  __syncthreads();  // `so` overlays sk and sv
#pragma unroll
  for (int n = 0; n < kN; ++n) {
    wmma::store_matrix_sync(so + row0 * kLdO + 16 * n, acc[n], kLdO, wmma::mem_row_major);
  }
  __syncwarp();
  constexpr int kChunks = D / 8;
  for (int i = lane; i < 16 * kChunks; i += 32) {
    const int r = i / kChunks, c = i % kChunks, t = q0 + row0 + r;
    if (t >= Tn) continue;
    uint4* p = reinterpret_cast<uint4*>(dq + qoff + static_cast<int64_t>(t) * ldq + c * 8);
    float x[8];
    Unpack8(*p, x);
    const float* add = so + (row0 + r) * kLdO + c * 8;
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] += scale * add[e];
    *p = Pack8(x);
  }
#else
  __trap();
#endif
}

// dk[b, s, g] += scale * sum_{h in g, t} dS[t, s] q[t, h];  dv[b, s, g] += sum P[t, s] dout[t, h].
template <int D>
__global__ void __launch_bounds__(kDkvThreads)
    TcDkvKernel(const bf16* __restrict__ dout, const bf16* __restrict__ q,
                const bf16* __restrict__ k, const bf16* __restrict__ v,
                const float* __restrict__ lse, const float* __restrict__ di, int Tn, int H,
                int Hkv, float scale, bf16* __restrict__ dk, bf16* __restrict__ dv,
                const int32_t* __restrict__ seg_start) {
#ifdef RLVR_TC_ATTENTION
  constexpr int kLdB = LdB<D>(), kLdO = LdO<D>(), kN = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* sk = reinterpret_cast<bf16*>(smem);                 // [64 keys][kLdB]
  bf16* sv = sk + kTile * kLdB;                             // [64 keys][kLdB]
  bf16* sq = sv + kTile * kLdB;                             // [64 queries][kLdB]
  bf16* sdo = sq + kTile * kLdB;                            // [64 queries][kLdB]
  float* ss = reinterpret_cast<float*>(sdo + kTile * kLdB); // [64 keys][kLdS] S^T
  float* sdp = ss + kTile * kLdS;                           // [64 keys][kLdS] dP^T
  bf16* sp = reinterpret_cast<bf16*>(sdp + kTile * kLdS);   // [64 keys][kLdP] P^T
  bf16* sds = sp + kTile * kLdP;                            // [64 keys][kLdP] dS^T
  float* slse = reinterpret_cast<float*>(sds + kTile * kLdP);
  float* sdi = slse + kTile;
  int* slo = reinterpret_cast<int*>(sdi + kTile);
  float* sdv_out = reinterpret_cast<float*>(sq);  // [64][kLdO] after the loops (over sq, sdo)
  float* sdk_out = ss;                            // [64][kLdO] after the loops (over ss, sdp)

  const int b = blockIdx.z, g = blockIdx.y, k0 = blockIdx.x * kTile;
  const int group = H / Hkv;
  const int warp = threadIdx.x / 32;
  const int role = warp / 4;          // 0: S^T and dv; 1: dP^T and dk (warp-uniform)
  const int row0 = (warp % 4) * 16;   // this warp's 16 keys of the tile
  const int64_t ldq = static_cast<int64_t>(H) * D, ldk = static_cast<int64_t>(Hkv) * D;
  const int64_t koff = static_cast<int64_t>(b) * Tn * ldk + static_cast<int64_t>(g) * D;
  const int32_t* seg = seg_start ? seg_start + static_cast<int64_t>(b) * Tn : nullptr;
  const int k_last = min(k0 + kTile, Tn) - 1;

  LoadTile<D, kDkvThreads>(sk, k + koff, ldk, k0, Tn);
  LoadTile<D, kDkvThreads>(sv, v + koff, ldk, k0, Tn);
  FragC acc[kN];
#pragma unroll
  for (int n = 0; n < kN; ++n) wmma::fill_fragment(acc[n], 0.f);

  for (int h = g * group; h < (g + 1) * group; ++h) {
    const int64_t qoff = static_cast<int64_t>(b) * Tn * ldq + static_cast<int64_t>(h) * D;
    const float* lse_bh = lse + (static_cast<int64_t>(b) * H + h) * Tn;
    const float* di_bh = di + (static_cast<int64_t>(b) * H + h) * Tn;
    // Queries before k0 never see these keys; once a tile's first query starts its segment
    // after the last key, no later query sees them either (segment starts are non-decreasing).
    for (int q0 = k0; q0 < Tn && SegLo(seg, q0) <= k_last; q0 += kTile) {
      __syncthreads();  // the previous query tile is consumed (first time: sk, sv are loaded)
      LoadTile<D, kDkvThreads>(sq, q + qoff, ldq, q0, Tn);
      LoadTile<D, kDkvThreads>(sdo, dout + qoff, ldq, q0, Tn);
      for (int i = threadIdx.x; i < kTile; i += kDkvThreads) {
        const int t = q0 + i;
        slse[i] = t < Tn ? lse_bh[t] : 0.f;
        sdi[i] = t < Tn ? di_bh[t] : 0.f;
        slo[i] = t < Tn ? SegLo(seg, t) : 0;
      }
      __syncthreads();
      {
        const bf16* a_src = role ? sv : sk;   // keys' rows
        const bf16* b_src = role ? sdo : sq;  // queries' rows, read transposed
        float* dst = role ? sdp : ss;
#pragma unroll
        for (int n = 0; n < kTile / 16; ++n) {
          FragC c;
          wmma::fill_fragment(c, 0.f);
#pragma unroll
          for (int kd = 0; kd < kN; ++kd) {
            FragA a;
            FragBCol bt;
            wmma::load_matrix_sync(a, a_src + row0 * kLdB + 16 * kd, kLdB);
            wmma::load_matrix_sync(bt, b_src + 16 * n * kLdB + 16 * kd, kLdB);
            wmma::mma_sync(c, a, bt, c);
          }
          wmma::store_matrix_sync(dst + row0 * kLdS + 16 * n, c, kLdS, wmma::mem_row_major);
        }
      }
      __syncthreads();
      for (int i = threadIdx.x; i < kTile * kTile; i += kDkvThreads) {
        const int r = i / kTile, c = i % kTile, s = k0 + r, t = q0 + c;
        float p = 0.f, ds = 0.f;
        if (s < Tn && t < Tn && s <= t && s >= slo[c]) {
          p = expf(ss[r * kLdS + c] * scale - slse[c]);
          ds = p * (sdp[r * kLdS + c] - sdi[c]);
        }
        sp[r * kLdP + c] = __float2bfloat16_rn(p);
        sds[r * kLdP + c] = __float2bfloat16_rn(ds);
      }
      __syncthreads();
      {
        const bf16* a_src = role ? sds : sp;  // [keys][queries]
        const bf16* b_src = role ? sq : sdo;  // [queries][D]
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) {
          FragA a;
          wmma::load_matrix_sync(a, a_src + row0 * kLdP + 16 * kk, kLdP);
#pragma unroll
          for (int n = 0; n < kN; ++n) {
            FragBRow bx;
            wmma::load_matrix_sync(bx, b_src + 16 * kk * kLdB + 16 * n, kLdB);
            wmma::mma_sync(acc[n], a, bx, acc[n]);
          }
        }
      }
    }
  }
  __syncthreads();  // the staging overlays sq, sdo, ss, sdp
  {
    float* dst = role ? sdk_out : sdv_out;
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      wmma::store_matrix_sync(dst + row0 * kLdO + 16 * n, acc[n], kLdO, wmma::mem_row_major);
    }
  }
  __syncthreads();
  constexpr int kChunks = D / 8;
  for (int i = threadIdx.x; i < kTile * kChunks; i += kDkvThreads) {
    const int r = i / kChunks, c = i % kChunks, s = k0 + r;
    if (s >= Tn) continue;
    const int64_t off = koff + static_cast<int64_t>(s) * ldk + c * 8;
    float x[8];
    uint4* pv = reinterpret_cast<uint4*>(dv + off);
    Unpack8(*pv, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] += sdv_out[r * kLdO + c * 8 + e];
    *pv = Pack8(x);
    uint4* pk = reinterpret_cast<uint4*>(dk + off);
    Unpack8(*pk, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) x[e] += scale * sdk_out[r * kLdO + c * 8 + e];
    *pk = Pack8(x);
  }
#else
  __trap();
#endif
}

template <int D>
absl::Status LaunchForward(const char* fn, const bf16* q, const bf16* k, const bf16* v,
                           int64_t B, int64_t Tn, int64_t H, int64_t Hkv, float scale, bf16* out,
                           float* lse, const int32_t* seg, cudaStream_t stream) {
  constexpr size_t smem = FwdSmemBytes<D>();
  RLVR_RETURN_IF_ERROR(CudaStatus(internal::AllowSharedMemory(TcForwardKernel<D>, smem),
                                  std::string(fn) + ": shared memory"));
  const dim3 grid(static_cast<unsigned>((Tn + kTile - 1) / kTile), static_cast<unsigned>(H),
                  static_cast<unsigned>(B));
  TcForwardKernel<D><<<grid, kFwdThreads, smem, stream>>>(
      q, k, v, static_cast<int>(Tn), static_cast<int>(H), static_cast<int>(Hkv), scale, out, lse,
      seg);
  return LaunchStatus(fn);
}

template <int D>
absl::Status LaunchBackward(const char* fn, const bf16* dout, const bf16* q, const bf16* k,
                            const bf16* v, const bf16* out, const float* lse, int64_t B,
                            int64_t Tn, int64_t H, int64_t Hkv, float scale, bf16* dq, bf16* dk,
                            bf16* dv, float* di, const int32_t* seg, cudaStream_t stream) {
  const int tn = static_cast<int>(Tn), h = static_cast<int>(H), hkv = static_cast<int>(Hkv);
  const std::string name(fn);
  {
    const int64_t rows = B * Tn * H, per_block = 8;
    const int64_t blocks = std::min<int64_t>((rows + per_block - 1) / per_block, int64_t{1} << 16);
    TcRowDotKernel<D><<<static_cast<unsigned>(blocks), per_block * 32, 0, stream>>>(dout, out, B,
                                                                                    tn, h, di);
    RLVR_RETURN_IF_ERROR(LaunchStatus(name + ": dout . out"));
  }
  {
    constexpr size_t smem = DqSmemBytes<D>();
    RLVR_RETURN_IF_ERROR(CudaStatus(internal::AllowSharedMemory(TcDqKernel<D>, smem),
                                    name + ": shared memory"));
    const dim3 grid(static_cast<unsigned>((Tn + kTile - 1) / kTile), static_cast<unsigned>(H),
                    static_cast<unsigned>(B));
    TcDqKernel<D><<<grid, kDqThreads, smem, stream>>>(dout, q, k, v, lse, di, tn, h, hkv, scale,
                                                      dq, seg);
    RLVR_RETURN_IF_ERROR(LaunchStatus(name + ": dq"));
  }
  constexpr size_t smem = DkvSmemBytes<D>();
  RLVR_RETURN_IF_ERROR(CudaStatus(internal::AllowSharedMemory(TcDkvKernel<D>, smem),
                                  name + ": shared memory"));
  const dim3 grid(static_cast<unsigned>((Tn + kTile - 1) / kTile), static_cast<unsigned>(Hkv),
                  static_cast<unsigned>(B));
  TcDkvKernel<D><<<grid, kDkvThreads, smem, stream>>>(dout, q, k, v, lse, di, tn, h, hkv, scale,
                                                      dk, dv, seg);
  return LaunchStatus(name + ": dk, dv");
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Shape, head dim and 16-byte alignment checks common to both passes.
absl::Status CheckTc(const char* fn, int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                     std::initializer_list<const void*> bf16_ptrs) {
  RLVR_RETURN_IF_ERROR(internal::CheckAttentionShape(fn, B, Tn, H, Hkv, D));
  if (D != 64 && D != 128) {
    return internal::Bad(fn, "head dim D=", D, " unsupported by the tensor-core kernels (64 or 128)");
  }
  for (const void* p : bf16_ptrs) {
    if (!Aligned16(p)) return internal::Bad(fn, "bf16 tensors must be 16-byte aligned");
  }
  return absl::OkStatus();
}

// Compute capability major of `device`, queried once per device (0 when the query fails).
int ComputeMajor(int device) {
  constexpr int kCached = 64;
  static std::array<std::atomic<int>, kCached> cache{};  // 0: not yet queried; else major + 1
  if (device >= 0 && device < kCached) {
    const int c = cache[device].load(std::memory_order_relaxed);
    if (c > 0) return c - 1;
  }
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    (void)cudaGetLastError();  // do not leave the error for the next LaunchStatus
    return 0;
  }
  if (device >= 0 && device < kCached) cache[device].store(major + 1, std::memory_order_relaxed);
  return major;
}

absl::Status CheckDevice(const char* fn) {
  int device = 0;
  RLVR_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), std::string(fn) + ": cudaGetDevice"));
  const int major = ComputeMajor(device);
  if (major < 8) {
    return absl::FailedPreconditionError(absl::StrCat(
        fn, ": the tensor-core kernels need compute capability 8.0 or newer; device ", device,
        " has major ", major));
  }
  return absl::OkStatus();
}

const bf16* Bf(const uint16_t* p) { return reinterpret_cast<const bf16*>(p); }
bf16* Bf(uint16_t* p) { return reinterpret_cast<bf16*>(p); }

}  // namespace

namespace internal {

bool TcAttentionEligible(int64_t D, std::initializer_list<const void*> ptrs) {
  if (D != 64 && D != 128) return false;
  const char* fma = std::getenv("RLVR_ATTENTION_FMA");
  if (fma != nullptr && std::strcmp(fma, "1") == 0) return false;
  for (const void* p : ptrs) {
    if (!Aligned16(p)) return false;
  }
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return ComputeMajor(device) >= 8;
}

absl::Status TcAttentionForward(const char* fn, const uint16_t* q, const uint16_t* k,
                                const uint16_t* v, int64_t B, int64_t Tn, int64_t H,
                                int64_t Hkv, int64_t D, double scale, uint16_t* out, float* lse,
                                const int32_t* seg_start, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckTc(fn, B, Tn, H, Hkv, D, {q, k, v, out}));
  if (B == 0 || Tn == 0 || H == 0) return absl::OkStatus();
  if (!q || !k || !v || !out || !lse) return Bad(fn, "null q, k, v, out or lse");
  RLVR_RETURN_IF_ERROR(CheckDevice(fn));
  const float sc = static_cast<float>(scale);
  cudaStream_t st = AsCudaStream(stream);
  if (D == 64) {
    return LaunchForward<64>(fn, Bf(q), Bf(k), Bf(v), B, Tn, H, Hkv, sc, Bf(out), lse, seg_start,
                             st);
  }
  return LaunchForward<128>(fn, Bf(q), Bf(k), Bf(v), B, Tn, H, Hkv, sc, Bf(out), lse, seg_start,
                            st);
}

absl::Status TcAttentionBackward(const char* fn, const uint16_t* dout, const uint16_t* q,
                                 const uint16_t* k, const uint16_t* v, const uint16_t* out,
                                 const float* lse, int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                                 int64_t D, double scale, uint16_t* dq, uint16_t* dk,
                                 uint16_t* dv, void* workspace, size_t workspace_bytes,
                                 const int32_t* seg_start, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckTc(fn, B, Tn, H, Hkv, D, {dout, q, k, v, out, dq, dk, dv}));
  if (B == 0 || Tn == 0 || H == 0) return absl::OkStatus();
  if (!dout || !q || !k || !v || !out || !lse || !dq || !dk || !dv) {
    return Bad(fn, "null dout, q, k, v, out, lse, dq, dk or dv");
  }
  const size_t need = AttentionBackwardBytes(B, Tn, H);
  if (workspace == nullptr || workspace_bytes < need) {
    return Bad(fn, "workspace of ", workspace_bytes, " bytes, need ", need);
  }
  RLVR_RETURN_IF_ERROR(CheckDevice(fn));
  float* di = static_cast<float*>(workspace);
  const float sc = static_cast<float>(scale);
  cudaStream_t st = AsCudaStream(stream);
  if (D == 64) {
    return LaunchBackward<64>(fn, Bf(dout), Bf(q), Bf(k), Bf(v), Bf(out), lse, B, Tn, H, Hkv, sc,
                              Bf(dq), Bf(dk), Bf(dv), di, seg_start, st);
  }
  return LaunchBackward<128>(fn, Bf(dout), Bf(q), Bf(k), Bf(v), Bf(out), lse, B, Tn, H, Hkv, sc,
                             Bf(dq), Bf(dk), Bf(dv), di, seg_start, st);
}

}  // namespace internal

bool AttentionBf16UsesTensorCores(int64_t D) { return internal::TcAttentionEligible(D, {}); }

absl::Status AttentionForwardBf16Tc(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                    int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                    double scale, uint16_t* out, float* lse,
                                    const int32_t* seg_start, Stream stream) {
  return internal::TcAttentionForward("AttentionForwardBf16Tc", q, k, v, B, Tn, H, Hkv, D, scale,
                                      out, lse, seg_start, stream);
}

absl::Status AttentionBackwardBf16Tc(const uint16_t* dout, const uint16_t* q, const uint16_t* k,
                                     const uint16_t* v, const uint16_t* out, const float* lse,
                                     int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                     double scale, uint16_t* dq, uint16_t* dk, uint16_t* dv,
                                     void* workspace, size_t workspace_bytes,
                                     const int32_t* seg_start, Stream stream) {
  return internal::TcAttentionBackward("AttentionBackwardBf16Tc", dout, q, k, v, out, lse, B, Tn,
                                       H, Hkv, D, scale, dq, dk, dv, workspace, workspace_bytes,
                                       seg_start, stream);
}

}  // namespace rlvr::kernels::cuda
