#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/decode_attention.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/matmul.h"

namespace rlvr::kernels {
namespace {
// Multiply-adds below which a parallel region costs more than it saves.
constexpr int64_t kParallelWork = int64_t{1} << 18;
// Query rows per block of the causal attention products.
constexpr int64_t kCausalBlock = 64;

// Segment boundaries of row b: bounds = [a0 = 0, a1, ..., Tn], segment i is [a_i, a_{i+1}).
void SegmentBounds(const int32_t* seg_start, int64_t b, int64_t Tn, std::vector<int64_t>* bounds) {
  bounds->clear();
  bounds->push_back(0);
  if (seg_start != nullptr) {
    const int32_t* row = seg_start + b * Tn;
    RLVR_CHECK(row[0] == 0, "attention: seg_start[", b, ", 0] is ", row[0], ", expected 0");
    for (int64_t t = 1; t < Tn; ++t) {
      RLVR_CHECK(row[t] == t || row[t] == row[t - 1], "attention: seg_start[", b, ", ", t, "] is ",
                 row[t], ", expected ", t, " or ", row[t - 1]);
      if (row[t] == t) bounds->push_back(t);
    }
  }
  bounds->push_back(Tn);
}

// Sum over rows of sum over segments of len^2 (the score elements), divided by B: the per-row
// attention work the parallel threshold weighs.
int64_t SegmentWork(const int32_t* seg_start, int64_t B, int64_t Tn) {
  if (seg_start == nullptr) return Tn * Tn;
  int64_t total = 0;
  for (int64_t i = 0; i < B * Tn; ++i) total += (i % Tn) - seg_start[i] + 1;  // ~len^2 / 2
  return std::max<int64_t>(1, 2 * total / std::max<int64_t>(1, B));
}
}  // namespace

template <typename T>
void AttentionForward(const T* q, const T* k, const T* v, int64_t B, int64_t Tn, int64_t H,
                      int64_t Hkv, int64_t D, double scale, T* out, T* lse,
                      const int32_t* seg_start) {
  RLVR_CHECK(Hkv > 0 && H % Hkv == 0, "attention heads ", H, " not a multiple of kv heads ", Hkv);
  const int64_t group = H / Hkv;
  const int64_t ldq = H * D, ldk = Hkv * D;
  const T sc = static_cast<T>(scale);
  const int64_t pairs = B * Hkv;
  const int64_t work = SegmentWork(seg_start, B, Tn);
  struct Scratch {
    std::vector<T> S;
    std::vector<int64_t> bounds;
  };
  // Serial below the threshold without any OpenMP region (see kernels/cpu/parallel.h): the
  // products inside may then use every thread.
  ForEach<Scratch>(pairs, pairs > 1 && pairs * group * work * D >= kParallelWork,
                   [&](int64_t pg, Scratch& scratch) {
      std::vector<T>& S = scratch.S;
      std::vector<int64_t>& bounds = scratch.bounds;
      const int64_t b = pg / Hkv, g = pg % Hkv;
      SegmentBounds(seg_start, b, Tn, &bounds);
      for (size_t si = 0; si + 1 < bounds.size(); ++si) {
        // One segment [a, a + L) is an independent causal sequence. Its query rows go in blocks
        // [i0, i1) of kCausalBlock against keys [0, i1) only: the products skip the masked
        // upper triangle (56-63% of the full square's work).
        const int64_t a = bounds[si], L = bounds[si + 1] - a;
        S.resize(static_cast<size_t>(std::min(L, kCausalBlock) * L));
        const T* kb = k + (b * Tn + a) * ldk + g * D;
        const T* vb = v + (b * Tn + a) * ldk + g * D;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const T* qb = q + (b * Tn + a) * ldq + h * D;
          T* lse_bh = lse + (b * H + h) * Tn + a;
          for (int64_t i0 = 0; i0 < L; i0 += kCausalBlock) {
            const int64_t i1 = std::min(L, i0 + kCausalBlock), R = i1 - i0;
            Gemm<T>(false, true, R, i1, D, sc, qb + i0 * ldq, ldq, kb, ldk, T(0), S.data(), L);
            for (int64_t t = i0; t < i1; ++t) {
              T* row = S.data() + (t - i0) * L;
              T m = -std::numeric_limits<T>::infinity();
              for (int64_t s = 0; s <= t; ++s) m = std::max(m, row[s]);
              T sum = 0;
#pragma omp simd reduction(+ : sum)
              for (int64_t s = 0; s <= t; ++s) {
                row[s] = internal::Exp<T>(row[s] - m);
                sum += row[s];
              }
              const T inv = T(1) / sum;
              for (int64_t s = 0; s <= t; ++s) row[s] *= inv;
              for (int64_t s = t + 1; s < i1; ++s) row[s] = 0;
              lse_bh[t] = m + std::log(sum);
            }
            Gemm<T>(false, false, R, D, i1, T(1), S.data(), L, vb, ldk, T(0),
                    out + (b * Tn + a + i0) * ldq + h * D, ldq);
          }
        }
      }
  });
}

template <typename T>
void AttentionBackward(const T* dout, const T* q, const T* k, const T* v, const T* out,
                       const T* lse, int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                       double scale, T* dq, T* dk, T* dv, const int32_t* seg_start) {
  const int64_t group = H / Hkv;
  const int64_t ldq = H * D, ldk = Hkv * D;
  const T sc = static_cast<T>(scale);
  const int64_t pairs = B * Hkv;
  const int64_t work = SegmentWork(seg_start, B, Tn);
  struct Scratch {
    std::vector<T> P, dP, Di;
    std::vector<int64_t> bounds;
  };
  ForEach<Scratch>(pairs, pairs > 1 && pairs * group * work * D >= kParallelWork,
                   [&](int64_t pg, Scratch& scratch) {
      auto& [P, dP, Di, bounds] = scratch;
      const int64_t b = pg / Hkv, g = pg % Hkv;
      SegmentBounds(seg_start, b, Tn, &bounds);
      for (size_t si = 0; si + 1 < bounds.size(); ++si) {
        const int64_t a = bounds[si], L = bounds[si + 1] - a;
        const int64_t rows = std::min(L, kCausalBlock);
        P.resize(static_cast<size_t>(rows * L));
        dP.resize(static_cast<size_t>(rows * L));
        Di.resize(static_cast<size_t>(rows));
        const T* kb = k + (b * Tn + a) * ldk + g * D;
        const T* vb = v + (b * Tn + a) * ldk + g * D;
        T* dkb = dk + (b * Tn + a) * ldk + g * D;
        T* dvb = dv + (b * Tn + a) * ldk + g * D;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const int64_t off = (b * Tn + a) * ldq + h * D;
          const T* lse_bh = lse + (b * H + h) * Tn + a;
          // Query rows in blocks [i0, i1), each against keys [0, i1) (see AttentionForward).
          for (int64_t i0 = 0; i0 < L; i0 += kCausalBlock) {
            const int64_t i1 = std::min(L, i0 + kCausalBlock), R = i1 - i0;
            const int64_t qoff = off + i0 * ldq;
            // Recompute the probabilities from the saved log-sum-exp.
            Gemm<T>(false, true, R, i1, D, sc, q + qoff, ldq, kb, ldk, T(0), P.data(), L);
            for (int64_t t = i0; t < i1; ++t) {
              T* row = P.data() + (t - i0) * L;
              const T l = lse_bh[t];
#pragma omp simd
              for (int64_t s = 0; s <= t; ++s) row[s] = internal::Exp<T>(row[s] - l);
              for (int64_t s = t + 1; s < i1; ++s) row[s] = 0;
              // D_t = sum_d dO O = sum_s P dP: the softmax backward's row dot product.
              T acc = 0;
              const T* o_t = out + off + t * ldq;
              const T* do_t = dout + off + t * ldq;
              for (int64_t d = 0; d < D; ++d) acc += o_t[d] * do_t[d];
              Di[t - i0] = acc;
            }
            // dV[0, i1) += P^T dO
            Gemm<T>(true, false, i1, D, R, T(1), P.data(), L, dout + qoff, ldq, T(1), dvb, ldk);
            // dP = dO V^T, then dS = P (dP - D_t), stored in dP.
            Gemm<T>(false, true, R, i1, D, T(1), dout + qoff, ldq, vb, ldk, T(0), dP.data(), L);
            for (int64_t t = i0; t < i1; ++t) {
              const T* pr = P.data() + (t - i0) * L;
              T* dr = dP.data() + (t - i0) * L;
              const T di = Di[t - i0];
              for (int64_t s = 0; s <= t; ++s) dr[s] = pr[s] * (dr[s] - di);
              for (int64_t s = t + 1; s < i1; ++s) dr[s] = 0;
            }
            // dQ[i0, i1) += scale dS K; dK[0, i1) += scale dS^T Q
            Gemm<T>(false, false, R, D, i1, sc, dP.data(), L, kb, ldk, T(1), dq + qoff, ldq);
            Gemm<T>(true, false, i1, D, R, sc, dP.data(), L, q + qoff, ldq, T(1), dkb, ldk);
          }
        }
      }
  });
}

template <typename T>
void KvCacheWrite(const T* k_new, const T* v_new, const int32_t* positions, int64_t B,
                  int64_t Tn, int64_t Hkv, int64_t D, std::span<const KvCacheView<T>> caches) {
  RLVR_CHECK(static_cast<int64_t>(caches.size()) == B, "KvCacheWrite: ", caches.size(),
             " caches for batch ", B);
  const int64_t row = Hkv * D;
  const bool bf16 = std::is_same_v<T, float> && MatmulInBf16();
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t p = positions[b * Tn + t];
      RLVR_CHECK(p >= 0 && p < caches[b].capacity(), "KV cache position ", p, " outside [0, ",
                 caches[b].capacity(), ")");
      const T* ks = k_new + (b * Tn + t) * row;
      const T* vs = v_new + (b * Tn + t) * row;
      T* kd = caches[b].k_row(p, row);
      T* vd = caches[b].v_row(p, row);
      for (int64_t i = 0; i < row; ++i) {
        kd[i] = ks[i];
        vd[i] = vs[i];
      }
      if constexpr (std::is_same_v<T, float>) {
        // Under bf16 products the full forward sees keys and values rounded to bf16; so does
        // the cache, for decoding to compute the same thing.
        if (bf16) {
          RoundToBf16(kd, row);
          RoundToBf16(vd, row);
        }
      }
    }
  }
}

template <typename T>
void AttentionCachedForward(const T* q, const int32_t* positions, int64_t B, int64_t Tn,
                            int64_t H, int64_t Hkv, int64_t D, double scale,
                            std::span<const KvCacheView<T>> caches, T* out) {
  RLVR_CHECK(static_cast<int64_t>(caches.size()) == B, "AttentionCachedForward: ",
             caches.size(), " caches for batch ", B);
  RLVR_CHECK(Hkv > 0 && H % Hkv == 0, "AttentionCachedForward: ", H, " heads, ", Hkv,
             " kv heads");
  if constexpr (std::is_same_v<T, float>) {
    // Cascade attention over shared blocks, AVX-512 tiles (kernels/cpu/decode_attention.h).
    internal::DecodeAttentionF32(q, positions, B, Tn, H, Hkv, D, static_cast<float>(scale),
                                 caches, out);
    return;
  }
  const int64_t group = H / Hkv;
  const int64_t row = Hkv * D;
  const T sc = static_cast<T>(scale);
  const int64_t items = B * Tn * H;
  // Under bf16 products, round what the full forward's GEMMs round (the query here, the
  // probabilities below; the cache holds rounded keys and values).
  const bool bf16 = std::is_same_v<T, float> && MatmulInBf16();
#pragma omp parallel if (items > 1 && items * D * 64 >= kParallelWork)
  {
    std::vector<T> w, q_round(D);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < items; ++i) {
      const int64_t bt = i / H, h = i % H, b = bt / Tn, g = h / group;
      const int64_t p = positions[bt];
      const KvCacheView<T>& cache = caches[b];
      const T* qv = q + (bt * H + h) * D;
      if constexpr (std::is_same_v<T, float>) {
        if (bf16) {
          std::copy(qv, qv + D, q_round.begin());
          RoundToBf16(q_round.data(), D);
          qv = q_round.data();
        }
      }
      w.resize(p + 1);
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t s = 0; s <= p; ++s) {
        const T* kr = cache.k_row(s, row) + g * D;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t d = 0; d < D; ++d) acc += qv[d] * kr[d];
        w[s] = acc * sc;
        m = std::max(m, w[s]);
      }
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t s = 0; s <= p; ++s) {
        w[s] = internal::Exp<T>(w[s] - m);
        sum += w[s];
      }
      const T inv = T(1) / sum;
      T* o = out + (bt * H + h) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = 0;
      for (int64_t s = 0; s <= p; ++s) {
        const T* vr = cache.v_row(s, row) + g * D;
        T ws = w[s] * inv;
        if constexpr (std::is_same_v<T, float>) {
          if (bf16) ws = internal::RoundBf16(ws);
        }
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) o[d] += ws * vr[d];
      }
    }
  }
}

#define RLVR_INSTANTIATE(T)                                                                       \
  template void AttentionForward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t,      \
                                    int64_t, int64_t, double, T*, T*, const int32_t*);            \
  template void AttentionBackward<T>(const T*, const T*, const T*, const T*, const T*, const T*,  \
                                     int64_t, int64_t, int64_t, int64_t, int64_t, double, T*, T*, \
                                     T*, const int32_t*);                                         \
  template void KvCacheWrite<T>(const T*, const T*, const int32_t*, int64_t, int64_t, int64_t,    \
                                int64_t, std::span<const KvCacheView<T>>);                        \
  template void AttentionCachedForward<T>(const T*, const int32_t*, int64_t, int64_t, int64_t,    \
                                          int64_t, int64_t, double,                               \
                                          std::span<const KvCacheView<T>>, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::kernels
