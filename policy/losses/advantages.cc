#include "policy/losses/advantages.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace rlvr::policy::losses {
namespace {

absl::Status CheckRewards(absl::Span<const double> rewards, int64_t group_size) {
  if (group_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("advantages: group_size must be >= 1, got ", group_size));
  }
  if (static_cast<int64_t>(rewards.size()) % group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "advantages: ", rewards.size(), " rewards do not divide into groups of ", group_size));
  }
  for (size_t i = 0; i < rewards.size(); ++i) {
    if (!std::isfinite(rewards[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("advantages: reward of sample ", i, " is not finite (", rewards[i], ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckMask(size_t num_samples, absl::Span<const uint8_t> mask, int64_t seq_len) {
  if (seq_len < 0 || mask.size() != num_samples * static_cast<size_t>(seq_len)) {
    return absl::InvalidArgumentError(absl::StrCat("advantages: response mask has ", mask.size(),
                                                   " entries, expected ", num_samples, " x ",
                                                   seq_len));
  }
  return absl::OkStatus();
}

// veRL's masked_whiten(values, mask, shift_mean=True): token-weighted mean, unbiased variance.
void MaskedWhiten(absl::Span<const uint8_t> mask, std::vector<double>* values) {
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < values->size(); ++i) {
    if (mask[i]) {
      sum += (*values)[i];
      ++count;
    }
  }
  if (count == 0) return;
  const double mean = sum / count;
  double sq = 0;
  for (size_t i = 0; i < values->size(); ++i) {
    if (mask[i]) sq += ((*values)[i] - mean) * ((*values)[i] - mean);
  }
  // veRL multiplies the biased variance by count / (count - 1); with one token that divides by
  // zero, so we keep the biased value (0) there instead of producing NaN.
  const double var = count > 1 ? sq / (count - 1) : 0.0;
  const double inv = 1.0 / std::sqrt(var + 1e-8);
  for (size_t i = 0; i < values->size(); ++i) {
    (*values)[i] = mask[i] ? ((*values)[i] - mean) * inv : 0.0;
  }
}

}  // namespace

absl::StatusOr<AdvantageEstimator> ParseAdvantageEstimator(absl::string_view name) {
  if (name == "grpo") return AdvantageEstimator::kGrpo;
  if (name == "dr_grpo") return AdvantageEstimator::kDrGrpo;
  if (name == "rloo") return AdvantageEstimator::kRloo;
  if (name == "reinforce_pp") return AdvantageEstimator::kReinforcePP;
  if (name == "reinforce_pp_baseline") return AdvantageEstimator::kReinforcePPBaseline;
  return absl::InvalidArgumentError(
      absl::StrCat("grpo.advantage_estimator: '", name,
                   "' is not one of grpo, dr_grpo, rloo, reinforce_pp, reinforce_pp_baseline"));
}

std::string AdvantageEstimatorName(AdvantageEstimator estimator) {
  switch (estimator) {
    case AdvantageEstimator::kGrpo:
      return "grpo";
    case AdvantageEstimator::kDrGrpo:
      return "dr_grpo";
    case AdvantageEstimator::kRloo:
      return "rloo";
    case AdvantageEstimator::kReinforcePP:
      return "reinforce_pp";
    case AdvantageEstimator::kReinforcePPBaseline:
      return "reinforce_pp_baseline";
  }
  return "unknown";
}

absl::StatusOr<std::vector<double>> ComputeSampleAdvantages(const AdvantageOptions& options,
                                                            absl::Span<const double> rewards,
                                                            int64_t group_size) {
  RLVR_RETURN_IF_ERROR(CheckRewards(rewards, group_size));
  const int64_t n = static_cast<int64_t>(rewards.size());
  const int64_t g = group_size;
  std::vector<double> adv(n);
  for (int64_t start = 0; start < n; start += g) {
    double sum = 0;
    for (int64_t i = start; i < start + g; ++i) sum += rewards[i];
    const double mean = sum / g;
    switch (options.estimator) {
      case AdvantageEstimator::kGrpo: {
        double sq = 0;
        for (int64_t i = start; i < start + g; ++i) sq += (rewards[i] - mean) * (rewards[i] - mean);
        const double std = g > 1 ? std::sqrt(sq / (g - 1)) : 1.0;
        const double m = g > 1 ? mean : 0.0;
        for (int64_t i = start; i < start + g; ++i) adv[i] = (rewards[i] - m) / (std + options.eps);
        break;
      }
      case AdvantageEstimator::kDrGrpo:
        for (int64_t i = start; i < start + g; ++i) adv[i] = rewards[i] - mean;
        break;
      case AdvantageEstimator::kRloo:
        for (int64_t i = start; i < start + g; ++i) {
          adv[i] = g > 1 ? (rewards[i] - (sum - rewards[i]) / (g - 1)) : rewards[i];
        }
        break;
      case AdvantageEstimator::kReinforcePP:
      case AdvantageEstimator::kReinforcePPBaseline:
        return absl::InvalidArgumentError(
            absl::StrCat("advantages: ", AdvantageEstimatorName(options.estimator),
                         " is token-level; use ComputeTokenAdvantages"));
    }
  }
  return adv;
}

std::vector<double> BroadcastToTokens(absl::Span<const double> per_sample,
                                      absl::Span<const uint8_t> response_mask, int64_t seq_len) {
  std::vector<double> out(per_sample.size() * seq_len, 0.0);
  for (size_t i = 0; i < per_sample.size(); ++i) {
    for (int64_t t = 0; t < seq_len; ++t) {
      const size_t k = i * seq_len + t;
      if (response_mask[k]) out[k] = per_sample[i];
    }
  }
  return out;
}

absl::StatusOr<std::vector<double>> ComputeTokenAdvantages(const AdvantageOptions& options,
                                                           absl::Span<const double> rewards,
                                                           int64_t group_size,
                                                           absl::Span<const uint8_t> response_mask,
                                                           int64_t seq_len) {
  RLVR_RETURN_IF_ERROR(CheckRewards(rewards, group_size));
  RLVR_RETURN_IF_ERROR(CheckMask(rewards.size(), response_mask, seq_len));
  const size_t n = rewards.size();
  if (options.estimator == AdvantageEstimator::kReinforcePP) {
    std::vector<double> returns(n * seq_len, 0.0);
    for (size_t i = 0; i < n; ++i) {
      int64_t last = -1;
      for (int64_t t = 0; t < seq_len; ++t) {
        if (response_mask[i * seq_len + t]) last = t;
      }
      // veRL's loop: running = r_t + gamma * running; returns[t] = running; running *= mask[t].
      // With the reward on the last response token, positions after it carry 0 and masked
      // positions inside the response reset the running return, as in veRL.
      double running = 0;
      for (int64_t t = seq_len - 1; t >= 0; --t) {
        const size_t k = i * seq_len + t;
        const double r_t = (t == last) ? rewards[i] : 0.0;
        running = r_t + options.gamma * running;
        returns[k] = running;
        if (!response_mask[k]) running = 0;
      }
    }
    MaskedWhiten(response_mask, &returns);
    return returns;
  }
  if (options.estimator == AdvantageEstimator::kReinforcePPBaseline) {
    // r - group mean, broadcast, then whitened over the batch's response tokens.
    AdvantageOptions dr = options;
    dr.estimator = AdvantageEstimator::kDrGrpo;
    RLVR_ASSIGN_OR_RETURN(std::vector<double> centered,
                          ComputeSampleAdvantages(dr, rewards, group_size));
    std::vector<double> out = BroadcastToTokens(centered, response_mask, seq_len);
    MaskedWhiten(response_mask, &out);
    return out;
  }
  RLVR_ASSIGN_OR_RETURN(std::vector<double> per_sample,
                        ComputeSampleAdvantages(options, rewards, group_size));
  return BroadcastToTokens(per_sample, response_mask, seq_len);
}

absl::StatusOr<GroupStats> ComputeGroupStats(absl::Span<const double> rewards, int64_t group_size) {
  RLVR_RETURN_IF_ERROR(CheckRewards(rewards, group_size));
  GroupStats stats;
  stats.num_groups = static_cast<int64_t>(rewards.size()) / group_size;
  stats.degenerate.assign(stats.num_groups, 0);
  for (int64_t g = 0; g < stats.num_groups; ++g) {
    bool all_equal = true;
    for (int64_t i = 1; i < group_size; ++i) {
      if (rewards[g * group_size + i] != rewards[g * group_size]) all_equal = false;
    }
    stats.degenerate[g] = all_equal ? 1 : 0;
    stats.num_degenerate += all_equal ? 1 : 0;
  }
  return stats;
}

}  // namespace rlvr::policy::losses
