// rollout_bench: decode and prefill throughput of the rollout engine on a random model of a
// preset, and the group case (G completions sharing one prompt's prefill).
//
//   rollout_bench --arch qwen3_moe --preset small --model-out DIR [--batches 1,16,64,256]
//                 [--prompt-len 16] [--new-tokens 64] [--prefill-len 512] [--prefill-prompts 4]
//                 [--group 8] [--group-reps 10] [--backend recording|decode]
//
// Writes the model to DIR (HF layout, for the PyTorch peer in torch_peer.py), a greedy
// reference DIR/greedy.json (the peer checks it generates the same tokens), and prints one JSON
// object per measurement on stdout. bench/rollout/run.py runs this and the peer side by side.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/process.h"
#include "core/rng.h"
#include "kernels/matmul.h"
#include "nlohmann/json.hpp"
#include "policy/model/checkpoint.h"
#include "policy/model/config.h"
#include "policy/model/model.h"
#include "rollout/engine.h"
#include "rollout/recording_backend.h"

namespace {

using rlvr::rollout::Completion;
using rlvr::rollout::Engine;
using rlvr::rollout::EngineOptions;
using rlvr::rollout::GenerationRequest;

std::vector<int32_t> RandomIds(rlvr::Rng& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = static_cast<int32_t>(rng.UniformInt(static_cast<uint64_t>(vocab)));
  return ids;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// CPU seconds of the whole process (all threads): under a loaded machine the wall clock
// overstates the cost, so both are reported.
double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "rollout_bench: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  rlvr::KeepFreedMemoryInProcess();
  std::string arch = "qwen3_moe", preset = "tiny", model_out, batches = "1,16,64,256";
  std::string backend_name = "recording";
  std::string dtype = "float32";  // or bfloat16: bf16 matrix products (MatmulPrecision::kBf16)
  int64_t prompt_len = 16, new_tokens = 64, prefill_len = 512, prefill_prompts = 4, group = 8;
  int64_t group_reps = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    int64_t n = 0;
    const bool num = absl::SimpleAtoi(v, &n);
    if (k == "--arch") arch = v;
    else if (k == "--preset") preset = v;
    else if (k == "--model-out") model_out = v;
    else if (k == "--batches") batches = v;
    else if (k == "--backend") backend_name = v;
    else if (k == "--dtype") dtype = v;
    else if (k == "--prompt-len" && num) prompt_len = n;
    else if (k == "--new-tokens" && num) new_tokens = n;
    else if (k == "--prefill-len" && num) prefill_len = n;
    else if (k == "--prefill-prompts" && num) prefill_prompts = n;
    else if (k == "--group" && num) group = n;
    else if (k == "--group-reps" && num && n > 0) group_reps = n;
    else {
      std::fprintf(stderr, "rollout_bench: bad argument %s %s\n", k.c_str(), v.c_str());
      return 2;
    }
  }
  if (absl::Status st = rlvr::kernels::SetMatmulPrecision(dtype); !st.ok()) return Fail(st);
  const rlvr::kernels::MatmulPrecision precision = rlvr::kernels::GetMatmulPrecision();
  auto cfg = rlvr::policy::Preset(arch, preset);
  if (!cfg.ok()) return Fail(cfg.status());
  auto model_or = rlvr::policy::CausalLM<float>::Create(*cfg);
  if (!model_or.ok()) return Fail(model_or.status());
  auto& model = **model_or;
  model.InitRandom(1, 0.02);
  const int64_t V = cfg->vocab_size;
  // What `rlvr generate` uses: RecordingBackend (router replay, paged decode attention);
  // --backend decode measures CausalLM::Decode instead.
  std::unique_ptr<rlvr::rollout::DecodeBackend> backend_owner;
  if (backend_name == "decode") {
    backend_owner = std::make_unique<rlvr::rollout::CausalLmBackend>(&model);
  } else {
    auto rb = rlvr::rollout::RecordingBackend::Create(&model);
    if (!rb.ok()) return Fail(rb.status());
    backend_owner = std::move(*rb);
  }
  rlvr::rollout::DecodeBackend& backend = *backend_owner;
  rlvr::Rng rng(42);

  auto make_engine = [&](int64_t max_batch, int64_t tokens) {
    EngineOptions o;
    o.max_batch = max_batch;
    o.max_tokens_in_flight = tokens;
    return Engine::Create(&backend, o);
  };

  if (!model_out.empty()) {
    if (absl::Status s = rlvr::policy::SaveModel(model, model_out); !s.ok()) return Fail(s);
    // Greedy reference for the peer's same-model check, in float32 whatever --dtype says (the
    // peer checks with its float32 model).
    rlvr::kernels::SetMatmulPrecision(rlvr::kernels::MatmulPrecision::kHighest);
    GenerationRequest r;
    r.prompt = RandomIds(rng, 12, V);
    r.sampling.temperature = 0;
    r.stop.max_new_tokens = 16;
    auto e = make_engine(1, 4096);
    if (!e.ok()) return Fail(e.status());
    auto out = (*e)->Generate(std::span<const GenerationRequest>(&r, 1));
    if (!out.ok()) return Fail(out.status());
    nlohmann::json j = {{"prompt", r.prompt}, {"greedy", (*out)[0].tokens}};
    std::FILE* f = std::fopen((model_out + "/greedy.json").c_str(), "w");
    if (f == nullptr) return Fail(absl::InternalError("cannot write greedy.json"));
    std::fputs(j.dump().c_str(), f);
    std::fclose(f);
    rlvr::kernels::SetMatmulPrecision(precision);
  }

  // Decode: B prompts, one sample each, new_tokens tokens each (no EOS), temperature 1.
  for (absl::string_view b : absl::StrSplit(batches, ',', absl::SkipEmpty())) {
    int64_t B = 0;
    if (!absl::SimpleAtoi(b, &B) || B < 1) {
      std::fprintf(stderr, "rollout_bench: bad batch size %s\n", std::string(b).c_str());
      return 2;
    }
    std::vector<GenerationRequest> reqs(static_cast<size_t>(B));
    for (auto& r : reqs) {
      r.prompt = RandomIds(rng, prompt_len, V);
      r.stop.max_new_tokens = new_tokens;
      r.seed = rng.NextU64();
    }
    auto e = make_engine(B, B * (prompt_len + new_tokens + 32));
    if (!e.ok()) return Fail(e.status());
    {
      // Warm-up (first-touch of buffers, OpenMP team start).
      auto w = (*e)->Generate(std::span<const GenerationRequest>(reqs.data(), 1));
      if (!w.ok()) return Fail(w.status());
    }
    const double t0 = Now(), c0 = CpuNow();
    auto out = (*e)->Generate(reqs);
    const double wall = Now() - t0, cpu = CpuNow() - c0;
    if (!out.ok()) return Fail(out.status());
    const auto& s = (*e)->stats();
    const double decode_s = wall - s.prefill_seconds;
    nlohmann::json j = {{"case", "decode"},         {"preset", preset},
                        {"batch", B},               {"tokens", s.generated_tokens - B},
                        {"seconds", decode_s},      {"model_seconds", s.decode_seconds},
                        {"cpu_seconds_with_prefill", cpu},
                        {"sample_seconds", s.sample_seconds}};
    // The first token of each sample comes from the prefill logits: count decode-step tokens.
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }

  // Prefill: prefill_prompts prompts of prefill_len tokens, one at a time.
  {
    std::vector<GenerationRequest> reqs(static_cast<size_t>(prefill_prompts));
    for (auto& r : reqs) {
      r.prompt = RandomIds(rng, prefill_len, V);
      r.stop.max_new_tokens = 1;
    }
    auto e = make_engine(1, prefill_len + 64);
    if (!e.ok()) return Fail(e.status());
    auto out = (*e)->Generate(reqs);
    if (!out.ok()) return Fail(out.status());
    const auto& s = (*e)->stats();
    nlohmann::json j = {{"case", "prefill"},
                        {"preset", preset},
                        {"tokens", s.prompt_tokens},
                        {"seconds", s.prefill_seconds}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }

  // Group: G completions of one prefill_len-token prompt, 8 new tokens each, against a single
  // completion (its prefill plus 8 decode steps). Best of --group-reps (10) each (a tiny
  // preset's case takes milliseconds).
  {
    GenerationRequest r;
    r.prompt = RandomIds(rng, prefill_len, V);
    r.stop.max_new_tokens = 8;
    r.seed = 3;
    auto e = make_engine(group, (group + 1) * (prefill_len + 64));
    if (!e.ok()) return Fail(e.status());
    double best_one = 1e30, best_group = 1e30;
    int64_t group_prompt_tokens = 0;
    // Engine time split of the best single and group runs: prefill, decode model calls, sampling.
    double one_split[3] = {0, 0, 0}, group_split[3] = {0, 0, 0};
    for (int64_t rep = 0; rep < group_reps; ++rep) {
      r.num_samples = 1;
      double t0 = Now();
      auto one = (*e)->Generate(std::span<const GenerationRequest>(&r, 1));
      if (!one.ok()) return Fail(one.status());
      if (Now() - t0 < best_one) {
        best_one = Now() - t0;
        const auto& s = (*e)->stats();
        one_split[0] = s.prefill_seconds, one_split[1] = s.decode_seconds;
        one_split[2] = s.sample_seconds;
      }
      r.num_samples = group;
      t0 = Now();
      auto g = (*e)->Generate(std::span<const GenerationRequest>(&r, 1));
      if (!g.ok()) return Fail(g.status());
      const auto& s = (*e)->stats();
      if (Now() - t0 < best_group) {
        best_group = Now() - t0;
        group_split[0] = s.prefill_seconds, group_split[1] = s.decode_seconds;
        group_split[2] = s.sample_seconds;
      }
      group_prompt_tokens = s.prompt_tokens;
    }
    nlohmann::json j = {{"case", "group"},         {"preset", preset},
                        {"group", group},          {"prompt_len", prefill_len},
                        {"single_seconds", best_one}, {"group_seconds", best_group},
                        {"group_prefilled_tokens", group_prompt_tokens},
                        {"single_prefill_decode_sample_seconds", one_split},
                        {"group_prefill_decode_sample_seconds", group_split}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}
