// The contract between linear.cc (dispatch, threading) and the instruction-set-specific
// kernel files. Only plain structs and pointers cross it: the ISA files are compiled with
// -mavx2 etc., and sharing inline functions or templates with them would let the linker pick
// an AVX2 copy for code that must also run on older CPUs.
#pragma once

#include <cstdint>

namespace dsv3::cpu {

enum class WeightKind : int { kF32, kBF16, kF16, kF8E4M3, kI8, kInt4, kUnsupported };

// A weight [rows, cols] as raw pointers (formats as in ops.h's WeightMatrix); row r starts at
// data + r * row_bytes. FP8 and INT8 carry F32 block scales scale[(r / block_out) * scale_cols
// + c / block_in]; INT4 packs two columns per byte with F16 group scales scale16[r *
// scale_cols + c / block_in] and optional U8 zero points (8 when absent).
struct RawWeight {
  WeightKind kind = WeightKind::kUnsupported;
  const void* data = nullptr;
  const float* scale = nullptr;
  const uint16_t* scale16 = nullptr;
  const uint8_t* zero = nullptr;
  int64_t rows = 0, cols = 0, scale_cols = 0, block_out = 128, block_in = 128, row_bytes = 0;
};

// Token counts up to GemvMaxTokens(w) use the GEMV kernel (weights streamed once, converted in
// registers, several tokens per conversion); larger ones use the register-blocked GEMM (same
// summation order, so the same bits). F32 and FP8 take 8 (a decode step of eight sequences,
// configs/eval/full.yaml): there the GEMV beats the GEMM's float32 panel (one thread, 4096 x
// 1536: BF16 1.8x, FP8 1.1x; at 16 tokens FP8's GEMM is ahead). BF16 and F16 take 48: their
// conversion is a shift or one vcvtph2ps, and the GEMV's 4-row tile, 12 KB as stored, stays in
// L1 beside three tokens' activations where the GEMM's 24 KB float32 rows do not (2 threads,
// BF16 512 x 1536: GEMV 1.36x at 9 tokens, 1.27x at 16, 1.10x at 48, 0.97x at 96; 4096 x
// 1536: 1.13x at 32, 0.97x at 64): a prefill's routed experts (~48 tokens each at 512) and
// decode batches of up to 48 sequences (rechecked on Zen 3, AVX2, BM_ExpertStream BF16 at 48
// tokens, four alternated rounds: GEMV 128.4 / 118.5, GEMM 124.7 / 110.1 GFLOP/s best / median).
// INT8 and INT4 with float32 activations take 4: their dequantization in registers costs more
// per weight, and at 8 tokens the panel, converted once, wins (INT4 g32 16384 x 1536, 2
// threads: GEMV 1.5x slower).
// With the avx512 family's GEMM (twice the FMAs per instruction, GemmPanel8Avx512) F16 takes 8
// as well: bench-v3-mini BF16 pp512 on Zen 5, alternated, 282 / 297 -> 307 / 327 / 326 / 342
// tok/s, while a decode step of eight sequences still did better on the GEMV (tg16 x8: GEMM at
// 8 tokens 68 / 55, GEMV 92 / 69 tok/s). BF16 takes 3 there: its GEMM now widens the rows as
// stored (GemmBf16Rows8Avx512, no panel), and the GEMV converts each weight again for every
// pass of three tokens. 16384 x 1536 BF16, 2 threads, Zen 5, two rounds, GEMV / GEMM: 2 tokens
// 146-159 / 106-125 GFLOP/s, 3 197-200 / 135-171, 4 163-164 / 183-201, 6 191-211 / 208-232, 8
// 169-200 / 227-235; bench-v3-mini BF16 tg32 x8, alternated runs, 114.4 / 114.7 -> 122.2 /
// 122.6 tok/s (the lm_head's eight tokens 2.37-2.39 -> 1.85-1.98 ms a token).
constexpr int64_t kGemvMaxTokens = 8;
constexpr int64_t kGemvMaxTokensBf16Avx512 = 3;
constexpr int64_t kGemvMaxTokens16 = 48;
constexpr int64_t kGemvMaxTokensInt = 4;
inline int64_t GemvMaxTokens(const RawWeight& w, bool avx512_gemm = false) {
  switch (w.kind) {
    case WeightKind::kI8:
    case WeightKind::kInt4: return kGemvMaxTokensInt;
    case WeightKind::kBF16: return avx512_gemm ? kGemvMaxTokensBf16Avx512 : kGemvMaxTokens16;
    case WeightKind::kF16: return avx512_gemm ? kGemvMaxTokens : kGemvMaxTokens16;
    default: return kGemvMaxTokens;
  }
}

// Deep matrices (K > kGemmDeepK) on the AVX-512 tiles (`wide`): GemmPanel8Avx512 walks their
// columns kGemmChunkColumns at a time for a whole block of tokens, so a tile's part stays in L1
// while the tokens pass and only their activations come from L2. Their panels hold at least
// one eight-row tile and their token blocks kGemmDeepTokens: by the 384 KiB / 256 KiB rule a
// 16384-deep o_proj (DeepSeek-V3's) got 4-row panels, all on the AVX2 tiles, and 4-token blocks.
constexpr int64_t kGemmDeepK = 2048;
constexpr int64_t kGemmChunkColumns = 512;
constexpr int64_t kGemmDeepTokens = 32;
inline bool GemmDeep(int64_t K, bool wide) { return wide && K > kGemmDeepK; }
// Rows the GEMM converts to float32 at once (a panel of about 384 KiB, so that it and a block
// of activations stay in L2), a multiple of 4 in [4, 64] (deep and wide: at least 8).
inline int64_t GemmPanelRows(int64_t K, bool wide = false) {
  const int64_t rows = (384 * 1024) / (((K + 7) / 8) * 8 * 4) / 4 * 4;
  const int64_t least = GemmDeep(K, wide) ? 8 : 4;
  return rows < least ? least : rows > 64 ? 64 : rows;
}
// Tokens the GEMM meets a panel with at once (their activations stay in L2 next to it), >= 3.
inline int64_t GemmTokenBlock(int64_t K, bool wide = false) {
  if (GemmDeep(K, wide)) return kGemmDeepTokens;
  const int64_t tokens = (256 * 1024) / (K * 4 > 0 ? K * 4 : 1);
  return tokens < 3 ? 3 : tokens;
}
// FP8 panels may be twice as tall (up to one 128-row scale block), so that each block's
// activations are scaled once per token block rather than once per panel; deep and wide, 64
// rows (4 MiB at K = 16384: walked a 512-column part at a time, a panel need not stay in L2,
// and each panel scales a token block's 2 MiB of activations once: 512 x 16384 FP8, 64 and 256
// tokens, one thread, 16-row panels 98-110 GFLOP/s, 64-row 128-143).
constexpr int64_t kGemmDeepFp8Rows = 64;
inline int64_t GemmFp8PanelRows(int64_t K, bool wide = false) {
  return GemmDeep(K, wide) ? kGemmDeepFp8Rows : 2 * GemmPanelRows(K, wide);
}
// Floats of per-thread scratch the GEMM needs for K features (either tile family): the
// converted panel, and one token block of FP8's scaled activations.
inline int64_t GemmScratchFloats(int64_t K) {
  const int64_t panel = GemmFp8PanelRows(K, true), block = GemmTokenBlock(K, false), deep = GemmTokenBlock(K, true);
  return (panel + (block > deep ? block : deep)) * ((K + 7) / 8) * 8;  // wide panels are the taller
}

// ---- Int8 activations for INT8 and INT4 weights (linear_q8.cc, linear_q8_avx2.cc) -------------
// As llama.cpp's Q8_0: each token's activations are quantized in blocks of kActBlock columns,
// d = amax / 127 and q = x · (127 / amax) rounded to nearest-even, |q| <= 127 (all zero when
// amax is 0; a block holding a NaN or Inf gets q = 0 and d = NaN, so its outputs are NaN), plus
// sum = Σq per block. For INT4 weights the q are stored in the order the kernels unpack
// nibbles: each block's 16 even columns and its 16 odd ones apart, and blocks in pairs, as
// 32 bytes of a weight row hold them: (b, b+1) as b's evens, b+1's evens, b's odds, b+1's
// odds (an odd count's last block alone: its evens, then its odds).
// The product is then defined without reference to SIMD width: per block b the integer
// I_b = Σ_k wq[r,k]·q[t,k] (INT4: (u - z)·q) is exact, and c = fma(float(I_b), s(r,b)·d(t,b), c)
// over b in order from 0 (s: the weight's scale for the block). INT8 has one such chain c, the
// output; INT4 has eight, block b on chain c_(b mod 8), and the output is
// ((c0 + c4) + (c2 + c6)) + ((c1 + c5) + (c3 + c7)). The scalar twin and the AVX2 kernels
// compute exactly that, so they agree to the bit and with any token count.
constexpr int64_t kActBlock = 32;
struct QuantizedActs {
  const int8_t* q = nullptr;     // [T, K]
  const float* d = nullptr;      // [T, K / kActBlock]
  const int32_t* sum = nullptr;  // [T, K / kActBlock]
  int64_t T = 0, K = 0;
  // The tokens' INT4 activations as the AVX-512 decode steps take them (FourBlockActsAvx512),
  // FourBlockBytes(K) per token, 64-byte aligned: LinearInput::Prepare makes them for up to
  // kInt4DecodeTokensMax tokens wherever the CPU has AVX-512 VNNI. Without them QLinearAvx512
  // hands those tokens to QLinearAvx2 (the same bits).
  const int8_t* fours = nullptr;
};
// Whether w can take int8 activations: INT8 or INT4 with whole blocks (K and block_in
// multiples of kActBlock, scales present).
bool TakesInt8Activations(const RawWeight& w);
// Whether w's kernels want the nibble order (INT4).
inline bool WantsNibbleOrder(const RawWeight& w) { return w.kind == WeightKind::kInt4; }
// One token: x[K] (K a multiple of kActBlock) into q[K], d[K/32], sum[K/32].
void QuantizeActsReference(const float* x, int64_t K, bool nibble_order, int8_t* q, float* d, int32_t* sum);
void QuantizeActsAvx2(const float* x, int64_t K, bool nibble_order, int8_t* q, float* d, int32_t* sum);
// y[t, r] (+)= the product above for rows [r0, r1) and every token of a.
void QLinearReference(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                      bool accumulate);
void QLinearAvx2(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                 bool accumulate);
// One token's nibble-order q[K] regrouped for the AVX-512 INT4 decode: for blocks 4v .. 4v+3,
// 64 bytes of their evens then 64 of their odds (the pair order holds each two blocks' evens
// then their odds); an odd count's last block is left out (the kernel sums it alone), and the
// groups run to whole steps of sixteen blocks, zero past K. out: FourBlockBytes(K) bytes,
// 64-byte aligned.
inline int64_t FourBlockBytes(int64_t K) { return (K / kActBlock + 15) / 16 * 512; }
void FourBlockActsAvx512(const int8_t* q, int64_t K, int8_t* out);
// The same with AVX-512 VNNI (linear_q8_avx512.cc; CpuFeatures::HasAvx512VnniSet), the same bits.
// scratch: QLinearAvx512ScratchBytes(w, T) bytes of this thread's, 64-byte aligned (null when 0).
void QLinearAvx512(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                   bool accumulate, uint8_t* scratch);
// INT8 and INT4 weights meet QGemmMinTokens(w) tokens or more in a GEMM whose vectors are
// sixteen rows (vpdpbusd's unsigned operand: INT8 w + 128, INT4 the nibble u; a column quad of
// each) against one token's four activations broadcast, so each lane is one output's exact
// block sum, with no sums across lanes. The weights are stored a row after another, so it
// repacks kQGemmRows rows at a time into the scratch (INT8 a byte a weight, INT4 its bytes as
// stored, transposed, its nibbles split as the GEMM reads them; then each block's
// scales and INT4 zero points). Where it starts to win, 64 experts x (gate, up, down) from
// DRAM, 2 threads, alternated with the tiles: INT8 at 3 tokens (8.5 -> 8.0 ms, 8 tokens 13.2
// -> 7.2; at 2 the tiles streamed faster, 4.3-4.5 against 5.1-5.5, and the one-token steps
// taken a token at a time faster still: Int8DecodeTokens); INT4, whose one-token steps
// stream well, at 9: up to 8 tokens take those steps with each step's weights unpacked once
// for four tokens (bench-v3-mini-int4-h tg32 x8, alternated: 209 / 215 tok/s through the GEMM,
// 233 / 234 so; at 12 tokens even, at 16 the GEMM 276 / 289 against 253 / 258). INT4 rows of
// fewer than 32 blocks that end in a partial step of sixteen (bench-v3-mini's q_b, K = 384, and
// o_proj, K = 768) take the GEMM from 3 tokens too: those steps cost the one-token kernels as
// much as whole ones. 2 threads from L2, the two alternated in one process, decode steps /
// GEMM: 1152 x 384 3 tokens 24.4 / 17.9 us, 8 tokens 52.7 / 23.9; 1536 x 768 3 tokens 42.5 /
// 38.2, 8 tokens 99.1 / 54.8 (2 tokens even; rows of whole steps break even later: 1536 x 512
// at 4 tokens, 1536 x 1024 between 4 and 6, 16384 x 1536 at 6-8, where the tg32 x8 figures above
// left them); tg32 INT4-h, alternated per repetition, two rounds: x8 241.4 / 218.5 -> 246.5 /
// 222.7 tok/s, x4 214.3 / 215.8 -> 220.6 / 215.1.
constexpr int64_t kQGemmRows = 32;
inline int64_t QGemmMinTokens(const RawWeight& w) {
  if (w.kind != WeightKind::kInt4) return 3;
  const int64_t blocks = w.cols / kActBlock;
  return blocks % 16 != 0 && blocks < 32 ? 3 : 9;
}
// INT4 with 2 .. this many tokens (a batch decoding together, below QGemmMinTokens) takes the
// one-token decode steps, each step's weights unpacked once for up to four tokens, or for rows
// of one step a token at a time (Int4DecodeTokens); the AVX2 pairs of tokens had taken them.
constexpr int64_t kInt4DecodeTokensMax = 8;
inline int64_t QLinearAvx512ScratchBytes(const RawWeight& w, int64_t T) {
  if ((w.kind != WeightKind::kI8 && w.kind != WeightKind::kInt4) || T < QGemmMinTokens(w)) return 0;
  return kQGemmRows * w.cols + kQGemmRows * 8 * (w.cols / kActBlock);
}
// Int8 products per second (two per multiply-add, as FLOPs count) of a register-only vpdpbusd
// loop on this thread for about `seconds` (linear_avx512.cc): the int8 peak `dsv3 bench`
// compares them against.
double Int8PeakOpsAvx512(double seconds);
// The same for AVX2's int8 products, a vpmaddubsw loop (linear_avx2.cc): 32 products an
// instruction where a 256-bit FMA does 8. (Exact int32 sums need more than that instruction,
// a vpmaddwd per one to eight of them and adds, so kernels reach a smaller share of this peak
// than of the FMAs'.)
double Int8PeakOpsAvx2(double seconds);

// --- BF16 weights x bf16 activations (LinearActivations::kBf16) ---
// Each token's activations are rounded to bf16 once (RoundToBf16: to nearest, ties to even,
// subnormals to zero, as vcvtneps2bf16 does) into rows of Bf16ActCols(K) = roundup(K, 32),
// zero-padded. y[t, r] is then vdpbf16ps's sum: sixteen float32 lanes, lane i taking columns
// k0 + 2i + 1 and then k0 + 2i of each 32 columns k0 in order (each product exact, each
// addition rounded once, bf16 subnormals read as zero, subnormal sums flushed to zero),
// columns past K multiplying zero weights, and the lanes summed as
// ((l0+l8) + (l4+l12)) ... : h[i] = l[i] + l[i+8], q[i] = h[i] + h[i+4], (q0 + q2) + (q1 + q3).
// The scalar twin (linear_bf16.cc) computes exactly that; linear_bf16_avx512.cc with AVX-512
// BF16 (CpuFeatures::HasAvx512Bf16Set), the same bits, for any token count.
inline int64_t Bf16ActCols(int64_t K) { return (K + 31) / 32 * 32; }
uint16_t RoundToBf16(float v);
// out[Bf16ActCols(K)]: x[0, K) rounded, then zeros. The Avx512 one is vcvtne2ps2bf16, the same bits.
void RoundActsToBf16(const float* x, int64_t K, uint16_t* out);
void RoundActsToBf16Avx512(const float* x, int64_t K, uint16_t* out);
// y[t, r] (+)= the sum above for rows [r0, r1) of a BF16 w and T tokens of xh.
void Bf16LinearReference(const uint16_t* xh, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                         int64_t ldy, bool accumulate);
void Bf16LinearAvx512(const uint16_t* xh, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                      int64_t ldy, bool accumulate);
// Bf16LinearAvx512 takes more than one token's rows kBf16TileRows at a time (callers cut
// pieces in multiples of it: a shorter last tile runs at about half the speed).
constexpr int64_t kBf16TileRows = 6;
// FP8 weights the same way, by 128-row scale block (or block_out): the block's activations
// x · (scale · 256) rounded to bf16 as above (one float32 product, then RoundToBf16), against
// the weights as bf16 u = e4m3(q) · 2^-8 (exact: Fp8Format's vcvtph2ps values, so 0x7f reads
// as 480 · 2^-8 as it does there), each (row, token) then the sum above. Needs scales and
// block_in % 16 == 0 (TakesBf16Fp8). scratch: Fp8Bf16ScratchWords(T, K) words.
inline bool TakesBf16Fp8(const RawWeight& w) {
  return w.kind == WeightKind::kF8E4M3 && w.scale != nullptr && w.block_in > 0 && w.block_in % 16 == 0 &&
         w.block_out > 0;
}
constexpr int64_t kFp8Bf16PanelRows = 16;
inline int64_t Fp8Bf16ScratchWords(int64_t T, int64_t K) { return (T + kFp8Bf16PanelRows) * Bf16ActCols(K); }
void Fp8Bf16LinearReference(const float* x, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                            int64_t ldy, bool accumulate);
// byte_permutes: the CPU has CpuFeatures::avx512_vbmi (a decode step's rows convert by table
// lookups; the same words).
void Fp8Bf16LinearAvx512(const float* x, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                         int64_t ldy, bool accumulate, uint16_t* scratch, bool byte_permutes);
// bf16 FLOPs per second (four per lane: two products, two additions) of a register-only
// vdpbf16ps loop on this thread for about `seconds` (linear_bf16_avx512.cc).
double Bf16PeakFlopsAvx512(double seconds);
// MultiQueryScoresTwoPart (ops.h) over a bf16 cache with the queries rounded to bf16 as above
// (a decode step's scores under LinearActivations::kBf16): scores[m * lds + s] is vdpbf16ps's
// sum over eight lanes, lane j taking columns c + 2j + 1 and then c + 2j of each 16 columns c
// of part one in order, then of part two (a part's last eight columns padded with zero
// products; each product exact, each addition rounded once, bf16 subnormals read as zero,
// subnormal sums flushed to zero), the lanes summed as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) +
// (l6 + l7)). Needs C1 and C2 multiples of 8 (Bf16ScoresTake). The twin (linear_bf16.cc)
// computes exactly that; the AVX-512 BF16 form (attention_bf16_avx512.cc) gives its bits, two
// queries and four keys a vector each step.
inline bool Bf16ScoresTake(int64_t C1, int64_t C2) { return C1 % 8 == 0 && C2 % 8 == 0; }
void Bf16QueryScoresReference(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                              int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                              int64_t lds);
void Bf16QueryScoresAvx512(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                           int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                           int64_t lds);
// MultiQueryWeightedSum (ops.h) over a bf16 cache with the probabilities rounded to bf16 (the
// same step's weighted sums): out[m * C + c] is one vdpbf16ps lane's chain over the rows in
// pairs, adding p[s + 1] · vals[s + 1][c] and then p[s] · vals[s][c] for s = 0, 2, 4 ... (a last
// odd row paired with zeros), each product exact and each addition rounded once, bf16
// subnormals read as zero and subnormal sums flushed to zero. Needs C % 16 == 0
// (Bf16WeightedSumTakes). Twin in linear_bf16.cc; the AVX-512 BF16 form in
// attention_bf16_avx512.cc, sixteen columns a vector, interleaving each pair of rows by one
// permute.
inline bool Bf16WeightedSumTakes(int64_t C) { return C % 16 == 0; }
void Bf16WeightedSumReference(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                              float* out);
void Bf16WeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                           float* out);

// --- AVX2 + FMA + F16C (linear_avx2.cc) ---
// Whether the AVX2 kernels handle this weight (dtype and block shape).
bool Avx2Supports(const RawWeight& w);
// y[t, r] (+)= x[t]·W[r] for rows [r0, r1), T <= GemvMaxTokens(w). x rows have stride ldx.
void GemvAvx2(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate);
// y[t, r] (+)= x[t]·W[r] for rows [r0, r1), any T; scratch holds GemmScratchFloats(K) floats.
// Bit-identical to GemvAvx2 for every row and token. avx512_tiles: eight panel rows at a time
// go to GemmPanel8Avx512 (CpuFeatures::HasAvx512VnniSet), the same bits.
void GemmAvx2(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate, float* scratch, bool avx512_tiles = false);
// The GEMM's products for eight rows of its float32 panel against T tokens, with AVX-512: two
// rows per vector, each lane on the chain of GemmAvx2's microkernel, so the same bits
// (linear_avx512.cc). The panel is paired: rows 2p and 2p+1 (roundup(K, 8) columns each,
// zero-padded) take turns eight columns at a time, from wt + 2p·roundup(K, 8).
void GemmPanel8Avx512(const float* wt, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                      bool accumulate);
// GemmPanel8Avx512 for eight BF16 rows as stored (w, K columns each, K % 8 == 0), each pair's
// eight columns widened to float32 in registers: the panel's values, so the same bits, with no
// panel to write. Meanwhile it fetches `lines` 64-byte lines from `ahead` into L2, a share in
// each pass of six tokens, spread over the pass's columns.
void GemmBf16Rows8Avx512(const uint16_t* w, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                         bool accumulate, const char* ahead, int64_t lines);
// Rows [r, r + 2·pairs) of w as GemmAvx2's paired panel rows (pair p from dst + 2p·Kp), the
// values its own converters write, with AVX-512 (linear_avx512.cc), for the weights
// PanelPairsAvx512Takes: BF16, FP8, INT8 and INT4 with K and the groups whole 8-column steps.
bool PanelPairsAvx512Takes(const RawWeight& w);
void ConvertPanelPairsAvx512(const RawWeight& w, int64_t r, int pairs, float* dst, int64_t Kp);
// WeightRowScores / WeightRowsWeightedSum (ops.h) for weights Avx2Supports with cols % 8 == 0:
// the rows converted in registers to the values DequantizeRows (ops.h) writes, with the bits
// MultiQueryScoresAvx2 / MultiQueryWeightedSumAvx2 give (M = 1) over those float32 rows.
void WeightRowScoresAvx2(const float* q, const RawWeight& w, int64_t r0, int64_t S, float* scores);
void WeightRowsWeightedSumAvx2(const float* p, const RawWeight& w, int64_t r0, int64_t S, float* out);
// The same with 512-bit vectors, the same bits (linear_avx512.cc; CpuFeatures::HasAvx512VnniSet),
// for M queries at once (query m's q or p at m · ldq, its scores or out at m · lds): each
// query's bits are those of its own call, each weight vector converted once for up to four
// queries. BF16, FP8, INT8 and INT4 weights whose scale groups hold whole 16-column vectors;
// false (nothing written) for the others. byte_permutes: the CPU has CpuFeatures::avx512_vbmi
// (FP8's scores convert as the FP8 decode GEMV does; the same bits).
bool WeightRowScoresAvx512(const float* q, int64_t M, int64_t ldq, const RawWeight& w, int64_t r0, int64_t S,
                           float* scores, int64_t lds, bool byte_permutes);
bool WeightRowsWeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const RawWeight& w, int64_t r0, int64_t S,
                                 float* out, int64_t ldo);
// MultiQueryScores / MultiQueryWeightedSum (ops.h) with AVX2 + FMA (attention_avx2.cc).
void MultiQueryScoresAvx2(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                          float* scores, int64_t lds, bool accumulate);
void MultiQueryScoresTwoPartAvx2(const float* q1, int64_t ldq1, const float* keys1, int64_t C1, const float* q2,
                                 int64_t ldq2, const float* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                                 int64_t lds);
void MultiQueryWeightedSumAvx2(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                               float* out);
// The same over a bf16 cache's rows (bfloat16 bits), widened in registers: the bits the float32
// forms give over the rows WidenBf16 writes.
void MultiQueryScoresTwoPartAvx2(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                                 int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                                 int64_t lds);
void MultiQueryWeightedSumAvx2(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                               float* out);
// WidenBf16 (ops.h) eight values a step (attention_avx2.cc), and sixteen (attention_avx512.cc).
void WidenBf16Avx2(const uint16_t* in, int64_t n, float* out);
void WidenBf16Avx512(const uint16_t* in, int64_t n, float* out);
// The same with AVX-512, the AVX2 bits (attention_avx512.cc; CpuFeatures::HasAvx512VnniSet).
void MultiQueryScoresAvx512(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                            float* scores, int64_t lds, bool accumulate);
void MultiQueryScoresTwoPartAvx512(const float* q1, int64_t ldq1, const float* keys1, int64_t C1, const float* q2,
                                   int64_t ldq2, const float* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                                   int64_t lds);
void MultiQueryWeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                                 float* out);
void MultiQueryScoresTwoPartAvx512(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                                   int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S,
                                   float* scores, int64_t lds);
void MultiQueryWeightedSumAvx512(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                                 float* out);
// MatMul (ops.h) with AVX2 + FMA (matmul_avx2.cc): b is MatMulRhs' strips, each [bK, 16].
void MatMulAvx2(const float* a, int64_t M, int64_t K, int64_t lda, const float* b, int64_t bK, int64_t N, float* c,
                int64_t ldc);
// MatMulAvx2's result, bit for bit, on 512-bit vectors (matmul_avx512.cc; CpuFeatures::HasAvx512VnniSet).
void MatMulAvx512(const float* a, int64_t M, int64_t K, int64_t lda, const float* b, int64_t bK, int64_t N, float* c,
                  int64_t ldc);
// GemvAvx2's result, bit for bit, with AVX-512 where it pays (linear_avx512.cc: FP8, one token;
// the rest is GemvAvx2). CpuFeatures::HasAvx512VnniSet; byte_permutes: the CPU has
// CpuFeatures::avx512_vbmi as well (FP8 converts with vpermt2b, same bits).
void GemvAvx512(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                int64_t ldy, bool accumulate, bool byte_permutes);
// GemmAvx2 with this thread's scratch (linear.cc: the scratch is a std::vector, which the ISA
// files do not use).
void GemmAvx2WithScratch(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1,
                         float* y, int64_t ldy, bool accumulate, bool avx512_tiles = false);
// FmaPeakFlopsAvx2 with 512-bit FMAs (linear_avx512.cc): the matrix peak of the avx512 family.
double FmaPeakFlopsAvx512(double seconds);
// ExpShiftedSum (ops.h) with AVX2 + FMA (attention_avx2.cc), and with sixteen lanes, the same
// bits (attention_avx512.cc: each exp the same operations, the sum the same 8-lane chain).
float ExpShiftedSumAvx2(float* x, int64_t n, float shift);
float ExpShiftedSumAvx512(float* x, int64_t n, float shift);
// Σ exp(x[i] - shift) in double, each exp ExpShiftedSumAvx2's, x left as it is
// (LogSumExpShifted's chunks; attention_avx2.cc).
double SumExpShiftedAvx2(const float* x, int64_t n, float shift);
// The same with sixteen-lane exponentials, the same bits (attention_avx512.cc).
double SumExpShiftedAvx512(const float* x, int64_t n, float shift);
// SoftmaxInPlace (ops.h) with AVX2 + FMA, the same bits (attention_avx2.cc), and with the
// exponentials and the normalization on sixteen lanes, the same bits (attention_avx512.cc).
void SoftmaxAvx2(float* x, int64_t n, float scale);
void SoftmaxAvx512(float* x, int64_t n, float scale);
// ScaleAndMax (ops.h) with AVX2: the same products and maximum (attention_avx2.cc).
float ScaleMaxAvx2(float* x, int64_t n, float scale);
// SiluMul (ops.h) with AVX2 + FMA, its exp ExpShiftedSumAvx2's (attention_avx2.cc).
void SiluMulAvx2(float* gate, const float* up, int64_t n);
// AddScaled (ops.h) with AVX2, the same bits (attention_avx2.cc).
void AddScaledAvx2(float* y, const float* x, float a, int64_t n);
// FLOPs of a register-only FMA loop on this thread for about `seconds` (the matrix peak that
// the roofline in `dsv3 bench` compares prefill against).
double FmaPeakFlopsAvx2(double seconds);
// Σ p[0:n) (wrapping), read with 256-bit loads as the decode kernels read weights: the read
// bandwidth probe's loop (with 64-bit scalar loads it read 8-15% below what the GEMVs reach).
uint64_t ReadSumAvx2(const uint64_t* p, int64_t n);

}  // namespace dsv3::cpu
