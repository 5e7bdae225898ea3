#include "kernels/elementwise.h"

#include <cmath>

#include "kernels/cpu/fast_math.h"

namespace rlvr::kernels {
namespace {
// Below this many elements the OpenMP fork/join costs more than the loop.
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

template <typename T>
void Add(const T* a, const T* b, int64_t n, T* y) {
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

template <typename T>
void Axpy(T alpha, const T* x, int64_t n, T* y) {
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <typename T>
void Scale(T alpha, int64_t n, T* y) {
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

template <typename T>
void Fill(T value, int64_t n, T* y) {
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = value;
}

template <typename T>
void SwigluForward(const T* gate, const T* up, int64_t n, T* out) {
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    out[i] = g / (T(1) + internal::Exp<T>(-g)) * up[i];
  }
}

template <typename T>
void SwigluBackward(const T* dout, const T* gate, const T* up, int64_t n, T* dgate, T* dup) {
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    const T s = T(1) / (T(1) + internal::Exp<T>(-g));
    const T silu = g * s;
    // d silu / dg = s + g s (1 - s)
    dgate[i] = dout[i] * up[i] * (s + silu * (T(1) - s));
    dup[i] = dout[i] * silu;
  }
}

#define RLVR_INSTANTIATE(T)                                                         \
  template void Add<T>(const T*, const T*, int64_t, T*);                            \
  template void Axpy<T>(T, const T*, int64_t, T*);                                  \
  template void Scale<T>(T, int64_t, T*);                                           \
  template void Fill<T>(T, int64_t, T*);                                            \
  template void SwigluForward<T>(const T*, const T*, int64_t, T*);                  \
  template void SwigluBackward<T>(const T*, const T*, const T*, int64_t, T*, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::kernels
