// Test-only stand-in for <immintrin.h>: SIMDe's portable implementations of the
// x86 intrinsics, so the AVX-512 kernels can be run (emulated) on machines
// without AVX-512. Used by tests/test_w4a8_simde.py,
// tests/test_attention_mass_simde.py and tests/test_frame_similarity.py only;
// never by the build.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>

// SIMDe's portable _mm512_fmadd_ps multiplies and adds with two roundings;
// the hardware instruction rounds once. Emulate it exactly.
static inline simde__m512 vlmkern_emulated_fmadd_ps(simde__m512 a, simde__m512 b, simde__m512 c) {
  float x[16], y[16], z[16];
  simde_mm512_storeu_ps(x, a);
  simde_mm512_storeu_ps(y, b);
  simde_mm512_storeu_ps(z, c);
  for (int i = 0; i < 16; ++i) x[i] = std::fma(x[i], y[i], z[i]);
  return simde_mm512_loadu_ps(x);
}
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps vlmkern_emulated_fmadd_ps
static inline simde__m256 vlmkern_emulated_fmadd256_ps(simde__m256 a, simde__m256 b, simde__m256 c) {
  float x[8], y[8], z[8];
  simde_mm256_storeu_ps(x, a);
  simde_mm256_storeu_ps(y, b);
  simde_mm256_storeu_ps(z, c);
  for (int i = 0; i < 8; ++i) x[i] = std::fma(x[i], y[i], z[i]);
  return simde_mm256_loadu_ps(x);
}
#undef _mm256_fmadd_ps
#define _mm256_fmadd_ps vlmkern_emulated_fmadd256_ps

// Names SIMDe 0.8.2 does not alias. The reduction adds in GCC's order for the
// real intrinsic (256-bit halves, 128-bit halves, then a two-step butterfly).
#ifndef _MM_FROUND_NO_EXC
#define _MM_FROUND_NO_EXC SIMDE_MM_FROUND_NO_EXC
#endif
static inline float vlmkern_emulated_reduce_add_ps(simde__m512 a) {
  float x[16];
  simde_mm512_storeu_ps(x, a);
  float h[8], q[4];
  for (int i = 0; i < 8; ++i) h[i] = x[8 + i] + x[i];
  for (int i = 0; i < 4; ++i) q[i] = h[4 + i] + h[i];
  return (q[0] + q[2]) + (q[1] + q[3]);
}
#define _mm512_reduce_add_ps vlmkern_emulated_reduce_add_ps

// Masked loads and stores touch only the selected elements, as the hardware
// does (it suppresses faults on the others); SIMDe's portable versions read
// or write the whole vector, past the end of a buffer at a tail.
static inline simde__m512 vlmkern_emulated_mask_loadu_ps(simde__m512 src, simde__mmask16 k, const void* p) {
  float x[16];
  simde_mm512_storeu_ps(x, src);
  for (int i = 0; i < 16; ++i)
    if (k >> i & 1) std::memcpy(&x[i], static_cast<const char*>(p) + 4 * i, 4);
  return simde_mm512_loadu_ps(x);
}
static inline simde__m512 vlmkern_emulated_maskz_loadu_ps(simde__mmask16 k, const void* p) {
  return vlmkern_emulated_mask_loadu_ps(simde_mm512_setzero_ps(), k, p);
}
static inline void vlmkern_emulated_mask_storeu_ps(void* p, simde__mmask16 k, simde__m512 a) {
  float x[16];
  simde_mm512_storeu_ps(x, a);
  for (int i = 0; i < 16; ++i)
    if (k >> i & 1) std::memcpy(static_cast<char*>(p) + 4 * i, &x[i], 4);
}
static inline simde__m512i vlmkern_emulated_maskz_loadu_epi16(simde__mmask32 k, const void* p) {
  uint16_t x[32] = {};
  for (int i = 0; i < 32; ++i)
    if (k >> i & 1) std::memcpy(&x[i], static_cast<const char*>(p) + 2 * i, 2);
  return simde_mm512_loadu_si512(x);
}
static inline simde__m256i vlmkern_emulated_maskz_loadu_epi16_256(simde__mmask16 k, const void* p) {
  uint16_t x[16] = {};
  for (int i = 0; i < 16; ++i)
    if (k >> i & 1) std::memcpy(&x[i], static_cast<const char*>(p) + 2 * i, 2);
  return simde_mm256_loadu_si256(x);
}
#undef _mm512_mask_loadu_ps
#undef _mm512_maskz_loadu_ps
#undef _mm512_mask_storeu_ps
#undef _mm512_maskz_loadu_epi16
#undef _mm256_maskz_loadu_epi16
#define _mm512_mask_loadu_ps vlmkern_emulated_mask_loadu_ps
#define _mm512_maskz_loadu_ps vlmkern_emulated_maskz_loadu_ps
#define _mm512_mask_storeu_ps vlmkern_emulated_mask_storeu_ps
#define _mm512_maskz_loadu_epi16 vlmkern_emulated_maskz_loadu_epi16
#define _mm256_maskz_loadu_epi16 vlmkern_emulated_maskz_loadu_epi16_256

// ---- A software model of the AMX tile instructions the W4A8 kernel uses ----------
// (LDTILECFG palette 1, TILELOADD, TILESTORED, TILEZERO, TDPBUSD, TILERELEASE),
// with the hardware's shape rules checked: a misconfigured tile aborts.
#include <cstdint>
#include <cstdlib>
#include <cstring>

struct VlmkernTiles {
  bool configured = false;
  uint8_t rows[8] = {};
  uint16_t colsb[8] = {};
  alignas(64) uint8_t data[8][16][64] = {};
};
static thread_local VlmkernTiles vlmkern_tiles;

static inline void vlmkern_tile_check(bool ok) {
  if (!ok) std::abort();
}
static inline void vlmkern_tile_loadconfig(const void* p) {
  const uint8_t* c = static_cast<const uint8_t*>(p);
  vlmkern_tile_check(c[0] == 1);
  VlmkernTiles& t = vlmkern_tiles;
  for (int i = 0; i < 8; ++i) {
    t.colsb[i] = uint16_t(c[16 + 2 * i] | (c[17 + 2 * i] << 8));
    t.rows[i] = c[48 + i];
    vlmkern_tile_check(t.rows[i] <= 16 && t.colsb[i] <= 64);
  }
  std::memset(t.data, 0, sizeof(t.data));
  t.configured = true;
}
static inline void vlmkern_tile_release() { vlmkern_tiles.configured = false; }
static inline void vlmkern_tile_loadd(int i, const void* base, long stride) {
  VlmkernTiles& t = vlmkern_tiles;
  vlmkern_tile_check(t.configured && t.rows[i] > 0);
  for (int r = 0; r < t.rows[i]; ++r)
    std::memcpy(t.data[i][r], static_cast<const uint8_t*>(base) + r * stride, t.colsb[i]);
}
static inline void vlmkern_tile_stored(int i, void* base, long stride) {
  VlmkernTiles& t = vlmkern_tiles;
  vlmkern_tile_check(t.configured && t.rows[i] > 0);
  for (int r = 0; r < t.rows[i]; ++r)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, t.data[i][r], t.colsb[i]);
}
static inline void vlmkern_tile_zero(int i) {
  vlmkern_tile_check(vlmkern_tiles.configured);
  std::memset(vlmkern_tiles.data[i], 0, sizeof(vlmkern_tiles.data[i]));
}
// C[m][n] += sum_k u8 A[m][k] * s8 B[k/4][4n + k%4], int32 wrap-around
static inline void vlmkern_tile_dpbusd(int c, int a, int b) {
  VlmkernTiles& t = vlmkern_tiles;
  vlmkern_tile_check(t.configured && t.rows[a] == t.rows[c] && t.colsb[a] / 4 == t.rows[b] &&
                     t.colsb[b] == t.colsb[c] && t.colsb[a] % 4 == 0);
  for (int m = 0; m < t.rows[c]; ++m)
    for (int n = 0; n < t.colsb[c] / 4; ++n) {
      int32_t acc;
      std::memcpy(&acc, &t.data[c][m][4 * n], 4);
      for (int kq = 0; kq < t.rows[b]; ++kq)
        for (int i = 0; i < 4; ++i)
          acc += int32_t(t.data[a][m][4 * kq + i]) * int32_t(int8_t(t.data[b][kq][4 * n + i]));
      std::memcpy(&t.data[c][m][4 * n], &acc, 4);
    }
}
#define _tile_loadconfig(p) vlmkern_tile_loadconfig(p)
#define _tile_release() vlmkern_tile_release()
#define _tile_loadd(t, base, stride) vlmkern_tile_loadd(t, base, stride)
#define _tile_stored(t, base, stride) vlmkern_tile_stored(t, base, stride)
#define _tile_zero(t) vlmkern_tile_zero(t)
#define _tile_dpbusd(c, a, b) vlmkern_tile_dpbusd(c, a, b)
