#include "rollout/generation.h"

#include <string>

namespace rlvr::rollout::internal {

absl::StatusOr<int64_t> CheckRequest(int64_t index, const GenerationRequest& r, int64_t ctx,
                                     int64_t vocab, bool have_token_bytes,
                                     bool clip_to_context) {
  const std::string where = absl::StrCat("request ", index);
  const int64_t P = static_cast<int64_t>(r.prompt.size());
  if (P == 0) return absl::InvalidArgumentError(absl::StrCat(where, ": prompt: empty prompt"));
  if (P >= ctx) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": prompt: ", P,
                                                   " tokens leave no room to generate in a "
                                                   "context of ",
                                                   ctx, " positions"));
  }
  for (int64_t i = 0; i < P; ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": prompt[", i, "]: token id ", r.prompt[i], " outside [0, ", vocab, ")"));
    }
  }
  if (r.num_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": n: ", r.num_samples, " samples, must be >= 1"));
  }
  RLVR_RETURN_IF_ERROR(r.sampling.Validate(), where);
  RLVR_RETURN_IF_ERROR(r.stop.Validate(), where);
  if (!r.stop.stop_strings.empty() && !have_token_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": stop: stop strings need a tokenizer (token bytes)"));
  }
  int64_t max_new = r.stop.max_new_tokens;
  if (P + max_new > ctx) {
    if (!clip_to_context) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": max_new_tokens: ", max_new, " past the context (prompt ", P,
                       " + max_new_tokens > ", ctx, ")"));
    }
    max_new = ctx - P;
  }
  return max_new;
}

absl::Status CheckKvNeed(int64_t index, int64_t need_blocks, int64_t block_size,
                         int64_t pool_blocks) {
  if (need_blocks <= pool_blocks) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "request ", index, ": one sample needs ", need_blocks * block_size,
      " KV positions (prompt + max_new_tokens, in blocks of ", block_size,
      "), more than max_tokens_in_flight = ", pool_blocks * block_size));
}

bool SampleState::Record(const TokenSample& s) {
  out.tokens.push_back(s.token);
  out.logprobs.push_back(static_cast<float>(s.logprob));
  out.sampling_logprobs.push_back(static_cast<float>(s.sampling_logprob));
  // A repetition penalty starts the history with the (never empty) prompt.
  if (!history.empty()) history.push_back(s.token);
  const FinishReason fr = stop->Add(s.token);
  if (fr == FinishReason::kNone) {
    pending = s.token;
    return false;
  }
  out.finish_reason = fr;
  out.text_end = stop->text_end();
  return true;
}

}  // namespace rlvr::rollout::internal
