// rlvr logprobs --model DIR --in FILE.jsonl --out FILE.jsonl [--batch-tokens N]
//               [--dtype float32|bfloat16] [--device cpu|cuda]
//
// For every input line {"prompt": str | "prompt_tokens": [ids], "completion": str |
// "completion_tokens": [ids], ...}, writes the line back with, per completion token, its
// logprob given the prompt and the preceding completion tokens and the entropy of the
// next-token distribution at that position:
//   {..., "completion_tokens": [...], "logprobs": [...], "entropy": [...], "sum_logprob": x}
// The prompt is encoded with the tokenizer's special tokens (e.g. Llama-3's BOS), the
// completion without. Lines are batched by length (up to --batch-tokens padded tokens per
// forward); the output keeps the input order.
//
// --device cuda: each batch runs policy::CudaCausalLm::Forward (bf16 weights, fp32 residual
// stream; see docs/cuda.md), whose fp32 logits come back to the host and are scored there by
// the same kernels::LogSoftmaxStats as CausalLM::TokenLogProbs on the CPU. The values then
// agree with `--device cpu --dtype bfloat16` to bf16 rounding. Since the full logits [B*T, V]
// come back, a GPU batch holds at most 2^28 / V padded tokens (1 GiB of logits) besides
// --batch-tokens; a longer single line still runs alone. A missing backend or GPU fails before
// the model is read (cli/device.h).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/device.h"
#include "core/jsonl.h"
#include "core/status.h"
#include "kernels/matmul.h"
#include "kernels/softmax.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/model/cuda_model.h"
#include "policy/model/model.h"
#include "policy/text/tokenizer.h"

namespace rlvr::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Item {
  json record;
  std::vector<int32_t> prompt;
  std::vector<int32_t> completion;
};

absl::StatusOr<std::vector<int32_t>> ReadIds(const json& j, const std::string& where,
                                             int64_t vocab) {
  if (!j.is_array()) return absl::InvalidArgumentError(absl::StrCat(where, ": expected a list"));
  std::vector<int32_t> out;
  for (size_t i = 0; i < j.size(); ++i) {
    if (!j[i].is_number_integer() || j[i].get<int64_t>() < 0 || j[i].get<int64_t>() >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "[", i, "]: expected a token id in [0, ", vocab, "), got ", j[i].dump()));
    }
    out.push_back(j[i].get<int32_t>());
  }
  return out;
}

// What CausalLM::TokenLogProbs does after its LM head, over host logits [R, V]: the chosen
// token's logprob (0 where target < 0) and the entropy at temperature 1 over the first
// `active` ids.
void ScoreLogits(const float* logits, const int32_t* targets, int64_t R, int64_t V, int64_t active,
                 float* logprob, float* entropy) {
  std::vector<int32_t> t(targets, targets + R);
  for (int32_t& x : t) x = std::max(x, 0);
  std::vector<float> lse(static_cast<size_t>(R));
  kernels::LogSoftmaxStats<float>(logits, t.data(), R, V, active, 1.0, lse.data(), logprob,
                                  entropy);
  for (int64_t n = 0; n < R; ++n) {
    if (targets[n] < 0) logprob[n] = 0;
  }
}

absl::Status Run(const std::string& model_dir, const std::string& in_path,
                 const std::string& out_path, int64_t batch_tokens, const std::string& device) {
  RLVR_ASSIGN_OR_RETURN(policy::LoadedModel<float> loaded, policy::LoadModel<float>(model_dir));
  policy::CausalLM<float>& model = *loaded.model;
  const int64_t V = model.config().vocab_size;
  std::unique_ptr<policy::Tokenizer> tok;
  const std::string tok_path = (fs::path(model_dir) / "tokenizer.json").string();
  if (fs::exists(tok_path)) {
    RLVR_ASSIGN_OR_RETURN(tok, policy::Tokenizer::FromFile(tok_path));
    if (tok->vocab_size() < V) RLVR_RETURN_IF_ERROR(model.set_active_vocab(tok->vocab_size()));
  }
  const int64_t active = model.active_vocab();
  std::unique_ptr<policy::CudaCausalLm> gpu;
  if (device == "cuda") {
    // Forward needs no KV cache: the smallest pool.
    policy::CudaKvOptions kv;
    kv.num_blocks = 1;
    kv.max_blocks_per_seq = 1;
    RLVR_ASSIGN_OR_RETURN(gpu, policy::CudaCausalLm::Create(model, kv), "--device cuda");
    batch_tokens = std::min(batch_tokens, std::max<int64_t>(1, (int64_t{1} << 28) / V));
  }

  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<JsonlReader> reader, JsonlReader::Open(in_path));
  std::vector<Item> items;
  json rec;
  while (true) {
    RLVR_ASSIGN_OR_RETURN(bool more, reader->Next(&rec));
    if (!more) break;
    const std::string where = absl::StrCat(in_path, ":", reader->line_number());
    if (!rec.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
    Item it;
    for (const char* side : {"prompt", "completion"}) {
      std::vector<int32_t>& ids = std::string(side) == "prompt" ? it.prompt : it.completion;
      const std::string tokens_key = absl::StrCat(side, "_tokens");
      if (rec.contains(tokens_key)) {
        RLVR_ASSIGN_OR_RETURN(
            ids, ReadIds(rec[tokens_key], absl::StrCat(where, ": ", tokens_key), active));
      } else if (rec.contains(side) && rec[side].is_string()) {
        if (tok == nullptr) {
          return absl::FailedPreconditionError(
              absl::StrCat(where, ": ", side, " is text but ", model_dir,
                           " has no tokenizer.json; give ", tokens_key));
        }
        ids = tok->Encode(rec[side].get<std::string>(),
                          /*add_special_tokens=*/std::string(side) == "prompt");
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": missing \"", side, "\" (a string) or \"", tokens_key, "\""));
      }
    }
    if (it.prompt.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the prompt is empty (the first completion token needs context)"));
    }
    const int64_t len = static_cast<int64_t>(it.prompt.size() + it.completion.size());
    if (len > model.config().max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", len,
                                                     " tokens exceed max_position_embeddings ",
                                                     model.config().max_position_embeddings));
    }
    it.record = std::move(rec);
    items.push_back(std::move(it));
  }

  // Batches of similar lengths.
  std::vector<size_t> order(items.size());
  std::iota(order.begin(), order.end(), 0);
  auto length = [&](size_t i) { return items[i].prompt.size() + items[i].completion.size(); };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return length(a) < length(b); });
  std::vector<json> results(items.size());
  size_t pos = 0;
  int64_t total_tokens = 0;
  while (pos < order.size()) {
    // Longest first within the sorted run: grow the batch while B * Tmax fits.
    size_t end = pos + 1;
    while (end < order.size() &&
           static_cast<int64_t>((end - pos + 1) * length(order[end])) <= batch_tokens) {
      ++end;
    }
    const int64_t B = static_cast<int64_t>(end - pos);
    const int64_t Tn = static_cast<int64_t>(length(order[end - 1]));
    std::vector<int32_t> ids(B * Tn, 0), targets(B * Tn, -1);
    for (int64_t b = 0; b < B; ++b) {
      const Item& it = items[order[pos + b]];
      const int64_t P = static_cast<int64_t>(it.prompt.size());
      std::copy(it.prompt.begin(), it.prompt.end(), ids.begin() + b * Tn);
      std::copy(it.completion.begin(), it.completion.end(), ids.begin() + b * Tn + P);
      for (size_t i = 0; i < it.completion.size(); ++i) {
        targets[b * Tn + P - 1 + i] = it.completion[i];
      }
    }
    std::vector<float> lp(B * Tn), ent(B * Tn);
    if (gpu != nullptr) {
      std::vector<float> logits(static_cast<size_t>(B * Tn * V));
      RLVR_RETURN_IF_ERROR(gpu->Forward(ids.data(), B, Tn, logits.data()), "--device cuda");
      ScoreLogits(logits.data(), targets.data(), B * Tn, V, active, lp.data(), ent.data());
    } else {
      RLVR_RETURN_IF_ERROR(model.Forward(ids.data(), B, Tn));
      RLVR_RETURN_IF_ERROR(model.TokenLogProbs(targets.data(), lp.data(), ent.data()));
    }
    for (int64_t b = 0; b < B; ++b) {
      Item& it = items[order[pos + b]];
      const int64_t P = static_cast<int64_t>(it.prompt.size());
      json out = std::move(it.record);
      json lps = json::array(), ents = json::array();
      double sum = 0;
      for (size_t i = 0; i < it.completion.size(); ++i) {
        lps.push_back(lp[b * Tn + P - 1 + i]);
        ents.push_back(ent[b * Tn + P - 1 + i]);
        sum += lp[b * Tn + P - 1 + i];
      }
      out["completion_tokens"] = it.completion;
      out["logprobs"] = std::move(lps);
      out["entropy"] = std::move(ents);
      out["sum_logprob"] = sum;
      results[order[pos + b]] = std::move(out);
      total_tokens += static_cast<int64_t>(it.completion.size());
    }
    pos = end;
  }
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<JsonlWriter> writer, JsonlWriter::Open(out_path));
  for (const json& r : results) RLVR_RETURN_IF_ERROR(writer->Write(r));
  RLVR_RETURN_IF_ERROR(writer->Close());
  std::fprintf(stderr, "rlvr logprobs: %zu lines, %lld completion tokens -> %s\n", results.size(),
               static_cast<long long>(total_tokens), out_path.c_str());
  return absl::OkStatus();
}

}  // namespace

int LogprobsMain(const Args& args) {
  try {
    CLI::App app("Per-token logprobs and entropies of completions under a model.", "rlvr logprobs");
    std::string model_dir, in_path, out_path;
    int64_t batch_tokens = 8192;
    std::string dtype = "float32";
    app.add_option("--model", model_dir, "model directory (Hugging Face layout)")->required();
    app.add_option("--in", in_path,
                   "JSONL with prompt (or prompt_tokens) and completion (or completion_tokens)")
        ->required();
    app.add_option("--out", out_path, "output JSONL (written atomically)")->required();
    app.add_option("--batch-tokens", batch_tokens, "padded tokens per forward pass")
        ->check(CLI::PositiveNumber);
    app.add_option("--dtype", dtype,
                   "float32, or bfloat16 (bf16 matrix products); --device cpu only (cuda is "
                   "always bf16 weights with fp32 accumulation)");
    std::string device = "cpu";
    app.add_option("--device", device,
                   "cpu, or cuda: the forward on the GPU (bf16; matches --device cpu --dtype "
                   "bfloat16 to bf16 rounding; see docs/cuda.md)");
    std::vector<std::string> argv(args.rbegin(), args.rend() - 1);
    try {
      app.parse(argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    absl::Status s = kernels::SetMatmulPrecision(dtype);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr logprobs: --dtype: %s\n", s.ToString().c_str());
      return 2;
    }
    s = CheckDeviceFlag(device);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr logprobs: %s\n", s.ToString().c_str());
      return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
    }
    if (device == "cuda" && app.count("--dtype") > 0 && dtype != "bfloat16") {
      std::fprintf(stderr,
                   "rlvr logprobs: --dtype %s: not available with --device cuda (the GPU "
                   "computes in bf16; use --dtype bfloat16 or leave it out)\n",
                   dtype.c_str());
      return 2;
    }
    s = Run(model_dir, in_path, out_path, batch_tokens, device);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr logprobs: %s\n", s.ToString().c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlvr logprobs: %s\n", e.what());
    return 1;
  }
}

}  // namespace rlvr::cli
