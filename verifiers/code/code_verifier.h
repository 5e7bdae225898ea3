// The code verifier on JSON records (the `rlvr verify --verifier code` format).
//
// A record has `completion` (code, possibly inside a fenced block that is extracted), `tests`
// (either {"inputs": [...], "outputs": [...]} for standard input/output cases, or
// {"test": "...", "entry_point": "..."} for assert style; `tests` may also be a JSON string that
// holds such an object, as APPS stores it) and optionally `language` ("python" or "cpp").
// Inputs and outputs are strings, or arrays of lines joined with "\n".
//
// The verdict adds `reward` (passed / total, or 1/0 with all_or_nothing), `passed`, `total` and
// `verdict` (ok, wrong_answer, timeout, memory, runtime_error, compile_error, output_limit,
// blocked), and `detail` for the first failure.
//
// Thread safety: VerifyRecord may be called from many threads with one CodeHarness.
#ifndef RLVR_VERIFIERS_CODE_CODE_VERIFIER_H_
#define RLVR_VERIFIERS_CODE_CODE_VERIFIER_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "verifiers/code/harness.h"

namespace rlvr::verifiers::code {

struct CodeVerifierOptions {
  bool all_or_nothing = false;
  Language default_language = Language::kPython;
};

struct CodeVerdict {
  double reward = 0.0;
  int passed = 0;
  int total = 0;
  Verdict verdict = Verdict::kWrongAnswer;
  std::string detail;
};

// InvalidArgument names the missing or malformed key ("tests.outputs: expected an array ...").
absl::StatusOr<CodeVerdict> VerifyRecord(const CodeHarness& harness, const nlohmann::json& record,
                                         const CodeVerifierOptions& options);

// Adds reward, passed, total, verdict and detail to `record`.
void AnnotateRecord(const CodeVerdict& verdict, nlohmann::json* record);

}  // namespace rlvr::verifiers::code

#endif  // RLVR_VERIFIERS_CODE_CODE_VERIFIER_H_
