// cudasim's 16-bit floats: half and bfloat16 conversions with the device's
// rounding (nearest even; NaN to the canonical 0x7fff), in integer arithmetic
// so they are exact and independent of MXCSR.
#include "cudasim.h"

float __half2float(__half h) {
  const uint32_t sign = uint32_t(h.x & 0x8000u) << 16;
  uint32_t exp = (h.x >> 10) & 0x1fu, mant = h.x & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do { mant <<= 1; ++e; } while (!(mant & 0x400u));
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  return cudasim::from_bits<float>(bits);
}

namespace {
// Round the magnitude bits `m` right by `shift` to nearest, ties to even.
uint32_t round_shift(uint64_t m, int shift) {
  if (shift <= 0) return uint32_t(m << -shift);
  if (shift >= 64) return 0;
  const uint64_t q = m >> shift, rem = m & ((uint64_t(1) << shift) - 1), half = uint64_t(1) << (shift - 1);
  return uint32_t(q + (rem > half || (rem == half && (q & 1))));
}
}  // namespace

__half __float2half_rn(float f) {
  const uint32_t u = uint32_t(cudasim::to_bits(f));
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t exp = (u >> 23) & 0xffu, mant = u & 0x7fffffu;
  if (exp == 0xff) return __half{uint16_t(mant ? 0x7fffu : (sign | 0x7c00u))};
  if (exp == 0) return __half{sign};  // f32 subnormals are far below half's range
  const int e = int(exp) - 127;       // value = 1.mant * 2^e
  const uint64_t m = (uint64_t(1) << 23) | mant;
  if (e >= 16) return __half{uint16_t(sign | 0x7c00u)};
  if (e >= -14) {  // normal half: 10 mantissa bits; a carry may round up into the exponent
    const uint32_t r = round_shift(m, 13) + (uint32_t(e + 14) << 10);  // (1.m)(2^10) + (e+14)<<10
    return __half{uint16_t(sign | (r >= 0x7c00u ? 0x7c00u : r))};
  }
  // subnormal half: value / 2^-24 = m * 2^(e - 23 + 24)
  return __half{uint16_t(sign | round_shift(m, -(e + 1)))};
}

float __bfloat162float(__nv_bfloat16 h) { return cudasim::from_bits<float>(uint32_t(h.x) << 16); }

__nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u = uint32_t(cudasim::to_bits(f));
  if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{0x7fffu};
  if (cudasim::settings().ftz && (u & 0x7f800000u) == 0) u &= 0x80000000u;
  return __nv_bfloat16{uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

