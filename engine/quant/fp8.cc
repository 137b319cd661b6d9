#include "engine/quant/fp8.h"

#include <algorithm>
#include <cmath>

#include "engine/base/dtype.h"
#include "engine/quant/not_finite.h"

namespace dsv3 {

StatusOr<Fp8Block> QuantizeFp8Block(const float* w, int64_t rows, int64_t cols, int64_t bo, int64_t bi,
                                    const std::string& what) {
  const int64_t sr = (rows + bo - 1) / bo, sc = (cols + bi - 1) / bi;
  Fp8Block out;
  out.q.resize(static_cast<size_t>(rows * cols));
  out.scale_inv.resize(static_cast<size_t>(sr * sc));
  for (int64_t br = 0; br < sr; ++br) {
    for (int64_t bc = 0; bc < sc; ++bc) {
      const int64_t r0 = br * bo, r1 = std::min(rows, r0 + bo), c0 = bc * bi, c1 = std::min(cols, c0 + bi);
      ASSIGN_OR_RETURN(const float amax, FiniteAbsMax(w, cols, r0, r1, c0, c1, what));
      const float scale = amax > 0.0f ? amax / kE4M3Max : 1.0f;
      out.scale_inv[br * sc + bc] = scale;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) out.q[r * cols + c] = F32ToE4M3(w[r * cols + c] / scale);
    }
  }
  return out;
}

}  // namespace dsv3
