// AVX512-VNNI pieces of the W4A8 CPU kernel. The file is built with the
// baseline AVX-512 flags (F/BW/VL/DQ); the VNNI functions carry their own
// target attribute and are chosen at run time only when CPUID reports
// AVX512-VNNI. Same structure as the AVX2 file: one 64-byte load holds a whole
// block (16 channels x 8 k as nibbles); AND and shift give two 16x4 u8
// operands; VPDPBUSD adds each row's 4-code dot products straight into int32
// (no 16-bit stage), so a k-octet costs 2 VPDPBUSD per row instead of
// 4 VPMADDUBSW + 2 VPMADDWD + adds. Integer sums are exact and the per-group
// float steps are the same FMAs in the same order as the other paths, so the
// result is bit-identical to them.
//
// Not measurable on the development machines (AMD Zen 3, no AVX-512): tested
// in CI only through SIMDe emulation (tests/simde/), see the README.
#include <immintrin.h>

#include <cstdint>

#include "core/cpu_features.h"
#include "cpu/w4a8_kernel.h"
#include "math/w4a8.h"

#ifdef VLMKERN_EMULATED_ISA  // tests/test_w4a8_simde.py: SIMDe code must not get AVX-512 codegen
#define VLMKERN_VNNI
#else
#define VLMKERN_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#endif

namespace vlmkern::cpu {
namespace {

constexpr int NB = math::kW4A8CpuBlock;

VLMKERN_VNNI inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <int MR>
VLMKERN_VNNI void block_t(const W4A8GemmArgs& a, int64_t m0, int64_t nb, const float* sw,
                          float* facc) {
  const int64_t K8 = a.K / 8, G8 = a.G / 8, n_groups = a.K / a.G;
  const uint8_t* blk = a.packed + nb * K8 * (NB * 4);
  const __m512i mask = _mm512_set1_epi8(0x0f);
  const int8_t* xr[MR];
  for (int r = 0; r < MR; ++r) xr[r] = a.codes + (m0 + r) * a.ld_codes;
  __m512 f[MR];
  for (int r = 0; r < MR; ++r) f[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < n_groups; ++g) {
    __m512i acc[MR];
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_si512();
    for (int64_t o = g * G8; o < (g + 1) * G8; ++o) {
      const __m512i w = _mm512_loadu_si512(blk + o * (NB * 4));
      const __m512i wl = _mm512_and_si512(w, mask);
      const __m512i wh = _mm512_and_si512(_mm512_srli_epi16(w, 4), mask);
#pragma GCC unroll 4
      for (int r = 0; r < MR; ++r) {
        acc[r] = _mm512_dpbusd_epi32(acc[r], wl, bcast4(xr[r] + o * 8));
        acc[r] = _mm512_dpbusd_epi32(acc[r], wh, bcast4(xr[r] + o * 8 + 4));
      }
    }
    const __m512 s = _mm512_loadu_ps(sw + g * NB);
    for (int r = 0; r < MR; ++r) {
      const __m512i corr =
          _mm512_set1_epi32(math::kW4A8Offset * a.rowsums[(m0 + r) * n_groups + g]);
      f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r], corr)), s, f[r]);
    }
  }
  for (int r = 0; r < MR; ++r) _mm512_storeu_ps(facc + r * NB, f[r]);
}

VLMKERN_VNNI void block(const W4A8GemmArgs& a, int64_t m0, int mr, int64_t nb, const float* sw,
                        float* facc) {
  switch (mr) {
    case 1: return block_t<1>(a, m0, nb, sw, facc);
    case 2: return block_t<2>(a, m0, nb, sw, facc);
    case 3: return block_t<3>(a, m0, nb, sw, facc);
    default: return block_t<4>(a, m0, nb, sw, facc);
  }
}

}  // namespace

const W4A8IsaOps* w4a8_ops_avx512(CpuIsa isa) {
  // the activation quantizer is memory-bound; the AVX2 one serves here too
  static const W4A8IsaOps ops = {w4a8_quantize_row_avx2, block};
  const bool ok = static_cast<int>(isa) >= static_cast<int>(CpuIsa::kAvx512) &&
                  cpu_features().avx512_vnni;
  return ok ? &ops : nullptr;
}

}  // namespace vlmkern::cpu
