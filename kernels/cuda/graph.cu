// CUDA graphs through stream capture (see kernels/cuda/graph.h).
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/graph.h"

namespace rlvr::kernels::cuda {

absl::Status BeginCapture(Stream stream) {
  if (stream == nullptr) {
    return absl::InvalidArgumentError(
        "BeginCapture: null stream (the legacy default stream cannot be captured)");
  }
  return CudaStatus(
      cudaStreamBeginCapture(AsCudaStream(stream), cudaStreamCaptureModeThreadLocal),
      "cudaStreamBeginCapture");
}

absl::StatusOr<GraphExec> EndCaptureAndInstantiate(Stream stream) {
  if (stream == nullptr) return absl::InvalidArgumentError("EndCaptureAndInstantiate: null stream");
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(AsCudaStream(stream), &graph);
  if (end != cudaSuccess) {
    // An invalidated capture still leaves capture mode; clear the (non-sticky) error so that
    // the next eager launch's LaunchStatus does not report it.
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    return CudaStatus(end, "cudaStreamEndCapture");
  }
  if (graph == nullptr) return absl::InternalError("cudaStreamEndCapture: no graph");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  const cudaError_t destroy = cudaGraphDestroy(graph);  // the executable graph is independent
  if (inst != cudaSuccess) {
    cudaGetLastError();
    return CudaStatus(inst, "cudaGraphInstantiate");
  }
  if (destroy != cudaSuccess) {
    cudaGraphExecDestroy(exec);
    return CudaStatus(destroy, "cudaGraphDestroy");
  }
  return static_cast<GraphExec>(exec);
}

absl::StatusOr<GraphExec> CaptureGraph(Stream stream, const std::function<absl::Status()>& body) {
  {
    const absl::Status begin = BeginCapture(stream);
    if (!begin.ok()) return begin;
  }
  const absl::Status recorded = body();
  absl::StatusOr<GraphExec> exec = EndCaptureAndInstantiate(stream);
  if (!recorded.ok()) {
    if (exec.ok()) DestroyGraph(*exec);
    return absl::Status(recorded.code(),
                        absl::StrCat("while capturing a CUDA graph: ", recorded.message()));
  }
  return exec;
}

absl::Status LaunchGraph(GraphExec graph, Stream stream) {
  if (graph == nullptr) return absl::InvalidArgumentError("LaunchGraph: null graph");
  return CudaStatus(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), AsCudaStream(stream)),
                    "cudaGraphLaunch");
}

void DestroyGraph(GraphExec graph) {
  if (graph != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph));
}

}  // namespace rlvr::kernels::cuda
