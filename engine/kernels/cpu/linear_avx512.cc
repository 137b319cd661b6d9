// Float-activation Linear kernels with AVX-512 (compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512vnni for this file only; linear.cc calls it after checking the CPU), and the peaks
// `dsv3 bench` measures for this family (machine_probe.h). The FP8 decode GEMV, one token or
// a batch's few (on AVX2 it is compute-bound below the memory bandwidth: ~16-22 GB/s a thread
// on Zen 5, where two threads can read ~60, since each 8 weights take a convert, a shift, a
// mask and an fma), and the GEMM's microkernel over its float32 panel. A 512-bit vector holds
// eight columns of two rows, so each instruction does twice the work, and every lane still runs
// linear_avx2.cc's chain (lane j of a row takes k = j mod 8, in order, then the same horizontal
// sum): the bits are GemvAvx2's and GemmAvx2's. Everything else goes to GemvAvx2. Also decode's
// rows of kv_b in place of attention's keys and values (WeightRowScores, WeightRowsWeightedSum),
// with the bits of their AVX2 forms. Where the CPU has VBMI as well (Ice Lake, Zen 4 and
// later), the FP8 GEMV converts with byte permutes (DecodeTileFp8Bytes, a function compiled for
// avx512vbmi alone; GemvAvx512's byte_permutes says whether to call it).
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
#include "engine/kernels/cpu/isa_avx512.inc"

// Sixteen e4m3 bytes (eight columns of two rows) as float32 E4M3ToF32(q) · 2^-120, exactly
// linear_avx2.cc's Fp8Tiny: the sign to bit 31, exponent and mantissa to bits 26..20.
inline __m512 Fp8Tiny16(__m128i q) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_slli_epi32(_mm512_cvtepi8_epi32(q), 20), _mm512_set1_epi32(int32_t(0x87f00000u))));
}

constexpr int kTileRows = 8;  // four pairs of rows
// How far ahead each row is fetched as it is read (FetchRowsAhead). The next tile fetched front
// to back instead (12 KB ahead for K = 1536, 56 KB for DeepSeek-V3's 7168) had run too far
// ahead for L1: the lm_head's 129,280 x 1536 from
// DRAM, 2 threads, interleaved, 42-46 -> 56-58 GB/s (512 bytes ahead: 49-52); 24 matrices of 4
// MB, K = 1536 45-50 -> 55-57, K = 7168 50-54 -> 57-58, K = 18432 46 -> 55.
constexpr int64_t kTileAhead = 1024;

// A decode tile's row sums from its accumulators (pair p: lanes 0-7 row 2p, lanes 8-15 row
// 2p+1): out[R·t + i] is row i's sum for token t. FP8 (kCheck): false when a sum is not finite.
template <bool kCheck, int R, int N>
inline bool TileSums(const __m512 (&acc)[N][R / 2], float* out) {
  bool finite = true;
  for (int t = 0; t < N; ++t)
    for (int p = 0; p < R / 2; ++p) {
      float* o = out + t * R + 2 * p;
      o[0] = HorizontalSum(Low8(acc[t][p]));
      o[1] = HorizontalSum(High8(acc[t][p]));
      if constexpr (kCheck) finite = finite && __builtin_isfinite(o[0]) && __builtin_isfinite(o[1]);
    }
  return finite;
}

// Rows [r, r + 8) against N tokens (x: token t's activations at x + t·ldx): out[8t + i] is row
// r + i's sum for token t, GemvAvx2's (each lane's chain over k = j mod 8 in order, then
// HorizontalSum). Each sixteen weights are converted once for the N tokens; every token's
// chains are a one-token tile's. FP8 (kFp8; the rows in one block of rows): e4m3 as
// Fp8Tiny16 against the activations scaled per group, false when a sum is not finite (a scaled
// activation may have overflowed: the caller redoes the tile with GemvAvx2, which falls back
// to the exact form). BF16: widened by a shift, the row one group. next: bytes from a row to
// the same row of the next tile, whose first lines to fetch (0: none).
// A call of its own (not inlined into TileDecode: inlined, the one-token tile ran ~8% slower).
template <bool kFp8, int N>
__attribute__((noinline)) bool DecodeTile(const RawWeight& w, int64_t r, const float* x, int64_t ldx, int64_t next,
                                          float* out) {
  constexpr int64_t kBytes = kFp8 ? 1 : 2;  // a weight's
  const int64_t K = w.cols, bi = kFp8 ? w.block_in : K;
  const float* scales = kFp8 ? w.scale + (r / w.block_out) * w.scale_cols : nullptr;
  const uint8_t* q[kTileRows];
  for (int i = 0; i < kTileRows; ++i) q[i] = static_cast<const uint8_t*>(w.data) + (r + i) * w.row_bytes;
  const auto widen = [](__m256i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)); };
  __m512 acc[N][kTileRows / 2];  // pair p: lanes 0-7 row 2p, lanes 8-15 row 2p+1
  for (int t = 0; t < N; ++t)
    for (int p = 0; p < kTileRows / 2; ++p) acc[t][p] = _mm512_setzero_ps();
  for (int64_t k0 = 0, g = 0; k0 < K; k0 += bi, ++g) {
    const int64_t k1 = k0 + bi < K ? k0 + bi : K;
    // FP8: fl(x · scale · 2^120), as Fp8Tiny::ActScale, in both halves; BF16: x.
    const __m256 s = _mm256_set1_ps(kFp8 ? scales[g] * 0x1p120f : 1.0f);
    const auto act = [&](const float* p) { return kFp8 ? Twice(_mm256_mul_ps(_mm256_loadu_ps(p), s)) : TwiceAt(p); };
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16) {
      const int64_t at = kBytes * k;
      // Once per 64 bytes of a row.
      if ((at & 63) < 16 * kBytes) FetchRowsAhead(q, kTileRows, at, kTileAhead, w.row_bytes, next);
      __m512 xlo[N], xhi[N];
      for (int t = 0; t < N; ++t) {
        xlo[t] = act(x + t * ldx + k);
        xhi[t] = act(x + t * ldx + k + 8);
      }
      for (int p = 0; p < kTileRows / 2; ++p) {
        __m512 wlo, whi;  // columns [k, k + 8), then [k + 8, k + 16), of rows 2p | 2p + 1
        if constexpr (kFp8) {
          const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[2 * p] + at));
          const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[2 * p + 1] + at));
          wlo = Fp8Tiny16(_mm_unpacklo_epi64(a, b));
          whi = Fp8Tiny16(_mm_unpackhi_epi64(a, b));
        } else {
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[2 * p] + at));
          const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[2 * p + 1] + at));
          wlo = widen(_mm256_permute2x128_si256(a, b, 0x20));
          whi = widen(_mm256_permute2x128_si256(a, b, 0x31));
        }
        for (int t = 0; t < N; ++t) {
          acc[t][p] = _mm512_fmadd_ps(xlo[t], wlo, acc[t][p]);
          acc[t][p] = _mm512_fmadd_ps(xhi[t], whi, acc[t][p]);
        }
      }
    }
    if (k < k1) {  // a group (or row) of 16n + 8 columns: its last eight
      const int64_t at = kBytes * k;
      __m512 xlo[N];
      for (int t = 0; t < N; ++t) xlo[t] = act(x + t * ldx + k);
      for (int p = 0; p < kTileRows / 2; ++p) {
        __m512 wlo;
        if constexpr (kFp8) {
          const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q[2 * p] + at));
          const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q[2 * p + 1] + at));
          wlo = Fp8Tiny16(_mm_unpacklo_epi64(a, b));
        } else {
          const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[2 * p] + at));
          const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[2 * p + 1] + at));
          wlo = widen(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
        }
        for (int t = 0; t < N; ++t) acc[t][p] = _mm512_fmadd_ps(xlo[t], wlo, acc[t][p]);
      }
    }
  }
  return TileSums<kFp8, kTileRows, N>(acc, out);
}

// The byte order of DecodeTileFp8Bytes' permute: byte 4i + b takes row 2p's column 8b + i for
// lanes i < 8 (the first source's bytes 0-31) and row 2p + 1's column 8b + i - 8 for lanes
// i >= 8 (the second source's, from index 64), so lane i's dword holds steps 0-3 of its chain.
struct Fp8StepOrder {
  alignas(64) uint8_t index[64];
};
constexpr Fp8StepOrder MakeFp8StepOrder() {
  Fp8StepOrder o{};
  for (int i = 0; i < 16; ++i)
    for (int b = 0; b < 4; ++b) o.index[4 * i + b] = static_cast<uint8_t>((i < 8 ? 0 : 64) + 8 * b + (i & 7));
  return o;
}
constexpr Fp8StepOrder kFp8StepOrder = MakeFp8StepOrder();

// Columns [k, k + 32) of FP8 rows a and b (a + k and b + k) as four vectors: steps[j] holds
// columns [k + 8j, k + 8j + 8) of row a in lanes 0-7 and of row b in lanes 8-15, each byte as
// Fp8Tiny16 converts it (E4M3ToF32 · 2^-120). One vpermt2b gives each lane's dword its four
// steps' bytes (kFp8StepOrder); two 16-bit arithmetic shifts put every word's odd and even byte
// where Fp8Tiny16 puts a byte (the sign and its copies at the top, exponent and mantissa below),
// and a shift and Fp8Tiny16's mask lift each step into its own vector: a permute, 1.25 shifts
// and a mask per sixteen weights. For the functions compiled for avx512vbmi.
__attribute__((always_inline, target("avx512vbmi"))) inline void Fp8StepsOfTwo(const uint8_t* a, const uint8_t* b,
                                                                               __m512 (&steps)[4]) {
  const __m512i bytes = _mm512_permutex2var_epi8(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))),
      _mm512_load_si512(kFp8StepOrder.index),
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b))));
  const __m512i odd = _mm512_srai_epi16(bytes, 4), even = _mm512_srai_epi16(_mm512_slli_epi16(bytes, 8), 4);
  const __m512i mask = _mm512_set1_epi32(int32_t(0x87f00000u));
  steps[0] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(even, 16), mask));
  steps[1] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(odd, 16), mask));
  steps[2] = _mm512_castsi512_ps(_mm512_and_si512(even, mask));
  steps[3] = _mm512_castsi512_ps(_mm512_and_si512(odd, mask));
}

// How far ahead each row of a sixteen-row tile is fetched: half the eight-row tiles' reach, the
// same bytes in flight (as linear_q8_avx512.cc's sixteen-row INT8 tiles). BM_MoeDecodeStep FP8,
// the four interleaved in one process, medians of five: 1024 B 42.4, 512 B 45.0, 256 B 42.5,
// 2048 B 41.4 GB/s; of seven: 40.4, 42.2, 44.0, 39.1.
constexpr int64_t kTileAhead16 = 512;

// DecodeTile<true, N> for FP8 whose groups are whole 32-column steps (every checkpoint's 128 x
// 128 blocks), with VBMI's byte permutes, R rows a tile (sixteen for one token: sixteen row
// streams in flight, as the INT8 decode's): the same chains, so the same bits, in fewer
// instructions. DecodeTile spends four on each sixteen weights besides the fma (an unpack and a
// widening, both shuffles, a shift and a mask), and on Zen 5 these, not the bytes, set an FP8
// decode's pace (about three vector instructions retire a cycle there); Fp8StepsOfTwo spends
// 2.25 and hands each chain four steps at once.
// One thread, 8 rows of K = 1536 from L1: 33 -> 40 GB/s (a harness, interleaved, same sums);
// BM_MoeDecodeStep FP8, interleaved, medians of five: DecodeTile 35.5, this with eight rows
// 38.0, sixteen 39.5 (sixteen rows 512 B ahead: 42-45).
template <int R, int N>
__attribute__((noinline, target("avx512vbmi"))) bool DecodeTileFp8Bytes(const RawWeight& w, int64_t r, const float* x,
                                                                        int64_t ldx, int64_t next, float* out) {
  const int64_t K = w.cols, bi = w.block_in;
  const float* scales = w.scale + (r / w.block_out) * w.scale_cols;
  const uint8_t* q[R];
  for (int i = 0; i < R; ++i) q[i] = static_cast<const uint8_t*>(w.data) + (r + i) * w.row_bytes;
  __m512 acc[N][R / 2];
  for (int t = 0; t < N; ++t)
    for (int p = 0; p < R / 2; ++p) acc[t][p] = _mm512_setzero_ps();
  for (int64_t k0 = 0, g = 0; k0 < K; k0 += bi, ++g) {
    const int64_t k1 = k0 + bi < K ? k0 + bi : K;
    const __m256 s = _mm256_set1_ps(scales[g] * 0x1p120f);  // as DecodeTile's
    for (int64_t k = k0; k < k1; k += 32) {
      if ((k & 63) < 32) FetchRowsAhead(q, R, k, R == 16 ? kTileAhead16 : kTileAhead, w.row_bytes, next);
      __m512 xv[N][4];  // steps 0-3: columns [k + 8b, k + 8b + 8) in both halves
      for (int t = 0; t < N; ++t)
        for (int b = 0; b < 4; ++b) xv[t][b] = Twice(_mm256_mul_ps(_mm256_loadu_ps(x + t * ldx + k + 8 * b), s));
      for (int p = 0; p < R / 2; ++p) {
        __m512 wv[4];
        Fp8StepsOfTwo(q[2 * p] + k, q[2 * p + 1] + k, wv);
        for (int t = 0; t < N; ++t)
          for (int b = 0; b < 4; ++b) acc[t][p] = _mm512_fmadd_ps(xv[t][b], wv[b], acc[t][p]);
      }
    }
  }
  return TileSums<true, R, N>(acc, out);
}

// Tokens per pass of the several-token tiles (GemvMaxTokens' 8 go as 3 + 3 + 2): three tokens
// times four pairs of rows are twelve accumulators, as the AVX2 tiles' four rows times three.
constexpr int kTileTokens = 3;

// Rows [r0, r1) against T tokens, eight rows at a time (FP8: inside one block of rows; sixteen
// for one token on DecodeTileFp8Bytes), up to three tokens per pass over them (the rows stay in
// L1 for the next pass, which fetches nothing ahead). Cut tiles, and FP8 passes whose scaled
// activations overflowed, go to GemvAvx2.
template <bool kFp8>
void TileDecode(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                int64_t ldy, bool accumulate, bool byte_permutes) {
  // FP8 groups of whole 32-column steps, and a CPU with VBMI: DecodeTileFp8Bytes, sixteen rows
  // a tile for one token.
  const bool steps32 = kFp8 && byte_permutes && w.block_in % 32 == 0 && w.cols % 32 == 0;
  // Rows [r, r + n) all before r1 and, FP8, in one block of rows (one scale row).
  const auto in_block = [&](int64_t r, int64_t n) {
    return r + n <= r1 && (!kFp8 || r / w.block_out == (r + n - 1) / w.block_out);
  };
  for (int64_t r = r0; r < r1;) {
    const int64_t rows = steps32 && T == 1 && in_block(r, 16) ? 16 : kTileRows;
    const int64_t end = r + rows < r1 ? r + rows : r1;
    if (!in_block(r, rows)) {
      GemvAvx2(x, T, ldx, w, r, end, y, ldy, accumulate);
      r = end;
      continue;
    }
    for (int64_t t0 = 0; t0 < T; t0 += kTileTokens) {
      const int64_t n = T - t0 < kTileTokens ? T - t0 : kTileTokens;
      const float* xt = x + t0 * ldx;
      const int64_t next = t0 == 0 ? rows * w.row_bytes : 0;
      float out[kTileTokens * 16];
      bool finite;
      if (rows == 16) {
        finite = DecodeTileFp8Bytes<16, 1>(w, r, xt, ldx, next, out);
      } else if (steps32) {
        finite = n == 3   ? DecodeTileFp8Bytes<kTileRows, 3>(w, r, xt, ldx, next, out)
                 : n == 2 ? DecodeTileFp8Bytes<kTileRows, 2>(w, r, xt, ldx, next, out)
                          : DecodeTileFp8Bytes<kTileRows, 1>(w, r, xt, ldx, next, out);
      } else {
        finite = n == 3   ? DecodeTile<kFp8, 3>(w, r, xt, ldx, next, out)
                 : n == 2 ? DecodeTile<kFp8, 2>(w, r, xt, ldx, next, out)
                          : DecodeTile<kFp8, 1>(w, r, xt, ldx, next, out);
      }
      if (!finite) {  // FP8 only
        GemvAvx2(xt, n, ldx, w, r, end, y + t0 * ldy, ldy, accumulate);
        continue;
      }
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < rows; ++i) {
          float* o = y + (t0 + t) * ldy + r + i;
          *o = accumulate ? *o + out[t * rows + i] : out[t * rows + i];
        }
    }
    r = end;
  }
}

// HorizontalSum (isa_common.inc) of sixteen 8-lane chains at once, by the same tree: a[p] holds
// one token's rows 2p | 2p+1, b[p] another's; lanes 0-7 of the result are the first token's
// eight row sums in order, lanes 8-15 the second's. One chain at a time (an extract and five
// operations each, sixteen per four tokens) took ~10% of a 512-deep call: with this and the
// activations' one-load broadcast, a 64-row panel against 48 tokens, one thread, from L2:
// K = 512 184-186 -> 203-205 GFLOP/s, K = 1536 185-196 -> 193-206 (peak ~220).
inline __m512 EightRowSumsOfTwo(const __m512* a, const __m512* b) {
  // Per chain, lanes [0, 4) + lanes [4, 8): rows 0-3, then rows 4-7, one row per 128-bit lane.
  const auto fold = [](__m512 u, __m512 v) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(u, v, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(u, v, _MM_SHUFFLE(3, 1, 3, 1)));
  };
  // Then s0 + s2 and s1 + s3 of rows i and i + 4 in 128-bit lane i.
  const auto pairs = [&](const __m512* acc) {
    const __m512 low = fold(acc[0], acc[1]), high = fold(acc[2], acc[3]);
    return _mm512_add_ps(_mm512_shuffle_ps(low, high, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(low, high, _MM_SHUFFLE(3, 2, 3, 2)));
  };
  const __m512 ta = pairs(a), tb = pairs(b);
  // (s0 + s2) + (s1 + s3): lane i holds rows i and i + 4 of a, then of b.
  const __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(ta, tb, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(ta, tb, _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), sums);
}

// ---- Rows of a weight in place of attention's keys or values (decode's kv_b) ------------------
// linear_avx2.cc's RowScores and RowsWeightedSum with 512-bit vectors, same bits: the weighted
// sum takes sixteen columns per vector (each element still one fma chain over the rows in
// order), the scores two rows per vector, eight columns each (each row's lanes still run the
// 8-lane chain over the columns, then the same horizontal sums). A row's group scales (INT4:
// and zero points) are converted once into a table, where the AVX2 loaders converted a group's
// for every vector pass over it. Decode's absorbed attention reads 12 heads x 2 x 64 rows of kv_b
// per layer on bench-v3-mini and was bound by this conversion, not by the bytes.

enum class RowFormat { kBF16, kFp8, kInt8, kInt4 };
constexpr int64_t kMaxRowGroups = 64;

// DequantizeRows' values of columns [k, k + 16) of a row (s, z: the group's scale and zero point).
template <RowFormat F>
__attribute__((always_inline)) inline __m512 Sixteen(const uint8_t* row, int64_t k, __m512 s, __m512 z) {
  if (F == RowFormat::kBF16) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  } else if (F == RowFormat::kFp8) {  // linear_avx2.cc's Fp8Format: e4m3 as F16 bits, times 256 · scale
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k));
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(q), 7), _mm256_set1_epi16(int16_t(0xbfff)));
    return _mm512_mul_ps(_mm512_cvtph_ps(h), s);
  } else if (F == RowFormat::kInt8) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), s);
  } else {  // INT4, low nibble first: lanes 0-7 shift the first four bytes, lanes 8-15 the next four
    const __m512i bytes = _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k / 2)));
    const __m512i dwords = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), bytes);
    const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i u = _mm512_and_si512(_mm512_srlv_epi32(dwords, shifts), _mm512_set1_epi32(0xf));
    return _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(u), z), s);
  }
}

// Columns [k, k + 8) of row a in lanes 0-7 and of row b in lanes 8-15 (s, z per half).
template <RowFormat F>
__attribute__((always_inline)) inline __m512 EightOfTwo(const uint8_t* a, const uint8_t* b, int64_t k, __m512 s, __m512 z) {
  if (F == RowFormat::kBF16) {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + 2 * k));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 * k));
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(va), vb, 1);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  } else if (F == RowFormat::kFp8 || F == RowFormat::kInt8) {
    const __m128i q = _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + k)),
                                         _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + k)));
    if (F == RowFormat::kInt8) return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), s);
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(q), 7), _mm256_set1_epi16(int16_t(0xbfff)));
    return _mm512_mul_ps(_mm512_cvtph_ps(h), s);
  } else {
    int32_t va, vb;
    __builtin_memcpy(&va, a + k / 2, 4);
    __builtin_memcpy(&vb, b + k / 2, 4);
    const __m512i dwords = _mm512_mask_set1_epi32(_mm512_set1_epi32(va), 0xff00, vb);
    const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i u = _mm512_and_si512(_mm512_srlv_epi32(dwords, shifts), _mm512_set1_epi32(0xf));
    return _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(u), z), s);
  }
}

// Row r's group scales (FP8: 256 · scale, as Fp8Format::ActScale) and zero points (INT4: the
// stored one or 8) as float32, for groups [g0, g0 + n) (and perhaps a few more), into s and z.
// Sixteen groups per load while a whole vector stays inside the scale tensor, then one at a
// time: a masked load (vmovdqu16 with a mask) here stalled each row behind the stores of the
// one before, and cold rows then streamed at a few GB/s (12 heads' INT4 rows from DRAM, one
// thread: 30 -> 16 us).
// Row r's group g as RowGroups' tables hold it: its scale (FP8: 256 · scale) and, INT4, its zero
// point (the stored one or 8).
template <RowFormat F>
float GroupScale(const RawWeight& w, int64_t r, int64_t g) {
  if (F == RowFormat::kInt4) return _cvtsh_ss(w.scale16[r * w.scale_cols + g]);
  const float s = w.scale[(r / w.block_out) * w.scale_cols + g];
  return F == RowFormat::kFp8 ? s * 256.0f : s;
}
inline float GroupZero(const RawWeight& w, int64_t r, int64_t g) {
  return w.zero ? static_cast<float>(w.zero[r * w.scale_cols + g]) : 8.0f;
}

// Inlined: called once a row, it had been a call that made WeightedColumns16 spill and reload
// its sixteen accumulators around it.
template <RowFormat F>
__attribute__((always_inline)) inline void RowGroups(const RawWeight& w, int64_t r, int64_t g0, int64_t n, float* s,
                                                     float* z) {
  const bool int4 = F == RowFormat::kInt4;
  const int64_t base = (int4 ? r : r / w.block_out) * w.scale_cols + g0;
  const int64_t total = (int4 ? w.rows : (w.rows + w.block_out - 1) / w.block_out) * w.scale_cols;
  int64_t g = 0;
  for (; g < n && base + g + 16 <= total; g += 16) {
    if (int4) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.scale16 + base + g));
      _mm512_storeu_ps(s + g, _mm512_cvtph_ps(h));
      const __m512 zero =
          w.zero ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zero + base + g))))
                 : _mm512_set1_ps(8.0f);
      _mm512_storeu_ps(z + g, zero);
    } else {
      const __m512 v = _mm512_loadu_ps(w.scale + base + g);
      _mm512_storeu_ps(s + g, F == RowFormat::kFp8 ? _mm512_mul_ps(v, _mm512_set1_ps(256.0f)) : v);
    }
  }
  for (; g < n; ++g) {
    s[g] = GroupScale<F>(w, r, g0 + g);
    if (int4) z[g] = GroupZero(w, r, g0 + g);
  }
}

inline const uint8_t* RowAt(const RawWeight& w, int64_t r) { return static_cast<const uint8_t*>(w.data) + r * w.row_bytes; }

// INT4 columns [k, k + 32) of a row, one group's (s, z), as two vectors: the even columns (k + 2j
// in lane j: each byte's low nibble) and the odd ones (its high nibble). Sixteen bytes widened
// by one vpmovzxbd, then a mask or a shift: ~5 vector ops per 16 weights where Sixteen's
// permute, variable shift and mask take ~8 (decode's W_uk was bound by this unpacking).
__attribute__((always_inline)) inline void Int4EvenOdd(const uint8_t* row, int64_t k, __m512 s, __m512 z, __m512& even,
                                                       __m512& odd) {
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k / 2)));
  const __m512i lo = _mm512_and_si512(bytes, _mm512_set1_epi32(0xf)), hi = _mm512_srli_epi32(bytes, 4);
  even = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(lo), z), s);
  odd = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(hi), z), s);
}
// Columns [0, 32) at out from the even- and odd-column vectors Int4EvenOdd's layout gives.
inline void StoreEvenOdd(__m512 even, __m512 odd, float* out) {
  // Column k: lane k / 2 of the even (k even) or the odd vector (index 16 + k / 2).
  const __m512i low = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i high = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  _mm512_storeu_ps(out, _mm512_permutex2var_ps(even, low, odd));
  _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(even, high, odd));
}

// out[c0, c0 + 16V) = Σ_s p[s] · W[r0 + s][c0, c0 + 16V), one chain per element in row order
// (kEight: the last eight columns, V = 1, as the low half of a row paired with itself), for M
// queries (p and out of query m at m · ldp and m · ldo): each weight vector is converted once
// for all of them, and every query's chains are those of its own call. A row's table holds the
// groups of these columns only. INT4 in groups of whole 32-column pieces takes its vectors in
// pairs, even and odd columns (Int4EvenOdd): each element's chain is the same, only its lane
// differs until the store.
template <RowFormat F, int V, int M = 1, bool kEight = false>
void WeightedColumns16(const float* p, int64_t ldp, const RawWeight& w, int64_t r0, int64_t S, int64_t c0, float* out,
                       int64_t ldo) {
  constexpr bool kPairs = F == RowFormat::kInt4 && !kEight && V % 2 == 0;
  const bool pairs = kPairs && w.block_in % 32 == 0 && c0 % 32 == 0;
  const int64_t g0 = c0 / w.block_in, groups = (c0 + (kEight ? 8 : 16 * V) - 1) / w.block_in - g0 + 1;
  int64_t g[V];  // each vector's group in the table
  for (int v = 0; v < V; ++v) g[v] = (c0 + 16 * v) / w.block_in - g0;
  alignas(64) float s_tab[kMaxRowGroups + 16], z_tab[kMaxRowGroups + 16];
  __m512 acc[M][V];
  for (int m = 0; m < M; ++m)
    for (int v = 0; v < V; ++v) acc[m][v] = _mm512_setzero_ps();
  for (int64_t s = 0; s < S; ++s) {
    const uint8_t* row = RowAt(w, r0 + s);
    if (F != RowFormat::kBF16) RowGroups<F>(w, r0 + s, g0, groups, s_tab, z_tab);
    __m512 ps[M];
    for (int m = 0; m < M; ++m) ps[m] = _mm512_set1_ps(p[m * ldp + s]);
    if constexpr (kPairs) {
      if (pairs) {
        for (int v = 0; v < V; v += 2) {
          __m512 even, odd;
          Int4EvenOdd(row, c0 + 16 * v, _mm512_set1_ps(s_tab[g[v]]), _mm512_set1_ps(z_tab[g[v]]), even, odd);
          for (int m = 0; m < M; ++m) {
            acc[m][v] = _mm512_fmadd_ps(ps[m], even, acc[m][v]);
            acc[m][v + 1] = _mm512_fmadd_ps(ps[m], odd, acc[m][v + 1]);
          }
        }
        continue;
      }
    }
    for (int v = 0; v < V; ++v) {
      const __m512 sv = F == RowFormat::kBF16 ? ps[0] : _mm512_set1_ps(s_tab[g[v]]);  // BF16: unused
      const __m512 zv = F == RowFormat::kInt4 ? _mm512_set1_ps(z_tab[g[v]]) : sv;
      const __m512 wv = kEight ? EightOfTwo<F>(row, row, c0, sv, zv) : Sixteen<F>(row, c0 + 16 * v, sv, zv);
      for (int m = 0; m < M; ++m) acc[m][v] = _mm512_fmadd_ps(ps[m], wv, acc[m][v]);
    }
  }
  for (int m = 0; m < M; ++m) {
    float* o = out + m * ldo;
    if constexpr (kPairs) {
      if (pairs) {
        for (int v = 0; v < V; v += 2) StoreEvenOdd(acc[m][v], acc[m][v + 1], o + c0 + 16 * v);
        continue;
      }
    }
    for (int v = 0; v < V; ++v) {
      if (kEight) {
        _mm256_storeu_ps(o + c0, Low8(acc[m][v]));
      } else {
        _mm512_storeu_ps(o + c0 + 16 * v, acc[m][v]);
      }
    }
  }
}

// Up to kRowQueries queries a pass over the rows (QueryTiles' tiles of them: p, out of query m
// at m · ldp, m · ldo): sixteen accumulators at 64 columns a pass, four per vector. One query
// takes 256 columns.
constexpr int kRowQueries = 4;

template <RowFormat F, int M>
void RowsWeightedSumQueries(const float* p, int64_t ldp, const RawWeight& w, int64_t r0, int64_t S, float* out,
                            int64_t ldo) {
  const int64_t C = w.cols;
  int64_t c0 = 0;
  if constexpr (M == 1)
    for (; c0 + 256 <= C; c0 += 256) WeightedColumns16<F, 16, M>(p, ldp, w, r0, S, c0, out, ldo);
  for (; c0 + 64 <= C; c0 += 64) WeightedColumns16<F, 4, M>(p, ldp, w, r0, S, c0, out, ldo);
  for (; c0 + 16 <= C; c0 += 16) WeightedColumns16<F, 1, M>(p, ldp, w, r0, S, c0, out, ldo);
  if (c0 < C) WeightedColumns16<F, 1, M, true>(p, ldp, w, r0, S, c0, out, ldo);  // C % 16 == 8
}

template <RowFormat F>
void RowsWeightedSum512(const float* p, int64_t M, int64_t ldp, const RawWeight& w, int64_t r0, int64_t S, float* out,
                        int64_t ldo) {
  QueryTiles<kRowQueries>(M, [&]<int N>(int64_t m) {
    RowsWeightedSumQueries<F, N>(p + m * ldp, ldp, w, r0, S, out + m * ldo, ldo);
  });
}
// a in lanes 0-7, b in lanes 8-15: a pair of rows' scales (or zero points).
inline __m512 Pair(float a, float b) { return _mm512_mask_broadcastss_ps(_mm512_set1_ps(a), 0xff00, _mm_set_ss(b)); }
// Both halves' scales (or zero points) at group g of two rows' tables.
inline __m512 PairOf(const float* a, const float* b, int64_t g) { return Pair(a[g], b[g]); }

// The 8-lane chains of R = 8 or 4 rows from r (in pairs) or R = 1 row (paired with itself, the
// high half unused) over every column, for M queries (query m at q + m · ldq): acc[m · P + p]
// holds query m's chains of rows (r + 2p, r + 2p + 1). Each row's chain is its own, so the pairs
// only share the pass: eight rows keep four chains in flight where four rows' two had waited on
// the fma's latency. Each weight vector is converted once for the M queries.
template <RowFormat F, int R, int M = 1>
void RowChains(const float* q, int64_t ldq, const RawWeight& w, int64_t r, __m512* acc) {
  constexpr int P = R == 1 ? 1 : R / 2;  // pairs
  const int64_t C = w.cols, groups = (C + w.block_in - 1) / w.block_in;
  alignas(64) float s_tab[R][kMaxRowGroups + 16], z_tab[R][kMaxRowGroups + 16];
  const uint8_t* row[R];
  for (int i = 0; i < R; ++i) {
    row[i] = RowAt(w, r + i);
    if (F != RowFormat::kBF16) RowGroups<F>(w, r + i, 0, groups, s_tab[i], z_tab[i]);
  }
  const auto lo = [](int p) { return R == 1 ? 0 : 2 * p; };  // the rows of pair p
  const auto hi = [](int p) { return R == 1 ? 0 : 2 * p + 1; };
  __m512 s[P], z[P];
  for (int p = 0; p < P; ++p) {
    for (int m = 0; m < M; ++m) acc[m * P + p] = _mm512_setzero_ps();
    s[p] = _mm512_set1_ps(1.0f);
    z[p] = _mm512_setzero_ps();
  }
  for (int64_t c = 0, g = -1, next = 0; c < C; c += 8) {
    if (F != RowFormat::kBF16 && c == next) {  // a new group
      ++g;
      next += w.block_in;
      for (int p = 0; p < P; ++p) {
        s[p] = PairOf(s_tab[lo(p)], s_tab[hi(p)], g);
        if (F == RowFormat::kInt4) z[p] = PairOf(z_tab[lo(p)], z_tab[hi(p)], g);
      }
    }
    __m512 qv[M];
    for (int m = 0; m < M; ++m) qv[m] = TwiceAt(q + m * ldq + c);
    for (int p = 0; p < P; ++p) {
      const __m512 wv = EightOfTwo<F>(row[lo(p)], row[hi(p)], c, s[p], z[p]);
      for (int m = 0; m < M; ++m) acc[m * P + p] = _mm512_fmadd_ps(qv[m], wv, acc[m * P + p]);
    }
  }
}

// RowChains<kFp8, R> (R = 8 or 4) with VBMI, for rows of whole 32-column steps in groups of
// them: each 32 columns of a pair of rows become four vectors by Fp8StepsOfTwo (floats
// E4M3ToF32 · 2^-120), times the pair's 256 · scale · 2^112, where
// EightOfTwo's conversion took five instructions and a vcvtph2ps for each eight columns: the
// same products (u · scale exactly scaled, rounded once), each chain's in column order, so the
// same bits. False, with nothing done, when a scale · 2^120 would overflow (scale >= 256).
// BM_WeightRows FP8 (12 heads' W_uk weighted sums and W_uv scores, one thread, from L2),
// alternated builds, three pairs: 22.9-27.7 -> 21.0-21.5 us (BF16's 10.6-13.3 beside it).
template <int R>
__attribute__((noinline, target("avx512vbmi"))) bool RowChainsFp8Bytes(const float* q, const RawWeight& w, int64_t r,
                                                                       __m512* acc) {
  constexpr int P = R / 2;
  const int64_t C = w.cols, groups = C / w.block_in;
  alignas(64) float s_tab[R][kMaxRowGroups + 16], z_tab[R][kMaxRowGroups + 16];
  const uint8_t* row[R];
  for (int i = 0; i < R; ++i) {
    row[i] = RowAt(w, r + i);
    RowGroups<RowFormat::kFp8>(w, r + i, 0, groups, s_tab[i], z_tab[i]);
    for (int64_t g = 0; g < groups; ++g)
      if (!(__builtin_fabsf(s_tab[i][g]) < 0x1p16f) && __builtin_isfinite(s_tab[i][g])) return false;
  }
  const __m512 lift = _mm512_set1_ps(0x1p112f);
  for (int p = 0; p < P; ++p) acc[p] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 s[P];
    for (int p = 0; p < P; ++p) s[p] = _mm512_mul_ps(PairOf(s_tab[2 * p], s_tab[2 * p + 1], g), lift);
    for (int64_t c = g * w.block_in; c < (g + 1) * w.block_in; c += 32) {
      __m512 qv[4];
      for (int b = 0; b < 4; ++b) qv[b] = TwiceAt(q + c + 8 * b);
      for (int p = 0; p < P; ++p) {
        __m512 steps[4];
        Fp8StepsOfTwo(row[2 * p] + c, row[2 * p + 1] + c, steps);
        for (int j = 0; j < 4; ++j) acc[p] = _mm512_fmadd_ps(qv[j], _mm512_mul_ps(steps[j], s[p]), acc[p]);
      }
    }
  }
  return true;
}

// scores[s] = q · W[r0 + s]: rows eight (then four) at a time with linear_avx2.cc's RowScores'
// hadd tree on each four rows' 8-lane chains, the last S % 4 one at a time with its
// HorizontalSum.
template <RowFormat F>
void RowScores512(const float* q, const RawWeight& w, int64_t r0, int64_t S, float* scores, bool byte_permutes) {
  // FP8 in groups of whole 32-column steps, on a CPU with VBMI: RowChainsFp8Bytes.
  const bool bytes = F == RowFormat::kFp8 && byte_permutes && w.block_in % 32 == 0 && w.cols % w.block_in == 0;
  int64_t s = 0;
  __m512 acc[4];
  for (; s + 8 <= S; s += 8) {
    if (!bytes || !RowChainsFp8Bytes<8>(q, w, r0 + s, acc)) RowChains<F, 8>(q, 0, w, r0 + s, acc);
    _mm_storeu_ps(scores + s, QuadSums(acc[0], acc[1]));
    _mm_storeu_ps(scores + s + 4, QuadSums(acc[2], acc[3]));
  }
  for (; s + 4 <= S; s += 4) {
    if (!bytes || !RowChainsFp8Bytes<4>(q, w, r0 + s, acc)) RowChains<F, 4>(q, 0, w, r0 + s, acc);
    _mm_storeu_ps(scores + s, QuadSums(acc[0], acc[1]));
  }
  for (; s < S; ++s) {
    RowChains<F, 1>(q, 0, w, r0 + s, acc);
    scores[s] = HorizontalSum(Low8(acc[0])) + 0.0f;  // as RowScores' single rows
  }
}

// RowScores512 for M queries of a pass (q and scores of query m at m · ldq and m · lds): each
// row's chains and sums as there (an eight-row group is its two quads, whose sums are each
// quad's own), each weight vector converted once for the M queries. FP8 takes RowChains'
// conversion, which gives RowChainsFp8Bytes' values.
template <RowFormat F, int M>
void RowScoresQueries(const float* q, int64_t ldq, const RawWeight& w, int64_t r0, int64_t S, float* scores,
                      int64_t lds) {
  int64_t s = 0;
  __m512 acc[2 * M];
  for (; s + 4 <= S; s += 4) {
    RowChains<F, 4, M>(q, ldq, w, r0 + s, acc);
    for (int m = 0; m < M; ++m) _mm_storeu_ps(scores + m * lds + s, QuadSums(acc[2 * m], acc[2 * m + 1]));
  }
  for (; s < S; ++s) {
    RowChains<F, 1, M>(q, ldq, w, r0 + s, acc);
    for (int m = 0; m < M; ++m) scores[m * lds + s] = HorizontalSum(Low8(acc[m])) + 0.0f;
  }
}

template <RowFormat F>
void RowScores512(const float* q, int64_t M, int64_t ldq, const RawWeight& w, int64_t r0, int64_t S, float* scores,
                  int64_t lds, bool byte_permutes) {
  QueryTiles<kRowQueries>(M, [&]<int N>(int64_t m) {
    if constexpr (N == 1) {
      RowScores512<F>(q + m * ldq, w, r0, S, scores + m * lds, byte_permutes);
    } else {
      RowScoresQueries<F, N>(q + m * ldq, ldq, w, r0, S, scores + m * lds, lds);
    }
  });
}
// Whether these kernels take w: whole 16-column vectors inside a scale group, and a row's
// groups fit the tables.
bool Avx512TakesRows(const RawWeight& w) {
  if (w.cols % 8 != 0 || w.cols <= 0) return false;
  switch (w.kind) {
    case WeightKind::kBF16: return true;
    case WeightKind::kF8E4M3:
    case WeightKind::kI8:
      if (w.scale == nullptr || w.block_out <= 0) return false;
      break;
    case WeightKind::kInt4:
      if (w.scale16 == nullptr || w.row_bytes != (w.cols + 1) / 2) return false;
      break;
    default: return false;
  }
  return w.block_in > 0 && (w.block_in % 16 == 0 || w.block_in >= w.cols) &&
         (w.cols + w.block_in - 1) / w.block_in <= kMaxRowGroups;
}

template <typename Fn>
void WithRowFormat(const RawWeight& w, const Fn& fn) {
  switch (w.kind) {
    case WeightKind::kBF16: fn.template operator()<RowFormat::kBF16>(); return;
    case WeightKind::kF8E4M3: fn.template operator()<RowFormat::kFp8>(); return;
    case WeightKind::kI8: fn.template operator()<RowFormat::kInt8>(); return;
    default: fn.template operator()<RowFormat::kInt4>(); return;
  }
}

// Columns [k0, k1) of INT4 rows a and b (one group, a multiple of 32 columns) into the paired
// panel at d, as EightOfTwo writes them: each 32 columns' 16 bytes of both rows loaded once and
// each eight columns' dwords picked for both rows by one permute (per eight columns EightOfTwo
// loads and broadcasts them: four of its ten instructions), and a nibble u made a float by
// the 2^23 trick: the bits 0x4B000000 | u are 2^23 + u, less z23 = 2^23 + z (exact for z <= 15)
// is u - z exactly, as converting u and subtracting z gives it, so the same values. s and z23:
// row a's in lanes 0-7, row b's in 8-15. next: the rows after, fetched as PanelPairs does.
__attribute__((always_inline)) inline void Int4Group(const uint8_t* a, const uint8_t* b, int64_t k0, int64_t k1,
                                                      const char* next, int64_t row_bytes, __m512 s, __m512 z23,
                                                      float* d) {
  const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  const __m512i low4 = _mm512_set1_epi32(0xf), magic = _mm512_set1_epi32(0x4B000000);
  for (int64_t k = k0; k < k1; k += 32) {
    const int64_t at = k / 2;
    if (at % 64 == 0) {
      _mm_prefetch(next + at, _MM_HINT_T0);
      _mm_prefetch(next + row_bytes + at, _MM_HINT_T0);
    }
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + at));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + at));
    const __m512i ab = _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(va), vb, 1));
    for (int j = 0; j < 4; ++j) {
      // Lanes 0-7: row a's dword j (columns k + 8j ..), lanes 8-15: row b's.
      const __m512i dw = _mm512_permutexvar_epi32(_mm512_setr_epi32(j, j, j, j, j, j, j, j, 4 + j, 4 + j, 4 + j, 4 + j,
                                                                    4 + j, 4 + j, 4 + j, 4 + j),
                                                  ab);
      // (nibble & 0xf) | 0x4B000000
      const __m512i u = _mm512_ternarylogic_epi32(_mm512_srlv_epi32(dw, shifts), low4, magic, 0xEA);
      _mm512_storeu_ps(d + 2 * (k + 8 * j), _mm512_mul_ps(_mm512_sub_ps(_mm512_castsi512_ps(u), z23), s));
    }
  }
}

// Columns [k0, k1) (a multiple of 32) of FP8 or INT8 rows a and b into the paired panel, as
// EightOfTwo writes them: each 32 columns' bytes of both rows loaded once and each eight
// columns' quadwords picked for both rows by one permute (EightOfTwo loads and unpacks them per
// eight columns). FP8's panel takes no scale (its scale goes on the activations): its
// multiply by one is left out, the same values. next: as in Int4Group.
template <RowFormat F>
__attribute__((always_inline)) inline void ByteGroup(const uint8_t* a, const uint8_t* b, int64_t k0, int64_t k1,
                                                      const char* next, int64_t row_bytes, __m512 s, float* d) {
  for (int64_t k = k0; k < k1; k += 32) {
    if (k % 64 == 0) {
      _mm_prefetch(next + k, _MM_HINT_T0);
      _mm_prefetch(next + row_bytes + k, _MM_HINT_T0);
    }
    const __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + k))),
                                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k)), 1);
    for (int j = 0; j < 4; ++j) {
      // Row a's eight bytes j, then row b's.
      const __m128i q = _mm512_castsi512_si128(_mm512_permutexvar_epi64(_mm512_setr_epi64(j, 4 + j, 0, 0, 0, 0, 0, 0), ab));
      __m512 v;
      if constexpr (F == RowFormat::kInt8) {
        v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), s);
      } else {
        v = _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(q), 7), _mm256_set1_epi16(int16_t(0xbfff))));
      }
      _mm512_storeu_ps(d + 2 * (k + 8 * j), v);
    }
  }
}

// Rows [r, r + 2·pairs) of w as the GEMM's paired float32 panel (PanelLayout in
// linear_avx2.cc): both rows' columns [k, k + 8) converted in one vector and written with one
// 64-byte store, the values linear_avx2.cc's converters write (FP8 unscaled: E4M3ToF32 · 2^-8,
// times 1). The next pair's rows are fetched into L1 a line per 64 bytes converted, past the
// panel and the call too (LinearJobs hands a thread a matrix's pieces in order). With two
// 32-byte stores a vector and the loads left to the hardware, skipping the conversion
// altogether made a prefill's MoE GEMMs (64 experts x 48 tokens, 2 threads) ~19% faster; now
// ~4%. Whole groups of 32-column steps go 32 columns at a time (Int4Group, ByteGroup).
template <RowFormat F>
void PanelPairs(const RawWeight& w, int64_t r, int pairs, float* dst, int64_t Kp) {
  const int64_t K = w.cols, bi = F == RowFormat::kBF16 ? K : w.block_in;
  const int64_t step_bytes = F == RowFormat::kBF16 ? 16 : F == RowFormat::kInt4 ? 4 : 8;  // a row's, per 8 columns
  for (int p = 0; p < pairs; ++p) {
    const int64_t ra = r + 2 * p, rb = ra + 1;
    const uint8_t* a = RowAt(w, ra);
    const uint8_t* b = RowAt(w, rb);
    const char* next = reinterpret_cast<const char*>(a) + 2 * w.row_bytes;  // rows ra + 2, ra + 3
    float* d = dst + p * 2 * Kp;
    if constexpr (F == RowFormat::kInt4) {
      if (bi % 32 == 0 && K % bi == 0) {  // whole groups of whole 32-column steps: Int4Group
        // Both rows' scales and zero points sixteen groups at a time (RowGroups), each group's
        // pair of them picked by a permute: per group, two scalar conversions and two
        // broadcasts for each had been a quarter of a g32 panel's instructions.
        alignas(64) float sa[16] = {}, sb[16] = {}, za[16] = {}, zb[16] = {};
        const __m512i pick0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
        const __m512 two23 = _mm512_set1_ps(8388608.0f);
        const int64_t groups = K / bi;
        for (int64_t g0 = 0; g0 < groups; g0 += 16) {
          const int64_t n = groups - g0 < 16 ? groups - g0 : 16;
          RowGroups<F>(w, ra, g0, n, sa, za);
          RowGroups<F>(w, rb, g0, n, sb, zb);
          const __m512 sva = _mm512_load_ps(sa), svb = _mm512_load_ps(sb);
          const __m512 zva = _mm512_add_ps(_mm512_load_ps(za), two23), zvb = _mm512_add_ps(_mm512_load_ps(zb), two23);
          for (int64_t g = 0; g < n; ++g) {
            const __m512i pick = _mm512_add_epi32(pick0, _mm512_set1_epi32(static_cast<int>(g)));
            const int64_t k0 = (g0 + g) * bi;
            Int4Group(a, b, k0, k0 + bi, next, w.row_bytes, _mm512_permutex2var_ps(sva, pick, svb),
                      _mm512_permutex2var_ps(zva, pick, zvb), d);
          }
        }
        continue;
      }
    }
    for (int64_t k0 = 0, g = 0; k0 < K; k0 += bi, ++g) {
      const int64_t k1 = k0 + bi < K ? k0 + bi : K;
      // FP8's panel is unscaled (its scale goes on the activations): 1, and no zero point.
      const bool scaled = F == RowFormat::kInt4 || F == RowFormat::kInt8;
      const __m512 s = scaled ? Pair(GroupScale<F>(w, ra, g), GroupScale<F>(w, rb, g)) : _mm512_set1_ps(1.0f);
      const __m512 z = F == RowFormat::kInt4 ? Pair(GroupZero(w, ra, g), GroupZero(w, rb, g)) : _mm512_setzero_ps();
      if constexpr (F == RowFormat::kFp8 || F == RowFormat::kInt8) {
        if ((k1 - k0) % 32 == 0) {
          ByteGroup<F>(a, b, k0, k1, next, w.row_bytes, s, d);
          continue;
        }
      }
      for (int64_t k = k0; k < k1; k += 8) {
        const int64_t at = k / 8 * step_bytes;
        if (at % 64 == 0) {
          _mm_prefetch(next + at, _MM_HINT_T0);
          _mm_prefetch(next + w.row_bytes + at, _MM_HINT_T0);
        }
        _mm512_storeu_ps(d + 2 * k, EightOfTwo<F>(a, b, k, s, z));
      }
    }
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

namespace {

// Where Panel8 reads pair p's columns [k, k + 8) (rows 2p and 2p+1 in one vector): a float32
// panel's paired rows, or two BF16 rows as stored, widened in registers (bf16 -> float32 is
// exact: the panel's values, so the same bits, without writing and reading back a panel; K is
// whole 8-column steps, so Panel8 never reads a tail from them).
struct PanelPairRows {
  const float* wt;
  int64_t Kp;
  __m512 Load(int p, int64_t k) const { return _mm512_loadu_ps(wt + 2 * p * Kp + 2 * k); }
};
struct Bf16PairRows {
  const uint8_t* w;   // row 0 of the eight
  int64_t row_bytes;  // from a row to the next
  __m512 Load(int p, int64_t k) const {
    const uint8_t* a = w + 2 * p * row_bytes;
    return EightOfTwo<RowFormat::kBF16>(a, a + row_bytes, k, _mm512_setzero_ps(), _mm512_setzero_ps());
  }
};

// Eight rows (four pairs) against N tokens: linear_avx2.cc's MicroKernel<8, N>, two rows
// per vector, over columns [k0, k1) (k0 a multiple of 8; k1 one too, or K). The accumulators
// start at zero when k0 = 0 and otherwise from `carry`, where a call that stops short of K
// leaves them; the call that reaches K sums them into y. Each lane's chain runs over k in order
// however the columns are split, so the bits do not depend on it. `lines` 64-byte lines from
// `ahead` are fetched into L2 one every few steps, spread over the columns.
template <int N, typename Rows>
void Panel8(const Rows& rows, int64_t K, int64_t k0, int64_t k1, const float* x, int64_t ldx, __m512* carry, float* y,
            int64_t ldy, bool accumulate, const char* ahead, int64_t lines) {
  const int64_t k8 = k1 & ~int64_t{7};
  __m512 acc[4][N];
  for (int p = 0; p < 4; ++p)
    for (int j = 0; j < N; ++j) acc[p][j] = k0 == 0 ? _mm512_setzero_ps() : carry[p * N + j];
  const auto step = [&](int64_t k, const __m512* xv) __attribute__((always_inline)) {
    for (int p = 0; p < 4; ++p) {
      const __m512 wv = rows.Load(p, k);  // rows 2p and 2p+1, columns [k, k+8)
      for (int j = 0; j < N; ++j) acc[p][j] = _mm512_fmadd_ps(xv[j], wv, acc[p][j]);
    }
  };
  const auto steps_from = [&](int64_t k) __attribute__((always_inline)) {
    __m512 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = TwiceAt(x + j * ldx + k);
    step(k, xv);
  };
  if (lines > 0) {  // a line every `every` steps, counted down, and any left over at the end
    const int64_t steps = (k8 - k0) / 8, every = lines >= steps ? 1 : steps / lines;
    int64_t fetched = 0, until = 1;
    for (int64_t k = k0; k < k8; k += 8) {
      if (--until == 0 && fetched < lines) {
        _mm_prefetch(ahead + 64 * fetched++, _MM_HINT_T1);
        until = every;
      }
      steps_from(k);
    }
    for (; fetched < lines; ++fetched) _mm_prefetch(ahead + 64 * fetched, _MM_HINT_T1);
  } else {  // the panel formats' tiles: no counter in their loop (a merged one cost them ~3%)
    for (int64_t k = k0; k < k8; k += 8) steps_from(k);
  }
  if (k8 < k1) {  // K's tail: the panel is zero-padded; the activations past K read as zero
    __m512 xv[N];
    for (int j = 0; j < N; ++j) {
      alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t i = k8; i < k1; ++i) buf[i - k8] = x[j * ldx + i];
      xv[j] = Twice(_mm256_load_ps(buf));
    }
    step(k8, xv);
  }
  if (k1 < K) {
    for (int p = 0; p < 4; ++p)
      for (int j = 0; j < N; ++j) carry[p * N + j] = acc[p][j];
    return;
  }
  for (int j = 0; j < N; j += 2) {
    const int j2 = j + 1 < N ? j + 1 : j;
    const __m512 a[4] = {acc[0][j], acc[1][j], acc[2][j], acc[3][j]};
    const __m512 b[4] = {acc[0][j2], acc[1][j2], acc[2][j2], acc[3][j2]};
    const __m512 sums = EightRowSumsOfTwo(a, b);
    float* o = y + j * ldy;
    _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), Low8(sums)) : Low8(sums));
    if (j2 == j) break;
    o = y + j2 * ldy;
    _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), High8(sums)) : High8(sums));
  }
}

template <typename Rows>
void GemmPanel8(const Rows& rows, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                bool accumulate, const char* ahead, int64_t lines) {
  const int64_t passes = (T + 5) / 6, per_pass = (lines + passes - 1) / passes;
  int64_t fetched = 0;
  // A deep tile (linear_kernels.h's kGemmDeepK) goes kGemmChunkColumns columns at a time for a
  // block of up to kGemmDeepTokens tokens, its accumulators carried in memory between parts
  // (16 KB of the tile stays in L1 while the token quads pass; whole, the tile came from L2 for
  // every quad). 512 x 16384, 64 tokens, one thread: BF16 63 -> 130 GFLOP/s, INT4 (K 18432)
  // 77 -> 142, FP8 78 -> 129 (with the panels and token blocks linear_kernels.h gives deep K).
  const int64_t chunk = GemmDeep(K, true) ? kGemmChunkColumns : K;
  alignas(64) __m512 carry[4 * kGemmDeepTokens];  // blocks of at most kGemmDeepTokens when carried
  const int64_t block = chunk < K ? kGemmDeepTokens : T;
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t t1 = T - t0 < block ? T : t0 + block;
    for (int64_t k0 = 0; k0 < K; k0 += chunk) {
      const int64_t k1 = K - k0 > chunk ? k0 + chunk : K;
      const auto part = [&]<int N>(int64_t t) {
        const int64_t n = k0 == 0 ? (lines - fetched < per_pass ? lines - fetched : per_pass) : 0;
        Panel8<N>(rows, K, k0, k1, x + t * ldx, ldx, carry + 4 * (t - t0), y + t * ldy, ldy, accumulate,
                  ahead + 64 * fetched, n);
        fetched += n;
      };
      // Six tokens a pass (24 accumulators, six broadcasts and one panel vector live: 31
      // registers), so each panel vector, read from L2, serves six fmas where it served four: 64
      // experts' gate, up and down at 48 tokens, 2 threads, interleaved: +2-5% for every format.
      int64_t t = t0;
      for (; t + 6 <= t1; t += 6) part.template operator()<6>(t);
      switch (t1 - t) {
        case 5: part.template operator()<5>(t); break;
        case 4: part.template operator()<4>(t); break;
        case 3: part.template operator()<3>(t); break;
        case 2: part.template operator()<2>(t); break;
        case 1: part.template operator()<1>(t); break;
        default: break;
      }
    }
  }
}

}  // namespace

void GemmPanel8Avx512(const float* wt, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                      bool accumulate) {
  GemmPanel8(PanelPairRows{wt, (K + 7) & ~int64_t{7}}, K, x, ldx, T, y, ldy, accumulate, nullptr, 0);
}

void GemmBf16Rows8Avx512(const uint16_t* w, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                         bool accumulate, const char* ahead, int64_t lines) {
  GemmPanel8(Bf16PairRows{reinterpret_cast<const uint8_t*>(w), 2 * K}, K, x, ldx, T, y, ldy, accumulate, ahead, lines);
}

void GemvAvx512(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                int64_t ldy, bool accumulate, bool byte_permutes) {
  if (w.kind == WeightKind::kF8E4M3 && w.cols % 8 == 0 && w.block_in % 8 == 0) {
    TileDecode<true>(x, T, ldx, w, r0, r1, y, ldy, accumulate, byte_permutes);
    return;
  }
  // One BF16 token streams at the memory's rate on AVX2 (a shift converts eight weights); a
  // batch's few were bound by the FMAs there.
  if (w.kind == WeightKind::kBF16 && T > 1 && w.cols % 8 == 0) {
    TileDecode<false>(x, T, ldx, w, r0, r1, y, ldy, accumulate, false);
    return;
  }
  GemvAvx2(x, T, ldx, w, r0, r1, y, ldy, accumulate);
}

bool PanelPairsAvx512Takes(const RawWeight& w) {
  // Whole eight-column steps inside the scale groups (the AVX2 converters keep the zero-padded
  // K % 8 tail, and F16 and F32).
  if (w.cols % 8 != 0) return false;
  switch (w.kind) {
    case WeightKind::kBF16: return true;
    case WeightKind::kF8E4M3: return w.block_in > 0 && w.block_in % 8 == 0;
    case WeightKind::kI8: return w.scale != nullptr && w.block_out > 0 && w.block_in > 0 && w.block_in % 8 == 0;
    case WeightKind::kInt4:
      return w.scale16 != nullptr && w.row_bytes == (w.cols + 1) / 2 && w.block_in > 0 && w.block_in % 8 == 0;
    default: return false;
  }
}

void ConvertPanelPairsAvx512(const RawWeight& w, int64_t r, int pairs, float* dst, int64_t Kp) {
  WithRowFormat(w, [&]<RowFormat F>() { PanelPairs<F>(w, r, pairs, dst, Kp); });
}

bool WeightRowScoresAvx512(const float* q, int64_t M, int64_t ldq, const RawWeight& w, int64_t r0, int64_t S,
                           float* scores, int64_t lds, bool byte_permutes) {
  if (!Avx512TakesRows(w)) return false;
  WithRowFormat(w, [&]<RowFormat F>() { RowScores512<F>(q, M, ldq, w, r0, S, scores, lds, byte_permutes); });
  return true;
}

bool WeightRowsWeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const RawWeight& w, int64_t r0, int64_t S,
                                 float* out, int64_t ldo) {
  if (!Avx512TakesRows(w)) return false;
  WithRowFormat(w, [&]<RowFormat F>() { RowsWeightedSum512<F>(p, M, ldp, w, r0, S, out, ldo); });
  return true;
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects this.

namespace dsv3::cpu {
void GemvAvx512(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool, bool) {}
void GemmPanel8Avx512(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool) {}
void GemmBf16Rows8Avx512(const uint16_t*, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool, const char*,
                         int64_t) {}
double FmaPeakFlopsAvx512(double) { return 0.0; }
double Int8PeakOpsAvx512(double) { return 0.0; }
bool PanelPairsAvx512Takes(const RawWeight&) { return false; }
void ConvertPanelPairsAvx512(const RawWeight&, int64_t, int, float*, int64_t) {}
bool WeightRowScoresAvx512(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool) {
  return false;
}
bool WeightRowsWeightedSumAvx512(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t) {
  return false;
}
}  // namespace dsv3::cpu

#endif
