// RoPE for the attention layers: the angle table is built once per forward from the position
// ids ([N], e.g. 0..T-1 per sequence in training, cache_length + t in decode) and passed to every
// attention layer. The kernels (kernels/rope.h) define the rotate_half convention.
#ifndef RLVR_POLICY_LAYERS_ROPE_H_
#define RLVR_POLICY_LAYERS_ROPE_H_

#include "kernels/rope.h"

namespace rlvr::policy::layers {

using kernels::BuildRopeTable;  // (positions[N], N, head_dim, rope_theta, &table)
using kernels::RopeTable;       // cos/sin [N, D/2]

}  // namespace rlvr::policy::layers

#endif  // RLVR_POLICY_LAYERS_ROPE_H_
