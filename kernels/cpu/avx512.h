// Small AVX-512F building blocks shared by the CPU kernels. Every function carries a target
// attribute, so the header compiles under any -march; callers run them only where the CPU has
// AVX-512F (their own target attribute or an __AVX512F__ build).
#ifndef RLVR_KERNELS_CPU_AVX512_H_
#define RLVR_KERNELS_CPU_AVX512_H_

// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 headers (intrinsics built on
// _mm512_undefined_*) wherever they are inlined; the warning is about the header's code.
// The pragma covers this whole header (popped at its end).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define RLVR_AVX512_TARGET __attribute__((target("avx512f")))

namespace rlvr::kernels::internal {

// 16 x 16 transpose of 32-bit lanes, in place: r[i] lane j becomes r[j] lane i.
RLVR_AVX512_TARGET inline void Transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // u[4i + j], 128-bit lane L, holds column 4L + j of rows 4i .. 4i+3.
  for (int j = 0; j < 4; ++j) {
    const __m512i ab_lo = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
    const __m512i ab_hi = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
    const __m512i cd_lo = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
    const __m512i cd_hi = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
    r[0 + j] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0x88);
    r[4 + j] = _mm512_shuffle_i32x4(ab_lo, cd_lo, 0xDD);
    r[8 + j] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(ab_hi, cd_hi, 0xDD);
  }
}

// Mask of the first n lanes (n >= 16: all).
inline __mmask16 Mask16(long n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

}  // namespace rlvr::kernels::internal

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // RLVR_KERNELS_CPU_AVX512_H_
