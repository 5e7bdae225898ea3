// Decode and prefill throughput of CudaCausalLm (policy/model/cuda_model.h) on one GPU, for a
// ~0.5B dense config and a ~1B-total MoE config with random weights. One JSON object per line:
//   {"case":"device", "name", "peak_gbs", "peak_source"}
//   {"case":"prefill", "model", "graphs", "batch", "prompt", "tokens_per_s", "seconds"}
//   {"case":"decode", "model", "graphs", "batch", "prompt", "new", "tokens_per_s", "step_ms",
//    "gbytes_per_step", "achieved_gbs", "roofline_frac"}
// Decode: `batch` sequences are prefilled with random `prompt`-token prompts (one Prefill call
// per sequence; that phase is the prefill measurement), then after two untimed steps (the first
// runs eagerly, the second captures the CUDA graph of the step), `new` greedy steps of the whole
// batch (DecodeStepGreedy: argmax on the device, B ids back per step) are timed. Each model runs
// once with decode CUDA graphs ("graphs":true, CudaKvOptions::use_graphs) and once without
// (--graphs on|off|both, default both).
// Roofline: bytes a step must read from HBM at least = the bf16 weights it touches (every
// matrix of a dense model, the LM head; for MoE layers the router, attention and the experts
// expected to be hit: E (1 - (1 - K/E)^B) of E under uniform routing) + the KV cache read by
// attention (context length x layers x 2 x Hkv x D x 2 bytes per sequence, summed over the
// steps); achieved = bytes / time, roofline_frac = achieved / peak. Peak HBM bandwidth =
// 2 x memory clock x bus width (cudaDevAttrMemoryClockRate, cudaDevAttrGlobalMemoryBusWidth),
// or --peak-gbs.
//
//   cuda_bench [--model dense|moe|both] [--batches 1,64,256] [--prompt 128] [--new 128]
//              [--peak-gbs 3350] [--graphs on|off|both] [--suite decode,train,grpo]
//              [training / GRPO flags]
// --suite picks the parts (default all three); the training and GRPO-step parts and their flags
// are in train_bench.{h,cc}.
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/cuda/train_bench.h"
#include "kernels/cuda/cuda.h"
#include "policy/model/config.h"
#include "policy/model/cuda_model.h"
#include "policy/model/model.h"

namespace rlvr {
namespace {

using policy::CausalLM;
using policy::CudaCausalLm;
using policy::ModelConfig;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "cuda_bench: %s\n", msg.c_str());
  std::exit(1);
}

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) Die(std::string(what) + ": " + v.status().ToString());
  return std::move(*v);
}
void Must(const absl::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

// ~0.5B dense (Qwen3-0.6B's shapes with a 32k vocabulary): 474M parameters.
ModelConfig DenseConfig() {
  ModelConfig c = Must(policy::Preset("qwen3", "tiny"), "preset");
  c.hidden_size = 1024;
  c.num_hidden_layers = 28;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.intermediate_size = 3072;
  c.vocab_size = 32768;
  c.max_position_embeddings = 4096;
  c.tie_word_embeddings = true;
  return c;
}

// ~1B total MoE (Qwen3-MoE style, 64 experts, top-8): 0.98B total, 0.19B active parameters.
ModelConfig MoeConfig() {
  ModelConfig c = Must(policy::Preset("qwen3_moe", "tiny"), "preset");
  c.hidden_size = 1024;
  c.num_hidden_layers = 18;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  c.intermediate_size = 3072;
  c.num_experts = 64;
  c.num_experts_per_tok = 8;
  c.moe_intermediate_size = 256;
  c.vocab_size = 32768;
  c.max_position_embeddings = 4096;
  c.tie_word_embeddings = true;
  return c;
}

// Cheap deterministic fill (no normal sampler: a 1B model would take tens of seconds): matrices
// uniform in [-0.03, 0.03], norm weights 1.
void FillRandom(CausalLM<float>* m, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (const policy::ParamInfo& p : m->params()) {
    float* d = m->data(p);
    const bool norm = p.name.size() >= 11 && p.name.compare(p.name.size() - 11, 11, "norm.weight") == 0;
    for (int64_t i = 0; i < p.numel; ++i) {
      if (norm) {
        d[i] = 1.f;
        continue;
      }
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      d[i] = (static_cast<float>(s >> 40) / static_cast<float>(1 << 24) - 0.5f) * 0.06f;
    }
  }
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Peak {
  double gbs = 0;
  std::string source;
  std::string name;
};

Peak DevicePeak(double flag_gbs) {
  Peak p;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) p.name = prop.name;
  if (flag_gbs > 0) {
    p.gbs = flag_gbs;
    p.source = "--peak-gbs";
    return p;
  }
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, 0) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0) == cudaSuccess &&
      clock_khz > 0 && bus_bits > 0) {
    // DDR: two transfers per clock.
    p.gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    p.source = "cudaDevAttrMemoryClockRate*GlobalMemoryBusWidth";
  } else {
    p.gbs = 3350;
    p.source = "default H100 SXM 3350 GB/s (device attributes unavailable)";
  }
  return p;
}

// Bytes of bf16 weights one decode step of `B` tokens reads (see the file comment).
double WeightBytesPerStep(const ModelConfig& c, int64_t B) {
  const double C = c.hidden_size, H = c.num_attention_heads, Hkv = c.num_key_value_heads,
               D = c.head_dim, V = c.vocab_size;
  double params = V * C;  // LM head
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    params += C * (H + 2 * Hkv) * D + H * D * C;
    if (c.IsMoeLayer(l)) {
      const double E = c.num_experts, K = c.num_experts_per_tok, I = c.moe_intermediate_size;
      const double hit = E * (1.0 - std::pow(1.0 - K / E, static_cast<double>(B)));
      params += E * C + hit * 3 * C * I + 3 * C * I * c.n_shared_experts;
    } else {
      params += 3 * C * c.intermediate_size;
    }
  }
  return 2 * params;
}

double KvBytesPerPosition(const ModelConfig& c) {
  return 2.0 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 2;  // K and V, bf16
}

void RunModel(const std::string& name, const ModelConfig& config, const std::vector<int64_t>& batches,
              int64_t prompt, int64_t new_tokens, const Peak& peak, bool graphs) {
  std::fprintf(stderr, "cuda_bench: %s: %.3fB parameters, graphs %s, building...\n", name.c_str(),
               config.NumParameters() / 1e9, graphs ? "on" : "off");
  auto cpu = Must(CausalLM<float>::Create(config), "model");
  FillRandom(cpu.get(), 1);
  int64_t max_b = 1;
  for (int64_t b : batches) max_b = std::max(max_b, b);
  policy::CudaKvOptions kv;
  kv.block_size = 16;
  // + 2: two untimed decode steps per batch (cuBLASLt picks its algorithms for the new shapes;
  // the graph of the step is captured).
  kv.max_blocks_per_seq = (prompt + 2 + new_tokens + kv.block_size - 1) / kv.block_size;
  kv.max_seqs = max_b;
  kv.num_blocks = max_b * kv.max_blocks_per_seq;
  kv.use_graphs = graphs;
  auto gpu = Must(CudaCausalLm::Create(*cpu, kv), "CudaCausalLm::Create");
  cpu.reset();  // free the host copy
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(config.vocab_size - 1));
  for (int64_t B : batches) {
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B));
    for (auto& p : prompts) {
      p.resize(static_cast<size_t>(prompt));
      for (int32_t& x : p) x = tok(rng);
    }
    // Warm-up (cuBLASLt heuristics, first launches): one sequence, two steps.
    Must(gpu->Prefill(0, prompts[0].data(), prompt), "warm-up prefill");
    {
      const int64_t s = 0;
      int32_t next = 1;
      for (int i = 0; i < 2; ++i) Must(gpu->DecodeStepGreedy(&s, &next, 1, &next), "warm-up");
      gpu->ReleaseSequence(0);
    }
    Must(kernels::cuda::Synchronize(), "sync");
    double t0 = Now();
    for (int64_t b = 0; b < B; ++b) {
      Must(gpu->Prefill(b, prompts[b].data(), prompt), "prefill");
    }
    Must(kernels::cuda::Synchronize(), "sync");
    const double prefill_s = Now() - t0;
    std::printf(
        "{\"case\":\"prefill\",\"model\":\"%s\",\"graphs\":%s,\"batch\":%lld,"
        "\"prompt\":%lld,\"tokens_per_s\":%.1f,\"seconds\":%.4f}\n",
        name.c_str(), graphs ? "true" : "false", static_cast<long long>(B),
        static_cast<long long>(prompt),
        B * prompt / prefill_s, prefill_s);
    std::fflush(stdout);
    std::vector<int64_t> seqs(static_cast<size_t>(B));
    std::vector<int32_t> ids(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      seqs[b] = b;
      ids[b] = tok(rng);
    }
    for (int i = 0; i < 2; ++i) {
      Must(gpu->DecodeStepGreedy(seqs.data(), ids.data(), B, ids.data()), "warm-up step");
    }
    double bytes = 0;
    t0 = Now();
    for (int64_t step = 0; step < new_tokens; ++step) {
      Must(gpu->DecodeStepGreedy(seqs.data(), ids.data(), B, ids.data()), "decode step");
      // Context read by this step: positions 0..prompt+2+step of every sequence.
      bytes += WeightBytesPerStep(config, B) +
               static_cast<double>(B) * (prompt + step + 3) * KvBytesPerPosition(config);
    }
    const double decode_s = Now() - t0;
    const double gbs = bytes / decode_s / 1e9;
    std::printf(
        "{\"case\":\"decode\",\"model\":\"%s\",\"graphs\":%s,\"batch\":%lld,\"prompt\":%lld,\"new\":%lld,"
        "\"tokens_per_s\":%.1f,\"step_ms\":%.4f,\"gbytes_per_step\":%.4f,\"achieved_gbs\":%.1f,"
        "\"roofline_frac\":%.4f}\n",
        name.c_str(), graphs ? "true" : "false", static_cast<long long>(B),
        static_cast<long long>(prompt), static_cast<long long>(new_tokens),
        B * new_tokens / decode_s,
        1e3 * decode_s / new_tokens, bytes / new_tokens / 1e9, gbs, gbs / peak.gbs);
    std::fflush(stdout);
    for (int64_t b = 0; b < B; ++b) gpu->ReleaseSequence(b);
  }
}

int Main(int argc, char** argv) {
  std::string model = "both";
  std::vector<int64_t> batches = {1, 64, 256};
  int64_t prompt = 128, new_tokens = 128;
  double peak_gbs = 0;
  bool decode = true;
  bench::TrainBenchOptions train;  // the training / GRPO parts (train_bench.h)
  std::string graphs = "both";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value after " + a);
      return argv[++i];
    };
    auto int_value = [&]() -> int64_t {
      int64_t v = 0;
      const std::string s = value();
      if (!absl::SimpleAtoi(s, &v) || v <= 0) Die(a + ": not a positive integer: " + s);
      return v;
    };
    if (a == "--model") {
      model = value();
      if (model != "dense" && model != "moe" && model != "both") Die("--model dense|moe|both");
    } else if (a == "--batches") {
      batches.clear();
      for (absl::string_view p : absl::StrSplit(value(), ',')) {
        int64_t v = 0;
        if (!absl::SimpleAtoi(p, &v) || v <= 0) Die("--batches: bad entry");
        batches.push_back(v);
      }
    } else if (a == "--prompt") {
      prompt = int_value();
    } else if (a == "--new") {
      new_tokens = int_value();
    } else if (a == "--peak-gbs") {
      const std::string s = value();
      if (!absl::SimpleAtod(s, &peak_gbs) || peak_gbs <= 0) Die("--peak-gbs: bad value " + s);
    } else if (a == "--graphs") {
      graphs = value();
      if (graphs != "on" && graphs != "off" && graphs != "both") Die("--graphs on|off|both");
    } else if (a == "--suite") {
      decode = train.train = train.grpo = false;
      for (absl::string_view p : absl::StrSplit(value(), ',')) {
        if (p == "decode") {
          decode = true;
        } else if (p == "train") {
          train.train = true;
        } else if (p == "grpo") {
          train.grpo = true;
        } else {
          Die("--suite: \"" + std::string(p) + "\" is not one of decode, train, grpo");
        }
      }
    } else if (bench::ParseTrainFlag(a, value, &train)) {
    } else {
      Die("unknown flag " + a +
          " (flags: --model, --batches, --prompt, --new, --peak-gbs, --graphs, --suite, " +
          bench::TrainFlagsHelp() + ")");
    }
  }
  auto devices = kernels::cuda::DeviceCount();
  if (!kernels::cuda::BuiltWithCuda() || !devices.ok() || *devices == 0) {
    Die("no CUDA device (or built without CUDA)");
  }
  const Peak peak = DevicePeak(peak_gbs);
  std::printf("{\"case\":\"device\",\"name\":\"%s\",\"peak_gbs\":%.1f,\"peak_source\":\"%s\"}\n",
              peak.name.c_str(), peak.gbs, peak.source.c_str());
  std::fflush(stdout);
  std::vector<bool> graph_modes;
  if (graphs != "off") graph_modes.push_back(true);
  if (graphs != "on") graph_modes.push_back(false);
  for (bool g : graph_modes) {
    if (decode && (model == "dense" || model == "both")) {
      RunModel("dense-0.5b", DenseConfig(), batches, prompt, new_tokens, peak, g);
    }
    if (decode && (model == "moe" || model == "both")) {
      RunModel("moe-1b", MoeConfig(), batches, prompt, new_tokens, peak, g);
    }
  }
  // The training and GRPO-step parts (train_bench.h).
  auto fill = [](CausalLM<float>* m) { FillRandom(m, 1); };
  if (model == "dense" || model == "both") {
    bench::RunTrainBench("dense-0.5b", DenseConfig(), fill, train);
  }
  if (model == "moe" || model == "both") bench::RunTrainBench("moe-1b", MoeConfig(), fill, train);
  return 0;
}

}  // namespace
}  // namespace rlvr

int main(int argc, char** argv) { return rlvr::Main(argc, argv); }
