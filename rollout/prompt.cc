#include "rollout/prompt.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "policy/text/unicode.h"

namespace rlvr::rollout {

absl::StatusOr<PromptTemplate> ParsePromptTemplate(const std::string& name) {
  if (name == "raw") return PromptTemplate::kRaw;
  if (name == "r1-zero") return PromptTemplate::kR1Zero;
  if (name == "chat") return PromptTemplate::kChat;
  return absl::InvalidArgumentError(
      absl::StrCat("template: \"", name, "\" is not one of raw, r1-zero, chat"));
}

PromptEncoder::PromptEncoder(const policy::Tokenizer* tokenizer,
                             std::shared_ptr<const policy::ModelChatTemplate> chat,
                             PromptTemplate text_mode, std::optional<bool> enable_thinking)
    : tokenizer_(tokenizer),
      chat_(std::move(chat)),
      text_mode_(text_mode),
      enable_thinking_(enable_thinking) {}

absl::StatusOr<std::vector<int32_t>> PromptEncoder::Encode(const nlohmann::json& prompt,
                                                           const std::string& where,
                                                           std::string* rendered) const {
  std::vector<policy::ChatMessage> messages;
  if (prompt.is_string()) {
    const std::string text = prompt.get<std::string>();
    if (text_mode_ != PromptTemplate::kChat) {
      std::string full = text_mode_ == PromptTemplate::kR1Zero ? policy::R1ZeroPrompt(text) : text;
      if (rendered != nullptr) *rendered = full;
      return tokenizer_->Encode(full, /*add_special_tokens=*/true);
    }
    messages.push_back({.role = "user", .content = text, .reasoning_content = std::nullopt});
  } else if (prompt.is_array()) {
    for (size_t i = 0; i < prompt.size(); ++i) {
      const nlohmann::json& m = prompt[i];
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
          !m.contains("content") || !m["content"].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "[", i, "]: expected a message {\"role\": string, \"content\": string}"));
      }
      messages.push_back({.role = m["role"].get<std::string>(),
                          .content = m["content"].get<std::string>(),
                          .reasoning_content = std::nullopt});
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": expected a string or a list of chat messages, got ", prompt.dump()));
  }
  if (chat_ == nullptr || chat_->chat_template == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": chat messages need the model's chat template, and the model has "
                            "none (use text prompts with --template raw or r1-zero)"));
  }
  policy::ChatRenderOptions opts;
  opts.add_generation_prompt = true;
  opts.enable_thinking = enable_thinking_;
  opts.bos_token = chat_->bos_token;
  opts.eos_token = chat_->eos_token;
  RLVR_ASSIGN_OR_RETURN(std::string text,
                        policy::RenderChat(*chat_->chat_template, messages, opts), where);
  std::vector<int32_t> ids = tokenizer_->Encode(text, /*add_special_tokens=*/false);
  if (rendered != nullptr) *rendered = std::move(text);
  return ids;
}

std::string PromptEncoder::CompletionText(const Completion& c) const {
  if (c.finish_reason == FinishReason::kStop && c.text_end >= 0) {
    std::string bytes;
    for (int32_t id : c.tokens) {
      bytes.append(tokenizer_->TokenBytes(id));
      if (static_cast<int64_t>(bytes.size()) >= c.text_end) break;
    }
    bytes.resize(std::min<size_t>(bytes.size(), static_cast<size_t>(c.text_end)));
    return policy::ToValidUtf8(bytes);
  }
  return tokenizer_->Decode(c.tokens, /*skip_special_tokens=*/true);
}

}  // namespace rlvr::rollout
