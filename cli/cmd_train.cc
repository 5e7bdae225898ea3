// rlvr train CONFIG [key=value ...] | rlvr train --resume RUN_DIR [key=value ...]
//
// GRPO from a config: the model at model.path (an HF checkpoint directory, e.g. from `rlvr
// init`), the JSONL data at data.train_path, the rewards of reward.verifiers. A resumed run reads
// RUN_DIR/config.yaml and continues from its newest checkpoint that verifies.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/device.h"
#include "cluster/trainer.h"
#include "core/config.h"
#include "kernels/matmul.h"
#include "core/jsonl.h"
#include "core/status.h"
#include "policy/model/checkpoint.h"
#include "policy/text/chat_template.h"
#include "policy/text/tokenizer.h"
#include "reward/composer.h"

namespace rlvr::cli {
namespace {

struct TrainSetup {
  std::unique_ptr<policy::Tokenizer> tokenizer;
  std::unique_ptr<policy::ModelChatTemplate> chat;
  std::unique_ptr<reward::RewardComposer> composer;
  std::shared_ptr<std::vector<std::shared_ptr<const nlohmann::json>>> records;
};

absl::Status RunTrain(const std::string& config_path, const std::vector<std::string>& overrides,
                      bool resume) {
  RLVR_ASSIGN_OR_RETURN(proto::RunConfig config, LoadRunConfig(config_path, overrides));
  RLVR_RETURN_IF_ERROR(CheckTrainingDevice(config.device()));
  // model.dtype: bfloat16 runs every float matrix product with bf16 operands (fp32 weights,
  // gradients and optimizer state), the rollout from packed bf16 weights.
  RLVR_RETURN_IF_ERROR(kernels::SetMatmulPrecision(config.model().dtype()), "model.dtype");
  if (config.model().path().empty()) {
    return absl::InvalidArgumentError(
        "model.path: a checkpoint directory is required (create one with `rlvr init`)");
  }
  if (config.data().train_path().empty()) {
    return absl::InvalidArgumentError("data.train_path: a JSONL training file is required");
  }
  TrainSetup setup;
  RLVR_ASSIGN_OR_RETURN(auto loaded, policy::LoadModel<float>(config.model().path()), "model.path");
  RLVR_ASSIGN_OR_RETURN(setup.tokenizer,
                        policy::Tokenizer::FromFile(config.model().path() + "/tokenizer.json"),
                        "model.path");
  if (config.model().chat_template() == "model") {
    RLVR_ASSIGN_OR_RETURN(auto chat, policy::LoadModelChatTemplate(config.model().path()),
                          "model.chat_template");
    setup.chat = std::make_unique<policy::ModelChatTemplate>(std::move(chat));
  }
  RLVR_ASSIGN_OR_RETURN(setup.composer, reward::CreateRewardComposer(config), "reward");
  RLVR_ASSIGN_OR_RETURN(auto rows, ReadJsonl(config.data().train_path()), "data.train_path");
  const std::string& key = config.data().prompt_key();
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!rows[i].contains(key) || !rows[i][key].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(config.data().train_path(), ":", i + 1,
                                                     ": missing string field '", key,
                                                     "' (data.prompt_key)"));
    }
    RLVR_RETURN_IF_ERROR(setup.composer->CheckRecord(rows[i], config.data().train_path(),
                                                     static_cast<int64_t>(i + 1)));
  }
  const policy::Tokenizer* tok = setup.tokenizer.get();
  const policy::ModelChatTemplate* chat = setup.chat.get();
  const std::string mode = config.model().chat_template();
  const bool thinking = config.model().enable_thinking();
  cluster::TrainerInputs in;
  in.prompt = [tok, chat, mode, key, thinking](
                  const nlohmann::json& r) -> absl::StatusOr<std::vector<int32_t>> {
    std::string text = r[key].get<std::string>();
    if (mode == "r1_zero") {
      text = policy::R1ZeroPrompt(text);
    } else if (mode == "model") {
      policy::ChatRenderOptions o;
      o.enable_thinking = thinking;
      o.bos_token = chat->bos_token;
      o.eos_token = chat->eos_token;
      RLVR_ASSIGN_OR_RETURN(text, policy::RenderChat(*chat->chat_template,
                                                     {{"user", text, std::nullopt}}, o));
    }
    return tok->Encode(text);
  };
  reward::RewardComposer* composer = setup.composer.get();
  std::string source = config.data().train_path();
  in.reward = [composer, source, key](const nlohmann::json& r, const std::string& completion,
                                      int64_t n_tokens,
                                      int64_t max_tokens) -> absl::StatusOr<cluster::RewardResult> {
    reward::Sample s;
    s.prompt = r[key].get<std::string>();
    s.completion = completion;
    s.record = std::make_shared<const nlohmann::json>(r);
    s.completion_tokens = n_tokens;
    s.max_tokens = max_tokens;
    s.truncated = n_tokens >= max_tokens;
    s.source = source;
    RLVR_ASSIGN_OR_RETURN(auto batch, composer->Score({s}));
    cluster::RewardResult out;
    const auto& sr = batch.samples[0];
    out.total = sr.total;
    out.correct = sr.correct.value_or(false);
    for (size_t i = 0; i < composer->components().size(); ++i) {
      out.components[composer->components()[i].name] = sr.components[i];
    }
    return out;
  };
  in.config = config;
  in.train = std::move(rows);
  in.tokenizer = tok;
  for (int64_t id : loaded.eos_token_ids) in.eos_ids.push_back(static_cast<int32_t>(id));
  in.model = std::move(loaded.model);
  in.tokenizer_dir = config.model().path();
  in.on_step = [](const nlohmann::json& row) {
    std::fprintf(stderr, "step %lld: reward %.4f accuracy %.3f entropy %.3f (%.1f s)\n",
                 static_cast<long long>(row["step"].get<int64_t>()),
                 row["critic/rewards/mean"].get<double>(), row["reward/accuracy"].get<double>(),
                 row["actor/entropy"].get<double>(), row["timing_s/step"].get<double>());
  };
  RLVR_ASSIGN_OR_RETURN(auto trainer, cluster::Trainer::Create(std::move(in)));
  return trainer->Run(resume);
}

}  // namespace

int TrainMain(const Args& args) {
  CLI::App app{"GRPO training from a config (see examples/grpo_gsm8k.yaml)", "rlvr train"};
  std::vector<std::string> positional;
  std::string resume_dir;
  app.add_option("config_and_overrides", positional, "CONFIG.yaml then key=value overrides");
  app.add_option("--resume", resume_dir, "continue the run in this directory");
  if (int status = ParseCommandArgs(app, args); status >= 0) return status;
  std::string file;
  std::vector<std::string> overrides;
  SplitConfigAndOverrides(positional, &file, &overrides);
  if (!resume_dir.empty()) {
    if (!file.empty()) {
      std::fprintf(stderr, "rlvr train: give either CONFIG or --resume RUN_DIR, not both\n");
      return 2;
    }
    file = resume_dir + "/config.yaml";
    overrides.insert(overrides.begin(), "run_dir=" + resume_dir);
  } else if (file.empty()) {
    std::fprintf(stderr, "rlvr train: a CONFIG file is required (or --resume RUN_DIR)\n");
    return 2;
  }
  absl::Status s = RunTrain(file, overrides, !resume_dir.empty());
  if (!s.ok()) {
    std::fprintf(stderr, "rlvr train: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace rlvr::cli
