// Multi-query attention products for AVX2 + FMA (compiled with those flags for this file
// only; chosen at run time by attention.cc). Decode over MLA's latent cache has few queries
// (the heads of a group) and many cached rows of C = kv_lora_rank floats: every cached row is
// loaded once and meets all the queries from registers/L1, instead of once per head.
//
// As in linear_avx2.cc, no standard-library templates or shared inline functions here.
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Up to four queries against one key row.
template <int N>
void ScoreRow(const float* const* q, const float* key, int64_t C, float* const* out, bool accumulate) {
  __m256 acc[N];
  for (int i = 0; i < N; ++i) acc[i] = _mm256_setzero_ps();
  const int64_t C8 = C & ~int64_t{7};
  for (int64_t c = 0; c < C8; c += 8) {
    const __m256 k = _mm256_loadu_ps(key + c);
    for (int i = 0; i < N; ++i) acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(q[i] + c), k, acc[i]);
  }
  for (int i = 0; i < N; ++i) {
    float d = HorizontalSum(acc[i]);
    for (int64_t c = C8; c < C; ++c) d += q[i][c] * key[c];
    *out[i] = accumulate ? *out[i] + d : d;
  }
}

// Three queries x 32 columns of the output in registers, over every cached row.
template <int N, int V>
void WeightedColumns(const float* p, int64_t ldp, const float* vals, int64_t S, int64_t C, int64_t c0, float* out) {
  __m256 acc[N][V];
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < V; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t s = 0; s < S; ++s) {
    const float* v = vals + s * C + c0;
    __m256 vv[V];
    for (int j = 0; j < V; ++j) vv[j] = _mm256_loadu_ps(v + 8 * j);
    for (int i = 0; i < N; ++i) {
      const __m256 w = _mm256_broadcast_ss(p + i * ldp + s);
      for (int j = 0; j < V; ++j) acc[i][j] = _mm256_fmadd_ps(w, vv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < V; ++j) _mm256_storeu_ps(out + i * C + c0 + 8 * j, acc[i][j]);
}

template <int N>
void WeightedSumQueries(const float* p, int64_t ldp, const float* vals, int64_t S, int64_t C, float* out) {
  const int64_t C32 = C & ~int64_t{31}, C8 = C & ~int64_t{7};
  int64_t c0 = 0;
  for (; c0 < C32; c0 += 32) WeightedColumns<N, 4>(p, ldp, vals, S, C, c0, out);
  for (; c0 < C8; c0 += 8) WeightedColumns<N, 1>(p, ldp, vals, S, C, c0, out);
  for (; c0 < C; ++c0) {  // last C % 8 columns
    for (int i = 0; i < N; ++i) {
      float a = 0.0f;
      for (int64_t s = 0; s < S; ++s) a += p[i * ldp + s] * vals[s * C + c0];
      out[i * C + c0] = a;
    }
  }
}

}  // namespace

void MultiQueryScoresAvx2(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                          float* scores, int64_t lds, bool accumulate) {
  for (int64_t s = 0; s < S; ++s) {
    const float* key = keys + s * C;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) {
      const float* qs[4] = {q + m * ldq, q + (m + 1) * ldq, q + (m + 2) * ldq, q + (m + 3) * ldq};
      float* outs[4] = {scores + m * lds + s, scores + (m + 1) * lds + s, scores + (m + 2) * lds + s,
                        scores + (m + 3) * lds + s};
      ScoreRow<4>(qs, key, C, outs, accumulate);
    }
    for (; m < M; ++m) {
      const float* qs[1] = {q + m * ldq};
      float* outs[1] = {scores + m * lds + s};
      ScoreRow<1>(qs, key, C, outs, accumulate);
    }
  }
}

void MultiQueryWeightedSumAvx2(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                               float* out) {
  int64_t m = 0;
  for (; m + 3 <= M; m += 3) WeightedSumQueries<3>(p + m * ldp, ldp, vals, S, C, out + m * C);
  if (M - m == 2) WeightedSumQueries<2>(p + m * ldp, ldp, vals, S, C, out + m * C);
  if (M - m == 1) WeightedSumQueries<1>(p + m * ldp, ldp, vals, S, C, out + m * C);
}

}  // namespace dsv3::cpu

#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
void MultiQueryScoresAvx2(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool) {}
void MultiQueryWeightedSumAvx2(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*) {}
}  // namespace dsv3::cpu

#endif
