// Chat templates: a Jinja2 subset that renders a model's own `chat_template` the way
// `transformers`' apply_chat_template does, and the plain DeepSeek-R1-Zero prompt for base models.
//
// Why our own interpreter: no Debian package offers a C++ Jinja engine, and the subset the
// Qwen2.5, Qwen3, DeepSeek-R1 and Llama-3 templates need is small.
//
// The environment matches transformers': trim_blocks and lstrip_blocks on, the loopcontrols
// extension (break/continue), Python-like values (None/True/False, int, float, str, list, dict),
// `tojson` as json.dumps(ensure_ascii=False), and the globals raise_exception(message),
// namespace(...), range(...) and dict(...). `strftime_now` is deliberately not defined, so
// templates fall back to their fixed date (pass `date_string` to set one).
//
// Supported syntax: {{ }}, {% %}, {# #} with `-`/`+` whitespace control; if/elif/else, for (with
// tuple targets, `if` filter, else, loop.index/index0/revindex/revindex0/first/last/length/
// previtem/nextitem), set (name, ns.attr, block set), macro, break, continue,
// generation/endgeneration, raw; expressions with and/or/not, comparisons and chained
// comparisons, in/not in, + - * / // % ** ~, a if b else c, literals (str, int, float, list,
// tuple, dict), attribute and item access, slicing with steps, calls with keyword arguments,
// filters (trim, tojson, length/count, items, keys, values, string, lower, upper, capitalize,
// title, first, last, join, default/d, list, reverse, replace, int, float, abs, round, sum, min,
// max, sort, unique, map, select, reject, selectattr, rejectattr, safe, indent), tests (defined,
// undefined, none, string, number, integer, float, boolean, true, false, mapping, iterable,
// sequence, callable, even, odd, divisibleby, eq/equalto/==, ne/!=, lt/<, le/<=, gt/>, ge/>=,
// in, sameas, lower, upper) and str/dict methods (startswith, endswith, strip, lstrip,
// rstrip, split, rsplit, lower, upper, title, capitalize, replace, find, count, join,
// isdigit, isalpha, isspace, splitlines; items, keys, values, get).
// Known differences from Python: tuples compare equal to lists with the same items; str.format, the
// % string operator, include/import/extends/call blocks and recursive loops are not supported; HTML
// autoescaping does not exist (transformers turns it off too).
//
// Errors: a syntax error is InvalidArgument naming `name:line:column`; so is a runtime error
// (unknown filter, bad operand types, attribute of an undefined value, raise_exception). Limits
// (nesting depth 200, 20 million evaluation steps, 64 MiB of output) turn hostile templates into
// errors.
// Thread safety: a parsed ChatTemplate is immutable; Render may be called concurrently.
#ifndef RLVR_POLICY_TEXT_CHAT_TEMPLATE_H_
#define RLVR_POLICY_TEXT_CHAT_TEMPLATE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace rlvr::policy {

class ChatTemplate {
 public:
  // Parses template `source`; `name` prefixes error locations (e.g. "chat_template.jinja").
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Parse(
      std::string_view source, std::string_view name = "chat_template");
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&) = delete;
  ChatTemplate& operator=(const ChatTemplate&) = delete;

  // Renders with `variables` (a JSON object; key order is kept, as Python dicts keep it), e.g.
  // {"messages": [...], "add_generation_prompt": true, "bos_token": "<s>"}.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& variables) const;

  struct Impl;

 private:
  explicit ChatTemplate(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool"
  std::string content;
  // Qwen3's separate reasoning text; left out of the message when unset.
  std::optional<std::string> reasoning_content;
};

struct ChatRenderOptions {
  bool add_generation_prompt = true;
  // Qwen3's switch; left undefined in the template when unset.
  std::optional<bool> enable_thinking;
  std::string bos_token;
  std::string eos_token;
  // More variables (tools, date_string, ...), an object or null.
  nlohmann::ordered_json extra;
};

// Renders `messages` with `options` (the apply_chat_template(tokenize=False) equivalent).
absl::StatusOr<std::string> RenderChat(const ChatTemplate& chat_template,
                                       const std::vector<ChatMessage>& messages,
                                       const ChatRenderOptions& options);

// A model directory's chat template and its special token strings.
struct ModelChatTemplate {
  std::unique_ptr<ChatTemplate> chat_template;
  std::string bos_token;  // empty if tokenizer_config.json does not name one
  std::string eos_token;
};

// Loads `dir/chat_template.jinja` if present, otherwise `chat_template` from
// `dir/tokenizer_config.json` (a string, or a list of {name, template} where "default" is
// used); bos_token/eos_token come from tokenizer_config.json (strings or {"content": ...}).
// Errors: NotFound when neither file has a template; InvalidArgument naming the file and key.
absl::StatusOr<ModelChatTemplate> LoadModelChatTemplate(const std::string& dir);
// The same for commands where a template is optional: null when the model has none (NotFound
// above), other errors as above.
absl::StatusOr<std::shared_ptr<const ModelChatTemplate>> LoadModelChatTemplateIfAny(
    const std::string& dir);

// The DeepSeek-R1-Zero prompt for base models (DeepSeek-R1 paper, table 1) with `question`
// in place of "prompt".
std::string R1ZeroPrompt(std::string_view question);

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_TEXT_CHAT_TEMPLATE_H_
