#include "core/dtype.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace rlvr {
namespace {

TEST(DTypeTest, NamesRoundTrip) {
  for (int i = 0; i < kNumDTypes; ++i) {
    DType d = static_cast<DType>(i);
    auto parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF8E4M3), 1u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
}

TEST(DTypeTest, UnknownNameListsKnownOnes) {
  auto parsed = ParseDType("C64");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()),
              ::testing::HasSubstr("unknown dtype 'C64' (known: BOOL, U8"));
}

TEST(DTypeTest, HandComputedValues) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3F80);
  EXPECT_EQ(Bf16ToF32(0xC049), -3.140625f);
  EXPECT_EQ(F32ToF16(1.0f), 0x3C00);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);  // ties to even rounds up to inf
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F8E4M3ToF32(0x7E), 448.0f);
  EXPECT_EQ(F8E4M3ToF32(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(F8E4M3ToF32(0x7F)));
  EXPECT_EQ(F32ToF8E4M3(1000.0f), 0x7F);                     // NaN, like PyTorch
  EXPECT_EQ(F32ToF8E4M3(1000.0f, /*saturate=*/true), 0x7E);  // 448
  EXPECT_EQ(F32ToF8E4M3(-1000.0f, /*saturate=*/true), 0xFE);
  EXPECT_EQ(F8E5M2ToF32(0x7B), 57344.0f);
  EXPECT_TRUE(std::isinf(F8E5M2ToF32(0x7C)));
  EXPECT_EQ(F32ToF8E5M2(1e6f, /*saturate=*/true), 0x7B);
}

TEST(DTypeTest, NarrowToF32IsExactForEveryBitPattern) {
  // Every finite narrow value converts to float32 and back to the same bits.
  int checked = 0;
  for (uint32_t b = 0; b < 65536; ++b) {
    float f = F16ToF32(static_cast<uint16_t>(b));
    if (!std::isnan(f)) {
      EXPECT_EQ(F32ToF16(f), b);
      ++checked;
    }
    float g = Bf16ToF32(static_cast<uint16_t>(b));
    if (!std::isnan(g)) {
      EXPECT_EQ(F32ToBf16(g), b);
      ++checked;
    }
  }
  for (uint32_t b = 0; b < 256; ++b) {
    float f = F8E4M3ToF32(static_cast<uint8_t>(b));
    if (!std::isnan(f)) {
      EXPECT_EQ(F32ToF8E4M3(f), b);
      ++checked;
    }
    float g = F8E5M2ToF32(static_cast<uint8_t>(b));
    if (!std::isnan(g)) {
      EXPECT_EQ(F32ToF8E5M2(g), b);
      ++checked;
    }
  }
  EXPECT_GT(checked, 2 * 63000);
}

// float32 -> narrow rounding against ml_dtypes (tests/fixtures/safetensors/conversions.json,
// made by tools/make_safetensors_fixtures.py): random values over 18 decades plus edge cases
// (ties, overflow thresholds, subnormals, inf, NaN).
TEST(DTypeTest, RoundingMatchesMlDtypes) {
  auto text = ReadFile("tests/fixtures/safetensors/conversions.json");
  ASSERT_TRUE(text.ok()) << text.status();
  nlohmann::json j = nlohmann::json::parse(*text);
  const auto& in = j["f32_bits"];
  ASSERT_GT(in.size(), 1000u);
  int compared = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    float x = std::bit_cast<float>(in[i].get<uint32_t>());
    SCOPED_TRACE(testing::Message() << "x = " << x << " (index " << i << ")");
    if (std::isnan(x)) {
      // NaN payloads and signs are implementation details; only NaN-ness matters.
      EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(x))));
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(x))));
      EXPECT_TRUE(std::isnan(F8E4M3ToF32(F32ToF8E4M3(x))));
      EXPECT_TRUE(std::isnan(F8E5M2ToF32(F32ToF8E5M2(x))));
      continue;
    }
    EXPECT_EQ(F32ToBf16(x), j["bf16"][i].get<uint16_t>());
    EXPECT_EQ(F32ToF16(x), j["f16"][i].get<uint16_t>());
    EXPECT_EQ(F32ToF8E4M3(x), j["f8_e4m3"][i].get<uint8_t>());
    EXPECT_EQ(F32ToF8E5M2(x), j["f8_e5m2"][i].get<uint8_t>());
    compared += 4;
  }
  EXPECT_GT(compared, 4000);
}

TEST(DTypeTest, BulkConversionRoundTrip) {
  std::vector<float> src = {0.0f, -1.5f, 3.0f, 0.25f, -448.0f};
  for (DType d :
       {DType::kF32, DType::kF64, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kF8E5M2}) {
    std::vector<uint8_t> buf(src.size() * DTypeSize(d) + 1);
    // Deliberately misaligned destination.
    ASSERT_TRUE(ConvertFromF32(src.data(), d, buf.data() + 1, src.size()).ok());
    std::vector<float> back(src.size());
    ConvertToF32(d, buf.data() + 1, back.data(), back.size());
    EXPECT_EQ(back, src) << DTypeName(d);
  }
  std::vector<uint8_t> buf(8);
  auto s = ConvertFromF32(src.data(), DType::kI32, buf.data(), 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

// The bulk F16 paths (F16C instructions where the build has them) against the scalar ones.
TEST(DTypeTest, BulkF16MatchesScalar) {
  std::vector<uint16_t> all(65536);
  for (uint32_t b = 0; b < 65536; ++b) all[b] = static_cast<uint16_t>(b);
  std::vector<float> wide(all.size());
  ConvertToF32(DType::kF16, all.data(), wide.data(), all.size());
  int compared = 0;
  for (uint32_t b = 0; b < 65536; ++b) {
    float scalar = F16ToF32(static_cast<uint16_t>(b));
    if (std::isnan(scalar)) {
      EXPECT_TRUE(std::isnan(wide[b])) << b;
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(wide[b]), std::bit_cast<uint32_t>(scalar)) << b;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 65536 - 2 * 1023);
  ConvertToF32(DType::kBF16, all.data(), wide.data(), all.size());
  for (uint32_t b = 0; b < 65536; ++b) {
    ASSERT_EQ(std::bit_cast<uint32_t>(wide[b]), b << 16) << b;
  }
  // float32 -> f16 on values around every f16 rounding boundary.
  std::vector<float> probes;
  for (uint32_t b = 0; b < 0x7C00; b += 7) {
    float lo = F16ToF32(static_cast<uint16_t>(b));
    float hi = F16ToF32(static_cast<uint16_t>(b + 1));
    float mid = lo + (hi - lo) / 2;
    for (float x : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
      probes.push_back(x);
      probes.push_back(-x);
    }
  }
  probes.push_back(1e30f);
  std::vector<uint16_t> narrow(probes.size());
  ASSERT_TRUE(ConvertFromF32(probes.data(), DType::kF16, narrow.data(), probes.size()).ok());
  for (size_t i = 0; i < probes.size(); ++i) {
    ASSERT_EQ(narrow[i], F32ToF16(probes[i])) << probes[i];
  }
  EXPECT_GT(probes.size(), 30000u);
}

TEST(DTypeTest, IntegerConversionToF32) {
  int64_t i64[] = {-5, 1LL << 40};
  float out[2];
  ConvertToF32(DType::kI64, i64, out, 2);
  EXPECT_EQ(out[0], -5.0f);
  EXPECT_EQ(out[1], std::ldexp(1.0f, 40));
  uint8_t b[] = {0, 7};
  ConvertToF32(DType::kBool, b, out, 2);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 1.0f);
  int8_t i8[] = {-128, 127};
  ConvertToF32(DType::kI8, i8, out, 2);
  EXPECT_EQ(out[0], -128.0f);
  EXPECT_EQ(out[1], 127.0f);
}

}  // namespace
}  // namespace rlvr
