// Int8-activation Linear for INT8 and INT4 weights with AVX2 (compiled with -mavx2 -mfma
// -mf16c for this file only; linear.cc calls it after checking the CPU). Integer products do
// the work that dequantizing to float32 did: 32 weights meet 32 activations in one
// vpmaddubsw (unsigned x signed bytes -> pairs summed to int16) and one vpmaddwd (pairs ->
// int32). INT8 weights are signed, so the magnitudes go in the unsigned operand and the signs
// move onto the activations (vpsignb); INT4 nibbles are unsigned already, and their zero
// point comes off afterwards as z · Σq. Eight (row, token) block sums are reduced together
// and scaled in one float vector, giving the twin's (linear_q8.cc) fma chain lane by lane.
//
// No standard-library templates or shared inline functions are used here (see linear_avx2.cc).
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

// INT8: the magnitudes go in the unsigned operand (|-128| = 128 fits it, and 2 · 128 · 127
// fits int16) and the activations take the weights' signs. (Plain vectors, not a struct of
// magnitude and sign: GCC keeps such a struct in memory and reloads it for every use.)
struct Int8Q {
  using Prepared = __m256i;
  static constexpr bool kZeroPoint = false;
  static constexpr bool kInt16Tree = false;  // a pair sum reaches 32512: two would overflow int16
  static Prepared Prepare(const uint8_t* row, int64_t k) {
    __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
    // Keeps w in a register: left alone, GCC stores each loaded row to the stack and reads it
    // back as the memory operand of vpabsb and vpsignb (a quarter of the loop's time).
    __asm__("" : "+x"(w));
    return w;
  }
  static __m256i Pairs(__m256i w, __m256i q) { return _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(q, w)); }
  // Scales of groups [g0, g0 + n) for the eight lanes (lane_row: each lane's scale row,
  // r / block_out): stab[g - g0][lane]. INT8 has few groups per row (one per channel).
  static void PrefetchGroups(const RawWeight&, int64_t, int64_t) {}  // a scale per row: in cache already
  static void GroupLanes(const RawWeight& w, const int64_t* lane_row, int64_t g0, int n, float (*stab)[8],
                         int32_t (*)[8]) {
    for (int g = 0; g < n; ++g)
      for (int m = 0; m < 8; ++m) stab[g][m] = w.scale[lane_row[m] * w.scale_cols + g0 + g];
  }
};

// out[j] lane m = in[m] lane j.
inline void Transpose8(const __m256* in, __m256* out) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(in[i], in[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(in[i], in[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    out[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
    out[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
  }
}

// Fetches every cache line of [begin, end) into L1. The walk starts at begin's line, not at
// begin: tensors sit at any offset in the file, and stepping 64 bytes from an unaligned begin
// skips the range's last line (left for a demand miss when the tile starts).
inline void PrefetchLines(const void* begin, const void* end) {
  const uintptr_t e = reinterpret_cast<uintptr_t>(end);
  for (uintptr_t a = reinterpret_cast<uintptr_t>(begin) & ~uintptr_t{63}; a < e; a += 64)
    _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
}

// INT4: 16 bytes -> their low nibbles (the block's even columns) in bytes 0..15 and their high
// nibbles (odd columns) in bytes 16..31: the nibble order the activations were stored in.
struct Int4Q {
  using Prepared = __m256i;
  static constexpr bool kZeroPoint = true;
  // A pair sum is at most 2 · 15 · 127 = 3810, so the four a tree adds before widening (15240)
  // still fit int16: the eight lanes' products are reduced in int16 and widened once, without
  // a vpmaddwd per lane.
  static constexpr bool kInt16Tree = true;
  static Prepared Prepare(const uint8_t* row, int64_t k) {
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k / 2));
    __asm__("" : "+x"(b));  // as in Int8Q::Prepare: keeps GCC from a store and reloads per use
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
  }
  static __m256i Pairs(__m256i u, __m256i q) { return _mm256_maddubs_epi16(u, q); }
  // Fetches the scales and zero points of rows [r0, r1) into cache (the next tile's: each row's
  // sit apart from its weights, and waiting for them at a tile's start is a miss per row).
  static void PrefetchGroups(const RawWeight& w, int64_t r0, int64_t r1) {
    PrefetchLines(w.scale16 + r0 * w.scale_cols, w.scale16 + r1 * w.scale_cols);
    if (w.zero) PrefetchLines(w.zero + r0 * w.scale_cols, w.zero + r1 * w.scale_cols);
  }

  // Scales and zero points of groups [g0, g0 + n) for the eight lanes: eight groups of a row
  // load as one vector, and a transpose turns eight rows of them into eight groups of lanes
  // (with a group per block, picking them up one scalar at a time cost as much as the block).
  static void GroupLanes(const RawWeight& w, const int64_t* lane_row, int64_t g0, int n, float (*stab)[8],
                         int32_t (*ztab)[8]) {
    const int64_t sc = w.scale_cols;
    for (int c = 0; c < n; c += 8) {
      __m256 sv[8], zv[8], st[8], zt[8];
      const bool whole = sc - (g0 + c) >= 8;  // eight groups left in the row: load them directly
      for (int m = 0; m < 8; ++m) {
        const int64_t at = lane_row[m] * sc + g0 + c;
        if (whole) {
          sv[m] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.scale16 + at)));
          if (w.zero)
            zv[m] = _mm256_castsi256_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.zero + at))));
          continue;
        }
        alignas(16) uint16_t s16[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        alignas(16) uint8_t z8[16] = {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
        for (int64_t i = 0; i < sc - (g0 + c); ++i) {  // never read past the row
          s16[i] = w.scale16[at + i];
          if (w.zero) z8[i] = w.zero[at + i];
        }
        sv[m] = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(s16)));
        zv[m] = _mm256_castsi256_ps(_mm256_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(z8))));
      }
      Transpose8(sv, st);
      if (w.zero) {
        Transpose8(zv, zt);
      } else {
        for (int j = 0; j < 8; ++j) zt[j] = _mm256_castsi256_ps(_mm256_set1_epi32(8));
      }
      for (int j = 0; j < 8 && c + j < n; ++j) {
        _mm256_store_ps(stab[c + j], st[j]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(ztab[c + j]), _mm256_castps_si256(zt[j]));
      }
    }
  }
};

// Sum trees without vphadd: on Zen 3 a vphaddw / vphaddd takes two cycles of the shuffle
// ports where an unpack takes half of one, and the block sums are exact integers, so any
// order of adding gives the same sums. Per 128-bit half, in units of 32 bits (an int32 lane,
// or two int16 lanes kept side by side):
// TreePairs(a, b) adds each vector's units 2, 3 onto its units 0, 1, giving [a, b, a, b];
// TreeQuads(ab, cd) adds the two halves of two such results, giving [a, b, c, d].
template <bool kInt16>
inline __m256i TreePairs(__m256i a, __m256i b) {
  const __m256i lo = _mm256_unpacklo_epi32(a, b), hi = _mm256_unpackhi_epi32(a, b);
  return kInt16 ? _mm256_add_epi16(lo, hi) : _mm256_add_epi32(lo, hi);
}
template <bool kInt16>
inline __m256i TreeQuads(__m256i ab, __m256i cd) {
  const __m256i lo = _mm256_unpacklo_epi64(ab, cd), hi = _mm256_unpackhi_epi64(ab, cd);
  return kInt16 ? _mm256_add_epi16(lo, hi) : _mm256_add_epi32(lo, hi);
}

// Eight int32 vectors -> lane m holds the sum of the m-th one's lanes. Built as the products
// come in (TreePairs, then TreeQuads, then Finish) so that no more than a few block sums are
// live at once: with all eight held, the register allocator spills.
inline __m256i Finish(__m256i lo4, __m256i hi4) {
  return _mm256_add_epi32(_mm256_permute2x128_si256(lo4, hi4, 0x20), _mm256_permute2x128_si256(lo4, hi4, 0x31));
}

// Lane m = d[m % N][b]: (d0, d1, d0, d1, ...) for N = 2, d0 everywhere for 1.
inline __m256 TokenLanes(const float* const* d, int N, int64_t b) {
  const __m256 d0 = _mm256_broadcast_ss(d[0] + b);
  return N == 1 ? d0 : _mm256_unpacklo_ps(d0, _mm256_broadcast_ss(d[1] + b));
}
inline __m256i TokenLanes(const int32_t* const* s, int N, int64_t b) {
  const __m256i s0 = _mm256_set1_epi32(s[0][b]);
  return N == 1 ? s0 : _mm256_unpacklo_epi32(s0, _mm256_set1_epi32(s[1][b]));
}

// The block sums of lanes 2p and 2p+1 (lane m = row m / N, token m % N), pairwise added: in
// int32, or for F::kInt16Tree still in int16.
template <typename F>
inline __m256i Widen(__m256i pairs, __m256i ones) {
  return F::kInt16Tree ? pairs : _mm256_madd_epi16(pairs, ones);
}
template <typename F, int N>
inline __m256i LanePair(const uint8_t* const* p, int64_t k, const __m256i* xq, int pair, __m256i ones) {
  if (N == 1) {
    const typename F::Prepared w0 = F::Prepare(p[2 * pair], k), w1 = F::Prepare(p[2 * pair + 1], k);
    return TreePairs<F::kInt16Tree>(Widen<F>(F::Pairs(w0, xq[0]), ones), Widen<F>(F::Pairs(w1, xq[0]), ones));
  }
  const typename F::Prepared w = F::Prepare(p[pair], k);
  return TreePairs<F::kInt16Tree>(Widen<F>(F::Pairs(w, xq[0]), ones), Widen<F>(F::Pairs(w, xq[N - 1]), ones));
}
// Lane m of the result = the whole block sum of lane m, from the two halves of pairs.
template <typename F>
inline __m256i Finish8(__m256i lo4, __m256i hi4, __m256i ones) {
  if (!F::kInt16Tree) return Finish(lo4, hi4);
  return Finish(_mm256_madd_epi16(lo4, ones), _mm256_madd_epi16(hi4, ones));  // int16 pairs -> int32
}

// R rows x N tokens (R·N = 8, lane m = row m / N, token m % N) over every block of K. rows[i]
// is the row index of row i (repeated at a tail; those lanes are computed and dropped).
// prefetch: bytes of the tile's R contiguous rows, to fetch as many after them (the next
// tile's rows), 0 for none. They are fetched front to back, a block's share at a time: in the
// order they are stored rather than column by column across the rows, which lifted a DRAM
// stream of 1.5 KB INT8 rows from ~5.5 to ~7.5 GB/s on one thread.
template <typename F, int R, int N>
void Tile(const RawWeight& w, const int64_t* rows, const QuantizedActs& a, const int64_t* tokens, float* out,
          int64_t prefetch) {
  static_assert(R * N == 8 && (N == 1 || N == 2), "eight lanes");
  const int64_t K = a.K, nb = K / kActBlock, per_group = w.block_in / kActBlock, groups = K / w.block_in;
  const uint8_t* p[R];
  for (int i = 0; i < R; ++i) p[i] = static_cast<const uint8_t*>(w.data) + rows[i] * w.row_bytes;
  int64_t lane_row[8];  // the weight's scale row of each lane
  for (int m = 0; m < 8; ++m) lane_row[m] = w.block_out == 1 ? rows[m / N] : rows[m / N] / w.block_out;
  constexpr int kTable = 64;  // groups whose scales are laid out per lane at once
  alignas(32) float stab[kTable][8];
  alignas(32) int32_t ztab[kTable][8];
  int64_t g0 = 0;
  const int8_t* q[N];
  const float* d[N];
  const int32_t* s[N];
  for (int j = 0; j < N; ++j) {
    q[j] = a.q + tokens[j] * K;
    d[j] = a.d + tokens[j] * nb;
    s[j] = a.sum + tokens[j] * nb;
  }
  if (prefetch != 0) F::PrefetchGroups(w, rows[0] + prefetch / w.row_bytes, rows[0] + prefetch / w.row_bytes + R);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps(), scale = acc;
  __m256i zero = _mm256_setzero_si256();
  const char* next = reinterpret_cast<const char*>(p[0]) + prefetch;
  const int64_t span = ((R * w.row_bytes + nb - 1) / nb + 63) & ~int64_t{63};
  for (int64_t b = 0, g = 0, left = 0; b < nb; ++b, --left) {
    const int64_t k = b * kActBlock;
    if (left == 0) {  // a new weight group: its scale (and zero point) per lane
      left = per_group;
      if (g == 0 || g - g0 == kTable) {
        g0 = g;
        F::GroupLanes(w, lane_row, g0, static_cast<int>(groups - g0 < kTable ? groups - g0 : kTable), stab, ztab);
      }
      scale = _mm256_load_ps(stab[g - g0]);
      if (F::kZeroPoint) zero = _mm256_load_si256(reinterpret_cast<const __m256i*>(ztab[g - g0]));
      ++g;
    }
    if (prefetch != 0)
      for (const char* f = next + b * span, *f_end = f + span; f < f_end; f += 64) _mm_prefetch(f, _MM_HINT_T0);
    __m256i xq[N];
    for (int j = 0; j < N; ++j) xq[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[j] + k));
    const __m256i lo = TreeQuads<F::kInt16Tree>(LanePair<F, N>(p, k, xq, 0, ones), LanePair<F, N>(p, k, xq, 1, ones));
    const __m256i hi = TreeQuads<F::kInt16Tree>(LanePair<F, N>(p, k, xq, 2, ones), LanePair<F, N>(p, k, xq, 3, ones));
    __m256i dot = Finish8<F>(lo, hi, ones);
    if (F::kZeroPoint) dot = _mm256_sub_epi32(dot, _mm256_mullo_epi32(zero, TokenLanes(s, N, b)));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(scale, TokenLanes(d, N, b)), acc);
  }
  _mm256_storeu_ps(out, acc);
}

// INT4 decode, eight whole rows r..r+7: two blocks (64 columns, 32 bytes of each row) per step.
// One 32-byte load holds both blocks' nibbles, so a row costs a shift, two masks and two
// vpmaddubsw per 64 columns instead of per 32 (the nibble-splitting load and lane insert of
// Int4Q::Prepare went per block). The activations' two nibble-ordered blocks are regrouped to
// match: even columns of both blocks, then odd. Each 128-bit half then belongs to one block,
// so the reduction tree over the eight rows ends with block b's sums in one vector and block
// b+1's in the other. Same exact block sums and fma order as Tile<Int4Q, 8, 1>.
void Int4DecodeRows8(const RawWeight& w, int64_t r, const QuantizedActs& a, float* out, int64_t prefetch) {
  const int64_t K = a.K, nb = K / kActBlock, per_group = w.block_in / kActBlock, groups = K / w.block_in;
  const int64_t rb = w.row_bytes;
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + r * rb;
  int64_t lane_row[8];
  for (int m = 0; m < 8; ++m) lane_row[m] = w.block_out == 1 ? r + m : (r + m) / w.block_out;
  constexpr int kTable = 64;
  alignas(32) float stab[kTable][8];
  alignas(32) int32_t ztab[kTable][8];
  if (prefetch != 0) Int4Q::PrefetchGroups(w, r + prefetch / rb, r + prefetch / rb + 8);
  const __m256i low4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  __m256 acc = _mm256_setzero_ps();
  const char* next = reinterpret_cast<const char*>(base) + prefetch;
  const int64_t span = ((8 * rb + nb - 1) / nb + 63) & ~int64_t{63};  // prefetch bytes per block
  int64_t g0 = -kTable;  // groups [g0, g0 + kTable) are in the tables
  // Block b's scale times its activation scale, and its zero point times Σq, per lane.
  auto block_terms = [&](int64_t b, __m256& scale, __m256i& zs) {
    const int64_t g = b / per_group;
    if (g - g0 >= kTable) {
      g0 = g;
      Int4Q::GroupLanes(w, lane_row, g0, static_cast<int>(groups - g0 < kTable ? groups - g0 : kTable), stab, ztab);
    }
    scale = _mm256_mul_ps(_mm256_load_ps(stab[g - g0]), _mm256_broadcast_ss(a.d + b));
    zs = _mm256_mullo_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(ztab[g - g0])),
                            _mm256_set1_epi32(a.sum[b]));
  };
  for (int64_t b = 0; b < nb; b += 2) {
    const bool pair = b + 1 < nb;
    if (prefetch != 0)
      for (const char* f = next + b * span, *f_end = f + 2 * span; f < f_end; f += 64) _mm_prefetch(f, _MM_HINT_T0);
    // Activations: block b in the low halves, block b+1 (or zeros) in the high halves.
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + b * kActBlock));
    const __m256i x1 = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q + (b + 1) * kActBlock))
                            : _mm256_setzero_si256();
    const __m256i even = _mm256_permute2x128_si256(x0, x1, 0x20), odd = _mm256_permute2x128_si256(x0, x1, 0x31);
    const uint8_t* p = base + b * kActBlock / 2;
    // Row i's 16 sums of four products (|.| <= 4 · 15 · 127 = 7620, int16); with row i+1's
    // added pairwise they stay below 15240, then widen to int32.
    auto row = [&](int64_t i) {
      __m256i v = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i * rb))
                       : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i * rb)));
      __asm__("" : "+x"(v));  // see Int8Q::Prepare
      const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
      return _mm256_add_epi16(_mm256_maddubs_epi16(lo, even), _mm256_maddubs_epi16(hi, odd));
    };
    auto rows2 = [&](int64_t i) { return _mm256_madd_epi16(TreePairs<true>(row(i), row(i + 1)), ones); };
    const __m256i q03 = TreeQuads<false>(rows2(0), rows2(2)), q47 = TreeQuads<false>(rows2(4), rows2(6));
    // Lanes = rows 0..7 of block b, and of block b+1.
    const __m256i d0 = _mm256_permute2x128_si256(q03, q47, 0x20), d1 = _mm256_permute2x128_si256(q03, q47, 0x31);
    __m256 scale;
    __m256i zs;
    block_terms(b, scale, zs);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(d0, zs)), scale, acc);
    if (pair) {
      block_terms(b + 1, scale, zs);
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(d1, zs)), scale, acc);
    }
  }
  _mm256_storeu_ps(out, acc);
}

template <typename F>
void QRows(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
           bool accumulate) {
  alignas(32) float out[8];
  auto store = [&](int64_t r, int64_t t, float v) {
    float* o = y + t * ldy + r;
    *o = accumulate ? *o + v : v;
  };
  if (a.T == 1) {  // decode: eight rows at a time, each weight read once
    const int64_t token = 0;
    // Each tile fetches the next one's weights and scales (INT4's scales sit apart from its
    // weights).
    constexpr int64_t kAhead = 8;
    for (int64_t r = r0; r < r1; r += 8) {
      int64_t rows[8];
      for (int i = 0; i < 8; ++i) rows[i] = r + i < r1 ? r + i : r1 - 1;
      const int64_t prefetch = r + 8 <= r1 ? kAhead * w.row_bytes : 0;
      if (w.kind == WeightKind::kInt4 && r + 8 <= r1) {
        Int4DecodeRows8(w, r, a, out, prefetch);
      } else {
        Tile<F, 8, 1>(w, rows, a, &token, out, prefetch);
      }
      for (int i = 0; i < 8 && r + i < r1; ++i) store(r + i, 0, out[i]);
    }
    return;
  }
  // Several tokens: four rows meet two tokens at a time; the rows stay in L1 while a block of
  // tokens (whose activations stay in L2) passes them.
  int64_t block = (256 * 1024) / a.K;
  block = block < 2 ? 2 : block & ~int64_t{1};
  for (int64_t t0 = 0; t0 < a.T; t0 += block) {
    const int64_t t1 = a.T - t0 < block ? a.T : t0 + block;
    for (int64_t r = r0; r < r1; r += 4) {
      int64_t rows[4];
      for (int i = 0; i < 4; ++i) rows[i] = r + i < r1 ? r + i : r1 - 1;
      for (int64_t t = t0; t < t1; t += 2) {
        const int64_t tokens[2] = {t, t + 1 < t1 ? t + 1 : t};
        Tile<F, 4, 2>(w, rows, a, tokens, out, 0);
        for (int i = 0; i < 4 && r + i < r1; ++i)
          for (int j = 0; j < 2 && t + j < t1; ++j) store(r + i, t + j, out[i * 2 + j]);
      }
    }
  }
}

}  // namespace

void QuantizeActsAvx2(const float* x, int64_t K, bool nibble_order, int8_t* q, float* d, int32_t* sum) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  for (int64_t b = 0; b < K / kActBlock; ++b) {
    const float* xb = x + b * kActBlock;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    __m256i special = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      const __m256 a = _mm256_and_ps(v[i], abs_mask);
      amax = _mm256_max_ps(amax, a);
      special = _mm256_or_si256(
          special, _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v[i]), exp_mask), exp_mask));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float am = _mm_cvtss_f32(m);
    if (!_mm256_testz_si256(special, special)) {  // a NaN or Inf: see linear_kernels.h
      d[b] = __builtin_nanf("");
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kActBlock), _mm256_setzero_si256());
      sum[b] = 0;
      continue;
    }
    d[b] = am / 127.0f;
    const __m256 id = _mm256_set1_ps(am > 0.0f ? 127.0f / am : 0.0f);
    __m256i i32[4];
    for (int i = 0; i < 4; ++i) i32[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], id));
    if (nibble_order) {
      // Even columns of the block first, then odd: each vector to (its 4 evens, its 4 odds),
      // then the halves regrouped.
      const __m256i split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
      __m256i v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_permutevar8x32_epi32(i32[i], split);
      i32[0] = _mm256_permute2x128_si256(v[0], v[1], 0x20);
      i32[1] = _mm256_permute2x128_si256(v[2], v[3], 0x20);
      i32[2] = _mm256_permute2x128_si256(v[0], v[1], 0x31);
      i32[3] = _mm256_permute2x128_si256(v[2], v[3], 0x31);
    }
    // int32 -> int8 in order: packs interleave 128-bit halves, one lane permute undoes it.
    const __m256i w01 = _mm256_packs_epi32(i32[0], i32[1]), w23 = _mm256_packs_epi32(i32[2], i32[3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kActBlock), bytes);
    const __m256i s32 = _mm256_add_epi32(_mm256_add_epi32(i32[0], i32[1]), _mm256_add_epi32(i32[2], i32[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    sum[b] = _mm_cvtsi128_si32(s);
  }
}

void QLinearAvx2(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                 bool accumulate) {
  if (r0 >= r1 || a.T <= 0) return;
  if (w.kind == WeightKind::kI8) {
    QRows<Int8Q>(a, w, r0, r1, y, ldy, accumulate);
  } else if (w.kind == WeightKind::kInt4) {
    QRows<Int4Q>(a, w, r0, r1, y, ldy, accumulate);
  }
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
void QuantizeActsAvx2(const float*, int64_t, bool, int8_t*, float*, int32_t*) {}
void QLinearAvx2(const QuantizedActs&, const RawWeight&, int64_t, int64_t, float*, int64_t, bool) {}
}  // namespace dsv3::cpu

#endif
