// MatMul (ops.h) with AVX-512 (compiled with those flags for this file only; matmul.cc picks it
// for the avx512 kernel family): matmul_avx2.cc's outer-product tile on 512-bit vectors, two
// strips at once. Six rows of a, each element broadcast, times one k-row of two 16-column
// strips (a vector each), into 6 x 2 accumulators: twice the columns per FMA of the AVX2 tile for
// the same loads. Every element of c is the same fma chain over k as there (a k block starts
// from zero or continues from c), so the same bits.
//
// As in linear_avx2.cc, no standard-library templates or shared inline functions here.
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/matmul_blocks.inc"

// c[R, S strips] (first k block: =, later ones: the chain continues from c) of a[R, kb] · the
// strips at strip and strip + stride; the last strip holds `cols` columns (mask `last`).
template <int R, int S>
void Tile(const float* a, int64_t lda, const float* strip, int64_t stride, int64_t kb, float* c, int64_t ldc,
          __mmask16 last, bool first) {
  const __mmask16 mask[2] = {S == 1 ? last : __mmask16(0xffff), last};
  const bool whole = last == 0xffff;
  __m512 acc[R][S];
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s) {
      if (first) {
        acc[r][s] = _mm512_setzero_ps();
      } else if (whole) {
        acc[r][s] = _mm512_loadu_ps(c + r * ldc + s * kStrip);
      } else {
        acc[r][s] = _mm512_maskz_loadu_ps(mask[s], c + r * ldc + s * kStrip);
      }
    }
  for (int64_t k = 0; k < kb; ++k) {
    __m512 b[S];
    for (int s = 0; s < S; ++s) b[s] = _mm512_loadu_ps(strip + s * stride + k * kStrip);
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * lda + k]);
      for (int s = 0; s < S; ++s) acc[r][s] = _mm512_fmadd_ps(x, b[s], acc[r][s]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s) {
      if (whole) {
        _mm512_storeu_ps(c + r * ldc + s * kStrip, acc[r][s]);
      } else {
        _mm512_mask_storeu_ps(c + r * ldc + s * kStrip, mask[s], acc[r][s]);
      }
    }
}

void StripTile(int64_t rows, int64_t strips, const float* a, int64_t lda, const float* strip, int64_t stride,
               int64_t kb, float* c, int64_t ldc, int64_t cols, bool first) {
  const __mmask16 last = static_cast<__mmask16>((1u << cols) - 1);
  if (strips == 2) {
    ForRows(rows, [&]<int R>() { Tile<R, 2>(a, lda, strip, stride, kb, c, ldc, last, first); });
  } else {
    ForRows(rows, [&]<int R>() { Tile<R, 1>(a, lda, strip, stride, kb, c, ldc, last, first); });
  }
}

}  // namespace

void MatMulAvx512(const float* a, int64_t M, int64_t K, int64_t lda, const float* b, int64_t bK, int64_t N, float* c,
                  int64_t ldc) {
  MatMulBlocks<2>(a, M, K, lda, b, bK, N, c, ldc);
}

}  // namespace dsv3::cpu

#else  // built without the flags (not x86-64): the dispatcher never selects this.

namespace dsv3::cpu {
void MatMulAvx512(const float*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t) {}
}  // namespace dsv3::cpu

#endif
