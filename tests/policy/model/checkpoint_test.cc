// Checkpoints: round trips (F32, BF16, sharded), generation config, tokenizer files, and one
// test per malformed checkpoint (missing, extra, wrong-shape, wrong-dtype tensor).
#include "policy/model/checkpoint.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/file_util.h"
#include "core/safetensors.h"
#include "core/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rlvr::policy {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("rlvr_ckpt_test_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<CausalLM<float>> Tiny(const std::string& arch) {
    auto c = Preset(arch, "tiny");
    RLVR_CHECK(c.ok());
    c->vocab_size = 48;
    c->eos_token_ids = {1, 2};
    auto m = CausalLM<float>::Create(*c);
    RLVR_CHECK(m.ok());
    (*m)->InitRandom(3, 0.1);
    return std::move(*m);
  }

  // Rewrites dir/model.safetensors through `edit` on its list of tensors.
  void EditWeights(const std::string& dir,
                   const std::function<void(std::vector<TensorToWrite>*,
                                            std::vector<std::vector<uint8_t>>*)>& edit) {
    auto f = SafetensorsFile::FromBytes(*ReadFile(dir + "/model.safetensors"), "model");
    ASSERT_TRUE(f.ok()) << f.status();
    std::vector<TensorToWrite> tensors;
    std::vector<std::vector<uint8_t>> storage;
    storage.reserve(1000);
    for (const TensorView& t : (*f)->tensors()) {
      tensors.push_back({.name = t.name, .dtype = t.dtype, .shape = t.shape, .data = t.data});
    }
    edit(&tensors, &storage);
    ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}}).ok());
  }

  fs::path root_;
};

TEST_F(CheckpointTest, RoundTripF32IsExact) {
  for (const std::string arch : {"qwen3_moe", "dots1", "qwen2", "llama"}) {
    auto m = Tiny(arch);
    const std::string dir = (root_ / arch).string();
    ASSERT_TRUE(SaveModel(*m, dir).ok());
    EXPECT_TRUE(fs::exists(dir + "/config.json"));
    EXPECT_TRUE(fs::exists(dir + "/generation_config.json"));
    EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
    auto back = LoadModel<float>(dir);
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(back->model->num_param_elements(), m->num_param_elements());
    EXPECT_EQ(std::memcmp(back->model->param_data(), m->param_data(),
                          m->num_param_elements() * sizeof(float)),
              0)
        << arch;
    EXPECT_EQ(back->eos_token_ids, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(back->model->config().ToJson(), m->config().ToJson());
  }
}

TEST_F(CheckpointTest, Bf16OnDiskRoundsToNearest) {
  auto m = Tiny("qwen3");
  const std::string dir = (root_ / "bf16").string();
  SaveOptions opts;
  opts.dtype = "bfloat16";
  ASSERT_TRUE(SaveModel(*m, dir, opts).ok());
  auto ckpt = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ((*ckpt)->Find("model.embed_tokens.weight")->dtype, DType::kBF16);
  auto back = LoadModel<float>(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->model->config().torch_dtype, "bfloat16");
  int64_t n = m->num_param_elements(), differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float want = Bf16ToF32(F32ToBf16(m->param_data()[i]));
    EXPECT_EQ(back->model->param_data()[i], want);
    differ += want != m->param_data()[i];
  }
  EXPECT_GT(differ, n / 2);  // the rounding really happened
}

TEST_F(CheckpointTest, ShardedCheckpointWithIndex) {
  auto m = Tiny("qwen3_moe");
  const std::string dir = (root_ / "sharded").string();
  SaveOptions opts;
  opts.max_shard_bytes = 64 * 1024;
  ASSERT_TRUE(SaveModel(*m, dir, opts).ok());
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  auto back = LoadModel<float>(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(std::memcmp(back->model->param_data(), m->param_data(),
                        m->num_param_elements() * sizeof(float)),
            0);
}

TEST_F(CheckpointTest, SaveReplacesExistingDirectoryAndCopiesTokenizer) {
  auto m = Tiny("qwen3");
  const std::string dir = (root_ / "model").string();
  const std::string tok = (root_ / "tok").string();
  fs::create_directories(tok);
  std::ofstream(tok + "/tokenizer.json") << "{\"model\": {}}";
  std::ofstream(tok + "/tokenizer_config.json") << "{}";
  fs::create_directories(dir);
  std::ofstream(dir + "/stale.txt") << "old";
  SaveOptions opts;
  opts.tokenizer_dir = tok;
  GenerationConfig gen;
  gen.eos_token_ids = {1, 2, 5};
  gen.bos_token_id = 3;
  opts.generation = &gen;
  ASSERT_TRUE(SaveModel(*m, dir, opts).ok());
  EXPECT_FALSE(fs::exists(dir + "/stale.txt"));
  EXPECT_EQ(*ReadFile(dir + "/tokenizer.json"), "{\"model\": {}}");
  EXPECT_TRUE(fs::exists(dir + "/tokenizer_config.json"));
  for (const auto& e : fs::directory_iterator(root_)) {
    EXPECT_THAT(e.path().filename().string(), ::testing::Not(HasSubstr(".tmp.")));
  }
  auto back = LoadModel<float>(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->generation.eos_token_ids, (std::vector<int64_t>{1, 2, 5}));
  EXPECT_EQ(back->eos_token_ids, (std::vector<int64_t>{1, 2, 5}));
  EXPECT_EQ(back->generation.bos_token_id, 3);
}

TEST_F(CheckpointTest, ExtraFilesAreSavedAtomicallyWithTheWeights) {
  auto m = Tiny("qwen3");
  const std::string dir = (root_ / "m").string();
  SaveOptions opts;
  opts.write_extra = [](const std::string& tmp) {
    return WriteFileAtomically(tmp + "/optimizer.safetensors", "state");
  };
  ASSERT_TRUE(SaveModel(*m, dir, opts).ok());
  EXPECT_EQ(*ReadFile(dir + "/optimizer.safetensors"), "state");
  // A failing extra writer leaves the previous checkpoint in place.
  opts.write_extra = [](const std::string&) { return absl::InternalError("disk full"); };
  auto s = SaveModel(*m, dir, opts);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(*ReadFile(dir + "/optimizer.safetensors"), "state");
  for (const auto& e : fs::directory_iterator(root_)) {
    EXPECT_THAT(e.path().filename().string(), ::testing::Not(HasSubstr(".tmp.")));
  }
}

TEST_F(CheckpointTest, ReadsTransformersWrittenGenerationConfig) {
  auto back = LoadModel<float>("tests/fixtures/models/qwen3");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->generation.eos_token_ids, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(back->generation.bos_token_id, 1);
  EXPECT_EQ(back->generation.pad_token_id, 0);
}

void ExpectLoadError(const std::string& dir, const std::string& tensor, const std::string& what) {
  auto back = LoadModel<float>(dir);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kInvalidArgument) << back.status();
  EXPECT_THAT(std::string(back.status().message()), HasSubstr(tensor));
  EXPECT_THAT(std::string(back.status().message()), HasSubstr(what));
}

TEST_F(CheckpointTest, MissingTensorIsNamed) {
  auto m = Tiny("qwen3_moe");
  const std::string dir = (root_ / "m").string();
  ASSERT_TRUE(SaveModel(*m, dir).ok());
  const std::string name = "model.layers.1.mlp.experts.3.up_proj.weight";
  EditWeights(dir, [&](auto* tensors, auto*) {
    std::erase_if(*tensors, [&](const TensorToWrite& t) { return t.name == name; });
  });
  ExpectLoadError(dir, name, "missing");
}

TEST_F(CheckpointTest, ExtraTensorIsNamed) {
  auto m = Tiny("qwen3");
  const std::string dir = (root_ / "m").string();
  ASSERT_TRUE(SaveModel(*m, dir).ok());  // tied: no lm_head.weight
  EditWeights(dir, [&](auto* tensors, auto* storage) {
    storage->emplace_back(48 * 64 * sizeof(float), 0);
    tensors->push_back({.name = "lm_head.weight",
                        .dtype = DType::kF32,
                        .shape = {48, 64},
                        .data = storage->back()});
  });
  ExpectLoadError(dir, "lm_head.weight", "extra");
}

TEST_F(CheckpointTest, WrongShapeIsNamed) {
  auto m = Tiny("qwen3_moe");
  const std::string dir = (root_ / "m").string();
  ASSERT_TRUE(SaveModel(*m, dir).ok());
  const std::string name = "model.layers.0.mlp.gate.weight";
  EditWeights(dir, [&](auto* tensors, auto*) {
    for (auto& t : *tensors) {
      if (t.name == name) t.shape = {4, 128};  // same bytes as [8, 64]
    }
  });
  ExpectLoadError(dir, name, "shape [4, 128], config says [8, 64]");
}

TEST_F(CheckpointTest, WrongDtypeIsNamed) {
  auto m = Tiny("llama");
  const std::string dir = (root_ / "m").string();
  ASSERT_TRUE(SaveModel(*m, dir).ok());
  const std::string name = "model.norm.weight";
  EditWeights(dir, [&](auto* tensors, auto*) {
    for (auto& t : *tensors) {
      if (t.name == name) t.dtype = DType::kI32;
    }
  });
  ExpectLoadError(dir, name, "dtype I32");
}

TEST_F(CheckpointTest, BadConfigIsNamed) {
  auto m = Tiny("qwen2");
  const std::string dir = (root_ / "m").string();
  ASSERT_TRUE(SaveModel(*m, dir).ok());
  std::ofstream(dir + "/config.json") << R"({"model_type": "qwen2", "vocab_size": 48})";
  auto back = LoadModel<float>(dir);
  ASSERT_FALSE(back.ok());
  EXPECT_THAT(std::string(back.status().message()), HasSubstr("hidden_size"));
  EXPECT_THAT(std::string(back.status().message()), HasSubstr("config.json"));
}

TEST_F(CheckpointTest, MissingDirectoryIsNotFound) {
  auto back = LoadModel<float>((root_ / "nope").string());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rlvr::policy
