// CUDA and cuBLAS return codes as dsv3::Status, for the .cu/.cc files of this directory only
// (it includes the CUDA headers; the public headers here stay plain C++).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "engine/base/status.h"

namespace dsv3::cuda {

// "what: cudaErrorNoDevice (no CUDA-capable device is detected)". Clears the runtime's
// last-error slot so a non-sticky error does not resurface in an unrelated later check.
inline Status CudaStatus(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status::Ok();
  cudaGetLastError();
  return Status::Runtime(what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

inline Status CublasStatus(cublasStatus_t s, const std::string& what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Status::Runtime(what + ": " + cublasGetStatusString(s));
}

// A kernel launch reports bad configurations at once and execution faults at the next
// synchronizing call (the copy back), which is checked there.
inline Status LaunchStatus(const std::string& kernel) { return CudaStatus(cudaGetLastError(), "launch " + kernel); }

}  // namespace dsv3::cuda
