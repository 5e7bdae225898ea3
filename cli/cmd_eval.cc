// rlvr eval --model DIR --in FILE.jsonl [--n K] [--temperature T] [--top-p P] [--top-k K]
//           [--min-p M] [--max-new-tokens N] [--stop STR ...] [--seed S] [--greedy]
//           [--k K ...] [--verifier auto|math|code|countdown|NAME] [--config CONFIG.yaml]
//           [--template raw|r1-zero|chat] [--enable-thinking true|false]
//           [--prompt-key KEY] [--answer-key KEY] [--data-source-key KEY] [--limit N]
//           [--out FILE.jsonl] [--summary FILE.json] [--max-batch B] [--max-tokens-in-flight N]
//
// Samples K completions per problem with the rollout engine, scores each with the reward stack
// (reward/composer.h, the same verifiers and data-source routing as `rlvr train`), and prints
// pass@1 (the mean over problems of c/K) and pass@k with the unbiased estimator of Chen et al.
// 2021 for k = 1, every power of two below K, and K (or the --k values); with --greedy also the
// accuracy of one greedy completion per problem (cluster/eval.h).
//
// Which verifier judges a problem:
//   --config FILE      the file's reward.verifiers (with their data_sources routing, options,
//                      plugins) and data.answer_key / data.data_source_key;
//   --verifier NAME    that verifier alone (math, code, countdown, or a plugin's name);
//   --verifier auto    (default) when the first record has the --data-source-key field, route
//                      each record by it (AutoRoutes() below: gsm8k, math500, aime24, ... ->
//                      math; humaneval, mbpp -> code; countdown -> countdown); otherwise math.
// A record lacking what its verifier needs (e.g. the answer field) is an error naming
// file:line before anything is sampled.
//
// Output: the summary on stdout; --out writes one JSON line per completion:
//   {"index": problem (0-based), "line": line in --in, "id": (if the record has one),
//    "sample": s, "greedy": bool, "prompt": as given, "completion": text,
//    "completion_tokens": count, "finish_reason": "eos" | "stop" | "length",
//    "reward": total, "correct": bool, "rewards": {verifier: reward}}
// sampled completions first (problem-major), then the greedy ones. --summary writes the
// numbers as JSON.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cluster/eval.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "core/progress.h"
#include "core/status.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/text/chat_template.h"
#include "policy/text/tokenizer.h"
#include "reward/composer.h"
#include "rollout/prompt.h"

namespace rlvr::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// --verifier auto: data_source values and the verifier that judges them.
struct AutoRoute {
  const char* verifier;
  std::vector<std::string> data_sources;
};
const std::vector<AutoRoute>& AutoRoutes() {
  static const auto* routes = new std::vector<AutoRoute>{
      {"math",
       {"math", "gsm8k", "openai/gsm8k", "math500", "HuggingFaceH4/MATH-500", "lighteval/MATH",
        "DigitalLearningGmbH/MATH-lighteval", "aime24", "aime25", "aime", "amc23", "amc",
        "math_dapo"}},
      {"code", {"code", "humaneval", "openai_humaneval", "mbpp"}},
      {"countdown", {"countdown"}},
  };
  return *routes;
}

struct EvalFlags {
  std::string model_dir, in_path, out_path, summary_path, config_path;
  int64_t n = 1;
  uint64_t seed = 0;
  rollout::SamplingParams sampling;
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;
  bool greedy = false;
  std::vector<int64_t> ks;
  std::string verifier = "auto";
  std::string template_name = "raw";
  std::string enable_thinking;
  std::string prompt_key = "prompt";
  std::string answer_key = "answer";
  std::string data_source_key = "data_source";
  int64_t limit = 0;
  rollout::EngineOptions engine;
};

struct Problem {
  std::shared_ptr<const json> record;
  int64_t line = 0;
  std::string prompt_text;  // for the verifiers (the record's prompt, or its JSON)
};

// The reward config: --config's, or one built from the flags (see the file comment). With
// --verifier auto, math is always a route and code/countdown only when a record names one of
// their sources, so a math-only file does not need the code sandbox.
absl::StatusOr<proto::RunConfig> RewardConfig(const EvalFlags& f,
                                              const std::vector<json>& records) {
  if (!f.config_path.empty()) {
    if (f.verifier != "auto") {
      return absl::InvalidArgumentError(
          "--verifier: give either --verifier or --config (whose reward.verifiers is used)");
    }
    return LoadRunConfig(f.config_path, {});
  }
  proto::RunConfig c = DefaultRunConfig();
  c.mutable_data()->set_answer_key(f.answer_key);
  c.mutable_data()->set_data_source_key(f.data_source_key);
  c.mutable_reward()->clear_verifiers();
  if (f.verifier == "auto" && records[0].contains(f.data_source_key)) {
    std::set<std::string> sources;
    for (const json& r : records) {
      auto it = r.find(f.data_source_key);
      if (it != r.end() && it->is_string()) sources.insert(it->get<std::string>());
    }
    for (const AutoRoute& r : AutoRoutes()) {
      bool used = std::string(r.verifier) == "math";
      for (const std::string& d : r.data_sources) used |= sources.count(d) > 0;
      if (!used) continue;
      proto::VerifierSpec* v = c.mutable_reward()->add_verifiers();
      v->set_name(r.verifier);
      v->set_weight(1.0f);
      for (const std::string& d : r.data_sources) v->add_data_sources(d);
    }
  } else {
    proto::VerifierSpec* v = c.mutable_reward()->add_verifiers();
    v->set_name(f.verifier == "auto" ? "math" : f.verifier);
    v->set_weight(1.0f);
  }
  return c;
}

std::string Fmt(double v) { return absl::StrCat(absl::SixDigits(v)); }

absl::Status Run(const EvalFlags& f) {
  // Records first: bad input fails before the model loads.
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> reader, JsonlReader::Open(f.in_path), "--in");
  std::vector<json> records;
  std::vector<int64_t> lines;
  json rec;
  while (f.limit == 0 || static_cast<int64_t>(records.size()) < f.limit) {
    RLVR_ASSIGN_OR_RETURN(bool more, reader->Next(&rec), "--in");
    if (!more) break;
    const std::string where = absl::StrCat(f.in_path, ":", reader->line_number());
    if (!rec.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected a JSON object"));
    }
    if (!rec.contains(f.prompt_key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": missing field '", f.prompt_key, "' (--prompt-key)"));
    }
    records.push_back(std::move(rec));
    lines.push_back(reader->line_number());
  }
  if (records.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(f.in_path, ": no problems (empty file)"));
  }
  RLVR_ASSIGN_OR_RETURN(proto::RunConfig rc, RewardConfig(f, records));
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<reward::RewardComposer> composer,
                        reward::CreateRewardComposer(rc));
  for (size_t i = 0; i < records.size(); ++i) {
    RLVR_RETURN_IF_ERROR(composer->CheckRecord(records[i], f.in_path, lines[i]));
  }

  if (!fs::is_directory(f.model_dir)) {
    return absl::NotFoundError(absl::StrCat("--model: ", f.model_dir, " is not a directory"));
  }
  RLVR_ASSIGN_OR_RETURN(policy::LoadedModel<float> loaded, policy::LoadModel<float>(f.model_dir),
                        "--model");
  policy::CausalLM<float>& model = *loaded.model;
  const std::string tok_path = (fs::path(f.model_dir) / "tokenizer.json").string();
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<policy::Tokenizer> tok,
                        policy::Tokenizer::FromFile(tok_path), "--model");
  if (tok->vocab_size() < model.config().vocab_size) {
    RLVR_RETURN_IF_ERROR(model.set_active_vocab(tok->vocab_size()), tok_path);
  }
  RLVR_ASSIGN_OR_RETURN(std::shared_ptr<const policy::ModelChatTemplate> chat,
                        policy::LoadModelChatTemplateIfAny(f.model_dir));
  RLVR_ASSIGN_OR_RETURN(rollout::PromptTemplate mode, rollout::ParsePromptTemplate(f.template_name),
                        "--template");
  std::optional<bool> thinking;
  if (!f.enable_thinking.empty()) thinking = f.enable_thinking == "true";
  rollout::PromptEncoder encoder(tok.get(), chat, mode, thinking);

  std::vector<Problem> problems(records.size());
  std::vector<std::vector<int32_t>> prompts(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const std::string where = absl::StrCat(f.in_path, ":", lines[i], ": ", f.prompt_key);
    RLVR_ASSIGN_OR_RETURN(prompts[i], encoder.Encode(records[i][f.prompt_key], where));
    const json& p = records[i][f.prompt_key];
    problems[i].prompt_text = p.is_string() ? p.get<std::string>() : p.dump();
    problems[i].line = lines[i];
    problems[i].record = std::make_shared<const json>(records[i]);
  }

  cluster::EvalOptions o;
  o.n = f.n;
  o.sampling = f.sampling;
  o.greedy = f.greedy;
  o.max_new_tokens = f.max_new_tokens;
  o.stop = f.stop;
  for (int64_t id : loaded.eos_token_ids) o.eos_ids.push_back(static_cast<int32_t>(id));
  o.seed = f.seed;
  o.ks = f.ks;
  o.engine = f.engine;
  int64_t unjudged = 0;
  reward::RewardComposer* comp = composer.get();
  cluster::BatchRewardFn score = [&](const std::vector<cluster::ScoreRequest>& requests)
      -> absl::StatusOr<std::vector<cluster::RewardResult>> {
    std::vector<reward::Sample> samples;
    samples.reserve(requests.size());
    for (const cluster::ScoreRequest& r : requests) {
      const Problem& p = problems[r.problem];
      reward::Sample s;
      s.prompt = p.prompt_text;
      s.completion = r.completion;
      s.record = p.record;
      s.completion_tokens = r.completion_tokens;
      s.max_tokens = r.max_new_tokens;
      s.truncated = r.truncated;
      s.source = f.in_path;
      s.line = p.line;
      samples.push_back(std::move(s));
    }
    RLVR_ASSIGN_OR_RETURN(reward::BatchRewards batch, comp->Score(samples));
    std::vector<cluster::RewardResult> out(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      const reward::SampleReward& sr = batch.samples[i];
      out[i].total = sr.total;
      out[i].correct = sr.correct.value_or(false);
      unjudged += !sr.correct.has_value();
      for (size_t c = 0; c < comp->components().size(); ++c) {
        if (sr.applied[c]) out[i].components[comp->components()[c].name] = sr.components[c];
      }
    }
    return out;
  };

  ProgressBar bar(static_cast<int64_t>(records.size()) * (f.n + (f.greedy ? 1 : 0)), "eval",
                  {.unit = "samples"});
  RLVR_ASSIGN_OR_RETURN(cluster::EvalReport report,
                        cluster::RunEval(&model, prompts, score, *tok, o,
                                         [&bar](const rollout::Completion&) { bar.Add(1); }),
                        f.in_path);
  bar.Finish();
  if (unjudged > 0) {
    std::fprintf(stderr,
                 "rlvr eval: warning: %lld completions had no accuracy verdict "
                 "(no accuracy "
                 "verifier applied); counted as wrong\n",
                 static_cast<long long>(unjudged));
  }

  if (!f.out_path.empty()) {
    RLVR_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> writer, JsonlWriter::Open(f.out_path),
                          "--out");
    for (const cluster::EvalSample& s : report.samples) {
      const Problem& p = problems[s.problem];
      json o = json::object();
      o["index"] = s.problem;
      o["line"] = p.line;
      if (p.record->contains("id")) o["id"] = (*p.record)["id"];
      o["sample"] = s.sample;
      o["greedy"] = s.greedy;
      o["prompt"] = (*p.record)[f.prompt_key];
      o["completion"] = s.completion;
      o["completion_tokens"] = s.tokens.size();
      o["finish_reason"] = rollout::FinishReasonName(s.finish_reason);
      o["reward"] = s.reward.total;
      o["correct"] = s.reward.correct;
      o["rewards"] = s.reward.components;
      RLVR_RETURN_IF_ERROR(writer->Write(o), f.out_path);
    }
    RLVR_RETURN_IF_ERROR(writer->Close(), f.out_path);
  }

  std::vector<std::string> verifiers;
  for (const auto& c : composer->components()) verifiers.push_back(c.name);
  std::printf(
      "rlvr eval: %lld problems x %lld samples (temperature %s, "
      "max_new_tokens %lld), "
      "verifier %s\n",
      static_cast<long long>(report.problems), static_cast<long long>(report.n),
      Fmt(f.sampling.temperature).c_str(), static_cast<long long>(f.max_new_tokens),
      absl::StrJoin(verifiers, "/").c_str());
  json summary = {{"model", f.model_dir},
                  {"in", f.in_path},
                  {"problems", report.problems},
                  {"n", report.n},
                  {"temperature", f.sampling.temperature},
                  {"max_new_tokens", f.max_new_tokens},
                  {"seed", f.seed},
                  {"mean_reward", report.mean_reward},
                  {"generated_tokens", report.generated_tokens},
                  {"generate_seconds", report.generate_seconds}};
  json pass = json::object();
  for (const auto& [k, v] : report.pass_at_k) {
    std::printf("pass@%-4lld %.4f\n", static_cast<long long>(k), v);
    pass[absl::StrCat(k)] = v;
  }
  summary["pass_at_k"] = pass;
  if (report.greedy_accuracy.has_value()) {
    std::printf("greedy accuracy %.4f\n", *report.greedy_accuracy);
    summary["greedy_accuracy"] = *report.greedy_accuracy;
  }
  std::printf("mean reward %.4f\n", report.mean_reward);
  std::fflush(stdout);
  if (report.clipped_max_new_tokens > 0) {
    std::fprintf(stderr,
                 "rlvr eval: max_new_tokens was clipped to the model's context "
                 "for %lld prompts\n",
                 static_cast<long long>(report.clipped_max_new_tokens));
  }
  std::fprintf(
      stderr, "rlvr eval: %lld tokens generated in %.2f s (%.0f tok/s)%s%s\n",
      static_cast<long long>(report.generated_tokens), report.generate_seconds,
      report.generate_seconds > 0 ? report.generated_tokens / report.generate_seconds : 0.0,
      f.out_path.empty() ? "" : " -> ", f.out_path.c_str());
  if (!f.summary_path.empty()) {
    RLVR_RETURN_IF_ERROR(WriteFileAtomically(f.summary_path, summary.dump(1) + "\n"), "--summary");
  }
  return absl::OkStatus();
}

}  // namespace

int EvalMain(const Args& args) {
  CLI::App app(
      "pass@1 and pass@k of a model on a JSONL data set, judged by "
      "the verifiers.",
      "rlvr eval");
  EvalFlags f;
  app.add_option("--model", f.model_dir, "model directory (Hugging Face layout)")->required();
  app.add_option("--in", f.in_path, "problems: JSONL with the prompt and the verifier's fields")
      ->required();
  app.add_option("--n", f.n, "sampled completions per problem (K)")->capture_default_str();
  app.add_option("--temperature", f.sampling.temperature, "sampling temperature (0 = greedy)")
      ->capture_default_str();
  app.add_option("--top-p", f.sampling.top_p, "nucleus mass in (0, 1]");
  app.add_option("--top-k", f.sampling.top_k, "keep the k most probable (0 = off)");
  app.add_option("--min-p", f.sampling.min_p, "keep p >= min_p * max p (0 = off)");
  app.add_option("--max-new-tokens", f.max_new_tokens, "token budget per completion")
      ->capture_default_str();
  app.add_option("--stop", f.stop, "stop string (repeatable)");
  app.add_option("--seed", f.seed, "problem i samples with seed Mix64(seed ^ Mix64(i + 1))")
      ->capture_default_str();
  app.add_flag("--greedy", f.greedy, "also one greedy completion per problem (greedy accuracy)");
  app.add_option("--k", f.ks, "pass@k to report (repeatable; default 1, powers of 2, K)");
  app.add_option("--verifier", f.verifier,
                 "auto (route by the data-source field, else math), math, "
                 "code, countdown, or a "
                 "plugin's verifier")
      ->capture_default_str();
  app.add_option("--config", f.config_path,
                 "run config whose reward.verifiers (and data.*_key) judge the "
                 "completions");
  app.add_option("--template", f.template_name, "prompt wrapping: raw, r1-zero, chat")
      ->capture_default_str();
  app.add_option("--enable-thinking", f.enable_thinking, "Qwen3 chat templates: true or false")
      ->check(CLI::IsMember({"true", "false"}));
  app.add_option("--prompt-key", f.prompt_key, "field holding the prompt")->capture_default_str();
  app.add_option("--answer-key", f.answer_key, "field holding the gold answer (math)")
      ->capture_default_str();
  app.add_option("--data-source-key", f.data_source_key,
                 "field naming the data source (--verifier auto)")
      ->capture_default_str();
  app.add_option("--limit", f.limit, "evaluate only the first N problems (0 = all)");
  app.add_option("--out", f.out_path, "per-completion JSONL (see the file comment)");
  app.add_option("--summary", f.summary_path, "the numbers as JSON");
  app.add_option("--max-batch", f.engine.max_batch, "samples decoded together")
      ->capture_default_str();
  app.add_option("--max-tokens-in-flight", f.engine.max_tokens_in_flight,
                 "KV cache size in positions (bounds memory)")
      ->capture_default_str();
  if (int status = ParseCommandArgs(app, args); status >= 0) return status == 0 ? 0 : 2;
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "rlvr eval: %s\n", msg.c_str());
    return 2;
  };
  if (f.n < 1) return usage(absl::StrCat("--n: must be >= 1 (samples per problem), got ", f.n));
  if (f.max_new_tokens < 1) {
    return usage(absl::StrCat("--max-new-tokens: must be >= 1, got ", f.max_new_tokens));
  }
  if (f.limit < 0) return usage(absl::StrCat("--limit: must be >= 0, got ", f.limit));
  for (int64_t k : f.ks) {
    if (k < 1 || k > f.n) {
      return usage(absl::StrCat("--k: ", k, " is outside 1..--n (", f.n, ")"));
    }
  }
  if (absl::Status v = f.sampling.Validate(); !v.ok()) {
    return usage(std::string(v.message()));
  }
  if (absl::Status v = f.engine.Validate(); !v.ok()) return usage(std::string(v.message()));
  absl::Status s = Run(f);
  if (!s.ok()) {
    std::fprintf(stderr, "rlvr eval: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace rlvr::cli
