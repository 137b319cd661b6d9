// Linear (y = x·Wᵀ) on the CPU. Matrix products go through Eigen on float32 tiles; weights in
// lower precision are dequantized a tile at a time into a per-thread buffer, so a weight is
// never expanded whole and each tile stays in cache while it meets every token.
#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat>;
using StridedMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

constexpr int64_t kTileRows = 64;

void LinearImpl(const float* x, int64_t T, const WeightMatrix& w, float* y, bool accumulate) {
  const int64_t out = w.rows(), in = w.cols();
  ConstMap X(x, T, in);
  // Work is split over output rows; each chunk is tiled so a tile of dequantized weights
  // stays in cache while it meets every token.
  const int64_t grain = std::max<int64_t>(kTileRows, 1);
  ParallelFor(out, grain, [&](int64_t r_begin, int64_t r_end) {
    thread_local std::vector<float> tile;
    for (int64_t r0 = r_begin; r0 < r_end; r0 += kTileRows) {
      const int64_t r1 = std::min(r_end, r0 + kTileRows), n = r1 - r0;
      const float* wt;
      if (w.w.dtype == DType::kF32) {
        wt = w.w.f32() + r0 * in;
      } else {
        tile.resize(static_cast<size_t>(n * in));
        DequantizeRows(w, r0, r1, tile.data());
        wt = tile.data();
      }
      ConstMap W(wt, n, in);
      StridedMap Y(y + r0, T, n, Eigen::OuterStride<>(out));
      if (accumulate) {
        Y.noalias() += X * W.transpose();
      } else {
        Y.noalias() = X * W.transpose();
      }
    }
  });
}

}  // namespace

void Linear(const float* x, int64_t T, const WeightMatrix& w, float* y) { LinearImpl(x, T, w, y, false); }
void LinearAccumulate(const float* x, int64_t T, const WeightMatrix& w, float* y) { LinearImpl(x, T, w, y, true); }

}  // namespace dsv3
