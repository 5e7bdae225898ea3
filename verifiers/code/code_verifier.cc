#include "verifiers/code/code_verifier.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rlvr::verifiers::code {
namespace {

absl::StatusOr<std::string> TextOrLines(const nlohmann::json& v, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array()) {
    std::vector<std::string> lines;
    for (const auto& line : v) {
      if (!line.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(key, ": expected strings in the array"));
      }
      lines.push_back(line.get<std::string>());
    }
    return absl::StrJoin(lines, "\n") + "\n";
  }
  if (v.is_number()) return v.dump();
  return absl::InvalidArgumentError(absl::StrCat(key, ": expected a string or array of lines"));
}

}  // namespace

absl::StatusOr<CodeVerdict> VerifyRecord(const CodeHarness& harness, const nlohmann::json& record,
                                         const CodeVerifierOptions& options) {
  if (!record.is_object()) return absl::InvalidArgumentError("record: expected a JSON object");
  if (!record.contains("completion") || !record["completion"].is_string()) {
    return absl::InvalidArgumentError("completion: missing or not a string");
  }
  Language language = options.default_language;
  if (record.contains("language")) {
    if (!record["language"].is_string()) {
      return absl::InvalidArgumentError("language: expected a string");
    }
    auto parsed = ParseLanguage(record["language"].get<std::string>());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("language: ", parsed.status().message()));
    }
    language = *parsed;
  }
  if (!record.contains("tests")) return absl::InvalidArgumentError("tests: missing");
  nlohmann::json tests = record["tests"];
  if (tests.is_string()) {
    tests = nlohmann::json::parse(tests.get<std::string>(), nullptr, /*allow_exceptions=*/false);
    if (tests.is_discarded()) {
      return absl::InvalidArgumentError("tests: a string that is not valid JSON");
    }
  }
  if (!tests.is_object()) return absl::InvalidArgumentError("tests: expected an object");
  const std::string code = ExtractCode(record["completion"].get<std::string>(), language);
  absl::StatusOr<ProgramOutcome> outcome;
  if (tests.contains("inputs") || tests.contains("outputs")) {
    if (!tests.contains("inputs") || !tests["inputs"].is_array()) {
      return absl::InvalidArgumentError("tests.inputs: missing or not an array");
    }
    if (!tests.contains("outputs") || !tests["outputs"].is_array()) {
      return absl::InvalidArgumentError("tests.outputs: missing or not an array");
    }
    if (tests["inputs"].size() != tests["outputs"].size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tests: ", tests["inputs"].size(), " inputs but ", tests["outputs"].size(), " outputs"));
    }
    std::vector<StdioCase> cases;
    for (size_t i = 0; i < tests["inputs"].size(); ++i) {
      auto in = TextOrLines(tests["inputs"][i], absl::StrCat("tests.inputs[", i, "]"));
      if (!in.ok()) return in.status();
      auto want = TextOrLines(tests["outputs"][i], absl::StrCat("tests.outputs[", i, "]"));
      if (!want.ok()) return want.status();
      cases.push_back({*std::move(in), *std::move(want)});
    }
    if (cases.empty()) return absl::InvalidArgumentError("tests.inputs: empty");
    outcome = harness.RunStdio(language, code, cases);
  } else if (tests.contains("test")) {
    if (!tests["test"].is_string()) return absl::InvalidArgumentError("tests.test: not a string");
    AssertSpec spec;
    spec.test = tests["test"].get<std::string>();
    if (tests.contains("entry_point")) {
      if (!tests["entry_point"].is_string()) {
        return absl::InvalidArgumentError("tests.entry_point: not a string");
      }
      spec.entry_point = tests["entry_point"].get<std::string>();
    }
    outcome = harness.RunAssert(language, code, spec);
  } else {
    return absl::InvalidArgumentError(
        "tests: expected {\"inputs\", \"outputs\"} or {\"test\", \"entry_point\"}");
  }
  if (!outcome.ok()) return outcome.status();
  CodeVerdict v;
  v.passed = outcome->passed;
  v.total = outcome->total;
  v.verdict = outcome->verdict;
  v.detail = outcome->detail;
  if (options.all_or_nothing) {
    v.reward = v.verdict == Verdict::kOk ? 1.0 : 0.0;
  } else {
    v.reward = v.total > 0 ? static_cast<double>(v.passed) / v.total : 0.0;
  }
  return v;
}

void AnnotateRecord(const CodeVerdict& verdict, nlohmann::json* record) {
  (*record)["reward"] = verdict.reward;
  (*record)["passed"] = verdict.passed;
  (*record)["total"] = verdict.total;
  (*record)["verdict"] = std::string(VerdictName(verdict.verdict));
  if (!verdict.detail.empty()) {
    // Program output may be any bytes; keep the record valid UTF-8 JSON.
    std::string valid = nlohmann::json(verdict.detail)
                            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    (*record)["detail"] = nlohmann::json::parse(valid);
  }
}

}  // namespace rlvr::verifiers::code
