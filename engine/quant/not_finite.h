// The scan every weight encoder starts a block with: its largest magnitude, refusing NaN and
// infinities with one error (quantizing them would silently poison a whole block's scale).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "engine/base/status.h"

namespace dsv3 {

inline Status NotFiniteWeight(const std::string& what, int64_t r, int64_t c) {
  return Status::Invalid(what + ": weight [" + std::to_string(r) + "," + std::to_string(c) +
                         "] is not finite; refusing to quantize it");
}

// max |w[r, c]| over rows [r0, r1) and columns [c0, c1) of a row-major matrix `cols` wide.
inline StatusOr<float> FiniteAbsMax(const float* w, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                                    const std::string& what) {
  float amax = 0.0f;
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) {
      const float v = w[r * cols + c];
      if (!std::isfinite(v)) return NotFiniteWeight(what, r, c);
      amax = std::max(amax, std::fabs(v));
    }
  return amax;
}

}  // namespace dsv3
