#include "kernels/cpu/decode_attention.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/avx512.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/matmul.h"

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized
// and -Wuninitialized report wherever they are inlined (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace rlvr::kernels::internal {
namespace {

constexpr int64_t kLanes = 16;  // keys per score tile (one zmm of scores)
// Multiply-adds below which a parallel region costs more than it saves.
constexpr int64_t kParallelWork = int64_t{1} << 18;

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Sequences that share leading cache blocks.
struct Group {
  std::vector<int64_t> seqs;  // batch indices, ascending
  // Positions [0, shared_end) lie in blocks every sequence of the group shares, and every
  // query of the group attends to all of them.
  int64_t shared_end = 0;
  int64_t max_len = 0;  // longest attention span of a query of the group
};

std::vector<Group> FindGroups(const int32_t* positions, int64_t B, int64_t Tn,
                              std::span<const KvCacheView<float>> caches) {
  auto first = [&](int64_t b) -> const float* {
    return caches[b].k_blocks.empty() ? nullptr : caches[b].k_blocks[0];
  };
  std::vector<int64_t> order(static_cast<size_t>(B));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return std::less<const float*>()(first(a), first(b));
  });
  std::vector<Group> groups;
  for (int64_t i = 0; i < B;) {
    int64_t j = i + 1;
    while (j < B && first(order[i]) != nullptr && first(order[j]) == first(order[i]) &&
           caches[order[j]].block_size == caches[order[i]].block_size) {
      ++j;
    }
    Group g;
    g.seqs.assign(order.begin() + i, order.begin() + j);
    std::sort(g.seqs.begin(), g.seqs.end());
    int64_t min_len = std::numeric_limits<int64_t>::max();
    for (int64_t b : g.seqs) {
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t len = positions[b * Tn + t] + 1;
        min_len = std::min(min_len, len);
        g.max_len = std::max(g.max_len, len);
      }
    }
    const KvCacheView<float>& lead = caches[g.seqs[0]];
    const int64_t bs = lead.block_size;
    int64_t nb = 0;
    for (; (nb + 1) * bs <= min_len; ++nb) {
      bool same = true;
      for (int64_t b : g.seqs) {
        same = same && caches[b].k_blocks[nb] == lead.k_blocks[nb] &&
               caches[b].v_blocks[nb] == lead.v_blocks[nb];
      }
      if (!same) break;
    }
    g.shared_end = nb * bs;
    groups.push_back(std::move(g));
    i = j;
  }
  return groups;
}

// Scores of `nq` queries (rows of Q, [nq, D]) against `rows` <= 16 keys at k (row stride
// `row`): w[qn * W + r] = scale * dot(Q[qn], K[r]) for r < rows. The dot product runs over d
// in four interleaved partial sums (d % 4), added as (s0 + s1) + (s2 + s3).
void ScoreTileGeneric(const float* Q, int64_t nq, int64_t D, const float* k, int64_t row,
                      int64_t rows, float scale, float* w, int64_t W) {
  for (int64_t qn = 0; qn < nq; ++qn) {
    const float* qv = Q + qn * D;
    for (int64_t r = 0; r < rows; ++r) {
      const float* kr = k + r * row;
      float acc[4] = {0, 0, 0, 0};
      for (int64_t d = 0; d < D; ++d) acc[d & 3] += qv[d] * kr[d];
      w[qn * W + r] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) * scale;
    }
  }
}

// P [nq, W] (probabilities, position-indexed) times values: O[qn] += P[qn, s] * V[s] for s in
// [s_begin, s_end) below len[qn], in position order.
void AccumulateGeneric(const float* P, int64_t W, const int64_t* len, int64_t nq, int64_t D,
                       const KvCacheView<float>& cache, int64_t koff, int64_t row,
                       int64_t s_begin, int64_t s_end, float* O) {
  for (int64_t qn = 0; qn < nq; ++qn) {
    float* o = O + qn * D;
    const int64_t stop = std::min(s_end, len[qn]);
    for (int64_t s = s_begin; s < stop; ++s) {
      const float p = P[qn * W + s];
      const float* vr = cache.v_row(s, row) + koff;
      for (int64_t d = 0; d < D; ++d) o[d] += p * vr[d];
    }
  }
}

#if defined(__AVX512F__)
// Scores of QN queries against `rows` <= 16 keys, D = 16 * NV, without transposing the keys:
// per key a dot product in 16 lanes (lane j sums d = j, j + 16, ...: a multiply, then
// fused multiply-adds in d order), then the 16 lanes of 16 keys are summed together by a
// shuffle tree: u_i = a_i + a_(i+8), w_i = u_i + u_(i+4), z_i = w_i + w_(i+2), s = z_0 + z_1
// for every key at once (45 shuffles and adds per 16 keys instead of 16 horizontal sums).
// Lanes of missing keys (r >= rows) are computed from zeros and not stored.
template <int NV, int QN>
void ScoreQueries(const float* Q, const float* k, int64_t row, int64_t rows, float scale,
                  float* w, int64_t W) {
  constexpr int64_t D = 16 * NV;
  __m512 qv[QN][NV];
  for (int qn = 0; qn < QN; ++qn) {
    for (int i = 0; i < NV; ++i) qv[qn][i] = _mm512_loadu_ps(Q + qn * D + 16 * i);
  }
  auto dot = [&](int qn, int64_t r) {
    if (r >= rows) return _mm512_setzero_ps();
    const float* kr = k + r * row;
    __m512 acc = _mm512_mul_ps(qv[qn][0], _mm512_loadu_ps(kr));
    for (int i = 1; i < NV; ++i) acc = _mm512_fmadd_ps(qv[qn][i], _mm512_loadu_ps(kr + 16 * i), acc);
    return acc;
  };
  // c[p]: lanes 0-7 hold u of key 2p, lanes 8-15 u of key 2p + 1.
  __m512 c[QN][8];
  for (int p = 0; p < 8; ++p) {
    for (int qn = 0; qn < QN; ++qn) {
      const __m512 a0 = dot(qn, 2 * p), a1 = dot(qn, 2 * p + 1);
      c[qn][p] = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44),
                               _mm512_shuffle_f32x4(a0, a1, 0xEE));
    }
  }
  // After the tree, lane 4c + m holds key 4m + c; this index puts key k in lane k.
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512 sc = _mm512_set1_ps(scale);
  const __mmask16 mask = Mask16(rows);
  for (int qn = 0; qn < QN; ++qn) {
    __m512 e[4], g[2];
    // e[q], 128-bit chunk j: w of key 4q + j.
    for (int q = 0; q < 4; ++q) {
      e[q] = _mm512_add_ps(_mm512_shuffle_f32x4(c[qn][2 * q], c[qn][2 * q + 1], 0x88),
                           _mm512_shuffle_f32x4(c[qn][2 * q], c[qn][2 * q + 1], 0xDD));
    }
    // g[s], chunk j: z_0, z_1 of key 8s + j, then of key 8s + 4 + j.
    for (int h = 0; h < 2; ++h) {
      g[h] = _mm512_add_ps(_mm512_shuffle_ps(e[2 * h], e[2 * h + 1], 0x44),
                           _mm512_shuffle_ps(e[2 * h], e[2 * h + 1], 0xEE));
    }
    const __m512 s = _mm512_add_ps(_mm512_shuffle_ps(g[0], g[1], 0x88),
                                   _mm512_shuffle_ps(g[0], g[1], 0xDD));
    _mm512_mask_storeu_ps(w + qn * W, mask,
                          _mm512_mul_ps(_mm512_permutexvar_ps(order, s), sc));
  }
}

// ScoreQueries' arithmetic with the tile of keys transposed first (kt[d * 16 + r] = K[r][d]):
// lane j of key r's dot product becomes a whole register over the 16 keys, so the tree is 15
// adds instead of 45 shuffles and adds. The transpose (64 shuffles per 16 dims) is paid once per
// tile for all queries, which pays when there are many (a group's samples).
template <int NV, int QN>
void ScoreQueriesTransposed(const float* Q, const float* kt, float scale, __mmask16 mask,
                            float* w, int64_t W) {
  constexpr int64_t D = 16 * NV;
  __m512 u[QN][8];
  for (int j = 0; j < 8; ++j) {
    for (int qn = 0; qn < QN; ++qn) {
      const float* qv = Q + qn * D;
      __m512 lo = _mm512_mul_ps(_mm512_set1_ps(qv[j]), _mm512_loadu_ps(kt + j * kLanes));
      __m512 hi = _mm512_mul_ps(_mm512_set1_ps(qv[j + 8]), _mm512_loadu_ps(kt + (j + 8) * kLanes));
      for (int i = 1; i < NV; ++i) {
        const int64_t d = 16 * i + j;
        lo = _mm512_fmadd_ps(_mm512_set1_ps(qv[d]), _mm512_loadu_ps(kt + d * kLanes), lo);
        hi = _mm512_fmadd_ps(_mm512_set1_ps(qv[d + 8]), _mm512_loadu_ps(kt + (d + 8) * kLanes),
                             hi);
      }
      u[qn][j] = _mm512_add_ps(lo, hi);
    }
  }
  const __m512 sc = _mm512_set1_ps(scale);
  for (int qn = 0; qn < QN; ++qn) {
    __m512 wv[4];
    for (int i = 0; i < 4; ++i) wv[i] = _mm512_add_ps(u[qn][i], u[qn][i + 4]);
    const __m512 z0 = _mm512_add_ps(wv[0], wv[2]), z1 = _mm512_add_ps(wv[1], wv[3]);
    _mm512_mask_storeu_ps(w + qn * W, mask, _mm512_mul_ps(_mm512_add_ps(z0, z1), sc));
  }
}

// The tile transposed into kt (rows >= `rows` zero).
template <int NV>
void TransposeTile(const float* k, int64_t row, int64_t rows, float* kt) {
  for (int64_t d0 = 0; d0 < 16 * NV; d0 += kLanes) {
    __m512i r[16];
    for (int64_t i = 0; i < 16; ++i) {
      r[i] = i < rows ? _mm512_loadu_si512(k + i * row + d0) : _mm512_setzero_si512();
    }
    Transpose16(r);
    for (int64_t i = 0; i < 16; ++i) _mm512_storeu_si512(kt + (d0 + i) * kLanes, r[i]);
  }
}

template <int NV>
void ScoreTileAvx512(const float* Q, int64_t nq, const float* k, int64_t row, int64_t rows,
                     float scale, float* w, int64_t W, float* kt) {
  constexpr int64_t D = 16 * NV;
  int64_t qn = 0;
  if (nq > 4 * NV) {
    // Enough queries to pay for the transpose (bit-identical results either way).
    TransposeTile<NV>(k, row, rows, kt);
    const __mmask16 mask = Mask16(rows);
    for (; qn + 2 <= nq; qn += 2) {
      ScoreQueriesTransposed<NV, 2>(Q + qn * D, kt, scale, mask, w + qn * W, W);
    }
    if (qn < nq) ScoreQueriesTransposed<NV, 1>(Q + qn * D, kt, scale, mask, w + qn * W, W);
    return;
  }
  // Two queries share each key load where their registers allow it.
  constexpr int QB = NV <= 2 ? 2 : 1;
  for (; qn + QB <= nq; qn += QB) {
    ScoreQueries<NV, QB>(Q + qn * D, k, row, rows, scale, w + qn * W, W);
  }
  if (qn < nq) ScoreQueries<NV, 1>(Q + qn * D, k, row, rows, scale, w + qn * W, W);
}

// AccumulateGeneric's arithmetic for D = 16 * NV: QN queries' outputs stay in registers while
// the value rows stream by.
template <int NV, int QN>
void AccumulateQueries(const float* P, int64_t W, const int64_t* len,
                       const KvCacheView<float>& cache, int64_t koff, int64_t row,
                       int64_t s_begin, int64_t s_end, float* O) {
  constexpr int64_t D = 16 * NV;
  __m512 o[QN][NV];
  int64_t stop = s_begin;
  for (int qn = 0; qn < QN; ++qn) {
    for (int i = 0; i < NV; ++i) o[qn][i] = _mm512_loadu_ps(O + qn * D + 16 * i);
    stop = std::max(stop, std::min(s_end, len[qn]));
  }
  const int64_t bs = cache.block_size;
  for (int64_t s = s_begin; s < stop;) {
    const int64_t r0 = s % bs, rows = std::min(bs - r0, stop - s);
    const float* vb = cache.v_blocks[s / bs] + r0 * row + koff;
    for (int64_t r = 0; r < rows; ++r, ++s) {
      __m512 v[NV];
      for (int i = 0; i < NV; ++i) v[i] = _mm512_loadu_ps(vb + r * row + 16 * i);
      for (int qn = 0; qn < QN; ++qn) {
        if (s >= len[qn]) continue;
        const __m512 p = _mm512_set1_ps(P[qn * W + s]);
        for (int i = 0; i < NV; ++i) o[qn][i] = _mm512_fmadd_ps(p, v[i], o[qn][i]);
      }
    }
  }
  for (int qn = 0; qn < QN; ++qn) {
    for (int i = 0; i < NV; ++i) _mm512_storeu_ps(O + qn * D + 16 * i, o[qn][i]);
  }
}

template <int NV>
void AccumulateAvx512(const float* P, int64_t W, const int64_t* len, int64_t nq,
                      const KvCacheView<float>& cache, int64_t koff, int64_t row,
                      int64_t s_begin, int64_t s_end, float* O) {
  // Queries per pass: their accumulators fill 8 to 16 of the 32 zmm registers.
  constexpr int QB = NV >= 8 ? 2 : NV >= 4 ? 4 : 8;
  constexpr int64_t D = 16 * NV;
  int64_t qn = 0;
  auto run = [&]<int N>() {
    AccumulateQueries<NV, N>(P + qn * W, W, len + qn, cache, koff, row, s_begin, s_end,
                             O + qn * D);
    qn += N;
  };
  while (nq - qn >= QB) run.template operator()<QB>();
  if constexpr (QB == 8) {
    if (nq - qn >= 4) run.template operator()<4>();
  }
  if constexpr (QB >= 4) {
    if (nq - qn >= 2) run.template operator()<2>();
  }
  if (nq - qn >= 1) run.template operator()<1>();
}
#endif  // __AVX512F__

// Scores of queries Q [nq, D] against positions [s_begin, s_end) of `cache` into
// w[qn * W + s], tile by tile (a tile never crosses a block).
void Scores(const float* Q, int64_t nq, int64_t D, const KvCacheView<float>& cache,
            int64_t koff, int64_t row, int64_t s_begin, int64_t s_end, float scale, float* w,
            int64_t W, float* kt) {
  const int64_t bs = cache.block_size;
  for (int64_t s = s_begin; s < s_end;) {
    const int64_t r0 = s % bs, rows = std::min({kLanes, bs - r0, s_end - s});
    const float* k = cache.k_blocks[s / bs] + r0 * row + koff;
    s += rows;
#if defined(__AVX512F__)
    switch (D) {
      case 16: ScoreTileAvx512<1>(Q, nq, k, row, rows, scale, w + s - rows, W, kt); continue;
      case 32: ScoreTileAvx512<2>(Q, nq, k, row, rows, scale, w + s - rows, W, kt); continue;
      case 64: ScoreTileAvx512<4>(Q, nq, k, row, rows, scale, w + s - rows, W, kt); continue;
      case 128: ScoreTileAvx512<8>(Q, nq, k, row, rows, scale, w + s - rows, W, kt); continue;
      default: break;
    }
#endif
    (void)kt;
    ScoreTileGeneric(Q, nq, D, k, row, rows, scale, w + s - rows, W);
  }
}

void Accumulate(const float* P, int64_t W, const int64_t* len, int64_t nq, int64_t D,
                const KvCacheView<float>& cache, int64_t koff, int64_t row, int64_t s_begin,
                int64_t s_end, float* O) {
#if defined(__AVX512F__)
  switch (D) {
    case 16: return AccumulateAvx512<1>(P, W, len, nq, cache, koff, row, s_begin, s_end, O);
    case 32: return AccumulateAvx512<2>(P, W, len, nq, cache, koff, row, s_begin, s_end, O);
    case 64: return AccumulateAvx512<4>(P, W, len, nq, cache, koff, row, s_begin, s_end, O);
    case 128: return AccumulateAvx512<8>(P, W, len, nq, cache, koff, row, s_begin, s_end, O);
    default: break;
  }
#endif
  AccumulateGeneric(P, W, len, nq, D, cache, koff, row, s_begin, s_end, O);
}

// Scores w[0, len) -> probabilities in place (w is padded to a multiple of 16). The sum runs in
// 16 fixed lanes, so it does not depend on where w lies in memory.
void Softmax(float* w, int64_t len, bool bf16) {
  float m = -std::numeric_limits<float>::infinity();
#if defined(__AVX512F__)
  __m512 mv = _mm512_set1_ps(m);
  for (int64_t s0 = 0; s0 < len; s0 += kLanes) {
    mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(mv, Mask16(len - s0), w + s0));
  }
  m = _mm512_reduce_max_ps(mv);
#else
  for (int64_t s = 0; s < len; ++s) m = std::max(m, w[s]);
#endif
  float part[kLanes] = {};
  for (int64_t s0 = 0; s0 < len; s0 += kLanes) {
    float* ws = w + s0;
    const int64_t n = std::min(kLanes, len - s0);
#pragma omp simd
    for (int64_t i = 0; i < kLanes; ++i) {
      const float e = i < n ? FastExp(ws[i] - m) : 0.0f;
      ws[i] = e;
      part[i] += e;
    }
  }
  for (int64_t step = kLanes / 2; step > 0; step /= 2) {
    for (int64_t i = 0; i < step; ++i) part[i] += part[i + step];
  }
  const float inv = 1.0f / part[0];
#pragma omp simd
  for (int64_t s = 0; s < len; ++s) {
    const float p = w[s] * inv;
    w[s] = bf16 ? RoundBf16(p) : p;
  }
}

struct Scratch {
  std::vector<float> q, w, o, kt;
  std::vector<int64_t> len;
};

// One work unit: kv head kh of group g.
void RunUnit(const Group& g, int64_t kh, const float* q, const int32_t* positions, int64_t Tn,
             int64_t H, int64_t Hkv, int64_t D, float scale,
             std::span<const KvCacheView<float>> caches, bool bf16, Scratch* sc, float* out) {
  const int64_t G = H / Hkv, row = Hkv * D, koff = kh * D;
  const int64_t per_seq = Tn * G;  // queries of one sequence
  const int64_t nq = static_cast<int64_t>(g.seqs.size()) * per_seq;
  const int64_t W = RoundUp(g.max_len, kLanes);
  sc->q.resize(static_cast<size_t>(nq * D));
  sc->len.resize(static_cast<size_t>(nq));
  sc->w.resize(static_cast<size_t>(nq * W));
  sc->o.assign(static_cast<size_t>(nq * D), 0.0f);
  sc->kt.resize(static_cast<size_t>(RoundUp(D, kLanes) * kLanes));
  // Query rows ordered (sequence, token, head of the group).
  for (size_t i = 0; i < g.seqs.size(); ++i) {
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t bt = g.seqs[i] * Tn + t;
      for (int64_t gh = 0; gh < G; ++gh) {
        const int64_t qi = static_cast<int64_t>(i) * per_seq + t * G + gh;
        std::copy_n(q + (bt * H + kh * G + gh) * D, D, sc->q.data() + qi * D);
        sc->len[qi] = positions[bt] + 1;
      }
    }
  }
  if (bf16) RoundToBf16(sc->q.data(), nq * D);
  // Scores: the shared blocks for every query of the group, then each sequence's own.
  const KvCacheView<float>& lead = caches[g.seqs[0]];
  Scores(sc->q.data(), nq, D, lead, koff, row, 0, g.shared_end, scale, sc->w.data(), W,
         sc->kt.data());
  auto seq_end = [&](size_t i) {
    int64_t e = 0;
    for (int64_t j = 0; j < per_seq; ++j) e = std::max(e, sc->len[i * per_seq + j]);
    return e;
  };
  for (size_t i = 0; i < g.seqs.size(); ++i) {
    const int64_t q0 = static_cast<int64_t>(i) * per_seq;
    Scores(sc->q.data() + q0 * D, per_seq, D, caches[g.seqs[i]], koff, row, g.shared_end,
           seq_end(i), scale, sc->w.data() + q0 * W, W, sc->kt.data());
  }
  for (int64_t qi = 0; qi < nq; ++qi) Softmax(sc->w.data() + qi * W, sc->len[qi], bf16);
  // Probabilities times values, in the same two parts.
  Accumulate(sc->w.data(), W, sc->len.data(), nq, D, lead, koff, row, 0, g.shared_end,
             sc->o.data());
  for (size_t i = 0; i < g.seqs.size(); ++i) {
    const int64_t q0 = static_cast<int64_t>(i) * per_seq;
    Accumulate(sc->w.data() + q0 * W, W, sc->len.data() + q0, per_seq, D, caches[g.seqs[i]],
               koff, row, g.shared_end, seq_end(i), sc->o.data() + q0 * D);
  }
  for (size_t i = 0; i < g.seqs.size(); ++i) {
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t bt = g.seqs[i] * Tn + t;
      for (int64_t gh = 0; gh < G; ++gh) {
        const int64_t qi = static_cast<int64_t>(i) * per_seq + t * G + gh;
        std::copy_n(sc->o.data() + qi * D, D, out + (bt * H + kh * G + gh) * D);
      }
    }
  }
}

}  // namespace

void DecodeAttentionF32(const float* q, const int32_t* positions, int64_t B, int64_t Tn,
                        int64_t H, int64_t Hkv, int64_t D, float scale,
                        std::span<const KvCacheView<float>> caches, float* out) {
  for (int64_t i = 0; i < B * Tn; ++i) {
    RLVR_CHECK(positions[i] >= 0 && positions[i] < caches[i / Tn].capacity(),
               "AttentionCachedForward: position ", positions[i], " of query ", i,
               " outside the cache's capacity ", caches[i / Tn].capacity());
  }
  const std::vector<Group> groups = FindGroups(positions, B, Tn, caches);
  const int64_t units = static_cast<int64_t>(groups.size()) * Hkv;
  int64_t work = 0;
  for (int64_t i = 0; i < B * Tn; ++i) work += (positions[i] + 1) * H * D;
  const bool bf16 = MatmulInBf16();
#pragma omp parallel if (units > 1 && work >= kParallelWork)
  {
    Scratch sc;
#pragma omp for schedule(dynamic)
    for (int64_t u = 0; u < units; ++u) {
      RunUnit(groups[u / Hkv], u % Hkv, q, positions, Tn, H, Hkv, D, scale, caches, bf16, &sc,
              out);
    }
  }
}

}  // namespace rlvr::kernels::internal
