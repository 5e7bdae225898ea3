// Multi-tensor AdamW with global gradient-norm clipping (kernels/cuda/dense.h).
//
// The tensor list is cut into chunks of kChunk elements (a tensor's last chunk may be short);
// a table of chunks lives on the device, so each phase is one launch over all tensors:
//   1. NormPartialKernel: kNormBlocks blocks, block b takes chunks b, b + kNormBlocks, ...,
//      sums grad^2 in fp64 and writes partial[b].
//   2. NormFinalKernel: one block sums the kNormBlocks partials (fixed tree), writes the norm,
//      the clip factor and the skip flag to a device Result.
//   3. UpdateKernel: block b takes chunks b, b + gridDim.x, ...; returns at once if skipped.
// The grid sizes and the chunking are fixed, so the norm is bit-identical run to run.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/dense.h"
#include "kernels/cuda/dense_util.cuh"

namespace rlvr::kernels::cuda {
namespace {

using internal::ArgError;
using internal::BlockSum;

constexpr int64_t kChunk = 16384;  // elements per chunk
constexpr int kNormBlocks = 512;
constexpr int kThreads = 256;
constexpr int kMaxUpdateBlocks = 8192;

struct DeviceTensor {
  float* param;
  const float* grad;
  float* m;
  float* v;
  __nv_bfloat16* param_bf16;
  int32_t decay;
};

struct Chunk {
  int32_t tensor;
  int64_t begin, end;  // element range within the tensor
};

struct Result {
  double norm;
  float clip;
  int32_t clipped;
  int32_t skipped;
};

// The host-formed scalars of one step (as policy/optim/adamw.cc forms them, in float).
struct StepScalars {
  float b1, b2, eps, step_size, bc2_sqrt, decay;  // decay = 1 - lr * wd for decay tensors
  double max_grad_norm;
};

__global__ void NormPartialKernel(const DeviceTensor* tensors, const Chunk* chunks,
                                  int64_t num_chunks, double* partial) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int64_t k = blockIdx.x; k < num_chunks; k += gridDim.x) {
    const Chunk c = chunks[k];
    const float* g = tensors[c.tensor].grad;
    for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
      const double x = g[i];
      s += x * x;
    }
  }
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block: the partials in a fixed order, then the norm, the clip factor and the skip flag.
__global__ void NormFinalKernel(const double* partial, int n, double max_grad_norm,
                                Result* result) {
  __shared__ double scratch[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
  s = BlockSum(s, scratch);
  if (threadIdx.x == 0) {
    const double norm = sqrt(s);
    Result r;
    r.norm = norm;
    r.skipped = isfinite(norm) ? 0 : 1;
    r.clipped = 0;
    r.clip = 1.0f;
    if (!r.skipped && max_grad_norm > 0 && norm > max_grad_norm) {
      r.clip = static_cast<float>(max_grad_norm / (norm + 1e-6));
      r.clipped = 1;
    }
    *result = r;
  }
}

__global__ void UpdateKernel(const DeviceTensor* tensors, const Chunk* chunks, int64_t num_chunks,
                             const Result* result, StepScalars k) {
  if (result->skipped) return;
  const float clip = result->clip;
  for (int64_t ci = blockIdx.x; ci < num_chunks; ci += gridDim.x) {
    const Chunk c = chunks[ci];
    const DeviceTensor t = tensors[c.tensor];
    const float decay = t.decay ? k.decay : 1.0f;
    for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
      const float gi = t.grad[i] * clip;
      const float m = k.b1 * t.m[i] + (1.0f - k.b1) * gi;
      const float v = k.b2 * t.v[i] + (1.0f - k.b2) * gi * gi;
      t.m[i] = m;
      t.v[i] = v;
      const float denom = sqrtf(v) / k.bc2_sqrt + k.eps;
      const float w = t.param[i] * decay - k.step_size * m / denom;
      t.param[i] = w;
      if (t.param_bf16 != nullptr) t.param_bf16[i] = __float2bfloat16_rn(w);
    }
  }
}

// Device memory freed on destruction.
struct DeviceMem {
  void* ptr = nullptr;
  ~DeviceMem() { cudaFree(ptr); }
};

}  // namespace

struct AdamWMultiTensor::Impl {
  int64_t num_tensors = 0;
  int64_t num_chunks = 0;
  DeviceMem tensors, chunks, partial, result;
  bool stepped = false;
};

AdamWMultiTensor::AdamWMultiTensor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AdamWMultiTensor::~AdamWMultiTensor() = default;
int64_t AdamWMultiTensor::num_tensors() const { return impl_->num_tensors; }
int64_t AdamWMultiTensor::num_chunks() const { return impl_->num_chunks; }

absl::StatusOr<std::unique_ptr<AdamWMultiTensor>> AdamWMultiTensor::Create(
    const std::vector<AdamWTensor>& tensors) {
  const char* fn = "AdamWMultiTensor::Create";
  if (tensors.size() > static_cast<size_t>(INT32_MAX)) return ArgError(fn, "too many tensors");
  std::vector<DeviceTensor> dt;
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor& t = tensors[i];
    if (t.param == nullptr || t.grad == nullptr || t.exp_avg == nullptr ||
        t.exp_avg_sq == nullptr || t.numel <= 0) {
      return ArgError(fn, absl::StrCat("tensor ", i, " has a null param/grad/exp_avg/exp_avg_sq",
                                       " or numel = ", t.numel, " <= 0"));
    }
    dt.push_back({t.param, t.grad, t.exp_avg, t.exp_avg_sq,
                  reinterpret_cast<__nv_bfloat16*>(t.param_bf16), t.decay ? 1 : 0});
    for (int64_t b = 0; b < t.numel; b += kChunk) {
      chunks.push_back({static_cast<int32_t>(i), b, b + kChunk < t.numel ? b + kChunk : t.numel});
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->num_tensors = static_cast<int64_t>(dt.size());
  impl->num_chunks = static_cast<int64_t>(chunks.size());
  auto alloc = [](DeviceMem* mem, size_t bytes, const char* what) {
    return CudaStatus(cudaMalloc(&mem->ptr, bytes < 16 ? 16 : bytes), what);
  };
  RLVR_CUDA_RETURN_IF_ERROR(alloc(&impl->tensors, dt.size() * sizeof(DeviceTensor), fn));
  RLVR_CUDA_RETURN_IF_ERROR(alloc(&impl->chunks, chunks.size() * sizeof(Chunk), fn));
  RLVR_CUDA_RETURN_IF_ERROR(alloc(&impl->partial, kNormBlocks * sizeof(double), fn));
  RLVR_CUDA_RETURN_IF_ERROR(alloc(&impl->result, sizeof(Result), fn));
  if (!dt.empty()) {
    RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(cudaMemcpy(impl->tensors.ptr, dt.data(),
                                                    dt.size() * sizeof(DeviceTensor),
                                                    cudaMemcpyHostToDevice),
                                         fn));
    RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(cudaMemcpy(impl->chunks.ptr, chunks.data(),
                                                    chunks.size() * sizeof(Chunk),
                                                    cudaMemcpyHostToDevice),
                                         fn));
  }
  return std::unique_ptr<AdamWMultiTensor>(new AdamWMultiTensor(std::move(impl)));
}

absl::Status AdamWMultiTensor::Step(const AdamWStepConfig& c, Stream stream) {
  const char* fn = "AdamWMultiTensor::Step";
  if (!(c.lr >= 0)) return ArgError(fn, absl::StrCat("lr = ", c.lr, " must be non-negative"));
  if (!(c.beta1 >= 0 && c.beta1 < 1)) return ArgError(fn, "beta1 must be in [0, 1)");
  if (!(c.beta2 >= 0 && c.beta2 < 1)) return ArgError(fn, "beta2 must be in [0, 1)");
  if (!(c.eps > 0)) return ArgError(fn, "eps must be positive");
  if (!(c.weight_decay >= 0)) return ArgError(fn, "weight_decay must be non-negative");
  if (c.step < 1) return ArgError(fn, absl::StrCat("step = ", c.step, " must be >= 1"));
  // policy/optim/adamw.cc's scalars, formed the same way.
  const double t = static_cast<double>(c.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(c.beta1, t));
  StepScalars k;
  k.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(c.beta2, t)));
  const float lr = static_cast<float>(c.lr);
  k.step_size = lr / bc1;
  k.eps = static_cast<float>(c.eps);
  k.b1 = static_cast<float>(c.beta1);
  k.b2 = static_cast<float>(c.beta2);
  k.decay = 1.0f - lr * static_cast<float>(c.weight_decay);
  k.max_grad_norm = c.max_grad_norm;

  cudaStream_t s = AsCudaStream(stream);
  const auto* tensors = static_cast<const DeviceTensor*>(impl_->tensors.ptr);
  const auto* chunks = static_cast<const Chunk*>(impl_->chunks.ptr);
  auto* partial = static_cast<double*>(impl_->partial.ptr);
  auto* result = static_cast<Result*>(impl_->result.ptr);
  NormPartialKernel<<<kNormBlocks, kThreads, 0, s>>>(tensors, chunks, impl_->num_chunks, partial);
  RLVR_CUDA_RETURN_IF_ERROR(LaunchStatus(fn));
  NormFinalKernel<<<1, kThreads, 0, s>>>(partial, kNormBlocks, k.max_grad_norm, result);
  RLVR_CUDA_RETURN_IF_ERROR(LaunchStatus(fn));
  impl_->stepped = true;
  if (impl_->num_chunks == 0) return absl::OkStatus();
  const int64_t blocks = impl_->num_chunks < kMaxUpdateBlocks ? impl_->num_chunks
                                                                : kMaxUpdateBlocks;
  UpdateKernel<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(tensors, chunks,
                                                                  impl_->num_chunks, result, k);
  return LaunchStatus(fn);
}

absl::StatusOr<double> AdamWMultiTensor::GradNorm(Stream stream) {
  const char* fn = "AdamWMultiTensor::GradNorm";
  cudaStream_t s = AsCudaStream(stream);
  auto* partial = static_cast<double*>(impl_->partial.ptr);
  auto* result = static_cast<Result*>(impl_->result.ptr);
  // Writes the same Result a Step would, without clipping (max_grad_norm = 0).
  NormPartialKernel<<<kNormBlocks, kThreads, 0, s>>>(
      static_cast<const DeviceTensor*>(impl_->tensors.ptr),
      static_cast<const Chunk*>(impl_->chunks.ptr), impl_->num_chunks, partial);
  RLVR_CUDA_RETURN_IF_ERROR(LaunchStatus(fn));
  NormFinalKernel<<<1, kThreads, 0, s>>>(partial, kNormBlocks, 0.0, result);
  RLVR_CUDA_RETURN_IF_ERROR(LaunchStatus(fn));
  Result r;
  RLVR_CUDA_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpyAsync(&r, result, sizeof(r), cudaMemcpyDeviceToHost, s), fn));
  RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(s), fn));
  impl_->stepped = false;  // the device Result no longer describes the last Step
  return r.norm;
}

absl::StatusOr<AdamWStepResult> AdamWMultiTensor::LastStepResult(Stream stream) {
  const char* fn = "AdamWMultiTensor::LastStepResult";
  if (!impl_->stepped) {
    return absl::FailedPreconditionError(
        absl::StrCat(fn, ": no Step since creation or since the last GradNorm"));
  }
  cudaStream_t s = AsCudaStream(stream);
  Result r;
  RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(
      cudaMemcpyAsync(&r, impl_->result.ptr, sizeof(r), cudaMemcpyDeviceToHost, s), fn));
  RLVR_CUDA_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(s), fn));
  AdamWStepResult out;
  out.grad_norm = r.norm;
  out.clip = r.clip;
  out.clipped = r.clipped != 0;
  out.skipped = r.skipped != 0;
  return out;
}

}  // namespace rlvr::kernels::cuda
