// format, overlong and countdown; the math and code adapters are in adapters.cc.
#include "reward/builtins.h"

#include <gmpxx.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "re2/re2.h"

namespace rlvr::reward {
namespace {

// ---------------------------------------------------------------------------------------------
// format

enum class AnswerForm { kEither, kAnswerTag, kBoxed };

class FormatVerifier : public Verifier {
 public:
  FormatVerifier(double reward, double wrong_reward, AnswerForm form)
      : reward_(reward),
        wrong_reward_(wrong_reward),
        form_(form),
        think_("(?s)\\s*<think>(.*?)</think>(.*)"),
        answer_tag_("(?s)\\s*<answer>(.*?)</answer>\\s*"),
        boxed_("\\\\boxed\\s*\\{") {}

  std::string name() const override { return "format"; }

  absl::StatusOr<VerdictResult> Score(const Sample& sample) const override {
    VerdictResult out;
    const bool ok = Matches(sample);
    out.reward = ok ? reward_ : wrong_reward_;
    out.detail = ok ? "formatted" : "unformatted";
    return out;
  }

 private:
  bool Matches(const Sample& sample) const {
    std::string text;
    absl::string_view completion = sample.completion;
    // R1-Zero templates end the prompt with "<think>": the completion continues inside it.
    if (!absl::StartsWith(absl::StripLeadingAsciiWhitespace(completion), "<think>") &&
        absl::EndsWith(absl::StripTrailingAsciiWhitespace(sample.prompt), "<think>")) {
      text = absl::StrCat("<think>", completion);
    } else {
      text = std::string(completion);
    }
    std::string think, rest;
    if (!RE2::FullMatch(text, think_, &think, &rest)) return false;
    if (absl::StrContains(think, "<think>") || absl::StrContains(rest, "<think>") ||
        absl::StrContains(rest, "</think>")) {
      return false;
    }
    if (form_ != AnswerForm::kBoxed) {
      std::string answer;
      if (RE2::FullMatch(rest, answer_tag_, &answer) &&
          !absl::StripAsciiWhitespace(answer).empty() && !absl::StrContains(answer, "<answer>")) {
        return true;
      }
    }
    if (form_ != AnswerForm::kAnswerTag) {
      if (RE2::PartialMatch(rest, boxed_) && !absl::StrContains(rest, "<answer>")) return true;
    }
    return false;
  }

  double reward_, wrong_reward_;
  AnswerForm form_;
  RE2 think_, answer_tag_, boxed_;
};

// ---------------------------------------------------------------------------------------------
// overlong

class OverlongVerifier : public Verifier {
 public:
  OverlongVerifier(int64_t buffer, double penalty, int64_t max_tokens)
      : buffer_(buffer), penalty_(penalty), max_tokens_(max_tokens) {}
  std::string name() const override { return "overlong"; }
  absl::StatusOr<VerdictResult> Score(const Sample& sample) const override {
    const int64_t max_tokens = max_tokens_ > 0 ? max_tokens_ : sample.max_tokens;
    if (max_tokens <= 0) {
      return absl::FailedPreconditionError(
          "overlong: the sample has no max_tokens and options.max_tokens is not set");
    }
    VerdictResult out;
    out.reward = OverlongReward(sample.completion_tokens, max_tokens, buffer_, penalty_);
    out.detail = out.reward < 0 ? "overlong" : "ok";
    return out;
  }

 private:
  int64_t buffer_;
  double penalty_;
  int64_t max_tokens_;
};

// ---------------------------------------------------------------------------------------------
// countdown

// Recursive descent over + - * / ( ) and non-negative integers, exact in mpq_class.
class CountdownParser {
 public:
  explicit CountdownParser(absl::string_view s) : s_(s) {}

  bool Parse(mpq_class* value, std::vector<int64_t>* numbers, bool* div_by_zero) {
    numbers_ = numbers;
    div_by_zero_ = div_by_zero;
    if (!Expr(value, 0)) return false;
    SkipSpace();
    return pos_ == s_.size();
  }

 private:
  static constexpr int kMaxDepth = 64;

  void SkipSpace() {
    while (pos_ < s_.size() && absl::ascii_isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool Expr(mpq_class* v, int depth) {
    if (!Term(v, depth)) return false;
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || (s_[pos_] != '+' && s_[pos_] != '-')) return true;
      const char op = s_[pos_++];
      mpq_class rhs;
      if (!Term(&rhs, depth)) return false;
      if (op == '+') {
        *v += rhs;
      } else {
        *v -= rhs;
      }
    }
  }
  bool Term(mpq_class* v, int depth) {
    if (!Factor(v, depth)) return false;
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || (s_[pos_] != '*' && s_[pos_] != '/')) return true;
      const char op = s_[pos_++];
      mpq_class rhs;
      if (!Factor(&rhs, depth)) return false;
      if (op == '*') {
        *v *= rhs;
      } else if (rhs == 0) {
        *div_by_zero_ = true;  // keep parsing so the numbers are still checked
      } else {
        *v /= rhs;
      }
    }
  }
  bool Factor(mpq_class* v, int depth) {
    SkipSpace();
    if (pos_ >= s_.size() || depth > kMaxDepth) return false;
    if (s_[pos_] == '(') {
      ++pos_;
      if (!Expr(v, depth + 1)) return false;
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ')') return false;
      ++pos_;
      return true;
    }
    const size_t start = pos_;
    while (pos_ < s_.size() && absl::ascii_isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    if (pos_ == start || pos_ - start > 9) return false;
    const int64_t n = std::stoll(std::string(s_.substr(start, pos_ - start)));
    numbers_->push_back(n);
    *v = mpq_class(static_cast<long>(n));
    return true;
  }

  absl::string_view s_;
  size_t pos_ = 0;
  std::vector<int64_t>* numbers_ = nullptr;
  bool* div_by_zero_ = nullptr;
};

absl::StatusOr<std::vector<int64_t>> RecordInts(const nlohmann::json* record,
                                                const std::string& key) {
  if (record == nullptr || !record->is_object() || !record->contains(key)) {
    return absl::InvalidArgumentError(absl::StrCat("missing field '", key, "'"));
  }
  const nlohmann::json& v = (*record)[key];
  if (!v.is_array() || v.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", key, "' must be a non-empty array of integers"));
  }
  std::vector<int64_t> out;
  for (const auto& x : v) {
    if (!x.is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("field '", key, "' must be a non-empty array of integers"));
    }
    out.push_back(x.get<int64_t>());
  }
  return out;
}

absl::StatusOr<int64_t> RecordInt(const nlohmann::json* record, const std::string& key) {
  if (record == nullptr || !record->is_object() || !record->contains(key)) {
    return absl::InvalidArgumentError(absl::StrCat("missing field '", key, "'"));
  }
  const nlohmann::json& v = (*record)[key];
  if (!v.is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat("field '", key, "' must be an integer"));
  }
  return v.get<int64_t>();
}

class CountdownVerifier : public Verifier {
 public:
  CountdownVerifier(double reward, double format_reward, std::string target_key,
                    std::string nums_key)
      : reward_(reward),
        format_reward_(format_reward),
        target_key_(std::move(target_key)),
        nums_key_(std::move(nums_key)) {}
  std::string name() const override { return "countdown"; }

  absl::Status CheckRecord(const nlohmann::json& record) const override {
    RLVR_RETURN_IF_ERROR(RecordInt(&record, target_key_).status());
    RLVR_RETURN_IF_ERROR(RecordInts(&record, nums_key_).status());
    return absl::OkStatus();
  }

  absl::StatusOr<VerdictResult> Score(const Sample& sample) const override {
    RLVR_ASSIGN_OR_RETURN(const int64_t target, RecordInt(sample.record.get(), target_key_));
    RLVR_ASSIGN_OR_RETURN(std::vector<int64_t> nums, RecordInts(sample.record.get(), nums_key_));
    VerdictResult out;
    const std::string expr = ExtractTaggedAnswer(sample.completion);
    if (expr.empty()) {
      out.correct = false;
      out.detail = "no_answer";
      return out;
    }
    const CountdownOutcome outcome = CheckCountdown(expr, nums, target);
    out.correct = outcome == CountdownOutcome::kCorrect;
    out.reward = *out.correct ? reward_ : format_reward_;
    out.detail = CountdownOutcomeName(outcome);
    return out;
  }

 private:
  double reward_, format_reward_;
  std::string target_key_, nums_key_;
};

}  // namespace

double OverlongReward(int64_t length, int64_t max_tokens, int64_t buffer_tokens, double penalty) {
  if (buffer_tokens <= 0) return 0.0;
  const int64_t expected = max_tokens - buffer_tokens;
  const int64_t exceed = std::min(length, max_tokens) - expected;
  if (exceed <= 0) return 0.0;
  return -static_cast<double>(exceed) / static_cast<double>(buffer_tokens) * penalty;
}

const char* CountdownOutcomeName(CountdownOutcome outcome) {
  switch (outcome) {
    case CountdownOutcome::kCorrect:
      return "correct";
    case CountdownOutcome::kWrongValue:
      return "wrong_value";
    case CountdownOutcome::kWrongNumbers:
      return "wrong_numbers";
    case CountdownOutcome::kInvalid:
      return "invalid";
  }
  return "invalid";
}

CountdownOutcome CheckCountdown(absl::string_view expression, const std::vector<int64_t>& nums,
                                int64_t target) {
  if (expression.size() > 512) return CountdownOutcome::kInvalid;
  // "expr = value": only the left side is the answer.
  std::string expr(expression.substr(0, expression.find('=')));
  expr = absl::StrReplaceAll(expr, {{"\\times", "*"},
                                    {"\\cdot", "*"},
                                    {"\\div", "/"},
                                    {"\xC3\x97", "*"},
                                    {"\xC3\xB7", "/"},
                                    {"\\left", ""},
                                    {"\\right", ""},
                                    {"$", ""}});
  mpq_class value;
  std::vector<int64_t> used;
  bool div_by_zero = false;
  CountdownParser parser(expr);
  if (!parser.Parse(&value, &used, &div_by_zero)) return CountdownOutcome::kInvalid;
  std::vector<int64_t> want = nums;
  std::sort(used.begin(), used.end());
  std::sort(want.begin(), want.end());
  if (used != want) return CountdownOutcome::kWrongNumbers;
  if (div_by_zero || value != mpq_class(static_cast<long>(target))) {
    return CountdownOutcome::kWrongValue;
  }
  return CountdownOutcome::kCorrect;
}

std::string ExtractTaggedAnswer(absl::string_view completion) {
  const size_t close = completion.rfind("</answer>");
  if (close != absl::string_view::npos) {
    const size_t open = completion.substr(0, close).rfind("<answer>");
    if (open != absl::string_view::npos) {
      return std::string(absl::StripAsciiWhitespace(completion.substr(open + 8, close - open - 8)));
    }
  }
  const size_t box = completion.rfind("\\boxed");
  if (box == absl::string_view::npos) return "";
  size_t i = box + 6;
  while (i < completion.size() && completion[i] == ' ') ++i;
  if (i >= completion.size() || completion[i] != '{') return "";
  int depth = 0;
  for (size_t j = i; j < completion.size(); ++j) {
    if (completion[j] == '{') ++depth;
    if (completion[j] == '}' && --depth == 0) {
      return std::string(absl::StripAsciiWhitespace(completion.substr(i + 1, j - i - 1)));
    }
  }
  return "";
}

absl::StatusOr<std::unique_ptr<Verifier>> MakeFormatVerifier(const VerifierOptions& options) {
  OptionReader r("format", options);
  RLVR_ASSIGN_OR_RETURN(const double reward, r.Double("reward", 1.0));
  RLVR_ASSIGN_OR_RETURN(const double wrong, r.Double("wrong_reward", 0.0));
  const std::string answer = r.String("answer", "either");
  RLVR_RETURN_IF_ERROR(r.CheckAllUsed());
  AnswerForm form;
  if (answer == "either") {
    form = AnswerForm::kEither;
  } else if (answer == "answer_tag") {
    form = AnswerForm::kAnswerTag;
  } else if (answer == "boxed") {
    form = AnswerForm::kBoxed;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("format.options.answer: '", answer,
                                                   "' is not one of either, answer_tag, boxed"));
  }
  return std::unique_ptr<Verifier>(new FormatVerifier(reward, wrong, form));
}

absl::StatusOr<std::unique_ptr<Verifier>> MakeOverlongVerifier(const VerifierOptions& options) {
  OptionReader r("overlong", options);
  RLVR_ASSIGN_OR_RETURN(const int64_t buffer, r.Int("buffer_tokens", 0));
  RLVR_ASSIGN_OR_RETURN(const double penalty, r.Double("penalty", 1.0));
  RLVR_ASSIGN_OR_RETURN(const int64_t max_tokens, r.Int("max_tokens", 0));
  RLVR_RETURN_IF_ERROR(r.CheckAllUsed());
  if (buffer <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("overlong.options.buffer_tokens: must be > 0 (or set "
                     "reward.overlong_buffer_tokens), got ",
                     buffer));
  }
  if (penalty < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("overlong.options.penalty: must be >= 0, got ", penalty));
  }
  if (max_tokens < 0 || (max_tokens > 0 && buffer > max_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "overlong.options.max_tokens: must be 0 or >= buffer_tokens, got ", max_tokens));
  }
  return std::unique_ptr<Verifier>(new OverlongVerifier(buffer, penalty, max_tokens));
}

absl::StatusOr<std::unique_ptr<Verifier>> MakeCountdownVerifier(const VerifierOptions& options) {
  OptionReader r("countdown", options);
  RLVR_ASSIGN_OR_RETURN(const double reward, r.Double("reward", 1.0));
  RLVR_ASSIGN_OR_RETURN(const double format_reward, r.Double("format_reward", 0.0));
  std::string target_key = r.String("target_key", "target");
  std::string nums_key = r.String("nums_key", "nums");
  RLVR_RETURN_IF_ERROR(r.CheckAllUsed());
  return std::unique_ptr<Verifier>(
      new CountdownVerifier(reward, format_reward, std::move(target_key), std::move(nums_key)));
}

}  // namespace rlvr::reward
