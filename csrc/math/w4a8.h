// W4A8 arithmetic shared by the CPU and CUDA kernels (host and device).
//
// Logical format: weight value q in [-8, 7] stored as the
// nibble q + 8, [N, K/2] uint8, low nibble = even k; per-group fp32 scales
// [N, K/G]. Activations: per-row symmetric int8, scale = absmax / 127.
//   y[m, n] = sx[m] * sum_g sw[n, g] * (sum_{k in g} xq[m,k] * nib[n,k] - 8 * rs[m, g])
// with the inner sums exact in int32 and the outer sum in fp32, group by group
// in ascending g: acc = fma(float(int_g), sw[n, g], acc), then acc * sx[m] + bias[n]
// (a product, then a sum: not fused). Every CPU path follows this order, so
// they agree bit for bit, and so does the CUDA tensor-core kernel; the CUDA
// DP4A kernel splits k over a warp's lanes and reassociates the fp32 sum (see
// csrc/cuda/w4a8_kernels.cuh).
//
// Packed unit (every backend): 4 bytes per output channel n and k-octet o;
// byte j (0..3) holds nib(n, 8o + j) in its low nibble and nib(n, 8o + 4 + j)
// in its high nibble. AND 0x0F0F0F0F gives k 8o..8o+3 as four bytes, shift
// right by 4 and AND gives 8o+4..8o+7: the u8 operand of VPMADDUBSW / VPDPBUSD
// (and a non-negative s8 operand of DP4A / IMMA) against 4 consecutive codes.
//   CPU layout:  [ceil(N/16), K/8, 16 channels x 4 bytes]  (one 64-byte line)
//   CUDA layout: [N, K/8, 4]  (the same bytes as [N, K/2]; 16-byte loads along k)
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace vlmkern::math {

constexpr int kW4A8KStep = 8;    // k per packed unit
constexpr int kW4A8CpuBlock = 16;  // output channels per CPU block
constexpr int kW4A8Offset = 8;   // nibble = q + 8

// Nibble of logical weight byte array row `w` (K/2 bytes) at k.
VLMKERN_INLINE uint32_t logical_nibble(const uint8_t* w, int64_t k) {
  return (w[k >> 1] >> ((k & 1) * 4)) & 0xF;
}

// The packed 4-byte unit of one channel for k-octet starting at k0.
VLMKERN_INLINE uint32_t pack_unit(const uint8_t* w, int64_t k0) {
  uint32_t u = 0;
  for (int j = 0; j < 4; ++j) {
    const uint32_t lo = logical_nibble(w, k0 + j), hi = logical_nibble(w, k0 + 4 + j);
    u |= (lo | (hi << 4)) << (8 * j);
  }
  return u;
}

// IEEE round-to-nearest division on both sides (nvcc's --use_fast_math would
// otherwise make `/` approximate on the device).
VLMKERN_INLINE float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// Per-row activation scale from the row's absmax: absmax / 127, 1 for a zero
// row, NaN for a row holding NaN or +-inf (so the outputs are NaN, as a float
// Linear's would be; codes are then all zero).
VLMKERN_INLINE float act_scale(float absmax, bool finite) {
  if (!finite) return NAN;
  return absmax > 0.f ? div_rn(absmax, 127.f) : 1.f;
}
// 127 / absmax, capped at FLT_MAX (an absmax below 127 / FLT_MAX ~ 3.7e-37
// would give inf, and 0 * inf = NaN codes).
VLMKERN_INLINE float act_inv_scale(float absmax, bool finite) {
  if (!(finite && absmax > 0.f)) return 0.f;
  const float inv = div_rn(127.f, absmax);
  return inv <= 3.4028234663852886e38f ? inv : 3.4028234663852886e38f;
}

// A weight scale the kernels accept: finite and > 0 (a sign belongs in the
// nibbles). Every backend flags a scale that fails this while it reads it.
VLMKERN_INLINE bool w4a8_scale_ok(float s) { return s > 0.f && s <= 3.4028234663852886e38f; }

// round-half-to-even(x * inv) clamped to [-127, 127].
VLMKERN_INLINE int32_t act_code(float x, float inv) {
#if defined(__CUDA_ARCH__)
  float r = rintf(__fmul_rn(x, inv));
#else
  float r = rintf(x * inv);
#endif
  r = r > 127.f ? 127.f : (r < -127.f ? -127.f : r);
  return int32_t(r);
}

}  // namespace vlmkern::math
