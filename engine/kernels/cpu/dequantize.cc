// Weight dequantization to float32, one row range at a time: the single place that knows how
// each stored weight format maps back to real values.
#include <algorithm>
#include <cstring>

#include "engine/kernels/ops.h"

namespace dsv3 {

void DequantizeRows(const WeightMatrix& w, int64_t r0, int64_t r1, float* dst) {
  const int64_t in = w.cols();
  switch (w.w.dtype) {
    case DType::kF32:
      std::memcpy(dst, w.w.f32() + r0 * in, static_cast<size_t>((r1 - r0) * in) * 4);
      return;
    case DType::kBF16:
      WidenBf16(w.w.as<uint16_t>() + r0 * in, (r1 - r0) * in, dst);
      return;
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
        // A block's scale once (a division per element to find it had been most of an FP8 ->
        // BF16 dsv3 quantize).
        for (int64_t c0 = 0; c0 < in; c0 += w.block_in) {
          const float sc = srow[c0 / w.block_in];
          for (int64_t c = c0, c1 = std::min(in, c0 + w.block_in); c < c1; ++c) d[c] = E4M3ToF32(q[c]) * sc;
        }
      }
      return;
    }
    case DType::kI8: {
      // Symmetric int8: one F32 scale per [block_out, block_in] block (per channel: [1, in]).
      const int8_t* src = w.w.as<int8_t>();
      const float* scale = w.scale.f32();
      const int64_t scale_cols = w.scale.shape[1];
      for (int64_t r = r0; r < r1; ++r) {
        const float* srow = scale + (r / w.block_out) * scale_cols;
        const int8_t* q = src + r * in;
        float* d = dst + (r - r0) * in;
        for (int64_t c0 = 0; c0 < in; c0 += w.block_in) {
          const float s = srow[c0 / w.block_in];
          for (int64_t c = c0, c1 = std::min(in, c0 + w.block_in); c < c1; ++c) d[c] = static_cast<float>(q[c]) * s;
        }
      }
      return;
    }
    case DType::kU8: {
      // Packed int4, low nibble first; F16 group scales and optional U8 zero points (else 8).
      const uint8_t* src = w.w.as<uint8_t>();
      const int64_t packed = w.w.shape[1], groups = w.scale.shape[1];
      const uint16_t* scale = w.scale.as<uint16_t>();
      const uint8_t* zero = w.zero.empty() ? nullptr : w.zero.as<uint8_t>();
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* q = src + r * packed;
        float* d = dst + (r - r0) * in;
        for (int64_t g = 0; g < groups; ++g) {
          const float s = F16ToF32(scale[r * groups + g]);
          const float z = zero ? static_cast<float>(zero[r * groups + g]) : 8.0f;
          for (int64_t c = g * w.block_in, c1 = std::min(in, c + w.block_in); c < c1; ++c) {
            const uint8_t byte = q[c >> 1];
            const int u = (c & 1) ? (byte >> 4) : (byte & 0xf);
            d[c] = (static_cast<float>(u) - z) * s;
          }
        }
      }
      return;
    }
    default:
      // The Binder only builds matrices of the dtypes above.
      std::memset(dst, 0, static_cast<size_t>((r1 - r0) * in) * 4);
      return;
  }
}

}  // namespace dsv3
