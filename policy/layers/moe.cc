#include "policy/layers/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/parallel.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/softmax.h"
#include "policy/layers/common.h"

namespace rlvr::policy::layers {
namespace {
// Expert multiply-adds (tokens x top-k x hidden x intermediate) from which the experts of a
// layer run in parallel.
constexpr int64_t kExpertParallelWork = int64_t{1} << 20;

template <typename... Parts>
absl::Status Bad(const Parts&... parts) {
  return absl::InvalidArgumentError(absl::StrCat("moe: ", parts...));
}

template <typename T>
absl::Status Validate(const MoeConfig& cfg, const MoeWeights<T>& w) {
  if (cfg.hidden <= 0 || cfg.experts <= 0 || cfg.intermediate <= 0) {
    return Bad("hidden_size ", cfg.hidden, ", num_experts ", cfg.experts,
               " and moe_intermediate_size ", cfg.intermediate, " must be positive");
  }
  if (cfg.top_k <= 0 || cfg.top_k > cfg.experts) {
    return Bad("num_experts_per_tok ", cfg.top_k, " must be in [1, num_experts=", cfg.experts,
               "]");
  }
  if (cfg.n_group < 1 || cfg.experts % cfg.n_group != 0) {
    return Bad("n_group ", cfg.n_group, " must divide num_experts ", cfg.experts);
  }
  if (cfg.n_group > 1) {
    if (cfg.topk_group < 1 || cfg.topk_group > cfg.n_group) {
      return Bad("topk_group ", cfg.topk_group, " must be in [1, n_group=", cfg.n_group, "]");
    }
    if (cfg.experts / cfg.n_group < 2) return Bad("n_group routing needs >= 2 experts per group");
    if (cfg.topk_group * (cfg.experts / cfg.n_group) < cfg.top_k) {
      return Bad("topk_group ", cfg.topk_group, " groups hold fewer than top_k ", cfg.top_k,
                 " experts");
    }
  }
  if (cfg.shared_intermediate < 0) return Bad("shared_intermediate must be >= 0");
  if (cfg.shared_gate && cfg.shared_intermediate == 0) {
    return Bad("shared_expert_gate needs a shared expert (shared_expert_intermediate_size > 0)");
  }
  if (!w.router || !w.gate || !w.up || !w.down) return Bad("missing router or expert weights");
  if (cfg.shared_intermediate > 0 && (!w.shared.gate || !w.shared.up || !w.shared.down)) {
    return Bad("missing shared expert weights");
  }
  if (cfg.shared_gate && !w.shared_gate) return Bad("missing shared_expert_gate weight");
  return absl::OkStatus();
}

// Top `k` indices of v[0..n) by value, descending; ties go to the lower index.
template <typename T>
void TopK(const T* v, int64_t n, int64_t k, int32_t* out) {
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [v](int32_t a, int32_t b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  });
  std::copy(idx.begin(), idx.begin() + k, out);
}

// Chooses token n's experts from its scores (+ correction bias, group-limited when asked),
// following DeepSeek-V3's get_topk_indices: experts of dropped groups get choice score 0.
template <typename T>
void Select(const MoeConfig& cfg, const T* scores, const T* bias, int32_t* chosen) {
  const int64_t E = cfg.experts;
  std::vector<T> c(scores, scores + E);
  if (bias != nullptr) {
    for (int64_t e = 0; e < E; ++e) c[e] += bias[e];
  }
  if (cfg.n_group > 1) {
    const int64_t per = E / cfg.n_group;
    std::vector<T> gscore(cfg.n_group);
    for (int64_t g = 0; g < cfg.n_group; ++g) {
      int32_t top2[2];
      TopK(c.data() + g * per, per, 2, top2);
      gscore[g] = c[g * per + top2[0]] + c[g * per + top2[1]];
    }
    std::vector<int32_t> keep(cfg.topk_group);
    TopK(gscore.data(), cfg.n_group, cfg.topk_group, keep.data());
    std::vector<bool> kept(cfg.n_group, false);
    for (int32_t g : keep) kept[g] = true;
    for (int64_t e = 0; e < E; ++e) {
      if (!kept[e / per]) c[e] = T(0);
    }
  }
  TopK(c.data(), E, cfg.top_k, chosen);
}

// Position of every assignment a = n*K + k in act.order.
std::vector<int64_t> InverseOrder(const std::vector<int64_t>& order) {
  std::vector<int64_t> pos(order.size());
  for (size_t i = 0; i < order.size(); ++i) pos[order[i]] = static_cast<int64_t>(i);
  return pos;
}

template <typename T>
T Sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

}  // namespace

template <typename T>
absl::Status MoeForward(const MoeConfig& cfg, const MoeWeights<T>& w, const T* x, int64_t N,
                        const int32_t* forced_experts, MoeActivations<T>* act, T* y) {
  RLVR_RETURN_IF_ERROR(Validate(cfg, w));
  const int64_t C = cfg.hidden, E = cfg.experts, K = cfg.top_k, I = cfg.intermediate;
  if (forced_experts != nullptr) {
    for (int64_t n = 0; n < N; ++n) {
      const int32_t* row = forced_experts + n * K;
      if (std::all_of(row, row + K, [](int32_t e) { return e == -1; })) continue;  // router
      for (int64_t k = 0; k < K; ++k) {
        const int32_t e = forced_experts[n * K + k];
        if (e < 0 || e >= E) {
          return Bad("forced expert ", e, " of token ", n, " outside [0, ", E, ")");
        }
        for (int64_t j = 0; j < k; ++j) {
          if (forced_experts[n * K + j] == e) {
            return Bad("forced expert ", e, " repeated for token ", n);
          }
        }
      }
    }
  }
  act->tokens = N;
  T* logits = Resize(&act->logits, N * E);
  T* probs = Resize(&act->probs, N * E);
  T* scores = Resize(&act->scores, N * E);
  int32_t* chosen = Resize(&act->topk_experts, N * K);
  T* wts = Resize(&act->topk_weights, N * K);
  kernels::LinearForward<T>(x, w.router, nullptr, N, C, E, logits);
  kernels::SoftmaxForward<T>(logits, N, E, probs);
  if (cfg.scoring == MoeScoring::kSoftmax) {
    std::copy(probs, probs + N * E, scores);
  } else {
    for (int64_t i = 0; i < N * E; ++i) scores[i] = Sigmoid(logits[i]);
  }
#pragma omp parallel for if (N * E >= 4096) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* s = scores + n * E;
    int32_t* ch = chosen + n * K;
    if (forced_experts != nullptr && forced_experts[n * K] >= 0) {
      std::copy(forced_experts + n * K, forced_experts + (n + 1) * K, ch);
    } else {
      Select(cfg, s, w.correction_bias, ch);
    }
    T sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += s[ch[k]];
    // DeepSeek adds 1e-20 to the sigmoid sum; the softmax sum of a top-k is never 0.
    if (cfg.scoring == MoeScoring::kSigmoid) sum += T(1e-20);
    const T denom = cfg.norm_topk_prob ? sum : T(1);
    for (int64_t k = 0; k < K; ++k) {
      wts[n * K + k] = s[ch[k]] / denom * static_cast<T>(cfg.routed_scaling_factor);
    }
  }
  // Load statistics and the counting sort of assignments by expert.
  act->expert_count.assign(E, 0);
  act->prob_sum.assign(E, 0.0);
  for (int64_t a = 0; a < N * K; ++a) ++act->expert_count[chosen[a]];
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t e = 0; e < E; ++e) act->prob_sum[e] += static_cast<double>(probs[n * E + e]);
  }
  act->expert_offset.assign(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    act->expert_offset[e + 1] = act->expert_offset[e] + act->expert_count[e];
  }
  act->order.resize(N * K);
  {
    std::vector<int64_t> fill(act->expert_offset.begin(), act->expert_offset.end() - 1);
    for (int64_t a = 0; a < N * K; ++a) act->order[fill[chosen[a]]++] = a;
  }
  T* hg = Resize(&act->h_gate, N * K * I);
  T* hu = Resize(&act->h_up, N * K * I);
  T* ha = Resize(&act->h_act, N * K * I);
  T* eo = Resize(&act->expert_out, N * K * C);
  // Experts in parallel, each on one thread (its GEMMs then run single-threaded): one parallel
  // region per layer instead of a fork and join per product. Every expert writes its own rows.
  kernels::ForEach<std::vector<T>>(
      E, E > 1 && N * K * C * I >= kExpertParallelWork, [&](int64_t e, std::vector<T>& xe) {
      const int64_t begin = act->expert_offset[e], n_e = act->expert_offset[e + 1] - begin;
      if (n_e == 0) return;
      xe.resize(n_e * C);
      for (int64_t i = 0; i < n_e; ++i) {
        const int64_t n = act->order[begin + i] / K;
        std::copy(x + n * C, x + (n + 1) * C, xe.data() + i * C);
      }
      kernels::LinearForward<T>(xe.data(), w.gate + e * I * C, nullptr, n_e, C, I,
                                hg + begin * I);
      kernels::LinearForward<T>(xe.data(), w.up + e * I * C, nullptr, n_e, C, I, hu + begin * I);
      kernels::SwigluForward<T>(hg + begin * I, hu + begin * I, n_e * I, ha + begin * I);
      kernels::LinearForward<T>(ha + begin * I, w.down + e * C * I, nullptr, n_e, I, C,
                                eo + begin * C);
  });
  const std::vector<int64_t> pos = InverseOrder(act->order);
#pragma omp parallel for if (N * K * C >= (1 << 15)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    T* yn = y + n * C;
    std::fill(yn, yn + C, T(0));
    for (int64_t k = 0; k < K; ++k) {
      const T wk = wts[n * K + k];
      const T* o = eo + pos[n * K + k] * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) yn[c] += wk * o[c];
    }
  }
  if (cfg.shared_intermediate > 0) {
    const MlpConfig scfg{C, cfg.shared_intermediate};
    T* so = Resize(&act->shared_out, N * C);
    MlpForward<T>(scfg, w.shared, x, N, &act->shared, so);
    if (cfg.shared_gate) {
      T* gl = Resize(&act->shared_gate_logit, N);
      kernels::LinearForward<T>(x, w.shared_gate, nullptr, N, C, 1, gl);
      for (int64_t n = 0; n < N; ++n) kernels::Axpy<T>(Sigmoid(gl[n]), so + n * C, C, y + n * C);
    } else {
      kernels::Add<T>(y, so, N * C, y);
    }
  }
  return absl::OkStatus();
}

template <typename T>
void MoeBackward(const MoeConfig& cfg, const MoeWeights<T>& w, const T* x, int64_t N,
                 const MoeActivations<T>& act, const T* dy, const double* aux_coef, T* dx,
                 const MoeGrads<T>& grads) {
  const int64_t C = cfg.hidden, E = cfg.experts, K = cfg.top_k, I = cfg.intermediate;
  const int32_t* chosen = act.topk_experts.data();
  const T* wts = act.topk_weights.data();
  const std::vector<int64_t> pos = InverseOrder(act.order);

  // Combine: y_n = sum_k w_nk o_nk  =>  dw_nk = dy_n . o_nk,  do_nk = w_nk dy_n.
  std::vector<T> dw(N * K), deo(N * K * C);
#pragma omp parallel for if (N * K * C >= (1 << 15)) schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const T* dyn = dy + n * C;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t p = pos[n * K + k];
      const T* o = act.expert_out.data() + p * C;
      T* d = deo.data() + p * C;
      const T wk = wts[n * K + k];
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t c = 0; c < C; ++c) {
        acc += dyn[c] * o[c];
        d[c] = wk * dyn[c];
      }
      dw[n * K + k] = acc;
    }
  }

  // Experts, each over its own tokens, in parallel as in the forward. Each expert's input
  // gradient goes to its own rows of dxa ([N*K, C] in expert order); the tokens' sums follow.
  std::vector<T> dxa(dx != nullptr ? N * K * C : 0);
  struct Scratch {
    std::vector<T> dact, dg, du, xe;
  };
  kernels::ForEach<Scratch>(
      E, E > 1 && N * K * C * I >= kExpertParallelWork, [&](int64_t e, Scratch& sc) {
      auto& [dact, dg, du, xe] = sc;
      const int64_t begin = act.expert_offset[e], n_e = act.expert_offset[e + 1] - begin;
      if (n_e == 0) return;
      dact.assign(n_e * I, T(0));
      dg.resize(n_e * I);
      du.resize(n_e * I);
      kernels::LinearBackward<T>(deo.data() + begin * C, act.h_act.data() + begin * I,
                                 w.down + e * C * I, n_e, I, C, dact.data(),
                                 grads.down ? grads.down + e * C * I : nullptr, nullptr);
      kernels::SwigluBackward<T>(dact.data(), act.h_gate.data() + begin * I,
                                 act.h_up.data() + begin * I, n_e * I, dg.data(), du.data());
      xe.resize(n_e * C);
      for (int64_t i = 0; i < n_e; ++i) {
        const int64_t n = act.order[begin + i] / K;
        std::copy(x + n * C, x + (n + 1) * C, xe.data() + i * C);
      }
      T* dxe = dx != nullptr ? dxa.data() + begin * C : nullptr;
      if (dxe != nullptr) std::fill(dxe, dxe + n_e * C, T(0));
      kernels::LinearBackward<T>(dg.data(), xe.data(), w.gate + e * I * C, n_e, C, I, dxe,
                                 grads.gate ? grads.gate + e * I * C : nullptr, nullptr);
      kernels::LinearBackward<T>(du.data(), xe.data(), w.up + e * I * C, n_e, C, I, dxe,
                                 grads.up ? grads.up + e * I * C : nullptr, nullptr);
  });
  if (dx != nullptr) {
#pragma omp parallel for if (N * K * C >= (1 << 15)) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        kernels::Axpy<T>(T(1), dxa.data() + pos[n * K + k] * C, C, dx + n * C);
      }
    }
  }

  // Routing weights -> scores -> router logits.
  std::vector<T> dscore(N * E, T(0)), dlogits(N * E, T(0));
  const T rsf = static_cast<T>(cfg.routed_scaling_factor);
  for (int64_t n = 0; n < N; ++n) {
    const T* s = act.scores.data() + n * E;
    const int32_t* ch = chosen + n * K;
    T* ds = dscore.data() + n * E;
    if (cfg.norm_topk_prob) {
      T sum = 0, dot = 0;
      for (int64_t k = 0; k < K; ++k) {
        sum += s[ch[k]];
        dot += dw[n * K + k] * s[ch[k]];
      }
      if (cfg.scoring == MoeScoring::kSigmoid) sum += T(1e-20);
      for (int64_t k = 0; k < K; ++k) {
        ds[ch[k]] += rsf * (dw[n * K + k] / sum - dot / (sum * sum));
      }
    } else {
      for (int64_t k = 0; k < K; ++k) ds[ch[k]] += rsf * dw[n * K + k];
    }
  }
  if (cfg.scoring == MoeScoring::kSoftmax) {
    // The scores are the softmax probabilities: add the aux loss's d/dp, then one softmax
    // backward.
    if (aux_coef != nullptr) {
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t e = 0; e < E; ++e) dscore[n * E + e] += static_cast<T>(aux_coef[e]);
      }
    }
    kernels::SoftmaxBackward<T>(act.probs.data(), dscore.data(), N, E, dlogits.data());
  } else {
    for (int64_t i = 0; i < N * E; ++i) {
      const T s = act.scores[i];
      dlogits[i] = dscore[i] * s * (T(1) - s);
    }
    if (aux_coef != nullptr) {
      std::vector<T> dp(N * E);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t e = 0; e < E; ++e) dp[n * E + e] = static_cast<T>(aux_coef[e]);
      }
      kernels::SoftmaxBackward<T>(act.probs.data(), dp.data(), N, E, dlogits.data());
    }
  }
  kernels::LinearBackward<T>(dlogits.data(), x, w.router, N, C, E, dx, grads.router, nullptr);

  if (cfg.shared_intermediate > 0) {
    const MlpConfig scfg{C, cfg.shared_intermediate};
    const T* so = act.shared_out.data();
    if (cfg.shared_gate) {
      // y += sigmoid(l) * so:  dso = sigmoid(l) dy,  dl = sigmoid'(l) (dy . so).
      std::vector<T> dso(N * C), dl(N);
      for (int64_t n = 0; n < N; ++n) {
        const T g = Sigmoid(act.shared_gate_logit[n]);
        T dot = 0;
        for (int64_t c = 0; c < C; ++c) {
          dso[n * C + c] = g * dy[n * C + c];
          dot += dy[n * C + c] * so[n * C + c];
        }
        dl[n] = dot * g * (T(1) - g);
      }
      MlpBackward<T>(scfg, w.shared, x, N, act.shared, dso.data(), dx, grads.shared);
      kernels::LinearBackward<T>(dl.data(), x, w.shared_gate, N, C, 1, dx, grads.shared_gate,
                                 nullptr);
    } else {
      MlpBackward<T>(scfg, w.shared, x, N, act.shared, dy, dx, grads.shared);
    }
  }
}

absl::StatusOr<LoadBalancingResult> LoadBalancingLoss(
    std::span<const std::vector<int64_t>* const> expert_counts,
    std::span<const std::vector<double>* const> prob_sums, int64_t tokens, double dloss) {
  if (expert_counts.empty() || expert_counts.size() != prob_sums.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "load balancing loss: ", expert_counts.size(), " expert count vectors and ",
        prob_sums.size(), " probability sums (need the same non-zero number of layers)"));
  }
  if (tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("load balancing loss: tokens ", tokens, " must be positive"));
  }
  const size_t E = expert_counts[0]->size();
  std::vector<double> f(E, 0.0), P(E, 0.0);
  for (size_t l = 0; l < expert_counts.size(); ++l) {
    if (expert_counts[l]->size() != E || prob_sums[l]->size() != E) {
      return absl::InvalidArgumentError(
          absl::StrCat("load balancing loss: layer ", l, " has statistics for ",
                       expert_counts[l]->size(), " / ", prob_sums[l]->size(),
                       " experts, layer 0 for ", E));
    }
    for (size_t e = 0; e < E; ++e) {
      f[e] += static_cast<double>((*expert_counts[l])[e]);
      P[e] += (*prob_sums[l])[e];
    }
  }
  const double ntot = static_cast<double>(tokens) * static_cast<double>(expert_counts.size());
  LoadBalancingResult r;
  r.coef.resize(E);
  for (size_t e = 0; e < E; ++e) {
    f[e] /= ntot;
    P[e] /= ntot;
    r.loss += f[e] * P[e];
    r.coef[e] = dloss * static_cast<double>(E) * f[e] / ntot;
  }
  r.loss *= static_cast<double>(E);
  return r;
}

#define RLVR_INSTANTIATE(T)                                                                  \
  template absl::Status MoeForward<T>(const MoeConfig&, const MoeWeights<T>&, const T*,      \
                                      int64_t, const int32_t*, MoeActivations<T>*, T*);      \
  template void MoeBackward<T>(const MoeConfig&, const MoeWeights<T>&, const T*, int64_t,    \
                               const MoeActivations<T>&, const T*, const double*, T*,        \
                               const MoeGrads<T>&);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::policy::layers
