// Builds without CUDA still answer "how many GPUs": zero.
#include "engine/kernels/cuda/device.h"

#ifndef DSV3_HAVE_CUDA
namespace dsv3::cuda {
int DeviceCount() { return 0; }
}  // namespace dsv3::cuda
#endif
