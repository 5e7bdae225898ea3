// rlvr verify --verifier code --in FILE.jsonl --out FILE.jsonl [options]
// Scores each record's `completion` against its `tests` in the sandbox (see
// verifiers/code/code_verifier.h for the record format) and writes the records back with
// `reward`, `passed`, `total`, `verdict` (and `detail`). Records are verified in parallel; the
// output keeps the input order. A malformed record fails the command with `FILE:LINE: key: ...`
// and writes nothing.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "core/jsonl.h"
#include "verifiers/code/code_verifier.h"
#include "verifiers/code/harness.h"
#include "verifiers/code/sandbox.h"

namespace rlvr::cli {
namespace {

namespace vc = ::rlvr::verifiers::code;

struct Flags {
  std::string verifier = "code";
  std::string in, out, language = "python";
  double time_s = 10.0;
  int64_t memory_mb = 512;
  int concurrency = 2;
  bool all_or_nothing = false;
  bool keep_going = false;
  double float_tolerance = 1e-6;
  std::vector<std::string> allow_missing;
};

int Verify(const Flags& f) {
  if (f.verifier != "code") {
    std::fprintf(stderr, "rlvr verify: --verifier %s: this command handles only 'code'\n",
                 f.verifier.c_str());
    return 2;
  }
  auto language = vc::ParseLanguage(f.language);
  if (!language.ok()) {
    std::fprintf(stderr, "rlvr verify: --language: %s\n",
                 std::string(language.status().message()).c_str());
    return 2;
  }
  std::vector<nlohmann::json> records;
  {
    auto reader = JsonlReader::Open(f.in);
    if (!reader.ok()) {
      std::fprintf(stderr, "rlvr verify: %s\n", std::string(reader.status().message()).c_str());
      return 1;
    }
    for (;;) {
      nlohmann::json rec;
      auto more = (*reader)->Next(&rec);
      if (!more.ok()) {
        std::fprintf(stderr, "rlvr verify: %s\n", std::string(more.status().message()).c_str());
        return 1;
      }
      if (!*more) break;
      records.push_back(std::move(rec));
    }
  }
  vc::SandboxOptions so;
  so.concurrency = f.concurrency;
  so.allow_missing.insert(f.allow_missing.begin(), f.allow_missing.end());
  auto sandbox = vc::Sandbox::Create(so);
  if (!sandbox.ok()) {
    std::fprintf(stderr, "rlvr verify: %s\n", std::string(sandbox.status().message()).c_str());
    return 1;
  }
  for (const std::string& w : (*sandbox)->warnings()) {
    std::fprintf(stderr, "rlvr verify: warning: %s\n", w.c_str());
  }
  vc::HarnessOptions ho;
  ho.run_limits.wall_seconds = f.time_s;
  ho.run_limits.memory_bytes = f.memory_mb << 20;
  ho.stop_at_first_failure = !f.keep_going;
  ho.float_tolerance = f.float_tolerance;
  vc::CodeHarness harness(sandbox->get(), ho);
  vc::CodeVerifierOptions vo;
  vo.all_or_nothing = f.all_or_nothing;
  vo.default_language = *language;

  std::vector<absl::StatusOr<vc::CodeVerdict>> verdicts(records.size(),
                                                        absl::InternalError("not run"));
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < f.concurrency; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < records.size(); i = next++) {
        verdicts[i] = vc::VerifyRecord(harness, records[i], vo);
      }
    });
  }
  for (auto& t : pool) t.join();
  // JsonlReader skips blank lines, so report the record number (1-based) with the file.
  for (size_t i = 0; i < verdicts.size(); ++i) {
    if (!verdicts[i].ok()) {
      std::fprintf(stderr, "rlvr verify: %s: record %zu: %s\n", f.in.c_str(), i + 1,
                   std::string(verdicts[i].status().message()).c_str());
      return 1;
    }
  }
  auto writer = JsonlWriter::Open(f.out);
  if (!writer.ok()) {
    std::fprintf(stderr, "rlvr verify: %s\n", std::string(writer.status().message()).c_str());
    return 1;
  }
  std::map<std::string, int> counts;
  double reward_sum = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    vc::AnnotateRecord(*verdicts[i], &records[i]);
    reward_sum += verdicts[i]->reward;
    ++counts[std::string(vc::VerdictName(verdicts[i]->verdict))];
    absl::Status s = (*writer)->Write(records[i]);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr verify: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  absl::Status s = (*writer)->Close();
  if (!s.ok()) {
    std::fprintf(stderr, "rlvr verify: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::string summary;
  for (const auto& [name, n] : counts) summary += " " + name + "=" + std::to_string(n);
  std::fprintf(stderr, "rlvr verify: %zu records, mean reward %.4f;%s\n", records.size(),
               records.empty() ? 0.0 : reward_sum / records.size(), summary.c_str());
  return 0;
}

}  // namespace

int VerifyCodeMain(const Args& args) {
  CLI::App app{"Score code completions against their tests in the sandbox.", "rlvr verify"};
  Flags f;
  app.add_option("--verifier", f.verifier, "must be 'code' (accepted for the dispatcher)");
  app.add_option("--in", f.in, "input JSONL: completion, tests, optional language")->required();
  app.add_option("--out", f.out, "output JSONL: the records plus reward, passed, total, verdict")
      ->required();
  app.add_option("--language", f.language, "language of records without one (python, cpp)");
  app.add_option("--time", f.time_s, "wall-clock limit per case, seconds")
      ->check(CLI::PositiveNumber);
  app.add_option("--memory", f.memory_mb, "memory limit per run, MiB")
      ->check(CLI::Range(16, 1 << 20));
  app.add_option("--concurrency", f.concurrency, "programs running at once")
      ->check(CLI::Range(1, 64));
  app.add_flag("--all-or-nothing", f.all_or_nothing, "reward 1 only when every case passes");
  app.add_flag("--keep-going", f.keep_going, "run every case even after a failure");
  app.add_option("--float-tolerance", f.float_tolerance,
                 "relative tolerance for numeric tokens in stdio outputs (0: exact)");
  app.add_option("--allow-missing", f.allow_missing,
                 "run without this confinement primitive if the machine lacks it; repeat "
                 "the flag or separate names with commas")
      ->allow_extra_args(false)
      ->delimiter(',');
  try {
    std::vector<std::string> rest(args.begin() + 1, args.end());
    std::reverse(rest.begin(), rest.end());
    app.parse(rest);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return Verify(f);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlvr verify: %s\n", e.what());
    return 1;
  }
}

}  // namespace rlvr::cli
