// dsv3 quantize: converts a checkpoint's projections to FP8 (DeepSeek-V3 release layout),
// dsv3 int8 / int4, or back to BF16, streaming, verifying and publishing atomically
// (engine/quant/convert/quantize_checkpoint.h). Prints a JSON summary on stdout.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/commands.h"
#include "cmd/options.h"
#include "engine/base/threads.h"
#include "engine/quant/convert/quantize_checkpoint.h"

namespace dsv3::cmd {

int RunQuantize(int argc, char** argv) {
  OptionParser opts("quantize",
                    "Write a quantized copy of a checkpoint: fp8 (DeepSeek-V3 e4m3 + 128x128 _scale_inv), int8 "
                    "(symmetric, per output channel or NxN blocks), int4 (groups along the input, F16 scales, "
                    "U8 zero points unless --symmetric), or bf16 (dequantize). Embeddings, lm_head (unless --quantize-lm-head), norms, the "
                    "router gate and bias and eh_proj stay in their source precision.");
  opts.Add()("model-path", po::value<std::string>()->required(), "input checkpoint directory")(
      "out", po::value<std::string>()->required(), "output directory (must not exist, or be empty; never the input)")(
      "format", po::value<std::string>()->required(), "fp8 | int8 | int4 | bf16")(
      "group-size", po::value<int64_t>()->default_value(-1),
      "int4: group along the input dimension, 32 | 64 | 128 (default 64), 0 = per output channel")(
      "block-size", po::value<int64_t>()->default_value(-1),
      "fp8: block edge (default 128); int8: 0 = per output channel (default), N = NxN blocks")(
      "symmetric", po::bool_switch(), "int4: no zero points (w = (u - 8) * scale)")(
      "keep", po::value<std::vector<std::string>>()->multitoken()->composing(),
      "glob of tensor names to keep in source precision, e.g. '*.kv_b_proj.weight' (repeatable)")(
      "quantize-lm-head", po::bool_switch(),
      "also quantize lm_head (and the MTP head), as llama.cpp's 8-bit types do; dsv3 runs it, the DeepSeek FP8 "
      "convention (and engines that follow it) keeps the head in BF16")(
      "shard-size-mb", po::value<double>()->default_value(4096), "largest shard to write, in MiB (fractions allowed)")(
      "threads", po::value<int>()->default_value(0), "worker threads (0: all cores)")(
      "fail-after-tensors", po::value<int64_t>()->default_value(-1),
      "test hook: fail while writing tensor N (0-based), as an interrupted run would");
  Status st = opts.Parse(argc, argv);
  if (!st.ok()) return ReportError("quantize", st);
  if (opts.help()) return kExitOk;

  QuantizeOptions o;
  o.input_dir = opts.Get<std::string>("model-path");
  o.output_dir = opts.Get<std::string>("out");
  auto fmt = ParseQuantFormat(opts.Get<std::string>("format"));
  if (!fmt.ok()) return ReportError("quantize", fmt.status());
  o.format = fmt.value();
  const int64_t group = opts.Get<int64_t>("group-size"), block = opts.Get<int64_t>("block-size");
  if (opts.Has("group-size") && o.format != QuantFormat::kInt4)
    return ReportError("quantize", Status::Invalid("--group-size applies to --format int4 only (use --block-size)"));
  if (opts.Has("block-size") && o.format != QuantFormat::kFp8 && o.format != QuantFormat::kInt8)
    return ReportError("quantize", Status::Invalid("--block-size applies to --format fp8 and int8 only"));
  if (opts.Has("symmetric") && o.format != QuantFormat::kInt4)
    return ReportError("quantize", Status::Invalid("--symmetric applies to --format int4 only"));
  if (o.format == QuantFormat::kInt4 && opts.Has("group-size") && group != 0 && group != 32 && group != 64 &&
      group != 128)
    return ReportError("quantize", Status::Invalid("--group-size must be 32, 64, 128 or 0 (per output channel)"));
  if (opts.Has("block-size") && (block < 0 || (o.format == QuantFormat::kFp8 && block == 0)))
    return ReportError("quantize", Status::Invalid("--block-size must be positive (int8: 0 = per output channel)"));
  o.block = o.format == QuantFormat::kInt4 ? group : block;
  o.int4_symmetric = opts.Get<bool>("symmetric");
  if (opts.vm().count("keep")) o.keep = opts.Get<std::vector<std::string>>("keep");
  o.quantize_lm_head = opts.Get<bool>("quantize-lm-head");
  if (o.quantize_lm_head && o.format == QuantFormat::kBf16)
    return ReportError("quantize", Status::Invalid("--quantize-lm-head applies to fp8, int8 and int4"));
  const double shard_mb = opts.Get<double>("shard-size-mb");
  if (!(shard_mb > 0)) return ReportError("quantize", Status::Invalid("--shard-size-mb must be positive"));
  o.max_shard_bytes = static_cast<uint64_t>(shard_mb * (1 << 20));
  o.fail_after_tensors = opts.Get<int64_t>("fail-after-tensors");
  const int threads = opts.Get<int>("threads");
  if (Status bad = CheckThreads(threads); !bad.ok()) return ReportError("quantize", bad);
  SetNumThreads(threads);
  o.log = [](const std::string& line) { std::cerr << "quantize: " << line << "\n"; };

  QuantizeReport rep;
  st = QuantizeCheckpoint(o, &rep);
  if (!st.ok()) return ReportError("quantize", st);
  nlohmann::json j;
  j["output"] = o.output_dir;
  j["quantization"] = rep.quantization;
  j["tensors"] = {{"quantized", rep.quantized},
                  {"as_stored", rep.as_stored},
                  {"kept", rep.kept},
                  {"copied_unknown", rep.copied_unknown}};
  j["bytes"] = {{"input", rep.input_bytes}, {"output", rep.output_bytes},
                {"ratio", rep.input_bytes ? static_cast<double>(rep.output_bytes) / rep.input_bytes : 0.0}};
  j["verify"] = {{"worst_error_over_bound", rep.worst_bound_ratio}, {"worst_tensor", rep.worst_tensor},
                 {"relative_rms_error", rep.relative_rms_error}};
  for (const auto& s : rep.shards) j["shards"].push_back({{"file", s.file}, {"bytes", s.bytes}, {"sha256", s.sha256}});
  std::cout << j.dump(2) << "\n";
  return kExitOk;
}

}  // namespace dsv3::cmd
