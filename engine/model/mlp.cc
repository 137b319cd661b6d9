#include "engine/model/mlp.h"

#include "engine/kernels/ops.h"

namespace dsv3 {

void MlpForward(const MlpWeights& w, const float* x, int64_t N, float* gate_buf, float* up_buf, float* out,
                bool accumulate) {
  const int64_t width = w.gate_proj.rows();
  LinearSameInput(x, N, {{&w.gate_proj, gate_buf}, {&w.up_proj, up_buf}});
  SiluMul(gate_buf, up_buf, N * width);
  if (accumulate) {
    LinearAccumulate(gate_buf, N, w.down_proj, out);
  } else {
    Linear(gate_buf, N, w.down_proj, out);
  }
}

}  // namespace dsv3
