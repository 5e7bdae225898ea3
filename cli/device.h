// Device selection of the commands: the `--device cpu|cuda` flag of `rlvr generate` and
// `rlvr logprobs`, and the `device:` key of a training config (`rlvr train`, `rlvr sft`).
// Header-only, so command files that tests compile on their own need nothing else.
//
// CheckDeviceFlag runs before anything is loaded, so a missing backend or GPU fails at once:
//   unknown value          InvalidArgument  `--device: "x" is not one of cpu, cuda`
//   cuda, CUDA not built   FailedPrecondition `--device cuda: built without the CUDA backend
//                          (configure with -DRLVR_CUDA=ON)`
//   cuda, no GPU visible   FailedPrecondition `--device cuda: no CUDA device found`
// CheckTrainingDevice: the same checks for the `device:` key of a training config (`device: cuda`
// runs the learner and the rollout on the GPU), messages naming the key.
#ifndef RLVR_CLI_DEVICE_H_
#define RLVR_CLI_DEVICE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::cli {

namespace internal {
// `prefix` names the flag or key in the messages ("--device:" or "device:"); `cuda_prefix`
// the flag or key set to cuda ("--device cuda:" or "device: cuda:").
inline absl::Status CheckDevice(const std::string& device, const std::string& prefix,
                                const std::string& cuda_prefix) {
  if (device == "cpu") return absl::OkStatus();
  if (device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, " \"", device, "\" is not one of cpu, cuda"));
  }
  if (!kernels::cuda::BuiltWithCuda()) {
    return absl::FailedPreconditionError(absl::StrCat(
        cuda_prefix, " built without the CUDA backend (configure with -DRLVR_CUDA=ON)"));
  }
  absl::StatusOr<int> n = kernels::cuda::DeviceCount();
  if (!n.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(cuda_prefix, " no CUDA device found (", n.status().message(), ")"));
  }
  if (*n == 0) {
    return absl::FailedPreconditionError(absl::StrCat(cuda_prefix, " no CUDA device found"));
  }
  return absl::OkStatus();
}
}  // namespace internal

inline absl::Status CheckDeviceFlag(const std::string& device) {
  return internal::CheckDevice(device, "--device:", "--device cuda:");
}

// `device` is the config's `device` value (cpu or cuda: the learner then runs on the GPU,
// cluster/learner.h UseCuda).
inline absl::Status CheckTrainingDevice(const std::string& device) {
  return internal::CheckDevice(device, "device:", "device: cuda:");
}

}  // namespace rlvr::cli

#endif  // RLVR_CLI_DEVICE_H_
