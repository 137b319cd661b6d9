// CUDA device discovery. With no driver, cudaGetDeviceCount returns an error rather than
// 0: every error means "no GPU" and callers fall back to the CPU.
#pragma once

namespace dsv3::cuda {

// Number of usable CUDA devices; 0 when the build has no CUDA or no driver/device exists.
int DeviceCount();

}  // namespace dsv3::cuda
