#include "kernels/cpu/gemm_bf16.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/avx512.h"

// GCC 12's unpack intrinsics start from _mm512_undefined_epi32(), which -Wmaybe-uninitialized
// reports as a use of an uninitialized value (a known false positive, GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Every function that uses AVX-512 intrinsics carries this attribute; the OpenMP regions stay
// in plain functions (the outlined bodies then need no target of their own).
#define RLVR_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

namespace rlvr::kernels::internal {
namespace {

constexpr int64_t kPanel = 16;  // rows of an A panel = columns of a B panel = one zmm of fp32
constexpr int64_t kKc = 512;    // k elements per block (even)
constexpr int64_t kNc = 2048;   // columns per outer block
constexpr int64_t kTile = 64;   // rows and columns of one unit of parallel work

// A strided view of op(X) as W rows of K elements: element (w, k) at p[w * sw + k * sk]. One
// of the strides is 1: sk == 1 is "w-major" (rows contiguous in k), sw == 1 "k-major".
struct View {
  const float* p;
  int64_t sw, sk;
};

RLVR_BF16_TARGET inline __m512i CvtPairs(__m512 lo, __m512 hi) {
  // 32 bf16: lo's 16 in the low half, hi's in the high half (round to nearest even).
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

inline __mmask16 Mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// Packs rows [w0, w0 + 16) (those < W; the rest zero) and k in [k0, k0 + kn) of a w-major `v`
// (sk == 1) into one panel out[kp][16] of bf16 pairs, kp = ceil(kn / 2); pairs past kn are
// zero. (k-major views are packed by PackPanels.)
RLVR_BF16_TARGET void PackPanel(const View& v, int64_t w0, int64_t W, int64_t k0, int64_t kn,
                                uint32_t* out) {
  const int64_t rows = std::min<int64_t>(kPanel, W - w0);
  const int64_t kp = (kn + 1) / 2;
  // Convert 32 consecutive k of each row, then transpose 16 rows x 16 pairs.
  for (int64_t kk = 0; kk < kn; kk += 32) {
    __m512i r[16];
    const int64_t left = kn - kk;
    const __mmask16 m_lo = Mask(left), m_hi = Mask(left - 16 > 0 ? left - 16 : 0);
    for (int64_t i = 0; i < 16; ++i) {
      if (i < rows) {
        const float* src = v.p + (w0 + i) * v.sw + (k0 + kk);
        r[i] = CvtPairs(_mm512_maskz_loadu_ps(m_lo, src), _mm512_maskz_loadu_ps(m_hi, src + 16));
      } else {
        r[i] = _mm512_setzero_si512();
      }
    }
    Transpose16(r);
    const int64_t pairs = std::min<int64_t>(16, kp - kk / 2);
    for (int64_t p = 0; p < pairs; ++p) _mm512_store_si512(out + (kk / 2 + p) * 16, r[p]);
  }
}

// Panels q0 .. q1-1 of `v` (each kp x 16 pairs, consecutive in `out` starting with panel q0).
// k-major views are read a row pair at a time across all the panels (rows are contiguous in
// memory; one panel at a time would touch a new cache line on every load).
RLVR_BF16_TARGET void PackPanels(const View& v, int64_t q0, int64_t q1, int64_t W, int64_t k0,
                                 int64_t kn, uint32_t* out) {
  const int64_t kp = (kn + 1) / 2;
  if (v.sk == 1) {
    for (int64_t q = q0; q < q1; ++q)
      PackPanel(v, q * kPanel, W, k0, kn, out + (q - q0) * kp * kPanel);
    return;
  }
  const __m512i interleave =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t p = 0; p < kp; ++p) {
    const float* row0 = v.p + (k0 + 2 * p) * v.sk;
    const float* row1 = row0 + v.sk;
    const bool has1 = 2 * p + 1 < kn;
    uint32_t* dst = out + p * 16;
    for (int64_t q = q0; q < q1; ++q, dst += kp * kPanel) {
      const int64_t w0 = q * kPanel;
      const __mmask16 m = Mask(W - w0);
      const __m512 lo = _mm512_maskz_loadu_ps(m, row0 + w0);
      const __m512 hi = has1 ? _mm512_maskz_loadu_ps(m, row1 + w0) : _mm512_setzero_ps();
      _mm512_store_si512(dst, _mm512_permutexvar_epi16(interleave, CvtPairs(lo, hi)));
    }
  }
}

// Packs panels [0, n) of `v` into out on the OpenMP team (or this thread): contiguous ranges
// of panels per thread.
void PackAll(const View& v, int64_t n_panels, int64_t W, int64_t k0, int64_t kn, uint32_t* out) {
  const int64_t kp = (kn + 1) / 2;
  const int nt = omp_get_num_threads(), t = omp_get_thread_num();
  const int64_t q0 = n_panels * t / nt, q1 = n_panels * (t + 1) / nt;
  if (q1 > q0) PackPanels(v, q0, q1, W, k0, kn, out + q0 * kp * kPanel);
}

// C[rows, cols] (op) = alpha * Apanel @ Bpanel, where op is "= + beta * C" on the first k block
// and "+=" on later ones. cols <= 16; the panel's first R rows are multiplied (R >= rows, a
// compile-time count so that one-row decode products do not pay for sixteen).
template <int R>
RLVR_BF16_TARGET void MicroKernel(int64_t kp, const uint32_t* a, const uint32_t* b, float* c,
                                  int64_t ldc, int64_t rows, int64_t cols, float alpha, float beta,
                                  bool first) {
  __m512 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    const __m512bh bv = (__m512bh)_mm512_load_si512(b + p * 16);
    const uint32_t* ap = a + p * 16;
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) {
      acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[i])), bv);
    }
  }
  const __mmask16 m = Mask(cols);
  const __m512 va = _mm512_set1_ps(alpha);
  for (int64_t i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    __m512 v = _mm512_mul_ps(acc[i], va);
    if (!first) {
      v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, ci));
    } else if (beta != 0.0f) {
      v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, ci), v);
    }
    _mm512_mask_storeu_ps(ci, m, v);
  }
}

// Dispatches on the panel's row count. Each row's result depends only on that row of A and on
// B (never on R or on the other rows), so a product is the same whatever M it is part of.
void Tile(int64_t kp, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int64_t rows,
          int64_t cols, float alpha, float beta, bool first) {
  if (rows == 1) {
    MicroKernel<1>(kp, a, b, c, ldc, rows, cols, alpha, beta, first);
  } else if (rows <= 2) {
    MicroKernel<2>(kp, a, b, c, ldc, rows, cols, alpha, beta, first);
  } else if (rows <= 4) {
    MicroKernel<4>(kp, a, b, c, ldc, rows, cols, alpha, beta, first);
  } else if (rows <= 8) {
    MicroKernel<8>(kp, a, b, c, ldc, rows, cols, alpha, beta, first);
  } else {
    MicroKernel<16>(kp, a, b, c, ldc, rows, cols, alpha, beta, first);
  }
}

// The calling thread's packing buffers (64-byte aligned), reused across calls.
uint32_t* Buffer(std::vector<uint32_t>* buf, int64_t n) {
  if (static_cast<int64_t>(buf->size()) < n + 16) buf->resize(n + 16);
  auto addr = reinterpret_cast<uintptr_t>(buf->data());
  return buf->data() + ((64 - addr % 64) % 64) / sizeof(uint32_t);
}

}  // namespace

bool CpuHasAvx512Bf16() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
}

int64_t PackedB::Offset(int64_t jc, int64_t kc) const {
  // Blocks are stored column block by column block, K blocks inside.
  const int64_t k_blocks = (K + kKc - 1) / kKc;
  return offsets[(jc / kNc) * k_blocks + kc / kKc];
}

std::unique_ptr<PackedB> PackB(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb) {
  auto out = std::make_unique<PackedB>();
  out->K = K;
  out->N = N;
  const View b = trans_b ? View{B, ldb, 1} : View{B, 1, ldb};
  int64_t total = 0;
  for (int64_t jc = 0; jc < N; jc += kNc) {
    const int64_t n_panels = (std::min(kNc, N - jc) + kPanel - 1) / kPanel;
    for (int64_t kc = 0; kc < K; kc += kKc) {
      out->offsets.push_back(total);
      total += n_panels * ((std::min(kKc, K - kc) + 1) / 2) * kPanel;
    }
  }
  out->storage.resize(total + 16);
  const auto addr = reinterpret_cast<uintptr_t>(out->storage.data());
  out->data = out->storage.data() + ((64 - addr % 64) % 64) / sizeof(uint32_t);
  for (int64_t jc = 0; jc < N; jc += kNc) {
    const int64_t nc = std::min(kNc, N - jc);
    const int64_t n_panels = (nc + kPanel - 1) / kPanel;
    const View bj{b.p + jc * b.sw, b.sw, b.sk};
    for (int64_t kc = 0; kc < K; kc += kKc) {
      const int64_t kn = std::min(kKc, K - kc);
      uint32_t* dst = out->data + out->Offset(jc, kc);
      PackPanels(bj, 0, n_panels, nc, kc, kn, dst);
    }
  }
  return out;
}

void GemmBf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, const PackedB* packed_b) {
  const View a = trans_a ? View{A, 1, lda} : View{A, lda, 1};  // op(A): M rows of K
  const View b = trans_b ? View{B, ldb, 1} : View{B, 1, ldb};  // op(B)^T: N rows of K
  const int64_t m_panels = (M + kPanel - 1) / kPanel;
  static thread_local std::vector<uint32_t> a_buf, b_buf;
  const int64_t kp_max = kKc / 2;
  uint32_t* ap = Buffer(&a_buf, m_panels * kp_max * kPanel);
  uint32_t* bp = packed_b != nullptr
                     ? nullptr
                     : Buffer(&b_buf, ((std::min(N, kNc) + kPanel - 1) / kPanel) * kp_max * kPanel);
  // Two threads pay off from about a 64 x 64 x 256 product up.
  const bool parallel = !omp_in_parallel() && omp_get_max_threads() > 1 && M * N * K >= (1 << 20);
  // Column tiles narrow enough that a few rows still give every thread work.
  const int64_t tile_n = M <= kPanel ? 2 * kPanel : kTile;

  for (int64_t jc = 0; jc < N; jc += kNc) {
    const int64_t nc = std::min(kNc, N - jc);
    const int64_t n_panels = (nc + kPanel - 1) / kPanel;
    for (int64_t kc = 0; kc < K; kc += kKc) {
      const int64_t kn = std::min(kKc, K - kc);
      const int64_t kp = (kn + 1) / 2;
      const bool first = kc == 0;
      const int64_t m_tiles = (M + kTile - 1) / kTile, n_tiles = (nc + tile_n - 1) / tile_n;
      const View bj{b.p + jc * b.sw, b.sw, b.sk};
      uint32_t* bk = packed_b != nullptr ? packed_b->data + packed_b->Offset(jc, kc) : bp;
      // One unit of work: the panels of column tile tn and row tile tm.
      auto tile = [&](int64_t t) {
        const int64_t tm = t / n_tiles, tn = t % n_tiles;
        const int64_t j_end = std::min(nc, (tn + 1) * tile_n);
        const int64_t i_end = std::min(M, (tm + 1) * kTile);
        for (int64_t j = tn * tile_n; j < j_end; j += kPanel) {
          for (int64_t i = tm * kTile; i < i_end; i += kPanel) {
            Tile(kp, ap + (i / kPanel) * kp * kPanel, bk + (j / kPanel) * kp * kPanel,
                 C + i * ldc + jc + j, ldc, std::min(kPanel, M - i), std::min(kPanel, nc - j),
                 alpha, beta, first);
          }
        }
      };
      if (!parallel) {
        // No OpenMP construct at all: a team of one still costs a fork, a barrier and, nested
        // in another region, futex calls (small products, e.g. a MoE expert's, are many).
        // (PackAll would split by the enclosing team's threads: pack every panel here.)
        if (packed_b == nullptr) PackPanels(bj, 0, n_panels, nc, kc, kn, bk);
        PackPanels(a, 0, m_panels, M, kc, kn, ap);
        for (int64_t t = 0; t < m_tiles * n_tiles; ++t) tile(t);
        continue;
      }
#pragma omp parallel
      {
        if (packed_b == nullptr) PackAll(bj, n_panels, nc, kc, kn, bk);
        PackAll(a, m_panels, M, kc, kn, ap);
#pragma omp barrier
#pragma omp for schedule(static)
        for (int64_t t = 0; t < m_tiles * n_tiles; ++t) tile(t);
      }
    }
  }
}

}  // namespace rlvr::kernels::internal
