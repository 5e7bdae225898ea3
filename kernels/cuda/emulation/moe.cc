// Host emulation of kernels/cuda/moe.h: the host-side checks of moe.cu, then
// the routing, permutation, gather / combine and grouped GEMMs as loops in fp32
// (the expert products through emu::HostGemm), with the orders the header
// documents.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <cmath>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/attn_moe_args.h"
#include "core/status.h"
#include "kernels/cuda/emulation/emu.h"
#include "kernels/cuda/moe.h"


namespace rlvr::kernels::cuda {
namespace {

using emu::CheckElems;
using emu::Enqueue;
using emu::Load;
using emu::Store;
using internal::Bad;

constexpr int64_t kMaxExperts = 1024;
constexpr int64_t kMaxTopK = 32;
constexpr int64_t kTn = 64;

absl::Status CheckNK(const char *fn, int64_t N, int64_t K, int64_t C) {
  if (N < 0 || K <= 0 || K > kMaxTopK || C <= 0) {
    return Bad(fn, "N=", N, " K=", K, " C=", C,
               " (need N >= 0, 1 <= K <= 32, C >= 1)");
  }
  if (N * K >= (int64_t{1} << 31))
    return Bad(fn, "N*K=", N * K, " above int32 range");
  return absl::OkStatus();
}

absl::Status CheckRouter(const char *fn, int64_t N, int64_t E, int64_t K) {
  if (N < 0)
    return Bad(fn, "N=", N, " is negative");
  if (E <= 0 || E > kMaxExperts)
    return Bad(fn, "E=", E, " must be in [1, 1024]");
  if (K <= 0 || K > std::min(E, kMaxTopK)) {
    return Bad(fn, "K=", K, " must be in [1, min(E=", E, ", 32)]");
  }
  if (N * K >= (int64_t{1} << 31))
    return Bad(fn, "N*K=", N * K, " above int32 range");
  return absl::OkStatus();
}

absl::Status CheckGrouped(const char *fn, int64_t E, int64_t M_max,
                          int64_t Nout, int64_t Kin) {
  if (E <= 0 || E > kMaxExperts)
    return Bad(fn, "E=", E, " must be in [1, 1024]");
  if (M_max < 0 || Nout <= 0 || Kin <= 0) {
    return Bad(fn, "M_max=", M_max, " Nout=", Nout, " Kin=", Kin,
               " (need >= 0, > 0, > 0)");
  }
  if (M_max >= (int64_t{1} << 31) || Nout >= (int64_t{1} << 31) ||
      Kin >= (int64_t{1} << 31) || E * Nout * Kin >= (int64_t{1} << 62)) {
    return Bad(fn, "sizes above int32 range");
  }
  if ((Nout + kTn - 1) / kTn > internal::kMaxGridYZ)
    return Bad(fn, "Nout=", Nout, " too large");
  return absl::OkStatus();
}

// The run [expert_offset[e], expert_offset[e+1]) of every expert, checked
// against M_max.
std::vector<int64_t> Offsets(const char *fn, const int32_t *expert_offset,
                             int64_t E, int64_t M_max) {
  std::vector<int64_t> off(E + 1);
  for (int64_t e = 0; e <= E; ++e) {
    off[e] = expert_offset[e];
    if (off[e] < 0 || off[e] > M_max || (e > 0 && off[e] < off[e - 1])) {
      emu::Die(absl::StrCat(
          fn, ": expert_offset[", e, "] = ", off[e],
          " is not a non-decreasing offset in [0, M_max = ", M_max, "]"));
    }
  }
  return off;
}

template <typename T> std::vector<float> Widen(const T *p, int64_t n) {
  std::vector<float> out(std::max<int64_t>(n, 0));
  for (int64_t i = 0; i < n; ++i)
    out[i] = Load(p + i);
  return out;
}

template <typename T>
absl::Status Gather(const char *fn, const T *x, const int32_t *order, int64_t N,
                    int64_t K, int64_t C, T *xe, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0)
    return absl::OkStatus();
  if (!x || !order || !xe)
    return Bad(fn, "null x, order or xe");
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, N * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "order", order, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "xe", xe, N * K * C));
  return Enqueue(fn, stream, [=] {
    for (int64_t i = 0; i < N * K; ++i) {
      const int64_t a = order[i];
      if (a < 0 || a >= N * K)
        emu::Die(absl::StrCat(fn, ": order[", i, "] = ", a, " out of range"));
      std::copy(x + (a / K) * C, x + (a / K) * C + C, xe + i * C);
    }
  });
}

template <typename T, typename U>
absl::Status GatherBackward(const char *fn, const T *dxe, const int32_t *pos,
                            int64_t N, int64_t K, int64_t C, U *dx,
                            Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0)
    return absl::OkStatus();
  if (!dxe || !pos || !dx)
    return Bad(fn, "null dxe, slot_pos or dx");
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dxe", dxe, N * K * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "slot_pos", pos, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dx", dx, N * C));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        float s = 0.0f;
        for (int64_t k = 0; k < K; ++k)
          s += Load(dxe + int64_t{pos[n * K + k]} * C + c);
        Store(dx + n * C + c, Load(dx + n * C + c) + s);
      }
    }
  });
}

template <typename T>
absl::Status Combine(const char *fn, const T *ye, const float *w,
                     const int32_t *pos, int64_t N, int64_t K, int64_t C, T *y,
                     Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0)
    return absl::OkStatus();
  if (!ye || !w || !pos || !y)
    return Bad(fn, "null ye, topk_weights, slot_pos or y");
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "ye", ye, N * K * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_weights", w, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "slot_pos", pos, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "y", y, N * C));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        float s = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
          s += w[n * K + k] * Load(ye + int64_t{pos[n * K + k]} * C + c);
        }
        Store(y + n * C + c, s);
      }
    }
  });
}

template <typename T>
absl::Status CombineBackward(const char *fn, const T *dy, const T *ye,
                             const float *w, const int32_t *pos, int64_t N,
                             int64_t K, int64_t C, float *dweights, T *dye,
                             Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckNK(fn, N, K, C));
  if (N == 0)
    return absl::OkStatus();
  if (!dy || !ye || !w || !pos || !dweights || !dye) {
    return Bad(fn, "null dy, ye, topk_weights, slot_pos, dweights or dye");
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dy", dy, N * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "ye", ye, N * K * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_weights", w, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "slot_pos", pos, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dweights", dweights, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dye", dye, N * K * C));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t p = pos[n * K + k];
        float dot = 0.0f;
        for (int64_t c = 0; c < C; ++c) {
          const float g = Load(dy + n * C + c);
          dot += g * Load(ye + p * C + c);
          Store(dye + p * C + c, w[n * K + k] * g);
        }
        dweights[n * K + k] = dot;
      }
    }
  });
}

template <typename T>
absl::Status GroupedGemm(const char *fn, const T *x, const T *w,
                         const int32_t *expert_offset, int64_t E, int64_t M_max,
                         int64_t Nout, int64_t Kin, bool trans_w, T *y,
                         Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckGrouped(fn, E, M_max, Nout, Kin));
  if (M_max == 0)
    return absl::OkStatus();
  if (!x || !w || !expert_offset || !y)
    return Bad(fn, "null x, w, expert_offset or y");
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "w", w, E * Nout * Kin));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "expert_offset", expert_offset, E + 1));
  return Enqueue(fn, stream, [=] {
    const std::vector<int64_t> off = Offsets(fn, expert_offset, E, M_max);
    const int64_t M = off[E];
    emu::DieIfOutOfRange(fn, "x", x, M * Kin * sizeof(T));
    emu::DieIfOutOfRange(fn, "y", y, M * Nout * sizeof(T));
    const std::vector<float> xf = Widen(x, M * Kin);
    std::vector<float> yf(M * Nout, 0.0f);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t rows = off[e + 1] - off[e];
      if (rows == 0)
        continue;
      const std::vector<float> we = Widen(w + e * Nout * Kin, Nout * Kin);
      // trans_w false: W_e [Nout, Kin], y = x W_e^T; true: W_e [Kin, Nout], y =
      // x W_e.
      emu::HostGemm(false, !trans_w, rows, Nout, Kin, xf.data() + off[e] * Kin,
                    Kin, we.data(), trans_w ? Nout : Kin, 0.0f,
                    yf.data() + off[e] * Nout, Nout,
                    std::is_same_v<T, uint16_t>);
    }
    for (int64_t i = 0; i < M * Nout; ++i)
      Store(y + i, yf[i]);
  });
}

template <typename T>
absl::Status GroupedWeightGrad(const char *fn, const T *dy, const T *x,
                               const int32_t *expert_offset, int64_t E,
                               int64_t M_max, int64_t Nout, int64_t Kin,
                               float *dw, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckGrouped(fn, E, M_max, Nout, Kin));
  if (M_max == 0)
    return absl::OkStatus();
  if (!dy || !x || !expert_offset || !dw)
    return Bad(fn, "null dy, x, expert_offset or dw");
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dw", dw, E * Nout * Kin));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "expert_offset", expert_offset, E + 1));
  return Enqueue(fn, stream, [=] {
    const std::vector<int64_t> off = Offsets(fn, expert_offset, E, M_max);
    const int64_t M = off[E];
    emu::DieIfOutOfRange(fn, "x", x, M * Kin * sizeof(T));
    emu::DieIfOutOfRange(fn, "dy", dy, M * Nout * sizeof(T));
    const std::vector<float> xf = Widen(x, M * Kin), dyf = Widen(dy, M * Nout);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t rows = off[e + 1] - off[e];
      if (rows == 0)
        continue;
      emu::HostGemm(true, false, Nout, Kin, rows, dyf.data() + off[e] * Nout,
                    Nout, xf.data() + off[e] * Kin, Kin, 1.0f,
                    dw + e * Nout * Kin, Kin, std::is_same_v<T, uint16_t>);
    }
  });
}

} // namespace

absl::Status MoeRouterTopK(const float *logits, int64_t N, int64_t E, int64_t K,
                           bool norm_topk_prob, double routed_scaling_factor,
                           float *probs, int32_t *topk_experts,
                           float *topk_weights, Stream stream) {
  const char *fn = "MoeRouterTopK";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (N == 0)
    return absl::OkStatus();
  if (!logits || !probs || !topk_experts || !topk_weights) {
    return Bad(fn, "null logits, probs, topk_experts or topk_weights");
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "logits", logits, N * E));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "probs", probs, N * E));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_experts", topk_experts, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_weights", topk_weights, N * K));
  const float rsf = static_cast<float>(routed_scaling_factor);
  return Enqueue(fn, stream, [=] {
    std::vector<char> taken(E);
    for (int64_t n = 0; n < N; ++n) {
      const float *z = logits + n * E;
      float *p = probs + n * E;
      float mx = -INFINITY;
      for (int64_t e = 0; e < E; ++e)
        mx = std::max(mx, z[e]);
      float sum = 0.0f;
      for (int64_t e = 0; e < E; ++e) {
        p[e] = std::exp(z[e] - mx);
        sum += p[e];
      }
      const float inv = 1.0f / sum;
      for (int64_t e = 0; e < E; ++e)
        p[e] *= inv;
      std::fill(taken.begin(), taken.end(), 0);
      float total = 0.0f;
      std::vector<float> vals(K);
      for (int64_t k = 0; k < K; ++k) {
        float best_v = -INFINITY;
        int64_t best_e = INT_MAX;
        for (int64_t e = 0; e < E; ++e) {
          if (taken[e])
            continue;
          if (p[e] > best_v || (p[e] == best_v && e < best_e)) {
            best_v = p[e];
            best_e = e;
          }
        }
        taken[best_e] = 1;
        topk_experts[n * K + k] = static_cast<int32_t>(best_e);
        vals[k] = best_v;
        total += best_v; // in selection order
      }
      const float denom = norm_topk_prob ? total : 1.0f;
      for (int64_t k = 0; k < K; ++k)
        topk_weights[n * K + k] = vals[k] / denom * rsf;
    }
  });
}

absl::Status MoeRouterBackward(const float *probs, const int32_t *topk_experts,
                               const float *dweights, const double *aux_coef,
                               int64_t N, int64_t E, int64_t K,
                               bool norm_topk_prob,
                               double routed_scaling_factor, float *dlogits,
                               Stream stream) {
  const char *fn = "MoeRouterBackward";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (N == 0)
    return absl::OkStatus();
  if (!probs || !topk_experts || !dweights || !dlogits) {
    return Bad(fn, "null probs, topk_experts, dweights or dlogits");
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "probs", probs, N * E));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_experts", topk_experts, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dweights", dweights, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dlogits", dlogits, N * E));
  if (aux_coef != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "aux_coef", aux_coef, E));
  const float rsf = static_cast<float>(routed_scaling_factor);
  return Enqueue(fn, stream, [=] {
    std::vector<float> ds(E);
    for (int64_t n = 0; n < N; ++n) {
      const float *p = probs + n * E;
      const int32_t *ch = topk_experts + n * K;
      const float *dw = dweights + n * K;
      float S = 0.0f, dot = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        S += p[ch[k]];
        dot += dw[k] * p[ch[k]];
      }
      float pdp = 0.0f;
      for (int64_t e = 0; e < E; ++e) {
        float d = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
          if (ch[k] == e)
            d += norm_topk_prob ? rsf * (dw[k] / S - dot / (S * S))
                                : rsf * dw[k];
        }
        if (aux_coef != nullptr)
          d += static_cast<float>(aux_coef[e]);
        ds[e] = d;
        pdp += p[e] * d;
      }
      for (int64_t e = 0; e < E; ++e)
        dlogits[n * E + e] += p[e] * (ds[e] - pdp);
    }
  });
}

absl::Status MoePermute(const int32_t *topk_experts, int64_t N, int64_t K,
                        int64_t E, int32_t *expert_offset, int32_t *order,
                        int32_t *slot_pos, Stream stream) {
  const char *fn = "MoePermute";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (!expert_offset)
    return Bad(fn, "null expert_offset");
  if (N > 0 && (!topk_experts || !order || !slot_pos)) {
    return Bad(fn, "null topk_experts, order or slot_pos");
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "expert_offset", expert_offset, E + 1));
  if (N > 0) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_experts", topk_experts, N * K));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "order", order, N * K));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "slot_pos", slot_pos, N * K));
  }
  return Enqueue(fn, stream, [=] {
    const int64_t A = N * K;
    std::vector<int64_t> count(E, 0);
    for (int64_t a = 0; a < A; ++a) {
      const int32_t e = topk_experts[a];
      if (e >= 0 && e < E)
        ++count[e];
    }
    int64_t run = 0;
    std::vector<int64_t> next(E);
    for (int64_t e = 0; e < E; ++e) {
      expert_offset[e] = static_cast<int32_t>(run);
      next[e] = run;
      run += count[e];
    }
    expert_offset[E] = static_cast<int32_t>(run);
    for (int64_t a = 0; a < A; ++a) {
      const int32_t e = topk_experts[a];
      if (e < 0 || e >= E)
        continue;
      order[next[e]] = static_cast<int32_t>(a);
      slot_pos[a] = static_cast<int32_t>(next[e]);
      ++next[e];
    }
  });
}

absl::Status MoeRoutingStats(const float *probs, const int32_t *topk_experts,
                             int64_t N, int64_t E, int64_t K,
                             int64_t *expert_count, double *prob_sum,
                             Stream stream) {
  const char *fn = "MoeRoutingStats";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (!expert_count || !prob_sum)
    return Bad(fn, "null expert_count or prob_sum");
  if (N > 0 && (!probs || !topk_experts))
    return Bad(fn, "null probs or topk_experts");
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "expert_count", expert_count, E));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "prob_sum", prob_sum, E));
  if (N > 0) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "probs", probs, N * E));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_experts", topk_experts, N * K));
  }
  return Enqueue(fn, stream, [=] {
    for (int64_t e = 0; e < E; ++e) {
      expert_count[e] = 0;
      prob_sum[e] = 0.0;
    }
    for (int64_t a = 0; a < N * K; ++a) {
      const int32_t e = topk_experts[a];
      if (e >= 0 && e < E)
        ++expert_count[e];
    }
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t e = 0; e < E; ++e)
        prob_sum[e] += probs[n * E + e];
    }
  });
}

absl::Status MoeGatherRowsF32(const float *x, const int32_t *order, int64_t N,
                              int64_t K, int64_t C, float *xe, Stream stream) {
  return Gather<float>("MoeGatherRowsF32", x, order, N, K, C, xe, stream);
}
absl::Status MoeGatherRowsBf16(const uint16_t *x, const int32_t *order,
                               int64_t N, int64_t K, int64_t C, uint16_t *xe,
                               Stream stream) {
  return Gather<uint16_t>("MoeGatherRowsBf16", x, order, N, K, C, xe, stream);
}
absl::Status MoeGatherRowsBackwardF32(const float *dxe, const int32_t *slot_pos,
                                      int64_t N, int64_t K, int64_t C,
                                      float *dx, Stream stream) {
  return GatherBackward<float, float>("MoeGatherRowsBackwardF32", dxe, slot_pos,
                                      N, K, C, dx, stream);
}
absl::Status MoeGatherRowsBackwardBf16(const uint16_t *dxe,
                                       const int32_t *slot_pos, int64_t N,
                                       int64_t K, int64_t C, uint16_t *dx,
                                       Stream stream) {
  return GatherBackward<uint16_t, uint16_t>("MoeGatherRowsBackwardBf16", dxe,
                                            slot_pos, N, K, C, dx, stream);
}
absl::Status MoeGatherRowsBackwardBf16ToF32(const uint16_t *dxe,
                                            const int32_t *slot_pos, int64_t N,
                                            int64_t K, int64_t C, float *dx,
                                            Stream stream) {
  return GatherBackward<uint16_t, float>("MoeGatherRowsBackwardBf16ToF32", dxe,
                                         slot_pos, N, K, C, dx, stream);
}
absl::Status MoeCombineF32(const float *ye, const float *topk_weights,
                           const int32_t *slot_pos, int64_t N, int64_t K,
                           int64_t C, float *y, Stream stream) {
  return Combine<float>("MoeCombineF32", ye, topk_weights, slot_pos, N, K, C, y,
                        stream);
}
absl::Status MoeCombineBf16(const uint16_t *ye, const float *topk_weights,
                            const int32_t *slot_pos, int64_t N, int64_t K,
                            int64_t C, uint16_t *y, Stream stream) {
  return Combine<uint16_t>("MoeCombineBf16", ye, topk_weights, slot_pos, N, K,
                           C, y, stream);
}
absl::Status MoeCombineBackwardF32(const float *dy, const float *ye,
                                   const float *topk_weights,
                                   const int32_t *slot_pos, int64_t N,
                                   int64_t K, int64_t C, float *dweights,
                                   float *dye, Stream stream) {
  return CombineBackward<float>("MoeCombineBackwardF32", dy, ye, topk_weights,
                                slot_pos, N, K, C, dweights, dye, stream);
}
absl::Status MoeCombineBackwardBf16(const uint16_t *dy, const uint16_t *ye,
                                    const float *topk_weights,
                                    const int32_t *slot_pos, int64_t N,
                                    int64_t K, int64_t C, float *dweights,
                                    uint16_t *dye, Stream stream) {
  return CombineBackward<uint16_t>("MoeCombineBackwardBf16", dy, ye,
                                   topk_weights, slot_pos, N, K, C, dweights,
                                   dye, stream);
}
absl::Status MoeGroupedGemmF32(const float *x, const float *w,
                               const int32_t *expert_offset, int64_t E,
                               int64_t M_max, int64_t Nout, int64_t Kin,
                               bool trans_w, float *y, Stream stream) {
  return GroupedGemm<float>("MoeGroupedGemmF32", x, w, expert_offset, E, M_max,
                            Nout, Kin, trans_w, y, stream);
}
absl::Status MoeGroupedGemmBf16(const uint16_t *x, const uint16_t *w,
                                const int32_t *expert_offset, int64_t E,
                                int64_t M_max, int64_t Nout, int64_t Kin,
                                bool trans_w, uint16_t *y, Stream stream) {
  return GroupedGemm<uint16_t>("MoeGroupedGemmBf16", x, w, expert_offset, E,
                               M_max, Nout, Kin, trans_w, y, stream);
}
absl::Status MoeGroupedGemmWeightGradBf16(const uint16_t *dy, const uint16_t *x,
                                          const int32_t *expert_offset,
                                          int64_t E, int64_t M_max,
                                          int64_t Nout, int64_t Kin, float *dw,
                                          Stream stream) {
  return GroupedWeightGrad<uint16_t>("MoeGroupedGemmWeightGradBf16", dy, x,
                                     expert_offset, E, M_max, Nout, Kin, dw,
                                     stream);
}
absl::Status MoeGroupedGemmWeightGradF32(const float *dy, const float *x,
                                         const int32_t *expert_offset,
                                         int64_t E, int64_t M_max, int64_t Nout,
                                         int64_t Kin, float *dw,
                                         Stream stream) {
  return GroupedWeightGrad<float>("MoeGroupedGemmWeightGradF32", dy, x,
                                  expert_offset, E, M_max, Nout, Kin, dw,
                                  stream);
}

// Router replay (moe.h): forced rows get the forced experts and the CPU's weights for them.
absl::Status MoeApplyForcedExperts(const float *probs, const int32_t *forced, int64_t N,
                                   int64_t E, int64_t K, bool norm_topk_prob,
                                   double routed_scaling_factor, int32_t *topk_experts,
                                   float *topk_weights, Stream stream) {
  const char *fn = "MoeApplyForcedExperts";
  RLVR_RETURN_IF_ERROR(CheckRouter(fn, N, E, K));
  if (N == 0)
    return absl::OkStatus();
  if (!probs || !forced || !topk_experts || !topk_weights) {
    return Bad(fn, "null probs, forced, topk_experts or topk_weights");
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "probs", probs, N * E));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "forced", forced, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_experts", topk_experts, N * K));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "topk_weights", topk_weights, N * K));
  const float rsf = static_cast<float>(routed_scaling_factor);
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      const int32_t *f = forced + n * K;
      if (f[0] < 0)
        continue;
      const float *p = probs + n * E;
      float sum = 0.f;
      for (int64_t k = 0; k < K; ++k)
        sum += p[f[k]];
      const float denom = norm_topk_prob ? sum : 1.f;
      for (int64_t k = 0; k < K; ++k) {
        topk_experts[n * K + k] = f[k];
        topk_weights[n * K + k] = p[f[k]] / denom * rsf;
      }
    }
  });
}

// Tensor-core grouped GEMMs (moe.h): the same results up to rounding, so the emulation runs the
// FMA semantics after the extra checks the real ones make (multiples of 8, 16-byte alignment).
namespace {
absl::Status CheckTcAlignment(const char *fn, int64_t Nout, int64_t Kin,
                              std::initializer_list<const void *> ptrs) {
  if (Nout % 8 != 0 || Kin % 8 != 0) {
    return Bad(fn, "Nout=", Nout, " and Kin=", Kin, " must be multiples of 8");
  }
  for (const void *p : ptrs) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
      return Bad(fn, "bf16 pointers must be 16-byte aligned");
    }
  }
  return absl::OkStatus();
}
} // namespace

absl::Status MoeGroupedGemmBf16Tc(const uint16_t *x, const uint16_t *w,
                                  const int32_t *expert_offset, int64_t E, int64_t M_max,
                                  int64_t Nout, int64_t Kin, bool trans_w, uint16_t *y,
                                  Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckTcAlignment("MoeGroupedGemmBf16Tc", Nout, Kin, {x, w, y}));
  return GroupedGemm<uint16_t>("MoeGroupedGemmBf16Tc", x, w, expert_offset, E, M_max, Nout,
                               Kin, trans_w, y, stream);
}
absl::Status MoeGroupedGemmWeightGradBf16Tc(const uint16_t *dy, const uint16_t *x,
                                            const int32_t *expert_offset, int64_t E,
                                            int64_t M_max, int64_t Nout, int64_t Kin, float *dw,
                                            Stream stream) {
  RLVR_RETURN_IF_ERROR(
      CheckTcAlignment("MoeGroupedGemmWeightGradBf16Tc", Nout, Kin, {dy, x}));
  return GroupedWeightGrad<uint16_t>("MoeGroupedGemmWeightGradBf16Tc", dy, x, expert_offset, E,
                                     M_max, Nout, Kin, dw, stream);
}
// The emulation has no tensor cores: the plain entry points keep the FMA semantics.
bool MoeGroupedGemmUsesTensorCores(int64_t, int64_t, const void *, const void *,
                                   const void *) {
  return false;
}

} // namespace rlvr::kernels::cuda
