#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/status.h"
#include "kernels/matmul.h"

namespace rlvr::kernels {
namespace {
// Multiply-adds below which a parallel region costs more than it saves.
constexpr int64_t kParallelWork = int64_t{1} << 18;

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
#pragma omp parallel if (pairs > 1 && pairs * group * work * D >= kParallelWork)
  {
    std::vector<T> S;
    std::vector<int64_t> bounds;
#pragma omp for schedule(dynamic)
    for (int64_t pg = 0; pg < pairs; ++pg) {
      const int64_t b = pg / Hkv, g = pg % Hkv;
      SegmentBounds(seg_start, b, Tn, &bounds);
      for (size_t si = 0; si + 1 < bounds.size(); ++si) {
        // One segment [a, a + L) is an independent causal sequence.
        const int64_t a = bounds[si], L = bounds[si + 1] - a;
        S.resize(static_cast<size_t>(L * L));
        const T* kb = k + (b * Tn + a) * ldk + g * D;
        const T* vb = v + (b * Tn + a) * ldk + g * D;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const T* qb = q + (b * Tn + a) * ldq + h * D;
          Gemm<T>(false, true, L, L, D, sc, qb, ldq, kb, ldk, T(0), S.data(), L);
          T* lse_bh = lse + (b * H + h) * Tn + a;
          for (int64_t t = 0; t < L; ++t) {
            T* row = S.data() + t * L;
            T m = -std::numeric_limits<T>::infinity();
            for (int64_t s = 0; s <= t; ++s) m = std::max(m, row[s]);
            T sum = 0;
            for (int64_t s = 0; s <= t; ++s) {
              row[s] = std::exp(row[s] - m);
              sum += row[s];
            }
            const T inv = T(1) / sum;
            for (int64_t s = 0; s <= t; ++s) row[s] *= inv;
            for (int64_t s = t + 1; s < L; ++s) row[s] = 0;
            lse_bh[t] = m + std::log(sum);
          }
          Gemm<T>(false, false, L, D, L, T(1), S.data(), L, vb, ldk, T(0),
                  out + (b * Tn + a) * ldq + h * D, ldq);
        }
      }
    }
  }
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
#pragma omp parallel if (pairs > 1 && pairs * group * work * D >= kParallelWork)
  {
    std::vector<T> P, dP, Di;
    std::vector<int64_t> bounds;
#pragma omp for schedule(dynamic)
    for (int64_t pg = 0; pg < pairs; ++pg) {
      const int64_t b = pg / Hkv, g = pg % Hkv;
      SegmentBounds(seg_start, b, Tn, &bounds);
      for (size_t si = 0; si + 1 < bounds.size(); ++si) {
        const int64_t a = bounds[si], L = bounds[si + 1] - a;
        P.resize(static_cast<size_t>(L * L));
        dP.resize(static_cast<size_t>(L * L));
        Di.resize(static_cast<size_t>(L));
        const T* kb = k + (b * Tn + a) * ldk + g * D;
        const T* vb = v + (b * Tn + a) * ldk + g * D;
        T* dkb = dk + (b * Tn + a) * ldk + g * D;
        T* dvb = dv + (b * Tn + a) * ldk + g * D;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const int64_t off = (b * Tn + a) * ldq + h * D;
          const T* lse_bh = lse + (b * H + h) * Tn + a;
          // Recompute the probabilities from the saved log-sum-exp.
          Gemm<T>(false, true, L, L, D, sc, q + off, ldq, kb, ldk, T(0), P.data(), L);
          for (int64_t t = 0; t < L; ++t) {
            T* row = P.data() + t * L;
            for (int64_t s = 0; s <= t; ++s) row[s] = std::exp(row[s] - lse_bh[t]);
            for (int64_t s = t + 1; s < L; ++s) row[s] = 0;
            // D_t = sum_d dO O = sum_s P dP: the softmax backward's row dot product.
            T acc = 0;
            const T* o_t = out + off + t * ldq;
            const T* do_t = dout + off + t * ldq;
            for (int64_t d = 0; d < D; ++d) acc += o_t[d] * do_t[d];
            Di[t] = acc;
          }
          // dV += P^T dO
          Gemm<T>(true, false, L, D, L, T(1), P.data(), L, dout + off, ldq, T(1), dvb, ldk);
          // dP = dO V^T, then dS = P (dP - D_t), stored in dP.
          Gemm<T>(false, true, L, L, D, T(1), dout + off, ldq, vb, ldk, T(0), dP.data(), L);
          for (int64_t t = 0; t < L; ++t) {
            const T* pr = P.data() + t * L;
            T* dr = dP.data() + t * L;
            for (int64_t s = 0; s <= t; ++s) dr[s] = pr[s] * (dr[s] - Di[t]);
            for (int64_t s = t + 1; s < L; ++s) dr[s] = 0;
          }
          // dQ += scale dS K; dK += scale dS^T Q
          Gemm<T>(false, false, L, D, L, sc, dP.data(), L, kb, ldk, T(1), dq + off, ldq);
          Gemm<T>(true, false, L, D, L, sc, dP.data(), L, q + off, ldq, T(1), dkb, ldk);
        }
      }
    }
  }
}

template <typename T>
void KvCacheWrite(const T* k_new, const T* v_new, const int32_t* positions, int64_t B,
                  int64_t Tn, int64_t Hkv, int64_t D, std::span<const KvCacheView<T>> caches) {
  RLVR_CHECK(static_cast<int64_t>(caches.size()) == B, "KvCacheWrite: ", caches.size(),
             " caches for batch ", B);
  const int64_t row = Hkv * D;
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
    }
  }
}

template <typename T>
void AttentionCachedForward(const T* q, const int32_t* positions, int64_t B, int64_t Tn,
                            int64_t H, int64_t Hkv, int64_t D, double scale,
                            std::span<const KvCacheView<T>> caches, T* out) {
  RLVR_CHECK(static_cast<int64_t>(caches.size()) == B, "AttentionCachedForward: ",
             caches.size(), " caches for batch ", B);
  const int64_t group = H / Hkv;
  const int64_t row = Hkv * D;
  const T sc = static_cast<T>(scale);
  const int64_t items = B * Tn * H;
#pragma omp parallel if (items > 1 && items * D * 64 >= kParallelWork)
  {
    std::vector<T> w;
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < items; ++i) {
      const int64_t bt = i / H, h = i % H, b = bt / Tn, g = h / group;
      const int64_t p = positions[bt];
      const KvCacheView<T>& cache = caches[b];
      const T* qv = q + (bt * H + h) * D;
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
      for (int64_t s = 0; s <= p; ++s) {
        w[s] = std::exp(w[s] - m);
        sum += w[s];
      }
      const T inv = T(1) / sum;
      T* o = out + (bt * H + h) * D;
      for (int64_t d = 0; d < D; ++d) o[d] = 0;
      for (int64_t s = 0; s <= p; ++s) {
        const T* vr = cache.v_row(s, row) + g * D;
        const T ws = w[s] * inv;
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
