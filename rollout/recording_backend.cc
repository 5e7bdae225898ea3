#include "rollout/recording_backend.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "policy/layers/common.h"
#include "policy/layers/embedding.h"

namespace rlvr::rollout {
namespace layers = policy::layers;

absl::StatusOr<std::unique_ptr<RecordingBackend>> RecordingBackend::Create(
    policy::CausalLM<float>* model) {
  std::unique_ptr<RecordingBackend> b(new RecordingBackend(model));
  b->packed_ = PackModelWeights(*model);
  const policy::ModelConfig& c = model->config();
  auto find = [&](const std::string& name, bool required, int64_t* out) -> absl::Status {
    const policy::ParamInfo* p = model->FindParam(name);
    if (p == nullptr) {
      if (required) {
        return absl::InvalidArgumentError(
            absl::StrCat("recording backend: the model has no parameter ", name));
      }
      *out = -1;
      return absl::OkStatus();
    }
    *out = p->offset;
    return absl::OkStatus();
  };
  b->attn_cfg_ = {.hidden = c.hidden_size,
                  .heads = c.num_attention_heads,
                  .kv_heads = c.num_key_value_heads,
                  .head_dim = c.head_dim,
                  .qk_norm = c.qk_norm,
                  .rms_eps = c.rms_norm_eps};
  b->mlp_cfg_ = {.hidden = c.hidden_size, .intermediate = c.intermediate_size};
  if (c.is_moe()) {
    b->moe_cfg_ = {.hidden = c.hidden_size,
                   .experts = c.num_experts,
                   .top_k = c.num_experts_per_tok,
                   .intermediate = c.moe_intermediate_size,
                   .scoring = c.scoring_func == policy::ScoringFunc::kSigmoid
                                  ? layers::MoeScoring::kSigmoid
                                  : layers::MoeScoring::kSoftmax,
                   .norm_topk_prob = c.norm_topk_prob,
                   .routed_scaling_factor = c.routed_scaling_factor,
                   .n_group = c.n_group,
                   .topk_group = c.topk_group,
                   .shared_intermediate = c.n_shared_experts * c.moe_intermediate_size,
                   .shared_gate = false};
  }
  RLVR_RETURN_IF_ERROR(find("model.embed_tokens.weight", true, &b->embed_));
  RLVR_RETURN_IF_ERROR(find("model.norm.weight", true, &b->final_norm_));
  RLVR_RETURN_IF_ERROR(find("lm_head.weight", !c.tie_word_embeddings, &b->lm_head_));
  if (b->lm_head_ < 0) b->lm_head_ = b->embed_;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    Layer li;
    RLVR_RETURN_IF_ERROR(find(p + "input_layernorm.weight", true, &li.input_norm));
    RLVR_RETURN_IF_ERROR(find(p + "post_attention_layernorm.weight", true, &li.post_norm));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.q_proj.weight", true, &li.wq));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.k_proj.weight", true, &li.wk));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.v_proj.weight", true, &li.wv));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.o_proj.weight", true, &li.wo));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.q_proj.bias", c.attention_bias, &li.bq));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.k_proj.bias", c.attention_bias, &li.bk));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.v_proj.bias", c.attention_bias, &li.bv));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.o_proj.bias", c.attention_out_bias, &li.bo));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.q_norm.weight", c.qk_norm, &li.q_norm));
    RLVR_RETURN_IF_ERROR(find(p + "self_attn.k_norm.weight", c.qk_norm, &li.k_norm));
    li.moe = c.IsMoeLayer(l);
    if (li.moe) {
      RLVR_RETURN_IF_ERROR(find(p + "mlp.gate.weight", true, &li.router));
      RLVR_RETURN_IF_ERROR(find(p + "mlp.gate.e_score_correction_bias",
                                c.use_score_correction_bias, &li.correction_bias));
      // The model stores each projection of all experts stacked, expert 0 first.
      RLVR_RETURN_IF_ERROR(find(p + "mlp.experts.0.gate_proj.weight", true, &li.gate));
      RLVR_RETURN_IF_ERROR(find(p + "mlp.experts.0.up_proj.weight", true, &li.up));
      RLVR_RETURN_IF_ERROR(find(p + "mlp.experts.0.down_proj.weight", true, &li.down));
      const bool shared = c.n_shared_experts > 0;
      RLVR_RETURN_IF_ERROR(
          find(p + "mlp.shared_experts.gate_proj.weight", shared, &li.shared_gate));
      RLVR_RETURN_IF_ERROR(find(p + "mlp.shared_experts.up_proj.weight", shared, &li.shared_up));
      RLVR_RETURN_IF_ERROR(
          find(p + "mlp.shared_experts.down_proj.weight", shared, &li.shared_down));
      b->moe_layers_.push_back(l);
    } else {
      RLVR_RETURN_IF_ERROR(find(p + "mlp.gate_proj.weight", true, &li.gate));
      RLVR_RETURN_IF_ERROR(find(p + "mlp.up_proj.weight", true, &li.up));
      RLVR_RETURN_IF_ERROR(find(p + "mlp.down_proj.weight", true, &li.down));
    }
    b->layers_.push_back(li);
  }
  b->experts_.resize(b->moe_layers_.size());
  return b;
}

absl::Status RecordingBackend::Attention(const Layer& li, const int32_t* positions, int64_t B,
                                         int64_t Tn,
                                         std::span<const kernels::KvCacheView<float>> caches) {
  const policy::ModelConfig& c = model_->config();
  const int64_t N = B * Tn, C = c.hidden_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, D = c.head_dim;
  // Projections, q/k norm and RoPE as in layers::AttentionForward; h_ is the normed input and
  // y_ receives the output.
  float* q = layers::Resize(&q_, N * H * D);
  float* k = layers::Resize(&k_, N * Hkv * D);
  float* v = layers::Resize(&v_, N * Hkv * D);
  if (c.qk_norm) {
    float* q_raw = layers::Resize(&q_raw_, N * H * D);
    float* k_raw = layers::Resize(&k_raw_, N * Hkv * D);
    kernels::LinearForward<float>(h_.data(), W(li.wq), W(li.bq), N, C, H * D, q_raw);
    kernels::LinearForward<float>(h_.data(), W(li.wk), W(li.bk), N, C, Hkv * D, k_raw);
    kernels::RmsNormForward<float>(q_raw, W(li.q_norm), N * H, D, c.rms_norm_eps, q,
                                   layers::Resize(&rstd_, N * H));
    kernels::RmsNormForward<float>(k_raw, W(li.k_norm), N * Hkv, D, c.rms_norm_eps, k,
                                   layers::Resize(&rstd_, N * Hkv));
  } else {
    kernels::LinearForward<float>(h_.data(), W(li.wq), W(li.bq), N, C, H * D, q);
    kernels::LinearForward<float>(h_.data(), W(li.wk), W(li.bk), N, C, Hkv * D, k);
  }
  kernels::LinearForward<float>(h_.data(), W(li.wv), W(li.bv), N, C, Hkv * D, v);
  kernels::RopeForward<float>(rope_, H, D, q);
  kernels::RopeForward<float>(rope_, Hkv, D, k);
  kernels::KvCacheWrite<float>(k, v, positions, B, Tn, Hkv, D, caches);
  float* o = layers::Resize(&o_, N * H * D);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  bool fresh = B == 1 && Tn > 1;
  for (int64_t t = 0; fresh && t < Tn; ++t) fresh = positions[t] == t;
  if (fresh) {
    // A whole prompt from position 0: the GEMM-based causal kernel of the full forward.
    kernels::AttentionForward<float>(q, k, v, 1, Tn, H, Hkv, D, scale, o,
                                     layers::Resize(&lse_, H * Tn));
  } else {
    kernels::AttentionCachedForward<float>(q, positions, B, Tn, H, Hkv, D, scale, caches, o);
  }
  kernels::LinearForward<float>(o, W(li.wo), nullptr, N, H * D, C, y_.data());
  return absl::OkStatus();
}

absl::Status RecordingBackend::Run(const int32_t* ids, const int32_t* positions, int64_t B,
                                   int64_t Tn, std::span<const kernels::KvCacheView<float>> caches,
                                   float* last_logits) {
  const policy::ModelConfig& c = model_->config();
  const int64_t L = c.num_hidden_layers, C = c.hidden_size, V = c.vocab_size;
  if (B <= 0 || Tn <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("decode: empty batch [", B, ", ", Tn, "]"));
  }
  if (static_cast<int64_t>(caches.size()) != L * B) {
    return absl::InvalidArgumentError(
        absl::StrCat("decode: ", caches.size(), " cache views, expected layers * B = ", L * B));
  }
  for (int64_t i = 0; i < B * Tn; ++i) {
    if (positions[i] < 0 || positions[i] >= caches[i / Tn].capacity()) {
      return absl::InvalidArgumentError(absl::StrCat("decode: position ", positions[i],
                                                     " outside the cache capacity ",
                                                     caches[i / Tn].capacity()));
    }
  }
  const int64_t N = B * Tn;
  float* x = layers::Resize(&x_, N * C);
  float* h = layers::Resize(&h_, N * C);
  float* y = layers::Resize(&y_, N * C);
  RLVR_RETURN_IF_ERROR(layers::EmbeddingForward<float>(ids, W(embed_), N, V, C, x),
                       "decode ids");
  kernels::BuildRopeTable<float>(positions, N, c.head_dim, c.rope_theta, &rope_);
  int64_t m = 0;
  for (int64_t l = 0; l < L; ++l) {
    const Layer& li = layers_[l];
    layers::RmsNormForward<float>(x, W(li.input_norm), N, C, c.rms_norm_eps, &norm_, h);
    RLVR_RETURN_IF_ERROR(
        Attention(li, positions, B, Tn, caches.subspan(static_cast<size_t>(l * B), B)),
        "layer ", l, " attention");
    if (li.bo >= 0) {
      const float* bias = W(li.bo);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t j = 0; j < C; ++j) y[n * C + j] += bias[j];
      }
    }
    kernels::Add<float>(x, y, N * C, x);
    layers::RmsNormForward<float>(x, W(li.post_norm), N, C, c.rms_norm_eps, &norm_, h);
    if (li.moe) {
      layers::MoeWeights<float> mw;
      mw.router = W(li.router);
      mw.correction_bias = W(li.correction_bias);
      mw.gate = W(li.gate);
      mw.up = W(li.up);
      mw.down = W(li.down);
      mw.shared = {.gate = W(li.shared_gate), .up = W(li.shared_up), .down = W(li.shared_down)};
      RLVR_RETURN_IF_ERROR(layers::MoeForward<float>(moe_cfg_, mw, h, N, nullptr, &moe_, y),
                           "layer ", l, " moe");
      experts_[m].assign(moe_.topk_experts.begin(),
                         moe_.topk_experts.begin() + N * moe_cfg_.top_k);
      ++m;
    } else {
      const layers::MlpWeights<float> w = {.gate = W(li.gate), .up = W(li.up), .down = W(li.down)};
      layers::MlpForward<float>(mlp_cfg_, w, h, N, &mlp_, y);
    }
    kernels::Add<float>(x, y, N * C, x);
  }
  for (int64_t b = 0; b < B; ++b) {
    std::copy(x + (b * Tn + Tn - 1) * C, x + (b * Tn + Tn) * C, y + b * C);
  }
  layers::RmsNormForward<float>(y, W(final_norm_), B, C, c.rms_norm_eps, &norm_, h);
  kernels::LinearForward<float>(h, W(lm_head_), nullptr, B, C, V, last_logits);
  const int64_t active = model_->active_vocab();
  if (active < V) {
    for (int64_t b = 0; b < B; ++b) {
      std::fill(last_logits + b * V + active, last_logits + (b + 1) * V,
                -std::numeric_limits<float>::infinity());
    }
  }
  return absl::OkStatus();
}

const int32_t* RecordingBackend::ChosenExperts(int64_t moe_layer) const {
  if (moe_layer < 0 || moe_layer >= static_cast<int64_t>(experts_.size()) ||
      experts_[moe_layer].empty()) {
    return nullptr;
  }
  return experts_[moe_layer].data();
}

}  // namespace rlvr::rollout
