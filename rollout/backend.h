// The model side of the rollout engine: what the engine needs from a causal LM.
//
// DecodeBackend runs new tokens at given positions against paged KV caches and returns the
// next-token logits of the last new token of each sequence. CausalLmBackend adapts
// policy::CausalLM<float> (its Decode() takes the paged views directly). Tests plug in other
// backends.
//
// Thread safety: none; the engine drives one backend from one thread.
#ifndef RLVR_ROLLOUT_BACKEND_H_
#define RLVR_ROLLOUT_BACKEND_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "policy/model/model.h"

namespace rlvr::rollout {

class DecodeBackend {
 public:
  virtual ~DecodeBackend() = default;

  virtual int64_t num_layers() const = 0;    // L (one KV cache view per layer and sequence)
  virtual int64_t kv_row_elems() const = 0;  // Hkv * D
  virtual int64_t vocab_size() const = 0;    // V, the width of a logits row
  virtual int64_t valid_vocab() const = 0;   // ids >= this are padding (never sampled)
  virtual int64_t max_positions() const = 0;  // context length
  // Router replay: MoE layers and experts per token whose choices Run() records (0: none).
  virtual int64_t num_moe_layers() const { return 0; }
  virtual int64_t experts_per_token() const { return 0; }

  // ids [B, Tn] at positions [B, Tn] (row-major); caches: L * B views, layer-major
  // (caches[l * B + b]), with capacity for every position, holding positions below
  // positions[b, 0]. Writes the new tokens' keys/values and the logits of each sequence's LAST
  // new token to last_logits [B, V] f32.
  virtual absl::Status Run(const int32_t* ids, const int32_t* positions, int64_t B, int64_t Tn,
                           std::span<const kernels::KvCacheView<float>> caches,
                           float* last_logits) = 0;

  // After Run(): experts chosen for its B*Tn tokens by MoE layer `moe_layer` (0-based among
  // the MoE layers), [B*Tn, K]; null if not recorded.
  virtual const int32_t* ChosenExperts(int64_t moe_layer) const {
    (void)moe_layer;
    return nullptr;
  }
};

// Packs every weight matrix of `model` once for the decode steps (kernels::PackedWeights):
// under MatmulPrecision::kBf16 the per-step products then skip converting the weights; under
// kHighest it packs nothing. The weights must not change while the result lives (a backend
// is made for one generation phase).
inline std::unique_ptr<kernels::PackedWeights> PackModelWeights(
    const policy::CausalLM<float>& model) {
  std::vector<kernels::PackedWeights::Matrix> matrices;
  for (const policy::ParamInfo& p : model.params()) {
    if (p.shape.size() == 2) {
      matrices.push_back({model.param_data() + p.offset, p.shape[0], p.shape[1]});
    }
  }
  return std::make_unique<kernels::PackedWeights>(matrices);
}

// Adapter for policy::CausalLM<float> (not owned; must outlive the backend). With
// record_experts, ChosenExperts() returns each MoE layer's routing of the last Run()
// (CausalLM::decode_chosen_experts), so the engine records router choices for replay; the
// tokens and logits are the same either way.
class CausalLmBackend : public DecodeBackend {
 public:
  explicit CausalLmBackend(policy::CausalLM<float>* model, bool record_experts = false)
      : model_(model), packed_(PackModelWeights(*model)) {
    if (!record_experts) return;
    for (int64_t l = 0; l < model_->config().num_hidden_layers; ++l) {
      if (model_->config().IsMoeLayer(l)) moe_layers_.push_back(l);
    }
  }

  int64_t num_layers() const override { return model_->config().num_hidden_layers; }
  int64_t kv_row_elems() const override {
    return model_->config().num_key_value_heads * model_->config().head_dim;
  }
  int64_t vocab_size() const override { return model_->config().vocab_size; }
  int64_t valid_vocab() const override { return model_->active_vocab(); }
  int64_t max_positions() const override { return model_->config().max_position_embeddings; }
  int64_t num_moe_layers() const override { return static_cast<int64_t>(moe_layers_.size()); }
  int64_t experts_per_token() const override {
    return moe_layers_.empty() ? 0 : model_->config().num_experts_per_tok;
  }

  absl::Status Run(const int32_t* ids, const int32_t* positions, int64_t B, int64_t Tn,
                   std::span<const kernels::KvCacheView<float>> caches,
                   float* last_logits) override {
    return model_->Decode(ids, positions, B, Tn, caches, last_logits);
  }
  const int32_t* ChosenExperts(int64_t moe_layer) const override {
    if (moe_layer < 0 || moe_layer >= num_moe_layers()) return nullptr;
    return model_->decode_chosen_experts(moe_layers_[moe_layer]);
  }

 private:
  policy::CausalLM<float>* model_;
  std::unique_ptr<kernels::PackedWeights> packed_;
  std::vector<int64_t> moe_layers_;  // decoder layer of each recorded MoE layer
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_BACKEND_H_
