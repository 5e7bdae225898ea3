// Checkpoints written by rlvr, committed under tests/fixtures/models/rlvr_written/<arch>/ with
// rlvr's logits on a fixed batch (rlvr_reference.safetensors). tools/make_fixtures.py `verify`
// loads them with transformers and checks that it computes the same logits; this test checks
// that rlvr still loads them and still computes those logits.
//
// Regenerate with RLVR_WRITE_FIXTURES=1 (then rerun `make_fixtures.py verify`).
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "gtest/gtest.h"
#include "policy/model/checkpoint.h"
#include "policy/model/model.h"

namespace rlvr::policy {
namespace {

const char* const kDir = "tests/fixtures/models/rlvr_written/";

class RlvrWrittenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RlvrWrittenTest, LogitsAreStable) {
  const std::string arch = GetParam();
  const std::string dir = kDir + arch;
  const int64_t B = 2, Tn = 8;
  if (std::getenv("RLVR_WRITE_FIXTURES") != nullptr) {
    auto c = Preset(arch, "tiny");
    ASSERT_TRUE(c.ok());
    c->vocab_size = 96;
    c->eos_token_ids = {1, 2};
    c->bos_token_id = 3;
    auto m = CausalLM<float>::Create(*c);
    ASSERT_TRUE(m.ok());
    (*m)->InitRandom(11, 0.2);
    SaveOptions opts;
    if (arch == "llama") opts.dtype = "bfloat16";
    ASSERT_TRUE(SaveModel(**m, dir, opts).ok());
    // Logits of the model as loaded back (bf16-rounded weights for llama).
    auto back = LoadModel<float>(dir);
    ASSERT_TRUE(back.ok()) << back.status();
    std::vector<int64_t> ids64(B * Tn);
    std::vector<int32_t> ids(B * Tn);
    for (int64_t i = 0; i < B * Tn; ++i) ids[i] = static_cast<int32_t>((i * 37 + 5) % 96);
    for (int64_t i = 0; i < B * Tn; ++i) ids64[i] = ids[i];
    ASSERT_TRUE(back->model->Forward(ids.data(), B, Tn).ok());
    std::vector<float> logits(B * Tn * 96);
    ASSERT_TRUE(back->model->Logits(logits.data()).ok());
    std::vector<TensorToWrite> t = {
        {.name = "input_ids",
         .dtype = DType::kI64,
         .shape = {B, Tn},
         .data = {reinterpret_cast<const uint8_t*>(ids64.data()), ids64.size() * 8}},
        {.name = "logits",
         .dtype = DType::kF32,
         .shape = {B, Tn, 96},
         .data = {reinterpret_cast<const uint8_t*>(logits.data()), logits.size() * 4}}};
    ASSERT_TRUE(WriteSafetensors(dir + "/rlvr_reference.safetensors", t).ok());
  }
  auto back = LoadModel<float>(dir);
  ASSERT_TRUE(back.ok()) << back.status();
  auto ref = SafetensorsFile::Open(dir + "/rlvr_reference.safetensors");
  ASSERT_TRUE(ref.ok()) << ref.status();
  const TensorView* ids_t = (*ref)->Find("input_ids");
  const TensorView* logits_t = (*ref)->Find("logits");
  ASSERT_NE(ids_t, nullptr);
  ASSERT_NE(logits_t, nullptr);
  std::vector<int32_t> ids(ids_t->num_elements());
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t v;
    std::memcpy(&v, ids_t->data.data() + 8 * i, 8);
    ids[i] = static_cast<int32_t>(v);
  }
  ASSERT_TRUE(back->model->Forward(ids.data(), ids_t->shape[0], ids_t->shape[1]).ok());
  std::vector<float> got(logits_t->num_elements()), want(logits_t->num_elements());
  std::memcpy(want.data(), logits_t->data.data(), want.size() * 4);
  ASSERT_TRUE(back->model->Logits(got.data()).ok());
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - want[i])));
    max_ref = std::max(max_ref, static_cast<double>(std::abs(want[i])));
  }
  EXPECT_GT(max_ref, 0.1);
  EXPECT_LE(max_diff, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Archs, RlvrWrittenTest,
                         ::testing::Values("qwen3_moe", "dots1", "qwen3", "qwen2", "llama"));

}  // namespace
}  // namespace rlvr::policy
