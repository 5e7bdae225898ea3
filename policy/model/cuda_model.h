// CudaCausalLm: inference of a CausalLM on one NVIDIA GPU (issue 7), built from the entry points
// of kernels/cuda (cuBLASLt GEMMs, flash / paged decode attention, MoE dispatch) plus the glue
// kernels of kernels/cuda/model_glue.h. Training on the GPU is not here.
//
// Numerics (what "the same model" means): matrices are stored in bf16 (rounded to nearest even
// from the CPU model's float32 weights); RMSNorm weights, biases and the embedding table used
// for the token lookup stay float32 (a tied LM head uses a bf16 copy of the table). The residual
// stream is float32; every GEMM takes bf16 operands and accumulates in fp32 (float32 output),
// so a dense layer rounds exactly where CausalLM<float> rounds under
// kernels::SetMatmulPrecision(kBf16): the inputs of each product. On top of that the GPU
// rounds to bf16: q, k, v (also the KV cache) and the attention output (as the CPU's bf16
// attention products do), and in MoE layers the experts' gate|up products, their down products
// and the combined expert output (the grouped GEMM and combine kernels are bf16 in and out).
// Per layer:
//   hn  = bf16(rmsnorm(x))                       RmsNormF32ToBf16
//   qkv = hn [Wq; Wk; Wv]^T                      one GEMM, fp32 out
//   q, k, v = QkvPrepare(qkv)                    + biases, q/k RMSNorm, RoPE, bf16
//   o   = attention(q, k, v)                     flash (Forward, Prefill) / paged decode
//   x  += o Wo^T (+ bo)                          GEMM with beta = 1 into the fp32 stream
//   hn  = bf16(rmsnorm(x))
//   dense: x += bf16(silu(g) * u) Wdown^T, [g | u] = hn [Wgate; Wup]^T (fused gate|up)
//   MoE:   router GEMM, top-k, permute, gather, grouped gate|up, SwiGLU, grouped down,
//          combine, x += ...; plus a shared expert (dense path) when n_shared_experts > 0.
// Final norm, then logits = bf16(rmsnorm(x)) lm_head^T in fp32 (ids >= active_vocab set to -inf
// on the host; greedy argmax ignores them).
//
// Supported configs (CheckSupported): qwen3_moe, qwen3, qwen2, llama with softmax routing, no
// correction bias, no group-limited routing, head_dim 16/32/64/128, E <= 1024, K <= 32, SiLU.
//
// KV cache: a paged pool on the device, per layer [num_blocks, block_size, Hkv, D] bf16 for K
// and V, and `max_seqs` sequence slots, each with a block table of up to max_blocks_per_seq
// blocks (capacity = max_blocks_per_seq * block_size positions). Blocks are taken from a free
// list as a sequence grows and returned by Prefill (which restarts a slot) and
// ReleaseSequence. KvBlockTable is that host-side bookkeeping.
//
// Execution: every launch and copy of one object goes on its own stream (created with
// cudaStreamNonBlocking, so it is not serialized with the legacy default stream or with other
// objects); each public call ends by waiting for that stream (after copying its results to the
// host: logits, or the greedy token ids), so calls are synchronous and a fault inside a kernel
// is reported by the call that caused it.
// CUDA graphs (CudaKvOptions::use_graphs, default on): a decode step is ~12-16 launches per
// layer plus cuBLASLt's host work per GEMM, which bounds batch-1 speed by launch latency for
// small models, so DecodeStep / DecodeStepGreedy replay the step from the embedding through the
// LM head (and the argmax, greedy) as one graph per (batch size B, greedy). Per step only the ids,
// positions and block tables are uploaded (a copy into a fixed device buffer before the launch,
// not part of the graph), and no launch argument depends on the lengths (the decode attention's
// split count depends on B * H and the per-sequence capacity only), so one graph serves every
// step of that B. The first step of a key runs eagerly (it warms cuBLASLt's algorithm cache and
// workspace, which must not allocate during capture), the second captures and launches, later
// ones launch. Replays run the same kernels with the same arguments in the same order as the
// eager path, so logits and tokens are bit-identical with use_graphs on or off. A call that
// needs more scratch rows (a larger batch, or a longer Forward / Prefill) reallocates it and
// drops every cached graph (they hold its addresses). Batches larger than one LM-head pass
// (head_rows: at least 256 rows, or 2^24 / V) run the head eagerly after the graphed layers.
// Forward and Prefill always run eagerly.
// Router replay recording (record_experts): every MoE layer writes its top-k choices to its
// own slice of the scratch (no extra kernel, graphs unchanged), and Prefill / DecodeStep copy
// them to the host after the logits (recorded_experts()).
//
// Errors: InvalidArgument naming the argument (empty ids, ids outside [0, vocab_size), a
// position past a sequence's capacity, bad sequence slots), ResourceExhausted when the pool has
// no free block, Unimplemented in a build without CUDA, FailedPrecondition when no GPU is
// visible; CUDA errors as Internal. Argument checks run on the host before any device work.
// Thread safety: none (one thread drives one object).
#ifndef RLVR_POLICY_MODEL_CUDA_MODEL_H_
#define RLVR_POLICY_MODEL_CUDA_MODEL_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "policy/model/config.h"
#include "policy/model/model.h"

namespace rlvr::policy {

struct CudaKvOptions {
  int64_t num_blocks = 256;         // blocks in the pool (shared by all sequences)
  int64_t block_size = 16;          // positions per block
  int64_t max_seqs = 1;             // sequence slots 0 .. max_seqs - 1
  int64_t max_blocks_per_seq = 64;  // block-table width: capacity per sequence in blocks
  bool use_graphs = true;           // decode steps replay CUDA graphs (see the file comment)
  // Router replay: Prefill and DecodeStep(Greedy) record the top-k experts every MoE layer
  // chose for each of their rows (recorded_experts()).
  bool record_experts = false;
};

// Host-side bookkeeping of a paged KV pool: the blocks each sequence slot holds and how many
// positions it has written. No device memory.
class KvBlockTable {
 public:
  KvBlockTable(int64_t num_blocks, int64_t block_size, int64_t max_seqs,
               int64_t max_blocks_per_seq);
  // InvalidArgument unless every size is positive.
  static absl::Status Validate(const CudaKvOptions& options);

  // Makes each seqs[i] hold blocks for positions [0, lengths[i]) (all or nothing).
  // InvalidArgument for a slot outside [0, max_seqs), a slot listed twice, or a length above
  // capacity() ("position P of sequence S is past the pool's capacity C per sequence");
  // ResourceExhausted when the free blocks do not suffice.
  absl::Status Reserve(std::span<const int64_t> seqs, std::span<const int64_t> lengths);
  // Returns the slot's blocks to the free list; its length becomes 0.
  void Release(int64_t seq);

  int64_t length(int64_t seq) const { return length_[seq]; }
  void set_length(int64_t seq, int64_t n) { length_[seq] = n; }
  const std::vector<int32_t>& blocks(int64_t seq) const { return blocks_[seq]; }
  int64_t capacity() const { return block_size_ * max_blocks_per_seq_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t block_size() const { return block_size_; }
  int64_t max_seqs() const { return max_seqs_; }
  int64_t max_blocks_per_seq() const { return max_blocks_per_seq_; }
  // Row `seq`'s block ids padded with 0 to max_blocks_per_seq entries, appended to `out`.
  void AppendTableRow(int64_t seq, std::vector<int32_t>* out) const;

 private:
  int64_t block_size_, max_seqs_, max_blocks_per_seq_;
  std::vector<int32_t> free_;  // a stack: the next block is free_.back()
  std::vector<std::vector<int32_t>> blocks_;
  std::vector<int64_t> length_;
};

class CudaCausalLm {
 public:
  // Uploads `model`'s weights (and active_vocab) and allocates the KV pool. Errors, in order:
  // InvalidArgument from CheckSupported or for bad `kv` sizes; Unimplemented without the CUDA
  // backend; FailedPrecondition when no GPU is visible; ResourceExhausted when device memory
  // runs out.
  static absl::StatusOr<std::unique_ptr<CudaCausalLm>> Create(const CausalLM<float>& model,
                                                              const CudaKvOptions& kv = {});
  // OK if the CUDA kernels implement every feature of `config`; else InvalidArgument naming the
  // first feature they lack (e.g. "scoring_func sigmoid"). Host only.
  static absl::Status CheckSupported(const ModelConfig& config);
  // InvalidArgument for n <= 0 ("empty") or an id outside [0, vocab_size) (naming its index).
  static absl::Status CheckIds(const ModelConfig& config, const int32_t* ids, int64_t n,
                               const char* what);

  ~CudaCausalLm();
  CudaCausalLm(const CudaCausalLm&) = delete;
  CudaCausalLm& operator=(const CudaCausalLm&) = delete;

  const ModelConfig& config() const { return config_; }
  int64_t active_vocab() const { return active_vocab_; }
  const KvBlockTable& kv() const { return table_; }
  // Device bytes of the bf16 matrices (every expert counted), the fp32 vectors and the fp32
  // embedding table.
  int64_t weight_bytes() const { return weight_bytes_; }
  // Decode-step CUDA graphs captured, and decode steps run by replaying one, since Create (for
  // tests and benchmarks; both stay 0 with use_graphs off).
  int64_t graph_captures() const;
  int64_t graph_launches() const;

  // Router replay (CudaKvOptions::record_experts): the experts each MoE layer chose for the rows
  // of the last successful Prefill (its n prompt tokens) or DecodeStep / DecodeStepGreedy (its B
  // new tokens), [rows, num_moe_layers(), num_experts_per_tok] in the layers' order, the
  // layout of rollout::Completion::experts. Brought back by one device->host copy per call,
  // after the logits. Empty when not recording, for dense models, and after Forward.
  const std::vector<int32_t>& recorded_experts() const;
  int64_t num_moe_layers() const;

  // Full causal forward of ids [B, T] (each row one sequence at positions 0..T-1; no KV cache
  // involved): logits_host [B*T, V] fp32 (host memory).
  absl::Status Forward(const int32_t* ids, int64_t B, int64_t T, float* logits_host);

  // Starts slot `seq` over (releasing what it held) with the prompt ids [n] at positions
  // 0..n-1, writing their keys/values into the pool. last_logits_host [V] (may be null): the
  // logits of the last prompt token.
  absl::Status Prefill(int64_t seq, const int32_t* ids, int64_t n,
                       float* last_logits_host = nullptr);
  // One new token per sequence: ids[b] goes to position kv().length(seqs[b]) of slot seqs[b]
  // (distinct slots). last_logits_host [B, V] (may be null).
  absl::Status DecodeStep(const int64_t* seqs, const int32_t* ids, int64_t B,
                          float* last_logits_host);
  // DecodeStep followed by a greedy choice on the device: next_host [B] token ids (only B ints
  // come back to the host).
  absl::Status DecodeStepGreedy(const int64_t* seqs, const int32_t* ids, int64_t B,
                                int32_t* next_host);
  // Prefill then max_new greedy tokens (temperature 0: the first largest logit), in slot `seq`.
  absl::StatusOr<std::vector<int32_t>> GreedyGenerate(const std::vector<int32_t>& prompt,
                                                      int64_t max_new, int64_t seq = 0);
  void ReleaseSequence(int64_t seq);

  struct Impl;

 private:
  CudaCausalLm(const ModelConfig& config, const CudaKvOptions& kv);
  // The final norm and LM head over rows [first_row, first_row + R) of the residual stream of
  // the last run: logits (if logits_host, [R, V]) and/or greedy ids (if argmax_host, [R]).
  absl::Status Head(int64_t first_row, int64_t R, float* logits_host, int32_t* argmax_host);
  // Head's pieces for one pass of at most head_rows rows: HeadCompute enqueues the final norm,
  // the LM head GEMM into the logits scratch and (if argmax) the greedy argmax; HeadFetch copies
  // n rows of them to the host (where not null), waits for the stream and masks ids >=
  // active_vocab with -inf.
  absl::Status HeadCompute(int64_t first_row, int64_t n, bool argmax);
  absl::Status HeadFetch(int64_t n, float* logits_host, int32_t* argmax_host);
  absl::Status Decode(const int64_t* seqs, const int32_t* ids, int64_t B, float* logits_host,
                      int32_t* argmax_host);

  ModelConfig config_;
  int64_t active_vocab_ = 0;
  int64_t weight_bytes_ = 0;
  KvBlockTable table_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_MODEL_CUDA_MODEL_H_
