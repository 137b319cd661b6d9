// Weight matrices for kernel tests, made by the real encoders so that the kernels see exactly
// what `dsv3 quantize` writes.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"

namespace dsv3::testing {

// A WeightMatrix together with the storage it points into.
struct OwnedWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> scale;
  std::vector<uint16_t> scale16;
  std::vector<uint8_t> zero;
  WeightMatrix m;
};

// Weights drawn N(0, 0.5²) from `seed`, encoded as INT8 (blocks of block_out x block rows x
// columns, block_out 0 meaning `block`; `dsv3 quantize` writes per channel: 1 x cols) or INT4
// (groups of `block`, symmetric or with zero points).
OwnedWeight MakeIntWeight(bool int4, int64_t rows, int64_t cols, uint32_t seed, int64_t block, bool symmetric,
                          int64_t block_out = 0);
// Weights drawn N(0, 0.5²) from `seed` as F32, BF16, F16 or FP8 (e4m3 of 100·w, with block x
// block scales of 0.01, 0.02, 0.03 in turn).
OwnedWeight MakeWeight(DType dtype, int64_t rows, int64_t cols, uint32_t seed, int64_t block = 32);

// An FP8 WeightMatrix as the CPU kernels take it (linear.cc's form of it), for tests that call
// a kernel directly.
cpu::RawWeight Fp8Raw(const WeightMatrix& w);

}  // namespace dsv3::testing
