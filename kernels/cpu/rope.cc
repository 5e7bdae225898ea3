#include "kernels/rope.h"

#include <cmath>

#include "core/status.h"

namespace rlvr::kernels {

template <typename T>
void BuildRopeTable(const int32_t* positions, int64_t N, int64_t D, double theta,
                    RopeTable<T>* table) {
  RLVR_CHECK(D % 2 == 0, "RoPE head dim ", D, " is odd");
  const int64_t half = D / 2;
  table->n = N;
  table->half_dim = half;
  table->cos.resize(N * half);
  table->sin.resize(N * half);
  // transformers: inv_freq = 1 / base^(arange(0, D, 2) / D) and angle = pos * inv_freq, in
  // float32 for float models; the same operation order in T keeps float tables bit-close.
  std::vector<T> inv_freq(half);
  for (int64_t j = 0; j < half; ++j) {
    inv_freq[j] = T(1) / static_cast<T>(std::pow(static_cast<T>(theta),
                                                 static_cast<T>(2 * j) / static_cast<T>(D)));
  }
#pragma omp parallel for if (N * half >= (1 << 14)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T pos = static_cast<T>(positions[n]);
    for (int64_t j = 0; j < half; ++j) {
      const T a = pos * inv_freq[j];
      table->cos[n * half + j] = std::cos(a);
      table->sin[n * half + j] = std::sin(a);
    }
  }
}

namespace {
template <typename T>
void Rotate(const RopeTable<T>& table, int64_t heads, int64_t D, T sign, T* x) {
  const int64_t half = D / 2;
  RLVR_CHECK(half == table.half_dim, "RoPE table for head dim ", 2 * table.half_dim,
             ", applied to ", D);
  const int64_t N = table.n;
#pragma omp parallel for if (N * heads * D >= (1 << 15)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* c = table.cos.data() + n * half;
    const T* s = table.sin.data() + n * half;
    for (int64_t h = 0; h < heads; ++h) {
      T* x1 = x + (n * heads + h) * D;
      T* x2 = x1 + half;
#pragma omp simd
      for (int64_t j = 0; j < half; ++j) {
        const T a = x1[j], b = x2[j], sn = sign * s[j];
        x1[j] = a * c[j] - b * sn;
        x2[j] = b * c[j] + a * sn;
      }
    }
  }
}
}  // namespace

template <typename T>
void RopeForward(const RopeTable<T>& table, int64_t heads, int64_t D, T* x) {
  Rotate(table, heads, D, T(1), x);
}

template <typename T>
void RopeBackward(const RopeTable<T>& table, int64_t heads, int64_t D, T* dx) {
  Rotate(table, heads, D, T(-1), dx);
}

#define RLVR_INSTANTIATE(T)                                                                \
  template void BuildRopeTable<T>(const int32_t*, int64_t, int64_t, double, RopeTable<T>*); \
  template void RopeForward<T>(const RopeTable<T>&, int64_t, int64_t, T*);                  \
  template void RopeBackward<T>(const RopeTable<T>&, int64_t, int64_t, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::kernels
