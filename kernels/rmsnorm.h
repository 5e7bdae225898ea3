// RMSNorm over the last dimension (Llama/Qwen convention, weight multiplies, no bias):
//   y[r, c] = x[r, c] * rstd[r] * w[c],  rstd[r] = 1 / sqrt(mean_c x[r, c]^2 + eps).
// Rows are independent and split across the OpenMP team. float and double.
#ifndef RLVR_KERNELS_RMSNORM_H_
#define RLVR_KERNELS_RMSNORM_H_

#include <cstdint>

namespace rlvr::kernels {

// x, y: [R, C]; w: [C]; rstd: [R], saved for the backward (may be null if not needed).
// y may alias x.
template <typename T>
void RmsNormForward(const T* x, const T* w, int64_t R, int64_t C, double eps, T* y, T* rstd);

// Given dy[R, C] and the forward's x and rstd:
//   dx[R, C] += rstd * (w*dy - x * rstd^2 * mean_c(w*dy*x))   (ACCUMULATES; dx may not alias)
//   dw[C]    += sum_r dy * x * rstd                              (ACCUMULATES; skipped if null)
template <typename T>
void RmsNormBackward(const T* dy, const T* x, const T* w, const T* rstd, int64_t R, int64_t C,
                     T* dx, T* dw);

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_RMSNORM_H_
