// rlvr verify --verifier math --in FILE.jsonl --out FILE.jsonl [options]
//
// Scores each record's completion against its gold answer with the math
// verifier and writes the record back with "correct", "reward", "extracted" and
// "status" added, then prints a summary.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "core/jsonl.h"
#include "core/status.h"
#include "nlohmann/json.hpp"
#include "verifiers/math/math_verifier.h"

namespace rlvr::cli {
namespace {

namespace vm = ::rlvr::verifiers::math;

struct Flags {
  std::string verifier;
  std::string in;
  std::string out;
  std::string completion_key = "completion";
  std::string answer_key = "answer";
  int threads = 1;
  bool no_last_number = false;
  bool no_whole_answer = false;
};

struct Counts {
  int64_t total = 0;
  int64_t by_status[4] = {0, 0, 0, 0};
};

// The gold answer as text: strings as they are, numbers (AMC's 27.0) as JSON
// writes them.
absl::StatusOr<std::string> FieldText(const nlohmann::json &record, const std::string &key,
                                      const std::string &where) {
  auto it = record.find(key);
  if (it == record.end()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing key \"", key, "\""));
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number()) return it->dump();
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": key \"", key, "\": expected a string or a number"));
}

absl::Status ScoreBatch(std::vector<nlohmann::json> *batch, const std::vector<int64_t> &lines,
                        const Flags &flags, const vm::MathVerifierOptions &options,
                        Counts *counts) {
  std::vector<std::string> completions(batch->size()), golds(batch->size());
  for (size_t i = 0; i < batch->size(); ++i) {
    std::string where = absl::StrCat(flags.in, ":", lines[i]);
    RLVR_ASSIGN_OR_RETURN(completions[i], FieldText((*batch)[i], flags.completion_key, where));
    RLVR_ASSIGN_OR_RETURN(golds[i], FieldText((*batch)[i], flags.answer_key, where));
  }
  std::vector<vm::MathVerdict> verdicts(batch->size());
  int threads = std::max(1, std::min<int>(flags.threads, static_cast<int>(batch->size())));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (size_t i = t; i < batch->size(); i += threads) {
        verdicts[i] = vm::VerifyMath(completions[i], golds[i], options);
      }
    });
  }
  for (auto &th : pool) th.join();
  for (size_t i = 0; i < batch->size(); ++i) {
    nlohmann::json &r = (*batch)[i];
    const vm::MathVerdict &v = verdicts[i];
    r["correct"] = v.correct;
    r["reward"] = v.reward;
    r["extracted"] = v.extracted;
    r["status"] = std::string(vm::MathStatusName(v.status));
    ++counts->total;
    ++counts->by_status[static_cast<int>(v.status)];
  }
  return absl::OkStatus();
}

absl::Status Run(const Flags &flags, const vm::MathVerifierOptions &options, Counts *counts) {
  RLVR_RETURN_IF_ERROR(vm::ValidateOptions(options), "math verifier options");
  RLVR_ASSIGN_OR_RETURN(auto reader, JsonlReader::Open(flags.in));
  RLVR_ASSIGN_OR_RETURN(auto writer, JsonlWriter::Open(flags.out));
  constexpr size_t kBatch = 4096;
  std::vector<nlohmann::json> batch;
  std::vector<int64_t> lines;
  while (true) {
    nlohmann::json record;
    RLVR_ASSIGN_OR_RETURN(bool got, reader->Next(&record));
    if (got) {
      if (!record.is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(flags.in, ":", reader->line_number(), ": expected a JSON object"));
      }
      batch.push_back(std::move(record));
      lines.push_back(reader->line_number());
    }
    if (batch.size() == kBatch || (!got && !batch.empty())) {
      RLVR_RETURN_IF_ERROR(ScoreBatch(&batch, lines, flags, options, counts));
      for (const nlohmann::json &r : batch) RLVR_RETURN_IF_ERROR(writer->Write(r), flags.out);
      batch.clear();
      lines.clear();
    }
    if (!got) break;
  }
  return writer->Close();
}

}  // namespace

int VerifyMathMain(const Args &args) {
  try {
    CLI::App app{
        "Score math completions against gold answers (rlvr verify "
        "--verifier math)",
        "rlvr verify"};
    Flags flags;
    vm::MathVerifierOptions options;
    app.add_option("--verifier", flags.verifier, "must be 'math'");
    app.add_option("--in", flags.in, "input JSONL: one object per line")->required();
    app.add_option("--out", flags.out, "output JSONL: the input records with the verdict added")
        ->required();
    app.add_option("--completion-key", flags.completion_key, "key of the completion text")
        ->capture_default_str();
    app.add_option("--answer-key", flags.answer_key, "key of the gold answer")
        ->capture_default_str();
    app.add_option("--threads", flags.threads, "worker threads")->capture_default_str();
    app.add_flag("--no-last-number", flags.no_last_number,
                 "do not fall back to the last number of the completion");
    app.add_flag("--no-whole-answer", flags.no_whole_answer,
                 "do not take a short completion without prose as the answer itself");
    app.add_option("--rel-tol", options.compare.rel_tol,
                   "extra relative tolerance for numeric answers (0: exact)")
        ->capture_default_str();
    app.add_option("--rounded-digits", options.compare.rounded_decimal_min_digits,
                   "a decimal that rounds the gold value counts if it has this "
                   "many significant "
                   "digits (0: off)")
        ->capture_default_str();
    app.add_option("--correct-reward", options.correct_reward, "reward of a correct answer")
        ->capture_default_str();
    app.add_option("--wrong-reward", options.wrong_reward,
                   "reward of a wrong, missing or unparsed answer")
        ->capture_default_str();
    std::vector<std::string> argv_strings(args.begin(), args.end());
    if (!argv_strings.empty()) argv_strings.erase(argv_strings.begin());
    std::reverse(argv_strings.begin(),
                 argv_strings.end());  // CLI11 takes them reversed
    try {
      app.parse(argv_strings);
    } catch (const CLI::ParseError &e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    if (!flags.verifier.empty() && flags.verifier != "math") {
      std::fprintf(stderr, "rlvr verify: --verifier: expected 'math', got '%s'\n",
                   flags.verifier.c_str());
      return 2;
    }
    if (flags.threads < 1 || flags.threads > 256) {
      std::fprintf(stderr, "rlvr verify: --threads: expected 1..256, got %d\n", flags.threads);
      return 2;
    }
    options.extract.fallback_last_number = !flags.no_last_number;
    options.extract.take_whole_answer = !flags.no_whole_answer;
    Counts counts;
    absl::Status status = Run(flags, options, &counts);
    if (!status.ok()) {
      std::fprintf(stderr, "rlvr verify: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    auto pct = [&](int64_t n) { return counts.total > 0 ? 100.0 * n / counts.total : 0.0; };
    std::printf(
        "verified %lld records: correct %lld (%.2f%%), wrong %lld (%.2f%%), "
        "no_answer %lld "
        "(%.2f%%), unparsed %lld (%.2f%%); wrote %s\n",
        static_cast<long long>(counts.total), static_cast<long long>(counts.by_status[0]),
        pct(counts.by_status[0]), static_cast<long long>(counts.by_status[1]),
        pct(counts.by_status[1]), static_cast<long long>(counts.by_status[2]),
        pct(counts.by_status[2]), static_cast<long long>(counts.by_status[3]),
        pct(counts.by_status[3]), flags.out.c_str());
    return 0;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "rlvr verify: %s\n", e.what());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "rlvr verify: unknown error\n");
    return 1;
  }
}

}  // namespace rlvr::cli
