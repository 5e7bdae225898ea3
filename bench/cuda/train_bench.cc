// See train_bench.h.
#include "bench/cuda/train_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "kernels/cuda/cuda.h"
#include "policy/model/cuda_train.h"
#include "policy/optim/adamw.h"
#include "rollout/cuda_generate.h"
#include "rollout/engine.h"

namespace rlvr::bench {
namespace {

using policy::CausalLM;
using policy::CudaTrainModel;
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

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

policy::AdamWConfig BenchAdamW() {
  policy::AdamWConfig c;
  c.lr = 1e-5;
  c.max_grad_norm = 1.0;
  return c;
}

// One SFT step on fresh random ids; returns the mean NLL of its targets.
double TrainStep(CudaTrainModel* m, int64_t B, int64_t T, std::mt19937_64* rng) {
  const int64_t V = m->config().vocab_size;
  const int64_t N = B * T;
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(V - 1));
  std::vector<int32_t> ids(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
  for (int32_t& x : ids) x = tok(*rng);
  int64_t ntok = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n = b * T + t;
      targets[n] = t + 1 < T ? ids[n + 1] : -1;
      ntok += t + 1 < T;
    }
  }
  std::vector<float> logprob(static_cast<size_t>(N)), dlogprob(static_cast<size_t>(N), 0.f);
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] >= 0) dlogprob[n] = -1.f / static_cast<float>(std::max<int64_t>(ntok, 1));
  }
  Must(m->Forward(ids.data(), B, T), "CudaTrainModel::Forward");
  Must(m->TokenLogProbs(targets.data(), logprob.data(), nullptr), "TokenLogProbs");
  Must(m->Backward(dlogprob.data(), nullptr), "Backward");
  Must(m->OptimizerStep(BenchAdamW()), "OptimizerStep");
  Must(m->ZeroGrads(), "ZeroGrads");
  Must(kernels::cuda::Synchronize(), "sync");
  double nll = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] >= 0) nll -= logprob[n];
  }
  return nll / static_cast<double>(std::max<int64_t>(ntok, 1));
}

void RunTrain(const std::string& name, const ModelConfig& config, CudaTrainModel* m,
              const TrainBenchOptions& o) {
  const int64_t B = o.train_batch, T = o.train_seq;
  std::mt19937_64 rng(11);
  for (int64_t i = 0; i < o.train_warmup; ++i) TrainStep(m, B, T, &rng);
  std::vector<double> times;
  double loss_first = 0, loss_last = 0;
  for (int64_t i = 0; i < o.train_steps; ++i) {
    const double t0 = Now();
    const double loss = TrainStep(m, B, T, &rng);
    times.push_back(Now() - t0);
    if (i == 0) loss_first = loss;
    loss_last = loss;
  }
  const double step_s = Median(times);
  const double flops = TrainStepFlops(config, B, T);
  std::printf(
      "{\"case\":\"train\",\"model\":\"%s\",\"batch\":%lld,\"seq\":%lld,\"tokens_per_s\":%.1f,"
      "\"step_ms\":%.3f,\"mfu\":%.4f,\"flops_per_step\":%.6e,\"active_nonembed_params\":%lld,"
      "\"peak_tflops\":%.1f,\"loss_first\":%.4f,\"loss_last\":%.4f,\"device_gb\":%.2f}\n",
      name.c_str(), static_cast<long long>(B), static_cast<long long>(T), B * T / step_s,
      1e3 * step_s, flops / step_s / (o.peak_tflops * 1e12), flops,
      static_cast<long long>(ActiveNonEmbeddingParams(config)), o.peak_tflops, loss_first,
      loss_last, m->device_bytes() / 1e9);
  std::fflush(stdout);
}

rollout::EngineOptions GeneratorOptions(const TrainBenchOptions& o) {
  rollout::EngineOptions e;
  e.max_batch = o.grpo_prompts * o.grpo_group;
  e.block_size = 16;
  // Every sample's worst case (prompt + new) rounded up to whole blocks.
  const int64_t per_seq = (o.grpo_prompt + o.grpo_new + e.block_size - 1) / e.block_size;
  e.max_tokens_in_flight = e.max_batch * per_seq * e.block_size;
  e.clip_to_context = true;
  return e;
}

struct GrpoTimes {
  double generate = 0, train = 0, sync = 0;
  double prefill = 0, decode = 0, sample = 0;
  int64_t tokens = 0;
};

// One GRPO step (see the file comment of train_bench.h). `gen` is replaced by the refreshed
// generator at the end.
GrpoTimes GrpoStep(CudaTrainModel* m, CausalLM<float>* host,
                   std::unique_ptr<rollout::CudaGenerator>* gen, const TrainBenchOptions& o,
                   std::mt19937_64* rng) {
  const ModelConfig& config = m->config();
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(config.vocab_size - 1));
  std::vector<rollout::GenerationRequest> requests(static_cast<size_t>(o.grpo_prompts));
  for (rollout::GenerationRequest& r : requests) {
    r.prompt.resize(static_cast<size_t>(o.grpo_prompt));
    for (int32_t& x : r.prompt) x = tok(*rng);
    r.num_samples = o.grpo_group;
    r.sampling.temperature = 1.0;
    r.stop.max_new_tokens = o.grpo_new;
    r.seed = (*rng)();
  }
  GrpoTimes out;
  Must(kernels::cuda::Synchronize(), "sync");
  double t0 = Now();
  std::vector<rollout::Completion> done =
      Must((*gen)->Generate(std::span<const rollout::GenerationRequest>(requests)),
           "CudaGenerator::Generate");
  out.generate = Now() - t0;
  out.prefill = (*gen)->stats().prefill_seconds;
  out.decode = (*gen)->stats().decode_seconds;
  out.sample = (*gen)->stats().sample_seconds;

  // Rewards (untimed): random 0/1 per sample, advantages normalized within each group.
  const int64_t S = static_cast<int64_t>(done.size());
  std::vector<double> adv(static_cast<size_t>(S), 0.0);
  std::bernoulli_distribution coin(0.5);
  for (int64_t p = 0; p < o.grpo_prompts; ++p) {
    std::vector<int64_t> members;
    for (int64_t s = 0; s < S; ++s) {
      if (done[s].request == p) members.push_back(s);
    }
    double mean = 0, var = 0;
    std::vector<double> r(members.size());
    for (double& x : r) x = coin(*rng) ? 1.0 : 0.0;
    for (double x : r) mean += x;
    mean /= std::max<size_t>(r.size(), 1);
    for (double x : r) var += (x - mean) * (x - mean);
    const double sd = std::sqrt(var / std::max<size_t>(r.size(), 1));
    for (size_t i = 0; i < members.size(); ++i) adv[members[i]] = (r[i] - mean) / (sd + 1e-4);
  }
  int64_t completion_tokens = 0, max_new = 0;
  for (const rollout::Completion& c : done) {
    completion_tokens += static_cast<int64_t>(c.tokens.size());
    max_new = std::max<int64_t>(max_new, static_cast<int64_t>(c.tokens.size()));
  }
  const int64_t P = o.grpo_prompt;
  const int64_t T = P + max_new;  // rows padded to the longest sample (all equal without EOS)
  out.tokens = S * T;

  t0 = Now();
  for (int64_t first = 0; first < S; first += o.grpo_micro) {
    const int64_t B = std::min(o.grpo_micro, S - first);
    const size_t n_rows = static_cast<size_t>(B * T);
    std::vector<int32_t> ids(n_rows, 0), targets(n_rows, -1);
    std::vector<float> logprob(n_rows), dlogprob(n_rows, 0.f);
    for (int64_t b = 0; b < B; ++b) {
      const rollout::Completion& c = done[first + b];
      const std::vector<int32_t>& prompt = requests[c.request].prompt;
      int32_t* row = ids.data() + b * T;
      std::copy(prompt.begin(), prompt.end(), row);
      std::copy(c.tokens.begin(), c.tokens.end(), row + P);
      // Position P - 1 + i predicts completion token i.
      for (size_t i = 0; i < c.tokens.size(); ++i) {
        const int64_t n = b * T + P - 1 + static_cast<int64_t>(i);
        targets[n] = c.tokens[i];
        dlogprob[n] = static_cast<float>(-adv[first + b] / std::max<int64_t>(completion_tokens, 1));
      }
    }
    Must(m->Forward(ids.data(), B, T), "GRPO Forward");
    Must(m->TokenLogProbs(targets.data(), logprob.data(), nullptr), "GRPO TokenLogProbs");
    Must(m->Backward(dlogprob.data(), nullptr), "GRPO Backward");
  }
  Must(m->OptimizerStep(BenchAdamW()), "GRPO OptimizerStep");
  Must(m->ZeroGrads(), "GRPO ZeroGrads");
  Must(kernels::cuda::Synchronize(), "sync");
  out.train = Now() - t0;

  t0 = Now();
  Must(m->DownloadParams(host), "DownloadParams");
  gen->reset();  // free the old generator's device memory first
  *gen = Must(rollout::CudaGenerator::Create(*host, GeneratorOptions(o)), "CudaGenerator::Create");
  Must(kernels::cuda::Synchronize(), "sync");
  out.sync = Now() - t0;
  return out;
}

void RunGrpo(const std::string& name, CudaTrainModel* m, CausalLM<float>* host,
             const TrainBenchOptions& o) {
  auto gen = Must(rollout::CudaGenerator::Create(*host, GeneratorOptions(o)),
                  "CudaGenerator::Create");
  std::mt19937_64 rng(23);
  for (int64_t i = 0; i < o.grpo_warmup; ++i) GrpoStep(m, host, &gen, o, &rng);
  std::vector<GrpoTimes> runs;
  std::vector<double> totals;
  for (int64_t i = 0; i < o.grpo_steps; ++i) {
    runs.push_back(GrpoStep(m, host, &gen, o, &rng));
    totals.push_back(runs.back().generate + runs.back().train + runs.back().sync);
  }
  // The step whose total is the median (its phases printed alongside).
  const double med = Median(totals);
  size_t pick = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (std::abs(totals[i] - med) < std::abs(totals[pick] - med)) pick = i;
  }
  const GrpoTimes& g = runs[pick];
  std::printf(
      "{\"case\":\"grpo\",\"model\":\"%s\",\"prompts\":%lld,\"group\":%lld,\"prompt\":%lld,"
      "\"new\":%lld,\"micro\":%lld,\"seconds\":%.4f,\"generate_s\":%.4f,\"train_s\":%.4f,"
      "\"sync_s\":%.4f,\"prefill_s\":%.4f,\"decode_s\":%.4f,\"sample_s\":%.4f,\"tokens\":%lld}\n",
      name.c_str(), static_cast<long long>(o.grpo_prompts), static_cast<long long>(o.grpo_group),
      static_cast<long long>(o.grpo_prompt), static_cast<long long>(o.grpo_new),
      static_cast<long long>(o.grpo_micro), g.generate + g.train + g.sync, g.generate, g.train,
      g.sync, g.prefill, g.decode, g.sample, static_cast<long long>(g.tokens));
  std::fflush(stdout);
}

}  // namespace

int64_t ActiveNonEmbeddingParams(const ModelConfig& c) {
  return c.NumActiveParameters() -
         c.vocab_size * c.hidden_size * (c.tie_word_embeddings ? 1 : 2);
}

double TrainStepFlops(const ModelConfig& c, int64_t B, int64_t T) {
  const double tokens = static_cast<double>(B) * static_cast<double>(T);
  const double attn = 6.0 * c.num_hidden_layers * static_cast<double>(B) * static_cast<double>(T) *
                      static_cast<double>(T) * c.num_attention_heads * c.head_dim;
  return 6.0 * static_cast<double>(ActiveNonEmbeddingParams(c)) * tokens + attn +
         6.0 * static_cast<double>(c.hidden_size) * static_cast<double>(c.vocab_size) * tokens;
}

bool ParseTrainFlag(const std::string& flag, const std::function<std::string()>& value,
                    TrainBenchOptions* o) {
  struct IntFlag {
    const char* name;
    int64_t* dst;
    bool allow_zero;
  };
  const IntFlag ints[] = {
      {"--train-batch", &o->train_batch, false}, {"--train-seq", &o->train_seq, false},
      {"--train-warmup", &o->train_warmup, true}, {"--train-steps", &o->train_steps, false},
      {"--grpo-prompts", &o->grpo_prompts, false}, {"--grpo-group", &o->grpo_group, false},
      {"--grpo-prompt", &o->grpo_prompt, false}, {"--grpo-new", &o->grpo_new, false},
      {"--grpo-micro", &o->grpo_micro, false}, {"--grpo-warmup", &o->grpo_warmup, true},
      {"--grpo-steps", &o->grpo_steps, false},
  };
  for (const IntFlag& f : ints) {
    if (flag != f.name) continue;
    const std::string s = value();
    int64_t v = 0;
    if (!absl::SimpleAtoi(s, &v) || v < 0 || (v == 0 && !f.allow_zero)) {
      Die(flag + ": not a " + (f.allow_zero ? "non-negative" : "positive") + " integer: " + s);
    }
    *f.dst = v;
    return true;
  }
  if (flag == "--peak-tflops") {
    const std::string s = value();
    if (!absl::SimpleAtod(s, &o->peak_tflops) || !(o->peak_tflops > 0)) {
      Die("--peak-tflops: bad value " + s);
    }
    return true;
  }
  return false;
}

const char* TrainFlagsHelp() {
  return "--train-batch 8, --train-seq 1024, --train-warmup 2, --train-steps 5, "
         "--peak-tflops 989, --grpo-prompts 8, --grpo-group 8, --grpo-prompt 128, "
         "--grpo-new 256, --grpo-micro 16, --grpo-warmup 1, --grpo-steps 1";
}

void RunTrainBench(const std::string& name, const ModelConfig& config,
                   const std::function<void(CausalLM<float>*)>& fill,
                   const TrainBenchOptions& o) {
  if (!o.train && !o.grpo) return;
  std::fprintf(stderr, "cuda_bench: %s: training model, %.3fB parameters (%.3fB active)...\n",
               name.c_str(), config.NumParameters() / 1e9, config.NumActiveParameters() / 1e9);
  auto host = Must(CausalLM<float>::Create(config), "model");
  fill(host.get());
  policy::CudaTrainOptions topts;
  topts.max_tokens = 1;
  if (o.train) topts.max_tokens = std::max(topts.max_tokens, o.train_batch * o.train_seq);
  if (o.grpo) {
    const int64_t rows = std::min(o.grpo_micro, o.grpo_prompts * o.grpo_group);
    topts.max_tokens = std::max(topts.max_tokens, rows * (o.grpo_prompt + o.grpo_new));
  }
  auto m = Must(CudaTrainModel::Create(*host, topts), "CudaTrainModel::Create");
  if (o.train) RunTrain(name, config, m.get(), o);
  if (o.grpo) RunGrpo(name, m.get(), host.get(), o);
}

}  // namespace rlvr::bench
