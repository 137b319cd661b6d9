// dsv3 quantize's engine side: plan (which tensor becomes what), write (streamed, sharded,
// staged), verify (re-open, compare with the source within the format's bound), publish
// (one rename of the staging directory). The formats themselves live in engine/quant.
#include "engine/quant/convert/quantize_checkpoint.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/base/file.h"
#include "engine/base/signal_cleanup.h"
#include "engine/base/threads.h"
#include "engine/io/checkpoint.h"
#include "engine/kernels/ops.h"
#include "engine/model/config.h"
#include "engine/model/tensor_table.h"
#include "engine/model/weights.h"
#include "engine/quant/fp8.h"
#include "engine/quant/int_quant.h"

namespace dsv3 {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int64_t kRowChunk = 256;          // rows per dequantize/verify step (bounded memory)
constexpr size_t kCopyChunk = 64ull << 20;  // bytes per sink call when copying raw tensors

struct OutTensor {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t bytes() const { return static_cast<uint64_t>(shape.numel()) * DTypeSize(dtype); }
};

// One source tensor and what it becomes: a raw copy, a quantized projection (weight first,
// then its scale / zero companions), a projection already in the output's format (the weight
// and its companions copied byte for byte), or a BF16 cast of a (possibly quantized) matrix.
struct Item {
  enum Kind { kCopy, kQuantize, kAsStored, kToBf16 } kind;
  std::string name;
  Shape logical;  // [out, in] of projections; the stored shape for copies
  std::vector<OutTensor> outs;
  uint64_t bytes = 0;
};

bool IsQuantizedDtype(DType t) { return t == DType::kF8E4M3 || t == DType::kI8 || t == DType::kU8; }

// The source matrix the way the Binder builds it (the Binder already checked companions).
WeightMatrix SourceMatrix(const ModelConfig& c, const Checkpoint& ck, const std::string& name, const Shape& logical) {
  WeightMatrix m;
  m.w = ck.View(name);
  m.block_out = c.quant_block_out;
  m.block_in = c.QuantBlockIn(logical[1]);
  if (m.w.dtype == DType::kF8E4M3) m.scale_inv = ck.View(ScaleInvName(name));
  if (m.w.dtype == DType::kI8 || m.w.dtype == DType::kU8) m.scale = ck.View(Int8ScaleName(name));
  if (m.w.dtype == DType::kU8) {
    m.in_features = logical[1];
    if (!c.quant_symmetric) m.zero = ck.View(Int4ZeroName(name));
  }
  return m;
}

// Dequantizes a whole matrix to F32 (one matrix at a time is the memory bound of a run).
std::vector<float> ReadAllRows(const WeightMatrix& m) {
  std::vector<float> w(static_cast<size_t>(m.rows() * m.cols()));
  ParallelFor((m.rows() + kRowChunk - 1) / kRowChunk, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t r0 = i * kRowChunk, r1 = std::min(m.rows(), r0 + kRowChunk);
      DequantizeRows(m, r0, r1, w.data() + r0 * m.cols());
    }
  });
  return w;
}

// The output's format as config fields.
ModelConfig OutputConfig(ModelConfig c, const QuantizeOptions& o) {
  c.quant_symmetric = true;
  switch (o.format) {
    case QuantFormat::kBf16:
      c.quant_method = QuantMethod::kNone;
      break;
    case QuantFormat::kFp8:
      c.quant_method = QuantMethod::kFp8Block;
      c.quant_block_out = c.quant_block_in = o.block < 0 ? 128 : o.block;
      break;
    case QuantFormat::kInt8: {
      const int64_t b = o.block < 0 ? 0 : o.block;
      c.quant_method = QuantMethod::kInt8;
      c.quant_block_out = b == 0 ? 1 : b;
      c.quant_block_in = b;
      break;
    }
    case QuantFormat::kInt4:
      c.quant_method = QuantMethod::kInt4;
      c.quant_block_out = 1;
      c.quant_block_in = o.block < 0 ? 64 : o.block;
      c.quant_symmetric = o.int4_symmetric;
      break;
  }
  return c;
}

std::vector<OutTensor> QuantizedOuts(const ModelConfig& oc, const std::string& name, const Shape& s) {
  const int64_t bo = oc.quant_block_out, bi = oc.QuantBlockIn(s[1]);
  const Shape grid{(s[0] + bo - 1) / bo, (s[1] + bi - 1) / bi};
  switch (oc.quant_method) {
    case QuantMethod::kFp8Block:
      return {{name, DType::kF8E4M3, s}, {ScaleInvName(name), DType::kF32, grid}};
    case QuantMethod::kInt8:
      return {{name, DType::kI8, s}, {Int8ScaleName(name), DType::kF32, grid}};
    case QuantMethod::kInt4: {
      std::vector<OutTensor> v = {{name, DType::kU8, Shape{s[0], (s[1] + 1) / 2}}, {Int4ScaleName(name), DType::kF16, grid}};
      if (!oc.quant_symmetric) v.push_back({Int4ZeroName(name), DType::kU8, grid});
      return v;
    }
    case QuantMethod::kNone:
      break;
  }
  return {{name, DType::kBF16, s}};
}

// One --keep glob against a full tensor name (fnmatch, no flags: '*' also spans dots).
bool KeepMatches(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

bool MatchesKeep(const std::vector<std::string>& keep, const std::string& name) {
  return std::any_of(keep.begin(), keep.end(), [&](const std::string& p) { return KeepMatches(p, name); });
}

// Whether the source holds a projection exactly as the output would: the same format, blocks
// and zero points, and every planned tensor there with its dtype and shape. Re-quantizing it
// would round its values again (exact only where each block's scale is its largest value's);
// copied, an FP8 release rewritten as FP8 keeps every bit and comes out 64-byte aligned.
bool StoredAs(const ModelConfig& c, const ModelConfig& oc, const Checkpoint& ck, const Shape& logical,
              const std::vector<OutTensor>& outs) {
  if (c.quant_method != oc.quant_method || c.quant_method == QuantMethod::kNone) return false;
  if (c.quant_block_out != oc.quant_block_out || c.QuantBlockIn(logical[1]) != oc.QuantBlockIn(logical[1]))
    return false;
  if (c.quant_method == QuantMethod::kInt4 && c.quant_symmetric != oc.quant_symmetric) return false;
  return std::all_of(outs.begin(), outs.end(), [&](const OutTensor& t) {
    const SafetensorsEntry* e = ck.Find(t.name);
    return e != nullptr && e->dtype == t.dtype && e->shape == t.shape;
  });
}

std::vector<Item> Plan(const ModelConfig& c, const ModelConfig& oc, const Checkpoint& ck, const LoadReport& lr,
                       const QuantizeOptions& o) {
  std::vector<Item> items;
  for (const auto& s : BuildTensorTable(c)) {
    if (!ck.Has(s.name) || (s.mtp && !lr.mtp_loaded)) continue;
    const TensorView v = ck.View(s.name);
    Item it;
    it.name = s.name;
    it.logical = s.shape;
    const bool quantizable = s.role == TensorRole::kProjection || (s.role == TensorRole::kLmHead && o.quantize_lm_head);
    const bool project = quantizable && !MatchesKeep(o.keep, s.name);
    if (project && o.format != QuantFormat::kBf16) {
      it.outs = QuantizedOuts(oc, s.name, s.shape);
      it.kind = StoredAs(c, oc, ck, s.shape, it.outs) ? Item::kAsStored : Item::kQuantize;
    } else if ((project && o.format == QuantFormat::kBf16) || IsQuantizedDtype(v.dtype)) {
      it.kind = Item::kToBf16;
      it.outs = {{s.name, DType::kBF16, s.shape}};
    } else {
      it.kind = Item::kCopy;
      it.outs = {{s.name, v.dtype, v.shape}};
    }
    items.push_back(std::move(it));
  }
  // Tensors no table entry uses travel unchanged (they are reported by the loader anyway).
  for (const auto& name : lr.unused_tensors) {
    const TensorView v = ck.View(name);
    items.push_back({Item::kCopy, name, v.shape, {{name, v.dtype, v.shape}}});
  }
  for (auto& it : items)
    for (const auto& t : it.outs) it.bytes += t.bytes();
  return items;
}

// Produces every output tensor of one item. The weight's producer quantizes the whole
// matrix and leaves the companions in the stash for the producers that follow it.
class ItemWriter {
 public:
  ItemWriter(const ModelConfig& c, const ModelConfig& oc, const Checkpoint& ck, const Item& it)
      : c_(c), oc_(oc), ck_(ck), it_(it) {}

  Status Produce(size_t out_index, const SafetensorsWriter::Sink& sink) {
    if (it_.kind == Item::kCopy || it_.kind == Item::kAsStored) {
      const TensorView v = ck_.View(it_.outs[out_index].name);
      const auto* p = static_cast<const uint8_t*>(v.data);
      for (size_t off = 0; off < v.nbytes(); off += kCopyChunk)
        RETURN_IF_ERROR(sink(p + off, std::min(kCopyChunk, v.nbytes() - off)));
      return Status::Ok();
    }
    const WeightMatrix src = SourceMatrix(c_, ck_, it_.name, it_.logical);
    if (it_.kind == Item::kToBf16) {
      std::vector<float> rows(static_cast<size_t>(kRowChunk * src.cols()));
      std::vector<uint16_t> bf(rows.size());
      for (int64_t r0 = 0; r0 < src.rows(); r0 += kRowChunk) {
        const int64_t r1 = std::min(src.rows(), r0 + kRowChunk), n = (r1 - r0) * src.cols();
        DequantizeRows(src, r0, r1, rows.data());
        for (int64_t i = 0; i < n; ++i) bf[i] = F32ToBF16(rows[i]);
        RETURN_IF_ERROR(sink(bf.data(), static_cast<size_t>(n) * 2));
      }
      return Status::Ok();
    }
    if (out_index == 0) RETURN_IF_ERROR(Quantize(src));
    const std::vector<uint8_t>& bytes = stash_[out_index];
    RETURN_IF_ERROR(sink(bytes.data(), bytes.size()));
    if (out_index + 1 == it_.outs.size()) stash_.clear();
    return Status::Ok();
  }

 private:
  template <typename T>
  static std::vector<uint8_t> Bytes(const std::vector<T>& v) {
    std::vector<uint8_t> b(v.size() * sizeof(T));
    if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
    return b;
  }

  // Quantizes in parallel row bands aligned to the scale blocks; bands concatenate exactly
  // because every format's scale rows follow its weight rows.
  Status Quantize(const WeightMatrix& src) {
    const std::vector<float> w = ReadAllRows(src);
    const int64_t rows = src.rows(), cols = src.cols(), bo = oc_.quant_block_out, bi = oc_.QuantBlockIn(cols);
    const int64_t band = std::max<int64_t>(bo, (kRowChunk / bo) * bo), nb = (rows + band - 1) / band;
    const std::string what = ck_.dir() + ": tensor " + it_.name;
    std::vector<std::vector<std::vector<uint8_t>>> parts(static_cast<size_t>(nb));
    std::vector<Status> errors(static_cast<size_t>(nb));
    ParallelFor(nb, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t r0 = i * band, n = std::min(rows, r0 + band) - r0;
        const float* p = w.data() + r0 * cols;
        if (oc_.quant_method == QuantMethod::kFp8Block) {
          auto q = QuantizeFp8Block(p, n, cols, bo, bi, what);
          if (!q.ok()) errors[i] = q.status();
          else parts[i] = {std::move(q.value().q), Bytes(q.value().scale_inv)};
        } else if (oc_.quant_method == QuantMethod::kInt8) {
          auto q = QuantizeInt8(p, n, cols, bo, bi, what);
          if (!q.ok()) errors[i] = q.status();
          else parts[i] = {Bytes(q.value().q), Bytes(q.value().scale)};
        } else {
          auto q = QuantizeInt4(p, n, cols, bi, oc_.quant_symmetric, what);
          if (!q.ok()) errors[i] = q.status();
          else parts[i] = {std::move(q.value().packed), Bytes(q.value().scale), std::move(q.value().zero)};
        }
      }
    });
    for (const auto& e : errors) RETURN_IF_ERROR(e);
    stash_.assign(it_.outs.size(), {});
    for (size_t k = 0; k < it_.outs.size(); ++k) {
      stash_[k].reserve(it_.outs[k].bytes());
      for (auto& part : parts) stash_[k].insert(stash_[k].end(), part[k].begin(), part[k].end());
      if (stash_[k].size() != it_.outs[k].bytes())
        return Status::Runtime(what + ": quantizer produced " + std::to_string(stash_[k].size()) + " bytes for " +
                               it_.outs[k].name + ", expected " + std::to_string(it_.outs[k].bytes()));
    }
    return Status::Ok();
  }

  const ModelConfig& c_;
  const ModelConfig& oc_;
  const Checkpoint& ck_;
  const Item& it_;
  std::vector<std::vector<uint8_t>> stash_;
};

StatusOr<std::string> Sha256File(const std::string& path) {
  ASSIGN_OR_RETURN(MappedFile f, MappedFile::Open(path));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return Status::Runtime("sha256: OpenSSL init failed");
  for (size_t off = 0; off < f.size(); off += kCopyChunk)
    EVP_DigestUpdate(ctx.get(), f.data() + off, std::min(kCopyChunk, f.size() - off));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &n);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", md[i]);
    hex += buf;
  }
  return hex;
}

// Per-element error bound of a quantized value whose block scale is s, for source value w.
// fp8 e4m3 keeps 3 mantissa bits (relative half-ulp 2^-4) down to its subnormal step 2^-9·s;
// the integer grids are uniform with step s. The 1e-5 covers the float32 division by s.
double Bound(QuantMethod m, double w, double s) {
  if (m == QuantMethod::kFp8Block) return (std::fabs(w) / 16 + s / 1024) * (1 + 1e-5);
  return s / 2 * (1 + 1e-5) + std::fabs(w) * 1e-6;
}

float ScaleAt(const WeightMatrix& m, int64_t r, int64_t c) {
  if (m.w.dtype == DType::kF8E4M3) return m.scale_inv.f32()[(r / m.block_out) * m.scale_inv.shape[1] + c / m.block_in];
  if (m.w.dtype == DType::kI8) return m.scale.f32()[(r / m.block_out) * m.scale.shape[1] + c / m.block_in];
  return F16ToF32(m.scale.as<uint16_t>()[r * m.scale.shape[1] + c / m.block_in]);
}

struct VerifyStats {
  double worst = 0, err2 = 0, ref2 = 0;
  std::string worst_tensor;
};

// Compares one output item with its source, row band by row band.
Status VerifyItem(const ModelConfig& c, const ModelConfig& oc, const Checkpoint& in, const Checkpoint& out,
                  const Item& it, VerifyStats* st) {
  for (const auto& t : it.outs) {
    const SafetensorsFile* f = nullptr;
    const SafetensorsEntry* e = out.Find(t.name, &f);
    if (!e) return Status::Runtime(out.dir() + ": written checkpoint lacks tensor " + t.name);
    if (e->dtype != t.dtype || e->shape != t.shape)
      return Status::Runtime(f->path() + ": tensor " + t.name + " was written as " + DTypeName(e->dtype) +
                             e->shape.ToString() + ", planned " + DTypeName(t.dtype) + t.shape.ToString());
  }
  if (it.kind == Item::kCopy || it.kind == Item::kAsStored) {
    for (const auto& t : it.outs) {
      const TensorView a = in.View(t.name), b = out.View(t.name);
      if (std::memcmp(a.data, b.data, a.nbytes()) != 0)
        return Status::Runtime(out.dir() + ": tensor " + t.name + " differs from its source copy");
    }
    return Status::Ok();
  }
  const WeightMatrix src = SourceMatrix(c, in, it.name, it.logical);
  const bool bf16 = it.kind == Item::kToBf16;
  const WeightMatrix dst = bf16 ? WeightMatrix{out.View(it.name)} : SourceMatrix(oc, out, it.name, it.logical);
  const int64_t rows = src.rows(), cols = src.cols(), nb = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<VerifyStats> part(static_cast<size_t>(nb));
  std::vector<int64_t> bad(static_cast<size_t>(nb), -1);
  ParallelFor(nb, 1, [&](int64_t b, int64_t e) {
    std::vector<float> a(static_cast<size_t>(kRowChunk * cols)), q(a.size());
    for (int64_t i = b; i < e; ++i) {
      const int64_t r0 = i * kRowChunk, r1 = std::min(rows, r0 + kRowChunk);
      DequantizeRows(src, r0, r1, a.data());
      DequantizeRows(dst, r0, r1, q.data());
      // The band's tallies in locals (kept in part[i] they went through memory every element,
      // a store-to-load chain that was most of the check's time), each block's scale looked up
      // once per row.
      double worst = 0, err2 = 0, ref2 = 0;
      int64_t first_bad = -1;
      const int64_t group = bf16 || dst.block_in <= 0 ? cols : dst.block_in;  // columns sharing a scale
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t k0 = 0; k0 < cols; k0 += group) {
          const int64_t k1 = std::min(cols, k0 + group);
          const double s = bf16 ? 0.0 : ScaleAt(dst, r, k0);
          for (int64_t k = k0; k < k1; ++k) {
            const double w = a[(r - r0) * cols + k], d = std::fabs(q[(r - r0) * cols + k] - w);
            // BF16 keeps 8 significant bits: relative half-ulp 2^-9 of |w| rounds within 2^-8.
            const double bound = bf16 ? std::fabs(w) / 256 : Bound(oc.quant_method, w, s);
            const double ratio = bound > 0 ? d / bound : (d > 0 ? INFINITY : 0);
            if (!(ratio <= 1.0) && first_bad < 0) first_bad = r * cols + k;
            worst = std::max(worst, std::isnan(ratio) ? INFINITY : ratio);
            err2 += d * d;
            ref2 += w * w;
          }
        }
      part[i] = {worst, err2, ref2, ""};
      bad[i] = first_bad;
    }
  });
  for (int64_t i = 0; i < nb; ++i) {
    if (bad[i] >= 0) {
      const int64_t r = bad[i] / cols, k = bad[i] % cols;
      std::vector<float> a(static_cast<size_t>(cols)), q(a.size());
      DequantizeRows(src, r, r + 1, a.data());
      DequantizeRows(dst, r, r + 1, q.data());
      return Status::Runtime(out.dir() + ": tensor " + it.name + " element [" + std::to_string(r) + "," +
                             std::to_string(k) + "] reads back " + std::to_string(q[k]) + ", source " +
                             std::to_string(a[k]) + ": outside the format's error bound");
    }
    if (!bf16) {
      if (part[i].worst > st->worst) st->worst_tensor = it.name;
      st->worst = std::max(st->worst, part[i].worst);
      st->err2 += part[i].err2;
      st->ref2 += part[i].ref2;
    }
  }
  return Status::Ok();
}

// Where the output goes: the resolved final path (never the input, even through a symlink).
StatusOr<std::string> ResolveOutput(const std::string& input, std::string out) {
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  const std::string in_real = RealPath(input);
  std::string final_path;
  std::error_code ec;
  if (fs::exists(out, ec) || fs::is_symlink(out, ec)) {
    final_path = RealPath(out);
    if (final_path == in_real)
      return Status::Invalid("--out " + out + " is the input checkpoint " + input + " (resolved: " + in_real +
                             "); refusing to write over the input");
    if (!IsDirectory(final_path)) return Status::Invalid("--out " + out + " exists and is not a directory");
    if (!fs::is_empty(final_path, ec))
      return Status::Invalid("--out " + out + " exists and is not empty; choose a new directory");
  } else {
    const fs::path p(out);
    const std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
    if (!IsDirectory(parent)) return Status::Invalid("--out " + out + ": parent directory " + parent + " does not exist");
    final_path = JoinPath(RealPath(parent), p.filename().string());
  }
  if (final_path == in_real)
    return Status::Invalid("--out " + out + " is the input checkpoint " + input + "; refusing to write over the input");
  return final_path;
}

// Makes a rename in `dir` durable.
void FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::string ShardName(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

// Writes everything into `stage`; the caller publishes or removes it.
Status WriteStage(const QuantizeOptions& o, const ModelConfig& c, const ModelConfig& oc, const Checkpoint& ck,
                  const std::vector<Item>& items, const std::string& stage, QuantizeReport* rep) {
  // Shards: greedy in table order; a weight and its companions share a shard.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t cur = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (cur > 0 && cur + items[i].bytes > o.max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += items[i].bytes;
  }
  int64_t produced = 0;
  json weight_map = json::object();
  uint64_t total = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file = ShardName(s, shards.size());
    SafetensorsWriter w;
    w.SetMetadata("format", "pt");
    std::vector<std::unique_ptr<ItemWriter>> writers;
    for (size_t i : shards[s]) {
      writers.push_back(std::make_unique<ItemWriter>(c, oc, ck, items[i]));
      ItemWriter* iw = writers.back().get();
      for (size_t k = 0; k < items[i].outs.size(); ++k) {
        const OutTensor& t = items[i].outs[k];
        weight_map[t.name] = file;
        total += t.bytes();
        w.Add(t.name, t.dtype, t.shape, [iw, k, &produced, &o, name = t.name](const SafetensorsWriter::Sink& sink) {
          if (o.fail_after_tensors >= 0 && produced >= o.fail_after_tensors)
            return Status::Runtime("interrupted before tensor " + name + " (--fail-after-tensors " +
                                   std::to_string(o.fail_after_tensors) + ", a test hook)");
          ++produced;
          return iw->Produce(k, sink);
        });
      }
    }
    if (o.log) o.log("writing " + file + " (" + std::to_string(w.data_bytes() >> 20) + " MiB)");
    RETURN_IF_ERROR(w.Write(JoinPath(stage, file)));
    ASSIGN_OR_RETURN(std::string sha, Sha256File(JoinPath(stage, file)));
    rep->shards.push_back({file, static_cast<uint64_t>(fs::file_size(JoinPath(stage, file))), sha});
  }
  json sums = json::object();
  std::string sums_text;
  for (const auto& sh : rep->shards) {
    sums[sh.file] = sh.sha256;
    sums_text += sh.sha256 + "  " + sh.file + "\n";
    rep->output_bytes += sh.bytes;
  }
  json index = {{"metadata", {{"total_size", total}, {"quantization", QuantizationSummary(oc)}, {"sha256", sums}}},
                {"weight_map", weight_map}};
  RETURN_IF_ERROR(WriteFileAtomic(JoinPath(stage, Checkpoint::kIndexFile), index.dump(2) + "\n"));
  RETURN_IF_ERROR(WriteFileAtomic(JoinPath(stage, "SHA256SUMS"), sums_text));

  // config.json: the input's text with only quantization_config replaced, so fields dsv3
  // does not model survive for other readers.
  ASSIGN_OR_RETURN(std::string text, ReadFile(JoinPath(o.input_dir, "config.json")));
  json cfg = json::parse(text, nullptr, false);
  if (cfg.is_discarded()) return Status::Invalid(JoinPath(o.input_dir, "config.json") + ": not JSON");
  if (oc.quant_method == QuantMethod::kNone) {
    cfg.erase("quantization_config");
    cfg["torch_dtype"] = "bfloat16";
  } else {
    cfg["quantization_config"] = json::parse(QuantizationConfigJson(oc));
  }
  RETURN_IF_ERROR(WriteFileAtomic(JoinPath(stage, "config.json"), cfg.dump(2) + "\n"));
  // Tokenizer and generation files travel with the weights.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(o.input_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || n == "config.json" || n == Checkpoint::kIndexFile || n == "SHA256SUMS" ||
        n.ends_with(".safetensors") || n.starts_with("."))
      continue;
    fs::copy_file(e.path(), fs::path(stage) / n, ec);
    if (ec) return Status::Runtime(stage + ": copying " + e.path().string() + ": " + ec.message());
  }
  return Status::Ok();
}

Status VerifyStage(const ModelConfig& c, const ModelConfig& oc, const Checkpoint& in, const std::string& stage,
                   const std::vector<Item>& items, const QuantizeOptions& o, QuantizeReport* rep) {
  ASSIGN_OR_RETURN(auto out, Checkpoint::Open(stage));
  ASSIGN_OR_RETURN(ModelConfig reread, LoadHfConfig(JoinPath(stage, "config.json")));
  if (QuantizationConfigJson(reread) != QuantizationConfigJson(oc))
    return Status::Runtime(stage + "/config.json: quantization_config does not read back as written");
  std::set<std::string> planned;
  for (const auto& it : items)
    for (const auto& t : it.outs) planned.insert(t.name);
  for (const auto& n : out->Names())
    if (!planned.count(n)) return Status::Runtime(stage + ": unexpected tensor " + n + " in the output");
  VerifyStats st;
  for (size_t i = 0; i < items.size(); ++i) {
    RETURN_IF_ERROR(VerifyItem(c, oc, in, *out, items[i], &st));
    if (o.log && (i + 1) % 500 == 0) o.log("verified " + std::to_string(i + 1) + " of " + std::to_string(items.size()));
  }
  // The engine must accept what we wrote: same Binder as `Model::Load`.
  LoadReport lr;
  ASSIGN_OR_RETURN(ModelWeights unused, BindWeights(reread, *out, &lr));
  (void)unused;
  rep->worst_bound_ratio = st.worst;
  rep->worst_tensor = st.worst_tensor;
  rep->relative_rms_error = st.ref2 > 0 ? std::sqrt(st.err2 / st.ref2) : 0;
  return Status::Ok();
}

}  // namespace

StatusOr<QuantFormat> ParseQuantFormat(const std::string& s) {
  if (s == "fp8") return QuantFormat::kFp8;
  if (s == "int8") return QuantFormat::kInt8;
  if (s == "int4") return QuantFormat::kInt4;
  if (s == "bf16") return QuantFormat::kBf16;
  return Status::Invalid("--format " + s + ": expected fp8, int8, int4 or bf16");
}

Status QuantizeCheckpoint(const QuantizeOptions& o, QuantizeReport* rep) {
  *rep = QuantizeReport{};
  if (o.format == QuantFormat::kFp8 && o.block == 0) return Status::Invalid("fp8 needs a positive --block-size");
  if (o.block < -1) return Status::Invalid("block/group size must be positive (0: per output channel)");
  ASSIGN_OR_RETURN(std::string final_path, ResolveOutput(o.input_dir, o.output_dir));
  ASSIGN_OR_RETURN(ModelConfig c, LoadHfConfig(JoinPath(o.input_dir, "config.json")));
  ASSIGN_OR_RETURN(auto ck, Checkpoint::Open(o.input_dir));
  // The Binder validates every tensor and scale of the input before a byte is written: a
  // missing or misshapen scale is refused here, not guessed around.
  LoadReport lr;
  {
    ASSIGN_OR_RETURN(ModelWeights unused, BindWeights(c, *ck, &lr));
    (void)unused;
  }
  const ModelConfig oc = OutputConfig(c, o);
  RETURN_IF_ERROR(ValidateConfig(oc, "--format"));
  // A --keep that matches nothing is a typo that would quantize what it meant to keep.
  const std::vector<TensorSpec> table = BuildTensorTable(c);
  for (const auto& pattern : o.keep) {
    const bool matched = std::any_of(table.begin(), table.end(), [&](const TensorSpec& t) {
      return ck->Has(t.name) && KeepMatches(pattern, t.name);
    });
    if (!matched)
      return Status::Invalid("--keep '" + pattern + "' matches no tensor of the checkpoint (fnmatch on full names, as " +
                             "'model.layers.0.*' or '*.kv_b_proj.weight')");
  }
  const std::vector<Item> items = Plan(c, oc, *ck, lr, o);
  for (const auto& it : items) {
    if (it.kind == Item::kQuantize) ++rep->quantized;
    else if (it.kind == Item::kAsStored) ++rep->as_stored;
    else ++rep->kept;
  }
  rep->copied_unknown = static_cast<int64_t>(lr.unused_tensors.size());
  rep->input_bytes = ck->TotalBytes();
  rep->quantization = QuantizationSummary(oc);

  const fs::path fp(final_path);
  const std::string stage =
      (fp.parent_path() / ("." + fp.filename().string() + ".dsv3-partial-" + std::to_string(::getpid()))).string();
  // Ctrl-C or a kill by SIGTERM removes the stage too (signal_cleanup.h); it had stayed, GBs.
  // Registered before it exists, so that no signal falls between the two.
  const int cleanup = RegisterSignalCleanup(stage, /*directory=*/true);
  std::error_code ec;
  fs::create_directory(stage, ec);
  if (ec) {
    UnregisterSignalCleanup(cleanup);
    return Status::Runtime(stage + ": cannot create staging directory: " + ec.message());
  }
  Status st = WriteStage(o, c, oc, *ck, items, stage, rep);
  if (st.ok()) st = VerifyStage(c, oc, *ck, stage, items, o, rep);
  if (st.ok()) {
    // rename(2) replaces an empty directory atomically; anything else was refused above.
    if (::rename(stage.c_str(), final_path.c_str()) != 0)
      st = Status::Runtime("renaming " + stage + " to " + final_path + ": " + std::strerror(errno));
  }
  if (!st.ok()) fs::remove_all(stage, ec);
  UnregisterSignalCleanup(cleanup);
  if (!st.ok()) return st;
  FsyncDir(fp.parent_path().string());
  return Status::Ok();
}

}  // namespace dsv3
