// Row gather (token embedding) and its scatter-add backward, float and double.
#ifndef RLVR_KERNELS_EMBEDDING_H_
#define RLVR_KERNELS_EMBEDDING_H_

#include <cstdint>

#include "absl/status/status.h"

namespace rlvr::kernels {

// out[n, :] = table[ids[n], :] for ids[N] in [0, V); table [V, C], out [N, C].
// InvalidArgument naming the position and id if an id is out of range (out is then partial).
template <typename T>
absl::Status EmbeddingForward(const int32_t* ids, const T* table, int64_t N, int64_t V,
                              int64_t C, T* out);

// dtable[ids[n], :] += dout[n, :] (ACCUMULATES). Ids were validated by the forward.
template <typename T>
void EmbeddingBackward(const int32_t* ids, const T* dout, int64_t N, int64_t C, T* dtable);

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_EMBEDDING_H_
