// Element-wise CUDA kernels: SwiGLU forward and backward, fp32 and bf16 (kernels/cuda/dense.h).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/dense_util.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::Bf16;
using internal::CheckPtr;
using internal::CheckSize;
using internal::Load;
using internal::Store;

constexpr int kThreads = 256;

// expf, not __expf: the fast intrinsic's error grows with |g| and these are memory-bound anyway.
template <typename T>
__global__ void SwigluKernel(const T* gate, const T* up, int64_t n, T* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = Load(gate + i);
    Store(out + i, g / (1.0f + expf(-g)) * Load(up + i));
  }
}

template <typename T>
__global__ void SwigluBackwardKernel(const T* dout, const T* gate, const T* up, int64_t n,
                                     T* dgate, T* dup) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = Load(gate + i), d = Load(dout + i);
    const float s = 1.0f / (1.0f + expf(-g));
    const float silu = g * s;
    // d silu / dg = s + g s (1 - s)
    Store(dgate + i, d * Load(up + i) * (s + silu * (1.0f - s)));
    Store(dup + i, d * silu);
  }
}

template <typename T>
absl::Status Forward(const char* fn, const T* gate, const T* up, int64_t n, T* out,
                     Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "gate", gate));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "up", up));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  SwigluKernel<T><<<internal::GridFor(n, kThreads), kThreads, 0, AsCudaStream(stream)>>>(
      gate, up, n, out);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status Backward(const char* fn, const T* dout, const T* gate, const T* up, int64_t n,
                      T* dgate, T* dup, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dout", dout));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "gate", gate));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "up", up));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dgate", dgate));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dup", dup));
  SwigluBackwardKernel<T><<<internal::GridFor(n, kThreads), kThreads, 0, AsCudaStream(stream)>>>(
      dout, gate, up, n, dgate, dup);
  return LaunchStatus(fn);
}

}  // namespace

absl::Status SwigluForwardF32(const float* gate, const float* up, int64_t n, float* out,
                              Stream stream) {
  return Forward<float>("SwigluForwardF32", gate, up, n, out, stream);
}

absl::Status SwigluForwardF32(const float* gate, const float* up, int64_t n, float* out) {
  RLVR_CUDA_RETURN_IF_ERROR(SwigluForwardF32(gate, up, n, out, Stream{nullptr}));
  return CudaStatus(cudaDeviceSynchronize(), "SwigluForwardF32");
}

absl::Status SwigluForwardBf16(const uint16_t* gate, const uint16_t* up, int64_t n,
                               uint16_t* out, Stream stream) {
  return Forward<__nv_bfloat16>("SwigluForwardBf16", Bf16(gate), Bf16(up), n, Bf16(out), stream);
}

absl::Status SwigluBackwardF32(const float* dout, const float* gate, const float* up, int64_t n,
                               float* dgate, float* dup, Stream stream) {
  return Backward<float>("SwigluBackwardF32", dout, gate, up, n, dgate, dup, stream);
}

absl::Status SwigluBackwardBf16(const uint16_t* dout, const uint16_t* gate, const uint16_t* up,
                                int64_t n, uint16_t* dgate, uint16_t* dup, Stream stream) {
  return Backward<__nv_bfloat16>("SwigluBackwardBf16", Bf16(dout), Bf16(gate), Bf16(up), n,
                                 Bf16(dgate), Bf16(dup), stream);
}

}  // namespace rlvr::kernels::cuda
