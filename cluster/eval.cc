#include "cluster/eval.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "core/status.h"
#include "rollout/backend.h"

namespace rlvr::cluster {

namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

BatchRewardFn PerSampleReward(const std::vector<nlohmann::json>* records, RewardFn reward) {
  using Results = absl::StatusOr<std::vector<RewardResult>>;
  return [records, reward = std::move(reward)](const std::vector<ScoreRequest>& rs) -> Results {
    std::vector<RewardResult> out;
    out.reserve(rs.size());
    for (const ScoreRequest& r : rs) {
      RLVR_ASSIGN_OR_RETURN(
          RewardResult res,
          reward((*records)[r.problem], r.completion, r.completion_tokens, r.max_new_tokens),
          "eval record ", r.problem);
      out.push_back(std::move(res));
    }
    return out;
  };
}

double PassAtK(int64_t n, int64_t c, int64_t k) {
  RLVR_CHECK(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n, "PassAtK(n=", n, ", c=", c, ", k=", k,
             ")");
  if (n - c < k) return 1.0;  // every k-subset holds a correct sample
  // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i): a product of factors in (0, 1].
  double fail = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) fail *= 1.0 - static_cast<double>(k) / i;
  return 1.0 - fail;
}

std::vector<int64_t> DefaultPassKs(int64_t n) {
  std::vector<int64_t> ks;
  for (int64_t k = 1; k < n; k *= 2) ks.push_back(k);
  if (n >= 1) ks.push_back(n);
  return ks;
}

std::string CompletionText(const policy::Tokenizer& tokenizer, const rollout::Completion& c) {
  std::string text = tokenizer.Decode(c.tokens, /*skip_special_tokens=*/true);
  if (c.text_end >= 0 && c.text_end < static_cast<int64_t>(text.size())) text.resize(c.text_end);
  return text;
}

absl::StatusOr<std::vector<rollout::Completion>> GenerateCompletions(
    policy::CausalLM<float>* model, const policy::Tokenizer& tokenizer,
    const std::vector<rollout::GenerationRequest>& requests, const rollout::EngineOptions& options,
    rollout::EngineStats* stats, const std::function<void(const rollout::Completion&)>& on_done) {
  rollout::CausalLmBackend backend(model);
  RLVR_ASSIGN_OR_RETURN(auto engine,
                        rollout::Engine::Create(&backend, options, [&tokenizer](int32_t id) {
                          return tokenizer.TokenBytes(id);
                        }));
  RLVR_ASSIGN_OR_RETURN(auto completions, engine->Generate(requests, on_done));
  if (stats != nullptr) *stats = engine->stats();
  return completions;
}

double EvalReport::PassAt(int64_t k) const {
  for (const auto& [kk, v] : pass_at_k) {
    if (kk == k) return v;
  }
  return 0.0;
}

absl::StatusOr<EvalReport> RunEval(policy::CausalLM<float>* model,
                                   const std::vector<std::vector<int32_t>>& prompts,
                                   const BatchRewardFn& reward, const policy::Tokenizer& tokenizer,
                                   const EvalOptions& options,
                                   const std::function<void(const rollout::Completion&)>& on_done) {
  if (options.n < 0 || (options.n == 0 && !options.greedy)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval: n (samples per problem) must be >= 1, or 0 with greedy; got ", options.n));
  }
  std::vector<int64_t> ks = options.ks.empty() ? DefaultPassKs(options.n) : options.ks;
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  for (int64_t k : ks) {
    if (k < 1 || k > options.n) {
      return absl::InvalidArgumentError(
          absl::StrCat("eval: pass@", k, " needs 1 <= k <= n = ", options.n));
    }
  }
  if (options.n > 0) RLVR_RETURN_IF_ERROR(options.sampling.Validate(), "eval sampling");
  if (options.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval: max_new_tokens must be >= 1, got ", options.max_new_tokens));
  }
  EvalReport report;
  report.problems = static_cast<int64_t>(prompts.size());
  report.n = options.n;
  report.correct.assign(prompts.size(), 0);
  if (prompts.empty()) return report;

  std::vector<rollout::GenerationRequest> greedy, sampled;
  for (size_t i = 0; i < prompts.size(); ++i) {
    rollout::GenerationRequest r;
    r.prompt = prompts[i];
    r.stop.eos_ids = options.eos_ids;
    r.stop.stop_strings = options.stop;
    r.stop.max_new_tokens = options.max_new_tokens;
    r.seed = Mix64(options.seed ^ Mix64(i + 1));
    if (options.greedy) {
      r.sampling.temperature = 0.0;
      greedy.push_back(r);
    }
    if (options.n > 0) {
      r.sampling = options.sampling;
      r.num_samples = options.n;
      sampled.push_back(std::move(r));
    }
  }
  // Greedy first, then the samples (two engine passes; see the file comment).
  std::vector<rollout::Completion> completions;
  auto t_gen = std::chrono::steady_clock::now();
  for (const auto* requests : {&greedy, &sampled}) {
    if (requests->empty()) continue;
    rollout::EngineStats stats;
    RLVR_ASSIGN_OR_RETURN(auto out, GenerateCompletions(model, tokenizer, *requests, options.engine,
                                                        &stats, on_done));
    report.generated_tokens += stats.generated_tokens;
    report.clipped_max_new_tokens =
        std::max(report.clipped_max_new_tokens, stats.clipped_max_new_tokens);
    const bool is_greedy = requests == &greedy;
    for (auto& c : out) {
      EvalSample s;
      s.problem = c.request;
      s.sample = c.sample;
      s.greedy = is_greedy;
      s.completion = CompletionText(tokenizer, c);
      s.tokens = std::move(c.tokens);
      s.finish_reason = c.finish_reason;
      s.max_new_tokens = c.max_new_tokens > 0 ? c.max_new_tokens : options.max_new_tokens;
      report.samples.push_back(std::move(s));
    }
  }
  report.generate_seconds = Seconds(t_gen);
  // Sampled first in the report (problem-major, as the engine returns them), greedy last.
  std::stable_partition(report.samples.begin(), report.samples.end(),
                        [](const EvalSample& s) { return !s.greedy; });

  auto t_score = std::chrono::steady_clock::now();
  std::vector<ScoreRequest> requests;
  requests.reserve(report.samples.size());
  for (const EvalSample& s : report.samples) {
    ScoreRequest r;
    r.problem = s.problem;
    r.completion = s.completion;
    r.completion_tokens = static_cast<int64_t>(s.tokens.size());
    r.max_new_tokens = s.max_new_tokens;
    r.truncated = s.finish_reason == rollout::FinishReason::kLength;
    requests.push_back(std::move(r));
  }
  RLVR_ASSIGN_OR_RETURN(std::vector<RewardResult> scores, reward(requests));
  if (scores.size() != requests.size()) {
    return absl::InternalError(absl::StrCat("eval: the reward returned ", scores.size(),
                                            " results for ", requests.size(), " completions"));
  }
  report.score_seconds = Seconds(t_score);
  int64_t greedy_correct = 0, sampled_count = 0;
  double reward_sum = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    EvalSample& s = report.samples[i];
    s.reward = std::move(scores[i]);
    if (s.greedy) {
      greedy_correct += s.reward.correct;
    } else {
      report.correct[s.problem] += s.reward.correct;
      reward_sum += s.reward.total;
      ++sampled_count;
    }
  }
  if (sampled_count > 0) report.mean_reward = reward_sum / sampled_count;
  if (options.greedy) {
    report.greedy_accuracy = static_cast<double>(greedy_correct) / report.problems;
  }
  for (int64_t k : ks) {
    double sum = 0;
    for (int64_t c : report.correct) sum += PassAtK(options.n, c, k);
    report.pass_at_k.emplace_back(k, sum / report.problems);
  }
  return report;
}

absl::StatusOr<EvalResult> Evaluate(policy::CausalLM<float>* model,
                                    const std::vector<nlohmann::json>& records,
                                    const PromptFn& prompt, const RewardFn& reward,
                                    const policy::Tokenizer& tokenizer,
                                    const std::vector<int32_t>& eos_ids, int64_t max_new_tokens,
                                    int64_t k, uint64_t seed) {
  EvalResult result;
  result.problems = static_cast<int64_t>(records.size());
  result.k = k;
  if (records.empty()) return result;
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i = 0; i < records.size(); ++i) {
    RLVR_ASSIGN_OR_RETURN(auto p, prompt(records[i]), "eval record ", i);
    prompts.push_back(std::move(p));
  }
  EvalOptions o;
  o.n = k;
  o.sampling.temperature = 1.0;
  o.greedy = true;
  o.max_new_tokens = max_new_tokens;
  o.eos_ids = eos_ids;
  o.seed = seed;
  if (k > 0) o.ks = {k};
  o.engine.max_batch = 256;
  o.engine.max_tokens_in_flight = 1 << 20;
  o.engine.block_size = 16;
  RLVR_ASSIGN_OR_RETURN(EvalReport r,
                        RunEval(model, prompts, PerSampleReward(&records, reward), tokenizer, o));
  result.accuracy = r.greedy_accuracy.value_or(0.0);
  if (k > 0) result.pass_at_k = r.PassAt(k);
  return result;
}

}  // namespace rlvr::cluster
