// LM head and the fused log-softmax over the vocabulary.
//
// logits = h W^T ([N, V], W the lm_head weight or the tied embedding table, both [V, C]). For
// the learner, LmHeadLogprobForward returns only the chosen token's logprob and the entropy per
// row: it walks the rows in blocks of `row_block`, materializing one [row_block, V] block of
// logits at a time; the backward recomputes each block's logits (one extra GEMM) instead of
// storing N x V values. Vocabulary entries at index >= valid_vocab (the padding of an embedding
// larger than the tokenizer) are masked to -inf. logits are multiplied by `scale` first
// (1/temperature, to score samples drawn with a temperature). See common.h for the conventions.
#ifndef RLVR_POLICY_LAYERS_LM_HEAD_H_
#define RLVR_POLICY_LAYERS_LM_HEAD_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rlvr::policy::layers {

struct LmHeadConfig {
  int64_t hidden = 0;       // C
  int64_t vocab = 0;        // V, rows of the weight
  int64_t valid_vocab = 0;  // entries >= valid_vocab are masked; 0 means V
  int64_t row_block = 64;   // rows per materialized logits block
  double scale = 1.0;       // logits multiplier (1/temperature)
};

template <typename T>
struct LmHeadActivations {
  std::vector<T> lse;      // [N] log-sum-exp of each row's scaled logits
  std::vector<T> entropy;  // [N]
};

// Plain logits[N, V] = h[N, C] @ W[V, C]^T, masked entries set to -inf, times scale (for the
// sampler). InvalidArgument for a bad config.
template <typename T>
absl::Status LmHeadLogits(const LmHeadConfig& cfg, const T* W, const T* h, int64_t N, T* logits);

// logprob[N] = log softmax(scale * h W^T)[target]; entropy[N] (may be null: then it is still
// computed into act for the backward). targets [N] in [0, valid_vocab): InvalidArgument naming
// the row otherwise.
template <typename T>
absl::Status LmHeadLogprobForward(const LmHeadConfig& cfg, const T* W, const T* h,
                                  const int32_t* targets, int64_t N, LmHeadActivations<T>* act,
                                  T* logprob, T* entropy);

// Given dlogprob[N] and dentropy[N] (null = 0), dh [N, C] += ..., dW [V, C] += ...
// (either may be null to skip it).
template <typename T>
void LmHeadLogprobBackward(const LmHeadConfig& cfg, const T* W, const T* h,
                           const int32_t* targets, int64_t N, const LmHeadActivations<T>& act,
                           const T* dlogprob, const T* dentropy, T* dh, T* dW);

// SFT entry, forward and backward in one pass over the blocks (no recompute): with per-row
// weights wt[N] (e.g. the loss mask divided by the token count), returns
//   loss = -sum_n wt[n] * logprob[n]
// and accumulates its gradient into dh [N, C] and dW [V, C] (either may be null).
template <typename T>
absl::StatusOr<double> CrossEntropyForwardBackward(const LmHeadConfig& cfg, const T* W,
                                                   const T* h, const int32_t* targets,
                                                   const T* wt, int64_t N, T* dh, T* dW);

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_LM_HEAD_H_
