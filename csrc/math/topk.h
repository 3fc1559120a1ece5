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

VLMKERN_INLINE uint32_t sortable_score_bits(float s) {
  if (s != s) return 0u;        // NaN ranks last
  if (s == 0.0f) s = 0.0f;      // fold -0.0 into +0.0
  const uint32_t u = float_to_bits(s);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

VLMKERN_INLINE uint64_t topk_key(float score, uint32_t index) {
  return (uint64_t(sortable_score_bits(score)) << 32) | uint64_t(~index);
}

VLMKERN_INLINE uint32_t topk_key_index(uint64_t key) { return ~uint32_t(key & 0xffffffffu); }

}  // namespace vlmkern::math
