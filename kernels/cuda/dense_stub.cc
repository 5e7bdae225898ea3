// The dense CUDA entry points (kernels/cuda/dense.h) in a build without the CUDA backend: each
// returns Unimplemented, argument checks included.
#include "kernels/cuda/dense.h"

namespace rlvr::kernels::cuda {
namespace {
absl::Status NoCuda() { return absl::UnimplementedError("built without CUDA"); }
}  // namespace

void ReleaseGemmWorkspace(Stream) {}
absl::Status GemmF32(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                     const float*, int64_t, float, float*, int64_t, GemmPrecision, Stream) {
  return NoCuda();
}
absl::Status GemmBf16(bool, bool, int64_t, int64_t, int64_t, float, const uint16_t*, int64_t,
                      const uint16_t*, int64_t, float, uint16_t*, int64_t, Stream) {
  return NoCuda();
}
absl::Status GemmBf16(bool, bool, int64_t, int64_t, int64_t, float, const uint16_t*, int64_t,
                      const uint16_t*, int64_t, float, float*, int64_t, Stream) {
  return NoCuda();
}
absl::Status GemmStridedBatchedF32(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                   int64_t, int64_t, const float*, int64_t, int64_t, float,
                                   float*, int64_t, int64_t, int64_t, GemmPrecision, Stream) {
  return NoCuda();
}
absl::Status GemmStridedBatchedBf16(bool, bool, int64_t, int64_t, int64_t, float,
                                    const uint16_t*, int64_t, int64_t, const uint16_t*, int64_t,
                                    int64_t, float, uint16_t*, int64_t, int64_t, int64_t,
                                    Stream) {
  return NoCuda();
}
absl::Status GemmStridedBatchedBf16(bool, bool, int64_t, int64_t, int64_t, float,
                                    const uint16_t*, int64_t, int64_t, const uint16_t*, int64_t,
                                    int64_t, float, float*, int64_t, int64_t, int64_t, Stream) {
  return NoCuda();
}

absl::Status RmsNormForwardF32(const float*, const float*, int64_t, int64_t, double, float*,
                               float*, Stream) {
  return NoCuda();
}
absl::Status RmsNormForwardBf16(const uint16_t*, const uint16_t*, int64_t, int64_t, double,
                                uint16_t*, float*, Stream) {
  return NoCuda();
}
absl::Status AddRmsNormForwardF32(const float*, const float*, const float*, int64_t, int64_t,
                                  double, float*, float*, float*, Stream) {
  return NoCuda();
}
absl::Status AddRmsNormForwardBf16(const uint16_t*, const uint16_t*, const uint16_t*, int64_t,
                                   int64_t, double, uint16_t*, uint16_t*, float*, Stream) {
  return NoCuda();
}
int64_t RmsNormBackwardWorkspaceFloats(int64_t R, int64_t C) {
  if (R <= 0 || C <= 0) return 0;
  return (R < 256 ? R : 256) * C;
}
absl::Status RmsNormBackwardF32(const float*, const float*, const float*, const float*, int64_t,
                                int64_t, float*, float*, float*, Stream) {
  return NoCuda();
}
absl::Status RmsNormBackwardBf16(const uint16_t*, const uint16_t*, const uint16_t*, const float*,
                                 int64_t, int64_t, uint16_t*, float*, float*, Stream) {
  return NoCuda();
}

absl::Status BuildRopeTableF32(const int32_t*, int64_t, int64_t, double, float*, float*, Stream) {
  return NoCuda();
}
absl::Status RopeForwardF32(const float*, const float*, int64_t, int64_t, int64_t, float*,
                            Stream) {
  return NoCuda();
}
absl::Status RopeBackwardF32(const float*, const float*, int64_t, int64_t, int64_t, float*,
                             Stream) {
  return NoCuda();
}
absl::Status RopeForwardBf16(const float*, const float*, int64_t, int64_t, int64_t, uint16_t*,
                             Stream) {
  return NoCuda();
}
absl::Status RopeBackwardBf16(const float*, const float*, int64_t, int64_t, int64_t, uint16_t*,
                              Stream) {
  return NoCuda();
}

absl::Status SwigluForwardF32(const float*, const float*, int64_t, float*, Stream) {
  return NoCuda();
}
absl::Status SwigluForwardBf16(const uint16_t*, const uint16_t*, int64_t, uint16_t*, Stream) {
  return NoCuda();
}
absl::Status SwigluBackwardF32(const float*, const float*, const float*, int64_t, float*, float*,
                               Stream) {
  return NoCuda();
}
absl::Status SwigluBackwardBf16(const uint16_t*, const uint16_t*, const uint16_t*, int64_t,
                                uint16_t*, uint16_t*, Stream) {
  return NoCuda();
}

absl::Status LogSoftmaxStatsF32(const float*, const int32_t*, int64_t, int64_t, int64_t, double,
                                float*, float*, float*, Stream) {
  return NoCuda();
}
absl::Status LogSoftmaxStatsBf16(const uint16_t*, const int32_t*, int64_t, int64_t, int64_t,
                                 double, float*, float*, float*, Stream) {
  return NoCuda();
}
absl::Status LogSoftmaxGradInPlaceF32(const int32_t*, const float*, const float*, const float*,
                                      const float*, int64_t, int64_t, int64_t, double, float*,
                                      Stream) {
  return NoCuda();
}
absl::Status LogSoftmaxGradInPlaceBf16(const int32_t*, const float*, const float*, const float*,
                                       const float*, int64_t, int64_t, int64_t, double,
                                       uint16_t*, Stream) {
  return NoCuda();
}

struct AdamWMultiTensor::Impl {};
AdamWMultiTensor::AdamWMultiTensor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AdamWMultiTensor::~AdamWMultiTensor() = default;
absl::StatusOr<std::unique_ptr<AdamWMultiTensor>> AdamWMultiTensor::Create(
    const std::vector<AdamWTensor>&) {
  return NoCuda();
}
absl::Status AdamWMultiTensor::Step(const AdamWStepConfig&, Stream) { return NoCuda(); }
absl::StatusOr<double> AdamWMultiTensor::GradNorm(Stream) { return NoCuda(); }
absl::StatusOr<AdamWStepResult> AdamWMultiTensor::LastStepResult(Stream) { return NoCuda(); }
int64_t AdamWMultiTensor::num_tensors() const { return 0; }
int64_t AdamWMultiTensor::num_chunks() const { return 0; }

absl::Status EmbeddingForwardF32(const int32_t*, const float*, int64_t, int64_t, int64_t, float*,
                                 Stream) {
  return NoCuda();
}
absl::Status EmbeddingForwardBf16(const int32_t*, const uint16_t*, int64_t, int64_t, int64_t,
                                  uint16_t*, Stream) {
  return NoCuda();
}
absl::Status ValidateTokenIds(const int32_t*, int64_t, int64_t, Stream) { return NoCuda(); }
absl::Status EmbeddingBackwardF32(const int32_t*, const float*, int64_t, int64_t, int64_t, float*,
                                  Stream) {
  return NoCuda();
}
absl::Status EmbeddingBackwardBf16(const int32_t*, const uint16_t*, int64_t, int64_t, int64_t,
                                   float*, Stream) {
  return NoCuda();
}

}  // namespace rlvr::kernels::cuda
