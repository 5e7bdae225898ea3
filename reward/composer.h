// The RewardComposer: scores a batch of samples with the configured verifiers and combines them.
//
// A reward spec (the config's `reward` section) is a list of components {name, weight,
// data_sources, options}. For each sample, a component applies when its data_sources list is
// empty or contains the sample's data source (the record's `data.data_source_key` field, veRL's
// data_source); this is how the accuracy verifier is chosen per example (math for gsm8k and
// math500, code for mbpp, ...). The sample's total reward is sum_i weight_i * reward_i over the
// applied components; per-component rewards, accuracy and error counts are returned for logging.
//
// Failure policy:
//   - bad data is an error of the whole batch (InvalidArgument) naming `file:line`, the verifier
//     and the field: a record without the field a verifier needs, a record without the data
//     source field when a component routes on it, a data source that no component accepts;
//   - a verifier that throws, returns another error, returns a non-finite reward, or runs past
//     its timeout gives that component 0 for that sample, is counted, and is logged (stderr, the
//     first `max_logged_errors` per composer, plus BatchRewards::error_messages); the run goes
//     on. A hung verifier's thread is abandoned (deadline_executor.h). A verifier that crashes
//     the process (a segfault) cannot be contained in-process: run such code in the sandbox or
//     behind a reward server.
//
// Thread-safe: Score() may be called from several threads.
#ifndef RLVR_REWARD_COMPOSER_H_
#define RLVR_REWARD_COMPOSER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "reward/deadline_executor.h"
#include "reward/registry.h"
#include "reward/verifier.h"

namespace rlvr::reward {

struct RewardComponentSpec {
  std::string name;  // registered verifier name
  double weight = 1.0;
  std::vector<std::string> data_sources;  // empty: every sample
  VerifierOptions options;                // passed to the factory
  double timeout_seconds = 0;             // 0: ComposerSettings::timeout_seconds
};

struct ComposerSettings {
  std::vector<RewardComponentSpec> components;
  std::string data_source_key;  // record field naming the data source; needed for routing
  double timeout_seconds = 10.0;
  int threads = 0;         // verifier worker threads; 0: hardware concurrency
  int max_abandoned = 16;  // hung verifier threads tolerated before refusing work
  int max_logged_errors = 20;
};

// Builds settings from a run config: reward.verifiers (a component's `timeout_seconds` option is
// taken out of its options), reward.timeout_seconds, data.data_source_key, and defaults for
// built-ins: overlong's buffer_tokens/penalty from reward.overlong_*, math's answer_key from
// data.answer_key. Errors name the key (`reward.verifiers.1.options.timeout_seconds: ...`).
absl::StatusOr<ComposerSettings> ComposerSettingsFromConfig(const proto::RunConfig& config);

struct SampleReward {
  double total = 0;
  std::vector<double> components;    // [num components]; 0 where not applied or failed
  std::vector<uint8_t> applied;      // [num components]
  std::vector<std::string> details;  // [num components]; verdict detail or "error"/"timeout"
  std::optional<bool> correct;       // from the first applied accuracy verifier
  int errors = 0;                    // failed components (including timeouts)
};

struct ComponentStats {
  std::string name;
  double weight = 0;
  int64_t applied = 0;
  double mean = 0;  // over applied samples (failures count as 0)
  double std = 0;   // population std over applied samples
  int64_t errors = 0;
  int64_t timeouts = 0;
};

struct BatchRewards {
  std::vector<SampleReward> samples;
  std::vector<ComponentStats> components;
  double total_mean = 0;
  double total_std = 0;
  int64_t judged = 0;  // samples with a `correct` verdict
  int64_t correct = 0;
  double accuracy = 0;  // correct / judged (0 when nothing judged)
  int64_t errors = 0;
  int64_t timeouts = 0;
  std::vector<std::string> error_messages;  // at most ComposerSettings::max_logged_errors
};

class RewardComposer {
 public:
  // Creates every component's verifier from `registry` (errors name `reward.verifiers.N`).
  static absl::StatusOr<std::unique_ptr<RewardComposer>> Create(ComposerSettings settings,
                                                                const VerifierRegistry& registry);
  ~RewardComposer();

  // Checks that `record` carries what the applicable verifiers need (call it on a dataset at
  // load time). InvalidArgument naming `source:line`, the field and the verifier.
  absl::Status CheckRecord(const nlohmann::json& record, const std::string& source,
                           int64_t line) const;

  // Scores all samples. Errors only for bad data (see the header comment) and for a pool that
  // refuses work because too many verifiers hang (Unavailable).
  absl::StatusOr<BatchRewards> Score(const std::vector<Sample>& samples);

  const std::vector<RewardComponentSpec>& components() const { return settings_.components; }

 private:
  struct Component;
  RewardComposer(ComposerSettings settings, std::vector<std::shared_ptr<Component>> components);
  // Indices of the components that apply to `record`, or the routing error.
  absl::StatusOr<std::vector<int>> Route(const nlohmann::json* record,
                                         const std::string& where) const;
  void LogError(const std::string& message, BatchRewards* out);

  ComposerSettings settings_;
  std::vector<std::shared_ptr<Component>> components_;
  bool routed_ = false;
  std::unique_ptr<DeadlineExecutor> executor_;
  std::atomic<int64_t> logged_{0};
};

// Batch metrics for metrics.jsonl: reward/<name>/mean|std|errors|timeouts per component (a name
// used twice gets a `#index` suffix), critic/score/mean|std (veRL's names for the total),
// reward/accuracy, reward/errors, reward/timeouts.
std::vector<std::pair<std::string, double>> RewardMetrics(const BatchRewards& rewards);

// Convenience for the trainer: a registry with the built-ins and reward.plugins loaded, and a
// composer for `config`.
absl::StatusOr<std::unique_ptr<RewardComposer>> CreateRewardComposer(
    const proto::RunConfig& config);

}  // namespace rlvr::reward

#endif  // RLVR_REWARD_COMPOSER_H_
