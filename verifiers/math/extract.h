// Finds the final answer in a model completion (a chain of thought).
//
// In order of preference: the last \boxed{...} / \fbox{...} (nested braces);
// the last <answer>...</answer> block (searched again for a box or an answer
// phrase inside); GSM8K's
// "#### N"; the last answer phrase ("the answer is", "final answer:", "答案是",
// "la réponse est", "la respuesta es", "die Antwort ist", "ответ:", ...); a
// completion that is itself only an answer (short, one line, no prose) taken
// whole; and, if enabled, the last number.
//
// The result is a view into `completion` with math delimiters ($...$, \(...\),
// \[...\]), markdown emphasis and trailing punctuation removed. Scans are
// linear in the completion and capped by ExtractOptions::max_completion_bytes
// (only the tail is searched past it). Stateless and thread-safe.
#ifndef RLVR_VERIFIERS_MATH_EXTRACT_H_
#define RLVR_VERIFIERS_MATH_EXTRACT_H_

#include <cstdint>
#include <string_view>

namespace rlvr::verifiers::math {

enum class AnswerSource : uint8_t {
  kNone,
  kBoxed,
  kAnswerTag,
  kHashes,
  kPhrase,
  kWhole,
  kLastNumber,
};

std::string_view AnswerSourceName(AnswerSource source);

struct ExtractOptions {
  // Fall back to the last number in the completion when nothing else marks an
  // answer.
  bool fallback_last_number = true;
  // Take a short completion without prose as the answer itself.
  bool take_whole_answer = true;
  // Only the last this-many bytes of a longer completion are searched.
  int32_t max_completion_bytes = 1 << 16;
  // Whole-completion answers longer than this are not taken whole.
  int32_t max_whole_answer_bytes = 256;
};

struct Extracted {
  std::string_view answer;  // empty when source == kNone
  AnswerSource source = AnswerSource::kNone;
};

Extracted ExtractAnswer(std::string_view completion, const ExtractOptions &options);

// The last number in `text` ("-1,234.5", "3/4"), or an empty view.
std::string_view LastNumber(std::string_view text);

// Gold answers: the content of a \boxed{} if there is one, the text after
// "####" if there is one, else the whole string; math delimiters and
// surrounding space removed.
std::string_view ExtractGold(std::string_view gold);

// Removes surrounding whitespace, $...$ / \(...\) / \[...\] delimiters,
// markdown ** and trailing punctuation (. , ;).
std::string_view TrimAnswer(std::string_view s);

}  // namespace rlvr::verifiers::math

#endif  // RLVR_VERIFIERS_MATH_EXTRACT_H_
