#include "engine/model/rope.h"

#include <algorithm>
#include <cmath>

namespace dsv3 {

namespace {

// Dimension index at which a rotation completes `num_rotations` turns over the original
// context (YaRN's correction dimension).
double CorrectionDim(double num_rotations, int64_t dim, double base, int64_t original_max) {
  return dim * std::log(original_max / (num_rotations * 2.0 * M_PI)) / (2.0 * std::log(base));
}

}  // namespace

RopeTable::RopeTable(const ModelConfig& c, int64_t max_positions) : max_positions_(max_positions) {
  const int64_t dim = c.qk_rope_head_dim;
  half_ = dim / 2;
  inv_freq_.resize(half_);
  const float base = static_cast<float>(c.rope_theta);
  for (int64_t i = 0; i < half_; ++i)
    inv_freq_[i] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));

  float cos_sin_scale = 1.0f;
  if (c.rope_scaling.type == RopeType::kYarn) {
    const auto& y = c.rope_scaling;
    const int64_t orig = y.original_max_position_embeddings;
    double low = std::max(std::floor(CorrectionDim(y.beta_fast, dim, c.rope_theta, orig)), 0.0);
    double high = std::min(std::ceil(CorrectionDim(y.beta_slow, dim, c.rope_theta, orig)), static_cast<double>(dim - 1));
    if (low == high) high += 0.001;  // avoid a zero-width ramp, as the reference does
    for (int64_t i = 0; i < half_; ++i) {
      float ramp = static_cast<float>(std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0));
      // ramp 0: high-frequency dims keep their frequency; ramp 1: interpolated by factor.
      inv_freq_[i] = inv_freq_[i] / static_cast<float>(y.factor) * ramp + inv_freq_[i] * (1.0f - ramp);
    }
    // HF scales cos/sin by mscale/mscale_all_dim; 1 whenever the two agree (all released
    // checkpoints), and model.py, which has a single mscale, assumes exactly that.
    if (y.mscale_all_dim != 0.0)
      cos_sin_scale = static_cast<float>(YarnGetMscale(y.factor, y.mscale) / YarnGetMscale(y.factor, y.mscale_all_dim));
  }
  cos_.resize(static_cast<size_t>(max_positions * half_));
  sin_.resize(cos_.size());
  for (int64_t p = 0; p < max_positions; ++p) {
    for (int64_t i = 0; i < half_; ++i) {
      float angle = static_cast<float>(p) * inv_freq_[i];
      cos_[p * half_ + i] = std::cos(angle) * cos_sin_scale;
      sin_[p * half_ + i] = std::sin(angle) * cos_sin_scale;
    }
  }
}

void RopeTable::Apply(float* x, int64_t pos) const {
  const float* cs = cos_.data() + pos * half_;
  const float* sn = sin_.data() + pos * half_;
  for (int64_t i = 0; i < half_; ++i) {
    float a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * cs[i] - b * sn[i];
    x[2 * i + 1] = a * sn[i] + b * cs[i];
  }
}

}  // namespace dsv3
