// Model configuration: the Hugging Face `config.json` of a causal language model.
//
// Supported `model_type`s (and their `architectures` entry):
//   qwen3_moe  Qwen3MoeForCausalLM  softmax top-k MoE, q/k RMSNorm
//   dots1      Dots1ForCausalLM     DeepSeek-V3-style MoE (sigmoid scores with a per-expert
//                                   correction bias, shared experts, routed_scaling_factor,
//                                   dense first layers, grouped top-k) on Qwen3 attention
//   qwen3      Qwen3ForCausalLM     dense, q/k RMSNorm
//   qwen2      Qwen2ForCausalLM     dense, q/k/v biases
//   llama      LlamaForCausalLM     dense
// The DeepSeek-style routing options (`scoring_func`, `n_shared_experts`,
// `routed_scaling_factor`, `first_k_dense_replace`, `norm_topk_prob`, `n_group`/`topk_group`)
// are read for every MoE type, so a qwen3_moe config may also carry them.
//
// The routed-expert count is read from `num_experts`, `n_routed_experts` or `num_local_experts`
// (the name transformers v5 writes).
//
// Both the transformers v4 form (`rope_theta`, `torch_dtype`) and the v5 form
// (`rope_parameters: {rope_type, rope_theta}`, `dtype`) are accepted; ToJson() writes the v4 form.
// Only the default RoPE (no scaling) is supported. A missing required field, a wrong JSON type
// or an inconsistent value is an InvalidArgument error naming the field.
#ifndef RLVR_POLICY_MODEL_CONFIG_H_
#define RLVR_POLICY_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace rlvr::policy {

enum class ScoringFunc { kSoftmax, kSigmoid };

struct ModelConfig {
  std::string model_type;    // "qwen3_moe", "dots1", "qwen3", "qwen2", "llama"
  std::string architecture;  // "Qwen3MoeForCausalLM", ...

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;          // C
  int64_t intermediate_size = 0;    // dense SwiGLU hidden width
  int64_t num_hidden_layers = 0;    // L
  int64_t num_attention_heads = 0;  // H
  int64_t num_key_value_heads = 0;  // KV heads (GQA)
  int64_t head_dim = 0;             // D
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;      // biases on q/k/v (qwen2: always; llama: config)
  bool attention_out_bias = false;  // bias on o_proj (attention_bias, except qwen2)
  bool qk_norm = false;             // RMSNorm on q and k per head (qwen3, qwen3_moe, dots1)
  std::string hidden_act = "silu";
  std::string torch_dtype = "float32";  // on-disk dtype: "float32" or "bfloat16"

  // Mixture of experts. num_experts == 0 means dense everywhere.
  int64_t num_experts = 0;            // E routed experts
  int64_t num_experts_per_tok = 0;    // K
  int64_t moe_intermediate_size = 0;  // expert SwiGLU width
  int64_t n_shared_experts = 0;       // shared experts of width moe_intermediate_size each
  bool norm_topk_prob = false;
  ScoringFunc scoring_func = ScoringFunc::kSoftmax;
  bool use_score_correction_bias = false;  // e_score_correction_bias (sigmoid routing)
  double routed_scaling_factor = 1.0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  int64_t first_k_dense_replace = 0;     // the first k layers use a dense MLP
  int64_t decoder_sparse_step = 1;       // qwen3_moe: layer l is MoE if (l + 1) % step == 0
  std::vector<int64_t> mlp_only_layers;  // qwen3_moe: these layers use a dense MLP
  double router_aux_loss_coef = 0.0;

  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = -1;

  bool is_moe() const { return num_experts > 0; }
  // True if decoder layer `layer` uses the MoE block (false: dense SwiGLU MLP).
  bool IsMoeLayer(int64_t layer) const;
  // Number of parameters (tied embeddings counted once).
  int64_t NumParameters() const;
  // Parameters touched per token (routed experts counted K times, not E times).
  int64_t NumActiveParameters() const;

  // Checks the internal consistency; errors name the offending field.
  absl::Status Validate() const;
  // The transformers v4 form of this config, as `config.json` content.
  nlohmann::json ToJson() const;
};

// Parses a config.json object. `source` (e.g. the file path) prefixes error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j,
                                             const std::string& source = "config.json");
// Reads and parses a config.json file.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

// Architectures ("model_type"s) and documented presets (see docs/presets.md).
std::vector<std::string> SupportedArchitectures();
std::vector<std::string> PresetNames();
// A preset for an architecture, e.g. Preset("qwen3_moe", "small"). vocab_size may be overridden
// afterwards (e.g. to fit a tokenizer). NotFound for an unknown arch or preset.
absl::StatusOr<ModelConfig> Preset(const std::string& arch, const std::string& preset);

}  // namespace rlvr::policy

#endif  // RLVR_POLICY_MODEL_CONFIG_H_
