// Paged decode attention (flash-decoding) and the KV cache write (see kernels/cuda/attention.h).
//
// Split kernel: block = (query row (b, t), head h, split), 128 threads. The split's keys go in
// tiles of 32 through shared memory (coalesced loads of whole rows through the block table);
// four threads score one key (interleaved dimensions, rows padded to D + 4 so the 32 lanes of a
// warp hit 32 banks); every thread then redoes the tile's online-softmax step on the 32 scores
// (cheap, and keeps m and l identical in all threads without another reduction) and thread d
// accumulates output dimension d. Each split writes (m, l, acc[D]); a split past the query's
// position writes (-inf, 0, 0). The combine kernel rescales the splits to a common maximum in
// split order.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "core/status.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attn_moe_args.h"
#include "kernels/cuda/attn_moe_util.cuh"
#include "kernels/cuda/check.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::FromF;
using internal::kDecodeTile;
using internal::ToF;

constexpr int kThreads = 128;
constexpr int kTile = static_cast<int>(kDecodeTile);  // keys per tile
constexpr int kLanesPerKey = kThreads / kTile;         // 4

struct PoolArgs {
  int64_t num_blocks;
  int64_t block_size;
  int64_t block_stride;
  const int32_t* block_table;
  int64_t max_blocks;
};

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    DecodeSplitKernel(const T* __restrict__ q, const int32_t* __restrict__ positions, int Tn,
                      int H, int Hkv, float scale, const T* __restrict__ k_pool,
                      const T* __restrict__ v_pool, PoolArgs pool, int split_len, int splits,
                      float* __restrict__ part_acc, float* __restrict__ part_ml) {
  __shared__ float sq[D];
  __shared__ float sk[kTile][D + 4];
  __shared__ float sv[kTile][D];
  __shared__ float sp[kTile];
  const int64_t item = blockIdx.x / splits;  // (b * Tn + t) * H + h
  const int split = blockIdx.x % splits;
  const int h = static_cast<int>(item % H);
  const int64_t bt = item / H;
  const int64_t b = bt / Tn;
  const int g = h / (H / Hkv);
  const int tid = threadIdx.x;
  const int64_t row = static_cast<int64_t>(Hkv) * D;
  const int32_t* table = pool.block_table + b * pool.max_blocks;
  const int ctx = positions[bt] + 1;
  const int s_begin = split * split_len;
  const int s_end = min(s_begin + split_len, ctx);

  for (int d = tid; d < D; d += kThreads) sq[d] = ToF(q[item * D + d]);
  float m = -INFINITY, l = 0.f, acc = 0.f;  // acc: output dimension tid (tid < D)
  for (int k0 = s_begin; k0 < s_end; k0 += kTile) {
    __syncthreads();  // previous tile consumed (and sq written, on the first pass)
    for (int i = tid; i < kTile * D; i += kThreads) {
      const int j = i / D, d = i % D, s = k0 + j;
      float kx = 0.f, vx = 0.f;
      if (s < s_end) {
        const int64_t blk = table[s / pool.block_size];
        const int64_t off = blk * pool.block_stride + (s % pool.block_size) * row +
                            static_cast<int64_t>(g) * D + d;
        kx = ToF(k_pool[off]);
        vx = ToF(v_pool[off]);
      }
      sk[j][d] = kx;
      sv[j][d] = vx;
    }
    __syncthreads();
    {
      const int j = tid / kLanesPerKey, c = tid % kLanesPerKey;
      float dot = 0.f;
#pragma unroll 8
      for (int d = c; d < D; d += kLanesPerKey) dot = fmaf(sq[d], sk[j][d], dot);
      // The four lanes of a key are adjacent in one warp.
      dot += __shfl_xor_sync(internal::kFullMask, dot, 1);
      dot += __shfl_xor_sync(internal::kFullMask, dot, 2);
      if (c == 0) sp[j] = k0 + j < s_end ? dot * scale : -INFINITY;
    }
    __syncthreads();
    float tile_max = -INFINITY;
    for (int j = 0; j < kTile; ++j) tile_max = fmaxf(tile_max, sp[j]);
    const float m_new = fmaxf(m, tile_max);  // finite: key k0 < s_end is valid
    const float alpha = expf(m - m_new);
    float sum = 0.f, part = 0.f;
    for (int j = 0; j < kTile; ++j) {
      const float p = expf(sp[j] - m_new);  // exp(-inf) = 0 past the end
      sum += p;
      if (tid < D) part = fmaf(p, sv[j][tid], part);
    }
    l = l * alpha + sum;
    acc = acc * alpha + part;
    m = m_new;
  }
  const int64_t idx = item * splits + split;
  if (tid < D) part_acc[idx * D + tid] = acc;
  if (tid == 0) {
    part_ml[2 * idx] = m;
    part_ml[2 * idx + 1] = l;
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(D)
    DecodeCombineKernel(const float* __restrict__ part_acc, const float* __restrict__ part_ml,
                        int splits, T* __restrict__ out) {
  const int64_t item = blockIdx.x;
  const int d = threadIdx.x;
  const float* ml = part_ml + item * splits * 2;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, ml[2 * s]);
  float L = 0.f, o = 0.f;
  for (int s = 0; s < splits; ++s) {
    const float m = ml[2 * s];
    if (m == -INFINITY) continue;  // an empty split
    const float w = expf(m - M);
    L = fmaf(ml[2 * s + 1], w, L);
    o = fmaf(part_acc[(item * splits + s) * D + d], w, o);
  }
  out[item * D + d] = FromF<T>(o / L);
}

template <typename T>
__global__ void KvWriteKernel(const T* __restrict__ k_new, const T* __restrict__ v_new,
                              const int32_t* __restrict__ positions, int64_t rows, int64_t row,
                              int Tn, PoolArgs pool, T* __restrict__ k_pool,
                              T* __restrict__ v_pool) {
  const int64_t n = rows * row;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t bt = i / row, e = i % row, b = bt / Tn;
    const int64_t p = positions[bt];
    if (p < 0 || p >= pool.max_blocks * pool.block_size) continue;
    const int64_t blk = pool.block_table[b * pool.max_blocks + p / pool.block_size];
    if (blk < 0 || blk >= pool.num_blocks) continue;
    const int64_t off = blk * pool.block_stride + (p % pool.block_size) * row + e;
    k_pool[off] = k_new[i];
    v_pool[off] = v_new[i];
  }
}

template <typename P>
absl::Status CheckPool(const char* fn, const PagedKv<P>& c, int64_t Hkv, int64_t D) {
  if (!c.k || !c.v || !c.block_table) {
    return internal::Bad(fn, "null cache.k, cache.v or block_table");
  }
  if (c.num_blocks <= 0 || c.block_size <= 0 || c.max_blocks <= 0) {
    return internal::Bad(fn, "cache.num_blocks=", c.num_blocks, ", block_size=", c.block_size,
                         " and max_blocks=", c.max_blocks, " must be positive");
  }
  if (c.block_stride < c.block_size * Hkv * D) {
    return internal::Bad(fn, "cache.block_stride=", c.block_stride, " below block_size * Hkv * D=",
                         c.block_size * Hkv * D);
  }
  if (c.max_blocks * c.block_size > (int64_t{1} << 30)) {
    return internal::Bad(fn, "cache capacity ", c.max_blocks * c.block_size, " too large");
  }
  return absl::OkStatus();
}

template <typename P>
PoolArgs Args(const PagedKv<P>& c) {
  return PoolArgs{c.num_blocks, c.block_size, c.block_stride, c.block_table, c.max_blocks};
}

template <typename T, typename P>
absl::Status Write(const char* fn, const T* k_new, const T* v_new, const int32_t* positions,
                   int64_t B, int64_t Tn, int64_t Hkv, int64_t D, const PagedKv<P>& cache,
                   Stream stream) {
  if (B < 0 || Tn < 0 || Hkv < 0 || D <= 0) {
    return internal::Bad(fn, "bad size: B=", B, " Tn=", Tn, " Hkv=", Hkv, " D=", D);
  }
  if (B == 0 || Tn == 0 || Hkv == 0) return absl::OkStatus();
  if (!k_new || !v_new || !positions) return internal::Bad(fn, "null k_new, v_new or positions");
  RLVR_RETURN_IF_ERROR(CheckPool(fn, cache, Hkv, D));
  const int64_t n = B * Tn * Hkv * D;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, int64_t{1} << 16);
  KvWriteKernel<T><<<static_cast<unsigned>(blocks), 256, 0, AsCudaStream(stream)>>>(
      k_new, v_new, positions, B * Tn, Hkv * D, static_cast<int>(Tn), Args(cache),
      reinterpret_cast<T*>(cache.k), reinterpret_cast<T*>(cache.v));
  return LaunchStatus(fn);
}

template <typename T, int D>
absl::Status LaunchDecode(const T* q, const int32_t* positions, int64_t B, int64_t Tn, int64_t H,
                          int64_t Hkv, float scale, const T* k_pool, const T* v_pool,
                          const PoolArgs& pool, T* out, void* workspace, cudaStream_t stream) {
  const int64_t items = B * Tn * H;
  const internal::DecodeSplits sp =
      internal::ChooseDecodeSplits(items, pool.max_blocks * pool.block_size);
  float* part_acc = static_cast<float*>(workspace);
  float* part_ml = reinterpret_cast<float*>(
      static_cast<char*>(workspace) +
      internal::AlignUp256(static_cast<size_t>(items * sp.splits * D) * 4));
  DecodeSplitKernel<T, D><<<static_cast<unsigned>(items * sp.splits), kThreads, 0, stream>>>(
      q, positions, static_cast<int>(Tn), static_cast<int>(H), static_cast<int>(Hkv), scale,
      k_pool, v_pool, pool, static_cast<int>(sp.split_len), static_cast<int>(sp.splits),
      part_acc, part_ml);
  RLVR_RETURN_IF_ERROR(LaunchStatus("AttentionDecode: splits"));
  DecodeCombineKernel<T, D><<<static_cast<unsigned>(items), D, 0, stream>>>(
      part_acc, part_ml, static_cast<int>(sp.splits), out);
  return LaunchStatus("AttentionDecode: combine");
}

template <typename T, typename P>
absl::Status Decode(const char* fn, const T* q, const int32_t* positions, int64_t B, int64_t Tn,
                    int64_t H, int64_t Hkv, int64_t D, double scale, const PagedKv<P>& cache,
                    T* out, void* workspace, size_t workspace_bytes, Stream stream) {
  RLVR_RETURN_IF_ERROR(internal::CheckAttentionShape(fn, B, Tn, H, Hkv, D));
  if (B == 0 || Tn == 0 || H == 0) return absl::OkStatus();
  if (!q || !positions || !out) return internal::Bad(fn, "null q, positions or out");
  RLVR_RETURN_IF_ERROR(CheckPool(fn, cache, Hkv, D));
  const size_t need =
      internal::DecodeWorkspaceBytes(B, Tn, H, D, cache.max_blocks, cache.block_size);
  if (workspace == nullptr || workspace_bytes < need) {
    return internal::Bad(fn, "workspace of ", workspace_bytes, " bytes, need ", need);
  }
  const internal::DecodeSplits sp =
      internal::ChooseDecodeSplits(B * Tn * H, cache.max_blocks * cache.block_size);
  if (B * Tn * H * sp.splits >= (int64_t{1} << 31)) return internal::Bad(fn, "too many rows");
  const T* k = reinterpret_cast<const T*>(cache.k);
  const T* v = reinterpret_cast<const T*>(cache.v);
  const float sc = static_cast<float>(scale);
  cudaStream_t st = AsCudaStream(stream);
  switch (D) {
    case 16:
      return LaunchDecode<T, 16>(q, positions, B, Tn, H, Hkv, sc, k, v, Args(cache), out,
                                 workspace, st);
    case 32:
      return LaunchDecode<T, 32>(q, positions, B, Tn, H, Hkv, sc, k, v, Args(cache), out,
                                 workspace, st);
    case 64:
      return LaunchDecode<T, 64>(q, positions, B, Tn, H, Hkv, sc, k, v, Args(cache), out,
                                 workspace, st);
    default:
      return LaunchDecode<T, 128>(q, positions, B, Tn, H, Hkv, sc, k, v, Args(cache), out,
                                  workspace, st);
  }
}

const __nv_bfloat16* Bf(const uint16_t* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
__nv_bfloat16* Bf(uint16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }

}  // namespace

size_t AttentionDecodeWorkspaceBytes(int64_t B, int64_t Tn, int64_t H, int64_t D,
                                     int64_t max_blocks, int64_t block_size) {
  return internal::DecodeWorkspaceBytes(B, Tn, H, D, max_blocks, block_size);
}

absl::Status KvCacheWriteF32(const float* k_new, const float* v_new, const int32_t* positions,
                             int64_t B, int64_t Tn, int64_t Hkv, int64_t D,
                             const PagedKv<float>& cache, Stream stream) {
  return Write<float>("KvCacheWriteF32", k_new, v_new, positions, B, Tn, Hkv, D, cache, stream);
}

absl::Status KvCacheWriteBf16(const uint16_t* k_new, const uint16_t* v_new,
                              const int32_t* positions, int64_t B, int64_t Tn, int64_t Hkv,
                              int64_t D, const PagedKv<uint16_t>& cache, Stream stream) {
  return Write<__nv_bfloat16>("KvCacheWriteBf16", Bf(k_new), Bf(v_new), positions, B, Tn, Hkv, D,
                              cache, stream);
}

absl::Status AttentionDecodeF32(const float* q, const int32_t* positions, int64_t B, int64_t Tn,
                                int64_t H, int64_t Hkv, int64_t D, double scale,
                                const PagedKv<const float>& cache, float* out, void* workspace,
                                size_t workspace_bytes, Stream stream) {
  return Decode<float>("AttentionDecodeF32", q, positions, B, Tn, H, Hkv, D, scale, cache, out,
                       workspace, workspace_bytes, stream);
}

absl::Status AttentionDecodeBf16(const uint16_t* q, const int32_t* positions, int64_t B,
                                 int64_t Tn, int64_t H, int64_t Hkv, int64_t D, double scale,
                                 const PagedKv<const uint16_t>& cache, uint16_t* out,
                                 void* workspace, size_t workspace_bytes, Stream stream) {
  return Decode<__nv_bfloat16>("AttentionDecodeBf16", Bf(q), positions, B, Tn, H, Hkv, D, scale,
                               cache, Bf(out), workspace, workspace_bytes, stream);
}

}  // namespace rlvr::kernels::cuda
