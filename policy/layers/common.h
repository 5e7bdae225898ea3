// Conventions shared by every layer in policy/layers (read this first).
//
// - A layer is a Config (plain sizes and flags), a Weights struct of const pointers, a Grads
//   struct of mutable pointers with the same layout, and an Activations struct that the forward
//   fills and the backward reads. Shapes use the letters of kernels/tensor.h.
// - Ownership: the caller owns weights, grads, inputs and outputs (raw pointers, row-major,
//   contiguous). Activations own their std::vector buffers; they are resized by the forward and
//   reused across steps, so keep one Activations per layer instance for the model's lifetime.
// - The backward takes the SAME input pointer(s) the forward read, unchanged, plus the
//   Activations that forward filled (the forward's input is not copied).
// - Every gradient output ACCUMULATES (+=): input gradients (dx) and parameter gradients alike.
//   Zero them before the first backward of a step. A null gradient pointer skips that gradient
//   where the header says so.
// - Element type T is float (production CPU path) or double (finite-difference tests); both are
//   instantiated. Forwards validate the config and return InvalidArgument naming the field; the
//   backward assumes the forward succeeded.
// - Thread safety: a call uses the OpenMP team internally; distinct layers with distinct
//   Activations may not run concurrently (they share the OpenMP team), so call them in sequence.
#ifndef RLVR_POLICY_LAYERS_COMMON_H_
#define RLVR_POLICY_LAYERS_COMMON_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlvr::policy::layers {

// Resizes `v` to n elements (without shrinking capacity) and returns its data.
template <typename T>
T* Resize(std::vector<T>* v, int64_t n) {
  v->resize(static_cast<size_t>(n));
  return v->data();
}

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_COMMON_H_
