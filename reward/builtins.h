// The built-in verifiers. Each factory validates its options (InvalidArgument naming
// `<verifier>.options.<key>`) and rejects unknown ones.
//
// format     R1's format: the completion is `<think>...</think>` followed by an answer, either
//            `<answer>...</answer>` (non-empty, nothing after it but whitespace) or text with a
//            `\boxed{...}`; one think block, checked with RE2. When the prompt already ends with
//            `<think>` (R1-Zero templates), the completion is read as if it started with it.
//            Options: reward (1), wrong_reward (0), answer (either | answer_tag | boxed).
// overlong   DAPO's soft overlong punishment on the completion's token count L:
//            0 for L <= max - buffer, then -(L - (max - buffer)) / buffer * penalty, reaching
//            -penalty at L = max (and staying there beyond). max is the sample's max_tokens.
//            Options: buffer_tokens (required > 0 unless given by reward.overlong_buffer_tokens),
//            penalty (1), max_tokens (0: the sample's).
// countdown  The Countdown numbers game (record fields `target`, `nums`): the expression in the
//            last <answer>...</answer> (else the last \boxed{}) must use + - * / and parentheses
//            only, every number of `nums` exactly once (as a multiset), and evaluate exactly
//            (rationals, GMP) to `target`; text from an `=` on is ignored ("3*4 = 12").
//            Options: reward (1), format_reward (0: given when an expression was found but is
//            wrong, TinyZero uses 0.1), target_key (target), nums_key (nums).
// math       verifiers/math's VerifyMath against the record's gold answer.
//            Options: answer_key (answer), reward (1), wrong_reward (0).
// code       verifiers/code's VerifyRecord in the sandbox. Tests come from the record: `tests`
//            (the code verifier's format), or HumanEval's `test` + `entry_point`, or MBPP's
//            `test_list` (+ `test_setup_code`). The sandbox starts at the first Score().
//            prefix_field puts a record field before the completion (HumanEval's `prompt` when
//            the model continues the function; a fenced block in the completion still wins).
//            Options: tests_key (tests), prefix_field (""), language (python),
//            all_or_nothing (false), concurrency (2), wall_seconds (10, per test case),
//            memory_mb (512),
//            allow_missing (comma-separated sandbox primitives to run without).
//
// Every verifier is thread-safe.
#ifndef RLVR_REWARD_BUILTINS_H_
#define RLVR_REWARD_BUILTINS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "reward/verifier.h"

namespace rlvr::reward {

absl::StatusOr<std::unique_ptr<Verifier>> MakeFormatVerifier(const VerifierOptions& options);
absl::StatusOr<std::unique_ptr<Verifier>> MakeOverlongVerifier(const VerifierOptions& options);
absl::StatusOr<std::unique_ptr<Verifier>> MakeCountdownVerifier(const VerifierOptions& options);
absl::StatusOr<std::unique_ptr<Verifier>> MakeMathVerifier(const VerifierOptions& options);
absl::StatusOr<std::unique_ptr<Verifier>> MakeCodeVerifier(const VerifierOptions& options);

// DAPO's soft overlong reward for a completion of `length` tokens (see above).
double OverlongReward(int64_t length, int64_t max_tokens, int64_t buffer_tokens, double penalty);

enum class CountdownOutcome {
  kCorrect,
  kWrongValue,    // valid expression over the right numbers, other value (or division by zero)
  kWrongNumbers,  // the numbers used are not exactly `nums`
  kInvalid,       // not an expression of + - * / and parentheses over integers
};
const char* CountdownOutcomeName(CountdownOutcome outcome);

// Checks one Countdown expression. Bounded: at most 512 bytes and 64 nesting levels.
CountdownOutcome CheckCountdown(absl::string_view expression, const std::vector<int64_t>& nums,
                                int64_t target);

// The text of the last <answer>...</answer> in `completion`, else of the last \boxed{...}
// (balanced braces); empty when neither is there.
std::string ExtractTaggedAnswer(absl::string_view completion);

}  // namespace rlvr::reward

#endif  // RLVR_REWARD_BUILTINS_H_
