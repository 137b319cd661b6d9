// safetensors: a memory-mapped reader that validates the whole header before trusting any
// of it, and a streaming writer that goes through a temp file (fsync, rename).
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data buffer, which every tensor must tile exactly (no holes, no overlaps).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/base/file.h"
#include "engine/base/status.h"
#include "engine/tensor/tensor.h"

namespace dsv3 {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // offsets into the data buffer
};

class SafetensorsFile {
 public:
  // Largest header we accept; the real 671B shards have headers of a few hundred KB.
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* Find(const std::string& name) const;
  TensorView View(const SafetensorsEntry& e) const;
  size_t file_size() const { return file_.size(); }

 private:
  MappedFile file_;
  const uint8_t* data_start_ = nullptr;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Validates a header (the JSON text) against a data buffer of `data_size` bytes. Exposed for
// the corruption tests; Open() uses it.
Status ParseSafetensorsHeader(const std::string& json_text, uint64_t data_size,
                              std::vector<SafetensorsEntry>* entries,
                              std::map<std::string, std::string>* metadata);

// Streams tensors to `path` in the order they were added, those whose sizes are multiples of
// kDataAlignment first: the data start that aligned in the file, and so do those tensors. Each
// tensor's bytes come from a callback that writes exactly nbytes through `sink`, so a
// multi-GB tensor never has to sit in memory at once.
class SafetensorsWriter {
 public:
  using Sink = std::function<Status(const void*, size_t)>;
  using Producer = std::function<Status(const Sink&)>;
  // A cache line: a row that starts on one is read a line at a time, not straddling two.
  static constexpr uint64_t kDataAlignment = 64;

  void SetMetadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void Add(const std::string& name, DType dtype, const Shape& shape, Producer produce);
  // Convenience for tensors already in memory (copied when added).
  void AddBytes(const std::string& name, DType dtype, const Shape& shape, const void* data);
  uint64_t data_bytes() const { return data_bytes_; }
  Status Write(const std::string& path) const;

 private:
  struct Item {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t bytes;  // shape.numel() * the dtype's size
    Producer produce;
  };
  std::vector<Item> items_;
  std::map<std::string, std::string> metadata_;
  uint64_t data_bytes_ = 0;
};

}  // namespace dsv3
