#include "rollout/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace rlvr::rollout {

absl::Status KvCacheConfig::Validate() const {
  if (num_layers <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv cache: num_layers ", num_layers, " <= 0"));
  }
  if (row_elems <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv cache: row_elems ", row_elems, " <= 0"));
  }
  if (block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv cache: block_size ", block_size, " <= 0"));
  }
  if (num_blocks <= 0 || num_blocks > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv cache: num_blocks ", num_blocks, " outside [1, 2^30]"));
  }
  return absl::OkStatus();
}

PagedKvCache::PagedKvCache(const KvCacheConfig& config) : config_(config) {}

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(const KvCacheConfig& config) {
  RLVR_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<PagedKvCache> cache(new PagedKvCache(config));
  const int64_t n = config.num_blocks * config.num_layers * config.block_size * config.row_elems;
  cache->k_.reset(new (std::nothrow) float[static_cast<size_t>(n)]);
  cache->v_.reset(new (std::nothrow) float[static_cast<size_t>(n)]);
  if (cache->k_ == nullptr || cache->v_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv cache: cannot allocate ", config.num_blocks, " blocks of ", config.BytesPerBlock(),
        " bytes"));
  }
  cache->refs_.assign(static_cast<size_t>(config.num_blocks), 0);
  cache->free_.reserve(static_cast<size_t>(config.num_blocks));
  // A stack popped from the back: block 0 is handed out first.
  for (int64_t b = config.num_blocks - 1; b >= 0; --b) {
    cache->free_.push_back(static_cast<int32_t>(b));
  }
  return cache;
}

float* PagedKvCache::k_block(int32_t block, int64_t layer) const {
  return k_.get() + (block * config_.num_layers + layer) * config_.block_size * config_.row_elems;
}

float* PagedKvCache::v_block(int32_t block, int64_t layer) const {
  return v_.get() + (block * config_.num_layers + layer) * config_.block_size * config_.row_elems;
}

SeqId PagedKvCache::NewSequence() {
  SeqId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<SeqId>(seqs_.size());
    seqs_.emplace_back();
  }
  Sequence& s = seqs_[id];
  s.live = true;
  s.length = 0;
  s.blocks.clear();
  RebuildPointers(&s);
  ++live_;
  return id;
}

absl::StatusOr<PagedKvCache::Sequence*> PagedKvCache::Get(SeqId seq) {
  if (seq < 0 || seq >= static_cast<SeqId>(seqs_.size()) || !seqs_[seq].live) {
    return absl::InvalidArgumentError(absl::StrCat("kv cache: no live sequence ", seq));
  }
  return &seqs_[seq];
}

const PagedKvCache::Sequence* PagedKvCache::Get(SeqId seq) const {
  RLVR_CHECK(seq >= 0 && seq < static_cast<SeqId>(seqs_.size()) && seqs_[seq].live,
             "kv cache: no live sequence ", seq);
  return &seqs_[seq];
}

absl::StatusOr<SeqId> PagedKvCache::Fork(SeqId parent) {
  RLVR_ASSIGN_OR_RETURN(Sequence * p, Get(parent), "fork");
  const int64_t length = p->length;
  const std::vector<int32_t> blocks = p->blocks;
  // NewSequence may grow seqs_ and invalidate p.
  const SeqId child = NewSequence();
  Sequence& c = seqs_[child];
  c.length = length;
  c.blocks = blocks;
  for (int32_t b : blocks) ++refs_[b];
  RebuildPointers(&c);
  return child;
}

void PagedKvCache::Unref(int32_t block) {
  RLVR_CHECK(refs_[block] > 0, "kv cache: block ", block, " freed twice");
  if (--refs_[block] == 0) free_.push_back(block);
}

absl::Status PagedKvCache::Free(SeqId seq) {
  RLVR_ASSIGN_OR_RETURN(Sequence * s, Get(seq), "free");
  for (int32_t b : s->blocks) Unref(b);
  s->blocks.clear();
  s->k_ptrs.clear();
  s->v_ptrs.clear();
  s->length = 0;
  s->live = false;
  free_ids_.push_back(seq);
  --live_;
  return absl::OkStatus();
}

absl::Status PagedKvCache::Append(SeqId seq, int64_t n) {
  RLVR_ASSIGN_OR_RETURN(Sequence * s, Get(seq), "append");
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("kv cache: append of ", n));
  if (n == 0) return absl::OkStatus();
  const int64_t bs = config_.block_size;
  const int64_t have = static_cast<int64_t>(s->blocks.size());
  const int64_t need = config_.BlocksFor(s->length + n);
  // The block holding position `length` is written if it exists (a partially filled block).
  const bool partial = s->length % bs != 0;
  const int64_t first_written = s->length / bs;
  const bool copy = partial && first_written < have && refs_[s->blocks[first_written]] > 1;
  const int64_t wanted = std::max<int64_t>(need - have, 0) + (copy ? 1 : 0);
  if (wanted > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("kv cache: need ", wanted, " free blocks, ",
                                                     free_blocks(), " of ", config_.num_blocks,
                                                     " are free"));
  }
  if (copy) {
    const int32_t old_block = s->blocks[first_written];
    const int32_t fresh = free_.back();
    free_.pop_back();
    refs_[fresh] = 1;
    // Only the rows below `length` hold data; the block is per-layer contiguous in both pools.
    const int64_t rows = s->length % bs;
    for (int64_t l = 0; l < config_.num_layers; ++l) {
      std::memcpy(k_block(fresh, l), k_block(old_block, l),
                  static_cast<size_t>(rows * config_.row_elems) * sizeof(float));
      std::memcpy(v_block(fresh, l), v_block(old_block, l),
                  static_cast<size_t>(rows * config_.row_elems) * sizeof(float));
    }
    s->blocks[first_written] = fresh;
    Unref(old_block);
    ++cow_copies_;
  }
  for (int64_t b = have; b < need; ++b) {
    const int32_t fresh = free_.back();
    free_.pop_back();
    refs_[fresh] = 1;
    s->blocks.push_back(fresh);
  }
  s->length += n;
  RebuildPointers(s);
  return absl::OkStatus();
}

void PagedKvCache::RebuildPointers(Sequence* s) {
  const int64_t L = config_.num_layers;
  const size_t nb = s->blocks.size();
  s->k_ptrs.resize(static_cast<size_t>(L) * nb);
  s->v_ptrs.resize(static_cast<size_t>(L) * nb);
  for (int64_t l = 0; l < L; ++l) {
    for (size_t i = 0; i < nb; ++i) {
      s->k_ptrs[l * nb + i] = k_block(s->blocks[i], l);
      s->v_ptrs[l * nb + i] = v_block(s->blocks[i], l);
    }
  }
}

int64_t PagedKvCache::length(SeqId seq) const { return Get(seq)->length; }

std::span<const int32_t> PagedKvCache::blocks(SeqId seq) const { return Get(seq)->blocks; }

void PagedKvCache::Views(SeqId seq, std::span<kernels::KvCacheView<float>> out) const {
  const Sequence* s = Get(seq);
  const size_t nb = s->blocks.size();
  RLVR_CHECK(static_cast<int64_t>(out.size()) == config_.num_layers);
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    out[l].block_size = config_.block_size;
    out[l].k_blocks = std::span<float* const>(s->k_ptrs.data() + l * nb, nb);
    out[l].v_blocks = std::span<float* const>(s->v_ptrs.data() + l * nb, nb);
  }
}

void PagedKvCache::BatchViews(std::span<const SeqId> seqs,
                              std::vector<kernels::KvCacheView<float>>* out) const {
  const int64_t B = static_cast<int64_t>(seqs.size());
  const size_t base = out->size();
  out->resize(base + static_cast<size_t>(config_.num_layers * B));
  for (int64_t b = 0; b < B; ++b) {
    const Sequence* s = Get(seqs[b]);
    const size_t nb = s->blocks.size();
    for (int64_t l = 0; l < config_.num_layers; ++l) {
      kernels::KvCacheView<float>& v = (*out)[base + l * B + b];
      v.block_size = config_.block_size;
      v.k_blocks = std::span<float* const>(s->k_ptrs.data() + l * nb, nb);
      v.v_blocks = std::span<float* const>(s->v_ptrs.data() + l * nb, nb);
    }
  }
}

}  // namespace rlvr::rollout
