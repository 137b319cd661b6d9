// Tensor views (non-owning: a pointer, a dtype and a shape) and a small owning F32 buffer.
// Weights are views into mmap'd checkpoint files; activations live in Buffers sized once.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/base/dtype.h"

namespace dsv3 {

constexpr int kMaxRank = 4;

struct Shape {
  std::array<int64_t, kMaxRank> dims{};
  int rank = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> d) {
    for (int64_t v : d) dims[rank++] = v;
  }
  static Shape FromVector(const std::vector<int64_t>& d) {
    Shape s;
    for (int64_t v : d) s.dims[s.rank++] = v;
    return s;
  }
  int64_t operator[](int i) const { return dims[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (dims[i] != o.dims[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string ToString() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + "]";
  }
};

struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  Shape shape;

  bool empty() const { return data == nullptr; }
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  const float* f32() const { return static_cast<const float*>(data); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
};

// Reads element i of any floating view as float32 (for small tensors: norms, biases).
float ElementAsF32(const TensorView& t, int64_t i);

// Elements [begin, begin + n) of any view as float32 into dst, the values ElementAsF32 gives,
// with the dtype looked at once rather than per element (a decode step's norms and embedding
// row: the per-element switch cost as much as the norm itself).
void ElementsAsF32(const TensorView& t, int64_t begin, int64_t n, float* dst);

// Copies a floating view to a float32 vector (small tensors only).
std::vector<float> ToF32Vector(const TensorView& t);

}  // namespace dsv3
