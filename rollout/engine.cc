#include "rollout/engine.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <numeric>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "core/status.h"
#include "rollout/generation.h"

namespace rlvr::rollout {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// A request whose prompt has been prefilled and whose samples are being admitted.
struct Group {
  int64_t request = 0;
  int64_t prompt_len = 0;
  int64_t max_new = 0;
  SeqId parent = -1;        // the prefilled prompt; freed once every sample has forked it
  std::vector<float> logits;  // [V] next-token logits after the prompt
  int64_t next_sample = 0;
  int64_t alive = 0;        // samples admitted and not finished
  int64_t reserved = 0;     // blocks reserved for the prompt
  // The request's stop conditions with max_new_tokens clipped to the context (stable address:
  // the samples' StopCheckers point to it).
  std::unique_ptr<StopConditions> stop;
  std::vector<int32_t> prompt_experts;  // [P, moe_layers, K] when recorded
};

// One running sample (its pending token is fed at position length(seq)).
struct Running : internal::SampleState {
  int64_t group = 0;
  SeqId seq = -1;
  int64_t reserved = 0;  // blocks reserved for this sample
};

}  // namespace

absl::Status EngineOptions::Validate() const {
  if (max_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_batch: ", max_batch, " must be >= 1"));
  }
  if (block_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("block_size: ", block_size, " must be >= 1"));
  }
  if (max_tokens_in_flight < block_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_tokens_in_flight: ", max_tokens_in_flight, " is below one block (", block_size, ")"));
  }
  return absl::OkStatus();
}

Engine::Engine(DecodeBackend* backend, const EngineOptions& options, TokenBytesFn token_bytes)
    : backend_(backend), options_(options), token_bytes_(std::move(token_bytes)) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(DecodeBackend* backend,
                                                       const EngineOptions& options,
                                                       TokenBytesFn token_bytes) {
  RLVR_RETURN_IF_ERROR(options.Validate(), "rollout engine options");
  std::unique_ptr<Engine> e(new Engine(backend, options, std::move(token_bytes)));
  KvCacheConfig kc;
  kc.num_layers = backend->num_layers();
  kc.row_elems = backend->kv_row_elems();
  kc.block_size = options.block_size;
  kc.num_blocks = kc.BlocksFor(options.max_tokens_in_flight);
  RLVR_ASSIGN_OR_RETURN(e->cache_, PagedKvCache::Create(kc), "rollout engine");
  return e;
}

absl::Status Engine::ValidateRequest(int64_t index, const GenerationRequest& r,
                                     int64_t* max_new) const {
  RLVR_ASSIGN_OR_RETURN(*max_new,
                        internal::CheckRequest(index, r, backend_->max_positions(),
                                               backend_->vocab_size(),
                                               static_cast<bool>(token_bytes_),
                                               options_.clip_to_context));
  // Blocks of one sample: the prompt's (shared with its siblings) plus its own from the block
  // holding the last prompt position on.
  const int64_t P = static_cast<int64_t>(r.prompt.size());
  const KvCacheConfig& kc = cache_->config();
  const int64_t need = kc.BlocksFor(P) + kc.BlocksFor(P + *max_new) - P / kc.block_size;
  return internal::CheckKvNeed(index, need, kc.block_size, kc.num_blocks);
}

absl::StatusOr<std::vector<Completion>> Engine::Generate(
    std::span<const GenerationRequest> requests,
    const std::function<void(const Completion&)>& on_done) {
  stats_ = EngineStats{};
  stats_.requests = static_cast<int64_t>(requests.size());
  const int64_t R = static_cast<int64_t>(requests.size());
  std::vector<int64_t> max_new(static_cast<size_t>(R));
  for (int64_t i = 0; i < R; ++i) {
    RLVR_RETURN_IF_ERROR(ValidateRequest(i, requests[i], &max_new[i]));
    if (max_new[i] != requests[i].stop.max_new_tokens) ++stats_.clipped_max_new_tokens;
  }
  if (cache_->live_sequences() != 0) {
    // A previous Generate() failed half-way: start from an empty pool.
    RLVR_ASSIGN_OR_RETURN(cache_, PagedKvCache::Create(cache_->config()), "rollout engine");
  }

  const KvCacheConfig& kc = cache_->config();
  const int64_t V = backend_->vocab_size();
  const int64_t valid = backend_->valid_vocab();
  const int64_t L = backend_->num_layers();
  const int64_t moe_layers = backend_->num_moe_layers();
  const int64_t K = backend_->experts_per_token();
  const int64_t total_blocks = kc.num_blocks;
  const int64_t cow_before = cache_->cow_copies();

  std::vector<Completion> done;
  std::vector<Group> groups;
  groups.reserve(static_cast<size_t>(R));
  std::deque<int64_t> admitting;  // groups with samples left to admit, FIFO
  std::vector<Running> running;
  int64_t next_request = 0;
  int64_t reserved = 0;

  const int threads = std::max(1, omp_get_max_threads());
  std::vector<Sampler> samplers(static_cast<size_t>(threads));
  std::vector<float> logits;
  std::vector<int32_t> ids, positions;
  std::vector<SeqId> seqs;
  std::vector<kernels::KvCacheView<float>> views;
  std::vector<kernels::KvCacheView<float>> prefill_views;

  auto sample_need = [&](const Group& g) {
    return kc.BlocksFor(g.prompt_len + g.max_new) - g.prompt_len / kc.block_size;
  };

  // Appends a sampled token (and a row of experts, filled after the next decode step) to r's
  // record; returns true when r is finished.
  auto record = [&](Running& r, const TokenSample& s) {
    if (moe_layers > 0) r.out.experts.resize(r.out.experts.size() + moe_layers * K, -1);
    return r.Record(s);
  };

  auto finish = [&](Running& r) -> absl::Status {
    RLVR_RETURN_IF_ERROR(cache_->Free(r.seq), "finishing a sample");
    reserved -= r.reserved;
    Group& g = groups[r.group];
    if (--g.alive == 0 && g.next_sample == requests[g.request].num_samples) {
      reserved -= g.reserved;
      g.reserved = 0;
    }
    stats_.generated_tokens += static_cast<int64_t>(r.out.tokens.size());
    if (on_done) on_done(r.out);
    done.push_back(std::move(r.out));
    return absl::OkStatus();
  };

  while (true) {
    // Admission: samples of the front group, then the next request's prefill.
    while (static_cast<int64_t>(running.size()) < options_.max_batch) {
      if (!admitting.empty()) {
        Group& g = groups[admitting.front()];
        const GenerationRequest& req = requests[g.request];
        const int64_t need = sample_need(g);
        if (reserved + need > total_blocks) break;
        Running r;
        r.group = admitting.front();
        RLVR_ASSIGN_OR_RETURN(r.seq, cache_->Fork(g.parent), "admitting a sample");
        r.reserved = need;
        reserved += need;
        r.rng = Rng(req.seed, static_cast<uint64_t>(g.next_sample));
        r.out.request = g.request;
        r.out.sample = g.next_sample;
        r.out.max_new_tokens = g.max_new;
        r.out.prompt_experts = g.prompt_experts;
        r.stop = std::make_unique<StopChecker>(g.stop.get(), &token_bytes_);
        if (req.sampling.repetition_penalty != 1.0) r.history = req.prompt;
        ++g.next_sample;
        ++g.alive;
        if (g.next_sample == req.num_samples) {
          RLVR_RETURN_IF_ERROR(cache_->Free(g.parent), "releasing a prefilled prompt");
          g.parent = -1;
          admitting.pop_front();
        }
        const auto t0 = std::chrono::steady_clock::now();
        RLVR_ASSIGN_OR_RETURN(
            TokenSample s,
            samplers[0].Sample(g.logits, valid, req.sampling, r.history,
                               r.rng.Split(0).UniformDouble()),
            "request ", r.out.request, " sample ", r.out.sample, " token 0");
        stats_.sample_seconds += Seconds(t0);
        if (record(r, s)) {
          RLVR_RETURN_IF_ERROR(finish(r));
        } else {
          running.push_back(std::move(r));
        }
        continue;
      }
      if (next_request >= R) break;
      const GenerationRequest& req = requests[next_request];
      Group g;
      g.request = next_request;
      g.prompt_len = static_cast<int64_t>(req.prompt.size());
      g.max_new = max_new[next_request];
      g.stop = std::make_unique<StopConditions>(req.stop);
      g.stop->max_new_tokens = g.max_new;
      g.reserved = kc.BlocksFor(g.prompt_len);
      if (reserved + g.reserved + sample_need(g) > total_blocks) break;
      reserved += g.reserved;
      const auto t0 = std::chrono::steady_clock::now();
      g.parent = cache_->NewSequence();
      RLVR_RETURN_IF_ERROR(cache_->Append(g.parent, g.prompt_len), "request ", next_request,
                           " prefill");
      positions.resize(static_cast<size_t>(g.prompt_len));
      std::iota(positions.begin(), positions.end(), 0);
      prefill_views.clear();
      const SeqId one[1] = {g.parent};
      cache_->BatchViews(one, &prefill_views);
      g.logits.resize(static_cast<size_t>(V));
      RLVR_RETURN_IF_ERROR(backend_->Run(req.prompt.data(), positions.data(), 1, g.prompt_len,
                                         prefill_views, g.logits.data()),
                           "request ", next_request, " prefill");
      stats_.prefill_seconds += Seconds(t0);
      if (moe_layers > 0) {
        g.prompt_experts.assign(static_cast<size_t>(g.prompt_len * moe_layers * K), -1);
        for (int64_t m = 0; m < moe_layers; ++m) {
          const int32_t* e = backend_->ChosenExperts(m);
          if (e == nullptr) continue;
          for (int64_t t = 0; t < g.prompt_len; ++t) {
            std::copy(e + t * K, e + (t + 1) * K,
                      g.prompt_experts.begin() + (t * moe_layers + m) * K);
          }
        }
      }
      stats_.prompt_tokens += g.prompt_len;
      groups.push_back(std::move(g));
      admitting.push_back(next_request);
      ++next_request;
      stats_.peak_blocks = std::max(stats_.peak_blocks, cache_->used_blocks());
    }

    if (running.empty()) {
      if (admitting.empty() && next_request >= R) break;
      return absl::InternalError(absl::StrCat(
          "rollout engine: nothing runs but work is left (", reserved, " of ", total_blocks,
          " blocks reserved)"));
    }

    // One decode step for every running sample.
    const int64_t B = static_cast<int64_t>(running.size());
    stats_.peak_batch = std::max(stats_.peak_batch, B);
    ids.resize(static_cast<size_t>(B));
    positions.resize(static_cast<size_t>(B));
    seqs.resize(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) {
      Running& r = running[b];
      RLVR_RETURN_IF_ERROR(cache_->Append(r.seq, 1), "request ", r.out.request, " sample ",
                           r.out.sample);
      ids[b] = r.pending;
      positions[b] = static_cast<int32_t>(cache_->length(r.seq) - 1);
      seqs[b] = r.seq;
    }
    stats_.peak_blocks = std::max(stats_.peak_blocks, cache_->used_blocks());
    views.clear();
    cache_->BatchViews(seqs, &views);
    logits.resize(static_cast<size_t>(B * V));
    auto t0 = std::chrono::steady_clock::now();
    RLVR_RETURN_IF_ERROR(backend_->Run(ids.data(), positions.data(), B, 1, views, logits.data()),
                         "decode step ", stats_.decode_steps);
    stats_.decode_seconds += Seconds(t0);
    ++stats_.decode_steps;
    stats_.decode_rows += B;
    t0 = std::chrono::steady_clock::now();
    if (moe_layers > 0) {
      // The experts just chosen belong to the token fed in: the last recorded one.
      for (int64_t m = 0; m < moe_layers; ++m) {
        const int32_t* e = backend_->ChosenExperts(m);
        if (e == nullptr) continue;
        for (int64_t b = 0; b < B; ++b) {
          Completion& out = running[b].out;
          const int64_t row = static_cast<int64_t>(out.tokens.size()) - 1;
          std::copy(e + b * K, e + (b + 1) * K,
                    out.experts.begin() + (row * moe_layers + m) * K);
        }
      }
    }
    RLVR_ASSIGN_OR_RETURN(
        std::vector<TokenSample> sampled,
        internal::SampleRows(running, requests, logits.data(), V, valid, samplers));
    size_t keep = 0;
    for (int64_t b = 0; b < B; ++b) {
      Running& r = running[b];
      if (record(r, sampled[b])) {
        RLVR_RETURN_IF_ERROR(finish(r));
      } else {
        if (static_cast<int64_t>(keep) != b) running[keep] = std::move(r);
        ++keep;
      }
    }
    running.resize(keep);
    stats_.sample_seconds += Seconds(t0);
  }
  (void)L;
  stats_.cow_copies = cache_->cow_copies() - cow_before;
  stats_.completions = static_cast<int64_t>(done.size());
  std::sort(done.begin(), done.end(), [](const Completion& a, const Completion& b) {
    return a.request != b.request ? a.request < b.request : a.sample < b.sample;
  });
  return done;
}

}  // namespace rlvr::rollout
