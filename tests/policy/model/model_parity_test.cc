// Whole-model parity with transformers: logits, chosen-token logprobs, entropies and the
// gradients of sum(logprobs) with respect to every parameter, on the tiny random models that
// tools/make_fixtures.py wrote under tests/fixtures/models/ (reference computed in float64).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "gtest/gtest.h"
#include "policy/model/checkpoint.h"
#include "policy/model/model.h"

namespace rlvr::policy {
namespace {

const std::vector<std::string> kArchs = {"qwen3_moe", "qwen3_moe_nonorm", "dots1", "qwen3", "qwen2",
                                         "llama"};

std::string FixtureDir(const std::string& arch) { return "tests/fixtures/models/" + arch; }

std::vector<float> ReadF32(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.num_elements()));
  EXPECT_EQ(t.dtype, DType::kF32) << t.name;
  std::memcpy(out.data(), t.data.data(), out.size() * sizeof(float));
  return out;
}

std::vector<int32_t> ReadIds(const TensorView& t) {
  std::vector<int32_t> out(static_cast<size_t>(t.num_elements()));
  EXPECT_EQ(t.dtype, DType::kI64);
  for (size_t i = 0; i < out.size(); ++i) {
    int64_t v;
    std::memcpy(&v, t.data.data() + i * sizeof(int64_t), sizeof(v));
    out[i] = static_cast<int32_t>(v);
  }
  return out;
}

struct Diff {
  double max_abs = 0;
  double max_ref = 0;
  int64_t count = 0;
};

template <typename A>
Diff Compare(const A* got, const float* want, int64_t n) {
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    d.max_abs = std::max(d.max_abs, std::abs(static_cast<double>(got[i]) - want[i]));
    d.max_ref = std::max(d.max_ref, std::abs(static_cast<double>(want[i])));
    ++d.count;
  }
  return d;
}

class ParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ParityTest, MatchesTransformers) {
  const std::string dir = FixtureDir(GetParam());
  auto loaded = LoadModel<float>(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  CausalLM<float>& model = *loaded->model;
  auto ref_or = SafetensorsFile::Open(dir + "/reference.safetensors");
  ASSERT_TRUE(ref_or.ok()) << ref_or.status();
  const SafetensorsFile& ref = **ref_or;

  const TensorView* ids_t = ref.Find("input_ids");
  ASSERT_NE(ids_t, nullptr);
  ASSERT_EQ(ids_t->shape.size(), 2u);
  const int64_t B = ids_t->shape[0], Tn = ids_t->shape[1], N = B * Tn;
  const int64_t V = model.config().vocab_size;
  std::vector<int32_t> ids = ReadIds(*ids_t);
  ASSERT_TRUE(model.Forward(ids.data(), B, Tn).ok());

  // Logits, float32 within 1e-4 max-abs.
  std::vector<float> logits(static_cast<size_t>(N * V));
  ASSERT_TRUE(model.Logits(logits.data()).ok());
  std::vector<float> want_logits = ReadF32(*ref.Find("logits"));
  ASSERT_EQ(want_logits.size(), logits.size());
  Diff dl = Compare(logits.data(), want_logits.data(), N * V);
  EXPECT_GT(dl.max_ref, 0.5);
  EXPECT_EQ(dl.count, N * V);
  EXPECT_LE(dl.max_abs, 1e-4) << "logits";

  // Chosen-token logprobs and entropies (the last position of each row has no target).
  std::vector<int32_t> targets(static_cast<size_t>(N), -1);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t + 1 < Tn; ++t) targets[b * Tn + t] = ids[b * Tn + t + 1];
  }
  std::vector<float> lp(N), ent(N);
  ASSERT_TRUE(model.TokenLogProbs(targets.data(), lp.data(), ent.data()).ok());
  std::vector<float> want_lp = ReadF32(*ref.Find("logprobs"));
  std::vector<float> want_ent = ReadF32(*ref.Find("entropy"));
  ASSERT_EQ(static_cast<int64_t>(want_lp.size()), B * (Tn - 1));
  std::vector<float> got_lp, got_ent;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t + 1 < Tn; ++t) {
      got_lp.push_back(lp[b * Tn + t]);
      got_ent.push_back(ent[b * Tn + t]);
    }
    EXPECT_EQ(lp[b * Tn + Tn - 1], 0.0f);
  }
  Diff dlp = Compare(got_lp.data(), want_lp.data(), static_cast<int64_t>(want_lp.size()));
  Diff dent = Compare(got_ent.data(), want_ent.data(), static_cast<int64_t>(want_ent.size()));
  EXPECT_GT(dlp.max_ref, 1.0);
  EXPECT_LE(dlp.max_abs, 1e-4) << "logprobs";
  EXPECT_GT(dent.max_ref, 1.0);
  EXPECT_LE(dent.max_abs, 1e-4) << "entropy";

  if (const TensorView* aux = ref.Find("aux_loss")) {
    EXPECT_NEAR(model.aux_loss(), ReadF32(*aux)[0], 1e-5);
  }

  // Gradients of sum(logprobs) with respect to every parameter, 1e-4 relative (to the
  // tensor's largest reference gradient).
  model.ZeroGrads();
  std::vector<float> dlogprob(static_cast<size_t>(N), 1.0f);
  ASSERT_TRUE(model.Backward(dlogprob.data(), nullptr).ok());
  int64_t compared_tensors = 0;
  double worst_rel = 0;
  for (const ParamInfo& p : model.params()) {
    if (!p.trainable) continue;
    const TensorView* g = ref.Find("grad." + p.name);
    ASSERT_NE(g, nullptr) << p.name;
    std::vector<float> want = ReadF32(*g);
    ASSERT_EQ(static_cast<int64_t>(want.size()), p.numel) << p.name;
    Diff d = Compare(model.grad(p), want.data(), p.numel);
    if (d.max_ref == 0) {
      EXPECT_EQ(d.max_abs, 0) << p.name;  // e.g. an expert no token was routed to
      continue;
    }
    EXPECT_LE(d.max_abs / d.max_ref, 1e-4)
        << p.name << ": max |rlvr - torch| " << d.max_abs << ", max |torch| " << d.max_ref;
    worst_rel = std::max(worst_rel, d.max_abs / d.max_ref);
    ++compared_tensors;
  }
  std::printf(
      "%s: logits max-abs %.3g, logprobs %.3g, entropy %.3g, worst gradient rel %.3g "
      "over %lld tensors\n",
      GetParam().c_str(), dl.max_abs, dlp.max_abs, dent.max_abs, worst_rel,
      static_cast<long long>(compared_tensors));
  EXPECT_GE(compared_tensors, static_cast<int64_t>(model.params().size()) / 2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ParityTest, ::testing::ValuesIn(kArchs));

}  // namespace
}  // namespace rlvr::policy
