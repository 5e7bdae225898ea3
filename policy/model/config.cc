#include "policy/model/config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"

namespace rlvr::policy {
namespace {

using json = nlohmann::json;

struct ArchInfo {
  const char* model_type;
  const char* architecture;
  bool moe;
};

constexpr ArchInfo kArchs[] = {
    {"qwen3_moe", "Qwen3MoeForCausalLM", true}, {"dots1", "Dots1ForCausalLM", true},
    {"qwen3", "Qwen3ForCausalLM", false},       {"qwen2", "Qwen2ForCausalLM", false},
    {"llama", "LlamaForCausalLM", false},
};

const ArchInfo* FindArch(const std::string& model_type) {
  for (const ArchInfo& a : kArchs) {
    if (model_type == a.model_type) return &a;
  }
  return nullptr;
}

// Typed field readers: every error names the field and the source.
class Reader {
 public:
  Reader(const json& j, const std::string& source) : j_(j), source_(source) {}

  absl::Status Error(const std::string& key, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", key, ": ", what));
  }

  bool Has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  absl::StatusOr<int64_t> Int(const std::string& key) const {
    if (!Has(key)) return Error(key, "missing required field");
    return IntAt(j_.at(key), key);
  }
  absl::StatusOr<int64_t> Int(const std::string& key, int64_t def) const {
    if (!Has(key)) return def;
    return IntAt(j_.at(key), key);
  }
  absl::StatusOr<double> Double(const std::string& key) const {
    if (!Has(key)) return Error(key, "missing required field");
    return DoubleAt(j_.at(key), key);
  }
  absl::StatusOr<double> Double(const std::string& key, double def) const {
    if (!Has(key)) return def;
    return DoubleAt(j_.at(key), key);
  }
  absl::StatusOr<bool> Bool(const std::string& key, bool def) const {
    if (!Has(key)) return def;
    if (!j_.at(key).is_boolean()) return Error(key, "expected a boolean");
    return j_.at(key).get<bool>();
  }
  absl::StatusOr<std::string> String(const std::string& key, const std::string& def) const {
    if (!Has(key)) return def;
    if (!j_.at(key).is_string()) return Error(key, "expected a string");
    return j_.at(key).get<std::string>();
  }
  // An integer or a list of integers (eos_token_id).
  absl::StatusOr<std::vector<int64_t>> IntList(const std::string& key) const {
    std::vector<int64_t> out;
    if (!Has(key)) return out;
    const json& v = j_.at(key);
    if (v.is_array()) {
      for (size_t i = 0; i < v.size(); ++i) {
        RLVR_ASSIGN_OR_RETURN(int64_t x, IntAt(v[i], absl::StrCat(key, "[", i, "]")));
        out.push_back(x);
      }
      return out;
    }
    RLVR_ASSIGN_OR_RETURN(int64_t x, IntAt(v, key));
    out.push_back(x);
    return out;
  }
  const json& raw() const { return j_; }

 private:
  absl::StatusOr<int64_t> IntAt(const json& v, const std::string& key) const {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
    }
    return Error(key, absl::StrCat("expected an integer, got ", v.dump()));
  }
  absl::StatusOr<double> DoubleAt(const json& v, const std::string& key) const {
    if (v.is_number()) return v.get<double>();
    return Error(key, absl::StrCat("expected a number, got ", v.dump()));
  }

  const json& j_;
  const std::string& source_;
};

int64_t SwiGluParams(int64_t c, int64_t i) { return 3 * c * i; }

}  // namespace

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  if (num_experts <= 0) return false;
  if (layer < first_k_dense_replace) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) {
    return false;
  }
  return decoder_sparse_step <= 1 || (layer + 1) % decoder_sparse_step == 0;
}

namespace {
int64_t CountParams(const ModelConfig& c, bool active_only) {
  const int64_t C = c.hidden_size;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  int64_t attn = C * q + 2 * C * kv + q * C;
  if (c.attention_bias) attn += q + 2 * kv;
  if (c.attention_out_bias) attn += C;
  if (c.qk_norm) attn += 2 * c.head_dim;
  int64_t total = c.vocab_size * C;                       // embeddings
  if (!c.tie_word_embeddings) total += c.vocab_size * C;  // lm_head
  total += C;                                             // final norm
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    total += attn + 2 * C;  // + two RMSNorms
    if (c.IsMoeLayer(l)) {
      const int64_t experts = active_only ? c.num_experts_per_tok : c.num_experts;
      total += c.num_experts * C;  // router
      if (c.use_score_correction_bias) total += c.num_experts;
      total += experts * SwiGluParams(C, c.moe_intermediate_size);
      total += SwiGluParams(C, c.n_shared_experts * c.moe_intermediate_size);
    } else {
      total += SwiGluParams(C, c.intermediate_size);
    }
  }
  return total;
}
}  // namespace

int64_t ModelConfig::NumParameters() const { return CountParams(*this, false); }
int64_t ModelConfig::NumActiveParameters() const { return CountParams(*this, true); }

absl::Status ModelConfig::Validate() const {
  auto err = [](const std::string& field, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
  };
  if (FindArch(model_type) == nullptr) {
    return err("model_type",
               absl::StrCat("unsupported model_type \"", model_type,
                            "\"; supported: ", absl::StrJoin(SupportedArchitectures(), ", ")));
  }
  auto positive = [&](const char* name, int64_t v) -> absl::Status {
    if (v <= 0) return err(name, absl::StrCat("must be positive, got ", v));
    return absl::OkStatus();
  };
  RLVR_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  RLVR_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  RLVR_RETURN_IF_ERROR(positive("num_hidden_layers", num_hidden_layers));
  RLVR_RETURN_IF_ERROR(positive("num_attention_heads", num_attention_heads));
  RLVR_RETURN_IF_ERROR(positive("num_key_value_heads", num_key_value_heads));
  RLVR_RETURN_IF_ERROR(positive("head_dim", head_dim));
  if (head_dim % 2 != 0)
    return err("head_dim", absl::StrCat("must be even for RoPE, got ", head_dim));
  if (num_attention_heads % num_key_value_heads != 0) {
    return err("num_key_value_heads",
               absl::StrCat(num_key_value_heads, " does not divide num_attention_heads ",
                            num_attention_heads));
  }
  if (rms_norm_eps <= 0) return err("rms_norm_eps", "must be positive");
  if (rope_theta <= 0) return err("rope_theta", "must be positive");
  if (hidden_act != "silu") {
    return err("hidden_act", absl::StrCat("only \"silu\" is supported, got \"", hidden_act, "\""));
  }
  if (torch_dtype != "float32" && torch_dtype != "bfloat16") {
    return err("torch_dtype",
               absl::StrCat("only float32 and bfloat16 are supported, got \"", torch_dtype, "\""));
  }
  bool any_dense = false;
  for (int64_t l = 0; l < num_hidden_layers; ++l) any_dense |= !IsMoeLayer(l);
  if (any_dense) RLVR_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  if (num_experts < 0) return err("num_experts", "must not be negative");
  if (is_moe()) {
    RLVR_RETURN_IF_ERROR(positive("num_experts_per_tok", num_experts_per_tok));
    RLVR_RETURN_IF_ERROR(positive("moe_intermediate_size", moe_intermediate_size));
    if (num_experts_per_tok > num_experts) {
      return err("num_experts_per_tok",
                 absl::StrCat(num_experts_per_tok, " is larger than num_experts ", num_experts));
    }
    if (n_shared_experts < 0) return err("n_shared_experts", "must not be negative");
    if (n_group <= 0 || num_experts % n_group != 0) {
      return err("n_group", absl::StrCat(n_group, " does not divide num_experts ", num_experts));
    }
    if (topk_group <= 0 || topk_group > n_group) {
      return err("topk_group", absl::StrCat(topk_group, " must be in [1, n_group=", n_group, "]"));
    }
    if (n_group > 1 && num_experts_per_tok > topk_group * (num_experts / n_group)) {
      return err("num_experts_per_tok", "larger than the experts in topk_group groups");
    }
    if (first_k_dense_replace < 0) return err("first_k_dense_replace", "must not be negative");
    if (decoder_sparse_step < 1) return err("decoder_sparse_step", "must be at least 1");
  }
  for (int64_t id : eos_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return err("eos_token_id", absl::StrCat(id, " is outside [0, vocab_size=", vocab_size, ")"));
    }
  }
  if (bos_token_id >= vocab_size) {
    return err("bos_token_id", absl::StrCat(bos_token_id, " is outside the vocabulary"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseModelConfig(const json& j, const std::string& source) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a JSON object"));
  }
  Reader r(j, source);
  ModelConfig c;
  if (!r.Has("model_type")) return r.Error("model_type", "missing required field");
  RLVR_ASSIGN_OR_RETURN(c.model_type, r.String("model_type", ""));
  const ArchInfo* arch = FindArch(c.model_type);
  if (arch == nullptr) {
    return r.Error("model_type",
                   absl::StrCat("unsupported model_type \"", c.model_type,
                                "\"; supported: ", absl::StrJoin(SupportedArchitectures(), ", ")));
  }
  c.architecture = arch->architecture;
  if (r.Has("architectures")) {
    const json& a = j.at("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string()) {
      return r.Error("architectures", "expected a non-empty list of strings");
    }
    if (a[0].get<std::string>() != c.architecture) {
      return r.Error("architectures",
                     absl::StrCat("\"", a[0].get<std::string>(), "\" does not match model_type \"",
                                  c.model_type, "\" (expected \"", c.architecture, "\")"));
    }
  }
  RLVR_ASSIGN_OR_RETURN(c.vocab_size, r.Int("vocab_size"));
  RLVR_ASSIGN_OR_RETURN(c.hidden_size, r.Int("hidden_size"));
  RLVR_ASSIGN_OR_RETURN(c.num_hidden_layers, r.Int("num_hidden_layers"));
  RLVR_ASSIGN_OR_RETURN(c.num_attention_heads, r.Int("num_attention_heads"));
  RLVR_ASSIGN_OR_RETURN(c.num_key_value_heads, r.Int("num_key_value_heads", c.num_attention_heads));
  if (r.Has("head_dim")) {
    RLVR_ASSIGN_OR_RETURN(c.head_dim, r.Int("head_dim"));
  } else {
    if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0) {
      return r.Error("hidden_size",
                     absl::StrCat(c.hidden_size, " is not divisible by num_attention_heads ",
                                  c.num_attention_heads, " (and head_dim is not given)"));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  RLVR_ASSIGN_OR_RETURN(c.max_position_embeddings, r.Int("max_position_embeddings", 32768));
  RLVR_ASSIGN_OR_RETURN(c.rms_norm_eps, r.Double("rms_norm_eps", 1e-6));
  RLVR_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.Bool("tie_word_embeddings", false));
  RLVR_ASSIGN_OR_RETURN(c.hidden_act, r.String("hidden_act", "silu"));

  // RoPE: v4 `rope_theta` (+ optional `rope_scaling`), v5 `rope_parameters`.
  bool have_theta = false;
  if (r.Has("rope_parameters")) {
    const json& rp = j.at("rope_parameters");
    if (!rp.is_object()) return r.Error("rope_parameters", "expected an object");
    Reader rr(rp, absl::StrCat(source, ": rope_parameters"));
    RLVR_ASSIGN_OR_RETURN(std::string type, rr.String("rope_type", "default"));
    if (type != "default") {
      return rr.Error("rope_type",
                      absl::StrCat("only \"default\" RoPE is supported, got \"", type, "\""));
    }
    if (rr.Has("rope_theta")) {
      RLVR_ASSIGN_OR_RETURN(c.rope_theta, rr.Double("rope_theta"));
      have_theta = true;
    }
  }
  if (r.Has("rope_theta")) {
    RLVR_ASSIGN_OR_RETURN(c.rope_theta, r.Double("rope_theta"));
    have_theta = true;
  }
  if (!have_theta)
    return r.Error("rope_theta", "missing (neither rope_theta nor rope_parameters.rope_theta)");
  if (r.Has("rope_scaling")) {
    const json& rs = j.at("rope_scaling");
    std::string type = "default";
    if (rs.is_object()) {
      if (rs.contains("rope_type") && rs["rope_type"].is_string())
        type = rs["rope_type"];
      else if (rs.contains("type") && rs["type"].is_string())
        type = rs["type"];
    }
    if (type != "default") {
      return r.Error("rope_scaling", absl::StrCat("RoPE scaling \"", type, "\" is not supported"));
    }
  }

  // dtype: v4 torch_dtype, v5 dtype.
  if (r.Has("dtype")) {
    RLVR_ASSIGN_OR_RETURN(c.torch_dtype, r.String("dtype", "float32"));
  } else {
    RLVR_ASSIGN_OR_RETURN(c.torch_dtype, r.String("torch_dtype", "float32"));
  }

  // Attention variants.
  if (c.model_type == "qwen2") {
    c.attention_bias = true;
  } else {
    RLVR_ASSIGN_OR_RETURN(c.attention_bias, r.Bool("attention_bias", false));
    c.attention_out_bias = c.attention_bias;
  }
  if (c.model_type == "llama") {
    RLVR_ASSIGN_OR_RETURN(bool mlp_bias, r.Bool("mlp_bias", false));
    if (mlp_bias) return r.Error("mlp_bias", "MLP biases are not supported");
  }
  c.qk_norm = c.model_type == "qwen3" || c.model_type == "qwen3_moe" || c.model_type == "dots1";
  RLVR_ASSIGN_OR_RETURN(bool sliding, r.Bool("use_sliding_window", false));
  if (sliding) return r.Error("use_sliding_window", "sliding-window attention is not supported");

  if (arch->moe) {
    RLVR_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size", 0));
    if (r.Has("num_experts")) {
      RLVR_ASSIGN_OR_RETURN(c.num_experts, r.Int("num_experts"));
    } else if (r.Has("n_routed_experts")) {
      RLVR_ASSIGN_OR_RETURN(c.num_experts, r.Int("n_routed_experts"));
    } else if (r.Has("num_local_experts")) {
      RLVR_ASSIGN_OR_RETURN(c.num_experts, r.Int("num_local_experts"));
    } else {
      return r.Error("num_experts", "missing required field (or n_routed_experts)");
    }
    RLVR_ASSIGN_OR_RETURN(c.num_experts_per_tok, r.Int("num_experts_per_tok"));
    RLVR_ASSIGN_OR_RETURN(c.moe_intermediate_size, r.Int("moe_intermediate_size"));
    const bool deepseek = c.model_type == "dots1";
    RLVR_ASSIGN_OR_RETURN(c.norm_topk_prob, r.Bool("norm_topk_prob", false));
    RLVR_ASSIGN_OR_RETURN(std::string scoring,
                          r.String("scoring_func", deepseek ? "sigmoid" : "softmax"));
    if (scoring == "softmax") {
      c.scoring_func = ScoringFunc::kSoftmax;
    } else if (scoring == "sigmoid") {
      c.scoring_func = ScoringFunc::kSigmoid;
    } else {
      return r.Error("scoring_func",
                     absl::StrCat("expected \"softmax\" or \"sigmoid\", got \"", scoring, "\""));
    }
    RLVR_ASSIGN_OR_RETURN(std::string topk_method,
                          r.String("topk_method", deepseek ? "noaux_tc" : "greedy"));
    c.use_score_correction_bias = topk_method == "noaux_tc";
    if (c.use_score_correction_bias && c.scoring_func != ScoringFunc::kSigmoid) {
      return r.Error("topk_method",
                     "noaux_tc (e_score_correction_bias) needs scoring_func sigmoid");
    }
    RLVR_ASSIGN_OR_RETURN(c.n_shared_experts, r.Int("n_shared_experts", 0));
    RLVR_ASSIGN_OR_RETURN(c.routed_scaling_factor, r.Double("routed_scaling_factor", 1.0));
    RLVR_ASSIGN_OR_RETURN(c.n_group, r.Int("n_group", 1));
    RLVR_ASSIGN_OR_RETURN(c.topk_group, r.Int("topk_group", 1));
    RLVR_ASSIGN_OR_RETURN(c.first_k_dense_replace, r.Int("first_k_dense_replace", 0));
    RLVR_ASSIGN_OR_RETURN(c.decoder_sparse_step, r.Int("decoder_sparse_step", 1));
    RLVR_ASSIGN_OR_RETURN(c.mlp_only_layers, r.IntList("mlp_only_layers"));
    RLVR_ASSIGN_OR_RETURN(c.router_aux_loss_coef, r.Double("router_aux_loss_coef", 0.0));
  } else {
    RLVR_ASSIGN_OR_RETURN(c.intermediate_size, r.Int("intermediate_size"));
  }

  RLVR_ASSIGN_OR_RETURN(c.bos_token_id, r.Int("bos_token_id", -1));
  RLVR_ASSIGN_OR_RETURN(c.pad_token_id, r.Int("pad_token_id", -1));
  RLVR_ASSIGN_OR_RETURN(c.eos_token_ids, r.IntList("eos_token_id"));

  absl::Status s = c.Validate();
  if (!s.ok()) return Annotate(s, source);
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON"));
  return ParseModelConfig(j, path);
}

json ModelConfig::ToJson() const {
  json j;
  j["architectures"] = json::array({architecture});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["rope_scaling"] = nullptr;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = hidden_act;
  j["torch_dtype"] = torch_dtype;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["attention_dropout"] = 0.0;
  if (model_type != "qwen2") j["attention_bias"] = attention_bias;
  if (model_type == "llama") j["mlp_bias"] = false;
  if (model_type == "qwen2" || model_type == "qwen3" || model_type == "qwen3_moe") {
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = num_hidden_layers;
  }
  if (model_type == "qwen3_moe") {
    j["num_experts"] = num_experts;
    j["decoder_sparse_step"] = decoder_sparse_step;
    j["mlp_only_layers"] = mlp_only_layers;
    j["output_router_logits"] = false;
  }
  if (model_type == "dots1") {
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = num_hidden_layers;
    j["n_routed_experts"] = num_experts;
    j["first_k_dense_replace"] = first_k_dense_replace;
    j["n_group"] = n_group;
    j["topk_group"] = topk_group;
  }
  if (is_moe()) {
    j["num_experts_per_tok"] = num_experts_per_tok;
    j["moe_intermediate_size"] = moe_intermediate_size;
    j["norm_topk_prob"] = norm_topk_prob;
    j["router_aux_loss_coef"] = router_aux_loss_coef;
    // Extensions read by rlvr (transformers ignores unknown keys for qwen3_moe).
    if (model_type == "dots1" || n_shared_experts > 0) j["n_shared_experts"] = n_shared_experts;
    if (model_type == "dots1" || routed_scaling_factor != 1.0) {
      j["routed_scaling_factor"] = routed_scaling_factor;
    }
    if (model_type != "dots1") {
      if (scoring_func == ScoringFunc::kSigmoid) j["scoring_func"] = "sigmoid";
      if (use_score_correction_bias) j["topk_method"] = "noaux_tc";
      if (first_k_dense_replace > 0) j["first_k_dense_replace"] = first_k_dense_replace;
      if (n_group > 1) {
        j["n_group"] = n_group;
        j["topk_group"] = topk_group;
      }
    }
  }
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else if (!eos_token_ids.empty()) {
    j["eos_token_id"] = eos_token_ids;
  }
  return j;
}

std::vector<std::string> SupportedArchitectures() {
  std::vector<std::string> out;
  for (const ArchInfo& a : kArchs) out.push_back(a.model_type);
  return out;
}

std::vector<std::string> PresetNames() { return {"tiny", "small", "base"}; }

absl::StatusOr<ModelConfig> Preset(const std::string& arch, const std::string& preset) {
  const ArchInfo* info = FindArch(arch);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown architecture \"", arch, "\"; supported: ",
                                            absl::StrJoin(SupportedArchitectures(), ", ")));
  }
  ModelConfig c;
  c.model_type = arch;
  c.architecture = info->architecture;
  c.qk_norm = arch == "qwen3" || arch == "qwen3_moe" || arch == "dots1";
  c.attention_bias = arch == "qwen2";
  c.attention_out_bias = false;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.torch_dtype = "float32";
  c.vocab_size = 1024;
  if (arch == "llama") {
    c.rope_theta = 500000.0;
    c.rms_norm_eps = 1e-5;
  }
  // Shapes per preset: {C, L, H, KV, D, dense I, E, K, expert I, max positions}.
  if (preset == "tiny") {
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 128;
    c.num_experts = 8;
    c.num_experts_per_tok = 2;
    c.moe_intermediate_size = 32;
    c.max_position_embeddings = 2048;
  } else if (preset == "small") {
    c.hidden_size = 256;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
    c.head_dim = 32;
    c.intermediate_size = 768;
    c.num_experts = 16;
    c.num_experts_per_tok = 4;
    c.moe_intermediate_size = 256;
    c.max_position_embeddings = 4096;
    c.vocab_size = 8192;
  } else if (preset == "base") {
    c.hidden_size = 768;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 4;
    c.head_dim = 64;
    c.intermediate_size = 2048;
    c.num_experts = 32;
    c.num_experts_per_tok = 4;
    c.moe_intermediate_size = 384;
    c.max_position_embeddings = 8192;
    c.vocab_size = 32768;
  } else {
    return absl::NotFoundError(absl::StrCat("unknown preset \"", preset,
                                            "\"; presets: ", absl::StrJoin(PresetNames(), ", ")));
  }
  if (!info->moe) {
    c.num_experts = 0;
    c.num_experts_per_tok = 0;
    c.moe_intermediate_size = 0;
    c.tie_word_embeddings = true;
  } else if (arch == "qwen3_moe") {
    c.norm_topk_prob = true;
    c.router_aux_loss_coef = 0.001;
  } else if (arch == "dots1") {
    c.norm_topk_prob = true;
    c.scoring_func = ScoringFunc::kSigmoid;
    c.use_score_correction_bias = true;
    c.n_shared_experts = 1;
    c.routed_scaling_factor = 2.5;
    c.first_k_dense_replace = 1;
    c.n_group = 1;
    c.topk_group = 1;
  }
  c.eos_token_ids = {0};
  RLVR_RETURN_IF_ERROR(c.Validate(), "preset ", arch, "/", preset);
  return c;
}

}  // namespace rlvr::policy
