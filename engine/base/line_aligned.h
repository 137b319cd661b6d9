// A float array that starts on a 64-byte cache line. std::vector's buffer (malloc) is only
// 16-byte aligned, so every other 256-bit load of a row straddled two lines; rows whose width is
// a multiple of 16 floats start on a line here. Used by MatMul's packed operands (the latent KV
// cache, which had it first, is now on 2 MiB pages: kv_cache.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv3 {

class LineAlignedFloats {
 public:
  LineAlignedFloats() = default;
  explicit LineAlignedFloats(size_t n) { Resize(n); }
  LineAlignedFloats(const LineAlignedFloats&) = delete;
  LineAlignedFloats& operator=(const LineAlignedFloats&) = delete;
  LineAlignedFloats(LineAlignedFloats&&) = default;  // a moved vector keeps its buffer: data_ stays valid
  LineAlignedFloats& operator=(LineAlignedFloats&&) = default;

  // n floats; new ones are zero, kept ones keep their values only if the line offset did not
  // change (callers either write everything after a resize or never resize).
  void Resize(size_t n) {
    storage_.resize(n + kLineFloats - 1);
    const auto misalign = reinterpret_cast<uintptr_t>(storage_.data()) % (kLineFloats * sizeof(float));
    data_ = storage_.data() + (misalign == 0 ? 0 : (kLineFloats * sizeof(float) - misalign) / sizeof(float));
    size_ = n;
  }
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  static constexpr size_t kLineFloats = 16;
  std::vector<float> storage_;
  float* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dsv3
