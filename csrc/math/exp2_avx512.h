// Vector exp2 for AVX-512, used by every CPU kernel that needs a softmax.
// Round-to-nearest range reduction (f in [-0.5, 0.5]), degree-7 polynomial of
// 2^f (relative error < 1e-8 before fp32 rounding), scalef for the 2^n part.
// exp2(-inf) is exactly 0 (inputs are clamped to -1000 first, which scalef
// flushes to 0). Include only from translation units built with -mavx512f.
#pragma once
#include <immintrin.h>

#include "math/softmax.h"

namespace vlmkern::math {

static inline __attribute__((always_inline)) __m512 exp2_avx512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-1000.f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(kExp2Poly[0]);
#pragma GCC unroll 8
  for (int i = 1; i < 8; ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Poly[i]));
  return _mm512_scalef_ps(p, n);
}

}  // namespace vlmkern::math
