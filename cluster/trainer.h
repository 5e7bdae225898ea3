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
