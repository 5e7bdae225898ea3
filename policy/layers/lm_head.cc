#include "policy/layers/lm_head.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/matmul.h"
#include "kernels/softmax.h"
#include "policy/layers/common.h"

namespace rlvr::policy::layers {
namespace {

int64_t Valid(const LmHeadConfig& cfg) { return cfg.valid_vocab > 0 ? cfg.valid_vocab : cfg.vocab; }

absl::Status Validate(const LmHeadConfig& cfg) {
  if (cfg.hidden <= 0 || cfg.vocab <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("lm_head: hidden_size ", cfg.hidden,
                                                   " and vocab_size ", cfg.vocab,
                                                   " must be positive"));
  }
  if (cfg.valid_vocab < 0 || cfg.valid_vocab > cfg.vocab) {
    return absl::InvalidArgumentError(absl::StrCat("lm_head: tokenizer vocabulary ",
                                                   cfg.valid_vocab, " exceeds vocab_size ",
                                                   cfg.vocab));
  }
  if (cfg.row_block <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lm_head: row_block ", cfg.row_block, " must be positive"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTargets(const LmHeadConfig& cfg, const int32_t* targets, int64_t N) {
  const int64_t valid = Valid(cfg);
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0 || targets[n] >= valid) {
      return absl::InvalidArgumentError(absl::StrCat("lm_head: target token ", targets[n],
                                                     " at row ", n, " outside [0, ", valid, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

template <typename T>
absl::Status LmHeadLogits(const LmHeadConfig& cfg, const T* W, const T* h, int64_t N,
                          T* logits) {
  RLVR_RETURN_IF_ERROR(Validate(cfg));
  const int64_t C = cfg.hidden, V = cfg.vocab, valid = Valid(cfg);
  kernels::Gemm<T>(false, true, N, V, C, static_cast<T>(cfg.scale), h, C, W, C, T(0), logits, V);
  for (int64_t n = 0; n < N; ++n) {
    std::fill(logits + n * V + valid, logits + (n + 1) * V, -std::numeric_limits<T>::infinity());
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status LmHeadLogprobForward(const LmHeadConfig& cfg, const T* W, const T* h,
                                  const int32_t* targets, int64_t N, LmHeadActivations<T>* act,
                                  T* logprob, T* entropy) {
  RLVR_RETURN_IF_ERROR(Validate(cfg));
  RLVR_RETURN_IF_ERROR(ValidateTargets(cfg, targets, N));
  const int64_t C = cfg.hidden, V = cfg.vocab, valid = Valid(cfg);
  const int64_t R = std::min(cfg.row_block, std::max<int64_t>(N, 1));
  std::vector<T> block(R * V);
  T* lse = Resize(&act->lse, N);
  T* ent = Resize(&act->entropy, N);
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t rows = std::min(R, N - r0);
    kernels::Gemm<T>(false, true, rows, V, C, T(1), h + r0 * C, C, W, C, T(0), block.data(), V);
    kernels::LogSoftmaxStats<T>(block.data(), targets + r0, rows, V, valid, cfg.scale, lse + r0,
                                logprob + r0, ent + r0);
  }
  if (entropy != nullptr) std::copy(ent, ent + N, entropy);
  return absl::OkStatus();
}

template <typename T>
void LmHeadLogprobBackward(const LmHeadConfig& cfg, const T* W, const T* h,
                           const int32_t* targets, int64_t N, const LmHeadActivations<T>& act,
                           const T* dlogprob, const T* dentropy, T* dh, T* dW) {
  const int64_t C = cfg.hidden, V = cfg.vocab, valid = Valid(cfg);
  const int64_t R = std::min(cfg.row_block, std::max<int64_t>(N, 1));
  std::vector<T> block(R * V);
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t rows = std::min(R, N - r0);
    // Recompute this block's logits rather than keeping N x V of them from the forward.
    kernels::Gemm<T>(false, true, rows, V, C, T(1), h + r0 * C, C, W, C, T(0), block.data(), V);
    kernels::LogSoftmaxGradInPlace<T>(targets + r0, act.lse.data() + r0,
                                      act.entropy.data() + r0, dlogprob + r0,
                                      dentropy != nullptr ? dentropy + r0 : nullptr, rows, V,
                                      valid, cfg.scale, block.data());
    if (dh != nullptr) {
      kernels::Gemm<T>(false, false, rows, C, V, T(1), block.data(), V, W, C, T(1), dh + r0 * C,
                       C);
    }
    if (dW != nullptr) {
      kernels::Gemm<T>(true, false, V, C, rows, T(1), block.data(), V, h + r0 * C, C, T(1), dW,
                       C);
    }
  }
}

template <typename T>
absl::StatusOr<double> CrossEntropyForwardBackward(const LmHeadConfig& cfg, const T* W,
                                                   const T* h, const int32_t* targets,
                                                   const T* wt, int64_t N, T* dh, T* dW) {
  RLVR_RETURN_IF_ERROR(Validate(cfg));
  RLVR_RETURN_IF_ERROR(ValidateTargets(cfg, targets, N));
  const int64_t C = cfg.hidden, V = cfg.vocab, valid = Valid(cfg);
  const int64_t R = std::min(cfg.row_block, std::max<int64_t>(N, 1));
  std::vector<T> block(R * V), lse(R), lp(R), dlp(R);
  double loss = 0;
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t rows = std::min(R, N - r0);
    kernels::Gemm<T>(false, true, rows, V, C, T(1), h + r0 * C, C, W, C, T(0), block.data(), V);
    kernels::LogSoftmaxStats<T>(block.data(), targets + r0, rows, V, valid, cfg.scale,
                                lse.data(), lp.data(), nullptr);
    for (int64_t r = 0; r < rows; ++r) {
      loss -= static_cast<double>(wt[r0 + r]) * static_cast<double>(lp[r]);
      dlp[r] = -wt[r0 + r];
    }
    kernels::LogSoftmaxGradInPlace<T>(targets + r0, lse.data(), nullptr, dlp.data(), nullptr,
                                      rows, V, valid, cfg.scale, block.data());
    if (dh != nullptr) {
      kernels::Gemm<T>(false, false, rows, C, V, T(1), block.data(), V, W, C, T(1), dh + r0 * C,
                       C);
    }
    if (dW != nullptr) {
      kernels::Gemm<T>(true, false, V, C, rows, T(1), block.data(), V, h + r0 * C, C, T(1), dW,
                       C);
    }
  }
  return loss;
}

#define RLVR_INSTANTIATE(T)                                                                   \
  template absl::Status LmHeadLogits<T>(const LmHeadConfig&, const T*, const T*, int64_t, T*); \
  template absl::Status LmHeadLogprobForward<T>(const LmHeadConfig&, const T*, const T*,      \
                                                const int32_t*, int64_t,                      \
                                                LmHeadActivations<T>*, T*, T*);               \
  template void LmHeadLogprobBackward<T>(const LmHeadConfig&, const T*, const T*,             \
                                         const int32_t*, int64_t, const LmHeadActivations<T>&, \
                                         const T*, const T*, T*, T*);                         \
  template absl::StatusOr<double> CrossEntropyForwardBackward<T>(                             \
      const LmHeadConfig&, const T*, const T*, const int32_t*, const T*, int64_t, T*, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::policy::layers
