// The one dtype table: names as safetensors spells them, element sizes, and the scalar
// conversions every other layer uses (bf16, f16 and float8_e4m3fn to float32).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace dsv3 {

enum class DType : uint8_t { kF32, kF16, kBF16, kF8E4M3, kI8, kU8, kI32, kI64 };

// Bytes per element.
size_t DTypeSize(DType t);
// "F32", "BF16", "F8_E4M3", ... exactly as in a safetensors header.
const char* DTypeName(DType t);
std::optional<DType> ParseDType(std::string_view name);

inline float BF16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, as torch does when casting float32 to bfloat16.
inline uint16_t F32ToBF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

// float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities, 0x7f/0xff are NaN.
// Max finite value 448.
extern const float* const kE4M3ToF32;  // 256 entries
inline float E4M3ToF32(uint8_t v) { return kE4M3ToF32[v]; }
// Round to nearest even with saturation to +-448, as torch's float8_e4m3fn cast of a
// clamped value does.
uint8_t F32ToE4M3(float f);
constexpr float kE4M3Max = 448.0f;

}  // namespace dsv3
