// Checkpoint conversion: reads a Hugging Face DeepSeek checkpoint and writes it with its
// projections in FP8 (the DeepSeek-V3 release layout), dsv3 int8 / int4, or BF16 (the
// reverse of FP8). Streams one tensor at a time, writes shards + index into a staging
// directory, re-opens and verifies every tensor against the source within the format's
// error bound, records a sha256 per shard, and only then renames the staging directory to
// the output, so an interrupted run leaves nothing under the final name.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/base/status.h"

namespace dsv3 {

enum class QuantFormat { kFp8, kInt8, kInt4, kBf16 };
StatusOr<QuantFormat> ParseQuantFormat(const std::string& s);

struct QuantizeOptions {
  std::string input_dir, output_dir;
  QuantFormat format = QuantFormat::kFp8;
  // fp8: block edge (128 in the release). int8: 0 per output channel, N for NxN blocks.
  // int4: group along the input dimension (32/64/128), 0 per output channel.
  int64_t block = -1;  // -1: the format's default (fp8 128, int8 0, int4 64)
  bool int4_symmetric = false;
  // Glob patterns (fnmatch, '*' crosses dots) of tensor names kept in their source precision.
  std::vector<std::string> keep;
  // Also quantize lm_head (and the MTP head), as llama.cpp's 8-bit files do: at batch 1 the
  // head is most of a small model's bytes per token. Off by default because the DeepSeek FP8
  // release, and the engines that read it, keep the head in BF16.
  bool quantize_lm_head = false;
  uint64_t max_shard_bytes = 4ull << 30;
  // Test hook: the producer of tensor number N (0-based) fails as a crash would.
  int64_t fail_after_tensors = -1;
  std::function<void(const std::string&)> log;  // progress lines (may be null)
};

struct ShardInfo {
  std::string file;
  uint64_t bytes = 0;
  std::string sha256;
};

struct QuantizeReport {
  // Projections quantized; already in the output's format, copied byte for byte; other tensors
  // kept (copied or cast to BF16); tensors no table entry uses, copied.
  int64_t quantized = 0, as_stored = 0, kept = 0, copied_unknown = 0;
  uint64_t input_bytes = 0, output_bytes = 0;
  std::vector<ShardInfo> shards;
  // Verification: the largest |ŵ - w| / bound over every quantized element (<= 1 passes),
  // and the relative RMS error sqrt(Σ(ŵ-w)² / Σw²) over all quantized projections.
  double worst_bound_ratio = 0, relative_rms_error = 0;
  std::string worst_tensor;
  std::string quantization;  // summary of the output's quantization_config
};

Status QuantizeCheckpoint(const QuantizeOptions& options, QuantizeReport* report);

}  // namespace dsv3
