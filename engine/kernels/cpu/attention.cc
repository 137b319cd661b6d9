// Multi-query attention products (ops.h): the AVX2 kernels when the CPU has them and the Linear
// kernel family is not forced to the reference (their AVX-512 forms, the same bits, for the
// avx512 family), else the reference twin below (Eigen matrix products; the tests compare the two).
#include <vector>

#include <Eigen/Core>

#include "engine/base/dtype.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using MMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

bool UseAvx2() { return UsesAvx2Kernels(ActiveLinearKernel()); }
bool UseAvx512() { return ActiveLinearKernel() == LinearKernel::kAvx512; }

// Above this many queries the product is a full matrix product (prefill attention, expanding
// keys and values from the latents) and goes through Linear's cache-blocked GEMM, the keys
// taking the place of float32 weight rows; below it, the multi-query kernel, which reads each
// key row once for all queries straight from memory (decode).
constexpr int64_t kGemmMinQueries = 16;

// scores[m * lds + s] (+)= q[m] · keys[s] by that GEMM, keys float32 or bf16 (kind): bf16 rows
// are converted as BF16 weights are, exactly, so the bits are those of their float32 rows.
void GemmScores(const float* q, int64_t M, int64_t ldq, cpu::WeightKind kind, const void* keys, int64_t S, int64_t C,
                float* scores, int64_t lds, bool accumulate) {
  const int64_t value_bytes = kind == cpu::WeightKind::kBF16 ? 2 : 4;
  const cpu::RawWeight raw{.kind = kind, .data = keys, .rows = S, .cols = C, .row_bytes = C * value_bytes};
  cpu::GemmAvx2WithScratch(q, M, ldq, raw, 0, S, scores, lds, accumulate);
}

// The multi-query kernels of the active family, AVX-512 or AVX2, over float32 or bf16 rows (T):
// false where they do not apply (the reference family; for the scores, 16 or more queries).
template <typename T>
bool TwoPartKernel(const float* q1, int64_t ldq1, const T* keys1, int64_t C1, const float* q2, int64_t ldq2,
                   const T* keys2, int64_t C2, int64_t M, int64_t S, float* scores, int64_t lds) {
  if (!UseAvx2() || M >= kGemmMinQueries) return false;
  if (UseAvx512()) {
    cpu::MultiQueryScoresTwoPartAvx512(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds);
  } else {
    cpu::MultiQueryScoresTwoPartAvx2(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds);
  }
  return true;
}
template <typename T>
bool WeightedSumKernel(const float* p, int64_t M, int64_t ldp, const T* vals, int64_t S, int64_t C, float* out) {
  if (!UseAvx2()) return false;
  if (UseAvx512()) {
    cpu::MultiQueryWeightedSumAvx512(p, M, ldp, vals, S, C, out);
  } else {
    cpu::MultiQueryWeightedSumAvx2(p, M, ldp, vals, S, C, out);
  }
  return true;
}

}  // namespace

void MultiQueryScores(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                      float* scores, int64_t lds, bool accumulate) {
  if (UseAvx2()) {
    if (M >= kGemmMinQueries && S > 0 && C > 0) {
      GemmScores(q, M, ldq, cpu::WeightKind::kF32, keys, S, C, scores, lds, accumulate);
    } else if (UseAvx512()) {
      cpu::MultiQueryScoresAvx512(q, M, ldq, keys, S, C, scores, lds, accumulate);
    } else {
      cpu::MultiQueryScoresAvx2(q, M, ldq, keys, S, C, scores, lds, accumulate);
    }
    return;
  }
  CMap Q(q, M, C, Eigen::OuterStride<>(ldq)), K(keys, S, C, Eigen::OuterStride<>(C));
  MMap out(scores, M, S, Eigen::OuterStride<>(lds));
  if (accumulate) {
    out.noalias() += Q * K.transpose();
  } else {
    out.noalias() = Q * K.transpose();
  }
}

void MultiQueryScoresTwoPart(const float* q1, int64_t ldq1, const float* keys1, int64_t C1, const float* q2,
                             int64_t ldq2, const float* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                             int64_t lds) {
  if (TwoPartKernel(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds)) return;
  // The reference, and many queries (two GEMMs): the parts one after the other.
  MultiQueryScores(q1, M, ldq1, keys1, S, C1, scores, lds, false);
  MultiQueryScores(q2, M, ldq2, keys2, S, C2, scores, lds, true);
}

void MultiQueryWeightedSum(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                           float* out) {
  if (WeightedSumKernel(p, M, ldp, vals, S, C, out)) return;
  CMap P(p, M, S, Eigen::OuterStride<>(ldp)), V(vals, S, C, Eigen::OuterStride<>(C));
  MMap(out, M, C, Eigen::OuterStride<>(C)).noalias() = P * V;
}

void MultiQueryScoresTwoPart(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                             int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                             int64_t lds) {
  if (GetLinearActivations() == LinearActivations::kBf16 && cpu::Bf16ScoresTake(C1, C2)) {
    // The queries rounded to bf16 against the cache's bf16 values, as BF16 weights meet bf16
    // activations: vdpbf16ps where the CPU has it, else its twin (the same bits).
    CountBf16Flops(static_cast<uint64_t>(2 * M * S * (C1 + C2)));
    if (Bf16KernelActive()) {  // as Linear's bf16 products (ops.h)
      cpu::Bf16QueryScoresAvx512(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds);
    } else {
      cpu::Bf16QueryScoresReference(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds);
    }
    return;
  }
  if (TwoPartKernel(q1, ldq1, keys1, C1, q2, ldq2, keys2, C2, M, S, scores, lds)) return;
  if (UseAvx2() && S > 0 && C1 > 0 && C2 > 0) {  // many queries: the float32 form's two GEMMs
    GemmScores(q1, M, ldq1, cpu::WeightKind::kBF16, keys1, S, C1, scores, lds, false);
    GemmScores(q2, M, ldq2, cpu::WeightKind::kBF16, keys2, S, C2, scores, lds, true);
    return;
  }
  thread_local std::vector<float> wide1, wide2;
  wide1.resize(static_cast<size_t>(S * C1));
  wide2.resize(static_cast<size_t>(S * C2));
  WidenBf16(keys1, S * C1, wide1.data());
  WidenBf16(keys2, S * C2, wide2.data());
  MultiQueryScoresTwoPart(q1, ldq1, wide1.data(), C1, q2, ldq2, wide2.data(), C2, M, S, scores, lds);
}

void MultiQueryWeightedSum(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                           float* out) {
  if (GetLinearActivations() == LinearActivations::kBf16 && cpu::Bf16WeightedSumTakes(C)) {
    // The probabilities rounded to bf16 against the cache's bf16 values, as the scores' queries.
    CountBf16Flops(static_cast<uint64_t>(2 * M * S * C));
    if (Bf16KernelActive()) {  // as Linear's bf16 products (ops.h)
      cpu::Bf16WeightedSumAvx512(p, M, ldp, vals, S, C, out);
    } else {
      cpu::Bf16WeightedSumReference(p, M, ldp, vals, S, C, out);
    }
    return;
  }
  if (WeightedSumKernel(p, M, ldp, vals, S, C, out)) return;
  thread_local std::vector<float> wide;
  wide.resize(static_cast<size_t>(S * C));
  WidenBf16(vals, S * C, wide.data());
  MultiQueryWeightedSum(p, M, ldp, wide.data(), S, C, out);
}

void WidenBf16(const uint16_t* in, int64_t n, float* out) {
  // Exact on every path; prefill over a bf16 cache widens each chunk's rows before its matrix
  // products, so the vector forms matter for speed only.
  if (UseAvx512()) return cpu::WidenBf16Avx512(in, n, out);
  if (UseAvx2()) return cpu::WidenBf16Avx2(in, n, out);
  for (int64_t i = 0; i < n; ++i) out[i] = BF16ToF32(in[i]);
}

}  // namespace dsv3
