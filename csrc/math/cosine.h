// Cosine similarity from three fp32 sums, shared by the CPU and CUDA
// frame_similarity kernels (torch-free, host and device).
#pragma once
#include <cmath>

#include "core/host_device.h"

namespace vlmkern::math {

// <x, r> / max(|x| * |r|, eps), from dot = <x, r>, xx = |x|^2, rr = |r|^2.
// The denominator is sqrt(xx * rr) in double: the product cannot overflow, and
// when x == r (so dot == xx == rr bit for bit, the three sums having taken the
// same operands in the same order) the result is exactly 1, so identical
// frames tie exactly on every backend. NaN in, NaN out (the comparison keeps a
// NaN denominator).
VLMKERN_INLINE float cosine_finish(float dot, float xx, float rr, float eps) {
  double den = sqrt(double(xx) * double(rr));
  if (den < double(eps)) den = double(eps);
  return float(double(dot) / den);
}

}  // namespace vlmkern::math
