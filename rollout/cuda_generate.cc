#include "rollout/cuda_generate.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "core/status.h"
#include "rollout/generation.h"

namespace rlvr::rollout {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// One running sample, in KV slot `slot` of the GPU model.
struct Running : internal::SampleState {
  int64_t slot = -1;
  int64_t reserved = 0;  // blocks reserved for this sample's worst case
};

}  // namespace

CudaGenerator::CudaGenerator(std::unique_ptr<policy::CudaCausalLm> model,
                             const EngineOptions& options, TokenBytesFn token_bytes,
                             int64_t max_positions, bool record_experts)
    : model_(std::move(model)),
      options_(options),
      token_bytes_(std::move(token_bytes)),
      record_experts_(record_experts),
      max_positions_(max_positions),
      num_blocks_(BlocksFor(options.max_tokens_in_flight)) {}

absl::StatusOr<std::unique_ptr<CudaGenerator>> CudaGenerator::Create(
    const policy::CausalLM<float>& model, const EngineOptions& options,
    TokenBytesFn token_bytes, bool record_experts) {
  RLVR_RETURN_IF_ERROR(options.Validate(), "rollout options");
  const int64_t ctx = model.config().max_position_embeddings;
  policy::CudaKvOptions kv;
  kv.block_size = options.block_size;
  kv.num_blocks = (options.max_tokens_in_flight + options.block_size - 1) / options.block_size;
  kv.max_seqs = options.max_batch;
  kv.record_experts = record_experts;
  // A slot can hold a whole context (admission keeps the pool from overfilling).
  kv.max_blocks_per_seq = std::min(kv.num_blocks, (ctx + options.block_size - 1) /
                                                      options.block_size);
  RLVR_ASSIGN_OR_RETURN(std::unique_ptr<policy::CudaCausalLm> gpu,
                        policy::CudaCausalLm::Create(model, kv));
  return std::unique_ptr<CudaGenerator>(
      new CudaGenerator(std::move(gpu), options, std::move(token_bytes), ctx, record_experts));
}

// The engine's checks (internal::CheckRequest), with the KV need of one unshared sequence.
absl::Status CudaGenerator::ValidateRequest(int64_t index, const GenerationRequest& r,
                                            int64_t* max_new) const {
  RLVR_ASSIGN_OR_RETURN(*max_new,
                        internal::CheckRequest(index, r, max_positions_,
                                               model_->config().vocab_size,
                                               static_cast<bool>(token_bytes_),
                                               options_.clip_to_context));
  // One unshared sequence; a slot's block table must also hold it.
  const int64_t P = static_cast<int64_t>(r.prompt.size());
  const int64_t need = BlocksFor(P + *max_new);
  return internal::CheckKvNeed(
      index, need, options_.block_size,
      std::min(num_blocks_, model_->kv().capacity() / options_.block_size));
}

absl::StatusOr<std::vector<Completion>> CudaGenerator::Generate(
    std::span<const GenerationRequest> requests,
    const std::function<void(const Completion&)>& on_done) {
  stats_ = EngineStats{};
  stats_.requests = static_cast<int64_t>(requests.size());
  const int64_t R = static_cast<int64_t>(requests.size());
  std::vector<int64_t> max_new(static_cast<size_t>(R));
  // Each request's stop conditions with max_new_tokens clipped (stable addresses for the
  // samples' StopCheckers).
  std::vector<std::unique_ptr<StopConditions>> stops(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) {
    RLVR_RETURN_IF_ERROR(ValidateRequest(i, requests[i], &max_new[i]));
    if (max_new[i] != requests[i].stop.max_new_tokens) ++stats_.clipped_max_new_tokens;
    stops[i] = std::make_unique<StopConditions>(requests[i].stop);
    stops[i]->max_new_tokens = max_new[i];
  }
  const int64_t V = model_->config().vocab_size;
  const int64_t valid = model_->active_vocab();
  // Router replay (as the CPU engine records it): [tokens, moe_layers, K] per completion, a row
  // of -1 appended with each sampled token and filled by the decode step that feeds it (the
  // last token is never fed), and the prompt's rows from the sample's prefill.
  const int64_t moe_layers = record_experts_ ? model_->num_moe_layers() : 0;
  const int64_t row = moe_layers * model_->config().num_experts_per_tok;
  auto record = [&](Running& r, const TokenSample& s) {
    if (row > 0) r.out.experts.resize(r.out.experts.size() + row, -1);
    return r.Record(s);
  };
  // Slots left over by a Generate() that failed half-way are released first.
  for (int64_t s = 0; s < options_.max_batch; ++s) model_->ReleaseSequence(s);
  std::vector<int64_t> free_slots;
  for (int64_t s = options_.max_batch - 1; s >= 0; --s) free_slots.push_back(s);

  const int threads = std::max(1, omp_get_max_threads());
  std::vector<Sampler> samplers(static_cast<size_t>(threads));
  std::vector<Completion> done;
  std::vector<Running> running;
  std::vector<float> logits;
  std::vector<int32_t> ids;
  std::vector<int64_t> slots;
  int64_t next_request = 0, next_sample = 0, reserved = 0;

  auto finish = [&](Running& r) {
    model_->ReleaseSequence(r.slot);
    free_slots.push_back(r.slot);
    reserved -= r.reserved;
    stats_.generated_tokens += static_cast<int64_t>(r.out.tokens.size());
    if (on_done) on_done(r.out);
    done.push_back(std::move(r.out));
  };

  while (true) {
    // Admission (FIFO): prefill the next waiting sample into a free slot while one is free and
    // its worst case fits in the pool.
    while (!free_slots.empty() && next_request < R) {
      const GenerationRequest& req = requests[next_request];
      const int64_t P = static_cast<int64_t>(req.prompt.size());
      const int64_t need = BlocksFor(P + max_new[next_request]);
      if (reserved + need > num_blocks_) break;
      Running r;
      r.slot = free_slots.back();
      free_slots.pop_back();
      r.reserved = need;
      reserved += need;
      r.rng = Rng(req.seed, static_cast<uint64_t>(next_sample));
      r.out.request = next_request;
      r.out.sample = next_sample;
      r.out.max_new_tokens = max_new[next_request];
      r.stop = std::make_unique<StopChecker>(stops[next_request].get(), &token_bytes_);
      if (req.sampling.repetition_penalty != 1.0) r.history = req.prompt;
      logits.resize(static_cast<size_t>(V));
      auto t0 = std::chrono::steady_clock::now();
      RLVR_RETURN_IF_ERROR(model_->Prefill(r.slot, req.prompt.data(), P, logits.data()),
                           "request ", next_request, " sample ", next_sample, " prefill");
      stats_.prefill_seconds += Seconds(t0);
      stats_.prompt_tokens += P;
      if (row > 0) {
        const std::vector<int32_t>& e = model_->recorded_experts();
        if (static_cast<int64_t>(e.size()) != P * row) {
          return absl::InternalError(absl::StrCat("cuda generation: prefill recorded ", e.size(),
                                                  " expert ids, expected ", P * row));
        }
        r.out.prompt_experts = e;
      }
      stats_.peak_blocks =
          std::max(stats_.peak_blocks, num_blocks_ - model_->kv().free_blocks());
      t0 = std::chrono::steady_clock::now();
      RLVR_ASSIGN_OR_RETURN(
          TokenSample s,
          samplers[0].Sample(logits, valid, req.sampling, r.history,
                             r.rng.Split(0).UniformDouble()),
          "request ", r.out.request, " sample ", r.out.sample, " token 0");
      stats_.sample_seconds += Seconds(t0);
      if (++next_sample == req.num_samples) {
        ++next_request;
        next_sample = 0;
      }
      if (record(r, s)) {
        finish(r);
      } else {
        running.push_back(std::move(r));
      }
    }

    if (running.empty()) {
      if (next_request >= R) break;
      return absl::InternalError(absl::StrCat(
          "cuda generation: nothing runs but work is left (", reserved, " of ", num_blocks_,
          " blocks reserved)"));
    }

    // One decode step for every running sample.
    const int64_t B = static_cast<int64_t>(running.size());
    stats_.peak_batch = std::max(stats_.peak_batch, B);
    ids.resize(static_cast<size_t>(B));
    slots.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      ids[b] = running[b].pending;
      slots[b] = running[b].slot;
    }
    logits.resize(static_cast<size_t>(B * V));
    auto t0 = std::chrono::steady_clock::now();
    RLVR_RETURN_IF_ERROR(model_->DecodeStep(slots.data(), ids.data(), B, logits.data()),
                         "decode step ", stats_.decode_steps);
    stats_.decode_seconds += Seconds(t0);
    ++stats_.decode_steps;
    stats_.decode_rows += B;
    stats_.peak_blocks = std::max(stats_.peak_blocks, num_blocks_ - model_->kv().free_blocks());
    if (row > 0) {
      // The experts just chosen belong to the token fed in: each sample's last recorded one.
      const std::vector<int32_t>& e = model_->recorded_experts();
      if (static_cast<int64_t>(e.size()) != B * row) {
        return absl::InternalError(absl::StrCat("cuda generation: decode step recorded ",
                                                e.size(), " expert ids, expected ", B * row));
      }
      for (int64_t b = 0; b < B; ++b) {
        Completion& out = running[b].out;
        const int64_t t = static_cast<int64_t>(out.tokens.size()) - 1;
        std::copy(e.begin() + b * row, e.begin() + (b + 1) * row, out.experts.begin() + t * row);
      }
    }
    t0 = std::chrono::steady_clock::now();
    RLVR_ASSIGN_OR_RETURN(
        std::vector<TokenSample> sampled,
        internal::SampleRows(running, requests, logits.data(), V, valid, samplers));
    size_t keep = 0;
    for (int64_t b = 0; b < B; ++b) {
      Running& r = running[b];
      if (record(r, sampled[b])) {
        finish(r);
      } else {
        if (static_cast<int64_t>(keep) != b) running[keep] = std::move(r);
        ++keep;
      }
    }
    running.resize(keep);
    stats_.sample_seconds += Seconds(t0);
  }
  stats_.completions = static_cast<int64_t>(done.size());
  std::sort(done.begin(), done.end(), [](const Completion& a, const Completion& b) {
    return a.request != b.request ? a.request < b.request : a.sample < b.sample;
  });
  return done;
}

}  // namespace rlvr::rollout
