// CausalLM: the whole decoder-only language model (Qwen3-MoE, DeepSeek-style MoE, Qwen3, Qwen2,
// Llama) assembled from policy/layers, with a hand-written backward.
//
//   x = embed_tokens[ids]                                           [N, C]
//   for each layer l:  x += self_attn(input_layernorm(x))            (+ o_proj bias if the
//                      x += mlp_or_moe(post_attention_layernorm(x))    config has one)
//   h = norm(x);  logits = h lm_head^T   (lm_head = embed_tokens when tied)   [N, V]
//
// Parameters live in one contiguous buffer in float32 (or double for tests), addressed by the
// exact tensor names transformers uses (model.layers.3.mlp.experts.5.gate_proj.weight, ...);
// gradients live in a second buffer of the same layout. The experts of a MoE layer are stored
// stacked ([E, I, C]) so the layer kernels can dispatch over them; each expert still has its
// own named parameter pointing into the stack.
//
// Usage (training):
//   RLVR_ASSIGN_OR_RETURN(auto model, CausalLM<float>::Create(config));
//   RLVR_RETURN_IF_ERROR(model->Forward(ids, B, T));            // trunk, activations kept
//   RLVR_RETURN_IF_ERROR(model->TokenLogProbs(targets, logprob, entropy));
//   model->ZeroGrads();
//   RLVR_RETURN_IF_ERROR(model->Backward(dlogprob, dentropy, aux_weight));
// The full-vocabulary logits are never materialized beyond one block of rows at a time by
// TokenLogProbs/Backward (the LM head is recomputed per block in the backward); Logits()
// writes all N x V of them for callers that want them.
//
// Decode: Decode() runs new tokens at given positions against caller-owned KV caches (paged
// views, kernels/attention.h); KvCache is a simple contiguous owner of such caches.
//
// Vocabulary padding: set_active_vocab(n) masks logits of ids >= n (a vocab_size larger than
// the tokenizer's): Logits()/Decode() write -inf there and log-softmax ignores them.
//
// Thread safety: none; one model is driven by one thread (the kernels use the OpenMP team).
// Errors: InvalidArgument for bad inputs (ids out of range, wrong sizes), naming the argument.
#ifndef RLVR_POLICY_MODEL_MODEL_H_
#define RLVR_POLICY_MODEL_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/attention.h"
#include "kernels/rope.h"
#include "policy/layers/attention.h"
#include "policy/layers/mlp.h"
#include "policy/layers/moe.h"
#include "policy/layers/rmsnorm.h"
#include "policy/model/config.h"

namespace rlvr::policy {

// One named parameter tensor (a view into the model's parameter buffer).
struct ParamInfo {
  std::string name;            // transformers name, e.g. "model.norm.weight"
  std::vector<int64_t> shape;  // e.g. [C]
  int64_t offset = 0;          // element offset into the parameter and gradient buffers
  int64_t numel = 0;
  bool trainable = true;  // false for e_score_correction_bias (updated by load balancing)
  bool decay = true;      // weight decay applies (false for norms, biases, embeddings' 1-D)
};

// Per-layer MoE routing statistics of the last forward.
struct MoeLayerStats {
  int64_t layer = 0;
  std::vector<int64_t> expert_count;  // [E] tokens routed to each expert (assignments)
};

template <typename T>
class CausalLM {
 public:
  // Allocates the parameters (zero) for `config` (validated). InvalidArgument from Validate().
  static absl::StatusOr<std::unique_ptr<CausalLM>> Create(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const std::vector<ParamInfo>& params() const { return params_; }
  // Null if there is no parameter of that name.
  const ParamInfo* FindParam(const std::string& name) const;
  T* param_data() { return weights_.data(); }
  const T* param_data() const { return weights_.data(); }
  T* grad_data() { return grads_.data(); }
  const T* grad_data() const { return grads_.data(); }
  int64_t num_param_elements() const { return static_cast<int64_t>(weights_.size()); }
  T* data(const ParamInfo& p) { return weights_.data() + p.offset; }
  T* grad(const ParamInfo& p) { return grads_.data() + p.offset; }

  // Hugging Face initialization: weights ~ N(0, std), RMSNorm weights 1, biases and correction
  // biases 0. Deterministic for a seed.
  void InitRandom(uint64_t seed, double std = 0.02);
  void ZeroGrads();

  // Ids >= active_vocab get probability 0 (default: vocab_size). 1 <= n <= vocab_size.
  absl::Status set_active_vocab(int64_t n);
  int64_t active_vocab() const { return active_vocab_; }

  // Runs the trunk on ids [B, T] (right-padded sequences; row (b, t) sits at position t) and
  // keeps every activation for TokenLogProbs/Logits/Backward. forced_experts: empty, or one
  // entry per decoder layer, each null or (MoE layers) [B*T, K] expert ids to use instead of the
  // router's choice (router replay; rows of -1 are routed by the router, see MoeForward).
  // positions [B, T], or null: packed rows (sequence packing). Each row holds several
  // sequences back to back; a sequence's positions are 0, 1, 2, ... (RoPE uses them), a 0
  // starts the next sequence, and attention never crosses a sequence boundary, so every
  // sequence gets exactly the logprobs and gradients it gets alone in a row of its own (up to
  // float rounding). Backward uses the same packing. The MoE aux loss is the only quantity
  // computed over the whole batch. InvalidArgument for ids outside [0, vocab_size) and for
  // positions that do not start at 0 in each row or neither restart at 0 nor go up by one.
  absl::Status Forward(const int32_t* ids, int64_t B, int64_t Tn,
                       std::span<const int32_t* const> forced_experts = {},
                       const int32_t* positions = nullptr);

  int64_t tokens() const { return n_; }  // N = B*T of the last Forward
  // Final hidden states [N, C] of the last Forward.
  const T* hidden() const { return final_.data(); }

  // logits [N, V] of the last Forward (ids >= active_vocab set to -inf).
  absl::Status Logits(T* logits);

  // For every row n of the last Forward, with targets[n] the token whose probability is wanted
  // (usually ids[n + 1]; a negative target means "skip": logprob 0): logprob[n] = log p(target),
  // entropy[n] = entropy of the row's next-token distribution (either may be null). Computed a
  // block of rows at a time with the fused log-softmax. Keeps the log-sum-exp for Backward.
  absl::Status TokenLogProbs(const int32_t* targets, T* logprob, T* entropy);

  // Backward of the loss L whose gradients with respect to TokenLogProbs' outputs are
  // dlogprob[N] (and dentropy[N], may be null), plus aux_weight times the MoE load-balancing
  // loss. ACCUMULATES into the gradient buffer. Needs Forward then TokenLogProbs (same targets).
  absl::Status Backward(const T* dlogprob, const T* dentropy, double aux_weight = 0.0);

  // MoE load-balancing loss of the last Forward (0 for dense models), HF's
  // load_balancing_loss_func over all MoE layers (without router_aux_loss_coef).
  double aux_loss() const { return aux_loss_; }
  // Routing counts of every MoE layer in the last Forward.
  std::vector<MoeLayerStats> moe_stats() const;
  // Chosen experts [N, K] of decoder layer `layer` in the last Forward (null for dense layers
  // or before any Forward).
  const int32_t* chosen_experts(int64_t layer) const;
  // Chosen experts [B*Tn, K] of decoder layer `layer` in the last Decode (for router replay of
  // sampled tokens); null for dense layers or before any Decode.
  const int32_t* decode_chosen_experts(int64_t layer) const;

  // DeepSeek-V3 aux-loss-free balancing: bias_e += rate * sign(mean load - load_e) for every
  // layer with a correction bias, from the last Forward's counts.
  void UpdateCorrectionBias(double rate);

  // Incremental decoding. ids [B, Tn] are new tokens at positions [B, Tn]; caches has
  // num_hidden_layers * B views, layer-major (caches[l * B + b]), each with capacity beyond the
  // largest position, holding positions below positions[b, 0] from earlier calls. Writes the
  // logits of the LAST new token of each sequence to last_logits [B, V] (masked as Logits()).
  absl::Status Decode(const int32_t* ids, const int32_t* positions, int64_t B, int64_t Tn,
                      std::span<const kernels::KvCacheView<T>> caches, T* last_logits);

 private:
  struct LayerIndex {
    int64_t input_norm = -1, post_norm = -1;
    int64_t wq = -1, bq = -1, wk = -1, bk = -1, wv = -1, bv = -1, wo = -1, bo = -1;
    int64_t q_norm = -1, k_norm = -1;
    bool moe = false;
    int64_t mlp_gate = -1, mlp_up = -1, mlp_down = -1;  // dense MLP, or stacked experts
    int64_t router = -1, correction_bias = -1;
    int64_t shared_gate = -1, shared_up = -1, shared_down = -1;
  };
  struct LayerActs {
    std::vector<T> x_in;  // [N, C] residual stream entering the layer
    layers::RmsNormActivations<T> ln1;
    std::vector<T> ln1_out;  // [N, C]
    layers::AttentionActivations<T> attn;
    std::vector<T> mid;  // [N, C] residual after attention
    layers::RmsNormActivations<T> ln2;
    std::vector<T> ln2_out;  // [N, C]
    layers::MlpActivations<T> mlp;
    layers::MoeActivations<T> moe;
  };

  explicit CausalLM(const ModelConfig& config);
  int64_t AddParam(const std::string& name, std::vector<int64_t> shape, bool decay = true,
                   bool trainable = true);
  const T* W(int64_t offset) const { return offset < 0 ? nullptr : weights_.data() + offset; }
  T* G(int64_t offset) { return offset < 0 ? nullptr : grads_.data() + offset; }
  layers::AttentionWeights<T> AttnWeights(const LayerIndex& li) const;
  layers::AttentionGrads<T> AttnGrads(const LayerIndex& li);
  layers::MoeWeights<T> MoeW(const LayerIndex& li) const;
  layers::MoeGrads<T> MoeG(const LayerIndex& li);
  layers::MlpWeights<T> MlpW(const LayerIndex& li) const;
  layers::MlpGrads<T> MlpG(const LayerIndex& li);
  const T* LmHead() const;
  T* LmHeadGrad();
  int64_t BlockRows() const;
  void MaskLogits(T* logits, int64_t rows) const;
  // Runs one decoder layer's MLP/MoE forward on x [N, C] into y.
  absl::Status FeedForward(int64_t l, const T* x, int64_t N, const int32_t* forced,
                           layers::MlpActivations<T>* mlp, layers::MoeActivations<T>* moe, T* y);

  ModelConfig config_;
  layers::AttentionConfig attn_cfg_;
  layers::MlpConfig mlp_cfg_;
  layers::MoeConfig moe_cfg_;
  std::vector<ParamInfo> params_;
  absl::flat_hash_map<std::string, int64_t> param_index_;
  std::vector<LayerIndex> layer_idx_;
  int64_t embed_ = -1, final_norm_ = -1, lm_head_ = -1;
  std::vector<T> weights_;
  std::vector<T> grads_;
  int64_t active_vocab_ = 0;

  // Activations of the last Forward.
  int64_t b_ = 0, t_ = 0, n_ = 0;
  std::vector<int32_t> ids_;
  std::vector<int32_t> positions_;
  std::vector<int32_t> seg_start_;  // [N] packed rows: t - position; empty when not packed
  kernels::RopeTable<T> rope_;
  std::vector<LayerActs> acts_;
  std::vector<T> resid_out_;  // [N, C] residual stream after the last layer
  layers::RmsNormActivations<T> final_norm_act_;
  std::vector<T> final_;  // [N, C]
  std::vector<int32_t> targets_;
  std::vector<T> lse_, entropy_;  // [N]
  bool have_logprobs_ = false;
  double aux_loss_ = 0;
  std::vector<T> block_;  // [rows, V] scratch for one block of logits

  // Decode scratch.
  std::vector<T> dec_x_, dec_h_, dec_y_;
  layers::AttentionActivations<T> dec_attn_;
  layers::MlpActivations<T> dec_mlp_;
  std::vector<layers::MoeActivations<T>> dec_moe_;  // one per layer (keeps the choices)
  int64_t dec_n_ = 0;
  layers::RmsNormActivations<T> dec_norm_;
  kernels::RopeTable<T> dec_rope_;
};

// A contiguous KV cache for B sequences of up to `capacity` positions and every layer of a
// model, handing out the views Decode() takes.
template <typename T>
class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t batch, int64_t capacity);
  std::span<const kernels::KvCacheView<T>> views() const { return views_; }
  int64_t capacity() const { return capacity_; }

 private:
  int64_t capacity_;
  std::vector<T> k_, v_;
  std::vector<T*> k_ptrs_, v_ptrs_;
  std::vector<kernels::KvCacheView<T>> views_;
};

extern template class CausalLM<float>;
extern template class CausalLM<double>;
extern template class KvCache<float>;
extern template class KvCache<double>;

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_MODEL_MODEL_H_
