// AVX2 inner loop of the CPU frame_similarity kernel (this file is built with
// -mavx2 -mfma -mf16c and used only after CPUID reported them). Two sets of
// 8-lane accumulators (16 elements per step); a tail of fewer than 16
// elements goes through the scalar loop's arithmetic.
#include <immintrin.h>

#include <cmath>

#include "cpu/frame_similarity_kernel.h"

namespace vlmkern::cpu {
namespace {

inline __m256 load8(DType dt, const void* p) {
  switch (dt) {
    case DType::kBF16:
      return _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))), 16));
    case DType::kF16: return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p)));
    default: return _mm256_loadu_ps(static_cast<const float*>(p));
  }
}

inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

}  // namespace

Dot3 frame_dot3_avx2(DType dt, const void* x, const void* r, int64_t D) {
  const int64_t es = dt == DType::kF32 ? 4 : 2;
  const auto* px = static_cast<const uint8_t*>(x);
  const auto* pr = static_cast<const uint8_t*>(r);
  __m256 d0 = _mm256_setzero_ps(), d1 = d0, x0 = d0, x1 = d0, r0 = d0, r1 = d0;
  int64_t i = 0;
  for (; i + 16 <= D; i += 16) {
    const __m256 a0 = load8(dt, px + i * es), b0 = load8(dt, pr + i * es);
    const __m256 a1 = load8(dt, px + (i + 8) * es), b1 = load8(dt, pr + (i + 8) * es);
    d0 = _mm256_fmadd_ps(a0, b0, d0);
    x0 = _mm256_fmadd_ps(a0, a0, x0);
    r0 = _mm256_fmadd_ps(b0, b0, r0);
    d1 = _mm256_fmadd_ps(a1, b1, d1);
    x1 = _mm256_fmadd_ps(a1, a1, x1);
    r1 = _mm256_fmadd_ps(b1, b1, r1);
  }
  Dot3 s{hsum(_mm256_add_ps(d0, d1)), hsum(_mm256_add_ps(x0, x1)), hsum(_mm256_add_ps(r0, r1))};
  if (i < D) {
    const Dot3 t = frame_dot3_scalar(dt, px + i * es, pr + i * es, D - i);
    s.dot += t.dot, s.xx += t.xx, s.rr += t.rr;
  }
  return s;
}

}  // namespace vlmkern::cpu
