#include <cuda_runtime.h>

#include "engine/kernels/cuda/device.h"

namespace dsv3::cuda {

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls are not confused
    return 0;
  }
  return n;
}

}  // namespace dsv3::cuda
