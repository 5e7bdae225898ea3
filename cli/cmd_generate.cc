// rlvr generate --model DIR --in FILE.jsonl --out FILE.jsonl [--n 8] [--seed S]
//               [--temperature T] [--top-p P] [--top-k K] [--min-p M]
//               [--repetition-penalty R] [--max-new-tokens N] [--stop STR ...]
//               [--template raw|r1-zero|chat] [--enable-thinking true|false]
//               [--prompt-key KEY] [--allow-extra-fields]
//               [--max-batch B] [--max-tokens-in-flight N] [--block-size S]
//               [--dtype float32|bfloat16] [--device cpu|cuda]
//
// Input: one JSON object per line with `prompt` (text, or chat messages
// [{"role", "content"}, ...]) or `prompt_tokens` (ids), and optionally `id` (copied to the
// output) and `seed` (per-line seed; default: --seed + line index). Any other field is an error
// naming the line and the field, unless --allow-extra-fields (then it is copied to every output
// line of that prompt).
//
// Output: one line per completion, in input order then sample order:
//   {"index": line index, "sample": s, "prompt": <as given>, "prompt_tokens": [...],
//    "completion": text, "tokens": [...], "completion_tokens": [...] (same ids),
//    "logprobs": [...] (policy, temperature 1), "sampling_logprobs": [...],
//    "finish_reason": "eos" | "stop" | "length", "experts": [...] (MoE router replay, when
//    recorded: [tokens, moe layers, K] flattened, the last token's row -1),
//    "prompt_experts": [...] ([prompt tokens, moe layers, K]), "id": ..., extra fields...}
// `rlvr logprobs --in` this file re-scores the same ids (prompt_tokens, completion_tokens).
// A progress bar with tokens/s is drawn on a terminal; a summary line goes to stderr.
//
// --device cuda: the model runs on the GPU (policy::CudaCausalLm, bf16) and tokens are sampled
// on the host by the same Sampler with the same seeds (rollout/cuda_generate.h, which lists
// what differs from the CPU engine: no prefix sharing across the n samples, no "experts" /
// "prompt_experts" fields). Greedy tokens match `--device cpu --dtype bfloat16` up to
// near-ties. A missing backend or GPU fails before the model is read (cli/device.h).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/device.h"
#include "core/jsonl.h"
#include "core/progress.h"
#include "core/status.h"
#include "kernels/matmul.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/model/model.h"
#include "policy/text/chat_template.h"
#include "policy/text/tokenizer.h"
#include "rollout/cuda_generate.h"
#include "rollout/engine.h"
#include "rollout/prompt.h"
#include "rollout/recording_backend.h"

namespace rlvr::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct GenerateFlags {
  std::string model_dir, in_path, out_path;
  std::string dtype = "float32";
  std::string device = "cpu";
  int64_t n = 1;
  uint64_t seed = 0;
  rollout::SamplingParams sampling;
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;
  std::string template_name = "raw";
  std::string enable_thinking;  // "", "true", "false"
  std::string prompt_key = "prompt";
  bool allow_extra = false;
  rollout::EngineOptions engine;
};

struct Line {
  json record;  // the input object
  std::vector<int32_t> prompt;
  uint64_t seed = 0;
};

absl::Status Run(const GenerateFlags& f) {
  RLVR_ASSIGN_OR_RETURN(policy::LoadedModel<float> loaded, policy::LoadModel<float>(f.model_dir));
  policy::CausalLM<float>& model = *loaded.model;
  const std::string tok_path = (fs::path(f.model_dir) / "tokenizer.json").string();
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<policy::Tokenizer> tok,
                        policy::Tokenizer::FromFile(tok_path));
  if (tok->vocab_size() < model.config().vocab_size) {
    RLVR_RETURN_IF_ERROR(model.set_active_vocab(tok->vocab_size()), tok_path);
  }
  RLVR_ASSIGN_OR_RETURN(std::shared_ptr<const policy::ModelChatTemplate> chat,
                        policy::LoadModelChatTemplateIfAny(f.model_dir));
  RLVR_ASSIGN_OR_RETURN(rollout::PromptTemplate mode,
                        rollout::ParsePromptTemplate(f.template_name));
  std::optional<bool> thinking;
  if (!f.enable_thinking.empty()) thinking = f.enable_thinking == "true";
  rollout::PromptEncoder encoder(tok.get(), chat, mode, thinking);

  rollout::StopConditions stop;
  for (int64_t id : loaded.eos_token_ids) stop.eos_ids.push_back(static_cast<int32_t>(id));
  stop.stop_strings = f.stop;
  stop.max_new_tokens = f.max_new_tokens;

  // Read and encode every prompt first, so bad input fails before any sampling.
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> reader, JsonlReader::Open(f.in_path));
  std::vector<Line> lines;
  json rec;
  const std::string tokens_key = f.prompt_key + "_tokens";
  while (true) {
    RLVR_ASSIGN_OR_RETURN(bool more, reader->Next(&rec));
    if (!more) break;
    const std::string where = absl::StrCat(f.in_path, ":", reader->line_number());
    if (!rec.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected a JSON object"));
    }
    if (!f.allow_extra) {
      for (auto it = rec.begin(); it != rec.end(); ++it) {
        if (it.key() != f.prompt_key && it.key() != tokens_key && it.key() != "id" &&
            it.key() != "seed") {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": unknown field \"", it.key(), "\" (known: ", f.prompt_key, ", ", tokens_key,
              ", id, seed; --allow-extra-fields copies other fields to the output)"));
        }
      }
    }
    Line line;
    line.seed = f.seed + lines.size();
    if (rec.contains("seed")) {
      if (!rec["seed"].is_number_unsigned()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": seed: expected a non-negative integer, got ",
                         rec["seed"].dump()));
      }
      line.seed = rec["seed"].get<uint64_t>();
    }
    if (rec.contains(tokens_key)) {
      const json& ids = rec[tokens_key];
      if (!ids.is_array()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", tokens_key, ": expected a list"));
      }
      for (size_t i = 0; i < ids.size(); ++i) {
        if (!ids[i].is_number_integer()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": ", tokens_key, "[", i, "]: expected a token id"));
        }
        line.prompt.push_back(ids[i].get<int32_t>());
      }
    } else if (rec.contains(f.prompt_key)) {
      RLVR_ASSIGN_OR_RETURN(line.prompt,
                            encoder.Encode(rec[f.prompt_key],
                                           absl::StrCat(where, ": ", f.prompt_key)));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": missing \"", f.prompt_key, "\" (or \"", tokens_key, "\")"));
    }
    line.record = std::move(rec);
    lines.push_back(std::move(line));
  }

  std::vector<rollout::GenerationRequest> requests(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    requests[i].prompt = lines[i].prompt;
    requests[i].num_samples = f.n;
    requests[i].sampling = f.sampling;
    requests[i].stop = stop;
    requests[i].seed = lines[i].seed;
  }
  rollout::TokenBytesFn bytes = [&tok](int32_t id) { return tok->TokenBytes(id); };
  // CPU: the engine over a recording backend, which also keeps every MoE layer's expert
  // choices (router replay). GPU: CudaGenerator (no router replay).
  std::unique_ptr<rollout::RecordingBackend> backend;
  std::unique_ptr<rollout::Engine> engine;
  std::unique_ptr<rollout::CudaGenerator> gpu;
  if (f.device == "cuda") {
    RLVR_ASSIGN_OR_RETURN(gpu, rollout::CudaGenerator::Create(model, f.engine, bytes),
                          "--device cuda");
  } else {
    RLVR_ASSIGN_OR_RETURN(backend, rollout::RecordingBackend::Create(&model));
    RLVR_ASSIGN_OR_RETURN(engine, rollout::Engine::Create(backend.get(), f.engine, bytes));
  }
  // Counted in generated tokens (the rate is the throughput); total unknown in advance.
  ProgressBar bar(0, "generate", {.unit = "tok"});
  const auto start = std::chrono::steady_clock::now();
  auto on_done = [&bar](const rollout::Completion& c) {
    bar.Add(static_cast<int64_t>(c.tokens.size()));
  };
  absl::StatusOr<std::vector<rollout::Completion>> out =
      gpu != nullptr ? gpu->Generate(requests, on_done) : engine->Generate(requests, on_done);
  bar.Finish();
  if (!out.ok()) {
    // Request indices are line indices: name the file.
    return Annotate(out.status(), f.in_path);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> writer, JsonlWriter::Open(f.out_path));
  for (const rollout::Completion& c : *out) {
    const Line& line = lines[c.request];
    json o = json::object();
    o["index"] = c.request;
    o["sample"] = c.sample;
    if (line.record.contains("id")) o["id"] = line.record["id"];
    if (line.record.contains(f.prompt_key)) o["prompt"] = line.record[f.prompt_key];
    o["prompt_tokens"] = line.prompt;
    o["completion"] = encoder.CompletionText(c);
    o["tokens"] = c.tokens;
    o["completion_tokens"] = c.tokens;
    o["logprobs"] = c.logprobs;
    o["sampling_logprobs"] = c.sampling_logprobs;
    o["finish_reason"] = rollout::FinishReasonName(c.finish_reason);
    if (!c.experts.empty()) {
      o["experts"] = c.experts;
      o["prompt_experts"] = c.prompt_experts;
    }
    if (f.allow_extra) {
      for (auto it = line.record.begin(); it != line.record.end(); ++it) {
        if (!o.contains(it.key()) && it.key() != f.prompt_key) o[it.key()] = it.value();
      }
    }
    RLVR_RETURN_IF_ERROR(writer->Write(o), f.out_path);
  }
  RLVR_RETURN_IF_ERROR(writer->Close(), f.out_path);
  const rollout::EngineStats& s = gpu != nullptr ? gpu->stats() : engine->stats();
  std::fprintf(stderr,
               "rlvr generate: %lld prompts x %lld samples, %lld prompt tokens, %lld generated "
               "tokens in %.2fs (%.0f tok/s)%s -> %s\n",
               static_cast<long long>(requests.size()), static_cast<long long>(f.n),
               static_cast<long long>(s.prompt_tokens),
               static_cast<long long>(s.generated_tokens), seconds,
               seconds > 0 ? s.generated_tokens / seconds : 0.0,
               s.clipped_max_new_tokens > 0
                   ? absl::StrCat(", max_new_tokens clipped to the context for ",
                                  s.clipped_max_new_tokens, " prompts")
                         .c_str()
                   : "",
               f.out_path.c_str());
  return absl::OkStatus();
}

}  // namespace

int GenerateMain(const Args& args) {
  try {
    CLI::App app("Sample completions for the prompts of a JSONL file.", "rlvr generate");
    GenerateFlags f;
    app.add_option("--model", f.model_dir, "model directory (Hugging Face layout)")->required();
    app.add_option("--in", f.in_path, "input JSONL: prompt (text or chat messages) per line")
        ->required();
    app.add_option("--out", f.out_path, "output JSONL, one line per completion (atomic)")
        ->required();
    app.add_option("--n", f.n, "completions per prompt")->check(CLI::PositiveNumber);
    app.add_option("--seed", f.seed, "base seed (line i uses seed + i unless it has \"seed\")");
    app.add_option("--temperature", f.sampling.temperature, "0 = greedy")
        ->check(CLI::Range(0.0, 1e6));
    app.add_option("--top-p", f.sampling.top_p, "nucleus mass in (0, 1]");
    app.add_option("--top-k", f.sampling.top_k, "keep the k most probable (0 = off)");
    app.add_option("--min-p", f.sampling.min_p, "keep p >= min_p * max p (0 = off)");
    app.add_option("--repetition-penalty", f.sampling.repetition_penalty, "1 = off");
    app.add_option("--max-new-tokens", f.max_new_tokens,
                   "token budget per completion (clipped to the context, with a count)")
        ->check(CLI::PositiveNumber);
    app.add_option("--stop", f.stop, "stop string (repeatable)");
    app.add_option("--template", f.template_name,
                   "how text prompts are wrapped: raw, r1-zero (DeepSeek-R1-Zero), chat");
    app.add_option("--enable-thinking", f.enable_thinking,
                   "Qwen3 chat templates: true or false (default: unset)")
        ->check(CLI::IsMember({"true", "false"}));
    app.add_option("--prompt-key", f.prompt_key, "input field holding the prompt");
    app.add_flag("--allow-extra-fields", f.allow_extra,
                 "copy unknown input fields to the output instead of failing");
    app.add_option("--max-batch", f.engine.max_batch, "samples decoded together")
        ->check(CLI::PositiveNumber);
    app.add_option("--max-tokens-in-flight", f.engine.max_tokens_in_flight,
                   "KV cache size in positions (bounds memory)")
        ->check(CLI::PositiveNumber);
    app.add_option("--block-size", f.engine.block_size, "KV cache block size in positions")
        ->check(CLI::PositiveNumber);
    app.add_option("--dtype", f.dtype,
                   "float32, or bfloat16: bf16 matrix products from packed bf16 weights (logprobs "
                   "then match `rlvr logprobs --dtype bfloat16` to bf16 rounding, not 1e-5); "
                   "--device cpu only");
    app.add_option("--device", f.device,
                   "cpu, or cuda: the model on the GPU in bf16, sampling on the host with the "
                   "same seeds (no prefix sharing, no router replay; see docs/cuda.md)");
    std::vector<std::string> argv(args.rbegin(), args.rend() - 1);
    try {
      app.parse(argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    if (absl::Status v = f.sampling.Validate(); !v.ok()) {
      std::fprintf(stderr, "rlvr generate: %s\n", v.ToString().c_str());
      return 2;
    }
    absl::Status s = kernels::SetMatmulPrecision(f.dtype);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr generate: --dtype: %s\n", s.ToString().c_str());
      return 2;
    }
    s = CheckDeviceFlag(f.device);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr generate: %s\n", s.ToString().c_str());
      return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
    }
    if (f.device == "cuda" && app.count("--dtype") > 0 && f.dtype != "bfloat16") {
      std::fprintf(stderr,
                   "rlvr generate: --dtype %s: not available with --device cuda (the GPU "
                   "computes in bf16; use --dtype bfloat16 or leave it out)\n",
                   f.dtype.c_str());
      return 2;
    }
    s = Run(f);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr generate: %s\n", s.ToString().c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlvr generate: %s\n", e.what());
    return 1;
  }
}

}  // namespace rlvr::cli
