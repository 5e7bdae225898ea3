#include "policy/layers/attention.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/matmul.h"
#include "kernels/rmsnorm.h"
#include "policy/layers/common.h"

namespace rlvr::policy::layers {
namespace {

template <typename T>
absl::Status Validate(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                      const kernels::RopeTable<T>& rope, int64_t N) {
  auto bad = [](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat("attention: ", parts...));
  };
  if (cfg.hidden <= 0) return bad("hidden_size ", cfg.hidden, " must be positive");
  if (cfg.heads <= 0 || cfg.kv_heads <= 0) {
    return bad("num_attention_heads ", cfg.heads, " and num_key_value_heads ", cfg.kv_heads,
               " must be positive");
  }
  if (cfg.heads % cfg.kv_heads != 0) {
    return bad("num_attention_heads ", cfg.heads, " is not a multiple of num_key_value_heads ",
               cfg.kv_heads);
  }
  if (cfg.head_dim <= 0 || cfg.head_dim % 2 != 0) {
    return bad("head_dim ", cfg.head_dim, " must be positive and even (RoPE)");
  }
  if (!w.wq || !w.wk || !w.wv || !w.wo) return bad("missing q/k/v/o projection weight");
  if (cfg.qk_norm && (!w.q_norm || !w.k_norm)) return bad("qk_norm set but q_norm/k_norm missing");
  if (rope.n != N || rope.half_dim * 2 != cfg.head_dim) {
    return bad("RoPE table has ", rope.n, " rows of head dim ", rope.half_dim * 2, ", need ", N,
               " rows of ", cfg.head_dim);
  }
  return absl::OkStatus();
}

// Projections, optional q/k norm and RoPE for N rows: fills act->q, k, v (and q_raw, k_raw).
template <typename T>
void ProjectQkv(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                const kernels::RopeTable<T>& rope, const T* x, int64_t N,
                AttentionActivations<T>* act) {
  const int64_t C = cfg.hidden, H = cfg.heads, Hkv = cfg.kv_heads, D = cfg.head_dim;
  T* q = Resize(&act->q, N * H * D);
  T* k = Resize(&act->k, N * Hkv * D);
  T* v = Resize(&act->v, N * Hkv * D);
  if (cfg.qk_norm) {
    T* q_raw = Resize(&act->q_raw, N * H * D);
    T* k_raw = Resize(&act->k_raw, N * Hkv * D);
    kernels::LinearForward<T>(x, w.wq, w.bq, N, C, H * D, q_raw);
    kernels::LinearForward<T>(x, w.wk, w.bk, N, C, Hkv * D, k_raw);
    kernels::RmsNormForward<T>(q_raw, w.q_norm, N * H, D, cfg.rms_eps, q,
                               Resize(&act->q_norm.rstd, N * H));
    kernels::RmsNormForward<T>(k_raw, w.k_norm, N * Hkv, D, cfg.rms_eps, k,
                               Resize(&act->k_norm.rstd, N * Hkv));
  } else {
    kernels::LinearForward<T>(x, w.wq, w.bq, N, C, H * D, q);
    kernels::LinearForward<T>(x, w.wk, w.bk, N, C, Hkv * D, k);
  }
  kernels::LinearForward<T>(x, w.wv, w.bv, N, C, Hkv * D, v);
  kernels::RopeForward<T>(rope, H, D, q);
  kernels::RopeForward<T>(rope, Hkv, D, k);
}

}  // namespace

template <typename T>
absl::Status AttentionForward(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                              const kernels::RopeTable<T>& rope, const T* x, int64_t B, int64_t Tn,
                              AttentionActivations<T>* act, T* y, const int32_t* seg_start) {
  const int64_t N = B * Tn;
  RLVR_RETURN_IF_ERROR(Validate(cfg, w, rope, N));
  const int64_t C = cfg.hidden, H = cfg.heads, Hkv = cfg.kv_heads, D = cfg.head_dim;
  ProjectQkv(cfg, w, rope, x, N, act);
  T* o = Resize(&act->o, N * H * D);
  T* lse = Resize(&act->lse, B * H * Tn);
  kernels::AttentionForward<T>(act->q.data(), act->k.data(), act->v.data(), B, Tn, H, Hkv, D,
                               1.0 / std::sqrt(static_cast<double>(D)), o, lse, seg_start);
  kernels::LinearForward<T>(o, w.wo, nullptr, N, H * D, C, y);
  return absl::OkStatus();
}

template <typename T>
void AttentionBackward(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                       const kernels::RopeTable<T>& rope, const T* x, int64_t B, int64_t Tn,
                       const AttentionActivations<T>& act, const T* dy, T* dx,
                       const AttentionGrads<T>& grads, const int32_t* seg_start) {
  const int64_t N = B * Tn;
  const int64_t C = cfg.hidden, H = cfg.heads, Hkv = cfg.kv_heads, D = cfg.head_dim;
  std::vector<T> d_o(N * H * D, T(0)), dq(N * H * D, T(0)), dk(N * Hkv * D, T(0)),
      dv(N * Hkv * D, T(0));
  kernels::LinearBackward<T>(dy, act.o.data(), w.wo, N, H * D, C, d_o.data(), grads.wo, nullptr);
  kernels::AttentionBackward<T>(
      d_o.data(), act.q.data(), act.k.data(), act.v.data(), act.o.data(), act.lse.data(), B, Tn, H,
      Hkv, D, 1.0 / std::sqrt(static_cast<double>(D)), dq.data(), dk.data(), dv.data(), seg_start);
  kernels::RopeBackward<T>(rope, H, D, dq.data());
  kernels::RopeBackward<T>(rope, Hkv, D, dk.data());
  if (cfg.qk_norm) {
    // Gradients with respect to the projections (before the per-head norm).
    std::vector<T> dq_raw(N * H * D, T(0)), dk_raw(N * Hkv * D, T(0));
    kernels::RmsNormBackward<T>(dq.data(), act.q_raw.data(), w.q_norm, act.q_norm.rstd.data(),
                                N * H, D, dq_raw.data(), grads.q_norm);
    kernels::RmsNormBackward<T>(dk.data(), act.k_raw.data(), w.k_norm, act.k_norm.rstd.data(),
                                N * Hkv, D, dk_raw.data(), grads.k_norm);
    dq.swap(dq_raw);
    dk.swap(dk_raw);
  }
  kernels::LinearBackward<T>(dq.data(), x, w.wq, N, C, H * D, dx, grads.wq, grads.bq);
  kernels::LinearBackward<T>(dk.data(), x, w.wk, N, C, Hkv * D, dx, grads.wk, grads.bk);
  kernels::LinearBackward<T>(dv.data(), x, w.wv, N, C, Hkv * D, dx, grads.wv, grads.bv);
}

template <typename T>
absl::Status AttentionDecode(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                             const kernels::RopeTable<T>& rope, const T* x,
                             const int32_t* positions, int64_t B, int64_t Tn,
                             std::span<const KvCacheView<T>> caches,
                             AttentionActivations<T>* scratch, T* y) {
  const int64_t N = B * Tn;
  RLVR_RETURN_IF_ERROR(Validate(cfg, w, rope, N));
  if (static_cast<int64_t>(caches.size()) != B) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention decode: ", caches.size(), " KV caches for a batch of ", B));
  }
  for (int64_t i = 0; i < N; ++i) {
    const int64_t b = i / Tn;
    if (positions[i] < 0 || positions[i] >= caches[b].capacity()) {
      return absl::InvalidArgumentError(absl::StrCat("attention decode: position ", positions[i],
                                                     " of sequence ", b,
                                                     " outside the KV cache capacity ",
                                                     caches[b].capacity()));
    }
  }
  const int64_t C = cfg.hidden, H = cfg.heads, Hkv = cfg.kv_heads, D = cfg.head_dim;
  ProjectQkv(cfg, w, rope, x, N, scratch);
  kernels::KvCacheWrite<T>(scratch->k.data(), scratch->v.data(), positions, B, Tn, Hkv, D,
                           caches);
  T* o = Resize(&scratch->o, N * H * D);
  kernels::AttentionCachedForward<T>(scratch->q.data(), positions, B, Tn, H, Hkv, D,
                                     1.0 / std::sqrt(static_cast<double>(D)), caches, o);
  kernels::LinearForward<T>(o, w.wo, nullptr, N, H * D, C, y);
  return absl::OkStatus();
}

#define RLVR_INSTANTIATE(T)                                                                        \
  template absl::Status AttentionForward<T>(                                                       \
      const AttentionConfig&, const AttentionWeights<T>&, const kernels::RopeTable<T>&, const T*,  \
      int64_t, int64_t, AttentionActivations<T>*, T*, const int32_t*);                             \
  template void AttentionBackward<T>(const AttentionConfig&, const AttentionWeights<T>&,           \
                                     const kernels::RopeTable<T>&, const T*, int64_t, int64_t,     \
                                     const AttentionActivations<T>&, const T*, T*,                 \
                                     const AttentionGrads<T>&, const int32_t*);                    \
  template absl::Status AttentionDecode<T>(const AttentionConfig&, const AttentionWeights<T>&,     \
                                           const kernels::RopeTable<T>&, const T*, const int32_t*, \
                                           int64_t, int64_t, std::span<const KvCacheView<T>>,      \
                                           AttentionActivations<T>*, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::policy::layers
