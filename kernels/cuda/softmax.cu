// Log-softmax statistics and their gradient without materializing the probabilities
// (kernels/cuda/dense.h).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/dense_util.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::ArgError;
using internal::Bf16;
using internal::CheckPtr;
using internal::CheckSize;
using internal::Load;
using internal::Store;

constexpr int kStatsThreads = 512;
constexpr int kGradThreads = 256;

// Online statistics of a set of values u: m = max, S = sum e^(u-m), A = sum e^(u-m) (u-m).
// The empty set is (-inf, 0, 0). Entropy = log S - A / S, lse = m + log S.
struct Online {
  float m, s, a;
};

__device__ __forceinline__ void Add(Online& o, float u) {
  // e^-inf = 0 adds nothing (and p log p -> 0); skipping also avoids -inf - -inf = NaN.
  if (u == -INFINITY) return;
  if (u > o.m) {
    // Rescale to the new max: sum e^(v-u)(v-u) = f (A + (m-u) S) with f = e^(m-u).
    const float f = expf(o.m - u);
    o.a = o.s == 0.0f ? 0.0f : f * (o.a + (o.m - u) * o.s);
    o.s = o.s * f + 1.0f;  // the new element contributes e^0 = 1 to S and 0 to A
    o.m = u;
  } else {
    const float d = u - o.m;
    const float e = expf(d);
    o.s += e;
    o.a += e * d;
  }
}

// Merges b into a. Symmetric up to the order of two additions, which IEEE makes commutative,
// so every lane of a butterfly ends with the same bits.
__device__ __forceinline__ void Merge(Online& a, const Online& b) {
  if (b.s == 0.0f) return;
  if (a.s == 0.0f) {
    a = b;
    return;
  }
  const float m = fmaxf(a.m, b.m);
  const float d1 = a.m - m, d2 = b.m - m;
  const float f1 = expf(d1), f2 = expf(d2);
  a.a = f1 * (a.a + d1 * a.s) + f2 * (b.a + d2 * b.s);
  a.s = a.s * f1 + b.s * f2;
  a.m = m;
}

__device__ __forceinline__ void WarpMerge(Online& o) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    Online other;
    other.m = __shfl_xor_sync(0xffffffffu, o.m, off);
    other.s = __shfl_xor_sync(0xffffffffu, o.s, off);
    other.a = __shfl_xor_sync(0xffffffffu, o.a, off);
    Merge(o, other);
  }
}

// One block per row.
template <typename T>
__global__ void StatsKernel(const T* logits, const int32_t* target, int64_t V, int64_t valid,
                            float scale, float* lse, float* logprob, float* entropy) {
  __shared__ Online part[32];
  const int64_t r = blockIdx.x;
  const T* z = logits + r * V;
  Online o = {-INFINITY, 0.0f, 0.0f};
  for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) Add(o, scale * Load(z + j));
  WarpMerge(o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = o;
  __syncthreads();
  if (warp == 0) {
    const int nwarps = blockDim.x >> 5;
    Online w = lane < nwarps ? part[lane] : Online{-INFINITY, 0.0f, 0.0f};
    WarpMerge(w);
    if (lane == 0) {
      const float log_sum = logf(w.s);
      const float l = w.m + log_sum;
      lse[r] = l;
      if (entropy != nullptr) entropy[r] = log_sum - w.a / w.s;
      if (logprob != nullptr) {
        const int32_t t = target[r];
        logprob[r] = (t >= 0 && t < valid) ? scale * Load(z + t) - l : NAN;
      }
    }
  }
}

// Rows r = blockIdx.y + k * gridDim.y; columns grid-strided over blockIdx.x.
template <typename T>
__global__ void GradKernel(const int32_t* target, const float* lse, const float* entropy,
                           const float* dlogprob, const float* dentropy, int64_t R, int64_t V,
                           int64_t valid, float scale, T* logits) {
  for (int64_t r = blockIdx.y; r < R; r += gridDim.y) {
    const float dlp = dlogprob != nullptr ? dlogprob[r] : 0.0f;
    const float dh = dentropy != nullptr ? dentropy[r] : 0.0f;
    const float l0 = lse[r];
    const float H = dh != 0.0f ? entropy[r] : 0.0f;
    const int64_t t = target != nullptr ? target[r] : -1;
    T* z = logits + r * V;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < V;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      float g = 0.0f;
      if (j < valid) {
        const float l = scale * Load(z + j) - l0;
        const float p = expf(l);
        g = scale * (-dlp * p - dh * p * (l + H));
        if (j == t) g += scale * dlp;
      }
      Store(z + j, g);
    }
  }
}

absl::Status CheckCommon(const char* fn, int64_t R, int64_t V, int64_t valid, double scale) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "V", V));
  if (R > INT32_MAX) return ArgError(fn, absl::StrCat("R = ", R, " exceeds 2^31-1 rows"));
  if (R > 0 && (valid < 1 || valid > V)) {
    return ArgError(fn, absl::StrCat("valid = ", valid, " is outside [1, V = ", V, "]"));
  }
  if (!std::isfinite(scale)) return ArgError(fn, absl::StrCat("scale = ", scale, " is not finite"));
  return absl::OkStatus();
}

template <typename T>
absl::Status Stats(const char* fn, const T* logits, const int32_t* target, int64_t R, int64_t V,
                   int64_t valid, double scale, float* lse, float* logprob, float* entropy,
                   Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckCommon(fn, R, V, valid, scale));
  if (R == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "logits", logits));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "lse", lse));
  if (logprob != nullptr) RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "target (needed with logprob)", target));
  StatsKernel<T><<<static_cast<unsigned>(R), kStatsThreads, 0, AsCudaStream(stream)>>>(
      logits, target, V, valid, static_cast<float>(scale), lse, logprob, entropy);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status Grad(const char* fn, const int32_t* target, const float* lse, const float* entropy,
                  const float* dlogprob, const float* dentropy, int64_t R, int64_t V,
                  int64_t valid, double scale, T* logits, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckCommon(fn, R, V, valid, scale));
  if (R == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "logits", logits));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "lse", lse));
  if (dentropy != nullptr) {
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "entropy (needed with dentropy)", entropy));
  }
  // Each thread handles at least 4 columns; rows beyond 65535 loop.
  int64_t bx = (V + kGradThreads * 4 - 1) / (kGradThreads * 4);
  if (bx > 1024) bx = 1024;
  if (bx < 1) bx = 1;
  const int64_t by = R < 65535 ? R : 65535;
  const dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(by));
  GradKernel<T><<<grid, kGradThreads, 0, AsCudaStream(stream)>>>(
      target, lse, entropy, dlogprob, dentropy, R, V, valid, static_cast<float>(scale), logits);
  return LaunchStatus(fn);
}

}  // namespace

absl::Status LogSoftmaxStatsF32(const float* logits, const int32_t* target, int64_t R, int64_t V,
                                int64_t valid, double scale, float* lse, float* logprob,
                                float* entropy, Stream stream) {
  return Stats<float>("LogSoftmaxStatsF32", logits, target, R, V, valid, scale, lse, logprob,
                      entropy, stream);
}

absl::Status LogSoftmaxStatsBf16(const uint16_t* logits, const int32_t* target, int64_t R,
                                 int64_t V, int64_t valid, double scale, float* lse,
                                 float* logprob, float* entropy, Stream stream) {
  return Stats<__nv_bfloat16>("LogSoftmaxStatsBf16", Bf16(logits), target, R, V, valid, scale,
                              lse, logprob, entropy, stream);
}

absl::Status LogSoftmaxGradInPlaceF32(const int32_t* target, const float* lse,
                                      const float* entropy, const float* dlogprob,
                                      const float* dentropy, int64_t R, int64_t V, int64_t valid,
                                      double scale, float* logits, Stream stream) {
  return Grad<float>("LogSoftmaxGradInPlaceF32", target, lse, entropy, dlogprob, dentropy, R, V,
                     valid, scale, logits, stream);
}

absl::Status LogSoftmaxGradInPlaceBf16(const int32_t* target, const float* lse,
                                       const float* entropy, const float* dlogprob,
                                       const float* dentropy, int64_t R, int64_t V,
                                       int64_t valid, double scale, uint16_t* logits,
                                       Stream stream) {
  return Grad<__nv_bfloat16>("LogSoftmaxGradInPlaceBf16", target, lse, entropy, dlogprob,
                             dentropy, R, V, valid, scale, Bf16(logits), stream);
}

}  // namespace rlvr::kernels::cuda
