// Scalar bf16 / fp16 <-> fp32 conversions on raw bits (torch-free, host and
// device). Kernels store 16-bit floats as uint16_t.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace vlmkern::math {

VLMKERN_INLINE float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

VLMKERN_INLINE uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

VLMKERN_INLINE float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

// IEEE binary16 -> binary32, exact for every input (normals, subnormals, inf, NaN).
VLMKERN_INLINE float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return bits_to_float(sign);
  // subnormal: value = mant * 2^-24
  float v = float(mant) * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

// Element types the kernels are instantiated for.
struct Bf16 { uint16_t bits; };
struct Fp16 { uint16_t bits; };

VLMKERN_INLINE float to_float(float x) { return x; }
VLMKERN_INLINE float to_float(Bf16 x) { return bf16_to_float(x.bits); }
VLMKERN_INLINE float to_float(Fp16 x) { return fp16_to_float(x.bits); }

}  // namespace vlmkern::math
