// CudaTrainModel: the training step of a CausalLM on one NVIDIA GPU (issue 7): forward with
// every activation kept, per-token logprobs and entropies, the hand-written backward through
// every layer, and AdamW with global-norm clipping on the device. Same contract as
// CausalLM<float>'s Forward / TokenLogProbs / Backward (policy/model/model.h), with host inputs
// and outputs, so a learner can drive either.
//
// Numerics (mixed precision, what PyTorch autocast-bf16 training with fp32 master weights does):
//   - master weights, gradients and the AdamW moments are fp32 on the device, in ONE buffer each
//     with exactly the CPU model's layout (ParamInfo offsets), so upload and download are single
//     copies; a bf16 shadow of the parameter buffer (same offsets) feeds every GEMM and is
//     refreshed by the optimizer step (AdamWMultiTensor's bf16 copy).
//   - the residual stream and its gradient are fp32; every GEMM takes bf16 operands and
//     accumulates in fp32 (activations entering a GEMM and the gradients entering a GEMM are
//     rounded to bf16, once); weight gradients accumulate in fp32 (GEMMs with beta = 1 into the
//     fp32 gradient buffer); RMSNorm, RoPE, q/k-norm, softmax statistics and the router run in
//     fp32. Forward numerics equal CudaCausalLm's (policy/model/cuda_model.h) except that q, k, v
//     projections and the dense gate/up products are separate GEMMs writing column slices of
//     one buffer (the CPU layout is kept; the results are the same up to accumulation order).
//   - the LM head is applied a block of `head_rows` rows at a time and recomputed in the
//     backward (as the CPU does): the [N, V] logits are never all in memory.
// Per layer the backward is the reverse of the forward (see cuda_train.cc for the exact list of
// kernels); the MoE layer's router gets the gradient of the routing weights and of the
// load-balancing loss (layers::LoadBalancingLoss, computed on the host from the per-layer
// statistics downloaded at the end of Forward).
//
// Supported: what CudaCausalLm::CheckSupported accepts (qwen3_moe, qwen3, qwen2, llama; softmax
// routing, no correction bias, no group-limited routing, head_dim 16/32/64/128), without the
// Qwen2-MoE shared-expert gate. Packed rows (positions) and router replay (forced experts) are
// supported.
//
// Router replay: Forward's forced_experts (CausalLM::Forward's meaning) are checked on the host
// (InvalidArgument naming the layer, the row and the expert, like the CPU) and uploaded in one
// copy; in each MoE layer MoeApplyForcedExperts then overwrites the router's top-k of the forced
// rows after MoeRouterTopK, so the dispatch, the routing statistics (moe_stats, the aux loss)
// and MoeRouterBackward (the gradient of the replayed experts' weights, which are still the
// router's probabilities) all use the replayed experts, as the CPU does.
//
// Errors: InvalidArgument for bad inputs, named as CausalLM names them (ids outside the
// vocabulary, targets outside the active vocabulary, B*T above max_tokens, bad positions);
// FailedPrecondition for calls out of order; Unimplemented without the CUDA backend;
// FailedPrecondition without a GPU; ResourceExhausted when device memory runs out; CUDA errors
// as Internal. Host checks run before any device work, so a rejected call changes nothing.
// Thread safety: none (one thread drives one object). Everything runs on one stream; each call
// returning host data synchronizes.
#ifndef RLVR_POLICY_MODEL_CUDA_TRAIN_H_
#define RLVR_POLICY_MODEL_CUDA_TRAIN_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"

namespace rlvr::policy {

struct CudaTrainOptions {
  int64_t max_tokens = 4096;  // largest B*T a Forward may take (see Reserve)
  int64_t head_rows = 1024;   // rows of logits materialized at a time by the LM head
};

class CudaTrainModel {
 public:
  // Uploads `model`'s parameters (fp32 master copy + bf16 shadow), allocates gradients, AdamW
  // state and the activations for options.max_tokens tokens. Errors as in the file comment.
  static absl::StatusOr<std::unique_ptr<CudaTrainModel>> Create(
      const CausalLM<float>& model, const CudaTrainOptions& options = {});
  // InvalidArgument naming the first feature the CUDA training step lacks. Host only.
  static absl::Status CheckSupported(const ModelConfig& config);
  // Forward's host checks of forced_experts for N = B*T tokens (CausalLM::Forward's and
  // MoeForward's, same messages): one entry per decoder layer, null for dense layers, each row
  // all -1 or K distinct experts in [0, num_experts) ("layer L: moe: forced expert E of token
  // N outside [0, num_experts)"). Empty: OK. Host only.
  static absl::Status CheckForcedExperts(const ModelConfig& config,
                                         std::span<const int32_t* const> forced_experts,
                                         int64_t N);

  ~CudaTrainModel();
  CudaTrainModel(const CudaTrainModel&) = delete;
  CudaTrainModel& operator=(const CudaTrainModel&) = delete;

  const ModelConfig& config() const { return config_; }
  int64_t num_param_elements() const { return num_params_; }
  // Device bytes held (parameters, bf16 shadow, gradients, AdamW state, activations).
  int64_t device_bytes() const;
  // Grows the activations to hold `max_tokens` rows (no-op if they already do). After a growth
  // the next call must be a Forward. InvalidArgument for max_tokens <= 0; ResourceExhausted
  // when device memory runs out (the model then holds no activations until a Reserve succeeds).
  absl::Status Reserve(int64_t max_tokens);

  // As CausalLM::Forward (ids, positions host arrays [B, T]; forced_experts empty or one host
  // pointer per decoder layer, null or [B*T, K] expert ids for MoE layers, rows of -1 routed by
  // the router).
  absl::Status Forward(const int32_t* ids, int64_t B, int64_t T,
                       std::span<const int32_t* const> forced_experts = {},
                       const int32_t* positions = nullptr);
  // As CausalLM::TokenLogProbs: logprob / entropy host arrays [B*T] (either may be null).
  absl::Status TokenLogProbs(const int32_t* targets, float* logprob, float* entropy);
  // As CausalLM::Backward: ACCUMULATES into the device gradient buffer.
  absl::Status Backward(const float* dlogprob, const float* dentropy, double aux_weight = 0.0);
  absl::Status ZeroGrads();

  double aux_loss() const { return aux_loss_; }
  std::vector<MoeLayerStats> moe_stats() const;

  // One AdamW step over every trainable parameter (the semantics of policy::AdamW::Step with
  // `config`: the learning rate of step t from LearningRate(config, t), clipping, a
  // non-finite norm skips the update and does not advance t). Synchronizes (reads the norm).
  absl::StatusOr<StepStats> OptimizerStep(const AdamWConfig& config);
  int64_t optimizer_steps() const { return step_; }

  // Copies the fp32 master weights into `model` (same config), e.g. to save a checkpoint or to
  // hand the weights to the rollout engine.
  absl::Status DownloadParams(CausalLM<float>* model) const;
  // Replaces the master weights (and the bf16 shadow) by `model`'s.
  absl::Status UploadParams(const CausalLM<float>& model);
  // The gradient buffer [num_param_elements()] in the CPU model's layout.
  absl::Status DownloadGrads(float* host) const;
  // The AdamW moments [num_param_elements()] each, in the CPU model's layout (entries of
  // non-trainable parameters stay 0), and the step count: to checkpoint the optimizer through a
  // host policy::AdamW and to resume from one.
  absl::Status DownloadOptimizerState(float* exp_avg, float* exp_avg_sq) const;
  absl::Status UploadOptimizerState(const float* exp_avg, const float* exp_avg_sq, int64_t steps);

  struct Impl;

 private:
  CudaTrainModel(const ModelConfig& config, const CudaTrainOptions& options);

  ModelConfig config_;
  CudaTrainOptions options_;
  int64_t num_params_ = 0;
  int64_t param_bytes_ = 0;
  int64_t step_ = 0;
  double aux_loss_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_MODEL_CUDA_TRAIN_H_
