// Row-wise softmax kernels over blocks of logits, float and double.
#ifndef RLVR_KERNELS_SOFTMAX_H_
#define RLVR_KERNELS_SOFTMAX_H_

#include <cstdint>

namespace rlvr::kernels {

// Statistics of log_softmax(scale * logits[r, :valid]) for R rows of width V (row stride V):
// entries at index >= valid are treated as -inf (vocab padding past the tokenizer's size).
//   lse[r]      = log sum_j exp(scale * z[r, j])          (always written)
//   logprob[r]  = scale * z[r, target[r]] - lse[r]        (if logprob != null; target < valid)
//   entropy[r]  = -sum_j p_j log p_j                       (if entropy != null)
// target may be null when logprob is null. Rows are split across the OpenMP team unless called
// inside a parallel region.
template <typename T>
void LogSoftmaxStats(const T* logits, const int32_t* target, int64_t R, int64_t V, int64_t valid,
                     double scale, T* lse, T* logprob, T* entropy);

// Overwrites logits[R, V] with d(loss)/d(logits) where the loss's gradients with respect to the
// row's chosen-token logprob and entropy are dlogprob[r] and dentropy[r] (dentropy may be null):
//   p = softmax(scale * z), l = log p, H = entropy[r]
//   dz_j = scale * (dlogprob * (1[j == target] - p_j) - dentropy * p_j * (l_j + H))
// Masked entries (j >= valid) get 0. lse and entropy are the values LogSoftmaxStats returned.
template <typename T>
void LogSoftmaxGradInPlace(const int32_t* target, const T* lse, const T* entropy,
                           const T* dlogprob, const T* dentropy, int64_t R, int64_t V,
                           int64_t valid, double scale, T* logits);

// p[r, :] = softmax(z[r, :]) over width V (in place allowed).
template <typename T>
void SoftmaxForward(const T* z, int64_t R, int64_t V, T* p);
// dz[r, j] += p_j * (dp_j - sum_i p_i dp_i)   (ACCUMULATES).
template <typename T>
void SoftmaxBackward(const T* p, const T* dp, int64_t R, int64_t V, T* dz);

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_SOFTMAX_H_
