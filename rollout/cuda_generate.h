// Generation on one NVIDIA GPU (`rlvr generate --device cuda`, issue 7): the model runs in
// policy::CudaCausalLm (prefill and batched decode against its own paged KV pool in device
// memory), and every token is sampled on the host by rollout::Sampler from the logits row that
// comes back.
//
// Why not rollout::Engine: a DecodeBackend receives host KvCacheViews (the engine owns the KV
// cache in host memory and shares prompt blocks between samples); CudaCausalLm keeps its KV
// cache on the device, so it cannot honour those views. CudaGenerator is the small loop below
// instead, with the engine's request semantics:
//   - the same Validate checks and messages (`request <i>: ...`), the same clipping of
//     max_new_tokens to the context (EngineStats::clipped_max_new_tokens, finish "length");
//   - the same randomness: sample s of a request draws its t-th token with
//     Rng(seed, s).Split(t).UniformDouble() and the same Sampler (temperature / top-p / top-k /
//     min-p / repetition penalty), so a request's tokens do not depend on the batch;
//   - the same records: tokens, policy logprobs at temperature 1, sampling logprobs, finish
//     reason (EOS, stop strings, max_new_tokens; StopChecker) and text_end;
//   - completions returned ordered by (request, sample).
// What differs from the CPU engine:
//   - no prefix sharing: each of a request's G samples prefills the prompt into its own KV slot
//     (G prefills instead of one; EngineStats::prompt_tokens counts every prefilled token);
//   - continuous batching over max_batch slots: a finished sample frees its slot and blocks at
//     once and the next waiting sample (FIFO: the rest of the current request, then the next
//     request) is prefilled and joins the next decode step. Admission reserves each sample's
//     worst case (prompt + max_new_tokens, in blocks of block_size) in a pool of
//     max_tokens_in_flight positions, so nothing is preempted;
//   - numerics: the GPU computes in bf16 (see policy/model/cuda_model.h), so tokens match
//     `--device cpu --dtype bfloat16` up to near-ties of the logits, not bit for bit;
//   - router replay (record_experts, MoE models): Completion::experts / prompt_experts are
//     filled in the CPU engine's layout ([tokens, moe_layers, K], the last token's row -1;
//     [prompt tokens, moe_layers, K]) from CudaCausalLm::recorded_experts(); the prompt's rows
//     come from each sample's own prefill (no sharing), the same for every sample up to the
//     GPU's determinism;
//   - every decode step copies the full logits [B, V] fp32 to the host (sampling on the device
//     is not implemented).
//
// Errors: CudaGenerator::Create fails as CudaCausalLm::Create does (Unimplemented without the
// CUDA backend, FailedPrecondition without a GPU, InvalidArgument for an unsupported config or
// bad options). Thread safety: none.
#ifndef RLVR_ROLLOUT_CUDA_GENERATE_H_
#define RLVR_ROLLOUT_CUDA_GENERATE_H_

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "policy/model/cuda_model.h"
#include "policy/model/model.h"
#include "rollout/engine.h"

namespace rlvr::rollout {

class CudaGenerator {
 public:
  // Uploads `model` (with its active vocabulary) to the GPU. options: max_batch (KV slots
  // decoded together), max_tokens_in_flight (the KV pool in positions), block_size,
  // clip_to_context, as for Engine. record_experts: fill Completion::experts / prompt_experts
  // for router replay (as CausalLmBackend's record_experts; nothing for dense models).
  static absl::StatusOr<std::unique_ptr<CudaGenerator>> Create(
      const policy::CausalLM<float>& model, const EngineOptions& options,
      TokenBytesFn token_bytes = {}, bool record_experts = false);

  // As Engine::Generate.
  absl::StatusOr<std::vector<Completion>> Generate(
      std::span<const GenerationRequest> requests,
      const std::function<void(const Completion&)>& on_done = {});

  const EngineStats& stats() const { return stats_; }

 private:
  CudaGenerator(std::unique_ptr<policy::CudaCausalLm> model, const EngineOptions& options,
                TokenBytesFn token_bytes, int64_t max_positions, bool record_experts);
  absl::Status ValidateRequest(int64_t index, const GenerationRequest& r, int64_t* max_new) const;
  int64_t BlocksFor(int64_t positions) const {
    return (positions + options_.block_size - 1) / options_.block_size;
  }

  std::unique_ptr<policy::CudaCausalLm> model_;
  EngineOptions options_;
  TokenBytesFn token_bytes_;
  bool record_experts_ = false;
  int64_t max_positions_;
  int64_t num_blocks_;
  EngineStats stats_;
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_CUDA_GENERATE_H_
