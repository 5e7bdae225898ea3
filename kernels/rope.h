// Rotary position embedding, Hugging Face `rotate_half` convention (Llama, Qwen2, Qwen3): the
// head dimension D is split in halves [x1 | x2] and, with angle a_j = pos * theta^(-2j/D),
//   y1[j] = x1[j] cos a_j - x2[j] sin a_j,   y2[j] = x2[j] cos a_j + x1[j] sin a_j,  j < D/2.
// The angle table is built once per forward from the position ids (so decode with an offset is
// just other positions) and shared by every layer.
#ifndef RLVR_KERNELS_ROPE_H_
#define RLVR_KERNELS_ROPE_H_

#include <cstdint>
#include <vector>

namespace rlvr::kernels {

// cos/sin of the angles of N positions, [N, D/2] each. Computed in T's precision in the order
// transformers uses (inv_freq = 1 / theta^(2j/D); angle = pos * inv_freq), so float matches
// PyTorch's float32 tables.
template <typename T>
struct RopeTable {
  int64_t n = 0;         // positions
  int64_t half_dim = 0;  // D/2
  std::vector<T> cos;    // [N, D/2]
  std::vector<T> sin;    // [N, D/2]
};

// Fills `table` for positions[N] (any non-negative ids, e.g. offset by a KV cache length).
// D must be even (RLVR_CHECK).
template <typename T>
void BuildRopeTable(const int32_t* positions, int64_t N, int64_t D, double theta,
                    RopeTable<T>* table);

// In place on x[N, heads, D]: rotates every head of row n by the angles of row n of `table`.
template <typename T>
void RopeForward(const RopeTable<T>& table, int64_t heads, int64_t D, T* x);

// In place on dx[N, heads, D]: the transpose rotation (angle -a), which is the exact backward.
template <typename T>
void RopeBackward(const RopeTable<T>& table, int64_t heads, int64_t D, T* dx);

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_ROPE_H_
