// The rollout engine: batched autoregressive sampling with a paged KV cache, shared prompt
// prefixes and continuous batching.
//
// Generate() takes requests (a tokenized prompt, a number of samples G, sampling parameters,
// stop conditions, a seed) and returns one Completion per sample. How it runs:
//   - Prefill once per request: the prompt goes through the model in one call into a fresh
//     paged sequence; its last logits are kept. Each of the G samples is a Fork() of that
//     sequence (the prompt's blocks are shared; the block holding the last prompt position is
//     copied at the first divergent write, see kv_cache.h).
//   - Continuous batching: every step decodes one token for every running sample in a single
//     model call. A sample that finishes frees its blocks at once, and waiting samples (the
//     rest of the current group, then the next request's prefill) are admitted in FIFO order
//     while (a) at most `max_batch` samples run and (b) the KV blocks reserved for running
//     samples' worst case (prompt + max_new_tokens) fit in the pool of
//     `max_tokens_in_flight` positions. Reserving the worst case means no sample is ever
//     preempted; the cost is that admission is conservative.
//   - Determinism: sample s of a request draws its t-th token with the uniform
//     Rng(seed, s).Split(t).UniformDouble() (core/rng.h, counter-based), and the sampler is a
//     pure function of the logits row and that number. So a request gives the same tokens
//     whatever else is in the batch and whatever order the requests come in (up to float
//     rounding differences of batched GEMMs in the logits, which only matter at exact ties of
//     the inverse CDF).
//   - Recorded per generated token: its id, the policy logprob at temperature 1 (the "old"
//     logprob of GRPO), the logprob under the sampling distribution, and, when the backend
//     records them, the experts each MoE layer chose when the token was fed back in.
//
// Bad input (checked for every request before anything runs; InvalidArgument naming
// `request <i>` and the field): an empty prompt; a prompt of >= max_positions tokens (no room
// to generate); token ids outside the vocabulary; bad sampling parameters or stop conditions;
// a request whose single sample cannot fit in the KV pool. A max_new_tokens that runs past the
// context is clipped to max_positions - prompt length (documented truncation: counted in
// EngineStats::clipped_max_new_tokens, and the completion ends with finish reason "length"),
// unless EngineOptions::clip_to_context is false, when it is an error.
//
// Thread safety: an Engine is used by one thread at a time. The backend must outlive it.
#ifndef RLVR_ROLLOUT_ENGINE_H_
#define RLVR_ROLLOUT_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rollout/backend.h"
#include "rollout/kv_cache.h"
#include "rollout/sampler.h"
#include "rollout/stop.h"

namespace rlvr::rollout {

struct GenerationRequest {
  std::vector<int32_t> prompt;  // token ids, non-empty
  int64_t num_samples = 1;      // G >= 1
  SamplingParams sampling;
  StopConditions stop;
  uint64_t seed = 0;
};

struct Completion {
  int64_t request = 0;  // index of the request in Generate()'s input
  int64_t sample = 0;   // 0 .. num_samples-1
  std::vector<int32_t> tokens;            // generated ids (an EOS id included when it stopped)
  std::vector<float> logprobs;            // [tokens] policy logprob at temperature 1
  std::vector<float> sampling_logprobs;   // [tokens] under the sampling distribution
  // Router replay, when the backend records it: [tokens, moe_layers, K] experts chosen when each
  // generated token was fed to the model; the last token is never fed (rows of -1).
  std::vector<int32_t> experts;
  // Router replay for the prompt: [prompt tokens, moe_layers, K] from its prefill (shared by the
  // samples of a request; empty when not recorded).
  std::vector<int32_t> prompt_experts;
  FinishReason finish_reason = FinishReason::kNone;
  // With finish reason "stop": the text ends after this many bytes of the joined token bytes.
  int64_t text_end = -1;
  // max_new_tokens after clipping to the context (== the request's unless clipped).
  int64_t max_new_tokens = 0;
};

struct EngineOptions {
  int64_t max_batch = 64;                // running samples at once, >= 1
  int64_t max_tokens_in_flight = 65536;  // KV positions in the pool (sets its size), >= 1
  int64_t block_size = 16;               // positions per KV block
  bool clip_to_context = true;           // see the file comment
  absl::Status Validate() const;
};

struct EngineStats {
  int64_t requests = 0;
  int64_t completions = 0;
  int64_t prompt_tokens = 0;     // prefilled (once per request)
  int64_t generated_tokens = 0;  // sampled
  int64_t decode_steps = 0;      // batched model calls of one token per sample
  int64_t decode_rows = 0;       // sum of the batch sizes of those calls
  int64_t clipped_max_new_tokens = 0;  // requests whose max_new_tokens was clipped
  int64_t cow_copies = 0;
  int64_t peak_batch = 0;
  int64_t peak_blocks = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;   // model calls of decode steps
  double sample_seconds = 0;   // sampling and bookkeeping
};

class Engine {
 public:
  // token_bytes: raw bytes of a token id (policy::Tokenizer::TokenBytes), needed only when a
  // request has stop strings (InvalidArgument from Generate otherwise).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(DecodeBackend* backend,
                                                        const EngineOptions& options,
                                                        TokenBytesFn token_bytes = {});

  // Runs every request to completion and returns the completions ordered by (request,
  // sample). on_done, if set, is called as each completion finishes (progress reporting).
  absl::StatusOr<std::vector<Completion>> Generate(
      std::span<const GenerationRequest> requests,
      const std::function<void(const Completion&)>& on_done = {});

  // Statistics of the last Generate().
  const EngineStats& stats() const { return stats_; }
  const PagedKvCache& cache() const { return *cache_; }
  const EngineOptions& options() const { return options_; }

 private:
  Engine(DecodeBackend* backend, const EngineOptions& options, TokenBytesFn token_bytes);
  absl::Status ValidateRequest(int64_t index, const GenerationRequest& r, int64_t* max_new) const;

  DecodeBackend* backend_;
  EngineOptions options_;
  TokenBytesFn token_bytes_;
  std::unique_ptr<PagedKvCache> cache_;
  EngineStats stats_;
};

}  // namespace rlvr::rollout

#endif  // RLVR_ROLLOUT_ENGINE_H_
