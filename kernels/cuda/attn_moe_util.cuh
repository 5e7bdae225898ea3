// Internal to the attention / MoE .cu files: fp32 <-> storage conversions, warp reductions and
// the launch of kernels that need more than the default 48 KiB of dynamic shared memory.
#ifndef RLVR_KERNELS_CUDA_ATTN_MOE_UTIL_CUH_
#define RLVR_KERNELS_CUDA_ATTN_MOE_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace rlvr::kernels::cuda::internal {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float ToF(float x) { return x; }
__device__ __forceinline__ float ToF(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromF(float x);
template <>
__device__ __forceinline__ float FromF<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromF<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Butterfly reductions: every lane ends with the same value, summed in the same order.
__device__ __forceinline__ float WarpSum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}
__device__ __forceinline__ float WarpMax(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

// Allows `bytes` of dynamic shared memory for `kernel` when above the 48 KiB default.
template <typename Kernel>
cudaError_t AllowSharedMemory(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

}  // namespace rlvr::kernels::cuda::internal

#endif  // RLVR_KERNELS_CUDA_ATTN_MOE_UTIL_CUH_
