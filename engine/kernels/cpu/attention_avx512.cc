// attention_avx2.cc's multi-query products with 512-bit vectors (compiled with -mavx512f
// -mavx512bw -mavx512vl for this file only; attention.cc calls it for the avx512 family), the
// same bits: the scores hold two queries per vector against one key, eight columns each, so each
// (query, key) pair still runs AVX2's 8-lane chain over the columns (part one, then part two)
// and its hadd tree over four keys; the weighted sum takes sixteen columns per vector, each element still
// one fma chain over the cached rows in order. Decode over the latent cache is these two
// products (12 heads x 256 + 32 columns per cached row on bench-v3-mini), so at depth they,
// not the weights, set the attention's time. A bf16 cache's rows are widened in registers as
// they are read (one vpermw a vector), so they give the bits of the float32 rows they widen to.
// What this file does not cover (a column tail of C % 8, the last S % 4 keys, rows too wide for
// the query pairs) goes to the AVX2 functions, which give those bits by definition.
//
// As in linear_avx2.cc, no standard-library templates or shared inline functions here.
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__FMA__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/isa_common.inc"
#include "engine/kernels/cpu/isa_avx512.inc"

#include "engine/kernels/cpu/attention_tiles.inc"

// The 512-bit loads of cached rows: TwiceAt (isa_avx512.inc) puts eight float32 values in both
// halves, Load16 takes sixteen. Their bf16 forms widen in one vpermw: word 2j + 1 of the result
// takes the value lane j wants, the mask zeroes every even word, so lane j holds that value's
// bits in its top half, which is its float32 (Load8's widening, by a permute instead of a
// zero-extension and a shift).
inline __m512 WidenWords(__m512i words, __m512i index) {
  return _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAA, index, words));
}
inline __m512 TwiceAt(const uint16_t* p) {  // lane j: value j % 8
  const __m512i index = _mm512_set_epi32(7 << 16, 6 << 16, 5 << 16, 4 << 16, 3 << 16, 2 << 16, 1 << 16, 0,
                                         7 << 16, 6 << 16, 5 << 16, 4 << 16, 3 << 16, 2 << 16, 1 << 16, 0);
  return WidenWords(_mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), index);
}
inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 Load16(const uint16_t* p) {  // lane j: value j
  const __m512i index = _mm512_set_epi32(15 << 16, 14 << 16, 13 << 16, 12 << 16, 11 << 16, 10 << 16, 9 << 16,
                                         8 << 16, 7 << 16, 6 << 16, 5 << 16, 4 << 16, 3 << 16, 2 << 16, 1 << 16, 0);
  return WidenWords(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), index);
}

// The scores hold two queries per vector against one key: pair p's vector holds eight columns
// of query 2p in lanes 0-7 and the same columns of query 2p + 1 in lanes 8-15 (queries are
// copied so once per call, PairQueries), and a key's eight columns go to both halves by one
// broadcast from memory. Each lane still runs AVX2's 8-lane chain of its (query, key) pair over
// the columns, part one then part two, and its four keys' hadd tree (QuadSums): the AVX2 bits.
// A tile of six pairs and four keys takes ten loads per 24 FMAs; the previous tile, two keys a
// vector, took ten loads and two inserts per twelve, and reached ~63% of the FMA peak from L2.
// The pairs of up to 16 queries at a time fit this many floats (DeepSeek-V3's 512 + 64 columns
// take 18 KB); wider rows go to the AVX2 function.
constexpr int64_t kPairQueries = 16, kPairFloats = kPairQueries * 1024;

// Queries [m0, m0 + n) as pairs at `pairs`, each pair 2W floats (W = C1 + C2): columns [c, c + 8)
// of part one at 2c, of part two at 2(C1 + c), the even query's then the odd one's (a lone last
// query is paired with itself; its copy's scores are not stored).
void PairQueries(const float* q1, int64_t ldq1, int64_t C1, const float* q2, int64_t ldq2, int64_t C2, int64_t n,
                 float* pairs) {
  const int64_t W = C1 + C2;
  for (int64_t p = 0; p < (n + 1) / 2; ++p) {
    const int64_t a = 2 * p, b = 2 * p + 1 < n ? 2 * p + 1 : 2 * p;
    float* d = pairs + p * 2 * W;
    for (int64_t c = 0; c < C1; c += 8) {
      _mm256_storeu_ps(d + 2 * c, _mm256_loadu_ps(q1 + a * ldq1 + c));
      _mm256_storeu_ps(d + 2 * c + 8, _mm256_loadu_ps(q1 + b * ldq1 + c));
    }
    for (int64_t c = 0; c < C2; c += 8) {
      _mm256_storeu_ps(d + 2 * (C1 + c), _mm256_loadu_ps(q2 + a * ldq2 + c));
      _mm256_storeu_ps(d + 2 * (C1 + c) + 8, _mm256_loadu_ps(q2 + b * ldq2 + c));
    }
  }
}

// acc[p][i] += pair p · key row i over C columns (pairs: the part's columns, pair p 2W floats
// on). ahead: four rows to fetch into L1 as these are read, a line of each per 64 bytes read
// (null for none): spread so, a burst of prefetches filled the miss buffers and stalled the loop.
template <int P, typename T>
__attribute__((always_inline)) inline void PairSteps(__m512 (&acc)[P][4], const float* pairs, int64_t W, const T* keys,
                                                     int64_t C, const T* ahead) {
  constexpr int64_t kLineValues = 64 / sizeof(T);
  for (int64_t c = 0; c < C; c += 8) {
    if (ahead && c % kLineValues == 0)
      for (int i = 0; i < 4; ++i) _mm_prefetch(reinterpret_cast<const char*>(ahead + i * C + c), _MM_HINT_T0);
    const __m512 k0 = TwiceAt(keys + c), k1 = TwiceAt(keys + C + c), k2 = TwiceAt(keys + 2 * C + c),
                 k3 = TwiceAt(keys + 3 * C + c);
    for (int p = 0; p < P; ++p) {
      const __m512 qv = _mm512_loadu_ps(pairs + p * 2 * W + 2 * c);
      acc[p][0] = _mm512_fmadd_ps(qv, k0, acc[p][0]);
      acc[p][1] = _mm512_fmadd_ps(qv, k1, acc[p][1]);
      acc[p][2] = _mm512_fmadd_ps(qv, k2, acc[p][2]);
      acc[p][3] = _mm512_fmadd_ps(qv, k3, acc[p][3]);
    }
  }
}

// Four key rows x P pairs (queries m0 .. m0 + 2P - 1 of n): each query's four scores stored (or
// added) consecutively at its row of out.
template <int P, bool kTwo, typename T>
void PairTile(const float* pairs, int64_t C1, const T* keys1, int64_t C2, const T* keys2, int64_t m0, int64_t n,
              float* out, int64_t lds, bool accumulate, const T* ahead1, const T* ahead2) {
  const int64_t W = C1 + C2;
  __m512 acc[P][4];
  for (int p = 0; p < P; ++p) acc[p][0] = acc[p][1] = acc[p][2] = acc[p][3] = _mm512_setzero_ps();
  PairSteps<P, T>(acc, pairs, W, keys1, C1, ahead1);
  if (kTwo) PairSteps<P, T>(acc, pairs + 2 * C1, W, keys2, C2, ahead2);
  for (int p = 0; p < P; ++p) {
    for (int h = 0; h < 2 && m0 + 2 * p + h < n; ++h) {
      float* o = out + (m0 + 2 * p + h) * lds;
      const __m512(&a)[4] = acc[p];
      __m128 d = h == 0 ? PairQuadSums<false>(a[0], a[1], a[2], a[3]) : PairQuadSums<true>(a[0], a[1], a[2], a[3]);
      if (accumulate) d = _mm_add_ps(d, _mm_loadu_ps(o));
      _mm_storeu_ps(o, d);
    }
  }
}

// Keys [0, S4) (S4 a multiple of four, at most the S cached rows) against n <= kPairQueries
// queries, four keys at a time, each read once for all of them (decode reads the cache from
// DRAM once per token): pairs six at a time, then QueryTiles' smaller tiles. The first tile fetches
// the rows two steps ahead (the hardware prefetchers alone had left this loop at half the read
// bandwidth).
template <bool kTwo, typename T>
void PairScores(const float* q1, int64_t ldq1, const T* keys1, int64_t C1, const float* q2, int64_t ldq2,
                const T* keys2, int64_t C2, int64_t n, int64_t S4, int64_t S, float* scores, int64_t lds,
                bool accumulate) {
  alignas(64) float pairs[kPairFloats];
  PairQueries(q1, ldq1, C1, q2, ldq2, C2, n, pairs);
  const int64_t W = C1 + C2, np = (n + 1) / 2;
  for (int64_t s = 0; s < S4; s += 4) {
    const T* key1 = keys1 + s * C1;
    const T* key2 = kTwo ? keys2 + s * C2 : nullptr;
    const bool fetch = s + 12 <= S;
    const auto tile = [&]<int P>(int64_t p) __attribute__((always_inline)) {
      const bool first = p == 0 && fetch;
      PairTile<P, kTwo, T>(pairs + p * 2 * W, C1, key1, C2, key2, 2 * p, n, scores + s, lds, accumulate,
                        first ? key1 + 8 * C1 : nullptr, first && kTwo ? key2 + 8 * C2 : nullptr);
    };
    QueryTiles<6>(np, tile);
  }
}

// MultiQueryScoresAvx2's bits for queries in groups of kPairQueries: the multiples of four of
// keys here, the rest (and widths not a multiple of 8, or too wide for the pairs) there.
template <bool kTwo, typename T>
void Scores(const float* q1, int64_t ldq1, const T* keys1, int64_t C1, const float* q2, int64_t ldq2, const T* keys2,
            int64_t C2, int64_t M, int64_t S, float* scores, int64_t lds, bool accumulate) {
  const bool fits = C1 % 8 == 0 && C2 % 8 == 0 && kPairQueries * (C1 + C2) <= kPairFloats;
  const int64_t S4 = fits ? S & ~int64_t{3} : 0;
  for (int64_t m = 0; m < M && S4 > 0; m += kPairQueries) {
    const int64_t n = M - m < kPairQueries ? M - m : kPairQueries;
    PairScores<kTwo, T>(q1 + m * ldq1, ldq1, keys1, C1, q2 + m * ldq2, ldq2, keys2, C2, n, S4, S, scores + m * lds,
                        lds, accumulate);
  }
  if (S4 == S) return;
  if constexpr (kTwo) {
    MultiQueryScoresTwoPartAvx2(q1, ldq1, keys1 + S4 * C1, C1, q2, ldq2, keys2 + S4 * C2, C2, M, S - S4, scores + S4,
                                lds);
  } else {
    MultiQueryScoresAvx2(q1, M, ldq1, keys1 + S4 * C1, S - S4, C1, scores + S4, lds, accumulate);
  }
}

// Sixteen cached values at p, loaded once into a register: without the barrier GCC folded the
// load into every FMA that takes them (three or six loads of the same line).
template <typename T>
inline __m512 LoadOnce(const T* p) {
  __m512 x = Load16(p);
  asm("" : "+v"(x));
  return x;
}
// a_i += w_i · x for three queries: one value vector of WeightedColumns3x4.
inline void Fma3(__m512 x, __m512 w0, __m512 w1, __m512 w2, __m512& a0, __m512& a1, __m512& a2) {
  a0 = _mm512_fmadd_ps(w0, x, a0);
  a1 = _mm512_fmadd_ps(w1, x, a1);
  a2 = _mm512_fmadd_ps(w2, x, a2);
}

// Three queries x 64 columns of the output over every cached row, the twelve accumulators named
// (see attention_avx2.cc's WeightedColumns3x4). a<i><j>: query i, columns 16j..16j+15.
template <typename T>
void WeightedColumns3x4(const float* p, int64_t ldp, const T* vals, int64_t S, int64_t C, int64_t c0, float* out,
                        bool resume) {
  const auto start = [&](int i, int j) { return resume ? _mm512_loadu_ps(out + i * C + c0 + 16 * j) : _mm512_setzero_ps(); };
  __m512 a00 = start(0, 0), a01 = start(0, 1), a02 = start(0, 2), a03 = start(0, 3), a10 = start(1, 0),
         a11 = start(1, 1), a12 = start(1, 2), a13 = start(1, 3), a20 = start(2, 0), a21 = start(2, 1),
         a22 = start(2, 2), a23 = start(2, 3);
  for (int64_t s = 0; s < S; ++s) {
    const T* v = vals + s * C + c0;
    const __m512 w0 = _mm512_set1_ps(p[s]), w1 = _mm512_set1_ps(p[ldp + s]), w2 = _mm512_set1_ps(p[2 * ldp + s]);
    Fma3(LoadOnce(v), w0, w1, w2, a00, a10, a20);
    Fma3(LoadOnce(v + 16), w0, w1, w2, a01, a11, a21);
    Fma3(LoadOnce(v + 32), w0, w1, w2, a02, a12, a22);
    Fma3(LoadOnce(v + 48), w0, w1, w2, a03, a13, a23);
  }
  const __m512 rows[3][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(out + i * C + c0 + 16 * j, rows[i][j]);
}

// a0 += w · x0, a1 += w · x1: one query's row of WeightedColumns6x2.
inline void Fma2(__m512 w, __m512 x0, __m512 x1, __m512& a0, __m512& a1) {
  a0 = _mm512_fmadd_ps(w, x0, a0);
  a1 = _mm512_fmadd_ps(w, x1, a1);
}

// Six queries x 32 columns: each row's two vectors feed six FMAs apiece, where 3 x 4 fed three
// (the cached rows of a span come from L2, and at three FMAs per 64-byte load the tile waited
// on them). a<i><j>: query i, columns 16j..16j+15.
template <typename T>
void WeightedColumns6x2(const float* p, int64_t ldp, const T* vals, int64_t S, int64_t C, int64_t c0, float* out,
                        bool resume) {
  const auto start = [&](int i, int j) { return resume ? _mm512_loadu_ps(out + i * C + c0 + 16 * j) : _mm512_setzero_ps(); };
  __m512 a00 = start(0, 0), a01 = start(0, 1), a10 = start(1, 0), a11 = start(1, 1), a20 = start(2, 0),
         a21 = start(2, 1), a30 = start(3, 0), a31 = start(3, 1), a40 = start(4, 0), a41 = start(4, 1),
         a50 = start(5, 0), a51 = start(5, 1);
  for (int64_t s = 0; s < S; ++s) {
    const T* v = vals + s * C + c0;
    const __m512 x0 = LoadOnce(v), x1 = LoadOnce(v + 16);
    Fma2(_mm512_set1_ps(p[s]), x0, x1, a00, a01);
    Fma2(_mm512_set1_ps(p[ldp + s]), x0, x1, a10, a11);
    Fma2(_mm512_set1_ps(p[2 * ldp + s]), x0, x1, a20, a21);
    Fma2(_mm512_set1_ps(p[3 * ldp + s]), x0, x1, a30, a31);
    Fma2(_mm512_set1_ps(p[4 * ldp + s]), x0, x1, a40, a41);
    Fma2(_mm512_set1_ps(p[5 * ldp + s]), x0, x1, a50, a51);
  }
  const __m512 rows[6][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 2; ++j) _mm512_storeu_ps(out + i * C + c0 + 16 * j, rows[i][j]);
}

// N queries x 16 columns (or, kEight, the last 8, in the low halves).
template <int N, bool kEight, typename T>
void WeightedColumns(const float* p, int64_t ldp, const T* vals, int64_t S, int64_t C, int64_t c0, float* out,
                     bool resume) {
  __m512 acc[N];
  for (int i = 0; i < N; ++i) {
    const float* o = out + i * C + c0;
    acc[i] = !resume ? _mm512_setzero_ps() : kEight ? _mm512_zextps256_ps512(_mm256_loadu_ps(o)) : _mm512_loadu_ps(o);
  }
  for (int64_t s = 0; s < S; ++s) {
    const __m512 v = kEight ? TwiceAt(vals + s * C + c0) : Load16(vals + s * C + c0);
    for (int i = 0; i < N; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(p[i * ldp + s]), v, acc[i]);
  }
  for (int i = 0; i < N; ++i) {
    if (kEight) {
      _mm256_storeu_ps(out + i * C + c0, Low8(acc[i]));
    } else {
      _mm512_storeu_ps(out + i * C + c0, acc[i]);
    }
  }
}

// Columns [c0, C) of N queries' weighted sums. resume: the sums go on from what out holds (the
// rows before these), else they start at zero.
template <int N, typename T>
void WeightedSumQueries(const float* p, int64_t ldp, const T* vals, int64_t S, int64_t C, float* out, bool resume,
                        int64_t c0 = 0) {
  if constexpr (N == 6) {
    for (; c0 + 32 <= C; c0 += 32) WeightedColumns6x2(p, ldp, vals, S, C, c0, out, resume);
    if (c0 < C) {  // the last columns (C % 32), three queries at a time
      WeightedSumQueries<3, T>(p, ldp, vals, S, C, out, resume, c0);
      WeightedSumQueries<3, T>(p + 3 * ldp, ldp, vals, S, C, out + 3 * C, resume, c0);
    }
  } else {
    if (N == 3)
      for (; c0 + 64 <= C; c0 += 64) WeightedColumns3x4(p, ldp, vals, S, C, c0, out, resume);
    for (; c0 + 16 <= C; c0 += 16) WeightedColumns<N, false, T>(p, ldp, vals, S, C, c0, out, resume);
    if (c0 < C) WeightedColumns<N, true, T>(p, ldp, vals, S, C, c0, out, resume);  // C % 16 == 8
  }
}

// attention_avx2.cc's Exp (its comment gives the method and the range) on sixteen lanes: the
// same operations in the same order, so the same value in every lane.
inline __m512 Exp16(__m512 x) {
  const __m512 lo = _mm512_set1_ps(kExpLo), hi = _mm512_set1_ps(kExpHi);
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  x = _mm512_min_ps(hi, _mm512_max_ps(lo, x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kExpLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kExpLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[i]));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __mmask16 top = _mm512_cmp_ps_mask(n, _mm512_set1_ps(127.0f), _CMP_GT_OQ);
  n = _mm512_min_ps(n, _mm512_set1_ps(127.0f));
  const __m512i pow2n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  const __m512 twice = _mm512_mask_blend_ps(top, _mm512_set1_ps(1.0f), _mm512_set1_ps(2.0f));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~underflow),
                             _mm512_mul_ps(_mm512_mul_ps(p, _mm512_castsi512_ps(pow2n)), twice));
}

// The weighted sums of every query, six at a time (columns not whole 8-column steps: AVX2's).
// The rows go a block of up to kBlockBytes at a time, every query tile passing over a block
// while it sits in L2, each sum carried from block to block through out (its chain, so its
// bits, unchanged). Whole spans had been walked once per tile: DeepSeek-V3's 128 heads are 22
// tiles, and a span at 32K context (2048 rows, 4 MB in float32) came from L3 each time.
template <typename T>
void WeightedSum(const float* p, int64_t M, int64_t ldp, const T* vals, int64_t S, int64_t C, float* out) {
  if (C % 8 != 0) return MultiQueryWeightedSumAvx2(p, M, ldp, vals, S, C, out);
  constexpr int64_t kBlockBytes = 256 * 1024;
  RowBlocks<6>(M, S, C * static_cast<int64_t>(sizeof(T)), kBlockBytes,
               [&]<int N>(int64_t m, int64_t s0, int64_t n, bool resume) {
                 WeightedSumQueries<N, T>(p + m * ldp + s0, ldp, vals + s0 * C, n, C, out + m * C, resume);
               });
}

}  // namespace

void MultiQueryScoresAvx512(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                            float* scores, int64_t lds, bool accumulate) {
  Scores<false, float>(q, ldq, keys, C, q, ldq, nullptr, 0, M, S, scores, lds, accumulate);
}

void MultiQueryScoresTwoPartAvx512(const float* q1, int64_t ldq1, const float* keys1, int64_t C1, const float* q2,
                                   int64_t ldq2, const float* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                                   int64_t lds) {
  Scores<true, float>(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds, false);
}

void MultiQueryScoresTwoPartAvx512(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                                   int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S,
                                   float* scores, int64_t lds) {
  Scores<true, uint16_t>(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds, false);
}

void MultiQueryWeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                                 float* out) {
  WeightedSum(p, M, ldp, vals, S, C, out);
}

void MultiQueryWeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                                 float* out) {
  WeightedSum(p, M, ldp, vals, S, C, out);
}

float ExpShiftedSumAvx512(float* x, int64_t n, float shift) {
  // ExpShiftedSumAvx2's sum: its 8-lane chain takes each sixteen as two eights, low then high,
  // and the last n % 16 as its padded steps (lanes past n read -inf, whose exp is 0; a high
  // half wholly past n is not added, as AVX2 has no step for it).
  const __m512 s = _mm512_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    _mm512_storeu_ps(x + i, e);
    sum = _mm256_add_ps(_mm256_add_ps(sum, Low8(e)), High8(e));
  }
  if (i < n) {
    const __mmask16 valid = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), valid, x + i);
    const __m512 e = Exp16(_mm512_sub_ps(v, s));
    _mm512_mask_storeu_ps(x + i, valid, e);
    sum = _mm256_add_ps(sum, Low8(e));
    if (n - i > 8) sum = _mm256_add_ps(sum, High8(e));
  }
  return HorizontalSum(sum);
}

double SumExpShiftedAvx512(const float* x, int64_t n, float shift) {
  // SumExpShiftedAvx2's two chains of four doubles (each eight's low four, its high four): a
  // sixteen goes as two eights in order, the last n % 16 as ExpShiftedSumAvx512 takes them.
  const __m512 s = _mm512_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  const auto add = [&](__m256 e) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    add(Low8(e));
    add(High8(e));
  }
  if (i < n) {
    const __mmask16 valid = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), valid, x + i), s));
    add(Low8(e));
    if (n - i > 8) add(High8(e));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

void SoftmaxAvx512(float* x, int64_t n, float scale) {
  // SoftmaxAvx2's steps: scale and max (its AVX2 form: a maximum has one value whatever the
  // width), the exponentials and their sum, then x · (1 / sum).
  const float inv = 1.0f / ExpShiftedSumAvx512(x, n, ScaleMaxAvx2(x, n, scale));
  const __m512 iv = _mm512_set1_ps(inv);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), iv));
  for (; i < n; ++i) x[i] *= inv;
}

void WidenBf16Avx512(const uint16_t* in, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, Load16(in + i));
  WidenBf16Avx2(in + i, n - i, out + i);
}

}  // namespace dsv3::cpu

#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
void MultiQueryScoresAvx512(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool) {}
void MultiQueryScoresTwoPartAvx512(const float*, int64_t, const float*, int64_t, const float*, int64_t, const float*,
                                   int64_t, int64_t, int64_t, float*, int64_t) {}
void MultiQueryWeightedSumAvx512(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*) {}
void MultiQueryScoresTwoPartAvx512(const float*, int64_t, const uint16_t*, int64_t, const float*, int64_t,
                                   const uint16_t*, int64_t, int64_t, int64_t, float*, int64_t) {}
void MultiQueryWeightedSumAvx512(const float*, int64_t, int64_t, const uint16_t*, int64_t, int64_t, float*) {}
void WidenBf16Avx512(const uint16_t*, int64_t, float*) {}
float ExpShiftedSumAvx512(float*, int64_t, float) { return 0.0f; }
void SoftmaxAvx512(float*, int64_t, float) {}
double SumExpShiftedAvx512(const float*, int64_t, float) { return 0.0; }
}  // namespace dsv3::cpu

#endif
