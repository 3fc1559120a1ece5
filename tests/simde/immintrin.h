// Test-only stand-in for <immintrin.h>: SIMDe's portable implementations of the
// x86 intrinsics, so the AVX-512 kernels can be run (emulated) on machines
// without AVX-512. Used by tests/test_w4a8_simde.py only; never by the build.
#pragma once
#include <cmath>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

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
