// AdamW with fp32 state, global gradient-norm clipping and warmup + cosine/constant/linear
// learning-rate schedules; state saved to and restored from safetensors.
//
// One Step() does, in this order (PyTorch's clip_grad_norm_ + torch.optim.AdamW):
//   norm = sqrt(sum over all parameters of grad^2)     (computed in double)
//   if max_grad_norm > 0 and norm > max_grad_norm: every grad g below is scaled by
//       max_grad_norm / (norm + 1e-6)  (inside the update: the gradient buffers are not written)
//   t += 1; lr = LearningRate(config, t - 1)
//   for every element:  p *= 1 - lr * wd   (wd = weight_decay for decay parameters, else 0)
//                       m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//                       p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// A non-finite gradient norm skips the whole update (no parameter or state changes, t is not
// advanced) and reports it in StepStats, so one bad batch does not poison the weights.
//
// Ownership: the optimizer keeps raw pointers to the parameters and gradients it was given;
// they must outlive it and keep their addresses. Not thread-safe; the update itself runs on
// the OpenMP team.
#ifndef RLVR_POLICY_OPTIM_ADAMW_H_
#define RLVR_POLICY_OPTIM_ADAMW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rlvr::policy {

enum class LrSchedule { kConstant, kCosine, kLinear };

// Parses "constant", "cosine", "linear"; InvalidArgument naming the value otherwise.
absl::StatusOr<LrSchedule> ParseLrSchedule(const std::string& name);

struct AdamWConfig {
  double lr = 1e-6;  // peak learning rate
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;  // <= 0: no clipping
  // Linear warmup from 0 over warmup_steps steps, then the schedule from lr down to
  // lr * min_lr_ratio at total_steps (cosine, linear) or flat (constant).
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // needed by cosine and linear
  LrSchedule schedule = LrSchedule::kConstant;
  double min_lr_ratio = 0.0;

  // InvalidArgument naming the field (negative lr, beta outside [0, 1), ...).
  absl::Status Validate() const;
};

// The learning rate used by the update of step `step` (0-based):
//   step < warmup:  lr * (step + 1) / warmup
//   then, with progress = (step - warmup) / max(1, total - warmup) clamped to [0, 1]:
//   constant: lr;  cosine: lr * (min + (1 - min) * (1 + cos(pi * progress)) / 2);
//   linear: lr * (min + (1 - min) * (1 - progress)).
double LearningRate(const AdamWConfig& config, int64_t step);

// One parameter tensor handed to the optimizer.
struct OptimParam {
  std::string name;  // unique; keys the saved state
  float* data = nullptr;
  float* grad = nullptr;  // read only: clipping scales it inside the update, not in place
  int64_t numel = 0;
  bool decay = true;  // weight decay applies
};

struct StepStats {
  double grad_norm = 0;  // before clipping
  double lr = 0;
  bool clipped = false;
  bool skipped = false;  // non-finite gradient norm: nothing was updated
};

class AdamW {
 public:
  // InvalidArgument for a bad config, a null pointer, a non-positive numel or a duplicate name.
  static absl::StatusOr<AdamW> Create(const AdamWConfig& config, std::vector<OptimParam> params);

  StepStats Step();

  // Steps taken (t).
  int64_t step() const { return step_; }
  const AdamWConfig& config() const { return config_; }
  void set_config(const AdamWConfig& config) { config_ = config; }
  // The global gradient norm of the current gradients (no clipping).
  double GradNorm() const;

  // Writes the state (exp_avg.<name>, exp_avg_sq.<name>, the step count in the metadata) to
  // `path` atomically.
  absl::Status Save(const std::string& path) const;
  // Restores a state written by Save() for the same parameter names and sizes. Errors name the
  // file and the tensor (missing, extra, wrong size, wrong dtype) or the metadata key.
  absl::Status Load(const std::string& path);

  // The parameters as given to Create and their moments (index i of params()), and the step
  // count: for moving the state to and from a device optimizer (policy/model/cuda_train.h).
  const std::vector<OptimParam>& params() const { return params_; }
  std::vector<float>& exp_avg(size_t i) { return m_[i]; }
  std::vector<float>& exp_avg_sq(size_t i) { return v_[i]; }
  void set_step(int64_t step) { step_ = step; }

 private:
  AdamW(const AdamWConfig& config, std::vector<OptimParam> params);

  AdamWConfig config_;
  std::vector<OptimParam> params_;
  std::vector<std::vector<float>> m_;  // exp_avg per parameter
  std::vector<std::vector<float>> v_;  // exp_avg_sq per parameter
  int64_t step_ = 0;
};

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_OPTIM_ADAMW_H_
