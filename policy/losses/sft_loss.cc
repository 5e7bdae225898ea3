#include "policy/losses/sft_loss.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rlvr::policy::losses {

absl::StatusOr<SupervisedLossOutput> SftLoss(absl::Span<const float> logp,
                                             absl::Span<const uint8_t> mask, int64_t normalizer) {
  if (logp.size() != mask.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sft loss: logp has ", logp.size(), " entries, mask ", mask.size()));
  }
  SupervisedLossOutput out;
  for (uint8_t m : mask) out.num_tokens += m ? 1 : 0;
  const double norm =
      static_cast<double>(normalizer > 0 ? normalizer : std::max<int64_t>(out.num_tokens, 1));
  out.grad.assign(logp.size(), 0.0f);
  for (size_t k = 0; k < logp.size(); ++k) {
    if (!mask[k]) continue;
    out.loss -= logp[k] / norm;
    out.grad[k] = static_cast<float>(-1.0 / norm);
  }
  return out;
}

absl::StatusOr<SupervisedLossOutput> KdLoss(absl::Span<const float> student_logits,
                                            absl::Span<const float> teacher_logits,
                                            absl::Span<const uint8_t> mask, int64_t vocab,
                                            double temperature) {
  if (vocab <= 0 || !(temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kd loss: need vocab > 0 and temperature > 0, "
                     "got ",
                     vocab, " and ", temperature));
  }
  const size_t rows = mask.size();
  if (student_logits.size() != rows * vocab || teacher_logits.size() != rows * vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("kd loss: logits have ", student_logits.size(), " (student) and ",
                     teacher_logits.size(), " (teacher) entries, expected ", rows, " x ", vocab));
  }
  SupervisedLossOutput out;
  for (uint8_t m : mask) out.num_tokens += m ? 1 : 0;
  out.grad.assign(student_logits.size(), 0.0f);
  const double r = static_cast<double>(std::max<int64_t>(out.num_tokens, 1));
  std::vector<double> p(vocab), logq(vocab);
  for (size_t row = 0; row < rows; ++row) {
    if (!mask[row]) continue;
    const float* s = student_logits.data() + row * vocab;
    const float* t = teacher_logits.data() + row * vocab;
    double smax = s[0], tmax = t[0];
    for (int64_t v = 1; v < vocab; ++v) {
      smax = std::max<double>(smax, s[v]);
      tmax = std::max<double>(tmax, t[v]);
    }
    double ssum = 0, tsum = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      ssum += std::exp((s[v] - smax) / temperature);
      tsum += std::exp((t[v] - tmax) / temperature);
    }
    const double log_ssum = std::log(ssum), log_tsum = std::log(tsum);
    double kl = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      const double logp = (t[v] - tmax) / temperature - log_tsum;
      logq[v] = (s[v] - smax) / temperature - log_ssum;
      p[v] = std::exp(logp);
      if (p[v] > 0) kl += p[v] * (logp - logq[v]);
    }
    out.loss += temperature * temperature * kl / r;
    for (int64_t v = 0; v < vocab; ++v) {
      out.grad[row * vocab + v] = static_cast<float>(temperature * (std::exp(logq[v]) - p[v]) / r);
    }
  }
  return out;
}

}  // namespace rlvr::policy::losses
