// The math verifier: extracts the final answer from a completion and decides
// whether it equals the gold answer.
//
//   MathVerdict v = VerifyMath(completion, "\\frac{1}{2}");
//   if (v.correct) ...   // v.status is kCorrect, kWrong, kNoAnswer or
//   kUnparsed
//
// Extraction: extract.h. Parsing: parser.h. Equivalence: equivalence.h. Every
// step is bounded (input bytes, parse depth and nodes, digits, exact-power
// sizes, evaluation visits), so no input takes more than a few milliseconds or
// unbounded memory; inputs past a bound give kUnparsed.
//
// Thread-safe: VerifyMath may be called from many threads at once; each thread
// reuses its own scratch trees, so a call allocates little beyond the returned
// string.
#ifndef RLVR_VERIFIERS_MATH_MATH_VERIFIER_H_
#define RLVR_VERIFIERS_MATH_MATH_VERIFIER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "verifiers/math/equivalence.h"
#include "verifiers/math/extract.h"
#include "verifiers/math/parser.h"

namespace rlvr::verifiers::math {

enum class MathStatus : uint8_t {
  kCorrect,
  kWrong,
  kNoAnswer,  // no answer could be found in the completion
  kUnparsed,  // an answer was found but could not be parsed or compared within
              // the bounds
};

// "correct", "wrong", "no_answer", "unparsed".
std::string_view MathStatusName(MathStatus status);

struct MathVerifierOptions {
  ExtractOptions extract;
  ParseLimits limits;
  CompareOptions compare;
  float correct_reward = 1.0f;
  float wrong_reward = 0.0f;  // also given for kNoAnswer and kUnparsed
};

// InvalidArgument naming the field if an option is out of range.
absl::Status ValidateOptions(const MathVerifierOptions &options);

struct MathVerdict {
  MathStatus status = MathStatus::kNoAnswer;
  bool correct = false;
  float reward = 0.0f;
  std::string extracted;  // the answer taken from the completion
  AnswerSource source = AnswerSource::kNone;
};

// Scores `completion` against `gold` (a bare answer, or text with \boxed{} or
// "#### N").
MathVerdict VerifyMath(std::string_view completion, std::string_view gold,
                       const MathVerifierOptions &options = {});

// Compares two bare answers (no extraction from the prediction). Never returns
// kNoAnswer unless `pred` is empty.
MathStatus CompareMathAnswers(std::string_view gold, std::string_view pred,
                              const MathVerifierOptions &options = {});

}  // namespace rlvr::verifiers::math

#endif  // RLVR_VERIFIERS_MATH_MATH_VERIFIER_H_
