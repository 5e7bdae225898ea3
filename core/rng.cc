#include "core/rng.h"

#include <cmath>
#include <numbers>

namespace rlvr {

std::array<uint32_t, 4> Philox4x32(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kMul0) * c[0];
    uint64_t p1 = static_cast<uint64_t>(kMul1) * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

Rng Rng::Split(uint64_t id) const {
  // Mixing all three inputs keeps children of different parents, streams or ids apart; the
  // child uses stream 0 of its own key.
  return Rng(Mix64(Mix64(key_ ^ Mix64(stream_)) ^ id), 0);
}

void Rng::Refill() {
  block_ = Philox4x32({static_cast<uint32_t>(position_), static_cast<uint32_t>(position_ >> 32),
                       static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)},
                      {static_cast<uint32_t>(key_), static_cast<uint32_t>(key_ >> 32)});
  ++position_;
  used_ = 0;
}

uint32_t Rng::NextU32() {
  if (used_ == 4) Refill();
  ++words_drawn_;
  return block_[used_++];
}

uint64_t Rng::NextU64() {
  uint64_t lo = NextU32();
  uint64_t hi = NextU32();
  return (hi << 32) | lo;
}

float Rng::UniformFloat() { return static_cast<float>(NextU32() >> 8) * 0x1.0p-24f; }

double Rng::UniformDouble() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }

uint64_t Rng::UniformInt(uint64_t n) {
  // Lemire, "Fast random integer generation in an interval" (2019): multiply-shift with a
  // rejection step that removes the bias.
  uint64_t x = NextU64();
  __uint128_t m = static_cast<__uint128_t>(x) * n;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < n) {
    uint64_t threshold = -n % n;
    while (low < threshold) {
      x = NextU64();
      m = static_cast<__uint128_t>(x) * n;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

double Rng::Normal() {
  double u1 = UniformDouble();
  double u2 = UniformDouble();
  // 1 - u1 is in (0, 1], so the log is finite.
  return std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

void Rng::Skip(uint64_t words) {
  words_drawn_ += words;
  uint64_t total = words_drawn_;
  position_ = total / 4;
  used_ = 4;
  if (total % 4 != 0) {
    Refill();
    used_ = static_cast<int>(total % 4);
  }
}

}  // namespace rlvr
