#include "engine/model/kv_cache.h"

#include "engine/base/dtype.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

void LatentKvCache::Store(int64_t layer, int64_t slot, int64_t pos, const float* latent, const float* rope_key) {
  if (f32()) {
    std::memcpy(KvAt(layer, slot, pos), latent, static_cast<size_t>(rank_) * sizeof(float));
    std::memcpy(PeAt(layer, slot, pos), rope_key, static_cast<size_t>(rope_) * sizeof(float));
    return;
  }
  uint16_t* kv = reinterpret_cast<uint16_t*>(KvAt(layer, slot, pos));
  uint16_t* pe = reinterpret_cast<uint16_t*>(PeAt(layer, slot, pos));
  for (int64_t i = 0; i < rank_; ++i) kv[i] = F32ToBF16(latent[i]);
  for (int64_t i = 0; i < rope_; ++i) pe[i] = F32ToBF16(rope_key[i]);
}

const float* LatentKvCache::Rows(const char* at, int64_t values, std::vector<float>* scratch) const {
  if (f32()) return reinterpret_cast<const float*>(at);
  if (scratch->size() < static_cast<size_t>(values)) scratch->resize(static_cast<size_t>(values));
  WidenBf16(reinterpret_cast<const uint16_t*>(at), values, scratch->data());
  return scratch->data();
}

}  // namespace dsv3
