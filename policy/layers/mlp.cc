#include "policy/layers/mlp.h"

#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "policy/layers/common.h"

namespace rlvr::policy::layers {

template <typename T>
void MlpForward(const MlpConfig& cfg, const MlpWeights<T>& w, const T* x, int64_t N,
                MlpActivations<T>* act, T* y) {
  const int64_t C = cfg.hidden, I = cfg.intermediate;
  T* g = Resize(&act->gate, N * I);
  T* u = Resize(&act->up, N * I);
  T* a = Resize(&act->act, N * I);
  kernels::LinearForward<T>(x, w.gate, nullptr, N, C, I, g);
  kernels::LinearForward<T>(x, w.up, nullptr, N, C, I, u);
  kernels::SwigluForward<T>(g, u, N * I, a);
  kernels::LinearForward<T>(a, w.down, nullptr, N, I, C, y);
}

template <typename T>
void MlpBackward(const MlpConfig& cfg, const MlpWeights<T>& w, const T* x, int64_t N,
                 const MlpActivations<T>& act, const T* dy, T* dx, const MlpGrads<T>& grads) {
  const int64_t C = cfg.hidden, I = cfg.intermediate;
  std::vector<T> da(N * I, T(0)), dg(N * I), du(N * I);
  kernels::LinearBackward<T>(dy, act.act.data(), w.down, N, I, C, da.data(), grads.down,
                             nullptr);
  kernels::SwigluBackward<T>(da.data(), act.gate.data(), act.up.data(), N * I, dg.data(),
                             du.data());
  kernels::LinearBackward<T>(dg.data(), x, w.gate, N, C, I, dx, grads.gate, nullptr);
  kernels::LinearBackward<T>(du.data(), x, w.up, N, C, I, dx, grads.up, nullptr);
}

#define RLVR_INSTANTIATE(T)                                                                  \
  template void MlpForward<T>(const MlpConfig&, const MlpWeights<T>&, const T*, int64_t,     \
                              MlpActivations<T>*, T*);                                       \
  template void MlpBackward<T>(const MlpConfig&, const MlpWeights<T>&, const T*, int64_t,    \
                               const MlpActivations<T>&, const T*, T*, const MlpGrads<T>&);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::policy::layers
