// The latent KV cache of MLA: per layer and sequence slot, the normalized compressed KV
// (kv_lora_rank floats) and the shared rope key (qk_rope_head_dim floats) per position —
// the "absorbed" form, 576 floats per token per layer on DeepSeek-V3 instead of 128 heads'
// full keys and values. Sized once from --max-seq-len and --batch-size.
#pragma once

#include <cstdint>

#include "engine/base/line_aligned.h"

namespace dsv3 {

class LatentKvCache {
 public:
  LatentKvCache() = default;
  LatentKvCache(int64_t layers, int64_t slots, int64_t max_len, int64_t kv_lora_rank, int64_t rope_dim)
      : layers_(layers), slots_(slots), max_len_(max_len), rank_(kv_lora_rank), rope_(rope_dim),
        kv_(static_cast<size_t>(layers * slots * max_len * kv_lora_rank)),
        pe_(static_cast<size_t>(layers * slots * max_len * rope_dim)) {}

  // [max_len, kv_lora_rank] rows for one layer and slot.
  float* kv(int64_t layer, int64_t slot) { return kv_.data() + (layer * slots_ + slot) * max_len_ * rank_; }
  // [max_len, rope_dim] rows.
  float* pe(int64_t layer, int64_t slot) { return pe_.data() + (layer * slots_ + slot) * max_len_ * rope_; }

  int64_t slots() const { return slots_; }
  int64_t max_len() const { return max_len_; }
  int64_t bytes() const { return static_cast<int64_t>((kv_.size() + pe_.size()) * sizeof(float)); }

 private:
  int64_t layers_ = 0, slots_ = 0, max_len_ = 0, rank_ = 0, rope_ = 0;
  // On cache lines, so rows whose width is a multiple of 16 floats (every DeepSeek config) are
  // too: decode's 256-bit loads of a cached row never straddle two lines.
  LineAlignedFloats kv_, pe_;
};

}  // namespace dsv3
