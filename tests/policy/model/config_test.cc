#include "policy/model/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr::policy {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

json Qwen3MoeV4() {
  return json::parse(R"({
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "head_dim": 16, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "tie_word_embeddings": false,
    "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
    "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
    "eos_token_id": [3, 4], "bos_token_id": 1
  })");
}

TEST(ModelConfigTest, ParsesQwen3MoeV4) {
  auto c = ParseModelConfig(Qwen3MoeV4());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "qwen3_moe");
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_experts, 8);
  EXPECT_EQ(c->num_experts_per_tok, 2);
  EXPECT_TRUE(c->norm_topk_prob);
  EXPECT_TRUE(c->qk_norm);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSoftmax);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{3, 4}));
  EXPECT_TRUE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
}

TEST(ModelConfigTest, ParsesV5Form) {
  json j = Qwen3MoeV4();
  j.erase("rope_theta");
  j.erase("torch_dtype");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5000.0}};
  j["dtype"] = "float32";
  auto c = ParseModelConfig(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_theta, 5000.0);
  EXPECT_EQ(c->torch_dtype, "float32");
}

TEST(ModelConfigTest, RoundTripsThroughV4Json) {
  for (const std::string& arch : SupportedArchitectures()) {
    for (const std::string& preset : PresetNames()) {
      auto c = Preset(arch, preset);
      ASSERT_TRUE(c.ok()) << c.status();
      json j = c->ToJson();
      EXPECT_TRUE(j.contains("rope_theta")) << arch;
      EXPECT_TRUE(j.contains("torch_dtype")) << arch;
      auto back = ParseModelConfig(j);
      ASSERT_TRUE(back.ok()) << arch << "/" << preset << ": " << back.status();
      EXPECT_EQ(back->ToJson(), j) << arch << "/" << preset;
      EXPECT_EQ(back->NumParameters(), c->NumParameters());
      EXPECT_GT(c->NumParameters(), 0);
    }
  }
}

TEST(ModelConfigTest, SmallMoePresetIsAFewMillionParameters) {
  auto c = Preset("qwen3_moe", "small");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_GE(c->NumParameters(), 10'000'000);
  EXPECT_LE(c->NumParameters(), 30'000'000);
  EXPECT_LT(c->NumActiveParameters(), c->NumParameters());
}

TEST(ModelConfigTest, ParsesDots1DeepSeekRouting) {
  auto c = Preset("dots1", "tiny");
  ASSERT_TRUE(c.ok()) << c.status();
  auto back = ParseModelConfig(c->ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(back->use_score_correction_bias);
  EXPECT_EQ(back->n_shared_experts, 1);
  EXPECT_DOUBLE_EQ(back->routed_scaling_factor, 2.5);
  EXPECT_FALSE(back->IsMoeLayer(0));
  EXPECT_TRUE(back->IsMoeLayer(1));
}

TEST(ModelConfigTest, DeepSeekOptionsOnQwen3Moe) {
  json j = Qwen3MoeV4();
  j["scoring_func"] = "sigmoid";
  j["topk_method"] = "noaux_tc";
  j["n_shared_experts"] = 2;
  j["routed_scaling_factor"] = 1.5;
  j["first_k_dense_replace"] = 1;
  auto c = ParseModelConfig(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSigmoid);
  EXPECT_TRUE(c->use_score_correction_bias);
  EXPECT_EQ(c->n_shared_experts, 2);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_EQ(ParseModelConfig(c->ToJson())->ToJson(), c->ToJson());
}

TEST(ModelConfigTest, DenseHeadDimDefaultsToHiddenOverHeads) {
  auto c = Preset("llama", "tiny");
  ASSERT_TRUE(c.ok());
  json j = c->ToJson();
  j.erase("head_dim");
  auto back = ParseModelConfig(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->head_dim, 64 / 4);
}

// One test per malformed input: the code and the field named in the message.
void ExpectError(const json& j, const std::string& field) {
  auto c = ParseModelConfig(j, "cfg.json");
  ASSERT_FALSE(c.ok()) << "expected an error naming " << field;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(field));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("cfg.json"));
}

TEST(ModelConfigErrorTest, MissingHiddenSize) {
  json j = Qwen3MoeV4();
  j.erase("hidden_size");
  ExpectError(j, "hidden_size");
}

TEST(ModelConfigErrorTest, MissingModelType) {
  json j = Qwen3MoeV4();
  j.erase("model_type");
  ExpectError(j, "model_type");
}

TEST(ModelConfigErrorTest, UnsupportedModelType) {
  json j = Qwen3MoeV4();
  j["model_type"] = "gpt2";
  ExpectError(j, "model_type");
}

TEST(ModelConfigErrorTest, ArchitectureMismatch) {
  json j = Qwen3MoeV4();
  j["architectures"] = {"LlamaForCausalLM"};
  ExpectError(j, "architectures");
}

TEST(ModelConfigErrorTest, MissingRopeTheta) {
  json j = Qwen3MoeV4();
  j.erase("rope_theta");
  ExpectError(j, "rope_theta");
}

TEST(ModelConfigErrorTest, HiddenNotDivisibleByHeads) {
  json j = Qwen3MoeV4();
  j.erase("head_dim");
  j["hidden_size"] = 66;
  ExpectError(j, "hidden_size");
}

TEST(ModelConfigErrorTest, KvHeadsDoNotDivideHeads) {
  json j = Qwen3MoeV4();
  j["num_key_value_heads"] = 3;
  ExpectError(j, "num_key_value_heads");
}

TEST(ModelConfigErrorTest, TopKLargerThanExperts) {
  json j = Qwen3MoeV4();
  j["num_experts_per_tok"] = 9;
  ExpectError(j, "num_experts_per_tok");
}

TEST(ModelConfigErrorTest, MissingNumExperts) {
  json j = Qwen3MoeV4();
  j.erase("num_experts");
  ExpectError(j, "num_experts");
}

TEST(ModelConfigErrorTest, WrongType) {
  json j = Qwen3MoeV4();
  j["num_hidden_layers"] = "two";
  ExpectError(j, "num_hidden_layers");
}

TEST(ModelConfigErrorTest, EosOutsideVocab) {
  json j = Qwen3MoeV4();
  j["eos_token_id"] = {3, 9999};
  ExpectError(j, "eos_token_id");
}

TEST(ModelConfigErrorTest, UnsupportedRopeScaling) {
  json j = Qwen3MoeV4();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  ExpectError(j, "rope_scaling");
}

TEST(ModelConfigErrorTest, UnsupportedDtype) {
  json j = Qwen3MoeV4();
  j["torch_dtype"] = "float16";
  ExpectError(j, "torch_dtype");
}

TEST(ModelConfigErrorTest, BadScoringFunc) {
  json j = Qwen3MoeV4();
  j["scoring_func"] = "relu";
  ExpectError(j, "scoring_func");
}

TEST(ModelConfigErrorTest, BadGroups) {
  json j = Qwen3MoeV4();
  j["n_group"] = 3;
  ExpectError(j, "n_group");
}

TEST(ModelConfigTest, PresetErrors) {
  EXPECT_EQ(Preset("gpt2", "tiny").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Preset("qwen3", "huge").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rlvr::policy
