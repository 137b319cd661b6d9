// attention_avx2.cc's multi-query products with 512-bit vectors (compiled with -mavx512f
// -mavx512bw -mavx512vl for this file only; attention.cc calls it for the avx512 family), the
// same bits: the scores hold two key rows per vector, eight columns each, so each (query, key)
// pair still runs AVX2's 8-lane chain over the columns (part one, then part two) and its hadd
// tree over four keys; the weighted sum takes sixteen columns per vector, each element still
// one fma chain over the cached rows in order. Decode over the latent cache is these two
// products (12 heads x 256 + 32 columns per cached row on bench-v3-mini), so at depth they,
// not the weights, set the attention's time. What this file does not cover (a column tail of
// C % 8, the last S % 4 keys) goes to the AVX2 functions, which give those bits by definition.
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

// Eight floats of row a in lanes 0-7 and of row b in lanes 8-15.
inline __m512 PairRows(const float* a, const float* b) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd(reinterpret_cast<const double*>(a))),
                                             _mm256_loadu_pd(reinterpret_cast<const double*>(b)), 1));
}

// acc[j][0] += q[j] · keys rows (0, 1), acc[j][1] += rows (2, 3), eight columns at a time.
template <int NQ>
__attribute__((always_inline)) inline void QuadSteps(__m512 (&acc)[NQ][2], const float* const* q, const float* keys,
                                                     int64_t C) {
  for (int64_t c = 0; c < C; c += 8) {
    const __m512 k01 = PairRows(keys + c, keys + C + c), k23 = PairRows(keys + 2 * C + c, keys + 3 * C + c);
    for (int j = 0; j < NQ; ++j) {
      const __m512 qv = TwiceAt(q[j] + c);
      acc[j][0] = _mm512_fmadd_ps(qv, k01, acc[j][0]);
      acc[j][1] = _mm512_fmadd_ps(qv, k23, acc[j][1]);
    }
  }
}

// Four key rows x NQ queries: attention_avx2.cc's ScoreTile (C1, C2 multiples of 8).
template <int NQ, bool kTwo>
void ScoreTile(const float* const* q1, const float* keys1, int64_t C1, const float* const* q2, const float* keys2,
               int64_t C2, float* const* out, bool accumulate) {
  __m512 acc[NQ][2];
  for (int j = 0; j < NQ; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
  QuadSteps<NQ>(acc, q1, keys1, C1);
  if (kTwo) QuadSteps<NQ>(acc, q2, keys2, C2);
  for (int j = 0; j < NQ; ++j) {
    __m128 d = QuadSums(acc[j][0], acc[j][1]);  // key i's sum in lane i
    if (accumulate) d = _mm_add_ps(d, _mm_loadu_ps(out[j]));
    _mm_storeu_ps(out[j], d);
  }
}

#include "engine/kernels/cpu/attention_scores.inc"

// Sixteen cached floats at p, loaded once into a register: without the barrier GCC folded the
// load into every FMA that takes them (three or six loads of the same line).
inline __m512 LoadOnce(const float* p) {
  __m512 x = _mm512_loadu_ps(p);
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
void WeightedColumns3x4(const float* p, int64_t ldp, const float* vals, int64_t S, int64_t C, int64_t c0,
                        float* out) {
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
         a20 = a00, a21 = a00, a22 = a00, a23 = a00;
  for (int64_t s = 0; s < S; ++s) {
    const float* v = vals + s * C + c0;
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
void WeightedColumns6x2(const float* p, int64_t ldp, const float* vals, int64_t S, int64_t C, int64_t c0,
                        float* out) {
  __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00,
         a40 = a00, a41 = a00, a50 = a00, a51 = a00;
  for (int64_t s = 0; s < S; ++s) {
    const float* v = vals + s * C + c0;
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
template <int N, bool kEight>
void WeightedColumns(const float* p, int64_t ldp, const float* vals, int64_t S, int64_t C, int64_t c0, float* out) {
  __m512 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t s = 0; s < S; ++s) {
    const __m512 v = kEight ? TwiceAt(vals + s * C + c0) : _mm512_loadu_ps(vals + s * C + c0);
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

// Columns [c0, C) of N queries' weighted sums.
template <int N>
void WeightedSumQueries(const float* p, int64_t ldp, const float* vals, int64_t S, int64_t C, float* out,
                        int64_t c0 = 0) {
  if constexpr (N == 6) {
    for (; c0 + 32 <= C; c0 += 32) WeightedColumns6x2(p, ldp, vals, S, C, c0, out);
    if (c0 < C) {  // the last columns (C % 32), three queries at a time
      WeightedSumQueries<3>(p, ldp, vals, S, C, out, c0);
      WeightedSumQueries<3>(p + 3 * ldp, ldp, vals, S, C, out + 3 * C, c0);
    }
  } else {
    if (N == 3)
      for (; c0 + 64 <= C; c0 += 64) WeightedColumns3x4(p, ldp, vals, S, C, c0, out);
    for (; c0 + 16 <= C; c0 += 16) WeightedColumns<N, false>(p, ldp, vals, S, C, c0, out);
    if (c0 < C) WeightedColumns<N, true>(p, ldp, vals, S, C, c0, out);  // C % 16 == 8
  }
}

}  // namespace

void MultiQueryScoresAvx512(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                            float* scores, int64_t lds, bool accumulate) {
  const int64_t S4 = C % 8 == 0 ? S & ~int64_t{3} : 0;
  ScoreQuads<false, 6>(q, ldq, keys, C, q, ldq, keys, 0, M, S4, S, scores, lds, accumulate);
  if (S4 < S) MultiQueryScoresAvx2(q, M, ldq, keys + S4 * C, S - S4, C, scores + S4, lds, accumulate);
}

void MultiQueryScoresTwoPartAvx512(const float* q1, int64_t ldq1, const float* keys1, int64_t C1, const float* q2,
                                   int64_t ldq2, const float* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                                   int64_t lds) {
  const int64_t S4 = C1 % 8 == 0 && C2 % 8 == 0 ? S & ~int64_t{3} : 0;
  ScoreQuads<true, 6>(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S4, S, scores, lds, false);
  if (S4 < S)
    MultiQueryScoresTwoPartAvx2(q1, ldq1, keys1 + S4 * C1, C1, q2, ldq2, keys2 + S4 * C2, C2, M, S - S4, scores + S4,
                                lds);
}

void MultiQueryWeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                                 float* out) {
  if (C % 8 != 0) return MultiQueryWeightedSumAvx2(p, M, ldp, vals, S, C, out);
  QueryTiles<6>(M, [&]<int N>(int64_t m) { WeightedSumQueries<N>(p + m * ldp, ldp, vals, S, C, out + m * C); });
}

}  // namespace dsv3::cpu

#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
void MultiQueryScoresAvx512(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool) {}
void MultiQueryScoresTwoPartAvx512(const float*, int64_t, const float*, int64_t, const float*, int64_t, const float*,
                                   int64_t, int64_t, int64_t, float*, int64_t) {}
void MultiQueryWeightedSumAvx512(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*) {}
}  // namespace dsv3::cpu

#endif
