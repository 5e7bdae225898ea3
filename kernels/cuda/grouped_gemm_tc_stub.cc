// The tensor-core grouped GEMM entry points (kernels/cuda/moe.h) in a build without the CUDA
// backend: the kernels return Unimplemented, and the plain Bf16 entry points never use them.
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/moe.h"

namespace rlvr::kernels::cuda {

absl::Status MoeGroupedGemmBf16Tc(const uint16_t*, const uint16_t*, const int32_t*, int64_t,
                                  int64_t, int64_t, int64_t, bool, uint16_t*, Stream) {
  return absl::UnimplementedError("built without CUDA");
}
absl::Status MoeGroupedGemmWeightGradBf16Tc(const uint16_t*, const uint16_t*, const int32_t*,
                                            int64_t, int64_t, int64_t, int64_t, float*, Stream) {
  return absl::UnimplementedError("built without CUDA");
}
bool MoeGroupedGemmUsesTensorCores(int64_t, int64_t, const void*, const void*, const void*) {
  return false;
}

}  // namespace rlvr::kernels::cuda
