// The latent KV cache of MLA: per layer and sequence slot, the normalized compressed KV
// (kv_lora_rank floats) and the shared rope key (qk_rope_head_dim floats) per position —
// the "absorbed" form, 576 floats per token per layer on DeepSeek-V3 instead of 128 heads'
// full keys and values. Sized once from --max-seq-len and --batch-size.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/base/huge_page_buffer.h"

namespace dsv3 {

class LatentKvCache {
 public:
  LatentKvCache() = default;
  LatentKvCache(int64_t layers, int64_t slots, int64_t max_len, int64_t kv_lora_rank, int64_t rope_dim)
      : layers_(layers), slots_(slots), max_len_(max_len), rank_(kv_lora_rank), rope_(rope_dim),
        kv_floats_(layers * slots * max_len * kv_lora_rank), pe_floats_(layers * slots * max_len * rope_dim),
        pe_offset_((kv_floats_ + kLineFloats - 1) / kLineFloats * kLineFloats),
        buffer_(static_cast<size_t>(pe_offset_ + pe_floats_) * sizeof(float)) {}

  // [max_len, kv_lora_rank] rows for one layer and slot.
  float* kv(int64_t layer, int64_t slot) { return floats() + (layer * slots_ + slot) * max_len_ * rank_; }
  // [max_len, rope_dim] rows.
  float* pe(int64_t layer, int64_t slot) { return floats() + pe_offset_ + (layer * slots_ + slot) * max_len_ * rope_; }

  // Positions [0, n) of slot `from`, every layer, into slot `to`: a prefix computed once
  // serves another sequence that starts with the same tokens.
  void CopyPrefix(int64_t from, int64_t to, int64_t n) {
    if (from == to || n <= 0) return;
    for (int64_t l = 0; l < layers_; ++l) {
      std::memcpy(kv(l, to), kv(l, from), static_cast<size_t>(n * rank_) * sizeof(float));
      std::memcpy(pe(l, to), pe(l, from), static_cast<size_t>(n * rope_) * sizeof(float));
    }
  }

  int64_t slots() const { return slots_; }
  int64_t max_len() const { return max_len_; }
  int64_t bytes() const { return (kv_floats_ + pe_floats_) * static_cast<int64_t>(sizeof(float)); }

 private:
  static constexpr int64_t kLineFloats = 16;
  float* floats() { return static_cast<float*>(buffer_.data()); }

  int64_t layers_ = 0, slots_ = 0, max_len_ = 0, rank_ = 0, rope_ = 0;
  int64_t kv_floats_ = 0, pe_floats_ = 0;
  int64_t pe_offset_ = 0;  // the rope keys start on the line after the latents
  // Both caches in one zeroed mapping on 2 MiB pages (HugePageBuffer), so on cache lines: rows
  // whose width is a multiple of 16 floats (every DeepSeek config) are too, and decode's 256-bit
  // loads of a row never straddle two lines. Decode at depth streams the cache once per token:
  // on 4 KiB pages the hardware prefetchers stop at every page and each page is a TLB miss.
  HugePageBuffer buffer_;
};

}  // namespace dsv3
