#include "kernels/embedding.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace rlvr::kernels {

template <typename T>
absl::Status EmbeddingForward(const int32_t* ids, const T* table, int64_t N, int64_t V,
                              int64_t C, T* out) {
  for (int64_t n = 0; n < N; ++n) {
    if (ids[n] < 0 || ids[n] >= V) {
      return absl::InvalidArgumentError(absl::StrCat("embedding: token id ", ids[n],
                                                     " at position ", n,
                                                     " is outside the vocabulary [0, ", V, ")"));
    }
  }
#pragma omp parallel for if (N * C >= (1 << 15)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    std::memcpy(out + n * C, table + static_cast<int64_t>(ids[n]) * C, sizeof(T) * C);
  }
  return absl::OkStatus();
}

template <typename T>
void EmbeddingBackward(const int32_t* ids, const T* dout, int64_t N, int64_t C, T* dtable) {
  // Repeated ids write the same row, so split the columns across threads, not the rows.
#pragma omp parallel for if (N * C >= (1 << 15)) schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += 64) {
    const int64_t c1 = c0 + 64 < C ? c0 + 64 : C;
    for (int64_t n = 0; n < N; ++n) {
      T* row = dtable + static_cast<int64_t>(ids[n]) * C;
      const T* d = dout + n * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) row[c] += d[c];
    }
  }
}

#define RLVR_INSTANTIATE(T)                                                                   \
  template absl::Status EmbeddingForward<T>(const int32_t*, const T*, int64_t, int64_t, int64_t, \
                                            T*);                                              \
  template void EmbeddingBackward<T>(const int32_t*, const T*, int64_t, int64_t, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::kernels
