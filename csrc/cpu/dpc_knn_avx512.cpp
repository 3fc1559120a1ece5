// AVX-512 Gram tile of the CPU dpc_knn kernel (built with the AVX-512
// F/BW/VL/DQ flags; used only after CPUID reported them). A tile is kDpcRows
// (12) rows x kDpcCols (32) columns: 24 accumulators, two panel vectors and one
// broadcast. Per channel each accumulator takes one FMA in the channel order of
// math/dpc_knn.h, as the scalar tile does.
//
// No VDPBF16PS tile: the same 12 x 32 tile with VDPBF16PS ran 48 GMAC/s on a
// Xeon with AVX512-BF16 (hot L1, one thread) against this fp32 tile's 94, so
// bf16 input is widened to fp32 once and takes this path.
#include <immintrin.h>

#include "cpu/dpc_knn_kernel.h"
#include "math/dpc_knn.h"

namespace vlmkern::cpu {

static_assert(kDpcRows == 12 && kDpcCols == 32, "the AVX-512 tiles are written for 12 x 32");

void dpc_tile_avx512(const float* const* rows, const float* panel, int64_t c0, int64_t c1,
                     int64_t D, float* acc) {
  __m512 lo[kDpcRows], hi[kDpcRows];
  for (int r = 0; r < kDpcRows; ++r) {
    lo[r] = _mm512_loadu_ps(acc + r * kDpcCols);
    hi[r] = _mm512_loadu_ps(acc + r * kDpcCols + 16);
  }
  // Pairs of channels: panel row c holds channel c ^ 1 (see dpc_channel).
  const int64_t pair_end = (D & 1) && c1 == D ? D - 1 : c1;
  int64_t c = c0;
  for (; c < pair_end; c += 2) {
    const float* p = panel + c * kDpcCols;
    const __m512 p0 = _mm512_loadu_ps(p), p1 = _mm512_loadu_ps(p + 16);
#pragma GCC unroll 12
    for (int r = 0; r < kDpcRows; ++r) {
      const __m512 a = _mm512_set1_ps(rows[r][c + 1]);
      lo[r] = _mm512_fmadd_ps(a, p0, lo[r]);
      hi[r] = _mm512_fmadd_ps(a, p1, hi[r]);
    }
    const __m512 q0 = _mm512_loadu_ps(p + kDpcCols), q1 = _mm512_loadu_ps(p + kDpcCols + 16);
#pragma GCC unroll 12
    for (int r = 0; r < kDpcRows; ++r) {
      const __m512 a = _mm512_set1_ps(rows[r][c]);
      lo[r] = _mm512_fmadd_ps(a, q0, lo[r]);
      hi[r] = _mm512_fmadd_ps(a, q1, hi[r]);
    }
  }
  if (c < c1) {  // an odd D's last channel, alone
    const float* p = panel + c * kDpcCols;
    const __m512 p0 = _mm512_loadu_ps(p), p1 = _mm512_loadu_ps(p + 16);
    for (int r = 0; r < kDpcRows; ++r) {
      const __m512 a = _mm512_set1_ps(rows[r][c]);
      lo[r] = _mm512_fmadd_ps(a, p0, lo[r]);
      hi[r] = _mm512_fmadd_ps(a, p1, hi[r]);
    }
  }
  for (int r = 0; r < kDpcRows; ++r) {
    _mm512_storeu_ps(acc + r * kDpcCols, lo[r]);
    _mm512_storeu_ps(acc + r * kDpcCols + 16, hi[r]);
  }
}

}  // namespace vlmkern::cpu
