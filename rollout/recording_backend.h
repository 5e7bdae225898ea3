// A DecodeBackend that runs a CausalLM<float>'s decoder layer by layer through policy/layers
// and records, for router replay, the experts every MoE layer chose for every new token.
//
// It computes what CausalLM::Decode computes (the same kernels and layer functions on the same
// parameters, looked up by their transformers names), except for attention: a whole prompt
// from position 0 uses the full forward's GEMM-based causal kernel, and decode steps the paged
// kernel CausalLM::Decode uses too (kernels::AttentionCachedForward: cascade attention over the
// blocks forked samples share, kernels/cpu/decode_attention.h). Logits agree with Decode and with the full forward within float rounding
// (tests/rollout/router_replay_test.cc, engine_test.cc). It was written when CausalLM::Decode
// kept only the last MoE layer's routing; Decode now keeps every layer's, and
// CausalLmBackend(model, /*record_experts=*/true) records the same experts (the trainer uses
// that; see docs/rollout.md).
//
// The model is not owned and must outlive the backend; its parameters are read at each Run()
// (so weight updates between calls are seen). Thread safety: none.
#ifndef RLVR_ROLLOUT_RECORDING_BACKEND_H_
#define RLVR_ROLLOUT_RECORDING_BACKEND_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/rope.h"
#include "policy/layers/attention.h"
#include "policy/layers/mlp.h"
#include "policy/layers/moe.h"
#include "policy/layers/rmsnorm.h"
#include "policy/model/model.h"
#include "rollout/backend.h"

namespace rlvr::rollout {

class RecordingBackend : public DecodeBackend {
 public:
  // InvalidArgument (naming the parameter) if the model lacks a parameter its config implies.
  static absl::StatusOr<std::unique_ptr<RecordingBackend>> Create(policy::CausalLM<float>* model);

  int64_t num_layers() const override { return model_->config().num_hidden_layers; }
  int64_t kv_row_elems() const override {
    return model_->config().num_key_value_heads * model_->config().head_dim;
  }
  int64_t vocab_size() const override { return model_->config().vocab_size; }
  int64_t valid_vocab() const override { return model_->active_vocab(); }
  int64_t max_positions() const override { return model_->config().max_position_embeddings; }
  int64_t num_moe_layers() const override { return static_cast<int64_t>(moe_layers_.size()); }
  int64_t experts_per_token() const override { return model_->config().num_experts_per_tok; }
  // Decoder layer index of MoE layer m.
  int64_t moe_layer_index(int64_t m) const { return moe_layers_[m]; }

  absl::Status Run(const int32_t* ids, const int32_t* positions, int64_t B, int64_t Tn,
                   std::span<const kernels::KvCacheView<float>> caches,
                   float* last_logits) override;
  const int32_t* ChosenExperts(int64_t moe_layer) const override;

 private:
  struct Layer {
    int64_t input_norm = -1, post_norm = -1;
    int64_t wq = -1, bq = -1, wk = -1, bk = -1, wv = -1, bv = -1, wo = -1, bo = -1;
    int64_t q_norm = -1, k_norm = -1;
    bool moe = false;
    int64_t gate = -1, up = -1, down = -1;  // dense MLP or expert 0 of the stacks
    int64_t router = -1, correction_bias = -1;
    int64_t shared_gate = -1, shared_up = -1, shared_down = -1;
  };
  explicit RecordingBackend(policy::CausalLM<float>* model) : model_(model) {}
  // Self-attention of layer li on h_ (normed input) into y_, with the new keys/values written
  // to `caches` (B views of this layer).
  absl::Status Attention(const Layer& li, const int32_t* positions, int64_t B, int64_t Tn,
                         std::span<const kernels::KvCacheView<float>> caches);
  const float* W(int64_t offset) const {
    return offset < 0 ? nullptr : model_->param_data() + offset;
  }

  policy::CausalLM<float>* model_;
  std::unique_ptr<kernels::PackedWeights> packed_;
  policy::layers::AttentionConfig attn_cfg_;
  policy::layers::MlpConfig mlp_cfg_;
  policy::layers::MoeConfig moe_cfg_;
  std::vector<Layer> layers_;
  std::vector<int64_t> moe_layers_;
  int64_t embed_ = -1, final_norm_ = -1, lm_head_ = -1;

  std::vector<float> x_, h_, y_;
  std::vector<float> q_, k_, v_, q_raw_, k_raw_, rstd_, o_, lse_;
  policy::layers::RmsNormActivations<float> norm_;
  policy::layers::AttentionActivations<float> attn_;
  policy::layers::MlpActivations<float> mlp_;
  policy::layers::MoeActivations<float> moe_;
  kernels::RopeTable<float> rope_;
  std::vector<std::vector<int32_t>> experts_;  // per MoE layer [B*Tn, K] of the last Run
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_RECORDING_BACKEND_H_
