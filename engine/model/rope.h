// Rotary position embedding for the rope part of MLA: interleaved pairs (x[2i], x[2i+1]),
// with YaRN frequency interpolation for long context, as DeepSeek's model.py computes it
// (angles in float32: inv_freq = 1/theta^(2i/d), angle = float32(pos) * inv_freq).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/config.h"

namespace dsv3 {

class RopeTable {
 public:
  RopeTable() = default;
  // Precomputes cos/sin for positions [0, max_positions).
  RopeTable(const ModelConfig& c, int64_t max_positions);

  // Rotates one vector of qk_rope_head_dim values at position pos in place.
  void Apply(float* x, int64_t pos) const;
  int64_t max_positions() const { return max_positions_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }

 private:
  int64_t half_ = 0, max_positions_ = 0;
  std::vector<float> inv_freq_;
  std::vector<float> cos_, sin_;  // [max_positions, half]
};

}  // namespace dsv3
