#include "engine/base/dtype.h"

#include <array>
#include <cmath>
#include <cstring>

namespace dsv3 {

namespace {
struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kTable[] = {
    {DType::kF32, "F32", 4},    {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kI32, "I32", 4},    {DType::kI64, "I64", 8},
};

constexpr float Pow2(int e) {
  float r = 1.0f;
  for (; e > 0; --e) r *= 2.0f;
  for (; e < 0; ++e) r *= 0.5f;
  return r;
}

// Built at compile time so no static-initialisation order can observe an empty table.
constexpr std::array<float, 256> MakeE4M3Table() {
  std::array<float, 256> t{};
  for (int v = 0; v < 256; ++v) {
    int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float mag;
    if (exp == 0xf && man == 7) {
      mag = __builtin_nanf("");
    } else if (exp == 0) {
      mag = static_cast<float>(man) / 8.0f * Pow2(-6);  // subnormal
    } else {
      mag = (1.0f + static_cast<float>(man) / 8.0f) * Pow2(exp - 7);
    }
    t[v] = sign ? -mag : mag;
  }
  return t;
}
constexpr std::array<float, 256> kE4M3Array = MakeE4M3Table();
}  // namespace

const float* const kE4M3ToF32 = kE4M3Array.data();

size_t DTypeSize(DType t) {
  for (const auto& e : kTable)
    if (e.type == t) return e.size;
  return 0;
}

const char* DTypeName(DType t) {
  for (const auto& e : kTable)
    if (e.type == t) return e.name;
  return "?";
}

std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& e : kTable)
    if (name == e.name) return e.type;
  return std::nullopt;
}

// Normal values by moving the fields into float32's (the exponent rebiased from 15 to 127),
// subnormals as man · 2^-24 (exact), infinities and NaN as such. Scalar code's F16 (INT4 scales
// in DequantizeRows, `dsv3 quantize`'s check of every element): two std::ldexp calls a value
// had been a sixth of quantizing bench-v3-mini to INT4.
float F16ToF32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float mag;
  if (exp == 0) {
    mag = static_cast<float>(man) * 0x1p-24f;
  } else if (exp == 31) {
    mag = man ? NAN : INFINITY;
  } else {
    const uint32_t bits = ((exp + 112) << 23) | (man << 13);
    std::memcpy(&mag, &bits, sizeof mag);
  }
  return sign ? -mag : mag;
}

uint16_t F32ToF16(float f) {
  // Via the hardware-free route: convert through double rounding is fine for tests and
  // writers; the hot paths never write F16.
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00;
  if (a >= 65520.0f) return sign | 0x7c00;
  if (a < std::ldexp(1.0f, -14)) {  // subnormal: multiples of 2^-24
    int m = static_cast<int>(std::nearbyint(a * std::ldexp(1.0f, 24)));
    return sign | static_cast<uint16_t>(m);
  }
  int e;
  float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5,1)
  int man = static_cast<int>(std::nearbyint((m * 2.0f - 1.0f) * 1024.0f));
  int exp = e - 1 + 15;
  if (man == 1024) { man = 0; ++exp; }
  if (exp >= 31) return sign | 0x7c00;
  return sign | static_cast<uint16_t>(exp << 10) | static_cast<uint16_t>(man);
}

// Round to nearest, ties to the even code, from the float's bits: below e4m3's smallest normal
// (2^-6) a multiple of its subnormal step 2^-9 (a · 512, exact, rounded half to even), else the
// 23-bit mantissa rounded to 3 with the carry running into the exponent. A binary search over
// the 127 positive values (seven unpredictable branches a value) had been ~60% of
// `dsv3 quantize --format fp8`.
uint8_t F32ToE4M3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  if (a >= kE4M3Max) return sign | 0x7e;  // saturate to 448
  if (a < 0x1p-6f) return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));  // 8 is 2^-6's code
  uint32_t bits;
  std::memcpy(&bits, &a, sizeof bits);
  const uint32_t exp = (bits >> 23) - 127 + 7, keep = (bits >> 20) & 7, rest = bits & 0xfffff;
  const uint32_t up = rest > 0x80000 || (rest == 0x80000 && (keep & 1));
  return sign | static_cast<uint8_t>((exp << 3) + keep + up);  // a < 448: at most 0x7e
}

}  // namespace dsv3
