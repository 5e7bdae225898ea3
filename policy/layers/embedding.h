// Token embedding: x[N, C] = table[ids[N], :]. See common.h for the conventions.
#ifndef RLVR_POLICY_LAYERS_EMBEDDING_H_
#define RLVR_POLICY_LAYERS_EMBEDDING_H_

#include <cstdint>

#include "absl/status/status.h"

namespace rlvr::policy::layers {

// table [V, C]; out [N, C]. InvalidArgument naming the position if an id is outside [0, V).
template <typename T>
absl::Status EmbeddingForward(const int32_t* ids, const T* table, int64_t N, int64_t V,
                              int64_t C, T* out);

// dtable[V, C] += scatter of dout[N, C] by ids (ACCUMULATES).
template <typename T>
void EmbeddingBackward(const int32_t* ids, const T* dout, int64_t N, int64_t C, T* dtable);

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_EMBEDDING_H_
