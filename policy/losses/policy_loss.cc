#include "policy/losses/policy_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace rlvr::policy::losses {
namespace {

// The clipped surrogate of one token and its derivative with respect to the ratio `r`,
// replicating PyTorch autograd's conventions: max/min ties send half the gradient to each
// branch, and clamp passes the gradient on its closed interval [lo, hi].
struct Surrogate {
  double loss;
  double dloss_dr;
  bool dual_clipped;
};

Surrogate ClippedSurrogate(double r, double a, double lo, double hi, double dual_c) {
  const double clipped = std::clamp(r, lo, hi);
  const double clamp_grad = (r >= lo && r <= hi) ? 1.0 : 0.0;
  const double loss1 = -a * r;
  const double loss2 = -a * clipped;
  const double d1 = -a;
  const double d2 = -a * clamp_grad;
  Surrogate s;
  if (loss1 > loss2) {
    s.loss = loss1;
    s.dloss_dr = d1;
  } else if (loss1 < loss2) {
    s.loss = loss2;
    s.dloss_dr = d2;
  } else {
    s.loss = loss1;
    s.dloss_dr = 0.5 * (d1 + d2);
  }
  s.dual_clipped = false;
  if (dual_c > 0 && a < 0) {
    // veRL: min(-A c, max(loss1, loss2)) for negative advantages.
    const double loss3 = -a * dual_c;
    if (loss3 < s.loss) {
      s.loss = loss3;
      s.dloss_dr = 0;
      s.dual_clipped = true;
    } else if (loss3 == s.loss) {
      s.dloss_dr *= 0.5;
    }
  }
  return s;
}

struct Kl {
  double value;
  double dvalue_dlogp;
};

Kl KlTerm(KlEstimator estimator, double logp, double ref) {
  const double d = ref - logp;
  switch (estimator) {
    case KlEstimator::kK1:
      return {-d, 1.0};
    case KlEstimator::kK2:
      return {0.5 * d * d, -d};
    case KlEstimator::kK3: {
      const double e = std::exp(d);
      return {e - d - 1.0, 1.0 - e};
    }
  }
  return {0, 0};
}

}  // namespace

absl::StatusOr<LossAggMode> ParseLossAggMode(absl::string_view name) {
  if (name == "token_mean") return LossAggMode::kTokenMean;
  if (name == "seq_mean_token_mean") return LossAggMode::kSeqMeanTokenMean;
  if (name == "seq_mean_token_sum_norm") return LossAggMode::kSeqMeanTokenSumNorm;
  return absl::InvalidArgumentError(
      absl::StrCat("grpo.loss_agg_mode: '", name,
                   "' is not one of token_mean, seq_mean_token_mean, seq_mean_token_sum_norm"));
}

absl::StatusOr<RatioLevel> ParseRatioLevel(absl::string_view name) {
  if (name == "token") return RatioLevel::kToken;
  if (name == "sequence") return RatioLevel::kSequence;
  return absl::InvalidArgumentError(
      absl::StrCat("grpo.ratio_level: '", name, "' is not one of token, sequence"));
}

absl::StatusOr<KlEstimator> ParseKlEstimator(absl::string_view name) {
  if (name == "k1") return KlEstimator::kK1;
  if (name == "k2") return KlEstimator::kK2;
  if (name == "k3") return KlEstimator::kK3;
  return absl::InvalidArgumentError(
      absl::StrCat("grpo.kl_estimator: '", name, "' is not one of k1, k2, k3"));
}

std::string LossAggModeName(LossAggMode mode) {
  switch (mode) {
    case LossAggMode::kTokenMean:
      return "token_mean";
    case LossAggMode::kSeqMeanTokenMean:
      return "seq_mean_token_mean";
    case LossAggMode::kSeqMeanTokenSumNorm:
      return "seq_mean_token_sum_norm";
  }
  return "unknown";
}

template <typename T>
absl::StatusOr<PolicyLossOutput<T>> ComputePolicyLoss(const PolicyLossConfig& config,
                                                      const PolicyLossBatch<T>& batch) {
  const int64_t B = batch.batch;
  const int64_t S = batch.seq_len;
  if (B < 0 || S < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy loss: negative batch shape [", B, ", ", S, "]"));
  }
  const size_t n = static_cast<size_t>(B * S);
  auto check_size = [&](absl::string_view name, size_t got) -> absl::Status {
    if (got != n) {
      return absl::InvalidArgumentError(absl::StrCat("policy loss: ", name, " has ", got,
                                                     " entries, expected [", B, ", ", S, "]"));
    }
    return absl::OkStatus();
  };
  RLVR_RETURN_IF_ERROR(check_size("logp_new", batch.logp_new.size()));
  RLVR_RETURN_IF_ERROR(check_size("logp_old", batch.logp_old.size()));
  RLVR_RETURN_IF_ERROR(check_size("mask", batch.mask.size()));
  if (!batch.entropy.empty()) RLVR_RETURN_IF_ERROR(check_size("entropy", batch.entropy.size()));
  const bool use_kl = config.kl_coef != 0.0;
  if (use_kl) {
    if (batch.logp_ref.empty()) {
      return absl::InvalidArgumentError("policy loss: kl_coef != 0 needs logp_ref");
    }
    RLVR_RETURN_IF_ERROR(check_size("logp_ref", batch.logp_ref.size()));
  }
  const bool token_adv = batch.advantages.size() == n && n != static_cast<size_t>(B);
  if (!token_adv && batch.advantages.size() != static_cast<size_t>(B)) {
    return absl::InvalidArgumentError(absl::StrCat("policy loss: advantages has ",
                                                   batch.advantages.size(), " entries, expected [",
                                                   B, "] or [", B, ", ", S, "]"));
  }
  if (!(config.clip_eps_low >= 0 && config.clip_eps_low < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy loss: clip_eps_low must be in [0, 1), got ", config.clip_eps_low));
  }
  if (!(config.clip_eps_high >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy loss: clip_eps_high must be >= 0, got ", config.clip_eps_high));
  }
  if (config.dual_clip_c != 0 && !(config.dual_clip_c > 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy loss: dual_clip_c must be 0 (off) or > 1, got ", config.dual_clip_c));
  }
  if (config.norm_length < 0 || config.global_tokens < 0 || config.global_sequences < 0) {
    return absl::InvalidArgumentError(
        "policy loss: norm_length, global_tokens and global_sequences must be >= 0");
  }

  auto adv_at = [&](int64_t b, int64_t t) -> double {
    return token_adv ? static_cast<double>(batch.advantages[b * S + t])
                     : static_cast<double>(batch.advantages[b]);
  };

  // Response lengths and aggregation weights.
  std::vector<int64_t> len(B, 0);
  int64_t total_tokens = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < S; ++t) len[b] += batch.mask[b * S + t] ? 1 : 0;
    total_tokens += len[b];
  }
  const double num_seqs =
      static_cast<double>(config.global_sequences > 0 ? config.global_sequences : B);
  const double tok_norm = static_cast<double>(
      std::max<int64_t>(config.global_tokens > 0 ? config.global_tokens : total_tokens, 1));
  const double norm_len = static_cast<double>(config.norm_length > 0 ? config.norm_length : S);
  auto row_weight = [&](int64_t b) -> double {
    switch (config.agg_mode) {
      case LossAggMode::kTokenMean:
        return 1.0 / tok_norm;
      case LossAggMode::kSeqMeanTokenMean:
        return 1.0 / (num_seqs * static_cast<double>(std::max<int64_t>(len[b], 1)));
      case LossAggMode::kSeqMeanTokenSumNorm:
        return 1.0 / (num_seqs * norm_len);
    }
    return 0.0;
  };

  const double lo = 1.0 - config.clip_eps_low;
  const double hi = 1.0 + config.clip_eps_high;
  PolicyLossOutput<T> out;
  out.grad_logp_new.assign(n, T(0));
  PolicyLossStats& st = out.stats;
  st.num_tokens = total_tokens;
  st.ratio_min = std::numeric_limits<double>::infinity();
  st.ratio_max = -std::numeric_limits<double>::infinity();
  int64_t low = 0, high = 0, dual = 0;
  double ratio_sum = 0, approx_kl_sum = 0, entropy_sum = 0, adv_sum = 0;

  for (int64_t b = 0; b < B; ++b) {
    if (len[b] == 0) continue;
    ++st.num_sequences;
    const double w = row_weight(b);
    double seq_log_ratio = 0;
    if (config.ratio_level == RatioLevel::kSequence) {
      for (int64_t t = 0; t < S; ++t) {
        const size_t k = b * S + t;
        if (batch.mask[k]) {
          seq_log_ratio += static_cast<double>(batch.logp_new[k]) - batch.logp_old[k];
        }
      }
      seq_log_ratio /= static_cast<double>(len[b]);
    }
    const double seq_ratio = std::exp(seq_log_ratio);
    double dloss_dseq_ratio = 0;  // sequence mode: accumulated over the row's tokens
    for (int64_t t = 0; t < S; ++t) {
      const size_t k = b * S + t;
      if (!batch.mask[k]) continue;
      const double lp = batch.logp_new[k];
      const double log_ratio = lp - static_cast<double>(batch.logp_old[k]);
      const double r = config.ratio_level == RatioLevel::kToken ? std::exp(log_ratio) : seq_ratio;
      const double a = adv_at(b, t);
      const Surrogate s = ClippedSurrogate(r, a, lo, hi, config.dual_clip_c);
      double token_loss = s.loss;
      double grad = 0;
      if (config.ratio_level == RatioLevel::kToken) {
        grad = s.dloss_dr * r;
      } else {
        dloss_dseq_ratio += w * s.dloss_dr;
      }
      st.pg_loss += w * s.loss;
      if (use_kl) {
        const Kl kl = KlTerm(config.kl_estimator, lp, batch.logp_ref[k]);
        token_loss += config.kl_coef * kl.value;
        grad += config.kl_coef * kl.dvalue_dlogp;
        st.kl_loss += w * kl.value;
      }
      out.loss += w * token_loss;
      out.grad_logp_new[k] = static_cast<T>(w * grad);
      if (!std::isfinite(token_loss)) ++st.nonfinite;

      low += (r < lo && a < 0) ? 1 : 0;
      high += (r > hi && a > 0) ? 1 : 0;
      dual += s.dual_clipped ? 1 : 0;
      ratio_sum += r;
      st.ratio_min = std::min(st.ratio_min, r);
      st.ratio_max = std::max(st.ratio_max, r);
      approx_kl_sum += -log_ratio;
      adv_sum += a;
      if (!batch.entropy.empty()) entropy_sum += batch.entropy[k];
    }
    if (config.ratio_level == RatioLevel::kSequence) {
      // d seq_ratio / d logp_new_t = seq_ratio / L for every response token of the row.
      const double g = dloss_dseq_ratio * seq_ratio / static_cast<double>(len[b]);
      for (int64_t t = 0; t < S; ++t) {
        const size_t k = b * S + t;
        if (batch.mask[k]) {
          out.grad_logp_new[k] = static_cast<T>(static_cast<double>(out.grad_logp_new[k]) + g);
        }
      }
    }
  }
  for (size_t k = 0; k < n; ++k) {
    if (!std::isfinite(static_cast<double>(out.grad_logp_new[k]))) ++st.nonfinite;
  }
  if (!std::isfinite(out.loss) && st.nonfinite == 0) ++st.nonfinite;
  if (total_tokens > 0) {
    const double nt = static_cast<double>(total_tokens);
    st.clip_frac_low = low / nt;
    st.clip_frac_high = high / nt;
    st.clip_frac = (low + high) / nt;
    st.dual_clip_frac = dual / nt;
    st.ratio_mean = ratio_sum / nt;
    st.approx_kl = approx_kl_sum / nt;
    st.entropy = entropy_sum / nt;
    st.advantage_mean = adv_sum / nt;
  } else {
    st.ratio_min = st.ratio_max = 0;
  }
  return out;
}

std::vector<std::pair<std::string, double>> PolicyLossMetrics(const PolicyLossStats& s) {
  return {{"actor/pg_loss", s.pg_loss},
          {"actor/kl_loss", s.kl_loss},
          {"actor/pg_clipfrac", s.clip_frac},
          {"actor/pg_clipfrac_lower", s.clip_frac_low},
          {"actor/pg_clipfrac_upper", s.clip_frac_high},
          {"actor/dual_clipfrac", s.dual_clip_frac},
          {"actor/ppo_kl", s.approx_kl},
          {"actor/entropy", s.entropy},
          {"actor/ratio_mean", s.ratio_mean},
          {"actor/ratio_min", s.ratio_min},
          {"actor/ratio_max", s.ratio_max},
          {"actor/nonfinite", static_cast<double>(s.nonfinite)},
          {"actor/response_tokens", static_cast<double>(s.num_tokens)}};
}

template absl::StatusOr<PolicyLossOutput<float>> ComputePolicyLoss<float>(
    const PolicyLossConfig&, const PolicyLossBatch<float>&);
template absl::StatusOr<PolicyLossOutput<double>> ComputePolicyLoss<double>(
    const PolicyLossConfig&, const PolicyLossBatch<double>&);

}  // namespace rlvr::policy::losses
