// CPU operators the model is written in. They see plain arrays and weight views, never the
// model: the same ops serve the forward pass, training and the tests.
// All compute is float32; weights may be stored F32, BF16, F16, FP8 (e4m3 with block scales),
// INT8 or packed INT4 (with group scales) and are converted in small tiles next to the
// arithmetic, never expanded whole.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "engine/base/line_aligned.h"
#include "engine/tensor/tensor.h"

namespace dsv3 {

// A projection weight [out, in] as the checkpoint stores it. The storage format follows from
// w.dtype (engine/quant/int_quant.h and config.json's quantization_config spell it out):
//   F32 / BF16 / F16  plain values.
//   F8_E4M3  w[i,j] = e4m3(q[i,j]) * scale_inv[i/block_out, j/block_in]     (DeepSeek-V3 release)
//   I8       w[i,j] = q[i,j] * scale[i/block_out, j/block_in], scale F32     (dsv3_int8)
//   U8       int4, two per byte: byte [i, j/2] holds column j in its low nibble when j is even,
//            in its high nibble when j is odd; u in [0,15]; w[i,j] = (u - z) * scale[i, j/block_in]
//            with scale F16 and z = zero[i, j/block_in] (U8) or 8 when `zero` is empty
//            (symmetric). block_out is 1.                                      (dsv3_int4)
// block_in is the real group width for this matrix (a per-channel scale has block_in == in).
struct WeightMatrix {
  TensorView w;          // [out, in]; U8 (int4): [out, ceil(in/2)]
  TensorView scale_inv;  // F8_E4M3 only: F32 [ceil(out/block_out), ceil(in/block_in)]
  int64_t block_out = 128, block_in = 128;
  TensorView scale;      // I8: F32, U8 (int4): F16; [ceil(out/block_out), ceil(in/block_in)]
  TensorView zero;       // U8 (int4) asymmetric only: U8 zero points, same shape as scale
  int64_t in_features = 0;  // U8 (int4) only: logical columns (w has ceil(in/2))

  bool empty() const { return w.empty(); }
  int64_t rows() const { return w.shape[0]; }
  int64_t cols() const { return w.dtype == DType::kU8 ? in_features : w.shape[1]; }
};

// y[T, out] = x[T, in] · Wᵀ, accumulated in float32. Parallel over output rows.
void Linear(const float* x, int64_t T, const WeightMatrix& w, float* y);
// Same, accumulating into y (y += x·Wᵀ).
void LinearAccumulate(const float* x, int64_t T, const WeightMatrix& w, float* y);

// One product of LinearSameInput: y[T, w->rows()] = x · w->ᵀ.
struct LinearOutput {
  const WeightMatrix* w;
  float* y;
};
// Several Linear calls on one input x[T, in] (MLA's q_a and kv_a, an MLP's gate and up; vLLM
// merges these matrices for the same reason) in one parallel region (LinearJobs), with x
// quantized once for the matrices that take it in the same int8 layout. Each y is bitwise what
// Linear would write.
void LinearSameInput(const float* x, int64_t T, std::initializer_list<LinearOutput> outputs);

// Rows [r0, r1) of y = x·Wᵀ on the calling thread, y with row stride ldy (x is [T, in]
// contiguous), x quantized for this call alone where w takes int8. Several matrices spread over
// the pool together go through LinearJobs instead.
void LinearRows(const float* x, int64_t T, const WeightMatrix& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                bool accumulate);
// The fewest rows a parallel piece of w should hold for T tokens (LinearJobs' pieces, so
// Linear's and the MoE's): FP8 with many tokens takes whole blocks of rows, since each piece
// scales its tokens' activations by the block's scales once (with 32-row pieces that scaling
// was ~8% of an FP8 prefill); 1 otherwise.
int64_t MinPieceRows(const WeightMatrix& w, int64_t T);

// What INT8 and INT4 weights multiply. kInt8 (the default; llama.cpp does the same for its
// integer formats): activations quantized per token in blocks of 32 to int8 with a float
// scale, then integer dot products (engine/kernels/cpu/linear_kernels.h states the exact
// arithmetic); per weight that is about half the work of dequantizing to float32, for an
// error of at most |x|max/254 per activation. kF32: exact x·dequant(W) in float32. Shapes the
// int8 kernels do not take (K or the group width not a multiple of 32) use float32 either way;
// other formats are unaffected.
//
// kInt8 applies to decode steps, where every sequence adds one token (the Transformer marks
// its steps with ScopedDecodeStep) and weights are streamed for it: there int8 halves the
// work per weight. Other steps (prefill, scoring) keep float32, so eval results stay those of
// the exact weights. kInt8All (llama.cpp's choice) uses int8 in every step: with AVX-512
// VNNI prefill then runs on the int8 GEMM (linear_q8_avx512.cc), 2-3x the float32 one
// (bench-v3-mini pp512: INT8 ~340 -> ~975 tok/s, INT4 ~320-375 -> ~710-830); on AVX2 alone
// INT4 gains ~10-30% (no float32 copy of the weights) and INT8 loses ~10-15% (integer
// products no faster than float FMAs once a weight meets many tokens). The choice is per step, never
// per matrix, so a token's result does not depend on how many tokens an expert saw or how
// many sequences decode together.
//
// kBf16 (llama.cpp's choice for BF16 weights, where its activations go to bf16): in every
// step BF16 weights multiply activations rounded to bf16, summed by AVX-512 BF16's vdpbf16ps
// (two products per lane per instruction, straight from the stored weights: no float32 copy),
// with the arithmetic linear_kernels.h states; FP8 weights likewise, e4m3 converted to bf16
// (exactly) in registers and the activations scaled by each block's scale before rounding;
// INT8/INT4 weights take int8 as with kInt8All; F32 and F16 keep float32. An error of at most 2^-8 |x| per activation, for prefill at up
// to twice the float32 GEMM's rate. CPUs without AVX-512 BF16 run its scalar twin (exact, and
// slow: `dsv3` refuses the option there).
enum class LinearActivations { kInt8, kF32, kInt8All, kBf16 };
void SetLinearActivations(LinearActivations a);
LinearActivations GetLinearActivations();
const char* LinearActivationsName(LinearActivations a);
// What Linear uses on this thread now, kInt8, kF32 or kBf16: kInt8 if the setting is
// kInt8All, or kInt8 and the step (if any) is a decode step; kBf16 in every step if set.
// Outside any step (kernel tests, microbenchmarks) the setting alone decides.
LinearActivations CurrentLinearActivations();
// Marks, for its lifetime on this thread, the forward step being run as a decode step or not.
class ScopedDecodeStep {
 public:
  explicit ScopedDecodeStep(bool decode);
  ~ScopedDecodeStep();
  ScopedDecodeStep(const ScopedDecodeStep&) = delete;
  ScopedDecodeStep& operator=(const ScopedDecodeStep&) = delete;

 private:
  bool saved_;
};

// An activation matrix x[T, K] prepared once for several LinearRows calls on matrices of one
// format (the MoE's row blocks of one expert): for weights that take int8 activations (see
// LinearActivations) it holds x quantized per token, which the kernels would otherwise redo
// on every call. Reused buffers: keep one per input and Prepare it again for new data.
struct LinearInput {
  const float* x = nullptr;
  int64_t T = 0, K = 0;
  // 0: float rows only; 1: int8, column order; 2: int8, INT4 nibble order; 3: bf16, rounded
  // by each thread that runs rows of it into a buffer of its own (linear.cc's Bf16Acts); 4:
  // float rows for FP8's bf16 products (the kernel scales and rounds them per row block)
  int layout = 0;
  LinearActivations activations = LinearActivations::kF32;  // what Prepare was given
  uint64_t generation = 0;  // layout 3: which Prepare this is, process-wide (the rounded rows follow it)
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int32_t> sum;
  // Each token's layout 2 regrouped for the AVX-512 INT4 decode, up to kInt4DecodeTokensMax
  // tokens (64 bytes of slack for the alignment); empty when not made.
  std::vector<int8_t> fours;
  // x (contiguous [T, K]) as w's kernels read it under `activations` (callers on worker
  // threads pass their step's CurrentLinearActivations()).
  void Prepare(const float* x, int64_t T, const WeightMatrix& w, LinearActivations activations);
  void Prepare(const float* x, int64_t T, const WeightMatrix& w) { Prepare(x, T, w, CurrentLinearActivations()); }
  // Rows tokens[0, n) of `all`, an input prepared with int8 activations (layout 1 or 2): the
  // form Prepare gives those rows of all.x gathered, copied rather than quantized again (each
  // token is quantized on its own). x is left null, so use it only with matrices it is
  // PreparedFor (LinearRows cannot quantize it again for another form).
  void PrepareRowsOf(const LinearInput& all, const int32_t* tokens, int64_t n);
  // Whether this is the form Prepare would give x for w (under the same activations).
  bool PreparedFor(const WeightMatrix& w) const;

 private:
  void RegroupForInt4Decode();
};
// LinearRows on a prepared input: the form it was prepared in decides (an input prepared
// for another format still works: x is then quantized again for this one).
void LinearRows(const LinearInput& in, const WeightMatrix& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                bool accumulate);

// Asks the CPU to bring rows [r0, r1) of w, with their scales and zero points, into L2 (a
// prefetch hint per cache line, nothing waited for): for rows a thread will read soon, fetched
// while it streams something else (MLA's decode step asks for its heads' kv_b rows before it
// streams its rows of q_b).
void FetchWeightRows(const WeightMatrix& w, int64_t r0, int64_t r1);

// One product of LinearJobs: y[in->T, w->rows()] = in · w->ᵀ (or y += with accumulate).
struct LinearJob {
  const LinearInput* in;
  const WeightMatrix* w;
  float* y;
  bool accumulate = false;
};
// Runs every job in one parallel region: each matrix is cut into row pieces (32 or 64 rows by
// kernel family, whole FP8 blocks for a GEMM, or min_piece_rows if larger; as many of those as
// make 64 KB of weights times tokens, linear.cc's kMinPieceBytes) and all the pieces
// are balanced over the pool together, so at batch 1 no thread waits at the end of each small
// matrix (a MoE step's experts, the products of LinearSameInput). Linear is one job. Each y is
// bitwise what Linear would write.
void LinearJobs(const std::vector<LinearJob>& jobs, int64_t min_piece_rows);

// Kernel families Linear can use. kAuto picks the best one this CPU runs (cpu_features.h);
// the others force one, for tests and benchmarks that compare a fast kernel with its twin.
// kReference is the float32 tile + Eigen path every format has. kAvx512 is kAvx2 with the
// int8-activation products (INT8, INT4 weights) on AVX-512 VNNI, and FP8's decode GEMV and the
// GEMM's microkernel on 512-bit vectors: the same bits, faster.
enum class LinearKernel { kAuto, kReference, kAvx2, kAvx512 };
// Whether k runs the AVX2 kernels (kAvx2, and kAvx512 for everything but int8 activations).
inline bool UsesAvx2Kernels(LinearKernel k) { return k == LinearKernel::kAvx2 || k == LinearKernel::kAvx512; }
void SetLinearKernel(LinearKernel k);
// The family kAuto resolves to on this CPU (or the forced one), e.g. for `dsv3 bench`.
LinearKernel ActiveLinearKernel();
const char* LinearKernelName(LinearKernel k);
// Whether products with bf16 activations (LinearActivations::kBf16) run on AVX-512 BF16 now:
// the avx512 family on a CPU that has it. Elsewhere they run on their scalar twin.
bool Bf16KernelActive();

// Optional tally of the work Linear does, for rooflines: weight bytes read and FLOPs (of
// which int8_flops are products with int8 activations: integer multiply-adds, and
// bf16_flops products with bf16 activations: vdpbf16ps). Off
// (null) by default; when set, every Linear/LinearRows call adds to it with relaxed atomics
// (a few per matrix, nothing per element), each thread to its own slot: two decode threads
// adding to one cache line cost ~1.5% of an INT4 token (a MoE step makes ~200 calls a layer).
// Not thread-safe to swap while a forward runs.
struct LinearCounters {
  struct Totals {
    uint64_t weight_bytes = 0, flops = 0, int8_flops = 0, bf16_flops = 0, calls = 0;
  };
  struct alignas(64) Slot {
    std::atomic<uint64_t> weight_bytes{0}, flops{0}, int8_flops{0}, bf16_flops{0}, calls{0};
  };
  static constexpr int kSlots = 16;  // threads beyond share slots (still exact: atomics)
  Slot slots[kSlots];

  Totals Read() const {
    Totals t;
    for (const Slot& s : slots) {
      t.weight_bytes += s.weight_bytes.load(std::memory_order_relaxed);
      t.flops += s.flops.load(std::memory_order_relaxed);
      t.int8_flops += s.int8_flops.load(std::memory_order_relaxed);
      t.bf16_flops += s.bf16_flops.load(std::memory_order_relaxed);
      t.calls += s.calls.load(std::memory_order_relaxed);
    }
    return t;
  }
  void Reset() {
    for (Slot& s : slots) {
      s.weight_bytes = 0;
      s.flops = 0;
      s.int8_flops = 0;
      s.bf16_flops = 0;
      s.calls = 0;
    }
  }
};
void SetLinearCounters(LinearCounters* counters);
// Work outside Linear (attention's products, which depend on the form MLA picks and the
// cache length) adds its FLOPs to the same tally; nothing when none is set.
void CountFlops(uint64_t flops);
// Of the FLOPs CountFlops adds, those that ran as bf16 products: the multi-query products over a
// bf16 cache under LinearActivations::kBf16 (below) add them to bf16_flops themselves, so that
// `dsv3 bench` weighs them against the vdpbf16ps peak; their caller counts them in flops.
void CountBf16Flops(uint64_t flops);

// Attention of a few queries over many cached rows (decode over MLA's latent cache, where
// several heads share one cache): each cached row is read once for all M queries.
// scores[m * lds + s] (+)= q[m * ldq : +C] · keys[s * C : +C] for m < M, s < S.
void MultiQueryScores(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                      float* scores, int64_t lds, bool accumulate);
// MLA's scores, whose queries and keys come in two parts kept apart (the latent cache, C1
// wide, and the rope cache, C2 wide): scores[m * lds + s] = q1[m * ldq1 : +C1] · keys1[s * C1 :
// +C1] + q2[m * ldq2 : +C2] · keys2[s * C2 : +C2], both parts summed before one reduction (the
// rope part alone, 32 wide, was mostly reductions).
void MultiQueryScoresTwoPart(const float* q1, int64_t ldq1, const float* keys1, int64_t C1, const float* q2,
                             int64_t ldq2, const float* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                             int64_t lds);
// out[m * C : +C] = sum over s of p[m * ldp + s] · vals[s * C : +C] for m < M.
void MultiQueryWeightedSum(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                           float* out);
// The two products over rows of a bf16 latent cache (bfloat16 bits, LatentKvCache): the bits the
// float32 forms above give over the same rows widened by WidenBf16. The vector kernels widen
// each row in registers as they read it (decode at depth reads half the bytes and writes no
// float32 copy), the GEMM of 16 or more queries as it packs them (as BF16 weights); the
// reference widens the rows into a buffer and calls the float32 forms. Under
// LinearActivations::kBf16 the scores (widths of whole 8-column steps) take the queries rounded
// to bf16 instead, and the weighted sums (widths of whole 16-column steps) the probabilities, as
// BF16 weights take bf16 activations: vdpbf16ps's sums (linear_kernels.h,
// Bf16QueryScoresReference and Bf16WeightedSumReference), with AVX-512 BF16 where the CPU has it.
void MultiQueryScoresTwoPart(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                             int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                             int64_t lds);
void MultiQueryWeightedSum(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                           float* out);
// out[i] = in[i] widened from bfloat16 to float32 (exact) for i < n: a bf16 latent cache's
// rows, as prefill attention reads them (LatentKvCache), and BF16 weights' rows (DequantizeRows).
void WidenBf16(const uint16_t* in, int64_t n, float* out);

// Row-major matrix products for prefill attention, where many queries meet many keys (MLA's
// keys and values expanded from the latent cache per head, then scores and the weighted sum):
// c[M, N] = a[M, K] · B, with B packed once (PackMatMulRhs) and used for many products (one
// head's keys against every block of query rows). The AVX2 kernel sums each element of c as
// one float32 chain of multiply-adds over k in order, so its bits depend neither on M, nor on
// which row of a it sits in, nor on how many of B's columns the call asks for.
struct MatMulRhs {
  static constexpr int64_t kStrip = 16;  // columns per strip
  int64_t K = 0, N = 0;
  // Strip j holds columns [16j, 16j + 16) as [K, 16] row-major (zeros past N), on cache lines:
  // the kernel reads each k's 16 floats as one line instead of two rows N apart.
  const float* strips() const { return storage.data(); }
  LineAlignedFloats storage;
};
// B = b as [K, N] (row stride ldb) or, transposed, bᵀ where b is [N, K] (row stride ldb).
void PackMatMulRhs(const float* b, int64_t K, int64_t N, int64_t ldb, bool transposed, MatMulRhs* out);
// The same in pieces: SizeMatMulRhs makes out a [K, N] operand (its padding zero, the rest to
// be written), then each PackMatMulRhsBlock writes B[k0:k1, n0:n1] from b, whose element
// (k0, n0) it points at (laid out as for PackMatMulRhs). Prefill attention packs each block of
// keys and values while it is still in cache, and the rope part of the keys once for all heads.
void SizeMatMulRhs(int64_t K, int64_t N, MatMulRhs* out);
void PackMatMulRhsBlock(const float* b, int64_t ldb, bool transposed, int64_t k0, int64_t k1, int64_t n0, int64_t n1,
                        MatMulRhs* out);
// c[m * ldc + n] = Σ_{k < K} a[m * lda + k] · B[k, n] for m < M, n < N, on the calling thread.
// K <= b.K and N <= b.N: a call may use the first rows and columns of B only.
void MatMul(const float* a, int64_t M, int64_t K, int64_t lda, const MatMulRhs& b, int64_t N, float* c, int64_t ldc);

// The same products with rows [r0, r0 + S) of a weight in place of the keys or values, each row
// converted as DequantizeRows converts it: decode's absorbed attention reads MLA's kv_b where it
// is stored (a half, quarter or eighth of a float32 copy's bytes). For M queries (query m's q
// or p at m · ldq, its scores or out at m · lds): scores[s] = q · W[r0 + s]; out[0:in] = Σ_s
// p[s] · W[r0 + s], each query with the bits MultiQueryScores / MultiQueryWeightedSum give it
// alone (M = 1) over DequantizeRows' rows. A decode batch's sequences share kv_b, and with
// AVX-512 each of its rows is converted once for up to four of them (per sequence, a batch of
// eight read and converted it eight times).
void WeightRowScores(const float* q, int64_t M, int64_t ldq, const WeightMatrix& w, int64_t r0, int64_t S,
                     float* scores, int64_t lds);
void WeightRowsWeightedSum(const float* p, int64_t M, int64_t ldp, const WeightMatrix& w, int64_t r0, int64_t S,
                           float* out, int64_t ldo);

// Writes rows [r0, r1) of W as float32 into dst ([r1-r0, in], row-major).
void DequantizeRows(const WeightMatrix& w, int64_t r0, int64_t r1, float* dst);

// y[t] = x[t] / rms(x[t]) * weight, rms over D with eps inside the square root.
void RmsNorm(const float* x, const TensorView& weight, int64_t T, int64_t D, float eps, float* y);

// x[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i] over n elements, written
// into gate. The AVX2 path takes exp from ExpShiftedSum's polynomial (below), std::exp
// otherwise: a decode step's scalar std::exp calls were ~1% of an INT4 token, on one thread.
void SiluMul(float* gate, const float* up, int64_t n);

// Numerically stable softmax of scale·x over n elements in place: x[i] *= scale, the max
// subtracted, ExpShiftedSum, each divided by the sum (as a multiply by its inverse). The AVX2
// path does those steps 8 elements at a time, with the bits of doing them one by one (a max
// and products do not depend on the order).
void SoftmaxInPlace(float* x, int64_t n, float scale = 1.0f);
// x[i] *= scale for i < n, returning the largest (-inf for n = 0; a NaN is passed over, as
// std::max(m, x[i]) does): softmax's first step, alone for decode attention's partials, which
// keep their maximum and sum unnormalized. The AVX2 path gives the same products and the same
// maximum (a zero maximum may differ in sign, which no x - max can tell).
float ScaleAndMax(float* x, int64_t n, float scale);
// x[i] = exp(x[i] - shift) for i < n, returning their sum: the exponentials of every
// softmax (exp(-inf) = 0, NaN stays NaN). The AVX2 path (Cephes' expf polynomial, within 3 ulp
// of std::exp; below e^-87.3 it gives 0) unless the kernels are forced to the reference, which
// is std::exp.
float ExpShiftedSum(float* x, int64_t n, float shift);

// log_softmax of one row of logits into out (may alias).
void LogSoftmax(const float* logits, int64_t n, float* out);

// log Σ_i exp(x[i] - shift) over n >= 1 elements, in double: a row of logits' log-partition
// (shift its maximum, so no term overflows), which scoring takes for every position it scores.
// The AVX2 path takes each exp from ExpShiftedSum's polynomial (float, within 3 ulp of std::exp)
// and adds them in double; the reference path std::exp in double, as scoring had one element
// at a time (~0.8 ms for DeepSeek-V3's 129280 logits, on one thread). Rows are summed in fixed
// chunks of kLogSumExpChunk, in parallel, the chunks' sums added in order: the result does not
// depend on the thread count. A NaN gives NaN; -inf terms add nothing.
constexpr int64_t kLogSumExpChunk = 16384;
double LogSumExpShifted(const float* x, int64_t n, float shift);

// Embedding lookup: row `id` of a [V, D] table of any float dtype into dst.
void EmbeddingRow(const TensorView& table, int64_t id, float* dst);

// y[i] += a · x[i] over n elements, the product rounded before the sum (no fused multiply-add,
// as a plain loop compiled without FMA): the MoE's weighted sum of its experts' rows, decode
// attention's merge of its spans' partial outputs, and with a = 1 (an exact product) the
// residual adds. The AVX2 path gives those bits eight at a time;
// long arrays are split across the threads.
void AddScaled(float* y, const float* x, float a, int64_t n);

// Dot product of two float arrays.
float Dot(const float* a, const float* b, int64_t n);

}  // namespace dsv3
