// rlvr side of the training-step benchmark (bench/train_step/run.sh runs it next to PyTorch).
//
// Builds a preset model with random weights, saves it (so the PyTorch side trains the very same
// model), then times full training steps on a fixed random batch: forward, the chosen-token
// logprobs (fused log-softmax), backward of the mean negative logprob plus the MoE aux loss,
// and an AdamW update with gradient clipping. Prints one JSON line:
//   {"tokens_per_s": ..., "step_ms": ..., "peak_rss_mb": ..., ...}
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/process.h"
#include "kernels/matmul.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "policy/optim/adamw.h"

namespace {

double PeakRssMb() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

int Run(int argc, char** argv) {
  CLI::App app("rlvr training-step benchmark");
  std::string arch = "qwen3_moe", preset = "small", save_dir;
  int64_t batch = 8, seq = 256, steps = 5, warmup = 1, vocab = 3008;
  app.add_option("--arch", arch);
  app.add_option("--preset", preset);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--steps", steps);
  app.add_option("--warmup", warmup);
  app.add_option("--vocab", vocab, "vocabulary size (the built-in tokenizer's, padded)");
  std::string dtype = "bfloat16";
  app.add_option("--dtype", dtype,
                 "float32, or bfloat16 (matrix products in bf16, fp32 weights and optimizer)");
  app.add_option("--save", save_dir, "write the initial model here (for the PyTorch side)");
  CLI11_PARSE(app, argc, argv);

  if (absl::Status st = rlvr::kernels::SetMatmulPrecision(dtype); !st.ok()) {
    std::fprintf(stderr, "--dtype: %s\n", st.ToString().c_str());
    return 1;
  }
  auto config = rlvr::policy::Preset(arch, preset);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  config->vocab_size = vocab;
  config->eos_token_ids = {0};
  auto model_or = rlvr::policy::CausalLM<float>::Create(*config);
  if (!model_or.ok()) {
    std::fprintf(stderr, "%s\n", model_or.status().ToString().c_str());
    return 1;
  }
  rlvr::policy::CausalLM<float>& model = **model_or;
  model.InitRandom(1234, 0.02);
  std::vector<rlvr::policy::OptimParam> params;
  for (const rlvr::policy::ParamInfo& p : model.params()) {
    if (!p.trainable) continue;
    params.push_back({.name = p.name,
                      .data = model.data(p),
                      .grad = model.grad(p),
                      .numel = p.numel,
                      .decay = p.decay});
  }
  rlvr::policy::AdamWConfig oc;
  oc.lr = 1e-4;
  oc.weight_decay = 0.01;
  oc.max_grad_norm = 1.0;
  auto opt = rlvr::policy::AdamW::Create(oc, std::move(params));
  if (!opt.ok()) {
    std::fprintf(stderr, "%s\n", opt.status().ToString().c_str());
    return 1;
  }

  const int64_t N = batch * seq;
  std::mt19937 rng(42);
  std::vector<int32_t> ids(N), targets(N);
  for (auto& x : ids) x = static_cast<int32_t>(rng() % vocab);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < seq; ++t) {
      targets[b * seq + t] = t + 1 < seq ? ids[b * seq + t + 1] : -1;
    }
  }
  if (!save_dir.empty()) {
    // The model and the batch, so the PyTorch side trains the very same thing.
    absl::Status s = rlvr::policy::SaveModel(model, save_dir);
    if (s.ok()) {
      s = rlvr::WriteFileAtomically(save_dir + "/bench_batch.json",
                                    nlohmann::json({{"batch", batch}, {"seq", seq}, {"ids", ids}})
                                        .dump());
    }
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  const int64_t counted = batch * (seq - 1);
  std::vector<float> lp(N), dlp(N, -1.0f / static_cast<float>(counted));
  const double aux_coef = config->router_aux_loss_coef;
  double best_ms = 1e300, total_ms = 0, loss = 0;
  for (int64_t s = 0; s < warmup + steps; ++s) {
    auto t0 = std::chrono::steady_clock::now();
    absl::Status st = model.Forward(ids.data(), batch, seq);
    if (st.ok()) st = model.TokenLogProbs(targets.data(), lp.data(), nullptr);
    model.ZeroGrads();
    if (st.ok()) st = model.Backward(dlp.data(), nullptr, aux_coef);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    opt->Step();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    loss = 0;
    for (int64_t n = 0; n < N; ++n) loss -= lp[n];
    loss = loss / static_cast<double>(counted) + aux_coef * model.aux_loss();
    if (s >= warmup) {
      best_ms = std::min(best_ms, ms);
      total_ms += ms;
    }
    std::fprintf(stderr, "rlvr step %lld: %.1f ms, loss %.4f\n", static_cast<long long>(s), ms,
                 loss);
  }
  const double mean_ms = total_ms / static_cast<double>(steps);
  nlohmann::json out = {{"impl", absl::StrCat("rlvr ", dtype)},
                        {"params", config->NumParameters()},
                        {"tokens", N},
                        {"step_ms", mean_ms},
                        {"best_step_ms", best_ms},
                        {"tokens_per_s", static_cast<double>(N) / (mean_ms / 1000.0)},
                        {"peak_rss_mb", PeakRssMb()},
                        {"final_loss", loss}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  rlvr::KeepFreedMemoryInProcess();
  return Run(argc, argv);
}
