#include "policy/layers/rmsnorm.h"

#include "kernels/rmsnorm.h"
#include "policy/layers/common.h"

namespace rlvr::policy::layers {

template <typename T>
void RmsNormForward(const T* x, const T* weight, int64_t N, int64_t C, double eps,
                    RmsNormActivations<T>* act, T* y) {
  kernels::RmsNormForward(x, weight, N, C, eps, y, Resize(&act->rstd, N));
}

template <typename T>
void RmsNormBackward(const T* x, const T* weight, int64_t N, int64_t C,
                     const RmsNormActivations<T>& act, const T* dy, T* dx, T* dweight) {
  kernels::RmsNormBackward(dy, x, weight, act.rstd.data(), N, C, dx, dweight);
}

#define RLVR_INSTANTIATE(T)                                                                  \
  template void RmsNormForward<T>(const T*, const T*, int64_t, int64_t, double,              \
                                  RmsNormActivations<T>*, T*);                               \
  template void RmsNormBackward<T>(const T*, const T*, int64_t, int64_t,                     \
                                   const RmsNormActivations<T>&, const T*, T*, T*);
RLVR_INSTANTIATE(float)
RLVR_INSTANTIATE(double)
#undef RLVR_INSTANTIATE

}  // namespace rlvr::policy::layers
