// Multi-query attention products for AVX2 + FMA (compiled with those flags for this file
// only; chosen at run time by attention.cc). Decode over MLA's latent cache has few queries
// (the stacked heads) and many cached rows of C = kv_lora_rank floats: every cached row is
// loaded once and meets all the queries from registers/L1, instead of once per head. The
// cached rows are float32 or bfloat16 (a bf16 cache's, widened in registers as they are read:
// the bits of the float32 rows they widen to). The softmax's exp polynomial lives here, and
// with it SiluMul's AVX2 path (ops.cc dispatches).
//
// As in linear_avx2.cc, no standard-library templates or shared inline functions here.
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/isa_common.inc"

#include "engine/kernels/cpu/attention_tiles.inc"

// Scores come in one part (q · key) or, for MLA, two (latent and rope caches: q1 · key1 +
// q2 · key2, kTwo). Both parts accumulate in the same registers before one reduction.

// acc[j] += q[j][0:C8] · key[0:C8] for N queries against one key row.
template <int N, typename T>
__attribute__((always_inline)) inline void RowSteps(__m256 (&acc)[N], const float* const* q, const T* key, int64_t C) {
  for (int64_t c = 0; c + 8 <= C; c += 8) {
    const __m256 k = Load8(key + c);
    for (int i = 0; i < N; ++i) acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + c), k, acc[i]);
  }
}
// The last C % 8 columns of q · key, in order, one fma chain (written out: left to the compiler,
// the products were contracted or not, vectorized or not, from one instantiation to the next).
template <typename T>
inline float RowTail(const float* q, const T* key, int64_t C) {
  float d = 0.0f;
  for (int64_t c = C & ~int64_t{7}; c < C; ++c) d = __builtin_fmaf(q[c], ValueAt(key + c), d);
  return d;
}

// Up to four queries against one key row.
template <int N, bool kTwo, typename T>
void ScoreRow(const float* const* q1, const T* key1, int64_t C1, const float* const* q2, const T* key2, int64_t C2,
              float* const* out, bool accumulate) {
  __m256 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = _mm256_setzero_ps();
  RowSteps<N>(acc, q1, key1, C1);
  if (kTwo) RowSteps<N>(acc, q2, key2, C2);
  for (int i = 0; i < N; ++i) {
    float d = HorizontalSum(acc[i]) + RowTail(q1[i], key1, C1);
    if (kTwo) d += RowTail(q2[i], key2, C2);
    *out[i] = accumulate ? *out[i] + d : d;
  }
}

// The last C % 8 columns of four key rows' products with one query (both parts), in order.
// Out of line: ScoreTile's sums then stay in registers (see there).
template <bool kTwo, typename T>
__attribute__((noinline)) __m128 TileTails(const float* q1, const T* keys1, int64_t C1, const float* q2,
                                            const T* keys2, int64_t C2) {
  alignas(16) float tail[4];
  for (int i = 0; i < 4; ++i) {
    tail[i] = RowTail(q1, keys1 + i * C1, C1);
    if (kTwo) tail[i] += RowTail(q2, keys2 + i * C2, C2);
  }
  return _mm_load_ps(tail);
}

// acc[j][i] += q[j][0:C8] · keys[i * C : +C8] for NQ queries against four key rows. One key
// vector in a register at a time: the 4 x 3 tile's twelve sums, three queries and it are the
// sixteen registers (with all four keys loaded first GCC folded them into the FMAs, a load per
// FMA).
template <int NQ, typename T>
__attribute__((always_inline)) inline void TileSteps(__m256 (&acc)[NQ][4], const float* const* q, const T* keys,
                                                     int64_t C) {
  const float* qp[NQ];
#pragma GCC unroll 4
  for (int j = 0; j < NQ; ++j) qp[j] = q[j];
  const T* const kp[4] = {keys, keys + C, keys + 2 * C, keys + 3 * C};
  for (int64_t c = 0; c + 8 <= C; c += 8) {
    __m256 qv[NQ];
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) qv[j] = _mm256_loadu_ps(qp[j] + c);
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      __m256 k = Load8(kp[i] + c);
      __asm__("" : "+x"(k));
#pragma GCC unroll 4
      for (int j = 0; j < NQ; ++j) acc[j][i] = _mm256_fmadd_ps(qv[j], k, acc[j][i]);
    }
  }
}

// Four key rows x NQ queries (the GEMM's 4x3 tile: 7 loads per 12 FMAs), each query's four
// dot products reduced together and stored as four consecutive scores.
//
// Not inlined: inlined into ScoreQuads' loop beside its prefetch state, GCC kept the tile's
// row pointers on the stack and reloaded five of them every eight columns (one thread, 200
// runs paired with the inlined build, median: one part, 12 x 128 x 256, 51 -> 69 GFLOP/s; two
// parts, decode's, gain less, 1-9%).
// The sums stay in registers from the first column to the stores: GCC had kept them on the stack
// around the two parts' loops and beside the inline tails, 12 stores and 12 loads between the
// parts alone; with the tails out of line (TileTails), the loops unrolled over the tile and the
// row pointers in locals, none (decode's two-part scores at depth 4096, 12 layers, one thread,
// in-process against the previous form in both orders: 0.875 / 0.878 of the time, 1.148 / 1.120
// the other way round; with the weighted sums, 1.078).
template <int NQ, bool kTwo, typename T>
__attribute__((noinline)) void ScoreTile(const float* const* q1, const T* keys1, int64_t C1, const float* const* q2,
                                         const T* keys2, int64_t C2, float* const* out, bool accumulate) {
  __m256 acc[NQ][4];
#pragma GCC unroll 4
  for (int j = 0; j < NQ; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc[j][i] = _mm256_setzero_ps();
  TileSteps<NQ>(acc, q1, keys1, C1);
  if (kTwo) TileSteps<NQ>(acc, q2, keys2, C2);
  const bool tails = (C1 & 7) != 0 || (kTwo && (C2 & 7) != 0);
#pragma GCC unroll 4
  for (int j = 0; j < NQ; ++j) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc[j][0], acc[j][1]), _mm256_hadd_ps(acc[j][2], acc[j][3]));
    __m128 d = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));  // key i's sum in lane i
    if (tails) d = _mm_add_ps(d, TileTails<kTwo, T>(q1[j], keys1, C1, q2[j], keys2, C2));
    if (accumulate) d = _mm_add_ps(d, _mm_loadu_ps(out[j]));
    _mm_storeu_ps(out[j], d);
  }
}

// N queries x 8·V columns of the output in registers, over S cached rows. resume: the sums
// go on from what out holds (the rows before these), else they start at zero.
template <int N, int V, typename T>
void WeightedColumns(const float* p, int64_t ldp, const T* vals, int64_t S, int64_t C, int64_t c0, float* out,
                     bool resume) {
  __m256 acc[N][V];
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < V; ++j) acc[i][j] = resume ? _mm256_loadu_ps(out + i * C + c0 + 8 * j) : _mm256_setzero_ps();
  for (int64_t s = 0; s < S; ++s) {
    const T* v = vals + s * C + c0;
    for (int i = 0; i < N; ++i) {
      const __m256 w = _mm256_broadcast_ss(p + i * ldp + s);
      for (int j = 0; j < V; ++j) acc[i][j] = _mm256_fmadd_ps(w, Load8(v + 8 * j), acc[i][j]);
    }
  }
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < V; ++j) _mm256_storeu_ps(out + i * C + c0 + 8 * j, acc[i][j]);
}

// a_i += w_i · x for three queries: one value vector of WeightedColumns3x4.
inline void Fma3(__m256 x, __m256 w0, __m256 w1, __m256 w2, __m256& a0, __m256& a1, __m256& a2) {
  a0 = _mm256_fmadd_ps(w0, x, a0);
  a1 = _mm256_fmadd_ps(w1, x, a1);
  a2 = _mm256_fmadd_ps(w2, x, a2);
}

// The common tile, three queries x 32 columns, with its twelve accumulators named: GCC kept
// the array form's accumulators in registers but also stored them to the stack on every row,
// which made the store port, not the FMAs, the limit. a<i><j>: query i, columns 8j..8j+7.
template <typename T>
void WeightedColumns3x4(const float* p, int64_t ldp, const T* vals, int64_t S, int64_t C, int64_t c0, float* out,
                        bool resume) {
  const auto start = [&](int i, int j) {
    return resume ? _mm256_loadu_ps(out + i * C + c0 + 8 * j) : _mm256_setzero_ps();
  };
  __m256 a00 = start(0, 0), a01 = start(0, 1), a02 = start(0, 2), a03 = start(0, 3), a10 = start(1, 0),
         a11 = start(1, 1), a12 = start(1, 2), a13 = start(1, 3), a20 = start(2, 0), a21 = start(2, 1),
         a22 = start(2, 2), a23 = start(2, 3);
  for (int64_t s = 0; s < S; ++s) {
    const T* v = vals + s * C + c0;
    const __m256 w0 = _mm256_broadcast_ss(p + s), w1 = _mm256_broadcast_ss(p + ldp + s),
                 w2 = _mm256_broadcast_ss(p + 2 * ldp + s);
    Fma3(Load8(v), w0, w1, w2, a00, a10, a20);
    Fma3(Load8(v + 8), w0, w1, w2, a01, a11, a21);
    Fma3(Load8(v + 16), w0, w1, w2, a02, a12, a22);
    Fma3(Load8(v + 24), w0, w1, w2, a03, a13, a23);
  }
  const __m256 rows[3][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) _mm256_storeu_ps(out + i * C + c0 + 8 * j, rows[i][j]);
}

template <int N, typename T>
void WeightedSumQueries(const float* p, int64_t ldp, const T* vals, int64_t S, int64_t C, float* out, bool resume) {
  const int64_t C32 = C & ~int64_t{31}, C8 = C & ~int64_t{7};
  int64_t c0 = 0;
  for (; c0 < C32; c0 += 32) {
    if (N == 3) {
      WeightedColumns3x4(p, ldp, vals, S, C, c0, out, resume);
    } else {
      WeightedColumns<N, 4, T>(p, ldp, vals, S, C, c0, out, resume);
    }
  }
  for (; c0 < C8; c0 += 8) WeightedColumns<N, 1, T>(p, ldp, vals, S, C, c0, out, resume);
  for (; c0 < C; ++c0) {  // last C % 8 columns: each the vector lanes' fma chain (see RowTail)
    for (int i = 0; i < N; ++i) {
      float a = resume ? out[i * C + c0] : 0.0f;
      for (int64_t s = 0; s < S; ++s) a = __builtin_fmaf(p[i * ldp + s], ValueAt(vals + s * C + c0), a);
      out[i * C + c0] = a;
    }
  }
}

// exp(x) as Cephes' expf: n = round(x·log2 e), r = x - n·ln 2 (ln 2 in two parts, so r is
// exact), e^r by a degree-5 polynomial, times 2^n built in the exponent bits. Within 3 ulp of
// std::exp for x in [-87.3, 88.72]; below that 0 (e^-87.3 is the smallest normal float), above
// it +inf, as std::exp overflows (SiluMul passes -gate, which is large for very negative
// gates: a clamp there gave g / 2.4e38 where std::exp gives g / inf = -0). NaN stays NaN: the
// clamps return their second operand when one is NaN, and the range tests are false for it.
// n = 128 (x past 88.38) has no exponent field: 2^127 and one more doubling, exact or +inf;
// every other x multiplies by exactly 1 there, so the softmax's x <= 0 keeps its bits.
inline __m256 Exp(__m256 x) {
  const __m256 lo = _mm256_set1_ps(kExpLo), hi = _mm256_set1_ps(kExpHi);  // hi: n = 128
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kExpLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kExpLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[i]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256 top = _mm256_cmp_ps(n, _mm256_set1_ps(127.0f), _CMP_GT_OQ);
  n = _mm256_min_ps(n, _mm256_set1_ps(127.0f));
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 twice = _mm256_blendv_ps(_mm256_set1_ps(1.0f), _mm256_set1_ps(2.0f), top);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(pow2n)), twice));
}

// Keys [0, S4) (S4 a multiple of four, at most the S cached rows), four at a time, each read
// once for all queries. Decode reads the cache from DRAM once per token: the rows two steps
// ahead are fetched (the hardware prefetchers alone left this loop at half the read
// bandwidth), one chunk before each query tile rather than all at once (a burst of prefetches
// fills the miss buffers and stalls the loop): each of part one's four rows, then part two's four.
// Queries go three a tile (ScoreTile's 4x3), then QueryTiles' smaller ones.
template <bool kTwo, typename T>
void ScoreQuads(const float* q1, int64_t ldq1, const T* keys1, int64_t C1, const float* q2, int64_t ldq2,
                const T* keys2, int64_t C2, int64_t M, int64_t S4, int64_t S, float* scores, int64_t lds,
                bool accumulate) {
  for (int64_t s = 0; s < S4; s += 4) {
    const T* key1 = keys1 + s * C1;
    const T* key2 = kTwo ? keys2 + s * C2 : nullptr;
    const bool fetch = s + 12 <= S;
    constexpr int kChunks = kTwo ? 5 : 4;
    int fetched = 0;  // chunks fetched so far
    const auto fetch_chunk = [&] {
      const char* ahead = fetched < 4 ? reinterpret_cast<const char*>(key1 + (8 + fetched) * C1)
                                      : reinterpret_cast<const char*>(key2 + 8 * C2);
      const int64_t bytes = static_cast<int64_t>(sizeof(T)) * (fetched < 4 ? C1 : 4 * C2);
      for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
      ++fetched;
    };
    const auto tile = [&]<int NQ>(int64_t m) __attribute__((always_inline)) {
      if (fetch && fetched < kChunks) fetch_chunk();
      const float* qs1[NQ];
      const float* qs2[NQ];
      float* outs[NQ];
      for (int j = 0; j < NQ; ++j) {
        qs1[j] = q1 + (m + j) * ldq1;
        qs2[j] = q2 + (m + j) * ldq2;
        outs[j] = scores + (m + j) * lds + s;
      }
      ScoreTile<NQ, kTwo, T>(qs1, key1, C1, qs2, key2, C2, outs, accumulate);
    };
    QueryTiles<3>(M, tile);
    while (fetch && fetched < kChunks) fetch_chunk();
  }
}

// scores[m * lds + s] (+)= q1[m] · keys1[s] (+ q2[m] · keys2[s] for kTwo).
template <bool kTwo, typename T>
void Scores(const float* q1, int64_t ldq1, const T* keys1, int64_t C1, const float* q2, int64_t ldq2, const T* keys2,
            int64_t C2, int64_t M, int64_t S, float* scores, int64_t lds, bool accumulate) {
  const int64_t S4 = S & ~int64_t{3};
  ScoreQuads<kTwo, T>(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S4, S, scores, lds, accumulate);
  for (int64_t s = S4; s < S; ++s) {
    const T* key1 = keys1 + s * C1;
    const T* key2 = kTwo ? keys2 + s * C2 : nullptr;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      const float* qs1[4] = {q1 + m * ldq1, q1 + (m + 1) * ldq1, q1 + (m + 2) * ldq1, q1 + (m + 3) * ldq1};
      const float* qs2[4] = {q2 + m * ldq2, q2 + (m + 1) * ldq2, q2 + (m + 2) * ldq2, q2 + (m + 3) * ldq2};
      float* outs[4] = {scores + m * lds + s, scores + (m + 1) * lds + s, scores + (m + 2) * lds + s,
                        scores + (m + 3) * lds + s};
      ScoreRow<4, kTwo, T>(qs1, key1, C1, qs2, key2, C2, outs, accumulate);
    }
    for (; m < M; ++m) {
      const float* qs1[1] = {q1 + m * ldq1};
      const float* qs2[1] = {q2 + m * ldq2};
      float* outs[1] = {scores + m * lds + s};
      ScoreRow<1, kTwo, T>(qs1, key1, C1, qs2, key2, C2, outs, accumulate);
    }
  }
}

}  // namespace

float ExpShiftedSumAvx2(float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (i < n) {  // the last n % 8 through the same vector code (padding lanes -inf: 0)
    alignas(32) float buf[8];
    for (int j = 0; j < 8; ++j) buf[j] = i + j < n ? x[i + j] : -__builtin_inff();
    const __m256 e = Exp(_mm256_sub_ps(_mm256_load_ps(buf), s));
    _mm256_store_ps(buf, e);
    for (int64_t j = 0; i + j < n; ++j) x[i + j] = buf[j];
    sum = _mm256_add_ps(sum, e);
  }
  return HorizontalSum(sum);
}

double SumExpShiftedAvx2(const float* x, int64_t n, float shift) {
  // Two chains of four doubles (the low and the high half of each eight exps), added at the end.
  const __m256 s = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  const auto add = [&](__m256 e) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) add(Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
  if (i < n) {  // the last n % 8, the padding lanes -inf: 0
    alignas(32) float buf[8];
    for (int j = 0; j < 8; ++j) buf[j] = i + j < n ? x[i + j] : -__builtin_inff();
    add(Exp(_mm256_sub_ps(_mm256_load_ps(buf), s)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

float ScaleMaxAvx2(float* x, int64_t n, float scale) {
  // max(x, m) keeps m for a NaN x, as std::max(m, x) does; the max of the rest does not
  // depend on the order.
  const __m256 s = _mm256_set1_ps(scale);
  __m256 mv = _mm256_set1_ps(-__builtin_inff());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
    _mm256_storeu_ps(x + i, v);
    mv = _mm256_max_ps(v, mv);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mv);
  float m = lanes[0];
  for (int j = 1; j < 8; ++j) m = lanes[j] > m ? lanes[j] : m;
  for (; i < n; ++i) {
    x[i] *= scale;
    m = x[i] > m ? x[i] : m;
  }
  return m;
}

void SoftmaxAvx2(float* x, int64_t n, float scale) {
  // x *= scale and its max, then the exponentials, then x / sum as x * (1 / sum).
  const float inv = 1.0f / ExpShiftedSumAvx2(x, n, ScaleMaxAvx2(x, n, scale));
  const __m256 iv = _mm256_set1_ps(inv);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
  for (; i < n; ++i) x[i] *= inv;
}

void SiluMulAvx2(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  // gate / (1 + exp(-gate)) * up, in the scalar loop's order, exp from ExpShiftedSum's Exp.
  const auto silu_mul = [&](__m256 g, __m256 u) {
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, Exp(_mm256_xor_ps(g, sign)))), u);
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(gate + i, silu_mul(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {  // the last n % 8 through the same vector code
    alignas(32) float g[8] = {0, 0, 0, 0, 0, 0, 0, 0}, u[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = 0; i + j < n; ++j) {
      g[j] = gate[i + j];
      u[j] = up[i + j];
    }
    _mm256_store_ps(g, silu_mul(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (int64_t j = 0; i + j < n; ++j) gate[i + j] = g[j];
  }
}

void AddScaledAvx2(float* y, const float* x, float a, int64_t n) {
  // The barriers keep each product rounded on its own: compiled with -mfma, GCC would fuse the
  // multiply and the add (vector intrinsics are plain arithmetic to it), which the scalar loop
  // it must match does not.
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 p = _mm256_mul_ps(av, _mm256_loadu_ps(x + i));
    __asm__("" : "+x"(p));
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), p));
  }
  for (; i < n; ++i) {
    __m128 p = _mm_mul_ss(_mm_set_ss(a), _mm_set_ss(x[i]));
    __asm__("" : "+x"(p));
    y[i] = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(y[i]), p));
  }
}

void MultiQueryScoresAvx2(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                          float* scores, int64_t lds, bool accumulate) {
  Scores<false, float>(q, ldq, keys, C, q, ldq, keys, 0, M, S, scores, lds, accumulate);
}

void MultiQueryScoresTwoPartAvx2(const float* q1, int64_t ldq1, const float* keys1, int64_t C1, const float* q2,
                                 int64_t ldq2, const float* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                                 int64_t lds) {
  Scores<true, float>(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds, false);
}

void MultiQueryScoresTwoPartAvx2(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                                 int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                                 int64_t lds) {
  Scores<true, uint16_t>(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds, false);
}

namespace {

template <typename T>
void WeightedSum(const float* p, int64_t M, int64_t ldp, const T* vals, int64_t S, int64_t C, float* out) {
  // The rows a block of 16 KB (half of L1) at a time, each block meeting every query while it
  // sits in L1, each sum carried from block to block through out (its chain, so its bits,
  // unchanged): walked whole, the rows came from L2 or further again for every tile of queries
  // (one thread, 200 runs paired with the unblocked loop, median: 12 queries x 128 rows x 256,
  // 63 -> 78 GFLOP/s; x 4096 rows, 48 -> 72; 32 KB blocks were no faster than none, 8 KB ~6% short of 16).
  if (C <= 0) return;  // no columns to write
  constexpr int64_t kBlockBytes = 16 * 1024;
  RowBlocks<3>(M, S, C * static_cast<int64_t>(sizeof(T)), kBlockBytes,
               [&]<int N>(int64_t m, int64_t s0, int64_t n, bool resume) {
                 WeightedSumQueries<N, T>(p + m * ldp + s0, ldp, vals + s0 * C, n, C, out + m * C, resume);
               });
}

}  // namespace

void MultiQueryWeightedSumAvx2(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                               float* out) {
  WeightedSum(p, M, ldp, vals, S, C, out);
}

void MultiQueryWeightedSumAvx2(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                               float* out) {
  WeightedSum(p, M, ldp, vals, S, C, out);
}

void WidenBf16Avx2(const uint16_t* in, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, Load8(in + i));
  for (; i < n; ++i) out[i] = ValueAt(in + i);
}

}  // namespace dsv3::cpu

#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
void MultiQueryScoresAvx2(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool) {}
void MultiQueryScoresTwoPartAvx2(const float*, int64_t, const float*, int64_t, const float*, int64_t, const float*,
                                 int64_t, int64_t, int64_t, float*, int64_t) {}
void MultiQueryWeightedSumAvx2(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*) {}
void MultiQueryScoresTwoPartAvx2(const float*, int64_t, const uint16_t*, int64_t, const float*, int64_t,
                                 const uint16_t*, int64_t, int64_t, int64_t, float*, int64_t) {}
void MultiQueryWeightedSumAvx2(const float*, int64_t, int64_t, const uint16_t*, int64_t, int64_t, float*) {}
void WidenBf16Avx2(const uint16_t*, int64_t, float*) {}
float ExpShiftedSumAvx2(float*, int64_t, float) { return 0.0f; }
double SumExpShiftedAvx2(const float*, int64_t, float) { return 0.0; }
void SoftmaxAvx2(float*, int64_t, float) {}
float ScaleMaxAvx2(float*, int64_t, float) { return 0.0f; }
void SiluMulAvx2(float*, const float*, int64_t) {}
void AddScaledAvx2(float*, const float*, float, int64_t) {}
}  // namespace dsv3::cpu

#endif
