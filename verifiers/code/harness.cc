#include "verifiers/code/harness.h"

#include <cmath>
#include <cstdlib>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace rlvr::verifiers::code {
namespace {

// The assert-style runner. stdin: nonce, stop flag, entry point, then the test code. It closes
// stdin before the solution runs, keeps its own references to os.write/os._exit, and prints
// "<nonce> <passed> <total>" as the last line only after every test statement has run.
constexpr char kPythonRunner[] = R"PY(import sys, os, ast, traceback
_write, _exit, _print_exc = os.write, os._exit, traceback.print_exc
_data = sys.stdin.buffer.read().decode("utf-8", "replace")
sys.stdin = open(os.devnull)
_nonce, _stop, _entry, _test = _data.split("\n", 3)
del _data
_tree = ast.parse(_test, "test.py")
def _is_case(node):
    if isinstance(node, ast.Assert):
        return True
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "check")
_total = sum(1 for n in _tree.body if _is_case(n))
_defines_check = any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in _tree.body)
_implicit = bool(_entry) and _defines_check and _total == 0
if _implicit:
    _total = 1
with open("solution.py", encoding="utf-8") as _f:
    _src = _f.read()
_g = {"__name__": "__solution__", "__builtins__": __builtins__}
exec(compile(_src, "solution.py", "exec"), _g)
_passed = 0
_failed = False
for _node in _tree.body:
    _code = compile(ast.Module(body=[_node], type_ignores=[]), "test.py", "exec")
    if _is_case(_node):
        try:
            exec(_code, _g)
            _passed += 1
        except BaseException:
            _print_exc()
            _failed = True
            if _stop == "1":
                break
    else:
        exec(_code, _g)
if _implicit and not (_failed and _stop == "1"):
    try:
        _g["check"](_g[_entry])
        _passed += 1
    except BaseException:
        _print_exc()
if _total == 0:
    _total = _passed = 1
_write(1, ("\n%s %d %d\n" % (_nonce, _passed, _total)).encode())
_exit(0)
)PY";

Verdict FromRunStatus(RunStatus s) {
  switch (s) {
    case RunStatus::kOk:
      return Verdict::kOk;
    case RunStatus::kRuntimeError:
      return Verdict::kRuntimeError;
    case RunStatus::kTimeout:
      return Verdict::kTimeout;
    case RunStatus::kMemory:
      return Verdict::kMemory;
    case RunStatus::kOutputLimit:
      return Verdict::kOutputLimit;
    case RunStatus::kBlocked:
      return Verdict::kBlocked;
  }
  return Verdict::kRuntimeError;
}

std::string Tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::string Nonce() {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 4; ++i) absl::StrAppend(&out, absl::Hex(rd(), absl::kZeroPad8));
  return out;
}

void Finish(ProgramOutcome* out) {
  out->verdict = Verdict::kOk;
  for (const CaseOutcome& c : out->cases) {
    if (c.verdict != Verdict::kOk) {
      out->verdict = c.verdict;
      out->detail = c.detail;
      break;
    }
  }
  if (out->verdict == Verdict::kOk && out->passed < out->total) {
    out->verdict = Verdict::kWrongAnswer;
  }
}

}  // namespace

absl::StatusOr<Language> ParseLanguage(std::string_view name) {
  std::string n = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
  if (n == "python" || n == "py" || n == "python3") return Language::kPython;
  if (n == "cpp" || n == "c++" || n == "cxx") return Language::kCpp;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown language '", n, "' (expected python or cpp)"));
}

std::string_view LanguageName(Language language) {
  return language == Language::kPython ? "python" : "cpp";
}

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kOk:
      return "ok";
    case Verdict::kWrongAnswer:
      return "wrong_answer";
    case Verdict::kTimeout:
      return "timeout";
    case Verdict::kMemory:
      return "memory";
    case Verdict::kRuntimeError:
      return "runtime_error";
    case Verdict::kCompileError:
      return "compile_error";
    case Verdict::kOutputLimit:
      return "output_limit";
    case Verdict::kBlocked:
      return "blocked";
  }
  return "unknown";
}

std::string ExtractCode(std::string_view completion_sv, Language language) {
  absl::string_view completion(completion_sv.data(), completion_sv.size());
  struct Block {
    std::string lang;
    absl::string_view body;
  };
  std::vector<Block> blocks;
  size_t pos = 0;
  while (true) {
    size_t open = completion.find("```", pos);
    if (open == absl::string_view::npos) break;
    size_t eol = completion.find('\n', open);
    if (eol == absl::string_view::npos) break;
    std::string lang = absl::AsciiStrToLower(
        absl::StripAsciiWhitespace(completion.substr(open + 3, eol - open - 3)));
    size_t close = completion.find("```", eol + 1);
    absl::string_view body = completion.substr(
        eol + 1, close == absl::string_view::npos ? absl::string_view::npos : close - eol - 1);
    blocks.push_back({lang, body});
    if (close == absl::string_view::npos) break;
    pos = close + 3;
  }
  if (blocks.empty()) return std::string(completion);
  auto matches = [&](const std::string& lang) {
    if (lang.empty()) return true;
    if (language == Language::kPython) return lang == "python" || lang == "py" || lang == "python3";
    return lang == "cpp" || lang == "c++" || lang == "cxx" || lang == "cc";
  };
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    if (matches(it->lang)) return std::string(it->body);
  }
  return std::string(blocks.back().body);
}

bool OutputsMatch(std::string_view got_sv, std::string_view expected_sv, double tol) {
  std::vector<absl::string_view> got =
      absl::StrSplit(absl::string_view(got_sv.data(), got_sv.size()),
                     absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty());
  std::vector<absl::string_view> want =
      absl::StrSplit(absl::string_view(expected_sv.data(), expected_sv.size()),
                     absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty());
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    double a, b;
    if (tol > 0 && absl::SimpleAtod(got[i], &a) && absl::SimpleAtod(want[i], &b) &&
        std::isfinite(a) && std::isfinite(b) &&
        std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b))) {
      continue;
    }
    return false;
  }
  return true;
}

RunLimits HarnessOptions::DefaultCompileLimits() {
  RunLimits l;
  l.wall_seconds = 30.0;
  l.memory_bytes = int64_t{1} << 30;
  l.pids = 32;
  l.output_bytes = 64 << 10;
  l.scratch_bytes = int64_t{256} << 20;
  l.file_size_bytes = int64_t{128} << 20;
  return l;
}

CodeHarness::CodeHarness(Sandbox* sandbox, HarnessOptions options)
    : sandbox_(sandbox), options_(std::move(options)) {}

absl::StatusOr<RunResult> CompileCpp(Sandbox& sandbox, const HarnessOptions& options,
                                     const std::string& source) {
  RunRequest req;
  req.argv.push_back(options.cxx);
  for (const std::string& f : options.cxx_flags) req.argv.push_back(f);
  req.argv.insert(req.argv.end(), {"-o", "prog", "solution.cpp"});
  req.files.push_back({"solution.cpp", source, false});
  req.limits = options.compile_limits;
  req.export_file = "prog";
  return sandbox.Run(req);
}

absl::StatusOr<std::string> CodeHarness::Compile(const std::string& source,
                                                 ProgramOutcome* failed) const {
  auto res = CompileCpp(*sandbox_, options_, source);
  if (!res.ok()) return res.status();
  if (res->status == RunStatus::kOk && res->exported.has_value()) return *res->exported;
  failed->verdict = Verdict::kCompileError;
  failed->detail = res->status == RunStatus::kOk
                       ? "the compiler produced no binary"
                       : absl::StrCat("compile ", std::string(RunStatusName(res->status)), ": ",
                                      Tail(res->stderr_data + res->detail, 2000));
  return std::string();
}

absl::StatusOr<ProgramOutcome> CodeHarness::RunStdio(Language language, const std::string& code,
                                                     const std::vector<StdioCase>& cases) const {
  if (cases.empty()) return absl::InvalidArgumentError("stdio tests: no cases");
  ProgramOutcome out;
  out.total = static_cast<int>(cases.size());
  RunRequest req;
  req.limits = options_.run_limits;
  if (language == Language::kPython) {
    req.argv = {options_.python, "-I", "solution.py"};
    req.files.push_back({"solution.py", code, false});
  } else {
    ProgramOutcome failed;
    auto binary = Compile(code, &failed);
    if (!binary.ok()) return binary.status();
    if (failed.verdict == Verdict::kCompileError) {
      failed.total = out.total;
      return failed;
    }
    req.argv = {"./prog"};
    req.files.push_back({"prog", *std::move(binary), true});
  }
  for (const StdioCase& c : cases) {
    req.stdin_data = c.input;
    auto res = sandbox_->Run(req);
    if (!res.ok()) return res.status();
    CaseOutcome co;
    co.wall_seconds = res->wall_seconds;
    co.verdict = FromRunStatus(res->status);
    co.stdout_data = res->stdout_data;
    if (co.verdict == Verdict::kOk) {
      if (OutputsMatch(res->stdout_data, c.expected_output, options_.float_tolerance)) {
        ++out.passed;
      } else {
        co.verdict = Verdict::kWrongAnswer;
        co.detail = absl::StrCat("expected '", Tail(c.expected_output, 200), "', got '",
                                 Tail(res->stdout_data, 200), "'");
      }
    } else {
      co.detail = absl::StrCat(res->detail, res->stderr_data.empty() ? "" : ": ",
                               Tail(res->stderr_data, 1000));
    }
    out.cases.push_back(std::move(co));
    if (out.cases.back().verdict != Verdict::kOk && options_.stop_at_first_failure) break;
  }
  Finish(&out);
  return out;
}

absl::StatusOr<ProgramOutcome> CodeHarness::RunAssert(Language language, const std::string& code,
                                                      const AssertSpec& spec) const {
  ProgramOutcome out;
  RunRequest req;
  req.limits = options_.run_limits;
  CaseOutcome co;
  if (language == Language::kCpp) {
    out.total = 1;
    ProgramOutcome failed;
    auto binary = Compile(code + "\n" + spec.test + "\n", &failed);
    if (!binary.ok()) return binary.status();
    if (failed.verdict == Verdict::kCompileError) {
      failed.total = 1;
      return failed;
    }
    req.argv = {"./prog"};
    req.files.push_back({"prog", *std::move(binary), true});
    auto res = sandbox_->Run(req);
    if (!res.ok()) return res.status();
    co.wall_seconds = res->wall_seconds;
    co.verdict = FromRunStatus(res->status);
    if (co.verdict == Verdict::kOk) {
      out.passed = 1;
    } else {
      co.detail = absl::StrCat(res->detail, ": ", Tail(res->stderr_data, 1000));
    }
    out.cases.push_back(co);
    Finish(&out);
    return out;
  }
  if (spec.entry_point.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError("assert tests: entry_point contains a newline");
  }
  const std::string nonce = Nonce();
  req.argv = {options_.python, "-I", "runner.py"};
  req.files.push_back({"runner.py", kPythonRunner, false});
  req.files.push_back({"solution.py", code, false});
  req.stdin_data = absl::StrCat(nonce, "\n", options_.stop_at_first_failure ? "1" : "0", "\n",
                                spec.entry_point, "\n", spec.test);
  auto res = sandbox_->Run(req);
  if (!res.ok()) return res.status();
  co.wall_seconds = res->wall_seconds;
  co.verdict = FromRunStatus(res->status);
  co.stdout_data = res->stdout_data;
  out.total = 1;
  // The runner's report is the last line of stdout.
  absl::string_view stdout_view = absl::StripTrailingAsciiWhitespace(res->stdout_data);
  size_t nl = stdout_view.rfind('\n');
  absl::string_view last = nl == absl::string_view::npos ? stdout_view : stdout_view.substr(nl + 1);
  std::vector<absl::string_view> parts = absl::StrSplit(last, ' ');
  int passed = 0, total = 0;
  bool reported = parts.size() == 3 && parts[0] == nonce && absl::SimpleAtoi(parts[1], &passed) &&
                  absl::SimpleAtoi(parts[2], &total) && total > 0 && passed >= 0 && passed <= total;
  if (co.verdict == Verdict::kOk) {
    if (!reported) {
      co.verdict = Verdict::kWrongAnswer;
      co.detail = "the program exited before the tests finished";
    } else {
      out.total = total;
      out.passed = passed;
      if (passed < total) {
        co.verdict = Verdict::kWrongAnswer;
        co.detail =
            absl::StrCat(passed, "/", total, " tests passed: ", Tail(res->stderr_data, 1000));
      }
    }
  } else {
    co.detail = absl::StrCat(res->detail, res->stderr_data.empty() ? "" : ": ",
                             Tail(res->stderr_data, 1000));
  }
  out.cases.push_back(co);
  Finish(&out);
  return out;
}

}  // namespace rlvr::verifiers::code
