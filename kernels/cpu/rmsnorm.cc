#include "kernels/rmsnorm.h"

#include <cmath>

namespace rlvr::kernels {

template <typename T>
void RmsNormForward(const T* x, const T* w, int64_t R, int64_t C, double eps, T* y, T* rstd) {
#pragma omp parallel for if (R * C >= (1 << 15)) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    // Accumulate in at least float precision (HF computes the variance in float32).
    T ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const T rs = T(1) / std::sqrt(ss / T(C) + T(eps));
    if (rstd != nullptr) rstd[r] = rs;
    T* yr = y + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) yr[c] = w[c] * (xr[c] * rs);
  }
}

template <typename T>
void RmsNormBackward(const T* dy, const T* x, const T* w, const T* rstd, int64_t R, int64_t C,
                     T* dx, T* dw) {
#pragma omp parallel for if (R * C >= (1 << 15)) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * C;
    const T* dyr = dy + r * C;
    const T rs = rstd[r];
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < C; ++c) dot += w[c] * dyr[c] * xr[c];
    const T k = rs * rs * rs * dot / T(C);
    T* dxr = dx + r * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) dxr[c] += rs * w[c] * dyr[c] - k * xr[c];
  }
  if (dw != nullptr) {
    // Column sums: parallel over columns so no two threads write the same dw entry.
#pragma omp parallel for if (R * C >= (1 << 15)) schedule(static)
    for (int64_t c0 = 0; c0 < C; c0 += 64) {
      const int64_t c1 = c0 + 64 < C ? c0 + 64 : C;
      for (int64_t r = 0; r < R; ++r) {
        const T rs = rstd[r];
        const T* xr = x + r * C;
        const T* dyr = dy + r * C;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) dw[c] += dyr[c] * xr[c] * rs;
      }
    }
  }
}

#define RLVR_INSTANTIATE(T)                                                                   \
  template void RmsNormForward<T>(const T*, const T*, int64_t, int64_t, double, T*, T*);      \
  template void RmsNormBackward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, \
                                   T*, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::kernels
