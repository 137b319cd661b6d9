// What the CPU we run on can execute, read once with cpuid/xgetbv. Kernels are compiled for
// several instruction sets and chosen from this at run time, never only at compile time:
// a binary built here must still run on a machine without AVX-512 or AMX.
#pragma once

#include <string>

namespace dsv3 {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;  // AVX state enabled by the OS as well
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512_bf16 = false, avx512_vnni = false;
  bool avx512_vbmi = false;  // byte permutes (vpermb, vpermt2b): FP8 decode's conversion (linear_avx512.cc)
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;  // CPU support; use needs RequestAmx()

  // AVX2 + FMA + F16C: the set the linear_avx2.cc kernels are compiled for.
  bool HasAvx2Set() const { return avx2 && fma && f16c; }
  // That set and AVX-512 F/BW/VL/VNNI: linear_q8_avx512.cc (LinearKernel::kAvx512).
  bool HasAvx512VnniSet() const { return HasAvx2Set() && avx512f && avx512bw && avx512vl && avx512_vnni; }
  // That and AVX-512 BF16: linear_bf16_avx512.cc (LinearActivations::kBf16).
  bool HasAvx512Bf16Set() const { return HasAvx512VnniSet() && avx512_bf16; }
  std::string ToString() const;  // e.g. "avx2 fma f16c avx512f ..."
};

const CpuFeatures& GetCpuFeatures();

// Asks Linux for permission to use the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM);
// without it the first tile instruction faults. Returns false where AMX is absent or refused.
bool RequestAmx();

}  // namespace dsv3
