// Tensor-core (nvcuda::wmma bf16 16x16x16, fp32 accumulators) grouped expert GEMMs: see
// kernels/cuda/moe.h (MoeGroupedGemmBf16Tc, MoeGroupedGemmWeightGradBf16Tc and the dispatch of
// the plain Bf16 entry points).
//
// Both kernels use 128 threads (4 warps) per 64 x 64 output tile, each warp owning a 32 x 32
// quarter (2 x 2 accumulator fragments). Operands are staged in shared memory as bf16, 32 along
// the reduction dimension at a time, with 16-byte vector loads: the host guarantees Kin and Nout
// are multiples of 8 and the base pointers 16-byte aligned, so an 8-element vector is either
// wholly inside the matrix or wholly past its edge (then zero-filled, as are rows past the
// expert's run). Shared rows are padded by 8 bf16 (16 bytes) against bank conflicts; every
// fragment pointer is 32-byte aligned (row offsets are multiples of 16 rows of 80 or 144 bytes,
// column offsets multiples of 16 elements). The fp32 result goes through shared memory (reusing
// the staging buffers after the last __syncthreads of the K loop) for masked stores.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/status.h"
#include "kernels/cuda/attn_moe_args.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/grouped_gemm_tc.h"
#include "kernels/cuda/moe.h"

namespace rlvr::kernels::cuda {
namespace {

namespace wmma = nvcuda::wmma;
using internal::Bad;

constexpr int kTile = 64;         // output tile: 64 x 64
constexpr int kChunk = 32;        // reduction (Kin or rows) staged per step
constexpr int kThreads = 128;     // 4 warps, 2 x 2 over the tile, 32 x 32 each
constexpr int kVec = 8;           // bf16 per 16-byte vector
constexpr int kLdK = kChunk + 8;  // [64][kChunk] bf16 staging, padded: 80-byte rows
constexpr int kLdN = kTile + 8;   // [kChunk][64] bf16 staging, padded: 144-byte rows
constexpr int kLdC = kTile + 4;   // [64][64] fp32 result, padded: 272-byte rows
constexpr int kStageBytes = 2 * kTile * kLdK * 2;  // the larger of the two staging layouts
constexpr int kResultBytes = kTile * kLdC * 4;
constexpr int kSmemBytes = kStageBytes > kResultBytes ? kStageBytes : kResultBytes;
static_assert(kTile * kLdK >= kChunk * kLdN, "staging buffers sized by the [64][kChunk] layout");
static_assert(kLdK % 8 == 0 && kLdN % 8 == 0 && kLdC % 4 == 0, "wmma ldm: multiples of 16 bytes");
static_assert((16 * kLdK * 2) % 32 == 0 && (16 * kLdN * 2) % 32 == 0 && (16 * kLdC * 4) % 32 == 0,
              "fragment pointers 32-byte aligned");
static_assert(kSmemBytes <= 48 * 1024, "static shared memory limit");

using Frag16 = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

__device__ __forceinline__ void Zero(uint4* v) { *v = make_uint4(0u, 0u, 0u, 0u); }

// Writes the four warps' accumulators to C [64][kLdC] fp32 (row = output row of the tile).
__device__ __forceinline__ void StoreAcc(Frag16 (&acc)[2][2], float* C, int wr, int wc) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(C + (wr + 16 * i) * kLdC + wc + 16 * j, acc[i][j], kLdC,
                              wmma::mem_row_major);
    }
  }
}

// Forward: block (pair blockIdx.x of (expert, 64-row tile), Nout tile blockIdx.y) computes
// y[r0 + 64, n0 + 64] = x[rows, :] B with B[k][n] = W_e[n][k] (kTransW false: Ws holds W rows,
// [n][k], read as a col_major matrix_b) or W_e[k][n] (kTransW true: Ws holds [k][n], row_major).
template <bool kTransW>
__global__ void __launch_bounds__(kThreads)
    GroupedGemmTcKernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                        const int32_t* __restrict__ expert_offset, int E, int Nout, int Kin,
                        __nv_bfloat16* __restrict__ y) {
  __shared__ __align__(128) unsigned char smem[kSmemBytes];
  __nv_bfloat16* Xs = reinterpret_cast<__nv_bfloat16*>(smem);  // [64 rows][kLdK]
  __nv_bfloat16* Ws = Xs + kTile * kLdK;                       // [64 n][kLdK] or [kChunk k][kLdN]
  float* Cs = reinterpret_cast<float*>(smem);                  // [64 rows][kLdC], after the K loop
  // Which (expert, row tile) this block is; blocks past the last tile leave (block-uniform).
  int tile = blockIdx.x, e = 0;
  for (; e < E; ++e) {
    const int rows = expert_offset[e + 1] - expert_offset[e];
    const int tiles = (rows + kTile - 1) / kTile;
    if (tile < tiles) break;
    tile -= tiles;
  }
  if (e == E) return;
  const int r0 = expert_offset[e] + tile * kTile, r_end = expert_offset[e + 1];
  const int n0 = blockIdx.y * kTile;
  const __nv_bfloat16* we = w + static_cast<int64_t>(e) * Nout * Kin;
  const int warp = threadIdx.x / 32;
  const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;  // the warp's quarter: rows, columns
  Frag16 acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  }
  for (int k0 = 0; k0 < Kin; k0 += kChunk) {
    // x rows: 64 rows x 4 vectors.
    for (int v = threadIdx.x; v < kTile * (kChunk / kVec); v += kThreads) {
      const int m = v / (kChunk / kVec), kk = (v % (kChunk / kVec)) * kVec;
      const int r = r0 + m, kc = k0 + kk;
      uint4 val;
      Zero(&val);
      if (r < r_end && kc < Kin) {
        val = *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * Kin + kc);
      }
      *reinterpret_cast<uint4*>(Xs + m * kLdK + kk) = val;
    }
    if constexpr (!kTransW) {  // W_e [Nout, Kin]: 64 n x 4 vectors along k
      for (int v = threadIdx.x; v < kTile * (kChunk / kVec); v += kThreads) {
        const int nn = v / (kChunk / kVec), kk = (v % (kChunk / kVec)) * kVec;
        const int n = n0 + nn, kc = k0 + kk;
        uint4 val;
        Zero(&val);
        if (n < Nout && kc < Kin) {
          val = *reinterpret_cast<const uint4*>(we + static_cast<int64_t>(n) * Kin + kc);
        }
        *reinterpret_cast<uint4*>(Ws + nn * kLdK + kk) = val;
      }
    } else {  // W_e [Kin, Nout]: kChunk k x 8 vectors along n
      for (int v = threadIdx.x; v < kChunk * (kTile / kVec); v += kThreads) {
        const int kk = v / (kTile / kVec), nn = (v % (kTile / kVec)) * kVec;
        const int n = n0 + nn, kc = k0 + kk;
        uint4 val;
        Zero(&val);
        if (n < Nout && kc < Kin) {
          val = *reinterpret_cast<const uint4*>(we + static_cast<int64_t>(kc) * Nout + n);
        }
        *reinterpret_cast<uint4*>(Ws + kk * kLdN + nn) = val;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kChunk; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[2];
      using BLayout = std::conditional_t<kTransW, wmma::row_major, wmma::col_major>;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, BLayout> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i)
        wmma::load_matrix_sync(a[i], Xs + (wr + 16 * i) * kLdK + kk, kLdK);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        if constexpr (kTransW) {
          wmma::load_matrix_sync(b[j], Ws + kk * kLdN + wc + 16 * j, kLdN);
        } else {
          wmma::load_matrix_sync(b[j], Ws + (wc + 16 * j) * kLdK + kk, kLdK);
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();  // the staging buffers are overwritten next (or reused as Cs)
  }
  StoreAcc(acc, Cs, wr, wc);
  __syncthreads();
  for (int idx = threadIdx.x; idx < kTile * kTile; idx += kThreads) {
    const int m = idx / kTile, nn = idx % kTile;
    const int r = r0 + m, n = n0 + nn;
    if (r < r_end && n < Nout) {
      y[static_cast<int64_t>(r) * Nout + n] = __float2bfloat16_rn(Cs[m * kLdC + nn]);
    }
  }
}

// Weight gradient: block (Kin tile blockIdx.x, Nout tile blockIdx.y, expert blockIdx.z)
// computes dw[e][n0 + 64, k0 + 64] += dy_e^T x_e over the expert's rows, kChunk rows at a time
// in ascending order: A[n][r] = dy[r][n] is staged as Ds [r][n] and read as a col_major
// matrix_a, B[r][k] = x[r][k] as Xs [r][k] row_major. One block owns each output element and
// the chunk order is fixed, so the result is deterministic; no atomics.
__global__ void __launch_bounds__(kThreads)
    GroupedWeightGradTcKernel(const __nv_bfloat16* __restrict__ dy,
                              const __nv_bfloat16* __restrict__ x,
                              const int32_t* __restrict__ expert_offset, int Nout, int Kin,
                              float* __restrict__ dw) {
  __shared__ __align__(128) unsigned char smem[kSmemBytes];
  __nv_bfloat16* Ds = reinterpret_cast<__nv_bfloat16*>(smem);  // [kChunk rows][kLdN]
  __nv_bfloat16* Xs = Ds + kChunk * kLdN;                      // [kChunk rows][kLdN]
  float* Cs = reinterpret_cast<float*>(smem);                  // [64 n][kLdC], at the end
  const int e = blockIdx.z;
  const int r_begin = expert_offset[e], r_end = expert_offset[e + 1];
  if (r_end <= r_begin) return;  // block-uniform: no rows, dw[e] unchanged
  const int k0 = blockIdx.x * kTile, n0 = blockIdx.y * kTile;
  const int warp = threadIdx.x / 32;
  const int wn = (warp / 2) * 32, wk = (warp % 2) * 32;  // the warp's quarter: n, k
  Frag16 acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  }
  for (int c0 = r_begin; c0 < r_end; c0 += kChunk) {
    // dy and x rows: kChunk rows x 8 vectors each.
    for (int v = threadIdx.x; v < kChunk * (kTile / kVec); v += kThreads) {
      const int rr = v / (kTile / kVec), cc = (v % (kTile / kVec)) * kVec;
      const int r = c0 + rr;
      uint4 dv, xv;
      Zero(&dv);
      Zero(&xv);
      if (r < r_end && n0 + cc < Nout) {
        dv = *reinterpret_cast<const uint4*>(dy + static_cast<int64_t>(r) * Nout + n0 + cc);
      }
      if (r < r_end && k0 + cc < Kin) {
        xv = *reinterpret_cast<const uint4*>(x + static_cast<int64_t>(r) * Kin + k0 + cc);
      }
      *reinterpret_cast<uint4*>(Ds + rr * kLdN + cc) = dv;
      *reinterpret_cast<uint4*>(Xs + rr * kLdN + cc) = xv;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kChunk; rr += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], Ds + rr * kLdN + wn + 16 * i, kLdN);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], Xs + rr * kLdN + wk + 16 * j, kLdN);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();  // the chunk is overwritten next (or reused as Cs)
  }
  StoreAcc(acc, Cs, wn, wk);
  __syncthreads();
  float* dwe = dw + static_cast<int64_t>(e) * Nout * Kin;
  for (int idx = threadIdx.x; idx < kTile * kTile; idx += kThreads) {
    const int nn = idx / kTile, kk = idx % kTile;
    const int n = n0 + nn, k = k0 + kk;
    if (n < Nout && k < Kin) dwe[static_cast<int64_t>(n) * Kin + k] += Cs[nn * kLdC + kk];
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The size checks of the FMA versions (kernels/cuda/moe.cu), then the tensor-core layout
// requirements; `a`, `b`, `c` are the bf16 operands (c may be null: the weight grad's dw is
// fp32 and written element by element).
absl::Status CheckTc(const char* fn, int64_t E, int64_t M_max, int64_t Nout, int64_t Kin) {
  if (E <= 0 || E > 1024) return Bad(fn, "E=", E, " must be in [1, 1024]");
  if (M_max < 0 || Nout <= 0 || Kin <= 0) {
    return Bad(fn, "M_max=", M_max, " Nout=", Nout, " Kin=", Kin, " (need >= 0, > 0, > 0)");
  }
  if (M_max >= (int64_t{1} << 31) || Nout >= (int64_t{1} << 31) || Kin >= (int64_t{1} << 31) ||
      E * Nout * Kin >= (int64_t{1} << 62)) {
    return Bad(fn, "sizes above int32 range");
  }
  if ((Nout + kTile - 1) / kTile > internal::kMaxGridYZ) {
    return Bad(fn, "Nout=", Nout, " too large");
  }
  return absl::OkStatus();
}

absl::Status CheckTcLayout(const char* fn, int64_t Nout, int64_t Kin, const void* a, const void* b,
                           const void* c) {
  if (Nout % kVec != 0 || Kin % kVec != 0) {
    return Bad(fn, "Nout=", Nout, " Kin=", Kin,
               " must be multiples of 8 for the tensor-core kernel (use the FMA entry point)");
  }
  if (!Aligned16(a) || !Aligned16(b) || (c != nullptr && !Aligned16(c))) {
    return Bad(fn, "bf16 operands must be 16-byte aligned for the tensor-core kernel");
  }
  return absl::OkStatus();
}

// Compute capability (major * 10 + minor) of the current device, queried once per device and
// cached; 0 if it cannot be queried (the error is cleared so a later LaunchStatus does not
// report it).
int CurrentDeviceCc() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];  // 0: not queried yet
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  if (dev >= 0 && dev < kMaxDevices) {
    const int cached = cache[dev].load(std::memory_order_relaxed);
    if (cached != 0) return cached;
  }
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  const int cc = major * 10 + minor;
  if (dev >= 0 && dev < kMaxDevices) cache[dev].store(cc, std::memory_order_relaxed);
  return cc;
}

bool FmaForced() {
  const char* v = std::getenv("RLVR_MOE_GEMM_FMA");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

const __nv_bfloat16* Bf(const uint16_t* p) { return reinterpret_cast<const __nv_bfloat16*>(p); }
__nv_bfloat16* Bf(uint16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }

}  // namespace

namespace internal {

absl::Status GroupedGemmBf16Tc(const char* fn, const uint16_t* x, const uint16_t* w,
                               const int32_t* expert_offset, int64_t E, int64_t M_max, int64_t Nout,
                               int64_t Kin, bool trans_w, uint16_t* y, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckTc(fn, E, M_max, Nout, Kin));
  if (M_max == 0) return absl::OkStatus();
  if (!x || !w || !expert_offset || !y) return Bad(fn, "null x, w, expert_offset or y");
  RLVR_RETURN_IF_ERROR(CheckTcLayout(fn, Nout, Kin, x, w, y));
  const dim3 grid(static_cast<unsigned>((M_max + kTile - 1) / kTile + E),
                  static_cast<unsigned>((Nout + kTile - 1) / kTile));
  if (trans_w) {
    GroupedGemmTcKernel<true><<<grid, kThreads, 0, AsCudaStream(stream)>>>(
        Bf(x), Bf(w), expert_offset, static_cast<int>(E), static_cast<int>(Nout),
        static_cast<int>(Kin), Bf(y));
  } else {
    GroupedGemmTcKernel<false><<<grid, kThreads, 0, AsCudaStream(stream)>>>(
        Bf(x), Bf(w), expert_offset, static_cast<int>(E), static_cast<int>(Nout),
        static_cast<int>(Kin), Bf(y));
  }
  return LaunchStatus(fn);
}

absl::Status GroupedWeightGradBf16Tc(const char* fn, const uint16_t* dy, const uint16_t* x,
                                     const int32_t* expert_offset, int64_t E, int64_t M_max,
                                     int64_t Nout, int64_t Kin, float* dw, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckTc(fn, E, M_max, Nout, Kin));
  if (M_max == 0) return absl::OkStatus();
  if (!dy || !x || !expert_offset || !dw) return Bad(fn, "null dy, x, expert_offset or dw");
  RLVR_RETURN_IF_ERROR(CheckTcLayout(fn, Nout, Kin, dy, x, nullptr));
  const dim3 grid(static_cast<unsigned>((Kin + kTile - 1) / kTile),
                  static_cast<unsigned>((Nout + kTile - 1) / kTile), static_cast<unsigned>(E));
  GroupedWeightGradTcKernel<<<grid, kThreads, 0, AsCudaStream(stream)>>>(
      Bf(dy), Bf(x), expert_offset, static_cast<int>(Nout), static_cast<int>(Kin), dw);
  return LaunchStatus(fn);
}

}  // namespace internal

bool MoeGroupedGemmUsesTensorCores(int64_t Nout, int64_t Kin, const void* a, const void* b,
                                   const void* c) {
  if (FmaForced()) return false;
  if (Nout <= 0 || Kin <= 0 || Nout % kVec != 0 || Kin % kVec != 0) return false;
  if (!Aligned16(a) || !Aligned16(b) || !Aligned16(c)) return false;
  return CurrentDeviceCc() >= 80;
}

absl::Status MoeGroupedGemmBf16Tc(const uint16_t* x, const uint16_t* w,
                                  const int32_t* expert_offset, int64_t E, int64_t M_max,
                                  int64_t Nout, int64_t Kin, bool trans_w, uint16_t* y,
                                  Stream stream) {
  return internal::GroupedGemmBf16Tc("MoeGroupedGemmBf16Tc", x, w, expert_offset, E, M_max, Nout,
                                     Kin, trans_w, y, stream);
}

absl::Status MoeGroupedGemmWeightGradBf16Tc(const uint16_t* dy, const uint16_t* x,
                                            const int32_t* expert_offset, int64_t E, int64_t M_max,
                                            int64_t Nout, int64_t Kin, float* dw, Stream stream) {
  return internal::GroupedWeightGradBf16Tc("MoeGroupedGemmWeightGradBf16Tc", dy, x, expert_offset,
                                           E, M_max, Nout, Kin, dw, stream);
}

}  // namespace rlvr::kernels::cuda
