// The SwiGLU feed-forward block, down(silu(gate(x)) * up(x)): the dense layers' FFN, each
// routed expert and the fused shared experts.
#pragma once

#include <cstdint>

#include "engine/model/weights.h"

namespace dsv3 {

// out[N, D] (+)= MLP(x[N, D]). gate_buf and up_buf hold at least N * width floats.
void MlpForward(const MlpWeights& w, const float* x, int64_t N, float* gate_buf, float* up_buf, float* out,
                bool accumulate);

}  // namespace dsv3
