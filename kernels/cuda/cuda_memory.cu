// Device memory and queries for the CUDA backend (plain cudaMalloc; no managed memory).
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {
namespace {
absl::Status FromCuda(cudaError_t err, absl::string_view what) { return CudaStatus(err, what); }
}  // namespace

absl::Status Synchronize(Stream stream) {
  return CudaStatus(cudaStreamSynchronize(AsCudaStream(stream)), "cudaStreamSynchronize");
}

absl::StatusOr<Stream> StreamCreate() {
  cudaStream_t s = nullptr;
  absl::Status st = FromCuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking),
                             "cudaStreamCreateWithFlags(cudaStreamNonBlocking)");
  if (!st.ok()) return st;
  return static_cast<Stream>(s);
}

void StreamDestroy(Stream stream) {
  if (stream != nullptr) cudaStreamDestroy(AsCudaStream(stream));
}

bool BuiltWithCuda() { return true; }

absl::StatusOr<int> DeviceCount() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    return 0;
  }
  if (err != cudaSuccess) return FromCuda(err, "cudaGetDeviceCount");
  return n;
}

absl::StatusOr<void*> Malloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) return FromCuda(err, absl::StrCat("cudaMalloc(", bytes, ")"));
  return p;
}

void Free(void* ptr) {
  if (ptr != nullptr) cudaFree(ptr);
}

absl::Status Memset0(void* ptr, size_t bytes) { return FromCuda(cudaMemset(ptr, 0, bytes), "cudaMemset"); }

absl::Status CopyToDevice(void* dst, const void* src, size_t bytes) {
  return FromCuda(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
}

absl::Status CopyToHost(void* dst, const void* src, size_t bytes) {
  return FromCuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

absl::Status CopyOnDevice(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes == 0) return absl::OkStatus();
  return FromCuda(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, AsCudaStream(stream)),
      "cudaMemcpyAsync D2D");
}

absl::Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes == 0) return absl::OkStatus();
  return FromCuda(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, AsCudaStream(stream)),
      "cudaMemcpyAsync H2D");
}

absl::Status CopyToHostAsync(void* dst, const void* src, size_t bytes, Stream stream) {
  if (bytes == 0) return absl::OkStatus();
  return FromCuda(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, AsCudaStream(stream)),
      "cudaMemcpyAsync D2H");
}

}  // namespace rlvr::kernels::cuda
