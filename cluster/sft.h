// Supervised fine-tuning on (prompt, completion) token sequences: the loop behind `rlvr sft`.
//
// Loss: the mean negative log-likelihood of the completion tokens of a step's batch (prompt
// tokens are context only), Learner::SftUpdate, then one AdamW step with the trainer's
// optimizer settings and learning-rate schedule (optimizer.*; the schedule's length is the
// run's step count). MoE policies add grpo.router_aux_loss_coef times the load-balancing loss
// and, with grpo.router_bias_update_rate > 0, the aux-loss-free bias update.
//
// Order and batches: the examples are visited in a seeded random order, a new permutation per
// epoch (run seed). A step takes the next examples in that order while its batch stays within
// sft.batch_tokens positions, padding included (always at least one example):
//   packing = true:  examples are packed first-fit into rows of at most max_seq_len tokens
//                    (MakePackedTokenBatch; attention never crosses an example), batch = rows x
//                    longest row;
//   packing = false: one example per row, right-padded, batch = examples x longest example.
// The run has sft.steps steps, or with steps = 0 as many as sft.epochs passes take (the last
// step may be short).
//
// Length limit: max_seq_len = sft.max_seq_len, or min(sft.batch_tokens,
// max_position_embeddings) when 0. An example longer than that keeps its prompt and the start
// of its completion (the completion is truncated); an example whose prompt alone leaves no room
// for a completion token is dropped. Both are counted (SftResult, summary.json, stderr); a data
// set with nothing left is InvalidArgument.
//
// The run directory:
//   config.yaml      the resolved config
//   metrics.jsonl    one row per step: step, epoch, train/loss, train/lr, train/grad_norm,
//                    train/aux_loss, batch/{examples,rows,tokens,target_tokens,pad_fraction},
//                    perf/tokens_per_s (non-padding tokens per second of the update),
//                    timing_s/step, train/skipped_updates
//   tensorboard/     the same scalars as TensorBoard events
//   checkpoints/     step-N/ every sft.save_every steps (model/ in HF layout, optimizer state,
//                    trainer_state.json; cluster/checkpoint_manager.h, trainer.keep_checkpoints)
//   final/           the final model in HF layout with the tokenizer files
//   summary.json     examples, truncated, dropped, steps, first and last loss, seconds
// A non-finite loss or gradient skips that update; after trainer.max_bad_steps consecutive
// skipped steps the run stops with FailedPrecondition and writes no final model.
//
// Not thread-safe; one run per process.
#ifndef RLVR_CLUSTER_SFT_H_
#define RLVR_CLUSTER_SFT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "policy/model/model.h"
#include "proto/config.pb.h"

namespace rlvr::cluster {

struct SftExample {
  std::vector<int32_t> prompt;      // non-empty
  std::vector<int32_t> completion;  // non-empty (EOS included when the caller adds it)
  int64_t line = 0;                 // 1-based line of the data file, for messages
};

struct SftInputs {
  proto::RunConfig config;
  std::vector<SftExample> examples;
  std::unique_ptr<policy::CausalLM<float>> model;  // the initial weights (owned)
  // Directory whose tokenizer files are copied next to every saved model (may be empty).
  std::string tokenizer_dir;
  // Called after every step with its metrics row (progress output).
  std::function<void(const nlohmann::json&)> on_step;
};

struct SftResult {
  int64_t steps = 0;
  int64_t examples = 0;   // used (after dropping)
  int64_t truncated = 0;  // completions cut to fit max_seq_len
  int64_t dropped = 0;    // prompts that leave no room for a completion token
  int64_t max_seq_len = 0;
  double first_loss = 0;
  double last_loss = 0;
  double seconds = 0;
  std::string final_dir;                           // run_dir/final
  std::unique_ptr<policy::CausalLM<float>> model;  // the trained model
};

// The examples of each step (see the file comment), as indices into `lengths` (example i has
// lengths[i] <= max_seq_len tokens). Examples are taken in the order order(0), order(1), ...
// (epochs concatenated), until `max_steps` steps are planned or `max_slots` examples are taken (0:
// no limit; at least one limit must be set). Every step is non-empty, and its batch (packed rows x
// longest row, or examples x longest example) is at most batch_tokens unless it holds a single
// example. Exposed for tests.
std::vector<std::vector<int64_t>> PlanSftSteps(const std::function<int64_t(int64_t)>& order,
                                               const std::vector<int64_t>& lengths, bool packing,
                                               int64_t max_seq_len, int64_t batch_tokens,
                                               int64_t max_steps, int64_t max_slots);

// Runs the SFT loop (see the file comment). InvalidArgument for an empty example list, an example
// with an empty prompt or completion (naming its line), or nothing left after the length limit;
// errors of the file system pass through with the path.
absl::StatusOr<SftResult> RunSft(SftInputs inputs);

}  // namespace rlvr::cluster

#endif  // RLVR_CLUSTER_SFT_H_
