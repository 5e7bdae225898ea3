// Evaluation of a policy on a verifiable data set: sample completions with the rollout engine,
// score them with a reward function, and report pass@k (used by `rlvr eval`, the trainer's
// held-out evaluation and the demo).
//
// RunEval() takes tokenized prompts (one per problem), samples `n` completions of each with
// the sampling parameters of EvalOptions (and, with `greedy`, one more at temperature 0),
// scores every completion in one batch through a BatchRewardFn, and reports:
//   pass@k  for each requested k <= n, the unbiased estimator of Chen et al. 2021 ("Evaluating
//           Large Language Models Trained on Code", eq. 1) averaged over problems:
//               pass@k = mean_problems [ 1 - C(n - c, k) / C(n, k) ]
//           where c of the n samples are correct. pass@1 is the mean of c / n; pass@n is the
//           fraction of problems with at least one correct sample.
//   greedy accuracy  the fraction of problems whose greedy completion is correct.
// The default ks are 1, every power of two below n, and n.
//
// Determinism: problem i is sampled with the request seed Mix64(seed ^ Mix64(i + 1)) (the
// engine derives every token's random number from it, rollout/engine.h), so a problem's
// completions do not depend on the other problems or on the batch size (up to float rounding
// in batched GEMMs). The greedy and the sampled completions run as two engine passes.
//
// Thread safety: none; the model is driven by the calling thread.
#ifndef RLVR_CLUSTER_EVAL_H_
#define RLVR_CLUSTER_EVAL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "policy/model/model.h"
#include "policy/text/tokenizer.h"
#include "rollout/engine.h"

namespace rlvr::cluster {

struct RewardResult {
  double total = 0;                          // weighted sum of the components
  std::map<std::string, double> components;  // per verifier
  bool correct = false;                      // the accuracy verifier's verdict
};

// Scores one completion of a dataset record. Must be thread-compatible: it is called from one
// thread at a time (the trainer thread, or the rollout thread in overlapped mode). The prompt
// function likewise; the tokenizer's const methods are thread-safe.
using RewardFn = std::function<absl::StatusOr<RewardResult>(
    const nlohmann::json& record, const std::string& completion, int64_t completion_tokens,
    int64_t max_new_tokens)>;

// Turns a dataset record into prompt token ids (applies the chat template).
using PromptFn = std::function<absl::StatusOr<std::vector<int32_t>>(const nlohmann::json& record)>;

// One completion to score: the problem it answers (index into RunEval's prompts), its text and
// length, and the generation budget.
struct ScoreRequest {
  int64_t problem = 0;
  std::string completion;
  int64_t completion_tokens = 0;
  int64_t max_new_tokens = 0;
  bool truncated = false;  // stopped by the token budget
};

// Scores a batch (e.g. with reward::RewardComposer::Score on its worker threads); returns one
// result per request, in order.
using BatchRewardFn =
    std::function<absl::StatusOr<std::vector<RewardResult>>(const std::vector<ScoreRequest>&)>;

// A BatchRewardFn calling `reward` on records[problem] for each request in turn. `records` must
// outlive the returned function.
BatchRewardFn PerSampleReward(const std::vector<nlohmann::json>* records, RewardFn reward);

// The unbiased pass@k estimate of one problem with c correct of n samples:
// 1 - C(n - c, k) / C(n, k), computed as 1 - prod_{i = n-c+1}^{n} (1 - k / i) (no overflow).
// Requires 0 <= c <= n and 1 <= k <= n (RLVR_CHECK).
double PassAtK(int64_t n, int64_t c, int64_t k);

// 1, 2, 4, ... (powers of two below n) and n, ascending without repeats. n >= 1.
std::vector<int64_t> DefaultPassKs(int64_t n);

// Decoded text of a completion: special tokens (EOS) dropped, cut after a stop string.
std::string CompletionText(const policy::Tokenizer& tokenizer, const rollout::Completion& c);

// Runs the engine over `model` (a CausalLmBackend) on `requests`.
absl::StatusOr<std::vector<rollout::Completion>> GenerateCompletions(
    policy::CausalLM<float>* model, const policy::Tokenizer& tokenizer,
    const std::vector<rollout::GenerationRequest>& requests, const rollout::EngineOptions& options,
    rollout::EngineStats* stats = nullptr,
    const std::function<void(const rollout::Completion&)>& on_done = {});

struct EvalOptions {
  int64_t n = 1;                     // sampled completions per problem (0: none, e.g. greedy only)
  rollout::SamplingParams sampling;  // for the n samples
  bool greedy = false;               // also one greedy completion per problem
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;
  std::vector<int32_t> eos_ids;
  uint64_t seed = 0;
  std::vector<int64_t> ks;  // pass@k to report (each 1..n); empty: DefaultPassKs(n)
  rollout::EngineOptions engine;
};

struct EvalSample {
  int64_t problem = 0;
  int64_t sample = 0;  // 0..n-1; 0 for the greedy completion
  bool greedy = false;
  std::string completion;
  std::vector<int32_t> tokens;
  rollout::FinishReason finish_reason = rollout::FinishReason::kNone;
  int64_t max_new_tokens = 0;  // the budget after clipping to the context
  RewardResult reward;
};

struct EvalReport {
  int64_t problems = 0;
  int64_t n = 0;
  std::vector<int64_t> correct;                       // [problems] correct of the n samples
  std::vector<std::pair<int64_t, double>> pass_at_k;  // (k, pass@k), k ascending
  double mean_reward = 0;                             // over the sampled completions
  std::optional<double> greedy_accuracy;              // with EvalOptions::greedy
  std::vector<EvalSample> samples;  // sampled (problem-major), then the greedy ones
  int64_t generated_tokens = 0;
  int64_t clipped_max_new_tokens = 0;  // requests whose budget was clipped to the context
  double generate_seconds = 0;
  double score_seconds = 0;
  // pass@k for one of the reported k; 0 when k was not reported.
  double PassAt(int64_t k) const;
};

// See the file comment. InvalidArgument for bad options (n < 0, n = 0 without greedy, a k outside
// 1..n, bad sampling parameters) or bad prompts (from the engine, naming `request i`); errors of
// `reward` pass through. `on_done` sees every completion as it finishes.
absl::StatusOr<EvalReport> RunEval(
    policy::CausalLM<float>* model, const std::vector<std::vector<int32_t>>& prompts,
    const BatchRewardFn& reward, const policy::Tokenizer& tokenizer, const EvalOptions& options,
    const std::function<void(const rollout::Completion&)>& on_done = {});

struct EvalResult {
  int64_t problems = 0;
  double accuracy = 0;   // greedy (temperature 0), fraction correct
  double pass_at_k = 0;  // at least one of k samples (temperature 1) correct
  int64_t k = 0;
};

// Greedy accuracy and, if k > 0, pass@k (k samples at temperature 1) of `model` on `records`:
// RunEval with greedy = true, n = k.
absl::StatusOr<EvalResult> Evaluate(policy::CausalLM<float>* model,
                                    const std::vector<nlohmann::json>& records,
                                    const PromptFn& prompt, const RewardFn& reward,
                                    const policy::Tokenizer& tokenizer,
                                    const std::vector<int32_t>& eos_ids, int64_t max_new_tokens,
                                    int64_t k, uint64_t seed);

}  // namespace rlvr::cluster

#endif  // RLVR_CLUSTER_EVAL_H_
