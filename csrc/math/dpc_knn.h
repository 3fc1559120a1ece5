// DPC-kNN (density-peak clustering with k-nearest-neighbour density): the
// arithmetic the CPU and CUDA kernels share (torch-free, host and device).
//
// Every step after the Gram matrix G = X X^T is exact given G, so the backends
// agree on the clusters whenever they agree on G, and they agree on G bit for
// bit: each G[i][j] is one fp32 FMA chain over the channels in the canonical
// order below, whatever the tile, ISA or backend.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace vlmkern::math {

// The most neighbours a density may use (a per-row sorted list of this size
// lives in registers / the stack).
constexpr int64_t kDpcMaxK = 64;

// Canonical channel order of every G[i][j] = sum_c x_i[c] * x_j[c]:
// pairs (2p, 2p + 1) in increasing p, and within a pair the odd channel first,
// then the even one (VDPBF16PS's order: a bf16 tile could use it as is; the
// measured one was slower than the fp32 tiles and is not built); an odd D ends
// with channel D - 1 alone. acc = fma(a, b, acc)
// per channel, starting from +0.
// The c-th channel of that order (c in [0, D)).
VLMKERN_INLINE int64_t dpc_channel(int64_t c, int64_t D) {
  if ((D & 1) && c == D - 1) return c;
  return c ^ 1;
}

// Squared distance of rows i and j over the number of channels D (the released
// DPC-kNN codes divide the distance by sqrt(D)), from G's entries, in double:
// (g_ii + g_jj - 2 g_ij) / D, clamped at 0. A row's distance to an identical
// row is exactly 0 (g_ij == g_ii == g_jj bit for bit). Rows whose fp32 squares
// overflow make G's entries inf or NaN (inf - inf): their distances are +inf,
// never a NaN that a clamp would turn into 0.
VLMKERN_INLINE double dpc_sq_dist(float gii, float gjj, float gij, double inv_d) {
  const double d = (double(gii) + double(gjj)) - 2.0 * double(gij);
  if (d != d) return HUGE_VAL;
  return d > 0.0 ? d * inv_d : 0.0;
}

// Point j is denser than point i: a smaller mean squared distance to its k
// nearest neighbours (a larger density exp(-mean)), ties toward the lower index.
VLMKERN_INLINE bool dpc_denser(double mean_j, int64_t j, double mean_i, int64_t i) {
  return mean_j < mean_i || (mean_j == mean_i && j < i);
}

// Insert v into the ascending list s[0, *len) that keeps the k smallest values
// seen (k <= kDpcMaxK). Equal values are interchangeable, so the list (and its
// sum below) does not depend on the order the values arrive in.
VLMKERN_INLINE void dpc_ksmallest_push(double* s, int64_t* len, int64_t k, double v) {
  int64_t n = *len;
  if (n == k) {
    if (!(v < s[k - 1])) return;
    n = k - 1;
  }
  int64_t p = n;
  while (p > 0 && s[p - 1] > v) {
    s[p] = s[p - 1];
    --p;
  }
  s[p] = v;
  *len = n + 1;
}

// Mean of the k smallest squared distances, summed in ascending order.
VLMKERN_INLINE double dpc_knn_mean(const double* s, int64_t k) {
  double t = 0.0;
  for (int64_t q = 0; q < k; ++q) t += s[q];
  return t / double(k);
}

// A point's score: density exp(-mean) times the distance to the nearest denser
// point (for the densest point, the largest distance between any two points).
// A zero density scores 0 even at an infinite distance: finite inputs whose
// fp32 squares overflow make distances (and so means and deltas) inf, and
// 0 * inf would be NaN, which has no place in the centre ranking's total order
// (CUDA would flag more than m centres; std::nth_element's order would break).
VLMKERN_INLINE double dpc_score(double mean, double delta_sq) {
  const double rho = exp(-mean);
  return rho == 0.0 ? 0.0 : rho * sqrt(delta_sq);
}

// Centre ranking: a larger score first, ties toward the lower index.
VLMKERN_INLINE bool dpc_ranks_before(double score_j, int64_t j, double score_i, int64_t i) {
  return score_j > score_i || (score_j == score_i && j < i);
}

}  // namespace vlmkern::math
