#include "engine/tensor/tensor.h"

#include <cstring>

namespace dsv3 {

float ElementAsF32(const TensorView& t, int64_t i) {
  switch (t.dtype) {
    case DType::kF32: return t.as<float>()[i];
    case DType::kBF16: return BF16ToF32(t.as<uint16_t>()[i]);
    case DType::kF16: return F16ToF32(t.as<uint16_t>()[i]);
    case DType::kF8E4M3: return E4M3ToF32(t.as<uint8_t>()[i]);
    case DType::kI8: return static_cast<float>(t.as<int8_t>()[i]);
    case DType::kU8: return static_cast<float>(t.as<uint8_t>()[i]);
    case DType::kI32: return static_cast<float>(t.as<int32_t>()[i]);
    case DType::kI64: return static_cast<float>(t.as<int64_t>()[i]);
  }
  return 0.0f;
}

void ElementsAsF32(const TensorView& t, int64_t begin, int64_t n, float* dst) {
  // One loop per dtype, each converting as ElementAsF32 does.
  const auto convert = [&](const auto* src, auto to_f32) {
    for (int64_t i = 0; i < n; ++i) dst[i] = to_f32(src[begin + i]);
  };
  switch (t.dtype) {
    case DType::kF32: std::memcpy(dst, t.as<float>() + begin, static_cast<size_t>(n) * sizeof(float)); return;
    case DType::kBF16: return convert(t.as<uint16_t>(), BF16ToF32);
    case DType::kF16: return convert(t.as<uint16_t>(), F16ToF32);
    case DType::kF8E4M3: return convert(t.as<uint8_t>(), E4M3ToF32);
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = ElementAsF32(t, begin + i);
  }
}

std::vector<float> ToF32Vector(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  ElementsAsF32(t, 0, t.numel(), out.data());
  return out;
}

}  // namespace dsv3
