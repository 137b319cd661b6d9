// Linear kernels for AVX2 + FMA + F16C (compiled with those flags for this file only; chosen at
// run time by linear.cc). Weights are converted to float32 in registers next to the
// arithmetic: BF16 by a 16-bit shift, F16 with vcvtph2ps, FP8 e4m3 by re-biasing into F16
// bits. Decode (up to 8 tokens: one per sequence) streams each weight once (memory-bound GEMV,
// prefetching the next chunk of rows), converting it once for all of the step's tokens (four
// rows against three tokens at a time); prefill converts a panel of weight rows once per call
// into an L2-sized buffer and meets three tokens at a time with four of its rows (4x3 tiles of
// 8-lane accumulators). FP8's block scale multiplies the activations instead of the weights.
//
// No standard-library templates or shared inline functions are used here: an AVX2-encoded
// copy of one could be chosen by the linker for code that runs on CPUs without AVX2.
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <time.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

// ---- 8 weights -> one float32 vector ---------------------------------------------------------
// Every kernel below computes an output as one 8-lane FMA chain over k (lane j takes k = j mod
// 8, in order), a fixed horizontal sum, and a zero-padded last step for K % 8. GEMV and GEMM
// share that order, so a row's value depends neither on the token count (the MoE feeds each
// expert a different one) nor on how rows are split between threads.

struct Bf16Loader {
  static constexpr int kBytes = 2;
  static __m256 Load8(const void* row, int64_t k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  }
  static float Scalar(const void* row, int64_t k) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(row)[k]) << 16;
    return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(bits))));
  }
};

struct F16Loader {
  static constexpr int kBytes = 2;
  static __m256 Load8(const void* row, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static float Scalar(const void* row, int64_t k) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<const uint16_t*>(row)[k])));
  }
};

struct F32Loader {
  static constexpr int kBytes = 4;
  static __m256 Load8(const void* row, int64_t k) { return _mm256_loadu_ps(static_cast<const float*>(row) + k); }
  static float Scalar(const void* row, int64_t k) { return static_cast<const float*>(row)[k]; }
};

// ---- Formats with a scale per group of block_in columns: FP8, INT8, INT4 ------------------------
// Each converts 16 (or 8) stored weights into exact float32 "unscaled" values u and applies its
// group's scale with Apply; the product is the one DequantizeRows rounds, so the kernels and
// their twin see the same weights. The kernels walk a row group by group (block_in is a
// multiple of 8, so an 8-wide load never straddles two groups) and load each group's scale
// once, instead of looking it up per load.

// Row r of a format stored in bytes (every scaled format).
struct ByteRows {
  static const uint8_t* Row(const RawWeight& w, int64_t r) { return static_cast<const uint8_t*>(w.data) + r * w.row_bytes; }
};

// e4m3 (bias 7) in the F16 layout (bias 15) is the same number times 2^-8, normals and
// subnormals alike: sign-extend the byte to 16 bits, shift left by 7 and clear bit 14 (the
// shifted copy of the sign). vcvtph2ps then gives u = E4M3ToF32(q) · 2^-8 exactly; the kernels
// multiply it by activations scaled by ActScale = 256 · scale (a power-of-two multiple, so the
// products round as with the plain values; see Fp8DotRows). 0x7f/0xff (NaN in e4m3) would read
// as ±480; the quantizer saturates at ±448 and never writes them.
struct Fp8Format : ByteRows {
  static constexpr bool kTiny = false;
  static float ActScale(const float* scale_row, int64_t g) { return scale_row[g] * 256.0f; }
  static __m256i ToF16Bits(__m128i q16) {
    return _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(q16), 7), _mm256_set1_epi16(int16_t(0xbfff)));
  }
  static __m256 Load8(const uint8_t* q, int64_t k) {
    return _mm256_cvtph_ps(_mm256_castsi256_si128(ToF16Bits(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k)))));
  }
  static float Unscaled(const uint8_t* q, int64_t k) {
    return _mm_cvtss_f32(_mm256_castps256_ps128(
        _mm256_cvtph_ps(_mm256_castsi256_si128(ToF16Bits(_mm_cvtsi32_si128(q[k]))))));
  }
};

// FP8 for the GEMV, without vcvtph2ps (which alone held the GEMV near 4 cycles per 16 weights
// on Zen 3): the byte's sign goes to bit 31 and its exponent and mantissa to bits 26..20 of a
// float32, which then reads as E4M3ToF32(q) · 2^-120 exactly (e4m3 subnormals become float32
// subnormals, zero stays zero). The activations take the other 2^112 against Fp8Format
// (ActScale · 2^112), so every product, and so every fma result, is bit for bit Fp8Format's,
// unless |x · scale| >= 2^8 overflows the scaled activation: Fp8DotRows then redoes the tile
// with Fp8Format.
struct Fp8Tiny {
  static constexpr bool kTiny = true;
  static float ActScale(const float* scale_row, int64_t g) { return scale_row[g] * 0x1p120f; }
  static __m256 Eight(const uint8_t* q) {
    const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(v, 20), _mm256_set1_epi32(int32_t(0x87f00000u))));
  }
  static __m256 Load8(const uint8_t* q, int64_t k) { return Eight(q + k); }
};

// INT8: float(q) · scale.
struct Int8Format : ByteRows {
  static constexpr int kGemvRows = 8;
  static int64_t ByteOffset(int64_t k) { return k; }
  static float Scale(const RawWeight& w, int64_t r, int64_t g) { return w.scale[(r / w.block_out) * w.scale_cols + g]; }
  static float Zero(const RawWeight&, int64_t, int64_t) { return 0.0f; }
  static void Load16(const uint8_t* q, int64_t k, __m256* a, __m256* b) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k));
    *a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
    *b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(v, v)));
  }
  static __m256 Load8(const uint8_t* q, int64_t k) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k))));
  }
  static float Unscaled(const uint8_t* q, int64_t k) { return static_cast<float>(static_cast<int8_t>(q[k])); }
  template <typename T>  // float or __m256
  static T Offset(T, T z) { return z; }  // no zero points: Apply ignores it
  static __m256 Apply(__m256 u, __m256 s, __m256) { return _mm256_mul_ps(u, s); }
  static float ApplyScalar(float u, float s, float) { return u * s; }
};

// INT4, low nibble first: (float(u) - z) · scale with F16 scales and z = zero point or 8. Loads
// start at even k (multiples of 8), so on a byte.
struct Int4Format : ByteRows {
  static constexpr int kGemvRows = 4;
  static int64_t ByteOffset(int64_t k) { return k / 2; }
  static float Scale(const RawWeight& w, int64_t r, int64_t g) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(w.scale16[r * w.scale_cols + g])));
  }
  static float Zero(const RawWeight& w, int64_t r, int64_t g) {
    return w.zero ? static_cast<float>(w.zero[r * w.scale_cols + g]) : 8.0f;
  }
  // Four bytes (eight columns, low nibble first) broadcast to every lane and shifted right by
  // 4·lane: lane j holds column j in its low nibble. No shuffles, which are the scarce ports.
  static __m256 Eight(const uint8_t* bytes) {
    int32_t v;
    __builtin_memcpy(&v, bytes, 4);
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i u = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(v), shifts), _mm256_set1_epi32(0xf));
    return _mm256_cvtepi32_ps(u);
  }
  static void Load16(const uint8_t* q, int64_t k, __m256* a, __m256* b) {
    *a = Eight(q + k / 2);
    *b = Eight(q + k / 2 + 4);
  }
  static __m256 Load8(const uint8_t* q, int64_t k) { return Eight(q + k / 2); }
  static float Unscaled(const uint8_t* q, int64_t k) {
    const uint8_t byte = q[k >> 1];
    return static_cast<float>((k & 1) ? (byte >> 4) : (byte & 0xf));
  }
  // (u - z) · s as one fma, u · s - zs with zs = Offset(s, z) = z · s once per group: z · s is
  // exact (an 8-bit integer times F16's 11-bit significand), and so is (u - z) · s (at most 19
  // bits), so the fma's one rounding leaves ApplyScalar's value, without its subtraction. Only
  // a zero can differ, +0 where u = z gave -0 for a zero scale, and no product sum can tell
  // (an fma chain from +0 never holds -0); a non-finite scale gives NaN throughout.
  template <typename T>  // float or __m256
  static T Offset(T s, T z) { return z * s; }
  static __m256 Apply(__m256 u, __m256 s, __m256 zs) { return _mm256_fmsub_ps(u, s, zs); }
  static float ApplyScalar(float u, float s, float z) { return (u - z) * s; }
};

// Row cursor of a scaled format for LoadWeightTail (the last K % 8 columns only).
template <typename F>
struct ScaledTailRow {
  const RawWeight* w;
  int64_t r;
  float Scalar(int64_t k) const {
    const int64_t g = k / w->block_in;
    return F::ApplyScalar(F::Unscaled(F::Row(*w, r), k), F::Scale(*w, r, g), F::Zero(*w, r, g));
  }
};

// Row cursor of FP8's unscaled values u (ConvertRows builds the GEMM's panel from it).
struct Fp8UnscaledRow {
  const uint8_t* q;
  __m256 Load8(int64_t k) const { return Fp8Format::Load8(q, k); }
  float Scalar(int64_t k) const { return Fp8Format::Unscaled(q, k); }
};

template <typename L>
struct PlainRow {
  static constexpr int kBytes = L::kBytes;  // a weight's
  const void* p;
  __m256 Load8(int64_t k) const { return L::Load8(p, k); }
  float Scalar(int64_t k) const { return L::Scalar(p, k); }
  void Prefetch(int64_t k, int64_t ahead) const {
    _mm_prefetch(static_cast<const char*>(p) + ahead + k * L::kBytes, _MM_HINT_T0);
  }
};

// Lanes past K read as zero.
template <typename Row>
__m256 LoadWeightTail(const Row& row, int64_t k, int64_t K) {
  alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = k; i < K; ++i) buf[i - k] = row.Scalar(i);
  return _mm256_load_ps(buf);
}
inline __m256 LoadTail(const float* x, int64_t k, int64_t K) {
  alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = k; i < K; ++i) buf[i - k] = x[i];
  return _mm256_load_ps(buf);
}

#include "engine/kernels/cpu/isa_common.inc"

inline void Store(float* y, float v, bool accumulate) { *y = accumulate ? *y + v : v; }

// y[0..3] (+)= HorizontalSum(a), (b), (c), (d): the four reduced side by side, each with the same
// adds in the same order as HorizontalSum's (lanes i + (i + 4), then 0 + 2 and 1 + 3, then
// those two), in under half the instructions of four HorizontalSums and their stores. Tiles end
// with these sums after every K-long pass: BF16 experts (512 x 1536, 2 threads, three alternated
// pairs) streamed 10-17% faster at 48 tokens (2.02-2.19 -> 2.35-2.39 GB/s) and ~10% at one
// (21.1-21.7 -> 23.2-26.4 GB/s); the GEMM's 4 x 3 microkernel 1-5% (K = 384-1536, one thread).
inline void StoreSums4(__m256 a, __m256 b, __m256 c, __m256 d, float* y, bool accumulate) {
  // Lanes i + (i + 4) of each, as [a | b] and [c | d] in 128-bit halves.
  const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
  const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
  // Lanes 0 + 2 and 1 + 3, as [a c | b d] in 64-bit pairs.
  const __m256d ab2 = _mm256_castps_pd(ab), cd2 = _mm256_castps_pd(cd);
  const __m256 pairs = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(ab2, cd2)),
                                     _mm256_castpd_ps(_mm256_unpackhi_pd(ab2, cd2)));
  // Each pair's two: a, c, b, d in lanes 0, 2, 4, 6.
  const __m256 sums = _mm256_add_ps(pairs, _mm256_movehdup_ps(pairs));
  __m128 v = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(sums, _mm256_setr_epi32(0, 4, 2, 6, 0, 4, 2, 6)));
  if (accumulate) v = _mm_add_ps(_mm_loadu_ps(y), v);
  _mm_storeu_ps(y, v);
}

// A tile's outputs: y[j * ldy + i] (+)= HorizontalSum(acc[i][j]), rows four at a time.
template <int R, int N>
__attribute__((always_inline)) inline void StoreTileSums(const __m256 (&acc)[R][N], float* y, int64_t ldy,
                                                         bool accumulate) {
  for (int j = 0; j < N; ++j) {
    int i = 0;
    for (; i + 4 <= R; i += 4)
      StoreSums4(acc[i][j], acc[i + 1][j], acc[i + 2][j], acc[i + 3][j], y + j * ldy + i, accumulate);
    for (; i < R; ++i) Store(y + j * ldy + i, HorizontalSum(acc[i][j]), accumulate);
  }
}

// A compile-time int as a value (std::integral_constant, without the standard library here).
template <int V>
struct IntConstant {
  static constexpr int value = V;
};

// ---- GEMV: weights converted in registers, each read and converted once for all tokens ---------

// How far a GEMV tile's rows fetch ahead. The hardware prefetchers alone leave a GEMV of eight
// interleaved row streams well short of the memory bandwidth, so each row fetches what its
// stream (row i of this tile, then row i of the next tile, ...) reads kRowStreamAhead bytes
// later: `near` bytes on, in the same row, for columns below `split`, then `far` bytes on, in a
// later tile's row i. near = 0: no fetching.
// 3 KB a stream (24 KB for a tile of eight rows, beside the activations in L1): the distance
// had been one row on each stream (the next tile), which for short rows was too close to hide
// DRAM's latency (a 512-column BF16 row: 1 KB) and for long ones so far that a tile's fetched
// lines left L1 before their use (4096 columns: 64 KB a tile). One token, 2 threads, 256 MB of
// BF16 rows from DRAM, in-process against the one-row distance in both orders: time 0.89 / 0.89
// at 512 columns (1.12 / 1.07 the other way round, 1 and 2 threads), 0.92 at 768, 0.85 / 0.80
// at 2048, 0.80-0.89 at 4096 (1.23 / 1.29), 0.95 at 384, even at 1024, 1536 (3 KB already)
// and 7168; 2 KB and 4 KB a stream were each worse at one end.
constexpr int64_t kRowStreamAhead = 3072;
struct RowLookahead {
  int64_t near = 0, far = 0, split = 0;
};
inline RowLookahead RowStreamLookahead(int64_t row_bytes, int64_t tile_rows, int64_t weight_bytes) {
  if (row_bytes <= 0) return RowLookahead{};  // no columns: nothing to read or fetch
  const int64_t rows_on = kRowStreamAhead / row_bytes, rest = kRowStreamAhead % row_bytes;
  RowLookahead a;
  a.near = rows_on * tile_rows * row_bytes + rest;
  a.far = (rows_on + 1) * tile_rows * row_bytes + rest - row_bytes;
  a.split = ((row_bytes - rest) / weight_bytes) & ~int64_t{7};
  return a;
}

// R rows against N tokens (x rows ldx apart, y rows ldy apart): each weight vector is loaded
// and converted once for all N, which at a decode step of several sequences had been redone
// per token. ahead: where each row fetches (RowStreamLookahead), none for RowLookahead{}.
template <int R, int N, typename Row>
void DotRows(const Row* rows, const float* x, int64_t ldx, int64_t K, float* y, int64_t ldy, bool accumulate,
             RowLookahead ahead) {
  __m256 acc[R][N];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t K8 = K & ~int64_t{7};
  int64_t fetch_bytes = ahead.near;
  const auto step = [&](int64_t k, bool fetch) __attribute__((always_inline)) {
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx + k);
    for (int i = 0; i < R; ++i) {
      if (fetch) rows[i].Prefetch(k, fetch_bytes);
      const __m256 wv = rows[i].Load8(k);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
  };
  // Two steps an iteration: BM_ExpertStream BF16 decode (2 threads, seven alternated pairs, each
  // faster) 15.1-20.8 -> 20.8-27.4 GB/s.
  if (ahead.near != 0) {
    const int64_t split = ahead.split < K8 ? ahead.split : K8;
    int64_t k = 0;
#pragma GCC unroll 2
    for (; k < split; k += 8) step(k, true);
    fetch_bytes = ahead.far;
#pragma GCC unroll 2
    for (; k < K8; k += 8) step(k, true);
  } else {
#pragma GCC unroll 2
    for (int64_t k = 0; k < K8; k += 8) step(k, false);
  }
  if (K8 < K) {
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = LoadTail(x + j * ldx, K8, K);
    for (int i = 0; i < R; ++i) {
      const __m256 wv = LoadWeightTail(rows[i], K8, K);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
  }
  StoreTileSums(acc, y, ldy, accumulate);
}

// Rows [r, r+n) (n <= R) against tokens [0, T): whole tiles of R rows meet three tokens at a
// time (twelve accumulators, as the GEMM's microkernel), then two, then one; a tile's
// first pass fetches ahead.
template <int R, typename Row>
void DotRowsAllTokens(const Row* rows, int n, const float* x, int64_t T, int64_t ldx, int64_t K, float* y,
                      int64_t ldy, bool accumulate, RowLookahead ahead) {
  if (n < R) {
    for (int64_t t = 0; t < T; ++t)
      for (int i = 0; i < n; ++i)
        DotRows<1, 1>(rows + i, x + t * ldx, ldx, K, y + t * ldy + i, ldy, accumulate, RowLookahead{});
    return;
  }
  int64_t t = 0;
  for (; t + 3 <= T; t += 3)
    DotRows<R, 3>(rows, x + t * ldx, ldx, K, y + t * ldy, ldy, accumulate, t == 0 ? ahead : RowLookahead{});
  if (T - t == 2) DotRows<R, 2>(rows, x + t * ldx, ldx, K, y + t * ldy, ldy, accumulate, t == 0 ? ahead : RowLookahead{});
  if (T - t == 1) DotRows<R, 1>(rows, x + t * ldx, ldx, K, y + t * ldy, ldy, accumulate, t == 0 ? ahead : RowLookahead{});
}

template <typename MakeRow>
void GemvRows(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate, const MakeRow& make_row) {
  using Row = decltype(make_row(int64_t{0}));
  // One token: tiles of eight rows (eight independent FMA chains cover the FMA latency);
  // several: four rows, met by three tokens at a time (twelve chains).
  const auto tiles = [&](auto tile) {
    constexpr int kR = decltype(tile)::value;
    const RowLookahead ahead = RowStreamLookahead(w.row_bytes, kR, Row::kBytes);
    for (int64_t r = r0; r < r1; r += kR) {
      const int n = static_cast<int>(r1 - r < kR ? r1 - r : kR);
      Row rows[kR];
      for (int i = 0; i < n; ++i) rows[i] = make_row(r + i);
      DotRowsAllTokens<kR>(rows, n, x, T, ldx, w.cols, y + r, ldy, accumulate, ahead);
    }
  };
  if (T == 1) {
    tiles(IntConstant<8>{});
  } else {
    tiles(IntConstant<4>{});
  }
}

// Scaled formats: R rows against N tokens walked group by group, each group's scales loaded
// once; the same 8-lane chain per row and token as DotRows. prefetch: bytes from a row to the
// row whose weights are read next (the next chunk of rows), 0 for none.
template <typename F, int R, int N>
void ScaledDotRows(const RawWeight& w, int64_t r, const float* x, int64_t ldx, float* y, int64_t ldy,
                   bool accumulate, int64_t prefetch) {
  const int64_t K = w.cols, K8 = K & ~int64_t{7}, bi = w.block_in;
  const uint8_t* q[R];
  __m256 acc[R][N];
  for (int i = 0; i < R; ++i) {
    q[i] = F::Row(w, r + i);
    for (int j = 0; j < N; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int64_t k0 = 0, g = 0; k0 < K8; k0 += bi, ++g) {
    const int64_t k1 = k0 + bi < K8 ? k0 + bi : K8;
    float s[R], zs[R];
    for (int i = 0; i < R; ++i) {
      s[i] = F::Scale(w, r + i, g);
      zs[i] = F::Offset(s[i], F::Zero(w, r + i, g));
    }
    // Eight columns from k: each row's weights converted and scaled once for the N tokens.
    const auto eight = [&](int64_t k, bool fetch) __attribute__((always_inline)) {
      __m256 xv[N];
      for (int j = 0; j < N; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx + k);
      for (int i = 0; i < R; ++i) {
        if (fetch) _mm_prefetch(reinterpret_cast<const char*>(q[i] + prefetch + F::ByteOffset(k)), _MM_HINT_T0);
        const __m256 wv = F::Apply(F::Load8(q[i], k), _mm256_set1_ps(s[i]), _mm256_set1_ps(zs[i]));
        for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
      }
    };
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16) {
      eight(k, prefetch != 0);
      eight(k + 8, false);
    }
    if (k < k1) eight(k, false);  // block_in % 16 == 8, or K8 cut the group
  }
  if (K8 < K) {
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = LoadTail(x + j * ldx, K8, K);
    for (int i = 0; i < R; ++i) {
      const __m256 wv = LoadWeightTail(ScaledTailRow<F>{&w, r + i}, K8, K);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
  }
  StoreTileSums(acc, y, ldy, accumulate);
}

// One token: tiles of F::kGemvRows rows; several: four rows against three tokens at a time,
// then two, then one (a tile's first pass prefetches the next tile's rows).
template <typename F>
void ScaledGemvRows(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                    int64_t ldy, bool accumulate) {
  const auto rows = [&](auto tile) {
    constexpr int kR = decltype(tile)::value;
    for (int64_t r = r0; r < r1; r += kR) {
      const int n = static_cast<int>(r1 - r < kR ? r1 - r : kR);
      if (n < kR) {
        for (int64_t t = 0; t < T; ++t)
          for (int i = 0; i < n; ++i)
            ScaledDotRows<F, 1, 1>(w, r + i, x + t * ldx, ldx, y + t * ldy + r + i, ldy, accumulate, 0);
        continue;
      }
      const int64_t ahead = kR * w.row_bytes;
      int64_t t = 0;
      for (; t + 3 <= T; t += 3)
        ScaledDotRows<F, kR, 3>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy, accumulate, t == 0 ? ahead : 0);
      if (T - t == 2) ScaledDotRows<F, kR, 2>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy, accumulate, t == 0 ? ahead : 0);
      if (T - t == 1) ScaledDotRows<F, kR, 1>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy, accumulate, t == 0 ? ahead : 0);
    }
  };
  if (T == 1) {
    rows(IntConstant<F::kGemvRows>{});
  } else {
    rows(IntConstant<4>{});
  }
}

// ---- FP8: the block scale multiplies the activations -------------------------------------------
// y = Σ_k fl(x_k · s'_b(k)) · u_k, with u_k = E4M3ToF32(q_k) · 2^-8 exact and s' = 256 · scale of
// the row's block, in the 8-lane chain order of every kernel here. DeepSeek's blocks are 128
// rows tall, so all eight rows of a GEMV tile share each group's scale: one multiply per eight
// activations serves them all, where scaling each weight cost a multiply per eight weights and
// left the GEMV compute-bound below the memory bandwidth on AVX2. The GEMM scales a block of
// activations once per panel (panels never straddle a block of rows). The result differs from
// x · DequantizeRows(W) only in rounding (one product rounded instead of two), and equals it
// exactly against unit vectors.

// Rows [r, r+R) must lie in one block of block_out rows. prefetch: bytes of the tile's R
// contiguous rows, to fetch as many after them (the next tile), 0 for none. They are fetched in
// storage order, an equal share per 16 columns, as linear_q8_avx2.cc's Tile does: a prefetch
// per row and 16 columns cost a load slot each, and fewer ones, column by column across the
// rows, left one thread's DRAM stream slower than the kernel.
// N tokens at once (x rows ldx apart, y rows ldy apart), each weight vector converted once for
// all of them. F: Fp8Tiny (a token whose scaled activations may have overflowed is left
// unwritten and its bit in the returned mask set) or Fp8Format (returns 0). The K % 8 tail is
// Fp8Format's either way (each product is the same number).
template <typename F, int R, int N>
unsigned Fp8DotRowsWith(const RawWeight& w, int64_t r, const float* x, int64_t ldx, float* y, int64_t ldy,
                        bool accumulate, int64_t prefetch) {
  const int64_t K = w.cols, K8 = K & ~int64_t{7}, bi = w.block_in;
  const float* scales = w.scale + (r / w.block_out) * w.scale_cols;
  const uint8_t* q[R];
  __m256 acc[R][N];
  for (int i = 0; i < R; ++i) {
    q[i] = Fp8Format::Row(w, r + i);
    for (int j = 0; j < N; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  const char* next = reinterpret_cast<const char*>(q[0]) + prefetch;
  const int64_t steps = K / 16 > 0 ? K / 16 : 1, span = ((R * w.row_bytes + steps - 1) / steps + 63) & ~int64_t{63};
  // Eight columns from k: the tokens' activations scaled once, each row's weights converted once.
  const auto eight = [&](int64_t k, __m256 s) __attribute__((always_inline)) {
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = _mm256_mul_ps(_mm256_loadu_ps(x + j * ldx + k), s);
    for (int i = 0; i < R; ++i) {
      const __m256 wv = F::Load8(q[i], k);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
  };
  for (int64_t k0 = 0, g = 0; k0 < K8; k0 += bi, ++g) {
    const int64_t k1 = k0 + bi < K8 ? k0 + bi : K8;
    const __m256 s = _mm256_set1_ps(F::ActScale(scales, g));
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16) {
      if (prefetch != 0)
        for (const char* f = next + (k / 16) * span, *f_end = f + span; f < f_end; f += 64) _mm_prefetch(f, _MM_HINT_T0);
      eight(k, s);
      eight(k + 8, s);
    }
    if (k < k1) eight(k, s);  // block_in % 16 == 8, or K8 cut the group
  }
  if (K8 < K) {
    const __m256 s = _mm256_set1_ps(Fp8Format::ActScale(scales, K8 / bi));
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = _mm256_mul_ps(LoadTail(x + j * ldx, K8, K), s);
    for (int i = 0; i < R; ++i) {
      const __m256 wv = LoadWeightTail(Fp8UnscaledRow{q[i]}, K8, K);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
  }
  unsigned redo = 0;
  for (int j = 0; j < N; ++j) {
    float sums[R];
    bool finite = true;
    for (int i = 0; i < R; ++i) {
      sums[i] = HorizontalSum(acc[i][j]);
      finite = finite && __builtin_isfinite(sums[i]);
    }
    // An infinite (or NaN) sum may come from a scaled activation that overflowed: Fp8Format's
    // does not. (x with a NaN or Inf takes this way too, and gets Fp8Format's NaN or Inf.)
    if (F::kTiny && !finite) {
      redo |= 1u << j;
      continue;
    }
    for (int i = 0; i < R; ++i) Store(y + j * ldy + i, sums[i], accumulate);
  }
  return redo;
}

template <int R, int N>
void Fp8DotRows(const RawWeight& w, int64_t r, const float* x, int64_t ldx, float* y, int64_t ldy, bool accumulate,
                int64_t prefetch) {
  const unsigned redo = Fp8DotRowsWith<Fp8Tiny, R, N>(w, r, x, ldx, y, ldy, accumulate, prefetch);
  for (int j = 0; j < N; ++j)
    if (redo & (1u << j)) Fp8DotRowsWith<Fp8Format, R, 1>(w, r, x + j * ldx, ldx, y + j * ldy, ldy, accumulate, 0);
}

// xs[t · ld + (k - c0)] = fl(x[t, k] · s), s = F::ActScale of column k's group in block row rb,
// for columns [c0, c1) of nt tokens (x rows ldx apart): the activations an FP8 block of rows
// multiplies, for the GEMM's panel (Fp8Format, every column) and for a column chunk of
// Fp8RowGroupTokens (Fp8Tiny).
template <typename F>
void ScaleFp8Columns(const RawWeight& w, int64_t rb, const float* x, int64_t ldx, int64_t nt, int64_t c0, int64_t c1,
                     float* xs, int64_t ld) {
  const int64_t bi = w.block_in;
  const float* scales = w.scale + rb * w.scale_cols;
  for (int64_t t = 0; t < nt; ++t) {
    const float* xt = x + t * ldx;
    float* d = xs + t * ld;
    for (int64_t k = c0; k < c1;) {
      const int64_t g = k / bi, g_end = (g + 1) * bi < c1 ? (g + 1) * bi : c1;
      const float sv = F::ActScale(scales, g);
      const __m256 s = _mm256_set1_ps(sv);
      for (; k + 8 <= g_end; k += 8) _mm256_storeu_ps(d + (k - c0), _mm256_mul_ps(_mm256_loadu_ps(xt + k), s));
      for (; k < g_end; ++k) d[k - c0] = xt[k] * sv;
    }
  }
}

// A decode step of four to eight sequences (an eval's generation batch is eight) as rows against
// all N tokens at once: the 4-row x 3-token tile converted each row once per three tokens, and
// its twelve sums, three scaled activations, the weight, the scale and the e4m3 mask (17
// vectors) left sums on the stack, at ~40 GFLOP/s a thread. Here each weight vector is converted
// once for all N and meets N sums and activations read from L1: the columns go kFp8ChunkColumns
// at a time, the tokens' activations for a chunk scaled once (16 KB at eight tokens) while up
// to kFp8GroupRows rows pass, each row's sums carried between chunks (the same chain per row and
// token, so the same bits). FP8 16384 x 1536 from DRAM, 2 threads, in-process against the tiles,
// with groups of 16 rows: time 0.86 at 4 tokens, 0.94 at 5, 0.81 at 6, 0.62 at 7, 0.75 at 8 (one
// thread from L3: 0.86, 0.88, -, -, 0.64); at 2 and 3 tokens 1.60 and 1.13, which stay on the
// tiles. Groups of 64 rows scale a block's activations a quarter as often: 16-row groups took
// 1.05-1.10 their time at 4-8 tokens, both orders (128 rows: no further gain). Rows [r, r + n) lie in
// one block of block_out rows; the next n rows' bytes are fetched in storage order, an equal
// share per row and chunk. A sum the scaled activations may have overflowed (not finite) is
// redone with Fp8Format, as Fp8DotRows does.
constexpr int64_t kFp8ChunkColumns = 512;
constexpr int kFp8GroupRows = 64;
constexpr int64_t kFp8ManyTokens = 4;
template <int N>
void Fp8RowGroupTokens(const RawWeight& w, int64_t r, int n, const float* x, int64_t ldx, float* y, int64_t ldy,
                       bool accumulate) {
  const int64_t K = w.cols, K8 = K & ~int64_t{7}, bi = w.block_in;
  const float* scales = w.scale + (r / w.block_out) * w.scale_cols;
  alignas(32) float xs[N][kFp8ChunkColumns];
  __m256 carry[kFp8GroupRows][N];
  const int64_t chunks = K8 > 0 ? (K8 + kFp8ChunkColumns - 1) / kFp8ChunkColumns : 1;
  const char* next = reinterpret_cast<const char*>(Fp8Format::Row(w, r)) + n * w.row_bytes;
  const int64_t span = ((n * w.row_bytes + n * chunks - 1) / (n * chunks) + 63) & ~int64_t{63};
  const bool fetch = r + 2 * n <= w.rows;
  for (int64_t c = 0, unit = 0; c < chunks; ++c) {
    const int64_t c0 = c * kFp8ChunkColumns, c1 = K8 - c0 > kFp8ChunkColumns ? c0 + kFp8ChunkColumns : K8;
    ScaleFp8Columns<Fp8Tiny>(w, r / w.block_out, x, ldx, N, c0, c1, xs[0], kFp8ChunkColumns);
    for (int i = 0; i < n; ++i, ++unit) {
      if (fetch) PrefetchLines(next + unit * span, next + (unit + 1) * span);
      const uint8_t* q = Fp8Format::Row(w, r + i);
      __m256 acc[N];
      for (int j = 0; j < N; ++j) acc[j] = c == 0 ? _mm256_setzero_ps() : carry[i][j];
      for (int64_t k = c0; k < c1; k += 8) {
        const __m256 wv = Fp8Tiny::Load8(q, k);
        for (int j = 0; j < N; ++j) acc[j] = _mm256_fmadd_ps(_mm256_load_ps(xs[j] + (k - c0)), wv, acc[j]);
      }
      for (int j = 0; j < N; ++j) carry[i][j] = acc[j];
    }
  }
  for (int i = 0; i < n; ++i) {
    const uint8_t* q = Fp8Format::Row(w, r + i);
    if (K8 < K) {  // Fp8Format's tail, as Fp8DotRowsWith's
      const __m256 s = _mm256_set1_ps(Fp8Format::ActScale(scales, K8 / bi));
      const __m256 wv = LoadWeightTail(Fp8UnscaledRow{q}, K8, K);
      for (int j = 0; j < N; ++j)
        carry[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(LoadTail(x + j * ldx, K8, K), s), wv, carry[i][j]);
    }
    for (int j = 0; j < N; ++j) {
      const float sum = HorizontalSum(carry[i][j]);
      if (__builtin_isfinite(sum)) {
        Store(y + j * ldy + i, sum, accumulate);
      } else {
        Fp8DotRowsWith<Fp8Format, 1, 1>(w, r + i, x + j * ldx, ldx, y + j * ldy + i, ldy, accumulate, 0);
      }
    }
  }
}

// Decode: tiles of eight rows for one token; two or three tokens (sequences decoding together):
// four rows against three tokens at a time, then two, then one; four to eight: Fp8RowGroupTokens.
void Fp8GemvRows(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                 int64_t ldy, bool accumulate) {
  const auto rows = [&](auto tile) {
    constexpr int kR = decltype(tile)::value;
    for (int64_t r = r0; r < r1; r += kR) {
      // A tile that would straddle two blocks of rows (or the last rows) goes row by row.
      const bool whole = r + kR <= r1 && r / w.block_out == (r + kR - 1) / w.block_out;
      const int n = static_cast<int>(r1 - r < kR ? r1 - r : kR);
      if (!whole) {
        for (int64_t t = 0; t < T; ++t)
          for (int i = 0; i < n; ++i) Fp8DotRows<1, 1>(w, r + i, x + t * ldx, ldx, y + t * ldy + r + i, ldy, accumulate, 0);
        continue;
      }
      const int64_t ahead = kR * w.row_bytes;
      int64_t t = 0;
      for (; t + 3 <= T; t += 3) Fp8DotRows<kR, 3>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy, accumulate, t == 0 ? ahead : 0);
      if (T - t == 2) Fp8DotRows<kR, 2>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy, accumulate, t == 0 ? ahead : 0);
      if (T - t == 1) Fp8DotRows<kR, 1>(w, r, x + t * ldx, ldx, y + t * ldy + r, ldy, accumulate, t == 0 ? ahead : 0);
    }
  };
  if (T == 1) {
    rows(IntConstant<8>{});
  } else if (T < kFp8ManyTokens || T > kGemvMaxTokens) {
    rows(IntConstant<4>{});
  } else {
    // Groups of rows that do not straddle a block of rows.
    for (int64_t r = r0; r < r1;) {
      const int64_t block_end = (r / w.block_out + 1) * w.block_out, end = block_end < r1 ? block_end : r1;
      const int n = static_cast<int>(end - r < kFp8GroupRows ? end - r : kFp8GroupRows);
      switch (T) {
        case 4: Fp8RowGroupTokens<4>(w, r, n, x, ldx, y + r, ldy, accumulate); break;
        case 5: Fp8RowGroupTokens<5>(w, r, n, x, ldx, y + r, ldy, accumulate); break;
        case 6: Fp8RowGroupTokens<6>(w, r, n, x, ldx, y + r, ldy, accumulate); break;
        case 7: Fp8RowGroupTokens<7>(w, r, n, x, ldx, y + r, ldy, accumulate); break;
        default: Fp8RowGroupTokens<8>(w, r, n, x, ldx, y + r, ldy, accumulate); break;
      }
      r += n;
    }
  }
}

// Where row i of a panel's rows (Kp = roundup(K, 8) floats each, zero-padded) keeps columns
// [k, k+8), k a multiple of 8. Plain: row after row. Paired (the AVX-512 tiles'): rows 2p and
// 2p+1 take turns eight columns at a time, so GemmPanel8Avx512 loads a pair's columns [k, k+8)
// as one 512-bit vector (inserting two halves cost it a fifth of its FMA rate).
struct PanelLayout {
  int64_t Kp;
  bool paired;
  float* Row(float* dst, int i) const { return paired ? dst + (i / 2) * 2 * Kp + (i % 2) * 8 : dst + i * Kp; }
  int64_t At(int64_t k) const { return paired ? 2 * k : k; }
};

// Rows [r, r+n) of a scaled format as float32 panel rows: the GEMM's weight panel, holding
// exactly the values ScaledDotRows multiplies.
template <typename F>
void ConvertScaledRows(const RawWeight& w, int64_t r, int n, float* dst, const PanelLayout& layout) {
  const int64_t K = w.cols, K8 = K & ~int64_t{7}, bi = w.block_in;
  for (int i = 0; i < n; ++i) {
    const uint8_t* q = F::Row(w, r + i);
    float* d = layout.Row(dst, i);
    for (int64_t k0 = 0, g = 0; k0 < K8; k0 += bi, ++g) {
      const int64_t k1 = k0 + bi < K8 ? k0 + bi : K8;
      const __m256 s = _mm256_set1_ps(F::Scale(w, r + i, g)), zs = F::Offset(s, _mm256_set1_ps(F::Zero(w, r + i, g)));
      int64_t k = k0;
      for (; k + 16 <= k1; k += 16) {
        __m256 a, b;
        F::Load16(q, k, &a, &b);
        _mm256_storeu_ps(d + layout.At(k), F::Apply(a, s, zs));
        _mm256_storeu_ps(d + layout.At(k + 8), F::Apply(b, s, zs));
      }
      if (k < k1) _mm256_storeu_ps(d + layout.At(k), F::Apply(F::Load8(q, k), s, zs));
    }
    if (K8 < K) _mm256_storeu_ps(d + layout.At(K8), LoadWeightTail(ScaledTailRow<F>{&w, r + i}, K8, K));
  }
}

// Calls fn(make_row) with a row factory for w's plain (unscaled) format.
template <typename Fn>
void WithRowFactory(const RawWeight& w, const Fn& fn) {
  const int64_t K = w.cols;
  switch (w.kind) {
    case WeightKind::kBF16:
      fn([&](int64_t r) { return PlainRow<Bf16Loader>{static_cast<const uint16_t*>(w.data) + r * K}; });
      return;
    case WeightKind::kF16:
      fn([&](int64_t r) { return PlainRow<F16Loader>{static_cast<const uint16_t*>(w.data) + r * K}; });
      return;
    case WeightKind::kF32:
      fn([&](int64_t r) { return PlainRow<F32Loader>{static_cast<const float*>(w.data) + r * K}; });
      return;
    default:
      return;
  }
}

// ---- GEMM: four weight rows converted once per token block, against three tokens at a time --

// Converts rows [r, r+n) of W into float32 panel rows.
template <typename MakeRow>
void ConvertRows(const MakeRow& make_row, int64_t r, int n, int64_t K, float* dst, const PanelLayout& layout) {
  const int64_t K8 = K & ~int64_t{7};
  for (int i = 0; i < n; ++i) {
    const auto row = make_row(r + i);
    float* d = layout.Row(dst, i);
    for (int64_t k = 0; k < K8; k += 8) _mm256_storeu_ps(d + layout.At(k), row.Load8(k));
    if (K8 < K) _mm256_storeu_ps(d + layout.At(K8), LoadWeightTail(row, K8, K));
  }
}

template <int M, int N>
void MicroKernel(const float* wt, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, bool accumulate) {
  const int64_t K8 = K & ~int64_t{7}, Kp = (K + 7) & ~int64_t{7};
  __m256 acc[M][N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = _mm256_setzero_ps();
  // Two steps an iteration: one thread, a 4 x 3 tile over 48 tokens from L1/L2, 1-5% faster.
#pragma GCC unroll 2
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx + k);
    for (int i = 0; i < M; ++i) {
      const __m256 wv = _mm256_loadu_ps(wt + i * Kp + k);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
  }
  if (K8 < K) {
    for (int j = 0; j < N; ++j) {
      const __m256 xv = LoadTail(x + j * ldx, K8, K);
      for (int i = 0; i < M; ++i) acc[i][j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wt + i * Kp + K8), acc[i][j]);
    }
  }
  StoreTileSums(acc, y, ldy, accumulate);
}

template <int M>
void MicroTokens(const float* wt, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                 bool accumulate) {
  int64_t t = 0;
  for (; t + 3 <= T; t += 3) MicroKernel<M, 3>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
  if (T - t == 2) MicroKernel<M, 2>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
  if (T - t == 1) MicroKernel<M, 1>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
}

// BF16's wide tiles read the rows in place (GemmRows' bf16_rows) up to this many tokens a call:
// a prefill's routed experts, ~48 tokens each at 512. With more, the panel, converted once,
// serves enough tokens to pay for itself, and its loads cost less than widening in every pass:
// 1152 x 384 from L2 at 128 tokens, 2 threads, old and new builds alternated, 343-347 GFLOP/s
// through the panel against 296-324 in place; bench-v3-mini BF16 pp512, alternated per
// repetition in one process, two rounds: in place at every token count 432 / 425 tok/s, up to
// 96 tokens 451 / 440, up to 160 453 / 439, never 429.
constexpr int64_t kBf16RowsMaxTokens = 96;

// convert(r, m, wt, layout) writes rows [r, r+m) of W as float32 panel rows into wt;
// scratch holds GemmScratchFloats(K) floats: the panel, then FP8's scaled activations.
// wide: tiles of eight panel rows, paired, go to GemmPanel8Avx512 (AVX-512, the same bits);
// a panel's last, shorter tile stays plain for the AVX2 microkernels.
template <typename Convert>
void GemmRows(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate, float* scratch, bool wide, const Convert& convert) {
  const bool fp8 = w.kind == WeightKind::kF8E4M3;
  const int64_t K = w.cols, Kp = (K + 7) & ~int64_t{7}, max_block = GemmTokenBlock(K, wide);
  // Wide tiles of these formats are converted by linear_avx512.cc (one 64-byte store a pair's
  // eight columns).
  const bool pairs512 = wide && PanelPairsAvx512Takes(w);
  // BF16's wide tiles skip the panel up to kBf16RowsMaxTokens tokens: GemmBf16Rows8Avx512
  // widens the stored rows in registers (the same values, so the same bits). Writing and
  // reading back the float32 panel had taken a fifth of a BF16 prefill's MoE GEMMs (64 experts
  // x 48 tokens, 2 threads, alternated in one process: 268 -> 316 GFLOP/s with the fetches and
  // blocks below; bench-v3-mini BF16 pp512, alternated per run in one process: 484 -> 514
  // tok/s). An eight-row tile is 24 KB of bf16 where the panel was 64 rows, so its token blocks
  // may be twice as long (their activations, 0.5 MB at K = 1536, still in L2): 499 -> 514
  // tok/s; one block of all the tokens (a prefill's shared experts: 3 MB of activations from L3
  // for each tile) 492.
  const bool bf16_rows = pairs512 && w.kind == WeightKind::kBF16 && T <= kBf16RowsMaxTokens;
  // Token blocks of equal size, a multiple of four where the cap allows: 48 tokens at K = 1536
  // (cap 42, a prefill's routed expert) went as 42 + 6, and the 6 as a four-token tile and a
  // two-token one at half its rate (one such matrix, one thread: 137 -> 144 GFLOP/s).
  const int64_t cap = bf16_rows ? 2 * max_block : max_block;
  const int64_t nblocks = T > cap ? (T + cap - 1) / cap : 1;
  int64_t block = ((T + nblocks - 1) / nblocks + 3) & ~int64_t{3};
  if (block > cap) block = cap;
  const int64_t panel = fp8 ? GemmFp8PanelRows(K, wide) : GemmPanelRows(K, wide);
  float* wt = scratch;
  float* xs = scratch + panel * Kp;
  // Each weight row is read and converted once per call (a panel of rows at a time), then
  // meets every token block from L2.
  const auto panel_end = [&](int64_t p0) {
    const int64_t p1 = r1 - p0 < panel ? r1 : p0 + panel;
    if (!fp8) return p1;
    // One block of rows per panel: its activations are scaled once for all of them.
    const int64_t block_end = (p0 / w.block_out + 1) * w.block_out;
    return p1 < block_end ? p1 : block_end;
  };
  for (int64_t p0 = r0, p1 = r0; p0 < r1; p0 = p1) {
    p1 = panel_end(p0);
    // Four rows a call: half of a wide tile (its pairs 0-1 or 2-3), or a plain tile.
    for (int64_t r = p0; r < p1; r += 4) {
      const bool paired = wide && (r - p0) / 8 * 8 + 8 <= p1 - p0;
      if (paired && bf16_rows) continue;
      if (paired && pairs512) {
        ConvertPanelPairsAvx512(w, r, 2, wt + (r - p0) * Kp, Kp);
        continue;
      }
      convert(r, static_cast<int>(p1 - r < 4 ? p1 - r : 4), wt + (r - p0) * Kp, PanelLayout{Kp, paired});
    }
    // The next panel's stored rows are fetched into L2 while this one computes, a share before
    // each microkernel call: converting straight from DRAM left the FMAs idle (a fifth of a
    // BF16 prefill's time sat on the conversion's loads). Whole lines, from the one holding
    // the next panel's first byte. Not for pairs512: the AVX-512 converter fetches a pair of
    // rows ahead as it goes, and the bursts here then only cost (MoE GEMMs of 64 experts x 48
    // tokens, 2 threads, alternated: INT4 and INT8 2-5% faster without them).
    const uintptr_t rows_at = reinterpret_cast<uintptr_t>(w.data);
    const uintptr_t ahead_begin = (rows_at + p1 * w.row_bytes) & ~uintptr_t{63};
    const char* ahead = reinterpret_cast<const char*>(ahead_begin);
    // The call's last panel fetches as many rows past r1: LinearJobs hands a thread a split
    // matrix's pieces in order, so those are usually its next call's, which otherwise converted
    // its first panel straight from DRAM (a prefill's expert pieces are one panel each: pp512
    // INT4 MoE GEMMs 2.29 -> 2.17 s over 33 layer steps, alternated).
    const int64_t ahead_end = p1 < r1 ? panel_end(p1) : (w.rows - p1 < p1 - p0 ? w.rows : p1 + (p1 - p0));
    const int64_t ahead_lines =
        !pairs512 && ahead_end > p1 ? static_cast<int64_t>(rows_at + ahead_end * w.row_bytes - ahead_begin + 63) / 64 : 0;
    const int64_t tile = wide ? 8 : 4;
    const int64_t calls = ((p1 - p0 + tile - 1) / tile) * ((T + block - 1) / block);
    const int64_t lines_per_call = (ahead_lines + calls - 1) / calls;
    int64_t fetched = 0;
    for (int64_t t0 = 0; t0 < T; t0 += block) {
      const int64_t nt = T - t0 < block ? T - t0 : block;
      const float* xb = x + t0 * ldx;
      int64_t ldb = ldx;
      if (fp8) {
        ScaleFp8Columns<Fp8Format>(w, p0 / w.block_out, xb, ldx, nt, 0, K, xs, Kp);
        xb = xs;
        ldb = Kp;
      }
      for (int64_t r = p0; r < p1; r += tile) {
        int m = static_cast<int>(p1 - r < tile ? p1 - r : tile);
        const float* wr = wt + (r - p0) * Kp;
        float* yb = y + t0 * ldy + r;
        for (const int64_t end = fetched + lines_per_call < ahead_lines ? fetched + lines_per_call : ahead_lines;
             fetched < end; ++fetched)
          _mm_prefetch(ahead + fetched * 64, _MM_HINT_T1);
        if (m == 8 && bf16_rows) {
          // The first token block fetches the next tile's rows into L2 while it passes this
          // tile's, spread over its steps; the call's last tile fetches the eight rows past r1
          // (usually the thread's next piece, as above). Without the fetches the first pass over
          // each tile waited on DRAM (the case above, two rounds: 292 / 306 -> 311 / 313 GFLOP/s).
          const int64_t next = r + 8 < r1 ? r + 8 : r1 + 8 <= w.rows ? r1 : r;
          const int64_t lines = t0 == 0 && next != r ? 8 * w.row_bytes / 64 : 0;
          GemmBf16Rows8Avx512(static_cast<const uint16_t*>(w.data) + r * K, K, xb, ldb, nt, yb, ldy, accumulate,
                              static_cast<const char*>(w.data) + next * w.row_bytes, lines);
          continue;
        }
        if (m == 8) {
          GemmPanel8Avx512(wr, K, xb, ldb, nt, yb, ldy, accumulate);
          continue;
        }
        if (m > 4) {  // a wide tile cut short: four rows, then the rest
          MicroTokens<4>(wr, K, xb, ldb, nt, yb, ldy, accumulate);
          wr += 4 * Kp;
          yb += 4;
          m -= 4;
        }
        switch (m) {
          case 4: MicroTokens<4>(wr, K, xb, ldb, nt, yb, ldy, accumulate); break;
          case 3: MicroTokens<3>(wr, K, xb, ldb, nt, yb, ldy, accumulate); break;
          case 2: MicroTokens<2>(wr, K, xb, ldb, nt, yb, ldy, accumulate); break;
          default: MicroTokens<1>(wr, K, xb, ldb, nt, yb, ldy, accumulate); break;
        }
      }
    }
  }
}

// ---- Rows of a weight in place of attention's keys or values (decode's kv_b) ------------------
// The products are MultiQueryScores' / MultiQueryWeightedSum's for one query
// (attention_avx2.cc), in the same order, over the rows as DequantizeRows writes them, so
// the bits are those over a float32 copy, without writing one: converting a head's rows into
// a buffer first (64 KB for bench-v3-mini's 64 x 256) was bound by the stores. Scores take rows
// four at a time as ScoreTile reduces them (hadd pairs), the last S % 4 as ScoreRow does
// (HorizontalSum); weighted sums 32 (then 8) output columns in registers over the rows, each
// element one fma chain in row order, as WeightedColumns.

// BF16, F16 and F32 rows (WithRowFactory's make_row(r).Load8(k)).
template <typename MakeRow>
void PlainRowScores(const float* q, int64_t C, int64_t r0, int64_t S, float* scores, const MakeRow& make_row) {
  int64_t s = 0;
  for (; s + 4 <= S; s += 4) {
    const auto w0 = make_row(r0 + s), w1 = make_row(r0 + s + 1), w2 = make_row(r0 + s + 2), w3 = make_row(r0 + s + 3);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t c = 0; c < C; c += 8) {
      const __m256 qv = _mm256_loadu_ps(q + c);
      acc[0] = _mm256_fmadd_ps(qv, w0.Load8(c), acc[0]);
      acc[1] = _mm256_fmadd_ps(qv, w1.Load8(c), acc[1]);
      acc[2] = _mm256_fmadd_ps(qv, w2.Load8(c), acc[2]);
      acc[3] = _mm256_fmadd_ps(qv, w3.Load8(c), acc[3]);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    _mm_storeu_ps(scores + s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
  for (; s < S; ++s) {
    const auto w = make_row(r0 + s);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t c = 0; c < C; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), w.Load8(c), acc);
    scores[s] = HorizontalSum(acc) + 0.0f;  // ScoreRow adds its (empty) tail: -0 becomes +0 there too
  }
}

template <typename MakeRow>
void PlainRowsWeightedSum(const float* p, int64_t C, int64_t r0, int64_t S, float* out, const MakeRow& make_row) {
  int64_t c0 = 0;
  for (; c0 + 32 <= C; c0 += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t s = 0; s < S; ++s) {
      const __m256 ps = _mm256_broadcast_ss(p + s);
      const auto w = make_row(r0 + s);
      a0 = _mm256_fmadd_ps(ps, w.Load8(c0), a0);
      a1 = _mm256_fmadd_ps(ps, w.Load8(c0 + 8), a1);
      a2 = _mm256_fmadd_ps(ps, w.Load8(c0 + 16), a2);
      a3 = _mm256_fmadd_ps(ps, w.Load8(c0 + 24), a3);
    }
    _mm256_storeu_ps(out + c0, a0);
    _mm256_storeu_ps(out + c0 + 8, a1);
    _mm256_storeu_ps(out + c0 + 16, a2);
    _mm256_storeu_ps(out + c0 + 24, a3);
  }
  for (; c0 < C; c0 += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t s = 0; s < S; ++s) a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + s), make_row(r0 + s).Load8(c0), a);
    _mm256_storeu_ps(out + c0, a);
  }
}

// INT4, FP8 and INT8 rows: their scales (and INT4's offsets z · s) for a block of rows and groups
// are read into float32 tables first, INT4's F16 scales eight at a time, and the rows are
// walked by pointer. Fetching each row's group inside the loops (its address from
// r · row_bytes, its scale widened in a scalar register or found through a division by
// block_out) had set their pace, not the arithmetic: kv_b's 12 x (64 + 64) rows x 256 of
// bench-v3-mini at ~2 multiply-adds a cycle (BM_WeightRows, one thread: INT4 62-77 us, INT8
// 38-50, BF16 28-36); with the tables INT4 40-53 us, INT8 31-35, FP8 unchanged (62-69: its
// e4m3 conversion is the cost there). In a decode step the rows come from DRAM: INT4-h's W_uk
// and W_uv took 97-109 -> 83-88 us a layer of the two threads' time (three alternated pairs),
// the rest of it mostly their misses.

// Floats per table (rows x groups); a call takes the groups in windows that fit it.
constexpr int64_t kRowGroupTable = 2048;

// How each format's rows convert (the values DequantizeRows writes): Table fills the scale
// (and, kOffsets, Int4Format's offset z · s) of rows [r, r + n) and groups [g0, g0 + m),
// row-major [n, m]; Eight converts columns [k, k + 8) of a row, which lie in one group
// (block_in % 8 == 0).
struct Int4Rows8 {
  static constexpr bool kOffsets = true;
  static void Table(const RawWeight& w, int64_t r, int64_t n, int64_t g0, int64_t m, float* s, float* zs) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t* s16 = w.scale16 + (r + i) * w.scale_cols + g0;
      const uint8_t* z8 = w.zero ? w.zero + (r + i) * w.scale_cols + g0 : nullptr;
      float *si = s + i * m, *zi = zs + i * m;
      int64_t g = 0;
      for (; g + 8 <= m; g += 8) {
        const __m256 sv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s16 + g)));
        const __m256 zv = z8 ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(z8 + g))))
                             : _mm256_set1_ps(8.0f);
        _mm256_storeu_ps(si + g, sv);
        _mm256_storeu_ps(zi + g, Int4Format::Offset(sv, zv));
      }
      for (; g < m; ++g) {
        si[g] = _cvtsh_ss(s16[g]);
        zi[g] = Int4Format::Offset(si[g], z8 ? static_cast<float>(z8[g]) : 8.0f);
      }
    }
  }
  static __m256 Eight(const uint8_t* row, int64_t k, __m256 s, __m256 zs) {
    return Int4Format::Apply(Int4Format::Load8(row, k), s, zs);
  }
};
// FP8 (kFp8) and INT8: a float scale per block of rows and columns (no zero points).
template <bool kFp8>
struct BlockScaledRows8 {
  static constexpr bool kOffsets = false;
  static void Table(const RawWeight& w, int64_t r, int64_t n, int64_t g0, int64_t m, float* s, float*) {
    for (int64_t i = 0; i < n; ++i) {
      const float* row_scales = w.scale + ((r + i) / w.block_out) * w.scale_cols;
      for (int64_t g = 0; g < m; ++g) s[i * m + g] = Scale(row_scales, g0 + g);
    }
  }
  static float Scale(const float* row_scales, int64_t g) {
    if constexpr (kFp8) {
      return Fp8Format::ActScale(row_scales, g);  // the products see E4M3 · 2^-8 (Fp8Format)
    } else {
      return row_scales[g];
    }
  }
  static __m256 Eight(const uint8_t* row, int64_t k, __m256 s, __m256) {
    if constexpr (kFp8) {
      return _mm256_mul_ps(Fp8Format::Load8(row, k), s);
    } else {
      return Int8Format::Apply(Int8Format::Load8(row, k), s, s);  // z unused: no zero points
    }
  }
};

// scores[i] = q · W[r0 + i]: rows four at a time, each quad's groups a window of the table at a
// time. (INT4 with zero points went two rows a pass while each group's offset was computed in
// the loop; with it in the table, four: kv_b's 12 heads, one thread, in-process, 0.81-0.86 of
// the time.)
template <typename P>
void TableRowScores(const float* q, const RawWeight& w, int64_t r0, int64_t S, float* scores) {
  const int64_t C = w.cols, G = w.scale_cols, bi = w.block_in, rb = w.row_bytes;
  const int64_t window = G < kRowGroupTable / 4 ? G : kRowGroupTable / 4;
  alignas(32) float s_f[kRowGroupTable], zs_f[kRowGroupTable];
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  // acc[j] += row r + j's columns of groups [g0, g0 + m), j < R, its table row j.
  const auto groups = [&]<int R>(int64_t r, int64_t g0, int64_t m, __m256* acc) __attribute__((always_inline)) {
    const uint8_t* row[R];
    for (int j = 0; j < R; ++j) row[j] = base + (r + j) * rb;
    for (int64_t g = 0; g < m; ++g) {
      __m256 sv[R], zs[R];
      for (int j = 0; j < R; ++j) {
        sv[j] = _mm256_broadcast_ss(s_f + j * m + g);
        zs[j] = P::kOffsets ? _mm256_broadcast_ss(zs_f + j * m + g) : sv[j];
      }
      const int64_t c1 = (g0 + g + 1) * bi < C ? (g0 + g + 1) * bi : C;
      for (int64_t c = (g0 + g) * bi; c < c1; c += 8) {
        const __m256 qv = _mm256_loadu_ps(q + c);
        for (int j = 0; j < R; ++j) acc[j] = _mm256_fmadd_ps(qv, P::Eight(row[j], c, sv[j], zs[j]), acc[j]);
      }
    }
  };
  int64_t s = 0;
  for (; s + 4 <= S; s += 4) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t g0 = 0; g0 < G; g0 += window) {
      const int64_t m = G - g0 < window ? G - g0 : window;
      P::Table(w, r0 + s, 4, g0, m, s_f, zs_f);
      groups.template operator()<4>(r0 + s, g0, m, acc);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    _mm_storeu_ps(scores + s, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
  for (; s < S; ++s) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g0 = 0; g0 < G; g0 += window) {
      const int64_t m = G - g0 < window ? G - g0 : window;
      P::Table(w, r0 + s, 1, g0, m, s_f, zs_f);
      groups.template operator()<1>(r0 + s, g0, m, &acc);
    }
    scores[s] = HorizontalSum(acc) + 0.0f;  // as PlainRowScores
  }
}

// out[0:C] = Σ_i p[i] · W[r0 + i]: per window of groups, per block of rows that fits the
// table, 32 then 8 columns in registers over the rows, each element's chain carried in `out`
// from one block of rows to the next.
template <typename P>
void TableRowsWeightedSum(const float* p, const RawWeight& w, int64_t r0, int64_t S, float* out) {
  const int64_t C = w.cols, G = w.scale_cols, bi = w.block_in, rb = w.row_bytes;
  const int64_t window = G <= 256 ? G : 256;  // of >= 8 columns: whole 32-column chunks
  alignas(32) float s_f[kRowGroupTable], zs_f[kRowGroupTable];
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  for (int64_t g0 = 0; g0 < G; g0 += window) {
    const int64_t m = G - g0 < window ? G - g0 : window, block = kRowGroupTable / m;
    const int64_t c_end = (g0 + m) * bi < C ? (g0 + m) * bi : C;
    for (int64_t b0 = 0; b0 < S; b0 += block) {
      const int64_t n = S - b0 < block ? S - b0 : block;
      P::Table(w, r0 + b0, n, g0, m, s_f, zs_f);
      const uint8_t* first = base + (r0 + b0) * rb;
      int64_t c0 = g0 * bi;
      for (; c0 + 32 <= c_end; c0 += 32) {
        int64_t g[4];  // each vector's group in the window
        for (int j = 0; j < 4; ++j) g[j] = (c0 + 8 * j) / bi - g0;
        __m256 a[4];
        for (int j = 0; j < 4; ++j) a[j] = b0 > 0 ? _mm256_loadu_ps(out + c0 + 8 * j) : _mm256_setzero_ps();
        const uint8_t* row = first;
        if (g[0] == g[3]) {  // one group for the four vectors (block_in % 32 == 0: every chunk)
          for (int64_t i = 0; i < n; ++i, row += rb) {
            const __m256 ps = _mm256_broadcast_ss(p + b0 + i), sv = _mm256_broadcast_ss(s_f + i * m + g[0]);
            const __m256 zs = P::kOffsets ? _mm256_broadcast_ss(zs_f + i * m + g[0]) : sv;
            for (int j = 0; j < 4; ++j) a[j] = _mm256_fmadd_ps(ps, P::Eight(row, c0 + 8 * j, sv, zs), a[j]);
          }
        } else {
          for (int64_t i = 0; i < n; ++i, row += rb) {
            const __m256 ps = _mm256_broadcast_ss(p + b0 + i);
            for (int j = 0; j < 4; ++j) {
              const __m256 sv = _mm256_broadcast_ss(s_f + i * m + g[j]);
              const __m256 zs = P::kOffsets ? _mm256_broadcast_ss(zs_f + i * m + g[j]) : sv;
              a[j] = _mm256_fmadd_ps(ps, P::Eight(row, c0 + 8 * j, sv, zs), a[j]);
            }
          }
        }
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(out + c0 + 8 * j, a[j]);
      }
      for (; c0 < c_end; c0 += 8) {
        const int64_t g = c0 / bi - g0;
        __m256 a = b0 > 0 ? _mm256_loadu_ps(out + c0) : _mm256_setzero_ps();
        const uint8_t* row = first;
        for (int64_t i = 0; i < n; ++i, row += rb) {
          const __m256 sv = _mm256_broadcast_ss(s_f + i * m + g);
          const __m256 zs = P::kOffsets ? _mm256_broadcast_ss(zs_f + i * m + g) : sv;
          a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + b0 + i), P::Eight(row, c0, sv, zs), a);
        }
        _mm256_storeu_ps(out + c0, a);
      }
    }
  }
}

// fn(policy) for w's scaled format (INT4, FP8, INT8).
template <typename Fn>
void WithRowsPolicy(const RawWeight& w, const Fn& fn) {
  if (w.kind == WeightKind::kInt4) {
    fn(Int4Rows8{});
  } else if (w.kind == WeightKind::kF8E4M3) {
    fn(BlockScaledRows8<true>{});
  } else {
    fn(BlockScaledRows8<false>{});
  }
}

inline bool ScaledRows(const RawWeight& w) {
  return w.kind == WeightKind::kInt4 || w.kind == WeightKind::kF8E4M3 || w.kind == WeightKind::kI8;
}

#include "engine/kernels/cpu/peak_chains.inc"

}  // namespace

bool Avx2Supports(const RawWeight& w) {
  switch (w.kind) {
    case WeightKind::kF32:
    case WeightKind::kBF16:
    case WeightKind::kF16:
      return true;
    case WeightKind::kF8E4M3:
      // An 8-wide load must not straddle two scale blocks.
      return w.scale != nullptr && w.block_in > 0 && w.block_in % 8 == 0 && w.block_out > 0;
    case WeightKind::kI8:
      return w.scale != nullptr && w.block_in > 0 && w.block_in % 8 == 0 && w.block_out > 0;
    case WeightKind::kInt4:
      // Groups of whole 8-column loads; block_out is 1 (one scale row per weight row).
      return w.scale16 != nullptr && w.block_in > 0 && w.block_in % 8 == 0 && w.row_bytes == (w.cols + 1) / 2;
    default:
      return false;
  }
}

void GemvAvx2(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate) {
  switch (w.kind) {
    case WeightKind::kF8E4M3: Fp8GemvRows(x, T, ldx, w, r0, r1, y, ldy, accumulate); return;
    case WeightKind::kI8: ScaledGemvRows<Int8Format>(x, T, ldx, w, r0, r1, y, ldy, accumulate); return;
    case WeightKind::kInt4: ScaledGemvRows<Int4Format>(x, T, ldx, w, r0, r1, y, ldy, accumulate); return;
    default:
      WithRowFactory(w, [&](const auto& make_row) { GemvRows(x, T, ldx, w, r0, r1, y, ldy, accumulate, make_row); });
  }
}

void WeightRowScoresAvx2(const float* q, const RawWeight& w, int64_t r0, int64_t S, float* scores) {
  if (ScaledRows(w)) {
    return WithRowsPolicy(w, [&](auto policy) { TableRowScores<decltype(policy)>(q, w, r0, S, scores); });
  }
  WithRowFactory(w, [&](const auto& make_row) { PlainRowScores(q, w.cols, r0, S, scores, make_row); });
}

void WeightRowsWeightedSumAvx2(const float* p, const RawWeight& w, int64_t r0, int64_t S, float* out) {
  if (ScaledRows(w)) {
    return WithRowsPolicy(w, [&](auto policy) { TableRowsWeightedSum<decltype(policy)>(p, w, r0, S, out); });
  }
  WithRowFactory(w, [&](const auto& make_row) { PlainRowsWeightedSum(p, w.cols, r0, S, out, make_row); });
}

void GemmAvx2(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate, float* scratch, bool avx512_tiles) {
  const auto gemm = [&](const auto& convert) {
    GemmRows(x, T, ldx, w, r0, r1, y, ldy, accumulate, scratch, avx512_tiles, convert);
  };
  switch (w.kind) {
    case WeightKind::kF8E4M3:
      gemm([&](int64_t r, int m, float* wt, const PanelLayout& layout) {
        ConvertRows([&](int64_t i) { return Fp8UnscaledRow{Fp8Format::Row(w, i)}; }, r, m, w.cols, wt, layout);
      });
      return;
    case WeightKind::kI8:
      gemm([&](int64_t r, int m, float* wt, const PanelLayout& layout) {
        ConvertScaledRows<Int8Format>(w, r, m, wt, layout);
      });
      return;
    case WeightKind::kInt4:
      gemm([&](int64_t r, int m, float* wt, const PanelLayout& layout) {
        ConvertScaledRows<Int4Format>(w, r, m, wt, layout);
      });
      return;
    default:
      WithRowFactory(w, [&](const auto& make_row) {
        gemm([&](int64_t r, int m, float* wt, const PanelLayout& layout) {
          ConvertRows(make_row, r, m, w.cols, wt, layout);
        });
      });
  }
}

uint64_t ReadSumAvx2(const uint64_t* p, int64_t n) {
  // Four accumulators, 128 bytes (two lines) per step: enough loads in flight to stream.
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  uint64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) sum += p[i];
  return sum;
}

double FmaPeakFlopsAvx2(double seconds) {
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  const auto fma = [&](__m256 v) __attribute__((always_inline)) { return _mm256_fmadd_ps(v, a, b); };
  return ChainsPerSecond(seconds, _mm256_set1_ps(1e-3f), fma) * 8 * 2;  // 8 lanes, 2 FLOPs each
}

double Int8PeakOpsAvx2(double seconds) {
  // vpmaddubsw: 32 byte products a vector, summed in pairs (saturating; only the rate counts).
  const __m256i b = _mm256_set1_epi8(1);
  const auto products = [&](__m256i v) __attribute__((always_inline)) { return _mm256_maddubs_epi16(v, b); };
  return ChainsPerSecond(seconds, _mm256_set1_epi8(3), products) * 32 * 2;  // 2 ops a product
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
bool Avx2Supports(const RawWeight&) { return false; }
void GemvAvx2(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool) {}
void GemmAvx2(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool, float*, bool) {}
void WeightRowScoresAvx2(const float*, const RawWeight&, int64_t, int64_t, float*) {}
void WeightRowsWeightedSumAvx2(const float*, const RawWeight&, int64_t, int64_t, float*) {}
double FmaPeakFlopsAvx2(double) { return 0.0; }
double Int8PeakOpsAvx2(double) { return 0.0; }
uint64_t ReadSumAvx2(const uint64_t*, int64_t) { return 0; }
}  // namespace dsv3::cpu

#endif
