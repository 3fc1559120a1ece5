// Pieces of a split (flash-decoding style) softmax, shared by the CPU and CUDA
// attention_mass kernels.
//
// Scores are kept in base-2 units: s2 = (q . k) * scale * log2(e), so that
// exp(s - m) = exp2(s2 - m2). A partial softmax over a chunk of keys is the pair
// (m, l) = (max s2, sum exp2(s2 - m)); an empty chunk is (-inf, 0).
#pragma once
#include <cmath>

#include "core/host_device.h"

namespace vlmkern::math {

constexpr float kLog2e = 1.4426950408889634f;

// 2^f on f in [-0.5, 0.5] as a degree-7 polynomial (Taylor coefficients of
// e^(f ln 2), highest first; relative error < 1e-8): the vector exp2 of every
// CPU instruction set evaluates it by Horner's rule after rounding x = n + f.
constexpr float kExp2Poly[8] = {1.525273380405984e-05f, 1.5403530393381608e-04f,
                                1.3333558146428443e-03f, 9.618129107628477e-03f,
                                5.550410866482158e-02f,  2.402265069591007e-01f,
                                6.931471805599453e-01f,  1.0f};

// Merge partial (m2, l2) into (m, l).
VLMKERN_INLINE void softmax_merge(float& m, float& l, float m2, float l2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) { m = m2; l = l2; return; }
  const float mn = m > m2 ? m : m2;
  l = l * exp2f(m - mn) + l2 * exp2f(m2 - mn);
  m = mn;
}

// A partial (m, l) whose max is +inf (a +inf score, from Inf in q or k) has no
// finite softmax: exp2(inf - inf) is NaN. Every backend makes its l NaN, so the
// row's coefficient and the batch row's masses are NaN (as in eager attention).
VLMKERN_INLINE void softmax_poison_inf(float m, float& l) {
  if (m == INFINITY) l = NAN;
}

// Number of keys query row i (of Lq rows standing at the last Lq positions of a
// sequence of Lk keys) may attend to under a causal mask: keys [0, limit).
VLMKERN_INLINE long long causal_limit(long long Lk, long long Lq, long long i, bool causal) {
  return causal ? Lk - Lq + i + 1 : Lk;
}

// Weight of a query row in the final average:
//   out[j] = sum_rows coef(row) * exp2(s2[row, j] - m(row)),
//   coef = w_i / (sum_i w_i * Hq * l(row)); a row with no valid key (l = 0)
// or a zero total weight contributes nothing. A row whose scores hold NaN
// (NaN or Inf in q or k) has l = NaN: its coefficient is NaN, so the batch
// row's masses are NaN, as eager attention's probabilities would be.
VLMKERN_INLINE float row_coef(float w_i, float w_sum, float heads, float l) {
  if (l != l) return l;
  return (l > 0.0f && w_sum != 0.0f) ? w_i / (w_sum * heads * l) : 0.0f;
}

}  // namespace vlmkern::math
