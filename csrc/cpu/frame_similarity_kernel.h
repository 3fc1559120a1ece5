// frame_similarity on the CPU: raw pointers and sizes only (no torch here).
//
// out[b, t, n] = cos(x[b, t, n, :], x[b, ref[t], n, :]), NaN where ref[t] < 0.
// A task is one (b, tile of kTile token positions); it walks the frames in
// order, so with ref[t] = t - 1 (or any recent anchor) the reference tile was
// read moments before and comes from L1/L2: the features are read from memory
// once. Per token the ISA's `dot3` accumulates <x, r>, |x|^2 and |r|^2 in fp32
// in one pass over D; math/cosine.h finishes. Memory-bound by design (3 FMAs
// per 2 loaded elements).
#pragma once
#include <cstdint>

#include "core/cpu_features.h"
#include "core/dtype.h"

namespace vlmkern::cpu {

struct FrameSimilarityArgs {
  DType dtype;
  const void* x;                // [B, T, N, D], last dim contiguous
  int64_t B, T, N, D;
  int64_t sb, st, sn;           // element strides of x
  const int64_t* ref;           // [T]: reference frame of each frame, or -1
  float eps;
  float* out;                   // [B, T, N], contiguous
};

struct Dot3 {
  float dot, xx, rr;
};

constexpr int64_t kFrameSimilarityTile = 8;

// Number of tasks for parallel_for; run tasks [t0, t1).
inline int64_t frame_similarity_tasks(const FrameSimilarityArgs& a) {
  return a.B * ((a.N + kFrameSimilarityTile - 1) / kFrameSimilarityTile);
}
void frame_similarity_tasks_run(const FrameSimilarityArgs& a, CpuIsa isa, int64_t t0, int64_t t1);

// The per-ISA inner loops (same operand order for the three sums, so x == r
// gives dot == xx == rr exactly).
Dot3 frame_dot3_scalar(DType dt, const void* x, const void* r, int64_t D);
Dot3 frame_dot3_avx2(DType dt, const void* x, const void* r, int64_t D);
Dot3 frame_dot3_avx512(DType dt, const void* x, const void* r, int64_t D);

}  // namespace vlmkern::cpu
