// CudaCausalLm (policy/model/cuda_model.h) against the CPU CausalLM<float>:
//   * full-forward logits on random models of every architecture the kernels support (qwen3_moe,
//     qwen3, qwen2, llama; the tiny and small presets, whose head dims are 16 and 32, plus
//     head_dim 64 / 128 configs, biases on q/k/v/o, a shared expert, mixed dense and MoE layers
//     and a padded vocabulary);
//   * decode logits after Prefill (two sequences of different lengths decoded in one batch,
//     blocks of 8 positions so block boundaries are crossed) against the full forward of the
//     same positions, on the GPU and on the CPU;
//   * greedy tokens (16 new tokens) against the CPU's greedy decode;
//   * CUDA graphs: decode with use_graphs on against off, bit for bit (logits and greedy
//     tokens), at B = 1 and B = 3 over 20 steps crossing block boundaries, across a scratch
//     reallocation (a larger batch after a smaller one), with the capture / replay counts;
//   * router replay recording: the experts recorded by Prefill and graphed decode steps against
//     the CPU's routing of the same tokens, and recording changes no logit;
//   * bad input: unsupported configs, empty ids, ids >= vocab, positions past the pool, an
//     exhausted pool. The host-side checks run without a GPU; in a build without CUDA, Create
//     returns Unimplemented.
// The CPU runs with SetMatmulPrecision(kBf16) (products of bf16-rounded operands, fp32
// accumulation, as the GPU's GEMMs), and every weight of the random models is put on the bf16
// grid first, so both sides use the same weights (the GPU stores matrices as bf16) even on a CPU
// without AVX512-BF16, where kBf16 runs float32 products.
//
// Tolerance: max |gpu - cpu| / max |cpu| <= 2e-2 over the compared logits. The two sides round
// the same GEMM operands to bf16, but the GPU also rounds q, k, v and the attention output (the
// CPU's bf16 attention rounds q, k, v and the probabilities instead), and in MoE layers the
// experts' gate|up outputs, their down outputs and the combined output (bf16 kernels), and it
// sums in other orders. Each bf16 rounding is a relative 2^-9 (0.2%) perturbation of one
// tensor; a handful of them per layer over 2-4 layers move logits by a few 1e-3 of their scale,
// so 2e-2 leaves a margin of several times, while a wrong head mapping, a missing bias, a
// wrong norm weight or a misrouted expert changes the logits by O(1) of their scale.
#include "policy/model/cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "core/dtype.h"
#include "gtest/gtest.h"
#include "kernels/attention.h"
#include "kernels/cuda/cuda.h"
#include "kernels/matmul.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/policy/model/cuda_model_test_util.h"

namespace rlvr::policy {
namespace {

constexpr double kTol = 2e-2;

int32_t FirstArgmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

class CudaModelTest : public ::testing::TestWithParam<ModelCase> {
 protected:
  void SetUp() override { kernels::SetMatmulPrecision(kernels::MatmulPrecision::kBf16); }
  void TearDown() override { kernels::SetMatmulPrecision(kernels::MatmulPrecision::kHighest); }
};

TEST_P(CudaModelTest, ForwardMatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const ModelCase& mc = GetParam();
  auto cpu = RandomModel(mc, 11);
  const int64_t B = 2, T = 37, V = mc.config.vocab_size;
  const std::vector<int32_t> ids = RandomIds(B * T, V, 12);
  ASSERT_TRUE(cpu->Forward(ids.data(), B, T).ok());
  std::vector<float> ref(static_cast<size_t>(B * T * V));
  ASSERT_TRUE(cpu->Logits(ref.data()).ok());
  auto gpu = CudaCausalLm::Create(*cpu);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  std::vector<float> got(ref.size(), std::numeric_limits<float>::quiet_NaN());
  ASSERT_TRUE((*gpu)->Forward(ids.data(), B, T, got.data()).ok());
  EXPECT_LE(RelErr(got.data(), ref.data(), B * T * V), kTol);
}

TEST_P(CudaModelTest, DecodeMatchesForward) {
  RLVR_SKIP_WITHOUT_GPU();
  const ModelCase& mc = GetParam();
  auto cpu = RandomModel(mc, 21);
  const int64_t V = mc.config.vocab_size, steps = 6;
  const int64_t prompt[2] = {20, 5};
  std::vector<int32_t> seq[2] = {RandomIds(prompt[0] + steps, V, 22),
                                 RandomIds(prompt[1] + steps, V, 23)};
  CudaKvOptions kv;
  kv.num_blocks = 16;
  kv.block_size = 8;
  kv.max_seqs = 3;
  kv.max_blocks_per_seq = 4;
  auto made = CudaCausalLm::Create(*cpu, kv);
  ASSERT_TRUE(made.ok()) << made.status();
  CudaCausalLm& gpu = **made;
  // Reference rows: the full forward of each whole sequence, on the GPU and on the CPU.
  std::vector<float> fwd[2], cref[2];
  for (int s = 0; s < 2; ++s) {
    const int64_t n = static_cast<int64_t>(seq[s].size());
    fwd[s].assign(static_cast<size_t>(n * V), std::numeric_limits<float>::quiet_NaN());
    ASSERT_TRUE(gpu.Forward(seq[s].data(), 1, n, fwd[s].data()).ok());
    cref[s].resize(static_cast<size_t>(n * V));
    ASSERT_TRUE(cpu->Forward(seq[s].data(), 1, n).ok());
    ASSERT_TRUE(cpu->Logits(cref[s].data()).ok());
  }
  double err_gpu = 0, err_cpu = 0;
  std::vector<float> last(static_cast<size_t>(2 * V));
  for (int s = 0; s < 2; ++s) {
    std::fill(last.begin(), last.end(), std::numeric_limits<float>::quiet_NaN());
    ASSERT_TRUE(gpu.Prefill(s, seq[s].data(), prompt[s], last.data()).ok());
    const int64_t row = prompt[s] - 1;
    err_gpu = std::max(err_gpu, RelErr(last.data(), fwd[s].data() + row * V, V));
    err_cpu = std::max(err_cpu, RelErr(last.data(), cref[s].data() + row * V, V));
    EXPECT_EQ(gpu.kv().length(s), prompt[s]);
  }
  const int64_t slots[2] = {0, 1};
  for (int64_t i = 0; i < steps; ++i) {
    const int32_t ids[2] = {seq[0][prompt[0] + i], seq[1][prompt[1] + i]};
    std::fill(last.begin(), last.end(), std::numeric_limits<float>::quiet_NaN());
    ASSERT_TRUE(gpu.DecodeStep(slots, ids, 2, last.data()).ok());
    for (int s = 0; s < 2; ++s) {
      const int64_t row = prompt[s] + i;
      err_gpu = std::max(err_gpu, RelErr(last.data() + s * V, fwd[s].data() + row * V, V));
      err_cpu = std::max(err_cpu, RelErr(last.data() + s * V, cref[s].data() + row * V, V));
    }
  }
  EXPECT_LE(err_gpu, kTol) << "decode vs the GPU's full forward";
  EXPECT_LE(err_cpu, kTol) << "decode vs the CPU's full forward";
  EXPECT_EQ(gpu.kv().length(0), prompt[0] + steps);
  EXPECT_EQ(gpu.kv().length(1), prompt[1] + steps);
}

TEST_P(CudaModelTest, GreedyMatchesCpu) {
  RLVR_SKIP_WITHOUT_GPU();
  const ModelCase& mc = GetParam();
  if (!mc.greedy) GTEST_SKIP() << "greedy comparison only on the small configs";
  auto cpu = RandomModel(mc, 31);
  const int64_t V = mc.config.vocab_size, max_new = 16;
  const std::vector<int32_t> prompt = RandomIds(8, mc.active_vocab > 0 ? mc.active_vocab : V, 32);
  const int64_t n = static_cast<int64_t>(prompt.size());
  // CPU greedy decode (kBf16), keeping each step's logits.
  KvCache<float> cache(mc.config, 1, n + max_new);
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) positions[t] = static_cast<int32_t>(t);
  std::vector<std::vector<float>> cpu_logits;
  std::vector<int32_t> cpu_tokens;
  std::vector<float> logits(static_cast<size_t>(V));
  ASSERT_TRUE(cpu->Decode(prompt.data(), positions.data(), 1, n, cache.views(), logits.data()).ok());
  for (int64_t i = 0; i < max_new; ++i) {
    cpu_logits.push_back(logits);
    const int32_t tok = FirstArgmax(logits.data(), V);
    cpu_tokens.push_back(tok);
    if (i + 1 == max_new) break;
    const int32_t pos = static_cast<int32_t>(n + i);
    ASSERT_TRUE(cpu->Decode(&tok, &pos, 1, 1, cache.views(), logits.data()).ok());
  }
  auto gpu = CudaCausalLm::Create(*cpu);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto tokens = (*gpu)->GreedyGenerate(prompt, max_new);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), cpu_tokens.size());
  for (size_t i = 0; i < cpu_tokens.size(); ++i) {
    if ((*tokens)[i] == cpu_tokens[i]) continue;
    // Only a near-tie of the CPU's own logits may differ (then the continuations diverge, and
    // nothing after it is compared): the chosen token's logit within 1e-3 of the row's scale.
    const std::vector<float>& row = cpu_logits[i];
    float scale = 0;
    for (float x : row) {
      if (std::isfinite(x)) scale = std::max(scale, std::abs(x));
    }
    const float gap = row[cpu_tokens[i]] - row[(*tokens)[i]];
    EXPECT_LE(gap, 1e-3f * scale) << "greedy token " << i << ": GPU " << (*tokens)[i]
                                  << ", CPU " << cpu_tokens[i] << " (not a near-tie)";
    std::cerr << "note: greedy diverged at token " << i << " on a near-tie (gap " << gap
              << ", scale " << scale << ")\n";
    break;
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, CudaModelTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<ModelCase>& info) {
                           return info.param.name;
                         });

// ---------------------------------------------------------------------------------------------
// CUDA graphs: decode steps replayed from graphs against the same steps run eagerly
// (CudaKvOptions::use_graphs off). Both paths run the same kernels with the same arguments in
// the same order, so logits and tokens must be bit-identical, not merely close.

// What one run of RunGraphScript produced.
struct ScriptOutput {
  std::vector<float> logits;    // every DecodeStep's [B, V] logits, concatenated
  std::vector<int32_t> tokens;  // every greedy token
  int64_t captures = 0, launches = 0;
};

// On a fresh model (blocks of 8 positions, capacity 64 per sequence):
//   1. slot 0: a 2-token prompt, then 20 DecodeSteps at B = 1 (positions 2..21: the block
//      boundaries 8 and 16 are crossed while the graph of B = 1 is replayed);
//   2. slots 1, 2: prompts of 1 and 2 tokens; 20 DecodeSteps at B = 3 over slots 0, 1, 2
//      (different lengths per row). The scratch had 2 rows: it is reallocated, which must drop
//      the graph of B = 1;
//   3. 5 DecodeSteps at B = 1 on slot 1 (the graph of B = 1 warmed and captured again, on the
//      new scratch);
//   4. 20 DecodeStepGreedy at B = 3 (each model feeds back its own tokens);
//   5. GreedyGenerate of 20 tokens from a 2-token prompt in slot 0 (greedy graph of B = 1).
// Logits buffers are poisoned with NaN before each call (an unwritten entry fails the
// bit-for-bit comparison).
ScriptOutput RunGraphScript(const CausalLM<float>& cpu, bool use_graphs) {
  ScriptOutput out;
  CudaKvOptions kv;
  kv.num_blocks = 24;
  kv.block_size = 8;
  kv.max_seqs = 3;
  kv.max_blocks_per_seq = 8;
  kv.use_graphs = use_graphs;
  auto made = CudaCausalLm::Create(cpu, kv);
  EXPECT_TRUE(made.ok()) << made.status();
  if (!made.ok()) return out;
  CudaCausalLm& gpu = **made;
  const int64_t V = cpu.config().vocab_size;
  const int64_t vocab = cpu.active_vocab();
  const std::vector<int32_t> stream = RandomIds(200, vocab, 41);  // teacher-forced ids
  size_t next_id = 0;
  auto ids_for = [&](int64_t B) {
    std::vector<int32_t> ids(stream.begin() + next_id, stream.begin() + next_id + B);
    next_id += static_cast<size_t>(B);
    return ids;
  };
  auto step = [&](const std::vector<int64_t>& slots) {
    const int64_t B = static_cast<int64_t>(slots.size());
    const std::vector<int32_t> ids = ids_for(B);
    std::vector<float> logits(static_cast<size_t>(B * V), std::numeric_limits<float>::quiet_NaN());
    const absl::Status st = gpu.DecodeStep(slots.data(), ids.data(), B, logits.data());
    EXPECT_TRUE(st.ok()) << st;
    out.logits.insert(out.logits.end(), logits.begin(), logits.end());
  };
  const std::vector<int32_t> p0 = RandomIds(2, vocab, 42), p1 = RandomIds(1, vocab, 43),
                             p2 = RandomIds(2, vocab, 44);
  EXPECT_TRUE(gpu.Prefill(0, p0.data(), 2).ok());
  for (int i = 0; i < 20; ++i) step({0});
  EXPECT_TRUE(gpu.Prefill(1, p1.data(), 1).ok());
  EXPECT_TRUE(gpu.Prefill(2, p2.data(), 2).ok());
  for (int i = 0; i < 20; ++i) step({0, 1, 2});
  for (int i = 0; i < 5; ++i) step({1});
  const std::vector<int64_t> three = {0, 1, 2};
  std::vector<int32_t> ids = ids_for(3), next(3, -1);
  for (int i = 0; i < 20; ++i) {
    const absl::Status st = gpu.DecodeStepGreedy(three.data(), ids.data(), 3, next.data());
    EXPECT_TRUE(st.ok()) << st;
    out.tokens.insert(out.tokens.end(), next.begin(), next.end());
    ids = next;
    std::fill(next.begin(), next.end(), -1);
  }
  EXPECT_EQ(gpu.kv().length(0), 2 + 20 + 20 + 20);
  auto gen = gpu.GreedyGenerate(p0, 20, /*seq=*/0);
  EXPECT_TRUE(gen.ok()) << gen.status();
  if (gen.ok()) out.tokens.insert(out.tokens.end(), gen->begin(), gen->end());
  out.captures = gpu.graph_captures();
  out.launches = gpu.graph_launches();
  return out;
}

TEST(CudaModelGraphs, GraphDecodeIsBitIdenticalToEager) {
  RLVR_SKIP_WITHOUT_GPU();
  int tested = 0;
  for (const ModelCase& mc : Cases()) {
    // MoE and dense layers, a shared expert, a padded vocabulary (qwen3_moe_d64_shared); GQA 4,
    // biases, head_dim 128, an untied head (llama_d128_bias).
    if (mc.name != "qwen3_moe_d64_shared" && mc.name != "llama_d128_bias") continue;
    SCOPED_TRACE(mc.name);
    ++tested;
    auto cpu = RandomModel(mc, 51);
    const ScriptOutput eager = RunGraphScript(*cpu, /*use_graphs=*/false);
    const ScriptOutput graph = RunGraphScript(*cpu, /*use_graphs=*/true);
    const int64_t V = mc.config.vocab_size;
    ASSERT_EQ(eager.logits.size(), static_cast<size_t>((20 * 1 + 20 * 3 + 5 * 1) * V));
    ASSERT_EQ(graph.logits.size(), eager.logits.size());
    ASSERT_EQ(eager.tokens.size(), static_cast<size_t>(20 * 3 + 20));
    // Not vacuous: the eager logits are finite (or -inf past active_vocab) and not all zero.
    double scale = 0;
    for (size_t i = 0; i < eager.logits.size(); ++i) {
      const float x = eager.logits[i];
      const bool masked = mc.active_vocab > 0 && static_cast<int64_t>(i) % V >= mc.active_vocab;
      ASSERT_TRUE(masked ? std::isinf(x) : std::isfinite(x)) << "eager logit " << i << " = " << x;
      if (!masked) scale = std::max(scale, std::abs(static_cast<double>(x)));
    }
    EXPECT_GT(scale, 0.0);
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < eager.logits.size(); ++i) {
      if (std::memcmp(&eager.logits[i], &graph.logits[i], sizeof(float)) != 0) {
        if (mismatches++ == 0) first = i;
      }
    }
    EXPECT_EQ(mismatches, 0u) << "first at step row " << first / V << ", id " << first % V
                              << ": eager " << eager.logits[first] << ", graph "
                              << graph.logits[first];
    EXPECT_EQ(graph.tokens, eager.tokens);
    // Graphs were really used: one capture per (B, greedy) key and phase (B = 1 twice: the
    // reallocation dropped the first), every other step but the first of each a replay.
    EXPECT_EQ(eager.captures, 0);
    EXPECT_EQ(eager.launches, 0);
    EXPECT_EQ(graph.captures, 5);
    EXPECT_EQ(graph.launches, 19 + 19 + 4 + 19 + 18);
  }
  EXPECT_EQ(tested, 2);
}

// Router replay recording (CudaKvOptions::record_experts): the experts recorded by Prefill and
// by graphed decode steps (B = 2, slots of different lengths; step 1 eager, 2 captured, later
// replayed) against the CPU's chosen_experts of a full forward over the same tokens, laid out
// [rows, moe_layers, K]; and recording changes no logit (bit-identical to a model that does not
// record, which records nothing). The router weights get 10x the init scale (RandomModel) so
// that bf16 rarely flips near-ties; compared as sets, at most 5% of the recorded rows may still
// differ from the CPU (a near-tie: the host emulation of the kernels shows 1 of 54, layer 0
// experts {0, 4} against {2, 4}); each must hold K distinct experts in [0, E).
TEST(CudaModelReplay, RecordedExpertsMatchCpuRouting) {
  RLVR_SKIP_WITHOUT_GPU();
  kernels::SetMatmulPrecision(kernels::MatmulPrecision::kBf16);
  ModelCase mc{"qwen3_moe_record", MustPreset("qwen3_moe", "tiny")};
  auto cpu = RandomModel(mc, 61);  // spread router (cuda_model_test_util.h)
  const ModelConfig& c = mc.config;
  const int64_t E = c.num_experts, K = c.num_experts_per_tok, V = c.vocab_size;
  std::vector<int64_t> moe;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    if (c.IsMoeLayer(l)) moe.push_back(l);
  }
  const int64_t ML = static_cast<int64_t>(moe.size()), row = ML * K;
  CudaKvOptions kv{.num_blocks = 16, .block_size = 8, .max_seqs = 2, .max_blocks_per_seq = 8};
  CudaKvOptions kv_rec = kv;
  kv_rec.record_experts = true;
  auto made = CudaCausalLm::Create(*cpu, kv_rec);
  auto plain_made = CudaCausalLm::Create(*cpu, kv);
  ASSERT_TRUE(made.ok() && plain_made.ok()) << made.status() << plain_made.status();
  CudaCausalLm& gpu = **made;
  CudaCausalLm& plain = **plain_made;
  EXPECT_EQ(gpu.num_moe_layers(), ML);
  const int64_t steps = 5, P[2] = {11, 6};
  std::vector<std::vector<int32_t>> seq = {RandomIds(P[0] + steps, V, 3),
                                           RandomIds(P[1] + steps, V, 4)};
  // recorded[s]: [tokens fed, ML, K] of sequence s, prompt then decode steps.
  std::vector<std::vector<int32_t>> recorded(2);
  std::vector<float> a(V), b(V);
  for (int64_t s = 0; s < 2; ++s) {
    ASSERT_TRUE(gpu.Prefill(s, seq[s].data(), P[s], a.data()).ok());
    ASSERT_TRUE(plain.Prefill(s, seq[s].data(), P[s], b.data()).ok());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), V * sizeof(float)), 0) << "prefill logits";
    EXPECT_TRUE(plain.recorded_experts().empty());
    ASSERT_EQ(static_cast<int64_t>(gpu.recorded_experts().size()), P[s] * row);
    recorded[s] = gpu.recorded_experts();
  }
  const int64_t slots[2] = {0, 1};
  std::vector<float> la(2 * V), lb(2 * V);
  for (int64_t t = 0; t < steps; ++t) {
    const int32_t ids[2] = {seq[0][P[0] + t], seq[1][P[1] + t]};
    ASSERT_TRUE(gpu.DecodeStep(slots, ids, 2, la.data()).ok());
    ASSERT_TRUE(plain.DecodeStep(slots, ids, 2, lb.data()).ok());
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), 2 * V * sizeof(float)), 0) << "step " << t;
    const std::vector<int32_t>& e = gpu.recorded_experts();
    ASSERT_EQ(static_cast<int64_t>(e.size()), 2 * row);
    for (int64_t s = 0; s < 2; ++s) {
      recorded[s].insert(recorded[s].end(), e.begin() + s * row, e.begin() + (s + 1) * row);
    }
  }
  EXPECT_GE(gpu.graph_launches(), 1) << "the decode steps were not graphed";
  int64_t rows = 0, differ = 0;
  for (int64_t s = 0; s < 2; ++s) {
    const int64_t T = P[s] + steps;
    ASSERT_EQ(static_cast<int64_t>(recorded[s].size()), T * row);
    ASSERT_TRUE(cpu->Forward(seq[s].data(), 1, T).ok());
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t m = 0; m < ML; ++m) {
        const int32_t* got = recorded[s].data() + (t * ML + m) * K;
        const int32_t* want = cpu->chosen_experts(moe[m]) + t * K;
        for (int64_t k = 0; k < K; ++k) {
          ASSERT_TRUE(got[k] >= 0 && got[k] < E) << "seq " << s << " token " << t;
          for (int64_t j = 0; j < k; ++j) ASSERT_NE(got[j], got[k]);
        }
        ++rows;
        // The same set of experts (the order of near-equal probabilities may differ; replay
        // uses the set).
        std::vector<int32_t> g(got, got + K), w(want, want + K);
        std::sort(g.begin(), g.end());
        std::sort(w.begin(), w.end());
        if (g != w) {
          ++differ;
          std::printf("seq %lld token %lld moe layer %lld: gpu", static_cast<long long>(s),
                      static_cast<long long>(t), static_cast<long long>(m));
          for (int64_t k = 0; k < K; ++k) std::printf(" %d", got[k]);
          std::printf(" cpu");
          for (int64_t k = 0; k < K; ++k) std::printf(" %d", want[k]);
          std::printf("\n");
        }
      }
    }
  }
  EXPECT_LE(differ * 20, rows) << differ << " of " << rows << " recorded rows differ from the CPU";
  kernels::SetMatmulPrecision(kernels::MatmulPrecision::kHighest);
}

TEST(CudaModelGraphs, GraphsAreOnByDefault) { EXPECT_TRUE(CudaKvOptions{}.use_graphs); }

// ---------------------------------------------------------------------------------------------
// Bad input. Host-side checks: every build, with or without a GPU.

TEST(CudaModelArgs, UnsupportedConfigsNameTheFeature) {
  for (const char* preset : {"tiny", "small"}) {
    for (const char* arch : {"qwen3_moe", "qwen3", "qwen2", "llama"}) {
      EXPECT_TRUE(CudaCausalLm::CheckSupported(MustPreset(arch, preset)).ok()) << arch;
    }
    absl::Status st = CudaCausalLm::CheckSupported(MustPreset("dots1", preset));
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(st.message(), "scoring_func sigmoid")) << st;
  }
  ModelConfig c = MustPreset("qwen3", "tiny");
  c.head_dim = 48;
  absl::Status st = CudaCausalLm::CheckSupported(c);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(st.message(), "head_dim 48")) << st;
  c = MustPreset("qwen3_moe", "tiny");
  c.n_group = 2;
  c.topk_group = 1;
  st = CudaCausalLm::CheckSupported(c);
  EXPECT_TRUE(absl::StrContains(st.message(), "group-limited routing")) << st;
  // Create reports the config before looking for a device.
  auto model = CausalLM<float>::Create(MustPreset("dots1", "tiny"));
  ASSERT_TRUE(model.ok());
  auto made = CudaCausalLm::Create(**model);
  EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument);
  // And bad pool sizes.
  auto dense = CausalLM<float>::Create(MustPreset("qwen3", "tiny"));
  ASSERT_TRUE(dense.ok());
  CudaKvOptions kv;
  kv.block_size = 0;
  made = CudaCausalLm::Create(**dense, kv);
  EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(made.status().message(), "block_size")) << made.status();
}

TEST(CudaModelArgs, IdsAreChecked) {
  const ModelConfig c = MustPreset("qwen3", "tiny");
  const std::vector<int32_t> ok = {0, 5, static_cast<int32_t>(c.vocab_size - 1)};
  EXPECT_TRUE(CudaCausalLm::CheckIds(c, ok.data(), 3, "Forward").ok());
  absl::Status st = CudaCausalLm::CheckIds(c, ok.data(), 0, "Forward");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(st.message(), "Forward: empty ids")) << st;
  const std::vector<int32_t> big = {1, static_cast<int32_t>(c.vocab_size)};
  st = CudaCausalLm::CheckIds(c, big.data(), 2, "Prefill");
  EXPECT_TRUE(absl::StrContains(st.message(), "Prefill: ids[1] = 1024 is outside [0, vocab_size"))
      << st;
  const std::vector<int32_t> neg = {-3};
  st = CudaCausalLm::CheckIds(c, neg.data(), 1, "DecodeStep");
  EXPECT_TRUE(absl::StrContains(st.message(), "ids[0] = -3")) << st;
}

TEST(CudaModelArgs, BlockTableBookkeeping) {
  KvBlockTable t(/*num_blocks=*/5, /*block_size=*/4, /*max_seqs=*/2, /*max_blocks_per_seq=*/3);
  EXPECT_EQ(t.capacity(), 12);
  const int64_t s0[1] = {0}, s1[1] = {1};
  const int64_t len9[1] = {9}, len13[1] = {13}, len8[1] = {8};
  ASSERT_TRUE(t.Reserve(s0, len9).ok());
  EXPECT_EQ(t.blocks(0).size(), 3u);
  EXPECT_EQ(t.free_blocks(), 2);
  absl::Status st = t.Reserve(s1, len13);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(st.message(), "position 12 of sequence 1 is past the KV pool"))
      << st;
  st = t.Reserve(s1, len9);  // 3 blocks, 2 free
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_EQ(t.free_blocks(), 2);  // all or nothing
  ASSERT_TRUE(t.Reserve(s1, len8).ok());
  const int64_t both[2] = {0, 0}, lens[2] = {1, 1};
  st = t.Reserve(both, lens);
  EXPECT_TRUE(absl::StrContains(st.message(), "appears twice")) << st;
  const int64_t bad[1] = {2};
  st = t.Reserve(bad, len8);
  EXPECT_TRUE(absl::StrContains(st.message(), "sequence slot 2 is outside")) << st;
  // Distinct blocks across sequences.
  std::vector<int32_t> all(t.blocks(0));
  all.insert(all.end(), t.blocks(1).begin(), t.blocks(1).end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
  t.Release(0);
  EXPECT_EQ(t.free_blocks(), 3);
  EXPECT_EQ(t.length(0), 0);
  std::vector<int32_t> row;
  t.AppendTableRow(1, &row);
  EXPECT_EQ(row.size(), 3u);
  EXPECT_EQ(row[2], 0);  // padding
}

TEST(CudaModelArgs, CreateWithoutGpu) {
  if (kernels::cuda::testing::HaveGpu()) GTEST_SKIP() << "a GPU is present";
  auto model = CausalLM<float>::Create(MustPreset("qwen3", "tiny"));
  ASSERT_TRUE(model.ok());
  auto made = CudaCausalLm::Create(**model);
  EXPECT_EQ(made.status().code(), kernels::cuda::BuiltWithCuda()
                                      ? absl::StatusCode::kFailedPrecondition
                                      : absl::StatusCode::kUnimplemented)
      << made.status();
}

// The same errors from the methods of a live model (needs a GPU).
TEST(CudaModelArgs, MethodsRejectBadInput) {
  RLVR_SKIP_WITHOUT_GPU();
  auto model = CausalLM<float>::Create(MustPreset("qwen3", "tiny"));
  ASSERT_TRUE(model.ok());
  (*model)->InitRandom(1);
  CudaKvOptions kv;
  kv.num_blocks = 3;
  kv.block_size = 4;
  kv.max_seqs = 2;
  kv.max_blocks_per_seq = 2;  // capacity 8 positions
  auto made = CudaCausalLm::Create(**model, kv);
  ASSERT_TRUE(made.ok()) << made.status();
  CudaCausalLm& gpu = **made;
  const int64_t V = gpu.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(16 * V));
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(gpu.Forward(ids.data(), 0, 4, logits.data()).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> big = {1, static_cast<int32_t>(V)};
  absl::Status st = gpu.Forward(big.data(), 1, 2, logits.data());
  EXPECT_TRUE(absl::StrContains(st.message(), "ids[1]")) << st;
  st = gpu.Prefill(0, ids.data(), 0);
  EXPECT_TRUE(absl::StrContains(st.message(), "empty ids")) << st;
  st = gpu.Prefill(0, ids.data(), 9);
  EXPECT_TRUE(absl::StrContains(st.message(), "past the KV pool")) << st;
  ASSERT_TRUE(gpu.Prefill(0, ids.data(), 8).ok());  // fills slot 0 (2 blocks)
  const int64_t s0 = 0, s1 = 1;
  const int32_t tok = 3;
  st = gpu.DecodeStep(&s0, &tok, 1, logits.data());
  EXPECT_TRUE(absl::StrContains(st.message(), "position 8 of sequence 0 is past the KV pool"))
      << st;
  ASSERT_TRUE(gpu.Prefill(1, ids.data(), 4).ok());  // the third block
  st = gpu.DecodeStep(&s1, &tok, 1, logits.data());  // position 4 needs a fourth block
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  gpu.ReleaseSequence(0);
  EXPECT_TRUE(gpu.DecodeStep(&s1, &tok, 1, logits.data()).ok());
  const int32_t bad_tok = static_cast<int32_t>(V);
  st = gpu.DecodeStep(&s1, &bad_tok, 1, logits.data());
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
}

}  // namespace
}  // namespace rlvr::policy
