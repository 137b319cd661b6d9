#include "engine/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

namespace dsv3 {

using json = nlohmann::json;

namespace {

// n * m without overflow; false when it would exceed 2^63.
bool MulOk(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > (1ull << 63) / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

Status ParseSafetensorsHeader(const std::string& text, uint64_t data_size,
                              std::vector<SafetensorsEntry>* entries,
                              std::map<std::string, std::string>* metadata) {
  // Duplicate names are invisible once parsed into an object, so catch them while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) {
      std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text, cb);
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) return Status::Invalid("tensor '" + duplicate + "' appears twice in the header");
  if (!header.is_object()) return Status::Invalid("header is not a JSON object");

  entries->clear();
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Status::Invalid("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) return Status::Invalid("__metadata__." + m.key() + " is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + name + ": ";
    if (!v.is_object()) return Status::Invalid(where + "entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) return Status::Invalid(where + "missing dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) return Status::Invalid(where + "missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      return Status::Invalid(where + "data_offsets must be [begin, end]");
    SafetensorsEntry e;
    e.name = name;
    auto dt = ParseDType(v["dtype"].get<std::string>());
    if (!dt) return Status::Invalid(where + "unknown dtype '" + v["dtype"].get<std::string>() + "'");
    e.dtype = *dt;
    if (v["shape"].size() > kMaxRank)
      return Status::Invalid(where + "rank " + std::to_string(v["shape"].size()) + " exceeds " + std::to_string(kMaxRank));
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned()) return Status::Invalid(where + "shape has a non-integer or negative dimension");
      uint64_t dim = d.get<uint64_t>();
      if (!MulOk(numel, dim, &numel)) return Status::Invalid(where + "shape is too large");
      e.shape.dims[e.shape.rank++] = static_cast<int64_t>(dim);
    }
    for (const json& o : v["data_offsets"])
      if (!o.is_number_unsigned()) return Status::Invalid(where + "data_offsets must be non-negative integers");
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    if (e.begin > e.end) return Status::Invalid(where + "data_offsets begin > end");
    if (e.end > data_size)
      return Status::Invalid(where + "data_offsets end " + std::to_string(e.end) + " is past the data (" +
                             std::to_string(data_size) + " bytes; file truncated?)");
    uint64_t bytes;
    if (!MulOk(numel, DTypeSize(e.dtype), &bytes) || bytes != e.end - e.begin)
      return Status::Invalid(where + "dtype " + DTypeName(e.dtype) + " x shape " + e.shape.ToString() + " needs " +
                             std::to_string(numel * DTypeSize(e.dtype)) + " bytes but data_offsets span " +
                             std::to_string(e.end - e.begin));
    entries->push_back(std::move(e));
  }

  // The buffer must be tiled exactly: sorted by offset, each tensor starts where the last ended.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : *entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  for (const auto* e : by_offset) {
    if (e->begin < cursor) return Status::Invalid("tensor " + e->name + " overlaps the previous tensor's bytes");
    if (e->begin > cursor)
      return Status::Invalid("hole in the data buffer before tensor " + e->name + " (bytes " + std::to_string(cursor) +
                             ".." + std::to_string(e->begin) + " belong to no tensor)");
    cursor = e->end;
  }
  if (cursor != data_size)
    return Status::Invalid("data buffer has " + std::to_string(data_size - cursor) + " trailing bytes that belong to no tensor");
  return Status::Ok();
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto f = std::make_unique<SafetensorsFile>();
  ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  const uint64_t size = f->file_.size();
  if (size < 8) return Status::Invalid(path + ": file is " + std::to_string(size) + " bytes, too short for a safetensors header");
  uint64_t n = 0;
  std::memcpy(&n, f->file_.data(), 8);  // little-endian on every machine we build for
  if (n > kMaxHeaderBytes)
    return Status::Invalid(path + ": header length " + std::to_string(n) + " exceeds the " +
                           std::to_string(kMaxHeaderBytes) + "-byte limit (corrupt file?)");
  if (n > size - 8)
    return Status::Invalid(path + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                           std::to_string(size) + " bytes; truncated?)");
  std::string text(reinterpret_cast<const char*>(f->file_.data() + 8), n);
  Status st = ParseSafetensorsHeader(text, size - 8 - n, &f->entries_, &f->metadata_);
  if (!st.ok()) return st.WithPrefix(path + ": ");
  f->data_start_ = f->file_.data() + 8 + n;
  for (size_t i = 0; i < f->entries_.size(); ++i) f->index_[f->entries_[i].name] = i;
  return f;
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

TensorView SafetensorsFile::View(const SafetensorsEntry& e) const {
  TensorView v;
  v.data = data_start_ + e.begin;
  v.dtype = e.dtype;
  v.shape = e.shape;
  return v;
}

void SafetensorsWriter::Add(const std::string& name, DType dtype, const Shape& shape, Producer produce) {
  const uint64_t bytes = static_cast<uint64_t>(shape.numel()) * DTypeSize(dtype);
  items_.push_back({name, dtype, shape, bytes, std::move(produce)});
  data_bytes_ += bytes;
}

void SafetensorsWriter::AddBytes(const std::string& name, DType dtype, const Shape& shape, const void* data) {
  size_t n = static_cast<size_t>(shape.numel()) * DTypeSize(dtype);
  auto copy = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(data),
                                                     static_cast<const uint8_t*>(data) + n);
  Add(name, dtype, shape, [copy](const Sink& sink) { return sink(copy->data(), copy->size()); });
}

Status SafetensorsWriter::Write(const std::string& path) const {
  // The data start at a multiple of kDataAlignment bytes from the file's start (the header is
  // padded with spaces, as the format allows; a page-aligned mapping then puts them on a cache
  // line), and the tensors whose sizes are multiples of it go first, so each of those starts
  // on a line too (the format allows no gaps between tensors). The kernels' 64-byte loads of
  // a row otherwise each straddle two lines. bench-v3-mini decode, 2 threads, files of the
  // same weights with every tensor 24 bytes past a line (the 8-byte padding) and aligned, six
  // alternated pairs: INT4 g32 5.60-7.24 -> 5.31-5.99 ms a token (each pair faster), FP8
  // 10.65-15.65 -> 10.49-14.29 (five of six).
  std::vector<const Item*> order;
  for (const auto& it : items_)
    if (it.bytes % kDataAlignment == 0) order.push_back(&it);
  for (const auto& it : items_)
    if (it.bytes % kDataAlignment != 0) order.push_back(&it);
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Item* item : order) {
    const Item& it = *item;
    const uint64_t bytes = it.bytes;
    json shape = json::array();
    for (int i = 0; i < it.shape.rank; ++i) shape.push_back(it.shape[i]);
    header[it.name] = {{"dtype", DTypeName(it.dtype)}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % kDataAlignment != 0) text.push_back(' ');
  AtomicFile out(path);
  RETURN_IF_ERROR(out.Open());
  uint64_t n = text.size();
  RETURN_IF_ERROR(out.Write(&n, 8));
  RETURN_IF_ERROR(out.Write(text.data(), text.size()));
  for (const Item* item : order) {
    const Item& it = *item;
    const uint64_t expected = it.bytes;
    uint64_t written = 0;
    Sink sink = [&](const void* p, size_t k) {
      written += k;
      if (written > expected) return Status::Runtime(path + ": tensor " + it.name + " produced too many bytes");
      return out.Write(p, k);
    };
    RETURN_IF_ERROR(it.produce(sink));
    if (written != expected)
      return Status::Runtime(path + ": tensor " + it.name + " produced " + std::to_string(written) + " of " +
                             std::to_string(expected) + " bytes");
  }
  return out.Commit();
}

}  // namespace dsv3
