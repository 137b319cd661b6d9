// Linear kernels for AVX2 + FMA + F16C (compiled with those flags for this file only; chosen at
// run time by linear.cc). Weights are converted to float32 in registers next to the
// arithmetic: BF16 by a 16-bit shift, F16 with vcvtph2ps, FP8 e4m3 by re-biasing into F16
// bits. Decode (few tokens) streams each weight once (memory-bound GEMV); prefill converts
// four weight rows at a time into an L1 buffer and meets three tokens at a time with them
// (4x3 tiles of 8-lane accumulators).
//
// No standard-library templates or shared inline functions are used here: an AVX2-encoded
// copy of one could be chosen by the linker for code that runs on CPUs without AVX2.
#include "engine/kernels/cpu/linear_kernels.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <time.h>

#include <cstdint>

namespace dsv3::cpu {

namespace {

// ---- 8 weights -> one float32 vector ---------------------------------------------------------
// Every kernel below computes an output as one 8-lane FMA chain over k (lane j takes k = j mod
// 8, in order), a fixed horizontal sum, and a zero-padded last step for K % 8. GEMV and GEMM
// share that order, so a row's value depends neither on the token count (the MoE feeds each
// expert a different one) nor on how rows are split between threads.

struct Bf16Loader {
  static __m256 Load8(const void* row, int64_t k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  }
  static float Scalar(const void* row, int64_t k) {
    const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(row)[k]) << 16;
    return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(bits))));
  }
};

struct F16Loader {
  static __m256 Load8(const void* row, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static float Scalar(const void* row, int64_t k) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<const uint16_t*>(row)[k])));
  }
};

struct F32Loader {
  static __m256 Load8(const void* row, int64_t k) { return _mm256_loadu_ps(static_cast<const float*>(row) + k); }
  static float Scalar(const void* row, int64_t k) { return static_cast<const float*>(row)[k]; }
};

// e4m3 (bias 7) moved into the F16 layout (bias 15) is the same number times 2^-8, normals
// and subnormals alike, so vcvtph2ps and one multiply by 256·scale give E4M3ToF32(q)·scale
// exactly (256·scale is a power-of-two multiple). 0x7f/0xff (NaN in e4m3) would read as ±480;
// the quantizer saturates at ±448 and never writes them.
inline __m128i E4M3ToF16Bits(__m128i q) {
  const __m128i v = _mm_cvtepu8_epi16(q);
  const __m128i mag = _mm_slli_epi16(_mm_and_si128(v, _mm_set1_epi16(0x7f)), 7);
  const __m128i sign = _mm_slli_epi16(_mm_and_si128(v, _mm_set1_epi16(0x80)), 8);
  return _mm_or_si128(mag, sign);
}

// The scale of the group holding column k, cached: a 64-bit division per eight weights costs
// more than the arithmetic it feeds. k only moves forward within a pass over the row and
// restarts at 0 for the next token, which the range check catches.
struct GroupCache {
  mutable int64_t begin = 0, end = 0;
  mutable __m256 scale;
  template <typename F>
  __m256 Get(int64_t k, int64_t block_in, const F& scale_of_group) const {
    if (k < begin || k >= end) {
      const int64_t g = k / block_in;
      begin = g * block_in;
      end = begin + block_in;
      scale = scale_of_group(g);
    }
    return scale;
  }
};

// FP8 rows need their scale row; this cursor is bound to one weight row.
struct Fp8Row {
  const uint8_t* q;
  const float* scale;  // this row's block-scale row
  int64_t block_in;
  GroupCache cache;
  __m256 Load8(int64_t k) const {
    const __m128i h = E4M3ToF16Bits(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k)));
    const __m256 s = cache.Get(k, block_in, [&](int64_t g) { return _mm256_set1_ps(scale[g] * 256.0f); });
    return _mm256_mul_ps(_mm256_cvtph_ps(h), s);
  }
  float Scalar(int64_t k) const {
    const __m128i h = E4M3ToF16Bits(_mm_cvtsi32_si128(q[k]));
    return _mm_cvtss_f32(_mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps(scale[k / block_in] * 256.0f)));
  }
};

// INT8: float(q) · scale, as DequantizeRows computes it.
struct Int8Row {
  const int8_t* q;
  const float* scale;  // this row's block-scale row
  int64_t block_in;
  GroupCache cache;
  __m256 Load8(int64_t k) const {
    const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k)));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(v),
                         cache.Get(k, block_in, [&](int64_t g) { return _mm256_set1_ps(scale[g]); }));
  }
  float Scalar(int64_t k) const {
    return _mm_cvtss_f32(_mm_mul_ss(_mm_set_ss(static_cast<float>(q[k])), _mm_set_ss(scale[k / block_in])));
  }
};

// INT4, low nibble first: (float(u) - z) · scale, as DequantizeRows computes it. k is even
// whenever Load8 is used (k is a multiple of 8), so a load starts on a byte.
struct Int4Row {
  const uint8_t* q;
  const uint16_t* scale;  // this row's F16 group scales
  const uint8_t* zero;    // this row's zero points, or null (8)
  int64_t block_in;
  GroupCache scale_cache, zero_cache;
  float Scale(int64_t g) const { return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(scale[g]))); }
  float Zero(int64_t g) const { return zero ? static_cast<float>(zero[g]) : 8.0f; }
  __m256 Load8(int64_t k) const {
    int32_t bytes;
    __builtin_memcpy(&bytes, q + k / 2, 4);
    const __m128i v = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(bytes));
    const __m128i lo = _mm_and_si128(v, _mm_set1_epi32(0xf)), hi = _mm_srli_epi32(v, 4);
    const __m256i u = _mm256_set_m128i(_mm_unpackhi_epi32(lo, hi), _mm_unpacklo_epi32(lo, hi));
    const __m256 z = zero_cache.Get(k, block_in, [&](int64_t g) { return _mm256_set1_ps(Zero(g)); });
    const __m256 s = scale_cache.Get(k, block_in, [&](int64_t g) { return _mm256_set1_ps(Scale(g)); });
    return _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(u), z), s);
  }
  float Scalar(int64_t k) const {
    const uint8_t byte = q[k >> 1];
    const int u = (k & 1) ? (byte >> 4) : (byte & 0xf);
    const int64_t g = k / block_in;
    return _mm_cvtss_f32(_mm_mul_ss(_mm_sub_ss(_mm_set_ss(static_cast<float>(u)), _mm_set_ss(Zero(g))),
                                    _mm_set_ss(Scale(g))));
  }
};

template <typename L>
struct PlainRow {
  const void* p;
  __m256 Load8(int64_t k) const { return L::Load8(p, k); }
  float Scalar(int64_t k) const { return L::Scalar(p, k); }
};

// Lanes past K read as zero.
template <typename Row>
__m256 LoadWeightTail(const Row& row, int64_t k, int64_t K) {
  alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = k; i < K; ++i) buf[i - k] = row.Scalar(i);
  return _mm256_load_ps(buf);
}
inline __m256 LoadTail(const float* x, int64_t k, int64_t K) {
  alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = k; i < K; ++i) buf[i - k] = x[i];
  return _mm256_load_ps(buf);
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline void Store(float* y, float v, bool accumulate) { *y = accumulate ? *y + v : v; }

// ---- GEMV: weights converted in registers, each read once per token ----------------------------

template <int R, typename Row>
void DotRows(const Row* rows, const float* x, int64_t K, float* y, bool accumulate) {
  __m256 acc[R];
  for (int i = 0; i < R; ++i) acc[i] = _mm256_setzero_ps();
  const int64_t K8 = K & ~int64_t{7};
  for (int64_t k = 0; k < K8; k += 8) {
    const __m256 xv = _mm256_loadu_ps(x + k);
    for (int i = 0; i < R; ++i) acc[i] = _mm256_fmadd_ps(xv, rows[i].Load8(k), acc[i]);
  }
  if (K8 < K) {
    const __m256 xv = LoadTail(x, K8, K);
    for (int i = 0; i < R; ++i) acc[i] = _mm256_fmadd_ps(xv, LoadWeightTail(rows[i], K8, K), acc[i]);
  }
  for (int i = 0; i < R; ++i) Store(y + i, HorizontalSum(acc[i]), accumulate);
}

template <typename MakeRow>
void GemvRows(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate, const MakeRow& make_row) {
  constexpr int kR = 8;  // eight independent FMA chains cover the FMA latency
  using Row = decltype(make_row(int64_t{0}));
  for (int64_t r = r0; r < r1; r += kR) {
    const int n = static_cast<int>(r1 - r < kR ? r1 - r : kR);
    Row rows[kR];
    for (int i = 0; i < n; ++i) rows[i] = make_row(r + i);
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * ldx;
      float* yt = y + t * ldy + r;
      if (n == kR) {
        DotRows<kR>(rows, xt, w.cols, yt, accumulate);
      } else {
        for (int i = 0; i < n; ++i) DotRows<1>(rows + i, xt, w.cols, yt + i, accumulate);
      }
    }
  }
}

// Calls fn(make_row) with a row factory for w's format.
template <typename Fn>
void WithRowFactory(const RawWeight& w, const Fn& fn) {
  const int64_t K = w.cols;
  switch (w.kind) {
    case WeightKind::kBF16:
      fn([&](int64_t r) { return PlainRow<Bf16Loader>{static_cast<const uint16_t*>(w.data) + r * K}; });
      return;
    case WeightKind::kF16:
      fn([&](int64_t r) { return PlainRow<F16Loader>{static_cast<const uint16_t*>(w.data) + r * K}; });
      return;
    case WeightKind::kF32:
      fn([&](int64_t r) { return PlainRow<F32Loader>{static_cast<const float*>(w.data) + r * K}; });
      return;
    case WeightKind::kF8E4M3:
      fn([&](int64_t r) {
        return Fp8Row{static_cast<const uint8_t*>(w.data) + r * K, w.scale + (r / w.block_out) * w.scale_cols,
                      w.block_in};
      });
      return;
    case WeightKind::kI8:
      fn([&](int64_t r) {
        return Int8Row{static_cast<const int8_t*>(w.data) + r * K, w.scale + (r / w.block_out) * w.scale_cols,
                       w.block_in};
      });
      return;
    case WeightKind::kInt4:
      fn([&](int64_t r) {
        return Int4Row{static_cast<const uint8_t*>(w.data) + r * w.row_bytes, w.scale16 + r * w.scale_cols,
                       w.zero ? w.zero + r * w.scale_cols : nullptr, w.block_in};
      });
      return;
    default:
      return;
  }
}

// ---- GEMM: four weight rows converted once per token block, against three tokens at a time --

// Converts rows [r, r+n) of W into float32 rows of K8 = roundup(K, 8), zero-padded.
template <typename MakeRow>
void ConvertRows(const MakeRow& make_row, int64_t r, int n, int64_t K, float* dst) {
  const int64_t K8 = K & ~int64_t{7}, Kp = (K + 7) & ~int64_t{7};
  for (int i = 0; i < n; ++i) {
    const auto row = make_row(r + i);
    float* d = dst + i * Kp;
    for (int64_t k = 0; k < K8; k += 8) _mm256_storeu_ps(d + k, row.Load8(k));
    if (K8 < K) _mm256_storeu_ps(d + K8, LoadWeightTail(row, K8, K));
  }
}

template <int M, int N>
void MicroKernel(const float* wt, int64_t K, const float* x, int64_t ldx, float* y, int64_t ldy, bool accumulate) {
  const int64_t K8 = K & ~int64_t{7}, Kp = (K + 7) & ~int64_t{7};
  __m256 acc[M][N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 xv[N];
    for (int j = 0; j < N; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx + k);
    for (int i = 0; i < M; ++i) {
      const __m256 wv = _mm256_loadu_ps(wt + i * Kp + k);
      for (int j = 0; j < N; ++j) acc[i][j] = _mm256_fmadd_ps(xv[j], wv, acc[i][j]);
    }
  }
  if (K8 < K) {
    for (int j = 0; j < N; ++j) {
      const __m256 xv = LoadTail(x + j * ldx, K8, K);
      for (int i = 0; i < M; ++i) acc[i][j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(wt + i * Kp + K8), acc[i][j]);
    }
  }
  for (int j = 0; j < N; ++j)
    for (int i = 0; i < M; ++i) Store(y + j * ldy + i, HorizontalSum(acc[i][j]), accumulate);
}

template <int M>
void MicroTokens(const float* wt, int64_t K, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                 bool accumulate) {
  int64_t t = 0;
  for (; t + 3 <= T; t += 3) MicroKernel<M, 3>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
  if (T - t == 2) MicroKernel<M, 2>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
  if (T - t == 1) MicroKernel<M, 1>(wt, K, x + t * ldx, ldx, y + t * ldy, ldy, accumulate);
}

template <typename MakeRow>
void GemmRows(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate, float* wt, const MakeRow& make_row) {
  const int64_t K = w.cols;
  // Token blocks whose activations stay in L2 while four weight rows at a time meet them.
  int64_t block = (256 * 1024) / (K * 4 > 0 ? K * 4 : 1);
  block = block < 3 ? 3 : block;
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t nt = T - t0 < block ? T - t0 : block;
    for (int64_t r = r0; r < r1; r += 4) {
      const int m = static_cast<int>(r1 - r < 4 ? r1 - r : 4);
      ConvertRows(make_row, r, m, K, wt);
      const float* xb = x + t0 * ldx;
      float* yb = y + t0 * ldy + r;
      switch (m) {
        case 4: MicroTokens<4>(wt, K, xb, ldx, nt, yb, ldy, accumulate); break;
        case 3: MicroTokens<3>(wt, K, xb, ldx, nt, yb, ldy, accumulate); break;
        case 2: MicroTokens<2>(wt, K, xb, ldx, nt, yb, ldy, accumulate); break;
        default: MicroTokens<1>(wt, K, xb, ldx, nt, yb, ldy, accumulate); break;
      }
    }
  }
}

double NowSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

bool Avx2Supports(const RawWeight& w) {
  switch (w.kind) {
    case WeightKind::kF32:
    case WeightKind::kBF16:
    case WeightKind::kF16:
      return true;
    case WeightKind::kF8E4M3:
      // An 8-wide load must not straddle two scale blocks.
      return w.scale != nullptr && w.block_in > 0 && w.block_in % 8 == 0 && w.block_out > 0;
    case WeightKind::kI8:
      return w.scale != nullptr && w.block_in > 0 && w.block_in % 8 == 0 && w.block_out > 0;
    case WeightKind::kInt4:
      // Groups of whole 8-column loads; block_out is 1 (one scale row per weight row).
      return w.scale16 != nullptr && w.block_in > 0 && w.block_in % 8 == 0 && w.row_bytes == (w.cols + 1) / 2;
    default:
      return false;
  }
}

void GemvAvx2(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate) {
  WithRowFactory(w, [&](const auto& make_row) { GemvRows(x, T, ldx, w, r0, r1, y, ldy, accumulate, make_row); });
}

void GemmAvx2(const float* x, int64_t T, int64_t ldx, const RawWeight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy, bool accumulate, float* wscratch) {
  WithRowFactory(w, [&](const auto& make_row) {
    GemmRows(x, T, ldx, w, r0, r1, y, ldy, accumulate, wscratch, make_row);
  });
}

double FmaPeakFlopsAvx2(double seconds) {
  // Ten independent FMA chains hide the FMA latency on every AVX2 core we know of.
  __m256 acc[10];
  for (int i = 0; i < 10; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  const double start = NowSeconds();
  double elapsed = 0.0;
  int64_t iterations = 0;
  do {
    for (int rep = 0; rep < 4096; ++rep) {
      for (int i = 0; i < 10; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    }
    iterations += 4096;
    elapsed = NowSeconds() - start;
  } while (elapsed < seconds);
  __m256 sum = acc[0];
  for (int i = 1; i < 10; ++i) sum = _mm256_add_ps(sum, acc[i]);
  volatile float sink = HorizontalSum(sum);
  (void)sink;
  return static_cast<double>(iterations) * 10 * 8 * 2 / elapsed;
}

}  // namespace dsv3::cpu
#else  // built without the flags (not x86-64): the dispatcher never selects these.

namespace dsv3::cpu {
bool Avx2Supports(const RawWeight&) { return false; }
void GemvAvx2(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool) {}
void GemmAvx2(const float*, int64_t, int64_t, const RawWeight&, int64_t, int64_t, float*, int64_t, bool, float*) {}
double FmaPeakFlopsAvx2(double) { return 0.0; }
}  // namespace dsv3::cpu

#endif
