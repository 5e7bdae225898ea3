// Deterministic, splittable random numbers: Philox4x32-10 (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC'11), the counter-based generator used by cuRAND and PyTorch.
//
// A Philox output block is a pure function of a 64-bit key and a 128-bit counter, so streams are
// cheap to create and independent: Rng(seed, stream) uses key = seed and counter
// (position, stream), where position counts 128-bit blocks. Split(id) derives a child generator
// whose key mixes the parent's key, stream and `id` (SplitMix64), so per-request or per-worker
// streams do not depend on how many numbers anybody else drew. The same seed and stream always
// give the same sequence, on every platform. An Rng object is not thread-safe; give each thread
// its own (Split() is the way).
#ifndef RLVR_CORE_RNG_H_
#define RLVR_CORE_RNG_H_

#include <array>
#include <cstdint>

namespace rlvr {

// One Philox4x32-10 block: the raw function, exposed for tests against the Random123 known
// answers and for GPU kernels that need to reproduce CPU streams.
std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// SplitMix64's finalizer: a bijective 64-bit mix.
uint64_t Mix64(uint64_t x);

class Rng {
 public:
  explicit Rng(uint64_t seed, uint64_t stream = 0) : key_(seed), stream_(stream) {}

  // A child generator for sub-stream `id`; does not advance this generator.
  Rng Split(uint64_t id) const;

  uint32_t NextU32();
  uint64_t NextU64();
  // Uniform in [0, 1) with 24 (float) / 53 (double) random bits.
  float UniformFloat();
  double UniformDouble();
  // Uniform integer in [0, n), n > 0, without modulo bias (Lemire's method).
  uint64_t UniformInt(uint64_t n);
  // Standard normal (Box-Muller on two fresh doubles; the second value is not kept, so the
  // state is fully described by words_drawn()).
  double Normal();

  uint64_t seed() const { return key_; }
  uint64_t stream() const { return stream_; }
  // Number of 32-bit words drawn so far (for checkpointing: Rng(seed, stream) followed by
  // Skip(words_drawn()) restores the state exactly).
  uint64_t words_drawn() const { return words_drawn_; }
  // Advances the generator by `words` 32-bit words in O(1).
  void Skip(uint64_t words);

 private:
  void Refill();

  uint64_t key_;
  uint64_t stream_;
  uint64_t position_ = 0;  // index of the next block to generate
  std::array<uint32_t, 4> block_{};
  int used_ = 4;  // words of block_ consumed
  uint64_t words_drawn_ = 0;
};

}  // namespace rlvr

#endif  // RLVR_CORE_RNG_H_
