// MatMul (ops.h): B packed in strips of 16 columns, then the AVX2 kernel when the CPU has it and
// the Linear kernel family is not forced to the reference, else the reference twin below (Eigen
// over the same strips; the tests compare the two).
#include <Eigen/Core>

#include <algorithm>
#include <cstdint>

#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

void PackMatMulRhs(const float* b, int64_t K, int64_t N, int64_t ldb, bool transposed, MatMulRhs* out) {
  constexpr int64_t W = MatMulRhs::kStrip;
  const int64_t strips = (N + W - 1) / W;
  out->K = K;
  out->N = N;
  out->storage.assign(static_cast<size_t>(strips * K * W + W - 1), 0.0f);
  const auto misalign = reinterpret_cast<uintptr_t>(out->storage.data()) % (W * sizeof(float));
  out->offset = misalign == 0 ? 0 : static_cast<int64_t>((W * sizeof(float) - misalign) / sizeof(float));
  float* const base = out->storage.data() + out->offset;
  for (int64_t j = 0; j < strips; ++j) {
    float* strip = base + j * K * W;
    const int64_t n0 = j * W, width = std::min(W, N - n0);
    if (transposed) {  // column n of B is row n of b: walk the strip's rows side by side
      for (int64_t n = 0; n < width; ++n) {
        const float* row = b + (n0 + n) * ldb;
        for (int64_t k = 0; k < K; ++k) strip[k * W + n] = row[k];
      }
    } else {
      for (int64_t k = 0; k < K; ++k) std::copy(b + k * ldb + n0, b + k * ldb + n0 + width, strip + k * W);
    }
  }
}

void MatMul(const float* a, int64_t M, int64_t K, int64_t lda, const MatMulRhs& b, int64_t N, float* c, int64_t ldc) {
  constexpr int64_t W = MatMulRhs::kStrip;
  if (M <= 0 || N <= 0) return;
  if (ActiveLinearKernel() == LinearKernel::kAvx2) {
    cpu::MatMulAvx2(a, M, K, lda, b.strips(), b.K, N, c, ldc);
    return;
  }
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const RowMat, 0, Eigen::OuterStride<>> A(a, M, K, Eigen::OuterStride<>(lda));
  for (int64_t n0 = 0; n0 < N; n0 += W) {
    const int64_t width = std::min(W, N - n0);
    const Eigen::Map<const RowMat> strip(b.strips() + (n0 / W) * b.K * W, K, W);
    Eigen::Map<RowMat, 0, Eigen::OuterStride<>>(c + n0, M, width, Eigen::OuterStride<>(ldc)).noalias() =
        A * strip.leftCols(width);
  }
}

}  // namespace dsv3
