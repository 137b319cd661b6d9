// LinearCuda: cuBLAS GEMM for F32 and BF16 weights; FP8 block weights are dequantized to BF16
// on the device first. The choices and their error are documented in cuda_ops.h.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/kernels/cuda/cuda_check.h"
#include "engine/kernels/cuda/cuda_ops.h"
#include "engine/kernels/cuda/device_buffer.h"

namespace dsv3::cuda {
namespace {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements (the loop covers anything past the cap).
int GridFor(int64_t n) { return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 65535)); }

__global__ void F32ToBf16Kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

// w[r, c] = e4m3(q[r, c]) * scale_inv[r / block_out, c / block_in]: the float32 product is
// the CPU's DequantizeRows value, then rounded once to BF16.
__global__ void DequantizeFp8Kernel(const uint8_t* q, const float* scale_inv, int64_t rows, int64_t cols,
                                    int64_t block_out, int64_t block_in, int64_t scale_cols, __nv_bfloat16* w) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    __nv_fp8_e4m3 v;
    v.__x = q[i];
    w[i] = __float2bfloat16_rn(static_cast<float>(v) * scale_inv[(r / block_out) * scale_cols + c / block_in]);
  }
}

// One handle per process, made on first use (creating one costs milliseconds); it is bound to
// the device current then. It is destroyed by an atexit handler registered once cublasCreate
// has returned, so the handler runs before those the CUDA runtime registered at its first
// call; a static destructor's order against the runtime's teardown would not be defined.
// Left alone, compute-sanitizer's leak check reports the handle's workspace (64 MiB and two
// small blocks on the H200) in every program that ran a GEMM.
cublasHandle_t g_handle = nullptr;

void DestroyHandle() {
  cublasDestroy(g_handle);  // at exit: an error has no one to report to
  g_handle = nullptr;
}

StatusOr<cublasHandle_t> Handle() {
  static const cublasStatus_t status = [] {
    const cublasStatus_t s = cublasCreate(&g_handle);
    if (s == CUBLAS_STATUS_SUCCESS) std::atexit(DestroyHandle);
    return s;
  }();
  if (status != CUBLAS_STATUS_SUCCESS) return CublasStatus(status, "cublasCreate");
  return g_handle;
}

// Row-major y[T, out] = x[T, in] · Wᵀ is column-major yᵀ[out, T] = Aᵀ · xᵀ, where A is the
// column-major [in, out] matrix that W's row-major bytes spell: op(A) = T, op(B) = N.
Status Gemm(const void* w, const void* x, cudaDataType type, int T, int out, int in, float* y) {
  ASSIGN_OR_RETURN(cublasHandle_t handle, Handle());
  const float alpha = 1.0f, beta = 0.0f;
  return CublasStatus(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, &alpha, w, type, in, x, type, in,
                                   &beta, y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      "cublasGemmEx");
}

Status Validate(const WeightMatrix& w, int64_t T) {
  const std::string dt = DTypeName(w.w.dtype);
  if (w.w.empty() || w.w.shape.rank != 2)
    return Status::Invalid("weight must be a 2-D [out, in] view, got " + dt + " " + w.w.shape.ToString());
  if (T < 0) return Status::Invalid("negative token count " + std::to_string(T));
  if (T > INT_MAX || w.rows() > INT_MAX || w.cols() > INT_MAX)
    return Status::Invalid("T=" + std::to_string(T) + ", weight " + w.w.shape.ToString() +
                           " exceeds cuBLAS's int dimensions");
  switch (w.w.dtype) {
    case DType::kF32:
    case DType::kBF16: return Status::Ok();
    case DType::kF8E4M3: {
      if (w.block_out <= 0 || w.block_in <= 0)
        return Status::Invalid("F8_E4M3 block sizes must be positive, got " + std::to_string(w.block_out) + "x" +
                               std::to_string(w.block_in));
      const Shape want{(w.rows() + w.block_out - 1) / w.block_out, (w.cols() + w.block_in - 1) / w.block_in};
      if (w.scale_inv.empty() || w.scale_inv.dtype != DType::kF32 || w.scale_inv.shape != want)
        return Status::Invalid("F8_E4M3 weight " + w.w.shape.ToString() + " needs F32 scale_inv " + want.ToString() +
                               ", got " + DTypeName(w.scale_inv.dtype) + " " + w.scale_inv.shape.ToString());
      return Status::Ok();
    }
    default: return Status::Invalid("weight dtype " + dt + " is not supported on CUDA yet (F32, BF16, F8_E4M3 are)");
  }
}

// BF16 copy of the weight on the device: uploaded as is, or dequantized from FP8 blocks.
Status Bf16Weight(const WeightMatrix& w, DeviceBuffer* out) {
  if (w.w.dtype == DType::kBF16) return out->Upload(w.w.data, w.w.nbytes());
  DeviceBuffer q, scale;
  RETURN_IF_ERROR(q.Upload(w.w.data, w.w.nbytes()));
  RETURN_IF_ERROR(scale.Upload(w.scale_inv.data, w.scale_inv.nbytes()));
  const int64_t n = w.rows() * w.cols();
  RETURN_IF_ERROR(out->Allocate(static_cast<size_t>(n) * sizeof(__nv_bfloat16)));
  DequantizeFp8Kernel<<<GridFor(n), kThreads>>>(q.as<uint8_t>(), scale.as<float>(), w.rows(), w.cols(), w.block_out,
                                                w.block_in, w.scale_inv.shape[1], out->as<__nv_bfloat16>());
  return LaunchStatus("DequantizeFp8Kernel");
}

Status RunLinear(const float* x, int64_t T, const WeightMatrix& w, float* y) {
  RETURN_IF_ERROR(Validate(w, T));
  const int64_t out = w.rows(), in = w.cols();
  if (T == 0 || out == 0) return Status::Ok();
  if (in == 0) {  // an empty sum; not worth a cuBLAS corner case
    std::fill(y, y + T * out, 0.0f);
    return Status::Ok();
  }
  DeviceBuffer dx, dy, dw;
  RETURN_IF_ERROR(dx.Upload(x, static_cast<size_t>(T * in) * sizeof(float)));
  RETURN_IF_ERROR(dy.Allocate(static_cast<size_t>(T * out) * sizeof(float)));
  if (w.w.dtype == DType::kF32) {
    RETURN_IF_ERROR(dw.Upload(w.w.data, w.w.nbytes()));
    RETURN_IF_ERROR(Gemm(dw.get(), dx.get(), CUDA_R_32F, T, out, in, dy.as<float>()));
  } else {
    RETURN_IF_ERROR(Bf16Weight(w, &dw));
    DeviceBuffer xb;
    RETURN_IF_ERROR(xb.Allocate(static_cast<size_t>(T * in) * sizeof(__nv_bfloat16)));
    F32ToBf16Kernel<<<GridFor(T * in), kThreads>>>(dx.as<float>(), xb.as<__nv_bfloat16>(), T * in);
    RETURN_IF_ERROR(LaunchStatus("F32ToBf16Kernel"));
    RETURN_IF_ERROR(Gemm(dw.get(), xb.get(), CUDA_R_16BF, T, out, in, dy.as<float>()));
  }
  return dy.Download(y, static_cast<size_t>(T * out) * sizeof(float));
}

}  // namespace

Status LinearCuda(const float* x, int64_t T, const WeightMatrix& w, float* y) {
  return RunLinear(x, T, w, y).WithPrefix("LinearCuda: ");
}

}  // namespace dsv3::cuda
