#include "rollout/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "rollout/sampler_math.h"

namespace rlvr::rollout {

absl::Status SamplingParams::Validate() const {
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature: ", temperature, " must be >= 0 (0 = greedy)"));
  }
  if (!(top_p > 0.0 && top_p <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p: ", top_p, " is outside (0, 1]"));
  }
  if (top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k: ", top_k, " must be >= 0 (0 = off)"));
  }
  if (!(min_p >= 0.0 && min_p < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p: ", min_p, " is outside [0, 1)"));
  }
  if (!(repetition_penalty > 0.0) || !std::isfinite(repetition_penalty)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "repetition_penalty: ", repetition_penalty, " must be > 0 (1 = off)"));
  }
  return absl::OkStatus();
}

std::string SamplingParams::DebugString() const {
  return absl::StrCat("temperature=", temperature, " top_p=", top_p, " top_k=", top_k,
                      " min_p=", min_p, " repetition_penalty=", repetition_penalty);
}

double Sampler::PolicyLogprob(std::span<const float> logits, int64_t valid, int32_t token) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < valid; ++j) m = std::max(m, static_cast<double>(logits[j]));
  double s = 0;
  for (int64_t j = 0; j < valid; ++j) s += std::exp(static_cast<double>(logits[j]) - m);
  return static_cast<double>(logits[token]) - m - std::log(s);
}

absl::StatusOr<TokenSample> Sampler::Sample(std::span<const float> logits, int64_t valid,
                                            const SamplingParams& params,
                                            std::span<const int32_t> history, double u) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (valid < 1 || valid > V) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: valid vocabulary ", valid, " outside [1, ", V, "]"));
  }
  z_.resize(static_cast<size_t>(valid));
  double zmax = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < valid; ++j) {
    const double x = logits[j];
    if (std::isnan(x)) {
      return absl::InvalidArgumentError(absl::StrCat("sampler: logit ", j, " is NaN"));
    }
    z_[j] = x;
    zmax = std::max(zmax, x);
  }
  if (!std::isfinite(zmax)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: no finite logit among the ", valid, " valid ids (max ", zmax, ")"));
  }
  // p_ holds exp(z - zmax): the policy's unnormalized probabilities (temperature 1).
  p_.resize(static_cast<size_t>(valid));
  const double sum = internal::ExpSum(z_.data(), 1.0, zmax, valid, p_.data());
  const double lse = zmax + std::log(sum);

  bool penalized = false;
  if (params.repetition_penalty != 1.0 && !history.empty()) {
    absl::flat_hash_set<int32_t> seen;
    for (int32_t id : history) {
      if (id < 0 || id >= valid || !seen.insert(id).second) continue;
      z_[id] = z_[id] > 0 ? z_[id] / params.repetition_penalty : z_[id] * params.repetition_penalty;
      penalized = true;
    }
  }

  TokenSample out;
  if (params.greedy()) {
    int64_t best = 0;
    for (int64_t j = 1; j < valid; ++j) {
      if (z_[j] > z_[best]) best = j;
    }
    out.token = static_cast<int32_t>(best);
    out.logprob = static_cast<double>(logits[best]) - lse;
    out.sampling_logprob = 0.0;
    return out;
  }

  // w = exp(z / t - smax), unnormalized sampling weights (max 1); psum their total. At
  // temperature 1 without a penalty they are the policy's, already in p_.
  const double inv_t = 1.0 / params.temperature;
  double smax = zmax, psum = sum;
  if (penalized || params.temperature != 1.0) {
    smax = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < valid; ++j) smax = std::max(smax, z_[j] * inv_t);
    psum = internal::ExpSum(z_.data(), inv_t, smax, valid, p_.data());
  }

  const bool filtered = (params.top_k > 0 && params.top_k < valid) || params.top_p < 1.0 ||
                        params.min_p > 0.0;
  int64_t chosen = -1;
  double kept_mass = 0;  // unnormalized
  if (!filtered) {
    kept_mass = psum;
    const double target = u * psum;
    double cum = 0;
    int64_t last_nonzero = 0;
    for (int64_t j = 0; j < valid; ++j) {
      if (p_[j] <= 0) continue;
      last_nonzero = j;
      cum += p_[j];
      if (cum > target) {
        chosen = j;
        break;
      }
    }
    // Rounding can leave the total a hair below the target; the last id with mass takes it.
    if (chosen < 0) chosen = last_nonzero;
  } else {
    order_.clear();
    // Ids with weight 0 (underflow or -inf logits) can never be drawn. The largest weight is
    // exp(0) = 1, so min_p compares weights with min_p directly.
    const double min_keep = params.min_p;
    for (int64_t j = 0; j < valid; ++j) {
      if (p_[j] > 0 && p_[j] >= min_keep) order_.push_back(static_cast<int32_t>(j));
    }
    auto more_probable = [this](int32_t a, int32_t b) {
      return p_[a] > p_[b] || (p_[a] == p_[b] && a < b);
    };
    size_t n = order_.size();
    if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n) {
      std::nth_element(order_.begin(), order_.begin() + params.top_k, order_.end(), more_probable);
      n = static_cast<size_t>(params.top_k);
      order_.resize(n);
    }
    std::sort(order_.begin(), order_.end(), more_probable);
    if (params.top_p < 1.0) {
      // Keep id i if the mass strictly before it is below top_p; at least one id survives.
      const double limit = params.top_p * psum;
      double before = 0;
      size_t keep = 0;
      while (keep < n && before < limit) {
        before += p_[order_[keep]];
        ++keep;
      }
      n = std::max<size_t>(keep, 1);
      order_.resize(n);
    }
    for (size_t i = 0; i < n; ++i) kept_mass += p_[order_[i]];
    const double target = u * kept_mass;
    double cum = 0;
    chosen = order_[n - 1];
    for (size_t i = 0; i < n; ++i) {
      cum += p_[order_[i]];
      if (cum > target) {
        chosen = order_[i];
        break;
      }
    }
  }
  out.token = static_cast<int32_t>(chosen);
  out.logprob = static_cast<double>(logits[chosen]) - lse;
  out.sampling_logprob = z_[chosen] * inv_t - smax - std::log(kept_mass);
  return out;
}

}  // namespace rlvr::rollout
