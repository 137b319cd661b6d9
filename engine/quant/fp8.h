// FP8 block quantization in DeepSeek-V3's layout: float8_e4m3fn weights plus a float32
// `weight_scale_inv` per [block_out x block_in] block (partial blocks at the edges), with
// w ≈ e4m3(q) * scale_inv. The engine reads these blocks directly (kernels/ops.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

struct Fp8Block {
  std::vector<uint8_t> q;          // [rows, cols] e4m3
  std::vector<float> scale_inv;    // [ceil(rows/bo), ceil(cols/bi)]
};

// scale_inv = amax(block) / 448, so each block's largest magnitude maps to e4m3's largest
// finite value; an all-zero block gets scale 1 (any scale reproduces zeros). A NaN or
// infinite weight is an error naming `what` and the element.
StatusOr<Fp8Block> QuantizeFp8Block(const float* w, int64_t rows, int64_t cols, int64_t block_out,
                                    int64_t block_in, const std::string& what = "weight");

}  // namespace dsv3
