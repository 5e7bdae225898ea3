#include "policy/optim/adamw.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/safetensors.h"
#include "core/status.h"

namespace rlvr::policy {

absl::StatusOr<LrSchedule> ParseLrSchedule(const std::string& name) {
  if (name == "constant") return LrSchedule::kConstant;
  if (name == "cosine") return LrSchedule::kCosine;
  if (name == "linear") return LrSchedule::kLinear;
  return absl::InvalidArgumentError(
      absl::StrCat("lr schedule: expected constant, cosine or linear, got \"", name, "\""));
}

absl::Status AdamWConfig::Validate() const {
  auto err = [](const char* field, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("adamw.", field, ": ", what));
  };
  if (!(lr >= 0)) return err("lr", "must be non-negative");
  if (!(beta1 >= 0 && beta1 < 1)) return err("beta1", "must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) return err("beta2", "must be in [0, 1)");
  if (!(eps > 0)) return err("eps", "must be positive");
  if (!(weight_decay >= 0)) return err("weight_decay", "must be non-negative");
  if (warmup_steps < 0) return err("warmup_steps", "must be non-negative");
  if (schedule != LrSchedule::kConstant && total_steps <= warmup_steps) {
    return err("total_steps", absl::StrCat(total_steps, " must exceed warmup_steps ", warmup_steps,
                                           " for a decaying schedule"));
  }
  if (!(min_lr_ratio >= 0 && min_lr_ratio <= 1)) return err("min_lr_ratio", "must be in [0, 1]");
  return absl::OkStatus();
}

double LearningRate(const AdamWConfig& c, int64_t step) {
  if (step < c.warmup_steps) {
    return c.lr * static_cast<double>(step + 1) / static_cast<double>(c.warmup_steps);
  }
  if (c.schedule == LrSchedule::kConstant) return c.lr;
  double progress = static_cast<double>(step - c.warmup_steps) /
                    static_cast<double>(std::max<int64_t>(1, c.total_steps - c.warmup_steps));
  progress = std::clamp(progress, 0.0, 1.0);
  const double m = c.min_lr_ratio;
  if (c.schedule == LrSchedule::kCosine) {
    return c.lr * (m + (1 - m) * 0.5 * (1 + std::cos(std::numbers::pi * progress)));
  }
  return c.lr * (m + (1 - m) * (1 - progress));
}

AdamW::AdamW(const AdamWConfig& config, std::vector<OptimParam> params)
    : config_(config), params_(std::move(params)) {
  for (const OptimParam& p : params_) {
    m_.emplace_back(static_cast<size_t>(p.numel), 0.0f);
    v_.emplace_back(static_cast<size_t>(p.numel), 0.0f);
  }
}

absl::StatusOr<AdamW> AdamW::Create(const AdamWConfig& config, std::vector<OptimParam> params) {
  RLVR_RETURN_IF_ERROR(config.Validate());
  absl::flat_hash_set<std::string> names;
  for (const OptimParam& p : params) {
    if (p.data == nullptr || p.grad == nullptr || p.numel <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamW: parameter ", p.name, " has no data, no gradient or no elements"));
    }
    if (!names.insert(p.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("AdamW: duplicate parameter ", p.name));
    }
  }
  return AdamW(config, std::move(params));
}

double AdamW::GradNorm() const {
  double total = 0;
  for (const OptimParam& p : params_) {
    const float* g = p.grad;
    const int64_t n = p.numel;
    double s = 0;
#pragma omp parallel for simd reduction(+ : s) schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(g[i]) * g[i];
    total += s;
  }
  return std::sqrt(total);
}

StepStats AdamW::Step() {
  StepStats st;
  st.grad_norm = GradNorm();
  if (!std::isfinite(st.grad_norm)) {
    st.skipped = true;
    return st;
  }
  float clip = 1.0f;
  if (config_.max_grad_norm > 0 && st.grad_norm > config_.max_grad_norm) {
    clip = static_cast<float>(config_.max_grad_norm / (st.grad_norm + 1e-6));
    st.clipped = true;
  }
  ++step_;
  st.lr = LearningRate(config_, step_ - 1);
  const double b1 = config_.beta1, b2 = config_.beta2;
  const float bc1 = static_cast<float>(1.0 - std::pow(b1, static_cast<double>(step_)));
  const float bc2_sqrt =
      static_cast<float>(std::sqrt(1.0 - std::pow(b2, static_cast<double>(step_))));
  const float lr = static_cast<float>(st.lr);
  const float step_size = lr / bc1;
  const float eps = static_cast<float>(config_.eps);
  const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
  for (size_t k = 0; k < params_.size(); ++k) {
    OptimParam& p = params_[k];
    const float decay = p.decay ? 1.0f - lr * static_cast<float>(config_.weight_decay) : 1.0f;
    float* w = p.data;
    const float* g = p.grad;
    float* m = m_[k].data();
    float* v = v_[k].data();
    const int64_t n = p.numel;
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i] * clip;  // the clipped gradient; g itself is not written
      m[i] = fb1 * m[i] + (1.0f - fb1) * gi;
      v[i] = fb2 * v[i] + (1.0f - fb2) * gi * gi;
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      w[i] = w[i] * decay - step_size * m[i] / denom;
    }
  }
  return st;
}

absl::Status AdamW::Save(const std::string& path) const {
  std::vector<TensorToWrite> tensors;
  for (size_t k = 0; k < params_.size(); ++k) {
    const OptimParam& p = params_[k];
    auto bytes = [](const std::vector<float>& x) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(x.data()),
                                      x.size() * sizeof(float));
    };
    tensors.push_back({.name = "exp_avg." + p.name,
                       .dtype = DType::kF32,
                       .shape = {p.numel},
                       .data = bytes(m_[k])});
    tensors.push_back({.name = "exp_avg_sq." + p.name,
                       .dtype = DType::kF32,
                       .shape = {p.numel},
                       .data = bytes(v_[k])});
  }
  SafetensorsMetadata meta = {
      {"format", "rlvr-adamw"}, {"version", "1"}, {"step", absl::StrCat(step_)}};
  return WriteSafetensors(path, tensors, meta);
}

absl::Status AdamW::Load(const std::string& path) {
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::Open(path));
  const SafetensorsMetadata& meta = f->metadata();
  auto fmt = meta.find("format");
  if (fmt == meta.end() || fmt->second != "rlvr-adamw") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": __metadata__.format: expected \"rlvr-adamw\""));
  }
  auto st = meta.find("step");
  int64_t step = 0;
  if (st == meta.end() || !absl::SimpleAtoi(st->second, &step) || step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": __metadata__.step: missing or not a non-negative integer"));
  }
  if (f->tensors().size() != 2 * params_.size()) {
    for (const TensorView& t : f->tensors()) {
      const bool known = [&] {
        for (const OptimParam& p : params_) {
          if (t.name == "exp_avg." + p.name || t.name == "exp_avg_sq." + p.name) return true;
        }
        return false;
      }();
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor ", t.name, " matches no parameter (extra tensor)"));
      }
    }
  }
  std::vector<std::vector<float>> m(params_.size()), v(params_.size());
  for (size_t k = 0; k < params_.size(); ++k) {
    const OptimParam& p = params_[k];
    for (int which = 0; which < 2; ++which) {
      const std::string name = (which == 0 ? "exp_avg." : "exp_avg_sq.") + p.name;
      const TensorView* t = f->Find(name);
      if (t == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", name, " is missing"));
      }
      if (t->dtype != DType::kF32) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", name, ": dtype ",
                                                       std::string(DTypeName(t->dtype)),
                                                       ", expected F32"));
      }
      if (t->num_elements() != p.numel) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": tensor ", name, ": ", t->num_elements(), " elements, expected ", p.numel));
      }
      std::vector<float>& dst = which == 0 ? m[k] : v[k];
      dst.resize(static_cast<size_t>(p.numel));
      std::memcpy(dst.data(), t->data.data(), dst.size() * sizeof(float));
    }
  }
  m_ = std::move(m);
  v_ = std::move(v);
  step_ = step;
  return absl::OkStatus();
}

}  // namespace rlvr::policy
