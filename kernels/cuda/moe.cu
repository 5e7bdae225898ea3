// MoE routing, permutation and grouped expert GEMMs (see kernels/cuda/moe.h).
//
// Router: one warp per token; top-K as K rounds of a warp arg-max (ties to the lower expert
// index, as the CPU's partial_sort comparator), chosen experts marked in a per-lane bit mask
// (bit i of lane l is expert l + 32 i, hence E <= 1024).
// Permutation: a one-block histogram + scan gives expert_offset, then one block per expert
// ranks its assignments in ascending order with warp ballots (stable, no atomics on the
// positions): O(E * N * K) reads of small int32 arrays, fine for E <= 1024.
// Grouped GEMM: the grid's x dimension enumerates (expert, 64-row tile) pairs, at most
// ceil(M / 64) + E of them; each block finds its pair by walking expert_offset.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "core/status.h"
#include "kernels/cuda/attn_moe_args.h"
#include "kernels/cuda/attn_moe_util.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/grouped_gemm_tc.h"
#include "kernels/cuda/moe.h"

namespace rlvr::kernels::cuda {
namespace {

using internal::Bad;
using internal::FromF;
using internal::kFullMask;
using internal::ToF;
using internal::WarpSum;

constexpr int64_t kMaxExperts = 1024;
constexpr int64_t kMaxTopK = 32;

unsigned GridFor(int64_t work, int64_t per_block) {
  return static_cast<unsigned>(
      std::clamp<int64_t>((work + per_block - 1) / per_block, 1, int64_t{1} << 16));
}

__global__ void RouterTopKKernel(const float* __restrict__ logits, int64_t N, int E, int K,
                                 bool norm, float rsf, float* __restrict__ probs,
                                 int32_t* __restrict__ topk_experts,
                                 float* __restrict__ topk_weights) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       n < N; n += warps) {
    const float* z = logits + n * E;
    float* p = probs + n * E;
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, z[e]);
    mx = internal::WarpMax(mx);
    float sum = 0.f;
    for (int e = lane; e < E; e += 32) {
      const float x = expf(z[e] - mx);
      p[e] = x;
      sum += x;
    }
    const float inv = 1.f / WarpSum(sum);
    for (int e = lane; e < E; e += 32) p[e] *= inv;  // each lane rereads only its own writes

    uint32_t taken = 0;
    float my_v = 0.f, total = 0.f;
    int my_e = 0;
    for (int k = 0; k < K; ++k) {
      float best_v = -INFINITY;
      int best_e = INT_MAX;
      for (int i = 0, e = lane; e < E; ++i, e += 32) {
        if ((taken >> i) & 1u) continue;
        const float v = p[e];
        if (v > best_v || (v == best_v && e < best_e)) {
          best_v = v;
          best_e = e;
        }
      }
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(kFullMask, best_v, o);
        const int oe = __shfl_xor_sync(kFullMask, best_e, o);
        if (ov > best_v || (ov == best_v && oe < best_e)) {
          best_v = ov;
          best_e = oe;
        }
      }
      if (best_e % 32 == lane) taken |= 1u << (best_e / 32);
      if (lane == k) {
        my_v = best_v;
        my_e = best_e;
      }
      total += best_v;  // in selection order, as the CPU
    }
    if (lane < K) {
      const float denom = norm ? total : 1.f;
      topk_experts[n * K + lane] = my_e;
      topk_weights[n * K + lane] = my_v / denom * rsf;
    }
  }
}

__global__ void RouterBackwardKernel(const float* __restrict__ probs,
                                     const int32_t* __restrict__ topk_experts,
                                     const float* __restrict__ dweights,
                                     const double* __restrict__ aux_coef, int64_t N, int E, int K,
                                     bool norm, float rsf, float* __restrict__ dlogits) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       n < N; n += warps) {
    const float* p = probs + n * E;
    const int32_t* ch = topk_experts + n * K;
    const float* dw = dweights + n * K;
    // Sums in selection order, as the CPU.
    float S = 0.f, dot = 0.f;
    for (int k = 0; k < K; ++k) {
      S += p[ch[k]];
      dot += dw[k] * p[ch[k]];
    }
    float pdp = 0.f;
    for (int e = lane; e < E; e += 32) {
      float ds = 0.f;
      for (int k = 0; k < K; ++k) {
        if (ch[k] == e) ds += norm ? rsf * (dw[k] / S - dot / (S * S)) : rsf * dw[k];
      }
      if (aux_coef != nullptr) ds += static_cast<float>(aux_coef[e]);
      pdp = fmaf(p[e], ds, pdp);
    }
    pdp = WarpSum(pdp);
    for (int e = lane; e < E; e += 32) {
      float ds = 0.f;
      for (int k = 0; k < K; ++k) {
        if (ch[k] == e) ds += norm ? rsf * (dw[k] / S - dot / (S * S)) : rsf * dw[k];
      }
      if (aux_coef != nullptr) ds += static_cast<float>(aux_coef[e]);
      dlogits[n * E + e] += p[e] * (ds - pdp);
    }
  }
}

// One block: expert histogram in shared memory, then the exclusive scan into expert_offset.
__global__ void __launch_bounds__(1024)
    ExpertOffsetKernel(const int32_t* __restrict__ topk_experts, int64_t A, int E,
                       int32_t* __restrict__ expert_offset) {
  __shared__ int count[kMaxExperts];
  for (int e = threadIdx.x; e < E; e += blockDim.x) count[e] = 0;
  __syncthreads();
  for (int64_t a = threadIdx.x; a < A; a += blockDim.x) {
    const int e = topk_experts[a];
    if (e >= 0 && e < E) atomicAdd(&count[e], 1);  // integer: order does not matter
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0;
    for (int e = 0; e < E; ++e) {
      expert_offset[e] = run;
      run += count[e];
    }
    expert_offset[E] = run;
  }
}

// Block e writes expert e's assignments, ascending, to order[expert_offset[e] ...].
constexpr int kRankThreads = 256;
__global__ void __launch_bounds__(kRankThreads)
    RankKernel(const int32_t* __restrict__ topk_experts, int64_t A,
               const int32_t* __restrict__ expert_offset, int32_t* __restrict__ order,
               int32_t* __restrict__ slot_pos) {
  __shared__ int warp_count[kRankThreads / 32];
  const int e = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int base = expert_offset[e];
  int running = 0;
  for (int64_t a0 = 0; a0 < A; a0 += kRankThreads) {
    const int64_t a = a0 + threadIdx.x;
    const bool mine = a < A && topk_experts[a] == e;
    const unsigned ballot = __ballot_sync(kFullMask, mine);
    if (lane == 0) warp_count[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < kRankThreads / 32; ++w) {
      before += w < warp ? warp_count[w] : 0;
      total += warp_count[w];
    }
    if (mine) {
      const int pos = base + running + before + __popc(ballot & ((1u << lane) - 1u));
      order[pos] = static_cast<int32_t>(a);
      slot_pos[a] = pos;
    }
    running += total;
    __syncthreads();  // warp_count is rewritten by the next chunk
  }
}

// Block e: expert_count[e] and prob_sum[e], each thread striding in a fixed order, then a fixed
// tree over the block.
constexpr int kStatThreads = 256;
__global__ void __launch_bounds__(kStatThreads)
    StatsKernel(const float* __restrict__ probs, const int32_t* __restrict__ topk_experts,
                int64_t N, int E, int64_t A, int64_t* __restrict__ expert_count,
                double* __restrict__ prob_sum) {
  __shared__ double s_sum[kStatThreads];
  __shared__ long long s_cnt[kStatThreads];
  const int e = blockIdx.x;
  double sum = 0;
  long long cnt = 0;
  for (int64_t n = threadIdx.x; n < N; n += kStatThreads) sum += probs[n * E + e];
  for (int64_t a = threadIdx.x; a < A; a += kStatThreads) cnt += topk_experts[a] == e;
  s_sum[threadIdx.x] = sum;
  s_cnt[threadIdx.x] = cnt;
  __syncthreads();
  for (int w = kStatThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      s_sum[threadIdx.x] += s_sum[threadIdx.x + w];
      s_cnt[threadIdx.x] += s_cnt[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    prob_sum[e] = s_sum[0];
    expert_count[e] = s_cnt[0];
  }
}

template <typename T>
__global__ void GatherKernel(const T* __restrict__ x, const int32_t* __restrict__ order,
                             int64_t A, int K, int64_t C, T* __restrict__ xe) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < A * C;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / C, c = i % C;
    xe[i] = x[static_cast<int64_t>(order[r] / K) * C + c];
  }
}

// T: the storage of dxe; U: the storage of dx (the same, or fp32 for a bf16 dxe).
template <typename T, typename U = T>
__global__ void GatherBackwardKernel(const T* __restrict__ dxe, const int32_t* __restrict__ pos,
                                     int64_t N, int K, int64_t C, U* __restrict__ dx) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < N * C;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    float acc = 0.f;
    for (int k = 0; k < K; ++k) acc += ToF(dxe[static_cast<int64_t>(pos[n * K + k]) * C + c]);
    dx[i] = FromF<U>(ToF(dx[i]) + acc);
  }
}

template <typename T>
__global__ void CombineKernel(const T* __restrict__ ye, const float* __restrict__ w,
                              const int32_t* __restrict__ pos, int64_t N, int K, int64_t C,
                              T* __restrict__ y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < N * C;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    float acc = 0.f;
    for (int k = 0; k < K; ++k) {
      acc = fmaf(w[n * K + k], ToF(ye[static_cast<int64_t>(pos[n * K + k]) * C + c]), acc);
    }
    y[i] = FromF<T>(acc);
  }
}

// One warp per assignment (n, k).
template <typename T>
__global__ void CombineBackwardKernel(const T* __restrict__ dy, const T* __restrict__ ye,
                                      const float* __restrict__ w,
                                      const int32_t* __restrict__ pos, int64_t A, int K,
                                      int64_t C, float* __restrict__ dweights,
                                      T* __restrict__ dye) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t a = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       a < A; a += warps) {
    const int64_t n = a / K, p = pos[a];
    const T* dyn = dy + n * C;
    const T* o = ye + p * C;
    T* d = dye + p * C;
    const float wk = w[a];
    float acc = 0.f;
    for (int64_t c = lane; c < C; c += 32) {
      const float g = ToF(dyn[c]);
      acc = fmaf(g, ToF(o[c]), acc);
      d[c] = FromF<T>(wk * g);
    }
    acc = WarpSum(acc);
    if (lane == 0) dweights[a] = acc;
  }
}

constexpr int kTm = 64, kTn = 64, kTk = 16, kGemmThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kGemmThreads)
    GroupedGemmKernel(const T* __restrict__ x, const T* __restrict__ w,
                      const int32_t* __restrict__ expert_offset, int E, int Nout, int Kin,
                      bool trans_w, T* __restrict__ y) {
  __shared__ float As[kTk][kTm];
  __shared__ float Bs[kTk][kTn];
  // Which (expert, row tile) this block is; blocks past the last tile leave (block-uniform).
  int tile = blockIdx.x, e = 0;
  for (; e < E; ++e) {
    const int rows = expert_offset[e + 1] - expert_offset[e];
    const int tiles = (rows + kTm - 1) / kTm;
    if (tile < tiles) break;
    tile -= tiles;
  }
  if (e == E) return;
  const int r0 = expert_offset[e] + tile * kTm, r_end = expert_offset[e + 1];
  const int n0 = blockIdx.y * kTn;
  const T* we = w + static_cast<int64_t>(e) * Nout * Kin;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < Kin; k0 += kTk) {
    for (int li = threadIdx.x; li < kTm * kTk; li += kGemmThreads) {
      const int m = li / kTk, kk = li % kTk;
      const int r = r0 + m, kc = k0 + kk;
      As[kk][m] = r < r_end && kc < Kin ? ToF(x[static_cast<int64_t>(r) * Kin + kc]) : 0.f;
    }
    for (int li = threadIdx.x; li < kTn * kTk; li += kGemmThreads) {
      int nn, kk;
      float val = 0.f;
      if (!trans_w) {  // W_e [Nout, Kin]: contiguous along k
        nn = li / kTk;
        kk = li % kTk;
        if (n0 + nn < Nout && k0 + kk < Kin) {
          val = ToF(we[static_cast<int64_t>(n0 + nn) * Kin + k0 + kk]);
        }
      } else {  // W_e [Kin, Nout]: contiguous along n
        kk = li / kTn;
        nn = li % kTn;
        if (n0 + nn < Nout && k0 + kk < Kin) {
          val = ToF(we[static_cast<int64_t>(k0 + kk) * Nout + n0 + nn]);
        }
      }
      Bs[kk][nn] = val;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTk; ++kk) {
      float a[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = r0 + ty + 16 * i;
    if (r >= r_end) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = n0 + tx + 16 * j;
      if (c < Nout) y[static_cast<int64_t>(r) * Nout + c] = FromF<T>(acc[i][j]);
    }
  }
}

// Weight gradient of the grouped GEMM: block (Kin tile blockIdx.x, Nout tile blockIdx.y, expert
// blockIdx.z) accumulates dw[e][n0 + 64, k0 + 64] over the expert's rows, kTr at a time: the
// chunk's dy [kTr, 64] and x [kTr, 64] are staged (zero-filled past the run / the matrix) in
// shared memory, then thread (ty, tx) adds dy[r, ty + 16 i] * x[r, tx + 16 j] for r ascending.
constexpr int kTr = 16;
static_assert(kTm == 64 && kTn == 64 && kGemmThreads == 256 && kTr % 4 == 0,
              "GroupedWeightGradKernel's staging: 256 threads = 64 columns x 4 rows");

template <typename T>
__global__ void __launch_bounds__(kGemmThreads)
    GroupedWeightGradKernel(const T* __restrict__ dy, const T* __restrict__ x,
                            const int32_t* __restrict__ expert_offset, int Nout, int Kin,
                            float* __restrict__ dw) {
  __shared__ float Ds[kTr][kTn];  // dy chunk: rows x Nout columns
  __shared__ float Xs[kTr][kTm];  // x chunk: rows x Kin columns
  const int e = blockIdx.z;
  const int r_begin = expert_offset[e], r_end = expert_offset[e + 1];
  if (r_end <= r_begin) return;  // block-uniform: no rows, dw[e] unchanged
  const int k0 = blockIdx.x * kTm, n0 = blockIdx.y * kTn;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  // Staging: thread t loads column t % 64 of rows t / 64 + 4 q, q < kTr / 4, of both chunks.
  const int cc = threadIdx.x % 64, rq = threadIdx.x / 64;
  const bool n_ok = n0 + cc < Nout, k_ok = k0 + cc < Kin;
  const T* dy_col = dy + n0 + cc;
  const T* x_col = x + k0 + cc;
  for (int r0 = r_begin; r0 < r_end; r0 += kTr) {
#pragma unroll
    for (int q = 0; q < kTr / 4; ++q) {
      const int rr = rq + 4 * q, r = r0 + rr;
      Ds[rr][cc] = r < r_end && n_ok ? ToF(dy_col[static_cast<int64_t>(r) * Nout]) : 0.f;
      Xs[rr][cc] = r < r_end && k_ok ? ToF(x_col[static_cast<int64_t>(r) * Kin]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kTr; ++rr) {
      float a[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = Ds[rr][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Xs[rr][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
      }
    }
    __syncthreads();  // the chunk is overwritten next
  }
  float* dwe = dw + static_cast<int64_t>(e) * Nout * Kin;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int nn = n0 + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int kk = k0 + tx + 16 * j;
      if (nn < Nout && kk < Kin) dwe[static_cast<int64_t>(nn) * Kin + kk] += acc[i][j];
    }
  }
}

absl::Status CheckNK(const char* fn, int64_t N, int64_t K, int64_t C) {
  if (N < 0 || K <= 0 || K > kMaxTopK || C <= 0) {
    return Bad(fn, "N=", N, " K=", K, " C=", C, " (need N >= 0, 1 <= K <= 32, C >= 1)");
  }
  if (N * K >= (int64_t{1} << 31)) return Bad(fn, "N*K=", N * K, " above int32 range");
  return absl::OkStatus();
}

absl::Status CheckRouter(const char* fn, int64_t N, int64_t E, int64_t K) {
  if (N < 0) return Bad(fn, "N=", N, " is negative");
  if (E <= 0 || E > kMaxExperts) return Bad(fn, "E=", E, " must be in [1, 1024]");
  if (K <= 0 || K > std::min(E, kMaxTopK)) {
    return Bad(fn, "K=", K, " must be in [1, min(E=", E, ", 32)]");
  }
  if (N * K >= (int64_t{1} << 31)) return Bad(fn, "N*K=", N * K, " above int32 range");
  return absl::OkStatus();
}

template <typename T>
absl::Status Gather(const char* fn, const T* x, const int32_t* order, int64_t N, int64_t K,
                    int64_t C, T* xe, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0) return absl::OkStatus();
  if (!x || !order || !xe) return Bad(fn, "null x, order or xe");
  GatherKernel<T><<<GridFor(N * K * C, 256), 256, 0, AsCudaStream(stream)>>>(
      x, order, N * K, static_cast<int>(K), C, xe);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status GatherBackward(const char* fn, const T* dxe, const int32_t* pos, int64_t N,
                            int64_t K, int64_t C, T* dx, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0) return absl::OkStatus();
  if (!dxe || !pos || !dx) return Bad(fn, "null dxe, slot_pos or dx");
  GatherBackwardKernel<T><<<GridFor(N * C, 256), 256, 0, AsCudaStream(stream)>>>(
      dxe, pos, N, static_cast<int>(K), C, dx);
  return LaunchStatus(fn);
}

template <typename T, typename U>
absl::Status GatherBackwardMixed(const char* fn, const T* dxe, const int32_t* pos, int64_t N,
                                 int64_t K, int64_t C, U* dx, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0) return absl::OkStatus();
  if (!dxe || !pos || !dx) return Bad(fn, "null dxe, slot_pos or dx");
  GatherBackwardKernel<T, U><<<GridFor(N * C, 256), 256, 0, AsCudaStream(stream)>>>(
      dxe, pos, N, static_cast<int>(K), C, dx);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status GroupedWeightGrad(const char* fn, const T* dy, const T* x,
                               const int32_t* expert_offset, int64_t E, int64_t M_max,
                               int64_t Nout, int64_t Kin, float* dw, Stream stream) {
  if (E <= 0 || E > kMaxExperts) return Bad(fn, "E=", E, " must be in [1, 1024]");
  if (M_max < 0 || Nout <= 0 || Kin <= 0) {
    return Bad(fn, "M_max=", M_max, " Nout=", Nout, " Kin=", Kin, " (need >= 0, > 0, > 0)");
  }
  if (M_max >= (int64_t{1} << 31) || Nout >= (int64_t{1} << 31) || Kin >= (int64_t{1} << 31) ||
      E * Nout * Kin >= (int64_t{1} << 62)) {
    return Bad(fn, "sizes above int32 range");
  }
  if ((Nout + kTn - 1) / kTn > internal::kMaxGridYZ) return Bad(fn, "Nout=", Nout, " too large");
  if (M_max == 0) return absl::OkStatus();
  if (!dy || !x || !expert_offset || !dw) return Bad(fn, "null dy, x, expert_offset or dw");
  const dim3 grid(static_cast<unsigned>((Kin + kTm - 1) / kTm),
                  static_cast<unsigned>((Nout + kTn - 1) / kTn), static_cast<unsigned>(E));
  GroupedWeightGradKernel<T><<<grid, kGemmThreads, 0, AsCudaStream(stream)>>>(
      dy, x, expert_offset, static_cast<int>(Nout), static_cast<int>(Kin), dw);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status Combine(const char* fn, const T* ye, const float* w, const int32_t* pos, int64_t N,
                     int64_t K, int64_t C, T* y, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0) return absl::OkStatus();
  if (!ye || !w || !pos || !y) return Bad(fn, "null ye, topk_weights, slot_pos or y");
  CombineKernel<T><<<GridFor(N * C, 256), 256, 0, AsCudaStream(stream)>>>(
      ye, w, pos, N, static_cast<int>(K), C, y);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status CombineBackward(const char* fn, const T* dy, const T* ye, const float* w,
                             const int32_t* pos, int64_t N, int64_t K, int64_t C,
                             float* dweights, T* dye, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0) return absl::OkStatus();
  if (!dy || !ye || !w || !pos || !dweights || !dye) {
    return Bad(fn, "null dy, ye, topk_weights, slot_pos, dweights or dye");
  }
  CombineBackwardKernel<T><<<GridFor(N * K, 8), 256, 0, AsCudaStream(stream)>>>(
      dy, ye, w, pos, N * K, static_cast<int>(K), C, dweights, dye);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status GroupedGemm(const char* fn, const T* x, const T* w, const int32_t* expert_offset,
                         int64_t E, int64_t M_max, int64_t Nout, int64_t Kin, bool trans_w, T* y,
                         Stream stream) {
  if (E <= 0 || E > kMaxExperts) return Bad(fn, "E=", E, " must be in [1, 1024]");
  if (M_max < 0 || Nout <= 0 || Kin <= 0) {
    return Bad(fn, "M_max=", M_max, " Nout=", Nout, " Kin=", Kin, " (need >= 0, > 0, > 0)");
  }
  if (M_max >= (int64_t{1} << 31) || Nout >= (int64_t{1} << 31) || Kin >= (int64_t{1} << 31) ||
      E * Nout * Kin >= (int64_t{1} << 62)) {
    return Bad(fn, "sizes above int32 range");
  }
  if ((Nout + kTn - 1) / kTn > internal::kMaxGridYZ) return Bad(fn, "Nout=", Nout, " too large");
  if (M_max == 0) return absl::OkStatus();
  if (!x || !w || !expert_offset || !y) return Bad(fn, "null x, w, expert_offset or y");
  const dim3 grid(static_cast<unsigned>((M_max + kTm - 1) / kTm + E),
                  static_cast<unsigned>((Nout + kTn - 1) / kTn));
  GroupedGemmKernel<T><<<grid, kGemmThreads, 0, AsCudaStream(stream)>>>(
      x, w, expert_offset, static_cast<int>(E), static_cast<int>(Nout), static_cast<int>(Kin),
      trans_w, y);
  return LaunchStatus(fn);
}

const __nv_bfloat16* Bf(const uint16_t* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
__nv_bfloat16* Bf(uint16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }

}  // namespace

absl::Status MoeRouterTopK(const float* logits, int64_t N, int64_t E, int64_t K,
                           bool norm_topk_prob, double routed_scaling_factor, float* probs,
                           int32_t* topk_experts, float* topk_weights, Stream stream) {
  const char* fn = "MoeRouterTopK";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (N == 0) return absl::OkStatus();
  if (!logits || !probs || !topk_experts || !topk_weights) {
    return Bad(fn, "null logits, probs, topk_experts or topk_weights");
  }
  RouterTopKKernel<<<GridFor(N, 8), 256, 0, AsCudaStream(stream)>>>(
      logits, N, static_cast<int>(E), static_cast<int>(K), norm_topk_prob,
      static_cast<float>(routed_scaling_factor), probs, topk_experts, topk_weights);
  return LaunchStatus(fn);
}

absl::Status MoeRouterBackward(const float* probs, const int32_t* topk_experts,
                               const float* dweights, const double* aux_coef, int64_t N,
                               int64_t E, int64_t K, bool norm_topk_prob,
                               double routed_scaling_factor, float* dlogits, Stream stream) {
  const char* fn = "MoeRouterBackward";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (N == 0) return absl::OkStatus();
  if (!probs || !topk_experts || !dweights || !dlogits) {
    return Bad(fn, "null probs, topk_experts, dweights or dlogits");
  }
  RouterBackwardKernel<<<GridFor(N, 8), 256, 0, AsCudaStream(stream)>>>(
      probs, topk_experts, dweights, aux_coef, N, static_cast<int>(E), static_cast<int>(K),
      norm_topk_prob, static_cast<float>(routed_scaling_factor), dlogits);
  return LaunchStatus(fn);
}

absl::Status MoePermute(const int32_t* topk_experts, int64_t N, int64_t K, int64_t E,
                        int32_t* expert_offset, int32_t* order, int32_t* slot_pos,
                        Stream stream) {
  const char* fn = "MoePermute";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (!expert_offset) return Bad(fn, "null expert_offset");
  if (N > 0 && (!topk_experts || !order || !slot_pos)) {
    return Bad(fn, "null topk_experts, order or slot_pos");
  }
  // Written even for N == 0: the offsets (all 0) are what the grouped GEMM reads.
  cudaStream_t s = AsCudaStream(stream);
  ExpertOffsetKernel<<<1, 1024, 0, s>>>(topk_experts, N * K, static_cast<int>(E), expert_offset);
  RLVR_RETURN_IF_ERROR(LaunchStatus("MoePermute: offsets"));
  if (N == 0) return absl::OkStatus();
  RankKernel<<<static_cast<unsigned>(E), kRankThreads, 0, s>>>(topk_experts, N * K,
                                                               expert_offset, order, slot_pos);
  return LaunchStatus("MoePermute: ranks");
}

absl::Status MoeRoutingStats(const float* probs, const int32_t* topk_experts, int64_t N,
                             int64_t E, int64_t K, int64_t* expert_count, double* prob_sum,
                             Stream stream) {
  const char* fn = "MoeRoutingStats";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (!expert_count || !prob_sum) return Bad(fn, "null expert_count or prob_sum");
  if (N > 0 && (!probs || !topk_experts)) return Bad(fn, "null probs or topk_experts");
  StatsKernel<<<static_cast<unsigned>(E), kStatThreads, 0, AsCudaStream(stream)>>>(
      probs, topk_experts, N, static_cast<int>(E), N * K, expert_count, prob_sum);
  return LaunchStatus(fn);
}

absl::Status MoeGatherRowsF32(const float* x, const int32_t* order, int64_t N, int64_t K,
                              int64_t C, float* xe, Stream stream) {
  return Gather<float>("MoeGatherRowsF32", x, order, N, K, C, xe, stream);
}
absl::Status MoeGatherRowsBf16(const uint16_t* x, const int32_t* order, int64_t N, int64_t K,
                               int64_t C, uint16_t* xe, Stream stream) {
  return Gather<__nv_bfloat16>("MoeGatherRowsBf16", Bf(x), order, N, K, C, Bf(xe), stream);
}
absl::Status MoeGatherRowsBackwardF32(const float* dxe, const int32_t* slot_pos, int64_t N,
                                      int64_t K, int64_t C, float* dx, Stream stream) {
  return GatherBackward<float>("MoeGatherRowsBackwardF32", dxe, slot_pos, N, K, C, dx, stream);
}
absl::Status MoeGatherRowsBackwardBf16(const uint16_t* dxe, const int32_t* slot_pos, int64_t N,
                                       int64_t K, int64_t C, uint16_t* dx, Stream stream) {
  return GatherBackward<__nv_bfloat16>("MoeGatherRowsBackwardBf16", Bf(dxe), slot_pos, N, K, C,
                                       Bf(dx), stream);
}
absl::Status MoeGatherRowsBackwardBf16ToF32(const uint16_t* dxe, const int32_t* slot_pos,
                                            int64_t N, int64_t K, int64_t C, float* dx,
                                            Stream stream) {
  return GatherBackwardMixed<__nv_bfloat16, float>("MoeGatherRowsBackwardBf16ToF32", Bf(dxe),
                                                   slot_pos, N, K, C, dx, stream);
}
absl::Status MoeCombineF32(const float* ye, const float* topk_weights, const int32_t* slot_pos,
                           int64_t N, int64_t K, int64_t C, float* y, Stream stream) {
  return Combine<float>("MoeCombineF32", ye, topk_weights, slot_pos, N, K, C, y, stream);
}
absl::Status MoeCombineBf16(const uint16_t* ye, const float* topk_weights,
                            const int32_t* slot_pos, int64_t N, int64_t K, int64_t C,
                            uint16_t* y, Stream stream) {
  return Combine<__nv_bfloat16>("MoeCombineBf16", Bf(ye), topk_weights, slot_pos, N, K, C,
                                Bf(y), stream);
}
absl::Status MoeCombineBackwardF32(const float* dy, const float* ye, const float* topk_weights,
                                   const int32_t* slot_pos, int64_t N, int64_t K, int64_t C,
                                   float* dweights, float* dye, Stream stream) {
  return CombineBackward<float>("MoeCombineBackwardF32", dy, ye, topk_weights, slot_pos, N, K, C,
                                dweights, dye, stream);
}
absl::Status MoeCombineBackwardBf16(const uint16_t* dy, const uint16_t* ye,
                                    const float* topk_weights, const int32_t* slot_pos,
                                    int64_t N, int64_t K, int64_t C, float* dweights,
                                    uint16_t* dye, Stream stream) {
  return CombineBackward<__nv_bfloat16>("MoeCombineBackwardBf16", Bf(dy), Bf(ye), topk_weights,
                                        slot_pos, N, K, C, dweights, Bf(dye), stream);
}
absl::Status MoeGroupedGemmF32(const float* x, const float* w, const int32_t* expert_offset,
                               int64_t E, int64_t M_max, int64_t Nout, int64_t Kin, bool trans_w,
                               float* y, Stream stream) {
  return GroupedGemm<float>("MoeGroupedGemmF32", x, w, expert_offset, E, M_max, Nout, Kin,
                            trans_w, y, stream);
}
absl::Status MoeGroupedGemmBf16(const uint16_t* x, const uint16_t* w,
                                const int32_t* expert_offset, int64_t E, int64_t M_max,
                                int64_t Nout, int64_t Kin, bool trans_w, uint16_t* y,
                                Stream stream) {
  if (MoeGroupedGemmUsesTensorCores(Nout, Kin, x, w, y)) {  // grouped_gemm_tc.cu
    return internal::GroupedGemmBf16Tc("MoeGroupedGemmBf16", x, w, expert_offset, E, M_max, Nout,
                                       Kin, trans_w, y, stream);
  }
  return GroupedGemm<__nv_bfloat16>("MoeGroupedGemmBf16", Bf(x), Bf(w), expert_offset, E, M_max,
                                    Nout, Kin, trans_w, Bf(y), stream);
}

absl::Status MoeGroupedGemmWeightGradBf16(const uint16_t* dy, const uint16_t* x,
                                          const int32_t* expert_offset, int64_t E, int64_t M_max,
                                          int64_t Nout, int64_t Kin, float* dw, Stream stream) {
  if (MoeGroupedGemmUsesTensorCores(Nout, Kin, dy, x, nullptr)) {  // grouped_gemm_tc.cu
    return internal::GroupedWeightGradBf16Tc("MoeGroupedGemmWeightGradBf16", dy, x, expert_offset,
                                             E, M_max, Nout, Kin, dw, stream);
  }
  return GroupedWeightGrad<__nv_bfloat16>("MoeGroupedGemmWeightGradBf16", Bf(dy), Bf(x),
                                          expert_offset, E, M_max, Nout, Kin, dw, stream);
}
absl::Status MoeGroupedGemmWeightGradF32(const float* dy, const float* x,
                                         const int32_t* expert_offset, int64_t E, int64_t M_max,
                                         int64_t Nout, int64_t Kin, float* dw, Stream stream) {
  return GroupedWeightGrad<float>("MoeGroupedGemmWeightGradF32", dy, x, expert_offset, E, M_max,
                                  Nout, Kin, dw, stream);
}

namespace {
// One thread per row: K <= 32 weights, summed in k order as the CPU.
__global__ void ApplyForcedKernel(const float* __restrict__ probs,
                                  const int32_t* __restrict__ forced, int64_t N, int E, int K,
                                  bool norm, float rsf, int32_t* __restrict__ topk_experts,
                                  float* __restrict__ topk_weights) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N;
       n += stride) {
    const int32_t* f = forced + n * K;
    if (f[0] < 0) continue;  // the router decides this row
    const float* p = probs + n * E;
    float sum = 0.f;
    for (int k = 0; k < K; ++k) sum += p[f[k]];
    const float denom = norm ? sum : 1.f;
    for (int k = 0; k < K; ++k) {
      topk_experts[n * K + k] = f[k];
      topk_weights[n * K + k] = p[f[k]] / denom * rsf;
    }
  }
}
}  // namespace

absl::Status MoeApplyForcedExperts(const float* probs, const int32_t* forced, int64_t N,
                                   int64_t E, int64_t K, bool norm_topk_prob,
                                   double routed_scaling_factor, int32_t* topk_experts,
                                   float* topk_weights, Stream stream) {
  const char* fn = "MoeApplyForcedExperts";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (N == 0) return absl::OkStatus();
  if (!probs || !forced || !topk_experts || !topk_weights) {
    return Bad(fn, "null probs, forced, topk_experts or topk_weights");
  }
  ApplyForcedKernel<<<GridFor(N, 256), 256, 0, AsCudaStream(stream)>>>(
      probs, forced, N, static_cast<int>(E), static_cast<int>(K), norm_topk_prob,
      static_cast<float>(routed_scaling_factor), topk_experts, topk_weights);
  return LaunchStatus(fn);
}

}  // namespace rlvr::kernels::cuda
