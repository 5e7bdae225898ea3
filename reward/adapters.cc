// The math and code verifiers: adapters over verifiers/math and verifiers/code.
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "core/status.h"
#include "reward/builtins.h"
#include "verifiers/code/code_verifier.h"
#include "verifiers/code/harness.h"
#include "verifiers/code/sandbox.h"
#include "verifiers/math/math_verifier.h"

namespace rlvr::reward {
namespace {

namespace vmath = ::rlvr::verifiers::math;
namespace vcode = ::rlvr::verifiers::code;

class MathVerifier : public Verifier {
 public:
  MathVerifier(std::string answer_key, vmath::MathVerifierOptions options)
      : answer_key_(std::move(answer_key)), options_(std::move(options)) {}
  std::string name() const override { return "math"; }

  absl::Status CheckRecord(const nlohmann::json& record) const override {
    return RecordString(&record, answer_key_).status();
  }

  absl::StatusOr<VerdictResult> Score(const Sample& sample) const override {
    RLVR_ASSIGN_OR_RETURN(const std::string gold, RecordString(sample.record.get(), answer_key_));
    const vmath::MathVerdict v = vmath::VerifyMath(sample.completion, gold, options_);
    VerdictResult out;
    out.reward = v.reward;
    out.correct = v.correct;
    out.detail = std::string(vmath::MathStatusName(v.status));
    return out;
  }

 private:
  std::string answer_key_;
  vmath::MathVerifierOptions options_;
};

class CodeVerifier : public Verifier {
 public:
  CodeVerifier(std::string tests_key, std::string prefix_field, vcode::CodeVerifierOptions options,
               vcode::SandboxOptions sandbox_options, vcode::HarnessOptions harness_options)
      : tests_key_(std::move(tests_key)),
        prefix_field_(std::move(prefix_field)),
        options_(options),
        sandbox_options_(std::move(sandbox_options)),
        harness_options_(std::move(harness_options)) {}
  std::string name() const override { return "code"; }

  absl::Status CheckRecord(const nlohmann::json& record) const override {
    if (!prefix_field_.empty()) {
      RLVR_RETURN_IF_ERROR(RecordString(&record, prefix_field_).status());
    }
    return BuildTests(record).status();
  }

  absl::StatusOr<VerdictResult> Score(const Sample& sample) const override {
    static const nlohmann::json kEmpty = nlohmann::json::object();
    const nlohmann::json& record = sample.record ? *sample.record : kEmpty;
    RLVR_ASSIGN_OR_RETURN(nlohmann::json tests, BuildTests(record));
    RLVR_ASSIGN_OR_RETURN(const vcode::CodeHarness* harness, Harness());
    std::string code = sample.completion;
    if (!prefix_field_.empty()) {
      // HumanEval-style continuations: the program is the prompt's signature + the completion.
      RLVR_ASSIGN_OR_RETURN(std::string prefix, RecordString(&record, prefix_field_));
      code = prefix + code;
    }
    nlohmann::json request = {{"completion", std::move(code)}, {"tests", std::move(tests)}};
    if (record.contains("language") && record["language"].is_string()) {
      request["language"] = record["language"];
    }
    absl::StatusOr<vcode::CodeVerdict> v = vcode::VerifyRecord(*harness, request, options_);
    if (!v.ok()) {
      // The record was validated above, so an error here is the harness's, not the data's.
      return absl::InternalError(absl::StrCat("code verifier: ", v.status().message()));
    }
    VerdictResult out;
    out.reward = v->reward;
    out.correct = v->verdict == vcode::Verdict::kOk;
    out.detail = std::string(vcode::VerdictName(v->verdict));
    return out;
  }

 private:
  // The `tests` object the code verifier reads, from one of the supported record layouts.
  absl::StatusOr<nlohmann::json> BuildTests(const nlohmann::json& record) const {
    if (record.is_object() && record.contains(tests_key_)) return record[tests_key_];
    if (record.is_object() && record.contains("test") && record.contains("entry_point")) {
      if (!record["test"].is_string() || !record["entry_point"].is_string()) {
        return absl::InvalidArgumentError("fields 'test' and 'entry_point' must be strings");
      }
      return nlohmann::json{{"test", record["test"]}, {"entry_point", record["entry_point"]}};
    }
    if (record.is_object() && record.contains("test_list")) {
      if (!record["test_list"].is_array()) {
        return absl::InvalidArgumentError("field 'test_list' must be an array of strings");
      }
      std::string test;
      if (record.contains("test_setup_code") && record["test_setup_code"].is_string()) {
        test = absl::StrCat(record["test_setup_code"].get<std::string>(), "\n");
      }
      for (const auto& line : record["test_list"]) {
        if (!line.is_string()) {
          return absl::InvalidArgumentError("field 'test_list' must be an array of strings");
        }
        absl::StrAppend(&test, line.get<std::string>(), "\n");
      }
      return nlohmann::json{{"test", test}, {"entry_point", ""}};
    }
    return absl::InvalidArgumentError(
        absl::StrCat("missing field '", tests_key_,
                     "' (or HumanEval's 'test' + 'entry_point', or MBPP's "
                     "'test_list')"));
  }

  // The sandbox starts on first use; a failure to start is remembered and reported each time.
  absl::StatusOr<const vcode::CodeHarness*> Harness() const {
    absl::MutexLock lock(&mu_);
    if (harness_ != nullptr) return harness_.get();
    if (!start_error_.ok()) return start_error_;
    absl::StatusOr<std::unique_ptr<vcode::Sandbox>> sandbox =
        vcode::Sandbox::Create(sandbox_options_);
    if (!sandbox.ok()) {
      start_error_ = Annotate(sandbox.status(), "code verifier: starting the sandbox");
      return start_error_;
    }
    sandbox_ = std::move(*sandbox);
    harness_ = std::make_unique<vcode::CodeHarness>(sandbox_.get(), harness_options_);
    return harness_.get();
  }

  std::string tests_key_;
  std::string prefix_field_;
  vcode::CodeVerifierOptions options_;
  vcode::SandboxOptions sandbox_options_;
  vcode::HarnessOptions harness_options_;
  mutable absl::Mutex mu_;
  mutable std::unique_ptr<vcode::Sandbox> sandbox_ ABSL_GUARDED_BY(mu_);
  mutable std::unique_ptr<vcode::CodeHarness> harness_ ABSL_GUARDED_BY(mu_);
  mutable absl::Status start_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Verifier>> MakeMathVerifier(const VerifierOptions& options) {
  OptionReader r("math", options);
  std::string answer_key = r.String("answer_key", "answer");
  vmath::MathVerifierOptions mo;
  RLVR_ASSIGN_OR_RETURN(const double reward, r.Double("reward", 1.0));
  RLVR_ASSIGN_OR_RETURN(const double wrong, r.Double("wrong_reward", 0.0));
  RLVR_RETURN_IF_ERROR(r.CheckAllUsed());
  mo.correct_reward = static_cast<float>(reward);
  mo.wrong_reward = static_cast<float>(wrong);
  RLVR_RETURN_IF_ERROR(vmath::ValidateOptions(mo), "math.options");
  return std::unique_ptr<Verifier>(new MathVerifier(std::move(answer_key), std::move(mo)));
}

absl::StatusOr<std::unique_ptr<Verifier>> MakeCodeVerifier(const VerifierOptions& options) {
  OptionReader r("code", options);
  std::string tests_key = r.String("tests_key", "tests");
  std::string prefix_field = r.String("prefix_field", "");
  vcode::CodeVerifierOptions co;
  RLVR_ASSIGN_OR_RETURN(co.all_or_nothing, r.Bool("all_or_nothing", false));
  const std::string language = r.String("language", "python");
  absl::StatusOr<vcode::Language> lang = vcode::ParseLanguage(language);
  if (!lang.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("code.options.language: ", lang.status().message()));
  }
  co.default_language = *lang;
  vcode::SandboxOptions so;
  RLVR_ASSIGN_OR_RETURN(const int64_t concurrency, r.Int("concurrency", 2));
  if (concurrency < 1 || concurrency > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("code.options.concurrency: must be in [1, 64], got ", concurrency));
  }
  so.concurrency = static_cast<int>(concurrency);
  for (absl::string_view p :
       absl::StrSplit(r.String("allow_missing", ""), ',', absl::SkipWhitespace())) {
    so.allow_missing.insert(std::string(absl::StripAsciiWhitespace(p)));
  }
  vcode::HarnessOptions ho;
  RLVR_ASSIGN_OR_RETURN(ho.run_limits.wall_seconds, r.Double("wall_seconds", 10.0));
  RLVR_ASSIGN_OR_RETURN(const int64_t memory_mb, r.Int("memory_mb", 512));
  RLVR_RETURN_IF_ERROR(r.CheckAllUsed());
  if (!(ho.run_limits.wall_seconds > 0) || memory_mb <= 0) {
    return absl::InvalidArgumentError("code.options: wall_seconds and memory_mb must be > 0");
  }
  ho.run_limits.memory_bytes = memory_mb << 20;
  return std::unique_ptr<Verifier>(new CodeVerifier(std::move(tests_key), std::move(prefix_field),
                                                    co, std::move(so), std::move(ho)));
}

}  // namespace rlvr::reward
