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

std::vector<float> ToF32Vector(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == DType::kF32) {
    std::memcpy(out.data(), t.data, out.size() * 4);
  } else {
    for (int64_t i = 0; i < t.numel(); ++i) out[i] = ElementAsF32(t, i);
  }
  return out;
}

}  // namespace dsv3
