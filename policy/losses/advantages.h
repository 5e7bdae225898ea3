// Advantage estimators for outcome-reward RL (GRPO and relatives).
//
// Input: one scalar reward per sample, samples grouped by prompt in contiguous runs of
// `group_size` (samples [g*G, (g+1)*G) answer prompt g). Output: per-token advantages
// [N, T] row-major (N samples padded to T tokens), zero where the response mask is zero.
//
// Estimators (the names are the config's `grpo.advantage_estimator` values):
//   grpo          A_i = (r_i - mean_g) / (std_g + eps), std_g the SAMPLE standard deviation
//                 (Bessel's n-1), as TRL (`rewards.view(-1, G).std(dim=1)`) and veRL
//                 (`torch.std`) compute it. A group of one sample gets mean 0 and std 1 (veRL).
//   dr_grpo       A_i = r_i - mean_g (Dr. GRPO: no division by the std).
//   rloo          A_i = r_i - mean of the other G-1 rewards = G/(G-1) (r_i - mean_g); a group of
//                 one sample gets A_i = r_i (veRL's compute_rloo_outcome_advantage).
//   reinforce_pp  REINFORCE++ as veRL's compute_reinforce_plus_plus_outcome_advantage: the
//                 outcome reward is placed on the last response token, per-token discounted
//                 returns G_t = sum_{k>=t} gamma^(k-t) r_k are taken inside each response, and
//                 the returns are whitened over all response tokens of the batch
//                 ((G_t - mean) / sqrt(var + 1e-8), token-weighted mean, unbiased variance);
//                 groups are ignored. With gamma = 1 every token of a response carries the same
//                 value before whitening.
//   reinforce_pp_baseline  veRL's reinforce_plus_plus_baseline: r_i - mean_g, broadcast to the
//                 response tokens, then whitened over the batch's response tokens as above.
//
// All arithmetic is in double. Functions are pure and thread-safe.
#ifndef RLVR_POLICY_LOSSES_ADVANTAGES_H_
#define RLVR_POLICY_LOSSES_ADVANTAGES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace rlvr::policy::losses {

enum class AdvantageEstimator { kGrpo, kDrGrpo, kRloo, kReinforcePP, kReinforcePPBaseline };

// Parses a config name (grpo, dr_grpo, rloo, reinforce_pp, reinforce_pp_baseline).
absl::StatusOr<AdvantageEstimator> ParseAdvantageEstimator(absl::string_view name);
std::string AdvantageEstimatorName(AdvantageEstimator estimator);

struct AdvantageOptions {
  AdvantageEstimator estimator = AdvantageEstimator::kGrpo;
  // Added to the group std (grpo). TRL uses 1e-4, veRL 1e-6 (our default, the config's).
  double eps = 1e-6;
  // Discount for reinforce_pp's per-token returns.
  double gamma = 1.0;
};

// Per-sample advantages for the group-based estimators (grpo, dr_grpo, rloo). `rewards` has N
// entries, N a multiple of `group_size`. Errors: InvalidArgument if group_size < 1, N is not a
// multiple of it, a reward is not finite, or the estimator is token-level (reinforce_pp*:
// use ComputeTokenAdvantages).
absl::StatusOr<std::vector<double>> ComputeSampleAdvantages(const AdvantageOptions& options,
                                                            absl::Span<const double> rewards,
                                                            int64_t group_size);

// Per-token advantages [N, T] for every estimator. `response_mask` is [N, T] (non-zero: a
// response token); the group estimators broadcast their per-sample value over the response
// tokens. Errors: as above, plus a mask whose size is not N*T.
absl::StatusOr<std::vector<double>> ComputeTokenAdvantages(const AdvantageOptions& options,
                                                           absl::Span<const double> rewards,
                                                           int64_t group_size,
                                                           absl::Span<const uint8_t> response_mask,
                                                           int64_t seq_len);

// Broadcasts per-sample values [N] to tokens [N, T] under `response_mask` (zero elsewhere).
std::vector<double> BroadcastToTokens(absl::Span<const double> per_sample,
                                      absl::Span<const uint8_t> response_mask, int64_t seq_len);

// Group statistics used for logging and dynamic sampling.
struct GroupStats {
  int64_t num_groups = 0;
  // Groups whose rewards are all equal (zero advantage under grpo/dr_grpo/rloo; DAPO's dynamic
  // sampling drops them).
  int64_t num_degenerate = 0;
  std::vector<uint8_t> degenerate;  // [num_groups], 1 if all rewards of the group are equal
};
absl::StatusOr<GroupStats> ComputeGroupStats(absl::Span<const double> rewards, int64_t group_size);

}  // namespace rlvr::policy::losses

#endif  // RLVR_POLICY_LOSSES_ADVANTAGES_H_
