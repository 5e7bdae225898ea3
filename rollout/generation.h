// What every generator of the rollout folder shares (Engine on the CPU, CudaGenerator on the
// GPU): the checks of a request, the per-sample record of sampled tokens, and the sampling of
// one token for every running sample. Both generators therefore accept and refuse the same
// requests with the same messages, draw the same tokens from the same logits and seeds
// (sample s of a request uses Rng(seed, s).Split(t) for its t-th token), and stop the same way.
#ifndef RLVR_ROLLOUT_GENERATION_H_
#define RLVR_ROLLOUT_GENERATION_H_

#include <omp.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "core/status.h"
#include "rollout/engine.h"
#include "rollout/sampler.h"
#include "rollout/stop.h"

namespace rlvr::rollout::internal {

// The checks of request `index` that do not depend on the KV pool: a non-empty prompt below
// the context `ctx`, ids in [0, vocab), n >= 1, valid sampling and stop parameters, stop strings
// only with token bytes. Returns max_new_tokens, clipped to the context when clip_to_context
// (InvalidArgument naming max_new_tokens otherwise). Messages start with "request <index>: ".
absl::StatusOr<int64_t> CheckRequest(int64_t index, const GenerationRequest& r, int64_t ctx,
                                     int64_t vocab, bool have_token_bytes, bool clip_to_context);

// InvalidArgument if one sample of request `index` needs more KV blocks than the pool has.
absl::Status CheckKvNeed(int64_t index, int64_t need_blocks, int64_t block_size,
                         int64_t pool_blocks);

// One sample being generated.
struct SampleState {
  int32_t pending = -1;  // last sampled token, fed at the next decode step
  Rng rng{0};
  std::unique_ptr<StopChecker> stop;
  Completion out;
  std::vector<int32_t> history;  // prompt + generated (only with a repetition penalty)

  // Appends a sampled token (and its logprobs) to `out`; true when the sample is finished
  // (out.finish_reason and out.text_end set), else the token becomes `pending`.
  bool Record(const TokenSample& s);
};

// The next token of every running sample: row b of logits [B, V] belongs to rows[b] (B =
// rows.size(); any type deriving from SampleState). Rows are sampled in parallel when B * V
// pays for it; samplers has one Sampler per OpenMP thread. Errors name request, sample, token.
template <typename Row>
absl::StatusOr<std::vector<TokenSample>> SampleRows(std::vector<Row>& rows,
                                                    std::span<const GenerationRequest> requests,
                                                    const float* logits, int64_t V,
                                                    int64_t valid,
                                                    std::vector<Sampler>& samplers) {
  const int64_t B = static_cast<int64_t>(rows.size());
  std::vector<TokenSample> sampled(static_cast<size_t>(B));
  std::vector<absl::Status> row_status(static_cast<size_t>(B));
#pragma omp parallel for schedule(dynamic, 4) if (B >= 2 && B * V >= (1 << 16))
  for (int64_t b = 0; b < B; ++b) {
    SampleState& r = rows[b];
    const GenerationRequest& req = requests[r.out.request];
    const uint64_t t = r.out.tokens.size();
    absl::StatusOr<TokenSample> s = samplers[omp_get_thread_num()].Sample(
        std::span<const float>(logits + b * V, static_cast<size_t>(V)), valid, req.sampling,
        r.history, r.rng.Split(t).UniformDouble());
    if (s.ok()) {
      sampled[b] = *s;
    } else {
      row_status[b] = Annotate(s.status(), absl::StrCat("request ", r.out.request, " sample ",
                                                        r.out.sample, " token ", t));
    }
  }
  for (const absl::Status& st : row_status) RLVR_RETURN_IF_ERROR(st);
  return sampled;
}

}  // namespace rlvr::rollout::internal

#endif  // RLVR_ROLLOUT_GENERATION_H_
