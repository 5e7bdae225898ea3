// kernels/cuda/graph.h in a build without the CUDA backend: each entry returns Unimplemented.
#include "kernels/cuda/graph.h"

namespace rlvr::kernels::cuda {
namespace {
absl::Status NoCuda() { return absl::UnimplementedError("built without CUDA"); }
}  // namespace

absl::StatusOr<GraphExec> CaptureGraph(Stream, const std::function<absl::Status()>&) {
  return NoCuda();
}
absl::Status BeginCapture(Stream) { return NoCuda(); }
absl::StatusOr<GraphExec> EndCaptureAndInstantiate(Stream) { return NoCuda(); }
absl::Status LaunchGraph(GraphExec, Stream) { return NoCuda(); }
void DestroyGraph(GraphExec) {}

}  // namespace rlvr::kernels::cuda
