// The tensor-core attention entry points (kernels/cuda/attention.h) in a build without the CUDA
// backend: each returns Unimplemented, and the bf16 attention never uses tensor cores.
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/attention.h"

namespace rlvr::kernels::cuda {

absl::Status AttentionForwardBf16Tc(const uint16_t*, const uint16_t*, const uint16_t*, int64_t,
                                    int64_t, int64_t, int64_t, int64_t, double, uint16_t*,
                                    float*, const int32_t*, Stream) {
  return absl::UnimplementedError("built without CUDA");
}

absl::Status AttentionBackwardBf16Tc(const uint16_t*, const uint16_t*, const uint16_t*,
                                     const uint16_t*, const uint16_t*, const float*, int64_t,
                                     int64_t, int64_t, int64_t, int64_t, double, uint16_t*,
                                     uint16_t*, uint16_t*, void*, size_t, const int32_t*,
                                     Stream) {
  return absl::UnimplementedError("built without CUDA");
}

bool AttentionBf16UsesTensorCores(int64_t) { return false; }

}  // namespace rlvr::kernels::cuda
