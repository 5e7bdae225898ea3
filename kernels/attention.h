// Scaled dot-product attention with a causal mask and grouped-query heads (query head h reads
// key/value head h / (H / Hkv)), float and double, on the CPU.
//
// Training / prefill work on whole sequences: per (batch, kv head) the scores are computed with
// GEMMs (query rows in blocks of 64 against the keys up to the block's end, skipping the
// masked upper triangle) into a per-thread scratch, and only the softmax's log-sum-exp per
// query row is saved; the backward recomputes the probabilities from it (flash-attention's
// trade: O(B*H*T) saved instead of O(B*H*T*T)). Decode reads keys/values through KvCacheView,
// a paged view that the rollout engine's cache can hand out without copying.
#ifndef RLVR_KERNELS_ATTENTION_H_
#define RLVR_KERNELS_ATTENTION_H_

#include <cstdint>
#include <span>

namespace rlvr::kernels {

// Full-sequence causal attention. Sequences are right-padded to T (padding never affects the
// real tokens because of the causal mask).
//   q   [B, T, H, D]     k, v [B, T, Hkv, D]
//   out [B, T, H, D]     lse  [B, H, T]  (log-sum-exp of the scaled scores; saved for backward)
//   scale: usually 1/sqrt(D).  H % Hkv == 0 (RLVR_CHECK).
//   seg_start [B, T] int32, or null: packed rows (several sequences concatenated in one row).
//   Query (b, t) then attends only to keys seg_start[b, t] .. t, the causal block of its own
//   segment. Segments are contiguous: seg_start[b, t] is t (a segment starts at t) or
//   seg_start[b, t - 1] (RLVR_CHECK). Null means one segment per row (seg_start = 0). Each
//   segment is computed as its own [len, len] block, so a packed row costs sum(len^2), not T^2,
//   and gives the same numbers as the segments run as separate rows.
template <typename T>
void AttentionForward(const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H,
                      int64_t Hkv, int64_t D, double scale, T* out, T* lse,
                      const int32_t* seg_start = nullptr);

// Backward of AttentionForward given dout [B, T, H, D] and the forward's q, k, v, out, lse (and
// the same seg_start). dq [B, T, H, D], dk and dv [B, T, Hkv, D] ACCUMULATE (+=).
template <typename T>
void AttentionBackward(const T* dout, const T* q, const T* k, const T* v, const T* out,
                       const T* lse, int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                       double scale, T* dq, T* dk, T* dv, const int32_t* seg_start = nullptr);

// One sequence's keys and values for one layer, in blocks of `block_size` positions: position p
// is row p % block_size of block p / block_size; a row is [Hkv, D]. A contiguous cache is one
// block with block_size >= its capacity. The view does not own the blocks.
template <typename T>
struct KvCacheView {
  int64_t block_size = 0;
  std::span<T* const> k_blocks;  // each [block_size, Hkv, D]
  std::span<T* const> v_blocks;  // each [block_size, Hkv, D]

  int64_t capacity() const { return block_size * static_cast<int64_t>(k_blocks.size()); }
  T* k_row(int64_t pos, int64_t row_elems) const {
    return k_blocks[pos / block_size] + (pos % block_size) * row_elems;
  }
  T* v_row(int64_t pos, int64_t row_elems) const {
    return v_blocks[pos / block_size] + (pos % block_size) * row_elems;
  }
};

// Writes k_new, v_new [B, Tn, Hkv, D] into caches[b] at positions[b, t] ([B, Tn]).
// RLVR_CHECKs that each position is below the cache's capacity.
template <typename T>
void KvCacheWrite(const T* k_new, const T* v_new, const int32_t* positions, int64_t B,
                  int64_t Tn, int64_t Hkv, int64_t D, std::span<const KvCacheView<T>> caches);

// Attention of new queries q [B, Tn, H, D] at positions[b, t] over caches[b]: query (b, t)
// attends to cached positions 0..positions[b, t] inclusive, which must all have been written
// (KvCacheWrite the new tokens first). out [B, Tn, H, D]. Forward only (no backward: decode is
// inference).
template <typename T>
void AttentionCachedForward(const T* q, const int32_t* positions, int64_t B, int64_t Tn,
                            int64_t H, int64_t Hkv, int64_t D, double scale,
                            std::span<const KvCacheView<T>> caches, T* out);

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_ATTENTION_H_
