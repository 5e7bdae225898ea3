// Mixture-of-Experts feed-forward block (Qwen2-MoE / Qwen3-MoE `mlp`, DeepSeek-V3 `mlp`).
//
//   logits = x Wr^T                                    [N, E] router, no bias
//   scoring kSoftmax: s = softmax(logits)              (Qwen-MoE)
//   scoring kSigmoid: s = sigmoid(logits)              (DeepSeek-V3)
//   selection: the top K of s + correction_bias (bias only for choosing, never in the weights;
//     null bias = 0), optionally group-limited: experts split into n_group groups, a group's
//     score is the sum of its top-2 biased scores, only the best topk_group groups compete.
//     Or forced: given expert ids [N, K] (router replay), only the weights are recomputed; the
//     backward is the same, so the router still gets gradients through the replayed experts'
//     weights w_k = s[e_k] (and the aux loss).
//   weights: w_k = s[e_k]; if norm_topk_prob, w_k /= sum_k s[e_k] (+1e-20 with sigmoid, as
//     DeepSeek); then w_k *= routed_scaling_factor.
//   y = sum_k w_k * Expert_{e_k}(x)                    experts are SwiGLU MLPs of size I
//     + shared(x)                                      optional shared expert (size Is), times
//       sigmoid(x . shared_gate) when shared_gate       (Qwen2-MoE); DeepSeek's n_shared
//                                                        always-on experts are one MLP of size
//                                                        n_shared * I: pass that as Is.
// Dispatch: tokens are grouped by expert, each expert runs its GEMMs over its tokens only, and
// results are combined with the routing weights.
//
// Load-balancing auxiliary loss (Switch / HF `load_balancing_loss_func`, no attention mask): over
// all MoE layers' tokens together, with p = softmax(logits) (whatever the scoring),
//   aux = E * sum_e f_e * P_e,  f_e = (#assignments to e) / Ntot,  P_e = sum p[:, e] / Ntot
// where Ntot = tokens x layers. Each layer's forward returns its counts and probability sums
// (MoeActivations::expert_count, prob_sum); LoadBalancingLoss combines the layers and returns
// per-expert coefficients g_e = dloss * E * f_e / Ntot, which each layer's backward adds as
// d(aux)/d p[n, e] for every token (the counts are not differentiable). The model multiplies by
// router_aux_loss_coef through dloss. With forced experts, f counts the forced choices.
// See common.h for the conventions.
#ifndef RLVR_POLICY_LAYERS_MOE_H_
#define RLVR_POLICY_LAYERS_MOE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "policy/layers/mlp.h"

namespace rlvr::policy::layers {

enum class MoeScoring { kSoftmax, kSigmoid };

struct MoeConfig {
  int64_t hidden = 0;        // C
  int64_t experts = 0;       // E
  int64_t top_k = 0;         // K <= E
  int64_t intermediate = 0;  // I, per routed expert (moe_intermediate_size)
  MoeScoring scoring = MoeScoring::kSoftmax;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  int64_t n_group = 1;     // DeepSeek group-limited routing; 1 = off. E % n_group == 0.
  int64_t topk_group = 1;  // groups kept (<= n_group); ignored when n_group == 1
  int64_t shared_intermediate = 0;  // Is; 0 = no shared expert
  bool shared_gate = false;         // Qwen2-MoE shared_expert_gate (needs Is > 0)
};

template <typename T>
struct MoeWeights {
  const T* router = nullptr;           // [E, C]  gate.weight
  const T* correction_bias = nullptr;  // [E]     e_score_correction_bias, or null
  const T* gate = nullptr;             // [E, I, C] experts.{e}.gate_proj.weight, stacked
  const T* up = nullptr;               // [E, I, C] experts.{e}.up_proj.weight
  const T* down = nullptr;             // [E, C, I] experts.{e}.down_proj.weight
  MlpWeights<T> shared;                // [Is, C], [Is, C], [C, Is] if Is > 0
  const T* shared_gate = nullptr;      // [1, C] shared_expert_gate.weight if cfg.shared_gate
};

// Same layout as MoeWeights (no gradient for the correction bias: it is not trained by SGD).
template <typename T>
struct MoeGrads {
  T* router = nullptr;
  T* gate = nullptr;
  T* up = nullptr;
  T* down = nullptr;
  MlpGrads<T> shared;
  T* shared_gate = nullptr;
};

template <typename T>
struct MoeActivations {
  int64_t tokens = 0;                  // N of the last forward
  std::vector<T> logits;               // [N, E] router logits
  std::vector<T> scores;               // [N, E] softmax or sigmoid of logits
  std::vector<T> probs;                // [N, E] softmax(logits), for the aux loss
  std::vector<int32_t> topk_experts;   // [N, K] chosen experts, in selection order
  std::vector<T> topk_weights;         // [N, K] combine weights (after norm and scaling)
  // Dispatch: assignments sorted by expert. Assignment a = n*K + k.
  std::vector<int64_t> expert_offset;  // [E+1] start of each expert's run in `order`
  std::vector<int64_t> order;          // [N*K] assignment ids grouped by expert
  std::vector<T> h_gate;               // [N*K, I] per assignment, in `order` order
  std::vector<T> h_up;                 // [N*K, I]
  std::vector<T> h_act;                // [N*K, I]
  std::vector<T> expert_out;           // [N*K, C] expert output before weighting
  MlpActivations<T> shared;            // if Is > 0
  std::vector<T> shared_out;           // [N, C] shared MLP output before its gate
  std::vector<T> shared_gate_logit;    // [N] if shared_gate
  // Load statistics of the last forward (also the aux-loss inputs).
  std::vector<int64_t> expert_count;   // [E] assignments per expert
  std::vector<double> prob_sum;        // [E] sum over tokens of softmax(logits)
};

// x, y [N, C] (y written, must not alias x). forced_experts: null, or [N, K] expert ids to use
// instead of the router's choice (router replay); a token whose row is all -1 is routed by the
// router (partial replay: tokens the rollout did not record). InvalidArgument if an id is out of
// range or repeated within a token. InvalidArgument naming the field for a bad config or
// missing weight.
template <typename T>
absl::Status MoeForward(const MoeConfig& cfg, const MoeWeights<T>& w, const T* x, int64_t N,
                        const int32_t* forced_experts, MoeActivations<T>* act, T* y);

// dx [N, C] += ..., grads += .... aux_coef: null, or the [E] coefficients LoadBalancingLoss
// returned (adds the aux loss's gradient to the router).
template <typename T>
void MoeBackward(const MoeConfig& cfg, const MoeWeights<T>& w, const T* x, int64_t N,
                 const MoeActivations<T>& act, const T* dy, const double* aux_coef, T* dx,
                 const MoeGrads<T>& grads);

struct LoadBalancingResult {
  double loss = 0;          // E * sum_e f_e P_e
  std::vector<double> coef;  // [E] g_e = dloss * E * f_e / Ntot, for every layer's backward
};

// Combines the per-layer statistics (each expert_count/prob_sum of length E, over `tokens` rows
// per layer) into the aux loss and its gradient coefficients. InvalidArgument if the spans
// differ in length, are empty, or tokens <= 0.
absl::StatusOr<LoadBalancingResult> LoadBalancingLoss(
    std::span<const std::vector<int64_t>* const> expert_counts,
    std::span<const std::vector<double>* const> prob_sums, int64_t tokens, double dloss);

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_MOE_H_
