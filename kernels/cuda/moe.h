// Mixture-of-Experts dispatch on the GPU: the routing, permutation and grouped expert GEMMs of
// policy/layers/moe.cc's MoeForward / MoeBackward, as kernels (no layer logic here).
//
// One MoE layer's forward on the GPU is:
//   MoeRouterTopK     logits [N, E] -> probs [N, E], topk_experts [N, K], topk_weights [N, K]
//   MoePermute        topk_experts  -> expert_offset [E+1], order [N*K], slot_pos [N*K]
//   MoeRoutingStats   expert_count [E], prob_sum [E] (load statistics, aux-loss inputs)
//   MoeGatherRows*    x [N, C] -> xe [N*K, C] (rows grouped by expert)
//   MoeGroupedGemm*   per expert e: ye[rows of e] = xe[rows of e] W_e^T, all experts in one launch
//   MoeCombine*       y[n] = sum_k topk_weights[n, k] * ye[slot_pos[n*K + k]]
// and the backward: MoeCombineBackward*, MoeGroupedGemmWeightGrad* (with MoeGroupedGemm*(trans_w
// = true) for the input gradient), MoeGatherRowsBackward*, MoeRouterBackward.
//
// Semantics (policy/layers/moe.h, softmax scoring, no correction bias, no group-limited
// routing, which stay on the CPU path): probs = softmax(logits); the top K experts by
// probability, descending, ties to the lower expert index; weights w_k = p[e_k] (divided by
// sum_k p[e_k] if norm_topk_prob) times routed_scaling_factor. An assignment is a = n*K + k;
// `order` lists the assignments grouped by expert (expert 0's first), ascending within an
// expert (the CPU's stable counting sort), expert e's run being [expert_offset[e],
// expert_offset[e+1]); slot_pos[a] is the position of assignment a in `order`.
//
// Conventions (kernels/cuda/cuda.h): device pointers; asynchronous on `stream`, returning the
// launch status; sizes validated on the host (InvalidArgument naming the argument); N == 0 is a
// no-op. Expert ids inside device arrays are not checked from the host (preconditions: they come
// from MoeRouterTopK / MoePermute). Every result is deterministic (no floating-point atomics).
// Limits: E <= 1024, K <= min(E, 32).
#ifndef RLVR_KERNELS_CUDA_MOE_H_
#define RLVR_KERNELS_CUDA_MOE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {

// Softmax router with top-K selection; one warp per token. probs [N, E], topk_experts [N, K]
// (selection order: descending probability), topk_weights [N, K], all written.
absl::Status MoeRouterTopK(const float* logits, int64_t N, int64_t E, int64_t K,
                           bool norm_topk_prob, double routed_scaling_factor, float* probs,
                           int32_t* topk_experts, float* topk_weights, Stream stream = nullptr);

// Gradient of the router with respect to the logits, ACCUMULATED (dlogits [N, E] +=), given
// dweights [N, K] = d(loss)/d(topk_weights) and optionally aux_coef [E] (the load-balancing
// coefficients, null for none: d(loss)/d(probs[n, e]) += aux_coef[e]):
//   ds[e_k] = rsf * (dw_k / S - sum_j dw_j p[e_j] / S^2)  (S = sum_k p[e_k]) if norm_topk_prob,
//   ds[e_k] = rsf * dw_k otherwise;  dlogits += p * (ds + aux - sum_e p_e (ds_e + aux_e)).
absl::Status MoeRouterBackward(const float* probs, const int32_t* topk_experts,
                               const float* dweights, const double* aux_coef, int64_t N,
                               int64_t E, int64_t K, bool norm_topk_prob,
                               double routed_scaling_factor, float* dlogits,
                               Stream stream = nullptr);

// Stable counting sort of the N*K assignments by expert: expert_offset [E+1], order [N*K],
// slot_pos [N*K] int32 (see above), all written.
absl::Status MoePermute(const int32_t* topk_experts, int64_t N, int64_t K, int64_t E,
                        int32_t* expert_offset, int32_t* order, int32_t* slot_pos,
                        Stream stream = nullptr);

// Load statistics of the routing: expert_count [E] int64 (assignments per expert) and
// prob_sum [E] double (sum over tokens of probs[:, e], summed in a fixed order), both written.
absl::Status MoeRoutingStats(const float* probs, const int32_t* topk_experts, int64_t N,
                             int64_t E, int64_t K, int64_t* expert_count, double* prob_sum,
                             Stream stream = nullptr);

// xe[i, :] = x[order[i] / K, :] for i in [0, N*K); x [N, C], xe [N*K, C].
absl::Status MoeGatherRowsF32(const float* x, const int32_t* order, int64_t N, int64_t K,
                              int64_t C, float* xe, Stream stream = nullptr);
absl::Status MoeGatherRowsBf16(const uint16_t* x, const int32_t* order, int64_t N, int64_t K,
                               int64_t C, uint16_t* xe, Stream stream = nullptr);
// Backward of the gather: dx[n, :] += sum_k dxe[slot_pos[n*K + k], :] (k ascending; bf16: the
// old value plus the fp32 sum, rounded once). ACCUMULATES.
absl::Status MoeGatherRowsBackwardF32(const float* dxe, const int32_t* slot_pos, int64_t N,
                                      int64_t K, int64_t C, float* dx, Stream stream = nullptr);
absl::Status MoeGatherRowsBackwardBf16(const uint16_t* dxe, const int32_t* slot_pos, int64_t N,
                                       int64_t K, int64_t C, uint16_t* dx,
                                       Stream stream = nullptr);
// The same with bf16 dxe onto an fp32 dx (the residual-stream gradient): dx[n, :] +=
// sum_k float(dxe[slot_pos[n*K + k], :]), k ascending, fp32. ACCUMULATES.
absl::Status MoeGatherRowsBackwardBf16ToF32(const uint16_t* dxe, const int32_t* slot_pos,
                                            int64_t N, int64_t K, int64_t C, float* dx,
                                            Stream stream = nullptr);

// Un-permutation: y[n, :] = sum_k w[n, k] * ye[slot_pos[n*K + k], :] (k ascending, fp32 sum),
// y [N, C] written.
absl::Status MoeCombineF32(const float* ye, const float* topk_weights, const int32_t* slot_pos,
                           int64_t N, int64_t K, int64_t C, float* y, Stream stream = nullptr);
absl::Status MoeCombineBf16(const uint16_t* ye, const float* topk_weights,
                            const int32_t* slot_pos, int64_t N, int64_t K, int64_t C,
                            uint16_t* y, Stream stream = nullptr);
// Its backward, both written: dweights[n, k] = dy[n] . ye[slot_pos[n*K + k]] (fp32) and
// dye[slot_pos[n*K + k]] = w[n, k] * dy[n].
absl::Status MoeCombineBackwardF32(const float* dy, const float* ye, const float* topk_weights,
                                   const int32_t* slot_pos, int64_t N, int64_t K, int64_t C,
                                   float* dweights, float* dye, Stream stream = nullptr);
absl::Status MoeCombineBackwardBf16(const uint16_t* dy, const uint16_t* ye,
                                    const float* topk_weights, const int32_t* slot_pos,
                                    int64_t N, int64_t K, int64_t C, float* dweights,
                                    uint16_t* dye, Stream stream = nullptr);

// Grouped expert GEMM, one launch for all experts: for each expert e and each row i of its run
// [expert_offset[e], expert_offset[e+1]) of the M = expert_offset[E] permuted rows,
//   trans_w == false: y[i, :] = x[i, :] W_e^T, W [E, Nout, Kin] (nn.Linear layout, e.g.
//                     gate_proj [E, I, C]);
//   trans_w == true:  y[i, :] = x[i, :] W_e,   W [E, Kin, Nout] (the input gradient dX = dY W).
// x [M, Kin], y [M, Nout] written; fp32 accumulation. M_max bounds M (the grid is sized from it
// on the host without reading expert_offset): pass N*K. F32: tiles of 64 x 64 with plain FMAs.
// Bf16: the tensor-core kernel (MoeGroupedGemmBf16Tc below) where MoeGroupedGemmUsesTensorCores
// says so, else the 64 x 64 FMA kernel; both accumulate in fp32 and round y once, but in
// different orders, so their outputs can differ in the last bf16 bit.
absl::Status MoeGroupedGemmF32(const float* x, const float* w, const int32_t* expert_offset,
                               int64_t E, int64_t M_max, int64_t Nout, int64_t Kin, bool trans_w,
                               float* y, Stream stream = nullptr);
absl::Status MoeGroupedGemmBf16(const uint16_t* x, const uint16_t* w,
                                const int32_t* expert_offset, int64_t E, int64_t M_max,
                                int64_t Nout, int64_t Kin, bool trans_w, uint16_t* y,
                                Stream stream = nullptr);

// Weight gradient of MoeGroupedGemm*(trans_w = false): for each expert e, over its run of rows
// i in [expert_offset[e], expert_offset[e+1]),
//   dw[e] [Nout, Kin] += sum_i dy[i, :]^T x[i, :]   (ACCUMULATES)
// dy [M, Nout], x [M, Kin] (bf16 or fp32), dw [E, Nout, Kin] fp32. One launch for all experts:
// grid (Kin / 64, Nout / 64, E) tiles of 64 x 64, each block looping over its expert's rows in
// chunks of 16 staged in shared memory; every output is one fp32 FMA chain over the rows in
// ascending order (deterministic, no atomics). Experts with no rows leave dw[e] unchanged.
// M_max bounds M as for the forward (M_max == 0: no-op); E <= 1024, Nout / 64 <= 65535.
// Bf16 dispatches to MoeGroupedGemmWeightGradBf16Tc as the forward does (deterministic too, but
// summed in another order than the FMA kernel: results differ in the last fp32 bits).
absl::Status MoeGroupedGemmWeightGradBf16(const uint16_t* dy, const uint16_t* x,
                                          const int32_t* expert_offset, int64_t E, int64_t M_max,
                                          int64_t Nout, int64_t Kin, float* dw,
                                          Stream stream = nullptr);
absl::Status MoeGroupedGemmWeightGradF32(const float* dy, const float* x,
                                         const int32_t* expert_offset, int64_t E, int64_t M_max,
                                         int64_t Nout, int64_t Kin, float* dw,
                                         Stream stream = nullptr);

// Router replay: for every row n whose forced[n*K] >= 0, overwrites topk_experts[n, :] with
// forced[n, :] and topk_weights[n, :] with the weights policy/layers/moe.cc's MoeForward gives
// those experts: w_k = probs[n, forced[n, k]] (divided by sum_k probs[n, forced[n, k]], summed
// in k order, if norm_topk_prob) times routed_scaling_factor, in fp32. Rows with
// forced[n*K] < 0 (router rows, all -1) are left unchanged. Run after MoeRouterTopK (probs are
// its softmax probabilities) and before MoePermute, so the permutation, the routing statistics
// and MoeRouterBackward all see the replayed experts. forced [N, K] int32 on the device.
// Preconditions NOT checked here (the ids live on the device): a forced row holds K distinct
// experts in [0, E) (callers check the host copy first, as CausalLM::Forward does).
absl::Status MoeApplyForcedExperts(const float* probs, const int32_t* forced, int64_t N,
                                   int64_t E, int64_t K, bool norm_topk_prob,
                                   double routed_scaling_factor, int32_t* topk_experts,
                                   float* topk_weights, Stream stream = nullptr);

// Tensor-core versions of MoeGroupedGemmBf16 and MoeGroupedGemmWeightGradBf16
// (kernels/cuda/grouped_gemm_tc.cu): same arguments and semantics, bf16 operands on
// nvcuda::wmma 16x16x16 tiles with fp32 accumulators. 128 threads per 64 x 64 output tile,
// the reduction dimension (Kin, or the expert's rows for the weight gradient) staged 32 at a
// time in shared memory and zero-filled past the matrix / the expert's run; rows and columns
// past the edges are not stored. The weight gradient keeps one block per output tile and a fixed
// chunk order (deterministic, no atomics); dw[e] of an expert without rows is untouched. Needs
// compute capability >= 8.0, and in addition to the FMA versions' checks: Nout and Kin
// multiples of 8 and the bf16 pointers (x, w, y; dy, x) 16-byte aligned, else InvalidArgument
// (the plain Bf16 entry points fall back to the FMA kernels instead).
absl::Status MoeGroupedGemmBf16Tc(const uint16_t* x, const uint16_t* w,
                                  const int32_t* expert_offset, int64_t E, int64_t M_max,
                                  int64_t Nout, int64_t Kin, bool trans_w, uint16_t* y,
                                  Stream stream = nullptr);
absl::Status MoeGroupedGemmWeightGradBf16Tc(const uint16_t* dy, const uint16_t* x,
                                            const int32_t* expert_offset, int64_t E,
                                            int64_t M_max, int64_t Nout, int64_t Kin, float* dw,
                                            Stream stream = nullptr);

// Whether MoeGroupedGemmBf16 (a, b, c = x, w, y) and MoeGroupedGemmWeightGradBf16 (a, b = dy,
// x; c = nullptr) run the tensor-core kernel for these arguments: true iff the environment
// variable RLVR_MOE_GEMM_FMA is not "1" (read at every call, for A/B comparisons), Nout and Kin
// are positive multiples of 8, the non-null pointers are 16-byte aligned and the current device
// has compute capability >= 8.0 (queried once per device, cached). False without CUDA or a GPU.
bool MoeGroupedGemmUsesTensorCores(int64_t Nout, int64_t Kin, const void* a, const void* b,
                                   const void* c);

}  // namespace rlvr::kernels::cuda

#endif  // RLVR_KERNELS_CUDA_MOE_H_
