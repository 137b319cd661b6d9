// Int8-activation Linear for INT8 and INT4 weights with AVX2 (compiled with -mavx2 -mfma
// -mf16c for this file only; linear.cc calls it after checking the CPU). Integer products do
// the work that dequantizing to float32 did: 32 weights meet 32 activations in one
// vpmaddubsw (unsigned x signed bytes -> pairs summed to int16) and one vpmaddwd (pairs ->
// int32). INT8 weights are signed, so the magnitudes go in the unsigned operand and the signs
// move onto the activations (vpsignb); eight (row, token) block sums are reduced together and
// scaled in one float vector, giving the twin's (linear_q8.cc) fma chain lane by lane, or, with
// several tokens, eight rows transposed once are a vector's lanes, one row each, so a token's
// sums need no reduction (Int8GroupsOfRows). INT4 nibbles are unsigned already, and their zero
// point comes off afterwards as z · Σq; there a vector's lanes are eight blocks of one row (the
// twin's eight chains), so each row's scales and zero points load as they are stored; with
// several tokens, eight rows a vector's lanes as for INT8 (Int4GroupsOfRows).
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
  static __m256i Prepare(const uint8_t* row, int64_t k) {
    __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k));
    // Keeps w in a register: left alone, GCC stores each loaded row to the stack and reads it
    // back as the memory operand of vpabsb and vpsignb (a quarter of the loop's time).
    __asm__("" : "+x"(w));
    return w;
  }
  static __m256i Pairs(__m256i w, __m256i q) { return _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(q, w)); }
};

#include "engine/kernels/cpu/isa_common.inc"

// INT8's tiles (linear_q8_int8.inc): the block sums of lanes 2p and 2p+1 (lane m = row m / N,
// token m % N) with vpmaddubsw and vpmaddwd, pairwise added; the magnitudes and signs already
// give the exact sums.
template <int N>
inline __m256i Int8LanePair(const uint8_t* const* p, int64_t k, const __m256i* xq, int pair) {
  const __m256i ones = _mm256_set1_epi16(1);
  if (N == 1) {
    const __m256i w0 = Int8Q::Prepare(p[2 * pair], k), w1 = Int8Q::Prepare(p[2 * pair + 1], k);
    return TreePairs<false>(_mm256_madd_epi16(Int8Q::Pairs(w0, xq[0]), ones),
                            _mm256_madd_epi16(Int8Q::Pairs(w1, xq[0]), ones));
  }
  const __m256i w = Int8Q::Prepare(p[pair], k);
  return TreePairs<false>(_mm256_madd_epi16(Int8Q::Pairs(w, xq[0]), ones),
                          _mm256_madd_epi16(Int8Q::Pairs(w, xq[N - 1]), ones));
}
template <int N>
inline __m256i Int8ExactSums(__m256i sums, const int32_t* const*, int64_t) {
  return sums;
}

#include "engine/kernels/cpu/linear_q8_int8.inc"

// ---- INT8 against several tokens: eight rows at a time, a lane per row -----------------------
// linear_q8_int8.inc's tiles give each lane a (row, token) pair, so every block ends in sum
// trees that bring the pair's int32 quarters together (~20 of a 4 x 2 tile's ~55 vector
// operations per block). Eight rows transposed once per block put one row in each lane, as
// Int4GroupTokens does: a token's dword j (four activations), broadcast, takes the signs of
// the eight rows' dword j (vpsignb), meets their magnitudes in one vpmaddubsw (pairs <= 2 ·
// 128 · 127, in int16), and one vpmaddwd leaves each row's exact sum of the four products;
// eight such add up to the block's exact sums, no tree (~35 operations per token and block of
// eight rows). The scale, the activation scale and the fma chain are the tiles' (lane = row,
// one chain per output, blocks in order), so the bits are theirs.

// The four bytes at x in every dword lane. vbroadcastss: a load alone on Zen 3, where
// vpbroadcastd from memory also takes a shuffle.
__attribute__((always_inline)) inline __m256i BroadcastDword(const void* x) {
  float f;
  __builtin_memcpy(&f, x, 4);
  return _mm256_castps_si256(_mm256_set1_ps(f));
}

// The 16 bytes at p of eight rows rb bytes apart, transposed: d[j] holds dword j of rows 0-7 in
// lanes 0-7 (rows k and k + 4 in one vector's halves, then two rounds of unpacks). A block of
// both eight-row paths (INT8's two halves, INT4's 16 bytes).
__attribute__((always_inline)) inline void EightRowsDwords(const uint8_t* p, int64_t rb, __m256i* d) {
  const auto pair = [&](int k) {
    return _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + (k + 4) * rb),
                               reinterpret_cast<const __m128i*>(p + k * rb));
  };
  const __m256i v04 = pair(0), v15 = pair(1), v26 = pair(2), v37 = pair(3);
  const __m256i u0 = _mm256_unpacklo_epi32(v04, v15), u1 = _mm256_unpackhi_epi32(v04, v15);
  const __m256i u2 = _mm256_unpacklo_epi32(v26, v37), u3 = _mm256_unpackhi_epi32(v26, v37);
  d[0] = _mm256_unpacklo_epi64(u0, u2);
  d[1] = _mm256_unpackhi_epi64(u0, u2);
  d[2] = _mm256_unpacklo_epi64(u1, u3);
  d[3] = _mm256_unpackhi_epi64(u1, u3);
}

// The walk of both eight-row paths: rows [r0, r0 + (r1 - r0) / 8 * 8) eight at a time against
// a's tokens in passes whose activations stay in L2 (256 KB, at most max_tokens a pass):
// group(r, t0, t1, fetch) for each group of rows in each pass, fetch being the next group's
// rows on the first pass (null on later passes and at the weight's end). Returns the first row
// left (fewer than eight of them).
template <typename Group>
__attribute__((always_inline)) inline int64_t EightRowGroups(const QuantizedActs& a, const RawWeight& w, int64_t r0,
                                                             int64_t r1, int64_t max_tokens, const Group& group) {
  const int64_t groups_end = r0 + (r1 - r0) / 8 * 8;
  int64_t block = (256 * 1024) / a.K;
  block = block < 1 ? 1 : block > max_tokens ? max_tokens : block;
  for (int64_t t0 = 0; t0 < a.T && r0 < groups_end; t0 += block) {
    const int64_t t1 = a.T - t0 < block ? a.T : t0 + block;
    for (int64_t r = r0; r < groups_end; r += 8) {
      const bool next = t0 == 0 && r + 16 <= w.rows;
      group(r, t0, t1, next ? static_cast<const uint8_t*>(w.data) + (r + 8) * w.row_bytes : nullptr);
    }
  }
  return groups_end;
}

// Token counts from which rows go eight at a time: below, transposing each block costs more
// than the tiles' trees, and more so on longer rows. One thread, in-process against the tiles,
// ratio of the times at 3 / 4 / 5 / 6 / 8 tokens (odd counts favour this path: the tiles take
// tokens in pairs): K 256 0.72 / 0.85 / 0.65 / 0.71 / 0.63; K 384 0.79 / 0.92 / 0.70 / 0.79 /
// 0.69; K 512 0.83 / 0.95 / 0.77 / 0.84 / 0.76; K 768 0.85 / 1.02 / 0.82 / 0.87 / 0.75; K 1536
// 0.94 / 1.09 / 0.85 / 0.95 / 0.91 (16 tokens 0.78, 48 0.60); K 2048 0.99 / 1.17 / 0.91 / 1.04 /
// 0.92 (32: 0.71); K 7168 1.05 / 1.16 / 0.95 / 1.03 / 0.96 (32: 0.79). Longer rows stay on the
// tiles: K 18432 (128 rows) 1.17 at 8 tokens, 1.00 at 32 (each block's eight rows and the
// tokens' activations, all 18 KB apart, share two L1 sets).
inline int64_t Int8GroupMinTokens(int64_t K) { return K <= 512 ? 3 : K <= 1536 ? 5 : 8; }
constexpr int64_t kInt8GroupMaxK = 8192;
// Whether the eight-row path takes a's tokens against w: enough of them, rows no longer than
// kInt8GroupMaxK, and rows that do not start a multiple of 4 KB apart (where a block's eight
// rows fall in one L1 set, as for INT4's Int4GroupsTake).
inline bool Int8GroupsTake(const QuantizedActs& a, const RawWeight& w) {
  return a.T >= Int8GroupMinTokens(a.K) && a.K <= kInt8GroupMaxK && w.row_bytes % 4096 != 0;
}

// Rows [r, r + 8) against tokens [t0, t1): y[t, r + i] (+)= the twin's chain. acc: t1 - t0
// vectors of scratch. fetch: the next group's rows, read into cache as these are (null for none).
void Int8GroupRows(const QuantizedActs& a, const RawWeight& w, int64_t r, int64_t t0, int64_t t1, const uint8_t* fetch,
                   float* y, int64_t ldy, bool accumulate, __m256* acc) {
  const int64_t K = a.K, nb = K / kActBlock, rb = w.row_bytes, per_group = w.block_in / kActBlock, nt = t1 - t0;
  const uint8_t* rows = static_cast<const uint8_t*>(w.data) + r * rb;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t j = 0; j < nt; ++j) acc[j] = _mm256_setzero_ps();
  alignas(32) __m256i signs[8];  // the block's transposed weights, vpsignb's operand from L1
  __m256 scale = _mm256_setzero_ps();
  for (int64_t b = 0, g = 0, left = 0; b < nb; ++b, --left) {
    if (left == 0) {  // a new scale group: the eight rows' scales
      alignas(32) float s[8];
      for (int i = 0; i < 8; ++i) s[i] = w.scale[((r + i) / w.block_out) * w.scale_cols + g];
      scale = _mm256_load_ps(s);
      left = per_group;
      ++g;
    }
    if (fetch && b % 2 == 0)
      for (int k = 0; k < 8; ++k) _mm_prefetch(reinterpret_cast<const char*>(fetch + k * rb + b * 32), _MM_HINT_T0);
    // Dword j of rows 0-7 in lanes 0-7, each 16-byte half of the block in turn.
    EightRowsDwords(rows + b * 32, rb, signs);
    EightRowsDwords(rows + b * 32 + 16, rb, signs + 4);
    __m256i m[8];
    for (int i = 0; i < 8; ++i) m[i] = _mm256_abs_epi8(signs[i]);
    for (int64_t j = 0; j < nt; ++j) {
      const int8_t* q = a.q + (t0 + j) * K + b * kActBlock;
      const auto four = [&](int i) {
        __m256i s = _mm256_sign_epi8(BroadcastDword(q + 4 * i), _mm256_load_si256(&signs[i]));
        return _mm256_madd_epi16(_mm256_maddubs_epi16(m[i], s), ones);
      };
      const __m256i exact = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(four(0), four(1)),
                                                              _mm256_add_epi32(four(2), four(3))),
                                             _mm256_add_epi32(_mm256_add_epi32(four(4), four(5)),
                                                              _mm256_add_epi32(four(6), four(7))));
      const __m256 sd = _mm256_mul_ps(scale, _mm256_set1_ps(a.d[(t0 + j) * nb + b]));
      acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), sd, acc[j]);
    }
  }
  for (int64_t j = 0; j < nt; ++j) {
    float* o = y + (t0 + j) * ldy + r;
    _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), acc[j]) : acc[j]);
  }
}

// Rows [r0, r1) against every token of a, eight rows at a time; returns the first row left
// (fewer than eight).
int64_t Int8GroupsOfRows(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                         bool accumulate) {
  constexpr int64_t kTokensMax = 256;  // a pass's sums, 8 KB
  alignas(32) __m256 acc[kTokensMax];
  return EightRowGroups(a, w, r0, r1, kTokensMax, [&](int64_t r, int64_t t0, int64_t t1, const uint8_t* fetch) {
    Int8GroupRows(a, w, r, t0, t1, fetch, y, ldy, accumulate, acc);
  });
}

// ---- INT4: a row at a time, eight of its blocks per vector ----------------------------------
// 32 bytes of a row are two blocks (16 bytes each: column 2i in byte i's low nibble, 2i+1 in
// its high one). One mask and one shift split them into the even columns of both blocks and
// the odd columns of both, which meet the activations of the pair as linear_kernels.h stores
// them (both blocks' evens, then both blocks' odds) in two vpmaddubsw. Four such vectors (eight
// blocks) reduce to one vector holding the eight exact block sums, and everything per block
// after that (the zero point off, the scale, the fma) happens eight blocks per instruction,
// with each row's scales and zero points loaded as stored: one row per pass, no transposes.

// How a chunk of eight blocks finds its groups: one each, one per two, per four, one for all
// eight, or (tails, other group sizes) block by block.
enum class GroupStep : int { kOne, kTwo, kFour, kWhole, kEach };

inline GroupStep GroupStepFor(int64_t per_group) {
  if (per_group == 1) return GroupStep::kOne;
  if (per_group == 2) return GroupStep::kTwo;
  if (per_group == 4) return GroupStep::kFour;
  if (per_group % 8 == 0) return GroupStep::kWhole;
  return GroupStep::kEach;
}

// One row against N tokens: where its weights, groups and the tokens' activations are.
template <int N>
struct Int4RowArgs {
  const uint8_t* row;        // the row's packed weights
  const uint16_t* scale;     // its group scales
  const uint8_t* zero;       // its zero points (null: 8)
  const int8_t* q[N];        // each token's activations (pair layout), its d and Σq per block
  const float* d[N];
  const int32_t* sum[N];
  int64_t per_group;         // blocks per group
};

// Lane I of a chunk's block-by-block groups (lanes at or past n stay 0): group *g's F16 scale
// and zero point (8 without zero points) into lane I, then *g moves on when its blocks are done.
template <int I>
__attribute__((always_inline)) inline void PutLaneGroup(const uint16_t* s16, const uint8_t* z8, int64_t n, int64_t* g,
                                                        int64_t* left, int64_t per_group, __m128i* s, __m128i* z) {
  if (I >= n) return;
  *s = _mm_insert_epi16(*s, s16[*g], I);
  *z = _mm_insert_epi8(*z, z8 ? z8[*g] : 8, I);
  if (--*left == 0) {
    ++*g;
    *left = per_group;
  }
}

// The first kCount F16 scales (LoadHalves) or U8 zero points (LoadBytes) at p in the low lanes
// of a vector, the rest zero; exactly those bytes are read.
template <int kCount>
__attribute__((always_inline)) inline __m128i LoadHalves(const uint16_t* p) {
  if constexpr (kCount == 8) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  } else if constexpr (kCount == 4) {
    return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  } else if constexpr (kCount == 2) {
    return _mm_loadu_si32(p);
  } else {
    return _mm_cvtsi32_si128(p[0]);
  }
}
template <int kCount>
__attribute__((always_inline)) inline __m128i LoadBytes(const uint8_t* p) {
  if constexpr (kCount == 8) {
    return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  } else if constexpr (kCount == 4) {
    return _mm_loadu_si32(p);
  } else if constexpr (kCount == 2) {
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    return _mm_cvtsi32_si128(v);
  } else {
    return _mm_cvtsi32_si128(p[0]);
  }
}

// Scale and zero point of blocks [b0, b0 + n) of the row, lane i = block b0 + i (lanes past n:
// scale 0, zero point 0 or 8, which meet block sums of 0). Only the groups the blocks use are
// read. kHalf: n = 4, a half chunk (the tail of a row of 8m + 4 blocks, as bench-v3-mini's q_b
// with 384 columns or V2-Lite's 1408-column down_proj): the same loads, half as wide, where
// kEach's lane-by-lane inserts and masked loads had cost a tail about as much as a whole chunk.
template <GroupStep kStep, bool kHalf, int N>
__attribute__((always_inline)) inline void ChunkGroups(const Int4RowArgs<N>& a, int64_t b0, int64_t n, __m256* scale,
                                                       __m256i* zero) {
  const uint16_t* s16 = a.scale;
  const uint8_t* z8 = a.zero;
  constexpr int kLanes = kHalf ? 4 : 8;  // blocks, so groups: kLanes / (blocks a group)
  if (kStep == GroupStep::kOne) {
    *scale = _mm256_cvtph_ps(LoadHalves<kLanes>(s16 + b0));
    *zero = z8 ? _mm256_cvtepu8_epi32(LoadBytes<kLanes>(z8 + b0)) : _mm256_set1_epi32(8);
  } else if (kStep == GroupStep::kTwo) {  // a half chunk's lanes 4-7 pick lanes 2 and 3: zero
    const __m256i pick = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    const int64_t g0 = b0 >> 1;
    *scale = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(LoadHalves<kLanes / 2>(s16 + g0)), pick);
    *zero = z8 ? _mm256_permutevar8x32_epi32(_mm256_cvtepu8_epi32(LoadBytes<kLanes / 2>(z8 + g0)), pick)
               : _mm256_set1_epi32(8);
  } else if (kStep == GroupStep::kFour) {  // a half chunk's lanes 4-7 pick lane 1: zero
    const __m256i pick = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const int64_t g0 = b0 >> 2;
    *scale = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(LoadHalves<kLanes / 4>(s16 + g0)), pick);
    *zero = z8 ? _mm256_permutevar8x32_epi32(_mm256_cvtepu8_epi32(LoadBytes<kLanes / 4>(z8 + g0)), pick)
               : _mm256_set1_epi32(8);
  } else if (kStep == GroupStep::kWhole) {
    const int64_t g0 = b0 / a.per_group;
    *scale = _mm256_set1_ps(_cvtsh_ss(s16[g0]));
    if (kHalf) *scale = _mm256_blend_ps(*scale, _mm256_setzero_ps(), 0xf0);
    *zero = _mm256_set1_epi32(z8 ? z8[g0] : 8);
  } else {
    // Block by block, each lane's F16 scale and zero point put into a register lane, then
    // widened as the other steps do (the same floats). Stored to the stack one by one and
    // loaded as vectors, they stalled the chunk on store forwarding, and a division per lane
    // found the groups: a q_b-sized row (K = 384: a chunk and a tail of four blocks) ran at
    // 4 GB/s where rows of whole chunks ran at 11-14.
    __m128i s = _mm_setzero_si128(), z = _mm_setzero_si128();
    int64_t g = b0 / a.per_group, left = a.per_group - b0 % a.per_group;
    PutLaneGroup<0>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    PutLaneGroup<1>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    PutLaneGroup<2>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    PutLaneGroup<3>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    PutLaneGroup<4>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    PutLaneGroup<5>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    PutLaneGroup<6>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    PutLaneGroup<7>(s16, z8, n, &g, &left, a.per_group, &s, &z);
    *scale = _mm256_cvtph_ps(s);
    *zero = _mm256_cvtepu8_epi32(z);
  }
}

// Blocks [b0, b0 + n) of the row into acc[j], lane i = chain b0 + i. kBlocks: 8 (a whole chunk,
// n = 8), 4 (a half chunk, n = 4) or 0 (any n < 8, lane by lane).
template <int N, GroupStep kStep, int kBlocks>
__attribute__((always_inline)) inline void Int4Chunk(const Int4RowArgs<N>& a, int64_t b0, int64_t n, __m256* acc) {
  constexpr bool kFull = kBlocks == 8, kHalf = kBlocks == 4 && kStep != GroupStep::kEach;
  const __m256i low4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  // Blocks b0+2i and b0+2i+1: per token, each block's sixteen sums of four products
  // (|.| <= 4 · 15 · 127 = 7620, int16).
  auto pairs = [&](int i, __m256i* sums) {
    const int64_t b = b0 + 2 * i;
    if (!kFull && 2 * i >= n) {
      for (int j = 0; j < N; ++j) sums[j] = _mm256_setzero_si256();
      return;
    }
    const bool both = kFull || 2 * i + 1 < n;  // else the last block of an odd count, stored alone
    __m256i v = both ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.row + b * 16))
                     : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.row + b * 16)));
    __asm__("" : "+x"(v));  // see Int8Q::Prepare
    const __m256i lo = _mm256_and_si256(v, low4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
    for (int j = 0; j < N; ++j) {
      const int8_t* x = a.q[j] + b * kActBlock;
      const __m256i even = both ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))
                                : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
      const __m256i odd = both ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32))
                               : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16)));
      sums[j] = _mm256_add_epi16(_mm256_maddubs_epi16(lo, even), _mm256_maddubs_epi16(hi, odd));
    }
  };
  // Two vectors' sums added pairwise (<= 15240, still int16) and widened: lanes (b, b+2, b,
  // b+2 | b+1, b+3, b+1, b+3); then two of those give the eight block sums.
  __m256i s0[N], s1[N], m01[N];
  pairs(0, s0);
  pairs(1, s1);
  for (int j = 0; j < N; ++j) m01[j] = _mm256_madd_epi16(TreePairs<true>(s0[j], s1[j]), ones);
  pairs(2, s0);
  pairs(3, s1);
  __m256 scale;
  __m256i zero;
  ChunkGroups<kFull || kHalf ? kStep : GroupStep::kEach, kHalf>(a, b0, n, &scale, &zero);
  // The tree leaves blocks in lanes (0, 2, 4, 6, 1, 3, 5, 7); this puts them in order.
  const __m256i in_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int j = 0; j < N; ++j) {
    const __m256i m23 = _mm256_madd_epi16(TreePairs<true>(s0[j], s1[j]), ones);
    const __m256i dot = _mm256_permutevar8x32_epi32(TreeQuads<false>(m01[j], m23), in_order);
    __m256 dv;
    __m256i sv;
    if (kFull) {
      dv = _mm256_loadu_ps(a.d[j] + b0);
      sv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sum[j] + b0));
    } else if (kHalf) {  // lanes 4-7: d = 0, Σq = 0
      dv = _mm256_zextps128_ps256(_mm_loadu_ps(a.d[j] + b0));
      sv = _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.sum[j] + b0)));
    } else {  // lanes past the row's last block: d = 0, Σq = 0 (their sums are 0 too)
      // Masked loads (lanes off the mask read as 0 and never fault), not the stack copies that
      // stalled on store forwarding.
      const __m256i lanes =
          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      dv = _mm256_maskload_ps(a.d[j] + b0, lanes);
      sv = _mm256_maskload_epi32(a.sum[j] + b0, lanes);
    }
    const __m256i exact = _mm256_sub_epi32(dot, _mm256_mullo_epi32(zero, sv));
    acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), _mm256_mul_ps(scale, dv), acc[j]);
  }
}

// Row r against N tokens (the activations' rows tokens[j]): out[j] = the twin's
// ((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7)), where lane i of the accumulator is the
// chain c_i over blocks b = i (mod 8). ahead: a row to fetch into cache as this one is read
// (null for none).
template <int N, GroupStep kStep>
__attribute__((always_inline)) inline void Int4Row(const RawWeight& w, int64_t r, const QuantizedActs& qa,
                                                   const int64_t* tokens, const uint8_t* ahead, float* out) {
  const int64_t nb = qa.K / kActBlock;
  Int4RowArgs<N> a;
  a.row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
  a.scale = w.scale16 + r * w.scale_cols;
  a.zero = w.zero ? w.zero + r * w.scale_cols : nullptr;
  a.per_group = w.block_in / kActBlock;
  __m256 acc[N];
  for (int j = 0; j < N; ++j) {
    a.q[j] = qa.q + tokens[j] * qa.K;
    a.d[j] = qa.d + tokens[j] * nb;
    a.sum[j] = qa.sum + tokens[j] * nb;
    acc[j] = _mm256_setzero_ps();
  }
  // The row ahead is fetched two lines per chunk (its 128 bytes at their start and 64 on),
  // which covers every line but perhaps the last: that one first.
  if (ahead) _mm_prefetch(reinterpret_cast<const char*>(ahead + w.row_bytes - 1), _MM_HINT_T0);
  int64_t b0 = 0;
  for (; b0 + 8 <= nb; b0 += 8) {
    if (ahead) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + b0 * 16), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(ahead + b0 * 16 + 64), _MM_HINT_T0);
    }
    Int4Chunk<N, kStep, 8>(a, b0, 8, acc);
  }
  if (b0 < nb) {
    if (ahead) PrefetchLines(ahead + b0 * 16, ahead + nb * 16);
    if (nb - b0 == 4) {
      Int4Chunk<N, kStep, 4>(a, b0, 4, acc);
    } else {
      Int4Chunk<N, kStep, 0>(a, b0, nb - b0, acc);
    }
  }
  for (int j = 0; j < N; ++j) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps(acc[j], 1));  // c_i + c_(i+4)
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));  // (c0 + c4) + (c2 + c6), (c1 + c5) + (c3 + c7)
    out[j] = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
  }
}

// ---- INT4 against several tokens: eight rows at a time, a lane per row -----------------------
// A row at a time (Int4Row), every token pays for its sum trees: the eight blocks' sums sit in
// sixteen int16 lanes per block pair and take unpacks, adds and a lane permute per token before
// the scaling, ~45 vector operations per token and eight blocks. Eight rows transposed once
// (each block's 16 bytes a row are four dwords; dword j of the eight rows in one vector, its
// low and high nibbles split) put one row in each lane: a token's dword j of evens (odds),
// broadcast, meets the eight rows' dword j of even (odd) columns in one vpmaddubsw, the block's
// eight products add up in int16 (|sum| <= 8 · 2 · 15 · 127 = 30480) and one vpmaddwd leaves
// the eight rows' exact block sums: ~30 vector operations per token and block of eight rows
// (the broadcasts take a vector pipe each on Zen 3), where the row kernel spends ~45 on the
// same 256 products. The zero point, scale and fma chains are the row kernel's (lane = row,
// chain b % 8 kept per token), so the bits are its bits.

// Blocks of a row group whose scales are laid out at once: 64 (2048 columns; 4 KB). Longer
// rows go in such chunks, each token's chains carried between them.
constexpr int64_t kGroupChunkBlocks = 64;
// Whether GroupScales lays w's scales out eight groups at a time (a group a block, no zero
// points: INT4 g32 symmetric), rather than a group at a time.
inline bool VectorGroupScales(const RawWeight& w) { return w.block_in == kActBlock && w.zero == nullptr; }
// Token counts from which rows go eight at a time: with fewer, transposing each block and
// building its scales costs more than the row kernel's trees. Where that is depends on the row
// length, as the row kernel's per-row costs do (a q_b row of 384 columns ends in a half step),
// and on how the scales are laid out. One thread, in-process against the row kernel, ratio of
// the times at 2 / 3 / 4 / 6 / 8 tokens. Scales eight groups at a time: K 384 (1152 rows) 1.02 /
// 0.76 / 0.70 / 0.68 / 0.59; K 512 (1536 rows) 1.09 / 0.90 / 0.80 / 0.75 / 0.70; K 768 1.23 /
// 1.01 / 0.89 / 0.78 / 0.75; K 1024 1.28 / - / 0.96-1.05 / 0.86 / 0.80; K 1536 (512 rows) 1.34 /
// - / 0.97-1.01 / 0.87 / 0.85; K 2048 1.45 / - / 1.03 / 0.90 / 0.89; K 4096 1.54 / - / 1.11 /
// 0.99 / 0.98. A group at a time (zero points, `dsv3 quantize`'s default, or groups other than
// 32), at 2 / 3 / 4 / 6 tokens (rows 768 KB in all): g32 K 384 0.81 / 0.62, K 512 0.99 / 0.91 /
// 0.71, K 768 1.12 / 0.98 / 0.86 / 0.71, K 1024 - / 1.12 / 0.82 / 0.61, K 1536 1.25 / 1.08 / 0.82 /
// 0.78, K 2048 1.44 / 1.28 / 0.85 / 0.78, K 4096 1.58 / 1.41 / 1.06 / 0.85 (5 tokens 1.00), K 7168
// 1.68 / 1.27-1.42 / 1.10 / 0.81-0.90; g64 K 384 0.72 / 0.58, K 512 0.81 / 0.71 / 0.64, K 768 0.97 /
// 0.76 / 0.64, K 1024 1.00 / 0.85 / 0.70, K 1536 1.13 / 1.04 / 0.80 / 0.69, K 2048 1.11 / 1.08 /
// 0.72 / 0.66, K 4096 1.24-1.29 / 1.19-1.20 / 0.85 / 0.73, K 7168 1.24-1.37 / 1.20 / 0.81-0.85 /
// 0.76; g128 K 384 0.63 / 0.51, K 512 0.77 / 0.76 / 0.59, K 768 0.88 / 0.88 / 0.68 / 0.60, K 1024
// 0.94 / 0.99 / 0.66, K 1536 1.11 / 0.94 / 0.70 / 0.60, K 2048 1.16 / 1.00 / 0.70 / 0.64, K 4096
// 1.17 / 1.01-1.18 / 0.82 / 0.72, K 7168 1.13-1.27 / 0.96-1.17 / 0.82-0.86 / 0.76 (a group's
// gather serves two or four blocks there, one in g32).
inline int64_t Int4GroupMinTokens(const RawWeight& w, int64_t K) {
  if (VectorGroupScales(w)) {
    if (K <= 512) return 3;
    if (K <= 1024) return 4;
    if (K <= 2048) return 6;
    return 8;
  }
  if (w.block_in == kActBlock) {  // g32 with zero points: a group each block
    if (K <= 384) return 2;
    if (K <= 512) return 3;
    if (K <= 2048) return 4;
    return 6;
  }
  if (K <= 512) return 2;
  if (K <= 1024) return 3;
  return 4;
}
// Whether the eight-row path takes a's tokens against w: enough of them, and rows that do not
// start a multiple of 4 KB apart, where a block's eight rows (and the next group's, fetched)
// fall in one set of the L1 (32 KB, 8 ways): one thread, 512 rows x 64 tokens, against the row
// kernel, K 8192 and 16384 (rows 4 and 8 KB apart) 1.00 and 1.08-1.12 of its time, K 2048 /
// 4096 / 7168 / 18432 0.80 / 0.85 / 0.88 / 0.88.
inline bool Int4GroupsTake(const QuantizedActs& a, const RawWeight& w) {
  return a.T >= Int4GroupMinTokens(w, a.K) && w.row_bytes % 4096 != 0;
}
// Tokens whose chains a chunked row group carries at once (their activations stay in L2).
constexpr int64_t kGroupTokensMax = 128;
// Tokens whose chains sit in L1 at once (8 KB) while a chunk's blocks pass.
constexpr int64_t kGroupTokens = 32;

// Per block of a chunk, the eight rows' F32 scales and U8 zero points (filled only where the
// weight has them: symmetric weights subtract 8 · Σq by a shift), lane i = row i.
struct Int4GroupScales {
  __m256 scale[kGroupChunkBlocks];
  __m256i zero[kGroupChunkBlocks];
};

// p[0], p[stride], .., p[7 * stride] in lanes 0-7 (16-bit lanes for F16 scales, 8-bit for U8
// zero points); lanes K on are inserted here.
template <typename T, int K = 1>
__attribute__((always_inline)) inline __m128i EightStrided(const T* p, int64_t stride,
                                                           __m128i v = _mm_setzero_si128()) {
  if constexpr (K == 1) v = _mm_cvtsi32_si128(p[0]);
  if constexpr (K == 8) {
    return v;
  } else {
    if constexpr (sizeof(T) == 2) {
      v = _mm_insert_epi16(v, p[K * stride], K);
    } else {
      v = _mm_insert_epi8(v, p[K * stride], K);
    }
    return EightStrided<T, K + 1>(p, stride, v);
  }
}

// Rows [r, r + 8), blocks [b0, b0 + n): their groups' scales (and zero points, where w has
// them) into c. With a group a block and no zero points (INT4 g32 symmetric), eight groups of
// the eight rows at a time, loaded as stored and transposed (one thread, in-process against
// group by group, with the path taken from two tokens: 0.75 / 0.86 / 0.88 / 0.92 of the time at
// 2 / 4 / 8 / 16 tokens, 512 x 1536); else a group at a time, copied to each of its blocks.
void GroupScales(const RawWeight& w, int64_t r, int64_t b0, int64_t n, Int4GroupScales* c) {
  const int64_t per_group = w.block_in / kActBlock, sc = w.scale_cols;
  int64_t i0 = 0;
  if (VectorGroupScales(w)) {
    for (; i0 + 8 <= n; i0 += 8) {
      const uint16_t* s16 = w.scale16 + r * sc + b0 + i0;
      __m128i x[8];
      for (int k = 0; k < 8; ++k) x[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s16 + k * sc));
      // Rows k (x[k]) x groups j: pairs of rows, then quads, then all eight per group.
      __m128i p[8], q[8];
      for (int k = 0; k < 4; ++k) {
        p[2 * k] = _mm_unpacklo_epi16(x[2 * k], x[2 * k + 1]);
        p[2 * k + 1] = _mm_unpackhi_epi16(x[2 * k], x[2 * k + 1]);
      }
      for (int k = 0; k < 2; ++k) {
        q[4 * k] = _mm_unpacklo_epi32(p[4 * k], p[4 * k + 2]);
        q[4 * k + 1] = _mm_unpackhi_epi32(p[4 * k], p[4 * k + 2]);
        q[4 * k + 2] = _mm_unpacklo_epi32(p[4 * k + 1], p[4 * k + 3]);
        q[4 * k + 3] = _mm_unpackhi_epi32(p[4 * k + 1], p[4 * k + 3]);
      }
      for (int j = 0; j < 4; ++j) {
        c->scale[i0 + 2 * j] = _mm256_cvtph_ps(_mm_unpacklo_epi64(q[j], q[4 + j]));
        c->scale[i0 + 2 * j + 1] = _mm256_cvtph_ps(_mm_unpackhi_epi64(q[j], q[4 + j]));
      }
    }
  }
  for (int64_t i = i0; i < n;) {
    const int64_t g = (b0 + i) / per_group, end = (g + 1) * per_group - b0 < n ? (g + 1) * per_group - b0 : n;
    const __m256 scale = _mm256_cvtph_ps(EightStrided(w.scale16 + r * sc + g, sc));
    for (int64_t k = i; k < end; ++k) c->scale[k] = scale;
    if (w.zero) {
      const __m256i zero = _mm256_cvtepu8_epi32(EightStrided(w.zero + r * sc + g, sc));
      for (int64_t k = i; k < end; ++k) c->zero[k] = zero;
    }
    i = end;
  }
}

// Chunk blocks [b0, b0 + n) of rows [r, r + 8) (scales c) against tokens [t, t + nt) of a:
// chains acc[j][b % 8] of token t + j (b0 a multiple of eight). Block by block: the rows'
// block transposed into eight vectors held in registers while the tokens pass, so that a
// block-token pair reads only the token's eight activation dwords, its scale, Σq and chain
// (Zen 3 loads two vectors a cycle; with the transposed weights stored and reloaded per
// token, ~21 loads held a pair to ~11 cycles). fetch: the next group's rows, asked for as
// these are read (null for none).
template <bool kZero>
void Int4GroupTokens(const RawWeight& w, int64_t r, const Int4GroupScales& c, int64_t b0, int64_t n,
                     const QuantizedActs& a, int64_t t, int64_t nt, const uint8_t* fetch, __m256 (*acc)[8]) {
  const int64_t nb = a.K / kActBlock, rb = w.row_bytes;
  const uint8_t* rows = static_cast<const uint8_t*>(w.data) + r * rb;
  const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0f);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = b0 + i;
    if (fetch && b % 4 == 0)
      for (int k = 0; k < 8; ++k) _mm_prefetch(reinterpret_cast<const char*>(fetch + k * rb + b * 16), _MM_HINT_T0);
    // The block's 16 bytes of the eight rows transposed: dword j of rows 0-7 in lanes 0-7 (its
    // bytes: columns 8j, 8j + 2, .. in the low nibbles, 8j + 1, .. in the high ones), split
    // into nibbles.
    __m256i d[4];
    EightRowsDwords(rows + b * 16, rb, d);
    const __m256i w0 = _mm256_and_si256(d[0], low4), w1 = _mm256_and_si256(_mm256_srli_epi16(d[0], 4), low4);
    const __m256i w2 = _mm256_and_si256(d[1], low4), w3 = _mm256_and_si256(_mm256_srli_epi16(d[1], 4), low4);
    const __m256i w4 = _mm256_and_si256(d[2], low4), w5 = _mm256_and_si256(_mm256_srli_epi16(d[2], 4), low4);
    const __m256i w6 = _mm256_and_si256(d[3], low4), w7 = _mm256_and_si256(_mm256_srli_epi16(d[3], 4), low4);
    // Block b's evens and odds (linear_kernels.h): beside its pair's, or, an odd count's last
    // block, its own evens then odds.
    const bool paired = (b | 1) < nb;
    const int64_t even = paired ? (b & ~int64_t{1}) * kActBlock + (b & 1) * 16 : b * kActBlock;
    const int64_t odd = even + (paired ? 32 : 16);
    const __m256 scale = c.scale[i];
    const __m256i zero = kZero ? c.zero[i] : _mm256_setzero_si256();  // unused without zero points
    const int chain = static_cast<int>(i % 8);
    // Tokens two at a time, each a running int16 sum whose broadcasts are made where they are
    // used (the barriers: GCC had hoisted all eight ahead and spilled the weights, the scale and
    // the ones, three loads more per token); the two sums are chains the core interleaves (one
    // thread, in-process against one token at a time: 0.92-0.99 of the time at 10-128 tokens).
    const auto finish = [&](__m256i s, int64_t j) {
      const __m256i dot = _mm256_madd_epi16(s, ones);
      const __m256i sq = BroadcastDword(a.sum + (t + j) * nb + b);
      const __m256i exact = _mm256_sub_epi32(dot, kZero ? _mm256_mullo_epi32(zero, sq) : _mm256_slli_epi32(sq, 3));
      const __m256 sd = _mm256_mul_ps(scale, _mm256_set1_ps(a.d[(t + j) * nb + b]));
      acc[j][chain] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), sd, acc[j][chain]);
    };
    int64_t j = 0;
    for (; j + 2 <= nt; j += 2) {
      const int8_t* qa = a.q + (t + j) * a.K;
      const int8_t* qb = qa + a.K;
      const int8_t *ea = qa + even, *oa = qa + odd, *eb = qb + even, *ob = qb + odd;
      __m256i sa = _mm256_maddubs_epi16(w0, BroadcastDword(ea));
      __m256i sb = _mm256_maddubs_epi16(w0, BroadcastDword(eb));
      const auto step = [&](__m256i wv, const int8_t* xa, const int8_t* xb) {
        __asm__("" : "+x"(sa), "+x"(sb));
        sa = _mm256_add_epi16(sa, _mm256_maddubs_epi16(wv, BroadcastDword(xa)));
        sb = _mm256_add_epi16(sb, _mm256_maddubs_epi16(wv, BroadcastDword(xb)));
      };
      step(w1, oa, ob);
      step(w2, ea + 4, eb + 4);
      step(w3, oa + 4, ob + 4);
      step(w4, ea + 8, eb + 8);
      step(w5, oa + 8, ob + 8);
      step(w6, ea + 12, eb + 12);
      step(w7, oa + 12, ob + 12);
      finish(sa, j);
      finish(sb, j + 1);
    }
    for (; j < nt; ++j) {
      const int8_t* q = a.q + (t + j) * a.K;
      const int8_t *e = q + even, *o = q + odd;
      __m256i s = _mm256_maddubs_epi16(w0, BroadcastDword(e));
      const auto step = [&](__m256i wv, const int8_t* x) {
        __asm__("" : "+x"(s));
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(wv, BroadcastDword(x)));
      };
      step(w1, o);
      step(w2, e + 4);
      step(w3, o + 4);
      step(w4, e + 8);
      step(w5, o + 8);
      step(w6, e + 12);
      step(w7, o + 12);
      finish(s, j);
    }
  }
}

// Rows [r, r + 8) against tokens [t0, t1) (at most kGroupTokensMax when the rows take more
// than one chunk): y[t, r + i] (+)= the twin's ((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7)).
// fetch: the next group's rows, read into cache with the first tokens (null for none).
template <bool kZero>
void Int4GroupRows(const QuantizedActs& a, const RawWeight& w, int64_t r, int64_t t0, int64_t t1, const uint8_t* fetch,
                   float* y, int64_t ldy, bool accumulate, Int4GroupScales* c, __m256 (*carry)[8]) {
  const int64_t nb = a.K / kActBlock;
  alignas(32) __m256 acc[kGroupTokens][8];
  for (int64_t b0 = 0; b0 < nb; b0 += kGroupChunkBlocks) {
    const int64_t n = nb - b0 < kGroupChunkBlocks ? nb - b0 : kGroupChunkBlocks;
    if (fetch) PrefetchLines(w.scale16 + (r + 8) * w.scale_cols, w.scale16 + (r + 16) * w.scale_cols);
    GroupScales(w, r, b0, n, c);
    const bool first = b0 == 0, last = b0 + n == nb;
    for (int64_t ts = t0; ts < t1; ts += kGroupTokens) {
      const int64_t nt = t1 - ts < kGroupTokens ? t1 - ts : kGroupTokens;
      for (int64_t j = 0; j < nt; ++j)
        for (int k = 0; k < 8; ++k) acc[j][k] = first ? _mm256_setzero_ps() : carry[ts - t0 + j][k];
      Int4GroupTokens<kZero>(w, r, *c, b0, n, a, ts, nt, ts == t0 ? fetch : nullptr, acc);
      for (int64_t j = 0; j < nt; ++j) {
        if (!last) {
          for (int k = 0; k < 8; ++k) carry[ts - t0 + j][k] = acc[j][k];
          continue;
        }
        const __m256* h = acc[j];
        const __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(h[0], h[4]), _mm256_add_ps(h[2], h[6])),
                                       _mm256_add_ps(_mm256_add_ps(h[1], h[5]), _mm256_add_ps(h[3], h[7])));
        float* o = y + (ts + j) * ldy + r;
        _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), v) : v);
      }
    }
  }
}

// Rows [r0, r1) against every token of a, eight rows at a time; returns the first row left
// (fewer than eight).
int64_t Int4GroupsOfRows(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                         bool accumulate) {
  alignas(32) Int4GroupScales scales;
  alignas(32) __m256 carry[kGroupTokensMax][8];
  // With chunked rows, no more tokens a pass than the chains carried.
  const int64_t max_tokens = a.K / kActBlock > kGroupChunkBlocks ? kGroupTokensMax : a.T;
  return EightRowGroups(a, w, r0, r1, max_tokens, [&](int64_t r, int64_t t0, int64_t t1, const uint8_t* fetch) {
    if (w.zero) {
      Int4GroupRows<true>(a, w, r, t0, t1, fetch, y, ldy, accumulate, &scales, carry);
    } else {
      Int4GroupRows<false>(a, w, r, t0, t1, fetch, y, ldy, accumulate, &scales, carry);
    }
  });
}

template <GroupStep kStep>
void Int4Rows(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
              bool accumulate) {
  auto store = [&](int64_t r, int64_t t, float v) {
    float* o = y + t * ldy + r;
    *o = accumulate ? *o + v : v;
  };
  // Each row fetches the one kAhead rows on, weights and groups (a row's scales and zero
  // points sit apart from its weights).
  constexpr int64_t kAhead = 8;
  auto ahead = [&](int64_t r) -> const uint8_t* {
    if (r + kAhead >= w.rows) return nullptr;
    const int64_t n = r + kAhead, sc = w.scale_cols;
    PrefetchLines(w.scale16 + n * sc, w.scale16 + (n + 1) * sc);
    if (w.zero) PrefetchLines(w.zero + n * sc, w.zero + (n + 1) * sc);
    return static_cast<const uint8_t*>(w.data) + n * w.row_bytes;
  };
  if (a.T == 1) {  // decode: each weight read once
    const int64_t token = 0;
    for (int64_t r = r0; r < r1; ++r) {
      float out;
      Int4Row<1, kStep>(w, r, a, &token, ahead(r), &out);
      store(r, 0, out);
    }
    return;
  }
  // Several tokens: eight rows at a time (Int4GroupsOfRows), the rest a row at a time, which
  // (in L1) meets two tokens at a time, a block of tokens (whose activations stay in L2) at a
  // time.
  if (Int4GroupsTake(a, w)) r0 = Int4GroupsOfRows(a, w, r0, r1, y, ldy, accumulate);
  int64_t block = (256 * 1024) / a.K;
  block = block < 2 ? 2 : block & ~int64_t{1};
  for (int64_t t0 = 0; t0 < a.T; t0 += block) {
    const int64_t t1 = a.T - t0 < block ? a.T : t0 + block;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* next = t0 == 0 ? ahead(r) : nullptr;
      for (int64_t t = t0; t < t1; t += 2) {
        float out[2];
        if (t + 1 < t1) {
          const int64_t tokens[2] = {t, t + 1};
          Int4Row<2, kStep>(w, r, a, tokens, t == t0 ? next : nullptr, out);
          store(r, t, out[0]);
          store(r, t + 1, out[1]);
        } else {
          Int4Row<1, kStep>(w, r, a, &t, t == t0 ? next : nullptr, out);
          store(r, t, out[0]);
        }
      }
    }
  }
}

}  // namespace

void QuantizeActsAvx2(const float* x, int64_t K, bool nibble_order, int8_t* q, float* d, int32_t* sum) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
  const int64_t nb = K / kActBlock;
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kActBlock;
    // Where the block's 32 bytes go: whole, or (INT4, in a pair of blocks) its evens and odds
    // apart, each next to the other block's (linear_kernels.h).
    int8_t* evens = q + b * kActBlock;
    int8_t* odds = evens + 16;
    if (nibble_order && (b | 1) < nb) {
      evens = q + (b & ~int64_t{1}) * kActBlock + (b & 1) * 16;
      odds = evens + 32;
    }
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
      _mm_storeu_si128(reinterpret_cast<__m128i*>(evens), _mm_setzero_si128());
      _mm_storeu_si128(reinterpret_cast<__m128i*>(odds), _mm_setzero_si128());
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
    _mm_storeu_si128(reinterpret_cast<__m128i*>(evens), _mm256_castsi256_si128(bytes));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(odds), _mm256_extracti128_si256(bytes, 1));
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
    if (Int8GroupsTake(a, w)) r0 = Int8GroupsOfRows(a, w, r0, r1, y, ldy, accumulate);
    Int8Rows(a, w, r0, r1, y, ldy, accumulate);
  } else if (w.kind == WeightKind::kInt4) {
    switch (GroupStepFor(w.block_in / kActBlock)) {
      case GroupStep::kOne: Int4Rows<GroupStep::kOne>(a, w, r0, r1, y, ldy, accumulate); return;
      case GroupStep::kTwo: Int4Rows<GroupStep::kTwo>(a, w, r0, r1, y, ldy, accumulate); return;
      case GroupStep::kFour: Int4Rows<GroupStep::kFour>(a, w, r0, r1, y, ldy, accumulate); return;
      case GroupStep::kWhole: Int4Rows<GroupStep::kWhole>(a, w, r0, r1, y, ldy, accumulate); return;
      case GroupStep::kEach: Int4Rows<GroupStep::kEach>(a, w, r0, r1, y, ldy, accumulate); return;
    }
  }
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
void QuantizeActsAvx2(const float*, int64_t, bool, int8_t*, float*, int32_t*) {}
void QLinearAvx2(const QuantizedActs&, const RawWeight&, int64_t, int64_t, float*, int64_t, bool) {}
}  // namespace dsv3::cpu

#endif
