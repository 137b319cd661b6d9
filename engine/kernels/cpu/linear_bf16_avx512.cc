// BF16 weights times bf16 activations with AVX-512 BF16 (compiled with -mavx512bf16 and the
// avx512 family's flags for this file only; linear.cc calls it after checking the CPU). One
// vdpbf16ps multiplies 32 weights of a row by 32 activations and adds them, two per lane, into
// sixteen float32 lanes: twice an FMA's work, on the weights as the checkpoint stores them (no
// float32 copy, half the bytes of the float GEMM's panel). Every (row, token) runs the chain
// linear_kernels.h states, whatever the tile and token count, so these are the bits of the
// scalar twin (linear_bf16.cc) for decode and prefill alike.
//
// Tiles of four rows and four tokens: sixteen accumulators, eight loads per sixteen
// instructions. The rows of a piece meet the tokens a block at a time (the block's activations
// stay in L2; the four rows' 12 KB, for K = 1536, in L1 while every token of the block passes).
//
// No standard-library templates or shared inline functions are used here (see linear_kernels.h).
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512BF16__)
#include <immintrin.h>

#include <time.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

// ((l0 + l8) + (l4 + l12)) + ... as linear_kernels.h orders it.
inline float LaneSum(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  const __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

inline __m512bh Bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// Rows w[0..R) (K columns each) against tokens x[0..N) (rows Kh apart, zero-padded).
// prefetch: bytes from a row to the row read after this tile's (0: none); each 64 bytes read
// fetch the line as far ahead, so the next rows stream in spread over this pass.
template <int R, int N>
void Tile(const uint16_t* const* w, int64_t K, const uint16_t* x, int64_t Kh, float* y, int64_t ldy, bool accumulate,
          int64_t prefetch) {
  __m512 acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t K32 = K & ~int64_t{31};
  const auto step = [&](int64_t k, bool fetch) __attribute__((always_inline)) {
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = Bh(_mm512_loadu_si512(x + j * Kh + k));
    for (int i = 0; i < R; ++i) {
      if (fetch) _mm_prefetch(reinterpret_cast<const char*>(w[i] + k) + prefetch, _MM_HINT_T0);
      const __m512bh wv = Bh(_mm512_loadu_si512(w[i] + k));
      for (int j = 0; j < N; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv, xv[j]);
    }
  };
  if (prefetch != 0) {
    for (int64_t k = 0; k < K32; k += 32) step(k, true);
  } else {
    for (int64_t k = 0; k < K32; k += 32) step(k, false);
  }
  if (K32 < K) {  // the row's last columns; the activations past K are zeros
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (K - K32)) - 1);
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = Bh(_mm512_loadu_si512(x + j * Kh + K32));
    for (int i = 0; i < R; ++i) {
      const __m512bh wv = Bh(_mm512_maskz_loadu_epi16(m, w[i] + K32));
      for (int j = 0; j < N; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv, xv[j]);
    }
  }
  for (int j = 0; j < N; ++j)
    for (int i = 0; i < R; ++i) {
      float& out = y[j * ldy + i];
      const float s = LaneSum(acc[i][j]);
      out = accumulate ? out + s : s;
    }
}

// Tokens [0, T) against rows w[0..R), four at a time; the first four fetch the next rows
// (prefetch as in Tile). Without it a tile's first pass over its rows waited on DRAM.
template <int R>
void Tokens(const uint16_t* const* w, int64_t K, const uint16_t* x, int64_t Kh, int64_t T, float* y, int64_t ldy,
            bool accumulate, int64_t prefetch) {
  for (int64_t t = 0; t < T; t += 4) {
    const int64_t fetch = t == 0 ? prefetch : 0;
    switch (T - t < 4 ? T - t : 4) {
      case 4: Tile<R, 4>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch); break;
      case 3: Tile<R, 3>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch); break;
      case 2: Tile<R, 2>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch); break;
      default: Tile<R, 1>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch); break;
    }
  }
}

#include "engine/kernels/cpu/peak_chains.inc"

}  // namespace

void Bf16LinearAvx512(const uint16_t* xh, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                      int64_t ldy, bool accumulate) {
  const int64_t K = w.cols, Kh = Bf16ActCols(K);
  // Tokens a block: about 256 KiB of activations, a multiple of the tile's four.
  int64_t block = (256 * 1024) / (Kh * 2) / 4 * 4;
  if (block < 4) block = 4;
  const char* base = static_cast<const char*>(w.data);
  // One token: tiles of eight rows (eight row streams in flight; four reached ~0.8 of the
  // float32 GEMV's bandwidth from DRAM).
  if (T == 1) {
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
      const uint16_t* rows[8];
      for (int i = 0; i < 8; ++i) rows[i] = reinterpret_cast<const uint16_t*>(base + (r + i) * w.row_bytes);
      Tile<8, 1>(rows, K, xh, Kh, y + r, ldy, accumulate, r + 16 <= r1 ? 8 * w.row_bytes : 0);
    }
    for (; r < r1; ++r) {
      const uint16_t* row = reinterpret_cast<const uint16_t*>(base + r * w.row_bytes);
      Tile<1, 1>(&row, K, xh, Kh, y + r, ldy, accumulate, 0);
    }
    return;
  }
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t nt = T - t0 < block ? T - t0 : block;
    for (int64_t r = r0; r < r1; r += 4) {
      const uint16_t* rows[4];
      const int n = static_cast<int>(r1 - r < 4 ? r1 - r : 4);
      for (int i = 0; i < 4; ++i)
        rows[i] = reinterpret_cast<const uint16_t*>(base + (r + (i < n ? i : 0)) * w.row_bytes);
      const uint16_t* xb = xh + t0 * Kh;
      float* yb = y + t0 * ldy + r;
      // Whole tiles fetch the next tile's rows (none past r1); a short one is the last.
      const int64_t prefetch = n == 4 && r + 8 <= r1 ? 4 * w.row_bytes : 0;
      switch (n) {
        case 4: Tokens<4>(rows, K, xb, Kh, nt, yb, ldy, accumulate, prefetch); break;
        case 3: Tokens<3>(rows, K, xb, Kh, nt, yb, ldy, accumulate, 0); break;
        case 2: Tokens<2>(rows, K, xb, Kh, nt, yb, ldy, accumulate, 0); break;
        default: Tokens<1>(rows, K, xb, Kh, nt, yb, ldy, accumulate, 0); break;
      }
    }
  }
}

void RoundActsToBf16Avx512(const float* x, int64_t K, uint16_t* out) {
  // vcvtne2ps2bf16 rounds as RoundToBf16 does (to nearest even, subnormals to zero, NaN quieted).
  const int64_t Kh = Bf16ActCols(K);
  for (int64_t k = 0; k < Kh; k += 32) {
    const int64_t left = K - k;
    const __mmask16 lo = left >= 16 ? 0xffff : left > 0 ? static_cast<__mmask16>((1u << left) - 1) : 0;
    const __mmask16 hi = left >= 32 ? 0xffff : left > 16 ? static_cast<__mmask16>((1u << (left - 16)) - 1) : 0;
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + k + 16), _mm512_maskz_loadu_ps(lo, x + k));
    _mm512_storeu_si512(out + k, reinterpret_cast<__m512i>(v));
  }
}

double Bf16PeakFlopsAvx512(double seconds) {
  const __m512bh a = Bh(_mm512_set1_epi16(0x3f80)), b = Bh(_mm512_set1_epi16(0x3c00));  // 1.0, 2^-7
  const auto dot = [&](__m512 v) __attribute__((always_inline)) { return _mm512_dpbf16_ps(v, a, b); };
  return ChainsPerSecond(seconds, _mm512_set1_ps(1.0f), dot) * 16 * 4;  // 16 lanes, 2 products + 2 adds each
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects this.

namespace dsv3::cpu {
void Bf16LinearAvx512(const uint16_t*, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool) {}
void RoundActsToBf16Avx512(const float*, int64_t, uint16_t*) {}
double Bf16PeakFlopsAvx512(double) { return 0.0; }
}  // namespace dsv3::cpu
#endif
