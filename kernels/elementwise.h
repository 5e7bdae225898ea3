// Element-wise CPU kernels, for float and double: loops the compiler vectorizes (-O2
// -march=native), split across the OpenMP team when the arrays are large enough to pay for it.
// Output arrays may alias an input of the same index (in-place) unless stated otherwise.
#ifndef RLVR_KERNELS_ELEMENTWISE_H_
#define RLVR_KERNELS_ELEMENTWISE_H_

#include <cstdint>

namespace rlvr::kernels {

// y[i] = a[i] + b[i], i < n.
template <typename T>
void Add(const T* a, const T* b, int64_t n, T* y);
// y[i] += alpha * x[i].
template <typename T>
void Axpy(T alpha, const T* x, int64_t n, T* y);
// y[i] = alpha * y[i].
template <typename T>
void Scale(T alpha, int64_t n, T* y);
// y[i] = value.
template <typename T>
void Fill(T value, int64_t n, T* y);

// SwiGLU: out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
template <typename T>
void SwigluForward(const T* gate, const T* up, int64_t n, T* out);
// Backward of SwigluForward given dout; dgate and dup are OVERWRITTEN (not accumulated) and may
// not alias gate/up.
template <typename T>
void SwigluBackward(const T* dout, const T* gate, const T* up, int64_t n, T* dgate, T* dup);

}  // namespace rlvr::kernels

#endif  // RLVR_KERNELS_ELEMENTWISE_H_
