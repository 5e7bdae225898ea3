// rlvr side of the GRPO-step benchmark (bench/grpo_step/run.sh runs it next to PyTorch).
//
// One GRPO step on a random preset model, timed by stage, exactly as cluster/trainer.cc composes
// it (minus metrics and checkpoints):
//   generate   the rollout engine (paged KV cache, each prompt prefilled once and forked G
//              times) samples G completions per prompt at temperature 1. No EOS id is given, so
//              every completion is exactly max_new_tokens long: the PyTorch side does the same,
//              and both do the same amount of work whatever they sample.
//   verify     decode each completion, score it with the math verifier against the gold answer,
//              group-normalized (GRPO) advantages, and the padded training batch.
//   reference  the frozen reference model's token logprobs (Learner::LogProbs).
//   update     Learner::GrpoUpdate: forward, clipped GRPO loss (token_mean) with a k3 KL term,
//              backward, AdamW with gradient clipping (one optimizer step: ratio 1 on-policy).
//
// Prompts: the first --prompts questions of a GSM8K-style JSONL (`question`, `answer` ending in
// "#### N"), as "Question: ...\nAnswer: ... \boxed{}" text, tokenized with --tokenizer. With
// --save DIR it writes the initial model (HF layout, with the tokenizer), DIR/grpo_step.json (the
// prompt ids, gold answers and hyper-parameters, so the PyTorch side runs the very same step)
// and DIR/check.json (one sampled completion with its rollout logprobs, for a same-model check).
// Prints one JSON line on stdout with the per-stage seconds of the timed steps (mean) and the
// peak RSS; progress goes to stderr.
#include <sys/resource.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "cluster/learner.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "core/process.h"
#include "core/rng.h"
#include "core/status.h"
#include "kernels/matmul.h"
#include "nlohmann/json.hpp"
#include "policy/losses/advantages.h"
#include "policy/model/checkpoint.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"
#include "policy/text/tokenizer.h"
#include "rollout/backend.h"
#include "rollout/engine.h"
#include "rollout/recording_backend.h"
#include "verifiers/math/math_verifier.h"

namespace {

namespace cluster = rlvr::cluster;
namespace losses = rlvr::policy::losses;
namespace policy = rlvr::policy;
namespace rollout = rlvr::rollout;
using Clock = std::chrono::steady_clock;

double PeakRssMb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// CPU seconds of the whole process (all threads): on a shared machine the wall clock overstates
// the cost, so both are reported.
double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

constexpr const char* kStages[] = {"generate", "verify", "reference", "update", "total"};

struct Options {
  std::string arch = "qwen3_moe", preset = "small";
  std::string tokenizer = "tests/fixtures/tokenizers/qwen2/tokenizer.json";
  std::string data = "../shared/data/gsm8k_test.jsonl";
  std::string save_dir;
  std::string backend = "causal_lm";
  std::string dtype = "bfloat16";  // model.dtype: bf16 matrix products, fp32 weights and state
  int64_t prompts = 8, group = 8, max_new_tokens = 128, steps = 1, warmup = 1;
  uint64_t seed = 1;
  // The step's hyper-parameters (written to grpo_step.json for the PyTorch side).
  double lr = 1e-6, weight_decay = 0.01, grad_clip = 1.0, clip_eps = 0.2, kl_coef = 0.04;
  double aux_loss_coef = 0.001, adv_eps = 1e-6;
};

struct Problem {
  std::string question, answer;
  std::vector<int32_t> prompt;
};

// The prompt text of a question; the PyTorch side never re-tokenizes it (it reads the ids).
std::string PromptText(const std::string& question) {
  return absl::StrCat("Question: ", question,
                      "\nReason step by step and put the final answer in \\boxed{}.\nAnswer:");
}

absl::StatusOr<std::vector<Problem>> LoadProblems(const std::string& path, int64_t count,
                                                  const policy::Tokenizer& tok) {
  RLVR_ASSIGN_OR_RETURN(auto rows, rlvr::ReadJsonl(path));
  if (static_cast<int64_t>(rows.size()) < count) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", rows.size(), " records, --prompts wants ", count));
  }
  std::vector<Problem> out;
  for (int64_t i = 0; i < count; ++i) {
    const nlohmann::json& r = rows[i];
    if (!r.contains("question") || !r["question"].is_string() || !r.contains("answer") ||
        !r["answer"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", i + 1, ": expected string fields question and answer"));
    }
    Problem p;
    p.question = r["question"].get<std::string>();
    std::string a = r["answer"].get<std::string>();
    size_t hash = a.rfind("####");
    if (hash == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", i + 1, ": answer: no \"#### <final answer>\""));
    }
    p.answer = absl::StrReplaceAll(a.substr(hash + 4), {{",", ""}, {" ", ""}});
    p.prompt = tok.Encode(PromptText(p.question));
    out.push_back(std::move(p));
  }
  return out;
}

struct StepResult {
  // Per stage (kStages order): wall and CPU seconds.
  double wall[5] = {}, cpu[5] = {};
  int64_t prompt_tokens = 0, generated_tokens = 0, batch_rows = 0, batch_len = 0;
  int64_t target_tokens = 0;
  double reward_mean = 0, loss = 0, kl = 0, grad_norm = 0, entropy = 0;
  int64_t skipped = 0;
  rollout::Completion first;  // for the same-model check
};

class Bench {
 public:
  Bench(const Options& o, const policy::Tokenizer* tok, std::vector<Problem> problems,
        policy::CausalLM<float>* model, policy::CausalLM<float>* ref, policy::AdamW* opt)
      : o_(o), tok_(tok), problems_(std::move(problems)), model_(model), ref_(ref),
        learner_(model, opt) {
    vo_.extract.fallback_last_number = false;
    vo_.extract.take_whole_answer = false;
    up_.loss.clip_eps_low = o.clip_eps;
    up_.loss.clip_eps_high = o.clip_eps;
    up_.loss.agg_mode = losses::LossAggMode::kTokenMean;
    up_.loss.kl_estimator = losses::KlEstimator::kK3;
    up_.loss.kl_coef = o.kl_coef;
    up_.loss.norm_length = o.max_new_tokens;
    up_.group_size = o.group;
    up_.aux_loss_coef = o.aux_loss_coef;
    adv_.estimator = losses::AdvantageEstimator::kGrpo;
    adv_.eps = o.adv_eps;
  }

  absl::StatusOr<StepResult> Step(int64_t step) {
    StepResult r;
    const int64_t P = static_cast<int64_t>(problems_.size()), G = o_.group;
    const auto t0 = Clock::now();
    const double c0 = CpuNow();
    // --- generate ---
    std::vector<rollout::GenerationRequest> requests(P);
    for (int64_t i = 0; i < P; ++i) {
      rollout::GenerationRequest& q = requests[i];
      q.prompt = problems_[i].prompt;
      q.num_samples = G;
      q.sampling.temperature = 1.0;
      q.stop.max_new_tokens = o_.max_new_tokens;  // no eos_ids: fixed-length completions
      q.seed = rlvr::Mix64(o_.seed ^ rlvr::Mix64(static_cast<uint64_t>(step) * 1000003u + i));
      r.prompt_tokens += static_cast<int64_t>(q.prompt.size());
    }
    std::unique_ptr<rollout::DecodeBackend> backend;
    if (o_.backend == "recording") {
      RLVR_ASSIGN_OR_RETURN(backend, rollout::RecordingBackend::Create(model_));
    } else {
      backend = std::make_unique<rollout::CausalLmBackend>(model_);
    }
    rollout::EngineOptions eo;
    eo.max_batch = P * G;
    eo.max_tokens_in_flight = P * G * (o_.max_new_tokens + 16) + r.prompt_tokens + 64 * P;
    RLVR_ASSIGN_OR_RETURN(auto engine, rollout::Engine::Create(backend.get(), eo));
    RLVR_ASSIGN_OR_RETURN(std::vector<rollout::Completion> comps, engine->Generate(requests));
    r.generated_tokens = engine->stats().generated_tokens;
    const auto t1 = Clock::now();
    const double c1 = CpuNow();
    // --- verify, advantages, batch ---
    std::vector<double> rewards(comps.size());
    std::vector<std::vector<int32_t>> prompts, completions;
    for (size_t j = 0; j < comps.size(); ++j) {
      const rollout::Completion& c = comps[j];
      const std::string text = tok_->Decode(c.tokens, /*skip_special_tokens=*/true);
      rewards[j] = rlvr::verifiers::math::VerifyMath(text, problems_[c.request].answer, vo_).reward;
      r.reward_mean += rewards[j] / static_cast<double>(comps.size());
      prompts.push_back(problems_[c.request].prompt);
      completions.push_back(c.tokens);
    }
    RLVR_ASSIGN_OR_RETURN(cluster::TokenBatch batch, cluster::MakeTokenBatch(prompts, completions));
    RLVR_ASSIGN_OR_RETURN(std::vector<double> adv,
                          losses::ComputeTokenAdvantages(adv_, rewards, G, batch.mask, batch.T));
    std::vector<float> advf(adv.begin(), adv.end());
    const auto t2 = Clock::now();
    const double c2 = CpuNow();
    // --- reference logprobs ---
    cluster::Learner ref_learner(ref_, nullptr);
    RLVR_ASSIGN_OR_RETURN(std::vector<float> ref_logp, ref_learner.LogProbs(batch));
    const auto t3 = Clock::now();
    const double c3 = CpuNow();
    // --- policy forward/backward + AdamW ---
    RLVR_ASSIGN_OR_RETURN(cluster::GrpoUpdateStats u,
                          learner_.GrpoUpdate(batch, advf, /*logp_old=*/{}, ref_logp, up_));
    const auto t4 = Clock::now();
    const double c4 = CpuNow();
    const Clock::time_point t[] = {t0, t1, t2, t3, t4};
    const double c[] = {c0, c1, c2, c3, c4};
    for (int i = 0; i < 4; ++i) {
      r.wall[i] = Seconds(t[i], t[i + 1]);
      r.cpu[i] = c[i + 1] - c[i];
    }
    r.wall[4] = Seconds(t0, t4);
    r.cpu[4] = c4 - c0;
    r.batch_rows = batch.B;
    r.batch_len = batch.T;
    r.target_tokens = batch.num_target_tokens();
    r.loss = u.loss;
    r.kl = u.kl;
    r.grad_norm = u.grad_norm;
    r.entropy = u.entropy;
    r.skipped = u.skipped_steps;
    r.first = comps.front();
    return r;
  }

 private:
  const Options& o_;
  const policy::Tokenizer* tok_;
  std::vector<Problem> problems_;
  policy::CausalLM<float>* model_;
  policy::CausalLM<float>* ref_;
  cluster::Learner learner_;
  rlvr::verifiers::math::MathVerifierOptions vo_;
  cluster::GrpoUpdateOptions up_;
  losses::AdvantageOptions adv_;
};

absl::Status Main(const Options& o) {
  if (o.prompts < 1 || o.group < 1 || o.max_new_tokens < 1 || o.steps < 1 || o.warmup < 0) {
    return absl::InvalidArgumentError(
        "--prompts, --group, --max-new-tokens and --steps must be >= 1, --warmup >= 0");
  }
  if (o.backend != "causal_lm" && o.backend != "recording") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend: \"", o.backend, "\"; expected causal_lm or recording"));
  }
  RLVR_ASSIGN_OR_RETURN(auto tok, policy::Tokenizer::FromFile(o.tokenizer));
  RLVR_ASSIGN_OR_RETURN(policy::ModelConfig config, policy::Preset(o.arch, o.preset));
  // As `rlvr init` does: the tokenizer's vocabulary rounded up to a multiple of 64.
  config.vocab_size = (static_cast<int64_t>(tok->vocab_size()) + 63) / 64 * 64;
  config.eos_token_ids.clear();
  for (const char* t : {"<|im_end|>", "<|endoftext|>"}) {
    if (auto id = tok->TokenToId(t)) config.eos_token_ids.push_back(*id);
  }
  if (config.eos_token_ids.empty()) config.eos_token_ids = {0};
  config.pad_token_id = config.eos_token_ids.back();
  config.bos_token_id = -1;
  RLVR_ASSIGN_OR_RETURN(auto model, policy::CausalLM<float>::Create(config));
  model->InitRandom(1234, 0.02);
  RLVR_RETURN_IF_ERROR(model->set_active_vocab(tok->vocab_size()));
  // The frozen reference: a copy of the initial policy (as cluster::Trainer makes it).
  RLVR_ASSIGN_OR_RETURN(auto ref, policy::CausalLM<float>::Create(config));
  std::copy_n(model->param_data(), model->num_param_elements(), ref->param_data());
  RLVR_RETURN_IF_ERROR(ref->set_active_vocab(model->active_vocab()));

  RLVR_ASSIGN_OR_RETURN(std::vector<Problem> problems, LoadProblems(o.data, o.prompts, *tok));
  if (!o.save_dir.empty()) {
    policy::SaveOptions so;
    const std::string tok_dir = o.tokenizer.substr(0, o.tokenizer.find_last_of('/'));
    so.tokenizer_dir = tok_dir == o.tokenizer ? "." : tok_dir;
    RLVR_RETURN_IF_ERROR(policy::SaveModel(*model, o.save_dir, so));
    nlohmann::json j = {{"prompts", nlohmann::json::array()},
                        {"answers", nlohmann::json::array()},
                        {"group", o.group},
                        {"max_new_tokens", o.max_new_tokens},
                        {"valid_vocab", model->active_vocab()},
                        {"lr", o.lr},
                        {"weight_decay", o.weight_decay},
                        {"grad_clip", o.grad_clip},
                        {"clip_eps", o.clip_eps},
                        {"kl_coef", o.kl_coef},
                        {"aux_loss_coef", o.aux_loss_coef},
                        {"adv_eps", o.adv_eps},
                        {"seed", o.seed}};
    for (const Problem& p : problems) {
      j["prompts"].push_back(p.prompt);
      j["answers"].push_back(p.answer);
    }
    RLVR_RETURN_IF_ERROR(rlvr::WriteFileAtomically(o.save_dir + "/grpo_step.json", j.dump()));
  }
  policy::AdamWConfig oc;
  oc.lr = o.lr;
  oc.weight_decay = o.weight_decay;
  oc.max_grad_norm = o.grad_clip;
  RLVR_ASSIGN_OR_RETURN(policy::AdamW opt, policy::AdamW::Create(oc, cluster::TrainableParams(
                                                                          model.get())));
  Bench bench(o, tok.get(), std::move(problems), model.get(), ref.get(), &opt);

  StepResult mean;
  StepResult last;
  for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
    RLVR_ASSIGN_OR_RETURN(last, bench.Step(s), "step ", s);
    if (s == 0 && !o.save_dir.empty()) {
      // Sampled from the initial weights, which the saved model holds.
      const rollout::Completion& c = last.first;
      nlohmann::json check = {{"prompt_index", c.request},
                              {"tokens", c.tokens},
                              {"logprobs", c.logprobs}};
      RLVR_RETURN_IF_ERROR(
          rlvr::WriteFileAtomically(o.save_dir + "/check.json", check.dump()));
    }
    std::fprintf(stderr,
                 "rlvr step %lld%s: generate %.2fs, verify %.3fs, reference %.2fs, update %.2fs, "
                 "total %.2fs (CPU %.2fs); batch %lldx%lld, reward %.3f, loss %.3g, kl %.3g, "
                 "grad norm %.3g\n",
                 static_cast<long long>(s), s < o.warmup ? " (warm-up)" : "", last.wall[0],
                 last.wall[1], last.wall[2], last.wall[3], last.wall[4], last.cpu[4],
                 static_cast<long long>(last.batch_rows), static_cast<long long>(last.batch_len),
                 last.reward_mean, last.loss, last.kl, last.grad_norm);
    if (s >= o.warmup) {
      for (int i = 0; i < 5; ++i) {
        mean.wall[i] += last.wall[i] / static_cast<double>(o.steps);
        mean.cpu[i] += last.cpu[i] / static_cast<double>(o.steps);
      }
    }
  }
  nlohmann::json out = {{"impl", absl::StrCat("rlvr ", o.dtype, " (", o.backend, " backend)")},
                        {"params", model->config().NumParameters()},
                        {"prompts", o.prompts},
                        {"group", o.group},
                        {"max_new_tokens", o.max_new_tokens},
                        {"prompt_tokens", last.prompt_tokens},
                        {"generated_tokens", last.generated_tokens},
                        {"batch_rows", last.batch_rows},
                        {"batch_len", last.batch_len},
                        {"target_tokens", last.target_tokens},
                        {"steps", o.steps},
                        {"reward_mean", last.reward_mean},
                        {"loss", last.loss},
                        {"kl", last.kl},
                        {"grad_norm", last.grad_norm},
                        {"entropy", last.entropy},
                        {"skipped_updates", last.skipped},
                        {"peak_rss_mb", PeakRssMb()}};
  for (int i = 0; i < 5; ++i) {
    out[absl::StrCat(kStages[i], "_s")] = mean.wall[i];
    out[absl::StrCat(kStages[i], "_cpu_s")] = mean.cpu[i];
  }
  std::printf("%s\n", out.dump().c_str());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("rlvr GRPO-step benchmark (bench/grpo_step/run.sh)");
  Options o;
  app.add_option("--arch", o.arch);
  app.add_option("--preset", o.preset);
  app.add_option("--tokenizer", o.tokenizer, "tokenizer.json");
  app.add_option("--data", o.data, "GSM8K-style JSONL (question, answer with #### N)");
  app.add_option("--prompts", o.prompts);
  app.add_option("--group", o.group);
  app.add_option("--max-new-tokens", o.max_new_tokens);
  app.add_option("--steps", o.steps, "timed steps (their mean is printed)");
  app.add_option("--warmup", o.warmup, "untimed full steps first");
  app.add_option("--seed", o.seed);
  app.add_option("--backend", o.backend, "rollout backend: causal_lm (the trainer's) or recording");
  app.add_option("--save", o.save_dir, "write the initial model and the step's inputs here");
  app.add_option("--dtype", o.dtype, "float32 or bfloat16 (as model.dtype of `rlvr train`)");
  CLI11_PARSE(app, argc, argv);
  rlvr::KeepFreedMemoryInProcess();  // as the rlvr CLI does
  if (absl::Status st = rlvr::kernels::SetMatmulPrecision(o.dtype); !st.ok()) {
    std::fprintf(stderr, "bench_grpo_step: --dtype: %s\n", st.ToString().c_str());
    return 1;
  }
  absl::Status s = Main(o);
  if (!s.ok()) {
    std::fprintf(stderr, "bench_grpo_step: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
