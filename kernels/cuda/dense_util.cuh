// Internal to the dense .cu files: element load/store for fp32 and bf16 storage, deterministic
// block reductions, launch-size helpers and host-side argument checks.
#ifndef RLVR_KERNELS_CUDA_DENSE_UTIL_CUH_
#define RLVR_KERNELS_CUDA_DENSE_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

// core/status.h's macros use __VA_OPT__ (C++20); the .cu files are C++17, so they use this.
#define RLVR_CUDA_RETURN_IF_ERROR(expr)        \
  do {                                         \
    ::absl::Status rlvr_cuda_status_ = (expr); \
    if (!rlvr_cuda_status_.ok()) return rlvr_cuda_status_; \
  } while (0)

namespace rlvr::kernels::cuda::internal {

// Storage types: float, or __nv_bfloat16 (the public headers pass its bits as uint16_t).
__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
// Rounds v to what Store then Load gives for storage type T.
__device__ __forceinline__ float RoundTo(const float*, float v) { return v; }
__device__ __forceinline__ float RoundTo(const __nv_bfloat16*, float v) {
  return __bfloat162float(__float2bfloat16_rn(v));
}

inline const __nv_bfloat16* Bf16(const uint16_t* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}
inline __nv_bfloat16* Bf16(uint16_t* p) { return reinterpret_cast<__nv_bfloat16*>(p); }

template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum of v over the block, returned to every thread. Fixed reduction tree, so deterministic.
// Every thread of the block must call it (it has __syncthreads); blockDim.x a multiple of 32,
// at most 1024. `scratch` is __shared__ T[32]; it may be reused after the call returns.
template <typename T>
__device__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  v = WarpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < nwarps ? scratch[lane] : T(0);
    w = WarpSum(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  const T total = scratch[0];
  __syncthreads();  // every thread has read scratch[0] before anyone reuses scratch
  return total;
}

// Blocks for a grid-stride loop over n items with `threads` per block, capped.
inline unsigned GridFor(int64_t n, int threads, int64_t cap = 65535LL * 8) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return static_cast<unsigned>(b);
}

// Host-side checks: InvalidArgument "<fn>: <what>".
inline absl::Status ArgError(const char* fn, const absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(fn, ": ", what));
}
inline absl::Status CheckSize(const char* fn, const char* name, int64_t v) {
  if (v < 0) return ArgError(fn, absl::StrCat(name, " = ", v, " is negative"));
  return absl::OkStatus();
}
inline absl::Status CheckPtr(const char* fn, const char* name, const void* p) {
  if (p == nullptr) return ArgError(fn, absl::StrCat(name, " is null"));
  return absl::OkStatus();
}

}  // namespace rlvr::kernels::cuda::internal

#endif  // RLVR_KERNELS_CUDA_DENSE_UTIL_CUH_
