// Hugging Face checkpoints: load and save a CausalLM in the layout transformers reads and
// writes.
//
// A checkpoint directory holds config.json, model.safetensors (or model-0000i-of-0000n
// shards with model.safetensors.index.json), generation_config.json, and the tokenizer files
// (tokenizer.json, tokenizer_config.json, optionally chat_template.jinja and
// special_tokens_map.json). Tensor names are exactly transformers' (model.embed_tokens.weight,
// model.layers.N.self_attn.q_proj.weight, model.layers.N.mlp.experts.E.gate_proj.weight, ...;
// no lm_head.weight when the embeddings are tied).
//
// Loading checks the tensors against the config: a missing tensor, an extra one, a wrong shape
// or a non-floating-point dtype is an InvalidArgument error naming the file and the tensor.
// F32, BF16 and F16 on disk are converted to the compute type.
//
// Saving is atomic for the whole directory: everything is written to a temporary sibling
// directory, fsynced, then renamed over `dir` (an existing `dir` is replaced).
#ifndef RLVR_POLICY_MODEL_CHECKPOINT_H_
#define RLVR_POLICY_MODEL_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/safetensors.h"
#include "policy/model/config.h"
#include "policy/model/model.h"

namespace rlvr::policy {

// generation_config.json (the fields rlvr uses).
struct GenerationConfig {
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;  // every id of the eos_token_id list
  int64_t pad_token_id = -1;
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  bool do_sample = false;

  nlohmann::json ToJson() const;
};

// Parses generation_config.json content; `source` prefixes errors.
absl::StatusOr<GenerationConfig> ParseGenerationConfig(const nlohmann::json& j,
                                                       const std::string& source);

template <typename T>
struct LoadedModel {
  std::unique_ptr<CausalLM<T>> model;
  GenerationConfig generation;  // from generation_config.json, else from config.json
  // Union of config.json's and generation_config.json's eos ids, in first-seen order.
  std::vector<int64_t> eos_token_ids;
  std::string dir;
};

// Copies the weights of `ckpt` into `model`, checking names, shapes and dtypes (see above).
template <typename T>
absl::Status LoadWeights(const SafetensorsCheckpoint& ckpt, CausalLM<T>* model);

// Loads config.json, the weights and generation_config.json (optional) from `dir`.
template <typename T>
absl::StatusOr<LoadedModel<T>> LoadModel(const std::string& dir);

struct SaveOptions {
  // On-disk dtype: "float32" or "bfloat16"; empty = the config's torch_dtype.
  std::string dtype;
  // Shard when the weights exceed this many bytes.
  int64_t max_shard_bytes = int64_t{5} << 30;
  // Tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
  // chat_template.jinja) are copied from this directory when present; empty = none.
  std::string tokenizer_dir;
  // Written as generation_config.json; null = derived from the model config.
  const GenerationConfig* generation = nullptr;
  // Called with the temporary directory before it is swapped into place, to add files that
  // must be saved atomically with the weights (e.g. AdamW::Save(dir + "/optimizer.safetensors")).
  // An error aborts the save and leaves `dir` untouched.
  std::function<absl::Status(const std::string& temp_dir)> write_extra;
};

// Writes `model` (config in transformers v4 form + weights + generation config + tokenizer
// files) to `dir` atomically.
template <typename T>
absl::Status SaveModel(const CausalLM<T>& model, const std::string& dir,
                       const SaveOptions& options = {});

// The tokenizer files SaveModel copies, in this order.
const std::vector<std::string>& TokenizerFileNames();

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_MODEL_CHECKPOINT_H_
