#include "engine/model/init.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "engine/base/file.h"
#include "engine/base/threads.h"
#include "engine/io/checkpoint.h"
#include "engine/io/safetensors.h"
#include "engine/model/tensor_table.h"

namespace dsv3 {

namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// Fills n normal draws with a stream that depends only on (seed, name, chunk index).
void FillNormal(uint64_t seed, float std, float* out, int64_t n) {
  uint64_t state = seed;
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = (static_cast<double>(SplitMix64(state) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = static_cast<double>(SplitMix64(state) >> 11) * 0x1.0p-53;
    double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * M_PI * u2;
    out[i] = static_cast<float>(r * std::cos(a)) * std;
    if (i + 1 < n) out[i + 1] = static_cast<float>(r * std::sin(a)) * std;
  }
}

constexpr int64_t kChunk = 1 << 20;  // elements per independent random stream

// Mean and standard deviation of one tensor's entries under a scheme.
std::pair<float, float> Distribution(const TensorSpec& spec, InitScheme scheme, float range) {
  const bool matrix = spec.shape.rank == 2;
  const float fan_in = matrix ? static_cast<float>(spec.shape[1]) : 1.0f;
  switch (spec.role) {
    case TensorRole::kNorm: return {1.0f, scheme == InitScheme::kFanIn ? 0.1f : 0.0f};
    case TensorRole::kRouterBias: return {0.0f, scheme == InitScheme::kFanIn ? 0.05f : 0.0f};
    case TensorRole::kEmbedding: return {0.0f, scheme == InitScheme::kFanIn ? 1.0f : range};
    case TensorRole::kLmHead: return {0.0f, scheme == InitScheme::kFanIn ? 2.0f / std::sqrt(fan_in) : range};
    default: return {0.0f, scheme == InitScheme::kFanIn ? 1.0f / std::sqrt(fan_in) : range};
  }
}

SafetensorsWriter::Producer MakeProducer(const TensorSpec& spec, DType dtype, uint64_t seed, float mean, float std) {
  return [spec, dtype, seed, mean, std](const SafetensorsWriter::Sink& sink) -> Status {
    const int64_t n = spec.shape.numel();
    const uint64_t tensor_seed = seed ^ HashName(spec.name);
    const int64_t batch = kChunk * 8;  // generate 8 chunks in parallel, then write
    std::vector<float> f(static_cast<size_t>(std::min(n, batch)));
    std::vector<uint16_t> h(dtype == DType::kBF16 ? f.size() : 0);
    for (int64_t base = 0; base < n; base += batch) {
      const int64_t m = std::min(batch, n - base);
      ParallelFor((m + kChunk - 1) / kChunk, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t off = c * kChunk, len = std::min(kChunk, m - off);
          if (std == 0.0f) {
            std::fill(f.begin() + off, f.begin() + off + len, mean);
          } else {
            uint64_t s = tensor_seed + static_cast<uint64_t>((base + off) / kChunk) * 0xD1B54A32D192ED03ull;
            FillNormal(s, std, f.data() + off, len);
            if (mean != 0.0f)
              for (int64_t i = off; i < off + len; ++i) f[i] += mean;
          }
          if (dtype == DType::kBF16)
            for (int64_t i = off; i < off + len; ++i) h[i] = F32ToBF16(f[i]);
        }
      });
      if (dtype == DType::kBF16) {
        RETURN_IF_ERROR(sink(h.data(), static_cast<size_t>(m) * 2));
      } else {
        RETURN_IF_ERROR(sink(f.data(), static_cast<size_t>(m) * 4));
      }
    }
    return Status::Ok();
  };
}

std::string ShardName(int i, int n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", i + 1, n);
  return buf;
}

// model-NNNNN-of-NNNNN.safetensors, as ShardName writes it.
bool IsShardName(const std::string& name) {
  static const std::string kPattern = "model-#####-of-#####.safetensors";
  if (name.size() != kPattern.size()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (kPattern[i] == '#' ? !std::isdigit(static_cast<unsigned char>(name[i])) : name[i] != kPattern[i]) return false;
  return true;
}

// A temp file AtomicFile left for one of those files (a run killed outright).
bool IsInitTempFile(const std::string& name) {
  std::string final_name;
  return AtomicFile::IsTempName(name, &final_name) && IsInitCheckpointFile(final_name);
}

}  // namespace

bool IsInitCheckpointFile(const std::string& name) {
  return name == "config.json" || name == Checkpoint::kSingleFile || name == Checkpoint::kIndexFile ||
         name == "tokenizer.json" || name == "tokenizer_config.json" || IsShardName(name);
}

Status CheckInitOutDir(const std::string& out_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(out_dir, ec);
  if (ec || !fs::exists(st)) return Status::Ok();  // created by the write
  if (!fs::is_directory(st)) return Status::Invalid(out_dir + " exists and is not a directory");
  for (fs::directory_iterator it(out_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!(IsInitCheckpointFile(name) || IsInitTempFile(name)) || !it->is_regular_file())
      return Status::Invalid(out_dir + " holds " + name +
                             ", which is not a file of an init checkpoint; init replaces only an earlier "
                             "init's files: choose a new or empty directory");
  }
  if (ec) return Status::Runtime(out_dir + ": cannot list: " + ec.message());
  return Status::Ok();
}

Status WriteRandomCheckpoint(const ModelConfig& config, const std::string& out_dir, const InitOptions& options) {
  if (options.dtype != DType::kF32 && options.dtype != DType::kBF16)
    return Status::Invalid("init writes F32 or BF16 weights, not " + std::string(DTypeName(options.dtype)));
  RETURN_IF_ERROR(CheckInitOutDir(out_dir));
  if (!IsDirectory(out_dir) && ::mkdir(out_dir.c_str(), 0755) != 0)
    return Status::Runtime(out_dir + ": cannot create directory: " + std::strerror(errno));
  ModelConfig c = config;
  c.torch_dtype = options.dtype == DType::kF32 ? "float32" : "bfloat16";
  c.quant_method = QuantMethod::kNone;

  // Split the table into shards by size, in table order.
  std::vector<SafetensorsWriter> shards(1);
  std::vector<std::vector<std::string>> names(1);
  uint64_t in_shard = 0;
  const float std = static_cast<float>(c.initializer_range);
  for (const auto& spec : BuildTensorTable(c)) {
    const DType dt = spec.role == TensorRole::kRouterBias ? DType::kF32 : options.dtype;
    const uint64_t bytes = static_cast<uint64_t>(spec.shape.numel()) * DTypeSize(dt);
    if (in_shard > 0 && in_shard + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      names.emplace_back();
      in_shard = 0;
    }
    const auto [mean, sd] = Distribution(spec, options.scheme, std);
    shards.back().Add(spec.name, dt, spec.shape, MakeProducer(spec, dt, options.seed, mean, sd));
    names.back().push_back(spec.name);
    in_shard += bytes;
  }
  const int n = static_cast<int>(shards.size());
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total = 0;
  std::set<std::string> written;
  for (int i = 0; i < n; ++i) {
    const std::string file = n == 1 ? Checkpoint::kSingleFile : ShardName(i, n);
    shards[i].SetMetadata("format", "pt");
    RETURN_IF_ERROR(shards[i].Write(JoinPath(out_dir, file)));
    for (const auto& name : names[i]) weight_map[name] = file;
    total += shards[i].data_bytes();
    written.insert(file);
  }
  if (n > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    RETURN_IF_ERROR(WriteFileAtomic(JoinPath(out_dir, Checkpoint::kIndexFile), index.dump(2) + "\n"));
    written.insert(Checkpoint::kIndexFile);
  }
  for (const auto& [name, text] : options.tokenizer_files) {
    RETURN_IF_ERROR(WriteFileAtomic(JoinPath(out_dir, name), text));
    written.insert(name);
  }
  written.insert("config.json");  // written last, below
  // An earlier init's files that this one did not write: a stale index would win over the new
  // single file, a stale tokenizer would be paired with a model it was not given for, and
  // stale shards or a killed run's temps would only cost disk.
  std::error_code ec;
  for (std::filesystem::directory_iterator it(out_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool stale = (IsInitCheckpointFile(name) && !written.count(name)) || IsInitTempFile(name);
    if (stale && ::unlink(it->path().c_str()) != 0)
      return Status::Runtime(it->path().string() + ": cannot remove an earlier init's file: " + std::strerror(errno));
  }
  if (ec) return Status::Runtime(out_dir + ": cannot list for an earlier init's files: " + ec.message());
  return WriteFileAtomic(JoinPath(out_dir, "config.json"), ToHfConfigJson(c));
}

}  // namespace dsv3
