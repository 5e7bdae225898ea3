#include "cluster/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <optional>
#include <span>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cluster/checkpoint_manager.h"
#include "cluster/learner.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "core/rng.h"
#include "core/safetensors.h"
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

std::string CompletionText(const policy::Tokenizer& tok, const rollout::Completion& c) {
  std::string text = tok.Decode(c.tokens, /*skip_special_tokens=*/true);
  if (c.text_end >= 0 && c.text_end < static_cast<int64_t>(text.size())) text.resize(c.text_end);
  return text;
}

absl::StatusOr<std::vector<rollout::Completion>> RunEngine(
    policy::CausalLM<float>* model, const policy::Tokenizer& tokenizer,
    const std::vector<rollout::GenerationRequest>& requests, int64_t max_batch,
    int64_t max_tokens_in_flight, int64_t block_size, rollout::EngineStats* stats,
    bool record_experts = false) {
  rollout::CausalLmBackend backend(model, record_experts);
  rollout::EngineOptions options;
  options.max_batch = max_batch;
  options.max_tokens_in_flight = max_tokens_in_flight;
  options.block_size = block_size;
  RLVR_ASSIGN_OR_RETURN(
      auto engine, rollout::Engine::Create(&backend, options, [&tokenizer](int32_t id) {
        return tokenizer.TokenBytes(id);
      }));
  RLVR_ASSIGN_OR_RETURN(auto completions, engine->Generate(requests));
  if (stats != nullptr) *stats = engine->stats();
  return completions;
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(policy::CausalLM<float>* model,
                                    const std::vector<nlohmann::json>& records,
                                    const PromptFn& prompt, const RewardFn& reward,
                                    const policy::Tokenizer& tokenizer,
                                    const std::vector<int32_t>& eos_ids, int64_t max_new_tokens,
                                    int64_t k, uint64_t seed) {
  EvalResult result;
  result.problems = static_cast<int64_t>(records.size());
  result.k = k;
  if (records.empty()) return result;
  std::vector<rollout::GenerationRequest> greedy, sampled;
  for (size_t i = 0; i < records.size(); ++i) {
    rollout::GenerationRequest r;
    RLVR_ASSIGN_OR_RETURN(r.prompt, prompt(records[i]), "eval record ", i);
    r.stop.eos_ids = eos_ids;
    r.stop.max_new_tokens = max_new_tokens;
    r.seed = Mix64(seed ^ Mix64(i + 1));
    r.sampling.temperature = 0.0;
    greedy.push_back(r);
    if (k > 0) {
      r.sampling.temperature = 1.0;
      r.num_samples = k;
      sampled.push_back(r);
    }
  }
  RLVR_ASSIGN_OR_RETURN(auto g, RunEngine(model, tokenizer, greedy, 256, 1 << 20, 16, nullptr));
  int64_t correct = 0;
  for (const auto& c : g) {
    RLVR_ASSIGN_OR_RETURN(auto r, reward(records[c.request], CompletionText(tokenizer, c),
                                         static_cast<int64_t>(c.tokens.size()), max_new_tokens));
    correct += r.correct;
  }
  result.accuracy = static_cast<double>(correct) / records.size();
  if (k > 0) {
    RLVR_ASSIGN_OR_RETURN(auto s, RunEngine(model, tokenizer, sampled, 256, 1 << 20, 16, nullptr));
    std::vector<uint8_t> any(records.size(), 0);
    for (const auto& c : s) {
      if (any[c.request]) continue;
      RLVR_ASSIGN_OR_RETURN(auto r, reward(records[c.request], CompletionText(tokenizer, c),
                                           static_cast<int64_t>(c.tokens.size()), max_new_tokens));
      any[c.request] = r.correct;
    }
    result.pass_at_k =
        static_cast<double>(std::count(any.begin(), any.end(), 1)) / records.size();
  }
  return result;
}

namespace {

using Clock = std::chrono::steady_clock;

// Everything the rollout of one step produces: the kept groups (after dynamic sampling), their
// texts and rewards, and how long it took.
struct StepRollout {
  int64_t step = 0;
  int64_t weights_step = 0;  // generated by the policy after this many steps
  std::vector<rollout::Completion> kept;
  std::vector<std::string> kept_text;
  std::vector<RewardResult> kept_reward;
  std::vector<std::vector<int32_t>> kept_prompt;
  double gen_seconds = 0, reward_seconds = 0;
  int64_t gen_tokens = 0, rounds = 0, dropped_groups = 0, prompt_tokens = 0;
  Clock::time_point start, end;  // wall-clock interval of the whole rollout
};

// The rollout of step `step` (1-based) with `model`: the step's prompts, G samples each, the
// rewards, and DAPO dynamic sampling (degenerate groups replaced from a per-step stream). A
// function of the run seed, the step and the weights only.
absl::StatusOr<StepRollout> RunRollout(const TrainerInputs& in, policy::CausalLM<float>* model,
                                       int64_t step, int64_t weights_step) {
  const proto::RunConfig& c = in.config;
  const int64_t G = c.grpo().group_size();
  const int64_t P = c.grpo().prompts_per_step();
  const int64_t n_train = static_cast<int64_t>(in.train.size());
  StepRollout out;
  out.step = step;
  out.weights_step = weights_step;
  out.start = Clock::now();
  int64_t kept_groups = 0;
  const int64_t slot = (step - 1) * P;
  int64_t extra_slot = 0;
  const int64_t max_rounds =
      c.grpo().dynamic_sampling() ? std::max(1, c.grpo().max_sampling_rounds()) : 1;
  while (kept_groups < P && out.rounds < max_rounds) {
    const int64_t round = ++out.rounds;
    const int64_t want = P - kept_groups;
    std::vector<rollout::GenerationRequest> requests;
    std::vector<int64_t> req_index;
    for (int64_t i = 0; i < want; ++i) {
      // Round 1 takes the step's own prompts; later rounds draw from a per-step stream.
      int64_t idx = round == 1
                        ? PromptIndex(c.seed(), c.data().shuffle(), n_train, slot + i)
                        : static_cast<int64_t>(
                              Rng(c.seed(), 0x64796e).Split(step).Split(extra_slot++).UniformInt(
                                  static_cast<uint64_t>(n_train)));
      rollout::GenerationRequest r;
      RLVR_ASSIGN_OR_RETURN(r.prompt, in.prompt(in.train[idx]), "training record ", idx);
      r.num_samples = G;
      r.sampling.temperature = c.rollout().temperature();
      r.sampling.top_p = c.rollout().top_p();
      r.sampling.top_k = c.rollout().top_k();
      r.sampling.min_p = c.rollout().min_p();
      r.sampling.repetition_penalty = c.rollout().repetition_penalty();
      r.stop.eos_ids = in.eos_ids;
      r.stop.max_new_tokens = c.rollout().max_new_tokens();
      for (const auto& st : c.rollout().stop()) r.stop.stop_strings.push_back(st);
      r.seed = Mix64(c.seed() ^ Mix64(static_cast<uint64_t>(step) * 1000003u + round * 7919u +
                                      static_cast<uint64_t>(i)));
      requests.push_back(std::move(r));
      req_index.push_back(idx);
    }
    auto t_gen = Clock::now();
    rollout::EngineStats es;
    RLVR_ASSIGN_OR_RETURN(
        auto completions,
        RunEngine(model, *in.tokenizer, requests, c.rollout().max_batch_sequences(),
                  c.rollout().max_tokens_in_flight(), c.rollout().kv_block_size(), &es,
                  c.grpo().router_replay()),
        "step ", step, " rollout");
    out.gen_seconds += Seconds(t_gen);
    out.gen_tokens += es.generated_tokens;
    out.prompt_tokens += es.prompt_tokens;
    auto t_rew = Clock::now();
    std::vector<RewardResult> rewards(completions.size());
    std::vector<std::string> texts(completions.size());
    for (size_t j = 0; j < completions.size(); ++j) {
      const auto& comp = completions[j];
      texts[j] = CompletionText(*in.tokenizer, comp);
      RLVR_ASSIGN_OR_RETURN(
          rewards[j],
          in.reward(in.train[req_index[comp.request]], texts[j],
                    static_cast<int64_t>(comp.tokens.size()), c.rollout().max_new_tokens()),
          "training record ", req_index[comp.request]);
    }
    out.reward_seconds += Seconds(t_rew);
    for (int64_t q = 0; q < static_cast<int64_t>(requests.size()); ++q) {
      bool degenerate = true;
      for (int64_t g = 1; g < G; ++g) {
        if (rewards[q * G + g].total != rewards[q * G].total) degenerate = false;
      }
      const bool last_round = round == max_rounds;
      if (c.grpo().dynamic_sampling() && degenerate && G > 1 && !last_round) {
        ++out.dropped_groups;
        continue;
      }
      if (kept_groups >= P) break;
      ++kept_groups;
      for (int64_t g = 0; g < G; ++g) {
        out.kept.push_back(std::move(completions[q * G + g]));
        out.kept_text.push_back(texts[q * G + g]);
        out.kept_reward.push_back(rewards[q * G + g]);
        out.kept_prompt.push_back(requests[q].prompt);
      }
    }
  }
  out.end = Clock::now();
  return out;
}

// Sets the calling thread's OpenMP team size (an ICV of the calling thread only) and restores
// it on destruction.
class OmpThreadsScope {
 public:
  explicit OmpThreadsScope(int threads) : saved_(omp_get_max_threads()) {
    omp_set_num_threads(threads);
  }
  ~OmpThreadsScope() { omp_set_num_threads(saved_); }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

 private:
  int saved_;
};

// The rollout thread of the overlapped mode: one thread with its own copy of the policy and its
// own OpenMP team size, running one rollout at a time. Start() and Wait() are called by the
// trainer thread only, alternately (Start, Wait, Start, ...). The destructor waits for a rollout
// in flight to end, then joins, so returning early from Run() never leaves it running.
class RolloutWorker {
 public:
  RolloutWorker(const TrainerInputs* in, std::unique_ptr<policy::CausalLM<float>> model,
                int omp_threads)
      : in_(in), model_(std::move(model)), omp_threads_(omp_threads) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~RolloutWorker() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  RolloutWorker(const RolloutWorker&) = delete;
  RolloutWorker& operator=(const RolloutWorker&) = delete;

  // Copies `weights` (the policy after `weights_step` steps; num_param_elements floats) into the
  // worker's model and starts the rollout of `step`. The copy is made before returning, so the
  // caller may then change its weights.
  void Start(int64_t step, int64_t weights_step, const float* weights) {
    std::unique_lock<std::mutex> lock(mu_);
    RLVR_CHECK(!busy_);
    std::copy_n(weights, model_->num_param_elements(), model_->param_data());
    step_ = step;
    weights_step_ = weights_step;
    busy_ = true;
    result_.reset();
    lock.unlock();
    cv_.notify_all();
  }

  // Waits for the rollout started last.
  absl::StatusOr<StepRollout> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return result_.has_value(); });
    absl::StatusOr<StepRollout> r = std::move(*result_);
    result_.reset();
    return r;
  }

 private:
  void Loop() {
    // This thread's OpenMP team (and so OpenBLAS's, in its OpenMP build) is sized once.
    omp_set_num_threads(omp_threads_);
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || (busy_ && !result_.has_value()); });
      if (busy_ && !result_.has_value()) {
        const int64_t step = step_, weights_step = weights_step_;
        lock.unlock();
        absl::StatusOr<StepRollout> r = RunRollout(*in_, model_.get(), step, weights_step);
        lock.lock();
        result_ = std::move(r);
        busy_ = false;
        cv_.notify_all();
        continue;
      }
      if (stop_) return;
    }
  }

  const TrainerInputs* in_;
  std::unique_ptr<policy::CausalLM<float>> model_;
  const int omp_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool busy_ = false;
  int64_t step_ = 0, weights_step_ = 0;
  std::optional<absl::StatusOr<StepRollout>> result_;
  std::thread thread_;  // last: starts after the members it reads are initialized
};

std::string StaleTensorName(int64_t weights_step) {
  return absl::StrCat("policy_after_step_", weights_step);
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
  // Overlapped mode: max_staleness (0 in sync mode) and the policy weights after the steps that
  // pending and future rollouts need (see trainer.h), keyed by step.
  int64_t staleness = 0;
  std::map<int64_t, std::vector<float>> stale_weights;
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
  if (c.grpo().router_replay() && !inputs.model->config().is_moe()) {
    return absl::InvalidArgumentError(
        "grpo.router_replay: the model has no MoE layers (nothing to replay)");
  }
  s->run_dir = c.run_dir();
  RLVR_RETURN_IF_ERROR(MakeDirs(s->run_dir), "run_dir");
  s->optimizer_steps_per_batch = static_cast<int64_t>(c.grpo().mini_batches()) *
                                 c.grpo().ppo_epochs();
  s->staleness = c.trainer().mode() == "overlapped" ? c.trainer().max_staleness() : 0;
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
  const int64_t n_params = model->num_param_elements();
  const std::string metrics_path = s.run_dir + "/metrics.jsonl";
  const std::string samples_path = s.run_dir + "/samples.jsonl";
  RLVR_RETURN_IF_ERROR(WriteFileAtomically(s.run_dir + "/config.yaml", ToYaml(c)));
  // The policy version the rollout of step `st` uses (see trainer.h).
  const int64_t K = s.staleness;
  auto weights_step_for = [K](int64_t st) { return std::max<int64_t>(0, st - 1 - K); };
  s.stale_weights.clear();

  if (resume) {
    std::vector<std::string> skipped;
    RLVR_ASSIGN_OR_RETURN(auto latest, s.checkpoints->LatestValid(&skipped));
    for (const auto& why : skipped) {
      std::fprintf(stderr, "resume: skipping corrupt checkpoint: %s\n", why.c_str());
    }
    if (latest.has_value()) {
      RLVR_ASSIGN_OR_RETURN(auto loaded, policy::LoadModel<float>(latest->path + "/model"),
                            "resume");
      if (loaded.model->num_param_elements() != n_params) {
        return absl::DataLossError(absl::StrCat(latest->path, "/model: parameter count differs "
                                                "from the run's model"));
      }
      std::copy_n(loaded.model->param_data(), n_params, model->param_data());
      RLVR_RETURN_IF_ERROR(s.optimizer->Load(latest->path + "/optimizer.safetensors"), "resume");
      RLVR_ASSIGN_OR_RETURN(std::string state_text,
                            ReadFile(latest->path + "/trainer_state.json"));
      nlohmann::json state = nlohmann::json::parse(state_text, nullptr, false);
      if (state.is_discarded() || !state.contains("step")) {
        return absl::DataLossError(latest->path + "/trainer_state.json: malformed");
      }
      s.step = state["step"].get<int64_t>();
      s.skipped_total = state.value("skipped_total", int64_t{0});
      if (K > 0 && s.step > 0) {
        // The stale policies that the pending and the next rollouts were generated from.
        const std::string stale_path = latest->path + "/stale_weights.safetensors";
        if (!fs::exists(stale_path)) {
          return absl::FailedPreconditionError(absl::StrCat(
              latest->path, ": no stale_weights.safetensors; trainer.mode: overlapped with "
              "trainer.max_staleness: ", K, " needs it (was the run started in sync mode?)"));
        }
        RLVR_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(stale_path), "resume");
        for (int64_t v = weights_step_for(s.step + 1); v < s.step; ++v) {
          const TensorView* t = file->Find(StaleTensorName(v));
          if (t == nullptr) {
            return absl::FailedPreconditionError(absl::StrCat(
                stale_path, ": no tensor ", StaleTensorName(v), "; trainer.max_staleness: ", K,
                " needs the policy after step ", v, " (was max_staleness changed?)"));
          }
          if (t->dtype != DType::kF32 || t->num_elements() != n_params) {
            return absl::DataLossError(absl::StrCat(stale_path, ": tensor ", t->name, ": shape ",
                                                    FormatShape(t->shape), ", expected [",
                                                    n_params, "] F32"));
          }
          std::vector<float>& w = s.stale_weights[v];
          w.resize(static_cast<size_t>(n_params));
          std::memcpy(w.data(), t->data.data(), t->nbytes());
        }
      }
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
  struct Files {
    std::FILE* metrics;
    std::FILE* samples;
    ~Files() {
      std::fclose(metrics);
      std::fclose(samples);
    }
  } files{metrics, samples};

  // Overlapped mode: the rollout thread and this thread split the cores (fixed sizes, so that
  // the numerics do not depend on timing), see trainer.h.
  std::unique_ptr<OmpThreadsScope> train_threads;
  std::unique_ptr<RolloutWorker> worker;
  if (K > 0) {
    const int total = std::max(1, omp_get_max_threads());
    const int rollout_threads = std::max(1, total / 2);
    train_threads = std::make_unique<OmpThreadsScope>(std::max(1, total - rollout_threads));
    RLVR_ASSIGN_OR_RETURN(auto copy, policy::CausalLM<float>::Create(model->config()),
                          "rollout policy copy");
    RLVR_RETURN_IF_ERROR(copy->set_active_vocab(model->active_vocab()));
    s.stale_weights[s.step].assign(model->param_data(), model->param_data() + n_params);
    worker = std::make_unique<RolloutWorker>(&s.in, std::move(copy), rollout_threads);
  }

  const int64_t G = c.grpo().group_size();
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

  bool pending = false;  // a rollout of step s.step + 1 is in flight on the worker
  Clock::time_point last_update_start{}, last_update_end{};
  absl::Status result = absl::OkStatus();
  while (s.step < c.trainer().total_steps()) {
    const int64_t step = s.step + 1;
    auto t_step = Clock::now();
    // --- rollout: here (sync) or the worker's, started during the previous step's update ---
    double wait_seconds = 0;
    absl::StatusOr<StepRollout> got;
    if (worker != nullptr) {
      if (!pending) {
        worker->Start(step, weights_step_for(step),
                      s.stale_weights.at(weights_step_for(step)).data());
      }
      auto t_wait = Clock::now();
      got = worker->Wait();
      pending = false;
      wait_seconds = Seconds(t_wait);
    } else {
      got = RunRollout(s.in, model, step, step - 1);
      wait_seconds = got.ok() ? std::chrono::duration<double>(got->end - got->start).count() : 0;
    }
    if (!got.ok()) return got.status();
    StepRollout& ro = *got;
    RLVR_CHECK(ro.step == step && ro.weights_step == weights_step_for(step));
    // The next step's rollout runs on the worker while this step trains.
    if (worker != nullptr && step + 1 <= c.trainer().total_steps()) {
      const int64_t v = weights_step_for(step + 1);
      worker->Start(step + 1, v, s.stale_weights.at(v).data());
      pending = true;
    }
    // Time the rollout of this step ran alongside the previous step's update.
    double overlap_seconds = 0;
    if (worker != nullptr && last_update_end > last_update_start) {
      auto from = std::max(ro.start, last_update_start);
      auto to = std::min(ro.end, last_update_end);
      if (to > from) overlap_seconds = std::chrono::duration<double>(to - from).count();
    }
    std::vector<rollout::Completion>& kept = ro.kept;
    const int64_t staleness = step - 1 - ro.weights_step;
    // --- advantages and update ---
    const int64_t N = static_cast<int64_t>(kept.size());
    const int64_t groups = N / G;
    // Mini-batches need whole groups; with dynamic sampling capped, trim to a multiple.
    const int64_t usable_groups = groups - groups % std::max<int64_t>(1, up.mini_batches);
    std::vector<std::vector<int32_t>> comp_tokens, prompt_experts, comp_experts;
    std::vector<double> reward_totals;
    for (int64_t i = 0; i < usable_groups * G; ++i) {
      comp_tokens.push_back(kept[i].tokens);
      reward_totals.push_back(ro.kept_reward[i].total);
      if (c.grpo().router_replay()) {
        prompt_experts.push_back(kept[i].prompt_experts);
        comp_experts.push_back(kept[i].experts);
      }
    }
    std::vector<std::vector<int32_t>> batch_prompts(ro.kept_prompt.begin(),
                                                    ro.kept_prompt.begin() + usable_groups * G);
    nlohmann::json row;
    row["step"] = step;
    GrpoUpdateStats ustats;
    double train_seconds = 0;
    int64_t train_tokens = 0;
    auto t_train = Clock::now();
    if (usable_groups > 0) {
      RLVR_ASSIGN_OR_RETURN(auto batch, MakeTokenBatch(batch_prompts, comp_tokens));
      if (c.grpo().router_replay()) {
        int64_t moe_layers = 0;
        for (int64_t l = 0; l < model->config().num_hidden_layers; ++l) {
          moe_layers += model->config().IsMoeLayer(l);
        }
        RLVR_RETURN_IF_ERROR(AttachRouterReplay(&batch, prompt_experts, comp_experts, moe_layers,
                                                model->config().num_experts_per_tok),
                             "step ", step, " grpo.router_replay");
      }
      RLVR_ASSIGN_OR_RETURN(
          auto adv, losses::ComputeTokenAdvantages(adv_opt, reward_totals, G, batch.mask, batch.T),
          "advantages");
      std::vector<float> advf(adv.begin(), adv.end());
      std::vector<float> ref_logp;
      if (s.ref != nullptr) {
        // The reference routes with its own router (no replay): it is a different model.
        TokenBatch ref_batch = batch;
        ref_batch.experts.clear();
        Learner ref_learner(s.ref.get(), nullptr);
        RLVR_ASSIGN_OR_RETURN(ref_logp, ref_learner.LogProbs(ref_batch), "reference logprobs");
      }
      std::vector<float> old;
      if (staleness > 0) {
        // Off-policy: the behaviour policy's logprobs, recorded by the rollout. On-policy
        // (staleness 0, and the sync mode) the learner's own forward gives them exactly.
        old.assign(batch.B * batch.T, 0.0f);
        for (int64_t b = 0; b < batch.B; ++b) {
          for (int64_t j = 0; j < batch.completion_len[b]; ++j) {
            old[b * batch.T + batch.prompt_len[b] + j - 1] = kept[b].logprobs[j];
          }
        }
      }
      last_update_start = Clock::now();
      RLVR_ASSIGN_OR_RETURN(ustats, s.learner->GrpoUpdate(batch, advf, old, ref_logp, up),
                            "step ", step, " update");
      last_update_end = Clock::now();
      train_seconds = Seconds(t_train);
      train_tokens = batch.num_target_tokens();
    }
    s.skipped_total += ustats.skipped_steps;
    s.bad_in_a_row = ustats.skipped_steps > 0 ? s.bad_in_a_row + 1 : 0;
    // --- metrics ---
    double rmean = 0, rstd = 0, acc = 0, len_mean = 0, len_max = 0, trunc = 0;
    std::map<std::string, double> comp_mean;
    for (int64_t i = 0; i < N; ++i) {
      rmean += ro.kept_reward[i].total;
      acc += ro.kept_reward[i].correct;
      len_mean += kept[i].tokens.size();
      len_max = std::max<double>(len_max, kept[i].tokens.size());
      trunc += kept[i].finish_reason == rollout::FinishReason::kLength;
      for (const auto& [k, v] : ro.kept_reward[i].components) comp_mean[k] += v;
    }
    if (N > 0) {
      rmean /= N;
      acc /= N;
      len_mean /= N;
      trunc /= N;
      for (int64_t i = 0; i < N; ++i) rstd += std::pow(ro.kept_reward[i].total - rmean, 2);
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
    row["batch/dropped_groups"] = ro.dropped_groups;
    row["batch/sampling_rounds"] = ro.rounds;
    row["trainer/staleness"] = staleness;
    row["trainer/rollout_weights_step"] = ro.weights_step;
    if (c.grpo().router_replay()) row["moe/replayed_tokens"] = ustats.replayed_tokens;
    for (size_t l = 0; l < ustats.expert_load.size(); ++l) {
      const auto& load = ustats.expert_load[l];
      double total = std::accumulate(load.begin(), load.end(), 0.0);
      double mx = load.empty() ? 0 : *std::max_element(load.begin(), load.end());
      // max/mean load: 1 is perfectly balanced.
      row[absl::StrCat("moe/layer", l, "/max_load_ratio")] =
          total > 0 ? mx / (total / load.size()) : 0.0;
    }
    const double step_seconds = Seconds(t_step);
    const double rollout_seconds = std::chrono::duration<double>(ro.end - ro.start).count();
    row["perf/gen_tokens_per_s"] = ro.gen_seconds > 0 ? ro.gen_tokens / ro.gen_seconds : 0;
    row["perf/train_tokens_per_s"] = train_seconds > 0 ? train_tokens / train_seconds : 0;
    row["timing_s/gen"] = ro.gen_seconds;
    row["timing_s/reward"] = ro.reward_seconds;
    row["timing_s/rollout"] = rollout_seconds;
    row["timing_s/wait_rollout"] = wait_seconds;
    row["timing_s/update"] = train_seconds;
    row["timing_s/overlap"] = overlap_seconds;
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
                             {"prompt", s.in.tokenizer->Decode(ro.kept_prompt[i])},
                             {"completion", ro.kept_text[i]},
                             {"reward", ro.kept_reward[i].total},
                             {"finish_reason", rollout::FinishReasonName(kept[i].finish_reason)}};
      std::string sl = srow.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      std::fwrite(sl.data(), 1, sl.size(), samples);
      if (i == 0) (void)s.events->AddText("samples/completion", ro.kept_text[i], step);
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
        if (K > 0) {
          // The stale policies the pending rollout (step + 1) and the following ones use, so a
          // resumed run regenerates exactly the rollouts the uninterrupted run trains on.
          std::vector<TensorToWrite> tensors;
          for (const auto& [v, w] : s.stale_weights) {
            if (v >= step) continue;
            tensors.push_back({StaleTensorName(v), DType::kF32, {n_params},
                               std::span<const uint8_t>(
                                   reinterpret_cast<const uint8_t*>(w.data()),
                                   w.size() * sizeof(float))});
          }
          RLVR_RETURN_IF_ERROR(WriteSafetensors(dir + "/stale_weights.safetensors", tensors));
        }
        nlohmann::json state = {{"step", step},
                                {"skipped_total", s.skipped_total},
                                {"mode", c.trainer().mode()},
                                {"max_staleness", K}};
        return WriteFileAtomically(dir + "/trainer_state.json", state.dump(1) + "\n");
      });
      if (!info.ok()) {
        result = info.status();
        break;
      }
    }
    if (K > 0) {
      // Keep the policies that rollouts of steps >= step + 2 need; step + 1's has started.
      s.stale_weights[step].assign(model->param_data(), model->param_data() + n_params);
      const int64_t oldest = weights_step_for(step + 2);
      for (auto it = s.stale_weights.begin(); it != s.stale_weights.end();) {
        it = it->first < oldest ? s.stale_weights.erase(it) : std::next(it);
      }
    }
  }
  (void)s.events->Close();
  return result;
}

}  // namespace rlvr::cluster
