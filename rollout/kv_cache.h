// Paged key/value cache with prefix sharing (the vLLM PagedAttention memory layout).
//
// Memory is one pool of `num_blocks` fixed-size blocks. A block holds `block_size` consecutive
// positions of one sequence for EVERY layer, keys and values:
//   keys   [num_blocks, L, block_size, row]   f32  (row = Hkv * D)
//   values [num_blocks, L, block_size, row]   f32
// so copying a block (copy-on-write) is two contiguous copies.
//
// A sequence is a list of blocks and a length (positions 0..length-1 are written). Blocks are
// reference counted: Fork() makes a new sequence that shares all of its parent's blocks (the
// G completions of a prompt share the prompt's prefilled blocks), and Append() makes the blocks
// it is about to write private: a shared block is copied at the first write into it (only the
// block holding the last prompt position can be written by several sharers, so a group of G
// completions of a P-token prompt uses ceil(P / block_size) shared blocks plus its own).
// A block returns to the free list when its last reference goes.
//
// Views(): the per-layer kernels::KvCacheView of a sequence (what CausalLM::Decode and the
// attention kernels read and write). A view points into this object's bookkeeping; it stays
// valid until the next Append/Fork/Free of that sequence or destruction of the cache.
//
// Errors: ResourceExhausted when the pool has no free block (the scheduler reserves blocks
// before it admits a sequence, so the engine never sees it); InvalidArgument for an unknown
// sequence id. Thread safety: none.
#ifndef RLVR_ROLLOUT_KV_CACHE_H_
#define RLVR_ROLLOUT_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/attention.h"

namespace rlvr::rollout {

struct KvCacheConfig {
  int64_t num_layers = 0;   // L
  int64_t row_elems = 0;    // Hkv * D
  int64_t block_size = 16;  // positions per block
  int64_t num_blocks = 0;   // pool size

  absl::Status Validate() const;
  // Blocks needed for `positions` positions.
  int64_t BlocksFor(int64_t positions) const {
    return (positions + block_size - 1) / block_size;
  }
  int64_t BytesPerBlock() const {
    return 2 * num_layers * block_size * row_elems * static_cast<int64_t>(sizeof(float));
  }
};

using SeqId = int32_t;

class PagedKvCache {
 public:
  // Allocates the pool (uninitialized memory). InvalidArgument for a bad config,
  // ResourceExhausted if the allocation fails.
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(const KvCacheConfig& config);

  const KvCacheConfig& config() const { return config_; }

  // A new empty sequence.
  SeqId NewSequence();
  // A new sequence sharing all of `parent`'s blocks and its length.
  absl::StatusOr<SeqId> Fork(SeqId parent);
  // Drops the sequence's references.
  absl::Status Free(SeqId seq);

  // Makes positions [length, length + n) writable (allocating blocks and copying a shared
  // partially filled block first) and sets length += n. The caller then writes those positions
  // through Views() (KvCacheWrite / Decode). On ResourceExhausted nothing changed.
  absl::Status Append(SeqId seq, int64_t n);

  int64_t length(SeqId seq) const;
  // Views for every layer of `seq`: out[l] for l in [0, L). Capacity = blocks * block_size.
  void Views(SeqId seq, std::span<kernels::KvCacheView<float>> out) const;

  // Appends the layer-major views CausalLM::Decode takes for `seqs` (out[l * B + b]) to *out.
  void BatchViews(std::span<const SeqId> seqs, std::vector<kernels::KvCacheView<float>>* out) const;

  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return config_.num_blocks - free_blocks(); }
  int32_t ref_count(int32_t block) const { return refs_[block]; }
  std::span<const int32_t> blocks(SeqId seq) const;
  int64_t live_sequences() const { return live_; }
  // Copy-on-write copies made so far.
  int64_t cow_copies() const { return cow_copies_; }

  // Raw block storage (tests): keys/values of `block` at `layer`, [block_size, row].
  float* k_block(int32_t block, int64_t layer) const;
  float* v_block(int32_t block, int64_t layer) const;

 private:
  struct Sequence {
    bool live = false;
    int64_t length = 0;
    std::vector<int32_t> blocks;
    std::vector<float*> k_ptrs;  // [L, blocks.size()] layer-major, rebuilt on change
    std::vector<float*> v_ptrs;
  };

  explicit PagedKvCache(const KvCacheConfig& config);
  absl::StatusOr<Sequence*> Get(SeqId seq);
  const Sequence* Get(SeqId seq) const;
  void RebuildPointers(Sequence* s);
  void Unref(int32_t block);

  KvCacheConfig config_;
  std::unique_ptr<float[]> k_, v_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // a stack of free block ids
  std::vector<Sequence> seqs_;
  std::vector<SeqId> free_ids_;
  int64_t live_ = 0;
  int64_t cow_copies_ = 0;
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_KV_CACHE_H_
