#include "policy/model/model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/softmax.h"
#include "policy/layers/common.h"
#include "policy/layers/embedding.h"

namespace rlvr::policy {
namespace {

layers::MoeScoring ToLayerScoring(ScoringFunc f) {
  return f == ScoringFunc::kSigmoid ? layers::MoeScoring::kSigmoid : layers::MoeScoring::kSoftmax;
}

// y[n, :] += bias for every row.
template <typename T>
void AddRowBias(const T* bias, int64_t N, int64_t C, T* y) {
  for (int64_t n = 0; n < N; ++n) {
    T* row = y + n * C;
    for (int64_t c = 0; c < C; ++c) row[c] += bias[c];
  }
}

// dbias[c] += sum_n dy[n, c].
template <typename T>
void ColumnSumInto(const T* dy, int64_t N, int64_t C, T* dbias) {
  for (int64_t n = 0; n < N; ++n) {
    const T* row = dy + n * C;
    for (int64_t c = 0; c < C; ++c) dbias[c] += row[c];
  }
}

}  // namespace

template <typename T>
CausalLM<T>::CausalLM(const ModelConfig& config) : config_(config) {}

template <typename T>
int64_t CausalLM<T>::AddParam(const std::string& name, std::vector<int64_t> shape, bool decay,
                              bool trainable) {
  ParamInfo p;
  p.name = name;
  p.numel = 1;
  for (int64_t d : shape) p.numel *= d;
  p.shape = std::move(shape);
  p.offset = params_.empty() ? 0 : params_.back().offset + params_.back().numel;
  p.decay = decay && p.shape.size() >= 2;
  p.trainable = trainable;
  param_index_[p.name] = static_cast<int64_t>(params_.size());
  params_.push_back(std::move(p));
  return params_.back().offset;
}

template <typename T>
absl::StatusOr<std::unique_ptr<CausalLM<T>>> CausalLM<T>::Create(const ModelConfig& config) {
  RLVR_RETURN_IF_ERROR(config.Validate(), "model config");
  std::unique_ptr<CausalLM<T>> m(new CausalLM<T>(config));
  const ModelConfig& c = m->config_;
  const int64_t C = c.hidden_size, V = c.vocab_size, H = c.num_attention_heads,
                Hkv = c.num_key_value_heads, D = c.head_dim;
  m->attn_cfg_ = {.hidden = C,
                  .heads = H,
                  .kv_heads = Hkv,
                  .head_dim = D,
                  .qk_norm = c.qk_norm,
                  .rms_eps = c.rms_norm_eps};
  m->mlp_cfg_ = {.hidden = C, .intermediate = c.intermediate_size};
  if (c.is_moe()) {
    m->moe_cfg_ = {.hidden = C,
                   .experts = c.num_experts,
                   .top_k = c.num_experts_per_tok,
                   .intermediate = c.moe_intermediate_size,
                   .scoring = ToLayerScoring(c.scoring_func),
                   .norm_topk_prob = c.norm_topk_prob,
                   .routed_scaling_factor = c.routed_scaling_factor,
                   .n_group = c.n_group,
                   .topk_group = c.topk_group,
                   .shared_intermediate = c.n_shared_experts * c.moe_intermediate_size,
                   .shared_gate = false};
  }
  m->embed_ = m->AddParam("model.embed_tokens.weight", {V, C});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    LayerIndex li;
    li.input_norm = m->AddParam(p + "input_layernorm.weight", {C});
    li.wq = m->AddParam(p + "self_attn.q_proj.weight", {H * D, C});
    if (c.attention_bias) li.bq = m->AddParam(p + "self_attn.q_proj.bias", {H * D});
    li.wk = m->AddParam(p + "self_attn.k_proj.weight", {Hkv * D, C});
    if (c.attention_bias) li.bk = m->AddParam(p + "self_attn.k_proj.bias", {Hkv * D});
    li.wv = m->AddParam(p + "self_attn.v_proj.weight", {Hkv * D, C});
    if (c.attention_bias) li.bv = m->AddParam(p + "self_attn.v_proj.bias", {Hkv * D});
    li.wo = m->AddParam(p + "self_attn.o_proj.weight", {C, H * D});
    if (c.attention_out_bias) li.bo = m->AddParam(p + "self_attn.o_proj.bias", {C});
    if (c.qk_norm) {
      li.q_norm = m->AddParam(p + "self_attn.q_norm.weight", {D});
      li.k_norm = m->AddParam(p + "self_attn.k_norm.weight", {D});
    }
    li.post_norm = m->AddParam(p + "post_attention_layernorm.weight", {C});
    li.moe = c.IsMoeLayer(l);
    if (li.moe) {
      const int64_t E = c.num_experts, I = c.moe_intermediate_size;
      li.router = m->AddParam(p + "mlp.gate.weight", {E, C});
      if (c.use_score_correction_bias) {
        li.correction_bias = m->AddParam(p + "mlp.gate.e_score_correction_bias", {E},
                                         /*decay=*/false, /*trainable=*/false);
      }
      // Stacked: all experts' gate_proj, then all up_proj, then all down_proj.
      for (int64_t e = 0; e < E; ++e) {
        int64_t off = m->AddParam(absl::StrCat(p, "mlp.experts.", e, ".gate_proj.weight"), {I, C});
        if (e == 0) li.mlp_gate = off;
      }
      for (int64_t e = 0; e < E; ++e) {
        int64_t off = m->AddParam(absl::StrCat(p, "mlp.experts.", e, ".up_proj.weight"), {I, C});
        if (e == 0) li.mlp_up = off;
      }
      for (int64_t e = 0; e < E; ++e) {
        int64_t off = m->AddParam(absl::StrCat(p, "mlp.experts.", e, ".down_proj.weight"), {C, I});
        if (e == 0) li.mlp_down = off;
      }
      if (c.n_shared_experts > 0) {
        const int64_t Is = c.n_shared_experts * I;
        li.shared_gate = m->AddParam(p + "mlp.shared_experts.gate_proj.weight", {Is, C});
        li.shared_up = m->AddParam(p + "mlp.shared_experts.up_proj.weight", {Is, C});
        li.shared_down = m->AddParam(p + "mlp.shared_experts.down_proj.weight", {C, Is});
      }
    } else {
      const int64_t I = c.intermediate_size;
      li.mlp_gate = m->AddParam(p + "mlp.gate_proj.weight", {I, C});
      li.mlp_up = m->AddParam(p + "mlp.up_proj.weight", {I, C});
      li.mlp_down = m->AddParam(p + "mlp.down_proj.weight", {C, I});
    }
    m->layer_idx_.push_back(li);
  }
  m->final_norm_ = m->AddParam("model.norm.weight", {C});
  if (!c.tie_word_embeddings) m->lm_head_ = m->AddParam("lm_head.weight", {V, C});
  const int64_t total = m->params_.back().offset + m->params_.back().numel;
  m->weights_.assign(static_cast<size_t>(total), T(0));
  m->grads_.assign(static_cast<size_t>(total), T(0));
  m->active_vocab_ = V;
  return m;
}

template <typename T>
const ParamInfo* CausalLM<T>::FindParam(const std::string& name) const {
  auto it = param_index_.find(name);
  return it == param_index_.end() ? nullptr : &params_[it->second];
}

template <typename T>
void CausalLM<T>::InitRandom(uint64_t seed, double std) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std);
  for (const ParamInfo& p : params_) {
    T* d = weights_.data() + p.offset;
    if (!p.trainable || absl::EndsWith(p.name, ".bias")) {
      std::fill(d, d + p.numel, T(0));
    } else if (absl::EndsWith(p.name, "norm.weight")) {
      std::fill(d, d + p.numel, T(1));
    } else {
      for (int64_t i = 0; i < p.numel; ++i) d[i] = static_cast<T>(normal(rng));
    }
  }
}

template <typename T>
void CausalLM<T>::ZeroGrads() {
  std::fill(grads_.begin(), grads_.end(), T(0));
}

template <typename T>
absl::Status CausalLM<T>::set_active_vocab(int64_t n) {
  if (n < 1 || n > config_.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("active_vocab ", n, " is outside [1, vocab_size=", config_.vocab_size, "]"));
  }
  active_vocab_ = n;
  return absl::OkStatus();
}

template <typename T>
layers::AttentionWeights<T> CausalLM<T>::AttnWeights(const LayerIndex& li) const {
  return {.wq = W(li.wq),
          .bq = W(li.bq),
          .wk = W(li.wk),
          .bk = W(li.bk),
          .wv = W(li.wv),
          .bv = W(li.bv),
          .wo = W(li.wo),
          .q_norm = W(li.q_norm),
          .k_norm = W(li.k_norm)};
}

template <typename T>
layers::AttentionGrads<T> CausalLM<T>::AttnGrads(const LayerIndex& li) {
  return {.wq = G(li.wq),
          .bq = G(li.bq),
          .wk = G(li.wk),
          .bk = G(li.bk),
          .wv = G(li.wv),
          .bv = G(li.bv),
          .wo = G(li.wo),
          .q_norm = G(li.q_norm),
          .k_norm = G(li.k_norm)};
}

template <typename T>
layers::MlpWeights<T> CausalLM<T>::MlpW(const LayerIndex& li) const {
  return {.gate = W(li.mlp_gate), .up = W(li.mlp_up), .down = W(li.mlp_down)};
}

template <typename T>
layers::MlpGrads<T> CausalLM<T>::MlpG(const LayerIndex& li) {
  return {.gate = G(li.mlp_gate), .up = G(li.mlp_up), .down = G(li.mlp_down)};
}

template <typename T>
layers::MoeWeights<T> CausalLM<T>::MoeW(const LayerIndex& li) const {
  layers::MoeWeights<T> w;
  w.router = W(li.router);
  w.correction_bias = W(li.correction_bias);
  w.gate = W(li.mlp_gate);
  w.up = W(li.mlp_up);
  w.down = W(li.mlp_down);
  w.shared = {.gate = W(li.shared_gate), .up = W(li.shared_up), .down = W(li.shared_down)};
  return w;
}

template <typename T>
layers::MoeGrads<T> CausalLM<T>::MoeG(const LayerIndex& li) {
  layers::MoeGrads<T> g;
  g.router = G(li.router);
  g.gate = G(li.mlp_gate);
  g.up = G(li.mlp_up);
  g.down = G(li.mlp_down);
  g.shared = {.gate = G(li.shared_gate), .up = G(li.shared_up), .down = G(li.shared_down)};
  return g;
}

template <typename T>
const T* CausalLM<T>::LmHead() const {
  return W(lm_head_ >= 0 ? lm_head_ : embed_);
}

template <typename T>
T* CausalLM<T>::LmHeadGrad() {
  return G(lm_head_ >= 0 ? lm_head_ : embed_);
}

template <typename T>
int64_t CausalLM<T>::BlockRows() const {
  // About 1M logits (4 MiB in float) per block: enough rows for an efficient GEMM, small
  // enough to stay in L2/L3 between the GEMM and the log-softmax.
  int64_t rows = std::max<int64_t>(16, (int64_t{1} << 20) / config_.vocab_size);
  return std::max<int64_t>(1, std::min(rows, n_));
}

template <typename T>
void CausalLM<T>::MaskLogits(T* logits, int64_t rows) const {
  const int64_t V = config_.vocab_size;
  if (active_vocab_ >= V) return;
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(logits + r * V + active_vocab_, logits + (r + 1) * V,
              -std::numeric_limits<T>::infinity());
  }
}

template <typename T>
absl::Status CausalLM<T>::FeedForward(int64_t l, const T* x, int64_t N, const int32_t* forced,
                                      layers::MlpActivations<T>* mlp,
                                      layers::MoeActivations<T>* moe, T* y) {
  const LayerIndex& li = layer_idx_[l];
  if (li.moe) {
    return layers::MoeForward<T>(moe_cfg_, MoeW(li), x, N, forced, moe, y);
  }
  layers::MlpForward<T>(mlp_cfg_, MlpW(li), x, N, mlp, y);
  return absl::OkStatus();
}

template <typename T>
absl::Status CausalLM<T>::Forward(const int32_t* ids, int64_t B, int64_t Tn,
                                  std::span<const int32_t* const> forced_experts,
                                  const int32_t* positions) {
  const ModelConfig& c = config_;
  const int64_t L = c.num_hidden_layers, C = c.hidden_size;
  if (B <= 0 || Tn <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: empty batch [", B, ", ", Tn, "]"));
  }
  if (!forced_experts.empty() && static_cast<int64_t>(forced_experts.size()) != L) {
    return absl::InvalidArgumentError(absl::StrCat("Forward: forced_experts has ",
                                                   forced_experts.size(), " entries, expected ", L,
                                                   " (one per layer)"));
  }
  const int64_t N = B * Tn;
  if (positions != nullptr) {
    // Packed rows: positions restart at 0 where a sequence starts and count up by one within it.
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < Tn; ++t) {
        const int32_t p = positions[b * Tn + t];
        const bool ok = t == 0 ? p == 0 : (p == 0 || p == positions[b * Tn + t - 1] + 1);
        if (!ok) {
          return absl::InvalidArgumentError(absl::StrCat(
              "Forward: positions[", b, ", ", t, "] is ", p, "; a packed row's positions must ",
              t == 0 ? "start at 0" : "restart at 0 or go up by one"));
        }
      }
    }
  }
  have_logprobs_ = false;
  n_ = 0;
  ids_.assign(ids, ids + N);
  positions_.resize(static_cast<size_t>(N));
  seg_start_.clear();
  if (positions != nullptr) {
    positions_.assign(positions, positions + N);
    seg_start_.resize(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) seg_start_[i] = static_cast<int32_t>(i % Tn) - positions[i];
  } else {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < Tn; ++t) positions_[b * Tn + t] = static_cast<int32_t>(t);
    }
  }
  const int32_t* seg = seg_start_.empty() ? nullptr : seg_start_.data();
  kernels::BuildRopeTable<T>(positions_.data(), N, c.head_dim, c.rope_theta, &rope_);
  acts_.resize(static_cast<size_t>(L));
  T* x0 = layers::Resize(&acts_[0].x_in, N * C);
  RLVR_RETURN_IF_ERROR(layers::EmbeddingForward<T>(ids, W(embed_), N, c.vocab_size, C, x0),
                       "input ids");
  for (int64_t l = 0; l < L; ++l) {
    const LayerIndex& li = layer_idx_[l];
    LayerActs& a = acts_[l];
    const T* xin = a.x_in.data();
    T* ln1 = layers::Resize(&a.ln1_out, N * C);
    layers::RmsNormForward<T>(xin, W(li.input_norm), N, C, c.rms_norm_eps, &a.ln1, ln1);
    T* mid = layers::Resize(&a.mid, N * C);
    RLVR_RETURN_IF_ERROR(layers::AttentionForward<T>(attn_cfg_, AttnWeights(li), rope_, ln1, B, Tn,
                                                     &a.attn, mid, seg),
                         "layer ", l, " attention");
    if (li.bo >= 0) AddRowBias(W(li.bo), N, C, mid);
    kernels::Add<T>(xin, mid, N * C, mid);
    T* ln2 = layers::Resize(&a.ln2_out, N * C);
    layers::RmsNormForward<T>(mid, W(li.post_norm), N, C, c.rms_norm_eps, &a.ln2, ln2);
    T* out = layers::Resize(l + 1 < L ? &acts_[l + 1].x_in : &resid_out_, N * C);
    const int32_t* forced = forced_experts.empty() ? nullptr : forced_experts[l];
    if (forced != nullptr && !li.moe) {
      return absl::InvalidArgumentError(
          absl::StrCat("Forward: forced_experts[", l, "] given for a dense layer"));
    }
    RLVR_RETURN_IF_ERROR(FeedForward(l, ln2, N, forced, &a.mlp, &a.moe, out), "layer ", l,
                         li.moe ? " moe" : " mlp");
    kernels::Add<T>(mid, out, N * C, out);
  }
  T* h = layers::Resize(&final_, N * C);
  layers::RmsNormForward<T>(resid_out_.data(), W(final_norm_), N, C, c.rms_norm_eps,
                            &final_norm_act_, h);
  b_ = B;
  t_ = Tn;
  n_ = N;
  aux_loss_ = 0;
  if (c.is_moe()) {
    std::vector<const std::vector<int64_t>*> counts;
    std::vector<const std::vector<double>*> probs;
    for (int64_t l = 0; l < L; ++l) {
      if (!layer_idx_[l].moe) continue;
      counts.push_back(&acts_[l].moe.expert_count);
      probs.push_back(&acts_[l].moe.prob_sum);
    }
    if (!counts.empty()) {
      RLVR_ASSIGN_OR_RETURN(layers::LoadBalancingResult lb,
                            layers::LoadBalancingLoss(counts, probs, N, 1.0), "aux loss");
      aux_loss_ = lb.loss;
    }
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CausalLM<T>::Logits(T* logits) {
  if (n_ == 0) return absl::FailedPreconditionError("Logits: call Forward first");
  const int64_t C = config_.hidden_size, V = config_.vocab_size;
  const int64_t rows = BlockRows();
  for (int64_t r0 = 0; r0 < n_; r0 += rows) {
    const int64_t R = std::min(rows, n_ - r0);
    kernels::LinearForward<T>(final_.data() + r0 * C, LmHead(), nullptr, R, C, V, logits + r0 * V);
    MaskLogits(logits + r0 * V, R);
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status CausalLM<T>::TokenLogProbs(const int32_t* targets, T* logprob, T* entropy) {
  if (n_ == 0) return absl::FailedPreconditionError("TokenLogProbs: call Forward first");
  const int64_t C = config_.hidden_size, V = config_.vocab_size;
  targets_.resize(static_cast<size_t>(n_));
  for (int64_t n = 0; n < n_; ++n) {
    if (targets[n] >= active_vocab_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "targets[", n, "] = ", targets[n], " is outside the vocabulary (", active_vocab_, ")"));
    }
    targets_[n] = std::max(targets[n], 0);
  }
  lse_.resize(static_cast<size_t>(n_));
  entropy_.resize(static_cast<size_t>(n_));
  std::vector<T> lp(static_cast<size_t>(n_));
  const int64_t rows = BlockRows();
  T* block = layers::Resize(&block_, rows * V);
  for (int64_t r0 = 0; r0 < n_; r0 += rows) {
    const int64_t R = std::min(rows, n_ - r0);
    kernels::LinearForward<T>(final_.data() + r0 * C, LmHead(), nullptr, R, C, V, block);
    kernels::LogSoftmaxStats<T>(block, targets_.data() + r0, R, V, active_vocab_, 1.0,
                                lse_.data() + r0, lp.data() + r0, entropy_.data() + r0);
  }
  for (int64_t n = 0; n < n_; ++n) {
    if (logprob != nullptr) logprob[n] = targets[n] < 0 ? T(0) : lp[n];
    if (entropy != nullptr) entropy[n] = entropy_[n];
    if (targets[n] < 0) targets_[n] = -1;
  }
  have_logprobs_ = true;
  return absl::OkStatus();
}

template <typename T>
absl::Status CausalLM<T>::Backward(const T* dlogprob, const T* dentropy, double aux_weight) {
  if (n_ == 0 || !have_logprobs_) {
    return absl::FailedPreconditionError("Backward: call Forward and TokenLogProbs first");
  }
  const ModelConfig& c = config_;
  const int64_t N = n_, C = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
  std::vector<T> dres(static_cast<size_t>(N * C), T(0));
  std::vector<T> dh(static_cast<size_t>(N * C), T(0));
  std::vector<T> dln(static_cast<size_t>(N * C));
  std::vector<T> dmid(static_cast<size_t>(N * C));

  // LM head and log-softmax, one block of rows at a time (the logits are recomputed).
  std::vector<int32_t> tgt(targets_);
  std::vector<T> dlp(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    dlp[n] = tgt[n] < 0 ? T(0) : dlogprob[n];
    tgt[n] = std::max(tgt[n], 0);
  }
  const int64_t rows = BlockRows();
  T* block = layers::Resize(&block_, rows * V);
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    const int64_t R = std::min(rows, N - r0);
    const T* h = final_.data() + r0 * C;
    kernels::LinearForward<T>(h, LmHead(), nullptr, R, C, V, block);
    kernels::LogSoftmaxGradInPlace<T>(
        tgt.data() + r0, lse_.data() + r0, entropy_.data() + r0, dlp.data() + r0,
        dentropy == nullptr ? nullptr : dentropy + r0, R, V, active_vocab_, 1.0, block);
    kernels::LinearBackward<T>(block, h, LmHead(), R, C, V, dh.data() + r0 * C, LmHeadGrad(),
                               nullptr);
  }
  layers::RmsNormBackward<T>(resid_out_.data(), W(final_norm_), N, C, final_norm_act_, dh.data(),
                             dres.data(), G(final_norm_));

  std::vector<double> aux_coef;
  if (c.is_moe() && aux_weight != 0.0) {
    std::vector<const std::vector<int64_t>*> counts;
    std::vector<const std::vector<double>*> probs;
    for (int64_t l = 0; l < L; ++l) {
      if (!layer_idx_[l].moe) continue;
      counts.push_back(&acts_[l].moe.expert_count);
      probs.push_back(&acts_[l].moe.prob_sum);
    }
    if (!counts.empty()) {
      RLVR_ASSIGN_OR_RETURN(layers::LoadBalancingResult lb,
                            layers::LoadBalancingLoss(counts, probs, N, aux_weight), "aux loss");
      aux_coef = std::move(lb.coef);
    }
  }

  for (int64_t l = L - 1; l >= 0; --l) {
    const LayerIndex& li = layer_idx_[l];
    LayerActs& a = acts_[l];
    // out = mid + ffn(ln2(mid)): dres is d(out).
    std::copy(dres.begin(), dres.end(), dmid.begin());
    std::fill(dln.begin(), dln.end(), T(0));
    if (li.moe) {
      layers::MoeBackward<T>(moe_cfg_, MoeW(li), a.ln2_out.data(), N, a.moe, dres.data(),
                             aux_coef.empty() ? nullptr : aux_coef.data(), dln.data(), MoeG(li));
    } else {
      layers::MlpBackward<T>(mlp_cfg_, MlpW(li), a.ln2_out.data(), N, a.mlp, dres.data(),
                             dln.data(), MlpG(li));
    }
    layers::RmsNormBackward<T>(a.mid.data(), W(li.post_norm), N, C, a.ln2, dln.data(), dmid.data(),
                               G(li.post_norm));
    // mid = x_in + attn(ln1(x_in)) (+ bo).
    if (li.bo >= 0) ColumnSumInto(dmid.data(), N, C, G(li.bo));
    std::copy(dmid.begin(), dmid.end(), dres.begin());
    std::fill(dln.begin(), dln.end(), T(0));
    layers::AttentionBackward<T>(attn_cfg_, AttnWeights(li), rope_, a.ln1_out.data(), b_, t_,
                                 a.attn, dmid.data(), dln.data(), AttnGrads(li),
                                 seg_start_.empty() ? nullptr : seg_start_.data());
    layers::RmsNormBackward<T>(a.x_in.data(), W(li.input_norm), N, C, a.ln1, dln.data(),
                               dres.data(), G(li.input_norm));
  }
  layers::EmbeddingBackward<T>(ids_.data(), dres.data(), N, C, G(embed_));
  return absl::OkStatus();
}

template <typename T>
std::vector<MoeLayerStats> CausalLM<T>::moe_stats() const {
  std::vector<MoeLayerStats> out;
  if (n_ == 0) return out;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    if (!layer_idx_[l].moe) continue;
    out.push_back({.layer = l, .expert_count = acts_[l].moe.expert_count});
  }
  return out;
}

template <typename T>
const int32_t* CausalLM<T>::chosen_experts(int64_t layer) const {
  if (layer < 0 || layer >= static_cast<int64_t>(acts_.size()) || !layer_idx_[layer].moe ||
      n_ == 0) {
    return nullptr;
  }
  return acts_[layer].moe.topk_experts.data();
}

template <typename T>
const int32_t* CausalLM<T>::decode_chosen_experts(int64_t layer) const {
  if (layer < 0 || layer >= static_cast<int64_t>(dec_moe_.size()) || !layer_idx_[layer].moe ||
      dec_n_ == 0) {
    return nullptr;
  }
  return dec_moe_[layer].topk_experts.data();
}

template <typename T>
void CausalLM<T>::UpdateCorrectionBias(double rate) {
  if (n_ == 0) return;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const LayerIndex& li = layer_idx_[l];
    if (!li.moe || li.correction_bias < 0) continue;
    const std::vector<int64_t>& count = acts_[l].moe.expert_count;
    double mean = 0;
    for (int64_t x : count) mean += static_cast<double>(x);
    mean /= static_cast<double>(count.size());
    T* bias = weights_.data() + li.correction_bias;
    for (size_t e = 0; e < count.size(); ++e) {
      const double load = static_cast<double>(count[e]);
      if (load < mean) bias[e] += static_cast<T>(rate);
      if (load > mean) bias[e] -= static_cast<T>(rate);
    }
  }
}

template <typename T>
absl::Status CausalLM<T>::Decode(const int32_t* ids, const int32_t* positions, int64_t B,
                                 int64_t Tn, std::span<const kernels::KvCacheView<T>> caches,
                                 T* last_logits) {
  const ModelConfig& c = config_;
  const int64_t L = c.num_hidden_layers, C = c.hidden_size, V = c.vocab_size;
  if (B <= 0 || Tn <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Decode: empty batch [", B, ", ", Tn, "]"));
  }
  if (static_cast<int64_t>(caches.size()) != L * B) {
    return absl::InvalidArgumentError(
        absl::StrCat("Decode: ", caches.size(), " cache views, expected layers * B = ", L * B));
  }
  const int64_t N = B * Tn;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < Tn; ++t) {
      const int32_t pos = positions[b * Tn + t];
      if (pos < 0 || pos >= caches[b].capacity()) {
        return absl::InvalidArgumentError(
            absl::StrCat("Decode: positions[", b, ", ", t, "] = ", pos,
                         " is outside the cache capacity ", caches[b].capacity()));
      }
    }
  }
  dec_n_ = 0;
  dec_moe_.resize(static_cast<size_t>(L));
  T* x = layers::Resize(&dec_x_, N * C);
  T* h = layers::Resize(&dec_h_, N * C);
  T* y = layers::Resize(&dec_y_, N * C);
  RLVR_RETURN_IF_ERROR(layers::EmbeddingForward<T>(ids, W(embed_), N, V, C, x), "decode ids");
  kernels::BuildRopeTable<T>(positions, N, c.head_dim, c.rope_theta, &dec_rope_);
  for (int64_t l = 0; l < L; ++l) {
    const LayerIndex& li = layer_idx_[l];
    layers::RmsNormForward<T>(x, W(li.input_norm), N, C, c.rms_norm_eps, &dec_norm_, h);
    RLVR_RETURN_IF_ERROR(
        layers::AttentionDecode<T>(attn_cfg_, AttnWeights(li), dec_rope_, h, positions, B, Tn,
                                   caches.subspan(static_cast<size_t>(l * B), B), &dec_attn_, y),
        "layer ", l, " attention decode");
    if (li.bo >= 0) AddRowBias(W(li.bo), N, C, y);
    kernels::Add<T>(x, y, N * C, x);
    layers::RmsNormForward<T>(x, W(li.post_norm), N, C, c.rms_norm_eps, &dec_norm_, h);
    RLVR_RETURN_IF_ERROR(FeedForward(l, h, N, nullptr, &dec_mlp_, &dec_moe_[l], y), "layer ", l,
                         " decode feed-forward");
    kernels::Add<T>(x, y, N * C, x);
  }
  dec_n_ = N;
  // Only the last new token of each sequence goes through the final norm and the LM head.
  for (int64_t b = 0; b < B; ++b) {
    std::copy(x + (b * Tn + Tn - 1) * C, x + (b * Tn + Tn) * C, y + b * C);
  }
  layers::RmsNormForward<T>(y, W(final_norm_), B, C, c.rms_norm_eps, &dec_norm_, h);
  kernels::LinearForward<T>(h, LmHead(), nullptr, B, C, V, last_logits);
  if (active_vocab_ < V) {
    for (int64_t b = 0; b < B; ++b) {
      std::fill(last_logits + b * V + active_vocab_, last_logits + (b + 1) * V,
                -std::numeric_limits<T>::infinity());
    }
  }
  return absl::OkStatus();
}

template <typename T>
KvCache<T>::KvCache(const ModelConfig& config, int64_t batch, int64_t capacity)
    : capacity_(capacity) {
  const int64_t L = config.num_hidden_layers;
  const int64_t row = config.num_key_value_heads * config.head_dim;
  const int64_t per = capacity * row;
  k_.assign(static_cast<size_t>(L * batch * per), T(0));
  v_.assign(static_cast<size_t>(L * batch * per), T(0));
  k_ptrs_.resize(static_cast<size_t>(L * batch));
  v_ptrs_.resize(static_cast<size_t>(L * batch));
  views_.resize(static_cast<size_t>(L * batch));
  for (int64_t i = 0; i < L * batch; ++i) {
    k_ptrs_[i] = k_.data() + i * per;
    v_ptrs_[i] = v_.data() + i * per;
    views_[i].block_size = capacity;
    views_[i].k_blocks = std::span<T* const>(&k_ptrs_[i], 1);
    views_[i].v_blocks = std::span<T* const>(&v_ptrs_[i], 1);
  }
}

template class CausalLM<float>;
template class CausalLM<double>;
template class KvCache<float>;
template class KvCache<double>;

}  // namespace rlvr::policy
