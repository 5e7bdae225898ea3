// Token embedding gather and its scatter-add backward (kernels/cuda/dense.h).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/dense_util.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::ArgError;
using internal::Bf16;
using internal::CheckPtr;
using internal::CheckSize;
using internal::Load;
using internal::Store;

constexpr int kThreads = 256;

template <typename T>
__global__ void GatherKernel(const int32_t* ids, const T* table, int64_t N, int64_t V, int64_t C,
                             T* out) {
  const int64_t total = N * C;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    const int64_t id = ids[n];
    Store(out + i, (id >= 0 && id < V) ? Load(table + id * C + c) : NAN);
  }
}

template <typename T>
__global__ void ScatterAddKernel(const int32_t* ids, const T* dout, int64_t N, int64_t V,
                                 int64_t C, float* dtable) {
  const int64_t total = N * C;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / C, c = i % C;
    const int64_t id = ids[n];
    if (id >= 0 && id < V) atomicAdd(dtable + id * C + c, Load(dout + i));
  }
}

// *first = min over n of the positions whose id is outside [0, V) (unchanged if none).
__global__ void FirstBadIdKernel(const int32_t* ids, int64_t N, int64_t V,
                                 unsigned long long* first) {
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (ids[n] < 0 || ids[n] >= V) atomicMin(first, static_cast<unsigned long long>(n));
  }
}

absl::Status CheckArgs(const char* fn, int64_t N, int64_t V, int64_t C) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "V", V));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  return absl::OkStatus();
}

template <typename T>
absl::Status Forward(const char* fn, const int32_t* ids, const T* table, int64_t N, int64_t V,
                     int64_t C, T* out, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckArgs(fn, N, V, C));
  if (N == 0 || C == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "ids", ids));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  if (V > 0) RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "table", table));
  GatherKernel<T><<<internal::GridFor(N * C, kThreads), kThreads, 0, AsCudaStream(stream)>>>(
      ids, table, N, V, C, out);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status Backward(const char* fn, const int32_t* ids, const T* dout, int64_t N, int64_t V,
                      int64_t C, float* dtable, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckArgs(fn, N, V, C));
  if (N == 0 || C == 0 || V == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "ids", ids));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dout", dout));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dtable", dtable));
  ScatterAddKernel<T><<<internal::GridFor(N * C, kThreads), kThreads, 0, AsCudaStream(stream)>>>(
      ids, dout, N, V, C, dtable);
  return LaunchStatus(fn);
}

}  // namespace

absl::Status EmbeddingForwardF32(const int32_t* ids, const float* table, int64_t N, int64_t V,
                                 int64_t C, float* out, Stream stream) {
  return Forward<float>("EmbeddingForwardF32", ids, table, N, V, C, out, stream);
}

absl::Status EmbeddingForwardBf16(const int32_t* ids, const uint16_t* table, int64_t N,
                                  int64_t V, int64_t C, uint16_t* out, Stream stream) {
  return Forward<__nv_bfloat16>("EmbeddingForwardBf16", ids, Bf16(table), N, V, C, Bf16(out),
                                stream);
}

absl::Status ValidateTokenIds(const int32_t* ids, int64_t N, int64_t V, Stream stream) {
  const char* fn = "ValidateTokenIds";
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "V", V));
  if (N == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "ids", ids));
  cudaStream_t s = AsCudaStream(stream);
  unsigned long long* first = nullptr;
  RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&first, sizeof(*first)), fn));
  struct Freer {
    void* p;
    ~Freer() { cudaFree(p); }
  } freer{first};
  const unsigned long long none = ~0ull;
  RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(
      cudaMemcpyAsync(first, &none, sizeof(none), cudaMemcpyHostToDevice, s), fn));
  FirstBadIdKernel<<<internal::GridFor(N, kThreads), kThreads, 0, s>>>(ids, N, V, first);
  RLVR_CUDA_RETURN_IF_ERROR(LaunchStatus(fn));
  unsigned long long pos = none;
  RLVR_CUDA_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpyAsync(&pos, first, sizeof(pos), cudaMemcpyDeviceToHost, s), fn));
  RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(s), fn));
  if (pos == none) return absl::OkStatus();
  int32_t id = 0;
  RLVR_CUDA_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpy(&id, ids + pos, sizeof(id), cudaMemcpyDeviceToHost), fn));
  return absl::InvalidArgumentError(absl::StrCat("embedding: token id ", id, " at position ",
                                                 pos, " is outside the vocabulary [0, ", V, ")"));
}

absl::Status EmbeddingBackwardF32(const int32_t* ids, const float* dout, int64_t N, int64_t V,
                                  int64_t C, float* dtable, Stream stream) {
  return Backward<float>("EmbeddingBackwardF32", ids, dout, N, V, C, dtable, stream);
}

absl::Status EmbeddingBackwardBf16(const int32_t* ids, const uint16_t* dout, int64_t N,
                                   int64_t V, int64_t C, float* dtable, Stream stream) {
  return Backward<__nv_bfloat16>("EmbeddingBackwardBf16", ids, Bf16(dout), N, V, C, dtable,
                                 stream);
}

}  // namespace rlvr::kernels::cuda
