// BF16 and FP8 weights times bf16 activations with AVX-512 BF16 (compiled with -mavx512bf16 and
// the avx512 family's flags for this file only; linear.cc calls it after checking the CPU). One
// vdpbf16ps multiplies 32 weights of a row by 32 activations and adds them, two per lane, into
// sixteen float32 lanes: twice an FMA's work, on the weights as the checkpoint stores them (no
// float32 copy, half the bytes of the float GEMM's panel). Every (row, token) runs the chain
// linear_kernels.h states, whatever the tile and token count, so these are the bits of the
// scalar twin (linear_bf16.cc) for decode and prefill alike. FP8 rows become bf16 exactly
// (Fp8ToBf16): in registers for a decode step's few tokens, else into a 16-row panel first; in
// registers by byte permutes (Fp8TileBytes, a function compiled for avx512vbmi alone) where the
// CPU has VBMI.
//
// Tiles of six rows and four tokens: 24 accumulators, ten loads per 24 instructions (four rows,
// eight per sixteen: 288-296 against 327-376 GFLOP/s a thread from L2, K 1536, 48 tokens). The
// rows of a piece meet the tokens a block at a time (the block's activations stay in L2; the six
// rows' 18 KB, for K = 1536, in L1 while every token of the block passes). One token takes
// eight rows at a time.
//
// No standard-library templates or shared inline functions are used here (see linear_kernels.h).
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512BF16__)
#include <immintrin.h>

#include <time.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/isa_common.inc"

// ((l0 + l8) + (l4 + l12)) + ... as linear_kernels.h orders it: l[i] + l[i+8], then the float
// kernels' eight-lane sum.
inline float LaneSum(__m512 v) {
  return HorizontalSum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

// LaneSum of four vectors at once, the same additions in the same order: [sum a, sum b,
// sum c, sum d] (13 instructions where four LaneSums take 32).
inline __m128 LaneSum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // h = l[i] + l[i+8]: a's and b's side by side, then c's and d's.
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
  // q = h[i] + h[i+4]: one 128-bit block each for a, b, c, d.
  const __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
  const __m512 f = _mm512_add_ps(q, _mm512_permute_ps(q, 0x4e));  // q0 + q2, q1 + q3
  const __m512 g = _mm512_add_ps(f, _mm512_permute_ps(f, 0xb1));  // (q0 + q2) + (q1 + q3)
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), g));
}

// y[j, i] (+)= the lane sum of acc[i][j]; four tokens' sums of a row at once.
template <int R, int N>
void StoreSums(__m512 (&acc)[R][N], float* y, int64_t ldy, bool accumulate) {
  if constexpr (N == 4) {
    for (int i = 0; i < R; ++i) {
      alignas(16) float s[4];
      _mm_store_ps(s, LaneSum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
      for (int j = 0; j < 4; ++j) y[j * ldy + i] = accumulate ? y[j * ldy + i] + s[j] : s[j];
    }
  } else {
    for (int j = 0; j < N; ++j)
      for (int i = 0; i < R; ++i) {
        const float s = LaneSum(acc[i][j]);
        y[j * ldy + i] = accumulate ? y[j * ldy + i] + s : s;
      }
  }
}

inline __m512bh Bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// How far ahead a decode step's tiles fetch each row as they read it (FetchRowsAhead): fetching
// the same column of the next tile's rows, 24 KB on for
// eight rows of 1536, had run too far for L1. bench-v3-mini tg64 with --activations bf16, 2
// threads, alternated with the old binary: BF16 44.5 / 43.7 / 44.8 -> 45.8 / 45.6 / 46.6 tok/s,
// FP8 (Fp8Tile) 54.5 / 56.7 / 54.6 -> 56.8 / 57.1 / 58.8.
constexpr int64_t kRowAhead = 1024;
// Sixteen-row FP8 tiles (Fp8TileBytes) fetch half as far, the same bytes in flight (as
// linear_avx512.cc's kTileAhead16).
constexpr int64_t kRowAhead16 = 512;

// Rows w[0..R) (K columns each) against tokens x[0..N) (rows Kh apart, zero-padded).
// prefetch: bytes from a row to the row read after this tile's (0: none). Each 64 bytes read
// of rows [f0, f1) fetch the line as far ahead, so the next rows stream in spread over this
// pass; or, ahead, each row's line kRowAhead bytes on (FetchRowsAhead).
template <int R, int N>
void Tile(const uint16_t* const* w, int64_t K, const uint16_t* x, int64_t Kh, float* y, int64_t ldy, bool accumulate,
          int64_t prefetch, bool ahead = false, int f0 = 0, int f1 = R) {
  __m512 acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t K32 = K & ~int64_t{31};
  const auto step = [&](int64_t k, bool fetch) __attribute__((always_inline)) {
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = Bh(_mm512_loadu_si512(x + j * Kh + k));
    if (fetch && ahead) FetchRowsAhead(w, R, 2 * k, kRowAhead, 2 * K, prefetch);  // a step is 64 bytes a row
    for (int i = 0; i < R; ++i) {
      if (fetch && !ahead && i >= f0 && i < f1) _mm_prefetch(reinterpret_cast<const char*>(w[i] + k) + prefetch, _MM_HINT_T0);
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
  StoreSums(acc, y, ldy, accumulate);
}

// Tokens [0, T) against rows w[0..R), four at a time; each pass of four fetches a share of the
// next rows (prefetch as in Tile; the first pass had fetched them all, a burst of 18 KB at
// K = 1536). Without it a tile's first pass over its rows waited on DRAM.
template <int R>
void Tokens(const uint16_t* const* w, int64_t K, const uint16_t* x, int64_t Kh, int64_t T, float* y, int64_t ldy,
            bool accumulate, int64_t prefetch) {
  const int groups = static_cast<int>((T + 3) / 4);
  for (int64_t t = 0; t < T; t += 4) {
    int f0, f1;
    FetchShare(R, static_cast<int>(t / 4), groups, &f0, &f1);
    const int64_t fetch = f1 > f0 ? prefetch : 0;
    switch (T - t < 4 ? T - t : 4) {
      case 4: Tile<R, 4>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch, false, f0, f1); break;
      case 3: Tile<R, 3>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch, false, f0, f1); break;
      case 2: Tile<R, 2>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch, false, f0, f1); break;
      default: Tile<R, 1>(w, K, x + t * Kh, Kh, y + t * ldy, ldy, accumulate, fetch, false, f0, f1); break;
    }
  }
}

// Tokens<R> for the n rows (1..6) of a six-row tile.
void SixRowsTokens(int n, const uint16_t* const* w, int64_t K, const uint16_t* x, int64_t Kh, int64_t T, float* y,
                   int64_t ldy, bool accumulate, int64_t prefetch) {
  switch (n) {
    case 6: Tokens<6>(w, K, x, Kh, T, y, ldy, accumulate, prefetch); break;
    case 5: Tokens<5>(w, K, x, Kh, T, y, ldy, accumulate, prefetch); break;
    case 4: Tokens<4>(w, K, x, Kh, T, y, ldy, accumulate, prefetch); break;
    case 3: Tokens<3>(w, K, x, Kh, T, y, ldy, accumulate, prefetch); break;
    case 2: Tokens<2>(w, K, x, Kh, T, y, ldy, accumulate, prefetch); break;
    default: Tokens<1>(w, K, x, Kh, T, y, ldy, accumulate, prefetch); break;
  }
}

// Masks of sixteen floats' loads for columns [k, k + 16) and [k + 16, k + 32) of K.
inline void HalfMasks(int64_t k, int64_t K, __mmask16* lo, __mmask16* hi) {
  const int64_t left = K - k;
  *lo = left >= 16 ? 0xffff : left > 0 ? static_cast<__mmask16>((1u << left) - 1) : 0;
  *hi = left >= 32 ? 0xffff : left > 16 ? static_cast<__mmask16>((1u << (left - 16)) - 1) : 0;
}

// 32 e4m3 bytes as bf16 u = e4m3 · 2^-8, exactly. In integers
// (vcvtph2ps and vcvtne2ps2bf16 held a decode step to ~7 bytes a cycle): a normal byte's
// exponent and mantissa bits, shifted into bf16's, with the exponent bias moved from 7 to
// 127 - 8; a subnormal one (exponent 0: m · 2^-9, and zero) from an eight-entry table; then
// the sign. 0x7f reads as 480 · 2^-8, as in Fp8Format.
inline __m512bh Fp8BytesToBf16(__m256i bytes) {
  const __m512i b = _mm512_cvtepu8_epi16(bytes);
  const __m512i mag = _mm512_and_si512(b, _mm512_set1_epi16(0x7f));
  const __m512i normal = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16((127 - 8 - 7) << 7));
  // bf16 of m · 2^-17 for m = 0..7 (entries 8..31 unused).
  const __m512i table = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0x3860, 0x3840, 0x3820, 0x3800, 0x37c0, 0x3780, 0x3700, 0x0000);
  const __m512i value = _mm512_mask_permutexvar_epi16(normal, _mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8)), mag, table);
  const __m512i sign = _mm512_slli_epi16(_mm512_and_si512(b, _mm512_set1_epi16(0x80)), 8);
  return Bh(_mm512_or_si512(value, sign));
}
// Whole 32 bytes; m: the first bytes of a row's last, shorter step (masked byte loads are slow
// here: only the tail takes one).
inline __m512bh Fp8ToBf16(const uint8_t* q) {
  return Fp8BytesToBf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
}
inline __m512bh Fp8ToBf16(const uint8_t* q, __mmask32 m) { return Fp8BytesToBf16(_mm256_maskz_loadu_epi8(m, q)); }

// Tile for FP8 rows q[0..R) (adjacent, row_bytes apart) converted in registers (a decode
// step's few tokens: no panel to write and read back). Each row's line kRowAhead bytes on is
// fetched as the row is read, and at its end the next tile's first lines, as linear_avx512.cc's
// FP8 GEMV does (the next R rows fetched front to back, a share before each step, ran too far
// ahead).
template <int R, int N>
void Fp8Tile(const uint8_t* const* q, int64_t K, int64_t row_bytes, const uint16_t* x, int64_t Kh, float* y,
             int64_t ldy, bool accumulate) {
  __m512 acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t K32 = K & ~int64_t{31};
  const auto step = [&](int64_t k, bool whole) __attribute__((always_inline)) {
    if ((k & 63) < 32) FetchRowsAhead(q, R, k, kRowAhead, row_bytes, R * row_bytes);  // per 64 bytes of a row
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (K - k < 32 ? K - k : 0)) - 1);
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = Bh(_mm512_loadu_si512(x + j * Kh + k));
    for (int i = 0; i < R; ++i) {
      const __m512bh wv = whole ? Fp8ToBf16(q[i] + k) : Fp8ToBf16(q[i] + k, m);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv, xv[j]);
    }
  };
  for (int64_t k = 0; k < K32; k += 32) step(k, true);
  if (K32 < K) step(K32, false);
  StoreSums(acc, y, ldy, accumulate);
}

// Fp8BytesToBf16's values as two tables of 128 bytes, indexed by a byte's low seven bits: each
// magnitude's bf16 high byte (sign clear) and low byte, u = e4m3 · 2^-8 exactly. Normal: the
// exponent field E + 127 - 8 - 7, the mantissa's three bits on top of bf16's seven; subnormal
// (E = 0: m · 2^-17): normalized at m's leading bit.
struct Fp8Bf16Tables {
  alignas(64) uint8_t high[128];
  alignas(64) uint8_t low[128];
};
constexpr Fp8Bf16Tables MakeFp8Bf16Tables() {
  Fp8Bf16Tables t{};
  for (int mag = 0; mag < 128; ++mag) {
    const int e = mag >> 3, m = mag & 7;
    int bits = 0;
    if (e > 0) {
      bits = ((e + 112) << 7) | (m << 4);
    } else if (m > 0) {
      const int lead = m >= 4 ? 2 : m >= 2 ? 1 : 0;
      bits = ((lead + 110) << 7) | ((m ^ (1 << lead)) << (7 - lead));
    }
    t.high[mag] = static_cast<uint8_t>(bits >> 8);
    t.low[mag] = static_cast<uint8_t>(bits & 0xff);
  }
  return t;
}
constexpr Fp8Bf16Tables kFp8Bf16Tables = MakeFp8Bf16Tables();

// The interleave of Fp8TileBytes: output word j is (low[j], high[j]) for bytes j = 0..31 of the
// tables' outputs (the first row), or for bytes 32 + j (the second).
struct Fp8Bf16Interleave {
  alignas(64) uint8_t index[2][64];
};
constexpr Fp8Bf16Interleave MakeFp8Bf16Interleave() {
  Fp8Bf16Interleave v{};
  for (int half = 0; half < 2; ++half)
    for (int j = 0; j < 32; ++j) {
      v.index[half][2 * j] = static_cast<uint8_t>(32 * half + j);           // the low byte's table output
      v.index[half][2 * j + 1] = static_cast<uint8_t>(64 + 32 * half + j);  // the high byte's
    }
  return v;
}
constexpr Fp8Bf16Interleave kFp8Bf16Interleave = MakeFp8Bf16Interleave();

// Fp8Tile for an even R on a CPU with VBMI: the same tile, two rows' 32 bytes converted together
// by byte permutes, where Fp8BytesToBf16 spends nine instructions on each row's 32: a 128-byte
// table lookup for the high bytes (the sign ORed back in) and one for the low bytes, then two
// permutes that interleave them into each row's 32 bf16 words. The same words, so the same bits.
// A row's last, shorter step converts as Fp8Tile's does. One token takes sixteen rows a tile.
// On the Zen 5, one thread from L2, alternated builds: 512 x 1536 28-30 -> 49-50 GB/s, four
// tokens of 16384 x 1536 15-17 -> 20-25; bench-v3-mini-fp8-h tg64 --activations bf16, 2
// threads, alternated: eight-row tiles 79-88 tok/s (Fp8Tile's 82-86), sixteen rows 512 B ahead
// 83-98 (MoE 5.4-5.96 -> 4.67-5.56 ms a token).
template <int R, int N>
__attribute__((noinline, target("avx512vbmi"))) void Fp8TileBytes(const uint8_t* const* q, int64_t K, int64_t row_bytes,
                                                                  const uint16_t* x, int64_t Kh, float* y, int64_t ldy,
                                                                  bool accumulate) {
  static_assert(R % 2 == 0, "rows go in pairs");
  const __m512i high0 = _mm512_load_si512(kFp8Bf16Tables.high), high1 = _mm512_load_si512(kFp8Bf16Tables.high + 64);
  const __m512i low0 = _mm512_load_si512(kFp8Bf16Tables.low), low1 = _mm512_load_si512(kFp8Bf16Tables.low + 64);
  const __m512i first = _mm512_load_si512(kFp8Bf16Interleave.index[0]);
  const __m512i second = _mm512_load_si512(kFp8Bf16Interleave.index[1]);
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t K32 = K & ~int64_t{31};
  for (int64_t k = 0; k < K32; k += 32) {
    // Per 64 bytes of a row.
    if ((k & 63) < 32) FetchRowsAhead(q, R, k, R == 16 ? kRowAhead16 : kRowAhead, row_bytes, R * row_bytes);
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = Bh(_mm512_loadu_si512(x + j * Kh + k));
    for (int i = 0; i < R; i += 2) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[i] + k));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[i + 1] + k));
      const __m512i bytes = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
      // high | (bytes & 0x80): the sign back on the magnitude's high byte.
      const __m512i high = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(high0, bytes, high1), bytes, sign, 0xf8);
      const __m512i low = _mm512_permutex2var_epi8(low0, bytes, low1);
      const __m512bh wa = Bh(_mm512_permutex2var_epi8(low, first, high));
      const __m512bh wb = Bh(_mm512_permutex2var_epi8(low, second, high));
      for (int j = 0; j < N; ++j) {
        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wa, xv[j]);
        acc[i + 1][j] = _mm512_dpbf16_ps(acc[i + 1][j], wb, xv[j]);
      }
    }
  }
  if (K32 < K) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << (K - K32)) - 1);
    __m512bh xv[N];
    for (int j = 0; j < N; ++j) xv[j] = Bh(_mm512_loadu_si512(x + j * Kh + K32));
    for (int i = 0; i < R; ++i) {
      const __m512bh wv = Fp8ToBf16(q[i] + K32, m);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv, xv[j]);
    }
  }
  StoreSums(acc, y, ldy, accumulate);
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
      Tile<8, 1>(rows, K, xh, Kh, y + r, ldy, accumulate, r + 16 <= r1 ? 8 * w.row_bytes : 0, true);
    }
    for (; r < r1; ++r) {
      const uint16_t* row = reinterpret_cast<const uint16_t*>(base + r * w.row_bytes);
      Tile<1, 1>(&row, K, xh, Kh, y + r, ldy, accumulate, 0);
    }
    return;
  }
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t nt = T - t0 < block ? T - t0 : block;
    for (int64_t r = r0; r < r1;) {
      const uint16_t* rows[kBf16TileRows];
      const int n = static_cast<int>(r1 - r < kBf16TileRows ? r1 - r : kBf16TileRows);
      for (int i = 0; i < kBf16TileRows; ++i)
        rows[i] = reinterpret_cast<const uint16_t*>(base + (r + (i < n ? i : 0)) * w.row_bytes);
      const uint16_t* xb = xh + t0 * Kh;
      float* yb = y + t0 * ldy + r;
      r += n;
      // Whole tiles fetch the next tile's rows, past r1 too: LinearJobs hands a thread a matrix's
      // pieces in order, so those are most often its next piece's first (as GemmAvx2WithScratch's
      // last panel does). BM_MoePrefillStep BF16 x bf16, alternated: 524-542 -> 587-623 GFLOP/s
      // with the share per pass above.
      const int64_t prefetch = n == kBf16TileRows && r + kBf16TileRows <= w.rows ? kBf16TileRows * w.row_bytes : 0;
      SixRowsTokens(n, rows, K, xb, Kh, nt, yb, ldy, accumulate, prefetch);
    }
  }
}

void Fp8Bf16LinearAvx512(const float* x, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                         int64_t ldy, bool accumulate, uint16_t* scratch, bool byte_permutes) {
  const int64_t K = w.cols, Kh = Bf16ActCols(K), bi = w.block_in;
  uint16_t* xs = scratch;                // [T, Kh]: this row block's scaled activations
  uint16_t* panel = scratch + T * Kh;    // [kFp8Bf16PanelRows, Kh]: rows as bf16
  for (int64_t b0 = r0; b0 < r1;) {
    const int64_t rb = b0 / w.block_out, b1 = (rb + 1) * w.block_out < r1 ? (rb + 1) * w.block_out : r1;
    // x · (scale · 256), sixteen columns (one scale group: bi % 16 == 0) at a time, rounded.
    const float* scales = w.scale + rb * w.scale_cols;
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t k = 0; k < Kh; k += 32) {
        __mmask16 lo, hi;
        HalfMasks(k, K, &lo, &hi);
        const __m512 s0 = _mm512_set1_ps(scales[k / bi] * 256.0f);
        const __m512 s1 = _mm512_set1_ps(scales[(k + 16 < K ? k + 16 : k) / bi] * 256.0f);
        const __m512 a = _mm512_mul_ps(_mm512_maskz_loadu_ps(lo, x + t * K + k), s0);
        const __m512 b = _mm512_mul_ps(_mm512_maskz_loadu_ps(hi, x + t * K + k + 16), s1);
        _mm512_storeu_si512(xs + t * Kh + k, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a)));
      }
    }
    if (T <= 4) {  // rows converted in registers, eight, four or one at a time
      const char* base = static_cast<const char*>(w.data);
      int64_t r = b0;
      const auto rows_at = [&](int64_t r_first, int count, const uint8_t** q) {
        for (int i = 0; i < count; ++i) q[i] = reinterpret_cast<const uint8_t*>(base + (r_first + i) * w.row_bytes);
      };
      const uint8_t* q[16];
      const int64_t bytes = w.row_bytes;
      if (T == 1 && byte_permutes) {  // sixteen row streams, as the float GEMV's FP8 tiles
        for (; r + 16 <= b1; r += 16) {
          rows_at(r, 16, q);
          Fp8TileBytes<16, 1>(q, K, bytes, xs, Kh, y + r, ldy, accumulate);
        }
      }
      if (T == 1) {
        for (; r + 8 <= b1; r += 8) {
          rows_at(r, 8, q);
          if (byte_permutes) {
            Fp8TileBytes<8, 1>(q, K, bytes, xs, Kh, y + r, ldy, accumulate);
          } else {
            Fp8Tile<8, 1>(q, K, bytes, xs, Kh, y + r, ldy, accumulate);
          }
        }
      }
      for (; r + 4 <= b1; r += 4) {  // (more tokens: four rows, sixteen accumulators at most)
        rows_at(r, 4, q);
        if (byte_permutes) {
          switch (T) {
            case 1: Fp8TileBytes<4, 1>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
            case 2: Fp8TileBytes<4, 2>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
            case 3: Fp8TileBytes<4, 3>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
            default: Fp8TileBytes<4, 4>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
          }
          continue;
        }
        switch (T) {
          case 1: Fp8Tile<4, 1>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
          case 2: Fp8Tile<4, 2>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
          case 3: Fp8Tile<4, 3>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
          default: Fp8Tile<4, 4>(q, K, bytes, xs, Kh, y + r, ldy, accumulate); break;
        }
      }
      for (; r < b1; ++r) {
        rows_at(r, 1, q);
        for (int64_t t = 0; t < T; ++t) Fp8Tile<1, 1>(q, K, bytes, xs + t * Kh, Kh, y + t * ldy + r, ldy, accumulate);
      }
      b0 = b1;
      continue;
    }
    for (int64_t p0 = b0; p0 < b1; p0 += kFp8Bf16PanelRows) {
      const int64_t n = b1 - p0 < kFp8Bf16PanelRows ? b1 - p0 : kFp8Bf16PanelRows;
      // Rows as bf16 (Fp8ToBf16). The next panel's rows are fetched as these are read.
      const int64_t ahead = kFp8Bf16PanelRows * w.row_bytes;
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* q = static_cast<const uint8_t*>(w.data) + (p0 + i) * w.row_bytes;
        for (int64_t k = 0; k < Kh; k += 32) {
          if (k % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(q + k) + ahead, _MM_HINT_T0);
          const __m512bh v = K - k >= 32 ? Fp8ToBf16(q + k)
                                         : Fp8ToBf16(q + k, static_cast<__mmask32>((uint64_t{1} << (K - k)) - 1));
          _mm512_storeu_si512(panel + i * Kh + k, reinterpret_cast<__m512i>(v));
        }
      }
      const uint16_t* rows[kBf16TileRows];
      for (int64_t r = 0; r < n; r += kBf16TileRows) {
        const int m = static_cast<int>(n - r < kBf16TileRows ? n - r : kBf16TileRows);
        for (int i = 0; i < kBf16TileRows; ++i) rows[i] = panel + (r + (i < m ? i : 0)) * Kh;
        SixRowsTokens(m, rows, Kh, xs, Kh, T, y + p0 + r, ldy, accumulate, 0);
      }
    }
    b0 = b1;
  }
}

void RoundActsToBf16Avx512(const float* x, int64_t K, uint16_t* out) {
  // vcvtne2ps2bf16 rounds as RoundToBf16 does (to nearest even, subnormals to zero, NaN quieted).
  const int64_t Kh = Bf16ActCols(K);
  for (int64_t k = 0; k < Kh; k += 32) {
    __mmask16 lo, hi;
    HalfMasks(k, K, &lo, &hi);
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
void Fp8Bf16LinearAvx512(const float*, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool, uint16_t*, bool) {}
double Bf16PeakFlopsAvx512(double) { return 0.0; }
}  // namespace dsv3::cpu
#endif
