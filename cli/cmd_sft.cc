// rlvr sft CONFIG [key=value ...]
//
// Supervised fine-tuning from a config (examples/sft_gsm8k.yaml): the model at model.path (an HF
// checkpoint directory, e.g. from `rlvr init`), the JSONL examples at sft.train_path with the
// prompt in sft.prompt_key (text, or chat messages) and the target text in sft.completion_key. The
// prompt is wrapped as model.chat_template says ("none": as is, "r1_zero": the R1-Zero template,
// "model": the model's chat template with a generation prompt), the same way `rlvr eval --template
// raw|r1-zero|chat` and `rlvr generate` wrap it; the completion is encoded without special tokens
// and, with sft.add_eos, ends with the model's first EOS id. The loop, batching, packing, length
// limit and run directory are cluster/sft.h's.
//
// Bad input is an error naming file:line and the key: a line that is not an object, a missing or
// non-string completion, a missing prompt, a completion that encodes to no tokens; an empty file is
// an error too.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/device.h"
#include "cluster/sft.h"
#include "core/config.h"
#include "core/jsonl.h"
#include "core/status.h"
#include "policy/model/checkpoint.h"
#include "policy/text/chat_template.h"
#include "policy/text/tokenizer.h"
#include "rollout/prompt.h"

namespace rlvr::cli {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<rollout::PromptTemplate> TemplateOf(const std::string& chat_template) {
  if (chat_template == "none") return rollout::PromptTemplate::kRaw;
  if (chat_template == "r1_zero") return rollout::PromptTemplate::kR1Zero;
  if (chat_template == "model") return rollout::PromptTemplate::kChat;
  return absl::InvalidArgumentError(absl::StrCat("model.chat_template: '", chat_template,
                                                 "' is not one of model, r1_zero, none"));
}

absl::Status RunSft(const std::string& config_path, const std::vector<std::string>& overrides) {
  RLVR_ASSIGN_OR_RETURN(proto::RunConfig config, LoadRunConfig(config_path, overrides));
  RLVR_RETURN_IF_ERROR(CheckTrainingDevice(config.device()));
  const proto::SftConfig& sc = config.sft();
  if (config.model().path().empty()) {
    return absl::InvalidArgumentError(
        "model.path: a checkpoint directory is "
        "required (create one with `rlvr init`)");
  }
  if (sc.train_path().empty()) {
    return absl::InvalidArgumentError("sft.train_path: a JSONL file of examples is required");
  }
  const std::string& model_dir = config.model().path();
  RLVR_ASSIGN_OR_RETURN(policy::LoadedModel<float> loaded, policy::LoadModel<float>(model_dir),
                        "model.path");
  const std::string tok_path = (fs::path(model_dir) / "tokenizer.json").string();
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<policy::Tokenizer> tok,
                        policy::Tokenizer::FromFile(tok_path), "model.path");
  if (tok->vocab_size() < loaded.model->config().vocab_size) {
    RLVR_RETURN_IF_ERROR(loaded.model->set_active_vocab(tok->vocab_size()), tok_path);
  }
  RLVR_ASSIGN_OR_RETURN(rollout::PromptTemplate mode, TemplateOf(config.model().chat_template()));
  std::shared_ptr<const policy::ModelChatTemplate> chat;
  std::optional<bool> thinking;
  if (mode == rollout::PromptTemplate::kChat) {
    RLVR_ASSIGN_OR_RETURN(auto t, policy::LoadModelChatTemplate(model_dir), "model.chat_template");
    chat = std::make_shared<policy::ModelChatTemplate>(std::move(t));
    thinking = config.model().enable_thinking();
  }
  rollout::PromptEncoder encoder(tok.get(), chat, mode, thinking);
  int32_t eos = -1;
  if (sc.add_eos()) {
    if (loaded.eos_token_ids.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sft.add_eos: ", model_dir, " names no eos_token_id (set sft.add_eos=false)"));
    }
    eos = static_cast<int32_t>(loaded.eos_token_ids[0]);
  }

  // Read and encode every example before training, so bad input fails first.
  const std::string& path = sc.train_path();
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> reader, JsonlReader::Open(path),
                        "sft.train_path");
  std::vector<cluster::SftExample> examples;
  nlohmann::json rec;
  while (true) {
    RLVR_ASSIGN_OR_RETURN(bool more, reader->Next(&rec), "sft.train_path");
    if (!more) break;
    const std::string where = absl::StrCat(path, ":", reader->line_number());
    if (!rec.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected a JSON object"));
    }
    if (!rec.contains(sc.prompt_key())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": missing field '", sc.prompt_key(), "' (sft.prompt_key)"));
    }
    if (!rec.contains(sc.completion_key()) || !rec[sc.completion_key()].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", rec.contains(sc.completion_key()) ? "non-string" : "missing",
                       " field '", sc.completion_key(), "' (sft.completion_key)"));
    }
    cluster::SftExample e;
    e.line = reader->line_number();
    RLVR_ASSIGN_OR_RETURN(
        e.prompt, encoder.Encode(rec[sc.prompt_key()], absl::StrCat(where, ": ", sc.prompt_key())));
    if (e.prompt.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", sc.prompt_key(), ": the prompt encodes to no tokens"));
    }
    e.completion = tok->Encode(rec[sc.completion_key()].get<std::string>());
    if (e.completion.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", sc.completion_key(), ": the completion encodes to no tokens"));
    }
    if (eos >= 0) e.completion.push_back(eos);
    examples.push_back(std::move(e));
  }
  if (examples.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no examples (empty file)"));
  }
  const size_t n_examples = examples.size();
  cluster::SftInputs in;
  in.config = config;
  in.examples = std::move(examples);
  in.model = std::move(loaded.model);
  in.tokenizer_dir = model_dir;
  in.on_step = [](const nlohmann::json& row) {
    std::fprintf(stderr,
                 "step %lld: loss %.4f lr %.3g grad_norm %.3f, %lld examples "
                 "in %lld rows, "
                 "%.0f tok/s\n",
                 static_cast<long long>(row["step"].get<int64_t>()),
                 row["train/loss"].get<double>(), row["train/lr"].get<double>(),
                 row["train/grad_norm"].get<double>(),
                 static_cast<long long>(row["batch/examples"].get<int64_t>()),
                 static_cast<long long>(row["batch/rows"].get<int64_t>()),
                 row["perf/tokens_per_s"].get<double>());
  };
  RLVR_ASSIGN_OR_RETURN(cluster::SftResult r, cluster::RunSft(std::move(in)));
  std::fprintf(stderr,
               "rlvr sft: %zu examples (%lld completions truncated and %lld examples "
               "dropped at "
               "max_seq_len %lld), %lld steps in %.1f s, loss %.4f -> %.4f; model: %s\n",
               n_examples, static_cast<long long>(r.truncated), static_cast<long long>(r.dropped),
               static_cast<long long>(r.max_seq_len), static_cast<long long>(r.steps), r.seconds,
               r.first_loss, r.last_loss, r.final_dir.c_str());
  return absl::OkStatus();
}

}  // namespace

int SftMain(const Args& args) {
  CLI::App app{
      "Supervised fine-tuning on prompt/completion JSONL (see "
      "examples/sft_gsm8k.yaml)",
      "rlvr sft"};
  std::vector<std::string> positional;
  app.add_option("config_and_overrides", positional, "CONFIG.yaml then key=value overrides");
  if (int status = ParseCommandArgs(app, args); status >= 0) return status;
  std::string file;
  std::vector<std::string> overrides;
  SplitConfigAndOverrides(positional, &file, &overrides);
  if (file.empty()) {
    std::fprintf(stderr, "rlvr sft: a CONFIG file is required\n");
    return 2;
  }
  absl::Status s = RunSft(file, overrides);
  if (!s.ok()) {
    std::fprintf(stderr, "rlvr sft: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace rlvr::cli
