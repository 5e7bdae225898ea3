#include "rollout/stop.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace rlvr::rollout {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kNone:
      break;
  }
  return "";
}

absl::Status StopConditions::Validate() const {
  if (max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens: ", max_new_tokens, " must be >= 1"));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    if (stop_strings[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "]: empty stop string"));
    }
  }
  return absl::OkStatus();
}

StopChecker::StopChecker(const StopConditions* conditions, const TokenBytesFn* token_bytes)
    : cond_(conditions), token_bytes_(token_bytes) {
  for (const std::string& s : cond_->stop_strings) {
    max_stop_len_ = std::max(max_stop_len_, s.size());
  }
}

FinishReason StopChecker::Add(int32_t token) {
  if (reason_ != FinishReason::kNone) return reason_;
  ++generated_;
  if (std::find(cond_->eos_ids.begin(), cond_->eos_ids.end(), token) != cond_->eos_ids.end()) {
    reason_ = FinishReason::kEos;
    return reason_;
  }
  if (max_stop_len_ > 0 && token_bytes_ != nullptr && *token_bytes_) {
    const size_t before = bytes_.size();
    bytes_.append((*token_bytes_)(token));
    // Only a match that ends inside the new bytes is new: start the search early enough to
    // catch one that began in earlier tokens.
    const size_t from = before >= max_stop_len_ - 1 ? before - (max_stop_len_ - 1) : 0;
    size_t best_end = std::string::npos;
    for (size_t i = 0; i < cond_->stop_strings.size(); ++i) {
      const std::string& stop = cond_->stop_strings[i];
      const size_t at = bytes_.find(stop, from);
      if (at != std::string::npos &&
          (best_end == std::string::npos || at + stop.size() < best_end)) {
        best_end = at + stop.size();
        matched_ = static_cast<int64_t>(i);
      }
    }
    if (best_end != std::string::npos) {
      text_end_ = static_cast<int64_t>(best_end);
      reason_ = FinishReason::kStop;
      return reason_;
    }
  }
  if (generated_ >= cond_->max_new_tokens) reason_ = FinishReason::kLength;
  return reason_;
}

}  // namespace rlvr::rollout
