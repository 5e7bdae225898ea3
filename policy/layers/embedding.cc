#include "policy/layers/embedding.h"

#include "kernels/embedding.h"

namespace rlvr::policy::layers {

template <typename T>
absl::Status EmbeddingForward(const int32_t* ids, const T* table, int64_t N, int64_t V,
                              int64_t C, T* out) {
  return kernels::EmbeddingForward(ids, table, N, V, C, out);
}

template <typename T>
void EmbeddingBackward(const int32_t* ids, const T* dout, int64_t N, int64_t C, T* dtable) {
  kernels::EmbeddingBackward(ids, dout, N, C, dtable);
}

#define RLVR_INSTANTIATE(T)                                                                   \
  template absl::Status EmbeddingForward<T>(const int32_t*, const T*, int64_t, int64_t, int64_t, \
                                            T*);                                              \
  template void EmbeddingBackward<T>(const int32_t*, const T*, int64_t, int64_t, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::policy::layers
