// CUDA graphs through stream capture: the kernels (and cuBLASLt calls) that a function enqueues
// on a stream are recorded once and replayed later with a single launch, which removes the
// per-launch host cost of a launch-bound sequence such as a small model's decode step.
//
// A replay runs the recorded launches with the arguments they had at capture time: the same
// device pointers, sizes and grid shapes. Anything that changes between replays must therefore
// live in device memory at a fixed address (the caller refreshes it with a copy enqueued on the
// same stream before LaunchGraph), and anything that changes a launch configuration or a pointer
// (a reallocated buffer, another batch size) needs another graph.
//
// Rules for the captured work (CUDA's, checked by the runtime: a violation fails the capture):
// it must run on a created stream (StreamCreate; the legacy default stream cannot be captured),
// it must not synchronize (no blocking cudaMemcpy, no cudaStreamSynchronize, no cudaMalloc /
// cudaFree in this thread: capture mode cudaStreamCaptureModeThreadLocal), and libraries must
// already be warmed up (cuBLASLt's algorithm choice and workspace, lazily loaded kernel
// modules), which in practice means running the same work once eagerly before capturing it.
//
// Errors: Internal with the CUDA error text (e.g. "operation not permitted when stream is
// capturing"), InvalidArgument for a null stream or graph, Unimplemented without the CUDA
// backend. Thread safety: a GraphExec may be launched from any thread, but not concurrently with
// itself (CUDA serializes launches of one executable graph on its stream).
#ifndef RLVR_KERNELS_CUDA_GRAPH_H_
#define RLVR_KERNELS_CUDA_GRAPH_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::kernels::cuda {

// An executable graph (cudaGraphExec_t) as an opaque handle; nullptr is "none".
using GraphExec = void*;

// Records what `body` enqueues on `stream` (cudaStreamBeginCapture in ThreadLocal mode ...
// cudaStreamEndCapture) and instantiates it. Nothing runs: the captured work executes only at
// LaunchGraph. The stream always leaves capture mode before this returns, also when `body`
// fails or the runtime invalidated the capture (then the error is returned, with body's error
// first, and the stream can be used eagerly again). `stream` must be a created stream.
absl::StatusOr<GraphExec> CaptureGraph(Stream stream, const std::function<absl::Status()>& body);

// The pieces of CaptureGraph, for callers that need them separately. EndCaptureAndInstantiate
// ends the capture begun by BeginCapture on the same stream (always, even when it then fails).
absl::Status BeginCapture(Stream stream);
absl::StatusOr<GraphExec> EndCaptureAndInstantiate(Stream stream);

// Enqueues one replay of `graph` on `stream` (asynchronous, like a kernel launch).
absl::Status LaunchGraph(GraphExec graph, Stream stream);

// Frees an executable graph; nullptr is a no-op. Graphs still running finish first.
void DestroyGraph(GraphExec graph);

}  // namespace rlvr::kernels::cuda

#endif  // RLVR_KERNELS_CUDA_GRAPH_H_
