// kernels::AttentionCachedForward<float> (the cascade decode kernel, kernels/cpu/decode_attention.h)
// on paged caches where groups of sequences share their leading blocks, as the rollout engine's
// forked samples do:
//   - against a direct double-precision transcription of attention over the cached positions,
//     for head dims on the AVX-512 path (16, 32, 64, 128) and off it (24), GQA ratios 1, 2 and 8,
//     block sizes 16, 5 (tiles cut by block ends) and 64, one or three new tokens per sequence;
//   - bit for bit: a sequence's output is the same decoded alone, in the full batch, in a
//     permuted batch, and with its shared blocks replaced by private copies (so batching and
//     prefix sharing never change a sampled token);
//   - under bf16 products, within bf16 rounding of the reference, and still bit-identical alone
//     and batched.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"

namespace rlvr::kernels {
namespace {

struct Shape {
  int64_t H, Hkv, D, block_size, Tn;
};

// B sequences in groups of `group` that share their first `shared_blocks` blocks (the same
// block pointers); every sequence owns the rest. Sequence b attends up to len[b] positions at
// its last new token; its Tn new tokens sit at len[b] - Tn .. len[b] - 1.
class Batch {
 public:
  Batch(const Shape& s, std::vector<int64_t> lens, int64_t group, int64_t shared_blocks,
        uint32_t seed)
      : s_(s), lens_(std::move(lens)) {
    const int64_t B = static_cast<int64_t>(lens_.size()), row = s.Hkv * s.D;
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto new_block = [&]() {
      storage_.push_back(std::make_unique<float[]>(s.block_size * row));
      float* p = storage_.back().get();
      for (int64_t i = 0; i < s.block_size * row; ++i) p[i] = nd(rng);
      return p;
    };
    k_.resize(B);
    v_.resize(B);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t blocks = (lens_[b] + s.block_size - 1) / s.block_size;
      for (int64_t j = 0; j < blocks; ++j) {
        if (b % group != 0 && j < shared_blocks) {
          k_[b].push_back(k_[b - b % group][j]);
          v_[b].push_back(v_[b - b % group][j]);
        } else {
          k_[b].push_back(new_block());
          v_[b].push_back(new_block());
        }
      }
    }
    q_.resize(B * s.Tn * s.H * s.D);
    for (float& x : q_) x = nd(rng);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < s.Tn; ++t) {
        positions_.push_back(static_cast<int32_t>(lens_[b] - s.Tn + t));
      }
    }
  }

  int64_t B() const { return static_cast<int64_t>(lens_.size()); }
  KvCacheView<float> View(int64_t b) const {
    return {s_.block_size, std::span<float* const>(k_[b]), std::span<float* const>(v_[b])};
  }
  // Gives sequence b private copies of all its blocks (same contents).
  void Unshare(int64_t b) {
    const int64_t n = s_.block_size * s_.Hkv * s_.D;
    for (auto* blocks : {&k_[b], &v_[b]}) {
      for (float*& p : *blocks) {
        storage_.push_back(std::make_unique<float[]>(n));
        std::copy(p, p + n, storage_.back().get());
        p = storage_.back().get();
      }
    }
  }

  // The kernel on sequences `seqs` (in that order); returns their outputs in that order.
  std::vector<float> Run(const std::vector<int64_t>& seqs) const {
    const int64_t n = static_cast<int64_t>(seqs.size()), qrow = s_.Tn * s_.H * s_.D;
    std::vector<KvCacheView<float>> views;
    std::vector<float> q(n * qrow);
    std::vector<int32_t> pos;
    for (int64_t i = 0; i < n; ++i) {
      views.push_back(View(seqs[i]));
      std::copy_n(q_.data() + seqs[i] * qrow, qrow, q.data() + i * qrow);
      for (int64_t t = 0; t < s_.Tn; ++t) pos.push_back(positions_[seqs[i] * s_.Tn + t]);
    }
    std::vector<float> out(n * qrow, std::nanf(""));
    AttentionCachedForward<float>(q.data(), pos.data(), n, s_.Tn, s_.H, s_.Hkv, s_.D,
                                  1.0 / std::sqrt(static_cast<double>(s_.D)),
                                  std::span<const KvCacheView<float>>(views), out.data());
    return out;
  }
  std::vector<float> RunAll() const {
    std::vector<int64_t> all(B());
    std::iota(all.begin(), all.end(), 0);
    return Run(all);
  }

  // Direct double-precision attention of query (b, t, h); q_round/p_round model bf16 products.
  std::vector<double> Reference(int64_t b, int64_t t, int64_t h, bool bf16) const {
    const int64_t D = s_.D, row = s_.Hkv * D, g = h / (s_.H / s_.Hkv);
    const int64_t len = positions_[b * s_.Tn + t] + 1;
    const float* qv = q_.data() + ((b * s_.Tn + t) * s_.H + h) * D;
    auto round = [&](double x) {
      if (!bf16) return x;
      float f = static_cast<float>(x);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
      std::memcpy(&f, &u, 4);
      return static_cast<double>(f);
    };
    std::vector<double> w(len);
    double m = -INFINITY;
    for (int64_t p = 0; p < len; ++p) {
      const float* kr = k_[b][p / s_.block_size] + (p % s_.block_size) * row + g * D;
      double acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += round(qv[d]) * kr[d];
      w[p] = acc / std::sqrt(static_cast<double>(D));
      m = std::max(m, w[p]);
    }
    double sum = 0;
    for (double& x : w) sum += (x = std::exp(x - m));
    std::vector<double> o(D, 0.0);
    for (int64_t p = 0; p < len; ++p) {
      const float* vr = v_[b][p / s_.block_size] + (p % s_.block_size) * row + g * D;
      const double pw = round(w[p] / sum);
      for (int64_t d = 0; d < D; ++d) o[d] += pw * vr[d];
    }
    return o;
  }

  const Shape& shape() const { return s_; }

 private:
  Shape s_;
  std::vector<int64_t> lens_;
  std::vector<std::unique_ptr<float[]>> storage_;
  std::vector<std::vector<float*>> k_, v_;
  std::vector<float> q_;
  std::vector<int32_t> positions_;
};

// Max |out - reference| over every query of the batch (out from RunAll).
double MaxError(const Batch& batch, const std::vector<float>& out, bool bf16) {
  const Shape& s = batch.shape();
  double err = 0;
  for (int64_t b = 0; b < batch.B(); ++b) {
    for (int64_t t = 0; t < s.Tn; ++t) {
      for (int64_t h = 0; h < s.H; ++h) {
        const std::vector<double> ref = batch.Reference(b, t, h, bf16);
        const float* o = out.data() + ((b * s.Tn + t) * s.H + h) * s.D;
        for (int64_t d = 0; d < s.D; ++d) {
          if (std::isnan(o[d])) return INFINITY;
          err = std::max(err, std::abs(o[d] - ref[d]));
        }
      }
    }
  }
  return err;
}

bool SameBits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

// Lens for 3 groups of 4 (plus two loners): shared prefix of 9 blocks, suffixes of varied length.
std::vector<int64_t> Lens(int64_t block_size) {
  std::vector<int64_t> lens;
  for (int64_t i = 0; i < 14; ++i) lens.push_back(9 * block_size + 1 + (i * 7) % 23);
  return lens;
}

class DecodeAttentionTest : public ::testing::TestWithParam<Shape> {};

TEST_P(DecodeAttentionTest, MatchesDirectAttentionAndIsBatchInvariant) {
  const Shape s = GetParam();
  Batch batch(s, Lens(s.block_size), /*group=*/4, /*shared_blocks=*/9, /*seed=*/7);
  const std::vector<float> all = batch.RunAll();
  // float32 sums over <= 600 positions of unit-variance terms; outputs are O(1).
  EXPECT_LT(MaxError(batch, all, false), 2e-5);

  const int64_t qrow = s.Tn * s.H * s.D;
  // Alone, and in a permuted batch: the same bits.
  std::vector<int64_t> perm(batch.B());
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937 rng(11);
  std::shuffle(perm.begin(), perm.end(), rng);
  const std::vector<float> permuted = batch.Run(perm);
  for (int64_t i = 0; i < batch.B(); ++i) {
    const int64_t b = perm[i];
    EXPECT_TRUE(SameBits(permuted.data() + i * qrow, all.data() + b * qrow, qrow))
        << "sequence " << b << " changed when the batch was permuted";
    const std::vector<float> alone = batch.Run({b});
    EXPECT_TRUE(SameBits(alone.data(), all.data() + b * qrow, qrow))
        << "sequence " << b << " decoded alone differs from the batch";
  }
  // Private copies of the shared blocks: the same bits again.
  for (int64_t b = 0; b < batch.B(); ++b) batch.Unshare(b);
  const std::vector<float> unshared = batch.RunAll();
  EXPECT_TRUE(SameBits(unshared.data(), all.data(), batch.B() * qrow))
      << "prefix sharing changed the result";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DecodeAttentionTest,
    ::testing::Values(Shape{4, 2, 16, 16, 1}, Shape{8, 4, 32, 16, 1}, Shape{8, 1, 64, 16, 1},
                      Shape{4, 4, 128, 16, 1}, Shape{4, 2, 24, 16, 1}, Shape{4, 2, 16, 5, 1},
                      Shape{8, 4, 32, 64, 1}, Shape{4, 2, 32, 16, 3}, Shape{4, 1, 64, 5, 3},
                      Shape{6, 2, 24, 5, 3}),
    [](const ::testing::TestParamInfo<Shape>& info) {
      const Shape& s = info.param;
      return "H" + std::to_string(s.H) + "kv" + std::to_string(s.Hkv) + "D" +
             std::to_string(s.D) + "bs" + std::to_string(s.block_size) + "Tn" +
             std::to_string(s.Tn);
    });

TEST(DecodeAttentionBf16Test, RoundsLikeBf16ProductsAndStaysBatchInvariant) {
  SetMatmulPrecision(MatmulPrecision::kBf16);
  const Shape s{8, 4, 32, 16, 1};
  Batch batch(s, Lens(s.block_size), 4, 9, 5);
  const std::vector<float> all = batch.RunAll();
  const double err = MaxError(batch, all, true);
  SetMatmulPrecision(MatmulPrecision::kHighest);
  const std::vector<float> fp32 = batch.RunAll();
  SetMatmulPrecision(MatmulPrecision::kBf16);
  // The reference rounds q and p as the kernel does; what remains is float32 summation.
  EXPECT_LT(err, 2e-5);
  // And the rounding really happens: float32 products give a visibly different result.
  EXPECT_GT(MaxError(batch, fp32, true), 1e-4);
  const int64_t qrow = s.Tn * s.H * s.D;
  for (int64_t b = 0; b < batch.B(); b += 3) {
    const std::vector<float> alone = batch.Run({b});
    EXPECT_TRUE(SameBits(alone.data(), all.data() + b * qrow, qrow)) << "sequence " << b;
  }
  SetMatmulPrecision(MatmulPrecision::kHighest);
}

}  // namespace
}  // namespace rlvr::kernels
