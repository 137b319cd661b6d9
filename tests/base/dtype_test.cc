// The dtype table and scalar conversions every layer relies on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/tensor/tensor.h"

namespace dsv3 {
namespace {

TEST(DType, NamesAndSizesRoundTrip) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kI8, DType::kU8, DType::kI32,
                  DType::kI64}) {
    auto parsed = ParseDType(DTypeName(t));
    ASSERT_TRUE(parsed.has_value()) << DTypeName(t);
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF8E4M3), 1u);
  EXPECT_FALSE(ParseDType("F12").has_value());
}

TEST(DType, E4M3EveryCodeRoundTrips) {
  EXPECT_EQ(E4M3ToF32(0x7e), 448.0f);   // largest finite
  EXPECT_EQ(E4M3ToF32(0x38), 1.0f);
  EXPECT_EQ(E4M3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(E4M3ToF32(0x7f)));
  for (int v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f) continue;  // NaN
    const float f = E4M3ToF32(static_cast<uint8_t>(v));
    const uint8_t back = F32ToE4M3(f);
    if (f == 0.0f) {
      EXPECT_EQ(back & 0x7f, 0);
    } else {
      EXPECT_EQ(back, v) << "code " << v << " value " << f;
    }
  }
  EXPECT_EQ(F32ToE4M3(1000.0f), 0x7e);   // saturates, as a clamped cast does
  EXPECT_EQ(F32ToE4M3(1.0625f), 0x38);   // halfway between 1 and 1.125: ties to even
  EXPECT_EQ(F32ToE4M3(1.1875f), 0x3a);   // halfway between 1.125 and 1.25: to even (1.25)
}

// F32ToE4M3 against the nearest of the 127 positive e4m3 values (ties to the even code), found
// by search: around every value and every midpoint (one ulp either side), across the
// subnormals, and at random magnitudes, both signs.
TEST(DType, F32ToE4M3RoundsToTheNearestValue) {
  std::vector<float> pos;
  for (int c = 0; c <= 0x7e; ++c) pos.push_back(E4M3ToF32(static_cast<uint8_t>(c)));
  const auto nearest = [&](float f) -> uint8_t {
    if (std::isnan(f)) return 0x7f;
    const uint8_t sign = std::signbit(f) ? 0x80 : 0;
    const float a = std::fabs(f);
    if (a >= 448.0f) return sign | 0x7e;
    int best = 0;
    for (int c = 1; c <= 0x7e; ++c) {
      const double d = std::fabs(static_cast<double>(pos[c]) - a), db = std::fabs(static_cast<double>(pos[best]) - a);
      if (d < db || (d == db && (c & 1) == 0)) best = c;
    }
    return sign | static_cast<uint8_t>(best);
  };
  std::vector<float> probes = {0.0f, 1e-30f, 1e-45f, 447.9f, 448.0f, 464.0f, 1e30f, INFINITY};
  for (int c = 0; c <= 0x7e; ++c) {
    const float v = pos[c];
    for (float x : {v, std::nextafter(v, 0.0f), std::nextafter(v, 1e9f)}) probes.push_back(x);
    if (c < 0x7e) {
      const float mid = static_cast<float>((static_cast<double>(v) + pos[c + 1]) / 2);  // exact: a few bits
      for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) probes.push_back(x);
    }
  }
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) probes.push_back(std::exp2(exponent(rng)));
  for (float x : probes)
    for (float v : {x, -x}) ASSERT_EQ(F32ToE4M3(v), nearest(v)) << v;
  EXPECT_EQ(F32ToE4M3(NAN), 0x7f);
}

TEST(DType, BF16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3f80);
  EXPECT_EQ(BF16ToF32(0x3f80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even keeps 1.
  EXPECT_EQ(F32ToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(F32ToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(NAN))));
}

// Every F16 bit pattern against its definition: (-1)^s · 2^(e-15) · (1 + m/1024), subnormals
// 2^-14 · m/1024, e = 31 infinity or NaN.
TEST(DType, F16ToF32FollowsTheDefinitionForEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const int sign = (h >> 15) & 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const float got = F16ToF32(static_cast<uint16_t>(h));
    if (e == 31 && m != 0) {
      EXPECT_TRUE(std::isnan(got)) << h;
      continue;
    }
    double want = e == 31 ? INFINITY : e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1.0 + m / 1024.0, e - 15);
    if (sign) want = -want;
    ASSERT_EQ(got, static_cast<float>(want)) << h;
    ASSERT_EQ(std::signbit(got), sign == 1) << h;
  }
}

TEST(DType, F16RoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;  // inf/NaN
    const float f = F16ToF32(static_cast<uint16_t>(h));
    EXPECT_EQ(F32ToF16(f), h) << h;
  }
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);  // overflow to inf
}


// The bulk conversion gives ElementAsF32's values for every dtype, from any offset, and
// ToF32Vector is it over the whole view.
TEST(DType, ElementsAsF32MatchesElementAsF32) {
  std::vector<uint8_t> bytes(256 * 8);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 37 + i / 256);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kI8, DType::kU8, DType::kI32,
                  DType::kI64}) {
    const int64_t n = static_cast<int64_t>(bytes.size() / DTypeSize(t));
    if (t == DType::kF8E4M3)  // 0x7f / 0xff are e4m3's NaN: compare the rest as values
      for (uint8_t& b : bytes) b = (b & 0x7f) == 0x7f ? 0 : b;
    const TensorView view{bytes.data(), t, Shape{n}};
    for (const auto& [begin, count] : std::vector<std::pair<int64_t, int64_t>>{{0, n}, {3, n - 7}, {n - 1, 1}}) {
      std::vector<float> got(static_cast<size_t>(count), -1.0f);
      ElementsAsF32(view, begin, count, got.data());
      for (int64_t i = 0; i < count; ++i) {
        const float want = ElementAsF32(view, begin + i);
        ASSERT_TRUE(std::memcmp(&got[i], &want, sizeof(float)) == 0 || (std::isnan(got[i]) && std::isnan(want)))
            << DTypeName(t) << " element " << begin + i;
      }
    }
    const std::vector<float> all = ToF32Vector(view);
    ASSERT_EQ(all.size(), static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      ASSERT_TRUE(all[i] == ElementAsF32(view, i) || (std::isnan(all[i]) && std::isnan(ElementAsF32(view, i))))
          << DTypeName(t) << " element " << i;
  }
}

}  // namespace
}  // namespace dsv3
