// Int8-activation Linear for INT8 and INT4 weights with AVX-512 VNNI (compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni for this file only; linear.cc calls it after
// checking the CPU). vpdpbusd multiplies unsigned by signed bytes and adds each four products
// into an int32 lane in one instruction, where AVX2 needs vpmaddubsw, vpmaddwd and (INT8) a
// vpabsb and vpsignb around them. The result is the contract of linear_kernels.h, so these
// kernels give the bits of the scalar twin (linear_q8.cc) and of linear_q8_avx2.cc:
//   - INT4: a 512-bit vector is 64 bytes of a row, four blocks. Its low nibbles meet the
//     four blocks' even columns and its high nibbles their odd ones; the activations of two
//     pairs of blocks are regrouped to match (vshufi64x2). Sixteen blocks reduce to one vector
//     of exact block sums in block order, the zero point comes off as z · Σq, and the float
//     steps go eight blocks at a time onto the eight chains, blocks b0..b0+7 and then
//     b0+8..b0+15, each chain in block order as the twin has it. A few tokens (a batch
//     decoding together, up to kInt4DecodeTokensMax) take the same steps, each step's weights
//     unpacked and its scales converted once for up to four tokens (Int4DecodeTokens); rows of
//     one step take them a token at a time, 32 rows at a time.
//   - INT8: the signed weights go in the unsigned operand as w + 128 (w xor 0x80), and
//     128 · Σq comes off the block sum afterwards; lanes are (row, token) as in the AVX2
//     tiles, each an fma chain over the blocks in order. One token (Int8Decode): sixteen rows
//     a vector, each row's two blocks in one 512-bit vpdpbusd; two tokens take it in turn,
//     sixteen rows at a time (Int8DecodeTokens).
//   - INT8 and INT4, several tokens (QGemmMinTokens): a GEMM (QGemm) whose lanes are sixteen
//     rows of one token, so that a lane's eight vpdpbusd over a block leave its exact sum with
//     nothing to add across lanes (the tiles spend more on their sum trees than on the
//     products). The rows are repacked 32 at a time, a column quad per vector (Transpose16;
//     INT4 unpacked to a byte a nibble), and each token's four activations are broadcast.
//     One thread, 512 x 1536, 48 tokens from L2: INT8 108 -> 526-552 GOP/s (13% -> 63% of its
//     vpdpbusd peak), INT4 g32 116 -> 432-463 (19% -> 52-59%); 64 experts x 48 tokens (gate,
//     up, down) from DRAM on 2 threads: INT8 195-205 -> 718-740, INT4 250 -> 582.
//
// No standard-library templates or shared inline functions are used here (see linear_avx2.cc).
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

#include "engine/kernels/cpu/isa_common.inc"
#include "engine/kernels/cpu/isa_avx512.inc"

// ---- INT8: the tiles of linear_q8_int8.inc, the block sums by vpdpbusd ---------------------

// 32 weights of a row as w + 128 (vpdpbusd's unsigned operand).
inline __m256i Biased(const uint8_t* row, int64_t k) {
  return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k)),
                          _mm256_set1_epi8(static_cast<char>(0x80)));
}
inline __m256i Dot(__m256i u, __m256i xq) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, xq); }

// Lanes 2p and 2p+1: rows (2p, 2p+1) of one token, or row p (loaded once) of both tokens.
template <int N>
inline __m256i Int8LanePair(const uint8_t* const* p, int64_t k, const __m256i* xq, int pair) {
  if (N == 1) return TreePairs<false>(Dot(Biased(p[2 * pair], k), xq[0]), Dot(Biased(p[2 * pair + 1], k), xq[0]));
  const __m256i u = Biased(p[pair], k);
  return TreePairs<false>(Dot(u, xq[0]), Dot(u, xq[N - 1]));
}
// Σ (w + 128) q = Σ w q + 128 Σq: the block's Σq of each lane's token comes off.
template <int N>
inline __m256i Int8ExactSums(__m256i sums, const int32_t* const* sum_q, int64_t b) {
  const __m256i s0 = _mm256_set1_epi32(sum_q[0][b]);
  const __m256i lanes = N == 1 ? s0 : _mm256_unpacklo_epi32(s0, _mm256_set1_epi32(sum_q[N - 1][b]));
  return _mm256_sub_epi32(sums, _mm256_slli_epi32(lanes, 7));
}

#include "engine/kernels/cpu/linear_q8_int8.inc"

// ---- INT8 and INT4, several tokens: sixteen rows a vector, a token's quad broadcast ---------

// Sixteen vectors of sixteen int32 lanes transposed in place (v[c] lane m <- v[m] lane c).
inline void Transpose16(__m512i* v) {
  __m512i t[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_epi32(v[2 * k], v[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_epi32(v[2 * k], v[2 * k + 1]);
  }
  // u[4k + m], 128-bit lane L: column 4L + m of rows 4k..4k+3.
  __m512i u[16];
  for (int k = 0; k < 4; ++k) {
    u[4 * k] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
    u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
    u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    const __m512i a = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44), b = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44);
    const __m512i c = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xee), d = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xee);
    v[m] = _mm512_shuffle_i32x4(a, b, 0x88);
    v[4 + m] = _mm512_shuffle_i32x4(a, b, 0xdd);
    v[8 + m] = _mm512_shuffle_i32x4(c, d, 0x88);
    v[12 + m] = _mm512_shuffle_i32x4(c, d, 0xdd);
  }
}

// Where the GEMM finds a tile of kQGemmRows rows in its scratch: INT8 block b's column quad c
// for rows 16v..16v+15 is the 64 bytes at tile + ((8b + c) · 2 + v) · 64, a byte a weight
// (w + 128); INT4 block b's dword c (0-3) of the sixteen rows is at tile + ((4b + c) · 2 + v) ·
// 64, the bytes as stored, two nibbles each (the low ones quad c, the high ones quad 4 + c, in
// the nibble order), split as the GEMM reads them; then each block's 32 scales (float) and for
// INT4 its 32 zero points (int32).
struct GemmTile {
  uint8_t* w;
  float* scale;
  int32_t* zero;
};
GemmTile TileIn(uint8_t* scratch, int64_t K) {
  const int64_t nb = K / kActBlock;
  float* scale = reinterpret_cast<float*>(scratch + kQGemmRows * K);
  return {scratch, scale, reinterpret_cast<int32_t*>(scale + kQGemmRows * nb)};
}

// Row m of a tile from r: past r1, row r1 - 1 again (its lanes are computed and not stored).
inline int64_t TileRow(int64_t r, int64_t m, int64_t r1) { return r + m < r1 ? r + m : r1 - 1; }
inline void SixteenRows(const RawWeight& w, int64_t r, int64_t r1, const uint8_t** row) {
  for (int m = 0; m < 16; ++m) row[m] = static_cast<const uint8_t*>(w.data) + TileRow(r, m, r1) * w.row_bytes;
}

// Groups [g0, g0 + n) (n <= 16) of the sixteen rows from r (past r1: row r1 - 1 again),
// transposed: sc[k] lane m is row m's scale of group g0 + k (float), and for INT4 with zero
// points z[k] lane m its zero point (int32). z is not written for INT8 or symmetric INT4 (the
// GEMM starts those blocks from a broadcast).
void SixteenRowsGroups(const RawWeight& w, int64_t r, int64_t r1, int64_t g0, int64_t n, __m512i* sc, __m512i* z) {
  const bool int4 = w.kind == WeightKind::kInt4;
  if (!int4 && w.block_out == 1 && w.scale_cols == 1) {
    // A scale per row (dsv3 quantize's default INT8, [rows, 1]): the sixteen rows' scales are
    // one vector as stored, no gather and no transpose.
    const int64_t left = r1 - r;
    const __mmask16 rows = static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1);
    sc[0] = _mm512_mask_loadu_epi32(_mm512_castps_si512(_mm512_set1_ps(w.scale[r1 - 1])), rows, w.scale + r);
    return;
  }
  const __mmask16 have = static_cast<__mmask16>((1u << n) - 1);
  for (int m = 0; m < 16; ++m) {
    const int64_t rr = TileRow(r, m, r1);
    if (int4) {
      const uint16_t* at = w.scale16 + rr * w.scale_cols + g0;
      sc[m] = _mm512_castps_si512(_mm512_cvtph_ps(n == 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at))
                                                          : _mm256_maskz_loadu_epi16(have, at)));
      if (w.zero) z[m] = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(have, w.zero + rr * w.scale_cols + g0));
    } else {
      const int64_t srow = w.block_out == 1 ? rr : rr / w.block_out;
      sc[m] = _mm512_maskz_loadu_epi32(have, w.scale + srow * w.scale_cols + g0);
    }
  }
  Transpose16(sc);
  if (int4 && w.zero) Transpose16(z);
}

// Each block's scales (and zero points) of rows [r, r + 32) (past r1: row r1 - 1 again): the
// rows' groups sixteen at a time, transposed to a vector per group.
void PackBlockScales(const RawWeight& w, int64_t r, int64_t r1, const GemmTile& t) {
  const int64_t nb = w.cols / kActBlock, per_group = w.block_in / kActBlock, groups = (nb + per_group - 1) / per_group;
  const bool int4 = w.kind == WeightKind::kInt4;
  for (int v = 0; v < 2; ++v)
    for (int64_t g0 = 0; g0 < groups; g0 += 16) {
      const int64_t n = groups - g0 < 16 ? groups - g0 : 16;
      __m512i sc[16], z[16];
      SixteenRowsGroups(w, r + 16 * v, r1, g0, n, sc, z);
      for (int64_t k = 0; k < n; ++k)  // group g0 + k: its blocks
        for (int64_t b = (g0 + k) * per_group; b < nb && b < (g0 + k + 1) * per_group; ++b) {
          _mm512_store_si512(t.scale + b * kQGemmRows + 16 * v, sc[k]);
          if (int4 && w.zero) _mm512_store_si512(t.zero + b * kQGemmRows + 16 * v, z[k]);
        }
    }
}

// Rows [r, r + 32) of an INT8 w into the tile: sixteen rows' sixteen quads (two blocks) at a time.
void PackInt8Rows(const RawWeight& w, int64_t r, int64_t r1, const GemmTile& t) {
  const int64_t nb = w.cols / kActBlock;
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int v = 0; v < 2; ++v) {
    const uint8_t* row[16];
    SixteenRows(w, r + 16 * v, r1, row);
    for (int64_t b = 0; b < nb; b += 2) {
      const bool pair = b + 1 < nb;
      __m512i x[16];
      for (int m = 0; m < 16; ++m)
        x[m] = pair ? _mm512_loadu_si512(row[m] + b * kActBlock)
                    : _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[m] + b * kActBlock)));
      Transpose16(x);
      for (int c = 0; c < (pair ? 16 : 8); ++c)
        _mm512_store_si512(t.w + ((8 * b + c) * 2 + v) * 64, _mm512_xor_si512(x[c], bias));
    }
  }
  PackBlockScales(w, r, r1, t);
}

// Rows [r, r + 32) of an INT4 w into the tile: sixteen rows' four blocks (64 bytes) at a time,
// transposed as stored. The GEMM splits each dword's nibbles as it reads them, where splitting
// them here, into a byte a weight, had taken two transposes and twice the stores, and a tile
// as large as L1 (48 KB at K = 1536).
void PackInt4Rows(const RawWeight& w, int64_t r, int64_t r1, const GemmTile& t) {
  const int64_t nb = w.cols / kActBlock;
  for (int v = 0; v < 2; ++v) {
    const uint8_t* row[16];
    SixteenRows(w, r + 16 * v, r1, row);
    for (int64_t b = 0; b < nb; b += 4) {
      const int64_t n = nb - b < 4 ? nb - b : 4;  // blocks here, 16 bytes each
      const __mmask64 have = n == 4 ? ~__mmask64{0} : (__mmask64{1} << (16 * n)) - 1;
      __m512i x[16];
      for (int m = 0; m < 16; ++m) x[m] = _mm512_maskz_loadu_epi8(have, row[m] + b * 16);
      Transpose16(x);
      // Dword c: block b + c / 4's dword c % 4, at ((4 (b + c / 4) + c % 4) · 2 + v) · 64.
      for (int c = 0; c < 4 * n; ++c) _mm512_store_si512(t.w + ((4 * b + c) * 2 + v) * 64, x[c]);
    }
  }
  PackBlockScales(w, r, r1, t);
}

// Where block b's column quads 0-3 and 4-7 start in a token's activations (the same for every
// token): INT8 in column order; INT4 in the nibble order (linear_kernels.h), where the low
// nibbles' columns (quads 0-3) and the high ones' (4-7) lie apart.
template <bool kInt4>
inline void QuadOffsets(int64_t b, int64_t nb, int64_t* lo, int64_t* hi) {
  if (!kInt4 || (b | 1) >= nb) {  // column order, or an odd count's last block, alone
    *lo = b * kActBlock;
    *hi = *lo + 16;
  } else {
    *lo = (b & ~int64_t{1}) * kActBlock + (b & 1) * 16;
    *hi = *lo + 32;
  }
}

// Blocks b0, b0 + step, ... of the tile against B tokens from t0 onto the chains acc[v][j]
// (rows 16v..16v+15, token t0 + j). Per block a lane starts at the integer the weights' form
// adds (INT8: -128 Σq for w + 128; INT4: -z Σq, from each row's zero point with kZeros, else
// -8 Σq for every row), takes eight vpdpbusd (the sixteen rows' quad against the token's four
// activations broadcast), which leaves the exact block sum, and then the contract's one fma.
// next: n_next rows of a tile to fetch into cache meanwhile (null for none).
template <bool kInt4, bool kZeros, int B>
__attribute__((always_inline)) inline void GemmBlocks(const GemmTile& tile, const QuantizedActs& a, int64_t t0,
                                                      int64_t b0, int64_t step, const uint8_t* const* next,
                                                      int n_next, int64_t row_bytes, __m512 (*acc)[B]) {
  const int64_t K = a.K, nb = K / kActBlock;
  const int64_t block_bytes = kInt4 ? kActBlock / 2 : kActBlock;  // of a stored row
  const int8_t* q[B];
  const float* d[B];
  const int32_t* sum[B];
  for (int j = 0; j < B; ++j) {
    q[j] = a.q + (t0 + j) * K;
    d[j] = a.d + (t0 + j) * nb;
    sum[j] = a.sum + (t0 + j) * nb;
  }
  __m512 chain[2][B];  // in registers for the pass (not through acc's memory)
  for (int j = 0; j < B; ++j) {
    chain[0][j] = acc[0][j];
    chain[1][j] = acc[1][j];
  }
  for (int64_t b = b0; b < nb; b += step) {
    __m512i s[2][B];
    if (kZeros) {
      const __m512i z0 = _mm512_load_si512(tile.zero + b * kQGemmRows), z1 = _mm512_load_si512(tile.zero + b * kQGemmRows + 16);
      for (int j = 0; j < B; ++j) {  // z < 16 and |Σq| < 2^15: vpmaddwd's low halves
        const __m512i minus_sum = _mm512_set1_epi32(-sum[j][b]);
        s[0][j] = _mm512_madd_epi16(z0, minus_sum);
        s[1][j] = _mm512_madd_epi16(z1, minus_sum);
      }
    } else {
      constexpr int32_t kOffset = kInt4 ? 8 : 128;  // INT8's w + 128; symmetric INT4's z = 8 in every lane
      for (int j = 0; j < B; ++j) s[0][j] = s[1][j] = _mm512_set1_epi32(-kOffset * sum[j][b]);
    }
    if (next && (b * block_bytes) % 64 == 0 && b * block_bytes < row_bytes)
      for (int m = 0; m < n_next; ++m) _mm_prefetch(reinterpret_cast<const char*>(next[m] + b * block_bytes), _MM_HINT_T0);
    int64_t lo, hi;
    QuadOffsets<kInt4>(b, nb, &lo, &hi);
    // One quad of the sixteen rows of each half (w0, w1) against each token's four activations
    // from column `at`.
    const auto quad_times_tokens = [&](__m512i w0, __m512i w1, int64_t at) {
      for (int j = 0; j < B; ++j) {
        int32_t quad;
        __builtin_memcpy(&quad, q[j] + at, 4);
        const __m512i xq = _mm512_set1_epi32(quad);
        s[0][j] = _mm512_dpbusd_epi32(s[0][j], w0, xq);
        s[1][j] = _mm512_dpbusd_epi32(s[1][j], w1, xq);
      }
    };
    if (kInt4) {
      const uint8_t* wb = tile.w + b * 4 * 128;
      const __m512i low4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {  // dword c: quad c in the low nibbles, quad 4 + c in the high
        const __m512i p0 = _mm512_load_si512(wb + c * 128), p1 = _mm512_load_si512(wb + c * 128 + 64);
        quad_times_tokens(_mm512_and_si512(p0, low4), _mm512_and_si512(p1, low4), lo + 4 * c);
        quad_times_tokens(_mm512_and_si512(_mm512_srli_epi16(p0, 4), low4),
                          _mm512_and_si512(_mm512_srli_epi16(p1, 4), low4), hi + 4 * c);
      }
    } else {
      const uint8_t* wb = tile.w + b * 8 * 128;
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c)
        quad_times_tokens(_mm512_load_si512(wb + c * 128), _mm512_load_si512(wb + c * 128 + 64),
                          c < 4 ? lo + 4 * c : hi + 4 * (c - 4));
    }
    const __m512 s0 = _mm512_load_ps(tile.scale + b * kQGemmRows), s1 = _mm512_load_ps(tile.scale + b * kQGemmRows + 16);
    for (int j = 0; j < B; ++j) {
      const __m512 dv = _mm512_set1_ps(d[j][b]);
      chain[0][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[0][j]), _mm512_mul_ps(s0, dv), chain[0][j]);
      chain[1][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[1][j]), _mm512_mul_ps(s1, dv), chain[1][j]);
    }
  }
  for (int j = 0; j < B; ++j) {
    acc[0][j] = chain[0][j];
    acc[1][j] = chain[1][j];
  }
}

// The tile's 32 rows x B tokens from t0: out[v * B + j] is rows 16v..16v+15 of token t0 + j.
// INT8 has one chain; INT4 eight, block b on chain b mod 8, each run as its own pass over its
// blocks (so its chains stay in registers) and summed as the contract says.
template <bool kInt4, bool kZeros, int B>
void GemmTokens(const GemmTile& tile, const QuantizedActs& a, int64_t t0, const uint8_t* const* next,
                int n_next, int64_t row_bytes, __m512* out) {
  if (!kInt4) {
    __m512 acc[2][B];
    for (int j = 0; j < B; ++j) acc[0][j] = acc[1][j] = _mm512_setzero_ps();
    GemmBlocks<false, false, B>(tile, a, t0, 0, 1, next, n_next, row_bytes, acc);
    for (int j = 0; j < B; ++j) {
      out[j] = acc[0][j];
      out[B + j] = acc[1][j];
    }
    return;
  }
  __m512 chain[8][2][B];
  for (int k = 0; k < 8; ++k) {
    for (int j = 0; j < B; ++j) chain[k][0][j] = chain[k][1][j] = _mm512_setzero_ps();
    GemmBlocks<true, kZeros, B>(tile, a, t0, k, 8, next, n_next, row_bytes, chain[k]);
  }
  for (int v = 0; v < 2; ++v)
    for (int j = 0; j < B; ++j) {
      const auto c = [&](int k) { return chain[k][v][j]; };
      out[v * B + j] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c(0), c(4)), _mm512_add_ps(c(2), c(6))),
                                     _mm512_add_ps(_mm512_add_ps(c(1), c(5)), _mm512_add_ps(c(3), c(7))));
    }
}

constexpr int kGemmTokens = 6;  // tokens a pass (2 x 6 lanes of sums and of chains in registers)

// Rows [r0, r1) x every token, 32 rows at a time: the rows are repacked once, then meet the
// tokens six at a time (their activations from L2).
template <bool kInt4, bool kZeros>
void QGemm(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
           bool accumulate, uint8_t* scratch) {
  const GemmTile tile = TileIn(scratch, a.K);
  {  // the first tile's rows (the later ones are fetched while the one before meets tokens)
    const char* first = static_cast<const char*>(w.data) + r0 * w.row_bytes;
    PrefetchLines(first, first + (r1 - r0 < kQGemmRows ? r1 - r0 : kQGemmRows) * w.row_bytes);
  }
  for (int64_t r = r0; r < r1; r += kQGemmRows) {
    if (kInt4) {
      PackInt4Rows(w, r, r1, tile);
    } else {
      PackInt8Rows(w, r, r1, tile);
    }
    // The next tile's rows are fetched as this one meets its tokens, a share of the rows with
    // each pass of six tokens (all 32 rows in the first pass put 24-48 KB of requests in flight
    // at once), and past r1 too: LinearJobs hands a thread a matrix's pieces in order, so the
    // next tile is most often its next piece's first, which had begun every 64-row piece with a
    // wait on DRAM.
    const uint8_t* next[kQGemmRows];
    const bool fetch = r + 2 * kQGemmRows <= w.rows;
    for (int m = 0; m < kQGemmRows; ++m) next[m] = static_cast<const uint8_t*>(w.data) + (r + kQGemmRows + m) * w.row_bytes;
    // Lanes of the last vectors past r1 are not stored.
    const int64_t left = r1 - r;
    const __mmask16 keep[2] = {static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1),
                               static_cast<__mmask16>(left >= 32 ? 0xffff : left <= 16 ? 0 : (1u << (left - 16)) - 1)};
    const int groups = static_cast<int>((a.T + kGemmTokens - 1) / kGemmTokens);
    for (int64_t t = 0; t < a.T;) {
      const int B = a.T - t >= kGemmTokens ? kGemmTokens : static_cast<int>(a.T - t);
      __m512 out[2 * kGemmTokens];
      int m0, m1;
      FetchShare(kQGemmRows, static_cast<int>(t / kGemmTokens), groups, &m0, &m1);
      const uint8_t* const* ahead = fetch && m1 > m0 ? next + m0 : nullptr;
      switch (B) {
        case 6: GemmTokens<kInt4, kZeros, 6>(tile, a, t, ahead, m1 - m0, w.row_bytes, out); break;
        case 5: GemmTokens<kInt4, kZeros, 5>(tile, a, t, ahead, m1 - m0, w.row_bytes, out); break;
        case 4: GemmTokens<kInt4, kZeros, 4>(tile, a, t, ahead, m1 - m0, w.row_bytes, out); break;
        case 3: GemmTokens<kInt4, kZeros, 3>(tile, a, t, ahead, m1 - m0, w.row_bytes, out); break;
        case 2: GemmTokens<kInt4, kZeros, 2>(tile, a, t, ahead, m1 - m0, w.row_bytes, out); break;
        default: GemmTokens<kInt4, kZeros, 1>(tile, a, t, ahead, m1 - m0, w.row_bytes, out); break;
      }
      for (int j = 0; j < B; ++j)
        for (int v = 0; v < 2; ++v) {
          float* o = y + (t + j) * ldy + r + 16 * v;
          __m512 val = out[v * B + j];
          if (accumulate) val = _mm512_add_ps(_mm512_maskz_loadu_ps(keep[v], o), val);
          _mm512_mask_storeu_ps(o, keep[v], val);
        }
      t += B;
    }
  }
}

// ---- INT8, one token: sixteen rows a vector ----------------------------------------------
// Each row's 64 bytes (two blocks) meet the token's 64 activations in one 512-bit vpdpbusd,
// where linear_q8_int8.inc's tiles take 32 bytes of eight rows per 256-bit one and spend more on
// their sum trees than on the products. Sixteen rows' vectors reduce to two vectors of exact
// block sums, a lane per row (SixteenRowSums), and each block then takes the contract's one
// fma in block order, as the tiles' lanes do: the same bits.

// v[m]: row m's partial sums of blocks b (lanes 0-7) and b + 1 (lanes 8-15). out[h]: block
// b + h's sums, lane m for row m. Unpacks and adds pair the rows (1, 2), then 128-bit lane
// shuffles bring each block's two halves and the four row quads together (3, 4).
inline void SixteenRowSums(const __m512i* v, __m512i* out) {
  __m512i p[8], s[4];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: rows (2i, 2i + 1, 2i, 2i + 1)
    p[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  for (int j = 0; j < 4; ++j)  // 128-bit lane L: rows 4j..4j+3, the sum of L's four products of each
    s[j] = _mm512_add_epi32(_mm512_unpacklo_epi64(p[2 * j], p[2 * j + 1]), _mm512_unpackhi_epi64(p[2 * j], p[2 * j + 1]));
  // Lanes 0 + 1 are block b, 2 + 3 block b + 1: [rows 4j.. block b, block b + 1, rows 4j + 4.. b, b + 1].
  __m512i q[2];
  for (int j = 0; j < 2; ++j)
    q[j] = _mm512_add_epi32(_mm512_shuffle_i32x4(s[2 * j], s[2 * j + 1], 0x88), _mm512_shuffle_i32x4(s[2 * j], s[2 * j + 1], 0xdd));
  out[0] = _mm512_shuffle_i32x4(q[0], q[1], 0x88);
  out[1] = _mm512_shuffle_i32x4(q[0], q[1], 0xdd);
}

// How far ahead each row is fetched as a step reads it (FetchRowsAhead). Fetched front to back,
// as the eight-row tiles fetch theirs, the next tile lay sixteen whole rows ahead, out of L1 for
// long rows: 24 matrices of 4 MB from DRAM, 2 threads, K = 7168, the eight-row tiles 69 GB/s,
// sixteen rows fetched so 58, so 83 (1 KB ahead: even with 512 B).
constexpr int64_t kInt8Ahead = 512;

// Rows [r0, r1) against the one token, sixteen at a time (past r1: row r1 - 1 again, not
// stored), two blocks a step.
void Int8Decode(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, bool accumulate) {
  const int64_t nb = a.K / kActBlock, per_group = w.block_in / kActBlock, groups = (nb + per_group - 1) / per_group;
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t r = r0; r < r1; r += 16) {
    const uint8_t* row[16];
    SixteenRows(w, r, r1, row);
    const int64_t next = r + 16 <= r1 ? 16 * w.row_bytes : 0;  // the next sixteen rows
    alignas(64) float table[16][16];  // groups g0..g0+15, a lane per row
    int64_t g0 = -16;
    __m512 acc = _mm512_setzero_ps(), scale = acc;
    // The next tile's scale rows, fetched as this tile starts: otherwise they came from DRAM at
    // its first block, after the rows' own fetches, and the load waited for them (a scale per
    // row: 8% of an INT8-h decode's time).
    if (r + 16 < w.rows) {
      const int64_t last = r + 31 < w.rows ? r + 31 : w.rows - 1;
      PrefetchLines(w.scale + (r + 16) / w.block_out * w.scale_cols, w.scale + (last / w.block_out + 1) * w.scale_cols);
    }
    for (int64_t b = 0; b < nb; b += 2) {
      FetchRowsAhead(row, 16, b * kActBlock, kInt8Ahead, w.row_bytes, next);
      const bool pair = b + 1 < nb;
      const __m512i xq = pair ? _mm512_loadu_si512(a.q + b * kActBlock)
                              : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + b * kActBlock)));
      __m512i v[16];  // a lone last block: lanes 8-15 meet zero activations
      for (int m = 0; m < 16; ++m) {
        const __m512i wv = pair ? _mm512_loadu_si512(row[m] + b * kActBlock)
                                : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[m] + b * kActBlock)));
        v[m] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_xor_si512(wv, bias), xq);
      }
      __m512i sums[2];
      SixteenRowSums(v, sums);
      for (int h = 0; h < (pair ? 2 : 1); ++h) {
        const int64_t blk = b + h;
        if (blk % per_group == 0) {  // a new weight group: its scale per lane
          const int64_t g = blk / per_group;
          if (g >= g0 + 16) {  // the next sixteen groups of the sixteen rows, transposed
            g0 = g;
            const int64_t n = groups - g0 < 16 ? groups - g0 : 16;
            __m512i sc[16];
            SixteenRowsGroups(w, r, r1, g0, n, sc, nullptr);
            for (int k = 0; k < n; ++k) _mm512_store_si512(table[k], sc[k]);
          }
          scale = _mm512_load_ps(table[g - g0]);
        }
        // Σ (w + 128) q = Σ w q + 128 Σq
        const __m512i exact = _mm512_sub_epi32(sums[h], _mm512_set1_epi32(128 * a.sum[blk]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(scale, _mm512_set1_ps(a.d[blk])), acc);
      }
    }
    const int64_t left = r1 - r;
    const __mmask16 keep = static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1);
    if (accumulate) acc = _mm512_add_ps(_mm512_maskz_loadu_ps(keep, y + r), acc);
    _mm512_mask_storeu_ps(y + r, keep, acc);
  }
}

// Rows [r0, r1) against a's two tokens (or more, below QGemmMinTokens): each token through
// Int8Decode sixteen rows (one of its tiles) at a time, so that the next token finds them in L1
// (16 KB at K = 1024). Each token gets the one-token bits, the twin's. Int8Rows' tiles, which
// load each weight once for both tokens, spend more on their lanes' sums than the second pass
// over L1 costs: 2 tokens, the two alternated in one process, 1536 x 512 from L2 27.6-32.6 ->
// 17.6-22.9 us (2 threads), 16384 x 1536 638-798 -> 464-561 us.
void Int8DecodeTokens(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                      bool accumulate) {
  const int64_t nb = a.K / kActBlock;
  for (int64_t b0 = r0; b0 < r1; b0 += 16) {
    const int64_t b1 = r1 - b0 < 16 ? r1 : b0 + 16;
    for (int64_t t = 0; t < a.T; ++t) {
      const QuantizedActs token{a.q + t * a.K, a.d + t * nb, a.sum + t * nb, 1, a.K, nullptr};
      Int8Decode(token, w, b0, b1, y + t * ldy, accumulate);
    }
  }
}

// ---- INT4, one token: rows in pairs, sixteen blocks of a row per step -----------------------

// A row's last step when its blocks are not a multiple of sixteen (bench-v3-mini's q_b and
// o_proj have K = 384 and 768: 12 and 8 blocks), the same for every row of a call: its masks, and
// the token's d and Σq with zeros past the row's blocks, worked out once per call (per row, the
// masks' arithmetic had been most of such a step's instructions).
struct Int4Tail {
  alignas(64) float d[16];
  alignas(64) int32_t sum[16];
  __mmask64 weights[4];   // each of the step's four vectors: the bytes of its blocks
  __mmask16 groups = 0;   // the step's groups (StepGroups, groups of one, two or four blocks)
  __mmask16 lanes = 0;    // its blocks
  bool lone = false;      // an odd count's last block, stored alone
};

// One row against the token: where its weights, groups and the activations are.
struct Int4RowArgs {
  const uint8_t* row;
  const uint16_t* scale;
  const uint8_t* zero;  // null: 8
  const int8_t* q;      // the token's activations (pair layout), its d and Σq per block
  const Int4Tail* tail;
  const float* d;
  const int32_t* sum;
  int64_t per_group, nb;
};
// Row r of w against the token a (its tail t).
inline Int4RowArgs RowArgs(const RawWeight& w, int64_t r, const QuantizedActs& a, const Int4Tail& t) {
  return {static_cast<const uint8_t*>(w.data) + r * w.row_bytes,
          w.scale16 + r * w.scale_cols,
          w.zero ? w.zero + r * w.scale_cols : nullptr,
          a.q,
          &t,
          a.d,
          a.sum,
          w.block_in / kActBlock,
          a.K / kActBlock};
}
// The step from block b0's activations (each four blocks' evens and odds) from `fours`.
inline void StepActs(const int8_t* fours, int64_t b0, __m512i* acts) {
  for (int v = 0; v < 8; ++v) acts[v] = _mm512_load_si512(fours + 32 * (b0 + 4 * (v / 2)) + 64 * (v % 2));
}

// Scale and zero point of blocks [b0, b0 + n) (b0 a multiple of 16; lanes past n: 0), for
// groups of one, two or four blocks or any other size (kPerGroup 0). A row's last step (n < 16:
// bench-v3-mini's q_b and o_proj have K = 384 and 768) loads its groups masked; block by block,
// q_b had run at ~9 GB/s.
template <int kPerGroup>
__attribute__((always_inline)) inline void StepGroups(const Int4RowArgs& a, int64_t b0, int64_t n, __m512* scale,
                                                      __m512i* zero) {
  const uint16_t* s16 = a.scale;
  const uint8_t* z8 = a.zero;
  if (kPerGroup == 1 && n == 16) {
    *scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s16 + b0)));
    *zero = z8 ? _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z8 + b0))) : _mm512_set1_epi32(8);
  } else if ((kPerGroup == 2 || kPerGroup == 4) && n == 16) {
    const __m512i pick = kPerGroup == 2 ? _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)
                                        : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const int64_t g0 = b0 / kPerGroup;
    const __m128i sv = kPerGroup == 2 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(s16 + g0))
                                      : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s16 + g0));
    *scale = _mm512_permutexvar_ps(pick, _mm512_castps256_ps512(_mm256_cvtph_ps(sv)));
    if (z8) {
      const __m128i zv = kPerGroup == 2 ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(z8 + g0))
                                        : _mm_loadu_si32(z8 + g0);
      *zero = _mm512_permutexvar_epi32(pick, _mm512_cvtepu8_epi32(zv));
    } else {
      *zero = _mm512_set1_epi32(8);
    }
  } else if (kPerGroup == 1 || kPerGroup == 2 || kPerGroup == 4) {  // n < 16: the row's tail
    const int64_t g0 = b0 / kPerGroup;
    const __mmask16 have = a.tail->groups, lanes = a.tail->lanes;
    __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(have, s16 + g0));
    __m512i z = z8 ? _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(have, z8 + g0)) : _mm512_set1_epi32(8);
    if (kPerGroup > 1) {  // lane i takes group i / kPerGroup
      const __m512i pick = kPerGroup == 2 ? _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)
                                          : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
      s = _mm512_permutexvar_ps(pick, s);
      z = _mm512_permutexvar_epi32(pick, z);
    }
    *scale = _mm512_maskz_mov_ps(lanes, s);
    *zero = _mm512_maskz_mov_epi32(lanes, z);
  } else {
    alignas(64) float s[16] = {};
    alignas(64) int32_t z[16] = {};
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = (b0 + i) / a.per_group;
      s[i] = _cvtsh_ss(s16[g]);
      z[i] = z8 ? z8[g] : 8;
    }
    *scale = _mm512_load_ps(s);
    *zero = _mm512_load_si512(z);
  }
}

// Vector v of the row's step from block b0 (b0 a multiple of 16; !kFull: the row's last step,
// fewer blocks), unpacked: lo and hi, the low and high nibbles of blocks b0 + 4v .. b0 + 4v + 3
// (a missing block's are zero). ahead: a row to fetch into cache as this one is read, a line per
// 64 bytes read (this row itself when there is none: its line is being read anyway, and a whole
// step then needs no test per vector). Spread so, not in a burst at the start of each step: with
// bursts, sixteen 4096 x 1536 INT4 g32 matrices streamed from DRAM on one thread at 9 GB/s,
// spread at 32.
template <bool kFull>
__attribute__((always_inline)) inline void Int4Vector(const Int4RowArgs& a, int64_t b0, int v, const uint8_t* ahead,
                                                      __m512i* lo, __m512i* hi) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const int64_t b = b0 + 4 * v;  // blocks b .. b+3: 64 bytes of the row, for their evens and odds
  if (kFull || b < a.nb) _mm_prefetch(reinterpret_cast<const char*>(ahead + b * 16), _MM_HINT_T0);
  __m512i wv;
  if (kFull) {
    wv = _mm512_loadu_si512(a.row + b * 16);
  } else if (a.tail->weights[v] == ~__mmask64{0}) {
    // A last step's whole vectors load plainly (loaded masked, q_b's three of 1152 x 384 from
    // L2, one thread: 22.6-22.9 -> 25.1-25.3 GB/s).
    wv = _mm512_loadu_si512(a.row + b * 16);
  } else {  // a missing block's weights are zero (its activations in `fours` are too)
    wv = _mm512_maskz_loadu_epi8(a.tail->weights[v], a.row + b * 16);
  }
  *lo = _mm512_and_si512(wv, low4);
  *hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), low4);
}

// One token's partial sums of blocks [b0, b0 + n) of the row (n = 16 when kFull) onto its
// chains: part[v] (from Int4Vector's lo and hi) holds block b0+4v+i's in 128-bit lane i (four
// vpdpbusd sums each), scale and zero come from StepGroups. An odd block count's last block is
// stored alone (evens, then odds): it is summed on its own here, and the vectors took the
// blocks before it.
template <bool kFull>
__attribute__((always_inline)) inline void Int4Finish(const Int4RowArgs& a, int64_t b0, int64_t n, const __m512i* part,
                                                      __m512 scale, __m512i zero, __m256* acc) {
  const bool lone = !kFull && a.tail->lone;
  // Two rounds of unpack-and-add leave lane i as the sums of blocks (i, 4+i, 8+i, 12+i); one permute puts
  // them in block order.
  const __m512i in_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(part[0], part[1]), _mm512_unpackhi_epi32(part[0], part[1]));
  const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(part[2], part[3]), _mm512_unpackhi_epi32(part[2], part[3]));
  __m512i dot = _mm512_permutexvar_epi32(in_order, _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23),
                                                                     _mm512_unpackhi_epi64(t01, t23)));
  if (lone) {  // the last block, stored alone: its evens then its odds
    const int64_t b = a.nb - 1;
    const uint8_t* wb = a.row + b * 16;
    const int8_t* xb = a.q + b * kActBlock;
    int32_t s = 0;
    for (int p = 0; p < 16; ++p) s += (wb[p] & 0xf) * xb[p] + (wb[p] >> 4) * xb[16 + p];
    dot = _mm512_mask_set1_epi32(dot, static_cast<__mmask16>(1u << (n - 1)), s);
  }
  __m512 dv;
  __m512i sv;
  if (kFull) {
    dv = _mm512_loadu_ps(a.d + b0);
    sv = _mm512_loadu_si512(a.sum + b0);
  } else {  // lanes past the row's last block: d = 0, Σq = 0 (their sums are 0 too)
    dv = _mm512_load_ps(a.tail->d);
    sv = _mm512_load_si512(a.tail->sum);
  }
  // zero · Σq in one vpmaddwd: both fit 16 bits (zero <= 15, |Σq| <= 32 · 127), zero's high
  // half is 0, so each lane's pair of products is zero · Σq + 0 exactly.
  const __m512 exact = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, _mm512_madd_epi16(zero, sv)));
  const __m512 sd = _mm512_mul_ps(scale, dv);
  *acc = _mm256_fmadd_ps(Low8(exact), Low8(sd), *acc);
  if (kFull || n > 8) *acc = _mm256_fmadd_ps(High8(exact), High8(sd), *acc);
}

// Blocks [b0, b0 + n) of the row (n = 16 when kFull; b0 a multiple of 16) against one token,
// each vector unpacked as it meets the token (holding all eight unpacked vectors, as the
// several-token steps do, cost a one-token 1536 x 512 ~12% from cache).
template <int kPerGroup, bool kFull>
__attribute__((always_inline)) inline void Int4Step(const Int4RowArgs& a, int64_t b0, int64_t n, const uint8_t* ahead,
                                                    __m256* acc, const __m512i* acts) {
  __m512i part[4];
  for (int v = 0; v < 4; ++v) {
    // A last step's vectors wholly past the row hold no weights: their sums are 0 (loaded
    // masked and multiplied, they had cost o_proj's last step of 8 blocks half its work, and q_b's
    // one of 12 a quarter: 1152 x 384 from L2, one thread, 21.0-21.4 -> 22.5-23.1 GB/s).
    if (!kFull && a.tail->weights[v] == 0) {
      part[v] = _mm512_setzero_si512();
      continue;
    }
    __m512i lo, hi;
    Int4Vector<kFull>(a, b0, v, ahead, &lo, &hi);
    part[v] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, acts[2 * v]), hi, acts[2 * v + 1]);
  }
  __m512 scale;
  __m512i zero;
  StepGroups<kPerGroup>(a, b0, n, &scale, &zero);
  Int4Finish<kFull>(a, b0, n, part, scale, zero, acc);
}

// R rows from r against the token: out[i] = ((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7))
// of row r + i. Two rows at once give the core two independent fma chains to interleave
// (a row's steps wait on each other's fmas): 512 x 1536 INT4 g32 from L2, 14.0 -> 10.9 us.
// ahead: the first of R rows to fetch into cache as these are read (null for none).
template <int R, int kPerGroup>
__attribute__((always_inline)) inline void Int4Rows1(const RawWeight& w, int64_t r, const QuantizedActs& qa,
                                                     const int8_t* fours, const Int4Tail& tail, const uint8_t* ahead,
                                                     float* out) {
  const int64_t nb = qa.K / kActBlock;
  Int4RowArgs a[R];
  __m256 acc[R];
  const uint8_t* next[R];
  for (int i = 0; i < R; ++i) {
    a[i] = RowArgs(w, r + i, qa, tail);
    acc[i] = _mm256_setzero_ps();
    next[i] = ahead ? ahead + i * w.row_bytes : a[i].row;
    // The steps fetch a line per 64 bytes read, which covers every line but perhaps the
    // last: that one first.
    if (ahead) _mm_prefetch(reinterpret_cast<const char*>(next[i] + w.row_bytes - 1), _MM_HINT_T0);
  }
  // A step's activations (each four blocks' evens and odds), loaded once for the R rows: loaded
  // in each row's step they were loaded again per row (int8 data may alias the accumulators'
  // stores, so the compiler kept the loads): one thread from cache, 512 x 1536 4.75-4.83 ->
  // 4.38-4.44 us, 1024 x 512 6.32 -> 5.65, 512 x 768 7.85 -> 7.33, 1024 x 384 10.2 -> 9.25.
  int64_t b0 = 0;
  for (; b0 + 16 <= nb; b0 += 16) {
    __m512i acts[8];
    StepActs(fours, b0, acts);
    for (int i = 0; i < R; ++i) Int4Step<kPerGroup, true>(a[i], b0, 16, next[i], &acc[i], acts);
  }
  if (b0 < nb) {
    __m512i acts[8];
    StepActs(fours, b0, acts);
    for (int i = 0; i < R; ++i) Int4Step<kPerGroup, false>(a[i], b0, nb - b0, next[i], &acc[i], acts);
  }
  for (int i = 0; i < R; ++i) out[i] = HorizontalSum(acc[i]);
}

// The tail of rows of nb blocks against the token a (see Int4Tail); nothing when nb is a
// multiple of sixteen.
Int4Tail RowTail(const QuantizedActs& a, int64_t per_group) {
  Int4Tail t;
  const int64_t nb = a.K / kActBlock, b0 = nb / 16 * 16, n = nb - b0;
  t.lone = nb & 1;
  const int64_t vec_blocks = t.lone ? n - 1 : n;  // the blocks the vectors take (even)
  for (int v = 0; v < 4; ++v) {
    const int64_t have = vec_blocks - 4 * v;
    t.weights[v] = have >= 4 ? ~__mmask64{0} : have <= 0 ? 0 : (__mmask64{1} << (16 * have)) - 1;
  }
  const int64_t groups = per_group > 0 ? (n + per_group - 1) / per_group : 0;
  t.groups = static_cast<__mmask16>((1u << groups) - 1);
  t.lanes = static_cast<__mmask16>((1u << n) - 1);
  for (int64_t i = 0; i < 16; ++i) {
    t.d[i] = i < n ? a.d[b0 + i] : 0.0f;
    t.sum[i] = i < n ? a.sum[b0 + i] : 0;
  }
  return t;
}

// The rows a decode step fetches as it reads rows [r, r + count): count rows `rows` on, their
// scales and zero points now (a line per call) and their weights by the steps (the pointer
// returned; null past the matrix). 8 rows, and at least 6 KB ahead for short rows: a MoE decode
// step's down projections (K = 512, 304-byte rows) had fetched 2.4 KB ahead: its seven
// matrices from DRAM on 2 threads, alternated call by call, 90.7-97.2 -> 82.8-86.4 us.
struct RowsAhead {
  static constexpr int64_t kRows = 8, kBytes = 6144;
  explicit RowsAhead(const RawWeight& w) : w(w), rows(RowsFor(w.row_bytes)) {}
  static int64_t RowsFor(int64_t row_bytes) {
    const int64_t for_bytes = (kBytes + row_bytes - 1) / row_bytes;
    return for_bytes > kRows ? for_bytes : kRows;
  }
  const uint8_t* operator()(int64_t r, int64_t count) const {
    if (r + rows + count > w.rows) return nullptr;
    const int64_t n = r + rows, sc = w.scale_cols;
    PrefetchLines(w.scale16 + n * sc, w.scale16 + (n + count) * sc);
    if (w.zero) PrefetchLines(w.zero + n * sc, w.zero + (n + count) * sc);
    return static_cast<const uint8_t*>(w.data) + n * w.row_bytes;
  }
  const RawWeight& w;
  const int64_t rows;
};

// Rows [r0, r1) of at most one step (bench-v3-mini's q_b, K = 384, and its MoE down
// projections, K = 512) against the token a (its tail): one at a time against the step's
// activations, loaded once for all of them. Each row is its own chain of one step, and the
// core overlaps consecutive rows. In pairs (or fours, short rows), a row's share of the loads,
// setup and sums of its group had been a third of its time. One thread from L2, alternated
// builds: 1536 x 512 INT4 g32 32.9-36.0 -> 45.0-46.7 GB/s, 1152 x 384 18.1-18.9 -> 21.0-21.4
// (512 x 1536, three steps a row, 45.5-47.8 both).
template <int kPerGroup>
void Int4ShortRows(const QuantizedActs& a, const Int4Tail& tail, const RawWeight& w, const RowsAhead& ahead,
                   int64_t r0, int64_t r1, float* y, bool accumulate) {
  const int64_t nb = a.K / kActBlock;
  const auto rows = [&]<bool kFull>() __attribute__((always_inline)) {
    __m512i acts[8];
    StepActs(a.fours, 0, acts);
    for (int64_t r = r0; r < r1; ++r) {
      const Int4RowArgs row = RowArgs(w, r, a, tail);
      const uint8_t* next = ahead(r, 1);
      if (next) _mm_prefetch(reinterpret_cast<const char*>(next + w.row_bytes - 1), _MM_HINT_T0);
      __m256 acc = _mm256_setzero_ps();
      Int4Step<kPerGroup, kFull>(row, 0, nb, next ? next : row.row, &acc, acts);
      const float v = HorizontalSum(acc);
      y[r] = accumulate ? y[r] + v : v;
    }
  };
  if (nb == 16) {
    rows.template operator()<true>();
  } else {
    rows.template operator()<false>();
  }
}

template <int kPerGroup>
void Int4Decode(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, bool accumulate) {
  const int8_t* fours = a.fours;  // regrouped once, when the token was prepared
  const Int4Tail tail = RowTail(a, w.block_in / kActBlock);
  auto store = [&](int64_t r, float v) { y[r] = accumulate ? y[r] + v : v; };
  const RowsAhead ahead(w);
  int64_t r = r0;
  const int64_t nb = a.K / kActBlock;
  if (nb <= 16) {
    Int4ShortRows<kPerGroup>(a, tail, w, ahead, r0, r1, y, accumulate);
    return;
  }
  // Rows of whole steps go two at a time (four spilled there: 512 x 1536 from cache 8.2 -> 12.1
  // us).
  for (; r + 2 <= r1; r += 2) {
    float out[2];
    Int4Rows1<2, kPerGroup>(w, r, a, fours, tail, ahead(r, 2), out);
    store(r, out[0]);
    store(r + 1, out[1]);
  }
  if (r < r1) {
    float out;
    Int4Rows1<1, kPerGroup>(w, r, a, fours, tail, ahead(r, 1), &out);
    store(r, out);
  }
}

// ---- INT4, a few tokens (a batch decoding together): each row step unpacked once --------------

// One row r against kT tokens (tok[t]: token t alone, its regrouped activations in fours; tails
// its Int4Tail): each step's weights are unpacked and its scales converted once, then every
// token's vpdpbusd sums and float steps are exactly a one-token step's, so each token gets the
// bits it would alone (Int4Decode's, the twin's). ahead: as in Int4Rows1 (null for none).
template <int kT, int kPerGroup>
__attribute__((always_inline)) inline void Int4RowTokens(const RawWeight& w, int64_t r, const QuantizedActs* tok,
                                                         const Int4Tail* tails, const uint8_t* ahead, float* out) {
  const int64_t nb = tok[0].K / kActBlock;
  Int4RowArgs a[kT];
  __m256 acc[kT];
  for (int t = 0; t < kT; ++t) {
    a[t] = RowArgs(w, r, tok[t], tails[t]);
    acc[t] = _mm256_setzero_ps();
  }
  if (ahead) _mm_prefetch(reinterpret_cast<const char*>(ahead + w.row_bytes - 1), _MM_HINT_T0);
  const auto step = [&]<bool kFull>(int64_t b0, int64_t n) __attribute__((always_inline)) {
    __m512i lo[4], hi[4];
    for (int v = 0; v < 4; ++v) Int4Vector<kFull>(a[0], b0, v, ahead ? ahead : a[0].row, &lo[v], &hi[v]);
    __m512 scale;
    __m512i zero;
    StepGroups<kPerGroup>(a[0], b0, n, &scale, &zero);
    for (int t = 0; t < kT; ++t) {
      const int8_t* fours = tok[t].fours + 32 * b0;
      __m512i part[4];
      for (int v = 0; v < 4; ++v) {
        const __m512i evens = _mm512_load_si512(fours + 128 * v), odds = _mm512_load_si512(fours + 128 * v + 64);
        part[v] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[v], evens), hi[v], odds);
      }
      Int4Finish<kFull>(a[t], b0, n, part, scale, zero, &acc[t]);
    }
  };
  int64_t b0 = 0;
  for (; b0 + 16 <= nb; b0 += 16) step.template operator()<true>(b0, 16);
  if (b0 < nb) step.template operator()<false>(b0, nb - b0);
  for (int t = 0; t < kT; ++t) out[t] = HorizontalSum(acc[t]);
}

// Rows of at most one step go to each token in turn through Int4ShortRows, this many rows at
// a time (9 KB at K = 512: the next tokens find them in L1). Unpacking a row once for four
// tokens (Int4RowTokens) cost short rows more than it saved: its per-row setup and sums are
// most of a one-step row's work. 1536 x 512 INT4 g32 from L2, the two alternated in one
// process, 2 threads: 2 tokens 17.5-17.8 -> 12.4-12.5 us, 3 tokens 20.6-22.0 -> 17.7-18.5, 4
// 26.0-26.7 -> 22.9-23.2, 8 48.2-49.3 -> 44.1-44.4. Rows of several steps keep Int4RowTokens:
// taken a token at a time (Int4Decode on 16 or 32 rows), 16384 x 1536 cost 12-30% more from 3
// to 8 tokens, and the same at 2.
constexpr int64_t kShortRowBlock = 32;

// Rows [r0, r1) against a's tokens (2 .. kInt4DecodeTokensMax, each with its regrouped activations),
// up to four tokens per pass over a row (its bytes stay in L1 for the next four); rows of one
// step a token at a time, kShortRowBlock rows at a time.
template <int kPerGroup>
void Int4DecodeTokens(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                      bool accumulate) {
  const int64_t T = a.T, nb = a.K / kActBlock;
  QuantizedActs tok[kInt4DecodeTokensMax];
  Int4Tail tails[kInt4DecodeTokensMax];
  for (int64_t t = 0; t < T; ++t) {
    tok[t] = {a.q + t * a.K, a.d + t * nb, a.sum + t * nb, 1, a.K, a.fours + t * FourBlockBytes(a.K)};
    tails[t] = RowTail(tok[t], w.block_in / kActBlock);
  }
  const RowsAhead rows_ahead(w);
  if (nb <= 16) {
    for (int64_t b0 = r0; b0 < r1; b0 += kShortRowBlock) {
      const int64_t b1 = r1 - b0 < kShortRowBlock ? r1 : b0 + kShortRowBlock;
      for (int64_t t = 0; t < T; ++t)
        Int4ShortRows<kPerGroup>(tok[t], tails[t], w, rows_ahead, b0, b1, y + t * ldy, accumulate);
    }
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* ahead = rows_ahead(r, 1);
    for (int64_t t0 = 0; t0 < T; t0 += 4) {
      float out[4];
      const int64_t n = T - t0 < 4 ? T - t0 : 4;
      const uint8_t* fetch = t0 == 0 ? ahead : nullptr;
      switch (n) {
        case 4: Int4RowTokens<4, kPerGroup>(w, r, tok + t0, tails + t0, fetch, out); break;
        case 3: Int4RowTokens<3, kPerGroup>(w, r, tok + t0, tails + t0, fetch, out); break;
        case 2: Int4RowTokens<2, kPerGroup>(w, r, tok + t0, tails + t0, fetch, out); break;
        default: Int4RowTokens<1, kPerGroup>(w, r, tok + t0, tails + t0, fetch, out); break;
      }
      for (int64_t i = 0; i < n; ++i) {
        float* o = y + (t0 + i) * ldy + r;
        *o = accumulate ? *o + out[i] : out[i];
      }
    }
  }
}

}  // namespace

void FourBlockActsAvx512(const int8_t* q, int64_t K, int8_t* out) {
  const int64_t nb = K / kActBlock, vec_blocks = nb & ~int64_t{1};
  for (int64_t b = 0; b < vec_blocks; b += 4) {
    const __m512i x0 = _mm512_loadu_si512(q + b * kActBlock);
    const __m512i x1 = vec_blocks - b >= 4 ? _mm512_loadu_si512(q + b * kActBlock + 64) : _mm512_setzero_si512();
    _mm512_store_si512(out + 32 * b, _mm512_shuffle_i64x2(x0, x1, 0x44));
    _mm512_store_si512(out + 32 * b + 64, _mm512_shuffle_i64x2(x0, x1, 0xee));
  }
  for (int64_t i = (vec_blocks + 3) / 4 * 128; i < FourBlockBytes(K); i += 64)
    _mm512_store_si512(out + i, _mm512_setzero_si512());
}

void QLinearAvx512(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                   bool accumulate, uint8_t* scratch) {
  if (r0 >= r1 || a.T <= 0) return;
  if (scratch != nullptr && a.T >= QGemmMinTokens(w) && (w.kind == WeightKind::kI8 || w.kind == WeightKind::kInt4)) {
    if (w.kind == WeightKind::kI8) {
      QGemm<false, false>(a, w, r0, r1, y, ldy, accumulate, scratch);
    } else if (w.zero != nullptr) {
      QGemm<true, true>(a, w, r0, r1, y, ldy, accumulate, scratch);
    } else {
      QGemm<true, false>(a, w, r0, r1, y, ldy, accumulate, scratch);
    }
  } else if (w.kind == WeightKind::kI8 && a.T == 1) {
    Int8Decode(a, w, r0, r1, y, accumulate);
  } else if (w.kind == WeightKind::kI8 && a.T < QGemmMinTokens(w)) {
    Int8DecodeTokens(a, w, r0, r1, y, ldy, accumulate);
  } else if (w.kind == WeightKind::kI8) {
    Int8Rows(a, w, r0, r1, y, ldy, accumulate);  // no scratch for the GEMM
  } else if (w.kind == WeightKind::kInt4 && a.T <= kInt4DecodeTokensMax && a.fours != nullptr) {
    // One token through Int4Decode, 2 .. kInt4DecodeTokensMax through Int4DecodeTokens.
    const auto decode = [&]<int kPerGroup>() {
      if (a.T == 1) {
        Int4Decode<kPerGroup>(a, w, r0, r1, y, accumulate);
      } else {
        Int4DecodeTokens<kPerGroup>(a, w, r0, r1, y, ldy, accumulate);
      }
    };
    switch (w.block_in / kActBlock) {
      case 1: decode.template operator()<1>(); return;
      case 2: decode.template operator()<2>(); return;
      case 4: decode.template operator()<4>(); return;
      default: decode.template operator()<0>(); return;
    }
  } else if (w.kind == WeightKind::kInt4) {
    // Tokens without their regrouped activations (QuantizedActs::fours: a caller that quantized
    // them itself), or more than the decode steps take without the GEMM's scratch: AVX2's pairs
    // of tokens, the same bits.
    QLinearAvx2(a, w, r0, r1, y, ldy, accumulate);
  }
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects this.

namespace dsv3::cpu {
void FourBlockActsAvx512(const int8_t*, int64_t, int8_t*) {}
void QLinearAvx512(const QuantizedActs&, const RawWeight&, int64_t, int64_t, float*, int64_t, bool, uint8_t*) {}
}  // namespace dsv3::cpu

#endif
