// Supervised losses for SFT and distillation.
//
// SftLoss: negative log-likelihood of the target tokens, averaged over the masked tokens
//   (completion tokens only: prompt and padding positions have mask 0):
//     loss = -sum_k mask_k logp_k / max(sum_k mask_k, 1)   (or / normalizer when it is > 0,
//     for micro-batches of a larger batch),
//   with d loss / d logp_k = -mask_k / N.
// KdLoss: logit distillation, forward KL(teacher || student) at temperature tau over rows of V
//   logits (Hinton et al.: scaled by tau^2 so gradients keep their size across temperatures):
//     p = softmax(teacher / tau), q = softmax(student / tau)
//     loss = tau^2 / R * sum_rows sum_v p_v (log p_v - log q_v)
//     d loss / d student_logit_v = tau / R * (q_v - p_v)
//   over the R rows whose mask is non-zero. Softmaxes subtract the row max for stability.
//
// Pure and thread-safe. Errors: InvalidArgument on size mismatches or tau <= 0.
#ifndef RLVR_POLICY_LOSSES_SFT_LOSS_H_
#define RLVR_POLICY_LOSSES_SFT_LOSS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace rlvr::policy::losses {

struct SupervisedLossOutput {
  double loss = 0;
  std::vector<float> grad;  // same shape as the differentiated input
  int64_t num_tokens = 0;   // tokens (rows for KdLoss) that contributed
};

// logp: [N] log-probabilities of the target tokens; mask: [N].
absl::StatusOr<SupervisedLossOutput> SftLoss(absl::Span<const float> logp,
                                             absl::Span<const uint8_t> mask,
                                             int64_t normalizer = 0);

// student_logits, teacher_logits: [R, V] row-major; mask: [R].
absl::StatusOr<SupervisedLossOutput> KdLoss(absl::Span<const float> student_logits,
                                            absl::Span<const float> teacher_logits,
                                            absl::Span<const uint8_t> mask, int64_t vocab,
                                            double temperature);

}  // namespace rlvr::policy::losses

#endif  // RLVR_POLICY_LOSSES_SFT_LOSS_H_
