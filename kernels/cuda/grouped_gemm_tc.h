// Internal to kernels/cuda/moe.cu and kernels/cuda/grouped_gemm_tc.cu (host code only, no CUDA
// headers): the tensor-core grouped expert GEMMs under the caller's function name, so that
// MoeGroupedGemmBf16 / MoeGroupedGemmWeightGradBf16 can dispatch to them and still name
// themselves in their errors. Semantics and preconditions: kernels/cuda/moe.h.
#ifndef RLVR_KERNELS_CUDA_GROUPED_GEMM_TC_H_
#define RLVR_KERNELS_CUDA_GROUPED_GEMM_TC_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda::internal {

// MoeGroupedGemmBf16Tc's body; `fn` names the public entry point in errors.
absl::Status GroupedGemmBf16Tc(const char* fn, const uint16_t* x, const uint16_t* w,
                               const int32_t* expert_offset, int64_t E, int64_t M_max, int64_t Nout,
                               int64_t Kin, bool trans_w, uint16_t* y, Stream stream);
// MoeGroupedGemmWeightGradBf16Tc's body.
absl::Status GroupedWeightGradBf16Tc(const char* fn, const uint16_t* dy, const uint16_t* x,
                                     const int32_t* expert_offset, int64_t E, int64_t M_max,
                                     int64_t Nout, int64_t Kin, float* dw, Stream stream);

}  // namespace rlvr::kernels::cuda::internal

#endif  // RLVR_KERNELS_CUDA_GROUPED_GEMM_TC_H_
