// The model glue kernels (kernels/cuda/model_glue.h) in a build without the CUDA backend: each
// returns Unimplemented, argument checks included.
#include "kernels/cuda/model_glue.h"

namespace rlvr::kernels::cuda {
namespace {
absl::Status NoCuda() { return absl::UnimplementedError("built without CUDA"); }
}  // namespace

absl::Status ConvertF32ToBf16(const float*, int64_t, uint16_t*, Stream) { return NoCuda(); }
absl::Status RmsNormF32ToBf16(const float*, const float*, int64_t, int64_t, double, uint16_t*,
                              float*, Stream) {
  return NoCuda();
}
absl::Status QkvPrepare(const float*, const float*, const float*, const float*, double,
                        const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                        uint16_t*, uint16_t*, uint16_t*, Stream) {
  return NoCuda();
}
absl::Status QkvPrepareBackward(const uint16_t*, const uint16_t*, const uint16_t*, const float*,
                                const float*, const float*, const float*, double, const float*,
                                const float*, int64_t, int64_t, int64_t, int64_t, float*, float*,
                                Stream) {
  return NoCuda();
}
absl::Status ColumnSumF32(const float*, int64_t, int64_t, int64_t, float*, Stream) {
  return NoCuda();
}
absl::Status SwigluPairedBackwardF32ToBf16(const float*, const float*, int64_t, int64_t,
                                           uint16_t*, Stream) {
  return NoCuda();
}
absl::Status SwigluPairedF32ToBf16(const float*, int64_t, int64_t, uint16_t*, Stream) {
  return NoCuda();
}
absl::Status SwigluPairedBf16(const uint16_t*, int64_t, int64_t, uint16_t*, Stream) {
  return NoCuda();
}
absl::Status AddRowBiasF32(const float*, int64_t, int64_t, float*, Stream) { return NoCuda(); }
absl::Status AddBf16ToF32(const uint16_t*, int64_t, float*, Stream) { return NoCuda(); }
absl::Status ArgmaxRows(const float*, int64_t, int64_t, int64_t, int32_t*, Stream) {
  return NoCuda();
}

}  // namespace rlvr::kernels::cuda
