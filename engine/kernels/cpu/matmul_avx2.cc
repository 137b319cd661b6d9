// MatMul (ops.h) for AVX2 + FMA (compiled with those flags for this file only; chosen at run
// time by matmul.cc). An outer-product tile: six rows of a, each element broadcast, times one
// k-row of a 16-column strip of B (two vectors), into 6 x 16 accumulators that stay in registers
// for a whole block of k. Per k that is 8 loads for 12 FMAs and no horizontal sums: prefill
// attention's products have short inner dimensions (scores: qk = 96), where an inner-product
// tile spends much of its time reducing (its scores ran at ~19 GFLOP/s on one core).
//
// As in linear_avx2.cc, no standard-library templates or shared inline functions here.
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/matmul_blocks.inc"

// The mask of the first `cols` of 8 lanes.
inline __m256i LaneMask(int64_t cols) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols)), lanes);
}

// c[R, cols] (first k block: =, later ones: the chain continues from c) of a[R, kb] · strip[kb, 16].
template <int R>
void Tile(const float* a, int64_t lda, const float* strip, int64_t kb, float* c, int64_t ldc, int64_t cols,
          bool first) {
  // Masked loads and stores only for a last strip narrower than 16 columns: on Zen 3 a masked
  // store costs several plain ones, and a tile of a short product (scores: 96 k) has 12.
  const bool whole = cols == kStrip;
  const __m256i m0 = LaneMask(cols), m1 = LaneMask(cols - 8);
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) {
    if (first) {
      acc[r][0] = _mm256_setzero_ps();
      acc[r][1] = _mm256_setzero_ps();
    } else if (whole) {
      acc[r][0] = _mm256_loadu_ps(c + r * ldc);
      acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
    } else {
      acc[r][0] = _mm256_maskload_ps(c + r * ldc, m0);
      acc[r][1] = _mm256_maskload_ps(c + r * ldc + 8, m1);
    }
  }
  for (int64_t k = 0; k < kb; ++k) {
    const __m256 b0 = _mm256_loadu_ps(strip + k * kStrip), b1 = _mm256_loadu_ps(strip + k * kStrip + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * lda + k);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    if (whole) {
      _mm256_storeu_ps(c + r * ldc, acc[r][0]);
      _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    } else {
      _mm256_maskstore_ps(c + r * ldc, m0, acc[r][0]);
      _mm256_maskstore_ps(c + r * ldc + 8, m1, acc[r][1]);
    }
  }
}

void StripTile(int64_t rows, int64_t, const float* a, int64_t lda, const float* strip, int64_t, int64_t kb, float* c,
               int64_t ldc, int64_t cols, bool first) {
  ForRows(rows, [&]<int R>() { Tile<R>(a, lda, strip, kb, c, ldc, cols, first); });
}

}  // namespace

void MatMulAvx2(const float* a, int64_t M, int64_t K, int64_t lda, const float* b, int64_t bK, int64_t N, float* c,
                int64_t ldc) {
  MatMulBlocks<1>(a, M, K, lda, b, bK, N, c, ldc);
}

}  // namespace dsv3::cpu

#else  // built without the flags (not x86-64): the dispatcher never selects this.

namespace dsv3::cpu {
void MatMulAvx2(const float*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t) {}
}  // namespace dsv3::cpu

#endif
