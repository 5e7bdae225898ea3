#include "core/crc32c.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rlvr::crc32c {
namespace {

// RFC 3720 (iSCSI) appendix B.4 test vectors, plus the usual "123456789" check value.
TEST(Crc32cTest, KnownVectors) {
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  EXPECT_EQ(Value(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(Value(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(Value(inc.data(), inc.size()), 0x46DD794Eu);
  EXPECT_EQ(Value(dec.data(), dec.size()), 0x113FDB5Cu);
  EXPECT_EQ(Value("123456789"), 0xE3069283u);
  EXPECT_EQ(Value(""), 0u);
  uint8_t iscsi[48] = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                       0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                       0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                       0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(Value(iscsi, sizeof(iscsi)), 0xD9963A56u);
}

TEST(Crc32cTest, PortableMatchesDefaultAndExtendComposes) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>((i * 7919) % 251);
  int compared = 0;
  for (size_t n : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 999, 1000}) {
    EXPECT_EQ(ExtendPortable(0, data.data(), n), Extend(0, data.data(), n)) << n;
    for (size_t split : {size_t{0}, n / 3, n}) {
      uint32_t a = Extend(0, data.data(), split);
      EXPECT_EQ(Extend(a, data.data() + split, n - split), Value(data.data(), n));
      EXPECT_EQ(
          ExtendPortable(ExtendPortable(0, data.data(), split), data.data() + split, n - split),
          Value(data.data(), n));
      ++compared;
    }
  }
  EXPECT_EQ(compared, 36);
}

TEST(Crc32cTest, MaskRoundTripsAndDiffers) {
  uint32_t crc = Value("foo");
  EXPECT_NE(Mask(crc), crc);
  EXPECT_NE(Mask(Mask(crc)), crc);
  EXPECT_EQ(Unmask(Mask(crc)), crc);
  EXPECT_EQ(Unmask(Unmask(Mask(Mask(crc)))), crc);
}

}  // namespace
}  // namespace rlvr::crc32c
