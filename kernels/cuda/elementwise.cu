// Element-wise CUDA kernels (the first of the backend; issue 7 adds the rest).
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {
namespace {

__global__ void SwigluKernel(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (; i < n; i += stride) {
    float g = gate[i];
    out[i] = g / (1.0f + __expf(-g)) * up[i];
  }
}

}  // namespace

absl::Status SwigluForwardF32(const float* gate, const float* up, int64_t n, float* out) {
  if (n <= 0) return absl::OkStatus();
  int threads = 256;
  int64_t blocks64 = (n + threads - 1) / threads;
  int blocks = static_cast<int>(blocks64 < 65535 ? blocks64 : 65535);
  SwigluKernel<<<blocks, threads>>>(gate, up, n, out);
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    return absl::InternalError(absl::StrCat("SwigluForwardF32: ", cudaGetErrorString(err)));
  }
  return absl::OkStatus();
}

}  // namespace rlvr::kernels::cuda
