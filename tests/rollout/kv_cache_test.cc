// Paged KV cache: block accounting (reference counts, copy-on-write, freeing) and contents
// read back through the views against a contiguous reference written in the same order.
#include "rollout/kv_cache.h"

#include <map>
#include <vector>

#include "core/rng.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"

namespace rlvr::rollout {
namespace {

constexpr int64_t kLayers = 3, kRow = 5, kBlock = 4;

KvCacheConfig Config(int64_t blocks) {
  return {.num_layers = kLayers, .row_elems = kRow, .block_size = kBlock, .num_blocks = blocks};
}

// The value stored for (sequence tag, layer, position, element): distinct per sequence.
float Value(int tag, int64_t l, int64_t pos, int64_t e, bool key) {
  return static_cast<float>(tag * 100000 + l * 10000 + pos * 10 + e + (key ? 0.25 : 0.5));
}

// Writes positions [from, to) of `seq` with `tag`'s values through KvCacheWrite.
void WriteRange(PagedKvCache& cache, SeqId seq, int tag, int64_t from, int64_t to) {
  std::vector<kernels::KvCacheView<float>> views(kLayers);
  cache.Views(seq, views);
  for (int64_t l = 0; l < kLayers; ++l) {
    std::vector<float> k, v;
    std::vector<int32_t> pos;
    for (int64_t p = from; p < to; ++p) {
      pos.push_back(static_cast<int32_t>(p));
      for (int64_t e = 0; e < kRow; ++e) {
        k.push_back(Value(tag, l, p, e, true));
        v.push_back(Value(tag, l, p, e, false));
      }
    }
    // Hkv = 1, D = kRow.
    kernels::KvCacheWrite<float>(k.data(), v.data(), pos.data(), 1, to - from, 1, kRow,
                                 std::span<const kernels::KvCacheView<float>>(&views[l], 1));
  }
}

// Checks every position of `seq` against its expected writer tags (tags[p]); returns the
// number of elements compared.
int64_t CheckSeq(const PagedKvCache& cache, SeqId seq, const std::vector<int>& tags) {
  std::vector<kernels::KvCacheView<float>> views(kLayers);
  cache.Views(seq, views);
  EXPECT_EQ(cache.length(seq), static_cast<int64_t>(tags.size()));
  int64_t compared = 0;
  for (int64_t l = 0; l < kLayers; ++l) {
    for (int64_t p = 0; p < static_cast<int64_t>(tags.size()); ++p) {
      const float* k = views[l].k_row(p, kRow);
      const float* v = views[l].v_row(p, kRow);
      for (int64_t e = 0; e < kRow; ++e) {
        EXPECT_EQ(k[e], Value(tags[p], l, p, e, true)) << "seq " << seq << " l " << l << " p " << p;
        EXPECT_EQ(v[e], Value(tags[p], l, p, e, false));
        compared += 2;
      }
    }
  }
  return compared;
}

TEST(PagedKvCacheTest, RejectsBadConfig) {
  EXPECT_EQ(PagedKvCache::Create(Config(0)).status().code(), absl::StatusCode::kInvalidArgument);
  KvCacheConfig c = Config(4);
  c.block_size = 0;
  auto st = PagedKvCache::Create(c).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("block_size"), std::string::npos);
}

TEST(PagedKvCacheTest, AppendAllocatesBlocksAndFreeReturnsThem) {
  auto cache = *PagedKvCache::Create(Config(8));
  SeqId s = cache->NewSequence();
  ASSERT_TRUE(cache->Append(s, 9).ok());  // 3 blocks
  EXPECT_EQ(cache->blocks(s).size(), 3u);
  EXPECT_EQ(cache->free_blocks(), 5);
  ASSERT_TRUE(cache->Append(s, 3).ok());  // 12 positions: still 3 blocks
  EXPECT_EQ(cache->free_blocks(), 5);
  ASSERT_TRUE(cache->Append(s, 1).ok());
  EXPECT_EQ(cache->free_blocks(), 4);
  ASSERT_TRUE(cache->Free(s).ok());
  EXPECT_EQ(cache->free_blocks(), 8);
  EXPECT_EQ(cache->live_sequences(), 0);
  EXPECT_EQ(cache->Free(s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(PagedKvCacheTest, ExhaustionChangesNothing) {
  auto cache = *PagedKvCache::Create(Config(2));
  SeqId s = cache->NewSequence();
  ASSERT_TRUE(cache->Append(s, 5).ok());
  absl::Status st = cache->Append(s, 4);  // needs a third block
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache->length(s), 5);
  EXPECT_EQ(cache->free_blocks(), 0);
}

TEST(PagedKvCacheTest, ForkSharesBlocksAndCopiesOnFirstDivergentWrite) {
  auto cache = *PagedKvCache::Create(Config(32));
  // A 10-token "prompt": blocks 0, 1 full, block 2 holds positions 8, 9.
  SeqId parent = cache->NewSequence();
  ASSERT_TRUE(cache->Append(parent, 10).ok());
  WriteRange(*cache, parent, 1, 0, 10);
  std::vector<SeqId> kids;
  for (int i = 0; i < 4; ++i) kids.push_back(*cache->Fork(parent));
  for (int32_t b : cache->blocks(parent)) EXPECT_EQ(cache->ref_count(b), 5);
  EXPECT_EQ(cache->used_blocks(), 3);
  ASSERT_TRUE(cache->Free(parent).ok());
  // Each child writes its own continuation of 7 tokens (positions 10..16).
  for (size_t i = 0; i < kids.size(); ++i) {
    for (int step = 0; step < 7; ++step) {
      ASSERT_TRUE(cache->Append(kids[i], 1).ok());
      WriteRange(*cache, kids[i], 10 + static_cast<int>(i), 10 + step, 11 + step);
    }
  }
  // The two full prompt blocks stay shared; the partial one was copied by the first three
  // writers and the last one wrote into the original.
  EXPECT_EQ(cache->cow_copies(), 3);
  const auto b0 = cache->blocks(kids[0]);
  for (SeqId k : kids) {
    EXPECT_EQ(cache->blocks(k)[0], b0[0]);
    EXPECT_EQ(cache->blocks(k)[1], b0[1]);
  }
  EXPECT_EQ(cache->ref_count(b0[0]), 4);
  // 2 shared + 4 * (own partial + 2 more blocks for positions 12..16).
  EXPECT_EQ(cache->used_blocks(), 2 + 4 * 3);
  int64_t compared = 0;
  for (size_t i = 0; i < kids.size(); ++i) {
    std::vector<int> tags(17, 1);
    for (int p = 10; p < 17; ++p) tags[p] = 10 + static_cast<int>(i);
    compared += CheckSeq(*cache, kids[i], tags);
  }
  EXPECT_EQ(compared, 4 * kLayers * 17 * kRow * 2);
  for (SeqId k : kids) ASSERT_TRUE(cache->Free(k).ok());
  EXPECT_EQ(cache->free_blocks(), 32);
}

TEST(PagedKvCacheTest, BlockAlignedPromptNeedsNoCopy) {
  auto cache = *PagedKvCache::Create(Config(16));
  SeqId parent = cache->NewSequence();
  ASSERT_TRUE(cache->Append(parent, 8).ok());
  WriteRange(*cache, parent, 1, 0, 8);
  SeqId a = *cache->Fork(parent), b = *cache->Fork(parent);
  ASSERT_TRUE(cache->Append(a, 1).ok());
  ASSERT_TRUE(cache->Append(b, 1).ok());
  EXPECT_EQ(cache->cow_copies(), 0);
  WriteRange(*cache, a, 2, 8, 9);
  WriteRange(*cache, b, 3, 8, 9);
  std::vector<int> ta(9, 1), tb(9, 1);
  ta[8] = 2;
  tb[8] = 3;
  EXPECT_GT(CheckSeq(*cache, a, ta), 0);
  EXPECT_GT(CheckSeq(*cache, b, tb), 0);
  EXPECT_GT(CheckSeq(*cache, parent, std::vector<int>(8, 1)), 0);
}

// Random interleaving of new sequences, forks, appends and frees against a simple model: a map
// from sequence to the tag that wrote each position.
TEST(PagedKvCacheTest, RandomOperationsMatchReference) {
  auto cache = *PagedKvCache::Create(Config(64));
  std::map<SeqId, std::vector<int>> ref;
  Rng rng(7);
  int next_tag = 1;
  int64_t compared = 0;
  for (int op = 0; op < 400; ++op) {
    const uint64_t kind = rng.UniformInt(10);
    if (ref.empty() || kind == 0) {
      SeqId s = cache->NewSequence();
      ref[s] = {};
    } else {
      auto it = ref.begin();
      std::advance(it, static_cast<long>(rng.UniformInt(ref.size())));
      const SeqId s = it->first;
      if (kind <= 2) {
        auto kid = cache->Fork(s);
        ASSERT_TRUE(kid.ok());
        ref[*kid] = ref[s];
      } else if (kind <= 3) {
        ASSERT_TRUE(cache->Free(s).ok());
        ref.erase(s);
      } else {
        const int64_t n = 1 + static_cast<int64_t>(rng.UniformInt(6));
        const int64_t len = cache->length(s);
        absl::Status st = cache->Append(s, n);
        if (st.code() == absl::StatusCode::kResourceExhausted) {
          ASSERT_TRUE(cache->Free(s).ok());
          ref.erase(s);
          continue;
        }
        ASSERT_TRUE(st.ok()) << st;
        const int tag = next_tag++;
        WriteRange(*cache, s, tag, len, len + n);
        for (int64_t i = 0; i < n; ++i) ref[s].push_back(tag);
      }
    }
    for (const auto& [s, tags] : ref) compared += CheckSeq(*cache, s, tags);
  }
  EXPECT_GT(compared, 10000);
  for (const auto& [s, tags] : ref) ASSERT_TRUE(cache->Free(s).ok());
  EXPECT_EQ(cache->free_blocks(), 64);
}

}  // namespace
}  // namespace rlvr::rollout
