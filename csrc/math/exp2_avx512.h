// Vector exp2 for AVX-512, used by every CPU kernel that needs a softmax.
// Round-to-nearest range reduction (f in [-0.5, 0.5]), degree-7 polynomial of
// 2^f (relative error < 1e-8 before fp32 rounding), scalef for the 2^n part.
// exp2(-inf) is exactly 0 (inputs are clamped to -1000 first, which scalef
// flushes to 0). Include only from translation units built with -mavx512f.
#pragma once
#include <immintrin.h>

namespace vlmkern::math {

static inline __attribute__((always_inline)) __m512 exp2_avx512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-1000.f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.525273380405984e-05f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.5403530393381608e-04f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-03f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550410866482158e-02f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402265069591007e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471805599453e-01f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace vlmkern::math
