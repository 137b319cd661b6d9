// CUDA twins of the CPU ops in engine/kernels/ops.h, checked against them in
// tests/cuda/cuda_ops_test.cc. Plain C++ (no CUDA headers), so any layer can include it.
//
// For now every function takes host pointers and does copy-in / compute / copy-out itself,
// synchronously, on the current device and the default stream: this is the checkable first
// step, not the forward pass's data path (which will keep activations and weights resident).
// Errors (no device, out of memory, a faulting kernel, unsupported input) come back as a
// Status carrying the CUDA or cuBLAS error name and text; inputs are validated before any
// device work.
#pragma once

#include <cstdint>

#include "engine/base/status.h"
#include "engine/kernels/ops.h"
#include "engine/tensor/tensor.h"

namespace dsv3::cuda {

// y[T, out] = x[T, in] · Wᵀ with cuBLAS (cublasGemmEx, CUBLAS_COMPUTE_32F: float32
// accumulation, no TF32), y float32. By weight format:
//   F32       float32 GEMM on the float32 activations (same arithmetic as the CPU, other order).
//   BF16      the activations are rounded to BF16 on the device and the GEMM runs BF16 x BF16
//             on tensor cores. We round the activations (T x in values) rather than widen the
//             weights (out x in) because the weights are the large operand: they stay BF16 in
//             device memory, as a resident forward pass will hold them. Cost: one BF16 rounding
//             (relative 2^-8) per activation.
//   F8_E4M3   a dequantize kernel writes BF16 weights (e4m3 * scale_inv, rounded once to BF16),
//             then the BF16 path above; DeepSeek's reference inference does the same in its
//             "bf16" GEMM mode. Any block_out / block_in, partial edge blocks included.
// F16, I8 and U8 (int4) weights are not supported yet (Status::Invalid).
Status LinearCuda(const float* x, int64_t T, const WeightMatrix& w, float* y);

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight over D, for T rows; weight of any float
// dtype with D elements. Mirrors RmsNorm.
Status RmsNormCuda(const float* x, const TensorView& weight, int64_t T, int64_t D, float eps, float* y);

// gate[i] = silu(gate[i]) * up[i] over n elements. Mirrors SiluMul.
Status SiluMulCuda(float* gate, const float* up, int64_t n);

// In-place softmax of each of `rows` rows of length n (x is [rows, n]); subtracts the row
// maximum first. Mirrors SoftmaxInPlace applied row by row.
Status SoftmaxRowsCuda(float* x, int64_t rows, int64_t n);

}  // namespace dsv3::cuda
