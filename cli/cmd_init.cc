// rlvr init --arch ARCH --preset PRESET --out DIR [--seed S] [--tokenizer PATH] [--dtype D]
//
// Writes a random-initialized model in the Hugging Face layout (config.json, model.safetensors,
// generation_config.json, tokenizer.json, tokenizer_config.json). The vocabulary is the
// tokenizer's, rounded up to a multiple of 64 (the padding ids are masked at run time). Without
// --tokenizer, the small byte-level BPE tokenizers of the test fixtures are used (Qwen2-style
// for the Qwen and DeepSeek-style architectures, Llama-3-style for llama), found next to the
// source tree ($RLVR_SOURCE_DIR, the working directory, or above the binary).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "core/file_util.h"
#include "core/status.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/text/tokenizer.h"

namespace rlvr::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Directories that may hold the source tree's tests/fixtures/tokenizers.
std::vector<fs::path> SourceRoots() {
  std::vector<fs::path> roots;
  if (const char* env = std::getenv("RLVR_SOURCE_DIR")) roots.emplace_back(env);
  roots.push_back(fs::current_path());
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) {
      roots.push_back(p);
    }
  }
  return roots;
}

absl::StatusOr<std::string> DefaultTokenizerDir(const std::string& arch) {
  const std::string name = arch == "llama" ? "llama3" : "qwen2";
  for (const fs::path& root : SourceRoots()) {
    fs::path dir = root / "tests" / "fixtures" / "tokenizers" / name;
    if (fs::exists(dir / "tokenizer.json")) return dir.string();
  }
  return absl::NotFoundError(absl::StrCat(
      "no built-in tokenizer found (looked for tests/fixtures/tokenizers/", name,
      "/tokenizer.json under $RLVR_SOURCE_DIR, the working directory and above the binary); "
      "pass --tokenizer PATH"));
}

std::optional<int32_t> FindToken(const policy::Tokenizer& tok, const char* text) {
  return tok.TokenToId(text);
}

absl::Status RunInit(const std::string& arch, const std::string& preset, const std::string& out,
                     uint64_t seed, std::string tokenizer, const std::string& dtype) {
  RLVR_ASSIGN_OR_RETURN(policy::ModelConfig config, policy::Preset(arch, preset));
  if (tokenizer.empty()) {
    RLVR_ASSIGN_OR_RETURN(tokenizer, DefaultTokenizerDir(arch));
  }
  std::string tok_dir = tokenizer, tok_file = tokenizer;
  if (fs::is_directory(tokenizer)) {
    tok_file = (fs::path(tokenizer) / "tokenizer.json").string();
  } else {
    tok_dir = fs::path(tokenizer).parent_path().string();
  }
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<policy::Tokenizer> tok,
                        policy::Tokenizer::FromFile(tok_file));
  config.vocab_size = (static_cast<int64_t>(tok->vocab_size()) + 63) / 64 * 64;

  // Special tokens: Qwen's ChatML and Llama-3's header tokens, whichever the tokenizer has.
  std::vector<int64_t> eos;
  for (const char* t : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
                        "<|eom_id|>", "<｜end▁of▁sentence｜>"}) {
    if (auto id = FindToken(*tok, t)) eos.push_back(*id);
  }
  if (eos.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        tok_file, ": no end-of-sequence token (<|im_end|>, <|endoftext|>, <|eot_id|>, ...)"));
  }
  config.eos_token_ids = eos;
  config.bos_token_id = -1;
  if (auto bos = FindToken(*tok, "<|begin_of_text|>")) config.bos_token_id = *bos;
  config.pad_token_id = eos.back();
  if (!dtype.empty()) config.torch_dtype = dtype;
  RLVR_RETURN_IF_ERROR(config.Validate(), "config");

  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<policy::CausalLM<float>> model,
                        policy::CausalLM<float>::Create(config));
  model->InitRandom(seed, 0.02);

  // A tokenizer_config.json when the source has none (transformers needs one to load the
  // tokenizer with AutoTokenizer).
  std::string staged_tok_dir = tok_dir;
  fs::path staging;
  if (!fs::exists(fs::path(tok_dir) / "tokenizer_config.json") ||
      !fs::exists(fs::path(tok_dir) / "tokenizer.json")) {
    staging = fs::temp_directory_path() / absl::StrCat("rlvr_init_tok_", getpid());
    RLVR_RETURN_IF_ERROR(MakeDirs(staging.string()));
    RLVR_ASSIGN_OR_RETURN(std::string tj, ReadFile(tok_file));
    RLVR_RETURN_IF_ERROR(WriteFileAtomically((staging / "tokenizer.json").string(), tj));
    json tc = {{"tokenizer_class", "PreTrainedTokenizerFast"},
               {"model_max_length", config.max_position_embeddings},
               {"clean_up_tokenization_spaces", false}};
    tc["eos_token"] = std::string(tok->IdToToken(static_cast<int32_t>(eos.front())));
    tc["pad_token"] = std::string(tok->IdToToken(static_cast<int32_t>(config.pad_token_id)));
    if (config.bos_token_id >= 0) {
      tc["bos_token"] = std::string(tok->IdToToken(static_cast<int32_t>(config.bos_token_id)));
    } else {
      tc["bos_token"] = nullptr;
    }
    RLVR_RETURN_IF_ERROR(
        WriteFileAtomically((staging / "tokenizer_config.json").string(), tc.dump(2)));
    staged_tok_dir = staging.string();
  }
  policy::SaveOptions opts;
  opts.tokenizer_dir = staged_tok_dir;
  absl::Status s = policy::SaveModel(*model, out, opts);
  if (!staging.empty()) {
    std::error_code ec;
    fs::remove_all(staging, ec);
  }
  RLVR_RETURN_IF_ERROR(s, "writing ", out);
  std::printf(
      "wrote %s: %s/%s, %lld parameters (%lld active per token), vocab %lld "
      "(tokenizer %d), eos [%s], seed %llu\n",
      out.c_str(), arch.c_str(), preset.c_str(), static_cast<long long>(config.NumParameters()),
      static_cast<long long>(config.NumActiveParameters()),
      static_cast<long long>(config.vocab_size), tok->vocab_size(),
      absl::StrJoin(eos, ", ").c_str(), static_cast<unsigned long long>(seed));
  return absl::OkStatus();
}

}  // namespace

int InitMain(const Args& args) {
  try {
    CLI::App app("Write a random-initialized model in the Hugging Face layout.", "rlvr init");
    std::string arch, preset = "tiny", out, tokenizer, dtype;
    uint64_t seed = 0;
    app.add_option("--arch", arch,
                   absl::StrCat("architecture (model_type): ",
                                absl::StrJoin(policy::SupportedArchitectures(), ", ")))
        ->required();
    app.add_option("--preset", preset,
                   absl::StrCat("size preset: ", absl::StrJoin(policy::PresetNames(), ", "),
                                " (see docs/presets.md)"));
    app.add_option("--out", out, "output directory (replaced atomically)")->required();
    app.add_option("--seed", seed, "random seed of the initialization");
    app.add_option(
        "--tokenizer", tokenizer,
        "tokenizer.json, or a directory with tokenizer.json (and tokenizer_config.json)");
    app.add_option("--dtype", dtype, "on-disk dtype: float32 (default) or bfloat16");
    std::vector<std::string> argv(args.rbegin(), args.rend() - 1);
    try {
      app.parse(argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;
    }
    absl::Status s = RunInit(arch, preset, out, seed, tokenizer, dtype);
    if (!s.ok()) {
      std::fprintf(stderr, "rlvr init: %s\n", s.ToString().c_str());
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlvr init: %s\n", e.what());
    return 1;
  }
}

}  // namespace rlvr::cli
