// BF16 weights times bf16 activations (LinearActivations::kBf16): the rounding of the
// activations and the scalar twins of linear_bf16_avx512.cc and attention_bf16_avx512.cc, whose
// arithmetic linear_kernels.h states. The twins follow vdpbf16ps exactly as this CPU family
// computes it (checked on 3.2 million lanes of random and extreme operands on Zen 5, and by the
// kernel tests on every machine that has the instruction): a lane adds the product of its odd
// pair and then that of its even pair (LaneStep), each product exact and each addition rounded
// once to float32, with bf16 subnormal inputs read as zero and subnormal results flushed to
// zero (signed as the exact sum).
#include <cmath>
#include <cstring>

#include <vector>

#include "engine/base/dtype.h"
#include "engine/kernels/cpu/linear_kernels.h"

namespace dsv3::cpu {

namespace {

// A bf16 operand as vdpbf16ps reads it: a subnormal as zero.
float FromBf16(uint16_t h) { return BF16ToF32((h & 0x7f80) == 0 ? h & 0x8000 : h); }

// acc + p rounded once to float32 (p, a product of two bf16 values, is exact in double, and
// so is the sum wherever a double rounding could differ from a single one), subnormal results
// flushed to a zero signed as the exact sum.
float AddFlushed(float acc, double p) {
  const double exact = static_cast<double>(acc) + p;
  const float r = static_cast<float>(exact);
  if (std::fpclassify(r) == FP_SUBNORMAL || (r == 0.0f && exact != 0.0)) return std::signbit(exact) ? -0.0f : 0.0f;
  return r;
}

// One vdpbf16ps step of a lane: the odd pair's product added, then the even pair's.
float LaneStep(float lane, double odd, double even) { return AddFlushed(AddFlushed(lane, odd), even); }

}  // namespace

uint16_t RoundToBf16(float v) {
  // dtype.h's rounding (torch's: to nearest, ties to even, NaN quieted), with a subnormal read
  // as a signed zero first, as vcvtneps2bf16 does.
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7f800000u) == 0) return static_cast<uint16_t>((bits >> 16) & 0x8000u);
  return F32ToBF16(v);
}

void RoundActsToBf16(const float* x, int64_t K, uint16_t* out) {
  int64_t k = 0;
  for (; k < K; ++k) out[k] = RoundToBf16(x[k]);
  for (const int64_t Kh = Bf16ActCols(K); k < Kh; ++k) out[k] = 0;
}

void Bf16LinearReference(const uint16_t* xh, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                         int64_t ldy, bool accumulate) {
  const int64_t K = w.cols, Kh = Bf16ActCols(K);
  for (int64_t r = r0; r < r1; ++r) {
    const uint16_t* wr = reinterpret_cast<const uint16_t*>(static_cast<const char*>(w.data) + r * w.row_bytes);
    for (int64_t t = 0; t < T; ++t) {
      const uint16_t* xt = xh + t * Kh;
      float lane[16] = {};
      for (int64_t k0 = 0; k0 < Kh; k0 += 32) {
        for (int i = 0; i < 16; ++i) {
          const int64_t even = k0 + 2 * i, odd = even + 1;
          const float w_even = even < K ? FromBf16(wr[even]) : 0.0f, w_odd = odd < K ? FromBf16(wr[odd]) : 0.0f;
          lane[i] = LaneStep(lane[i], static_cast<double>(w_odd) * FromBf16(xt[odd]),
                             static_cast<double>(w_even) * FromBf16(xt[even]));
        }
      }
      float half[8], quarter[4];
      for (int i = 0; i < 8; ++i) half[i] = lane[i] + lane[i + 8];
      for (int i = 0; i < 4; ++i) quarter[i] = half[i] + half[i + 4];
      const float sum = (quarter[0] + quarter[2]) + (quarter[1] + quarter[3]);
      float& out = y[t * ldy + r];
      out = accumulate ? out + sum : sum;
    }
  }
}

void Bf16QueryScoresReference(const float* q1, int64_t ldq1, const uint16_t* keys1, int64_t C1, const float* q2,
                              int64_t ldq2, const uint16_t* keys2, int64_t C2, int64_t M, int64_t S, float* scores,
                              int64_t lds) {
  std::vector<uint16_t> q(static_cast<size_t>(C1 + C2));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t c = 0; c < C1; ++c) q[c] = RoundToBf16(q1[m * ldq1 + c]);
    for (int64_t c = 0; c < C2; ++c) q[C1 + c] = RoundToBf16(q2[m * ldq2 + c]);
    for (int64_t s = 0; s < S; ++s) {
      float lane[8] = {};
      // Part one's columns, then part two's, sixteen at a time (a last eight padded with zeros):
      // lane j, odd column then even.
      const auto part = [&](const uint16_t* qp, const uint16_t* key, int64_t C) {
        const auto product = [&](int64_t i) {
          return i < C ? static_cast<double>(FromBf16(qp[i])) * FromBf16(key[i]) : 0.0;
        };
        for (int64_t c = 0; c < C; c += 16) {
          for (int j = 0; j < 8; ++j) lane[j] = LaneStep(lane[j], product(c + 2 * j + 1), product(c + 2 * j));
        }
      };
      part(q.data(), keys1 + s * C1, C1);
      part(q.data() + C1, keys2 + s * C2, C2);
      scores[m * lds + s] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
  }
}

void Bf16WeightedSumReference(const float* p, int64_t M, int64_t ldp, const uint16_t* vals, int64_t S, int64_t C,
                              float* out) {
  for (int64_t m = 0; m < M; ++m) {
    const auto weight = [&](int64_t s) { return s < S ? static_cast<double>(FromBf16(RoundToBf16(p[m * ldp + s]))) : 0.0; };
    for (int64_t c = 0; c < C; ++c) {
      const auto value = [&](int64_t s) { return s < S ? static_cast<double>(FromBf16(vals[s * C + c])) : 0.0; };
      float acc = 0.0f;
      for (int64_t s = 0; s < S; s += 2) acc = LaneStep(acc, weight(s + 1) * value(s + 1), weight(s) * value(s));
      out[m * C + c] = acc;
    }
  }
}

void Fp8Bf16LinearReference(const float* x, int64_t T, const RawWeight& w, int64_t r0, int64_t r1, float* y,
                            int64_t ldy, bool accumulate) {
  const int64_t K = w.cols, Kh = Bf16ActCols(K);
  std::vector<uint16_t> xs(static_cast<size_t>(T * Kh)), row(static_cast<size_t>(Kh));
  int64_t scaled_for = -1;  // the row block xs holds
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t rb = r / w.block_out;
    if (rb != scaled_for) {
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < Kh; ++k)
          xs[t * Kh + k] = k < K ? RoundToBf16(x[t * K + k] * (w.scale[rb * w.scale_cols + k / w.block_in] * 256.0f)) : 0;
      scaled_for = rb;
    }
    const uint8_t* q = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
    for (int64_t k = 0; k < Kh; ++k) {
      // Fp8Format's float16 bits: e4m3 · 2^-8, exactly.
      const uint16_t h = k < K ? static_cast<uint16_t>((static_cast<int8_t>(q[k]) * 128) & 0xbfff) : 0;
      row[k] = RoundToBf16(F16ToF32(h));
    }
    RawWeight one;
    one.kind = WeightKind::kBF16;
    one.data = row.data();
    one.rows = 1;
    one.cols = K;
    one.row_bytes = Kh * 2;
    Bf16LinearReference(xs.data(), T, one, 0, 1, y + r, ldy, accumulate);
  }
}

}  // namespace dsv3::cpu
