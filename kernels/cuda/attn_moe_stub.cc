// The attention and MoE CUDA entry points in a build without the CUDA backend: each returns
// Unimplemented; the workspace sizes are the same arithmetic as the CUDA build's.
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attn_moe_args.h"
#include "kernels/cuda/moe.h"

namespace rlvr::kernels::cuda {
namespace {
absl::Status NoCuda() { return absl::UnimplementedError("built without CUDA"); }
}  // namespace

size_t AttentionBackwardWorkspaceBytes(int64_t B, int64_t Tn, int64_t H) {
  return internal::AttentionBackwardBytes(B, Tn, H);
}
size_t AttentionDecodeWorkspaceBytes(int64_t B, int64_t Tn, int64_t H, int64_t D,
                                     int64_t max_blocks, int64_t block_size) {
  return internal::DecodeWorkspaceBytes(B, Tn, H, D, max_blocks, block_size);
}

absl::Status AttentionForwardF32(const float*, const float*, const float*, int64_t, int64_t,
                                 int64_t, int64_t, int64_t, double, float*, float*,
                                 const int32_t*, Stream) {
  return NoCuda();
}
absl::Status AttentionForwardBf16(const uint16_t*, const uint16_t*, const uint16_t*, int64_t,
                                  int64_t, int64_t, int64_t, int64_t, double, uint16_t*, float*,
                                  const int32_t*, Stream) {
  return NoCuda();
}
absl::Status AttentionBackwardF32(const float*, const float*, const float*, const float*,
                                  const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                                  int64_t, double, float*, float*, float*, void*, size_t,
                                  const int32_t*, Stream) {
  return NoCuda();
}
absl::Status AttentionBackwardBf16(const uint16_t*, const uint16_t*, const uint16_t*,
                                   const uint16_t*, const uint16_t*, const float*, int64_t,
                                   int64_t, int64_t, int64_t, int64_t, double, uint16_t*,
                                   uint16_t*, uint16_t*, void*, size_t, const int32_t*, Stream) {
  return NoCuda();
}
absl::Status KvCacheWriteF32(const float*, const float*, const int32_t*, int64_t, int64_t,
                             int64_t, int64_t, const PagedKv<float>&, Stream) {
  return NoCuda();
}
absl::Status KvCacheWriteBf16(const uint16_t*, const uint16_t*, const int32_t*, int64_t, int64_t,
                              int64_t, int64_t, const PagedKv<uint16_t>&, Stream) {
  return NoCuda();
}
absl::Status AttentionDecodeF32(const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t,
                                int64_t, double, const PagedKv<const float>&, float*, void*,
                                size_t, Stream) {
  return NoCuda();
}
absl::Status AttentionDecodeBf16(const uint16_t*, const int32_t*, int64_t, int64_t, int64_t,
                                 int64_t, int64_t, double, const PagedKv<const uint16_t>&,
                                 uint16_t*, void*, size_t, Stream) {
  return NoCuda();
}

absl::Status MoeRouterTopK(const float*, int64_t, int64_t, int64_t, bool, double, float*,
                           int32_t*, float*, Stream) {
  return NoCuda();
}
absl::Status MoeRouterBackward(const float*, const int32_t*, const float*, const double*,
                               int64_t, int64_t, int64_t, bool, double, float*, Stream) {
  return NoCuda();
}
absl::Status MoePermute(const int32_t*, int64_t, int64_t, int64_t, int32_t*, int32_t*, int32_t*,
                        Stream) {
  return NoCuda();
}
absl::Status MoeRoutingStats(const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t*,
                             double*, Stream) {
  return NoCuda();
}
absl::Status MoeGatherRowsF32(const float*, const int32_t*, int64_t, int64_t, int64_t, float*,
                              Stream) {
  return NoCuda();
}
absl::Status MoeGatherRowsBf16(const uint16_t*, const int32_t*, int64_t, int64_t, int64_t,
                               uint16_t*, Stream) {
  return NoCuda();
}
absl::Status MoeGatherRowsBackwardF32(const float*, const int32_t*, int64_t, int64_t, int64_t,
                                      float*, Stream) {
  return NoCuda();
}
absl::Status MoeGatherRowsBackwardBf16(const uint16_t*, const int32_t*, int64_t, int64_t,
                                       int64_t, uint16_t*, Stream) {
  return NoCuda();
}
absl::Status MoeGatherRowsBackwardBf16ToF32(const uint16_t*, const int32_t*, int64_t, int64_t,
                                            int64_t, float*, Stream) {
  return NoCuda();
}
absl::Status MoeGroupedGemmWeightGradBf16(const uint16_t*, const uint16_t*, const int32_t*,
                                          int64_t, int64_t, int64_t, int64_t, float*, Stream) {
  return NoCuda();
}
absl::Status MoeGroupedGemmWeightGradF32(const float*, const float*, const int32_t*, int64_t,
                                         int64_t, int64_t, int64_t, float*, Stream) {
  return NoCuda();
}
absl::Status MoeCombineF32(const float*, const float*, const int32_t*, int64_t, int64_t, int64_t,
                           float*, Stream) {
  return NoCuda();
}
absl::Status MoeCombineBf16(const uint16_t*, const float*, const int32_t*, int64_t, int64_t,
                            int64_t, uint16_t*, Stream) {
  return NoCuda();
}
absl::Status MoeCombineBackwardF32(const float*, const float*, const float*, const int32_t*,
                                   int64_t, int64_t, int64_t, float*, float*, Stream) {
  return NoCuda();
}
absl::Status MoeCombineBackwardBf16(const uint16_t*, const uint16_t*, const float*,
                                    const int32_t*, int64_t, int64_t, int64_t, float*, uint16_t*,
                                    Stream) {
  return NoCuda();
}
absl::Status MoeGroupedGemmF32(const float*, const float*, const int32_t*, int64_t, int64_t,
                               int64_t, int64_t, bool, float*, Stream) {
  return NoCuda();
}
absl::Status MoeGroupedGemmBf16(const uint16_t*, const uint16_t*, const int32_t*, int64_t,
                                int64_t, int64_t, int64_t, bool, uint16_t*, Stream) {
  return NoCuda();
}

absl::Status MoeApplyForcedExperts(const float*, const int32_t*, int64_t, int64_t, int64_t, bool,
                                   double, int32_t*, float*, Stream) {
  return NoCuda();
}

}  // namespace rlvr::kernels::cuda
