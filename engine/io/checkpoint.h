// A checkpoint directory in the Hugging Face layout: config.json plus either
// model.safetensors or shards listed in model.safetensors.index.json. All shards are
// memory-mapped; tensors are views into the maps and are never copied here.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/base/status.h"
#include "engine/io/safetensors.h"

namespace dsv3 {

class Checkpoint {
 public:
  static constexpr const char* kIndexFile = "model.safetensors.index.json";
  static constexpr const char* kSingleFile = "model.safetensors";

  // Opens the weights in `dir`. Fails with NotFound when the directory has no weights.
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool Has(const std::string& name) const { return where_.count(name) != 0; }
  // The view and the file it lives in (for error messages).
  const SafetensorsEntry* Find(const std::string& name, const SafetensorsFile** file = nullptr) const;
  TensorView View(const std::string& name) const;
  std::vector<std::string> Names() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  uint64_t TotalBytes() const;
  // The bytes of every tensor, and of those whose data start on a cache line of the mapping
  // (SafetensorsWriter::kDataAlignment; the kernels' row loads straddle two lines otherwise,
  // and files dsv3 writes have them aligned).
  uint64_t TensorBytes() const;
  uint64_t LineAlignedTensorBytes() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<size_t, const SafetensorsEntry*>> where_;
};

}  // namespace dsv3
