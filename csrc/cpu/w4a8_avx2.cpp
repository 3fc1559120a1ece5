// AVX2 pieces of the W4A8 CPU kernel (built with -mavx2 -mfma -mf16c; chosen
// at run time from CPUID). Same structure as the plain C++ path and the
// AVX512-VNNI file: one 32-byte load holds 8 channels x 8 k as nibbles; AND
// and shift give the two 8x4 u8 operands; each row's 4 codes are broadcast
// and VPMADDUBSW + VPMADDWD(ones) form 4-term int32 dot products per channel.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "cpu/w4a8_kernel.h"
#include "math/w4a8.h"

namespace vlmkern::cpu {
namespace {

constexpr int NB = math::kW4A8CpuBlock;
constexpr int kPrefetchBytes = 4096;  // 64 k-octets ahead (measured: 2048-8192 all help; 4096 best)

template <DType dt>
inline __attribute__((always_inline)) __m256 load8(const void* base, int64_t i) {
  if constexpr (dt == DType::kF32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else if constexpr (dt == DType::kBF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    return _mm256_cvtph_ps(h);
  }
}

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

template <DType dt>
void quantize_row_t(const void* x, int64_t K, int64_t G, int8_t* codes, float* scale,
                    int32_t* rowsums) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 fmax = _mm256_set1_ps(3.4028234663852886e38f);
  __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k += 8) {  // K % 8 == 0
    const __m256 v = _mm256_and_ps(load8<dt>(x, k), absmask);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, fmax, _CMP_NLE_UQ));  // > max or NaN
    amax = _mm256_max_ps(amax, v);
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, amax);
  float am = 0.f;
  for (float v : t) am = v > am ? v : am;
  const bool finite = _mm256_movemask_ps(bad) == 0;
  *scale = math::act_scale(am, finite);
  const __m256 inv = _mm256_set1_ps(math::act_inv_scale(am, finite));
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t g = 0; g < K / G; ++g) {
    __m256i sum = _mm256_setzero_si256();
    int64_t k = g * G;
    const int64_t ke = k + G;
    if (!finite) {
      for (; k < ke; ++k) codes[k] = 0;
      rowsums[g] = 0;
      continue;
    }
    for (; k + 32 <= ke; k += 32) {
      __m256i c[4];
      for (int i = 0; i < 4; ++i) {
        // cvtps rounds half to even under the default MXCSR, like rintf
        c[i] = _mm256_cvtps_epi32(_mm256_mul_ps(load8<dt>(x, k + 8 * i), inv));
        c[i] = _mm256_max_epi32(lo, _mm256_min_epi32(hi, c[i]));
        sum = _mm256_add_epi32(sum, c[i]);
      }
      // packs work per 128-bit lane: (c0,c1) -> 16 lanes interleaved by 4s; fix with a permute
      const __m256i w01 = _mm256_packs_epi32(c[0], c[1]), w23 = _mm256_packs_epi32(c[2], c[3]);
      const __m256i b = _mm256_packs_epi16(w01, w23);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + k), _mm256_permutevar8x32_epi32(b, perm));
    }
    for (; k < ke; k += 8) {
      __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(load8<dt>(x, k), inv));
      c = _mm256_max_epi32(lo, _mm256_min_epi32(hi, c));
      sum = _mm256_add_epi32(sum, c);
      alignas(32) int32_t ci[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(ci), c);
      for (int i = 0; i < 8; ++i) codes[k + i] = int8_t(ci[i]);
    }
    rowsums[g] = hsum_epi32(sum);
  }
}

void quantize_row(DType dt, const void* x, int64_t K, int64_t G, int8_t* codes, float* scale,
                  int32_t* rowsums) {
  switch (dt) {
    case DType::kF32: return quantize_row_t<DType::kF32>(x, K, G, codes, scale, rowsums);
    case DType::kBF16: return quantize_row_t<DType::kBF16>(x, K, G, codes, scale, rowsums);
    case DType::kF16: return quantize_row_t<DType::kF16>(x, K, G, codes, scale, rowsums);
  }
}

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// MR rows x 16 channels, one half (8 channels, 32 bytes of each 64-byte
// packed line) at a time so that the live set fits the 16 ymm registers (MR
// int32 accumulators, 4 unpacked weight vectors, broadcasts, constants); with
// both halves in flight GCC spilled accumulators and broadcasts to the stack.
// Per two k-octets and row: four VPMADDUBSW summed in 16 bits (|sum| <=
// 4 * 3810 < 2^15), one VPMADDWD, one add. The fp32 accumulators live in facc
// (touched once per group).
template <int MR>
void block_t(const W4A8GemmArgs& a, int64_t m0, int64_t nb, const float* sw, float* facc) {
  const int64_t K8 = a.K / 8, G8 = a.G / 8, n_groups = a.K / a.G;
  const uint8_t* blk = a.packed + nb * K8 * (NB * 4);
  const __m256i mask = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const int8_t* xr[MR];
  for (int r = 0; r < MR; ++r) xr[r] = a.codes + (m0 + r) * a.ld_codes;
  for (int i = 0; i < MR * NB; ++i) facc[i] = 0.f;
  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t ob = g * G8, oe = (g + 1) * G8;
    for (int h = 0; h < 2; ++h) {
      __m256i acc[MR];
      for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_si256();
      int64_t o = ob;
      for (; o + 2 <= oe; o += 2) {
        const uint8_t* u = blk + o * (NB * 4) + 32 * h;
        if (h == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(u) + kPrefetchBytes, _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(u) + kPrefetchBytes + 64, _MM_HINT_T0);
        }
        const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u));
        const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + NB * 4));
        const __m256i wl0 = _mm256_and_si256(w0, mask);
        const __m256i wh0 = _mm256_and_si256(_mm256_srli_epi16(w0, 4), mask);
        const __m256i wl1 = _mm256_and_si256(w1, mask);
        const __m256i wh1 = _mm256_and_si256(_mm256_srli_epi16(w1, 4), mask);
#pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          const int8_t* xo = xr[r] + o * 8;
          const __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(wl0, bcast4(xo)),
                                              _mm256_maddubs_epi16(wh0, bcast4(xo + 4)));
          const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(wl1, bcast4(xo + 8)),
                                              _mm256_maddubs_epi16(wh1, bcast4(xo + 12)));
          acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
        }
      }
      for (; o < oe; ++o) {  // odd group length (per-channel groups)
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + o * (NB * 4) + 32 * h));
        const __m256i wl = _mm256_and_si256(w, mask);
        const __m256i wh = _mm256_and_si256(_mm256_srli_epi16(w, 4), mask);
        for (int r = 0; r < MR; ++r) {
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(wl, bcast4(xr[r] + o * 8)),
                                             _mm256_maddubs_epi16(wh, bcast4(xr[r] + o * 8 + 4)));
          acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(p, ones));
        }
      }
      const __m256 s = _mm256_loadu_ps(sw + g * NB + 8 * h);
      for (int r = 0; r < MR; ++r) {
        const __m256i corr = _mm256_set1_epi32(math::kW4A8Offset * a.rowsums[(m0 + r) * n_groups + g]);
        float* fr = facc + r * NB + 8 * h;
        _mm256_storeu_ps(fr, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r], corr)), s,
                                             _mm256_loadu_ps(fr)));
      }
    }
  }
}

void block(const W4A8GemmArgs& a, int64_t m0, int mr, int64_t nb, const float* sw, float* facc) {
  switch (mr) {
    case 1: return block_t<1>(a, m0, nb, sw, facc);
    case 2: return block_t<2>(a, m0, nb, sw, facc);
    case 3: return block_t<3>(a, m0, nb, sw, facc);
    default: return block_t<4>(a, m0, nb, sw, facc);
  }
}

const W4A8IsaOps kAvx2Ops = {quantize_row, block};

}  // namespace

void w4a8_quantize_row_avx2(DType dt, const void* x, int64_t K, int64_t G, int8_t* codes,
                            float* scale, int32_t* rowsums) {
  quantize_row(dt, x, K, G, codes, scale, rowsums);
}

const W4A8IsaOps* w4a8_ops_avx2(CpuIsa isa) {
  return static_cast<int>(isa) >= static_cast<int>(CpuIsa::kAvx2) ? &kAvx2Ops : nullptr;
}

}  // namespace vlmkern::cpu
