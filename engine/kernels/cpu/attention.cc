// Multi-query attention products (ops.h): the AVX2 kernels when the CPU has them and the Linear
// kernel family is not forced to the reference, else the reference twin below (plain loops in
// one fixed order; the tests compare the two).
#include <cstring>

#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

namespace {

bool UseAvx2() { return ActiveLinearKernel() == LinearKernel::kAvx2; }

}  // namespace

void MultiQueryScores(const float* q, int64_t M, int64_t ldq, const float* keys, int64_t S, int64_t C,
                      float* scores, int64_t lds, bool accumulate) {
  if (UseAvx2()) {
    cpu::MultiQueryScoresAvx2(q, M, ldq, keys, S, C, scores, lds, accumulate);
    return;
  }
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t s = 0; s < S; ++s) {
      const float d = Dot(q + m * ldq, keys + s * C, C);
      scores[m * lds + s] = accumulate ? scores[m * lds + s] + d : d;
    }
  }
}

void MultiQueryWeightedSum(const float* p, int64_t M, int64_t ldp, const float* vals, int64_t S, int64_t C,
                           float* out) {
  if (UseAvx2()) {
    cpu::MultiQueryWeightedSumAvx2(p, M, ldp, vals, S, C, out);
    return;
  }
  std::memset(out, 0, static_cast<size_t>(M * C) * sizeof(float));
  for (int64_t m = 0; m < M; ++m) {
    float* o = out + m * C;
    for (int64_t s = 0; s < S; ++s) {
      const float w = p[m * ldp + s];
      const float* v = vals + s * C;
      for (int64_t c = 0; c < C; ++c) o[c] += w * v[c];
    }
  }
}

}  // namespace dsv3
