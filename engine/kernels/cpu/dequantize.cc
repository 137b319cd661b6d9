// Weight dequantization to float32, one row range at a time: the single place that knows how
// each stored weight format maps back to real values.
#include <cstring>

#include "engine/kernels/ops.h"

namespace dsv3 {

void DequantizeRows(const WeightMatrix& w, int64_t r0, int64_t r1, float* dst) {
  const int64_t in = w.cols();
  switch (w.w.dtype) {
    case DType::kF32:
      std::memcpy(dst, w.w.f32() + r0 * in, static_cast<size_t>((r1 - r0) * in) * 4);
      return;
    case DType::kBF16: {
      const uint16_t* src = w.w.as<uint16_t>() + r0 * in;
      for (int64_t i = 0, n = (r1 - r0) * in; i < n; ++i) dst[i] = BF16ToF32(src[i]);
      return;
    }
    case DType::kF16: {
      const uint16_t* src = w.w.as<uint16_t>() + r0 * in;
      for (int64_t i = 0, n = (r1 - r0) * in; i < n; ++i) dst[i] = F16ToF32(src[i]);
      return;
    }
    case DType::kF8E4M3: {
      const uint8_t* src = w.w.as<uint8_t>();
      const float* scale = w.scale_inv.f32();
      const int64_t scale_cols = w.scale_inv.shape[1];
      for (int64_t r = r0; r < r1; ++r) {
        const float* srow = scale + (r / w.block_out) * scale_cols;
        const uint8_t* q = src + r * in;
        float* d = dst + (r - r0) * in;
        for (int64_t c = 0; c < in; ++c) d[c] = E4M3ToF32(q[c]) * srow[c / w.block_in];
      }
      return;
    }
    default:
      // Integer formats are handled by engine/quant; the loader never builds such a matrix.
      std::memset(dst, 0, static_cast<size_t>((r1 - r0) * in) * 4);
      return;
  }
}

}  // namespace dsv3
