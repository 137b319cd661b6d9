// Owning handle to a block of device memory (plain C++: no CUDA headers), so the CUDA ops
// free what they allocated on every return path, errors included.
#pragma once

#include <cstddef>

#include "engine/base/status.h"

namespace dsv3::cuda {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;

  // Frees what the buffer held, then allocates `bytes` (none for 0).
  Status Allocate(size_t bytes);
  // Allocate(bytes) and copy `bytes` from host memory.
  Status Upload(const void* host, size_t bytes);
  // Copies the first `bytes` (at most size()) to host memory; waits for the device.
  Status Download(void* host, size_t bytes) const;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return size_; }

 private:
  void Free();
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dsv3::cuda
