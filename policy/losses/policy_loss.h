// The GRPO / DAPO / GSPO policy-gradient loss over a batch of responses, with its gradient with
// respect to the new policy's per-token log-probabilities (what the model's backward consumes).
//
// Layout: B responses padded to T tokens; every per-token array is [B, T] row-major and
// `mask[b*T + t] != 0` marks a response token (prompt and padding positions are ignored and get a
// zero gradient). Advantages are [B] (one per response, broadcast over its tokens) or [B, T].
//
// Per token (L = number of response tokens of the row):
//   log_w_t = logp_new_t - logp_old_t                     (ratio_level token, GRPO/DAPO)
//   log_w_t = sum_t' mask_t' (logp_new_t' - logp_old_t') / max(L, 1)
//                                                         (ratio_level sequence, GSPO; TRL's
//                                                          importance_sampling_level="sequence")
//   w_t = exp(log_w_t)
//   pg_t = -min(w_t A_t, clip(w_t, 1 - eps_low, 1 + eps_high) A_t)        (DAPO clip-higher)
//   with dual clip (dual_clip_c > 1, veRL's clip_ratio_c), for A_t < 0: pg_t = min(pg_t, -c A_t)
//   kl_t = logp_new - logp_ref                          (k1)
//        = (logp_new - logp_ref)^2 / 2                  (k2)
//        = exp(logp_ref - logp_new) - (logp_ref - logp_new) - 1    (k3, TRL's and veRL's
//                                                          low_var_kl, without veRL's clamp)
//   l_t = pg_t + kl_coef * kl_t                          (TRL adds the KL per token)
// Aggregation (veRL's loss_agg_mode names; TRL's loss_type in brackets):
//   token_mean               sum_{b,t} mask l / max(total response tokens, 1)      [bnpo]
//   seq_mean_token_mean      (1/B) sum_b (sum_t mask l / max(L_b, 1))              [grpo]
//   seq_mean_token_sum_norm  (1/B) sum_b (sum_t mask l) / norm_length              [dr_grpo]
//                            norm_length = the max response length (Dr. GRPO's constant).
// Gradient: the exact derivative of the loss above as PyTorch autograd computes it (ties of the
// min go half to each branch, so a ratio inside the clip range gets the full unclipped gradient;
// a clipped branch contributes zero). In sequence mode the gradient of a token also flows
// through the row's shared ratio: d loss / d logp_new_t = mask_t / L * sum_t' (d loss / d w) w.
//
// Mini-batches split into micro-batches: set `global_tokens` / `global_sequences` to the
// mini-batch's totals so the micro-batch losses and gradients sum to the mini-batch's.
//
// Statistics are over response tokens (TRL's definitions): clip_frac_low = fraction with
// w < 1 - eps_low and A < 0, clip_frac_high = w > 1 + eps_high and A > 0.
//
// The functions are pure and thread-safe; T is float or double (all accumulations in double).
#ifndef RLVR_POLICY_LOSSES_POLICY_LOSS_H_
#define RLVR_POLICY_LOSSES_POLICY_LOSS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace rlvr::policy::losses {

enum class LossAggMode { kTokenMean, kSeqMeanTokenMean, kSeqMeanTokenSumNorm };
enum class RatioLevel { kToken, kSequence };
enum class KlEstimator { kK1, kK2, kK3 };

// Parse the config's names (grpo.loss_agg_mode, grpo.ratio_level, grpo.kl_estimator); errors
// name the key and the allowed values.
absl::StatusOr<LossAggMode> ParseLossAggMode(absl::string_view name);
absl::StatusOr<RatioLevel> ParseRatioLevel(absl::string_view name);
absl::StatusOr<KlEstimator> ParseKlEstimator(absl::string_view name);
std::string LossAggModeName(LossAggMode mode);

struct PolicyLossConfig {
  double clip_eps_low = 0.2;
  double clip_eps_high = 0.28;
  // veRL's dual clip (clip_ratio_c, typically 3): bounds the loss of negative-advantage tokens
  // at -c A. 0 turns it off (the default); otherwise it must be > 1.
  double dual_clip_c = 0.0;
  RatioLevel ratio_level = RatioLevel::kToken;
  LossAggMode agg_mode = LossAggMode::kTokenMean;
  // KL-to-reference coefficient (beta); 0 turns the term off and logp_ref may be empty.
  double kl_coef = 0.0;
  KlEstimator kl_estimator = KlEstimator::kK3;
  // seq_mean_token_sum_norm's constant: the maximum response length (rollout.max_new_tokens).
  // 0 means T, the padded length of this batch.
  int64_t norm_length = 0;
  // Normalizers across micro-batches (0: this batch's own count). global_tokens replaces the
  // token count of token_mean; global_sequences replaces B in the seq_mean_* modes.
  int64_t global_tokens = 0;
  int64_t global_sequences = 0;
};

template <typename T>
struct PolicyLossBatch {
  int64_t batch = 0;               // B
  int64_t seq_len = 0;             // T
  absl::Span<const T> logp_new;    // [B, T] log pi_theta(token), the differentiated input
  absl::Span<const T> logp_old;    // [B, T] behaviour policy's log-probs (rollout)
  absl::Span<const T> logp_ref;    // [B, T] reference policy's; needed when kl_coef != 0
  absl::Span<const T> advantages;  // [B] or [B, T]
  absl::Span<const uint8_t> mask;  // [B, T] non-zero: response token
  absl::Span<const T> entropy;     // [B, T] optional (empty): per-token entropy, logged only
};

struct PolicyLossStats {
  double pg_loss = 0;        // the aggregated policy-gradient part
  double kl_loss = 0;        // the aggregated KL estimator (before kl_coef)
  double clip_frac_low = 0;  // see the header comment
  double clip_frac_high = 0;
  double clip_frac = 0;       // low + high (TRL's clip_ratio/region_mean)
  double dual_clip_frac = 0;  // tokens held at -c A by the dual clip
  double approx_kl = 0;       // token mean of logp_old - logp_new (veRL's ppo_kl)
  double ratio_mean = 0;      // token mean / min / max of w
  double ratio_min = 0;
  double ratio_max = 0;
  double entropy = 0;         // token mean of `entropy` (0 when not given)
  double advantage_mean = 0;  // token mean of A
  int64_t num_tokens = 0;     // response tokens in this batch
  int64_t num_sequences = 0;  // rows with at least one response token
  int64_t nonfinite = 0;      // non-finite per-token losses or gradients (see below)
};

template <typename T>
struct PolicyLossOutput {
  double loss = 0;
  std::vector<T> grad_logp_new;  // [B, T] d loss / d logp_new; 0 outside the mask
  PolicyLossStats stats;
};

// Computes the loss, gradient and statistics. Errors: InvalidArgument when sizes disagree with
// B and T, eps_low is outside [0, 1), eps_high < 0, dual_clip_c is in (0, 1], or kl_coef != 0
// without logp_ref. A NaN/Inf in the inputs is not an error: it shows up as a non-finite loss
// and `stats.nonfinite > 0`, and the caller must skip the optimizer step (never apply it).
template <typename T>
absl::StatusOr<PolicyLossOutput<T>> ComputePolicyLoss(const PolicyLossConfig& config,
                                                      const PolicyLossBatch<T>& batch);

extern template absl::StatusOr<PolicyLossOutput<float>> ComputePolicyLoss<float>(
    const PolicyLossConfig&, const PolicyLossBatch<float>&);
extern template absl::StatusOr<PolicyLossOutput<double>> ComputePolicyLoss<double>(
    const PolicyLossConfig&, const PolicyLossBatch<double>&);

// The statistics under veRL's metric names where one exists (actor/pg_loss, actor/kl_loss,
// actor/pg_clipfrac, actor/pg_clipfrac_lower, actor/ppo_kl, actor/entropy) and rlvr names for
// the rest (actor/pg_clipfrac_upper, actor/dual_clipfrac, actor/ratio_mean|min|max,
// actor/nonfinite, actor/response_tokens), in a fixed order.
std::vector<std::pair<std::string, double>> PolicyLossMetrics(const PolicyLossStats& stats);

}  // namespace rlvr::policy::losses

#endif  // RLVR_POLICY_LOSSES_POLICY_LOSS_H_
