// Linear (y = x·Wᵀ) on the CPU: kernel dispatch and threading. Each call picks a kernel
// family once from the CPU's features (cpu_features.h) and the weight's format:
//   - reference: weights dequantized 64 rows at a time into float32 and multiplied with Eigen.
//     Every format has it; it is the twin the fast kernels are tested against.
//   - avx2 (linear_avx2.cc): a GEMV for a few tokens (decode: each weight read once, converted
//     in registers) and a register-blocked GEMM for prefill, both summing in one order. F32,
//     BF16, F16, FP8 e4m3, INT8 and INT4 weights, all dequantized in registers.
//   - avx512: avx2, with the int8-activation products on AVX-512 VNNI (linear_q8_avx512.cc),
//     FP8's one-token GEMV and the GEMM's microkernel on 512-bit vectors (linear_avx512.cc),
//     the same bits.
// INT8 and INT4 weights take int8 activations by default (SetLinearActivations): x is
// quantized per token once per call (or once per LinearInput) and multiplied in integers,
// by linear_q8_avx512.cc, linear_q8_avx2.cc or their scalar twin linear_q8.cc, all with the same bits.
// Under LinearActivations::kBf16, BF16 and FP8 weights take x rounded to bf16 (for FP8 after
// each block's scale) and multiply it with AVX-512 BF16 (linear_bf16_avx512.cc) or the scalar
// twin (linear_bf16.cc), the same bits.
// Work is split over output rows with the persistent pool; LinearJobs balances the row pieces
// of several matrices (a MoE step's experts, LinearSameInput's products) over it at once.
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat>;
using StridedMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

constexpr int64_t kTileRows = 64;
// Rows per parallel piece of the fast kernels: large enough to amortize a call's start, small
// enough that both threads get work on the 512-row expert matrices. (Prefill's GEMM measured
// no better with 128-row pieces, which convert fewer, taller panels.)
constexpr int64_t kFastGrain = 32;
// A piece holds at least this many weight bytes times tokens (in whole grains): each piece is
// a claim in the pool's share, a call through it and a kernel's start, some 20-40 ns, and a
// decode step's lm_head (129,280 INT4 rows) had gone in 4,040 pieces of 32 rows. 64 KB streams
// for ~2 us on one thread, still fine grains for the balance (bench-v3-mini INT4, tg128: lm_head
// 2.02-2.20 -> 1.86-2.08 ms a token; 256 KB pieces left attention's small matrices unbalanced).
// A prefill's pieces are far above it.
constexpr int64_t kMinPieceBytes = 64 * 1024;

std::atomic<LinearKernel> g_forced{LinearKernel::kAuto};
std::atomic<LinearCounters*> g_counters{nullptr};
std::atomic<LinearActivations> g_activations{LinearActivations::kInt8};

LinearKernel Resolve() {
  const LinearKernel forced = g_forced.load(std::memory_order_relaxed);
  if (forced != LinearKernel::kAuto) return forced;
  const CpuFeatures& f = GetCpuFeatures();
  return f.HasAvx512VnniSet() ? LinearKernel::kAvx512 : f.HasAvx2Set() ? LinearKernel::kAvx2 : LinearKernel::kReference;
}

cpu::RawWeight Raw(const WeightMatrix& w) {
  cpu::RawWeight r;
  r.data = w.w.data;
  r.rows = w.rows();
  r.cols = w.cols();
  r.block_out = w.block_out;
  r.block_in = w.block_in;
  r.row_bytes = w.w.shape[1] * static_cast<int64_t>(DTypeSize(w.w.dtype));
  switch (w.w.dtype) {
    case DType::kF32: r.kind = cpu::WeightKind::kF32; break;
    case DType::kBF16: r.kind = cpu::WeightKind::kBF16; break;
    case DType::kF16: r.kind = cpu::WeightKind::kF16; break;
    case DType::kF8E4M3:
      r.kind = cpu::WeightKind::kF8E4M3;
      r.scale = w.scale_inv.empty() ? nullptr : w.scale_inv.f32();
      r.scale_cols = w.scale_inv.empty() ? 0 : w.scale_inv.shape[1];
      break;
    case DType::kI8:
      r.kind = cpu::WeightKind::kI8;
      r.scale = w.scale.empty() ? nullptr : w.scale.f32();
      r.scale_cols = w.scale.empty() ? 0 : w.scale.shape[1];
      break;
    case DType::kU8:
      r.kind = cpu::WeightKind::kInt4;
      r.scale16 = w.scale.empty() ? nullptr : w.scale.as<uint16_t>();
      r.zero = w.zero.empty() ? nullptr : w.zero.as<uint8_t>();
      r.scale_cols = w.scale.empty() ? 0 : w.scale.shape[1];
      break;
    default: r.kind = cpu::WeightKind::kUnsupported; break;
  }
  return r;
}

// The bytes of w: its weights, scales and zero points.
uint64_t WeightBytes(const WeightMatrix& w) {
  uint64_t bytes = w.w.nbytes();
  for (const TensorView* side : {&w.scale_inv, &w.scale, &w.zero})
    if (!side->empty()) bytes += side->nbytes();
  return bytes;
}

// This thread's slot of the counters (threads take slots in the order they first count).
LinearCounters::Slot& CounterSlot(LinearCounters* c) {
  static std::atomic<int> next_slot{0};
  thread_local const int slot = next_slot.fetch_add(1, std::memory_order_relaxed) % LinearCounters::kSlots;
  return c->slots[slot];
}

// layout: LinearInput's (1, 2: int8 products; 3, 4: bf16 products).
void Count(const WeightMatrix& w, int64_t T, int64_t r0, int64_t r1, int layout) {
  LinearCounters* c = g_counters.load(std::memory_order_relaxed);
  if (c == nullptr) return;
  const int64_t rows = r1 - r0, in = w.cols();
  const uint64_t bytes = WeightBytes(w) * rows / std::max<int64_t>(1, w.rows());
  LinearCounters::Slot& slot = CounterSlot(c);
  slot.weight_bytes.fetch_add(bytes, std::memory_order_relaxed);
  slot.flops.fetch_add(static_cast<uint64_t>(2 * T * rows * in), std::memory_order_relaxed);
  if (layout == 1 || layout == 2) slot.int8_flops.fetch_add(static_cast<uint64_t>(2 * T * rows * in), std::memory_order_relaxed);
  if (layout >= 3) slot.bf16_flops.fetch_add(static_cast<uint64_t>(2 * T * rows * in), std::memory_order_relaxed);
  slot.calls.fetch_add(1, std::memory_order_relaxed);
}

// The twin: rows [r0, r1) through float32 tiles and Eigen.
void ReferenceRows(const float* x, int64_t T, const WeightMatrix& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                   bool accumulate) {
  thread_local std::vector<float> tile;
  const int64_t in = w.cols();
  ConstMap X(x, T, in);
  for (int64_t t0 = r0; t0 < r1; t0 += kTileRows) {
    const int64_t t1 = std::min(r1, t0 + kTileRows), n = t1 - t0;
    const float* wt;
    if (w.w.dtype == DType::kF32) {
      wt = w.w.f32() + t0 * in;
    } else {
      tile.resize(static_cast<size_t>(n * in));
      DequantizeRows(w, t0, t1, tile.data());
      wt = tile.data();
    }
    ConstMap W(wt, n, in);
    StridedMap Y(y + t0, T, n, Eigen::OuterStride<>(ldy));
    if (accumulate) {
      Y.noalias() += X * W.transpose();
    } else {
      Y.noalias() = X * W.transpose();
    }
  }
}

// This thread's scratch for the kernels that take one (the float32 GEMM's panel, FP8's bf16
// panel, the int8 GEMM's repacked rows), at least `bytes`, 64-byte aligned (whole cache lines
// for their vectors). One buffer serves them all: a thread runs one kernel call at a time.
uint8_t* KernelScratch(int64_t bytes) {
  struct alignas(64) Line {
    uint8_t b[64];
  };
  thread_local std::vector<Line> lines;
  lines.resize(static_cast<size_t>((bytes + 63) / 64));
  return lines.empty() ? nullptr : lines.data()->b;
}

// Fast rows on the calling thread.
void Avx2Rows(const float* x, int64_t T, const cpu::RawWeight& raw, int64_t r0, int64_t r1,
              float* y, int64_t ldy, bool accumulate) {
  const bool avx512 = Resolve() == LinearKernel::kAvx512;
  if (T <= cpu::GemvMaxTokens(raw, avx512)) {
    if (avx512) {
      cpu::GemvAvx512(x, T, raw.cols, raw, r0, r1, y, ldy, accumulate, GetCpuFeatures().avx512_vbmi);
    } else {
      cpu::GemvAvx2(x, T, raw.cols, raw, r0, r1, y, ldy, accumulate);
    }
    return;
  }
  cpu::GemmAvx2WithScratch(x, T, raw.cols, raw, r0, r1, y, ldy, accumulate, avx512);
}

// ---- Int8 activations (INT8 and INT4 weights) ----

thread_local bool t_decode_step = true;  // outside a step the global setting alone decides

// LinearInput::layout for w under `activations`: 0 float32, 1 int8 in column order, 2 int8
// in INT4 nibble order, 3 bf16, 4 float32 for FP8's bf16 products (scaled per row block).
int LayoutFor(const cpu::RawWeight& raw, LinearActivations activations) {
  if (activations == LinearActivations::kBf16 && raw.kind == cpu::WeightKind::kBF16) return 3;
  if (activations == LinearActivations::kBf16 && cpu::TakesBf16Fp8(raw)) return 4;
  if (activations == LinearActivations::kF32 || !cpu::TakesInt8Activations(raw)) return 0;
  return cpu::WantsNibbleOrder(raw) ? 2 : 1;
}

// The 64-byte aligned start of a LinearInput's `fours` (allocated with 63 bytes of slack).
const int8_t* FoursAt(const std::vector<int8_t>& fours) {
  const uintptr_t at = (reinterpret_cast<uintptr_t>(fours.data()) + 63) & ~uintptr_t{63};
  return reinterpret_cast<const int8_t*>(at);
}

cpu::QuantizedActs View(const LinearInput& in) {
  cpu::QuantizedActs a;
  a.q = in.q.data();
  a.d = in.d.data();
  a.sum = in.sum.data();
  a.T = in.T;
  a.K = in.K;
  a.fours = in.fours.empty() ? nullptr : FoursAt(in.fours);
  return a;
}

// Layout 3's activations as this thread reads them: x rounded to bf16 (rows of Bf16ActCols(K),
// zero-padded), once per prepared input, into this thread's 64-byte aligned buffer. Rounded once
// by the preparing thread, the rows were read by the other from its cache, and from 16 bytes
// past a line: an expert's 512 x 1536 BF16 rows against 48 tokens, 2 threads, 380-395 GFLOP/s,
// against 485-492 with each thread's own aligned rows (449-461 unaligned).
const uint16_t* Bf16Acts(const LinearInput& in) {
  struct alignas(64) Line {  // a row is Bf16ActCols(K) = a whole number of lines
    uint16_t h[32];
  };
  struct Rounded {
    uint64_t generation = 0;
    std::vector<Line> lines;
  };
  thread_local Rounded mine;
  const int64_t Kh = cpu::Bf16ActCols(in.K);
  if (mine.generation != in.generation) {
    mine.lines.resize(static_cast<size_t>(in.T * Kh / 32));
    uint16_t* h = mine.lines.empty() ? nullptr : mine.lines.data()->h;
    const bool fast = GetCpuFeatures().HasAvx512Bf16Set();
    for (int64_t t = 0; t < in.T; ++t) {
      if (fast) {
        cpu::RoundActsToBf16Avx512(in.x + t * in.K, in.K, h + t * Kh);
      } else {
        cpu::RoundActsToBf16(in.x + t * in.K, in.K, h + t * Kh);
      }
    }
    mine.generation = in.generation;
  }
  return mine.lines.empty() ? nullptr : mine.lines.data()->h;
}

// Rows [r0, r1) of in · Wᵀ on the calling thread, with the kernel family and the activation
// form `in` was prepared in (the one place that picks among the kernels).
void Rows(const LinearInput& in, const WeightMatrix& w, const cpu::RawWeight& raw, int64_t r0, int64_t r1, float* y,
          int64_t ldy, bool accumulate) {
  const LinearKernel k = Resolve();
  const bool avx2 = UsesAvx2Kernels(k);
  if (in.layout == 3) {
    if (Bf16KernelActive()) {
      cpu::Bf16LinearAvx512(Bf16Acts(in), in.T, raw, r0, r1, y, ldy, accumulate);
    } else {
      cpu::Bf16LinearReference(Bf16Acts(in), in.T, raw, r0, r1, y, ldy, accumulate);
    }
  } else if (in.layout == 4) {
    if (Bf16KernelActive()) {
      uint8_t* scratch = KernelScratch(cpu::Fp8Bf16ScratchWords(in.T, raw.cols) * 2);
      cpu::Fp8Bf16LinearAvx512(in.x, in.T, raw, r0, r1, y, ldy, accumulate, reinterpret_cast<uint16_t*>(scratch),
                               GetCpuFeatures().avx512_vbmi);
    } else {
      cpu::Fp8Bf16LinearReference(in.x, in.T, raw, r0, r1, y, ldy, accumulate);
    }
  } else if (in.layout != 0) {
    if (k == LinearKernel::kAvx512) {
      cpu::QLinearAvx512(View(in), raw, r0, r1, y, ldy, accumulate,
                         KernelScratch(cpu::QLinearAvx512ScratchBytes(raw, in.T)));
    } else if (avx2) {
      cpu::QLinearAvx2(View(in), raw, r0, r1, y, ldy, accumulate);
    } else {
      cpu::QLinearReference(View(in), raw, r0, r1, y, ldy, accumulate);
    }
  } else if (avx2 && cpu::Avx2Supports(raw)) {
    Avx2Rows(in.x, in.T, raw, r0, r1, y, ldy, accumulate);
  } else {
    ReferenceRows(in.x, in.T, w, r0, r1, y, ldy, accumulate);
  }
}

// The input of one Linear / LinearRows call on this thread (x quantized when w takes int8).
LinearInput& CallInput() {
  thread_local LinearInput in;
  return in;
}

// One matrix through LinearJobs, which cuts its rows into pieces and balances them.
void LinearImpl(const float* x, int64_t T, const WeightMatrix& w, float* y, bool accumulate) {
  LinearInput& in = CallInput();
  in.Prepare(x, T, w);
  thread_local std::vector<LinearJob> one(1);
  one[0] = {&in, &w, y, accumulate};
  LinearJobs(one, 1);
}

}  // namespace

void Linear(const float* x, int64_t T, const WeightMatrix& w, float* y) { LinearImpl(x, T, w, y, false); }
void LinearAccumulate(const float* x, int64_t T, const WeightMatrix& w, float* y) { LinearImpl(x, T, w, y, true); }

void LinearSameInput(const float* x, int64_t T, std::initializer_list<LinearOutput> outputs) {
  // This thread's buffers, named by references: a thread_local named inside a parallel
  // region's lambda would be each worker's own.
  thread_local std::vector<LinearInput> inputs_buffer;
  thread_local std::vector<LinearJob> jobs_buffer;
  std::vector<LinearInput>& inputs = inputs_buffer;
  std::vector<LinearJob>& jobs = jobs_buffer;
  const LinearActivations activations = CurrentLinearActivations();
  inputs.resize(std::max(inputs.size(), outputs.size()));
  jobs.clear();
  for (const LinearOutput& o : outputs) {
    const int layout = LayoutFor(Raw(*o.w), activations);
    const LinearInput* in = nullptr;
    for (const LinearJob& earlier : jobs)
      if (earlier.in->layout == layout) in = earlier.in;  // the same x in the same form
    if (in == nullptr) {
      LinearInput& fresh = inputs[jobs.size()];
      fresh.Prepare(x, T, *o.w, activations);
      in = &fresh;
    }
    jobs.push_back({in, o.w, o.y});
  }
  LinearJobs(jobs, 1);
}

void LinearJobs(const std::vector<LinearJob>& jobs, int64_t min_piece_rows) {
  // Each job's pieces are numbered after the previous job's. Rows go out in pieces, balanced:
  // a thread that finishes its share takes the other's last pieces (one thread's DRAM stream
  // can run well behind the other's on a shared machine).
  struct Part {
    cpu::RawWeight raw;
    bool as_prepared;  // false: `in` holds x quantized for another layout (LinearRows redoes it)
    int64_t piece_rows, first_piece, pieces;
  };
  thread_local std::vector<Part> parts_buffer;
  std::vector<Part>& parts = parts_buffer;
  parts.clear();
  int64_t pieces = 0;
  for (const LinearJob& j : jobs) {
    Part p{Raw(*j.w), true, 1, pieces, 0};
    parts.push_back(p);
    if (j.in->T <= 0) continue;  // no pieces: nothing read
    p.as_prepared = j.in->layout == 0 || j.in->PreparedFor(*j.w);
    if (p.as_prepared) Count(*j.w, j.in->T, 0, j.w->rows(), j.in->layout);
    const bool fast = j.in->layout != 0 || (UsesAvx2Kernels(Resolve()) && cpu::Avx2Supports(p.raw));
    p.piece_rows = std::max({min_piece_rows, fast ? kFastGrain : kTileRows, MinPieceRows(*j.w, j.in->T)});
    const int64_t row_work = std::max<int64_t>(1, static_cast<int64_t>(WeightBytes(*j.w)) / j.w->rows() * j.in->T);
    const int64_t grains = (kMinPieceBytes / row_work + p.piece_rows - 1) / p.piece_rows;  // rounded up
    p.piece_rows *= std::max<int64_t>(1, grains);
    // Whole tiles for the bf16 GEMM: 32-row pieces ended in a two-row tile, 6% of the rows in
    // ~11% of the time (an expert's 512 x 1536 rows against 48 tokens, 2 threads: 458-478 ->
    // 514-528 GFLOP/s with pieces of 30 or 36 rows).
    if (j.in->layout == 3 && j.in->T > 1)
      p.piece_rows = (p.piece_rows + cpu::kBf16TileRows - 1) / cpu::kBf16TileRows * cpu::kBf16TileRows;
    p.pieces = (j.w->rows() + p.piece_rows - 1) / p.piece_rows;
    pieces += p.pieces;
    parts.back() = p;
  }
  ParallelForBalanced(pieces, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end;) {
      // The last job whose pieces start at or before k (a job with none is followed by one
      // starting where it would have, so this is never an empty one).
      const size_t i = static_cast<size_t>(
          std::upper_bound(parts.begin(), parts.end(), k,
                           [](int64_t piece, const Part& p) { return piece < p.first_piece; }) -
          parts.begin() - 1);
      const LinearJob& j = jobs[i];
      const Part& p = parts[i];
      // This job's pieces in [k, end) go as one call (on one thread the whole range comes at once).
      const int64_t k_end = std::min(end, p.first_piece + p.pieces);
      const int64_t rows = j.w->rows(), r0 = (k - p.first_piece) * p.piece_rows;
      const int64_t r1 = std::min(rows, (k_end - p.first_piece) * p.piece_rows);
      if (p.as_prepared) {
        Rows(*j.in, *j.w, p.raw, r0, r1, j.y, rows, j.accumulate);
      } else {
        LinearRows(*j.in, *j.w, r0, r1, j.y, rows, j.accumulate);
      }
      k = k_end;
    }
  });
}

namespace {

// Rows [r0, r0 + S) of w as DequantizeRows writes them, into this thread's buffer: the
// reference path of WeightRowScores / WeightRowsWeightedSum.
const float* Float32Rows(const WeightMatrix& w, int64_t r0, int64_t S) {
  thread_local std::vector<float> rows;
  rows.resize(static_cast<size_t>(S * w.cols()));
  DequantizeRows(w, r0, r0 + S, rows.data());
  return rows.data();
}

// Whether the AVX2 kernels take w's rows where they are stored (converted in registers).
bool RowsInPlace(const cpu::RawWeight& raw) {
  return UsesAvx2Kernels(Resolve()) && cpu::Avx2Supports(raw) && raw.cols % 8 == 0;
}

}  // namespace

void WeightRowScores(const float* q, int64_t M, int64_t ldq, const WeightMatrix& w, int64_t r0, int64_t S,
                     float* scores, int64_t lds) {
  if (M <= 0) return;
  Count(w, M, r0, r0 + S, 0);
  const cpu::RawWeight raw = Raw(w);
  if (Resolve() == LinearKernel::kAvx512 &&
      cpu::WeightRowScoresAvx512(q, M, ldq, raw, r0, S, scores, lds, GetCpuFeatures().avx512_vbmi))
    return;
  if (RowsInPlace(raw)) {
    for (int64_t m = 0; m < M; ++m) cpu::WeightRowScoresAvx2(q + m * ldq, raw, r0, S, scores + m * lds);
    return;
  }
  const float* rows = Float32Rows(w, r0, S);
  for (int64_t m = 0; m < M; ++m) MultiQueryScores(q + m * ldq, 1, w.cols(), rows, S, w.cols(), scores + m * lds, S, false);
}

void WeightRowsWeightedSum(const float* p, int64_t M, int64_t ldp, const WeightMatrix& w, int64_t r0, int64_t S,
                           float* out, int64_t ldo) {
  if (M <= 0) return;
  Count(w, M, r0, r0 + S, 0);
  const cpu::RawWeight raw = Raw(w);
  if (Resolve() == LinearKernel::kAvx512 && cpu::WeightRowsWeightedSumAvx512(p, M, ldp, raw, r0, S, out, ldo)) return;
  if (RowsInPlace(raw)) {
    for (int64_t m = 0; m < M; ++m) cpu::WeightRowsWeightedSumAvx2(p + m * ldp, raw, r0, S, out + m * ldo);
    return;
  }
  const float* rows = Float32Rows(w, r0, S);
  for (int64_t m = 0; m < M; ++m) MultiQueryWeightedSum(p + m * ldp, 1, S, rows, S, w.cols(), out + m * ldo);
}

int64_t MinPieceRows(const WeightMatrix& w, int64_t T) {
  return w.w.dtype == DType::kF8E4M3 && T > cpu::GemvMaxTokens(Raw(w)) ? w.block_out : 1;
}

namespace {

// fn(t) for every token: a prefill's worth split over the pool, a decode step's on this thread.
template <typename Fn>
void PerToken(int64_t T, const Fn& fn) {
  const auto range = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) fn(t);
  };
  if (T >= 64) {
    ParallelFor(T, 16, range);
  } else {
    range(0, T);
  }
}

}  // namespace

void LinearInput::Prepare(const float* x_in, int64_t T_in, const WeightMatrix& w, LinearActivations activations) {
  x = x_in;
  T = T_in;
  K = w.cols();
  const cpu::RawWeight raw = Raw(w);
  layout = LayoutFor(raw, activations);
  this->activations = activations;
  fours.clear();
  if (layout == 3) {  // each thread rounds x itself (Bf16Acts), once per generation
    static std::atomic<uint64_t> prepared{0};
    generation = prepared.fetch_add(1, std::memory_order_relaxed) + 1;
    return;
  }
  if (layout == 0 || layout == 4) return;  // x as it is
  const int64_t nb = K / cpu::kActBlock;
  q.resize(static_cast<size_t>(T * K));
  d.resize(static_cast<size_t>(T * nb));
  sum.resize(static_cast<size_t>(T * nb));
  const bool nibbles = layout == 2, avx2 = UsesAvx2Kernels(Resolve());
  PerToken(T, [&](int64_t t) {
    int8_t* qt = q.data() + t * K;
    float* dt = d.data() + t * nb;
    int32_t* st = sum.data() + t * nb;
    if (avx2) {
      cpu::QuantizeActsAvx2(x + t * K, K, nibbles, qt, dt, st);
    } else {
      cpu::QuantizeActsReference(x + t * K, K, nibbles, qt, dt, st);
    }
  });
  RegroupForInt4Decode();
}

void LinearInput::PrepareRowsOf(const LinearInput& all, const int32_t* tokens, int64_t n) {
  x = nullptr;
  T = n;
  K = all.K;
  layout = all.layout;
  activations = all.activations;
  fours.clear();
  const int64_t nb = K / cpu::kActBlock;
  q.resize(static_cast<size_t>(T * K));
  d.resize(static_cast<size_t>(T * nb));
  sum.resize(static_cast<size_t>(T * nb));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = tokens[i];
    std::memcpy(q.data() + i * K, all.q.data() + t * K, static_cast<size_t>(K));
    std::memcpy(d.data() + i * nb, all.d.data() + t * nb, static_cast<size_t>(nb) * sizeof(float));
    std::memcpy(sum.data() + i * nb, all.sum.data() + t * nb, static_cast<size_t>(nb) * sizeof(int32_t));
  }
  RegroupForInt4Decode();
}

void LinearInput::RegroupForInt4Decode() {
  // Decode tokens meet INT4 rows on AVX-512 in one call per piece of every matrix they go to:
  // their activations are regrouped for those steps once, here (whichever family is forced now:
  // an input may be prepared under one and multiplied under another).
  if (layout == 2 && T <= cpu::kInt4DecodeTokensMax && GetCpuFeatures().HasAvx512VnniSet()) {
    const int64_t bytes = cpu::FourBlockBytes(K);
    fours.resize(static_cast<size_t>(T * bytes + 63));
    for (int64_t t = 0; t < T; ++t)
      cpu::FourBlockActsAvx512(q.data() + t * K, K, const_cast<int8_t*>(FoursAt(fours)) + t * bytes);
  }
}

bool LinearInput::PreparedFor(const WeightMatrix& w) const { return layout == LayoutFor(Raw(w), activations); }

void LinearRows(const LinearInput& in, const WeightMatrix& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                bool accumulate) {
  if (r0 >= r1 || in.T <= 0) return;
  const cpu::RawWeight raw = Raw(w);
  if (in.layout != 0 && !in.PreparedFor(w)) {
    // Prepared for another format: prepare again for this one (which then fits).
    if (in.x == nullptr) {  // PrepareRowsOf's rows have no floats to start from: a caller's bug
      std::fprintf(stderr, "dsv3: internal error: int8 rows gathered for one weight format met %s\n",
                   DTypeName(w.w.dtype));
      std::abort();
    }
    thread_local LinearInput again;
    again.Prepare(in.x, in.T, w, in.activations);
    LinearRows(again, w, r0, r1, y, ldy, accumulate);
    return;
  }
  Count(w, in.T, r0, r1, in.layout);
  Rows(in, w, raw, r0, r1, y, ldy, accumulate);
}

void LinearRows(const float* x, int64_t T, const WeightMatrix& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                bool accumulate) {
  if (r0 >= r1 || T <= 0) return;
  // Quantizes x for this call alone: callers with many row blocks prepare a LinearInput once.
  LinearInput& in = CallInput();
  in.Prepare(x, T, w);
  LinearRows(in, w, r0, r1, y, ldy, accumulate);
}

void FetchWeightRows(const WeightMatrix& w, int64_t r0, int64_t r1) {
  // Every line of [begin, end), from begin's own line (a tensor sits at any offset in the file).
  const auto fetch = [](const void* begin, const void* end) {
    const uintptr_t e = reinterpret_cast<uintptr_t>(end);
    for (uintptr_t a = reinterpret_cast<uintptr_t>(begin) & ~uintptr_t{63}; a < e; a += 64)
      __builtin_prefetch(reinterpret_cast<const void*>(a), 0, 2);  // prefetcht1: into L2
  };
  // Rows [a, b) of a view whose first dimension is the rows (or the blocks of rows).
  const auto rows_of = [&](const TensorView& t, int64_t a, int64_t b) {
    if (t.empty() || a >= b) return;
    const size_t row_bytes = t.nbytes() / static_cast<size_t>(t.shape[0]);
    const char* base = static_cast<const char*>(t.data);
    fetch(base + a * row_bytes, base + b * row_bytes);
  };
  if (r0 >= r1) return;
  rows_of(w.w, r0, r1);
  if (w.w.dtype == DType::kU8) {  // INT4: a scale (and zero point) row per weight row
    rows_of(w.scale, r0, r1);
    rows_of(w.zero, r0, r1);
  } else {  // FP8 and INT8: a scale row per block of rows (BF16 and F32: no scales)
    const TensorView& scales = w.w.dtype == DType::kF8E4M3 ? w.scale_inv : w.scale;
    rows_of(scales, r0 / w.block_out, (r1 + w.block_out - 1) / w.block_out);
  }
}

void cpu::GemmAvx2WithScratch(const float* x, int64_t T, int64_t ldx, const cpu::RawWeight& w, int64_t r0,
                              int64_t r1, float* y, int64_t ldy, bool accumulate, bool avx512_tiles) {
  float* scratch = reinterpret_cast<float*>(KernelScratch(cpu::GemmScratchFloats(w.cols) * 4));
  cpu::GemmAvx2(x, T, ldx, w, r0, r1, y, ldy, accumulate, scratch, avx512_tiles);
}

void SetLinearKernel(LinearKernel k) {
  // A family this CPU lacks falls back to the next one it has.
  if (k == LinearKernel::kAvx512 && !GetCpuFeatures().HasAvx512VnniSet()) k = LinearKernel::kAvx2;
  if (k == LinearKernel::kAvx2 && !GetCpuFeatures().HasAvx2Set()) k = LinearKernel::kReference;
  g_forced.store(k, std::memory_order_relaxed);
}

LinearKernel ActiveLinearKernel() { return Resolve(); }
bool Bf16KernelActive() { return Resolve() == LinearKernel::kAvx512 && GetCpuFeatures().HasAvx512Bf16Set(); }

const char* LinearKernelName(LinearKernel k) {
  switch (k) {
    case LinearKernel::kAuto: return "auto";
    case LinearKernel::kReference: return "reference";
    case LinearKernel::kAvx2: return "avx2";
    case LinearKernel::kAvx512: return "avx512";
  }
  return "?";
}

void SetLinearActivations(LinearActivations a) { g_activations.store(a, std::memory_order_relaxed); }
LinearActivations GetLinearActivations() { return g_activations.load(std::memory_order_relaxed); }
LinearActivations CurrentLinearActivations() {
  switch (GetLinearActivations()) {
    case LinearActivations::kF32: return LinearActivations::kF32;
    case LinearActivations::kInt8All: return LinearActivations::kInt8;
    case LinearActivations::kBf16: return LinearActivations::kBf16;
    case LinearActivations::kInt8: break;
  }
  return t_decode_step ? LinearActivations::kInt8 : LinearActivations::kF32;
}
ScopedDecodeStep::ScopedDecodeStep(bool decode) : saved_(t_decode_step) { t_decode_step = decode; }
ScopedDecodeStep::~ScopedDecodeStep() { t_decode_step = saved_; }
const char* LinearActivationsName(LinearActivations a) {
  switch (a) {
    case LinearActivations::kInt8: return "int8";
    case LinearActivations::kF32: return "f32";
    case LinearActivations::kInt8All: return "int8-all";
    case LinearActivations::kBf16: return "bf16";
  }
  return "?";
}

void SetLinearCounters(LinearCounters* counters) { g_counters.store(counters, std::memory_order_relaxed); }

namespace {
// Adds n to this thread's slot's `field` of the counters, when they are set.
void CountInto(std::atomic<uint64_t> LinearCounters::Slot::*field, uint64_t n) {
  LinearCounters* c = g_counters.load(std::memory_order_relaxed);
  if (c != nullptr) (CounterSlot(c).*field).fetch_add(n, std::memory_order_relaxed);
}
}  // namespace

void CountFlops(uint64_t flops) { CountInto(&LinearCounters::Slot::flops, flops); }
void CountBf16Flops(uint64_t flops) { CountInto(&LinearCounters::Slot::bf16_flops, flops); }

}  // namespace dsv3
