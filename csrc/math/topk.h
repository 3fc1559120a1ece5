// Total order used by topk_indices on every backend: larger score first, NaN
// after everything (even -inf), -0.0 == +0.0, ties toward the lower index.
// Each (score, index) maps to a unique 64-bit key whose unsigned order is that
// ranking, so "the k largest keys" is unambiguous and the kept set is the same
// on every backend and thread count.
#pragma once
#include <cstdint>

#include "core/host_device.h"
#include "math/convert.h"

namespace vlmkern::math {

// The ranking computed on the raw float32 bits with integer operations only:
// float compares would fold a subnormal into +0 under flush-to-zero (nvcc
// --use_fast_math, torch.set_flush_denormal), and the backends would disagree.
VLMKERN_INLINE uint32_t sortable_float_bits(uint32_t u) {
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0u;  // NaN ranks last
  if (u == 0x80000000u) u = 0u;                    // fold -0.0 into +0.0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

VLMKERN_INLINE uint64_t topk_key_from_bits(uint32_t score_bits, uint32_t index) {
  return (uint64_t(sortable_float_bits(score_bits)) << 32) | uint64_t(~index);
}

VLMKERN_INLINE uint64_t topk_key(float score, uint32_t index) {
  return topk_key_from_bits(float_to_bits(score), index);
}

}  // namespace vlmkern::math
