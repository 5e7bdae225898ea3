// RMSNorm layer (input_layernorm, post_attention_layernorm, the final norm, Qwen3's q/k norm):
//   y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension C.
// See common.h for the conventions.
#ifndef RLVR_POLICY_LAYERS_RMSNORM_H_
#define RLVR_POLICY_LAYERS_RMSNORM_H_

#include <cstdint>
#include <vector>

namespace rlvr::policy::layers {

template <typename T>
struct RmsNormActivations {
  std::vector<T> rstd;  // [N] 1/sqrt(mean(x^2)+eps) per row
};

// x, y [N, C]; weight [C]. y may alias x only if the backward is never called (it needs x).
template <typename T>
void RmsNormForward(const T* x, const T* weight, int64_t N, int64_t C, double eps,
                    RmsNormActivations<T>* act, T* y);

// dx [N, C] += ..., dweight [C] += ... (dweight may be null). dx may not alias dy.
template <typename T>
void RmsNormBackward(const T* x, const T* weight, int64_t N, int64_t C,
                     const RmsNormActivations<T>& act, const T* dy, T* dx, T* dweight);

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_RMSNORM_H_
