// Host emulation of kernels/cuda/model_glue.h: the host-side checks of
// model_glue.cu, then the element-wise glue as fp32 loops in the orders the
// header documents.
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kernels/cuda/emulation/emu.h"
#include "kernels/cuda/model_glue.h"


namespace rlvr::kernels::cuda {
namespace {

using emu::Bad;
using emu::CheckElems;
using emu::Enqueue;
using emu::Load;
using emu::Store;

constexpr int64_t kMaxHeadDim = 256;

absl::Status CheckSize(const char *fn, const char *name, int64_t v) {
  if (v < 0)
    return Bad(fn, absl::StrCat(name, " = ", v, " is negative"));
  return absl::OkStatus();
}
absl::Status CheckPtr(const char *fn, const char *name, const void *p) {
  if (p == nullptr)
    return Bad(fn, absl::StrCat(name, " is null"));
  return absl::OkStatus();
}

template <typename T>
absl::Status SwigluPaired(const char *fn, const T *gu, int64_t N, int64_t I,
                          uint16_t *out, Stream stream) {
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "I", I));
  if (N == 0 || I == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "gu", gu));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "gu", gu, N * 2 * I));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, N * I));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < I; ++i) {
        const float g = Load(gu + n * 2 * I + i),
                    u = Load(gu + n * 2 * I + I + i);
        out[n * I + i] = emu::ToBf(g / (1.0f + std::exp(-g)) * u);
      }
    }
  });
}

} // namespace

absl::Status ConvertF32ToBf16(const float *x, int64_t n, uint16_t *y,
                              Stream stream) {
  constexpr const char *fn = "ConvertF32ToBf16";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, n));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "y", y, n));
  return Enqueue(fn, stream, [=] {
    for (int64_t i = 0; i < n; ++i)
      y[i] = emu::ToBf(x[i]);
  });
}

absl::Status RmsNormF32ToBf16(const float *x, const float *w, int64_t R,
                              int64_t C, double eps, uint16_t *y, float *rstd,
                              Stream stream) {
  constexpr const char *fn = "RmsNormF32ToBf16";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (R == 0 || C == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "w", w));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  if (R > 0x7fffffff)
    return Bad(fn, "R above 2^31 - 1");
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, R * C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "w", w, C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "y", y, R * C));
  if (rstd != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "rstd", rstd, R));
  const float epsf = static_cast<float>(eps);
  return Enqueue(fn, stream, [=] {
    for (int64_t r = 0; r < R; ++r) {
      const float *xr = x + r * C;
      float ss = 0.0f;
      for (int64_t c = 0; c < C; ++c)
        ss = std::fma(xr[c], xr[c], ss);
      const float rs = 1.0f / std::sqrt(ss / static_cast<float>(C) + epsf);
      if (rstd != nullptr)
        rstd[r] = rs;
      for (int64_t c = 0; c < C; ++c)
        y[r * C + c] = emu::ToBf(w[c] * (xr[c] * rs));
    }
  });
}

absl::Status QkvPrepare(const float *qkv, const float *bias,
                        const float *q_norm, const float *k_norm, double eps,
                        const float *cos, const float *sin, int64_t N,
                        int64_t H, int64_t Hkv, int64_t D, uint16_t *q,
                        uint16_t *k, uint16_t *v, Stream stream) {
  constexpr const char *fn = "QkvPrepare";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "H", H));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "Hkv", Hkv));
  if (D <= 0 || D % 2 != 0 || D > kMaxHeadDim) {
    return Bad(fn,
               absl::StrCat("head dim D = ", D, " must be even, in [2, 256]"));
  }
  if (N == 0 || H + Hkv == 0)
    return absl::OkStatus();
  if (Hkv <= 0 || H <= 0)
    return Bad(fn, "H and Hkv must both be positive");
  if ((q_norm == nullptr) != (k_norm == nullptr)) {
    return Bad(fn, "q_norm and k_norm must both be given or both be null");
  }
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "qkv", qkv));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "q", q));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "k", k));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "v", v));
  const int64_t heads = H + 2 * Hkv, half = D / 2;
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "qkv", qkv, N * heads * D));
  if (bias != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "bias", bias, heads * D));
  if (q_norm != nullptr) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "q_norm", q_norm, D));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "k_norm", k_norm, D));
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "cos", cos, N * half));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "sin", sin, N * half));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "q", q, N * H * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "k", k, N * Hkv * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "v", v, N * Hkv * D));
  const float epsf = static_cast<float>(eps);
  return Enqueue(fn, stream, [=] {
    std::vector<float> x(D);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t hd = 0; hd < heads; ++hd) {
        const float *src = qkv + (n * heads + hd) * D;
        const bool is_q = hd < H, is_k = !is_q && hd < H + Hkv;
        for (int64_t d = 0; d < D; ++d)
          x[d] = bias != nullptr ? src[d] + bias[hd * D + d] : src[d];
        if ((is_q || is_k) && q_norm != nullptr) {
          const float *w = is_q ? q_norm : k_norm;
          float ss = 0.0f;
          for (int64_t d = 0; d < D; ++d)
            ss = std::fma(x[d], x[d], ss);
          const float rs = 1.0f / std::sqrt(ss / static_cast<float>(D) + epsf);
          for (int64_t d = 0; d < D; ++d)
            x[d] = w[d] * (x[d] * rs);
        }
        uint16_t *dst = is_q   ? q + (n * H + hd) * D
                        : is_k ? k + (n * Hkv + (hd - H)) * D
                               : v + (n * Hkv + (hd - H - Hkv)) * D;
        if (is_q || is_k) {
          for (int64_t j = 0; j < half; ++j) {
            const float a = x[j], b = x[j + half], c = cos[n * half + j],
                        s = sin[n * half + j];
            dst[j] = emu::ToBf(a * c - b * s);
            dst[j + half] = emu::ToBf(b * c + a * s);
          }
        } else {
          for (int64_t d = 0; d < D; ++d)
            dst[d] = emu::ToBf(x[d]);
        }
      }
    }
  });
}

absl::Status QkvPrepareBackward(const uint16_t *dq, const uint16_t *dk,
                                const uint16_t *dv, const float *qkv,
                                const float *bias, const float *q_norm,
                                const float *k_norm, double eps,
                                const float *cos, const float *sin, int64_t N,
                                int64_t H, int64_t Hkv, int64_t D, float *dqkv,
                                float *dnorm_rows, Stream stream) {
  constexpr const char *fn = "QkvPrepareBackward";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "H", H));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "Hkv", Hkv));
  if (D <= 0 || D % 2 != 0 || D > kMaxHeadDim) {
    return Bad(fn,
               absl::StrCat("head dim D = ", D, " must be even, in [2, 256]"));
  }
  if (N == 0 || H + Hkv == 0)
    return absl::OkStatus();
  if (Hkv <= 0 || H <= 0)
    return Bad(fn, "H and Hkv must both be positive");
  if (H + 2 * Hkv > 0x7fffffff)
    return Bad(fn, "H + 2 Hkv above 2^31 - 1");
  if (N > 0x7fffffff)
    return Bad(fn, "N above 2^31 - 1");
  if ((q_norm == nullptr) != (k_norm == nullptr)) {
    return Bad(fn, "q_norm and k_norm must both be given or both be null");
  }
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dq", dq));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dk", dk));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dv", dv));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "qkv", qkv));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dqkv", dqkv));
  if (q_norm != nullptr)
    RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dnorm_rows", dnorm_rows));
  const int64_t heads = H + 2 * Hkv, half = D / 2;
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dq", dq, N * H * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dk", dk, N * Hkv * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dv", dv, N * Hkv * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "qkv", qkv, N * heads * D));
  if (bias != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "bias", bias, heads * D));
  if (q_norm != nullptr) {
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "q_norm", q_norm, D));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "k_norm", k_norm, D));
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "dnorm_rows", dnorm_rows, N * 2 * D));
  }
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "cos", cos, N * half));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "sin", sin, N * half));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dqkv", dqkv, N * heads * D));
  const float epsf = static_cast<float>(eps);
  return Enqueue(fn, stream, [=] {
    std::vector<float> a(D), db(D), wq(D), wk(D);
    for (int64_t n = 0; n < N; ++n) {
      std::fill(wq.begin(), wq.end(), 0.0f);
      std::fill(wk.begin(), wk.end(), 0.0f);
      for (int64_t hd = 0; hd < heads; ++hd) {
        const float *src = qkv + (n * heads + hd) * D;
        float *dst = dqkv + (n * heads + hd) * D;
        const bool is_q = hd < H, is_k = !is_q && hd < H + Hkv;
        if (!is_q && !is_k) {
          const uint16_t *g = dv + (n * Hkv + (hd - H - Hkv)) * D;
          for (int64_t d = 0; d < D; ++d)
            dst[d] = emu::Bf(g[d]);
          continue;
        }
        const uint16_t *g =
            is_q ? dq + (n * H + hd) * D : dk + (n * Hkv + (hd - H)) * D;
        for (int64_t d = 0; d < D; ++d)
          a[d] = bias != nullptr ? src[d] + bias[hd * D + d] : src[d];
        for (int64_t j = 0; j < half; ++j) { // inverse RoPE
          const float g1 = emu::Bf(g[j]), g2 = emu::Bf(g[j + half]);
          const float c = cos[n * half + j], s = sin[n * half + j];
          db[j] = g1 * c + g2 * s;
          db[j + half] = g2 * c - g1 * s;
        }
        if (q_norm == nullptr) {
          for (int64_t d = 0; d < D; ++d)
            dst[d] = db[d];
          continue;
        }
        const float *w = is_q ? q_norm : k_norm;
        float ss = 0.0f, dot = 0.0f;
        for (int64_t d = 0; d < D; ++d) {
          ss += a[d] * a[d];
          dot += w[d] * db[d] * a[d];
        }
        const float r = 1.0f / std::sqrt(ss / static_cast<float>(D) + epsf);
        const float coef = r * r * dot / static_cast<float>(D);
        std::vector<float> &wacc = is_q ? wq : wk;
        for (int64_t d = 0; d < D; ++d) {
          dst[d] = r * (w[d] * db[d] - a[d] * coef);
          wacc[d] += db[d] * (a[d] * r);
        }
      }
      if (q_norm != nullptr) {
        for (int64_t d = 0; d < D; ++d) {
          dnorm_rows[n * 2 * D + d] = wq[d];
          dnorm_rows[n * 2 * D + D + d] = wk[d];
        }
      }
    }
  });
}

absl::Status ColumnSumF32(const float *x, int64_t R, int64_t C, int64_t ldx,
                          float *out, Stream stream) {
  constexpr const char *fn = "ColumnSumF32";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (ldx < C)
    return Bad(fn, absl::StrCat("ldx = ", ldx, " is below C = ", C));
  if (C == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  if (R == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, emu::Span(R, C, ldx)));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, C));
  return Enqueue(fn, stream, [=] {
    for (int64_t c = 0; c < C; ++c) {
      float s = 0.0f;
      for (int64_t r = 0; r < R; ++r)
        s += x[r * ldx + c];
      out[c] += s;
    }
  });
}

absl::Status SwigluPairedBackwardF32ToBf16(const float *dact, const float *gu,
                                           int64_t N, int64_t I, uint16_t *dgu,
                                           Stream stream) {
  constexpr const char *fn = "SwigluPairedBackwardF32ToBf16";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "I", I));
  if (N == 0 || I == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dact", dact));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "gu", gu));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "dgu", dgu));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dact", dact, N * I));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "gu", gu, N * 2 * I));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dgu", dgu, N * 2 * I));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t i = 0; i < I; ++i) {
        const float g = gu[n * 2 * I + i], u = gu[n * 2 * I + I + i],
                    d = dact[n * I + i];
        const float s = 1.0f / (1.0f + std::exp(-g));
        const float silu = g * s;
        dgu[n * 2 * I + i] = emu::ToBf(d * u * (s + silu * (1.0f - s)));
        dgu[n * 2 * I + I + i] = emu::ToBf(d * silu);
      }
    }
  });
}

absl::Status SwigluPairedF32ToBf16(const float *gu, int64_t N, int64_t I,
                                   uint16_t *out, Stream stream) {
  return SwigluPaired<float>("SwigluPairedF32ToBf16", gu, N, I, out, stream);
}
absl::Status SwigluPairedBf16(const uint16_t *gu, int64_t N, int64_t I,
                              uint16_t *out, Stream stream) {
  return SwigluPaired<uint16_t>("SwigluPairedBf16", gu, N, I, out, stream);
}

absl::Status AddRowBiasF32(const float *bias, int64_t N, int64_t C, float *y,
                           Stream stream) {
  constexpr const char *fn = "AddRowBiasF32";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (N == 0 || C == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "bias", bias));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "bias", bias, C));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "y", y, N * C));
  return Enqueue(fn, stream, [=] {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c)
        y[n * C + c] += bias[c];
    }
  });
}

absl::Status AddBf16ToF32(const uint16_t *y, int64_t n, float *x,
                          Stream stream) {
  constexpr const char *fn = "AddBf16ToF32";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "n", n));
  if (n == 0)
    return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "y", y, n));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "x", x, n));
  return Enqueue(fn, stream, [=] {
    for (int64_t i = 0; i < n; ++i)
      x[i] += emu::Bf(y[i]);
  });
}

absl::Status ArgmaxRows(const float *logits, int64_t R, int64_t V,
                        int64_t valid, int32_t *out, Stream stream) {
  constexpr const char *fn = "ArgmaxRows";
  RLVR_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  if (R == 0)
    return absl::OkStatus();
  if (V <= 0 || valid < 1 || valid > V || V > 0x7fffffff) {
    return Bad(fn, absl::StrCat("need 1 <= valid (", valid, ") <= V (", V,
                                ") < 2^31"));
  }
  if (R > 0x7fffffff)
    return Bad(fn, "R above 2^31 - 1");
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "logits", logits));
  RLVR_RETURN_IF_ERROR(CheckPtr(fn, "out", out));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "logits", logits, R * V));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, R));
  return Enqueue(fn, stream, [=] {
    for (int64_t r = 0; r < R; ++r) {
      int32_t best = 0;
      float best_v = 0.0f;
      bool found = false;
      for (int64_t j = 0; j < valid; ++j) {
        const float v = logits[r * V + j];
        if (std::isnan(v))
          continue;
        if (!found || v > best_v) {
          best_v = v;
          best = static_cast<int32_t>(j);
          found = true;
        }
      }
      out[r] = best;
    }
  });
}

} // namespace rlvr::kernels::cuda
