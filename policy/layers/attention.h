// Grouped-query self-attention block (Llama, Qwen2, Qwen3 `self_attn`):
//   q = x Wq^T (+bq), k = x Wk^T (+bk), v = x Wv^T (+bv)      per head [.., D]
//   q, k = RMSNorm_D(q) * q_norm, RMSNorm_D(k) * k_norm         (Qwen3 only: qk_norm)
//   q, k = RoPE(q), RoPE(k)                                     (rotate_half convention)
//   o = softmax(q k^T / sqrt(D) + causal mask) v                (query head h uses kv head
//                                                                h / (H / Hkv))
//   y = o Wo^T                                                  (no output bias)
// Full sequences (training, prefill without cache) use AttentionForward/AttentionBackward;
// decode and chunked prefill into a KV cache use AttentionDecode. See common.h for the
// conventions.
#ifndef RLVR_POLICY_LAYERS_ATTENTION_H_
#define RLVR_POLICY_LAYERS_ATTENTION_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "kernels/attention.h"
#include "kernels/rope.h"
#include "policy/layers/rmsnorm.h"

namespace rlvr::policy::layers {

using kernels::KvCacheView;

struct AttentionConfig {
  int64_t hidden = 0;     // C
  int64_t heads = 0;      // H
  int64_t kv_heads = 0;   // Hkv, H % Hkv == 0
  int64_t head_dim = 0;   // D (even)
  bool qk_norm = false;   // Qwen3: RMSNorm over D on q and k per head, before RoPE
  double rms_eps = 1e-6;  // eps of the q/k norm
};

template <typename T>
struct AttentionWeights {
  const T* wq = nullptr;      // [H*D, C]    q_proj.weight
  const T* bq = nullptr;      // [H*D]       q_proj.bias (Qwen2) or null
  const T* wk = nullptr;      // [Hkv*D, C]  k_proj.weight
  const T* bk = nullptr;      // [Hkv*D]     or null
  const T* wv = nullptr;      // [Hkv*D, C]  v_proj.weight
  const T* bv = nullptr;      // [Hkv*D]     or null
  const T* wo = nullptr;      // [C, H*D]    o_proj.weight
  const T* q_norm = nullptr;  // [D]         q_norm.weight (if qk_norm)
  const T* k_norm = nullptr;  // [D]         k_norm.weight (if qk_norm)
};

// Same layout as AttentionWeights; a bias/norm gradient must be non-null exactly when the
// corresponding weight is.
template <typename T>
struct AttentionGrads {
  T* wq = nullptr;
  T* bq = nullptr;
  T* wk = nullptr;
  T* bk = nullptr;
  T* wv = nullptr;
  T* bv = nullptr;
  T* wo = nullptr;
  T* q_norm = nullptr;
  T* k_norm = nullptr;
};

template <typename T>
struct AttentionActivations {
  std::vector<T> q_raw;  // [N, H, D]   projection (+bias), before q norm (kept if qk_norm)
  std::vector<T> k_raw;  // [N, Hkv, D]
  RmsNormActivations<T> q_norm;  // rstd [N*H]
  RmsNormActivations<T> k_norm;  // rstd [N*Hkv]
  std::vector<T> q;      // [N, H, D]   after norm and RoPE
  std::vector<T> k;      // [N, Hkv, D]
  std::vector<T> v;      // [N, Hkv, D]
  std::vector<T> o;      // [N, H, D]   attention output, input of o_proj
  std::vector<T> lse;    // [B, H, T]   softmax log-sum-exp
};

// Full causal attention over x [B, T, C] (N = B*T rows, right-padded sequences). `rope` holds
// the N rows of angles for x's positions (usually t for row (b, t)). y [B, T, C] is written,
// and must not alias x. seg_start [B, T] or null: packed rows, query (b, t) attends to keys
// seg_start[b, t] .. t only (kernels/attention.h; the caller validates it). InvalidArgument
// (naming the field) for an inconsistent config or a missing weight, or a rope table of the
// wrong size.
template <typename T>
absl::Status AttentionForward(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                              const kernels::RopeTable<T>& rope, const T* x, int64_t B, int64_t Tn,
                              AttentionActivations<T>* act, T* y,
                              const int32_t* seg_start = nullptr);

// dx [B, T, C] += ..., grads += ... (dx may be null to skip it). seg_start as in the forward.
template <typename T>
void AttentionBackward(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                       const kernels::RopeTable<T>& rope, const T* x, int64_t B, int64_t Tn,
                       const AttentionActivations<T>& act, const T* dy, T* dx,
                       const AttentionGrads<T>& grads, const int32_t* seg_start = nullptr);

// Incremental attention with a KV cache: x [B, Tn, C] are Tn new tokens of each of B sequences
// at positions[B, Tn] (row-major; `rope` built from the same positions). Their k/v are written
// into caches[b] (which must have capacity for every position), then each new query attends to
// its sequence's cached positions 0..positions[b, t]. All positions below positions[b, 0] must
// already be in the cache. y [B, Tn, C] is written. `scratch` is reused between calls (any
// AttentionActivations; its contents are meaningless afterwards). No backward.
template <typename T>
absl::Status AttentionDecode(const AttentionConfig& cfg, const AttentionWeights<T>& w,
                             const kernels::RopeTable<T>& rope, const T* x,
                             const int32_t* positions, int64_t B, int64_t Tn,
                             std::span<const KvCacheView<T>> caches,
                             AttentionActivations<T>* scratch, T* y);

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_ATTENTION_H_
