// pixel_dedup's decision rule, shared by the CPU and CUDA kernels (torch-free,
// host and device).
#pragma once
#include <cstdint>

#include "core/host_device.h"

namespace vlmkern::math {

// Values per chunk of a slab: the CPU sums each chunk in fp64 and adds the
// chunk sums in order; the CUDA kernel sums in fp64 in another order (the two
// can differ only when the mean lies within fp64 rounding of tol).
constexpr int64_t kPixelDedupChunk = 1 << 16;

// Whether a group whose absolute differences to the anchor sum to `sum` over
// `n` values matches it: mean <= tol (a NaN sum never matches; an empty slab
// always does).
VLMKERN_INLINE bool pixel_dedup_matches(double sum, int64_t n, double tol) {
  if (n == 0) return true;
  return sum / double(n) <= tol;
}

}  // namespace vlmkern::math
