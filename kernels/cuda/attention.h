// Attention on the GPU: the CUDA side of kernels/attention.h (same argument order and meaning).
//
// Training / prefill (AttentionForward*, AttentionBackward*): flash-attention style. A block owns
// a tile of query rows of one (batch, head) and loops over key tiles up to the causal limit,
// skipping tiles that the causal mask or the packed-segment mask hide entirely, with an online
// softmax in fp32; only the log-sum-exp per query row is saved. The backward recomputes the
// probabilities from it in two deterministic passes (no atomics): one kernel per query tile
// accumulates dq, one per key tile accumulates dk and dv over every query head of its kv group.
// Two implementations: plain fp32 FMAs (every dtype and head dim; bf16 tensors are widened to
// fp32 in shared memory) and, for bf16 with D = 64 or 128, tensor cores (AttentionForwardBf16Tc /
// AttentionBackwardBf16Tc below). Both accumulate in fp32.
//
// Dispatch: AttentionForwardBf16 and AttentionBackwardBf16 run the tensor-core kernels when D is
// 64 or 128, the current device has compute capability >= 8.0 (queried once per device and
// cached), every bf16 pointer is 16-byte aligned, and the environment variable
// RLVR_ATTENTION_FMA is not "1" (read at every call; set it to 1 to compare with the FMA
// kernels). Otherwise they run the FMA kernels. The two differ in rounding only: the tensor-core
// kernels round the probabilities P and the backward's dS to bf16 before multiplying (as
// FlashAttention-2), so results agree to bf16 precision, not bit for bit.
//
// Decode (AttentionDecode*): queries read keys and values from a paged pool through a block
// table (the vLLM layout of rollout/kv_cache.h), split over the context (flash-decoding): each
// split writes a partial (max, sum, weighted values) to a caller-provided workspace and a second
// kernel combines the splits in a fixed order (deterministic). KvCacheWrite* stores new rows.
//
// Shapes (tensor.h letters; bf16 tensors are uint16_t bit patterns on the device):
//   q [B, T, H, D]   k, v [B, T, Hkv, D]   out [B, T, H, D]   lse [B, H, T] fp32 (both dtypes)
// H % Hkv == 0 (query head h reads kv head h / (H / Hkv)). D must be 16, 32, 64 or 128 (16 and
// 32 for small test models: in the flash kernels lane i owns dimensions i + 32c, idle past D).
//
// Conventions (kernels/cuda/cuda.h): all pointers are device pointers; every call is
// asynchronous on `stream` and returns the launch status (errors inside a kernel show at the
// next Synchronize); sizes and required pointers are validated on the host first
// (InvalidArgument naming the argument); an empty problem (B, T or H == 0) is a no-op. Contents
// of device arrays (seg_start, positions, block ids) cannot be checked from the host: the
// contracts below are preconditions, as the CPU kernels' RLVR_CHECKs are. Not thread-safe with
// respect to the same output buffers.
#ifndef RLVR_KERNELS_CUDA_ATTENTION_H_
#define RLVR_KERNELS_CUDA_ATTENTION_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {

// Causal attention forward (kernels::AttentionForward): out and lse are written.
// seg_start [B, T] int32 or null: packed segments; query (b, t) attends keys seg_start[b, t]..t.
// Precondition (not checked): seg_start[b, 0] == 0 and seg_start[b, t] is t or seg_start[b, t-1].
absl::Status AttentionForwardF32(const float* q, const float* k, const float* v, int64_t B,
                                 int64_t Tn, int64_t H, int64_t Hkv, int64_t D, double scale,
                                 float* out, float* lse, const int32_t* seg_start = nullptr,
                                 Stream stream = nullptr);
absl::Status AttentionForwardBf16(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                  int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                  double scale, uint16_t* out, float* lse,
                                  const int32_t* seg_start = nullptr, Stream stream = nullptr);

// Backward (kernels::AttentionBackward) from dout [B, T, H, D] and the forward's q, k, v, out,
// lse (and seg_start). dq [B, T, H, D], dk and dv [B, T, Hkv, D] ACCUMULATE (+=); for bf16 the
// old value plus the fp32 gradient is rounded once. `workspace` holds the per-row dot products
// D_i = dout_i . out_i: at least AttentionBackwardWorkspaceBytes(B, T, H) bytes of device memory
// (256-byte aligned, as Malloc returns). Deterministic: no atomics, fixed summation orders.
size_t AttentionBackwardWorkspaceBytes(int64_t B, int64_t Tn, int64_t H);
absl::Status AttentionBackwardF32(const float* dout, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse, int64_t B,
                                  int64_t Tn, int64_t H, int64_t Hkv, int64_t D, double scale,
                                  float* dq, float* dk, float* dv, void* workspace,
                                  size_t workspace_bytes, const int32_t* seg_start = nullptr,
                                  Stream stream = nullptr);
absl::Status AttentionBackwardBf16(const uint16_t* dout, const uint16_t* q, const uint16_t* k,
                                   const uint16_t* v, const uint16_t* out, const float* lse,
                                   int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                   double scale, uint16_t* dq, uint16_t* dk, uint16_t* dv,
                                   void* workspace, size_t workspace_bytes,
                                   const int32_t* seg_start = nullptr, Stream stream = nullptr);

// The tensor-core flash attention (sm_80+, nvcuda::wmma bf16 16x16x16, fp32 accumulators): the
// same arguments, semantics and outputs as AttentionForwardBf16 / AttentionBackwardBf16 (dq, dk,
// dv ACCUMULATE; the same workspace; deterministic, no atomics) for D = 64 or 128 only. Tiles of
// 64 query rows and 64 keys; fully masked key tiles are skipped. Extra preconditions, checked on
// the host: D is 64 or 128 and every bf16 pointer is 16-byte aligned (InvalidArgument), and the
// current device has compute capability >= 8.0 (FailedPrecondition). Shared memory per block
// (opted in above 48 KiB): forward 62 KiB (D = 128) / 46 KiB (D = 64), dq 112 / 80 KiB, dk/dv
// 121 / 89 KiB.
absl::Status AttentionForwardBf16Tc(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                    int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                    double scale, uint16_t* out, float* lse,
                                    const int32_t* seg_start = nullptr, Stream stream = nullptr);
absl::Status AttentionBackwardBf16Tc(const uint16_t* dout, const uint16_t* q, const uint16_t* k,
                                     const uint16_t* v, const uint16_t* out, const float* lse,
                                     int64_t B, int64_t Tn, int64_t H, int64_t Hkv, int64_t D,
                                     double scale, uint16_t* dq, uint16_t* dk, uint16_t* dv,
                                     void* workspace, size_t workspace_bytes,
                                     const int32_t* seg_start = nullptr,
                                     Stream stream = nullptr);

// Whether AttentionForwardBf16 / AttentionBackwardBf16 would run the tensor-core kernels for
// head dim D with 16-byte aligned pointers now (the dispatch rule above). False without CUDA.
bool AttentionBf16UsesTensorCores(int64_t D);

// One layer's paged key/value pool. Block `id` of the layer starts at k + id * block_stride
// (elements); position p of a sequence is row p % block_size of block
// block_table[b * max_blocks + p / block_size], a row being [Hkv, D]. For a single-layer pool
// [num_blocks, block_size, Hkv, D], block_stride = block_size * Hkv * D; for the rollout
// engine's pool [num_blocks, L, block_size, Hkv * D], pass k = base + layer * block_size * Hkv * D
// and block_stride = L * block_size * Hkv * D. The pool is not owned.
template <typename T>
struct PagedKv {
  T* k = nullptr;
  T* v = nullptr;
  int64_t num_blocks = 0;     // block ids must lie in [0, num_blocks)
  int64_t block_size = 0;     // positions per block
  int64_t block_stride = 0;   // elements from one block to the next (>= block_size * Hkv * D)
  const int32_t* block_table = nullptr;  // [B, max_blocks] int32 block ids
  int64_t max_blocks = 0;
};

// kernels::KvCacheWrite: k_new, v_new [B, Tn, Hkv, D] go to positions[b, t] ([B, Tn] int32) of
// sequence b. A position outside [0, max_blocks * block_size) or a block id outside
// [0, num_blocks) is skipped (device code cannot report it; the caller reserves blocks first).
absl::Status KvCacheWriteF32(const float* k_new, const float* v_new, const int32_t* positions,
                             int64_t B, int64_t Tn, int64_t Hkv, int64_t D,
                             const PagedKv<float>& cache, Stream stream = nullptr);
absl::Status KvCacheWriteBf16(const uint16_t* k_new, const uint16_t* v_new,
                              const int32_t* positions, int64_t B, int64_t Tn, int64_t Hkv,
                              int64_t D, const PagedKv<uint16_t>& cache, Stream stream = nullptr);

// kernels::AttentionCachedForward: q [B, Tn, H, D] at positions[b, t] attends to positions
// 0..positions[b, t] inclusive of sequence b (all written before: KvCacheWrite first); out
// [B, Tn, H, D]. positions must be < max_blocks * block_size (not checked). The context is cut
// into splits of a multiple of 32 positions; `workspace` holds the partial results: at least
// AttentionDecodeWorkspaceBytes(...) bytes with the same sizes.
size_t AttentionDecodeWorkspaceBytes(int64_t B, int64_t Tn, int64_t H, int64_t D,
                                     int64_t max_blocks, int64_t block_size);
absl::Status AttentionDecodeF32(const float* q, const int32_t* positions, int64_t B, int64_t Tn,
                                int64_t H, int64_t Hkv, int64_t D, double scale,
                                const PagedKv<const float>& cache, float* out, void* workspace,
                                size_t workspace_bytes, Stream stream = nullptr);
absl::Status AttentionDecodeBf16(const uint16_t* q, const int32_t* positions, int64_t B,
                                 int64_t Tn, int64_t H, int64_t Hkv, int64_t D, double scale,
                                 const PagedKv<const uint16_t>& cache, uint16_t* out,
                                 void* workspace, size_t workspace_bytes,
                                 Stream stream = nullptr);

}  // namespace rlvr::kernels::cuda

#endif  // RLVR_KERNELS_CUDA_ATTENTION_H_
