// dpc_knn on the CPU: raw pointers and sizes only (no torch here).
//
// Per batch item, two phases:
//  1. the Gram matrix G = X X^T [n, n] fp32, the only O(n^2 D) work: the upper
//     block triangle is computed (tiles of kDpcRows rows x kDpcCols columns,
//     the columns packed once per panel) and mirrored. The rows are fp32
//     (16-bit inputs are widened once). Every entry is one FMA chain in
//     math/dpc_knn.h's channel order, so the scalar, AVX2 and AVX-512 tiles
//     give the same G bit for bit.
//  2. O(n^2) row passes over G: each row's k smallest squared distances (their
//     mean orders the densities), each row's distance to its nearest denser
//     point, the scores, the m best (ties toward the lower index), and each
//     point's nearest centre.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/cpu_features.h"

namespace vlmkern::cpu {

// Gram tile: kDpcRows rows x kDpcCols columns of G per micro-kernel call. The
// column panel is packed once: [D][kDpcCols] fp32 in the channel order; unused
// columns are zero. A tile call runs channels
// [c0, c1) of that order (c0 even) and continues the FMA chains held in
// acc[kDpcRows][kDpcCols] (fp32 stores and reloads are exact, so splitting the
// channels into chunks does not change any entry). Rows are given as pointers:
// a tile with fewer rows repeats one, and the caller ignores its entries.
constexpr int64_t kDpcRows = 12;
constexpr int64_t kDpcCols = 32;

// Which Gram tile runs.
enum class DpcGramPath : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
inline DpcGramPath dpc_gram_path(CpuIsa isa) {
  if (isa >= CpuIsa::kAvx512) return DpcGramPath::kAvx512;
  if (isa >= CpuIsa::kAvx2) return DpcGramPath::kAvx2;
  return DpcGramPath::kScalar;
}

void dpc_tile_scalar(const float* const* rows, const float* panel, int64_t c0, int64_t c1,
                     int64_t D, float* acc);
void dpc_tile_avx2(const float* const* rows, const float* panel, int64_t c0, int64_t c1,
                   int64_t D, float* acc);
void dpc_tile_avx512(const float* const* rows, const float* panel, int64_t c0, int64_t c1,
                     int64_t D, float* acc);

// Pack columns [j0, j0 + cols) (rows of x with stride ldx) into a panel.
void dpc_pack_f32(const float* x, int64_t ldx, int64_t j0, int64_t cols, int64_t D, float* panel);

// Row passes (phase 2); every function is exact given G.
struct DpcRowArgs {
  const float* g;     // [n, n]
  const float* diag;  // [n]: G's diagonal (the squared norms), contiguous
  int64_t n, k;
  double inv_d;     // 1 / D
};
// mean[i] = mean of row i's k smallest squared distances (itself included, at
// 0); rowmax[i] = its largest squared distance. Rows [r0, r1).
void dpc_density_rows(const DpcRowArgs& a, int64_t r0, int64_t r1, double* mean, double* rowmax);
// rank[i] = position of point i in the density order (densest first; see
// math::dpc_denser).
void dpc_density_ranks(int64_t n, const double* mean, int64_t* rank);
// delta_sq[i] = squared distance to the nearest denser point, or -1 for the
// densest point. Rows [r0, r1).
void dpc_delta_rows(const DpcRowArgs& a, const int64_t* rank, int64_t r0, int64_t r1,
                    double* delta_sq);
// The m best scores' indices, ascending, into centres[m]; score[n] scratch.
void dpc_select_centres(int64_t n, int64_t m, const double* mean, const double* delta_sq,
                        const double* rowmax, double* score, int64_t* centres);
// assign[i] = position in centres of the centre nearest to i (ties toward the
// lower position; a centre joins itself). Rows [r0, r1).
void dpc_assign_rows(const DpcRowArgs& a, const int64_t* centres, int64_t m, int64_t r0, int64_t r1,
                     int64_t* assign);

// ---- one batch item, end to end ------------------------------------------------------
// par(begin, end, grain, fn) runs fn(b, e) over subranges of [begin, end)
// (at::parallel_for in the op; a plain loop, in any order, in the tests): the
// results do not depend on how the ranges are split or ordered.

using DpcTileFn = void (*)(const float* const*, const float*, int64_t, int64_t, int64_t, float*);
inline DpcTileFn dpc_tile_fn(DpcGramPath path) {
  return path == DpcGramPath::kAvx512 ? &dpc_tile_avx512
         : path == DpcGramPath::kAvx2 ? &dpc_tile_avx2
                                      : &dpc_tile_scalar;
}

// Tiles per Gram task (a task is one row block against one column panel;
// a thread's consecutive tasks share the row block), and the channels per tile
// call: a 16 KiB panel slice and the block's rows' slices stay in L1 (measured
// on the Xeon: chunks of 128 beat 64 and 256).
constexpr int64_t kDpcTilesPerTask = 4;
constexpr int64_t kDpcBlockRows = kDpcRows * kDpcTilesPerTask;
constexpr int64_t kDpcChunk = 128;

// Whether every value of the fp32 rows is finite (a 16-bit inf or NaN stays one).
template <class ParallelFor>
bool dpc_rows_finite(const float* rows, int64_t ld, int64_t n, int64_t D, ParallelFor&& par) {
  std::vector<char> ok(static_cast<size_t>(n), 1);
  par(0, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      float acc = 0.f;  // x * 0 is 0 for finite x and NaN for inf or NaN
      for (int64_t c = 0; c < D; ++c) acc += rows[i * ld + c] * 0.f;
      ok[size_t(i)] = acc == 0.f;
    }
  });
  return std::all_of(ok.begin(), ok.end(), [](char v) { return v != 0; });
}

// Floats of packed panels for n points of D channels.
inline int64_t dpc_packed_floats(int64_t n, int64_t D) {
  return (n + kDpcCols - 1) / kDpcCols * kDpcCols * D;
}

// G = X X^T [n, n] from fp32 rows (stride ld): every panel packed into
// `packed`, then the upper block triangle's tasks, each entry (i, j >= i)
// written as G[i][j] and G[j][i] by its one task (runs along rows of G both ways).
template <class ParallelFor>
void dpc_gram_run(const float* rows, int64_t ld, int64_t n, int64_t D, DpcTileFn tile, int64_t kc,
                  float* packed, float* g, ParallelFor&& par) {
  const int64_t panels = (n + kDpcCols - 1) / kDpcCols, panel_elems = D * kDpcCols;
  par(0, panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      dpc_pack_f32(rows, ld, p * kDpcCols, std::min(kDpcCols, n - p * kDpcCols), D, packed + p * panel_elems);
  });
  std::vector<std::pair<int64_t, int64_t>> tasks;
  for (int64_t rb = 0; rb * kDpcBlockRows < n; ++rb)
    for (int64_t p = 0; p < panels; ++p)
      if (rb * kDpcBlockRows <= std::min(n, (p + 1) * kDpcCols) - 1) tasks.emplace_back(rb, p);
  par(0, int64_t(tasks.size()), 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> acc(static_cast<size_t>(kDpcBlockRows * kDpcCols));
    for (int64_t t = t0; t < t1; ++t) {
      const auto [rb, p] = tasks[size_t(t)];
      const int64_t j0 = p * kDpcCols, cols = std::min(kDpcCols, n - j0);
      const float* panel = packed + p * panel_elems;
      std::fill(acc.begin(), acc.end(), 0.f);
      const float* tile_rows[kDpcTilesPerTask][kDpcRows];
      int64_t tiles = 0;
      for (; tiles < kDpcTilesPerTask; ++tiles) {
        const int64_t i0 = rb * kDpcBlockRows + tiles * kDpcRows;
        if (i0 >= n || i0 > j0 + cols - 1) break;
        for (int64_t r = 0; r < kDpcRows; ++r) tile_rows[tiles][r] = rows + std::min(i0 + r, n - 1) * ld;
      }
      for (int64_t c0 = 0; c0 < D; c0 += kc)
        for (int64_t q = 0; q < tiles; ++q)
          tile(tile_rows[q], panel, c0, std::min(D, c0 + kc), D, acc.data() + q * kDpcRows * kDpcCols);
      const int64_t i0 = rb * kDpcBlockRows, i1 = std::min(n, i0 + tiles * kDpcRows);
      for (int64_t i = i0; i < i1; ++i) {
        const float* a = acc.data() + (i - i0) * kDpcCols;
        for (int64_t c = std::max<int64_t>(0, i - j0); c < cols; ++c) g[i * n + j0 + c] = a[c];
      }
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t j = j0 + c;
        for (int64_t i = i0; i < std::min(i1, j + 1); ++i) g[j * n + i] = acc[size_t((i - i0) * kDpcCols + c)];
      }
    }
  });
}

// The row passes after G (diag, mean, rowmax, delta, score: [n] scratch; rank
// [n]; centres [m] and assign [n] out).
struct DpcRowScratch {
  float* diag;
  double *mean, *rowmax, *delta, *score;
  int64_t* rank;
};
template <class ParallelFor>
void dpc_rows_run(const float* g, int64_t n, int64_t D, int64_t k, int64_t m, const DpcRowScratch& s,
                  int64_t* centres, int64_t* assign, ParallelFor&& par) {
  for (int64_t i = 0; i < n; ++i) s.diag[i] = g[i * n + i];
  const DpcRowArgs ra{g, s.diag, n, k, 1.0 / double(D)};
  const int64_t grain = std::max<int64_t>(1, 65536 / n);
  par(0, n, grain, [&](int64_t r0, int64_t r1) { dpc_density_rows(ra, r0, r1, s.mean, s.rowmax); });
  dpc_density_ranks(n, s.mean, s.rank);
  par(0, n, grain, [&](int64_t r0, int64_t r1) { dpc_delta_rows(ra, s.rank, r0, r1, s.delta); });
  dpc_select_centres(n, m, s.mean, s.delta, s.rowmax, s.score, centres);
  par(0, n, grain, [&](int64_t r0, int64_t r1) { dpc_assign_rows(ra, centres, m, r0, r1, assign); });
}

}  // namespace vlmkern::cpu
