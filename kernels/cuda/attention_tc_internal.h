// Internal to kernels/cuda/flash_attention.cu and flash_attention_tc.cu (host code only, no
// CUDA headers): how the bf16 flash-attention entry points hand a call to the tensor-core
// kernels, and those kernels' entry with the caller's name for error messages.
#ifndef RLVR_KERNELS_CUDA_ATTENTION_TC_INTERNAL_H_
#define RLVR_KERNELS_CUDA_ATTENTION_TC_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "absl/status/status.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda::internal {

// True when AttentionForwardBf16 / AttentionBackwardBf16 should run the tensor-core kernels:
// D is 64 or 128, the current device's compute capability is >= 8.0 (queried once per device
// and cached), RLVR_ATTENTION_FMA is not "1" (read at every call) and every non-null pointer
// of `ptrs` is 16-byte aligned (the kernels move 8 bf16 at a time).
bool TcAttentionEligible(int64_t D, std::initializer_list<const void*> ptrs);

// The tensor-core kernels (kernels/cuda/attention.h, AttentionForwardBf16Tc and
// AttentionBackwardBf16Tc); `fn` names the public entry point in error messages.
absl::Status TcAttentionForward(const char* fn, const uint16_t* q, const uint16_t* k,
                                const uint16_t* v, int64_t B, int64_t Tn, int64_t H,
                                int64_t Hkv, int64_t D, double scale, uint16_t* out, float* lse,
                                const int32_t* seg_start, Stream stream);
absl::Status TcAttentionBackward(const char* fn, const uint16_t* dout, const uint16_t* q,
                                 const uint16_t* k, const uint16_t* v, const uint16_t* out,
                                 const float* lse, int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                                 int64_t D, double scale, uint16_t* dq, uint16_t* dk,
                                 uint16_t* dv, void* workspace, size_t workspace_bytes,
                                 const int32_t* seg_start, Stream stream);

}  // namespace rlvr::kernels::cuda::internal

#endif  // RLVR_KERNELS_CUDA_ATTENTION_TC_INTERNAL_H_
