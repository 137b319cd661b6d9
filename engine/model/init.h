// Random-init checkpoints (`dsv3 init`): the Hugging Face layout, deterministic for a seed
// whatever the thread count, written tensor by tensor so a multi-GB model never sits in
// memory. Used for tests, benchmarks and as distillation students.
#pragma once

#include <cstdint>
#include <string>

#include "engine/base/dtype.h"
#include "engine/base/status.h"
#include "engine/model/config.h"

namespace dsv3 {

struct InitOptions {
  uint64_t seed = 0;
  DType dtype = DType::kBF16;          // F32 or BF16 for every tensor (the router bias stays F32)
  uint64_t max_shard_bytes = 5ull << 30;  // split into model-0000K-of-0000N.safetensors above this
};

// Weights ~ N(0, initializer_range); norms 1; the correction bias 0. Writes the weights
// first and config.json last, so a directory with a config.json is always complete.
Status WriteRandomCheckpoint(const ModelConfig& config, const std::string& out_dir, const InitOptions& options);

}  // namespace dsv3
