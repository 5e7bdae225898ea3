// The CUDA side of the kernel interface. Every function exists in every build: with the CUDA
// backend compiled in (RLVR_HAVE_CUDA) it runs on the current device; without it, it returns
// Unimplemented("built without CUDA"), so callers never #ifdef. Errors from the CUDA runtime
// come back as Internal (or ResourceExhausted for out-of-memory) with cudaGetErrorString's text.
// Memory comes from plain cudaMalloc (never managed memory). The full backend is issue 7.
#ifndef RLVR_KERNELS_CUDA_CUDA_H_
#define RLVR_KERNELS_CUDA_CUDA_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rlvr::kernels::cuda {

// A CUDA stream as an opaque handle (cudaStream_t), so headers compile without the CUDA
// toolkit; nullptr is the default (legacy) stream. Kernel entry points taking a Stream are
// asynchronous: they enqueue and return the launch status; errors raised inside a kernel show
// at the next Synchronize.
using Stream = void*;

// Waits for all work on `stream`.
absl::Status Synchronize(Stream stream = nullptr);

// A new stream that does not synchronize with the legacy default stream
// (cudaStreamNonBlocking): work on it is ordered only with other work on it (and with explicit
// synchronization). Stream capture (kernels/cuda/graph.h) needs such a stream. Release it with
// StreamDestroy.
absl::StatusOr<Stream> StreamCreate();
// Destroys a stream from StreamCreate; work already enqueued on it still completes. nullptr is a
// no-op.
void StreamDestroy(Stream stream);

// True if this build has the CUDA backend (whether or not a GPU is present).
bool BuiltWithCuda();
// Number of visible devices; 0 (OK) if the build has CUDA but the machine has no GPU.
absl::StatusOr<int> DeviceCount();

// Device allocation of `bytes` bytes (at least 256-byte aligned); Free(nullptr) is a no-op.
absl::StatusOr<void*> Malloc(size_t bytes);
void Free(void* ptr);
// Zero `bytes` bytes at device pointer `ptr`.
absl::Status Memset0(void* ptr, size_t bytes);
// Blocking copies (on the legacy default stream; not allowed while a stream is being captured).
absl::Status CopyToDevice(void* dst, const void* src, size_t bytes);
absl::Status CopyToHost(void* dst, const void* src, size_t bytes);
// Device-to-device copy of `bytes` bytes, asynchronous on `stream`.
absl::Status CopyOnDevice(void* dst, const void* src, size_t bytes, Stream stream = nullptr);
// Copies enqueued on `stream` (cudaMemcpyAsync), ordered with the kernels on it. The host buffer
// must stay valid and unchanged until the stream is synchronized (with pageable host memory the
// runtime may still read or write it after the call returns). bytes == 0 is a no-op.
absl::Status CopyToDeviceAsync(void* dst, const void* src, size_t bytes, Stream stream);
absl::Status CopyToHostAsync(void* dst, const void* src, size_t bytes, Stream stream);

// out[i] = silu(gate[i]) * up[i] on device pointers, n elements (f32); synchronizes.
absl::Status SwigluForwardF32(const float* gate, const float* up, int64_t n, float* out);

}  // namespace rlvr::kernels::cuda

#endif  // RLVR_KERNELS_CUDA_CUDA_H_
