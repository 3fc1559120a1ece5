// Device code and launch planning of vlmkern::pixel_dedup on CUDA, torch-free
// (compiled by nvcc through csrc/cuda/pixel_dedup.cu, and on the CPU by the
// CUDA emulator in tests/cudasim). It mirrors the CPU kernel
// (csrc/cpu/pixel_dedup_kernel.h): the same walk over each video's temporal
// groups with an anchor, the same decision rule (math/pixel_dedup.h), fp64
// sums of |x - anchor| (in another order than the CPU's chunks).
//
// One block per video: the walk is sequential (each step needs the anchor the
// previous step chose), so the parallelism is inside a step: the block's
// threads stride over the two slabs (consecutive threads, consecutive
// addresses), then a shuffle butterfly per warp and one pass over the warp
// sums in shared memory; thread 0 decides and publishes the anchor. A step
// reads two slabs of h * w * F values: ~9.6 MB for a 448x448 Qwen-VL group
// pair in fp32.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cuda/device.cuh"
#include "math/convert.h"
#include "math/pixel_dedup.h"

namespace vlmkern::cuda {
namespace {  // one including translation unit per binary (the op's .cu, or the emulator)

constexpr int kPixelDedupThreads = 256;
constexpr int kPixelDedupWarps = kPixelDedupThreads / 32;

struct PixelDedupArgs {
  DType dtype;
  const void* pixels;  // [P, F], contiguous, device memory
  int64_t F;
  const int64_t* grid;  // [V, 3], device memory
  const int64_t* row0;  // [V] first patch row of each video, device memory
  const int64_t* g0;    // [V] first global group index of each video, device memory
  int64_t V;
  double tol;
  int64_t* source;  // [sum t], device memory
};

template <typename E>
__global__ void __launch_bounds__(kPixelDedupThreads)
    pixel_dedup_kernel(const E* __restrict__ px, int64_t F, const int64_t* __restrict__ grid,
                       const int64_t* __restrict__ row0, const int64_t* __restrict__ g0, double tol,
                       int64_t* __restrict__ source) {
  __shared__ double warp_sums[kPixelDedupWarps];
  __shared__ int64_t anchor_s;
  const int64_t v = blockIdx.x;
  const int64_t T = grid[3 * v], slab = grid[3 * v + 1] * grid[3 * v + 2] * F;
  const E* base = px + row0[v] * F;
  const int64_t first = g0[v];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  if (tid == 0) anchor_s = 0;
  if (tid == 0 && T > 0) source[first] = first;
  __syncthreads();
  for (int64_t t = 1; t < T; ++t) {
    const int64_t anchor = anchor_s;
    const E* x = base + t * slab;
    const E* y = base + anchor * slab;
    double s = 0.0;
    for (int64_t i = tid; i < slab; i += kPixelDedupThreads)
      s += fabs(double(math::to_float(x[i])) - double(math::to_float(y[i])));
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) warp_sums[warp] = s;
    __syncthreads();  // warp sums written; every thread has read anchor_s
    if (tid == 0) {
      double sum = 0.0;
      for (int w = 0; w < kPixelDedupWarps; ++w) sum += warp_sums[w];
      if (math::pixel_dedup_matches(sum, slab, tol)) {
        source[first + t] = first + anchor;
      } else {
        source[first + t] = first + t;
        anchor_s = t;
      }
    }
    __syncthreads();  // the new anchor is visible; warp_sums may be reused
  }
}

// Why this shape cannot be launched, or nullptr.
const char* pixel_dedup_plan_error(const PixelDedupArgs& a) {
  if (a.V >= (int64_t(1) << 31)) return "grid: at most 2^31 - 1 videos on CUDA";
  return nullptr;
}

// Enqueues the kernel (nothing without videos); returns the launch status.
cudaError_t pixel_dedup_launch(const PixelDedupArgs& a, cudaStream_t stream) {
  if (a.V == 0) return cudaSuccess;
  with_element_type(a.dtype, [&](auto t) {
    using T = decltype(t);
    VLMKERN_LAUNCH(pixel_dedup_kernel<T>, dim3(unsigned(a.V)), kPixelDedupThreads, 0, stream)(
        static_cast<const T*>(a.pixels), a.F, a.grid, a.row0, a.g0, a.tol, a.source);
  });
  return cudaGetLastError();
}

}  // namespace
}  // namespace vlmkern::cuda
