// The GRPO trainer loop: data -> rollout -> verifiers -> advantages -> policy update ->
// metrics and checkpoints, in one process (the embedded mode of DESIGN.md).
//
// A step s (1-based) takes the prompts [(s-1) P, s P) of the training order (P =
// grpo.prompts_per_step; the order is a seeded permutation per epoch), samples
// grpo.group_size completions of each with the rollout engine (seeds derived from the run seed,
// the step and the prompt), scores them with the reward function, computes advantages, and runs
// Learner::GrpoUpdate. Everything a step does is a function of the run seed, the step number and
// the weights/optimizer state, so a run resumed from the checkpoint of step k reproduces the
// uninterrupted run's steps k+1, ... exactly.
//
// The run directory holds:
//   config.yaml          the resolved config
//   metrics.jsonl        one row per step (veRL's metric names where one exists)
//   samples.jsonl        a few sampled completions per step with their rewards
//   tensorboard/         TensorBoard event files (scalars, expert-load histograms, samples)
//   checkpoints/step-N/  model/ (HF layout), optimizer.safetensors, trainer_state.json,
//                        MANIFEST.json (see checkpoint_manager.h)
//   report.html          written by `rlvr report` / at the end of a run
// On resume, rows of metrics.jsonl past the restored step (written after the last checkpoint by
// the killed run) are dropped before training continues.
//
// Modes (trainer.mode):
//   sync        the rollout of step s uses the policy after step s-1 and runs before its update.
//   overlapped  with k = trainer.max_staleness >= 1, the rollout of step s+1 runs on a rollout
//               thread, with its own copy of the policy, CONCURRENTLY with the update of step s.
//               Staleness is fixed, never "whatever is ready": the rollout of step s always uses
//               the policy after step max(0, s-1-k) (the weights the trainer copied after that
//               step), so a run is a deterministic function of its seed whatever the thread
//               timing. k = 0 leaves nothing to overlap (step s+1's rollout needs step s's
//               update): it runs exactly as sync. While training, the rollout thread and the
//               trainer thread each use a fixed share of the OpenMP threads (rollout: half,
//               rounded down, at least 1; trainer: the rest, at least 1), so that they do not
//               oversubscribe the cores, and so that OpenBLAS (OpenMP build) is called
//               single-threaded from each where there are 2 cores (its OpenMP build expects one
//               multi-threaded caller at a time unless built with NUM_PARALLEL; measured, giving
//               the trainer 2 threads beside the rollout's 1 was also slower). The share does
//               not change with timing, so neither do the numerics (which depend on the
//               OpenMP team size: reductions are split across threads; so an overlapped run's
//               update agrees with a sync run's to float rounding, not bit for bit, even at
//               staleness 0).
//   Importance ratio: when a step's rollout is stale (staleness = s-1 - its policy step > 0),
//   the "old" logprobs are the behaviour policy's, recorded by the rollout; at staleness 0 (sync
//   mode, k = 0, and the first steps of an overlapped run) the learner's own forward gives them
//   exactly, as in sync mode.
//   Memory: the rollout thread's copy of the policy, plus the copies of the weights after the
//   last min(k, step) + 1 steps that pending and future rollouts need.
//   Checkpoints of an overlapped run also hold stale_weights.safetensors: the policies after
//   steps max(0, N-k) .. N-1 (N = the checkpoint's step), which the pending rollout of step N+1
//   and the next ones use; a resumed run regenerates those rollouts from them and reproduces the
//   uninterrupted run exactly. Resuming with a larger k than the checkpoint holds, or an
//   overlapped run from a sync checkpoint, is FailedPrecondition naming trainer.max_staleness.
//   Metrics: trainer/staleness, trainer/rollout_weights_step, and timing_s/{gen, reward,
//   rollout (wall of the step's rollout), wait_rollout (the trainer thread blocked on it),
//   update, overlap (seconds this step's rollout ran alongside the previous step's update),
//   step (the trainer thread's wall time for the step)}.
//
// Router replay (grpo.router_replay, MoE models only; InvalidArgument naming the key for a dense
// model): the rollout records the experts every MoE layer chose for every prompt and completion
// token, and the learner's forwards of the update replay them (learner.h). The reference model
// of the KL term routes with its own router. Metric moe/replayed_tokens.
//
// A NaN/Inf loss or gradient skips that update (the weights are untouched) and is counted; after
// trainer.max_bad_steps consecutive skipped steps the run stops with FailedPrecondition, without
// writing a checkpoint of the current state.
#ifndef RLVR_CLUSTER_TRAINER_H_
#define RLVR_CLUSTER_TRAINER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/eval.h"
#include "nlohmann/json.hpp"
#include "policy/model/model.h"
#include "policy/text/tokenizer.h"
#include "proto/config.pb.h"

namespace rlvr::cluster {

struct TrainerInputs {
  proto::RunConfig config;
  std::vector<nlohmann::json> train;  // dataset records
  PromptFn prompt;
  RewardFn reward;
  const policy::Tokenizer* tokenizer = nullptr;  // decode completions; not owned
  std::vector<int32_t> eos_ids;
  // The initial policy (owned by the trainer). The reference model for the KL term is a frozen
  // copy of it when grpo.kl_coef != 0.
  std::unique_ptr<policy::CausalLM<float>> model;
  // Directory whose tokenizer files are copied into every checkpoint's model/ (may be empty).
  std::string tokenizer_dir;
  // Called after every step with its metrics row (progress output).
  std::function<void(const nlohmann::json&)> on_step;
};

class Trainer {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(TrainerInputs inputs);
  ~Trainer();

  // Runs to trainer.total_steps. With `resume`, continues from the newest checkpoint of the run
  // directory that verifies (FailedPrecondition if there is none).
  absl::Status Run(bool resume);

  policy::CausalLM<float>* model();
  int64_t step() const;

 private:
  struct State;
  explicit Trainer(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace rlvr::cluster

#endif  // RLVR_CLUSTER_TRAINER_H_
