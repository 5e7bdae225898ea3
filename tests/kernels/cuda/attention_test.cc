// CUDA attention kernels (kernels/cuda/attention.h) against the CPU ones (kernels/attention.h):
// the flash forward and backward on ragged lengths, GQA 1 and 4, D 16, 32, 64 and 128 and packed
// segments; the paged KV write and decode attention against KvCacheWrite /
// AttentionCachedForward on a host copy of the same pool. Outputs are poisoned before each run.
// bf16 runs compare with the CPU kernel run in float on the bf16-rounded inputs.
#include "kernels/cuda/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/cuda/attn_moe_args.h"
#include "kernels/matmul.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/dense_test_util.h"

namespace rlvr::kernels::cuda {
namespace {

using testing::DeviceBuffer;
using testing::FromBf16;
using testing::Randn;
using testing::RoundBf16;
using testing::RelativeMaxError;

// fp32 paths: same inputs, different summation orders (BLAS vs FMA loops) over at most a few
// hundred terms: relative differences ~1e-6; 2e-5 leaves a margin without hiding a wrong mask
// (a single masked-in key changes outputs by ~1e-2).
constexpr double kF32Tol = 2e-5;
// Gradients sum over more terms (query tiles x heads), with cancellation in dS = P (dP - Di).
constexpr double kF32GradTol = 1e-4;
// bf16 outputs: one rounding to 8 significant bits (relative 2^-9 = 0.002 per element) on top
// of the fp32 differences; 1e-2 of the largest element.
constexpr double kBf16Tol = 1e-2;

// seg_start [B, T] of random packed segments (lengths 1..T/2+1), or empty.
std::vector<int32_t> RandomSegments(int64_t B, int64_t Tn, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> seg(B * Tn);
  for (int64_t b = 0; b < B; ++b) {
    int64_t start = 0;
    while (start < Tn) {
      const int64_t len = 1 + static_cast<int64_t>(rng() % (Tn / 2 + 1));
      for (int64_t t = start; t < std::min(Tn, start + len); ++t) seg[b * Tn + t] = start;
      start += len;
    }
  }
  return seg;
}

struct AttnCase {
  int64_t B, Tn, H, Hkv, D;
  bool packed;
  std::string Name() const {
    return "B" + std::to_string(B) + "_T" + std::to_string(Tn) + "_H" + std::to_string(H) +
           "_Hkv" + std::to_string(Hkv) + "_D" + std::to_string(D) + (packed ? "_packed" : "");
  }
};

const AttnCase kCases[] = {
    {1, 1, 4, 4, 64, false},   {2, 37, 4, 1, 128, false}, {2, 130, 8, 2, 64, false},
    {1, 130, 4, 4, 128, true}, {3, 37, 8, 2, 128, true},  {2, 130, 4, 1, 64, true},
    // The small head dims of the tiny/small presets (lanes past D idle in the flash kernels).
    {2, 37, 4, 1, 16, false},  {1, 130, 4, 2, 32, true},  {2, 45, 8, 2, 32, false},
    {1, 70, 4, 4, 16, true},
};

class AttentionCuda : public ::testing::TestWithParam<AttnCase> {
 protected:
  void SetUp() override { SetMatmulPrecision(MatmulPrecision::kHighest); }
};

void CheckClose(const char* what, const std::vector<float>& got, const std::vector<float>& ref,
                double tol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  ASSERT_FALSE(ref.empty()) << what;
  const double max_ref = std::abs(*std::max_element(
      ref.begin(), ref.end(), [](float a, float b) { return std::abs(a) < std::abs(b); }));
  EXPECT_GT(max_ref, 0.0) << what << ": reference is all zero";
  const double err = RelativeMaxError(got, ref);
  if (!(err < tol)) {
    size_t worst = 0;
    double we = -1;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double e = std::isnan(got[i]) ? INFINITY : std::abs(got[i] - ref[i]);
      if (e > we) {
        we = e;
        worst = i;
      }
    }
    ADD_FAILURE() << what << ": relative max error " << err << " >= " << tol << "; worst at "
                  << worst << " got " << got[worst] << " want " << ref[worst];
  }
}

// The forward in fp32 and bf16, then the backward from the CPU's out and lse.
void RunAttention(const AttnCase& c, bool bf16) {
  const int64_t nq = c.B * c.Tn * c.H * c.D, nk = c.B * c.Tn * c.Hkv * c.D, nl = c.B * c.H * c.Tn;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  std::vector<float> q = Randn(nq, 1), k = Randn(nk, 2), v = Randn(nk, 3);
  std::vector<float> dout = Randn(nq, 4), dq0 = Randn(nq, 5, 0.1f), dk0 = Randn(nk, 6, 0.1f),
                     dv0 = Randn(nk, 7, 0.1f);
  std::vector<uint16_t> qb, kb, vb, dob, dq0b, dk0b, dv0b;
  if (bf16) {
    qb = RoundBf16(&q), kb = RoundBf16(&k), vb = RoundBf16(&v), dob = RoundBf16(&dout);
    dq0b = RoundBf16(&dq0), dk0b = RoundBf16(&dk0), dv0b = RoundBf16(&dv0);
  }
  std::vector<int32_t> seg = c.packed ? RandomSegments(c.B, c.Tn, 11) : std::vector<int32_t>();
  const int32_t* seg_host = c.packed ? seg.data() : nullptr;

  std::vector<float> out_ref(nq), lse_ref(nl);
  AttentionForward<float>(q.data(), k.data(), v.data(), c.B, c.Tn, c.H, c.Hkv, c.D, scale,
                          out_ref.data(), lse_ref.data(), seg_host);
  std::vector<uint16_t> out_refb;
  if (bf16) out_refb = RoundBf16(&out_ref);  // the backward's `out` input, as stored in bf16
  std::vector<float> dq_ref = dq0, dk_ref = dk0, dv_ref = dv0;
  AttentionBackward<float>(dout.data(), q.data(), k.data(), v.data(), out_ref.data(),
                           lse_ref.data(), c.B, c.Tn, c.H, c.Hkv, c.D, scale, dq_ref.data(),
                           dk_ref.data(), dv_ref.data(), seg_host);

  DeviceBuffer<int32_t> d_seg(c.packed ? seg : std::vector<int32_t>(1, 0));
  const int32_t* seg_dev = c.packed ? d_seg.get() : nullptr;
  DeviceBuffer<float> d_lse(nl);
  d_lse.Poison();
  DeviceBuffer<float> d_lse_in(lse_ref);
  DeviceBuffer<unsigned char> ws(AttentionBackwardWorkspaceBytes(c.B, c.Tn, c.H));
  std::vector<float> out, dq, dk, dv;
  if (!bf16) {
    DeviceBuffer<float> d_q(q), d_k(k), d_v(v), d_out(nq), d_do(dout), d_outin(out_ref),
        d_dq(dq0), d_dk(dk0), d_dv(dv0);
    d_out.Poison();
    ASSERT_TRUE(AttentionForwardF32(d_q.get(), d_k.get(), d_v.get(), c.B, c.Tn, c.H, c.Hkv, c.D,
                                    scale, d_out.get(), d_lse.get(), seg_dev)
                    .ok());
    ASSERT_TRUE(AttentionBackwardF32(d_do.get(), d_q.get(), d_k.get(), d_v.get(), d_outin.get(),
                                     d_lse_in.get(), c.B, c.Tn, c.H, c.Hkv, c.D, scale,
                                     d_dq.get(), d_dk.get(), d_dv.get(), ws.get(), ws.size(),
                                     seg_dev)
                    .ok());
    ASSERT_TRUE(Synchronize().ok());
    out = d_out.Download(), dq = d_dq.Download(), dk = d_dk.Download(), dv = d_dv.Download();
  } else {
    DeviceBuffer<uint16_t> d_q(qb), d_k(kb), d_v(vb), d_out(nq), d_do(dob), d_outin(out_refb),
        d_dq(dq0b), d_dk(dk0b), d_dv(dv0b);
    d_out.Poison();
    ASSERT_TRUE(AttentionForwardBf16(d_q.get(), d_k.get(), d_v.get(), c.B, c.Tn, c.H, c.Hkv, c.D,
                                     scale, d_out.get(), d_lse.get(), seg_dev)
                    .ok());
    ASSERT_TRUE(AttentionBackwardBf16(d_do.get(), d_q.get(), d_k.get(), d_v.get(),
                                      d_outin.get(), d_lse_in.get(), c.B, c.Tn, c.H, c.Hkv, c.D,
                                      scale, d_dq.get(), d_dk.get(), d_dv.get(), ws.get(),
                                      ws.size(), seg_dev)
                    .ok());
    ASSERT_TRUE(Synchronize().ok());
    out = FromBf16(d_out.Download()), dq = FromBf16(d_dq.Download());
    dk = FromBf16(d_dk.Download()), dv = FromBf16(d_dv.Download());
  }
  const std::vector<float> lse = d_lse.Download();
  CheckClose("out", out, out_ref, bf16 ? kBf16Tol : kF32Tol);
  // lse is fp32 in both modes, from the same (rounded) inputs.
  CheckClose("lse", lse, lse_ref, kF32Tol);
  CheckClose("dq", dq, dq_ref, bf16 ? kBf16Tol : kF32GradTol);
  CheckClose("dk", dk, dk_ref, bf16 ? kBf16Tol : kF32GradTol);
  CheckClose("dv", dv, dv_ref, bf16 ? kBf16Tol : kF32GradTol);
  // The reference gradient is far from the initial value, so a kernel that only kept dv0 (or
  // overwrote it) fails. (dq and dk are exactly 0 for T = 1, so dv.)
  EXPECT_GT(RelativeMaxError(dv0, dv_ref), 10 * (bf16 ? kBf16Tol : kF32GradTol));
}

TEST_P(AttentionCuda, F32MatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  RunAttention(GetParam(), false);
}

TEST_P(AttentionCuda, Bf16MatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  RunAttention(GetParam(), true);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionCuda, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return info.param.Name(); });

// Paged decode: contexts (position + 1 of the last new token) per sequence.
struct DecodeCase {
  std::vector<int64_t> ctx;  // [B]
  int64_t Tn, H, Hkv, D, block_size;
  std::string Name() const {
    std::string s = "ctx";
    for (int64_t x : ctx) s += "_" + std::to_string(x);
    return s + "_Tn" + std::to_string(Tn) + "_H" + std::to_string(H) + "_Hkv" +
           std::to_string(Hkv) + "_D" + std::to_string(D) + "_bs" + std::to_string(block_size);
  }
};

const DecodeCase kDecodeCases[] = {
    {{1, 37, 130}, 1, 4, 4, 64, 16},  {{130, 5}, 1, 8, 2, 128, 16},
    {{37, 64, 9}, 3, 4, 1, 64, 8},    {{1000, 1, 37}, 1, 4, 1, 128, 16},
    {{2049}, 1, 2, 2, 64, 32},
    {{37, 64, 9}, 1, 4, 2, 16, 16},   {{130, 5}, 3, 8, 2, 32, 8},
};

class DecodeCuda : public ::testing::TestWithParam<DecodeCase> {
 protected:
  void SetUp() override { SetMatmulPrecision(MatmulPrecision::kHighest); }
};

void RunDecode(const DecodeCase& c, bool bf16) {
  const int64_t B = static_cast<int64_t>(c.ctx.size()), L = 2, layer = 1;
  const int64_t row = c.Hkv * c.D, bs = c.block_size;
  int64_t max_blocks = 0, used = 0;
  for (int64_t x : c.ctx) {
    max_blocks = std::max(max_blocks, (x + bs - 1) / bs);
    used += (x + bs - 1) / bs;
  }
  max_blocks += 1;  // one unused entry (-1) per row
  const int64_t num_blocks = used + 3;
  // Distinct random block ids per sequence; unused entries -1.
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(21));
  std::vector<int32_t> table(B * max_blocks, -1);
  for (int64_t b = 0, next = 0; b < B; ++b) {
    for (int64_t i = 0; i < (c.ctx[b] + bs - 1) / bs; ++i) table[b * max_blocks + i] = ids[next++];
  }
  // Pool [num_blocks, L, block_size, row], random everywhere (stale rows must not be read).
  const int64_t pool_elems = num_blocks * L * bs * row;
  std::vector<float> pk = Randn(pool_elems, 22), pv = Randn(pool_elems, 23);
  std::vector<float> k_new = Randn(B * c.Tn * row, 24), v_new = Randn(B * c.Tn * row, 25);
  std::vector<float> q = Randn(B * c.Tn * c.H * c.D, 26);
  std::vector<uint16_t> pkb, pvb, knb, vnb, qb;
  if (bf16) {
    pkb = RoundBf16(&pk), pvb = RoundBf16(&pv), knb = RoundBf16(&k_new);
    vnb = RoundBf16(&v_new), qb = RoundBf16(&q);
  }
  std::vector<int32_t> positions(B * c.Tn);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < c.Tn; ++t) {
      // The last new token sits at ctx - 1; earlier ones before it (clamped at 0, so short
      // contexts repeat position 0, which the CPU also allows).
      positions[b * c.Tn + t] = static_cast<int32_t>(std::max<int64_t>(0, c.ctx[b] - c.Tn + t));
    }
  }
  // Host views of the same pool.
  std::vector<std::vector<float*>> kp(B), vp(B);
  std::vector<KvCacheView<float>> views(B);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < (c.ctx[b] + bs - 1) / bs; ++i) {
      const int64_t blk = table[b * max_blocks + i];
      kp[b].push_back(pk.data() + (blk * L + layer) * bs * row);
      vp[b].push_back(pv.data() + (blk * L + layer) * bs * row);
    }
    views[b].block_size = bs;
    views[b].k_blocks = std::span<float* const>(kp[b]);
    views[b].v_blocks = std::span<float* const>(vp[b]);
  }
  // Device copies of the pool BEFORE the host write.
  DeviceBuffer<int32_t> d_table(table), d_pos(positions);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  const size_t ws_bytes = AttentionDecodeWorkspaceBytes(B, c.Tn, c.H, c.D, max_blocks, bs);
  DeviceBuffer<unsigned char> ws(ws_bytes);
  const int64_t nq = B * c.Tn * c.H * c.D;
  const std::vector<float> pk_before = pk, pv_before = pv;
  KvCacheWrite<float>(k_new.data(), v_new.data(), positions.data(), B, c.Tn, c.Hkv, c.D,
                      std::span<const KvCacheView<float>>(views));
  std::vector<float> ref(nq);
  AttentionCachedForward<float>(q.data(), positions.data(), B, c.Tn, c.H, c.Hkv, c.D, scale,
                                std::span<const KvCacheView<float>>(views), ref.data());
  std::vector<float> got, got_pk, got_pv;
  if (!bf16) {
    DeviceBuffer<float> d_pk(pool_elems), d_pv(pool_elems), d_kn(k_new), d_vn(v_new), d_q(q),
        d_out(nq);
    d_pk.Upload(pk_before);
    d_pv.Upload(pv_before);
    d_out.Poison();
    PagedKv<float> w{d_pk.get() + layer * bs * row, d_pv.get() + layer * bs * row, num_blocks,
                     bs, L * bs * row, d_table.get(), max_blocks};
    ASSERT_TRUE(
        KvCacheWriteF32(d_kn.get(), d_vn.get(), d_pos.get(), B, c.Tn, c.Hkv, c.D, w).ok());
    PagedKv<const float> r{w.k, w.v, num_blocks, bs, L * bs * row, d_table.get(), max_blocks};
    ASSERT_TRUE(AttentionDecodeF32(d_q.get(), d_pos.get(), B, c.Tn, c.H, c.Hkv, c.D, scale, r,
                                   d_out.get(), ws.get(), ws_bytes)
                    .ok());
    got = d_out.Download(), got_pk = d_pk.Download(), got_pv = d_pv.Download();
  } else {
    // pkb, pvb: the bits of the pool before the host write.
    DeviceBuffer<uint16_t> d_pk(pkb), d_pv(pvb), d_kn(knb), d_vn(vnb),
        d_q(qb), d_out(nq);
    d_out.Poison();
    PagedKv<uint16_t> w{d_pk.get() + layer * bs * row, d_pv.get() + layer * bs * row,
                        num_blocks, bs, L * bs * row, d_table.get(), max_blocks};
    ASSERT_TRUE(
        KvCacheWriteBf16(d_kn.get(), d_vn.get(), d_pos.get(), B, c.Tn, c.Hkv, c.D, w).ok());
    PagedKv<const uint16_t> r{w.k, w.v, num_blocks, bs, L * bs * row, d_table.get(), max_blocks};
    ASSERT_TRUE(AttentionDecodeBf16(d_q.get(), d_pos.get(), B, c.Tn, c.H, c.Hkv, c.D, scale, r,
                                    d_out.get(), ws.get(), ws_bytes)
                    .ok());
    got = FromBf16(d_out.Download()), got_pk = FromBf16(d_pk.Download());
    got_pv = FromBf16(d_pv.Download());
  }
  // The write is a copy: the whole pool (other layer, unused blocks included) must be equal.
  EXPECT_EQ(got_pk, pk) << "key pool differs after KvCacheWrite";
  EXPECT_EQ(got_pv, pv) << "value pool differs after KvCacheWrite";
  CheckClose("decode out", got, ref, bf16 ? kBf16Tol : kF32Tol);
}

TEST_P(DecodeCuda, F32MatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  RunDecode(GetParam(), false);
}

TEST_P(DecodeCuda, Bf16MatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  RunDecode(GetParam(), true);
}

INSTANTIATE_TEST_SUITE_P(Contexts, DecodeCuda, ::testing::ValuesIn(kDecodeCases),
                         [](const auto& info) { return info.param.Name(); });

// The split choice covers the whole capacity in whole tiles.
TEST(DecodeSplits, CoverCapacity) {
  for (int64_t rows : {1, 4, 64, 1000}) {
    for (int64_t cap : {1, 31, 32, 33, 1000, 4096, 100000}) {
      const auto s = internal::ChooseDecodeSplits(rows, cap);
      EXPECT_GE(s.splits * s.split_len, cap) << rows << " " << cap;
      EXPECT_LT((s.splits - 1) * s.split_len, std::max<int64_t>(cap, 1)) << rows << " " << cap;
      EXPECT_EQ(s.split_len % internal::kDecodeTile, 0);
    }
  }
}

// Host-side validation runs before any CUDA call, so these run without a GPU; a build without
// CUDA answers Unimplemented instead.
void ExpectBad(const absl::Status& st, const std::string& needle) {
  if (!BuiltWithCuda()) {
    EXPECT_EQ(st.code(), absl::StatusCode::kUnimplemented) << st;
    return;
  }
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find(needle), std::string::npos) << st << " lacks '" << needle << "'";
}

TEST(AttentionCudaArgs, RejectsBadShapes) {
  float* p = reinterpret_cast<float*>(16);  // never dereferenced: validation fails first
  ExpectBad(AttentionForwardF32(p, p, p, 1, 4, 6, 4, 64, 1.0, p, p), "not a multiple of Hkv");
  ExpectBad(AttentionForwardF32(p, p, p, 1, 4, 4, 4, 96, 1.0, p, p), "head dim D=96");
  ExpectBad(AttentionForwardF32(p, p, p, -1, 4, 4, 4, 64, 1.0, p, p), "negative size");
  ExpectBad(AttentionForwardF32(nullptr, p, p, 1, 4, 4, 4, 64, 1.0, p, p), "null q");
  ExpectBad(AttentionBackwardF32(p, p, p, p, p, p, 1, 4, 4, 4, 64, 1.0, p, p, p, nullptr, 0),
            "workspace of 0 bytes");
  uint16_t* h = reinterpret_cast<uint16_t*>(16);
  ExpectBad(AttentionForwardBf16(h, h, h, 1, 4, 4, 0, 64, 1.0, h, p), "Hkv is 0");
  ExpectBad(AttentionBackwardBf16(h, h, h, h, h, p, 1, 4, 4, 2, 256, 1.0, h, h, h, p, 1 << 20),
            "head dim D=256");
}

TEST(AttentionCudaArgs, EmptyIsNoOp) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "built without the CUDA backend";
  EXPECT_TRUE(AttentionForwardF32(nullptr, nullptr, nullptr, 0, 5, 4, 4, 64, 1.0, nullptr,
                                  nullptr)
                  .ok());
  EXPECT_TRUE(AttentionForwardF32(nullptr, nullptr, nullptr, 2, 0, 4, 4, 64, 1.0, nullptr,
                                  nullptr)
                  .ok());
}

TEST(DecodeCudaArgs, RejectsBadPool) {
  float* p = reinterpret_cast<float*>(16);
  const int32_t* t = reinterpret_cast<const int32_t*>(16);
  PagedKv<const float> r{p, p, 4, 16, 16 * 2 * 64, t, 2};
  const size_t ws = AttentionDecodeWorkspaceBytes(1, 1, 4, 64, 2, 16);
  EXPECT_GT(ws, 0u);
  PagedKv<const float> small = r;
  small.block_stride = 100;
  ExpectBad(AttentionDecodeF32(p, t, 1, 1, 4, 2, 64, 1.0, small, p, p, ws), "block_stride=100");
  PagedKv<const float> no_table = r;
  no_table.block_table = nullptr;
  ExpectBad(AttentionDecodeF32(p, t, 1, 1, 4, 2, 64, 1.0, no_table, p, p, ws), "block_table");
  ExpectBad(AttentionDecodeF32(p, t, 1, 1, 4, 2, 64, 1.0, r, p, p, ws - 1), "workspace of");
  ExpectBad(AttentionDecodeF32(p, t, 1, 1, 4, 3, 64, 1.0, r, p, p, ws), "not a multiple");
  PagedKv<float> w{p, p, 0, 16, 16 * 2 * 64, t, 2};
  ExpectBad(KvCacheWriteF32(p, p, t, 1, 1, 2, 64, w), "num_blocks=0");
  w.num_blocks = 4;
  ExpectBad(KvCacheWriteF32(p, nullptr, t, 1, 1, 2, 64, w), "null k_new, v_new");
}

}  // namespace
}  // namespace rlvr::kernels::cuda
