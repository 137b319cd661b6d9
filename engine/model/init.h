// Random-init checkpoints (`dsv3 init`): the Hugging Face layout, deterministic for a seed
// whatever the thread count, written tensor by tensor so a multi-GB model never sits in
// memory. Used for tests, benchmarks and as distillation students.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/base/dtype.h"
#include "engine/base/status.h"
#include "engine/model/config.h"

namespace dsv3 {

// How random weights are scaled.
enum class InitScheme {
  kConfig,  // N(0, initializer_range) for every matrix, norms 1, bias 0 (Hugging Face's init)
  // The golden checkpoints' recipe (../shared/models/README.md), which gives a trained-like
  // signal: hidden RMS ~1-2, logit std ~2, non-degenerate routing. Embeddings N(0,1),
  // matrices N(0, 1/fan_in), lm_head N(0, 4/fan_in), norms 1 + 0.1·N(0,1), bias N(0, 0.05²).
  // Quantization error measured on it means something; on kConfig logits are near-uniform.
  kFanIn,
};

struct InitOptions {
  InitScheme scheme = InitScheme::kConfig;
  uint64_t seed = 0;
  DType dtype = DType::kBF16;          // F32 or BF16 for every tensor (the router bias stays F32)
  uint64_t max_shard_bytes = 5ull << 30;  // split into model-0000K-of-0000N.safetensors above this
  // (name, text) of the tokenizer's files, written beside the weights (tokenizer.json and
  // perhaps tokenizer_config.json; none for a checkpoint used with --ids only).
  std::vector<std::pair<std::string, std::string>> tokenizer_files;
};

// The files an init checkpoint consists of: config.json, model.safetensors or
// model-NNNNN-of-NNNNN.safetensors with model.safetensors.index.json, and the tokenizer's
// tokenizer.json / tokenizer_config.json.
bool IsInitCheckpointFile(const std::string& name);

// init writes into a new directory, an empty one, or one that holds only an earlier init's
// files (and the temp files of one killed outright), which it replaces (so that rerunning a
// command works). Anything else there is
// refused before a byte is written: a typo such as `--out ~`, or a downloaded checkpoint's
// directory, which holds more (generation_config.json, its modeling code, a README).
Status CheckInitOutDir(const std::string& out_dir);

// Weights drawn per InitScheme. Checks out_dir with CheckInitOutDir, writes the weights and
// the tokenizer's files first and config.json last, so a directory with a config.json is
// always complete, and removes every file of an earlier init that this one did not write
// (its other shards, its index, a tokenizer not given this time, a killed run's temps).
Status WriteRandomCheckpoint(const ModelConfig& config, const std::string& out_dir, const InitOptions& options);

}  // namespace dsv3
