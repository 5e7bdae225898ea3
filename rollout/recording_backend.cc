#include "rollout/recording_backend.h"

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 headers (intrinsics built on
// _mm512_undefined_*) wherever they are inlined; the warning is about the header's code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/attention.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "policy/layers/common.h"
#include "policy/layers/embedding.h"

namespace rlvr::rollout {
namespace layers = policy::layers;
namespace {

#if defined(__AVX512F__)
// One (token, kv head) item of PagedAttention with D = 16 * NV, on AVX-512 registers: a dot
// product is NV fused multiply-adds and one shuffle-tree reduction, and each query head's
// output accumulator stays in registers across all cached rows (a generic loop spills both).
// Sum of the 16 lanes by a shuffle tree (GCC 12's _mm512_reduce_add_ps trips
// -Wmaybe-uninitialized inside its own header).
inline float HorizontalSum(__m512 v) {
  __m512 t = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xEE));
  t = _mm512_add_ps(t, _mm512_shuffle_f32x4(t, t, 0x01));
  __m128 x = _mm512_castps512_ps128(t);
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

template <int NV>
void AttendItemAvx512(const float* qh, int64_t G, int64_t len,
                      const kernels::KvCacheView<float>& cache,
                      int64_t koff, int64_t row, float scale, bool bf16, float* w, float* o) {
  const int64_t bs = cache.block_size;
  for (int64_t g = 0; g < G; ++g) {
    __m512 qv[NV];
    for (int i = 0; i < NV; ++i) qv[i] = _mm512_loadu_ps(qh + g * 16 * NV + 16 * i);
    float* wg = w + g * len;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t blk = 0, s0 = 0; s0 < len; ++blk, s0 += bs) {
      const int64_t rows = std::min(bs, len - s0);
      const float* kb = cache.k_blocks[blk] + koff;
      for (int64_t r = 0; r < rows; ++r) {
        const float* kr = kb + r * row;
        __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kr));
        for (int i = 1; i < NV; ++i) {
          acc = _mm512_fmadd_ps(qv[i], _mm512_loadu_ps(kr + 16 * i), acc);
        }
        const float sc = HorizontalSum(acc) * scale;
        wg[s0 + r] = sc;
        m = std::max(m, sc);
      }
    }
    float sum = 0;
    for (int64_t s = 0; s < len; ++s) {
      wg[s] = kernels::internal::FastExp(wg[s] - m);
      sum += wg[s];
    }
    const float inv = 1.0f / sum;
    __m512 ov[NV];
    for (int i = 0; i < NV; ++i) ov[i] = _mm512_setzero_ps();
    for (int64_t blk = 0, s0 = 0; s0 < len; ++blk, s0 += bs) {
      const int64_t rows = std::min(bs, len - s0);
      const float* vb = cache.v_blocks[blk] + koff;
      for (int64_t r = 0; r < rows; ++r) {
        float p = wg[s0 + r] * inv;
        if (bf16) p = kernels::internal::RoundBf16(p);
        const __m512 ws = _mm512_set1_ps(p);
        const float* vr = vb + r * row;
        for (int i = 0; i < NV; ++i) {
          ov[i] = _mm512_fmadd_ps(ws, _mm512_loadu_ps(vr + 16 * i), ov[i]);
        }
      }
    }
    for (int i = 0; i < NV; ++i) _mm512_storeu_ps(o + g * 16 * NV + 16 * i, ov[i]);
  }
}
#endif

// The same for any D (portable loops).
void AttendItemGeneric(const float* qh, int64_t G, int64_t D, int64_t len,
                       const kernels::KvCacheView<float>& cache, int64_t koff, int64_t row,
                       float scale, bool bf16, float* w, float* o) {
  const int64_t bs = cache.block_size;
  for (int64_t g = 0; g < G; ++g) {
    const float* qv = qh + g * D;
    float* wg = w + g * len;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t blk = 0, s0 = 0; s0 < len; ++blk, s0 += bs) {
      const int64_t rows = std::min(bs, len - s0);
      const float* kb = cache.k_blocks[blk] + koff;
      for (int64_t r = 0; r < rows; ++r) {
        const float* kr = kb + r * row;
        float acc = 0;
        for (int64_t d = 0; d < D; ++d) acc += qv[d] * kr[d];
        wg[s0 + r] = acc * scale;
        m = std::max(m, wg[s0 + r]);
      }
    }
    float sum = 0;
    for (int64_t s = 0; s < len; ++s) {
      wg[s] = kernels::internal::FastExp(wg[s] - m);
      sum += wg[s];
    }
    const float inv = 1.0f / sum;
    float* og = o + g * D;
    std::fill(og, og + D, 0.0f);
    for (int64_t blk = 0, s0 = 0; s0 < len; ++blk, s0 += bs) {
      const int64_t rows = std::min(bs, len - s0);
      const float* vb = cache.v_blocks[blk] + koff;
      for (int64_t r = 0; r < rows; ++r) {
        float ws = wg[s0 + r] * inv;
        if (bf16) ws = kernels::internal::RoundBf16(ws);
        const float* vr = vb + r * row;
        for (int64_t d = 0; d < D; ++d) og[d] += ws * vr[d];
      }
    }
  }
}

// Decode attention over paged caches: query rows q [B*Tn, H, D] at positions[B*Tn] attend to
// positions 0..p of their sequence's cache (already written). One work item is a (token, kv
// head) pair and handles the H / Hkv query heads that share the kv head; the cache is walked
// block by block (no division per row). out [B*Tn, H, D].
void PagedAttention(const float* q, const int32_t* positions, int64_t B, int64_t Tn, int64_t H,
                    int64_t Hkv, int64_t D, float scale,
                    std::span<const kernels::KvCacheView<float>> caches, float* out) {
  const int64_t G = H / Hkv, row = Hkv * D, items = B * Tn * Hkv;
  int64_t work = 0;
  for (int64_t i = 0; i < B * Tn; ++i) work += (positions[i] + 1) * H * D;
  // Under bf16 products: round what the GEMM-based full forward rounds (queries here,
  // probabilities in the items; KvCacheWrite stores rounded keys and values).
  const bool bf16 = kernels::MatmulInBf16();
#pragma omp parallel if (items > 1 && work >= (int64_t{1} << 16))
  {
    std::vector<float> w, q_round;
#pragma omp for schedule(dynamic, 2)
    for (int64_t i = 0; i < items; ++i) {
      const int64_t bt = i / Hkv, kh = i % Hkv, b = bt / Tn;
      const int64_t len = positions[bt] + 1;
      const float* qh = q + (bt * H + kh * G) * D;
      if (bf16) {
        q_round.assign(qh, qh + G * D);
        kernels::RoundToBf16(q_round.data(), G * D);
        qh = q_round.data();
      }
      float* o = out + (bt * H + kh * G) * D;
      w.resize(static_cast<size_t>(G * len));
#if defined(__AVX512F__)
      switch (D) {
        case 16:
          AttendItemAvx512<1>(qh, G, len, caches[b], kh * D, row, scale, bf16, w.data(), o);
          continue;
        case 32:
          AttendItemAvx512<2>(qh, G, len, caches[b], kh * D, row, scale, bf16, w.data(), o);
          continue;
        case 64:
          AttendItemAvx512<4>(qh, G, len, caches[b], kh * D, row, scale, bf16, w.data(), o);
          continue;
        case 128:
          AttendItemAvx512<8>(qh, G, len, caches[b], kh * D, row, scale, bf16, w.data(), o);
          continue;
        default:
          break;
      }
#endif
      AttendItemGeneric(qh, G, D, len, caches[b], kh * D, row, scale, bf16, w.data(), o);
    }
  }
}

}  // namespace

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
    PagedAttention(q, positions, B, Tn, H, Hkv, D, static_cast<float>(scale), caches, o);
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
