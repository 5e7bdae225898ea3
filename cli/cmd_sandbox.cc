// rlvr sandbox run --language python|cpp [--time S] [--memory MB] [--stdin FILE] FILE
// Runs one program in the sandbox and prints a JSON verdict: status, exit code or signal,
// stdout/stderr (capped), CPU and wall time, peak memory. C++ is compiled in the sandbox first;
// a failed compile prints status "compile_error" with the compiler's output.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "nlohmann/json.hpp"
#include "verifiers/code/harness.h"
#include "verifiers/code/sandbox.h"

namespace rlvr::cli {
namespace {

namespace vc = ::rlvr::verifiers::code;

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

nlohmann::json ResultJson(const vc::RunResult& r) {
  nlohmann::json j;
  j["status"] = std::string(vc::RunStatusName(r.status));
  if (r.signal != 0) {
    j["signal"] = r.signal;
  } else {
    j["exit_code"] = r.exit_code;
  }
  j["stdout"] = r.stdout_data;
  j["stderr"] = r.stderr_data;
  j["stdout_truncated"] = r.stdout_truncated;
  j["stderr_truncated"] = r.stderr_truncated;
  j["cpu_seconds"] = r.cpu_seconds;
  j["wall_seconds"] = r.wall_seconds;
  j["peak_memory_bytes"] = r.peak_memory_bytes;
  if (!r.detail.empty()) j["detail"] = r.detail;
  return j;
}

int Run(const std::string& language_name, double time_s, int64_t memory_mb,
        const std::string& stdin_path, const std::vector<std::string>& allow_missing,
        const std::string& file) {
  auto language = vc::ParseLanguage(language_name);
  if (!language.ok()) {
    std::fprintf(stderr, "rlvr sandbox run: --language: %s\n",
                 std::string(language.status().message()).c_str());
    return 2;
  }
  std::string code, input;
  if (!ReadFile(file, &code)) {
    std::fprintf(stderr, "rlvr sandbox run: %s: cannot read\n", file.c_str());
    return 1;
  }
  if (!stdin_path.empty() && !ReadFile(stdin_path, &input)) {
    std::fprintf(stderr, "rlvr sandbox run: %s: cannot read\n", stdin_path.c_str());
    return 1;
  }
  vc::SandboxOptions so;
  so.concurrency = 1;
  so.allow_missing.insert(allow_missing.begin(), allow_missing.end());
  auto sandbox = vc::Sandbox::Create(so);
  if (!sandbox.ok()) {
    std::fprintf(stderr, "rlvr sandbox run: %s\n", std::string(sandbox.status().message()).c_str());
    return 1;
  }
  for (const std::string& w : (*sandbox)->warnings()) {
    std::fprintf(stderr, "rlvr sandbox run: warning: %s\n", w.c_str());
  }
  vc::RunRequest req;
  req.limits.wall_seconds = time_s;
  req.limits.memory_bytes = memory_mb << 20;
  req.stdin_data = input;
  nlohmann::json out;
  out["language"] = std::string(vc::LanguageName(*language));
  if (*language == vc::Language::kPython) {
    req.argv = {"/usr/bin/python3", "-I", "solution.py"};
    req.files.push_back({"solution.py", code, false});
  } else {
    vc::HarnessOptions ho;
    auto compiled = vc::CompileCpp(**sandbox, ho, code);
    if (!compiled.ok()) {
      std::fprintf(stderr, "rlvr sandbox run: %s\n",
                   std::string(compiled.status().message()).c_str());
      return 1;
    }
    if (compiled->status != vc::RunStatus::kOk || !compiled->exported.has_value()) {
      out["status"] = "compile_error";
      out["compile"] = ResultJson(*compiled);
      std::printf("%s\n",
                  out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return 0;
    }
    req.argv = {"./prog"};
    req.files.push_back({"prog", *compiled->exported, true});
  }
  auto result = (*sandbox)->Run(req);
  if (!result.ok()) {
    std::fprintf(stderr, "rlvr sandbox run: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  out.update(ResultJson(*result));
  std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

}  // namespace

int SandboxMain(const Args& args) {
  CLI::App app{"Run untrusted programs in the rlvr sandbox.", "rlvr sandbox"};
  app.require_subcommand(1);
  CLI::App* run = app.add_subcommand("run", "run one program and print a JSON verdict");
  std::string language, stdin_path, file;
  double time_s = 10.0;
  int64_t memory_mb = 512;
  std::vector<std::string> allow_missing;
  run->add_option("--language", language, "python or cpp")->required();
  run->add_option("--time", time_s, "wall-clock limit in seconds")->check(CLI::PositiveNumber);
  run->add_option("--memory", memory_mb, "memory limit in MiB")->check(CLI::Range(16, 1 << 20));
  run->add_option("--stdin", stdin_path, "file to feed on standard input");
  run->add_option("--allow-missing", allow_missing,
                  "run without this confinement primitive if the machine lacks it "
                  "(user_namespace, network_namespace, seccomp, cgroup_memory, cgroup_pids); "
                  "repeat the flag or separate names with commas")
      ->allow_extra_args(false)
      ->delimiter(',');
  run->add_option("FILE", file, "the program's source file")->required();
  try {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    std::reverse(rest.begin(), rest.end());
    app.parse(rest);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return Run(language, time_s, memory_mb, stdin_path, allow_missing, file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlvr sandbox run: %s\n", e.what());
    return 1;
  }
}

}  // namespace rlvr::cli
