// Internal to the .cu files of the CUDA backend: CUDA runtime / cuBLAS errors as absl::Status.
//   CudaStatus(err, what): OK, or Internal (ResourceExhausted for out-of-memory) with
//                          cudaGetErrorString's text prefixed by `what`.
//   LaunchStatus(what):    the status of the last kernel launch (cudaGetLastError); launches are
//                          asynchronous, so an error inside the kernel shows at the next sync.
//   CublasStatus(st, what): OK or Internal with cuBLAS's status name.
#ifndef RLVR_KERNELS_CUDA_CHECK_CUH_
#define RLVR_KERNELS_CUDA_CHECK_CUH_

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace rlvr::kernels::cuda {

inline absl::Status CudaStatus(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", cudaGetErrorString(err));
  if (err == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

inline absl::Status LaunchStatus(absl::string_view what) {
  return CudaStatus(cudaGetLastError(), what);
}

inline absl::Status CublasStatus(cublasStatus_t st, absl::string_view what) {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cublasGetStatusName(st)));
}

inline cudaStream_t AsCudaStream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace rlvr::kernels::cuda

#endif  // RLVR_KERNELS_CUDA_CHECK_CUH_
