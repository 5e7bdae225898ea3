#include "cluster/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cluster/checkpoint_manager.h"
#include "cluster/learner.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/tensorboard.h"
#include "policy/losses/advantages.h"
#include "policy/model/checkpoint.h"
#include "rollout/backend.h"
#include "rollout/engine.h"

namespace rlvr::cluster {

namespace losses = policy::losses;
namespace fs = std::filesystem;

namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// The dataset index of prompt slot `slot` (0, 1, 2, ... across epochs): a seeded permutation
// per epoch, so a step's prompts depend only on the seed and the step.
int64_t PromptIndex(uint64_t seed, bool shuffle, int64_t n, int64_t slot) {
  int64_t epoch = slot / n, pos = slot % n;
  if (!shuffle) return pos;
  // Fisher-Yates with a per-epoch stream; cached per epoch since steps walk slots in order.
  static thread_local std::vector<int64_t> perm;
  static thread_local int64_t perm_epoch = -1;
  static thread_local uint64_t perm_seed = 0;
  static thread_local int64_t perm_n = 0;
  if (perm_epoch != epoch || perm_seed != seed || perm_n != n) {
    perm.resize(n);
    std::iota(perm.begin(), perm.end(), 0);
    Rng rng = Rng(seed, 0x6f72646572).Split(static_cast<uint64_t>(epoch));
    for (int64_t i = n - 1; i > 0; --i) {
      std::swap(perm[i], perm[rng.UniformInt(static_cast<uint64_t>(i + 1))]);
    }
    perm_epoch = epoch;
    perm_seed = seed;
    perm_n = n;
  }
  return perm[pos];
}

}  // namespace

struct Trainer::State {
  TrainerInputs in;
  std::unique_ptr<policy::CausalLM<float>> ref;  // frozen reference (kl_coef != 0)
  std::unique_ptr<policy::AdamW> optimizer;
  std::unique_ptr<Learner> learner;
  std::unique_ptr<CheckpointManager> checkpoints;
  std::unique_ptr<EventWriter> events;
  std::string run_dir;
  int64_t step = 0;
  int64_t bad_in_a_row = 0;
  int64_t skipped_total = 0;
  int64_t optimizer_steps_per_batch = 1;
};

Trainer::Trainer(std::unique_ptr<State> state) : s_(std::move(state)) {}
Trainer::~Trainer() = default;
policy::CausalLM<float>* Trainer::model() { return s_->in.model.get(); }
int64_t Trainer::step() const { return s_->step; }

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(TrainerInputs inputs) {
  auto s = std::make_unique<State>();
  const proto::RunConfig& c = inputs.config;
  RLVR_RETURN_IF_ERROR(ValidateRunConfig(c), "config");
  if (inputs.model == nullptr || inputs.tokenizer == nullptr || !inputs.prompt ||
      !inputs.reward) {
    return absl::InvalidArgumentError("trainer: model, tokenizer, prompt and reward are required");
  }
  if (inputs.train.empty()) {
    return absl::InvalidArgumentError("data.train_path: the training set is empty");
  }
  s->run_dir = c.run_dir();
  RLVR_RETURN_IF_ERROR(MakeDirs(s->run_dir), "run_dir");
  s->optimizer_steps_per_batch = static_cast<int64_t>(c.grpo().mini_batches()) *
                                 c.grpo().ppo_epochs();
  policy::AdamWConfig oc;
  oc.lr = c.optimizer().lr();
  oc.beta1 = c.optimizer().beta1();
  oc.beta2 = c.optimizer().beta2();
  oc.eps = c.optimizer().eps();
  oc.weight_decay = c.optimizer().weight_decay();
  oc.max_grad_norm = c.optimizer().grad_clip();
  oc.warmup_steps = c.optimizer().warmup_steps();
  oc.total_steps = static_cast<int64_t>(c.trainer().total_steps()) * s->optimizer_steps_per_batch;
  oc.min_lr_ratio = c.optimizer().min_lr_ratio();
  RLVR_ASSIGN_OR_RETURN(oc.schedule, policy::ParseLrSchedule(c.optimizer().schedule()),
                        "optimizer.schedule");
  policy::CausalLM<float>* model = inputs.model.get();
  RLVR_ASSIGN_OR_RETURN(auto opt, policy::AdamW::Create(oc, TrainableParams(model)), "optimizer");
  s->optimizer = std::make_unique<policy::AdamW>(std::move(opt));
  s->learner = std::make_unique<Learner>(model, s->optimizer.get());
  if (c.grpo().kl_coef() != 0) {
    RLVR_ASSIGN_OR_RETURN(s->ref, policy::CausalLM<float>::Create(model->config()));
    std::copy_n(model->param_data(), model->num_param_elements(), s->ref->param_data());
    RLVR_RETURN_IF_ERROR(s->ref->set_active_vocab(model->active_vocab()));
  }
  RLVR_ASSIGN_OR_RETURN(auto ckpt,
                        CheckpointManager::Open(s->run_dir + "/checkpoints",
                                                std::max(1, c.trainer().keep_checkpoints())));
  s->checkpoints = std::make_unique<CheckpointManager>(std::move(ckpt));
  s->in = std::move(inputs);
  return std::unique_ptr<Trainer>(new Trainer(std::move(s)));
}

absl::Status Trainer::Run(bool resume) {
  State& s = *s_;
  const proto::RunConfig& c = s.in.config;
  policy::CausalLM<float>* model = s.in.model.get();
  const std::string metrics_path = s.run_dir + "/metrics.jsonl";
  const std::string samples_path = s.run_dir + "/samples.jsonl";
  RLVR_RETURN_IF_ERROR(WriteFileAtomically(s.run_dir + "/config.yaml", ToYaml(c)));

  if (resume) {
    std::vector<std::string> skipped;
    RLVR_ASSIGN_OR_RETURN(auto latest, s.checkpoints->LatestValid(&skipped));
    for (const auto& why : skipped) {
      std::fprintf(stderr, "resume: skipping corrupt checkpoint: %s\n", why.c_str());
    }
    if (latest.has_value()) {
      RLVR_ASSIGN_OR_RETURN(auto loaded, policy::LoadModel<float>(latest->path + "/model"),
                            "resume");
      if (loaded.model->num_param_elements() != model->num_param_elements()) {
        return absl::DataLossError(absl::StrCat(latest->path, "/model: parameter count differs "
                                                "from the run's model"));
      }
      std::copy_n(loaded.model->param_data(), model->num_param_elements(), model->param_data());
      RLVR_RETURN_IF_ERROR(s.optimizer->Load(latest->path + "/optimizer.safetensors"), "resume");
      RLVR_ASSIGN_OR_RETURN(std::string state_text,
                            ReadFile(latest->path + "/trainer_state.json"));
      nlohmann::json state = nlohmann::json::parse(state_text, nullptr, false);
      if (state.is_discarded() || !state.contains("step")) {
        return absl::DataLossError(latest->path + "/trainer_state.json: malformed");
      }
      s.step = state["step"].get<int64_t>();
      s.skipped_total = state.value("skipped_total", int64_t{0});
      std::fprintf(stderr, "resume: continuing from %s (step %lld)\n", latest->path.c_str(),
                   static_cast<long long>(s.step));
    } else {
      std::fprintf(stderr, "resume: no valid checkpoint in %s; starting from step 0\n",
                   s.checkpoints->root().c_str());
    }
    // Drop metric and sample rows the killed run wrote after its last checkpoint.
    for (const std::string& path : {metrics_path, samples_path}) {
      if (!fs::exists(path)) continue;
      JsonlReadOptions lenient;
      lenient.skip_bad_lines = true;  // the last line may be cut short by the kill
      RLVR_ASSIGN_OR_RETURN(auto rows, ReadJsonl(path, lenient));
      RLVR_ASSIGN_OR_RETURN(auto w, JsonlWriter::Open(path));
      for (const auto& row : rows) {
        if (row.value("step", int64_t{0}) <= s.step) RLVR_RETURN_IF_ERROR(w->Write(row));
      }
      RLVR_RETURN_IF_ERROR(w->Close());
    }
  } else {
    std::error_code ec;
    fs::remove(metrics_path, ec);
    fs::remove(samples_path, ec);
  }
  RLVR_ASSIGN_OR_RETURN(s.events, EventWriter::Open(s.run_dir + "/tensorboard"));
  std::FILE* metrics = std::fopen(metrics_path.c_str(), "ab");
  std::FILE* samples = std::fopen(samples_path.c_str(), "ab");
  if (metrics == nullptr || samples == nullptr) {
    if (metrics) std::fclose(metrics);
    if (samples) std::fclose(samples);
    return absl::InternalError(absl::StrCat(s.run_dir, ": cannot open metrics/samples files"));
  }
  auto close_files = [&] {
    std::fclose(metrics);
    std::fclose(samples);
  };

  const int64_t G = c.grpo().group_size();
  const int64_t P = c.grpo().prompts_per_step();
  const int64_t n_train = static_cast<int64_t>(s.in.train.size());
  losses::AdvantageOptions adv_opt;
  RLVR_ASSIGN_OR_RETURN(adv_opt.estimator,
                        losses::ParseAdvantageEstimator(c.grpo().advantage_estimator()));
  adv_opt.eps = c.grpo().advantage_eps();
  GrpoUpdateOptions up;
  up.loss.clip_eps_low = c.grpo().clip_eps_low();
  up.loss.clip_eps_high = c.grpo().clip_eps_high();
  RLVR_ASSIGN_OR_RETURN(up.loss.agg_mode, losses::ParseLossAggMode(c.grpo().loss_agg_mode()));
  RLVR_ASSIGN_OR_RETURN(up.loss.ratio_level, losses::ParseRatioLevel(c.grpo().ratio_level()));
  RLVR_ASSIGN_OR_RETURN(up.loss.kl_estimator, losses::ParseKlEstimator(c.grpo().kl_estimator()));
  up.loss.kl_coef = c.grpo().kl_coef();
  up.loss.norm_length = c.rollout().max_new_tokens();
  up.group_size = G;
  up.mini_batches = c.grpo().mini_batches();
  up.ppo_epochs = c.grpo().ppo_epochs();
  up.aux_loss_coef = c.grpo().router_aux_loss_coef();
  up.bias_update_rate = c.grpo().router_bias_update_rate();

  absl::Status result = absl::OkStatus();
  while (s.step < c.trainer().total_steps()) {
    const int64_t step = s.step + 1;
    auto t_step = std::chrono::steady_clock::now();
    // --- rollout (with DAPO dynamic sampling: degenerate groups are replaced) ---
    std::vector<int64_t> chosen;        // dataset index per kept group
    std::vector<rollout::Completion> kept;
    std::vector<std::string> kept_text;
    std::vector<RewardResult> kept_reward;
    std::vector<std::vector<int32_t>> kept_prompt;
    double gen_seconds = 0, reward_seconds = 0;
    int64_t gen_tokens = 0, rounds = 0, dropped_groups = 0, prompt_tokens = 0;
    int64_t slot = (step - 1) * P;
    int64_t extra_slot = 0;
    const int64_t max_rounds = c.grpo().dynamic_sampling() ? std::max(1, c.grpo().max_sampling_rounds()) : 1;
    while (static_cast<int64_t>(chosen.size()) < P && rounds < max_rounds) {
      ++rounds;
      int64_t want = P - static_cast<int64_t>(chosen.size());
      std::vector<rollout::GenerationRequest> requests;
      std::vector<int64_t> req_index;
      for (int64_t i = 0; i < want; ++i) {
        // Round 1 takes the step's own prompts; later rounds draw from a per-step stream.
        int64_t idx = rounds == 1
                          ? PromptIndex(c.seed(), c.data().shuffle(), n_train, slot + i)
                          : static_cast<int64_t>(
                                Rng(c.seed(), 0x64796e).Split(step).Split(extra_slot++).UniformInt(
                                    static_cast<uint64_t>(n_train)));
        rollout::GenerationRequest r;
        auto prompt = s.in.prompt(s.in.train[idx]);
        if (!prompt.ok()) {
          close_files();
          return Annotate(prompt.status(), absl::StrCat("training record ", idx));
        }
        r.prompt = std::move(*prompt);
        r.num_samples = G;
        r.sampling.temperature = c.rollout().temperature();
        r.sampling.top_p = c.rollout().top_p();
        r.sampling.top_k = c.rollout().top_k();
        r.sampling.min_p = c.rollout().min_p();
        r.sampling.repetition_penalty = c.rollout().repetition_penalty();
        r.stop.eos_ids = s.in.eos_ids;
        r.stop.max_new_tokens = c.rollout().max_new_tokens();
        for (const auto& st : c.rollout().stop()) r.stop.stop_strings.push_back(st);
        r.seed = Mix64(c.seed() ^ Mix64(static_cast<uint64_t>(step) * 1000003u + rounds * 7919u +
                                        static_cast<uint64_t>(i)));
        requests.push_back(std::move(r));
        req_index.push_back(idx);
      }
      auto t_gen = std::chrono::steady_clock::now();
      rollout::EngineStats es;
      rollout::EngineOptions eo;
      eo.max_batch = c.rollout().max_batch_sequences();
      eo.max_tokens_in_flight = c.rollout().max_tokens_in_flight();
      eo.block_size = c.rollout().kv_block_size();
      auto completions = GenerateCompletions(model, *s.in.tokenizer, requests, eo, &es);
      if (!completions.ok()) {
        close_files();
        return Annotate(completions.status(), absl::StrCat("step ", step, " rollout"));
      }
      gen_seconds += Seconds(t_gen);
      gen_tokens += es.generated_tokens;
      prompt_tokens += es.prompt_tokens;
      auto t_rew = std::chrono::steady_clock::now();
      std::vector<RewardResult> rewards(completions->size());
      std::vector<std::string> texts(completions->size());
      for (size_t j = 0; j < completions->size(); ++j) {
        const auto& comp = (*completions)[j];
        texts[j] = CompletionText(*s.in.tokenizer, comp);
        auto r = s.in.reward(s.in.train[req_index[comp.request]], texts[j],
                             static_cast<int64_t>(comp.tokens.size()), c.rollout().max_new_tokens());
        if (!r.ok()) {
          close_files();
          return Annotate(r.status(), absl::StrCat("training record ", req_index[comp.request]));
        }
        rewards[j] = *r;
      }
      reward_seconds += Seconds(t_rew);
      for (int64_t q = 0; q < static_cast<int64_t>(requests.size()); ++q) {
        bool degenerate = true;
        for (int64_t g = 1; g < G; ++g) {
          if (rewards[q * G + g].total != rewards[q * G].total) degenerate = false;
        }
        bool last_round = rounds == max_rounds;
        if (c.grpo().dynamic_sampling() && degenerate && G > 1 && !last_round) {
          ++dropped_groups;
          continue;
        }
        if (static_cast<int64_t>(chosen.size()) >= P) break;
        chosen.push_back(req_index[q]);
        for (int64_t g = 0; g < G; ++g) {
          kept.push_back((*completions)[q * G + g]);
          kept_text.push_back(texts[q * G + g]);
          kept_reward.push_back(rewards[q * G + g]);
          kept_prompt.push_back(requests[q].prompt);
        }
      }
    }
    // --- advantages and update ---
    const int64_t N = static_cast<int64_t>(kept.size());
    const int64_t groups = N / G;
    // Mini-batches need whole groups; with dynamic sampling capped, trim to a multiple.
    const int64_t usable_groups = groups - groups % std::max<int64_t>(1, up.mini_batches);
    std::vector<std::vector<int32_t>> comp_tokens;
    std::vector<double> reward_totals;
    for (int64_t i = 0; i < usable_groups * G; ++i) {
      comp_tokens.push_back(kept[i].tokens);
      reward_totals.push_back(kept_reward[i].total);
    }
    const std::vector<std::vector<int32_t>> all_prompts = kept_prompt;
    kept_prompt.resize(usable_groups * G);
    nlohmann::json row;
    row["step"] = step;
    GrpoUpdateStats ustats;
    double train_seconds = 0;
    int64_t train_tokens = 0;
    if (usable_groups > 0) {
      auto batch = MakeTokenBatch(kept_prompt, comp_tokens);
      if (!batch.ok()) {
        close_files();
        return batch.status();
      }
      auto adv = losses::ComputeTokenAdvantages(adv_opt, reward_totals, G, batch->mask, batch->T);
      if (!adv.ok()) {
        close_files();
        return Annotate(adv.status(), "advantages");
      }
      std::vector<float> advf(adv->begin(), adv->end());
      std::vector<float> ref_logp;
      auto t_train = std::chrono::steady_clock::now();
      if (s.ref != nullptr) {
        Learner ref_learner(s.ref.get(), nullptr);
        auto r = ref_learner.LogProbs(*batch);
        if (!r.ok()) {
          close_files();
          return Annotate(r.status(), "reference logprobs");
        }
        ref_logp = std::move(*r);
      }
      std::vector<float> old;
      if (c.trainer().mode() == "overlapped") {
        // Behaviour-policy logprobs recorded by the rollout (see the header).
        old.assign(batch->B * batch->T, 0.0f);
        for (int64_t b = 0; b < batch->B; ++b) {
          for (int64_t j = 0; j < batch->completion_len[b]; ++j) {
            old[b * batch->T + batch->prompt_len[b] + j - 1] = kept[b].logprobs[j];
          }
        }
      }
      auto u = s.learner->GrpoUpdate(*batch, advf, old, ref_logp, up);
      if (!u.ok()) {
        close_files();
        return Annotate(u.status(), absl::StrCat("step ", step, " update"));
      }
      ustats = *u;
      train_seconds = Seconds(t_train);
      train_tokens = batch->num_target_tokens();
    }
    s.skipped_total += ustats.skipped_steps;
    s.bad_in_a_row = ustats.skipped_steps > 0 ? s.bad_in_a_row + 1 : 0;
    // --- metrics ---
    double rmean = 0, rstd = 0, acc = 0, len_mean = 0, len_max = 0, trunc = 0;
    std::map<std::string, double> comp_mean;
    for (int64_t i = 0; i < N; ++i) {
      rmean += kept_reward[i].total;
      acc += kept_reward[i].correct;
      len_mean += kept[i].tokens.size();
      len_max = std::max<double>(len_max, kept[i].tokens.size());
      trunc += kept[i].finish_reason == rollout::FinishReason::kLength;
      for (const auto& [k, v] : kept_reward[i].components) comp_mean[k] += v;
    }
    if (N > 0) {
      rmean /= N;
      acc /= N;
      len_mean /= N;
      trunc /= N;
      for (int64_t i = 0; i < N; ++i) rstd += std::pow(kept_reward[i].total - rmean, 2);
      rstd = std::sqrt(rstd / N);
      for (auto& [k, v] : comp_mean) v /= N;
    }
    row["critic/rewards/mean"] = rmean;
    row["critic/rewards/std"] = rstd;
    for (const auto& [k, v] : comp_mean) row["reward/" + k + "/mean"] = v;
    row["reward/accuracy"] = acc;
    row["response_length/mean"] = len_mean;
    row["response_length/max"] = len_max;
    row["response_length/clip_ratio"] = trunc;
    row["actor/pg_loss"] = ustats.loss_stats.pg_loss;
    row["actor/loss"] = ustats.loss;
    row["actor/kl_loss"] = ustats.kl;
    row["actor/ppo_kl"] = ustats.approx_kl;
    row["actor/entropy"] = ustats.entropy;
    row["actor/pg_clipfrac"] = ustats.clip_frac;
    row["actor/ratio_mean"] = ustats.ratio_mean;
    row["actor/grad_norm"] = ustats.grad_norm;
    row["actor/lr"] = ustats.lr;
    row["actor/moe_aux_loss"] = ustats.aux_loss;
    row["actor/skipped_updates"] = s.skipped_total;
    row["batch/groups"] = usable_groups;
    row["batch/dropped_groups"] = dropped_groups;
    row["batch/sampling_rounds"] = rounds;
    for (size_t l = 0; l < ustats.expert_load.size(); ++l) {
      const auto& load = ustats.expert_load[l];
      double total = std::accumulate(load.begin(), load.end(), 0.0);
      double mx = load.empty() ? 0 : *std::max_element(load.begin(), load.end());
      // max/mean load: 1 is perfectly balanced.
      row[absl::StrCat("moe/layer", l, "/max_load_ratio")] =
          total > 0 ? mx / (total / load.size()) : 0.0;
    }
    double step_seconds = Seconds(t_step);
    row["perf/gen_tokens_per_s"] = gen_seconds > 0 ? gen_tokens / gen_seconds : 0;
    row["perf/train_tokens_per_s"] = train_seconds > 0 ? train_tokens / train_seconds : 0;
    row["timing_s/gen"] = gen_seconds;
    row["timing_s/reward"] = reward_seconds;
    row["timing_s/update"] = train_seconds;
    row["timing_s/step"] = step_seconds;
    std::string line = row.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), metrics);
    std::fflush(metrics);
    for (const auto& [k, v] : row.items()) {
      if (v.is_number() && k != "step") (void)s.events->AddScalar(k, v.get<double>(), step);
    }
    for (size_t l = 0; l < ustats.expert_load.size(); ++l) {
      std::vector<double> load(ustats.expert_load[l].begin(), ustats.expert_load[l].end());
      (void)s.events->AddHistogram(absl::StrCat("moe/layer", l, "/expert_load"), load, step);
    }
    for (int64_t i = 0; i < std::min<int64_t>(c.trainer().sample_log_count(), N); ++i) {
      nlohmann::json srow = {{"step", step},
                             {"prompt", s.in.tokenizer->Decode(all_prompts[i])},
                             {"completion", kept_text[i]},
                             {"reward", kept_reward[i].total},
                             {"finish_reason", rollout::FinishReasonName(kept[i].finish_reason)}};
      std::string sl = srow.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      std::fwrite(sl.data(), 1, sl.size(), samples);
      if (i == 0) (void)s.events->AddText("samples/completion", kept_text[i], step);
    }
    std::fflush(samples);
    s.step = step;
    if (s.in.on_step) s.in.on_step(row);
    if (s.bad_in_a_row >= std::max(1, c.trainer().max_bad_steps())) {
      result = absl::FailedPreconditionError(absl::StrCat(
          "step ", step, ": ", s.bad_in_a_row,
          " consecutive steps had a NaN/Inf loss or gradient (trainer.max_bad_steps = ",
          c.trainer().max_bad_steps(), "); stopping without saving the current state"));
      break;
    }
    // --- checkpoint ---
    bool save = c.trainer().save_every() > 0 &&
                (step % c.trainer().save_every() == 0 || step == c.trainer().total_steps());
    if (save) {
      std::fflush(metrics);
      ::fsync(::fileno(metrics));
      ::fsync(::fileno(samples));
      auto info = s.checkpoints->Save(step, [&](const std::string& dir) -> absl::Status {
        policy::SaveOptions so;
        so.tokenizer_dir = s.in.tokenizer_dir;
        RLVR_RETURN_IF_ERROR(policy::SaveModel(*model, dir + "/model", so));
        RLVR_RETURN_IF_ERROR(s.optimizer->Save(dir + "/optimizer.safetensors"));
        nlohmann::json state = {{"step", step}, {"skipped_total", s.skipped_total}};
        return WriteFileAtomically(dir + "/trainer_state.json", state.dump(1) + "\n");
      });
      if (!info.ok()) {
        result = info.status();
        break;
      }
    }
  }
  (void)s.events->Close();
  close_files();
  return result;
}

}  // namespace rlvr::cluster
