// Turning a dataset prompt into the token ids the engine samples from, and completion ids back
// into text.
//
// A prompt is either text or chat messages ([{"role": ..., "content": ...}, ...]):
//   - messages are rendered with the model's chat template (policy/text/chat_template.h) with
//     add_generation_prompt, then encoded without adding special tokens (the template writes
//     them), as transformers' apply_chat_template(tokenize=True) does;
//   - text is used as is (PromptTemplate::kRaw), wrapped in the DeepSeek-R1-Zero template
//     (kR1Zero, for base models), or sent as one user message through the chat template
//     (kChat); raw and R1-Zero text is encoded WITH the tokenizer's special tokens (e.g.
//     Llama-3's BOS), as `rlvr logprobs` encodes prompts, so re-scoring gives the same ids.
//
// CompletionText() decodes generated ids: special tokens (EOS) are dropped, and with finish
// reason "stop" the text ends right after the stop string.
//
// Thread safety: a PromptEncoder is immutable after Create; Encode may run concurrently.
#ifndef RLVR_ROLLOUT_PROMPT_H_
#define RLVR_ROLLOUT_PROMPT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "policy/text/chat_template.h"
#include "policy/text/tokenizer.h"
#include "rollout/engine.h"

namespace rlvr::rollout {

enum class PromptTemplate { kRaw, kR1Zero, kChat };

// "raw", "r1-zero", "chat" -> the enum; InvalidArgument naming the allowed values otherwise.
absl::StatusOr<PromptTemplate> ParsePromptTemplate(const std::string& name);

class PromptEncoder {
 public:
  // tokenizer: not owned, must outlive the encoder. chat: the model's chat template, or null
  // (then chat messages and kChat are InvalidArgument errors at Encode).
  PromptEncoder(const policy::Tokenizer* tokenizer,
                std::shared_ptr<const policy::ModelChatTemplate> chat, PromptTemplate text_mode,
                std::optional<bool> enable_thinking = std::nullopt);

  // Encodes one prompt (a JSON string or a list of messages). `where` prefixes errors (e.g.
  // "in.jsonl:3: prompt"). rendered, if not null, receives the text that was encoded.
  absl::StatusOr<std::vector<int32_t>> Encode(const nlohmann::json& prompt,
                                              const std::string& where,
                                              std::string* rendered = nullptr) const;

  // The text of a completion (see the file comment).
  std::string CompletionText(const Completion& c) const;

 private:
  const policy::Tokenizer* tokenizer_;
  std::shared_ptr<const policy::ModelChatTemplate> chat_;
  PromptTemplate text_mode_;
  std::optional<bool> enable_thinking_;
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_PROMPT_H_
