// Vector exp2 for AVX2+FMA (same range reduction and polynomial as
// exp2_avx512.h). Inputs below -126 give exactly 0 (so exp2(-inf) == 0).
// Include only from translation units built with -mavx2 -mfma.
#pragma once
#include <immintrin.h>

#include "math/softmax.h"

namespace vlmkern::math {

static inline __attribute__((always_inline)) __m256 exp2_avx2(__m256 x) {
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-126.f), _CMP_GE_OQ);
  x = _mm256_max_ps(x, _mm256_set1_ps(-126.f));
  const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(x, n);
  __m256 p = _mm256_set1_ps(kExp2Poly[0]);
#pragma GCC unroll 8
  for (int i = 1; i < 8; ++i) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[i]));
  // 2^n for n in [-126, 0]: build the exponent field directly.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

}  // namespace vlmkern::math
