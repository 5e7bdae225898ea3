// RMSNorm (+ residual) forward/backward and RoPE (see kernels/cuda/dense.h for the contracts).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/dense_util.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::ArgError;
using internal::BlockSum;
using internal::Bf16;
using internal::CheckPtr;
using internal::CheckSize;
using internal::Load;
using internal::RoundTo;
using internal::Store;

constexpr int kNormThreads = 256;
// Blocks of the backward (and rows of its dw workspace): enough to fill an H100 (132 SMs) a few
// times over; a constant, not the device's SM count, so dw's summation order is fixed.
constexpr int64_t kDwBlocks = 256;
constexpr int64_t kMaxDwColumns = 49152;  // 192 KiB of shared memory per block

// One block per row. With a residual: h = x + residual is stored (rounded to T) and the norm is
// taken of the stored value. Each thread touches the same columns in both passes (c = tid +
// k * blockDim) and reads each element before writing it, so h and y may alias x or residual.
template <typename T>
__global__ void RmsNormForwardKernel(const T* x, const T* residual, const T* w, int64_t C,
                                     float eps, T* h, T* y, float* rstd) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * C;
  const T* src = xr;
  float ss = 0.0f;
  if (residual != nullptr) {
    const T* rr = residual + r * C;
    T* hr = h + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float v = RoundTo(hr, Load(xr + c) + Load(rr + c));
      Store(hr + c, v);
      ss += v * v;
    }
    src = hr;
  } else {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float v = Load(xr + c);
      ss += v * v;
    }
  }
  ss = BlockSum(ss, scratch);
  const float rs = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (threadIdx.x == 0 && rstd != nullptr) rstd[r] = rs;
  T* yr = y + r * C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    // src[c] was read (or written) above by this same thread: no other thread's write races.
    Store(yr + c, Load(w + c) * (Load(src + c) * rs));
  }
}

// Rows r = blockIdx.x, blockIdx.x + gridDim.x, ...: dx for each, and this block's dw partial
// row (in dynamic shared memory, one column per thread-owned slot) written to
// partial[blockIdx.x, :] at the end.
template <typename T>
__global__ void RmsNormBackwardKernel(const T* dy, const T* x, const T* w, const float* rstd,
                                      int64_t R, int64_t C, T* dx, float* partial) {
  extern __shared__ float dw_acc[];  // [C] when partial != nullptr
  __shared__ float scratch[32];
  const bool want_dw = partial != nullptr;
  if (want_dw) {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dw_acc[c] = 0.0f;
  }
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T* xr = x + r * C;
    const T* dyr = dy + r * C;
    const float rs = rstd[r];
    float dot = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      dot += Load(w + c) * Load(dyr + c) * Load(xr + c);
    }
    dot = BlockSum(dot, scratch);
    const float k = rs * rs * rs * dot / static_cast<float>(C);
    T* dxr = dx + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const float xv = Load(xr + c), dyv = Load(dyr + c);
      Store(dxr + c, Load(dxr + c) + (rs * Load(w + c) * dyv - k * xv));
      // dw_acc[c] is only ever touched by this thread (same column mapping): no sync needed.
      if (want_dw) dw_acc[c] += dyv * xv * rs;
    }
  }
  if (want_dw) {
    float* out = partial + static_cast<int64_t>(blockIdx.x) * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) out[c] = dw_acc[c];
  }
}

// dw[c] += sum over p < P of partial[p, c], in order p = 0, 1, ...
__global__ void SumPartialsKernel(const float* partial, int64_t P, int64_t C, float* dw) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t p = 0; p < P; ++p) s += partial[p * C + c];
    dw[c] += s;
  }
}

absl::Status CheckNormArgs(const char* fn, int64_t R, int64_t C, double eps) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "R", R));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "C", C));
  if (R > INT32_MAX) return ArgError(fn, absl::StrCat("R = ", R, " exceeds 2^31-1 rows"));
  if (!(eps >= 0)) return ArgError(fn, absl::StrCat("eps = ", eps, " must be non-negative"));
  return absl::OkStatus();
}

template <typename T>
absl::Status NormForward(const char* fn, const T* x, const T* residual, const T* w, int64_t R,
                         int64_t C, double eps, T* h, T* y, float* rstd, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckNormArgs(fn, R, C, eps));
  if (R == 0 || C == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "w", w));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "y", y));
  RmsNormForwardKernel<T><<<static_cast<unsigned>(R), kNormThreads, 0, AsCudaStream(stream)>>>(
      x, residual, w, C, static_cast<float>(eps), h, y, rstd);
  return LaunchStatus(fn);
}

template <typename T>
absl::Status NormBackward(const char* fn, const T* dy, const T* x, const T* w, const float* rstd,
                          int64_t R, int64_t C, T* dx, float* dw, float* workspace,
                          Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckNormArgs(fn, R, C, 0.0));
  if (R == 0 || C == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dy", dy));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "w", w));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "rstd", rstd));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "dx", dx));
  if (dw != nullptr) {
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "workspace (needed with dw)", workspace));
    if (C > kMaxDwColumns) {
      return ArgError(fn, absl::StrCat("C = ", C, " exceeds ", kMaxDwColumns,
                                       " (dw's per-block partial row lives in shared memory)"));
    }
  }
  const int64_t blocks = R < kDwBlocks ? R : kDwBlocks;
  const size_t smem = dw != nullptr ? static_cast<size_t>(C) * sizeof(float) : 0;
  if (smem > 48 * 1024) {
    RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(
        cudaFuncSetAttribute(RmsNormBackwardKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        fn));
  }
  cudaStream_t s = AsCudaStream(stream);
  RmsNormBackwardKernel<T><<<static_cast<unsigned>(blocks), kNormThreads, smem, s>>>(
      dy, x, w, rstd, R, C, dx, dw != nullptr ? workspace : nullptr);
  RLVR_CUDA_RETURN_IF_ERROR(LaunchStatus(fn));
  if (dw != nullptr) {
    SumPartialsKernel<<<internal::GridFor(C, 256), 256, 0, s>>>(workspace, blocks, C, dw);
    RLVR_CUDA_RETURN_IF_ERROR(LaunchStatus(fn));
  }
  return absl::OkStatus();
}

// ---- RoPE ----

constexpr int64_t kMaxRopeHalf = 512;
struct InvFreq {
  float v[kMaxRopeHalf];
};

__global__ void RopeTableKernel(const int32_t* positions, int64_t N, int64_t half, InvFreq inv,
                                float* cos_out, float* sin_out) {
  const int64_t total = N * half;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / half, j = i % half;
    // The CPU's float product, then cos/sin in double rounded to float (within 1 ulp of libm's
    // float cosf/sinf, which the CPU table uses).
    const float a = __fmul_rn(static_cast<float>(positions[n]), inv.v[j]);
    cos_out[i] = static_cast<float>(cos(static_cast<double>(a)));
    sin_out[i] = static_cast<float>(sin(static_cast<double>(a)));
  }
}

// One thread per (row n, head, pair j): x1 = x[.., j], x2 = x[.., j + D/2].
template <typename T>
__global__ void RopeKernel(const float* cos_t, const float* sin_t, int64_t N, int64_t heads,
                           int64_t half, float sign, T* x) {
  const int64_t total = N * heads * half;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i % half, nh = i / half, n = nh / heads;
    T* x1 = x + nh * 2 * half + j;
    T* x2 = x1 + half;
    const float c = cos_t[n * half + j], sn = sign * sin_t[n * half + j];
    const float a = Load(x1), b = Load(x2);
    Store(x1, a * c - b * sn);
    Store(x2, b * c + a * sn);
  }
}

absl::Status CheckRopeArgs(const char* fn, int64_t N, int64_t heads, int64_t D) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "N", N));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "heads", heads));
  RLVR_CUDA_RETURN_IF_ERROR(CheckSize(fn, "D", D));
  if (D % 2 != 0) return ArgError(fn, absl::StrCat("head dim D = ", D, " is odd"));
  return absl::OkStatus();
}

template <typename T>
absl::Status Rope(const char* fn, const float* cos_t, const float* sin_t, int64_t N,
                  int64_t heads, int64_t D, float sign, T* x, Stream stream) {
  RLVR_CUDA_RETURN_IF_ERROR(CheckRopeArgs(fn, N, heads, D));
  if (N == 0 || heads == 0 || D == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos_t));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin_t));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "x", x));
  const int64_t half = D / 2;
  RopeKernel<T><<<internal::GridFor(N * heads * half, 256), 256, 0, AsCudaStream(stream)>>>(
      cos_t, sin_t, N, heads, half, sign, x);
  return LaunchStatus(fn);
}

}  // namespace

// ---- RMSNorm entry points ----

absl::Status RmsNormForwardF32(const float* x, const float* w, int64_t R, int64_t C, double eps,
                               float* y, float* rstd, Stream stream) {
  return NormForward<float>("RmsNormForwardF32", x, nullptr, w, R, C, eps, nullptr, y, rstd,
                            stream);
}

absl::Status RmsNormForwardBf16(const uint16_t* x, const uint16_t* w, int64_t R, int64_t C,
                                double eps, uint16_t* y, float* rstd, Stream stream) {
  return NormForward<__nv_bfloat16>("RmsNormForwardBf16", Bf16(x), nullptr, Bf16(w), R, C, eps,
                                    nullptr, Bf16(y), rstd, stream);
}

absl::Status AddRmsNormForwardF32(const float* x, const float* residual, const float* w,
                                  int64_t R, int64_t C, double eps, float* h, float* y,
                                  float* rstd, Stream stream) {
  const char* fn = "AddRmsNormForwardF32";
  if (R > 0 && C > 0) {
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "residual", residual));
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "h", h));
  }
  return NormForward<float>(fn, x, residual, w, R, C, eps, h, y, rstd, stream);
}

absl::Status AddRmsNormForwardBf16(const uint16_t* x, const uint16_t* residual, const uint16_t* w,
                                   int64_t R, int64_t C, double eps, uint16_t* h, uint16_t* y,
                                   float* rstd, Stream stream) {
  const char* fn = "AddRmsNormForwardBf16";
  if (R > 0 && C > 0) {
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "residual", residual));
    RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "h", h));
  }
  return NormForward<__nv_bfloat16>(fn, Bf16(x), Bf16(residual), Bf16(w), R, C, eps, Bf16(h),
                                    Bf16(y), rstd, stream);
}

int64_t RmsNormBackwardWorkspaceFloats(int64_t R, int64_t C) {
  if (R <= 0 || C <= 0) return 0;
  return (R < kDwBlocks ? R : kDwBlocks) * C;
}

absl::Status RmsNormBackwardF32(const float* dy, const float* x, const float* w,
                                const float* rstd, int64_t R, int64_t C, float* dx, float* dw,
                                float* workspace, Stream stream) {
  return NormBackward<float>("RmsNormBackwardF32", dy, x, w, rstd, R, C, dx, dw, workspace,
                             stream);
}

absl::Status RmsNormBackwardBf16(const uint16_t* dy, const uint16_t* x, const uint16_t* w,
                                 const float* rstd, int64_t R, int64_t C, uint16_t* dx, float* dw,
                                 float* workspace, Stream stream) {
  return NormBackward<__nv_bfloat16>("RmsNormBackwardBf16", Bf16(dy), Bf16(x), Bf16(w), rstd, R,
                                     C, Bf16(dx), dw, workspace, stream);
}

// ---- RoPE entry points ----

absl::Status BuildRopeTableF32(const int32_t* positions, int64_t N, int64_t D, double theta,
                               float* cos, float* sin, Stream stream) {
  const char* fn = "BuildRopeTableF32";
  RLVR_CUDA_RETURN_IF_ERROR(CheckRopeArgs(fn, N, 1, D));
  const int64_t half = D / 2;
  if (half > kMaxRopeHalf) {
    return ArgError(fn, absl::StrCat("head dim D = ", D, " exceeds ", 2 * kMaxRopeHalf));
  }
  if (!(theta > 0)) return ArgError(fn, absl::StrCat("theta = ", theta, " must be positive"));
  if (N == 0 || D == 0) return absl::OkStatus();
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "positions", positions));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "cos", cos));
  RLVR_CUDA_RETURN_IF_ERROR(CheckPtr(fn, "sin", sin));
  // kernels/cpu/rope.cc's expression for T = float, evaluated on the host: bit-identical.
  InvFreq inv = {};
  for (int64_t j = 0; j < half; ++j) {
    inv.v[j] = 1.0f / static_cast<float>(std::pow(static_cast<float>(theta),
                                                  static_cast<float>(2 * j) /
                                                      static_cast<float>(D)));
  }
  RopeTableKernel<<<internal::GridFor(N * half, 256), 256, 0, AsCudaStream(stream)>>>(
      positions, N, half, inv, cos, sin);
  return LaunchStatus(fn);
}

absl::Status RopeForwardF32(const float* cos, const float* sin, int64_t N, int64_t heads,
                            int64_t D, float* x, Stream stream) {
  return Rope<float>("RopeForwardF32", cos, sin, N, heads, D, 1.0f, x, stream);
}

absl::Status RopeBackwardF32(const float* cos, const float* sin, int64_t N, int64_t heads,
                             int64_t D, float* dx, Stream stream) {
  return Rope<float>("RopeBackwardF32", cos, sin, N, heads, D, -1.0f, dx, stream);
}

absl::Status RopeForwardBf16(const float* cos, const float* sin, int64_t N, int64_t heads,
                             int64_t D, uint16_t* x, Stream stream) {
  return Rope<__nv_bfloat16>("RopeForwardBf16", cos, sin, N, heads, D, 1.0f, Bf16(x), stream);
}

absl::Status RopeBackwardBf16(const float* cos, const float* sin, int64_t N, int64_t heads,
                              int64_t D, uint16_t* dx, Stream stream) {
  return Rope<__nv_bfloat16>("RopeBackwardBf16", cos, sin, N, heads, D, -1.0f, Bf16(dx), stream);
}

}  // namespace rlvr::kernels::cuda
