// Stop conditions of one completion: end-of-sequence ids, stop strings, a token budget.
//
// StopChecker is fed every generated token in order and says when the completion ends:
//   - an id in `eos_ids`: finish reason kEos; the EOS token is part of `tokens` (it was sampled
//     and its logprob is recorded) and contributes no text;
//   - a stop string: matched on the raw bytes of the generated tokens (TokenBytes, what the
//     byte-level decoder joins), across token boundaries; finish reason kStop; the token that
//     completed the match is the last one kept, and the completion's text ends right after the
//     stop string (`text_end()` bytes of the joined token bytes);
//   - `max_new_tokens` tokens generated: kLength.
// EOS is checked first, then stop strings, then the budget. Thread safety: none (one per
// sequence).
#ifndef RLVR_ROLLOUT_STOP_H_
#define RLVR_ROLLOUT_STOP_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace rlvr::rollout {

enum class FinishReason { kNone, kEos, kStop, kLength };
// "eos", "stop", "length" ("" for kNone).
const char* FinishReasonName(FinishReason reason);

struct StopConditions {
  std::vector<int32_t> eos_ids;
  std::vector<std::string> stop_strings;  // non-empty strings
  int64_t max_new_tokens = 256;           // >= 1

  // InvalidArgument naming the field (an empty stop string, max_new_tokens < 1).
  absl::Status Validate() const;
};

// Raw bytes of a token id (Tokenizer::TokenBytes); may be empty for special ids.
using TokenBytesFn = std::function<std::string_view(int32_t)>;

class StopChecker {
 public:
  // `conditions` must outlive the checker. token_bytes may be empty when there are no stop
  // strings.
  StopChecker(const StopConditions* conditions, const TokenBytesFn* token_bytes);

  // Records `token` (the n-th generated, n = count so far) and returns the finish reason after
  // it, kNone if generation goes on.
  FinishReason Add(int32_t token);

  int64_t generated() const { return generated_; }
  FinishReason reason() const { return reason_; }
  // With kStop: the length of the completion text in bytes of the joined token bytes, cut
  // right after the stop string; else -1 (the whole decoded text).
  int64_t text_end() const { return text_end_; }
  // Index into stop_strings of the matched one, or -1.
  int64_t matched_stop() const { return matched_; }

 private:
  const StopConditions* cond_;
  const TokenBytesFn* token_bytes_;
  size_t max_stop_len_ = 0;
  int64_t generated_ = 0;
  FinishReason reason_ = FinishReason::kNone;
  std::string bytes_;  // joined token bytes (kept whole only when there are stop strings)
  int64_t text_end_ = -1;
  int64_t matched_ = -1;
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_STOP_H_
