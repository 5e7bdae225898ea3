// The learner: turns (prompt, completion) token sequences into padded batches and runs the
// model's forward/backward and the optimizer for the GRPO and SFT objectives.
//
// Layout of a TokenBatch ([B, T] row-major, right-padded): row b holds prompt + completion
// tokens; position t predicts token t+1, so the logprob of completion token j (at position
// p + j, p = prompt length) lives at index p + j - 1. `mask` marks exactly those indices.
//
// Packed batches (MakePackedTokenBatch, for SFT): a row holds several (prompt, completion)
// examples back to back, then padding. `positions` restarts at 0 for each example, and the
// model keeps attention inside each example (CausalLM::Forward), so an example's loss and
// gradient are those it has alone; the mask marks each example's completion targets only (the
// last token of an example never predicts the next example's first).
//
// GRPO step (GrpoUpdate): the batch is split in `mini_batches` parts of whole groups; each part
// runs forward -> per-token logprobs -> ComputePolicyLoss -> backward -> AdamW step, for
// `ppo_epochs` passes. The behaviour ("old") logprobs are either given (the rollout's, for the
// overlapped mode where the policy may have moved on) or, when the batch takes exactly one
// optimizer step, taken from the same forward that is differentiated, so the importance ratio
// is exactly 1 and the clip fraction 0 on-policy; with several steps they are recomputed by a
// forward of the current weights before the first update (veRL's recomputed old_log_prob).
//
// Router replay (MoE): a batch may carry, for every position and MoE layer, the experts the
// rollout's router chose (AttachRouterReplay). Every forward of the learner over that batch
// (the differentiated one, the recomputed old logprobs, LogProbs) then uses those experts
// instead of its own router's choice (CausalLM::Forward's forced_experts): completion tokens get
// the experts chosen when the rollout fed them, prompt tokens the experts of the rollout's
// prefill when it recorded them; positions without a record (the last completion token, which
// the rollout never fed; padding; prompts without a record) keep the learner's own routing.
// The routing weights of the replayed experts are still the learner's router probabilities, so
// the router gets gradients through them (and through the aux loss), only the top-k selection
// is fixed. Without a record the learner routes as usual.
//
// Not thread-safe; the model and optimizer are borrowed and must outlive the learner.
#ifndef RLVR_CLUSTER_LEARNER_H_
#define RLVR_CLUSTER_LEARNER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "policy/losses/policy_loss.h"
#include "policy/model/cuda_train.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"
#include "proto/config.pb.h"

namespace rlvr::cluster {

struct TokenBatch {
  int64_t B = 0;
  int64_t T = 0;
  std::vector<int32_t> ids;      // [B, T], padding 0
  std::vector<int32_t> targets;  // [B, T], the next token where mask is set, else -1
  std::vector<uint8_t> mask;     // [B, T]
  // [B]: prompt and completion lengths; in a packed row, summed over its examples (so
  // prompt_len + completion_len is the row's used length either way).
  std::vector<int64_t> prompt_len;
  std::vector<int64_t> completion_len;
  // [B, T] packed rows: the position of each token within its example (padding counts as one
  // more example); empty for unpacked batches (position t).
  std::vector<int32_t> positions;
  std::vector<int64_t> examples_per_row;  // [B] (1 per row when unpacked)
  int64_t num_target_tokens() const;
  const int32_t* positions_or_null() const {
    return positions.empty() ? nullptr : positions.data();
  }
  // Router replay (see the file comment): empty, or [B, T, moe_layers, top_k] expert ids with
  // rows of -1 where the learner's router decides.
  int64_t moe_layers = 0;
  int64_t top_k = 0;
  std::vector<int32_t> experts;
  // Positions with replayed experts (rows not -1 in the first MoE layer); 0 without replay.
  int64_t num_replayed_tokens() const;
};

// Builds a batch. Every prompt must be non-empty; a completion may be empty (it then has no
// target tokens). InvalidArgument if the sizes differ.
absl::StatusOr<TokenBatch> MakeTokenBatch(const std::vector<std::vector<int32_t>>& prompts,
                                          const std::vector<std::vector<int32_t>>& completions);

// Packs examples into rows of at most `max_row_tokens` tokens, first-fit in the given order
// (each example goes to the first row with room, else opens a new row); T is the longest row.
// Same preconditions as MakeTokenBatch, and every example must fit: prompt + completion <=
// max_row_tokens (InvalidArgument naming the example otherwise).
absl::StatusOr<TokenBatch> MakePackedTokenBatch(
    const std::vector<std::vector<int32_t>>& prompts,
    const std::vector<std::vector<int32_t>>& completions, int64_t max_row_tokens);

// Attaches the rollout's router choices to `batch` (built by MakeTokenBatch from the same
// prompts and completions): prompt_experts[b] is empty (not recorded) or [prompt_len[b],
// moe_layers, top_k] (rollout::Completion::prompt_experts); completion_experts[b] is
// [completion_len[b], moe_layers, top_k] (rollout::Completion::experts, last row -1).
// InvalidArgument naming the row and the expected shape if a size differs, or for moe_layers or
// top_k < 1; the expert ids themselves are checked by the model's forward.
absl::Status AttachRouterReplay(TokenBatch* batch,
                                const std::vector<std::vector<int32_t>>& prompt_experts,
                                const std::vector<std::vector<int32_t>>& completion_experts,
                                int64_t moe_layers, int64_t top_k);

// Rows [begin, end) of a batch, re-padded to their own longest row.
TokenBatch SliceRows(const TokenBatch& batch, int64_t begin, int64_t end);

// The optimizer's view of `model`: every trainable parameter with its gradient (the MoE
// correction bias, updated by load balancing, is left out). Pointers into `model`.
std::vector<policy::OptimParam> TrainableParams(policy::CausalLM<float>* model);

// AdamW settings from a run config's `optimizer` section for a run of `total_steps` optimizer
// steps (the schedule's length); InvalidArgument naming optimizer.schedule if it is unknown.
absl::StatusOr<policy::AdamWConfig> AdamWConfigFromConfig(const proto::OptimizerConfig& o,
                                                          int64_t total_steps);

struct GrpoUpdateOptions {
  policy::losses::PolicyLossConfig loss;
  int64_t group_size = 1;
  int64_t mini_batches = 1;
  int64_t ppo_epochs = 1;
  double aux_loss_coef = 0.0;      // weight of the MoE load-balancing loss
  double bias_update_rate = 0.0;   // aux-loss-free balancing (DeepSeek-V3), 0 = off
};

struct GrpoUpdateStats {
  double loss = 0;
  policy::losses::PolicyLossStats loss_stats;  // of the last mini-batch, accumulated below
  double clip_frac = 0;        // token-weighted over all mini-batches
  double ratio_mean = 0;
  double approx_kl = 0;
  double kl = 0;               // KL-to-reference estimator (token mean), if kl_coef != 0
  double entropy = 0;          // token mean of the policy entropy
  double grad_norm = 0;        // mean over optimizer steps
  double lr = 0;
  double aux_loss = 0;
  int64_t optimizer_steps = 0;
  int64_t skipped_steps = 0;   // non-finite loss or gradient: the update was not applied
  int64_t tokens = 0;          // tokens forwarded (all rows x padded length)
  int64_t replayed_tokens = 0;  // positions of the batch whose experts were replayed
  std::vector<std::vector<int64_t>> expert_load;  // [moe layer][E] of the last forward
};

class Learner {
 public:
  Learner(policy::CausalLM<float>* model, policy::AdamW* optimizer)
      : model_(model), optimizer_(optimizer) {}

  // Per-token logprobs [B, T] (0 outside the mask) of the batch under the current weights, and
  // the entropies if `entropy` is non-null (replaying the batch's experts if it has them). No
  // gradients. Afterwards model()->chosen_experts(l) gives the experts of this forward.
  absl::StatusOr<std::vector<float>> LogProbs(const TokenBatch& batch,
                                              std::vector<float>* entropy = nullptr);

  // One GRPO update (see the file comment). advantages: [B, T] (0 outside the mask).
  // InvalidArgument if the batch's router replay does not fit the model (MoE layers, top_k).
  // logp_old: [B, T] behaviour logprobs, or empty (recomputed, see above). logp_ref: [B, T]
  // reference logprobs, required when loss.kl_coef != 0.
  absl::StatusOr<GrpoUpdateStats> GrpoUpdate(const TokenBatch& batch,
                                             const std::vector<float>& advantages,
                                             const std::vector<float>& logp_old,
                                             const std::vector<float>& logp_ref,
                                             const GrpoUpdateOptions& options);

  // One SFT step: minimizes the mean negative logprob of the target tokens of the whole batch
  // (every completion token weighs the same, wherever it sits), plus aux_loss_coef times the
  // MoE load-balancing loss. Returns that loss before the update, with the optimizer's
  // gradient norm and learning rate. A non-finite loss or gradient skips the update
  // (`skipped`). InvalidArgument if the batch has no target token.
  struct SftStats {
    double loss = 0;
    double grad_norm = 0;  // before clipping
    double lr = 0;
    double aux_loss = 0;
    bool skipped = false;
    int64_t target_tokens = 0;
  };
  absl::StatusOr<SftStats> SftUpdate(const TokenBatch& batch, double aux_loss_coef,
                                     double bias_update_rate = 0.0);

  policy::CausalLM<float>* model() { return model_; }

  // The GPU learner (`device: cuda`): uploads model()'s weights and the optimizer's state to a
  // policy::CudaTrainModel; from then on LogProbs, GrpoUpdate and SftUpdate run their forward,
  // backward and AdamW step there (same losses and statistics, the optimizer's config and
  // schedule), and each update ends by copying the new weights back into model(), so the
  // rollout, a reference copy and checkpoints see them. The AdamW moments stay on the device:
  // SyncOptimizerToHost() copies them (and the step count) into the host optimizer before it
  // is saved; SyncFromHost() sends model()'s weights and the host optimizer's state to the
  // device (after a resume loaded them on the host). Router replay works as on the CPU (the
  // batch's experts go to CudaTrainModel::Forward). Errors: those of CudaTrainModel::Create
  // (Unimplemented without the CUDA backend, FailedPrecondition without a GPU, InvalidArgument
  // for a config the CUDA kernels do not cover); FailedPrecondition without an optimizer.
  absl::Status UseCuda(const policy::CudaTrainOptions& options = {});
  bool on_cuda() const { return gpu_ != nullptr; }
  absl::Status SyncFromHost();
  absl::Status SyncOptimizerToHost();

 private:
  // The model's forward over the batch, with its replayed experts if it has them.
  absl::Status Forward(const TokenBatch& batch);
  // The rest of the training step on whichever side runs it (CPU model or GPU).
  absl::Status TokenLogProbs(const int32_t* targets, float* logprob, float* entropy);
  absl::Status ZeroGrads();
  absl::Status Backward(const float* dlogprob, double aux_weight);
  double aux_loss() const;
  std::vector<policy::MoeLayerStats> moe_stats() const;
  absl::StatusOr<policy::StepStats> OptimizerStep();
  // GPU: the new weights back into model_ (no-op on the CPU).
  absl::Status WeightsToHost();

  policy::CausalLM<float>* model_;
  policy::AdamW* optimizer_;
  std::unique_ptr<policy::CudaTrainModel> gpu_;
  std::vector<std::vector<int32_t>> forced_;  // per decoder layer [B*T, K] (replay scratch)
};

}  // namespace rlvr::cluster

#endif  // RLVR_CLUSTER_LEARNER_H_
