// The latent KV cache of MLA: per layer and sequence slot, the normalized compressed KV
// (kv_lora_rank values) and the shared rope key (qk_rope_head_dim values) per position —
// the "absorbed" form, 576 values per token per layer on DeepSeek-V3 instead of 128 heads'
// full keys and values. Sized once from --max-seq-len and --batch-size.
//
// Held in float32 (the default: attention then sees the exact values) or in bfloat16
// (--kv-cache-dtype bf16, as llama.cpp's -ctk/-ctv and vLLM's kv_cache_dtype offer): half the
// memory (DeepSeek-V3 at 128K context: 9.2 instead of 18.4 GB a sequence). A bf16 row is the
// float32 row rounded to nearest even as it is stored; every reader widens it back to float32
// (exact) and attends as over a float32 cache, the chunk that wrote the rows included, so
// prefill and decode see the same keys. Decode's span kernels read the bf16 rows as stored and
// widen them in registers (ops.h); prefill widens a chunk's rows into a buffer (KvRows, PeRows).
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/base/huge_page_buffer.h"

namespace dsv3 {

enum class KvCacheDType { kF32, kBF16 };

class LatentKvCache {
 public:
  LatentKvCache() = default;
  LatentKvCache(int64_t layers, int64_t slots, int64_t max_len, int64_t kv_lora_rank, int64_t rope_dim,
                KvCacheDType dtype = KvCacheDType::kF32)
      : dtype_(dtype), elem_(dtype == KvCacheDType::kBF16 ? 2 : 4), layers_(layers), slots_(slots),
        max_len_(max_len), rank_(kv_lora_rank), rope_(rope_dim), kv_values_(layers * slots * max_len * kv_lora_rank),
        pe_values_(layers * slots * max_len * rope_dim),
        pe_offset_((kv_values_ * elem_ + kLineBytes - 1) / kLineBytes * kLineBytes),
        buffer_(static_cast<size_t>(pe_offset_ + pe_values_ * elem_)) {}

  KvCacheDType dtype() const { return dtype_; }
  // Bytes per cached value: 4 (float32) or 2 (bfloat16).
  int64_t value_bytes() const { return elem_; }

  // The float32 cache's [max_len, kv_lora_rank] rows for one layer and slot (null in bf16).
  float* kv(int64_t layer, int64_t slot) { return f32() ? reinterpret_cast<float*>(KvAt(layer, slot, 0)) : nullptr; }
  // Its [max_len, rope_dim] rows.
  float* pe(int64_t layer, int64_t slot) { return f32() ? reinterpret_cast<float*>(PeAt(layer, slot, 0)) : nullptr; }

  // Position pos of one layer and slot: the normed latent (kv_lora_rank values) and the rotated
  // rope key (rope_dim values), rounded to bf16 in a bf16 cache.
  void Store(int64_t layer, int64_t slot, int64_t pos, const float* latent, const float* rope_key);

  // The bf16 cache's rows of one layer and slot, as stored (null in float32), as kv() and pe().
  const uint16_t* kv_bf16(int64_t layer, int64_t slot) const {
    return f32() ? nullptr : reinterpret_cast<const uint16_t*>(KvAt(layer, slot, 0));
  }
  const uint16_t* pe_bf16(int64_t layer, int64_t slot) const {
    return f32() ? nullptr : reinterpret_cast<const uint16_t*>(PeAt(layer, slot, 0));
  }

  // Rows [a, a + n) of a layer and slot as float32: in a float32 cache the rows themselves, in a
  // bf16 one widened into *scratch (resized to fit; valid until its next use).
  const float* KvRows(int64_t layer, int64_t slot, int64_t a, int64_t n, std::vector<float>* scratch) {
    return Rows(KvAt(layer, slot, a), n * rank_, scratch);
  }
  const float* PeRows(int64_t layer, int64_t slot, int64_t a, int64_t n, std::vector<float>* scratch) {
    return Rows(PeAt(layer, slot, a), n * rope_, scratch);
  }

  // Positions [0, n) of slot `from`, every layer, into slot `to`: a prefix computed once
  // serves another sequence that starts with the same tokens.
  void CopyPrefix(int64_t from, int64_t to, int64_t n) {
    if (from == to || n <= 0) return;
    for (int64_t l = 0; l < layers_; ++l) {
      std::memcpy(KvAt(l, to, 0), KvAt(l, from, 0), static_cast<size_t>(n * rank_ * elem_));
      std::memcpy(PeAt(l, to, 0), PeAt(l, from, 0), static_cast<size_t>(n * rope_ * elem_));
    }
  }

  int64_t slots() const { return slots_; }
  int64_t max_len() const { return max_len_; }
  int64_t bytes() const { return (kv_values_ + pe_values_) * elem_; }

 private:
  static constexpr int64_t kLineBytes = 64;
  bool f32() const { return dtype_ == KvCacheDType::kF32; }
  char* base() const { return static_cast<char*>(buffer_.data()); }
  char* KvAt(int64_t layer, int64_t slot, int64_t pos) const {
    return base() + ((layer * slots_ + slot) * max_len_ + pos) * rank_ * elem_;
  }
  char* PeAt(int64_t layer, int64_t slot, int64_t pos) const {
    return base() + pe_offset_ + ((layer * slots_ + slot) * max_len_ + pos) * rope_ * elem_;
  }
  const float* Rows(const char* at, int64_t values, std::vector<float>* scratch) const;

  KvCacheDType dtype_ = KvCacheDType::kF32;
  int64_t elem_ = 4;
  int64_t layers_ = 0, slots_ = 0, max_len_ = 0, rank_ = 0, rope_ = 0;
  int64_t kv_values_ = 0, pe_values_ = 0;
  int64_t pe_offset_ = 0;  // bytes: the rope keys start on the line after the latents
  // Both caches in one zeroed mapping on 2 MiB pages (HugePageBuffer), so on cache lines: rows
  // whose width is a multiple of 16 floats (every DeepSeek config; 32 values in bf16) are too,
  // and decode's 256-bit loads of a row never straddle two lines. Decode at depth streams the
  // cache once per token: on 4 KiB pages the hardware prefetchers stop at every page and each
  // page is a TLB miss.
  HugePageBuffer buffer_;
};

}  // namespace dsv3
