#include "cluster/learner.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace rlvr::cluster {

namespace losses = policy::losses;

int64_t TokenBatch::num_target_tokens() const {
  int64_t n = 0;
  for (uint8_t m : mask) n += m != 0;
  return n;
}

int64_t TokenBatch::num_replayed_tokens() const {
  if (experts.empty()) return 0;
  int64_t n = 0;
  const int64_t row = moe_layers * top_k;
  for (int64_t i = 0; i < B * T; ++i) n += experts[i * row] >= 0;
  return n;
}

absl::StatusOr<TokenBatch> MakeTokenBatch(const std::vector<std::vector<int32_t>>& prompts,
                                          const std::vector<std::vector<int32_t>>& completions) {
  if (prompts.size() != completions.size()) {
    return absl::InvalidArgumentError(absl::StrCat("batch: ", prompts.size(), " prompts but ",
                                                   completions.size(), " completions"));
  }
  TokenBatch b;
  b.B = static_cast<int64_t>(prompts.size());
  for (int64_t i = 0; i < b.B; ++i) {
    if (prompts[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("batch: row ", i, " has an empty prompt"));
    }
    b.T = std::max<int64_t>(b.T, prompts[i].size() + completions[i].size());
  }
  b.ids.assign(b.B * b.T, 0);
  b.targets.assign(b.B * b.T, -1);
  b.mask.assign(b.B * b.T, 0);
  b.prompt_len.resize(b.B);
  b.completion_len.resize(b.B);
  b.examples_per_row.assign(b.B, 1);
  for (int64_t i = 0; i < b.B; ++i) {
    const auto& p = prompts[i];
    const auto& c = completions[i];
    int64_t P = static_cast<int64_t>(p.size()), L = static_cast<int64_t>(c.size());
    b.prompt_len[i] = P;
    b.completion_len[i] = L;
    int32_t* row = b.ids.data() + i * b.T;
    std::copy(p.begin(), p.end(), row);
    std::copy(c.begin(), c.end(), row + P);
    for (int64_t j = 0; j < L; ++j) {
      b.targets[i * b.T + P + j - 1] = c[j];
      b.mask[i * b.T + P + j - 1] = 1;
    }
  }
  return b;
}

absl::StatusOr<TokenBatch> MakePackedTokenBatch(
    const std::vector<std::vector<int32_t>>& prompts,
    const std::vector<std::vector<int32_t>>& completions, int64_t max_row_tokens) {
  if (prompts.size() != completions.size()) {
    return absl::InvalidArgumentError(absl::StrCat("batch: ", prompts.size(), " prompts but ",
                                                   completions.size(), " completions"));
  }
  // First fit: rows[r] lists the examples of row r; used[r] its length.
  std::vector<std::vector<size_t>> rows;
  std::vector<int64_t> used;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("batch: example ", i, " has an empty prompt"));
    }
    const int64_t len = static_cast<int64_t>(prompts[i].size() + completions[i].size());
    if (len > max_row_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch: example ", i, " has ", len, " tokens, more than a row's ", max_row_tokens));
    }
    size_t r = 0;
    while (r < rows.size() && used[r] + len > max_row_tokens) ++r;
    if (r == rows.size()) {
      rows.emplace_back();
      used.push_back(0);
    }
    rows[r].push_back(i);
    used[r] += len;
  }
  TokenBatch b;
  b.B = static_cast<int64_t>(rows.size());
  for (int64_t u : used) b.T = std::max(b.T, u);
  b.ids.assign(b.B * b.T, 0);
  b.targets.assign(b.B * b.T, -1);
  b.mask.assign(b.B * b.T, 0);
  b.positions.assign(b.B * b.T, 0);
  b.prompt_len.assign(b.B, 0);
  b.completion_len.assign(b.B, 0);
  b.examples_per_row.assign(b.B, 0);
  for (int64_t r = 0; r < b.B; ++r) {
    int64_t a = 0;  // start of the next example in the row
    int32_t* row = b.ids.data() + r * b.T;
    for (size_t i : rows[r]) {
      const auto& p = prompts[i];
      const auto& c = completions[i];
      const int64_t P = static_cast<int64_t>(p.size()), L = static_cast<int64_t>(c.size());
      std::copy(p.begin(), p.end(), row + a);
      std::copy(c.begin(), c.end(), row + a + P);
      for (int64_t t = 0; t < P + L; ++t) b.positions[r * b.T + a + t] = static_cast<int32_t>(t);
      for (int64_t j = 0; j < L; ++j) {
        b.targets[r * b.T + a + P + j - 1] = c[j];
        b.mask[r * b.T + a + P + j - 1] = 1;
      }
      b.prompt_len[r] += P;
      b.completion_len[r] += L;
      ++b.examples_per_row[r];
      a += P + L;
    }
    // Padding: one more sequence of its own, which nothing attends to.
    for (int64_t t = a; t < b.T; ++t) b.positions[r * b.T + t] = static_cast<int32_t>(t - a);
  }
  return b;
}

absl::Status AttachRouterReplay(TokenBatch* batch,
                                const std::vector<std::vector<int32_t>>& prompt_experts,
                                const std::vector<std::vector<int32_t>>& completion_experts,
                                int64_t moe_layers, int64_t top_k) {
  if (moe_layers < 1 || top_k < 1) {
    return absl::InvalidArgumentError(absl::StrCat("router replay: ", moe_layers,
                                                   " MoE layers x top_k ", top_k,
                                                   " (the rollout recorded no experts?)"));
  }
  if (static_cast<int64_t>(prompt_experts.size()) != batch->B ||
      static_cast<int64_t>(completion_experts.size()) != batch->B) {
    return absl::InvalidArgumentError(absl::StrCat(
        "router replay: ", prompt_experts.size(), " prompt and ", completion_experts.size(),
        " completion expert records for a batch of ", batch->B, " rows"));
  }
  const int64_t row = moe_layers * top_k;
  for (int64_t b = 0; b < batch->B; ++b) {
    const int64_t P = batch->prompt_len[b], L = batch->completion_len[b];
    const auto& pe = prompt_experts[b];
    const auto& ce = completion_experts[b];
    if (!pe.empty() && static_cast<int64_t>(pe.size()) != P * row) {
      return absl::InvalidArgumentError(absl::StrCat(
          "router replay: row ", b, ": prompt experts have ", pe.size(),
          " ids, expected prompt tokens x moe layers x top_k = ", P, " x ", moe_layers, " x ",
          top_k, " = ", P * row));
    }
    if (static_cast<int64_t>(ce.size()) != L * row) {
      return absl::InvalidArgumentError(absl::StrCat(
          "router replay: row ", b, ": completion experts have ", ce.size(),
          " ids, expected completion tokens x moe layers x top_k = ", L, " x ", moe_layers,
          " x ", top_k, " = ", L * row));
    }
  }
  batch->moe_layers = moe_layers;
  batch->top_k = top_k;
  batch->experts.assign(batch->B * batch->T * row, -1);
  for (int64_t b = 0; b < batch->B; ++b) {
    int32_t* dst = batch->experts.data() + b * batch->T * row;
    const int64_t P = batch->prompt_len[b];
    std::copy(prompt_experts[b].begin(), prompt_experts[b].end(), dst);
    std::copy(completion_experts[b].begin(), completion_experts[b].end(), dst + P * row);
  }
  return absl::OkStatus();
}

TokenBatch SliceRows(const TokenBatch& batch, int64_t begin, int64_t end) {
  TokenBatch s;
  s.B = end - begin;
  for (int64_t i = begin; i < end; ++i) {
    s.T = std::max(s.T, batch.prompt_len[i] + batch.completion_len[i]);
  }
  s.ids.assign(s.B * s.T, 0);
  s.targets.assign(s.B * s.T, -1);
  s.mask.assign(s.B * s.T, 0);
  const int64_t row = batch.moe_layers * batch.top_k;
  if (!batch.experts.empty()) {
    s.moe_layers = batch.moe_layers;
    s.top_k = batch.top_k;
    s.experts.assign(s.B * s.T * row, -1);
  }
  for (int64_t i = begin; i < end; ++i) {
    int64_t r = i - begin;
    std::copy_n(batch.ids.data() + i * batch.T, s.T, s.ids.data() + r * s.T);
    std::copy_n(batch.targets.data() + i * batch.T, s.T, s.targets.data() + r * s.T);
    std::copy_n(batch.mask.data() + i * batch.T, s.T, s.mask.data() + r * s.T);
    if (!batch.experts.empty()) {
      std::copy_n(batch.experts.data() + i * batch.T * row, s.T * row,
                  s.experts.data() + r * s.T * row);
    }
    s.prompt_len.push_back(batch.prompt_len[i]);
    s.completion_len.push_back(batch.completion_len[i]);
    if (!batch.examples_per_row.empty()) s.examples_per_row.push_back(batch.examples_per_row[i]);
  }
  if (!batch.positions.empty()) {
    // Cut each row to the new width; the padding after the used length stays a sequence of its
    // own (positions counting from 0 where it starts).
    s.positions.assign(s.B * s.T, 0);
    for (int64_t i = begin; i < end; ++i) {
      std::copy_n(batch.positions.data() + i * batch.T, s.T,
                  s.positions.data() + (i - begin) * s.T);
    }
  }
  return s;
}

absl::StatusOr<policy::AdamWConfig> AdamWConfigFromConfig(const proto::OptimizerConfig& o,
                                                          int64_t total_steps) {
  policy::AdamWConfig oc;
  oc.lr = o.lr();
  oc.beta1 = o.beta1();
  oc.beta2 = o.beta2();
  oc.eps = o.eps();
  oc.weight_decay = o.weight_decay();
  oc.max_grad_norm = o.grad_clip();
  oc.warmup_steps = o.warmup_steps();
  oc.total_steps = total_steps;
  oc.min_lr_ratio = o.min_lr_ratio();
  RLVR_ASSIGN_OR_RETURN(oc.schedule, policy::ParseLrSchedule(o.schedule()),
                        "optimizer.schedule");
  return oc;
}

std::vector<policy::OptimParam> TrainableParams(policy::CausalLM<float>* model) {
  std::vector<policy::OptimParam> params;
  for (const auto& p : model->params()) {
    if (p.trainable) params.push_back({p.name, model->data(p), model->grad(p), p.numel, p.decay});
  }
  return params;
}

namespace {

// Copies rows [begin, end) of a [B, T] array into a [rows, t_out] array.
std::vector<float> SliceValues(const std::vector<float>& v, int64_t T, int64_t begin, int64_t end,
                               int64_t t_out) {
  std::vector<float> out((end - begin) * t_out, 0.0f);
  if (v.empty()) return {};
  for (int64_t i = begin; i < end; ++i) {
    std::copy_n(v.data() + i * T, t_out, out.data() + (i - begin) * t_out);
  }
  return out;
}

}  // namespace

absl::Status Learner::UseCuda(const policy::CudaTrainOptions& options) {
  if (optimizer_ == nullptr) {
    return absl::FailedPreconditionError("device: cuda: the learner has no optimizer");
  }
  RLVR_ASSIGN_OR_RETURN(gpu_, policy::CudaTrainModel::Create(*model_, options), "device: cuda");
  return SyncFromHost();
}

absl::Status Learner::SyncFromHost() {
  if (gpu_ == nullptr) return absl::OkStatus();
  RLVR_RETURN_IF_ERROR(gpu_->UploadParams(*model_), "device: cuda: weights");
  const size_t P = static_cast<size_t>(model_->num_param_elements());
  std::vector<float> m(P, 0.0f), v(P, 0.0f);
  const std::vector<policy::OptimParam>& params = optimizer_->params();
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t off = params[i].data - model_->param_data();
    std::copy(optimizer_->exp_avg(i).begin(), optimizer_->exp_avg(i).end(), m.begin() + off);
    std::copy(optimizer_->exp_avg_sq(i).begin(), optimizer_->exp_avg_sq(i).end(),
              v.begin() + off);
  }
  return gpu_->UploadOptimizerState(m.data(), v.data(), optimizer_->step());
}

absl::Status Learner::SyncOptimizerToHost() {
  if (gpu_ == nullptr) return absl::OkStatus();
  const size_t P = static_cast<size_t>(model_->num_param_elements());
  std::vector<float> m(P), v(P);
  RLVR_RETURN_IF_ERROR(gpu_->DownloadOptimizerState(m.data(), v.data()), "device: cuda");
  const std::vector<policy::OptimParam>& params = optimizer_->params();
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t off = params[i].data - model_->param_data();
    std::copy_n(m.begin() + off, params[i].numel, optimizer_->exp_avg(i).begin());
    std::copy_n(v.begin() + off, params[i].numel, optimizer_->exp_avg_sq(i).begin());
  }
  optimizer_->set_step(gpu_->optimizer_steps());
  return absl::OkStatus();
}

absl::Status Learner::WeightsToHost() {
  if (gpu_ == nullptr) return absl::OkStatus();
  return gpu_->DownloadParams(model_);
}

absl::Status Learner::TokenLogProbs(const int32_t* targets, float* logprob, float* entropy) {
  if (gpu_ != nullptr) return gpu_->TokenLogProbs(targets, logprob, entropy);
  return model_->TokenLogProbs(targets, logprob, entropy);
}

absl::Status Learner::ZeroGrads() {
  if (gpu_ != nullptr) return gpu_->ZeroGrads();
  model_->ZeroGrads();
  return absl::OkStatus();
}

absl::Status Learner::Backward(const float* dlogprob, double aux_weight) {
  if (gpu_ != nullptr) return gpu_->Backward(dlogprob, nullptr, aux_weight);
  return model_->Backward(dlogprob, nullptr, aux_weight);
}

double Learner::aux_loss() const {
  return gpu_ != nullptr ? gpu_->aux_loss() : model_->aux_loss();
}

std::vector<policy::MoeLayerStats> Learner::moe_stats() const {
  return gpu_ != nullptr ? gpu_->moe_stats() : model_->moe_stats();
}

absl::StatusOr<policy::StepStats> Learner::OptimizerStep() {
  if (gpu_ != nullptr) return gpu_->OptimizerStep(optimizer_->config());
  return optimizer_->Step();
}

absl::Status Learner::Forward(const TokenBatch& batch) {
  if (gpu_ != nullptr) RLVR_RETURN_IF_ERROR(gpu_->Reserve(batch.B * batch.T));
  if (batch.experts.empty()) {
    if (gpu_ != nullptr) {
      return gpu_->Forward(batch.ids.data(), batch.B, batch.T, {}, batch.positions_or_null());
    }
    return model_->Forward(batch.ids.data(), batch.B, batch.T, {}, batch.positions_or_null());
  }
  const policy::ModelConfig& c = model_->config();
  const int64_t L = c.num_hidden_layers, K = batch.top_k, M = batch.moe_layers;
  const int64_t N = batch.B * batch.T;
  int64_t model_moe_layers = 0;
  for (int64_t l = 0; l < L; ++l) model_moe_layers += c.IsMoeLayer(l);
  if (M != model_moe_layers || K != c.num_experts_per_tok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "router replay: the batch records ", M, " MoE layers x top_k ", K, ", the model has ",
        model_moe_layers, " x num_experts_per_tok ", c.num_experts_per_tok));
  }
  if (static_cast<int64_t>(batch.experts.size()) != N * M * K) {
    return absl::InvalidArgumentError(
        absl::StrCat("router replay: ", batch.experts.size(),
                     " expert ids, expected B x T x moe layers x top_k = ", N * M * K));
  }
  forced_.resize(static_cast<size_t>(L));
  std::vector<const int32_t*> forced(static_cast<size_t>(L), nullptr);
  for (int64_t l = 0, m = 0; l < L; ++l) {
    if (!c.IsMoeLayer(l)) continue;
    std::vector<int32_t>& f = forced_[l];
    f.resize(static_cast<size_t>(N * K));
    for (int64_t n = 0; n < N; ++n) {
      std::copy_n(batch.experts.data() + (n * M + m) * K, K, f.data() + n * K);
    }
    forced[l] = f.data();
    ++m;
  }
  if (gpu_ != nullptr) {
    return gpu_->Forward(batch.ids.data(), batch.B, batch.T, forced, batch.positions_or_null());
  }
  return model_->Forward(batch.ids.data(), batch.B, batch.T, forced, batch.positions_or_null());
}

absl::StatusOr<std::vector<float>> Learner::LogProbs(const TokenBatch& batch,
                                                     std::vector<float>* entropy) {
  RLVR_RETURN_IF_ERROR(Forward(batch), "learner forward");
  std::vector<float> logp(batch.B * batch.T);
  if (entropy != nullptr) entropy->assign(batch.B * batch.T, 0.0f);
  RLVR_RETURN_IF_ERROR(TokenLogProbs(batch.targets.data(), logp.data(),
                                     entropy != nullptr ? entropy->data() : nullptr));
  return logp;
}

absl::StatusOr<GrpoUpdateStats> Learner::GrpoUpdate(const TokenBatch& batch,
                                                    const std::vector<float>& advantages,
                                                    const std::vector<float>& logp_old,
                                                    const std::vector<float>& logp_ref,
                                                    const GrpoUpdateOptions& options) {
  const int64_t n = batch.B * batch.T;
  if (static_cast<int64_t>(advantages.size()) != n ||
      (!logp_old.empty() && static_cast<int64_t>(logp_old.size()) != n) ||
      (!logp_ref.empty() && static_cast<int64_t>(logp_ref.size()) != n)) {
    return absl::InvalidArgumentError("GrpoUpdate: advantages/logprobs are not [B, T]");
  }
  if (options.loss.kl_coef != 0 && logp_ref.empty()) {
    return absl::InvalidArgumentError("GrpoUpdate: kl_coef != 0 needs reference logprobs");
  }
  if (options.mini_batches < 1 || options.ppo_epochs < 1 || options.group_size < 1 ||
      batch.B % (options.mini_batches * options.group_size) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grpo.mini_batches: ", options.mini_batches, " mini-batches of whole groups of ",
        options.group_size, " do not divide a batch of ", batch.B, " samples"));
  }
  const int64_t steps = options.mini_batches * options.ppo_epochs;
  std::vector<float> old = logp_old;
  if (old.empty() && steps > 1) {
    RLVR_ASSIGN_OR_RETURN(old, LogProbs(batch), "recomputing old logprobs");
  }
  GrpoUpdateStats stats;
  stats.replayed_tokens = batch.num_replayed_tokens();
  const int64_t rows = batch.B / options.mini_batches;
  double token_weight = 0, clip = 0, ratio = 0, akl = 0, kl = 0, ent = 0, gnorm = 0, aux = 0;
  for (int64_t epoch = 0; epoch < options.ppo_epochs; ++epoch) {
    for (int64_t mb = 0; mb < options.mini_batches; ++mb) {
      TokenBatch part = SliceRows(batch, mb * rows, (mb + 1) * rows);
      const int64_t pn = part.B * part.T;
      std::vector<float> adv = SliceValues(advantages, batch.T, mb * rows, (mb + 1) * rows, part.T);
      std::vector<float> ref = SliceValues(logp_ref, batch.T, mb * rows, (mb + 1) * rows, part.T);
      RLVR_RETURN_IF_ERROR(ZeroGrads());
      RLVR_RETURN_IF_ERROR(Forward(part), "learner forward");
      std::vector<float> logp(pn), entropy(pn);
      RLVR_RETURN_IF_ERROR(TokenLogProbs(part.targets.data(), logp.data(), entropy.data()));
      // One step per batch: the old policy is the current one, bit for bit.
      std::vector<float> part_old =
          old.empty() ? logp : SliceValues(old, batch.T, mb * rows, (mb + 1) * rows, part.T);
      losses::PolicyLossBatch<float> lb;
      lb.batch = part.B;
      lb.seq_len = part.T;
      lb.logp_new = logp;
      lb.logp_old = part_old;
      lb.logp_ref = ref;
      lb.advantages = adv;
      lb.mask = part.mask;
      lb.entropy = entropy;
      RLVR_ASSIGN_OR_RETURN(auto out, losses::ComputePolicyLoss(options.loss, lb));
      stats.tokens += pn;
      const double w = static_cast<double>(out.stats.num_tokens);
      token_weight += w;
      clip += out.stats.clip_frac * w;
      ratio += out.stats.ratio_mean * w;
      akl += out.stats.approx_kl * w;
      kl += out.stats.kl_loss * w;
      ent += out.stats.entropy * w;
      stats.loss = out.loss;
      stats.loss_stats = out.stats;
      if (out.stats.nonfinite > 0 || !std::isfinite(out.loss)) {
        ++stats.skipped_steps;
        continue;
      }
      RLVR_RETURN_IF_ERROR(Backward(out.grad_logp_new.data(), options.aux_loss_coef),
                           "learner backward");
      aux += aux_loss();
      RLVR_ASSIGN_OR_RETURN(policy::StepStats step, OptimizerStep(), "learner optimizer");
      if (step.skipped) {
        ++stats.skipped_steps;
        continue;
      }
      if (options.bias_update_rate > 0) model_->UpdateCorrectionBias(options.bias_update_rate);
      ++stats.optimizer_steps;
      gnorm += step.grad_norm;
      stats.lr = step.lr;
    }
  }
  if (token_weight > 0) {
    stats.clip_frac = clip / token_weight;
    stats.ratio_mean = ratio / token_weight;
    stats.approx_kl = akl / token_weight;
    stats.kl = kl / token_weight;
    stats.entropy = ent / token_weight;
  }
  if (stats.optimizer_steps > 0) {
    stats.grad_norm = gnorm / stats.optimizer_steps;
    stats.aux_loss = aux / stats.optimizer_steps;
  }
  for (const auto& layer : moe_stats()) stats.expert_load.push_back(layer.expert_count);
  RLVR_RETURN_IF_ERROR(WeightsToHost(), "learner");
  return stats;
}

absl::StatusOr<Learner::SftStats> Learner::SftUpdate(const TokenBatch& batch, double aux_loss_coef,
                                                     double bias_update_rate) {
  SftStats stats;
  const int64_t n = batch.B * batch.T;
  stats.target_tokens = batch.num_target_tokens();
  if (stats.target_tokens == 0) {
    return absl::InvalidArgumentError("sft: batch has no completion tokens");
  }
  RLVR_RETURN_IF_ERROR(ZeroGrads());
  TokenBatch plain;  // SFT never replays experts: the batch without them
  const TokenBatch* fwd = &batch;
  if (!batch.experts.empty()) {
    plain = batch;
    plain.experts.clear();
    fwd = &plain;
  }
  RLVR_RETURN_IF_ERROR(Forward(*fwd), "sft forward");
  std::vector<float> logp(n);
  RLVR_RETURN_IF_ERROR(TokenLogProbs(batch.targets.data(), logp.data(), nullptr));
  double loss = 0;
  std::vector<float> dlogp(n, 0.0f);
  const float scale = -1.0f / static_cast<float>(stats.target_tokens);
  for (int64_t i = 0; i < n; ++i) {
    if (batch.mask[i] == 0) continue;
    loss -= logp[i];
    dlogp[i] = scale;
  }
  stats.loss = loss / static_cast<double>(stats.target_tokens);
  stats.aux_loss = aux_loss();
  if (!std::isfinite(stats.loss)) {
    stats.skipped = true;
    return stats;
  }
  RLVR_RETURN_IF_ERROR(Backward(dlogp.data(), aux_loss_coef), "sft backward");
  RLVR_ASSIGN_OR_RETURN(policy::StepStats step, OptimizerStep(), "sft optimizer");
  stats.grad_norm = step.grad_norm;
  stats.lr = step.lr;
  stats.skipped = step.skipped;
  if (!step.skipped && bias_update_rate > 0) model_->UpdateCorrectionBias(bias_update_rate);
  RLVR_RETURN_IF_ERROR(WeightsToHost(), "sft");
  return stats;
}

}  // namespace rlvr::cluster
