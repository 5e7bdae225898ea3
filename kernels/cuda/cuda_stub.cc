// The CUDA entry points in a build without the CUDA backend: each returns Unimplemented.
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {
namespace {
absl::Status NoCuda() { return absl::UnimplementedError("built without CUDA"); }
}  // namespace

absl::Status Synchronize(Stream) { return NoCuda(); }
absl::StatusOr<Stream> StreamCreate() { return NoCuda(); }
void StreamDestroy(Stream) {}
bool BuiltWithCuda() { return false; }
absl::StatusOr<int> DeviceCount() { return NoCuda(); }
absl::StatusOr<void*> Malloc(size_t) { return NoCuda(); }
void Free(void*) {}
absl::Status Memset0(void*, size_t) { return NoCuda(); }
absl::Status CopyToDevice(void*, const void*, size_t) { return NoCuda(); }
absl::Status CopyToHost(void*, const void*, size_t) { return NoCuda(); }
absl::Status CopyOnDevice(void*, const void*, size_t, Stream) { return NoCuda(); }
absl::Status CopyToDeviceAsync(void*, const void*, size_t, Stream) { return NoCuda(); }
absl::Status CopyToHostAsync(void*, const void*, size_t, Stream) { return NoCuda(); }
absl::Status SwigluForwardF32(const float*, const float*, int64_t, float*) { return NoCuda(); }

}  // namespace rlvr::kernels::cuda
