// Float-activation Linear kernels with AVX-512 (compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni for this file only; linear.cc calls it after checking the CPU), and the peaks
// `dsv3 bench` measures for this family (machine_probe.h). The FP8 decode GEMV, one
// token (on AVX2 it is compute-bound below the memory bandwidth: ~16-22 GB/s a thread on Zen 5,
// where two threads can read ~60, since each 8 weights take a convert, a shift, a mask and an
// fma), and the GEMM's microkernel over its float32 panel. A 512-bit vector holds eight columns
// of two rows, so each instruction does twice the work, and every lane still runs
// linear_avx2.cc's chain (lane j of a row takes k = j mod 8, in order, then the same horizontal
// sum): the bits are GemvAvx2's and GemmAvx2's. Everything else goes to GemvAvx2.
//
// No standard-library templates or shared inline functions are used here (see linear_avx2.cc).
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <time.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/isa_common.inc"

// v in both halves, and the upper half (vinsertf64x4 / vextractf64x4: AVX512F, where the
// 32x8 forms need DQ).
inline __m512 Twice(__m256 v) {
  const __m256d d = _mm256_castps_pd(v);
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(d), d, 1));
}
inline __m256 High8(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

// Sixteen e4m3 bytes (eight columns of two rows) as float32 E4M3ToF32(q) · 2^-120, exactly
// linear_avx2.cc's Fp8Tiny: the sign to bit 31, exponent and mantissa to bits 26..20.
inline __m512 Fp8Tiny16(__m128i q) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_slli_epi32(_mm512_cvtepi8_epi32(q), 20), _mm512_set1_epi32(int32_t(0x87f00000u))));
}

constexpr int kTileRows = 8;  // four pairs of rows

// Rows [r, r + 8) (in one block of rows) against one token: out[i] is row r + i's sum, or
// false when a sum is not finite (a scaled activation may have overflowed: the caller redoes
// the tile with GemvAvx2, which falls back to the exact form). prefetch: as Fp8DotRowsWith.
bool Fp8Tile(const RawWeight& w, int64_t r, const float* x, int64_t prefetch, float* out) {
  const int64_t K = w.cols, bi = w.block_in;
  const float* scales = w.scale + (r / w.block_out) * w.scale_cols;
  const uint8_t* q[kTileRows];
  for (int i = 0; i < kTileRows; ++i) q[i] = static_cast<const uint8_t*>(w.data) + (r + i) * w.row_bytes;
  __m512 acc[kTileRows / 2];  // pair p: lanes 0-7 row 2p, lanes 8-15 row 2p+1
  for (int p = 0; p < kTileRows / 2; ++p) acc[p] = _mm512_setzero_ps();
  const char* next = reinterpret_cast<const char*>(q[0]) + prefetch;
  const int64_t steps = K / 16 > 0 ? K / 16 : 1;
  const int64_t span = ((kTileRows * w.row_bytes + steps - 1) / steps + 63) & ~int64_t{63};
  for (int64_t k0 = 0, g = 0; k0 < K; k0 += bi, ++g) {
    const int64_t k1 = k0 + bi < K ? k0 + bi : K;
    // fl(x · scale · 2^120), as Fp8Tiny::ActScale, in both halves.
    const __m256 s = _mm256_set1_ps(scales[g] * 0x1p120f);
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16) {
      if (prefetch != 0)
        for (const char* f = next + (k / 16) * span, *f_end = f + span; f < f_end; f += 64) _mm_prefetch(f, _MM_HINT_T0);
      const __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(x + k), s), x1 = _mm256_mul_ps(_mm256_loadu_ps(x + k + 8), s);
      const __m512 xlo = Twice(x0), xhi = Twice(x1);
      for (int p = 0; p < kTileRows / 2; ++p) {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[2 * p] + k));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[2 * p + 1] + k));
        acc[p] = _mm512_fmadd_ps(xlo, Fp8Tiny16(_mm_unpacklo_epi64(a, b)), acc[p]);
        acc[p] = _mm512_fmadd_ps(xhi, Fp8Tiny16(_mm_unpackhi_epi64(a, b)), acc[p]);
      }
    }
    if (k < k1) {  // block_in % 16 == 8: eight columns left in the group
      const __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(x + k), s);
      const __m512 xlo = Twice(x0);
      for (int p = 0; p < kTileRows / 2; ++p) {
        const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q[2 * p] + k));
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q[2 * p + 1] + k));
        acc[p] = _mm512_fmadd_ps(xlo, Fp8Tiny16(_mm_unpacklo_epi64(a, b)), acc[p]);
      }
    }
  }
  bool finite = true;
  for (int p = 0; p < kTileRows / 2; ++p) {
    out[2 * p] = HorizontalSum(_mm512_castps512_ps256(acc[p]));
    out[2 * p + 1] = HorizontalSum(High8(acc[p]));
    finite = finite && __builtin_isfinite(out[2 * p]) && __builtin_isfinite(out[2 * p + 1]);
  }
  return finite;
}

void Fp8Decode(const float* x, const RawWeight& w, int64_t r0, int64_t r1, float* y, bool accumulate) {
  for (int64_t r = r0; r < r1; r += kTileRows) {
    const bool whole = r + kTileRows <= r1 && r / w.block_out == (r + kTileRows - 1) / w.block_out;
    float out[kTileRows];
    if (!whole || !Fp8Tile(w, r, x, kTileRows * w.row_bytes, out)) {
      const int64_t end = r + kTileRows < r1 ? r + kTileRows : r1;
      GemvAvx2(x, 1, w.cols, w, r, end, y, 1, accumulate);
      continue;
    }
    for (int i = 0; i < kTileRows; ++i) y[r + i] = accumulate ? y[r + i] + out[i] : out[i];
  }
}

// Eight panel rows (four pairs) against N tokens: linear_avx2.cc's MicroKernel<8, N>, two rows
// per vector.
template <int N>
void Panel8(const float* wt, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, bool accumulate) {
  const int64_t K8 = K & ~int64_t{7}, Kp = (K + 7) & ~int64_t{7};
  __m512 acc[4][N];
  for (int p = 0; p < 4; ++p)
    for (int j = 0; j < N; ++j) acc[p][j] = _mm512_setzero_ps();
  const auto step = [&](int64_t k, const __m512* xv) __attribute__((always_inline)) {
    for (int p = 0; p < 4; ++p) {
      const __m512 wv = _mm512_loadu_ps(wt + 2 * p * Kp + 2 * k);  // rows 2p and 2p+1, columns [k, k+8)
      for (int j = 0; j < N; ++j) acc[p][j] = _mm512_fmadd_ps(xv[j], wv, acc[p][j]);
    }
  };
  for (int64_t k = 0; k < K8; k += 8) {
    __m512 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = Twice(_mm256_loadu_ps(x + j * ldx + k));
    step(k, xv);
  }
  if (K8 < K) {  // the panel is zero-padded; the activations past K read as zero
    __m512 xv[N];
    for (int j = 0; j < N; ++j) {
      alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = K8; i < K; ++i) buf[i - K8] = x[j * ldx + i];
      xv[j] = Twice(_mm256_load_ps(buf));
    }
    step(K8, xv);
  }
  for (int j = 0; j < N; ++j)
    for (int p = 0; p < 4; ++p) {
      float* o = y + j * ldy + 2 * p;
      const float a = HorizontalSum(_mm512_castps512_ps256(acc[p][j])), b = HorizontalSum(High8(acc[p][j]));
      o[0] = accumulate ? o[0] + a : a;
      o[1] = accumulate ? o[1] + b : b;
    }
}

#include "engine/kernels/cpu/peak_chains.inc"

}  // namespace

double FmaPeakFlopsAvx512(double seconds) {
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  const auto fma = [&](__m512 v) __attribute__((always_inline)) { return _mm512_fmadd_ps(v, a, b); };
  return ChainsPerSecond(seconds, _mm512_set1_ps(1e-3f), fma) * 16 * 2;  // 16 lanes, 2 FLOPs each
}

double Int8PeakOpsAvx512(double seconds) {
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  const auto dot = [&](__m512i v) __attribute__((always_inline)) { return _mm512_dpbusd_epi32(v, a, b); };
  return ChainsPerSecond(seconds, _mm512_set1_epi32(1), dot) * 64 * 2;  // 64 byte products, 2 ops each
}

void GemmPanel8Avx512(const float* wt, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                      bool accumulate) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) Panel8<4>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
  switch (T - t) {
    case 3: Panel8<3>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate); break;
    case 2: Panel8<2>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate); break;
    case 1: Panel8<1>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate); break;
    default: break;
  }
}

void GemvAvx512(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                int64_t ldy, bool accumulate) {
  if (w.kind == WeightKind::kF8E4M3 && T == 1 && w.cols % 8 == 0 && w.block_in % 8 == 0) {
    Fp8Decode(x, w, r0, r1, y, accumulate);
    return;
  }
  GemvAvx2(x, T, ldx, w, r0, r1, y, ldy, accumulate);
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects this.

namespace dsv3::cpu {
void GemvAvx512(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool) {}
void GemmPanel8Avx512(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool) {}
double FmaPeakFlopsAvx512(double) { return 0.0; }
double Int8PeakOpsAvx512(double) { return 0.0; }
}  // namespace dsv3::cpu

#endif
