// Token sampling from one row of next-token logits.
//
// The pipeline for one row z[0, V) (entries at index >= valid are vocabulary padding and never
// chosen):
//   1. policy logprob   lp = log softmax(z)[token]            (temperature 1, no penalty: the
//                                                               "old policy" of the GRPO ratio)
//   2. repetition penalty (CTRL / Hugging Face): for every distinct id in `history`,
//      z_j = z_j > 0 ? z_j / r : z_j * r.                       (r = 1: off, the default)
//   3. temperature 0    greedy: the first index of the largest value; sampling logprob 0.
//      temperature t>0  s = z / t, p = softmax(s), then the filters, in this order:
//        top-k   keep the k most probable ids (ties broken by the smaller id)
//        top-p   keep the shortest most-probable-first prefix whose mass reaches top_p
//                (an id is kept if the mass strictly before it is < top_p)
//        min-p   keep ids with p >= min_p * max(p)
//      and draws from p restricted to the kept ids, renormalized, by inversion of `u`: the
//      kept ids are walked in a canonical order (most probable first, ties by id; plain id
//      order when no filter is active) and the first whose cumulative mass exceeds u * mass is
//      chosen. The sampling logprob is log(p[token] / kept mass).
// All arithmetic is in double, so the result depends only on the logits and `u`, never on the
// batch the row came from. Sample() is a pure function; Sampler holds scratch buffers and is
// not thread-safe (one per thread).
#ifndef RLVR_ROLLOUT_SAMPLER_H_
#define RLVR_ROLLOUT_SAMPLER_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rlvr::rollout {

struct SamplingParams {
  double temperature = 1.0;         // 0 = greedy; else > 0
  double top_p = 1.0;               // (0, 1]; 1 = off
  int64_t top_k = 0;                // >= 0; 0 = off
  double min_p = 0.0;               // [0, 1); 0 = off
  double repetition_penalty = 1.0;  // > 0; 1 = off. Applies to prompt and completion ids.

  // InvalidArgument naming the field (e.g. "top_p: 1.5 is outside (0, 1]").
  absl::Status Validate() const;
  bool greedy() const { return temperature == 0.0; }
  std::string DebugString() const;
};

struct TokenSample {
  int32_t token = -1;
  double logprob = 0;           // log p(token) under the policy at temperature 1
  double sampling_logprob = 0;  // log p(token) under the distribution actually sampled from
};

class Sampler {
 public:
  // logits [V] of which the first `valid` (1 <= valid <= V) are real; u in [0, 1). history:
  // ids seen so far (prompt and completion), read only when the repetition penalty is on.
  // InvalidArgument if valid is out of range or no logit below `valid` is finite (a NaN or an
  // all -inf row), naming the problem.
  absl::StatusOr<TokenSample> Sample(std::span<const float> logits, int64_t valid,
                                     const SamplingParams& params,
                                     std::span<const int32_t> history, double u);

  // log softmax(logits[:valid])[token] in double (step 1 alone), for scoring.
  static double PolicyLogprob(std::span<const float> logits, int64_t valid, int32_t token);

 private:
  std::vector<double> z_;
  std::vector<double> p_;
  std::vector<int32_t> order_;
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_SAMPLER_H_
