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
