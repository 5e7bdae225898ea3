// Test harnesses for model-written programs, run in a Sandbox.
//
// Two styles:
//  - standard input/output (APPS / Codeforces / LiveCodeBench): one run per case with the case's
//    input on stdin; stdout is compared with the expected output token by token (whitespace-
//    insensitive), numbers within an optional tolerance.
//  - assert style (HumanEval / MBPP): the program, then test code that asserts on it. Python only
//    for per-assert scoring: a fixed runner executes the solution, then each top-level `assert`
//    (and each `check(...)` call, or `check(<entry_point>)` when the test defines `check` and never
//    calls it) as one case. The test code reaches the sandbox on stdin, never as a file the
//    program could read, and the runner reports its counts after a per-run random nonce that the
//    program never sees in any file. A program that exits early (`sys.exit(0)`, `os._exit(0)`,
//    `raise SystemExit`) before the tests have run therefore fails instead of passing.
//    C++ assert style compiles program + test together; exit status 0 is one passed case.
// C++ programs are compiled once per program in the sandbox (compile errors, compile timeouts
// and compile-time memory blow-ups are `compile_error`), then the binary runs once per case.
//
// Thread safety: a CodeHarness may be used from many threads at once (the Sandbox bounds
// concurrency).
#ifndef RLVR_VERIFIERS_CODE_HARNESS_H_
#define RLVR_VERIFIERS_CODE_HARNESS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "verifiers/code/sandbox.h"

namespace rlvr::verifiers::code {

enum class Language { kPython, kCpp };
// Accepts python, py, python3, cpp, c++, cxx (case-insensitive).
absl::StatusOr<Language> ParseLanguage(std::string_view name);
std::string_view LanguageName(Language language);

// The code in a completion: the last fenced block (```python, ```py, ```cpp, ```c++ or a bare
// ```) that matches `language`; the last fenced block of any language if none matches; the whole
// completion if it has no fence. An unterminated final fence runs to the end of the text.
std::string ExtractCode(std::string_view completion, Language language);

enum class Verdict {
  kOk,
  kWrongAnswer,
  kTimeout,
  kMemory,
  kRuntimeError,
  kCompileError,
  kOutputLimit,
  kBlocked,
};
std::string_view VerdictName(Verdict verdict);

// Whitespace-insensitive comparison by tokens; when `float_tolerance` > 0, two tokens that both
// parse as finite numbers match if |got - want| <= tol * max(1, |want|).
bool OutputsMatch(std::string_view got, std::string_view expected, double float_tolerance);

struct StdioCase {
  std::string input;
  std::string expected_output;
};

struct AssertSpec {
  std::string test;         // test code (asserts, or a `check(candidate)` definition)
  std::string entry_point;  // the function under test, for `check(<entry_point>)`; may be empty
};

struct HarnessOptions {
  RunLimits run_limits;  // per case
  RunLimits compile_limits = DefaultCompileLimits();
  bool stop_at_first_failure = true;
  double float_tolerance = 1e-6;  // 0 disables numeric comparison
  std::string python = "/usr/bin/python3";
  std::string cxx = "/usr/bin/g++";
  std::vector<std::string> cxx_flags = {"-O2", "-std=c++17", "-pipe"};

  static RunLimits DefaultCompileLimits();
};

struct CaseOutcome {
  Verdict verdict = Verdict::kWrongAnswer;
  double wall_seconds = 0.0;
  std::string detail;
  std::string stdout_data;  // what the program printed (capped by run_limits.output_bytes)
};

struct ProgramOutcome {
  Verdict verdict = Verdict::kWrongAnswer;  // kOk iff every case passed
  int passed = 0;
  int total = 0;
  std::vector<CaseOutcome> cases;  // the cases that ran (fewer than total after a stop)
  std::string detail;              // why the first failing case failed
};

// Compiles C++ `source` (as /work/solution.cpp) in the sandbox with options.cxx and cxx_flags
// under options.compile_limits. The RunResult is the compiler's; on success (kOk) `exported`
// holds the binary. Errors only when the sandbox itself failed.
absl::StatusOr<RunResult> CompileCpp(Sandbox& sandbox, const HarnessOptions& options,
                                     const std::string& source);

class CodeHarness {
 public:
  // `sandbox` is not owned and must outlive the harness.
  CodeHarness(Sandbox* sandbox, HarnessOptions options);

  // Errors only for invalid input (InvalidArgument) or a broken sandbox.
  absl::StatusOr<ProgramOutcome> RunStdio(Language language, const std::string& code,
                                          const std::vector<StdioCase>& cases) const;
  absl::StatusOr<ProgramOutcome> RunAssert(Language language, const std::string& code,
                                           const AssertSpec& spec) const;

  const HarnessOptions& options() const { return options_; }

 private:
  // Compiles C++ `source`; returns the binary, or a compile_error outcome in `*failed`.
  absl::StatusOr<std::string> Compile(const std::string& source, ProgramOutcome* failed) const;

  Sandbox* sandbox_;
  HarnessOptions options_;
};

}  // namespace rlvr::verifiers::code

#endif  // RLVR_VERIFIERS_CODE_HARNESS_H_
