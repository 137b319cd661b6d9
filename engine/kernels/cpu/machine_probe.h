// Measures this machine's ceilings for rooflines: memory read bandwidth and the FMA peak of the
// fastest Linear kernel family the CPU runs. Used by `dsv3 bench`; runs on the thread pool.
#pragma once

#include <cstdint>

namespace dsv3 {

// Bytes per second read by all pool threads streaming a `bytes` buffer (best of `repeats`).
double MeasureReadBandwidth(int64_t bytes, int repeats = 3);
// FLOP/s of register-only FMAs on every pool thread for about `seconds`, at the width of the
// kernel family Linear runs (256 bits, 512 for avx512); 0 when the CPU has no vector FMA
// kernel family (the reference path has no fixed peak).
double MeasurePeakFlops(double seconds = 0.3);
// Int8 products per second (two per multiply-add) on every pool thread for about `seconds`:
// a vpdpbusd loop's where Linear runs the AVX-512 VNNI family, a vpmaddubsw loop's where it
// runs AVX2 (32 products an instruction); 0 for the reference family, whose int8 products
// then count against MeasurePeakFlops.
double MeasurePeakInt8Ops(double seconds = 0.3);
// bf16 FLOP/s (two products and two additions a lane) of a vdpbf16ps loop on every pool thread
// for about `seconds`, where Linear runs bf16 products on it (Bf16KernelActive, ops.h); 0
// otherwise.
double MeasurePeakBf16Flops(double seconds = 0.3);

}  // namespace dsv3
