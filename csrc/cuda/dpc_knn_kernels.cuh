// Device code and launch planning of vlmkern::dpc_knn on CUDA, torch-free
// (compiled by nvcc through csrc/cuda/dpc_knn.cu, and on the CPU by the CUDA
// emulator in tests/cudasim). It mirrors the CPU kernel
// (csrc/cpu/dpc_knn_kernel.h) phase for phase, per batch item:
//  1. the Gram matrix G = X X^T [n, n] fp32: 64 x 64 tiles of the upper block
//     triangle (a 256-thread block, 4 x 4 entries per thread, 16 channels per
//     shared-memory stage), each entry one fmaf chain in math/dpc_knn.h's
//     channel order, so G equals the CPU's bit for bit; each unordered pair is
//     written (both ways) by the one tile that holds it with j >= i;
//  2. row passes, one thread per row, with the CPU's per-row arithmetic:
//     densities (k smallest squared distances), density ranks (a count of the
//     denser points, where the CPU sorts: the same ranks), deltas, scores and
//     the centre ranking (a count of the points ranked before, where the CPU
//     runs nth_element: the same set), the centres in ascending order (one
//     thread walks the flags), and the assignment.
// The row passes are O(n^2) per phase, negligible next to the Gram's O(n^2 D).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cuda/device.cuh"
#include "math/convert.h"
#include "math/dpc_knn.h"

namespace vlmkern::cuda {
namespace {  // one including translation unit per binary (the op's .cu, or the emulator)

constexpr int kDpcTile = 64;     // G tile: kDpcTile x kDpcTile entries per block
constexpr int kDpcStage = 16;    // channels per shared-memory stage
constexpr int kDpcThreads = 256; // 16 x 16 threads, 4 x 4 entries each
constexpr int kDpcRowThreads = 128;

struct DpcKnnArgs {
  DType dtype;
  const void* x;  // [B, n, D], last dim contiguous, device memory
  int64_t B, n, D, sb, sn;  // element strides of batch and point
  int64_t k, m;
  // Scratch, device memory: g [n * n] floats; diag [n] floats; mean, rowmax,
  // delta, score [n] doubles each; rank [n] int64; flag [n] int64.
  float* g;
  float* diag;
  double *mean, *rowmax, *delta, *score;
  int64_t *rank, *flag;
  int64_t* centres;  // [B, m]
  int64_t* assign;   // [B, n]
};

template <typename E>
__global__ void __launch_bounds__(kDpcThreads)
    dpc_gram_kernel(const E* __restrict__ x, int64_t n, int64_t D, int64_t sn, float* __restrict__ g) {
  const int64_t bi = blockIdx.y, bj = blockIdx.x;  // row tile, column tile
  if (bi > bj) return;                              // the lower block triangle mirrors
  __shared__ float sa[kDpcStage][kDpcTile];
  __shared__ float sb[kDpcStage][kDpcTile];
  const int tid = int(threadIdx.x), tx = tid % 16, ty = tid / 16;
  const int64_t i0 = bi * kDpcTile, j0 = bj * kDpcTile;
  float acc[4][4] = {};
  for (int64_t c0 = 0; c0 < D; c0 += kDpcStage) {
    // Stage channels [c0, c0 + 16) of the order: 64 rows x 16 channels per side.
    for (int e = tid; e < kDpcStage * kDpcTile; e += kDpcThreads) {
      const int r = e / kDpcStage, c = e % kDpcStage;
      const int64_t pos = c0 + c;
      float va = 0.f, vb = 0.f;
      if (pos < D) {
        const int64_t ch = math::dpc_channel(pos, D);
        if (i0 + r < n) va = math::to_float(x[(i0 + r) * sn + ch]);
        if (j0 + r < n) vb = math::to_float(x[(j0 + r) * sn + ch]);
      }
      sa[c][r] = va;
      sb[c][r] = vb;
    }
    __syncthreads();
    const int cs = int(D - c0 < kDpcStage ? D - c0 : kDpcStage);
    for (int c = 0; c < cs; ++c) {
      float a[4], b[4];
      for (int q = 0; q < 4; ++q) a[q] = sa[c][ty + 16 * q], b[q] = sb[c][tx + 16 * q];
      for (int p = 0; p < 4; ++p)
        for (int q = 0; q < 4; ++q) acc[p][q] = fmaf(a[p], b[q], acc[p][q]);
    }
    __syncthreads();
  }
  for (int p = 0; p < 4; ++p)
    for (int q = 0; q < 4; ++q) {
      const int64_t i = i0 + ty + 16 * p, j = j0 + tx + 16 * q;
      if (i < n && j < n && j >= i) {
        g[i * n + j] = acc[p][q];
        g[j * n + i] = acc[p][q];
      }
    }
}

__global__ void __launch_bounds__(kDpcRowThreads)
    dpc_density_kernel(const float* __restrict__ g, float* __restrict__ diag, int64_t n, int64_t k,
                       double inv_d, double* __restrict__ mean, double* __restrict__ rowmax) {
  const int64_t i = int64_t(blockIdx.x) * kDpcRowThreads + threadIdx.x;
  if (i >= n) return;
  const float* gi = g + i * n;
  const float gii = gi[i];
  double s[math::kDpcMaxK];
  int64_t len = 0;
  double mx = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double d = math::dpc_sq_dist(gii, g[j * n + j], gi[j], inv_d);
    mx = d > mx ? d : mx;
    if (len < k || d < s[k - 1]) math::dpc_ksmallest_push(s, &len, k, d);
  }
  mean[i] = math::dpc_knn_mean(s, k);
  rowmax[i] = mx;
  diag[i] = gii;
}

__global__ void __launch_bounds__(kDpcRowThreads)
    dpc_rank_kernel(const double* __restrict__ mean, int64_t n, int64_t* __restrict__ rank) {
  const int64_t i = int64_t(blockIdx.x) * kDpcRowThreads + threadIdx.x;
  if (i >= n) return;
  int64_t r = 0;
  for (int64_t j = 0; j < n; ++j) r += math::dpc_denser(mean[j], j, mean[i], i) ? 1 : 0;
  rank[i] = r;
}

__global__ void __launch_bounds__(kDpcRowThreads)
    dpc_delta_kernel(const float* __restrict__ g, const float* __restrict__ diag, int64_t n,
                     double inv_d, const int64_t* __restrict__ rank, double* __restrict__ delta) {
  const int64_t i = int64_t(blockIdx.x) * kDpcRowThreads + threadIdx.x;
  if (i >= n) return;
  const float* gi = g + i * n;
  const float gii = gi[i];
  const int64_t ri = rank[i];
  double best = -1.0;  // none yet (the densest point keeps it)
  for (int64_t j = 0; j < n; ++j) {
    if (rank[j] >= ri) continue;
    const double d = math::dpc_sq_dist(gii, diag[j], gi[j], inv_d);
    if (best < 0.0 || d < best) best = d;
  }
  delta[i] = best;
}

__global__ void __launch_bounds__(kDpcRowThreads)
    dpc_score_kernel(const double* __restrict__ mean, const double* __restrict__ delta,
                     const double* __restrict__ rowmax, int64_t n, double* __restrict__ score) {
  const int64_t i = int64_t(blockIdx.x) * kDpcRowThreads + threadIdx.x;
  if (i >= n) return;
  double dsq = delta[i];
  if (dsq < 0.0) {  // the densest point: the largest distance of all
    dsq = 0.0;
    for (int64_t j = 0; j < n; ++j) dsq = rowmax[j] > dsq ? rowmax[j] : dsq;
  }
  score[i] = math::dpc_score(mean[i], dsq);
}

__global__ void __launch_bounds__(kDpcRowThreads)
    dpc_pick_kernel(const double* __restrict__ score, int64_t n, int64_t m, int64_t* __restrict__ flag) {
  const int64_t i = int64_t(blockIdx.x) * kDpcRowThreads + threadIdx.x;
  if (i >= n) return;
  int64_t before = 0;
  for (int64_t j = 0; j < n; ++j) before += math::dpc_ranks_before(score[j], j, score[i], i) ? 1 : 0;
  flag[i] = before < m ? 1 : 0;
}

__global__ void dpc_compact_kernel(const int64_t* __restrict__ flag, int64_t n, int64_t* __restrict__ centres) {
  if (threadIdx.x != 0) return;
  int64_t q = 0;
  for (int64_t i = 0; i < n; ++i)
    if (flag[i]) centres[q++] = i;
}

__global__ void __launch_bounds__(kDpcRowThreads)
    dpc_assign_kernel(const float* __restrict__ g, const float* __restrict__ diag, int64_t n,
                      double inv_d, const int64_t* __restrict__ centres, int64_t m,
                      int64_t* __restrict__ assign) {
  const int64_t i = int64_t(blockIdx.x) * kDpcRowThreads + threadIdx.x;
  if (i >= n) return;
  const float* gi = g + i * n;
  const float gii = gi[i];
  int64_t best = -1;
  double bd = 0.0;
  for (int64_t q = 0; q < m; ++q) {
    const int64_t c = centres[q];
    if (c == i) {
      best = q;
      break;
    }
    const double d = math::dpc_sq_dist(gii, diag[c], gi[c], inv_d);
    if (best < 0 || d < bd) best = q, bd = d;
  }
  assign[i] = best;
}

// Why this shape cannot be launched, or nullptr.
const char* dpc_knn_plan_error(const DpcKnnArgs& a) {
  const int64_t tiles = (a.n + kDpcTile - 1) / kDpcTile;
  if (tiles > kMaxGridYZ) return "x: at most 65535 * 64 points per batch item on CUDA";
  return nullptr;
}

// Enqueues every phase for every batch item (nothing for B == 0); returns the
// first launch error.
cudaError_t dpc_knn_launch(const DpcKnnArgs& a, cudaStream_t stream) {
  const int64_t n = a.n, tiles = (n + kDpcTile - 1) / kDpcTile;
  const unsigned row_blocks = unsigned((n + kDpcRowThreads - 1) / kDpcRowThreads);
  const double inv_d = 1.0 / double(a.D);
  for (int64_t b = 0; b < a.B; ++b) {
    with_element_type(a.dtype, [&](auto t) {
      using E = decltype(t);
      VLMKERN_LAUNCH(dpc_gram_kernel<E>, dim3(unsigned(tiles), unsigned(tiles)), kDpcThreads, 0,
                     stream)(static_cast<const E*>(a.x) + b * a.sb, n, a.D, a.sn, a.g);
    });
    VLMKERN_LAUNCH(dpc_density_kernel, dim3(row_blocks), kDpcRowThreads, 0, stream)(
        a.g, a.diag, n, a.k, inv_d, a.mean, a.rowmax);
    VLMKERN_LAUNCH(dpc_rank_kernel, dim3(row_blocks), kDpcRowThreads, 0, stream)(a.mean, n, a.rank);
    VLMKERN_LAUNCH(dpc_delta_kernel, dim3(row_blocks), kDpcRowThreads, 0, stream)(
        a.g, a.diag, n, inv_d, a.rank, a.delta);
    VLMKERN_LAUNCH(dpc_score_kernel, dim3(row_blocks), kDpcRowThreads, 0, stream)(
        a.mean, a.delta, a.rowmax, n, a.score);
    VLMKERN_LAUNCH(dpc_pick_kernel, dim3(row_blocks), kDpcRowThreads, 0, stream)(a.score, n, a.m, a.flag);
    VLMKERN_LAUNCH(dpc_compact_kernel, dim3(1), 32, 0, stream)(a.flag, n, a.centres + b * a.m);
    VLMKERN_LAUNCH(dpc_assign_kernel, dim3(row_blocks), kDpcRowThreads, 0, stream)(
        a.g, a.diag, n, inv_d, a.centres + b * a.m, a.m, a.assign + b * n);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace vlmkern::cuda
