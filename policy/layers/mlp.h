// SwiGLU MLP (Llama/Qwen `mlp`, also one MoE expert and the shared expert):
//   y = down( silu(gate(x)) * up(x) ),  no biases.
// See common.h for the conventions.
#ifndef RLVR_POLICY_LAYERS_MLP_H_
#define RLVR_POLICY_LAYERS_MLP_H_

#include <cstdint>
#include <vector>

namespace rlvr::policy::layers {

struct MlpConfig {
  int64_t hidden = 0;        // C
  int64_t intermediate = 0;  // I
};

template <typename T>
struct MlpWeights {
  const T* gate = nullptr;  // [I, C]  gate_proj.weight
  const T* up = nullptr;    // [I, C]  up_proj.weight
  const T* down = nullptr;  // [C, I]  down_proj.weight
};

template <typename T>
struct MlpGrads {
  T* gate = nullptr;  // [I, C]
  T* up = nullptr;    // [I, C]
  T* down = nullptr;  // [C, I]
};

template <typename T>
struct MlpActivations {
  std::vector<T> gate;  // [N, I] gate(x)
  std::vector<T> up;    // [N, I] up(x)
  std::vector<T> act;   // [N, I] silu(gate) * up
};

// x, y [N, C] (y must not alias x). Writes y (does not accumulate).
template <typename T>
void MlpForward(const MlpConfig& cfg, const MlpWeights<T>& w, const T* x, int64_t N,
                MlpActivations<T>* act, T* y);

// dx [N, C] += ..., grads += ... (dx may be null to skip it).
template <typename T>
void MlpBackward(const MlpConfig& cfg, const MlpWeights<T>& w, const T* x, int64_t N,
                 const MlpActivations<T>& act, const T* dy, T* dx, const MlpGrads<T>& grads);

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_MLP_H_
