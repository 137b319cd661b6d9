// Encoders of the dsv3 int8 / int4 weight formats (layout in int_quant.h).
#include "engine/quant/int_quant.h"

#include <algorithm>
#include <cmath>

#include "engine/base/dtype.h"
#include "engine/quant/not_finite.h"

namespace dsv3 {

uint16_t F32ToF16RoundUp(float x) {
  uint16_t h = F32ToF16(x);
  // Positive F16 bit patterns are ordered like their values, so +1 is the next one up.
  if (F16ToF32(h) < x) ++h;
  return h;
}

StatusOr<Int8Block> QuantizeInt8(const float* w, int64_t rows, int64_t cols, int64_t bo, int64_t bi,
                                 const std::string& what) {
  const int64_t sr = (rows + bo - 1) / bo, sc = (cols + bi - 1) / bi;
  Int8Block out;
  out.q.resize(static_cast<size_t>(rows * cols));
  out.scale.resize(static_cast<size_t>(sr * sc));
  for (int64_t br = 0; br < sr; ++br) {
    for (int64_t bc = 0; bc < sc; ++bc) {
      const int64_t r0 = br * bo, r1 = std::min(rows, r0 + bo), c0 = bc * bi, c1 = std::min(cols, c0 + bi);
      ASSIGN_OR_RETURN(const float amax, FiniteAbsMax(w, cols, r0, r1, c0, c1, what));
      // -128 is left unused so the grid is symmetric and negation is exact.
      const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
      out.scale[br * sc + bc] = scale;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          const float q = std::nearbyint(w[r * cols + c] / scale);
          out.q[r * cols + c] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
        }
    }
  }
  return out;
}

StatusOr<Int4Groups> QuantizeInt4(const float* w, int64_t rows, int64_t cols, int64_t g, bool symmetric,
                                  const std::string& what) {
  const int64_t groups = (cols + g - 1) / g, packed = (cols + 1) / 2;
  Int4Groups out;
  out.packed.assign(static_cast<size_t>(rows * packed), 0);
  out.scale.resize(static_cast<size_t>(rows * groups));
  if (!symmetric) out.zero.resize(static_cast<size_t>(rows * groups));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    uint8_t* prow = out.packed.data() + r * packed;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t c0 = gi * g, c1 = std::min(cols, c0 + g);
      // The range always contains 0 so the zero point lands in [0, 15] and 0 is exact.
      float lo = 0.0f, hi = 0.0f;
      for (int64_t c = c0; c < c1; ++c) {
        if (!std::isfinite(row[c])) return NotFiniteWeight(what, r, c);
        lo = std::min(lo, row[c]);
        hi = std::max(hi, row[c]);
      }
      const float raw = symmetric ? std::max(-lo, hi) / 7.0f : (hi - lo) / 15.0f;
      if (raw > 65504.0f)
        return Status::Invalid(what + ": group scale " + std::to_string(raw) + " of row " + std::to_string(r) +
                               " does not fit F16");
      const uint16_t h = raw > 0.0f ? F32ToF16RoundUp(raw) : F32ToF16(1.0f);
      const float s = F16ToF32(h);
      float z = 8.0f;
      if (!symmetric) {
        z = std::clamp(std::nearbyint(-lo / s), 0.0f, 15.0f);
        out.zero[r * groups + gi] = static_cast<uint8_t>(z);
      }
      out.scale[r * groups + gi] = h;
      for (int64_t c = c0; c < c1; ++c) {
        const float u = std::clamp(std::nearbyint(row[c] / s) + z, 0.0f, 15.0f);
        prow[c >> 1] |= static_cast<uint8_t>(static_cast<int>(u) << ((c & 1) * 4));
      }
    }
  }
  return out;
}

}  // namespace dsv3
