// AVX-512 inner loop of the CPU frame_similarity kernel (built with the
// AVX-512 F/BW/VL/DQ flags; used only after CPUID reported them). Two sets of
// 16-lane accumulators (32 elements per step); the tail of fewer than 32
// elements uses masked loads (masked-off lanes read zeros and add nothing).
#include <immintrin.h>

#include "cpu/frame_similarity_kernel.h"

namespace vlmkern::cpu {
namespace {

inline __m512 load16(DType dt, const void* p, __mmask16 m) {
  switch (dt) {
    case DType::kBF16:
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
    case DType::kF16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    default: return _mm512_maskz_loadu_ps(m, p);
  }
}

}  // namespace

Dot3 frame_dot3_avx512(DType dt, const void* x, const void* r, int64_t D) {
  const int64_t es = dt == DType::kF32 ? 4 : 2;
  const auto* px = static_cast<const uint8_t*>(x);
  const auto* pr = static_cast<const uint8_t*>(r);
  __m512 d0 = _mm512_setzero_ps(), d1 = d0, x0 = d0, x1 = d0, r0 = d0, r1 = d0;
  int64_t i = 0;
  const __mmask16 all = 0xffff;
  for (; i + 32 <= D; i += 32) {
    const __m512 a0 = load16(dt, px + i * es, all), b0 = load16(dt, pr + i * es, all);
    const __m512 a1 = load16(dt, px + (i + 16) * es, all), b1 = load16(dt, pr + (i + 16) * es, all);
    d0 = _mm512_fmadd_ps(a0, b0, d0);
    x0 = _mm512_fmadd_ps(a0, a0, x0);
    r0 = _mm512_fmadd_ps(b0, b0, r0);
    d1 = _mm512_fmadd_ps(a1, b1, d1);
    x1 = _mm512_fmadd_ps(a1, a1, x1);
    r1 = _mm512_fmadd_ps(b1, b1, r1);
  }
  for (; i < D; i += 16) {
    const int64_t left = D - i;
    const __mmask16 m = left >= 16 ? all : __mmask16((1u << left) - 1);
    const __m512 a = load16(dt, px + i * es, m), b = load16(dt, pr + i * es, m);
    d0 = _mm512_fmadd_ps(a, b, d0);
    x0 = _mm512_fmadd_ps(a, a, x0);
    r0 = _mm512_fmadd_ps(b, b, r0);
  }
  return Dot3{_mm512_reduce_add_ps(_mm512_add_ps(d0, d1)), _mm512_reduce_add_ps(_mm512_add_ps(x0, x1)),
              _mm512_reduce_add_ps(_mm512_add_ps(r0, r1))};
}

}  // namespace vlmkern::cpu
