// The latent KV cache of MLA: per layer and sequence slot, the normalized compressed KV
// (kv_lora_rank floats) and the shared rope key (qk_rope_head_dim floats) per position —
// the "absorbed" form, 576 floats per token per layer on DeepSeek-V3 instead of 128 heads'
// full keys and values. Sized once from --max-seq-len and --batch-size.
#pragma once

#include <cstdint>
#include <cstddef>
#include <vector>

namespace dsv3 {

class LatentKvCache {
 public:
  LatentKvCache() = default;
  LatentKvCache(int64_t layers, int64_t slots, int64_t max_len, int64_t kv_lora_rank, int64_t rope_dim)
      : layers_(layers), slots_(slots), max_len_(max_len), rank_(kv_lora_rank), rope_(rope_dim),
        kv_(static_cast<size_t>(layers * slots * max_len * kv_lora_rank + kLineFloats - 1)),
        pe_(static_cast<size_t>(layers * slots * max_len * rope_dim + kLineFloats - 1)),
        kv_base_(LineAligned(kv_.data())), pe_base_(LineAligned(pe_.data())) {}
  LatentKvCache(const LatentKvCache&) = delete;
  LatentKvCache& operator=(const LatentKvCache&) = delete;
  LatentKvCache(LatentKvCache&&) = default;  // a moved vector keeps its buffer, so the bases stay valid
  LatentKvCache& operator=(LatentKvCache&&) = default;

  // [max_len, kv_lora_rank] rows for one layer and slot.
  float* kv(int64_t layer, int64_t slot) { return kv_base_ + (layer * slots_ + slot) * max_len_ * rank_; }
  // [max_len, rope_dim] rows.
  float* pe(int64_t layer, int64_t slot) { return pe_base_ + (layer * slots_ + slot) * max_len_ * rope_; }

  int64_t slots() const { return slots_; }
  int64_t max_len() const { return max_len_; }
  int64_t bytes() const { return static_cast<int64_t>((kv_.size() + pe_.size()) * sizeof(float)); }

 private:
  // The caches start on a cache line (64 bytes), so rows whose width is a multiple of 16 floats
  // (every DeepSeek config) do too: decode's 256-bit loads of a row never straddle two lines.
  // From malloc's 16-byte alignment every other load did, which cost 7% of the attention
  // kernels' time at depth 4096 (one thread, 12 layers of bench-v3-mini: 15.4 -> 16.4 ms).
  static constexpr int64_t kLineFloats = 16;
  static float* LineAligned(float* p) {
    const auto misalign = reinterpret_cast<uintptr_t>(p) % (kLineFloats * sizeof(float));
    return misalign == 0 ? p : p + (kLineFloats * sizeof(float) - misalign) / sizeof(float);
  }

  int64_t layers_ = 0, slots_ = 0, max_len_ = 0, rank_ = 0, rope_ = 0;
  std::vector<float> kv_, pe_;
  float* kv_base_ = nullptr;
  float* pe_base_ = nullptr;
};

}  // namespace dsv3
