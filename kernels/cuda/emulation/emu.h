// Internal to the host emulation of the CUDA backend
// (kernels/cuda/emulation/*.cc): the stream machinery every emulated entry
// point goes through, and small helpers.
//
// The emulation defines every function of kernels/cuda/{cuda.h, dense.h,
// attention.h, moe.h, model_glue.h, graph.h} on the host, so that the
// model-level code above the CUDA backend runs for real in CI (docs/cuda.md,
// "Host emulation"). Device memory is host memory (Malloc is an aligned host
// allocation, poisoned with 0xFF bytes so that a read of memory nobody wrote
// gives NaN), and a stream is a FIFO of closures:
//   * an entry point validates its arguments on the host exactly as the real
//   one does, checks
//     that every device range it will touch lies inside one live allocation
//     (the emulation's stand-in for an illegal-address fault), then Enqueue()s
//     a closure (arguments by value, pointers as pointers);
//   * a stream's closures run, in order, when the host waits for it:
//   Synchronize(stream), a
//     blocking copy or Memset0 (the legacy default stream), Free (device-wide),
//     StreamDestroy, and the entry points documented to synchronize. Work is
//     therefore NOT done when a call returns: a caller that reads results
//     without the synchronization a GPU needs reads stale data here too.
//     RLVR_CUDA_EMU_EAGER=1 in the environment runs every closure at once
//     instead (to tell an ordering bug from a numerical one);
//   * a stream in capture (graph.h) appends the closures to the graph being
//   recorded instead;
//     LaunchGraph enqueues the recorded closures, so a replay reads the buffers
//     as they are when it runs. Blocking calls (Synchronize, blocking copies,
//     Malloc, Free, Memset0) made by the capturing thread fail the capture, as
//     cudaStreamCaptureModeThreadLocal does, and so does a GEMM on a stream
//     whose cuBLASLt workspace was never allocated (it would cudaMalloc).
// All of it is serialized by one process-wide mutex.
#ifndef RLVR_KERNELS_CUDA_EMULATION_EMU_H_
#define RLVR_KERNELS_CUDA_EMULATION_EMU_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda::emu {

// Appends `work` to `stream` (nullptr: the legacy default stream), or to the
// graph it is capturing. Internal error for a stream that StreamCreate did not
// return or that was destroyed.
absl::Status Enqueue(const char *fn, Stream stream, std::function<void()> work);

// OK when [ptr, ptr + bytes) lies inside one live Malloc allocation (bytes ==
// 0: always OK); otherwise Internal naming fn and the argument ("out of bounds"
// on a GPU).
absl::Status CheckRange(const char *fn, const char *name, const void *ptr,
                        size_t bytes);
template <typename T>
absl::Status CheckElems(const char *fn, const char *name, const T *ptr,
                        int64_t elems) {
  if (elems <= 0)
    return absl::OkStatus();
  return CheckRange(fn, name, ptr, static_cast<size_t>(elems) * sizeof(T));
}
// Elements spanned by a row-major [rows, cols] matrix with leading dimension
// ld.
inline int64_t Span(int64_t rows, int64_t cols, int64_t ld) {
  return rows <= 0 || cols <= 0 ? 0 : (rows - 1) * ld + cols;
}

// Blocking waits: drain the stream's queue (all queues for DeviceSynchronize).
// They fail, and invalidate the capture, while the calling thread captures a
// stream.
absl::Status SynchronizeStream(const char *fn, Stream stream);
absl::Status DeviceSynchronize(const char *fn);
// Internal error (and the capture invalidated) if this thread is capturing a
// stream: for calls that are not allowed during capture.
absl::Status ForbiddenWhileCapturing(const char *what);
// True if `stream` is being captured.
bool IsCapturing(Stream stream);

// The GEMM workspace registry (gemm.cu allocates one per stream on first use).
absl::Status EnsureGemmWorkspace(const char *fn, Stream stream);
void ReleaseGemmWorkspaceFor(Stream stream);

// For checks that need device contents (known only when the work runs): prints
// "emulation: <fn>: <what>" and aborts, as an illegal address would end a GPU
// program.
[[noreturn]] void Die(const std::string &what);
// Die() unless [ptr, ptr + bytes) lies inside one live allocation.
void DieIfOutOfRange(const char *fn, const char *name, const void *ptr,
                     size_t bytes);

// C[M, N] = op(A) op(B) + beta C (row-major, leading dimensions,
// kernels::Gemm's contract) in fp32 arithmetic on the host. `bf16_operands`: A
// and B hold bf16 values (exact in bf16), so the CPU GEMM may run under any
// MatmulPrecision; otherwise it runs in double when the CPU's float GEMM would
// round the operands (MatmulInBf16()).
void HostGemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
              const float *A, int64_t lda, const float *B, int64_t ldb,
              float beta, float *C, int64_t ldc, bool bf16_operands);

// "<fn>: <what>" as InvalidArgument (the real kernels' wording).
template <typename... Parts>
absl::Status Bad(const char *fn, const Parts &...parts) {
  return absl::InvalidArgumentError(absl::StrCat(fn, ": ", parts...));
}

inline float Bf(uint16_t bits) { return Bf16ToF32(bits); }
inline uint16_t ToBf(float v) { return F32ToBf16(v); }
inline float Load(const float *p) { return *p; }
inline float Load(const uint16_t *p) { return Bf16ToF32(*p); }
inline void Store(float *p, float v) { *p = v; }
inline void Store(uint16_t *p, float v) { *p = F32ToBf16(v); }

} // namespace rlvr::kernels::cuda::emu

#endif // RLVR_KERNELS_CUDA_EMULATION_EMU_H_
