// Integer weight formats of dsv3 (not a published standard; config.json names them
// "dsv3_int8" / "dsv3_int4" and spells out every choice below so another reader can decode
// them without this code):
//
//   int8  `<name>`        I8  [out, in]            symmetric, q in [-127, 127]
//         `<name>_scale`  F32 [ceil(out/bo), ceil(in/bi)]   w = q * scale
//         per output channel: bo = 1, bi = in (scale [out, 1]); per block: bo = bi = N.
//   int4  `<name>`        U8  [out, ceil(in/2)]    two values per byte: column 2k in the low
//                                                  nibble, 2k+1 in the high nibble (a final odd
//                                                  column leaves the high nibble 0)
//         `<name>_scale`  F16 [out, ceil(in/g)]    w = (u - z) * scale, u in [0, 15]
//         `<name>_zero`   U8  [out, ceil(in/g)]    asymmetric only, z in [0, 15]; symmetric
//                                                  checkpoints have no _zero and z = 8
//         group g along the input dimension (g = in: one group per output channel).
//
// Scales are chosen so every value is representable: int8 and symmetric int4 map the group's
// amax to 127 / 7; asymmetric int4 maps [min(lo,0), max(hi,0)] onto 0..15. The int4 scale is
// rounded *up* to F16 before the values are quantized with it, so the error bound
// |w - ŵ| <= scale/2 holds for the stored scale. The engine decodes these in
// kernels/cpu/dequantize.cc (DequantizeRows); this file is the encoder and the bound.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

inline std::string Int8ScaleName(const std::string& w) { return w + "_scale"; }
inline std::string Int4ScaleName(const std::string& w) { return w + "_scale"; }
inline std::string Int4ZeroName(const std::string& w) { return w + "_zero"; }

struct Int8Block {
  std::vector<int8_t> q;      // [rows, cols]
  std::vector<float> scale;   // [ceil(rows/bo), ceil(cols/bi)]
};

// bo, bi > 0 (the caller passes bi = cols for per-channel). Fails on a non-finite weight,
// naming `what`.
StatusOr<Int8Block> QuantizeInt8(const float* w, int64_t rows, int64_t cols, int64_t bo, int64_t bi,
                                 const std::string& what);

struct Int4Groups {
  std::vector<uint8_t> packed;  // [rows, ceil(cols/2)]
  std::vector<uint16_t> scale;  // F16 [rows, ceil(cols/g)]
  std::vector<uint8_t> zero;    // [rows, ceil(cols/g)]; empty when symmetric
};

StatusOr<Int4Groups> QuantizeInt4(const float* w, int64_t rows, int64_t cols, int64_t group, bool symmetric,
                                  const std::string& what);

// Smallest F16 not below x (x >= 0, finite, <= 65504).
uint16_t F32ToF16RoundUp(float x);

}  // namespace dsv3
