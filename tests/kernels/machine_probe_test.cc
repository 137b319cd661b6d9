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

}  // namespace
}  // namespace dsv3
