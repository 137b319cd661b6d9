// Bandwidth and FMA-peak probes for rooflines (see machine_probe.h).
#include "engine/kernels/cpu/machine_probe.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <vector>

#include "engine/base/huge_page_buffer.h"
#include "engine/base/threads.h"
#include "engine/kernels/cpu/cpu_features.h"
#include "engine/kernels/cpu/linear_kernels.h"
#include "engine/kernels/ops.h"

namespace dsv3 {

double MeasureReadBandwidth(int64_t bytes, int repeats) {
  const int64_t n = std::max<int64_t>(1, bytes / 8);
  // On 2 MiB pages, as the weights are mapped (HugePageBuffer says why it matters): the
  // vector this was had 4 KiB pages and read slower (BM_ReadBandwidth/2, five alternated
  // pairs: +1-22%, most ~6%), so rooflines came out that much low.
  HugePageBuffer mem(static_cast<size_t>(n) * 8);
  auto* buf = static_cast<uint64_t*>(mem.data());
  // Written first so every page is resident before the timed reads.
  ParallelFor(n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[i] = static_cast<uint64_t>(i);
  });
  double best = 0;
  std::atomic<uint64_t> sink{0};
  const bool avx2 = GetCpuFeatures().HasAvx2Set();
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    ParallelFor(n, 1 << 16, [&](int64_t b, int64_t e) {
      if (avx2) {  // read as the kernels read (see ReadSumAvx2)
        sink.fetch_add(cpu::ReadSumAvx2(buf + b, e - b), std::memory_order_relaxed);
        return;
      }
      // Four independent sums let the compiler keep several loads in flight.
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t i = b;
      for (; i + 4 <= e; i += 4) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
      }
      for (; i < e; ++i) s0 += buf[i];
      sink.fetch_add(s0 + s1 + s2 + s3, std::memory_order_relaxed);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * 8) / s);
  }
  return sink.load() == 42 ? best + 0.0 : best;  // keeps the sums observable
}

namespace {

// Sum over the pool threads of each one's `loop(seconds)`.
double OnEveryThread(double (*loop)(double), double seconds) {
  const int threads = NumThreads();
  std::vector<double> per(static_cast<size_t>(threads), 0.0);
  ParallelFor(threads, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) per[static_cast<size_t>(i)] = loop(seconds);
  });
  double total = 0;
  for (double p : per) total += p;
  return total;
}

}  // namespace

double MeasurePeakFlops(double seconds) {
  if (!GetCpuFeatures().HasAvx2Set()) return 0.0;
  // The family Linear runs: its GEMM's FMAs are 512 bits wide with AVX-512.
  if (ActiveLinearKernel() == LinearKernel::kAvx512) return OnEveryThread(cpu::FmaPeakFlopsAvx512, seconds);
  return OnEveryThread(cpu::FmaPeakFlopsAvx2, seconds);
}

double MeasurePeakInt8Ops(double seconds) {
  const LinearKernel k = ActiveLinearKernel();
  if (k == LinearKernel::kAvx512) return OnEveryThread(cpu::Int8PeakOpsAvx512, seconds);
  if (UsesAvx2Kernels(k)) return OnEveryThread(cpu::Int8PeakOpsAvx2, seconds);
  return 0.0;
}

double MeasurePeakBf16Flops(double seconds) {
  if (!Bf16KernelActive()) return 0.0;
  return OnEveryThread(cpu::Bf16PeakFlopsAvx512, seconds);
}

}  // namespace dsv3
