// The roofline probes `dsv3 bench` divides by: the read-bandwidth probe's AVX2 loop reads
// every element once (its sum is the plain sum, tail included), and both probes report a
// positive, finite rate.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/cpu/machine_probe.h"
#include "engine/kernels/ops.h"

namespace dsv3 {
namespace {

TEST(MachineProbeTest, Avx2ReadSumReadsEveryElementOnce) {
  if (!GetCpuFeatures().HasAvx2Set()) GTEST_SKIP() << "CPU lacks AVX2+FMA+F16C (" << GetCpuFeatures().ToString() << ")";
  // Lengths below, at and past the 16-element step, with tails of every size; values that
  // wrap, as the probe's sums do.
  std::vector<uint64_t> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = (uint64_t{0x9e3779b97f4a7c15} * (i + 1)) ^ (i << 7);
  for (int64_t n : {0, 1, 15, 16, 17, 31, 32, 47, 999, 1000}) {
    uint64_t plain = 0;
    for (int64_t i = 0; i < n; ++i) plain += v[static_cast<size_t>(i)];
    EXPECT_EQ(cpu::ReadSumAvx2(v.data(), n), plain) << "n " << n;
    if (n > 1) EXPECT_EQ(cpu::ReadSumAvx2(v.data() + 1, n - 1), plain - v[0]) << "unaligned, n " << n - 1;
  }
}

TEST(MachineProbeTest, ProbesReportPositiveRates) {
  SetNumThreads(2);
  const double bytes_per_s = MeasureReadBandwidth(int64_t{8} << 20, 1);
  const double flops = MeasurePeakFlops(0.01);
  SetNumThreads(0);
  EXPECT_TRUE(std::isfinite(bytes_per_s));
  EXPECT_GT(bytes_per_s, 0.0);
  if (GetCpuFeatures().HasAvx2Set()) {
    EXPECT_TRUE(std::isfinite(flops));
    EXPECT_GT(flops, 0.0);
  } else {
    EXPECT_EQ(flops, 0.0);
  }
}

// The peaks are those of the kernel family Linear runs: with AVX-512 the FMAs are 512 bits wide
// (not necessarily faster: some cores split them) and int8 products have a vpdpbusd peak of
// their own; with AVX2 a vpmaddubsw peak (32 products an instruction, where an FMA does 8, so
// an int8 kernel can run past the FMA peak); the reference family has no int8 peak apart from
// the FMAs' (0). (The reference family is measured against the machine's AVX2
// FMAs, where it has them.)
TEST(MachineProbeTest, PeaksFollowTheKernelFamily) {
  SetNumThreads(1);
  for (const LinearKernel k : {LinearKernel::kReference, LinearKernel::kAvx2, LinearKernel::kAvx512}) {
    SetLinearKernel(k);
    const LinearKernel active = ActiveLinearKernel();  // a family the CPU lacks falls back
    const double flops = MeasurePeakFlops(0.01), int8 = MeasurePeakInt8Ops(0.01);
    if (active != LinearKernel::kReference) EXPECT_TRUE(std::isfinite(flops) && flops > 0.0) << LinearKernelName(active);
    if (active == LinearKernel::kAvx512) {
      EXPECT_TRUE(std::isfinite(int8) && int8 > flops) << "64 byte products per vpdpbusd, 16 per 512-bit FMA";
    } else if (active == LinearKernel::kAvx2) {
      EXPECT_TRUE(std::isfinite(int8) && int8 > flops) << "32 byte products per vpmaddubsw, 8 per 256-bit FMA";
    } else {
      EXPECT_EQ(int8, 0.0) << LinearKernelName(active);
    }
  }
  SetLinearKernel(LinearKernel::kAuto);
  SetNumThreads(0);
}

// The bf16 peak (--activations bf16) is a vdpbf16ps loop's where the CPU has AVX-512 BF16 (the
// auto family, avx512, runs bf16 products there); 0 without it. A vdpbf16ps does 32 products
// where a 512-bit FMA does 16, but how many issue a cycle is the core's: two on Zen 5 (the
// bf16 peak about twice the FMA peak); one every two cycles on the Xeon of session 27's device
// machine (AMX, no AMX-FP16: Sapphire or Emerald Rapids), half the FMA peak there (77 against
// 154 GFLOP/s on one core). So the check is that the probe measured that loop, between a
// quarter of and four times the FMA peak, not which of the two is larger.
TEST(MachineProbeTest, Bf16PeakWhereTheCpuHasIt) {
  SetNumThreads(1);
  const double bf16 = MeasurePeakBf16Flops(0.05);
  if (GetCpuFeatures().HasAvx512Bf16Set()) {
    SetLinearKernel(LinearKernel::kAvx512);
    const double fma = MeasurePeakFlops(0.05);
    EXPECT_TRUE(std::isfinite(bf16) && bf16 > 0.25 * fma && bf16 < 4 * fma) << bf16 << " vs FMA " << fma;
    SetLinearKernel(LinearKernel::kAuto);
  } else {
    EXPECT_EQ(bf16, 0.0) << GetCpuFeatures().ToString();
  }
  SetNumThreads(0);
}

}  // namespace
}  // namespace dsv3
