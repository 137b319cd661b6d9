// DeviceBuffer over cudaMalloc / cudaMemcpy.
#include "engine/kernels/cuda/device_buffer.h"

#include <string>
#include <utility>

#include "engine/kernels/cuda/cuda_check.h"

namespace dsv3::cuda {

DeviceBuffer::~DeviceBuffer() { Free(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Free();
    ptr_ = std::exchange(other.ptr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void DeviceBuffer::Free() {
  if (ptr_ != nullptr) cudaFree(ptr_);  // a failure here has no one to report to
  ptr_ = nullptr;
  size_ = 0;
}

Status DeviceBuffer::Allocate(size_t bytes) {
  Free();
  if (bytes == 0) return Status::Ok();
  RETURN_IF_ERROR(CudaStatus(cudaMalloc(&ptr_, bytes), "cudaMalloc(" + std::to_string(bytes) + " bytes)"));
  size_ = bytes;
  return Status::Ok();
}

Status DeviceBuffer::Upload(const void* host, size_t bytes) {
  RETURN_IF_ERROR(Allocate(bytes));
  if (bytes == 0) return Status::Ok();
  return CudaStatus(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice),
                    "cudaMemcpy to device (" + std::to_string(bytes) + " bytes)");
}

Status DeviceBuffer::Download(void* host, size_t bytes) const {
  if (bytes > size_)
    return Status::Runtime("DeviceBuffer::Download: " + std::to_string(bytes) + " bytes asked, buffer holds " +
                           std::to_string(size_));
  if (bytes == 0) return Status::Ok();
  return CudaStatus(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost),
                    "cudaMemcpy to host (" + std::to_string(bytes) + " bytes)");
}

}  // namespace dsv3::cuda
