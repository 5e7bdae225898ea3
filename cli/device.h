// Device selection of the commands: the `--device cpu|cuda` flag of `rlvr generate` and
// `rlvr logprobs`, and the `device:` key of a training config (`rlvr train`, `rlvr sft`).
// Header-only, so command files that tests compile on their own need nothing else.
//
// CheckDeviceFlag runs before anything is loaded, so a missing backend or GPU fails at once:
//   unknown value          InvalidArgument  `--device: "x" is not one of cpu, cuda`
//   cuda, CUDA not built   FailedPrecondition `--device cuda: built without the CUDA backend
//                          (configure with -DRLVR_CUDA=ON)`
//   cuda, no GPU visible   FailedPrecondition `--device cuda: no CUDA device found`
// CheckTrainingDevice: training runs on the CPU only for now (issue 7), so `device: cuda`
// is FailedPrecondition naming the key.
#ifndef RLVR_CLI_DEVICE_H_
#define RLVR_CLI_DEVICE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda.h"

namespace rlvr::cli {

inline absl::Status CheckDeviceFlag(const std::string& device) {
  if (device == "cpu") return absl::OkStatus();
  if (device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device: \"", device, "\" is not one of cpu, cuda"));
  }
  if (!kernels::cuda::BuiltWithCuda()) {
    return absl::FailedPreconditionError(
        "--device cuda: built without the CUDA backend (configure with -DRLVR_CUDA=ON)");
  }
  absl::StatusOr<int> n = kernels::cuda::DeviceCount();
  if (!n.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--device cuda: no CUDA device found (", n.status().message(), ")"));
  }
  if (*n == 0) return absl::FailedPreconditionError("--device cuda: no CUDA device found");
  return absl::OkStatus();
}

// `device` is the config's `device` value (already checked to be cpu or cuda).
inline absl::Status CheckTrainingDevice(const std::string& device) {
  if (device == "cuda") {
    return absl::FailedPreconditionError(
        "device: cuda: the learner does not run on the GPU yet (the GPU training step exists, "
        "policy/model/cuda_train.h, but is not wired into train/sft; issue 7); use device: cpu");
  }
  return absl::OkStatus();
}

}  // namespace rlvr::cli

#endif  // RLVR_CLI_DEVICE_H_
