// Int8-activation Linear for INT8 and INT4 weights: the portable twin of linear_q8_avx2.cc.
// The contract (linear_kernels.h) defines the result without reference to SIMD width: exact
// integer block sums, then one fma per block in column order. This file spells it out in plain
// loops; the AVX2 kernels must match it bit for bit (tests/kernels/linear_q8_test.cc).
#include <cmath>
#include <cstdlib>

#include "engine/base/dtype.h"
#include "engine/kernels/cpu/linear_kernels.h"

namespace dsv3::cpu {

namespace {

// Column of block position p (0..31) in the nibble order: even columns first, then odd.
inline int64_t NibbleColumn(int64_t p) { return p < 16 ? 2 * p : 2 * (p - 16) + 1; }

// Where position p of block b (of nb) sits in a token's INT4 activations: blocks go in pairs,
// (b, b+1) as b's evens, b+1's evens, b's odds, b+1's odds; an odd count's last block alone.
inline int64_t Int4ActIndex(int64_t b, int64_t p, int64_t nb) {
  if ((b | 1) >= nb) return b * kActBlock + p;
  return (b & ~int64_t{1}) * kActBlock + (p < 16 ? 0 : 32) + (b & 1) * 16 + p % 16;
}

}  // namespace

bool TakesInt8Activations(const RawWeight& w) {
  if (w.cols <= 0 || w.cols % kActBlock != 0 || w.block_in <= 0 || w.block_in % kActBlock != 0) return false;
  switch (w.kind) {
    case WeightKind::kI8: return w.scale != nullptr && w.block_out > 0 && w.row_bytes == w.cols;
    case WeightKind::kInt4: return w.scale16 != nullptr && w.row_bytes == w.cols / 2;
    default: return false;
  }
}

void QuantizeActsReference(const float* x, int64_t K, bool nibble_order, int8_t* q, float* d, int32_t* sum) {
  const int64_t nb = K / kActBlock;
  // Where position p of block b is stored.
  const auto at = [&](int64_t b, int64_t p) { return nibble_order ? Int4ActIndex(b, p, nb) : b * kActBlock + p; };
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kActBlock;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t p = 0; p < kActBlock; ++p) {
      finite = finite && std::isfinite(xb[p]);
      amax = std::fmax(amax, std::fabs(xb[p]));
    }
    if (!finite) {  // see linear_kernels.h
      d[b] = std::nanf("");
      for (int64_t p = 0; p < kActBlock; ++p) q[at(b, p)] = 0;
      sum[b] = 0;
      continue;
    }
    d[b] = amax / 127.0f;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int64_t p = 0; p < kActBlock; ++p) {
      const int64_t c = nibble_order ? NibbleColumn(p) : p;
      const int v = static_cast<int>(std::nearbyint(xb[c] * id));
      q[at(b, p)] = static_cast<int8_t>(v);
      s += v;
    }
    sum[b] = s;
  }
}

void QLinearReference(const QuantizedActs& a, const RawWeight& w, int64_t r0, int64_t r1, float* y, int64_t ldy,
                      bool accumulate) {
  const int64_t K = a.K, nb = K / kActBlock;
  const bool int4 = w.kind == WeightKind::kInt4;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
    for (int64_t t = 0; t < a.T; ++t) {
      const int8_t* qt = a.q + t * K;
      // INT8: one chain over the blocks. INT4: eight, block b on chain b mod 8.
      float chain[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t k0 = b * kActBlock, g = k0 / w.block_in;
        int32_t dot = 0;
        float s;
        if (int4) {
          // Position p of the block holds column NibbleColumn(p): byte k0/2 + (p mod 16), low
          // nibble for p < 16.
          const int32_t z = w.zero ? w.zero[r * w.scale_cols + g] : 8;
          for (int64_t p = 0; p < kActBlock; ++p) {
            const uint8_t byte = row[k0 / 2 + p % 16];
            const int32_t u = p < 16 ? (byte & 0xf) : (byte >> 4);
            dot += (u - z) * qt[Int4ActIndex(b, p, nb)];
          }
          s = F16ToF32(w.scale16[r * w.scale_cols + g]);
        } else {
          for (int64_t p = 0; p < kActBlock; ++p) dot += static_cast<int8_t>(row[k0 + p]) * qt[k0 + p];
          s = w.scale[(r / w.block_out) * w.scale_cols + g];
        }
        float& acc = chain[int4 ? b % 8 : 0];
        acc = std::fma(static_cast<float>(dot), s * a.d[t * nb + b], acc);
      }
      const float* c = chain;
      const float sum = int4 ? ((c[0] + c[4]) + (c[2] + c[6])) + ((c[1] + c[5]) + (c[3] + c[7])) : c[0];
      float* out = y + t * ldy + r;
      *out = accumulate ? *out + sum : sum;
    }
  }
}

}  // namespace dsv3::cpu
