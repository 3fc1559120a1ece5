// dpc_knn on the CPU: panel packing, the scalar Gram tile and the row passes
// (see dpc_knn_kernel.h). The AVX2 / AVX-512 tiles are in dpc_knn_avx2.cpp /
// dpc_knn_avx512.cpp.
#include "cpu/dpc_knn_kernel.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "math/dpc_knn.h"

namespace vlmkern::cpu {

void dpc_pack_f32(const float* x, int64_t ldx, int64_t j0, int64_t cols, int64_t D, float* panel) {
  for (int64_t c = 0; c < D; ++c) {
    const int64_t ch = math::dpc_channel(c, D);
    float* row = panel + c * kDpcCols;
    for (int64_t j = 0; j < kDpcCols; ++j) row[j] = j < cols ? x[(j0 + j) * ldx + ch] : 0.f;
  }
}

void dpc_tile_scalar(const float* const* rows, const float* panel, int64_t c0, int64_t c1,
                     int64_t D, float* acc) {
  for (int64_t r = 0; r < kDpcRows; ++r) {
    float* out = acc + r * kDpcCols;
    for (int64_t c = c0; c < c1; ++c) {
      const float a = rows[r][math::dpc_channel(c, D)];
      const float* p = panel + c * kDpcCols;
      for (int64_t j = 0; j < kDpcCols; ++j) out[j] = std::fma(a, p[j], out[j]);
    }
  }
}

void dpc_density_rows(const DpcRowArgs& a, int64_t r0, int64_t r1, double* mean, double* rowmax) {
  double s[math::kDpcMaxK];
  std::vector<double> d(static_cast<size_t>(a.n));
  for (int64_t i = r0; i < r1; ++i) {
    const float* gi = a.g + i * a.n;
    const float gii = gi[i];
    double mx = 0.0;
    for (int64_t j = 0; j < a.n; ++j) {  // vectorizes: no branches
      d[size_t(j)] = math::dpc_sq_dist(gii, a.diag[j], gi[j], a.inv_d);
      mx = d[size_t(j)] > mx ? d[size_t(j)] : mx;
    }
    int64_t len = 0;
    for (int64_t j = 0; j < a.n; ++j)
      if (len < a.k || d[size_t(j)] < s[a.k - 1]) math::dpc_ksmallest_push(s, &len, a.k, d[size_t(j)]);
    mean[i] = math::dpc_knn_mean(s, a.k);
    rowmax[i] = mx;
  }
}

void dpc_density_ranks(int64_t n, const double* mean, int64_t* rank) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::sort(order.begin(), order.end(),
            [&](int64_t x, int64_t y) { return math::dpc_denser(mean[x], x, mean[y], y); });
  for (int64_t r = 0; r < n; ++r) rank[order[size_t(r)]] = r;
}

void dpc_delta_rows(const DpcRowArgs& a, const int64_t* rank, int64_t r0, int64_t r1,
                    double* delta_sq) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (int64_t i = r0; i < r1; ++i) {
    const float* gi = a.g + i * a.n;
    const float gii = gi[i];
    const int64_t ri = rank[i];
    double best = kInf;
    for (int64_t j = 0; j < a.n; ++j) {  // a min over the denser points (rank below i's)
      const double d = math::dpc_sq_dist(gii, a.diag[j], gi[j], a.inv_d);
      const double v = rank[j] < ri ? d : kInf;
      best = v < best ? v : best;
    }
    delta_sq[i] = ri == 0 ? -1.0 : best;
  }
}

void dpc_select_centres(int64_t n, int64_t m, const double* mean, const double* delta_sq,
                        const double* rowmax, double* score, int64_t* centres) {
  const double far = *std::max_element(rowmax, rowmax + n);
  for (int64_t i = 0; i < n; ++i) score[i] = math::dpc_score(mean[i], delta_sq[i] < 0.0 ? far : delta_sq[i]);
  std::vector<int64_t> order(static_cast<size_t>(n), 0);
  std::iota(order.begin(), order.end(), int64_t(0));
  std::nth_element(order.begin(), order.begin() + (m - 1), order.end(), [&](int64_t x, int64_t y) {
    return math::dpc_ranks_before(score[x], x, score[y], y);
  });
  std::copy(order.begin(), order.begin() + m, centres);
  std::sort(centres, centres + m);
}

void dpc_assign_rows(const DpcRowArgs& a, const int64_t* centres, int64_t m, int64_t r0, int64_t r1,
                     int64_t* assign) {
  for (int64_t i = r0; i < r1; ++i) {
    const float* gi = a.g + i * a.n;
    const float gii = gi[i];
    int64_t best = -1;
    double bd = 0.0;
    for (int64_t q = 0; q < m; ++q) {
      const int64_t c = centres[q];
      if (c == i) {
        best = q;
        break;
      }
      const double d = math::dpc_sq_dist(gii, a.diag[c], gi[c], a.inv_d);
      if (best < 0 || d < bd) best = q, bd = d;
    }
    assign[i] = best;
  }
}

}  // namespace vlmkern::cpu
