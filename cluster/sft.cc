#include "cluster/sft.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "cluster/checkpoint_manager.h"
#include "cluster/learner.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/tensorboard.h"
#include "policy/model/checkpoint.h"
#include "policy/optim/adamw.h"

namespace rlvr::cluster {

namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Example order: a seeded permutation per epoch, slots 0, 1, 2, ... across epochs.
class EpochOrder {
 public:
  EpochOrder(uint64_t seed, int64_t n) : seed_(seed), n_(n) {}
  int64_t operator()(int64_t slot) {
    const int64_t epoch = slot / n_;
    if (epoch != epoch_) {
      perm_.resize(n_);
      std::iota(perm_.begin(), perm_.end(), 0);
      Rng rng = Rng(seed_, 0x736674).Split(static_cast<uint64_t>(epoch));
      for (int64_t i = n_ - 1; i > 0; --i) {
        std::swap(perm_[i], perm_[rng.UniformInt(static_cast<uint64_t>(i + 1))]);
      }
      epoch_ = epoch;
    }
    return perm_[slot % n_];
  }

 private:
  uint64_t seed_;
  int64_t n_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

}  // namespace

std::vector<std::vector<int64_t>> PlanSftSteps(const std::function<int64_t(int64_t)>& order,
                                               const std::vector<int64_t>& lengths, bool packing,
                                               int64_t max_seq_len, int64_t batch_tokens,
                                               int64_t max_steps, int64_t max_slots) {
  RLVR_CHECK(max_steps > 0 || max_slots > 0, "PlanSftSteps: no limit");
  std::vector<std::vector<int64_t>> steps;
  std::vector<int64_t> step;
  std::vector<int64_t> rows;  // packing: used length of each row (first fit, as the batch does)
  int64_t longest = 0;        // longest row (packing) or example
  auto close_step = [&] {
    steps.push_back(std::move(step));
    step.clear();
    rows.clear();
    longest = 0;
  };
  for (int64_t slot = 0; max_slots == 0 || slot < max_slots; ++slot) {
    const int64_t i = order(slot);
    const int64_t len = lengths[i];
    for (int attempt = 0; attempt < 2; ++attempt) {
      int64_t footprint, row = -1, new_longest;
      if (packing) {
        row = 0;
        while (row < static_cast<int64_t>(rows.size()) && rows[row] + len > max_seq_len) ++row;
        const bool new_row = row == static_cast<int64_t>(rows.size());
        const int64_t used = new_row ? len : rows[row] + len;
        new_longest = std::max(longest, used);
        const int64_t n_rows = static_cast<int64_t>(rows.size()) + (new_row ? 1 : 0);
        footprint = n_rows * new_longest;
      } else {
        new_longest = std::max(longest, len);
        footprint = static_cast<int64_t>(step.size() + 1) * new_longest;
      }
      if (!step.empty() && footprint > batch_tokens) {
        close_step();
        if (max_steps > 0 && static_cast<int64_t>(steps.size()) == max_steps) return steps;
        continue;  // the example opens the next step
      }
      if (packing) {
        if (row < static_cast<int64_t>(rows.size())) {
          rows[row] += len;
        } else {
          rows.push_back(len);
        }
      }
      longest = new_longest;
      step.push_back(i);
      break;
    }
  }
  if (!step.empty()) close_step();
  return steps;
}

absl::StatusOr<SftResult> RunSft(SftInputs in) {
  const proto::RunConfig& c = in.config;
  const proto::SftConfig& sc = c.sft();
  RLVR_RETURN_IF_ERROR(ValidateRunConfig(c), "config");
  if (in.model == nullptr) return absl::InvalidArgumentError("sft: a model is required");
  if (in.examples.empty()) {
    return absl::InvalidArgumentError("sft.train_path: no training examples");
  }
  policy::CausalLM<float>* model = in.model.get();
  SftResult result;
  result.max_seq_len =
      sc.max_seq_len() > 0
          ? sc.max_seq_len()
          : std::min<int64_t>(sc.batch_tokens(), model->config().max_position_embeddings);
  if (result.max_seq_len < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sft.max_seq_len: ", result.max_seq_len, " leaves no room for a prompt and a completion"));
  }
  // Length limit: truncate completions, drop prompts that leave no room (file comment).
  std::vector<SftExample> examples;
  for (SftExample& e : in.examples) {
    if (e.prompt.empty() || e.completion.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sft: example of line ", e.line,
                                                     " has an empty ",
                                                     e.prompt.empty() ? "prompt" : "completion"));
    }
    const int64_t P = static_cast<int64_t>(e.prompt.size());
    if (P >= result.max_seq_len) {
      ++result.dropped;
      continue;
    }
    if (P + static_cast<int64_t>(e.completion.size()) > result.max_seq_len) {
      e.completion.resize(result.max_seq_len - P);
      ++result.truncated;
    }
    examples.push_back(std::move(e));
  }
  if (examples.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sft.max_seq_len: every prompt has ", result.max_seq_len,
                     " tokens or more, so no example leaves room for a completion token"));
  }
  result.examples = static_cast<int64_t>(examples.size());
  const int64_t n = result.examples;
  std::vector<int64_t> lengths(n);
  for (int64_t i = 0; i < n; ++i) {
    lengths[i] = static_cast<int64_t>(examples[i].prompt.size() + examples[i].completion.size());
  }
  EpochOrder order(c.seed(), n);
  const std::vector<std::vector<int64_t>> plan = PlanSftSteps(
      [&order](int64_t slot) { return order(slot); }, lengths, sc.packing(), result.max_seq_len,
      sc.batch_tokens(), sc.steps(), sc.steps() > 0 ? 0 : static_cast<int64_t>(sc.epochs()) * n);
  const int64_t total_steps = static_cast<int64_t>(plan.size());

  RLVR_ASSIGN_OR_RETURN(policy::AdamWConfig oc,
                        AdamWConfigFromConfig(c.optimizer(), total_steps));
  RLVR_ASSIGN_OR_RETURN(auto optimizer, policy::AdamW::Create(oc, TrainableParams(model)),
                        "optimizer");
  Learner learner(model, &optimizer);
  if (c.device() == "cuda") {
    RLVR_RETURN_IF_ERROR(learner.UseCuda());
  }

  const std::string run_dir = c.run_dir();
  RLVR_RETURN_IF_ERROR(MakeDirs(run_dir), "run_dir");
  RLVR_RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/config.yaml", ToYaml(c)));
  std::unique_ptr<CheckpointManager> checkpoints;
  if (sc.save_every() > 0) {
    RLVR_ASSIGN_OR_RETURN(auto m,
                          CheckpointManager::Open(run_dir + "/checkpoints",
                                                  std::max(1, c.trainer().keep_checkpoints())));
    checkpoints = std::make_unique<CheckpointManager>(std::move(m));
  }
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<EventWriter> events,
                        EventWriter::Open(run_dir + "/tensorboard"));
  const std::string metrics_path = run_dir + "/metrics.jsonl";
  std::FILE* metrics = std::fopen(metrics_path.c_str(), "wb");
  if (metrics == nullptr) {
    return absl::InternalError(absl::StrCat(metrics_path, ": cannot open for writing"));
  }
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{metrics};

  const double aux_coef = model->config().is_moe() ? c.grpo().router_aux_loss_coef() : 0.0;
  const double bias_rate = model->config().is_moe() ? c.grpo().router_bias_update_rate() : 0.0;
  const auto t_run = std::chrono::steady_clock::now();
  int64_t slots_done = 0, skipped_total = 0, bad_in_a_row = 0;
  for (int64_t step = 1; step <= total_steps; ++step) {
    const auto t_step = std::chrono::steady_clock::now();
    const std::vector<int64_t>& idx = plan[step - 1];
    std::vector<std::vector<int32_t>> prompts, completions;
    int64_t tokens = 0;
    for (int64_t i : idx) {
      prompts.push_back(examples[i].prompt);
      completions.push_back(examples[i].completion);
      tokens += lengths[i];
    }
    absl::StatusOr<TokenBatch> batch =
        sc.packing() ? MakePackedTokenBatch(prompts, completions, result.max_seq_len)
                     : MakeTokenBatch(prompts, completions);
    RLVR_RETURN_IF_ERROR(batch.status(), "step ", step);
    const auto t_update = std::chrono::steady_clock::now();
    RLVR_ASSIGN_OR_RETURN(Learner::SftStats st, learner.SftUpdate(*batch, aux_coef, bias_rate),
                          "step ", step);
    const double update_seconds = Seconds(t_update);
    slots_done += static_cast<int64_t>(idx.size());
    if (st.skipped) {
      ++skipped_total;
      ++bad_in_a_row;
    } else {
      bad_in_a_row = 0;
    }
    if (step == 1) result.first_loss = st.loss;
    result.last_loss = st.loss;
    nlohmann::json row;
    row["step"] = step;
    row["epoch"] = static_cast<double>(slots_done) / n;
    row["train/loss"] = st.loss;
    row["train/lr"] = st.lr;
    row["train/grad_norm"] = st.grad_norm;
    row["train/aux_loss"] = st.aux_loss;
    row["train/skipped_updates"] = skipped_total;
    row["batch/examples"] = static_cast<int64_t>(idx.size());
    row["batch/rows"] = batch->B;
    row["batch/tokens"] = tokens;
    row["batch/target_tokens"] = st.target_tokens;
    row["batch/pad_fraction"] = 1.0 - static_cast<double>(tokens) / (batch->B * batch->T);
    row["perf/tokens_per_s"] = update_seconds > 0 ? tokens / update_seconds : 0.0;
    row["timing_s/step"] = Seconds(t_step);
    const std::string line = row.dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), metrics) != line.size() ||
        std::fflush(metrics) != 0) {
      return absl::InternalError(absl::StrCat(metrics_path, ": write failed"));
    }
    for (const auto& [k, v] : row.items()) {
      if (v.is_number() && k != "step") (void)events->AddScalar(k, v.get<double>(), step);
    }
    if (in.on_step) in.on_step(row);
    if (bad_in_a_row >= std::max(1, c.trainer().max_bad_steps())) {
      (void)events->Close();
      return absl::FailedPreconditionError(absl::StrCat(
          "step ", step, ": ", bad_in_a_row,
          " consecutive steps had a NaN/Inf loss or gradient "
          "(trainer.max_bad_steps = ",
          c.trainer().max_bad_steps(), "); stopping without saving the current state"));
    }
    if (checkpoints != nullptr && step % sc.save_every() == 0) {
      ::fsync(::fileno(metrics));
      RLVR_ASSIGN_OR_RETURN(
          auto info, checkpoints->Save(step, [&](const std::string& dir) -> absl::Status {
            policy::SaveOptions so;
            so.tokenizer_dir = in.tokenizer_dir;
            RLVR_RETURN_IF_ERROR(policy::SaveModel(*model, dir + "/model", so));
            RLVR_RETURN_IF_ERROR(learner.SyncOptimizerToHost());
            RLVR_RETURN_IF_ERROR(optimizer.Save(dir + "/optimizer.safetensors"));
            nlohmann::json state = {{"step", step}, {"skipped_total", skipped_total}};
            return WriteFileAtomically(dir + "/trainer_state.json", state.dump(1) + "\n");
          }));
      (void)info;
    }
  }
  (void)events->Close();
  result.steps = total_steps;
  result.seconds = Seconds(t_run);
  result.final_dir = run_dir + "/final";
  policy::SaveOptions so;
  so.tokenizer_dir = in.tokenizer_dir;
  RLVR_RETURN_IF_ERROR(policy::SaveModel(*model, result.final_dir, so), result.final_dir);
  nlohmann::json summary = {{"examples", result.examples},   {"truncated", result.truncated},
                            {"dropped", result.dropped},     {"max_seq_len", result.max_seq_len},
                            {"steps", result.steps},         {"first_loss", result.first_loss},
                            {"last_loss", result.last_loss}, {"skipped_updates", skipped_total},
                            {"seconds", result.seconds},     {"final_model", result.final_dir}};
  RLVR_RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/summary.json", summary.dump(1) + "\n"));
  result.model = std::move(in.model);
  return result;
}

}  // namespace rlvr::cluster
