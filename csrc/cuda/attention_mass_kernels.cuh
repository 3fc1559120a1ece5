// Device code and launch planning of vlmkern::attention_mass on CUDA, torch-free
// (compiled by nvcc through csrc/cuda/attention_mass.cu, and on the CPU by the
// CUDA emulator in tests/cudasim). It mirrors the CPU kernel
// (csrc/cpu/attention_mass_kernel.{h,cpp}): the same split softmax in base-2
// units (math/softmax.h), two passes over K, no score matrix kept.
//
//   kernel 1 (stats)  block = (b, chunk of keys, KV group g, tile of 32 query
//                     rows of the group). Scores the rows against the chunk in
//                     32 x 64 tiles and writes the partial (m, l) of each row,
//                     [B, n_chunks, Hq*Lq], like the CPU's part_m / part_l.
//   kernel 2 (combine) thread = (b, row): merges the chunks with softmax_merge
//                     into row_m, and folds head mean, query weight and 1/L
//                     into row_coef (math::row_coef).
//   kernel 3 (accumulate) block = (b, 64 keys of [key_start, key_end)): the
//                     block owns that output slice (no atomics, deterministic).
//                     It walks every KV group and row tile, recomputes the
//                     scores and sums coef * exp2(s - M) per key; the 8 warps'
//                     sums are added in a fixed order and stored once.
// Score tile (both passes, same code, so pass 2 reproduces pass 1's scores bit
// for bit and s <= M holds exactly): 256 threads; warp w owns 4 query rows,
// lane l owns keys l and l+32. Head dim is walked in slices of 64: the slice of
// the 32 q rows and of the 64 keys is converted to fp32 into shared memory
// (keys padded to 65 floats: conflict-free column reads), then each thread does
// 8 fp32 FMAs per 6 shared loads. Global loads are row-contiguous (coalesced).
// Traffic: pass 1 reads K once per 32-row tile of a group (B*Lk*D*Hq*Lq/32
// elements in total, mostly from L2: a 64-key x D tile is reused by 32 rows),
// pass 2 reads Q once per 64-key output tile. Extra memory: 2 floats per
// (b, chunk, row) plus 2 per (b, row); chunks hold >= 256 keys and there are
// at most ~65 of them.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/dtype.h"
#include "cuda/device.cuh"
#include "math/convert.h"
#include "math/softmax.h"

namespace vlmkern::cuda {
namespace {  // one including translation unit per binary (the op's .cu, or the emulator)

constexpr int kThreads = 256;  // every attention_mass kernel
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = 4;
constexpr int kRowTile = kWarps * kRowsPerWarp;  // 32 query rows per tile
constexpr int kKeyTile = 64;                      // 2 keys per lane
constexpr int kDSlice = 64;                       // head-dim slice staged in smem

struct Params {
  const void* q;  // [B, Hq, Lq, D], last dim contiguous
  const void* k;  // [B, Hkv, Lk, D], last dim contiguous
  int64_t Hq, Hkv, Lq, Lk, D;
  int64_t q_sb, q_sh, q_sl, k_sb, k_sh, k_sl;  // element strides
  const bool* key_valid;       // [B, Lk] contiguous, or nullptr
  const float* query_weights;  // [B, Lq] contiguous, or nullptr
  int64_t key_start, key_end;
  bool causal;
  float scale2;  // softmax scale * log2(e)
  int64_t chunk, n_chunks;
  int64_t n_rep, Rg, R, n_rt;  // Hq/Hkv, rows per group, Hq*Lq, row tiles per group
  float* part_m;    // [B, n_chunks, R]
  float* part_l;    // [B, n_chunks, R]
  float* row_m;     // [B, R]
  float* row_coef;  // [B, R]
  float* out;       // [B, key_end - key_start]
};

struct TileSmem {
  float q[kRowTile][kDSlice];
  float k[kKeyTile][kDSlice + 1];
  int64_t q_off[kRowTile];  // element offset of each tile row, -1 past the group
};

__device__ __forceinline__ float load_f(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f(const math::Bf16* p, int64_t i) {
  return math::to_float(p[i]);
}
__device__ __forceinline__ float load_f(const math::Fp16* p, int64_t i) {
  return __half2float(__ushort_as_half(p[i].bits));  // exact
}

// Largest causal limit over the rows of tile rr0 (block-uniform): keys at or
// past it are masked for every row of the tile.
__device__ __forceinline__ int64_t tile_key_limit(const Params& p, int64_t rr0) {
  if (!p.causal) return p.Lk;
  const int64_t last = min(rr0 + kRowTile, p.Rg) - 1;
  const int64_t max_i = (last / p.Lq != rr0 / p.Lq) ? p.Lq - 1 : last % p.Lq;
  return math::causal_limit(p.Lk, p.Lq, max_i, true);
}

// acc[r][c] = q_row . k_key (unscaled, fp32) for this thread's rows
// rr0 + 4*warp + r of group g and keys kbase + lane + 32*c; keys >= kend and
// rows past the group read zeros. Must be called by the whole block. `compute`
// (warp-uniform) lets idle warps skip the FMAs.
template <typename T>
__device__ void score_tile(const Params& p, TileSmem& sm, int64_t b, int64_t g, int64_t rr0,
                           int64_t kbase, int64_t kend, bool compute,
                           float (&acc)[kRowsPerWarp][2]) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + g * p.k_sh + kbase * p.k_sl;
  if (tid < kRowTile) {
    const int64_t rr = rr0 + tid;
    int64_t off = -1;
    if (rr < p.Rg) {
      const int64_t h = g * p.n_rep + rr / p.Lq, i = rr % p.Lq;
      off = b * p.q_sb + h * p.q_sh + i * p.q_sl;
    }
    sm.q_off[tid] = off;
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) acc[r][0] = acc[r][1] = 0.f;
  __syncthreads();
  const int nk = int(min(int64_t(kKeyTile), kend - kbase));
  for (int64_t d0 = 0; d0 < p.D; d0 += kDSlice) {
    const int dn = int(min(int64_t(kDSlice), p.D - d0));
    for (int e = tid; e < kRowTile * kDSlice; e += kThreads) {
      const int r = e / kDSlice, d = e % kDSlice;
      const int64_t off = sm.q_off[r];
      sm.q[r][d] = (off >= 0 && d < dn) ? load_f(q, off + d0 + d) : 0.f;
    }
    for (int e = tid; e < kKeyTile * kDSlice; e += kThreads) {
      const int c = e / kDSlice, d = e % kDSlice;
      sm.k[c][d] = (c < nk && d < dn) ? load_f(k, c * p.k_sl + d0 + d) : 0.f;
    }
    __syncthreads();
    if (compute) {
      // Zero padding makes the full 64-step loop exact for every D.
#pragma unroll 16
      for (int d = 0; d < kDSlice; ++d) {
        const float k0 = sm.k[lane][d], k1 = sm.k[lane + 32][d];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const float qv = sm.q[warp * kRowsPerWarp + r][d];
          acc[r][0] = fmaf(qv, k0, acc[r][0]);
          acc[r][1] = fmaf(qv, k1, acc[r][1]);
        }
      }
    }
    __syncthreads();  // the next slice (or call) overwrites the tiles
  }
}

__device__ __forceinline__ bool key_ok(const Params& p, int64_t b, int64_t j, int64_t kend) {
  return j < kend && (p.key_valid == nullptr || p.key_valid[b * p.Lk + j]);
}

// Online (m, l) update with one score; s = -inf (exp2 = 0) adds nothing; a
// NaN score makes (m, l) NaN for good (merging skips a part whose max is -inf,
// so a NaN left only in l would be lost, as the CPU keeps it in m too).
__device__ __forceinline__ void online_add(float& m, float& l, float s) {
  if (s == -INFINITY) return;
  if (s != s) {
    m = l = NAN;
    return;
  }
  if (s > m) {
    l = l * exp2f(m - s) + 1.f;  // m = -inf: 0 * 0 + 1
    m = s;
  } else {
    l += exp2f(s - m);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) attention_mass_stats_kernel(Params p) {
  __shared__ TileSmem sm;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t blk = blockIdx.x;
  const int64_t rt = blk % p.n_rt;
  blk /= p.n_rt;
  const int64_t g = blk % p.Hkv;
  blk /= p.Hkv;
  const int64_t c = blk % p.n_chunks, b = blk / p.n_chunks;
  const int64_t c0 = c * p.chunk, c1 = min(c0 + p.chunk, p.Lk);
  const int64_t rr0 = rt * kRowTile, wr0 = rr0 + warp * kRowsPerWarp;
  const bool active = wr0 < p.Rg;

  float m[kRowsPerWarp], l[kRowsPerWarp];
  int64_t lim[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
    lim[r] = math::causal_limit(p.Lk, p.Lq, (wr0 + r) % p.Lq, p.causal);
  }
  const int64_t kend = min(c1, tile_key_limit(p, rr0));
  for (int64_t kb = c0; kb < kend; kb += kKeyTile) {
    float acc[kRowsPerWarp][2];
    score_tile<T>(p, sm, b, g, rr0, kb, kend, active, acc);
    if (!active) continue;
#pragma unroll
    for (int cc = 0; cc < 2; ++cc) {
      const int64_t j = kb + lane + 32 * cc;
      if (!key_ok(p, b, j, kend)) continue;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        if (j < lim[r]) online_add(m[r], l[r], acc[r][cc] * p.scale2);
    }
  }
  if (!active) return;
  // Merge the 32 lanes' partial stats of each row (butterfly).
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m[r], off);
      const float l2 = __shfl_xor_sync(0xffffffffu, l[r], off);
      math::softmax_merge(m[r], l[r], m2, l2);
    }
  }
  if (lane < kRowsPerWarp) {
    // Lane r stores row r (register arrays indexed by constants only).
    float mv = m[0], lv = l[0];
#pragma unroll
    for (int r = 1; r < kRowsPerWarp; ++r)
      if (lane == r) mv = m[r], lv = l[r];
    const int64_t rr = wr0 + lane;
    math::softmax_poison_inf(mv, lv);
    if (rr < p.Rg) {
      const int64_t idx = (b * p.n_chunks + c) * p.R + g * p.Rg + rr;
      p.part_m[idx] = mv;
      p.part_l[idx] = lv;
    }
  }
}

__global__ void __launch_bounds__(kThreads) attention_mass_combine_kernel(Params p) {
  __shared__ float warp_sum[kWarps];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.y;
  float wsum = float(p.Lq);
  if (p.query_weights) {
    // Deterministic block sum of the batch row's query weights.
    const float* qw = p.query_weights + b * p.Lq;
    float s = 0.f;
    for (int64_t i = tid; i < p.Lq; i += kThreads) s += qw[i];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) warp_sum[warp] = s;
    __syncthreads();
    wsum = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) wsum += warp_sum[w];
  }
  const int64_t row = int64_t(blockIdx.x) * kThreads + tid;
  if (row >= p.R) return;
  float m = -INFINITY, l = 0.f;
  for (int64_t c = 0; c < p.n_chunks; ++c) {
    const int64_t idx = (b * p.n_chunks + c) * p.R + row;
    math::softmax_merge(m, l, p.part_m[idx], p.part_l[idx]);
  }
  const float w = p.query_weights ? p.query_weights[b * p.Lq + row % p.Lq] : 1.f;
  p.row_m[b * p.R + row] = m;
  p.row_coef[b * p.R + row] = math::row_coef(w, wsum, float(p.Hq), l);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) attention_mass_accumulate_kernel(Params p,
                                                                            int64_t n_tiles) {
  __shared__ TileSmem sm;
  __shared__ float part[kWarps][kKeyTile];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t tile = blockIdx.x % n_tiles, b = blockIdx.x / n_tiles;
  const int64_t lo = p.key_start + tile * kKeyTile, hi = min(lo + kKeyTile, p.key_end);
  // A NaN coefficient (NaN or Inf in q or k) makes every key of the batch row
  // NaN, masked ones included, as on the CPU (NaN x 0) and in eager attention.
  int nan_row = 0;
  for (int64_t r = tid; r < p.R; r += kThreads) {
    const float c = p.row_coef[b * p.R + r];
    nan_row |= c != c;
  }
  if (__syncthreads_or(nan_row)) {  // block-uniform
    if (tid < kKeyTile && lo + tid < hi) p.out[b * (p.key_end - p.key_start) + (lo - p.key_start) + tid] = NAN;
    return;
  }
  bool ok[2];
#pragma unroll
  for (int cc = 0; cc < 2; ++cc) ok[cc] = key_ok(p, b, lo + lane + 32 * cc, hi);
  float sum[2] = {0.f, 0.f};

  for (int64_t g = 0; g < p.Hkv; ++g) {
    for (int64_t rt = 0; rt < p.n_rt; ++rt) {
      const int64_t rr0 = rt * kRowTile, wr0 = rr0 + warp * kRowsPerWarp;
      if (tile_key_limit(p, rr0) <= lo) continue;  // causally hidden from every row
      float coef[kRowsPerWarp], M[kRowsPerWarp];
      int64_t lim[kRowsPerWarp];
      bool any = false;
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int64_t rr = wr0 + r;
        coef[r] = 0.f;
        M[r] = 0.f;
        lim[r] = math::causal_limit(p.Lk, p.Lq, rr % p.Lq, p.causal);
        if (rr < p.Rg) {
          const int64_t br = b * p.R + g * p.Rg + rr;
          coef[r] = p.row_coef[br];
          M[r] = p.row_m[br];
        }
        // Rows whose coefficient is 0 (no valid key, zero weight) add nothing.
        any |= coef[r] != 0.f && lim[r] > lo;
      }
      // Warp-uniform `any`; skip the tile when no warp has work.
      if (!__syncthreads_or(any)) continue;
      float acc[kRowsPerWarp][2];
      score_tile<T>(p, sm, b, g, rr0, lo, hi, any, acc);
      if (!any) continue;
#pragma unroll
      for (int cc = 0; cc < 2; ++cc) {
        const int64_t j = lo + lane + 32 * cc;
        if (!ok[cc]) continue;
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
          if (coef[r] != 0.f && j < lim[r]) sum[cc] += coef[r] * exp2f(acc[r][cc] * p.scale2 - M[r]);
      }
    }
  }
  part[warp][lane] = sum[0];
  part[warp][lane + 32] = sum[1];
  __syncthreads();
  if (tid < kKeyTile && lo + tid < hi) {
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += part[w][tid];
    p.out[b * (p.key_end - p.key_start) + (lo - p.key_start) + tid] = s;
  }
}

// ---- launch planning ------------------------------------------------------------

struct AttentionMassProblem {
  DType dtype;
  const void* q;  // [B, Hq, Lq, D], last dim contiguous
  const void* k;  // [B, Hkv, Lk, D], last dim contiguous
  int64_t B, Hq, Hkv, Lq, Lk, D;
  int64_t q_sb, q_sh, q_sl, k_sb, k_sh, k_sl;  // element strides
  const bool* key_valid;       // [B, Lk] contiguous, or nullptr
  const float* query_weights;  // [B, Lq] contiguous, or nullptr
  int64_t key_start, key_end;
  bool causal;
  float scale;  // softmax scale
  float* out;   // [B, key_end - key_start] contiguous; every element is written
};

// Keys per chunk: at least 256 (four score tiles), and at most ~64 chunks so
// the partial stats stay small for long sequences.
int64_t attention_mass_chunk(int64_t Lk) {
  const int64_t c = (Lk + 63) / 64;
  return std::max<int64_t>(256, (c + kKeyTile - 1) / kKeyTile * kKeyTile);
}

// The kernel parameters of a problem, with workspace pointers left null.
Params attention_mass_params(const AttentionMassProblem& s) {
  Params p{};
  p.q = s.q;
  p.k = s.k;
  p.Hq = s.Hq; p.Hkv = s.Hkv; p.Lq = s.Lq; p.Lk = s.Lk; p.D = s.D;
  p.q_sb = s.q_sb; p.q_sh = s.q_sh; p.q_sl = s.q_sl;
  p.k_sb = s.k_sb; p.k_sh = s.k_sh; p.k_sl = s.k_sl;
  p.key_valid = s.key_valid;
  p.query_weights = s.query_weights;
  p.key_start = s.key_start;
  p.key_end = s.key_end;
  p.causal = s.causal;
  p.scale2 = s.scale * math::kLog2e;
  p.chunk = attention_mass_chunk(s.Lk);
  p.n_chunks = (s.Lk + p.chunk - 1) / p.chunk;
  p.n_rep = s.Hq / s.Hkv;
  p.R = s.Hq * s.Lq;
  p.Rg = p.R / s.Hkv;
  p.n_rt = (p.Rg + kRowTile - 1) / kRowTile;
  p.out = s.out;
  return p;
}

// fp32 workspace the launch needs: partial (m, l) per (b, chunk, row), then
// (M, coef) per (b, row).
int64_t attention_mass_workspace_floats(const AttentionMassProblem& s) {
  const Params p = attention_mass_params(s);
  return 2 * s.B * p.n_chunks * p.R + 2 * s.B * p.R;
}

// Why this problem cannot be launched, or nullptr.
const char* attention_mass_plan_error(const AttentionMassProblem& s) {
  if (s.B > kMaxGridYZ) return "the CUDA kernel takes at most 65535 batch rows";
  const Params p = attention_mass_params(s);
  const int64_t n_tiles = (s.key_end - s.key_start + kKeyTile - 1) / kKeyTile;
  const int64_t limit = int64_t(1) << 31;
  if (s.B * p.n_chunks * p.Hkv * p.n_rt >= limit || s.B * n_tiles >= limit ||
      (p.R + kThreads - 1) / kThreads >= limit)
    return "problem too large for one launch";
  return nullptr;
}

template <typename T>
cudaError_t attention_mass_launch_t(const Params& p, int64_t B, cudaStream_t stream) {
  const int64_t stats_blocks = B * p.n_chunks * p.Hkv * p.n_rt;
  VLMKERN_LAUNCH(attention_mass_stats_kernel<T>, dim3(unsigned(stats_blocks)), kThreads, 0,
                 stream)(p);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  const dim3 cgrid(unsigned((p.R + kThreads - 1) / kThreads), unsigned(B));
  VLMKERN_LAUNCH(attention_mass_combine_kernel, cgrid, kThreads, 0, stream)(p);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  const int64_t n_tiles = (p.key_end - p.key_start + kKeyTile - 1) / kKeyTile;
  VLMKERN_LAUNCH(attention_mass_accumulate_kernel<T>, dim3(unsigned(B * n_tiles)), kThreads, 0,
                 stream)(p, n_tiles);
  return cudaGetLastError();
}

// Enqueues the three kernels (nothing for an empty output). `workspace` holds
// attention_mass_workspace_floats(s) floats. Returns the launch status.
cudaError_t attention_mass_launch(const AttentionMassProblem& s, float* workspace,
                                  cudaStream_t stream) {
  if (s.B == 0 || s.key_end == s.key_start) return cudaSuccess;
  Params p = attention_mass_params(s);
  const int64_t part = s.B * p.n_chunks * p.R;
  p.part_m = workspace;
  p.part_l = workspace + part;
  p.row_m = workspace + 2 * part;
  p.row_coef = p.row_m + s.B * p.R;
  return with_element_type(s.dtype, [&](auto t) {
    return attention_mass_launch_t<decltype(t)>(p, s.B, stream);
  });
}

}  // namespace
}  // namespace vlmkern::cuda
