#include "verifiers/math/math_verifier.h"

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "verifiers/math/expr.h"

namespace rlvr::verifiers::math {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Canonical form of a plain decimal numeral ("$1,000", "025", "27.0", "-3.50"),
// written into `out`; false for anything else. Integer-valued numerals have no
// decimal point in the result.
bool CanonicalNumeral(std::string_view s, std::string *out, bool *has_fraction) {
  out->clear();
  *has_fraction = false;
  if (s.size() > 64) return false;
  if (s.substr(0, 2) == "\\$") s.remove_prefix(2);
  if (!s.empty() && s[0] == '$') s.remove_prefix(1);
  bool neg = false;
  if (!s.empty() && s[0] == '-') {
    neg = true;
    s.remove_prefix(1);
  }
  if (s.empty() || !IsDigit(s[0])) return false;
  std::string digits;
  size_t i = 0;
  size_t group = 0;
  bool grouped = false;
  while (i < s.size()) {
    if (IsDigit(s[i])) {
      digits.push_back(s[i]);
      ++group;
      ++i;
    } else if (s[i] == ',') {
      if ((grouped && group != 3) || group == 0 || group > 3) return false;
      size_t j = i + 1;
      if (s.substr(j, 2) == "\\!") j += 2;
      if (j + 3 > s.size() || !IsDigit(s[j]) || !IsDigit(s[j + 1]) || !IsDigit(s[j + 2])) {
        return false;
      }
      grouped = true;
      group = 0;
      i = j;
    } else {
      break;
    }
  }
  if (grouped && group != 3) return false;
  std::string frac;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && IsDigit(s[i])) frac.push_back(s[i++]);
  }
  if (i != s.size()) return false;
  size_t nz = digits.find_first_not_of('0');
  std::string_view int_part = nz == std::string::npos ? "0" : std::string_view(digits).substr(nz);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  bool zero = int_part == "0" && frac.empty();
  if (neg && !zero) out->push_back('-');
  out->append(int_part);
  if (!frac.empty()) {
    out->push_back('.');
    out->append(frac);
    *has_fraction = true;
  }
  return true;
}

// A lenient textual form for the last-resort string comparison: no spaces, no
// spacing or sizing commands, no math delimiters, \dfrac and \tfrac as \frac.
std::string NormalizeForStringMatch(std::string_view s) {
  static constexpr std::string_view kDrop[] = {"\\left", "\\right",        "\\!", "\\,",   "\\;",
                                               "\\:",    "\\displaystyle", "$",   "\\quad"};
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    bool dropped = false;
    for (std::string_view d : kDrop) {
      if (s.substr(i, d.size()) == d) {
        i += d.size();
        dropped = true;
        break;
      }
    }
    if (dropped) continue;
    if (s.substr(i, 6) == "\\dfrac" || s.substr(i, 6) == "\\tfrac") {
      out.append("\\frac");
      i += 6;
      continue;
    }
    char c = s[i++];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '~') continue;
    out.push_back(c);
  }
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

struct ScratchTrees {
  Tree gold;
  Tree pred;
};

ScratchTrees &Scratch() {
  thread_local ScratchTrees trees;
  return trees;
}

}  // namespace

std::string_view MathStatusName(MathStatus status) {
  switch (status) {
    case MathStatus::kCorrect:
      return "correct";
    case MathStatus::kWrong:
      return "wrong";
    case MathStatus::kNoAnswer:
      return "no_answer";
    case MathStatus::kUnparsed:
      return "unparsed";
  }
  return "unknown";
}

absl::Status ValidateOptions(const MathVerifierOptions &o) {
  if (o.limits.max_input_bytes < 1 || o.limits.max_input_bytes > (1 << 20)) {
    return absl::InvalidArgumentError("limits.max_input_bytes: must be in [1, 1048576]");
  }
  if (o.limits.max_depth < 1 || o.limits.max_depth > 1000) {
    return absl::InvalidArgumentError("limits.max_depth: must be in [1, 1000]");
  }
  if (o.limits.max_nodes < 1 || o.limits.max_nodes > (1 << 20)) {
    return absl::InvalidArgumentError("limits.max_nodes: must be in [1, 1048576]");
  }
  if (o.limits.max_digits < 1 || o.limits.max_digits > 500) {
    return absl::InvalidArgumentError("limits.max_digits: must be in [1, 500]");
  }
  if (!(o.compare.rel_tol >= 0 && o.compare.rel_tol < 1)) {
    return absl::InvalidArgumentError("compare.rel_tol: must be in [0, 1)");
  }
  if (o.compare.num_points < 1 || o.compare.num_points > 16) {
    return absl::InvalidArgumentError("compare.num_points: must be in [1, 16]");
  }
  if (o.compare.rounded_decimal_min_digits < 0) {
    return absl::InvalidArgumentError("compare.rounded_decimal_min_digits: must be >= 0");
  }
  if (o.extract.max_whole_answer_bytes < 0) {
    return absl::InvalidArgumentError("extract.max_whole_answer_bytes: must be >= 0");
  }
  return absl::OkStatus();
}

MathStatus CompareMathAnswers(std::string_view gold, std::string_view pred,
                              const MathVerifierOptions &options) {
  if (pred.empty()) return MathStatus::kNoAnswer;
  // Fast path for plain numerals (most GSM8K and AIME answers): no tree needed.
  {
    thread_local std::string a, b;
    bool fa, fb;
    if (CanonicalNumeral(gold, &a, &fa) && CanonicalNumeral(pred, &b, &fb)) {
      if (a == b) return MathStatus::kCorrect;
      // Rounded decimals and tolerances need the full comparison.
      if (!fa && !fb && options.compare.rel_tol == 0) return MathStatus::kWrong;
    }
  }
  ScratchTrees &t = Scratch();
  absl::Status gs = ParseMath(gold, options.limits, &t.gold);
  absl::Status ps = gs.ok() ? ParseMath(pred, options.limits, &t.pred) : absl::OkStatus();
  if (!gs.ok() || !ps.ok()) {
    return NormalizeForStringMatch(gold) == NormalizeForStringMatch(pred) ? MathStatus::kCorrect
                                                                          : MathStatus::kUnparsed;
  }
  switch (CompareAnswers(t.gold, t.pred, options.compare)) {
    case Comparison::kEqual:
      return MathStatus::kCorrect;
    case Comparison::kDifferent:
      return MathStatus::kWrong;
    case Comparison::kUndecidable:
      break;
  }
  return NormalizeForStringMatch(gold) == NormalizeForStringMatch(pred) ? MathStatus::kCorrect
                                                                        : MathStatus::kUnparsed;
}

MathVerdict VerifyMath(std::string_view completion, std::string_view gold,
                       const MathVerifierOptions &options) {
  MathVerdict v;
  v.reward = options.wrong_reward;
  Extracted e = ExtractAnswer(completion, options.extract);
  if (e.source == AnswerSource::kNone) {
    v.status = MathStatus::kNoAnswer;
    return v;
  }
  std::string_view gold_answer = ExtractGold(gold);
  MathStatus status = CompareMathAnswers(gold_answer, e.answer, options);
  // "The answer is 5, which is what we wanted": prose after the phrase; use its
  // last number.
  if (status == MathStatus::kUnparsed && e.source == AnswerSource::kPhrase &&
      options.extract.fallback_last_number) {
    std::string_view last = LastNumber(e.answer);
    if (!last.empty() && last != e.answer) {
      e.answer = last;
      status = CompareMathAnswers(gold_answer, e.answer, options);
    }
  }
  v.status = status;
  v.extracted.assign(e.answer);
  v.source = e.source;
  v.correct = status == MathStatus::kCorrect;
  v.reward = v.correct ? options.correct_reward : options.wrong_reward;
  return v;
}

}  // namespace rlvr::verifiers::math
