// RmsNorm, SiluMul and row softmax on the device: one block per row for the row reductions,
// a grid-stride loop for the elementwise op. Same formulas as engine/kernels/cpu/ops.cc
// (precise expf / sqrtf / division: this file must not be built with --use_fast_math).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/cuda_ops.h"
#include "engine/kernels/cuda/device_buffer.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256;  // a multiple of the warp size
constexpr int kWarps = kThreads / 32;

struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Reduces v over the block; every thread gets the result. Warps reduce by shuffles, then each
// thread folds the kWarps partials in the same order, so the result is deterministic.
template <typename Op>
__device__ float BlockReduce(float v, Op op) {
  __shared__ float partial[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  __syncthreads();  // a previous reduction may still be reading `partial`
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  v = partial[0];
  for (int i = 1; i < kWarps; ++i) v = op(v, partial[i]);
  return v;
}

__global__ void RmsNormKernel(const float* x, const float* weight, int64_t D, float eps, float* y) {
  const float* xr = x + blockIdx.x * D;
  float* yr = y + blockIdx.x * D;
  float ss = 0.0f;
  for (int64_t i = threadIdx.x; i < D; i += kThreads) ss += xr[i] * xr[i];
  ss = BlockReduce(ss, Sum{});
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
  for (int64_t i = threadIdx.x; i < D; i += kThreads) yr[i] = xr[i] * inv * weight[i];
}

__global__ void SiluMulKernel(float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

// Each thread rewrites only the elements it read, so the three passes need no barrier
// beyond the reductions'.
__global__ void SoftmaxRowsKernel(float* x, int64_t n) {
  float* row = x + blockIdx.x * n;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) m = fmaxf(m, row[i]);
  m = BlockReduce(m, Max{});
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    row[i] = expf(row[i] - m);
    sum += row[i];
  }
  sum = BlockReduce(sum, Sum{});
  const float inv = 1.0f / sum;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) row[i] *= inv;
}

Status CheckRows(int64_t rows, int64_t n) {
  if (rows < 0 || n < 0) return Status::Invalid("negative size " + std::to_string(rows) + "x" + std::to_string(n));
  if (rows > INT_MAX)  // one block per row
    return Status::Invalid(std::to_string(rows) + " rows exceed the grid limit");
  return Status::Ok();
}

Status RunRmsNorm(const float* x, const TensorView& weight, int64_t T, int64_t D, float eps, float* y) {
  RETURN_IF_ERROR(CheckRows(T, D));
  if (weight.empty() || weight.numel() != D)
    return Status::Invalid("weight " + weight.shape.ToString() + " has " + std::to_string(weight.numel()) +
                           " elements, D is " + std::to_string(D));
  if (T == 0 || D == 0) return Status::Ok();
  const std::vector<float> w = ToF32Vector(weight);
  const size_t bytes = static_cast<size_t>(T * D) * sizeof(float);
  DeviceBuffer dx, dw, dy;
  RETURN_IF_ERROR(dx.Upload(x, bytes));
  RETURN_IF_ERROR(dw.Upload(w.data(), w.size() * sizeof(float)));
  RETURN_IF_ERROR(dy.Allocate(bytes));
  RmsNormKernel<<<static_cast<unsigned>(T), kThreads>>>(dx.as<float>(), dw.as<float>(), D, eps, dy.as<float>());
  RETURN_IF_ERROR(LaunchStatus("RmsNormKernel"));
  return dy.Download(y, bytes);
}

Status RunSiluMul(float* gate, const float* up, int64_t n) {
  RETURN_IF_ERROR(CheckRows(1, n));
  if (n == 0) return Status::Ok();
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  DeviceBuffer dg, du;
  RETURN_IF_ERROR(dg.Upload(gate, bytes));
  RETURN_IF_ERROR(du.Upload(up, bytes));
  const int blocks = static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 65535));
  SiluMulKernel<<<blocks, kThreads>>>(dg.as<float>(), du.as<float>(), n);
  RETURN_IF_ERROR(LaunchStatus("SiluMulKernel"));
  return dg.Download(gate, bytes);
}

Status RunSoftmaxRows(float* x, int64_t rows, int64_t n) {
  RETURN_IF_ERROR(CheckRows(rows, n));
  if (rows == 0 || n == 0) return Status::Ok();
  const size_t bytes = static_cast<size_t>(rows * n) * sizeof(float);
  DeviceBuffer dx;
  RETURN_IF_ERROR(dx.Upload(x, bytes));
  SoftmaxRowsKernel<<<static_cast<unsigned>(rows), kThreads>>>(dx.as<float>(), n);
  RETURN_IF_ERROR(LaunchStatus("SoftmaxRowsKernel"));
  return dx.Download(x, bytes);
}

}  // namespace

Status RmsNormCuda(const float* x, const TensorView& weight, int64_t T, int64_t D, float eps, float* y) {
  return RunRmsNorm(x, weight, T, D, eps, y).WithPrefix("RmsNormCuda: ");
}

Status SiluMulCuda(float* gate, const float* up, int64_t n) {
  return RunSiluMul(gate, up, n).WithPrefix("SiluMulCuda: ");
}

Status SoftmaxRowsCuda(float* x, int64_t rows, int64_t n) {
  return RunSoftmaxRows(x, rows, n).WithPrefix("SoftmaxRowsCuda: ");
}

}  // namespace dsv3::cuda
