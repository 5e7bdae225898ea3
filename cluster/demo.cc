#include "cluster/demo.h"

#include <chrono>
#include <cstdio>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cluster/demo_task.h"
#include "cluster/learner.h"
#include "cluster/report.h"
#include "cluster/trainer.h"
#include "core/config.h"
#include "core/file_util.h"
#include "core/rng.h"
#include "core/status.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"
#include "policy/text/tokenizer.h"
#include "verifiers/math/math_verifier.h"

namespace rlvr::cluster {
namespace {

constexpr int32_t kEos = 256;

policy::ModelConfig DemoModelConfig() {
  auto c = policy::Preset("qwen3_moe", "tiny");
  policy::ModelConfig m = *c;  // the preset exists: checked by the policy tests
  m.vocab_size = 257;
  m.hidden_size = 128;
  m.num_hidden_layers = 3;
  m.num_attention_heads = 4;
  m.num_key_value_heads = 2;
  m.head_dim = 32;
  m.intermediate_size = 256;
  m.num_experts = 8;
  m.num_experts_per_tok = 2;
  m.moe_intermediate_size = 64;
  m.norm_topk_prob = true;
  m.max_position_embeddings = 128;
  m.tie_word_embeddings = false;
  m.eos_token_ids = {kEos};
  m.bos_token_id = -1;
  m.pad_token_id = kEos;
  return m;
}

nlohmann::json Record(const ArithmeticProblem& p) {
  return {{"prompt", p.prompt}, {"answer", p.answer}, {"solution", p.solution}};
}

}  // namespace

absl::StatusOr<DemoResult> RunDemo(const DemoOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto minutes = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60.0;
  };
  auto say = [&](const std::string& s) {
    if (o.verbose) std::fprintf(stderr, "demo [%5.1f min] %s\n", minutes(), s.c_str());
  };
  if (o.trainer_mode != "sync" && o.trainer_mode != "overlapped") {
    return absl::InvalidArgumentError(absl::StrCat("--trainer-mode (trainer.mode): '",
                                                   o.trainer_mode, "' is not sync or overlapped"));
  }
  if (o.max_staleness < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-staleness (trainer.max_staleness): must be >= 0, got ", o.max_staleness));
  }
  RLVR_RETURN_IF_ERROR(MakeDirs(o.run_dir + "/tokenizer"), "demo");
  const std::string tok_json = ByteLevelTokenizerJson();
  RLVR_RETURN_IF_ERROR(WriteFileAtomically(o.run_dir + "/tokenizer/tokenizer.json", tok_json));
  RLVR_ASSIGN_OR_RETURN(auto tokenizer, policy::Tokenizer::FromJson(tok_json, "demo tokenizer"));

  // Held-out problems first; training problems never repeat their prompts.
  std::vector<nlohmann::json> eval, train;
  std::set<std::string> held_out;
  for (const auto& p : MakeArithmeticProblems(o.seed ^ 0xe7a1, 0, o.eval_problems * 4)) {
    if (static_cast<int64_t>(eval.size()) == o.eval_problems) break;
    if (held_out.insert(p.prompt).second) eval.push_back(Record(p));
  }
  for (const auto& p : MakeArithmeticProblems(o.seed, 0, 20000)) {
    if (!held_out.count(p.prompt)) train.push_back(Record(p));
  }
  say(absl::StrCat(train.size(), " training problems, ", eval.size(), " held-out, e.g. ",
                   train[0]["prompt"].get<std::string>(), " -> ",
                   train[0]["solution"].get<std::string>()));

  policy::ModelConfig mc = DemoModelConfig();
  RLVR_ASSIGN_OR_RETURN(auto model, policy::CausalLM<float>::Create(mc), "demo model");
  model->InitRandom(o.seed);
  say(absl::StrCat("policy: qwen3_moe, ", mc.NumParameters(), " parameters (",
                   mc.NumActiveParameters(), " active), ", mc.num_experts, " experts top-",
                   mc.num_experts_per_tok));

  PromptFn prompt = [&](const nlohmann::json& r) -> absl::StatusOr<std::vector<int32_t>> {
    return tokenizer->Encode(r["prompt"].get<std::string>());
  };
  // The answer must be marked (\boxed{}): a bare trailing number in a scratchpad is not one.
  verifiers::math::MathVerifierOptions vo;
  vo.extract.fallback_last_number = false;
  vo.extract.take_whole_answer = false;
  RewardFn reward = [vo](const nlohmann::json& r, const std::string& completion, int64_t,
                         int64_t) -> absl::StatusOr<RewardResult> {
    auto v = verifiers::math::VerifyMath(completion, r["answer"].get<std::string>(), vo);
    RewardResult out;
    out.total = v.reward;
    out.correct = v.correct;
    out.components["math"] = v.reward;
    return out;
  };

  // --- SFT warm start: a fixed number of steps on scratchpad solutions ---
  {
    policy::AdamWConfig ac;
    ac.lr = o.sft_lr;
    ac.warmup_steps = 10;
    ac.max_grad_norm = 1.0;
    RLVR_ASSIGN_OR_RETURN(auto opt, policy::AdamW::Create(ac, TrainableParams(model.get())));
    Learner learner(model.get(), &opt);
    Rng rng(o.seed, 0x736674);
    double loss_avg = 0;
    for (int64_t step = 0; step < o.sft_steps; ++step) {
      std::vector<std::vector<int32_t>> prompts, completions;
      for (int64_t i = 0; i < o.sft_batch; ++i) {
        const auto& r = train[rng.UniformInt(train.size())];
        prompts.push_back(tokenizer->Encode(r["prompt"].get<std::string>()));
        auto c = tokenizer->Encode(r["solution"].get<std::string>());
        c.push_back(kEos);
        completions.push_back(std::move(c));
      }
      RLVR_ASSIGN_OR_RETURN(auto batch, MakeTokenBatch(prompts, completions));
      RLVR_ASSIGN_OR_RETURN(Learner::SftStats sft, learner.SftUpdate(batch, 0.001));
      const double loss = sft.loss;
      loss_avg = step == 0 ? loss : 0.9 * loss_avg + 0.1 * loss;
      if ((step + 1) % 50 == 0) say(absl::StrFormat("sft step %d loss %.3f", step + 1, loss_avg));
    }
  }
  const int64_t max_new = 32;
  RLVR_ASSIGN_OR_RETURN(EvalResult before, Evaluate(model.get(), eval, prompt, reward, *tokenizer,
                                                    {kEos}, max_new, o.pass_k, o.seed));
  say(absl::StrFormat("after SFT: greedy accuracy %.1f%%, pass@%d %.1f%%", 100 * before.accuracy,
                      o.pass_k, 100 * before.pass_at_k));

  // --- GRPO ---
  proto::RunConfig config = DefaultRunConfig();
  config.set_run_dir(o.run_dir);
  config.set_seed(o.seed);
  config.mutable_model()->set_arch("qwen3_moe");
  config.mutable_model()->set_chat_template("none");
  config.mutable_rollout()->set_max_new_tokens(max_new);
  config.mutable_rollout()->set_temperature(1.0f);
  config.mutable_grpo()->set_group_size(o.group_size);
  config.mutable_grpo()->set_prompts_per_step(o.prompts_per_step);
  config.mutable_grpo()->set_loss_agg_mode("token_mean");
  config.mutable_optimizer()->set_lr(o.grpo_lr);
  config.mutable_optimizer()->set_grad_clip(1.0f);
  config.mutable_trainer()->set_total_steps(o.grpo_steps);
  config.mutable_trainer()->set_save_every(std::max<int64_t>(1, o.grpo_steps / 2));
  config.mutable_trainer()->set_mode(o.trainer_mode);
  config.mutable_trainer()->set_max_staleness(static_cast<int32_t>(o.max_staleness));
  config.mutable_grpo()->set_router_replay(o.router_replay);
  config.mutable_grpo()->set_clip_eps_high(static_cast<float>(o.clip_eps_high));
  config.mutable_grpo()->set_dynamic_sampling(o.dynamic_sampling);
  config.mutable_reward()->clear_verifiers();
  auto* v = config.mutable_reward()->add_verifiers();
  v->set_name("math");
  v->set_weight(1.0f);
  TrainerInputs in;
  in.config = config;
  in.train = train;
  in.prompt = prompt;
  in.reward = reward;
  in.tokenizer = tokenizer.get();
  in.eos_ids = {kEos};
  in.model = std::move(model);
  in.tokenizer_dir = o.run_dir + "/tokenizer";
  in.on_step = [&](const nlohmann::json& row) {
    int64_t step = row["step"].get<int64_t>();
    if (step % 5 == 0 || step == 1) {
      say(absl::StrFormat("grpo step %d: reward %.3f, entropy %.3f, %.0f gen tok/s",
                          step, row["critic/rewards/mean"].get<double>(),
                          row["actor/entropy"].get<double>(),
                          row["perf/gen_tokens_per_s"].get<double>()));
    }
  };
  RLVR_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(std::move(in)));
  RLVR_RETURN_IF_ERROR(trainer->Run(/*resume=*/false), "demo GRPO");
  RLVR_ASSIGN_OR_RETURN(EvalResult after, Evaluate(trainer->model(), eval, prompt, reward,
                                                   *tokenizer, {kEos}, max_new, 0, o.seed));
  DemoResult result;
  result.accuracy_before = before.accuracy;
  result.accuracy_after = after.accuracy;
  result.pass_at_k_before = before.pass_at_k;
  result.grpo_steps_run = trainer->step();
  result.minutes = minutes();
  nlohmann::json summary = {{"held_out_problems", eval.size()},
                            {"accuracy_before_grpo", before.accuracy},
                            {"accuracy_after_grpo", after.accuracy},
                            {"pass_at_8_before_grpo", before.pass_at_k},
                            {"grpo_steps", result.grpo_steps_run},
                            {"sft_steps", o.sft_steps},
                            {"seed", o.seed},
                            {"minutes", result.minutes}};
  RLVR_RETURN_IF_ERROR(WriteFileAtomically(o.run_dir + "/summary.json", summary.dump(1) + "\n"));
  RLVR_ASSIGN_OR_RETURN(result.report_path, WriteReport(o.run_dir));
  return result;
}

}  // namespace rlvr::cluster
