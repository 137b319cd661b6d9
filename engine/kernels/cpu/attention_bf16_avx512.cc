// Decode's attention over a bf16 latent cache with the queries and the probabilities rounded to
// bf16 (LinearActivations::kBf16), by vdpbf16ps (compiled with -mavx512bf16 and the avx512
// family's flags for this file only; attention.cc calls it after checking the CPU). The float32
// products (attention_avx512.cc) widen each cached value and spend one FMA lane per product;
// here each lane multiplies two cached values by two rounded ones and adds both: half the
// instructions a product, no widening. Each sum runs the chain linear_kernels.h states
// (Bf16QueryScoresReference and Bf16WeightedSumReference, linear_bf16.cc, are the twins).
//
// The scores, as in attention_avx512.cc: two queries per vector (query 2p in lanes 0-7, 2p + 1
// in lanes 8-15, each lane a pair of columns), a key's sixteen columns in both halves (a last
// eight padded with zeros), tiles of up to six pairs and four keys (24 accumulators, ten loads
// per 24 instructions), each key read once for all the queries of a group, and the four keys'
// lane sums by one hadd tree (QuadSums). The weighted sums: sixteen columns a vector, each lane
// a pair of rows (one permute interleaves two rows' 32-byte loads), a query's pair of
// probabilities one broadcast, tiles of up to six queries and 32 columns over blocks of 512
// rows, the sums carried from block to block.
//
// No standard-library templates or shared inline functions are used here (see linear_kernels.h).
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512BF16__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/isa_common.inc"
#include "engine/kernels/cpu/isa_avx512.inc"

#include "engine/kernels/cpu/attention_tiles.inc"

// Queries a group at most (eight pairs), and the widest rows (both parts, in whole 16-column
// steps) the pairs take: 32 KB of bf16 pairs (DeepSeek-V3's 512 + 64 columns take 18 KB); wider
// rows go to the twin.
constexpr int64_t kGroupQueries = 16, kMaxColumns = 1024;
// Keys per block of the scores (a multiple of four): 288 KB of DeepSeek-V3's rows.
constexpr int64_t kKeyBlockRows = 256;

inline __m512bh Bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

inline int64_t Steps16(int64_t C) { return (C + 15) / 16 * 16; }

// Queries [0, n) as bf16 pairs at `pairs`, pair p 2W words on (W = Steps16(C1) + Steps16(C2)):
// sixteen columns c of query 2p, then the same columns of 2p + 1, at word 2c (part two at
// 2(Steps16(C1) + c)), a last step of eight columns padded with zeros; rounded by
// vcvtne2ps2bf16, RoundToBf16's bits. A lone last query is paired with itself (its copy's scores
// are not stored).
void PairQueries(const float* q1, int64_t ldq1, int64_t C1, const float* q2, int64_t ldq2, int64_t C2, int64_t n,
                 uint16_t* pairs) {
  const int64_t W = Steps16(C1) + Steps16(C2);
  for (int64_t p = 0; p < (n + 1) / 2; ++p) {
    const int64_t a = 2 * p, b = 2 * p + 1 < n ? 2 * p + 1 : 2 * p;
    uint16_t* d = pairs + p * 2 * W;
    const auto part = [&](const float* q, int64_t ldq, int64_t C, int64_t at) __attribute__((always_inline)) {
      for (int64_t c = 0; c < C; c += 16) {
        const __mmask16 m = C - c >= 16 ? 0xffff : 0x00ff;
        const __m512bh v =
            _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m, q + b * ldq + c), _mm512_maskz_loadu_ps(m, q + a * ldq + c));
        _mm512_storeu_si512(d + 2 * (at + c), reinterpret_cast<__m512i>(v));
      }
    };
    part(q1, ldq1, C1, 0);
    part(q2, ldq2, C2, Steps16(C1));
  }
}

// acc[p][i] += pair p · key row i over C columns (pairs: the part's words, pair p 2W words on; a
// last step of eight columns meets the pairs' zeros with zeros). ahead: four rows to fetch as
// these are read, a line of each per 64 bytes read (null for none).
template <int P>
__attribute__((always_inline)) inline void PairSteps(__m512 (&acc)[P][4], const uint16_t* pairs, int64_t W,
                                                     const uint16_t* keys, int64_t C, const uint16_t* ahead) {
  for (int64_t c = 0; c < C; c += 16) {
    if (ahead && c % 32 == 0)
      for (int i = 0; i < 4; ++i) _mm_prefetch(reinterpret_cast<const char*>(ahead + i * C + c), _MM_HINT_T0);
    const __mmask16 m = C - c >= 16 ? 0xffff : 0x00ff;
    __m512bh k[4];
    for (int i = 0; i < 4; ++i) k[i] = Bh(_mm512_broadcast_i64x4(_mm256_maskz_loadu_epi16(m, keys + i * C + c)));
    for (int p = 0; p < P; ++p) {
      const __m512bh qv = Bh(_mm512_loadu_si512(pairs + p * 2 * W + 2 * c));
      for (int i = 0; i < 4; ++i) acc[p][i] = _mm512_dpbf16_ps(acc[p][i], qv, k[i]);
    }
  }
}

// Four key rows x P pairs (queries m0 .. m0 + 2P - 1 of n): each query's first `keys` of the
// four scores stored consecutively at its row of out.
template <int P>
void PairTile(const uint16_t* pairs, int64_t C1, const uint16_t* keys1, int64_t C2, const uint16_t* keys2, int64_t m0,
              int64_t n, float* out, int64_t lds, const uint16_t* ahead1, const uint16_t* ahead2, int keys) {
  const int64_t W = Steps16(C1) + Steps16(C2);
  __m512 acc[P][4];
  for (int p = 0; p < P; ++p) acc[p][0] = acc[p][1] = acc[p][2] = acc[p][3] = _mm512_setzero_ps();
  PairSteps<P>(acc, pairs, W, keys1, C1, ahead1);
  PairSteps<P>(acc, pairs + 2 * Steps16(C1), W, keys2, C2, ahead2);
  for (int p = 0; p < P; ++p) {
    const __m512(&a)[4] = acc[p];
    for (int h = 0; h < 2 && m0 + 2 * p + h < n; ++h)
      _mm_mask_storeu_ps(out + (m0 + 2 * p + h) * lds, static_cast<__mmask8>((1u << keys) - 1),
                         h == 0 ? PairQuadSums<false>(a[0], a[1], a[2], a[3]) : PairQuadSums<true>(a[0], a[1], a[2], a[3]));
  }
}

// Rows per block of the weighted sums (even: a block holds whole pairs of rows) and the query
// tile's probabilities as bf16 pairs for one block: word s / 2 of query i holds rows s and s + 1.
constexpr int64_t kSumBlockRows = 512;

// The words of rows s and s + 1 for sixteen columns, interleaved: lane j holds column j of row
// s (even word) and of row s + 1 (odd word), as vdpbf16ps pairs them. next: row s + 1, or null
// past the last row (zeros).
inline __m512bh RowPair(const uint16_t* row, const uint16_t* next) {
  const __m512i index = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                                         37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row)));
  const __m512i b = next ? _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(next)))
                         : _mm512_setzero_si512();
  return Bh(_mm512_permutex2var_epi16(a, index, b));
}

// N queries x 16V columns from c0 over rows [0, S) of a block (pp: the queries' pairs, ldpp
// words apart): out (+)= (resume: the sums go on from what out holds).
template <int N, int V>
void SumTile(const uint32_t* pp, int64_t ldpp, const uint16_t* vals, int64_t S, int64_t C, int64_t c0, float* out,
             bool resume) {
  __m512 acc[N][V];
  for (int i = 0; i < N; ++i)
    for (int v = 0; v < V; ++v) acc[i][v] = resume ? _mm512_loadu_ps(out + i * C + c0 + 16 * v) : _mm512_setzero_ps();
  for (int64_t s = 0; s < S; s += 2) {
    const uint16_t* row = vals + s * C + c0;
    const uint16_t* next = s + 1 < S ? row + C : nullptr;
    __m512bh x[V];
    for (int v = 0; v < V; ++v) x[v] = RowPair(row + 16 * v, next ? next + 16 * v : nullptr);
    for (int i = 0; i < N; ++i) {
      const __m512bh w = Bh(_mm512_set1_epi32(static_cast<int>(pp[i * ldpp + s / 2])));
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], w, x[v]);
    }
  }
  for (int i = 0; i < N; ++i)
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(out + i * C + c0 + 16 * v, acc[i][v]);
}

}  // namespace

void Bf16WeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                           float* out) {
  alignas(64) uint32_t pp[6 * (kSumBlockRows / 2)];
  constexpr int64_t ldpp = kSumBlockRows / 2;
  for (int64_t s0 = 0; s0 == 0 || s0 < S; s0 += kSumBlockRows) {
    const int64_t n = S - s0 < kSumBlockRows ? S - s0 : kSumBlockRows;
    QueryTiles<6>(M, [&]<int N>(int64_t m) __attribute__((always_inline)) {
      // The tile's probabilities for the block, rounded as bf16 activations are (a row's words
      // s and s + 1 are the pair of rows s / 2; zeros past n).
      for (int i = 0; i < N; ++i)
        RoundActsToBf16Avx512(p + (m + i) * ldp + s0, n, reinterpret_cast<uint16_t*>(pp + i * ldpp));
      const uint16_t* block = vals + s0 * C;
      float* o = out + m * C;
      int64_t c0 = 0;
      for (; c0 + 32 <= C; c0 += 32) SumTile<N, 2>(pp, ldpp, block, n, C, c0, o, s0 > 0);
      if (c0 < C) SumTile<N, 1>(pp, ldpp, block, n, C, c0, o, s0 > 0);
    });
  }
}

void Bf16QueryScoresAvx512(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                           int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                           int64_t lds) {
  const int64_t W = Steps16(C1) + Steps16(C2);
  if (W > kMaxColumns) return Bf16QueryScoresReference(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds);
  alignas(64) uint16_t pairs[kGroupQueries * kMaxColumns];
  // The last S % 4 keys, copied into four zeroed rows of their own: a key's scores depend on its
  // own row only, so the padded tile gives them the bits of a whole one.
  alignas(64) uint16_t tail[4 * kMaxColumns];
  const int64_t S4 = S & ~int64_t{3}, left = S - S4;
  if (left > 0) {
    for (int64_t i = 0; i < 4 * (C1 + C2); ++i) tail[i] = 0;
    for (int64_t i = 0; i < left * C1; ++i) tail[i] = keys1[S4 * C1 + i];
    for (int64_t i = 0; i < left * C2; ++i) tail[4 * C1 + i] = keys2[S4 * C2 + i];
  }
  // Keys a block at a time, every group of queries over a block while it is in L2 (DeepSeek-V3's
  // 128 heads are eight groups, and its spans of up to 2048 rows, 2.3 MB, would come from L3 for
  // each); a group's pairs are made again for each block (W conversions per query against
  // kKeyBlockRows · W products).
  for (int64_t b0 = 0; b0 < S; b0 += kKeyBlockRows) {
    const int64_t b1 = S - b0 < kKeyBlockRows ? S : b0 + kKeyBlockRows;
    for (int64_t m = 0; m < M; m += kGroupQueries) {
      const int64_t n = M - m < kGroupQueries ? M - m : kGroupQueries, np = (n + 1) / 2;
      if (b0 == 0 || M > kGroupQueries) PairQueries(q1 + m * ldq1, ldq1, C1, q2 + m * ldq2, ldq2, C2, n, pairs);
      float* out = scores + m * lds;
      for (int64_t s = b0; s < b1; s += 4) {
        const bool whole = s < S4;
        const uint16_t* key1 = whole ? keys1 + s * C1 : tail;
        const uint16_t* key2 = whole ? keys2 + s * C2 : tail + 4 * C1;
        const bool fetch = s + 12 <= b1;  // the first tile fetches the rows two steps ahead
        QueryTiles<6>(np, [&]<int P>(int64_t p) __attribute__((always_inline)) {
          const bool first = p == 0 && fetch;
          PairTile<P>(pairs + p * 2 * W, C1, key1, C2, key2, 2 * p, n, out + s, lds, first ? key1 + 8 * C1 : nullptr,
                      first ? key2 + 8 * C2 : nullptr, whole ? 4 : static_cast<int>(left));
        });
      }
    }
  }
}

}  // namespace dsv3::cpu

#else  // built without the flags (not x86-64): the dispatcher never selects this.

namespace dsv3::cpu {
void Bf16QueryScoresAvx512(const float*, int64_t, const uint16_t*, int64_t, const float*, int64_t, const uint16_t*,
                           int64_t, int64_t, int64_t, float*, int64_t) {}
void Bf16WeightedSumAvx512(const float*, int64_t, int64_t, const uint16_t*, int64_t, int64_t, float*) {}
}  // namespace dsv3::cpu

#endif
