// AVX2 Gram tile of the CPU dpc_knn kernel (built with -mavx2 -mfma; used only
// after CPUID reported them). Sixteen ymm registers hold a 6 x 16 sub-tile (12
// accumulators, two panel vectors, one broadcast); the 12 x 32 tile is four of
// them. Per channel each accumulator takes one FMA in the channel order of
// math/dpc_knn.h, as the scalar tile does.
#include <immintrin.h>

#include "cpu/dpc_knn_kernel.h"

namespace vlmkern::cpu {

static_assert(kDpcRows == 12 && kDpcCols == 32, "the AVX2 tile is written for 12 x 32");

namespace {

void sub_tile(const float* const* rows, const float* panel, int64_t c0, int64_t c1, int64_t D,
              float* acc) {
  __m256 lo[6], hi[6];
  for (int r = 0; r < 6; ++r) {
    lo[r] = _mm256_loadu_ps(acc + r * kDpcCols);
    hi[r] = _mm256_loadu_ps(acc + r * kDpcCols + 8);
  }
  const int64_t pair_end = (D & 1) && c1 == D ? D - 1 : c1;
  int64_t c = c0;
  for (; c < pair_end; ++c) {
    const float* p = panel + c * kDpcCols;
    const __m256 p0 = _mm256_loadu_ps(p), p1 = _mm256_loadu_ps(p + 8);
    const int64_t ch = c ^ 1;
#pragma GCC unroll 6
    for (int r = 0; r < 6; ++r) {
      const __m256 a = _mm256_broadcast_ss(rows[r] + ch);
      lo[r] = _mm256_fmadd_ps(a, p0, lo[r]);
      hi[r] = _mm256_fmadd_ps(a, p1, hi[r]);
    }
  }
  if (c < c1) {  // an odd D's last channel, alone
    const float* p = panel + c * kDpcCols;
    const __m256 p0 = _mm256_loadu_ps(p), p1 = _mm256_loadu_ps(p + 8);
    for (int r = 0; r < 6; ++r) {
      const __m256 a = _mm256_broadcast_ss(rows[r] + c);
      lo[r] = _mm256_fmadd_ps(a, p0, lo[r]);
      hi[r] = _mm256_fmadd_ps(a, p1, hi[r]);
    }
  }
  for (int r = 0; r < 6; ++r) {
    _mm256_storeu_ps(acc + r * kDpcCols, lo[r]);
    _mm256_storeu_ps(acc + r * kDpcCols + 8, hi[r]);
  }
}

}  // namespace

void dpc_tile_avx2(const float* const* rows, const float* panel, int64_t c0, int64_t c1,
                   int64_t D, float* acc) {
  for (int rg = 0; rg < 2; ++rg)
    for (int cg = 0; cg < 2; ++cg)
      sub_tile(rows + rg * 6, panel + cg * 16, c0, c1, D, acc + rg * 6 * kDpcCols + cg * 16);
}

}  // namespace vlmkern::cpu
