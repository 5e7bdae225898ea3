// Host emulation of kernels/cuda/attention.h: the host-side checks of
// flash_attention.cu and decode_attention.cu, then kernels::AttentionForward /
// AttentionBackward<double> on the widened inputs (more accurate than the GPU's
// fp32, independent of the CPU's MatmulPrecision), and the paged write / decode
// as plain loops in fp32 through the block table.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attn_moe_args.h"
#include "core/status.h"
#include "kernels/cuda/emulation/emu.h"


namespace rlvr::kernels::cuda {
namespace {

using emu::CheckElems;
using emu::Enqueue;
using emu::Load;
using emu::Store;

template <typename T> std::vector<double> Widen(const T *p, int64_t n) {
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i)
    out[i] = Load(p + i);
  return out;
}

template <typename T>
absl::Status Forward(const char *fn, const T *q, const T *k, const T *v,
                     int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                     double scale, T *out, float *lse, const int32_t *seg,
                     Stream stream) {
  RLVR_RETURN_IF_ERROR(internal::CheckAttentionShape(fn, B, Tn, H, Hkv, D));
  if (B == 0 || Tn == 0 || H == 0)
    return absl::OkStatus();
  if (!q || !k || !v || !out || !lse)
    return internal::Bad(fn, "null q, k, v, out or lse");
  const int64_t nq = B * Tn * H * D, nkv = B * Tn * Hkv * D;
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "q", q, nq));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "k", k, nkv));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "v", v, nkv));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, nq));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "lse", lse, B * H * Tn));
  if (seg != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "seg_start", seg, B * Tn));
  const double sc = static_cast<float>(scale);
  return Enqueue(fn, stream, [=] {
    std::vector<double> dq = Widen(q, nq), dk = Widen(k, nkv),
                        dv = Widen(v, nkv);
    std::vector<double> o(nq), l(B * H * Tn);
    AttentionForward<double>(dq.data(), dk.data(), dv.data(), B, Tn, H, Hkv, D,
                             sc, o.data(), l.data(), seg);
    for (int64_t i = 0; i < nq; ++i)
      Store(out + i, static_cast<float>(o[i]));
    for (int64_t i = 0; i < B * H * Tn; ++i)
      lse[i] = static_cast<float>(l[i]);
  });
}

template <typename T>
absl::Status Backward(const char *fn, const T *dout, const T *q, const T *k,
                      const T *v, const T *out, const float *lse, int64_t B,
                      int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                      double scale, T *dq, T *dk, T *dv, void *workspace,
                      size_t workspace_bytes, const int32_t *seg,
                      Stream stream) {
  RLVR_RETURN_IF_ERROR(internal::CheckAttentionShape(fn, B, Tn, H, Hkv, D));
  if (B == 0 || Tn == 0 || H == 0)
    return absl::OkStatus();
  if (!dout || !q || !k || !v || !out || !lse || !dq || !dk || !dv) {
    return internal::Bad(fn, "null dout, q, k, v, out, lse, dq, dk or dv");
  }
  const size_t need = internal::AttentionBackwardBytes(B, Tn, H);
  if (workspace == nullptr || workspace_bytes < need) {
    return internal::Bad(fn, "workspace of ", workspace_bytes, " bytes, need ",
                         need);
  }
  const int64_t nq = B * Tn * H * D, nkv = B * Tn * Hkv * D;
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dout", dout, nq));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "q", q, nq));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "k", k, nkv));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "v", v, nkv));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, nq));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "lse", lse, B * H * Tn));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dq", dq, nq));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dk", dk, nkv));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "dv", dv, nkv));
  RLVR_RETURN_IF_ERROR(emu::CheckRange(fn, "workspace", workspace, need));
  if (seg != nullptr)
    RLVR_RETURN_IF_ERROR(CheckElems(fn, "seg_start", seg, B * Tn));
  const double sc = static_cast<float>(scale);
  return Enqueue(fn, stream, [=] {
    std::vector<double> wdo = Widen(dout, nq), wq = Widen(q, nq),
                        wk = Widen(k, nkv), wv = Widen(v, nkv),
                        wo = Widen(out, nq), wl = Widen(lse, B * H * Tn);
    // D_i = dout_i . out_i, [B, H, T] fp32, as the real kernel leaves it in the
    // workspace.
    float *di = static_cast<float *>(workspace);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < Tn; ++t) {
        for (int64_t h = 0; h < H; ++h) {
          float s = 0.0f;
          for (int64_t d = 0; d < D; ++d) {
            const int64_t i = ((b * Tn + t) * H + h) * D + d;
            s += static_cast<float>(wdo[i]) * static_cast<float>(wo[i]);
          }
          di[(b * H + h) * Tn + t] = s;
        }
      }
    }
    std::vector<double> gq(nq, 0.0), gk(nkv, 0.0), gv(nkv, 0.0);
    AttentionBackward<double>(wdo.data(), wq.data(), wk.data(), wv.data(),
                              wo.data(), wl.data(), B, Tn, H, Hkv, D, sc,
                              gq.data(), gk.data(), gv.data(), seg);
    for (int64_t i = 0; i < nq; ++i)
      Store(dq + i, Load(dq + i) + static_cast<float>(gq[i]));
    for (int64_t i = 0; i < nkv; ++i) {
      Store(dk + i, Load(dk + i) + static_cast<float>(gk[i]));
      Store(dv + i, Load(dv + i) + static_cast<float>(gv[i]));
    }
  });
}

template <typename P>
absl::Status CheckPool(const char *fn, const PagedKv<P> &c, int64_t Hkv,
                       int64_t D) {
  if (!c.k || !c.v || !c.block_table) {
    return internal::Bad(fn, "null cache.k, cache.v or block_table");
  }
  if (c.num_blocks <= 0 || c.block_size <= 0 || c.max_blocks <= 0) {
    return internal::Bad(fn, "cache.num_blocks=", c.num_blocks,
                         ", block_size=", c.block_size,
                         " and max_blocks=", c.max_blocks, " must be positive");
  }
  if (c.block_stride < c.block_size * Hkv * D) {
    return internal::Bad(
        fn, "cache.block_stride=", c.block_stride,
        " below block_size * Hkv * D=", c.block_size * Hkv * D);
  }
  if (c.max_blocks * c.block_size > (int64_t{1} << 30)) {
    return internal::Bad(fn, "cache capacity ", c.max_blocks * c.block_size,
                         " too large");
  }
  return absl::OkStatus();
}

// The pool's num_blocks blocks lie inside device allocations (after the
// argument checks).
template <typename P>
absl::Status CheckPoolRange(const char *fn, const PagedKv<P> &c, int64_t Hkv,
                            int64_t D) {
  const int64_t pool =
      (c.num_blocks - 1) * c.block_stride + c.block_size * Hkv * D;
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "cache.k (num_blocks blocks)", c.k, pool));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "cache.v (num_blocks blocks)", c.v, pool));
  return CheckElems(fn, "block_table", c.block_table, c.max_blocks);
}

template <typename T, typename P>
absl::Status Write(const char *fn, const T *k_new, const T *v_new,
                   const int32_t *positions, int64_t B, int64_t Tn, int64_t Hkv,
                   int64_t D, const PagedKv<P> &cache, Stream stream) {
  if (B < 0 || Tn < 0 || Hkv < 0 || D <= 0) {
    return internal::Bad(fn, "bad size: B=", B, " Tn=", Tn, " Hkv=", Hkv,
                         " D=", D);
  }
  if (B == 0 || Tn == 0 || Hkv == 0)
    return absl::OkStatus();
  if (!k_new || !v_new || !positions)
    return internal::Bad(fn, "null k_new, v_new or positions");
  RLVR_RETURN_IF_ERROR(CheckPool(fn, cache, Hkv, D));
  RLVR_RETURN_IF_ERROR(CheckPoolRange(fn, cache, Hkv, D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "k_new", k_new, B * Tn * Hkv * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "v_new", v_new, B * Tn * Hkv * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "positions", positions, B * Tn));
  RLVR_RETURN_IF_ERROR(
      CheckElems(fn, "block_table", cache.block_table, B * cache.max_blocks));
  const PagedKv<P> c = cache;
  return Enqueue(fn, stream, [=] {
    const int64_t row = Hkv * D;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t p = positions[b * Tn + t];
        if (p < 0 || p >= c.max_blocks * c.block_size)
          continue; // skipped, as documented
        const int64_t id = c.block_table[b * c.max_blocks + p / c.block_size];
        if (id < 0 || id >= c.num_blocks)
          continue;
        const int64_t off = id * c.block_stride + (p % c.block_size) * row;
        for (int64_t i = 0; i < row; ++i) {
          c.k[off + i] = k_new[(b * Tn + t) * row + i];
          c.v[off + i] = v_new[(b * Tn + t) * row + i];
        }
      }
    }
  });
}

template <typename T, typename P>
absl::Status Decode(const char *fn, const T *q, const int32_t *positions,
                    int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                    double scale, const PagedKv<P> &cache, T *out,
                    void *workspace, size_t workspace_bytes, Stream stream) {
  RLVR_RETURN_IF_ERROR(internal::CheckAttentionShape(fn, B, Tn, H, Hkv, D));
  if (B == 0 || Tn == 0 || H == 0)
    return absl::OkStatus();
  if (!q || !positions || !out)
    return internal::Bad(fn, "null q, positions or out");
  RLVR_RETURN_IF_ERROR(CheckPool(fn, cache, Hkv, D));
  const size_t need = internal::DecodeWorkspaceBytes(
      B, Tn, H, D, cache.max_blocks, cache.block_size);
  if (workspace == nullptr || workspace_bytes < need) {
    return internal::Bad(fn, "workspace of ", workspace_bytes, " bytes, need ",
                         need);
  }
  const internal::DecodeSplits sp = internal::ChooseDecodeSplits(
      B * Tn * H, cache.max_blocks * cache.block_size);
  if (B * Tn * H * sp.splits >= (int64_t{1} << 31))
    return internal::Bad(fn, "too many rows");
  RLVR_RETURN_IF_ERROR(CheckPoolRange(fn, cache, Hkv, D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "q", q, B * Tn * H * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "out", out, B * Tn * H * D));
  RLVR_RETURN_IF_ERROR(CheckElems(fn, "positions", positions, B * Tn));
  RLVR_RETURN_IF_ERROR(
      CheckElems(fn, "block_table", cache.block_table, B * cache.max_blocks));
  RLVR_RETURN_IF_ERROR(emu::CheckRange(fn, "workspace", workspace, need));
  const PagedKv<P> c = cache;
  const float sc = static_cast<float>(scale);
  return Enqueue(fn, stream, [=] {
    const int64_t group = H / Hkv, row = Hkv * D;
    std::vector<float> s, acc(D);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < Tn; ++t) {
        const int64_t pos = positions[b * Tn + t];
        if (pos < 0 || pos >= c.max_blocks * c.block_size) {
          emu::Die(absl::StrCat(fn, ": position ", pos, " of (b=", b, ", t=", t,
                                ") outside the block table's capacity ",
                                c.max_blocks * c.block_size));
        }
        s.assign(pos + 1, 0.0f);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t kvh = h / group;
          const T *qv = q + ((b * Tn + t) * H + h) * D;
          float m = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j <= pos; ++j) {
            const int64_t id =
                c.block_table[b * c.max_blocks + j / c.block_size];
            if (id < 0 || id >= c.num_blocks) {
              emu::Die(absl::StrCat(
                  fn, ": block id ", id, " (sequence ", b, ", position ", j,
                  ") outside [0, num_blocks = ", c.num_blocks, ")"));
            }
            const P *kr =
                c.k + id * c.block_stride + (j % c.block_size) * row + kvh * D;
            float dot = 0.0f;
            for (int64_t d = 0; d < D; ++d)
              dot += Load(qv + d) * Load(kr + d);
            s[j] = dot * sc;
            m = std::max(m, s[j]);
          }
          float sum = 0.0f;
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (int64_t j = 0; j <= pos; ++j) {
            const int64_t id =
                c.block_table[b * c.max_blocks + j / c.block_size];
            const P *vr =
                c.v + id * c.block_stride + (j % c.block_size) * row + kvh * D;
            const float p = std::exp(s[j] - m);
            sum += p;
            for (int64_t d = 0; d < D; ++d)
              acc[d] += p * Load(vr + d);
          }
          T *o = out + ((b * Tn + t) * H + h) * D;
          for (int64_t d = 0; d < D; ++d)
            Store(o + d, acc[d] / sum);
        }
      }
    }
  });
}

} // namespace

size_t AttentionBackwardWorkspaceBytes(int64_t B, int64_t Tn, int64_t H) {
  return internal::AttentionBackwardBytes(B, Tn, H);
}
size_t AttentionDecodeWorkspaceBytes(int64_t B, int64_t Tn, int64_t H,
                                     int64_t D, int64_t max_blocks,
                                     int64_t block_size) {
  return internal::DecodeWorkspaceBytes(B, Tn, H, D, max_blocks, block_size);
}

absl::Status AttentionForwardF32(const float *q, const float *k, const float *v,
                                 int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                                 int64_t D, double scale, float *out,
                                 float *lse, const int32_t *seg_start,
                                 Stream stream) {
  return Forward<float>("AttentionForwardF32", q, k, v, B, Tn, H, Hkv, D, scale,
                        out, lse, seg_start, stream);
}
absl::Status AttentionForwardBf16(const uint16_t *q, const uint16_t *k,
                                  const uint16_t *v, int64_t B, int64_t Tn,
                                  int64_t H, int64_t Hkv, int64_t D,
                                  double scale, uint16_t *out, float *lse,
                                  const int32_t *seg_start, Stream stream) {
  return Forward<uint16_t>("AttentionForwardBf16", q, k, v, B, Tn, H, Hkv, D,
                           scale, out, lse, seg_start, stream);
}
absl::Status AttentionBackwardF32(const float *dout, const float *q,
                                  const float *k, const float *v,
                                  const float *out, const float *lse, int64_t B,
                                  int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                  double scale, float *dq, float *dk, float *dv,
                                  void *workspace, size_t workspace_bytes,
                                  const int32_t *seg_start, Stream stream) {
  return Backward<float>("AttentionBackwardF32", dout, q, k, v, out, lse, B, Tn,
                         H, Hkv, D, scale, dq, dk, dv, workspace,
                         workspace_bytes, seg_start, stream);
}
absl::Status AttentionBackwardBf16(const uint16_t *dout, const uint16_t *q,
                                   const uint16_t *k, const uint16_t *v,
                                   const uint16_t *out, const float *lse,
                                   int64_t B, int64_t Tn, int64_t H,
                                   int64_t Hkv, int64_t D, double scale,
                                   uint16_t *dq, uint16_t *dk, uint16_t *dv,
                                   void *workspace, size_t workspace_bytes,
                                   const int32_t *seg_start, Stream stream) {
  return Backward<uint16_t>("AttentionBackwardBf16", dout, q, k, v, out, lse, B,
                            Tn, H, Hkv, D, scale, dq, dk, dv, workspace,
                            workspace_bytes, seg_start, stream);
}
absl::Status KvCacheWriteF32(const float *k_new, const float *v_new,
                             const int32_t *positions, int64_t B, int64_t Tn,
                             int64_t Hkv, int64_t D,
                             const PagedKv<float> &cache, Stream stream) {
  return Write<float>("KvCacheWriteF32", k_new, v_new, positions, B, Tn, Hkv, D,
                      cache, stream);
}
absl::Status KvCacheWriteBf16(const uint16_t *k_new, const uint16_t *v_new,
                              const int32_t *positions, int64_t B, int64_t Tn,
                              int64_t Hkv, int64_t D,
                              const PagedKv<uint16_t> &cache, Stream stream) {
  return Write<uint16_t>("KvCacheWriteBf16", k_new, v_new, positions, B, Tn,
                         Hkv, D, cache, stream);
}
absl::Status AttentionDecodeF32(const float *q, const int32_t *positions,
                                int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                                int64_t D, double scale,
                                const PagedKv<const float> &cache, float *out,
                                void *workspace, size_t workspace_bytes,
                                Stream stream) {
  return Decode<float>("AttentionDecodeF32", q, positions, B, Tn, H, Hkv, D,
                       scale, cache, out, workspace, workspace_bytes, stream);
}
absl::Status AttentionDecodeBf16(const uint16_t *q, const int32_t *positions,
                                 int64_t B, int64_t Tn, int64_t H, int64_t Hkv,
                                 int64_t D, double scale,
                                 const PagedKv<const uint16_t> &cache,
                                 uint16_t *out, void *workspace,
                                 size_t workspace_bytes, Stream stream) {
  return Decode<uint16_t>("AttentionDecodeBf16", q, positions, B, Tn, H, Hkv, D,
                          scale, cache, out, workspace, workspace_bytes,
                          stream);
}

// Tensor-core attention (attention.h): the real kernels take D = 64 / 128 and 16-byte aligned
// bf16 pointers; the emulation checks that much and computes as the FMA path.
namespace {
absl::Status CheckTc(const char *fn, int64_t D, std::initializer_list<const void *> ptrs) {
  if (D != 64 && D != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(fn, ": D = ", D, " (the tensor-core kernels take 64 or 128)"));
  }
  for (const void *p : ptrs) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(fn, ": bf16 pointers must be 16-byte aligned"));
    }
  }
  return absl::OkStatus();
}
} // namespace

absl::Status AttentionForwardBf16Tc(const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                    int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                    double scale, uint16_t *out, float *lse,
                                    const int32_t *seg_start, Stream stream) {
  absl::Status st = CheckTc("AttentionForwardBf16Tc", D, {q, k, v, out});
  if (!st.ok())
    return st;
  return Forward<uint16_t>("AttentionForwardBf16Tc", q, k, v, B, Tn, H, Hkv, D, scale, out,
                           lse, seg_start, stream);
}
absl::Status AttentionBackwardBf16Tc(const uint16_t *dout, const uint16_t *q, const uint16_t *k,
                                     const uint16_t *v, const uint16_t *out, const float *lse,
                                     int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                     double scale, uint16_t *dq, uint16_t *dk, uint16_t *dv,
                                     void *workspace, size_t workspace_bytes,
                                     const int32_t *seg_start, Stream stream) {
  absl::Status st = CheckTc("AttentionBackwardBf16Tc", D, {dout, q, k, v, out, dq, dk, dv});
  if (!st.ok())
    return st;
  return Backward<uint16_t>("AttentionBackwardBf16Tc", dout, q, k, v, out, lse, B, Tn, H, Hkv,
                            D, scale, dq, dk, dv, workspace, workspace_bytes, seg_start, stream);
}
bool AttentionBf16UsesTensorCores(int64_t) { return false; }

} // namespace rlvr::kernels::cuda
