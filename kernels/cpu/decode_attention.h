// The float implementation of kernels::AttentionCachedForward (see kernels/attention.h): decode
// attention over paged key/value caches, with cascade attention for sequences that share blocks.
//
// Sequences whose caches begin with the same blocks (the G completions of one prompt: the
// rollout engine forks them from one prefill) form a group. For each (group, kv head) the
// queries of every token of every sequence of the group (times the H / Hkv query heads of the
// kv head) are scored together against the shared blocks: a 16-key tile of keys is transposed
// once and every query then takes D broadcast multiply-adds per 16 keys (no horizontal sums), so
// the prefix is read once per group instead of once per sequence and its arithmetic runs at
// GEMM-like efficiency. Each sequence's own blocks follow, with its own queries. Softmax is
// per query over all its positions, then probabilities times values the same way.
//
// Every query's arithmetic is the same whatever it is batched with: scores are per-lane dot
// products in a fixed order (four partial sums over d), the softmax sums in 16 fixed lanes,
// and values accumulate in position order. So a sequence's output is bit-identical whether it
// is decoded alone, next to its siblings, or in any other batch (the engine's same-seed
// guarantee rests on this). Under MatmulPrecision::kBf16 queries and probabilities are rounded
// to bf16 as the full forward's GEMMs round them (KvCacheWrite stores rounded keys and values).
#ifndef RLVR_KERNELS_CPU_DECODE_ATTENTION_H_
#define RLVR_KERNELS_CPU_DECODE_ATTENTION_H_

#include <cstdint>
#include <span>

#include "kernels/attention.h"

namespace rlvr::kernels::internal {

void DecodeAttentionF32(const float* q, const int32_t* positions, int64_t B, int64_t Tn,
                        int64_t H, int64_t Hkv, int64_t D, float scale,
                        std::span<const KvCacheView<float>> caches, float* out);

}  // namespace rlvr::kernels::internal

#endif  // RLVR_KERNELS_CPU_DECODE_ATTENTION_H_
